//! The transaction coordinator: drives each transactional id through its states on
//! requests and time, persists every transition to `__transaction_state` before it takes
//! effect, and writes the markers that end transactions in the data partitions.
//!
//! Concurrency follows Kafka's: a transition being written marks its id pending, and a
//! request that arrives meanwhile gets CONCURRENT_TRANSACTIONS (the client retries).
//! EndTxn is answered once PrepareCommit/PrepareAbort is durable; the markers and the
//! final Complete* record follow in the background, and a coordinator that takes over
//! (restart, or failover in a cluster) finishes whatever it loads in a Prepare state.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
use kafka_protocol::messages::{ProducerId, TopicName, WriteTxnMarkersRequest};
use kafka_protocol::protocol::StrBytes;

use super::metadata::{
    MAX_TRANSACTION_TIMEOUT_MS, TRANSACTION_STATE_PARTITIONS, TRANSACTION_STATE_TOPIC, TxnMetadata, TxnState,
    decode_key, encode_key, partition_for, topic_configs,
};
use crate::client::Connection;
use crate::group::{GroupCoordinator, OFFSETS_TOPIC};
use crate::log::producer_state::TxnMarker;
use crate::log::{AppendOrigin, Clock, Log, LogError, LogManager};
use crate::partition::{InternalLog, ReplicaError, ReplicaManager};
use crate::record::{BatchBuilder, BatchIter, Compression, NewRecord};

/// How often timeouts are checked and leadership followed.
const TICK: Duration = Duration::from_millis(250);
/// Backoff between attempts to write a marker whose partition is unavailable.
const MARKER_RETRY: Duration = Duration::from_millis(200);

type Code = i16;

#[derive(Debug)]
struct Slot {
    meta: TxnMetadata,
    /// A transition is being written.
    pending: bool,
    /// Markers are being written by a task.
    finishing: bool,
}

/// What a request decides, under the lock.
enum Decision {
    /// Persist this new state, then apply it.
    Write(TxnMetadata),
    /// Nothing to change; answer with the current state.
    Keep(TxnMetadata),
}

/// A transaction as DescribeTransactions and ListTransactions show it.
pub type TxnDescription = TxnMetadata;

/// Every transactional id this broker coordinates.
pub struct TransactionCoordinator {
    log: InternalLog,
    logs: Arc<LogManager>,
    replicas: Option<Arc<ReplicaManager>>,
    groups: Arc<GroupCoordinator>,
    clock: Arc<dyn Clock>,
    txns: Mutex<HashMap<String, Slot>>,
    /// `__transaction_state` partition -> the coordinator epoch it was loaded at (its
    /// leader epoch in a cluster; 0 on one broker).
    loaded: Mutex<HashMap<i32, i32>>,
    /// Connections to other brokers, for their markers.
    peers: tokio::sync::Mutex<HashMap<i32, Arc<Connection>>>,
    this: Weak<Self>,
}

impl std::fmt::Debug for TransactionCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionCoordinator").field("transactions", &self.txns.lock().map(|t| t.len())).finish()
    }
}

/// The code a transaction request gets when its state could not be written.
fn write_error_code(error: &ReplicaError) -> Code {
    match error {
        ReplicaError::NotLeader(_) | ReplicaError::FencedLeaderEpoch { .. } | ReplicaError::Log(_) => {
            ResponseError::NotCoordinator.code()
        }
        _ => ResponseError::CoordinatorNotAvailable.code(),
    }
}

