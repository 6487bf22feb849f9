//! The producer: records are batched per partition (`batch.size`, `linger.ms`),
//! compressed, and sent with the chosen acks; idempotent by default, so retries never
//! duplicate a record.
//!
//! ```text
//!  send ──> accumulator (one lock): the record is appended to its partition's open batch,
//!           a full batch is sealed with its sequence numbers; the caller gets a future on
//!           the batch's outcome
//!  driver task ──> seals lingered batches, sends ready ones: one Produce request per round,
//!           up to MAX_IN_FLIGHT pipelined; completes outcomes, retries, returns space
//! ```
//!
//! As in the Java client's record accumulator, `send` appends in the caller's task: no
//! channel and no task wake-up per record, only per batch. The space for unacknowledged
//! records is bounded, so a producer faster than the broker waits in `send`. The broker
//! handles a connection's requests in order, so a partition's batches land in order. A
//! batch that fails with a retriable error is sent again with the same sequence numbers,
//! which the broker uses to drop duplicates.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{InitProducerIdRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};

use super::ClientError;
use super::cluster::ClusterView;
use super::connection::{Connection, MAX_IN_FLIGHT};
use super::partitioner::partition_for_key;
use super::transaction::{GroupMetadata, TxnCoordinator, is_fenced};
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
    /// `retries` for retriable errors (Kafka's default: unbounded, within
    /// `delivery.timeout.ms`).
    pub retries: u32,
    /// `retry.backoff.ms`: the pause before a failed batch is sent again, so a leader
    /// change is retried against fresh metadata rather than hammered.
    pub retry_backoff: Duration,
    /// `delivery.timeout.ms`: how long a batch may take, retries included, before it fails.
    pub delivery_timeout: Duration,
    /// Records sent and not yet acknowledged before `send` waits (backpressure).
    pub queue_records: usize,
    /// `transactional.id`: makes the producer transactional (and idempotent). Records are
    /// sent only inside [`Producer::begin_transaction`] ... [`Producer::commit_transaction`].
    pub transactional_id: Option<String>,
    /// `transaction.timeout.ms`: the coordinator aborts a transaction open longer.
    pub transaction_timeout: Duration,
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
            retries: u32::MAX,
            retry_backoff: Duration::from_millis(100),
            delivery_timeout: Duration::from_secs(120),
            queue_records: 100_000,
            transactional_id: None,
            transaction_timeout: Duration::from_secs(60),
        }
    }
}

/// A record to send, for [`Producer::send_record`].
#[derive(Debug, Clone, Default)]
pub struct ProducerRecord<'a> {
    pub topic: &'a str,
    /// The key's murmur2 partition (or a sticky one without a key) when `None`.
    pub partition: Option<i32>,
    /// The record's `CreateTime`; now when `None`.
    pub timestamp: Option<i64>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// Where a record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMetadata {
    pub partition: i32,
    /// -1 with acks=0, where the broker says nothing.
    pub offset: i64,
}

/// What became of a batch: its base offset, or why it failed. Shared by the futures of
/// all its records.
#[derive(Debug)]
struct BatchOutcome {
    state: Mutex<Outcome>,
}

#[derive(Debug)]
enum Outcome {
    Pending(Vec<Waker>),
    Done(Result<i64, ClientError>),
}

impl BatchOutcome {
    fn new() -> Arc<Self> {
        Arc::new(Self { state: Mutex::new(Outcome::Pending(Vec::new())) })
    }

    /// Settles the outcome once; later calls change nothing.
    fn complete(&self, result: Result<i64, ClientError>) {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Outcome::Pending(wakers) = &mut *state else { return };
        let wakers = std::mem::take(wakers);
        *state = Outcome::Done(result);
        drop(state);
        wakers.into_iter().for_each(Waker::wake);
    }
}

/// Resolves when the record is acknowledged (or has failed).
#[derive(Debug)]
pub struct DeliveryFuture {
    outcome: Arc<BatchOutcome>,
    /// The record's place in its batch.
    index: i64,
    partition: i32,
}

