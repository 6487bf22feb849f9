//! The producer: records are batched per partition (`batch.size`, `linger.ms`),
//! compressed, and sent with the chosen acks; idempotent by default, so retries never
//! duplicate a record.
//!
//! One driver task owns every batch, sequence number and retry; `send` only queues the
//! record (the queue is bounded, so a producer faster than the broker waits). Ready batches
//! of all partitions go out together in one Produce request per round, with up to
//! [`MAX_IN_FLIGHT`] requests pipelined on the connection; the broker handles a
//! connection's requests in order, so a partition's batches land in order. A batch that
//! fails with a retriable error is sent again with the same sequence numbers, which the
//! broker uses to drop duplicates.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{InitProducerIdRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::{mpsc, oneshot};

use super::connection::{Connection, MAX_IN_FLIGHT};
use super::partitioner::partition_for_key;
use super::{ClientError, partition_counts};
use crate::record::{BatchBuilder, Compression, NewRecord};

/// Producer settings, with the Java client's names and defaults where they exist.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub bootstrap: String,
    pub client_id: String,
    /// `acks`: 0, 1 or -1 (all).
    pub acks: i16,
    /// `linger.ms`: how long a batch waits for more records.
    pub linger: Duration,
    /// `batch.size`: a partition's batch is sent once it holds this many bytes.
    pub batch_bytes: usize,
    pub compression: Compression,
    /// `enable.idempotence`.
    pub idempotent: bool,
    /// `request.timeout.ms`.
    pub request_timeout: Duration,
    /// `retries` for retriable errors.
    pub retries: u32,
    /// Records queued for the driver before `send` waits (backpressure).
    pub queue_records: usize,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            bootstrap: "127.0.0.1:9092".into(),
            client_id: "headwater-producer".into(),
            acks: -1,
            linger: Duration::from_millis(5),
            batch_bytes: 16 * 1024,
            compression: Compression::None,
            idempotent: true,
            request_timeout: Duration::from_secs(30),
            retries: 5,
            queue_records: 100_000,
        }
    }
}

/// Where a record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMetadata {
    pub partition: i32,
    /// -1 with acks=0, where the broker says nothing.
    pub offset: i64,
}

/// Resolves when the record is acknowledged (or has failed).
pub type DeliveryFuture = oneshot::Receiver<Result<RecordMetadata, ClientError>>;

/// Records taken from the queue between two sends.
const DRAIN_MAX: usize = 256;

struct Record {
    topic: String,
    partition: Option<i32>,
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: Vec<(String, Option<Bytes>)>,
    timestamp: i64,
    done: oneshot::Sender<Result<RecordMetadata, ClientError>>,
}

enum Command {
    Send(Record),
    Flush(oneshot::Sender<()>),
}

/// A producer. Cheap to share behind an `Arc`; dropping it flushes nothing (call
/// [`Producer::flush`] first).
#[derive(Debug)]
pub struct Producer {
    commands: mpsc::Sender<Command>,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record").field("topic", &self.topic).field("partition", &self.partition).finish()
    }
}

impl Producer {
    /// Connects to the bootstrap broker and (if idempotent) obtains a producer id.
    ///
    /// # Errors
    /// Connection failures, or a broker refusing InitProducerId.
    pub async fn connect(config: ProducerConfig) -> Result<Self, ClientError> {
        let connection = Connection::connect(&config.bootstrap, &config.client_id).await?;
        let (producer_id, epoch) = if config.idempotent {
            let response = connection
                .send(InitProducerIdRequest::default().with_transactional_id(None).with_transaction_timeout_ms(60_000))
                .await?;
            if response.error_code != 0 {
                return Err(ClientError::Broker { api: "InitProducerId", code: response.error_code });
            }
            (response.producer_id.0, response.producer_epoch)
        } else {
            (-1, -1)
        };
        let (commands, rx) = mpsc::channel(config.queue_records.max(1));
        let (completions_tx, completions) = mpsc::unbounded_channel();
        let driver = Driver {
            config,
            connection,
            producer_id,
            epoch,
            topics: HashMap::new(),
            completions_tx,
            flushes: Vec::new(),
        };
        let task = tokio::spawn(driver.run(rx, completions));
        Ok(Self { commands, driver: task })
    }

    /// Queues a record; the returned future resolves when it is acknowledged. A record
    /// without a key goes to the topic's current sticky partition.
    ///
    /// # Errors
    /// [`ClientError::Closed`] if the producer's driver has stopped.
    ///
    /// # Cancel safety
    /// Cancel-safe: a record is either queued or not.
    pub async fn send(
        &self,
        topic: &str,
        key: Option<Bytes>,
        value: Option<Bytes>,
        headers: Vec<(String, Option<Bytes>)>,
    ) -> Result<DeliveryFuture, ClientError> {
        self.send_to(topic, None, key, value, headers).await
    }

