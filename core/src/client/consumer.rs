//! The consumer: reads assigned partitions from tracked positions with long-polling
//! Fetch requests. Group membership (subscribe, rebalances, committed offsets) will build
//! on this.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, ListOffsetsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{ClientError, ClusterView};
use crate::record::BatchIter;

/// The pause after a poll in which no leader answered (`retry.backoff.ms`).
const RETRY_BACKOFF: Duration = Duration::from_millis(100);
/// Polls in a row with no leader answering before `poll` reports the failure: about five
/// seconds, longer than a leader fail-over.
const MAX_FAILED_POLLS: u32 = 50;

/// Partition errors after which the partition's leader is elsewhere (or about to be).
fn moves_leader(code: i16) -> bool {
    [
        ResponseError::NotLeaderOrFollower,
        ResponseError::LeaderNotAvailable,
        ResponseError::FencedLeaderEpoch,
        ResponseError::UnknownLeaderEpoch,
        ResponseError::ReplicaNotAvailable,
        ResponseError::KafkaStorageError,
    ]
    .iter()
    .any(|e| e.code() == code)
}

/// Consumer settings, with the Java client's names and defaults.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub bootstrap: String,
    pub client_id: String,
    /// `fetch.max.wait.ms`: how long a fetch waits for data.
    pub fetch_max_wait: Duration,
    /// `fetch.min.bytes`.
    pub fetch_min_bytes: i32,
    /// `max.partition.fetch.bytes`.
    pub partition_max_bytes: i32,
    /// `fetch.max.bytes`.
    pub fetch_max_bytes: i32,
    /// `auto.offset.reset`: where a partition without a position starts.
    pub auto_offset_reset: OffsetReset,
    /// `isolation.level`: whether records of open and aborted transactions are read.
    pub isolation_level: IsolationLevel,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            bootstrap: "127.0.0.1:9092".into(),
            client_id: "headwater-consumer".into(),
            fetch_max_wait: Duration::from_millis(500),
            fetch_min_bytes: 1,
            partition_max_bytes: 1 << 20,
            fetch_max_bytes: 50 << 20,
            auto_offset_reset: OffsetReset::Latest,
            isolation_level: IsolationLevel::ReadUncommitted,
        }
    }
}

/// Which records of transactional producers a consumer reads (Kafka's `isolation.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationLevel {
    /// Everything, as soon as it is below the high watermark (Kafka's default).
    #[default]
    ReadUncommitted,
    /// Only up to the last stable offset, and never a record of an aborted transaction.
    ReadCommitted,
}

impl IsolationLevel {
    /// The wire value of Fetch's and ListOffsets' `isolation_level`.
    pub fn code(self) -> i8 {
        match self {
            Self::ReadUncommitted => 0,
            Self::ReadCommitted => 1,
        }
    }
}

/// Where to start a partition that has no position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    Earliest,
    Latest,
}

/// One record read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// Shared by every record of a topic in a poll: no allocation per record.
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// A fetch sent ahead, and the positions it asked for.
struct Prefetch {
    positions: BTreeMap<(String, i32), i64>,
    /// One fetch per leader of the positions' partitions.
    responses: Vec<super::PendingResponse<kafka_protocol::messages::FetchResponse>>,
}

impl std::fmt::Debug for Prefetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefetch").field("positions", &self.positions).finish()
    }
}

/// A consumer of explicitly assigned partitions.
#[derive(Debug)]
pub struct Consumer {
    config: ConsumerConfig,
    /// Partition leaders and a connection per broker: each partition is fetched from its
    /// leader.
    cluster: ClusterView,
    /// The next fetches, sent while the previous responses were being handed over.
    in_flight: Option<Prefetch>,
    /// Polls in a row in which every fetch failed (a leader change, a broker down).
    failed_polls: u32,
    /// Assigned partitions and their next offset (`None`: reset by `auto_offset_reset`).
    positions: BTreeMap<(String, i32), Option<i64>>,
    paused: BTreeSet<(String, i32)>,
}

