//! A test driver in the spirit of Kafka Streams' `TopologyTestDriver`: a topology run
//! in-process and deterministically, for unit tests of stream jobs.
//!
//! Every topic has one partition, so there is one task per sub-topology. Piping a record
//! processes it at once, including through repartition topics; sink records wait in the
//! driver until read. Stream time moves with the records piped (and with
//! [`TopologyTestDriver::advance_stream_time`]); wall-clock time only when advanced.
//!
//! ```
//! use headwater_streams::{Consumed, Produced, StreamsBuilder};
//! use headwater_streams::serde::Utf8;
//! use headwater_streams::test_driver::TopologyTestDriver;
//!
//! let builder = StreamsBuilder::new();
//! builder
//!     .stream("in", Consumed::with(Utf8, Utf8))
//!     .map_values(|v: String| v.to_uppercase())
//!     .to("out", Produced::with(Utf8, Utf8));
//! let mut driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
//! let input = driver.input_topic("in", Utf8, Utf8);
//! let output = driver.output_topic("out", Utf8, Utf8);
//! driver.pipe(&input, "k".to_string(), "hello".to_string(), 10).unwrap();
//! let record = driver.read(&output).unwrap().unwrap();
//! assert_eq!((record.key.as_str(), record.value.as_str(), record.timestamp), ("k", "HELLO", 10));
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use headwater_core::client::ConsumerRecord;

use super::OutRecord;
use super::task::{StreamTask, TaskId};
use crate::error::StreamsError;
use crate::processor::TaskCounters;
use crate::record::Headers;
use crate::serde::{Serde, SerdeError};
use crate::state::keys;
use crate::topology::Topology;
use crate::window::Window;

const APPLICATION_ID: &str = "test-driver";

/// A topic records are piped into, with the serdes that write them.
pub struct TestInputTopic<K, V> {
    topic: Arc<str>,
    key_serde: Box<dyn Serde<K>>,
    value_serde: Box<dyn Serde<V>>,
}

/// A topic whose records are read back, with the serdes that read them.
pub struct TestOutputTopic<K, V> {
    topic: Arc<str>,
    key_serde: Box<dyn Serde<K>>,
    value_serde: Box<dyn Serde<V>>,
}

impl<K, V> std::fmt::Debug for TestInputTopic<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TestInputTopic({})", self.topic)
    }
}

impl<K, V> std::fmt::Debug for TestOutputTopic<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TestOutputTopic({})", self.topic)
    }
}

/// A record read from an output topic.
#[derive(Debug, Clone, PartialEq)]
pub struct TestRecord<K, V> {
    pub key: K,
    pub value: V,
    pub timestamp: i64,
    pub headers: Headers,
}

/// Runs a topology without a log.
pub struct TopologyTestDriver {
    topology: Topology,
    tasks: BTreeMap<TaskId, StreamTask>,
    /// Which task reads each topic.
    readers: HashMap<Arc<str>, TaskId>,
    outputs: HashMap<Arc<str>, VecDeque<OutRecord>>,
    /// Each store's changelog records, as a broker would hold them.
    changelogs: HashMap<Arc<str>, Vec<OutRecord>>,
    offsets: HashMap<Arc<str>, i64>,
    wall_clock: i64,
}

impl std::fmt::Debug for TopologyTestDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopologyTestDriver").field("tasks", &self.tasks.keys().collect::<Vec<_>>()).finish()
    }
}

impl TopologyTestDriver {
    /// Starts every task of the topology (partition 0 of each sub-topology).
    ///
    /// # Errors
    /// A store that cannot be opened.
    pub fn new(topology: Topology) -> Result<Self, StreamsError> {
        Self::with_wall_clock(topology, 0)
    }

