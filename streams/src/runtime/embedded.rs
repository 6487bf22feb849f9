//! The embedded log: topics on local disk inside the application's process.
//!
//! An [`EmbeddedLog`] is Headwater's own log (the one `headwater serve` runs), opened
//! in-process: no server, no sockets. Committed offsets go to its `__consumer_offsets`
//! in Kafka's layout, so the data directory can later be served by `headwater serve`
//! with the application's progress intact. Every stream thread of the process shares the
//! log; partitions are divided among them statically (partition `p` to thread
//! `p % threads`), which keeps co-partitioned partitions together.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use headwater_core::client::{ConsumerRecord, decode_records};
use headwater_core::group::{CommittedOffset, OffsetStore};
use headwater_core::log::{Log, LogError, LogManager, LogManagerOptions};
use headwater_core::record::{BatchBuilder, Compression, NewRecord};

use super::OutRecord;
use super::backend::{Backend, Reached};
use crate::error::StreamsError;
use crate::topology::InternalTopic;

/// Most bytes one poll reads from a partition.
const READ_BYTES: usize = 1 << 20;
/// Records per appended batch (the log refuses batches past `max.message.bytes`).
const BATCH_BYTES: usize = 256 << 10;

/// A record to append: key, value (`None`: null) and timestamp.
pub type RawRecord<'a> = (Option<&'a [u8]>, Option<&'a [u8]>, i64);

/// A log in this process. Cheap to clone: clones share it.
#[derive(Clone)]
pub struct EmbeddedLog {
    inner: Arc<Inner>,
}

struct Inner {
    logs: Arc<LogManager>,
    offsets: OffsetStore,
}

impl std::fmt::Debug for EmbeddedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedLog").field("dir", &self.inner.logs.data_dir()).finish()
    }
}

impl EmbeddedLog {
    /// Opens (or creates) a log in `dir`, recovering it as the broker would.
    ///
    /// # Errors
    /// The log cannot be opened.
    pub fn open(dir: &Path) -> Result<Self, StreamsError> {
        let logs = LogManager::open(dir, LogManagerOptions::default())?;
        logs.start_maintenance(Duration::from_secs(30));
        let offsets = OffsetStore::open(Arc::clone(&logs))?;
        Ok(Self { inner: Arc::new(Inner { logs, offsets }) })
    }

    /// The log manager, for what this type does not wrap.
    pub fn logs(&self) -> &Arc<LogManager> {
        &self.inner.logs
    }