impl Consumer {
    /// # Errors
    /// A connection failure.
    pub async fn connect(config: ConsumerConfig) -> Result<Self, ClientError> {
        let cluster = ClusterView::new(&config.bootstrap, &config.client_id);
        cluster.any_connection().await?;
        Ok(Self {
            config,
            cluster,
            in_flight: None,
            failed_polls: 0,
            positions: BTreeMap::new(),
            paused: BTreeSet::new(),
        })
    }

    /// The consumer's `isolation.level`.
    pub fn isolation_level(&self) -> IsolationLevel {
        self.config.isolation_level
    }

    /// Replaces the assignment; partitions kept keep their positions.
    pub fn assign(&mut self, partitions: impl IntoIterator<Item = (String, i32)>) {
        let mut positions = BTreeMap::new();
        for tp in partitions {
            let position = self.positions.get(&tp).copied().flatten();
            positions.insert(tp, position);
        }
        self.paused.retain(|tp| positions.contains_key(tp));
        self.positions = positions;
    }

    /// The assigned partitions.
    pub fn assignment(&self) -> Vec<(String, i32)> {
        self.positions.keys().cloned().collect()
    }

    /// Sets the next offset to read from a partition (it must be assigned).
    pub fn seek(&mut self, topic: &str, partition: i32, offset: i64) {
        if let Some(position) = self.positions.get_mut(&(topic.to_string(), partition)) {
            *position = Some(offset);
        }
    }