    /// As [`Self::new`], with the wall clock starting at `wall_clock_ms`.
    ///
    /// # Errors
    /// As [`Self::new`].
    pub fn with_wall_clock(topology: Topology, wall_clock_ms: i64) -> Result<Self, StreamsError> {
        let partitions: HashMap<String, i32> =
            topology.sink_topics(APPLICATION_ID).into_iter().map(|t| (t, 1)).collect();
        let partitions = Arc::new(partitions);
        let mut tasks = BTreeMap::new();
        let mut readers = HashMap::new();
        for sub in &topology.subtopologies {
            let id = TaskId { subtopology: sub.id, partition: 0 };
            let mut task = StreamTask::open(&topology, id, APPLICATION_ID, Arc::clone(&partitions), None)?;
            task.start(&topology, APPLICATION_ID)?;
            for topic in task.source_topics() {
                readers.insert(Arc::clone(topic), id);
            }
            tasks.insert(id, task);
        }
        Ok(Self {
            topology,
            tasks,
            readers,
            outputs: HashMap::new(),
            changelogs: HashMap::new(),
            offsets: HashMap::new(),
            wall_clock: wall_clock_ms,
        })
    }

    pub fn input_topic<K, V>(
        &self,
        topic: &str,
        key_serde: impl Serde<K> + 'static,
        value_serde: impl Serde<V> + 'static,
    ) -> TestInputTopic<K, V> {
        TestInputTopic { topic: Arc::from(topic), key_serde: Box::new(key_serde), value_serde: Box::new(value_serde) }
    }

    pub fn output_topic<K, V>(
        &self,
        topic: &str,
        key_serde: impl Serde<K> + 'static,
        value_serde: impl Serde<V> + 'static,
    ) -> TestOutputTopic<K, V> {
        TestOutputTopic { topic: Arc::from(topic), key_serde: Box::new(key_serde), value_serde: Box::new(value_serde) }
    }

    /// Pipes one record in and processes it (and whatever it sends through
    /// repartition topics).
    ///
    /// # Errors
    /// The topology's failure on this record.
    pub fn pipe<K, V>(
        &mut self,
        topic: &TestInputTopic<K, V>,
        key: K,
        value: V,
        timestamp: i64,
    ) -> Result<(), StreamsError> {
        let key = crate::serde::to_bytes(&*topic.key_serde, &key);
        let value = crate::serde::to_bytes(&*topic.value_serde, &value);
        self.pipe_raw(&topic.topic, key, value, timestamp, Vec::new())
    }

    /// Pipes a record with a null value (a tombstone, for tables).
    ///
    /// # Errors
    /// As [`Self::pipe`].
    pub fn pipe_tombstone<K, V>(
        &mut self,
        topic: &TestInputTopic<K, V>,
        key: K,
        timestamp: i64,
    ) -> Result<(), StreamsError> {
        let key = crate::serde::to_bytes(&*topic.key_serde, &key);
        self.pipe_raw(&topic.topic, key, None, timestamp, Vec::new())
    }

    /// Pipes raw bytes (to test how a topology meets bad input).
    ///
    /// # Errors
    /// As [`Self::pipe`].
    pub fn pipe_raw(
        &mut self,
        topic: &str,
        key: Option<Bytes>,
        value: Option<Bytes>,
        timestamp: i64,
        headers: Headers,
    ) -> Result<(), StreamsError> {
        let topic: Arc<str> = Arc::from(topic);
        let offset = self.offsets.entry(Arc::clone(&topic)).or_insert(0);
        let record =
            ConsumerRecord { topic: Arc::clone(&topic), partition: 0, offset: *offset, timestamp, key, value, headers };
        *offset += 1;
        let Some(id) = self.readers.get(&topic).copied() else {
            return Err(StreamsError::Topology(format!("no source reads topic {topic}")));
        };
        let task = self.tasks.get_mut(&id).expect("a reader's task");
        task.add(record);
        task.process(self.wall_clock)?;
        self.route(id)
    }