    /// As [`Self::send`], to an explicit partition.
    ///
    /// # Errors
    /// [`ClientError::Closed`] if the producer's driver has stopped.
    pub async fn send_to(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<Bytes>,
        value: Option<Bytes>,
        headers: Vec<(String, Option<Bytes>)>,
    ) -> Result<DeliveryFuture, ClientError> {
        let (done, rx) = oneshot::channel();
        let timestamp =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let record = Record { topic: topic.to_string(), partition, key, value, headers, timestamp, done };
        self.commands.send(Command::Send(record)).await.map_err(|_| ClientError::Closed)?;
        Ok(rx)
    }

    /// Sends everything queued now and waits until all of it is acknowledged or failed.
    ///
    /// # Errors
    /// [`ClientError::Closed`] if the producer's driver has stopped.
    pub async fn flush(&self) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Flush(tx)).await.map_err(|_| ClientError::Closed)?;
        rx.await.map_err(|_| ClientError::Closed)
    }
}

/// A batch being filled, or sent and waiting for its answer.
struct Batch {
    builder: BatchBuilder,
    waiters: Vec<oneshot::Sender<Result<RecordMetadata, ClientError>>>,
    bytes: usize,
    opened: Instant,
}

/// A built batch: its bytes are fixed (sequence numbers included) so a retry resends
/// exactly the same batch.
struct Sealed {
    bytes: Bytes,
    waiters: Vec<oneshot::Sender<Result<RecordMetadata, ClientError>>>,
    attempts: u32,
}

/// What the driver keeps per topic, found with one lookup per record.
struct TopicState {
    /// The partition count, from Metadata when the topic was first used.
    partitions: i32,
    /// The sticky partition for records without a key (KIP-480).
    sticky: Option<i32>,
    /// By partition.
    batches: Vec<PartitionState>,
}

#[derive(Default)]
struct PartitionState {
    open: Option<Batch>,
    /// Built and waiting to be sent, oldest first (retries go back to the front).
    queued: VecDeque<Sealed>,
    in_flight: usize,
    next_sequence: i32,
    /// A batch failed: send one at a time until it succeeds, to keep order.
    recovering: bool,
}

/// The answer for one batch: its partition, the batch, and its base offset or error.
type BatchResult = ((String, i32), Sealed, Result<i64, ClientError>);

struct Completion {
    results: Vec<BatchResult>,
}

struct Driver {
    config: ProducerConfig,
    connection: Arc<Connection>,
    producer_id: i64,
    epoch: i16,
    topics: HashMap<String, TopicState>,
    completions_tx: mpsc::UnboundedSender<Completion>,
    flushes: Vec<oneshot::Sender<()>>,
}