    /// Creates a topic; an existing one is left as it is.
    ///
    /// # Errors
    /// An invalid name or config, or the disk failing.
    pub fn create_topic(
        &self,
        topic: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<(), StreamsError> {
        match self.inner.logs.create_topic(topic, partitions, configs) {
            Ok(()) | Err(LogError::TopicAlreadyExists { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Appends records to one partition as one batch and waits until they are on disk;
    /// returns the first record's offset.
    ///
    /// # Errors
    /// An unknown topic or partition, or the disk failing.
    pub fn append(&self, topic: &str, partition: i32, records: &[RawRecord<'_>]) -> Result<i64, StreamsError> {
        let log = self.inner.logs.get(topic, partition)?;
        let mut builder = BatchBuilder::new(Compression::None);
        for (key, value, timestamp) in records {
            builder.append(NewRecord { timestamp: *timestamp, key: *key, value: *value, headers: &[] });
        }
        let batch = builder.build().map_err(|source| LogError::InvalidRecords { source })?;
        let appended = log.append(&batch, 0)?;
        log.wait_flushed_blocking(appended.last_offset + 1)?;
        Ok(appended.first_offset)
    }

    /// Every record of a partition from `from` on.
    ///
    /// # Errors
    /// An unknown topic or partition, or a batch that cannot be read.
    pub fn read(&self, topic: &str, partition: i32, from: i64) -> Result<Vec<ConsumerRecord>, StreamsError> {
        let log = self.inner.logs.get(topic, partition)?;
        let end = log.log_end();
        let mut out = Vec::new();
        read_log(&log, topic, partition, from.max(log.log_start()), end, &mut |r| out.push(r))?;
        Ok(out)
    }

    /// The committed offset of an application's partition.
    pub fn committed(&self, application_id: &str, topic: &str, partition: i32) -> Option<i64> {
        self.inner.offsets.get(application_id, topic, partition).map(|c| c.offset)
    }
}

fn read_log(
    log: &Log,
    topic: &str,
    partition: i32,
    mut from: i64,
    end: i64,
    apply: &mut dyn FnMut(ConsumerRecord),
) -> Result<(), StreamsError> {
    let name: Arc<str> = Arc::from(topic);
    while from < end {
        let read = log.read(from, None, READ_BYTES)?;
        if read.records.is_empty() {
            break;
        }
        let (records, next) = decode_records(&name, partition, from, &read.records)?;
        for record in records.into_iter().filter(|r| r.offset < end) {
            apply(record);
        }
        if next <= from {
            break;
        }
        from = next;
    }
    Ok(())
}

type TopicPartition = (Arc<str>, i32);

/// One stream thread's share of an embedded log.
pub(crate) struct EmbeddedBackend {
    log: EmbeddedLog,
    application_id: String,
    thread: usize,
    threads: usize,
    poll_wait: Duration,
    topics: Vec<String>,
    /// Assigned partitions and the next offset to read.
    positions: BTreeMap<(String, i32), i64>,
    logs: HashMap<(String, i32), Arc<Log>>,
    /// Logs appended to since the last flush, and the offset to wait for.
    unflushed: HashMap<(Arc<str>, i32), (Arc<Log>, i64)>,
    round_robin: AtomicUsize,
}

impl EmbeddedBackend {
    pub(crate) fn new(
        log: EmbeddedLog,
        application_id: &str,
        thread: usize,
        threads: usize,
        poll_wait: Duration,
    ) -> Self {
        Self {
            log,
            application_id: application_id.to_string(),
            thread,
            threads: threads.max(1),
            poll_wait,
            topics: Vec::new(),
            positions: BTreeMap::new(),
            logs: HashMap::new(),
            unflushed: HashMap::new(),
            round_robin: AtomicUsize::new(0),
        }
    }

    fn log_of(&self, topic: &str, partition: i32) -> Result<Arc<Log>, StreamsError> {
        Ok(self.log.inner.logs.get(topic, partition)?)
    }
}

impl Backend for EmbeddedBackend {
    async fn partition_counts(&self, topics: &[String]) -> Result<HashMap<String, i32>, StreamsError> {
        topics
            .iter()
            .map(|t| match self.log.inner.logs.topic(t) {
                Some(description) => Ok((t.clone(), description.partitions)),
                None => Err(StreamsError::Topology(format!("topic {t} does not exist"))),
            })
            .collect()
    }

    async fn create_topics(&self, topics: &BTreeMap<String, InternalTopic>) -> Result<(), StreamsError> {
        for (name, topic) in topics {
            if self.log.inner.logs.topic(name).is_none() {
                self.log.create_topic(name, topic.partitions, topic.configs())?;
            }
        }
        Ok(())
    }

    async fn subscribe(&mut self, topics: Vec<String>) -> Result<(), StreamsError> {
        self.topics = topics;
        for topic in &self.topics {
            let partitions = self.log.inner.logs.topic(topic).map_or(0, |t| t.partitions);
            for partition in (0..partitions).filter(|p| *p as usize % self.threads == self.thread) {
                let log = self.log_of(topic, partition)?;
                // Kafka Streams' auto.offset.reset: earliest.
                let start = self.log.committed(&self.application_id, topic, partition).unwrap_or(log.log_start());
                self.positions.insert((topic.clone(), partition), start.max(log.log_start()));
                self.logs.insert((topic.clone(), partition), log);
            }
        }
        Ok(())
    }

    async fn poll(&mut self) -> Result<Vec<ConsumerRecord>, StreamsError> {
        let mut out = Vec::new();
        let mut watches = Vec::new();
        for ((topic, partition), position) in self.positions.iter_mut() {
            let log = &self.logs[&(topic.clone(), *partition)];
            let end = log.log_end();
            if *position >= end {
                watches.push(log.subscribe_log_end());
                continue;
            }
            let read = log.read(*position, None, READ_BYTES)?;
            if read.records.is_empty() {
                continue;
            }
            let name: Arc<str> = Arc::from(topic.as_str());
            let (records, next) = decode_records(&name, *partition, *position, &read.records)?;
            out.extend(records);
            *position = next.max(*position);
        }
        if out.is_empty() && !watches.is_empty() {
            // Nothing new: wait for an append to any assigned partition.
            let changed = watches.iter_mut().map(|w| Box::pin(w.changed())).collect::<Vec<_>>();
            let _ = tokio::time::timeout(self.poll_wait, futures::future::select_all(changed)).await;
        } else if out.is_empty() {
            tokio::time::sleep(self.poll_wait).await;
        }
        Ok(out)
    }

    fn assignment(&self) -> Vec<(String, i32)> {
        self.positions.keys().cloned().collect()
    }

    fn rebalance_wanted(&self) -> bool {
        false
    }

    async fn rebalance(&mut self) -> Result<(), StreamsError> {
        Ok(())
    }

    async fn send(&mut self, records: Vec<OutRecord>) -> Result<(), StreamsError> {
        // Few topics and partitions per batch: a short list, matched by pointer first.
        let mut batches: Vec<(TopicPartition, Vec<OutRecord>)> = Vec::new();
        for record in records {
            let partition = match record.partition {
                Some(p) => p,
                None => {
                    let count = self.log.inner.logs.topic(&record.topic).map_or(1, |t| t.partitions).max(1);
                    (self.round_robin.fetch_add(1, Ordering::Relaxed) % count as usize) as i32
                }
            };
            let slot = batches
                .iter()
                .position(|((t, p), _)| *p == partition && (Arc::ptr_eq(t, &record.topic) || *t == record.topic));
            match slot {
                Some(i) => batches[i].1.push(record),
                None => batches.push(((Arc::clone(&record.topic), partition), vec![record])),
            }
        }
        for ((topic, partition), records) in batches {
            let log = self.log_of(&topic, partition)?;
            let mut builder = BatchBuilder::new(Compression::None);
            let mut last = None;
            for record in &records {
                let headers: Vec<(&[u8], Option<&[u8]>)> =
                    record.headers.iter().map(|(k, v)| (k.as_bytes(), v.as_deref())).collect();
                builder.append(NewRecord {
                    timestamp: record.timestamp,
                    key: record.key.as_deref(),
                    value: record.value.as_deref(),
                    headers: &headers,
                });
                if builder.estimated_size() >= BATCH_BYTES {
                    let full = std::mem::replace(&mut builder, BatchBuilder::new(Compression::None));
                    last = Some(append(&log, full)?);
                }
            }
            if !builder.is_empty() {
                last = Some(append(&log, builder)?);
            }
            if let Some(next) = last {
                self.unflushed.insert((topic, partition), (log, next));
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<Reached, StreamsError> {
        let mut reached = Reached::new();
        for (tp, (log, next)) in self.unflushed.drain() {
            log.wait_flushed(next).await?;
            reached.insert(tp, next);
        }
        Ok(reached)
    }

    async fn commit(&mut self, offsets: &[(String, i32, i64)]) -> Result<(), StreamsError> {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let entries = offsets
            .iter()
            .map(|(t, p, o)| {
                let committed = CommittedOffset { offset: *o, leader_epoch: -1, metadata: None, commit_timestamp: now };
                ((t.clone(), *p), Some(committed))
            })
            .collect();
        self.log
            .inner
            .offsets
            .write(&self.application_id, entries)
            .await
            .map_err(|e| StreamsError::Commit { message: e.to_string() })
    }

    async fn bounds(&mut self, topic: &str, partition: i32) -> Result<(i64, i64), StreamsError> {
        let log = self.log_of(topic, partition)?;
        Ok((log.log_start(), log.log_end()))
    }

    async fn read_range(
        &self,
        topic: &str,
        partition: i32,
        from: i64,
        end: i64,
        apply: &mut dyn FnMut(ConsumerRecord),
    ) -> Result<(), StreamsError> {
        let log = self.log_of(topic, partition)?;
        read_log(&log, topic, partition, from, end, apply)
    }

    async fn end_offsets(&mut self, partitions: &[(String, i32)]) -> Result<HashMap<(String, i32), i64>, StreamsError> {
        partitions.iter().map(|(t, p)| Ok(((t.clone(), *p), self.log_of(t, *p)?.log_end()))).collect()
    }

    async fn close(mut self) -> Result<(), StreamsError> {
        self.flush().await.map(|_| ())
    }
}

fn append(log: &Log, builder: BatchBuilder) -> Result<i64, StreamsError> {
    let batch = builder.build().map_err(|source| LogError::InvalidRecords { source })?;
    Ok(log.append(&batch, 0)?.last_offset + 1)
}