    /// Sends a task's output on: internal topics to the tasks reading them (and on,
    /// until nothing is left), changelogs aside, the rest to the output queues.
    fn route(&mut self, first: TaskId) -> Result<(), StreamsError> {
        let mut pending = VecDeque::from([first]);
        while let Some(id) = pending.pop_front() {
            let out = self.tasks.get_mut(&id).expect("a task").take_output()?;
            for record in out {
                if record.topic.ends_with("-changelog") && record.topic.starts_with(APPLICATION_ID) {
                    self.changelogs.entry(Arc::clone(&record.topic)).or_default().push(record);
                    continue;
                }
                if let Some(reader) = self.readers.get(&record.topic).copied() {
                    let offset = self.offsets.entry(Arc::clone(&record.topic)).or_insert(0);
                    let consumed = ConsumerRecord {
                        topic: Arc::clone(&record.topic),
                        partition: 0,
                        offset: *offset,
                        timestamp: record.timestamp,
                        key: record.key.clone(),
                        value: record.value.clone(),
                        headers: record.headers.clone(),
                    };
                    *offset += 1;
                    let task = self.tasks.get_mut(&reader).expect("a reader's task");
                    task.add(consumed);
                    task.process(self.wall_clock)?;
                    pending.push_back(reader);
                }
                // A topic both written and read is also readable as an output.
                self.outputs.entry(Arc::clone(&record.topic)).or_default().push_back(record);
            }
        }
        Ok(())
    }

    /// Moves wall-clock time on and runs the time-driven nodes.
    ///
    /// # Errors
    /// A node's failure.
    pub fn advance_wall_clock(&mut self, by: Duration) -> Result<(), StreamsError> {
        self.wall_clock += i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.punctuate_all()
    }

    /// Moves every task's stream time to at least `to` (as if a record with that
    /// timestamp had arrived) and runs the time-driven nodes: windows close, emit-final
    /// results come out.
    ///
    /// # Errors
    /// A node's failure.
    pub fn advance_stream_time(&mut self, to: i64) -> Result<(), StreamsError> {
        for task in self.tasks.values_mut() {
            task.advance_stream_time(to);
        }
        self.punctuate_all()
    }

    fn punctuate_all(&mut self) -> Result<(), StreamsError> {
        let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
        for id in ids {
            self.tasks.get_mut(&id).expect("a task").punctuate(self.wall_clock)?;
            self.route(id)?;
        }
        Ok(())
    }

    /// The next record of an output topic.
    ///
    /// # Errors
    /// Bytes the topic's serdes cannot read.
    pub fn read<K, V>(&mut self, topic: &TestOutputTopic<K, V>) -> Result<Option<TestRecord<K, V>>, SerdeError> {
        let Some(record) = self.outputs.get_mut(&topic.topic).and_then(VecDeque::pop_front) else { return Ok(None) };
        Ok(Some(TestRecord {
            key: topic.key_serde.deserialize(record.key.as_ref())?,
            value: topic.value_serde.deserialize(record.value.as_ref())?,
            timestamp: record.timestamp,
            headers: record.headers,
        }))
    }

    /// Every record of an output topic not read yet.
    ///
    /// # Errors
    /// As [`Self::read`].
    pub fn read_all<K, V>(&mut self, topic: &TestOutputTopic<K, V>) -> Result<Vec<TestRecord<K, V>>, SerdeError> {
        let mut out = Vec::new();
        while let Some(record) = self.read(topic)? {
            out.push(record);
        }
        Ok(out)
    }

    /// Every record of an output topic not read yet, as key and value.
    ///
    /// # Errors
    /// As [`Self::read`].
    pub fn read_key_values<K, V>(&mut self, topic: &TestOutputTopic<K, V>) -> Result<Vec<(K, V)>, SerdeError> {
        Ok(self.read_all(topic)?.into_iter().map(|r| (r.key, r.value)).collect())
    }

    /// The current value of `key` in a key-value store.
    ///
    /// # Errors
    /// An unknown store, or bytes the serde cannot read.
    pub fn store_get<K, V>(
        &self,
        store: &str,
        key: &K,
        key_serde: &dyn Serde<K>,
        value_serde: &dyn Serde<V>,
    ) -> Result<Option<V>, StreamsError> {
        let handle = self.find_store(store)?;
        let Some(key) = crate::serde::to_bytes(key_serde, key) else { return Ok(None) };
        let store_ref = handle.borrow();
        store_ref
            .get(&key)?
            .map(|b| {
                value_serde
                    .deserialize(Some(&b))
                    .map_err(|source| StreamsError::StoreSerde { store: store.into(), source })
            })
            .transpose()
    }