impl Driver {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut completions: mpsc::UnboundedReceiver<Completion>,
    ) {
        let mut flushing = false;
        loop {
            let linger = self.next_linger_deadline();
            tokio::select! {
                command = commands.recv() => {
                    let Some(command) = command else { return };
                    // Take more of what is queued before sending (fuller batches), but a
                    // bounded amount: a producer that keeps the queue full must not keep
                    // the driver from sending.
                    let mut next = Some(command);
                    let mut taken = 0;
                    while let Some(command) = next {
                        match command {
                            Command::Send(record) => self.append(record).await,
                            Command::Flush(tx) => {
                                self.flushes.push(tx);
                                flushing = true;
                            }
                        }
                        taken += 1;
                        next = if taken < DRAIN_MAX { commands.try_recv().ok() } else { None };
                    }
                }
                Some(completion) = completions.recv() => self.complete(completion),
                () = sleep_until(linger) => {}
            }
            self.send_ready(flushing).await;
            if flushing && self.is_idle() {
                for tx in self.flushes.drain(..) {
                    let _ = tx.send(());
                }
                flushing = false;
            }
        }
    }

    fn is_idle(&self) -> bool {
        self.partition_states().all(|p| p.open.is_none() && p.queued.is_empty() && p.in_flight == 0)
    }

    fn next_linger_deadline(&self) -> Option<Instant> {
        self.partition_states().filter_map(|p| p.open.as_ref().map(|b| b.opened + self.config.linger)).min()
    }

    fn partition_states(&self) -> impl Iterator<Item = &PartitionState> {
        self.topics.values().flat_map(|t| t.batches.iter())
    }

    async fn append(&mut self, record: Record) {
        if !self.topics.contains_key(&record.topic) {
            match partition_counts(&self.connection, std::slice::from_ref(&record.topic)).await {
                Ok(counts) => {
                    let n = counts.get(&record.topic).copied().unwrap_or(1).max(1);
                    let batches = (0..n).map(|_| PartitionState::default()).collect();
                    self.topics.insert(record.topic.clone(), TopicState { partitions: n, sticky: None, batches });
                }
                Err(error) => {
                    let _ = record.done.send(Err(error));
                    return;
                }
            }
        }
        let topic = self.topics.get_mut(&record.topic).expect("inserted above");
        let partitions = topic.partitions;
        let partition = match (record.partition, &record.key) {
            (Some(p), _) if (0..partitions).contains(&p) => p,
            (Some(p), _) => {
                let _ = record
                    .done
                    .send(Err(ClientError::InvalidRecord { message: format!("partition {p} out of range") }));
                return;
            }
            (None, Some(key)) => partition_for_key(key, partitions),
            (None, None) => *topic.sticky.get_or_insert_with(|| rand_partition(partitions)),
        };
        let state = &mut topic.batches[partition as usize];
        let size = record.key.as_ref().map_or(0, Bytes::len) + record.value.as_ref().map_or(0, Bytes::len) + 32;
        let open = state.open.get_or_insert_with(|| Batch {
            builder: BatchBuilder::new(self.config.compression),
            waiters: Vec::new(),
            bytes: 0,
            opened: Instant::now(),
        });
        let headers: Vec<(&[u8], Option<&[u8]>)> =
            record.headers.iter().map(|(k, v)| (k.as_bytes(), v.as_deref())).collect();
        open.builder.append(NewRecord {
            timestamp: record.timestamp,
            key: record.key.as_deref(),
            value: record.value.as_deref(),
            headers: &headers,
        });
        open.bytes += size;
        open.waiters.push(record.done);
        if open.bytes >= self.config.batch_bytes {
            self.seal(&record.topic, partition);
            // The sticky partition moves on when its batch fills (KIP-480).
            if record.key.is_none() && record.partition.is_none() {
                let topic = self.topics.get_mut(&record.topic).expect("inserted above");
                topic.sticky = Some(rand_partition(partitions));
            }
        }
    }

    /// Closes a partition's open batch: sequence numbers are fixed now, for good.
    fn seal(&mut self, topic: &str, partition: i32) {
        let Some(state) = partition_state(&mut self.topics, topic, partition) else { return };
        let Some(batch) = state.open.take() else { return };
        let count = batch.waiters.len() as i32;
        let mut builder = batch.builder;
        if self.producer_id >= 0 {
            builder = builder.producer(self.producer_id, self.epoch, state.next_sequence);
            state.next_sequence = state.next_sequence.wrapping_add(count) & i32::MAX;
        }
        match builder.build() {
            Ok(bytes) => {
                state.queued.push_back(Sealed { bytes: Bytes::from(bytes), waiters: batch.waiters, attempts: 0 })
            }
            Err(error) => {
                for waiter in batch.waiters {
                    let _ = waiter.send(Err(ClientError::InvalidRecord { message: error.to_string() }));
                }
            }
        }
    }

    /// Seals lingered (or, when flushing, all) open batches and sends what may be sent.
    async fn send_ready(&mut self, flushing: bool) {
        let now = Instant::now();
        let linger = self.config.linger;
        let lingered: Vec<(String, i32)> = self
            .topics
            .iter()
            .flat_map(|(topic, t)| t.batches.iter().enumerate().map(move |(p, state)| (topic, p as i32, state)))
            .filter(|(_, _, p)| p.open.as_ref().is_some_and(|b| flushing || now >= b.opened + linger))
            .map(|(topic, partition, _)| (topic.clone(), partition))
            .collect();
        for (topic, partition) in lingered {
            self.seal(&topic, partition);
        }
        // One batch per partition per request (a response answers each partition once);
        // as many requests as the partitions' in-flight limits allow.
        loop {
            let mut request: HashMap<String, Vec<(i32, Sealed)>> = HashMap::new();
            let states = self.topics.iter_mut().flat_map(|(topic, t)| {
                t.batches.iter_mut().enumerate().map(move |(p, state)| (topic, p as i32, state))
            });
            for (topic, partition, state) in states {
                let limit = if state.recovering { 1 } else { MAX_IN_FLIGHT };
                if state.in_flight < limit
                    && let Some(sealed) = state.queued.pop_front()
                {
                    state.in_flight += 1;
                    request.entry(topic.clone()).or_default().push((partition, sealed));
                }
            }
            if request.is_empty() {
                return;
            }
            // Written here, in order; answered concurrently.
            let completion =
                send_request(&self.connection, request, self.config.acks, self.config.request_timeout).await;
            let completions = self.completions_tx.clone();
            tokio::spawn(async move {
                let _ = completions.send(completion.await);
            });
        }
    }

    fn complete(&mut self, completion: Completion) {
        for ((topic, partition), mut sealed, result) in completion.results {
            let Some(state) = partition_state(&mut self.topics, &topic, partition) else { continue };
            state.in_flight -= 1;
            match result {
                Ok(base_offset) => {
                    state.recovering = false;
                    for (i, waiter) in sealed.waiters.into_iter().enumerate() {
                        let offset = if base_offset < 0 { -1 } else { base_offset + i as i64 };
                        let _ = waiter.send(Ok(RecordMetadata { partition, offset }));
                    }
                }
                Err(error) if is_retriable(&error) && sealed.attempts < self.config.retries => {
                    sealed.attempts += 1;
                    state.recovering = true;
                    // Back to the front: order within the partition is kept.
                    state.queued.push_front(sealed);
                }
                Err(error) => {
                    for waiter in sealed.waiters {
                        let _ = waiter.send(Err(error.clone()));
                    }
                }
            }
        }
    }
}