    /// The next offset that will be read from a partition, if known.
    pub fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        self.positions.get(&(topic.to_string(), partition)).copied().flatten()
    }

    /// Stops fetching from partitions until [`Self::resume`].
    pub fn pause(&mut self, partitions: impl IntoIterator<Item = (String, i32)>) {
        self.paused.extend(partitions);
    }

    pub fn resume(&mut self, partitions: impl IntoIterator<Item = (String, i32)>) {
        for tp in partitions {
            self.paused.remove(&tp);
        }
    }

    /// Resolves positions of partitions that have none (earliest or latest).
    async fn reset_positions(&mut self) -> Result<(), ClientError> {
        let missing: Vec<(String, i32)> =
            self.positions.iter().filter(|(_, p)| p.is_none()).map(|(tp, _)| tp.clone()).collect();
        if missing.is_empty() {
            return Ok(());
        }
        let timestamp = match self.config.auto_offset_reset {
            OffsetReset::Earliest => -2,
            OffsetReset::Latest => -1,
        };
        for (tp, offset) in self.list_offsets(missing, timestamp).await? {
            self.positions.insert(tp, Some(offset));
        }
        Ok(())
    }

    /// ListOffsets for `partitions`, each asked of its leader: the earliest (`-2`) or
    /// latest (`-1`) offset, or the first at or after a timestamp. A partition whose
    /// leader is unknown or moving is left out (ask again).
    ///
    /// # Errors
    /// A connection failure or a broker error other than a leader change.
    pub async fn list_offsets(
        &mut self,
        partitions: Vec<(String, i32)>,
        timestamp: i64,
    ) -> Result<BTreeMap<(String, i32), i64>, ClientError> {
        let mut offsets = BTreeMap::new();
        for (addr, partitions) in Self::by_leader(&self.cluster, partitions).await {
            let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            for (topic, partition) in partitions {
                by_topic.entry(topic).or_default().push(partition);
            }
            // Under read_committed, "latest" is the last stable offset.
            let request = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_isolation_level(self.config.isolation_level.code())
                .with_topics(
                    by_topic
                        .iter()
                        .map(|(topic, partitions)| {
                            ListOffsetsTopic::default()
                                .with_name(TopicName(StrBytes::from_string(topic.clone())))
                                .with_partitions(
                                    partitions
                                        .iter()
                                        .map(|p| {
                                            ListOffsetsPartition::default()
                                                .with_partition_index(*p)
                                                .with_timestamp(timestamp)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                );
            let connection = self.cluster.connect(&addr).await?;
            let response = connection.send(request).await?;
            for topic in response.topics {
                for p in topic.partitions {
                    if moves_leader(p.error_code) {
                        self.cluster.mark_stale();
                        continue;
                    }
                    if p.error_code != 0 {
                        return Err(ClientError::Broker { api: "ListOffsets", code: p.error_code });
                    }
                    offsets.insert((topic.name.to_string(), p.partition_index), p.offset);
                }
            }
        }
        Ok(offsets)
    }

    /// Partitions grouped by the address of their leader; those without a known leader are
    /// left out (and the view marked stale, so the next poll asks again).
    async fn by_leader(cluster: &ClusterView, partitions: Vec<(String, i32)>) -> BTreeMap<String, Vec<(String, i32)>> {
        let mut grouped: BTreeMap<String, Vec<(String, i32)>> = BTreeMap::new();
        for (topic, partition) in partitions {
            match cluster.leader_address(&topic, partition).await {
                Ok(Some(addr)) => grouped.entry(addr).or_default().push((topic, partition)),
                Ok(None) | Err(_) => cluster.mark_stale(),
            }
        }
        grouped
    }

    /// Sends one fetch per leader for `positions`.
    async fn begin_fetches(
        cluster: &ClusterView,
        config: &ConsumerConfig,
        positions: &BTreeMap<(String, i32), i64>,
    ) -> Vec<super::PendingResponse<kafka_protocol::messages::FetchResponse>> {
        let mut pending = Vec::new();
        for (addr, partitions) in Self::by_leader(cluster, positions.keys().cloned().collect()).await {
            let subset: BTreeMap<(String, i32), i64> =
                partitions.into_iter().filter_map(|tp| positions.get(&tp).map(|p| (tp, *p))).collect();
            let Some(request) = fetch_request(config, &subset) else { continue };
            let begun = match cluster.connect(&addr).await {
                Ok(connection) => connection.begin(request).await,
                Err(error) => Err(error),
            };
            pending.push(match begun {
                Ok(response) => response,
                Err(error) => Box::pin(std::future::ready(Err(error))) as super::PendingResponse<_>,
            });
        }
        pending
    }

    pub fn stream(&mut self) -> impl futures::Stream<Item = Result<ConsumerRecord, ClientError>> + '_ {
        super::records(self)
    }

    /// Fetches what is available from the assigned, unpaused partitions, waiting up to
    /// `fetch.max.wait.ms` for something. Records come in offset order per partition and
    /// positions move past them.
    ///
    /// # Errors
    /// A connection failure or a broker error for a partition (an out-of-range position
    /// is reset by `auto.offset.reset` instead).
    pub async fn poll(&mut self) -> Result<Vec<ConsumerRecord>, ClientError> {
        self.reset_positions().await?;
        let wanted = self.fetch_positions();
        // A fetch sent ahead for exactly these positions is used; one made stale by a
        // seek, assign or pause is dropped.
        let prefetched = match self.in_flight.take() {
            Some(fetch) if fetch.positions == wanted => Some(fetch.responses),
            _ => None,
        };
        let pending = match prefetched {
            Some(responses) => responses,
            None => Self::begin_fetches(&self.cluster, &self.config, &wanted).await,
        };
        if pending.is_empty() {
            tokio::time::sleep(self.config.fetch_max_wait.min(RETRY_BACKOFF)).await;
            return Ok(Vec::new());
        }
        let mut records = Vec::new();
        let mut failure = None;
        let mut succeeded = false;
        let mut refused = None;
        for response in futures::future::join_all(pending).await {
            match response {
                Ok(response) => {
                    succeeded = true;
                    let (taken, error) = self.take_records(response);
                    records.extend(taken);
                    refused = refused.or(error);
                }
                Err(error) => {
                    // The broker went away or the leader moved: ask where the partitions are.
                    self.cluster.mark_stale();
                    failure = Some(error);
                }
            }
        }
        if let Some(error) = failure.filter(|_| !succeeded) {
            self.failed_polls += 1;
            if self.failed_polls >= MAX_FAILED_POLLS {
                self.failed_polls = 0;
                return Err(error);
            }
            tokio::time::sleep(RETRY_BACKOFF).await;
            return Ok(records);
        }
        self.failed_polls = 0;
        // A partition refused for good is reported, but not at the cost of the records the
        // other partitions gave (their positions have moved past them).
        if let Some(error) = refused
            && records.is_empty()
        {
            return Err(error);
        }
        // Pipelining: the next fetches go out before these records are handed over.
        let next = self.fetch_positions();
        let responses = Self::begin_fetches(&self.cluster, &self.config, &next).await;
        if !responses.is_empty() {
            self.in_flight = Some(Prefetch { positions: next, responses });
        }
        Ok(records)
    }

    fn fetch_positions(&self) -> BTreeMap<(String, i32), i64> {
        self.positions
            .iter()
            .filter(|(tp, _)| !self.paused.contains(*tp))
            .filter_map(|(tp, position)| position.map(|p| (tp.clone(), p)))
            .collect()
    }

    /// Decodes a fetch response into records and moves positions past them.
    /// A partition that cannot be decoded or is refused keeps its position and gives its
    /// error beside the other partitions' records.
    fn take_records(
        &mut self,
        response: kafka_protocol::messages::FetchResponse,
    ) -> (Vec<ConsumerRecord>, Option<ClientError>) {
        let mut records = Vec::new();
        let mut refused = None;
        for topic in response.responses {
            let name = topic.topic.to_string();
            let shared_name: Arc<str> = Arc::from(name.as_str());
            for data in topic.partitions {
                let tp = (name.clone(), data.partition_index);
                if data.error_code == ResponseError::OffsetOutOfRange.code() {
                    self.positions.insert(tp, None);
                    continue;
                }
                if moves_leader(data.error_code) {
                    self.cluster.mark_stale();
                    continue;
                }
                if data.error_code != 0 {
                    refused.get_or_insert(ClientError::Broker { api: "Fetch", code: data.error_code });
                    continue;
                }
                let Some(position) = self.positions.get(&tp).copied().flatten() else { continue };
                let Some(bytes) = data.records else { continue };
                let mut aborted = (self.config.isolation_level == IsolationLevel::ReadCommitted).then(|| {
                    AbortedTransactions::new(
                        data.aborted_transactions.iter().flatten().map(|a| (a.producer_id.0, a.first_offset)),
                    )
                });
                match decode_committed(&shared_name, data.partition_index, position, &bytes, aborted.as_mut()) {
                    Ok((decoded, next)) => {
                        records.extend(decoded);
                        self.positions.insert(tp, Some(next));
                    }
                    // The partition keeps its position: nothing of it is handed over.
                    Err(error) => {
                        refused.get_or_insert(error);
                    }
                }
            }
        }
        (records, refused)
    }
}

/// One Fetch for `positions`; `None` when there is nothing to fetch.
fn fetch_request(config: &ConsumerConfig, positions: &BTreeMap<(String, i32), i64>) -> Option<FetchRequest> {
    if positions.is_empty() {
        return None;
    }
    let mut by_topic: BTreeMap<String, Vec<FetchPartition>> = BTreeMap::new();
    for ((topic, partition), offset) in positions {
        by_topic.entry(topic.clone()).or_default().push(
            FetchPartition::default()
                .with_partition(*partition)
                .with_fetch_offset(*offset)
                .with_partition_max_bytes(config.partition_max_bytes),
        );
    }
    Some(
        FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(config.fetch_max_wait.as_millis() as i32)
            .with_isolation_level(config.isolation_level.code())
            .with_min_bytes(config.fetch_min_bytes)
            .with_max_bytes(config.fetch_max_bytes)
            .with_session_epoch(-1)
            .with_topics(
                by_topic
                    .into_iter()
                    .map(|(topic, partitions)| {
                        FetchTopic::default()
                            .with_topic(TopicName(StrBytes::from_string(topic)))
                            .with_partitions(partitions)
                    })
                    .collect(),
            ),
    )
}

/// The records of one partition's batches (a fetch response's, or a log read's) from
/// `position` on, and the offset after them. Control batches are skipped; a partial batch
/// at the end is left for the next read.
///
/// # Errors
/// [`ClientError::InvalidRecord`] for a batch that cannot be decompressed or decoded.
pub fn decode_records(
    topic: &Arc<str>,
    partition: i32,
    position: i64,
    bytes: &Bytes,
) -> Result<(Vec<ConsumerRecord>, i64), ClientError> {
    decode_committed(topic, partition, position, bytes, None)
}

/// The aborted transactions a read_committed fetch reported for one partition, and the
/// producers whose batches are being skipped: Kafka's consumer-side filter. A producer's
/// transactional batches are skipped from the first offset of its aborted transaction
/// until its abort marker.
#[derive(Debug, Default)]
pub struct AbortedTransactions {
    /// `(first offset, producer id)`, the latest first, so the next one is at the end.
    pending: Vec<(i64, i64)>,
    /// Producers inside an aborted transaction at the current batch.
    aborting: std::collections::HashSet<i64>,
}

impl AbortedTransactions {
    /// From a fetch response's `(producer id, first offset)` pairs.
    pub fn new(aborted: impl IntoIterator<Item = (i64, i64)>) -> Self {
        let mut pending: Vec<(i64, i64)> = aborted.into_iter().map(|(pid, first)| (first, pid)).collect();
        pending.sort_unstable_by(|a, b| b.cmp(a));
        Self { pending, aborting: std::collections::HashSet::new() }
    }

    /// Whether `batch` is to be skipped; an abort marker ends its producer's skipping.
    fn skips(&mut self, batch: &crate::record::RecordBatch<'_>) -> bool {
        if batch.producer_id() < 0 {
            return false;
        }
        while let Some(&(first, pid)) = self.pending.last() {
            if first > batch.last_offset() {
                break;
            }
            self.aborting.insert(pid);
            self.pending.pop();
        }
        if batch.is_control() {
            if crate::log::producer_state::TxnMarker::decode(batch).is_some_and(|m| !m.commit) {
                self.aborting.remove(&batch.producer_id());
            }
            return true;
        }
        batch.is_transactional() && self.aborting.contains(&batch.producer_id())
    }
}

/// As [`decode_records`], leaving out the records of `aborted` transactions
/// (read_committed) when given.
///
/// # Errors
/// As [`decode_records`].
pub fn decode_committed(
    topic: &Arc<str>,
    partition: i32,
    position: i64,
    bytes: &Bytes,
    mut aborted: Option<&mut AbortedTransactions>,
) -> Result<(Vec<ConsumerRecord>, i64), ClientError> {
    let invalid = |e: &dyn std::fmt::Display| ClientError::InvalidRecord { message: e.to_string() };
    let mut records = Vec::new();
    let mut next = position;
    for batch in BatchIter::new(bytes) {
        let Ok(batch) = batch else { break }; // a partial batch at the end of a response
        if aborted.as_mut().is_some_and(|a| a.skips(&batch)) || batch.is_control() {
            next = next.max(batch.next_offset());
            continue;
        }
        // Keys and values are slices of one buffer, never copied: the fetch response
        // itself, or the batch's decompressed records.
        let payload = &batch.as_bytes()[crate::record::BATCH_HEADER_BYTES..];
        let buffer = match batch.compression().map_err(|e| invalid(&e))? {
            crate::record::Compression::None => bytes.slice_ref(payload),
            codec => Bytes::from(codec.decompress(payload, 64 << 20).map_err(|e| invalid(&e))?),
        };
        let decoded = crate::record::Records::new(
            std::borrow::Cow::Borrowed(&buffer[..]),
            batch.base_offset(),
            batch.base_timestamp(),
            batch.records_count(),
        );
        for record in decoded.iter() {
            let record = record.map_err(|e| invalid(&e))?;
            if record.offset < position {
                continue; // a batch starts before the position: skip what was read
            }
            records.push(ConsumerRecord {
                topic: Arc::clone(topic),
                partition,
                offset: record.offset,
                timestamp: record.timestamp,
                key: record.key.map(|k| buffer.slice_ref(k)),
                value: record.value.map(|v| buffer.slice_ref(v)),
                headers: record
                    .headers
                    .iter()
                    .map(|h| (String::from_utf8_lossy(h.key).into_owned(), h.value.map(|v| buffer.slice_ref(v))))
                    .collect(),
            });
        }
        next = next.max(batch.next_offset());
    }
    Ok((records, next))
}