    /// Every entry of a key-value store, in key-byte order.
    ///
    /// # Errors
    /// As [`Self::store_get`].
    pub fn store_all<K, V>(
        &self,
        store: &str,
        key_serde: &dyn Serde<K>,
        value_serde: &dyn Serde<V>,
    ) -> Result<Vec<(K, V)>, StreamsError> {
        let handle = self.find_store(store)?;
        let entries = handle.borrow().range(&[], None)?;
        let err = |source| StreamsError::StoreSerde { store: store.into(), source };
        entries
            .into_iter()
            .map(|(k, v)| {
                Ok((key_serde.deserialize(Some(&k)).map_err(err)?, value_serde.deserialize(Some(&v)).map_err(err)?))
            })
            .collect()
    }

    /// The open windows of `key` in a window store (of a tumbling or hopping
    /// aggregate) with `from <= start <= to`.
    ///
    /// # Errors
    /// As [`Self::store_get`].
    pub fn window_fetch<K, V>(
        &self,
        store: &str,
        key: &K,
        from: i64,
        to: i64,
        key_serde: &dyn Serde<K>,
        value_serde: &dyn Serde<V>,
    ) -> Result<Vec<(i64, V)>, StreamsError> {
        let handle = self.find_store(store)?;
        let Some(key) = crate::serde::to_bytes(key_serde, key) else { return Ok(Vec::new()) };
        let (lower, upper) = keys::window_range(&key, from, to);
        let entries = handle.borrow().range(&lower, Some(&upper))?;
        entries
            .into_iter()
            .map(|(k, v)| {
                let start = keys::split_window(&k).1;
                let value = value_serde
                    .deserialize(Some(&v))
                    .map_err(|source| StreamsError::StoreSerde { store: store.into(), source })?;
                Ok((start, value))
            })
            .collect()
    }

    /// The sessions of `key` in a session store.
    ///
    /// # Errors
    /// As [`Self::store_get`].
    pub fn sessions<K, V>(
        &self,
        store: &str,
        key: &K,
        key_serde: &dyn Serde<K>,
        value_serde: &dyn Serde<V>,
    ) -> Result<Vec<(Window, V)>, StreamsError> {
        let handle = self.find_store(store)?;
        let Some(key) = crate::serde::to_bytes(key_serde, key) else { return Ok(Vec::new()) };
        let (lower, upper) = keys::sessions_ending_from(&key, i64::MIN);
        let entries = handle.borrow().range(&lower, Some(&upper))?;
        entries
            .into_iter()
            .map(|(k, v)| {
                let (_, start, end) = keys::split_session(&k);
                let value = value_serde
                    .deserialize(Some(&v))
                    .map_err(|source| StreamsError::StoreSerde { store: store.into(), source })?;
                Ok((Window { start, end }, value))
            })
            .collect()
    }

    /// How many changelog records a store has written (after the per-batch dedup).
    pub fn changelog_len(&self, store: &str) -> usize {
        let topic = format!("{APPLICATION_ID}-{store}-changelog");
        self.changelogs.get(topic.as_str()).map_or(0, Vec::len)
    }

    /// Counters summed over the tasks.
    pub fn counters(&self) -> TaskCounters {
        self.tasks.values().fold(TaskCounters::default(), |mut sum, task| {
            let c = task.counters();
            sum.processed += c.processed;
            sum.dropped_late += c.dropped_late;
            sum.skipped_no_timestamp += c.skipped_no_timestamp;
            sum
        })
    }

    /// The topology's description.
    pub fn describe(&self) -> String {
        self.topology.to_string()
    }

    fn find_store(&self, store: &str) -> Result<&std::rc::Rc<std::cell::RefCell<crate::state::Store>>, StreamsError> {
        self.tasks
            .values()
            .find_map(|task| task.store(store))
            .ok_or_else(|| StreamsError::Config(format!("no store named {store}")))
    }
}

impl<K, V> TestOutputTopic<K, V> {
    pub fn name(&self) -> &str {
        &self.topic
    }
}

impl<K, V> TestInputTopic<K, V> {
    pub fn name(&self) -> &str {
        &self.topic
    }
}