impl DeliveryFuture {
    /// Whether the record is acknowledged or has failed: awaiting it will not wait.
    pub fn is_settled(&self) -> bool {
        matches!(*self.outcome.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner), Outcome::Done(_))
    }
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata, ClientError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.outcome.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match &mut *state {
            Outcome::Done(Ok(base)) => {
                let offset = if *base < 0 { -1 } else { *base + self.index };
                Poll::Ready(Ok(RecordMetadata { partition: self.partition, offset }))
            }
            Outcome::Done(Err(error)) => Poll::Ready(Err(error.clone())),
            Outcome::Pending(wakers) => {
                if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

/// A producer. Share it behind an `Arc`: `send` takes `&self`. Dropping it abandons what
/// is not yet acknowledged (those futures fail with [`ClientError::Closed`]); call
/// [`Producer::flush`] first.
pub struct Producer {
    shared: Arc<Shared>,
    driver: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").field("bootstrap", &self.shared.config.bootstrap).finish()
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// What `send` and the driver share.
struct Shared {
    config: ProducerConfig,
    /// Partition leaders and a connection per broker.
    cluster: ClusterView,
    accumulator: Mutex<Accumulator>,
    /// Wakes the driver: a batch was sealed or opened (its linger starts), or a flush.
    wake: Notify,
    /// One permit per record that may be sent and not yet acknowledged.
    space: Semaphore,
    /// The transaction coordinator, for a transactional producer.
    coordinator: Option<TxnCoordinator>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Accumulator> {
        self.accumulator.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Producer {
    /// Connects to the bootstrap broker and (if idempotent) obtains a producer id. A
    /// transactional producer gets its id from its transaction coordinator, which fences
    /// every earlier producer of the same `transactional.id` and aborts what it left open
    /// (Kafka's `initTransactions`).
    ///
    /// # Errors
    /// Connection failures, or a broker refusing InitProducerId.
    pub async fn connect(config: ProducerConfig) -> Result<Self, ClientError> {
        let cluster = ClusterView::new(&config.bootstrap, &config.client_id);
        let connection = cluster.any_connection().await?;
        let coordinator =
            config.transactional_id.as_deref().map(|id| TxnCoordinator::new(id, config.transaction_timeout));
        let (producer_id, epoch) = if let Some(coordinator) = &coordinator {
            coordinator.init_producer_id(&cluster).await?
        } else if config.idempotent {
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
        let space = Semaphore::new(config.queue_records.clamp(1, Semaphore::MAX_PERMITS));
        let transaction = coordinator.as_ref().map(|_| TxnState::default());
        let accumulator = Accumulator { producer_id, epoch, topics: HashMap::new(), flushes: Vec::new(), transaction };
        let shared = Arc::new(Shared {
            config,
            cluster,
            accumulator: Mutex::new(accumulator),
            wake: Notify::new(),
            space,
            coordinator,
        });
        let (completions_tx, completions) = mpsc::unbounded_channel();
        let driver = Driver { shared: Arc::clone(&shared), completions_tx };
        let task = tokio::spawn(driver.run(completions));
        Ok(Self { shared, driver: task })
    }

    /// Sends a record; the returned future resolves when it is acknowledged. Records with
    /// a key go to the key's murmur2 partition, records without one to a sticky partition
    /// that moves on when its batch fills (KIP-480).
    ///
    /// # Errors
    /// [`ClientError::UnknownTopic`] (or a connection error) when the topic's partitions
    /// cannot be learnt; [`ClientError::Closed`] if the producer has stopped.
    ///
    /// # Cancel safety
    /// Cancel-safe: a record is either appended or not.
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
    /// As [`Self::send`], and [`ClientError::InvalidRecord`] for a partition the topic
    /// does not have.
    pub async fn send_to(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<Bytes>,
        value: Option<Bytes>,
        headers: Vec<(String, Option<Bytes>)>,
    ) -> Result<DeliveryFuture, ClientError> {
        self.send_record(ProducerRecord { topic, partition, timestamp: None, key, value, headers }).await
    }

    /// Sends a record with everything a caller may choose: partition and timestamp
    /// (`CreateTime`; the current time when `None`). A stream processor uses it to keep
    /// a record's event time on the way out.
    ///
    /// # Errors
    /// As [`Self::send_to`].
    pub async fn send_record(&self, record: ProducerRecord<'_>) -> Result<DeliveryFuture, ClientError> {
        let ProducerRecord { topic, partition, timestamp, key, value, headers } = record;
        let permit = self.shared.space.acquire().await.map_err(|_| ClientError::Closed)?;
        let timestamp = timestamp.unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
        });
        let headers: Vec<(&[u8], Option<&[u8]>)> = headers.iter().map(|(k, v)| (k.as_bytes(), v.as_deref())).collect();
        let record = NewRecord { timestamp, key: key.as_deref(), value: value.as_deref(), headers: &headers };
        loop {
            let appended = self.shared.lock().append(&self.shared.config, topic, partition, &record);
            match appended {
                Some(Ok((delivery, wake))) => {
                    // Given back by the driver when the record's batch is settled.
                    permit.forget();
                    if wake {
                        self.shared.wake.notify_one();
                    }
                    return Ok(delivery);
                }
                Some(Err(error)) => return Err(error),
                None => {
                    // A topic not seen before: learn its partitions, outside the lock.
                    let partitions = self.shared.cluster.partition_count(topic).await?.max(1);
                    self.shared.lock().topics.entry(topic.to_string()).or_insert_with(|| TopicState {
                        partitions,
                        sticky: None,
                        // One batch in flight until the partition's first is acknowledged: a
                        // leader accepts any first sequence from a producer it does not know,
                        // so a later batch landing first (its predecessor refused by a broker
                        // not yet leading) would leave the first out of order for good.
                        batches: (0..partitions)
                            .map(|_| PartitionState { recovering: true, ..PartitionState::default() })
                            .collect(),
                    });
                }
            }
        }
    }

    /// Sends everything appended so far now and waits until all of it is acknowledged or
    /// failed.
    ///
    /// # Errors
    /// [`ClientError::Closed`] if the producer's driver has stopped.
    pub async fn flush(&self) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        self.shared.lock().flushes.push(tx);
        self.shared.wake.notify_one();
        rx.await.map_err(|_| ClientError::Closed)
    }

    /// The coordinator of a transactional producer.
    fn coordinator(&self) -> Result<&TxnCoordinator, ClientError> {
        self.shared.coordinator.as_ref().ok_or(ClientError::Transaction { message: "no transactional.id is set" })
    }

    fn producer(&self) -> (i64, i16) {
        let accumulator = self.shared.lock();
        (accumulator.producer_id, accumulator.epoch)
    }

    /// Opens a transaction: records sent from now on, and offsets given to
    /// [`Self::send_offsets_to_transaction`], are committed or aborted together.
    ///
    /// # Errors
    /// [`ClientError::Transaction`] when the producer is not transactional or a
    /// transaction is already open; the error that fenced the producer.
    pub fn begin_transaction(&self) -> Result<(), ClientError> {
        self.coordinator()?;
        let mut accumulator = self.shared.lock();
        let txn = accumulator.transaction.as_mut().expect("a transactional producer has a transaction state");
        if let Some(fatal) = &txn.fatal {
            return Err(fatal.clone());
        }
        if txn.open {
            return Err(ClientError::Transaction { message: "a transaction is already open" });
        }
        txn.open = true;
        Ok(())
    }

    /// Commits a consumer group's offsets (the next record to read of each partition)
    /// inside the open transaction, so they take effect exactly when its records do:
    /// Kafka's `sendOffsetsToTransaction`. `group` is the consumer's
    /// [`super::GroupConsumer::group_metadata`], which lets the group coordinator refuse
    /// a member that has been replaced.
    ///
    /// # Errors
    /// No open transaction; the coordinators refusing (a fenced producer, or a stale
    /// generation, after which the transaction must be aborted).
    pub async fn send_offsets_to_transaction(
        &self,
        offsets: &[(String, i32, i64)],
        group: &GroupMetadata,
    ) -> Result<(), ClientError> {
        let coordinator = self.coordinator()?;
        self.shared.lock().transaction.as_ref().expect("transaction state").check_sendable()?;
        if offsets.is_empty() {
            return Ok(());
        }
        let result = coordinator.send_offsets(&self.shared.cluster, self.producer(), offsets, group).await;
        let mut accumulator = self.shared.lock();
        let txn = accumulator.transaction.as_mut().expect("transaction state");
        match result {
            Ok(()) => {
                txn.started = true;
                Ok(())
            }
            // Even when AddOffsetsToTxn went through and only TxnOffsetCommit failed, the
            // transaction is aborted for sure: the failure makes the abort take a new
            // epoch, which aborts whatever the coordinator holds open.
            Err(error) => {
                txn.fail(&error);
                Err(error)
            }
        }
    }

    /// Ends the open transaction's sending: no record is taken from now on, and what was
    /// taken is sent and acknowledged (or failed). Returns whether the coordinator knows
    /// the transaction and what failed in it.
    async fn finish_sending(&self) -> Result<(bool, Option<ClientError>), ClientError> {
        {
            let mut accumulator = self.shared.lock();
            let txn = accumulator.transaction.as_mut().expect("transaction state");
            txn.check_open()?;
            txn.ending = true;
        }
        let flushed = self.flush().await;
        let mut accumulator = self.shared.lock();
        let txn = accumulator.transaction.as_mut().expect("transaction state");
        if let Some(error) = flushed.err().or_else(|| txn.fatal.clone()) {
            txn.ending = false;
            return Err(error);
        }
        Ok((txn.started, txn.abortable.clone()))
    }

    /// Sends what is left of the transaction, waits until all of it is acknowledged, and
    /// commits it (EndTxn): its records and offsets become visible to read_committed
    /// consumers together. No record is taken while it commits.
    ///
    /// # Errors
    /// No open transaction; a record of the transaction that failed (then call
    /// [`Self::abort_transaction`]); the coordinator refusing, or unreachable (then the
    /// commit may be retried: the coordinator takes the same EndTxn again).
    pub async fn commit_transaction(&self) -> Result<(), ClientError> {
        let coordinator = self.coordinator()?;
        let (started, failed) = self.finish_sending().await?;
        if let Some(error) = failed {
            self.shared.lock().transaction.as_mut().expect("transaction state").ending = false;
            return Err(error);
        }
        if started && let Err(error) = coordinator.end(&self.shared.cluster, self.producer(), true).await {
            let mut accumulator = self.shared.lock();
            let txn = accumulator.transaction.as_mut().expect("transaction state");
            txn.ending = false;
            if !is_retriable(&error) {
                txn.fail(&error);
            }
            return Err(error);
        }
        self.shared.lock().end_transaction();
        Ok(())
    }

    /// Aborts the open transaction: what was sent is written and then marked aborted, so
    /// no read_committed consumer ever sees it. After a record of the transaction failed,
    /// the producer also takes a new epoch, so that its sequence numbers start again.
    ///
    /// # Errors
    /// No open transaction; a fenced producer; the coordinator unreachable.
    pub async fn abort_transaction(&self) -> Result<(), ClientError> {
        let coordinator = self.coordinator()?;
        // Batches already sealed carry sequence numbers the partitions expect: they go out
        // and are aborted with the rest, rather than leaving a gap in the sequence.
        let (started, failed) = self.finish_sending().await?;
        if started && let Err(error) = coordinator.end(&self.shared.cluster, self.producer(), false).await {
            let mut accumulator = self.shared.lock();
            let txn = accumulator.transaction.as_mut().expect("transaction state");
            txn.ending = false;
            txn.fail(&error);
            return Err(error);
        }
        if failed.is_some() {
            let (producer_id, epoch) = coordinator.init_producer_id(&self.shared.cluster).await?;
            self.shared.lock().restart_sequences(producer_id, epoch);
        }
        self.shared.lock().end_transaction();
        Ok(())
    }
}

/// A transactional producer's state, beside its batches.
#[derive(Debug, Default)]
struct TxnState {
    /// Between `begin_transaction` and the end of its commit or abort.
    open: bool,
    /// A partition or the offsets were added: the coordinator knows the transaction.
    started: bool,
    /// What went wrong in this transaction: it can only be aborted.
    abortable: Option<ClientError>,
    /// The producer was fenced: nothing more can be done with it.
    fatal: Option<ClientError>,
    /// Being committed or aborted: no more records.
    ending: bool,
}

impl TxnState {
    fn check_open(&self) -> Result<(), ClientError> {
        if let Some(fatal) = &self.fatal {
            return Err(fatal.clone());
        }
        if !self.open {
            return Err(ClientError::Transaction { message: "no transaction is open" });
        }
        Ok(())
    }

    /// Records may be added: a transaction is open, is not ending, and nothing has
    /// failed in it.
    fn check_sendable(&self) -> Result<(), ClientError> {
        self.check_open()?;
        if self.ending {
            return Err(ClientError::Transaction { message: "the transaction is being committed or aborted" });
        }
        match &self.abortable {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }

    /// Notes a failure: a fenced producer is done for; anything else aborts the
    /// transaction.
    fn fail(&mut self, error: &ClientError) {
        if is_fenced(error) {
            self.fatal.get_or_insert_with(|| error.clone());
        } else {
            self.abortable.get_or_insert_with(|| error.clone());
        }
    }
}

/// A batch being filled.
struct Batch {
    builder: BatchBuilder,
    outcome: Arc<BatchOutcome>,
    records: usize,
    bytes: usize,
    opened: Instant,
}

/// A built batch: its bytes are fixed (sequence numbers included) so a retry resends
/// exactly the same batch. Dropped unsettled (the producer went away), it fails its
/// records with [`ClientError::Closed`].
struct Sealed {
    bytes: Bytes,
    outcome: Arc<BatchOutcome>,
    records: usize,
    attempts: u32,
    sealed_at: Instant,
    /// Its place among the partition's batches: a retry goes back to this place.
    order: u64,
}

impl Drop for Sealed {
    fn drop(&mut self) {
        self.outcome.complete(Err(ClientError::Closed));
    }
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
    /// After a failure, nothing is sent before this (`retry.backoff.ms`).
    retry_after: Option<Instant>,
    /// The next sealed batch's `order`.
    next_order: u64,
    /// Added to the open transaction (transactional producers send only then).
    in_transaction: bool,
}

impl PartitionState {
    /// Closes the open batch: sequence numbers are fixed now, for good. Returns the
    /// records of a batch that could not be built (their space is free again).
    fn seal(&mut self, producer_id: i64, epoch: i16, transactional: bool) -> usize {
        let Some(batch) = self.open.take() else { return 0 };
        let mut builder = batch.builder.transactional(transactional);
        if producer_id >= 0 {
            builder = builder.producer(producer_id, epoch, self.next_sequence);
            self.next_sequence = self.next_sequence.wrapping_add(batch.records as i32) & i32::MAX;
        }
        match builder.build() {
            Ok(bytes) => {
                self.queued.push_back(Sealed {
                    bytes: Bytes::from(bytes),
                    outcome: batch.outcome,
                    records: batch.records,
                    attempts: 0,
                    sealed_at: Instant::now(),
                    order: self.next_order,
                });
                self.next_order += 1;
                0
            }
            Err(error) => {
                batch.outcome.complete(Err(ClientError::InvalidRecord { message: error.to_string() }));
                batch.records
            }
        }
    }
}

/// What the producer keeps per topic, found with one lookup per record.
struct TopicState {
    /// The partition count, from Metadata when the topic was first used.
    partitions: i32,
    /// The sticky partition for records without a key (KIP-480).
    sticky: Option<i32>,
    /// By partition.
    batches: Vec<PartitionState>,
}

/// Every open and sealed batch, behind the producer's one lock.
struct Accumulator {
    producer_id: i64,
    epoch: i16,
    topics: HashMap<String, TopicState>,
    /// Callers of `flush` waiting for the producer to be idle.
    flushes: Vec<oneshot::Sender<()>>,
    /// For a transactional producer.
    transaction: Option<TxnState>,
}

impl Drop for Accumulator {
    fn drop(&mut self) {
        // Open batches fail their records; sealed ones do so as they are dropped.
        for state in self.topics.values().flat_map(|t| t.batches.iter()) {
            if let Some(batch) = &state.open {
                batch.outcome.complete(Err(ClientError::Closed));
            }
        }
    }
}

impl Accumulator {
    /// After a commit or abort: no partition is in a transaction.
    fn end_transaction(&mut self) {
        for state in self.topics.values_mut().flat_map(|t| t.batches.iter_mut()) {
            state.in_transaction = false;
        }
        if let Some(txn) = self.transaction.as_mut() {
            *txn = TxnState { fatal: txn.fatal.take(), ..TxnState::default() };
        }
    }

    /// A new producer epoch: every partition's sequence starts again at 0, with one batch
    /// in flight until the first is acknowledged.
    fn restart_sequences(&mut self, producer_id: i64, epoch: i16) {
        self.producer_id = producer_id;
        self.epoch = epoch;
        for state in self.topics.values_mut().flat_map(|t| t.batches.iter_mut()) {
            state.next_sequence = 0;
            state.recovering = true;
        }
    }

    /// Partitions with batches to send that are not yet in the open transaction.
    fn partitions_to_add(&self) -> Vec<(String, i32)> {
        if self.transaction.is_none() {
            return Vec::new();
        }
        let mut wanted = Vec::new();
        for (topic, t) in &self.topics {
            for (partition, state) in t.batches.iter().enumerate() {
                if !state.in_transaction && !state.queued.is_empty() {
                    wanted.push((topic.clone(), partition as i32));
                }
            }
        }
        wanted
    }

    /// Appends a record to its partition's open batch. `None` when the topic is not known
    /// yet; otherwise the record's future and whether the driver must wake (a batch was
    /// opened, so a linger deadline starts, or sealed, so it can go).
    fn append(
        &mut self,
        config: &ProducerConfig,
        topic: &str,
        partition: Option<i32>,
        record: &NewRecord<'_>,
    ) -> Option<Result<(DeliveryFuture, bool), ClientError>> {
        let (producer_id, epoch, transactional) = (self.producer_id, self.epoch, self.transaction.is_some());
        // Checked under the lock that appends, so no record slips in while a transaction
        // commits.
        if let Some(Err(error)) = self.transaction.as_ref().map(TxnState::check_sendable) {
            return Some(Err(error));
        }
        let t = self.topics.get_mut(topic)?;
        let partitions = t.partitions;
        let keyless = record.key.is_none() && partition.is_none();
        let partition = match (partition, record.key) {
            (Some(p), _) if (0..partitions).contains(&p) => p,
            (Some(p), _) => {
                return Some(Err(ClientError::InvalidRecord { message: format!("partition {p} out of range") }));
            }
            (None, Some(key)) => partition_for_key(key, partitions),
            (None, None) => *t.sticky.get_or_insert_with(|| rand_partition(partitions)),
        };
        let record_bytes = record.key.map_or(0, <[u8]>::len) + record.value.map_or(0, <[u8]>::len) + 32;
        let state = &mut t.batches[partition as usize];
        let opened = state.open.is_none();
        let batch = state.open.get_or_insert_with(|| Batch {
            // Room for the whole batch up front (the record that fills it may overshoot):
            // growing a 1 MiB batch by doubling copies it about twice more.
            builder: BatchBuilder::new(config.compression).with_capacity(config.batch_bytes + record_bytes),
            outcome: BatchOutcome::new(),
            records: 0,
            bytes: 0,
            opened: Instant::now(),
        });
        batch.builder.append(*record);
        let delivery = DeliveryFuture { outcome: Arc::clone(&batch.outcome), index: batch.records as i64, partition };
        batch.records += 1;
        batch.bytes += record_bytes;
        let full = batch.bytes >= config.batch_bytes;
        if full {
            state.seal(producer_id, epoch, transactional);
            // The sticky partition moves on when its batch fills (KIP-480).
            if keyless {
                t.sticky = Some(rand_partition(partitions));
            }
        }
        Some(Ok((delivery, opened || full)))
    }

    fn partition_states(&self) -> impl Iterator<Item = &PartitionState> {
        self.topics.values().flat_map(|t| t.batches.iter())
    }

    fn is_idle(&self) -> bool {
        self.partition_states().all(|p| p.open.is_none() && p.queued.is_empty() && p.in_flight == 0)
    }

    fn next_linger_deadline(&self, linger: Duration) -> Option<Instant> {
        let lingers = self.partition_states().filter_map(|p| p.open.as_ref().map(|b| b.opened + linger));
        let retries = self.partition_states().filter(|p| !p.queued.is_empty()).filter_map(|p| p.retry_after);
        lingers.chain(retries).min()
    }

    /// Seals lingered (or, when flushing, all) open batches; then takes what may be sent
    /// now: one batch per partition per request (a response answers each partition once),
    /// as many requests as the partitions' in-flight limits allow. Returns the requests
    /// and the records of batches that could not be built.
    fn take_ready(&mut self, linger: Duration) -> (Vec<RequestBatches>, usize) {
        let (producer_id, epoch) = (self.producer_id, self.epoch);
        let transactional = self.transaction.is_some();
        let flushing = !self.flushes.is_empty();
        let now = Instant::now();
        let mut freed = 0;
        for state in self.topics.values_mut().flat_map(|t| t.batches.iter_mut()) {
            if state.open.as_ref().is_some_and(|b| flushing || now >= b.opened + linger) {
                freed += state.seal(producer_id, epoch, transactional);
            }
        }
        let mut requests = Vec::new();
        loop {
            let mut request: RequestBatches = HashMap::new();
            for (topic, t) in &mut self.topics {
                for (partition, state) in t.batches.iter_mut().enumerate() {
                    let limit = if state.recovering { 1 } else { MAX_IN_FLIGHT };
                    if state.retry_after.is_some_and(|at| now < at) || (transactional && !state.in_transaction) {
                        continue;
                    }
                    if state.in_flight < limit
                        && let Some(sealed) = state.queued.pop_front()
                    {
                        state.in_flight += 1;
                        request.entry(topic.clone()).or_default().push((partition as i32, sealed));
                    }
                }
            }
            if request.is_empty() {
                return (requests, freed);
            }
            requests.push(request);
        }
    }
}

/// One Produce request's batches: by topic, `(partition, batch)`.
type RequestBatches = HashMap<String, Vec<(i32, Sealed)>>;

/// The answer for one batch: its partition, the batch, and its base offset or error.
type BatchResult = ((String, i32), Sealed, Result<i64, ClientError>);

struct Completion {
    results: Vec<BatchResult>,
}

/// The task that sends sealed batches and settles their outcomes.
struct Driver {
    shared: Arc<Shared>,
    completions_tx: mpsc::UnboundedSender<Completion>,
}

impl Driver {
    async fn run(self, mut completions: mpsc::UnboundedReceiver<Completion>) {
        let linger = self.shared.config.linger;
        loop {
            let deadline = self.shared.lock().next_linger_deadline(linger);
            tokio::select! {
                () = self.shared.wake.notified() => {}
                Some(completion) = completions.recv() => self.complete(completion),
                () = sleep_until(deadline) => {}
            }
            let (requests, freed) = self.shared.lock().take_ready(linger);
            self.shared.space.add_permits(freed);
            for request in requests {
                for (leader, batches) in self.route(request).await {
                    // Written here, in order; answered concurrently.
                    let config = &self.shared.config;
                    let completion = match leader {
                        Ok(addr) => match self.shared.cluster.connect(&addr).await {
                            Ok(connection) => {
                                send_request(&connection, batches, config.acks, config.request_timeout).await
                            }
                            Err(error) => Box::pin(std::future::ready(fail_all(batches, error))),
                        },
                        Err(error) => Box::pin(std::future::ready(fail_all(batches, error))),
                    };
                    let completions = self.completions_tx.clone();
                    tokio::spawn(async move {
                        let _ = completions.send(completion.await);
                    });
                }
            }
            let to_add = self.shared.lock().partitions_to_add();
            if !to_add.is_empty() {
                self.add_partitions(to_add).await;
            }
            let mut accumulator = self.shared.lock();
            if !accumulator.flushes.is_empty() && accumulator.is_idle() {
                for tx in accumulator.flushes.drain(..) {
                    let _ = tx.send(());
                }
            }
        }
    }

    /// Adds partitions to the open transaction before their first batch goes out (as
    /// Kafka's clients do before KIP-890). When that fails, or the transaction has
    /// already failed, their batches fail with the error: the transaction must be aborted.
    async fn add_partitions(&self, partitions: Vec<(String, i32)>) {
        let coordinator = self.shared.coordinator.as_ref().expect("only transactional producers add partitions");
        let (producer, failed_before) = {
            let accumulator = self.shared.lock();
            let txn = accumulator.transaction.as_ref().expect("transaction state");
            ((accumulator.producer_id, accumulator.epoch), txn.fatal.clone().or(txn.abortable.clone()))
        };
        let result = match failed_before {
            Some(error) => Err(error),
            None => coordinator.add_partitions(&self.shared.cluster, producer, &partitions).await,
        };
        let mut failed = Vec::new();
        {
            let mut accumulator = self.shared.lock();
            for (topic, partition) in &partitions {
                let Some(state) =
                    accumulator.topics.get_mut(topic).and_then(|t| t.batches.get_mut(*partition as usize))
                else {
                    continue;
                };
                match result {
                    Ok(()) => state.in_transaction = true,
                    Err(_) => failed.extend(state.queued.drain(..)),
                }
            }
            let txn = accumulator.transaction.as_mut().expect("transaction state");
            match &result {
                Ok(()) => txn.started = true,
                Err(error) => txn.fail(error),
            }
        }
        if let Err(error) = result {
            for sealed in failed {
                sealed.outcome.complete(Err(error.clone()));
                self.shared.space.add_permits(sealed.records);
            }
        }
        // Their batches may go now (or the flush waiting on them may end).
        self.shared.wake.notify_one();
    }

    /// Splits a round's batches by the leader of their partitions: a request per leader,
    /// and the batches whose partition has no known leader failed as retriable.
    async fn route(&self, request: RequestBatches) -> Vec<(Result<String, ClientError>, RequestBatches)> {
        let mut routed: HashMap<String, RequestBatches> = HashMap::new();
        let mut leaderless: RequestBatches = HashMap::new();
        let mut failure = None;
        for (topic, batches) in request {
            for (partition, sealed) in batches {
                match self.shared.cluster.leader_address(&topic, partition).await {
                    Ok(Some(addr)) => {
                        routed.entry(addr).or_default().entry(topic.clone()).or_default().push((partition, sealed))
                    }
                    Ok(None) => leaderless.entry(topic.clone()).or_default().push((partition, sealed)),
                    Err(error) => {
                        failure = Some(error);
                        leaderless.entry(topic.clone()).or_default().push((partition, sealed));
                    }
                }
            }
        }
        let mut out: Vec<_> = routed.into_iter().map(|(addr, batches)| (Ok(addr), batches)).collect();
        if !leaderless.is_empty() {
            let error = failure
                .unwrap_or(ClientError::Broker { api: "Produce", code: ResponseError::LeaderNotAvailable.code() });
            out.push((Err(error), leaderless));
        }
        out
    }

    fn complete(&self, completion: Completion) {
        let mut settled = Vec::new();
        {
            let config = &self.shared.config;
            let mut accumulator = self.shared.lock();
            for ((topic, partition), mut sealed, result) in completion.results {
                let Some(state) = accumulator
                    .topics
                    .get_mut(&topic)
                    .and_then(|t| t.batches.get_mut(usize::try_from(partition).ok()?))
                else {
                    continue;
                };
                state.in_flight -= 1;
                match result {
                    Err(error)
                        if is_retriable(&error)
                            && sealed.attempts < config.retries
                            && sealed.sealed_at.elapsed() < config.delivery_timeout =>
                    {
                        if moves_leader(&error) {
                            self.shared.cluster.mark_stale();
                        }
                        sealed.attempts += 1;
                        state.recovering = true;
                        state.retry_after = Some(Instant::now() + config.retry_backoff);
                        // Back to its place: failures of several in-flight batches come
                        // back in any order, and the partition's order must be kept.
                        let at = state.queued.iter().position(|q| q.order > sealed.order).unwrap_or(state.queued.len());
                        state.queued.insert(at, sealed);
                    }
                    result => {
                        if result.is_ok() {
                            state.recovering = false;
                            state.retry_after = None;
                        }
                        settled.push((sealed, result));
                    }
                }
            }
        }
        // A failed record fails its transaction: it can only be aborted.
        if let Some(error) = settled.iter().find_map(|(_, r)| r.as_ref().err())
            && let Some(txn) = self.shared.lock().transaction.as_mut()
        {
            txn.fail(error);
        }
        // Outside the lock: waking the records' tasks, and giving their space back.
        for (sealed, result) in settled {
            sealed.outcome.complete(result);
            self.shared.space.add_permits(sealed.records);
        }
    }
}

fn is_retriable(error: &ClientError) -> bool {
    match error {
        ClientError::Disconnected { .. } | ClientError::Timeout { .. } | ClientError::Connect { .. } => true,
        ClientError::Broker { code, .. } => {
            *code == ResponseError::OutOfOrderSequenceNumber.code()
                || ResponseError::try_from_code(*code).is_some_and(|e| e.is_retriable())
        }
        _ => false,
    }
}

/// Errors after which the partition's leader may be elsewhere: ask for metadata again.
fn moves_leader(error: &ClientError) -> bool {
    match error {
        ClientError::Disconnected { .. } | ClientError::Connect { .. } | ClientError::Timeout { .. } => true,
        ClientError::Broker { code, .. } => [
            ResponseError::NotLeaderOrFollower,
            ResponseError::LeaderNotAvailable,
            ResponseError::UnknownTopicOrPartition,
            ResponseError::FencedLeaderEpoch,
            ResponseError::NotEnoughReplicas,
        ]
        .iter()
        .any(|e| e.code() == *code),
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
    request: RequestBatches,
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

fn fail_all(request: RequestBatches, error: ClientError) -> Completion {
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