fn partition_state<'a>(
    topics: &'a mut HashMap<String, TopicState>,
    topic: &str,
    partition: i32,
) -> Option<&'a mut PartitionState> {
    topics.get_mut(topic)?.batches.get_mut(usize::try_from(partition).ok()?)
}

fn is_retriable(error: &ClientError) -> bool {
    match error {
        ClientError::Disconnected { .. } | ClientError::Timeout { .. } => true,
        ClientError::Broker { code, .. } => {
            *code == ResponseError::OutOfOrderSequenceNumber.code()
                || ResponseError::try_from_code(*code).is_some_and(|e| e.is_retriable())
        }
        _ => false,
    }
}

fn rand_partition(partitions: i32) -> i32 {
    (uuid::Uuid::new_v4().as_u128() % partitions.max(1) as u128) as i32
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// Writes one Produce request and returns a future that turns its answer into a
/// completion for every batch it carried.
async fn send_request(
    connection: &Connection,
    request: HashMap<String, Vec<(i32, Sealed)>>,
    acks: i16,
    timeout: Duration,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Completion> + Send>> {
    let topic_data = request
        .iter()
        .map(|(topic, batches)| {
            TopicProduceData::default().with_name(TopicName(StrBytes::from_string(topic.clone()))).with_partition_data(
                batches
                    .iter()
                    .map(|(p, sealed)| {
                        PartitionProduceData::default().with_index(*p).with_records(Some(sealed.bytes.clone()))
                    })
                    .collect(),
            )
        })
        .collect();
    // The batches go to the socket from the producer's buffers, not copied into the request.
    let records: Vec<Bytes> = request.values().flatten().map(|(_, sealed)| sealed.bytes.clone()).collect();
    let produce = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(timeout.as_millis() as i32)
        .with_topic_data(topic_data);
    if acks == 0 {
        let result = connection.send_without_response(produce, records).await;
        return Box::pin(async move {
            match result {
                Ok(()) => Completion {
                    results: request
                        .into_iter()
                        .flat_map(|(t, b)| b.into_iter().map(move |(p, s)| ((t.clone(), p), s, Ok(-1))))
                        .collect(),
                },
                Err(error) => fail_all(request, error),
            }
        });
    }
    let pending = match connection.begin_sharing(produce, records).await {
        Ok(pending) => pending,
        Err(error) => return Box::pin(async move { fail_all(request, error) }),
    };
    Box::pin(async move {
        let response = match tokio::time::timeout(timeout, pending).await {
            Err(_) => return fail_all(request, ClientError::Timeout { ms: timeout.as_millis() as u64 }),
            Ok(Err(error)) => return fail_all(request, error),
            Ok(Ok(response)) => response,
        };
        let mut answers: HashMap<(String, i32), (i16, i64)> = HashMap::new();
        for topic in response.responses {
            for p in topic.partition_responses {
                answers.insert((topic.name.to_string(), p.index), (p.error_code, p.base_offset));
            }
        }
        Completion {
            results: request
                .into_iter()
                .flat_map(|(topic, batches)| {
                    batches
                        .into_iter()
                        .map(|(p, sealed)| {
                            let result = match answers.get(&(topic.clone(), p)) {
                                Some((0, base)) => Ok(*base),
                                Some((code, _)) => Err(ClientError::Broker { api: "Produce", code: *code }),
                                None => Err(ClientError::Decode {
                                    api: "Produce",
                                    message: "partition missing from response".into(),
                                }),
                            };
                            ((topic.clone(), p), sealed, result)
                        })
                        .collect::<Vec<_>>()
                })
                .collect(),
        }
    })
}

fn fail_all(request: HashMap<String, Vec<(i32, Sealed)>>, error: ClientError) -> Completion {
    Completion {
        results: request
            .into_iter()
            .flat_map(|(topic, batches)| {
                let error = error.clone();
                batches.into_iter().map(move |(p, s)| ((topic.clone(), p), s, Err(error.clone())))
            })
            .collect(),
    }
}