impl TransactionCoordinator {
    /// Starts the coordinator and its ticker. On one broker it loads `__transaction_state`
    /// if it exists (finishing transactions a crash left in a Prepare state); in a
    /// cluster it loads the partitions this broker comes to lead.
    ///
    /// # Errors
    /// [`LogError`] if the existing topic cannot be read.
    pub fn start(
        logs: Arc<LogManager>,
        clock: Arc<dyn Clock>,
        replicas: Option<Arc<ReplicaManager>>,
        groups: Arc<GroupCoordinator>,
    ) -> Result<Arc<Self>, LogError> {
        let log = match &replicas {
            None => InternalLog::Local(Arc::clone(&logs)),
            Some(replicas) => InternalLog::Replicated(Arc::clone(replicas)),
        };
        let coordinator = Arc::new_cyclic(|this| Self {
            log,
            logs,
            replicas,
            groups,
            clock,
            txns: Mutex::new(HashMap::new()),
            loaded: Mutex::new(HashMap::new()),
            peers: tokio::sync::Mutex::new(HashMap::new()),
            this: this.clone(),
        });
        if coordinator.replicas.is_none() && coordinator.logs.topic(TRANSACTION_STATE_TOPIC).is_some() {
            coordinator.load_all_local()?;
        }
        let weak = Arc::downgrade(&coordinator);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(TICK);
            loop {
                interval.tick().await;
                let Some(coordinator) = weak.upgrade() else { return };
                coordinator.tick();
            }
        });
        Ok(coordinator)
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// One broker: creates `__transaction_state` on first use and loads it.
    ///
    /// # Errors
    /// [`LogError`] if it cannot be created or read.
    pub fn ensure_local_topic(&self) -> Result<(), LogError> {
        if self.replicas.is_some() || !self.loaded.lock().expect("loaded lock").is_empty() {
            return Ok(());
        }
        match self.logs.create_topic(TRANSACTION_STATE_TOPIC, TRANSACTION_STATE_PARTITIONS, topic_configs()) {
            Ok(()) | Err(LogError::TopicAlreadyExists { .. }) => {}
            Err(error) => return Err(error),
        }
        self.load_all_local()
    }

    fn load_all_local(&self) -> Result<(), LogError> {
        for partition in 0..TRANSACTION_STATE_PARTITIONS {
            let log = self.logs.get(TRANSACTION_STATE_TOPIC, partition)?;
            self.load_partition(partition, &log, 0)?;
        }
        Ok(())
    }

    /// Takes over the transactional ids of `partition` from its log, and finishes the
    /// transactions found deciding.
    fn load_partition(&self, partition: i32, log: &Log, coordinator_epoch: i32) -> Result<(), LogError> {
        let mut loaded: HashMap<String, TxnMetadata> = HashMap::new();
        let mut offset = log.log_start();
        while offset < log.log_end() {
            let read = log.read(offset, None, 1 << 20)?;
            if read.records.is_empty() {
                break;
            }
            for batch in BatchIter::new(&read.records) {
                let batch = batch.map_err(|source| LogError::InvalidRecords { source })?;
                offset = batch.next_offset();
                if batch.is_control() {
                    continue;
                }
                let records = batch.records(1 << 26).map_err(|source| LogError::InvalidRecords { source })?;
                for record in records.iter() {
                    let record = record.map_err(|source| LogError::InvalidRecords { source })?;
                    let Some(id) = record.key.and_then(decode_key) else { continue };
                    match record.value.and_then(|v| TxnMetadata::decode_value(&id, v)) {
                        Some(meta) => {
                            loaded.insert(id, meta);
                        }
                        None => {
                            loaded.remove(&id);
                        }
                    }
                }
            }
        }
        let deciding: Vec<TxnMetadata> = loaded.values().filter(|m| m.state.is_preparing()).cloned().collect();
        {
            let mut txns = self.txns.lock().expect("txns lock");
            txns.retain(|id, _| partition_for(id) != partition);
            for (id, meta) in loaded {
                txns.insert(id, Slot { meta, pending: false, finishing: false });
            }
        }
        self.loaded.lock().expect("loaded lock").insert(partition, coordinator_epoch);
        tracing::info!(partition, coordinator_epoch, deciding = deciding.len(), "loaded transaction state");
        for meta in deciding {
            self.spawn_finish(meta);
        }
        Ok(())
    }

    /// 0 when this broker coordinates `transactional_id`, else NOT_COORDINATOR or
    /// COORDINATOR_LOAD_IN_PROGRESS.
    pub fn owner_code(&self, transactional_id: &str) -> Code {
        let partition = partition_for(transactional_id);
        let loaded = self.loaded.lock().expect("loaded lock").get(&partition).copied();
        let Some(replicas) = &self.replicas else {
            return if loaded.is_some() { 0 } else { ResponseError::CoordinatorLoadInProgress.code() };
        };
        let Some(replica) = replicas.replica(TRANSACTION_STATE_TOPIC, partition) else {
            return ResponseError::NotCoordinator.code();
        };
        let status = replica.status();
        if !status.leading {
            return ResponseError::NotCoordinator.code();
        }
        match loaded {
            Some(epoch) if epoch == status.leader_epoch => 0,
            _ => ResponseError::CoordinatorLoadInProgress.code(),
        }
    }

    fn coordinator_epoch(&self, transactional_id: &str) -> Option<i32> {
        self.loaded.lock().expect("loaded lock").get(&partition_for(transactional_id)).copied()
    }

    /// In a cluster: loads the partitions this broker has come to lead, and forgets those
    /// it no longer leads.
    fn follow_leadership(&self) {
        let Some(replicas) = &self.replicas else { return };
        for partition in 0..TRANSACTION_STATE_PARTITIONS {
            let replica = replicas.replica(TRANSACTION_STATE_TOPIC, partition);
            let leading = replica.as_ref().map(|r| r.status()).filter(|s| s.leading).map(|s| s.leader_epoch);
            let loaded = self.loaded.lock().expect("loaded lock").get(&partition).copied();
            if leading == loaded {
                continue;
            }
            self.txns.lock().expect("txns lock").retain(|id, _| partition_for(id) != partition);
            self.loaded.lock().expect("loaded lock").remove(&partition);
            if let (Some(epoch), Some(replica)) = (leading, replica) {
                // Only what the in-sync replicas have is the coordinator's state.
                if replica.high_watermark() < replica.log.log_end() {
                    continue;
                }
                if let Err(error) = self.load_partition(partition, &replica.log, epoch) {
                    tracing::error!(partition, %error, "cannot load transaction state");
                }
            }
        }
    }

    fn tick(&self) {
        self.follow_leadership();
        let now = self.now();
        let expired: Vec<TxnMetadata> = {
            let txns = self.txns.lock().expect("txns lock");
            txns.values()
                .filter(|s| !s.pending && s.meta.state == TxnState::Ongoing)
                .filter(|s| now > s.meta.start_ms.saturating_add(i64::from(s.meta.timeout_ms)))
                .map(|s| s.meta.clone())
                .collect()
        };
        for meta in expired {
            if let Some(this) = self.this.upgrade() {
                tokio::spawn(async move { this.abort_timed_out(meta).await });
            }
        }
        // Deciding transactions whose marker task stopped (the partitions were unavailable
        // and this broker briefly lost coordination) are picked up again.
        let stalled: Vec<TxnMetadata> = {
            let txns = self.txns.lock().expect("txns lock");
            txns.values()
                .filter(|s| !s.pending && !s.finishing && s.meta.state.is_preparing())
                .map(|s| s.meta.clone())
                .collect()
        };
        for meta in stalled {
            self.spawn_finish(meta);
        }
    }

    /// Aborts a transaction past its `transaction.timeout.ms`, bumping the producer's epoch
    /// so that the producer, if it is still alive, is fenced.
    async fn abort_timed_out(&self, meta: TxnMetadata) {
        let id = meta.transactional_id.clone();
        let now = self.now();
        let result = self
            .update(&id, |current| match current {
                Some(m) if m.state == TxnState::Ongoing && m.producer_epoch == meta.producer_epoch => {
                    let mut next = m.clone();
                    next.producer_epoch = bump(m.producer_epoch);
                    next.state = TxnState::PrepareAbort;
                    next.last_update_ms = now;
                    Ok(Decision::Write(next))
                }
                Some(m) => Ok(Decision::Keep(m.clone())),
                None => Err(ResponseError::TransactionalIdNotFound.code()),
            })
            .await;
        if let Ok((next, true)) = result {
            tracing::info!(transactional_id = %id, timeout_ms = meta.timeout_ms, "aborting a timed-out transaction");
            self.spawn_finish(next);
        }
    }

    /// Runs `decide` on the id's current state under the lock; a `Write` is persisted
    /// (the id pending meanwhile) and then applied. Returns the resulting state and whether
    /// it was written.
    async fn update(
        &self,
        id: &str,
        decide: impl FnOnce(Option<&TxnMetadata>) -> Result<Decision, Code>,
    ) -> Result<(TxnMetadata, bool), Code> {
        let owner = self.owner_code(id);
        if owner != 0 {
            return Err(owner);
        }
        let next = {
            let mut txns = self.txns.lock().expect("txns lock");
            let slot = txns.get(id);
            if slot.is_some_and(|s| s.pending) {
                return Err(ResponseError::ConcurrentTransactions.code());
            }
            match decide(slot.map(|s| &s.meta))? {
                Decision::Keep(meta) => return Ok((meta, false)),
                Decision::Write(next) => {
                    match txns.get_mut(id) {
                        Some(slot) => slot.pending = true,
                        None => {
                            txns.insert(id.to_string(), Slot { meta: next.clone(), pending: true, finishing: false });
                        }
                    }
                    next
                }
            }
        };
        let written = self.persist(&next).await;
        let mut txns = self.txns.lock().expect("txns lock");
        match written {
            Ok(()) => {
                let slot = txns.entry(id.to_string()).or_insert_with(|| Slot {
                    meta: next.clone(),
                    pending: false,
                    finishing: false,
                });
                slot.meta = next.clone();
                slot.pending = false;
                Ok((next, true))
            }
            Err(code) => {
                // A new id whose first record failed is forgotten; an old one keeps its state.
                if let Some(slot) = txns.get_mut(id) {
                    slot.pending = false;
                    if slot.meta == next && next.producer_epoch == 0 && next.state == TxnState::Empty {
                        txns.remove(id);
                    }
                }
                Err(code)
            }
        }
    }

    async fn persist(&self, meta: &TxnMetadata) -> Result<(), Code> {
        let key = encode_key(&meta.transactional_id);
        let value = meta.encode_value();
        let mut builder = BatchBuilder::new(Compression::None);
        builder.append(NewRecord { timestamp: self.now(), key: Some(&key), value: Some(&value), headers: &[] });
        let batch = builder.build().map_err(|_| ResponseError::UnknownServerError.code())?;
        let partition = partition_for(&meta.transactional_id);
        self.log.append(TRANSACTION_STATE_TOPIC, partition, &batch, AppendOrigin::Client).await.map(|_| ()).map_err(
            |error| {
                tracing::warn!(transactional_id = %meta.transactional_id, %error, "writing transaction state failed");
                write_error_code(&error)
            },
        )
    }

    /// InitProducerId with a `transactional.id`: a producer id and a new epoch, fencing
    /// any older producer of the same id. An open transaction is aborted first (the caller
    /// gets CONCURRENT_TRANSACTIONS and retries).
    pub async fn init_producer_id(
        &self,
        id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        allocate: impl FnOnce() -> Result<i64, Code>,
    ) -> Result<(i64, i16), Code> {
        if !(1..=MAX_TRANSACTION_TIMEOUT_MS).contains(&timeout_ms) {
            return Err(ResponseError::InvalidTransactionTimeout.code());
        }
        let now = self.now();
        let (meta, _) = self
            .update(id, |current| {
                let Some(m) = current else {
                    return Ok(Decision::Write(TxnMetadata {
                        transactional_id: id.to_string(),
                        producer_id: allocate()?,
                        producer_epoch: 0,
                        timeout_ms,
                        state: TxnState::Empty,
                        partitions: BTreeSet::new(),
                        start_ms: -1,
                        last_update_ms: now,
                    }));
                };
                if m.state.is_preparing() {
                    return Err(ResponseError::ConcurrentTransactions.code());
                }
                if let Some((producer_id, epoch)) = expected
                    && (producer_id != m.producer_id || epoch != m.producer_epoch)
                {
                    return Err(ResponseError::ProducerFenced.code());
                }
                let mut next = m.clone();
                next.last_update_ms = now;
                if m.state == TxnState::Ongoing {
                    // A new producer of this id: fence the old one and abort its transaction.
                    next.producer_epoch = bump(m.producer_epoch);
                    next.state = TxnState::PrepareAbort;
                    return Ok(Decision::Write(next));
                }
                if m.producer_epoch >= i16::MAX - 1 {
                    next.producer_id = allocate()?;
                    next.producer_epoch = 0;
                } else {
                    next.producer_epoch = m.producer_epoch + 1;
                }
                next.timeout_ms = timeout_ms;
                next.state = TxnState::Empty;
                next.partitions.clear();
                next.start_ms = -1;
                Ok(Decision::Write(next))
            })
            .await?;
        if meta.state == TxnState::PrepareAbort {
            tracing::info!(transactional_id = id, "a new producer fenced an open transaction; aborting it");
            self.spawn_finish(meta);
            return Err(ResponseError::ConcurrentTransactions.code());
        }
        Ok((meta.producer_id, meta.producer_epoch))
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn, with the group's offsets partition).
    pub async fn add_partitions(
        &self,
        id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<(), Code> {
        let now = self.now();
        self.update(id, |current| {
            let m = check_producer(current, producer_id, producer_epoch)?;
            if m.state.is_preparing() {
                return Err(ResponseError::ConcurrentTransactions.code());
            }
            if m.state == TxnState::Ongoing && partitions.iter().all(|p| m.partitions.contains(p)) {
                return Ok(Decision::Keep(m.clone()));
            }
            let mut next = m.clone();
            if m.state != TxnState::Ongoing {
                next.partitions.clear();
                next.start_ms = now;
            }
            next.state = TxnState::Ongoing;
            next.partitions.extend(partitions.iter().cloned());
            next.last_update_ms = now;
            Ok(Decision::Write(next))
        })
        .await
        .map(|_| ())
    }

    /// EndTxn: decides the transaction; answered once the decision is durable.
    pub async fn end_transaction(
        &self,
        id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
    ) -> Result<(), Code> {
        let now = self.now();
        let (meta, written) = self
            .update(id, |current| {
                let m = check_producer(current, producer_id, producer_epoch)?;
                match (m.state, commit) {
                    (TxnState::Ongoing, _) => {
                        let mut next = m.clone();
                        next.state = if commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort };
                        next.last_update_ms = now;
                        Ok(Decision::Write(next))
                    }
                    // A retry of an EndTxn that already completed.
                    (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {
                        Ok(Decision::Keep(m.clone()))
                    }
                    (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                        Err(ResponseError::ConcurrentTransactions.code())
                    }
                    _ => Err(ResponseError::InvalidTxnState.code()),
                }
            })
            .await?;
        if written {
            self.spawn_finish(meta);
        }
        Ok(())
    }

    /// Writes the markers of a deciding transaction, then its Complete* state.
    fn spawn_finish(&self, meta: TxnMetadata) {
        {
            let mut txns = self.txns.lock().expect("txns lock");
            match txns.get_mut(&meta.transactional_id) {
                Some(slot) if !slot.finishing && slot.meta == meta => slot.finishing = true,
                _ => return,
            }
        }
        let Some(this) = self.this.upgrade() else { return };
        tokio::spawn(async move {
            let finished = this.finish(&meta).await;
            if let Some(slot) = this.txns.lock().expect("txns lock").get_mut(&meta.transactional_id) {
                slot.finishing = false;
            }
            if let Err(code) = finished {
                tracing::warn!(transactional_id = %meta.transactional_id, code, "transaction markers not all written; will retry");
            }
        });
    }

    async fn finish(&self, meta: &TxnMetadata) -> Result<(), Code> {
        let commit = meta.state == TxnState::PrepareCommit;
        let id = &meta.transactional_id;
        let Some(coordinator_epoch) = self.coordinator_epoch(id) else {
            return Err(ResponseError::NotCoordinator.code());
        };
        for (topic, partition) in &meta.partitions {
            loop {
                if self.owner_code(id) != 0 {
                    // Another coordinator (or a reload) finishes it.
                    return Err(ResponseError::NotCoordinator.code());
                }
                let marker = TxnMarker { commit, coordinator_epoch };
                match self.write_marker(topic, *partition, meta.producer_id, meta.producer_epoch, marker).await {
                    Ok(()) => break,
                    Err(code)
                        if code == ResponseError::UnknownTopicOrPartition.code()
                            || code == ResponseError::InvalidProducerEpoch.code()
                            || code == ResponseError::TransactionCoordinatorFenced.code() =>
                    {
                        // Gone, or already past this transaction: nothing to mark.
                        tracing::warn!(transactional_id = %id, topic = %topic, partition, code, "marker skipped");
                        break;
                    }
                    Err(code) => {
                        tracing::debug!(transactional_id = %id, topic = %topic, partition, code, "marker write failed; retrying");
                        tokio::time::sleep(MARKER_RETRY).await;
                    }
                }
            }
        }
        let now = self.now();
        self.update(id, |current| match current {
            Some(m) if m == meta => {
                let mut next = m.clone();
                next.state = if commit { TxnState::CompleteCommit } else { TxnState::CompleteAbort };
                next.partitions.clear();
                next.last_update_ms = now;
                Ok(Decision::Write(next))
            }
            Some(m) => Ok(Decision::Keep(m.clone())),
            None => Err(ResponseError::TransactionalIdNotFound.code()),
        })
        .await
        .map(|_| ())
    }

    /// Writes one marker to wherever the partition's leader is.
    async fn write_marker(
        &self,
        topic: &str,
        partition: i32,
        producer_id: i64,
        producer_epoch: i16,
        marker: TxnMarker,
    ) -> Result<(), Code> {
        let Some(replicas) = &self.replicas else {
            return self.write_marker_here(topic, partition, producer_id, producer_epoch, marker).await;
        };
        let image = replicas.image();
        let Some(registration) = image.partition(topic, partition as u32) else {
            return Err(ResponseError::UnknownTopicOrPartition.code());
        };
        let leader = registration.leader;
        if leader == replicas.broker_id() {
            return self.write_marker_here(topic, partition, producer_id, producer_epoch, marker).await;
        }
        if leader < 0 {
            return Err(ResponseError::NotLeaderOrFollower.code());
        }
        let connection = self.peer(replicas, leader).await?;
        let request = WriteTxnMarkersRequest::default().with_markers(vec![
            WritableTxnMarker::default()
                .with_producer_id(ProducerId(producer_id))
                .with_producer_epoch(producer_epoch)
                .with_transaction_result(marker.commit)
                .with_coordinator_epoch(marker.coordinator_epoch)
                .with_topics(vec![
                    WritableTxnMarkerTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                        .with_partition_indexes(vec![partition]),
                ]),
        ]);
        let response = match connection.send(request).await {
            Ok(response) => response,
            Err(error) => {
                tracing::debug!(leader, %error, "marker request failed");
                self.peers.lock().await.remove(&leader);
                return Err(ResponseError::NetworkException.code());
            }
        };
        let code = response
            .markers
            .iter()
            .flat_map(|m| m.topics.iter())
            .flat_map(|t| t.partitions.iter())
            .map(|p| p.error_code)
            .find(|c| *c != 0)
            .unwrap_or(0);
        if code == 0 { Ok(()) } else { Err(code) }
    }

    async fn peer(&self, replicas: &ReplicaManager, broker: i32) -> Result<Arc<Connection>, Code> {
        let mut peers = self.peers.lock().await;
        if let Some(connection) = peers.get(&broker).filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(connection));
        }
        let address = replicas.broker_address(broker).ok_or(ResponseError::NotLeaderOrFollower.code())?;
        let client_id = format!("headwater-txn-coordinator-{}", replicas.broker_id());
        let connected = tokio::time::timeout(Duration::from_secs(5), Connection::connect(&address, &client_id)).await;
        match connected {
            Ok(Ok(connection)) => {
                peers.insert(broker, Arc::clone(&connection));
                Ok(connection)
            }
            _ => Err(ResponseError::NetworkException.code()),
        }
    }

    /// Writes a marker into a partition this broker leads (WriteTxnMarkers, or the
    /// coordinator's own partitions), durably; a marker in `__consumer_offsets` also
    /// settles the transaction's pending offsets.
    ///
    /// # Errors
    /// Kafka's code for why not (not the leader, a stale epoch, storage).
    pub async fn write_marker_here(
        &self,
        topic: &str,
        partition: i32,
        producer_id: i64,
        producer_epoch: i16,
        marker: TxnMarker,
    ) -> Result<(), Code> {
        let (key, value) = marker.encode();
        let mut builder = BatchBuilder::new(Compression::None)
            .producer(producer_id, producer_epoch, -1)
            .transactional(true)
            .control(true);
        builder.append(NewRecord { timestamp: self.now(), key: Some(&key), value: Some(&value), headers: &[] });
        let batch = builder.build().map_err(|_| ResponseError::UnknownServerError.code())?;
        match self.log.append(topic, partition, &batch, AppendOrigin::Coordinator).await {
            Ok(_) => {
                if topic == OFFSETS_TOPIC {
                    self.groups.complete_transaction(partition, producer_id, marker.commit);
                }
                Ok(())
            }
            Err(error) => Err(error.code()),
        }
    }

    /// DescribeTransactions of one id.
    pub fn describe(&self, id: &str) -> Result<TxnDescription, Code> {
        let owner = self.owner_code(id);
        if owner != 0 {
            return Err(owner);
        }
        self.txns
            .lock()
            .expect("txns lock")
            .get(id)
            .map(|s| s.meta.clone())
            .ok_or(ResponseError::TransactionalIdNotFound.code())
    }

    /// ListTransactions: every id this broker coordinates.
    pub fn list(&self) -> Vec<TxnDescription> {
        let mut all: Vec<TxnDescription> =
            self.txns.lock().expect("txns lock").values().map(|s| s.meta.clone()).collect();
        all.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        all
    }
}

/// The next epoch after `epoch` (Kafka never uses i16::MAX itself).
fn bump(epoch: i16) -> i16 {
    if epoch >= i16::MAX - 1 { epoch } else { epoch + 1 }
}

/// The id's state if the request's producer is its current one.
fn check_producer(current: Option<&TxnMetadata>, producer_id: i64, producer_epoch: i16) -> Result<&TxnMetadata, Code> {
    let m = current.ok_or(ResponseError::InvalidProducerIdMapping.code())?;
    if m.producer_id != producer_id {
        return Err(ResponseError::InvalidProducerIdMapping.code());
    }
    if m.producer_epoch != producer_epoch {
        return Err(ResponseError::ProducerFenced.code());
    }
    Ok(m)
}
