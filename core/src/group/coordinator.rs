//! The group coordinator: drives each group's state machine from requests and time,
//! parks JoinGroup and SyncGroup calls until their group answers them, and owns the
//! committed offsets.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use tokio::sync::oneshot;

use super::group::{Group, GroupState, JoinRequest, JoinResult, Outcome, Reply, SyncResult};
use super::offsets::{CommittedOffset, OFFSETS_PARTITIONS, OFFSETS_TOPIC, OffsetStore, partition_for};
use crate::log::{Clock, LogError, LogManager};
use crate::partition::{ReplicaError, ReplicaManager};

/// How often session and rebalance timeouts are checked. Timeouts are seconds long
/// (Kafka's minimum session timeout is 6 s), so a quarter second is precise enough.
const TICK: Duration = Duration::from_millis(250);

#[derive(Debug)]
struct Slot {
    group: Group,
    joins: HashMap<String, oneshot::Sender<JoinResult>>,
    syncs: HashMap<String, oneshot::Sender<SyncResult>>,
}

impl Slot {
    fn deliver(&mut self, replies: Vec<Reply>) {
        for reply in replies {
            match reply {
                Reply::Join(member, result) => {
                    if let Some(tx) = self.joins.remove(&member) {
                        let _ = tx.send(result);
                    }
                }
                Reply::Sync(member, result) => {
                    if let Some(tx) = self.syncs.remove(&member) {
                        let _ = tx.send(result);
                    }
                }
            }
        }
    }
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol_name: String,
    pub members: Vec<super::group::Member>,
}

/// Every group of this broker, and their offsets.
#[derive(Debug)]
pub struct GroupCoordinator {
    groups: Mutex<HashMap<String, Slot>>,
    offsets: OffsetStore,
    logs: Arc<LogManager>,
    clock: Arc<dyn Clock>,
    /// In a cluster: the groups of the offsets partitions this broker leads.
    ownership: Option<Ownership>,
}

/// Which groups a cluster broker coordinates: those whose `__consumer_offsets` partition
/// it leads, once that partition's offsets are loaded at the current leader epoch.
#[derive(Debug)]
struct Ownership {
    replicas: Arc<ReplicaManager>,
    /// Offsets partition -> the leader epoch its groups were loaded at.
    loaded: Mutex<HashMap<i32, i32>>,
}

/// Consumer lag is recomputed every this many ticks (5 s): a scrape interval's worth.
const LAG_EVERY_TICKS: u32 = 20;

impl GroupCoordinator {
    /// Loads committed offsets and starts the timeout ticker (on the current runtime).
    ///
    /// # Errors
    /// [`LogError`] if `__consumer_offsets` cannot be created or read.
    pub fn start(
        logs: Arc<LogManager>,
        clock: Arc<dyn Clock>,
        replicas: Option<Arc<ReplicaManager>>,
    ) -> Result<Arc<Self>, LogError> {
        let (offsets, ownership) = match replicas {
            None => (OffsetStore::open(Arc::clone(&logs))?, None),
            Some(replicas) => (
                OffsetStore::replicated(Arc::clone(&replicas)),
                Some(Ownership { replicas, loaded: Mutex::new(HashMap::new()) }),
            ),
        };
        let coordinator = Arc::new(Self { groups: Mutex::new(HashMap::new()), offsets, logs, clock, ownership });
        let weak = Arc::downgrade(&coordinator);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(TICK);
            for tick in 0u32.. {
                interval.tick().await;
                let Some(coordinator) = weak.upgrade() else { return };
                coordinator.tick();
                if tick % LAG_EVERY_TICKS == 0 {
                    coordinator.record_lag();
                }
            }
        });
        Ok(coordinator)
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// 0 when this broker coordinates `group_id`; NOT_COORDINATOR when another broker
    /// leads its offsets partition, COORDINATOR_LOAD_IN_PROGRESS while this one is
    /// still loading it.
    pub fn owner_code(&self, group_id: &str) -> i16 {
        let Some(ownership) = &self.ownership else { return 0 };
        let partition = partition_for(group_id);
        let Some(replica) = ownership.replicas.replica(OFFSETS_TOPIC, partition) else {
            return ResponseError::NotCoordinator.code();
        };
        let status = replica.status();
        if !status.leading {
            return ResponseError::NotCoordinator.code();
        }
        match ownership.loaded.lock().expect("loaded lock").get(&partition) {
            Some(epoch) if *epoch == status.leader_epoch => 0,
            _ => ResponseError::CoordinatorLoadInProgress.code(),
        }
    }

    /// In a cluster: loads the groups of offsets partitions this broker has come to lead,
    /// and drops those of partitions it no longer leads (their members rejoin at the new
    /// coordinator).
    fn follow_leadership(&self) {
        let Some(ownership) = &self.ownership else { return };
        for partition in 0..OFFSETS_PARTITIONS {
            let replica = ownership.replicas.replica(OFFSETS_TOPIC, partition);
            let leading = replica.as_ref().map(|r| r.status()).filter(|s| s.leading).map(|s| s.leader_epoch);
            let loaded = ownership.loaded.lock().expect("loaded lock").get(&partition).copied();
            if leading == loaded {
                continue;
            }
            // Whatever this broker knew of these groups is stale either way.
            self.groups.lock().expect("groups lock").retain(|group, _| partition_for(group) != partition);
            match (leading, replica) {
                (Some(epoch), Some(replica)) => match self.offsets.load_partition(partition, &replica.log) {
                    Ok(()) => {
                        tracing::info!(partition, epoch, "coordinating the groups of an offsets partition");
                        ownership.loaded.lock().expect("loaded lock").insert(partition, epoch);
                    }
                    Err(error) => tracing::error!(partition, %error, "cannot load committed offsets"),
                },
                _ => {
                    self.offsets.unload_partition(partition);
                    ownership.loaded.lock().expect("loaded lock").remove(&partition);
                }
            }
        }
    }

    fn tick(&self) {
        self.follow_leadership();
        let now = self.now();
        let mut groups = self.groups.lock().expect("groups lock");
        for slot in groups.values_mut() {
            let mut replies = Vec::new();
            slot.group.tick(now, &mut replies);
            slot.deliver(replies);
        }
    }

    /// Publishes each group's lag per partition: log end offset minus committed offset.
    fn record_lag(&self) {
        for group in self.offsets.groups() {
            for ((topic, partition), committed) in self.offsets.all(&group) {
                if let Some(log) = self.logs.log(&crate::log::TopicPartition::new(topic.clone(), partition)) {
                    let lag = (log.log_end() - committed.offset).max(0);
                    metrics::gauge!(crate::metrics::CONSUMER_LAG, "group" => group.clone(), "topic" => topic, "partition" => partition.to_string())
                        .set(lag as f64);
                }
            }
        }
    }

    /// JoinGroup: answered when the group's join phase completes.
    ///
    /// # Cancel safety
    /// Dropping the future abandons the wait; the member stays in the group until its
    /// session expires, as if its client had gone away.
    pub async fn join(&self, group_id: &str, request: JoinRequest) -> JoinResult {
        let owner = self.owner_code(group_id);
        if owner != 0 {
            return JoinResult { error_code: owner, ..Default::default() };
        }
        let rx = {
            let mut groups = self.groups.lock().expect("groups lock");
            let slot = groups.entry(group_id.to_string()).or_insert_with(|| Slot {
                group: Group::new(group_id),
                joins: HashMap::new(),
                syncs: HashMap::new(),
            });
            let mut replies = Vec::new();
            let outcome = slot.group.join(self.now(), request, &mut replies);
            slot.deliver(replies);
            match outcome {
                Outcome::Now(result) => return result,
                Outcome::Wait { member_id } => {
                    let (tx, rx) = oneshot::channel();
                    slot.joins.insert(member_id, tx);
                    rx
                }
            }
        };
        rx.await
            .unwrap_or_else(|_| JoinResult { error_code: ResponseError::UnknownMemberId.code(), ..Default::default() })
    }

    /// SyncGroup: answered once the leader has sent the assignments.
    pub async fn sync(
        &self,
        group_id: &str,
        member_id: &str,
        generation_id: i32,
        assignments: Vec<(String, bytes::Bytes)>,
    ) -> SyncResult {
        let owner = self.owner_code(group_id);
        if owner != 0 {
            return SyncResult { error_code: owner, ..Default::default() };
        }
        let rx = {
            let mut groups = self.groups.lock().expect("groups lock");
            let Some(slot) = groups.get_mut(group_id) else {
                return SyncResult { error_code: ResponseError::UnknownMemberId.code(), ..Default::default() };
            };
            let mut replies = Vec::new();
            let outcome = slot.group.sync(self.now(), member_id, generation_id, assignments, &mut replies);
            slot.deliver(replies);
            match outcome {
                Outcome::Now(result) => return result,
                Outcome::Wait { member_id } => {
                    let (tx, rx) = oneshot::channel();
                    slot.syncs.insert(member_id, tx);
                    rx
                }
            }
        };
        rx.await.unwrap_or_else(|_| SyncResult {
            error_code: ResponseError::RebalanceInProgress.code(),
            ..Default::default()
        })
    }

    /// Heartbeat: Kafka's error code.
    pub fn heartbeat(&self, group_id: &str, member_id: &str, generation_id: i32) -> i16 {
        let owner = self.owner_code(group_id);
        if owner != 0 {
            return owner;
        }
        let mut groups = self.groups.lock().expect("groups lock");
        match groups.get_mut(group_id) {
            Some(slot) => slot.group.heartbeat(self.now(), member_id, generation_id),
            None => ResponseError::UnknownMemberId.code(),
        }
    }

    /// LeaveGroup: one error code per leaving member.
    pub fn leave(&self, group_id: &str, members: &[(String, Option<String>)]) -> Vec<i16> {
        let owner = self.owner_code(group_id);
        if owner != 0 {
            return vec![owner; members.len()];
        }
        let mut groups = self.groups.lock().expect("groups lock");
        let Some(slot) = groups.get_mut(group_id) else {
            return vec![ResponseError::UnknownMemberId.code(); members.len()];
        };
        let mut replies = Vec::new();
        let codes = slot.group.leave(self.now(), members, &mut replies);
        slot.deliver(replies);
        codes
    }

    /// OffsetCommit: checks the member and generation, then writes durably. One error
    /// code for the whole request (0 when the offsets are committed).
    pub async fn commit(
        &self,
        group_id: &str,
        member_id: &str,
        generation_id: i32,
        offsets: Vec<((String, i32), CommittedOffset)>,
    ) -> i16 {
        let owner = self.owner_code(group_id);
        if owner != 0 {
            return owner;
        }
        let check = {
            let groups = self.groups.lock().expect("groups lock");
            match groups.get(group_id) {
                Some(slot) => slot.group.check_commit(member_id, generation_id),
                None if generation_id < 0 => 0,
                None => ResponseError::IllegalGeneration.code(),
            }
        };
        if check != 0 {
            return check;
        }
        let entries = offsets.into_iter().map(|(k, v)| (k, Some(v))).collect();
        match self.offsets.write(group_id, entries).await {
            Ok(()) => 0,
            Err(error) => {
                tracing::warn!(group = group_id, %error, "committing offsets failed");
                write_error_code(&error)
            }
        }
    }

    /// TxnOffsetCommit: offsets in a transaction, pending until its marker. A member and
    /// generation, when given (KIP-447), are checked as for OffsetCommit.
    pub async fn commit_transactional(
        &self,
        group_id: &str,
        member_id: &str,
        generation_id: i32,
        producer: (i64, i16),
        offsets: Vec<((String, i32), CommittedOffset)>,
    ) -> i16 {
        let owner = self.owner_code(group_id);
        if owner != 0 {
            return owner;
        }
        if generation_id >= 0 {
            let groups = self.groups.lock().expect("groups lock");
            let check = match groups.get(group_id) {
                Some(slot) => slot.group.check_commit(member_id, generation_id),
                None => ResponseError::IllegalGeneration.code(),
            };
            if check != 0 {
                return check;
            }
        }
        match self.offsets.write_transactional(group_id, producer.0, producer.1, offsets).await {
            Ok(()) => 0,
            Err(ReplicaError::Log(LogError::InvalidProducerEpoch { .. })) => ResponseError::ProducerFenced.code(),
            Err(error) => {
                tracing::warn!(group = group_id, %error, "committing transactional offsets failed");
                write_error_code(&error)
            }
        }
    }

    /// A transaction's marker landed in offsets partition `partition`.
    pub fn complete_transaction(&self, partition: i32, producer_id: i64, commit: bool) {
        self.offsets.complete_transaction(partition, producer_id, commit);
    }

    /// Whether a transaction's offsets for the partition are still undecided.
    pub fn has_pending_offsets(&self, group_id: &str, topic: &str, partition: i32) -> bool {
        self.offsets.has_pending(group_id, topic, partition)
    }

    pub fn committed(&self, group_id: &str, topic: &str, partition: i32) -> Option<CommittedOffset> {
        self.offsets.get(group_id, topic, partition)
    }

    pub fn all_committed(&self, group_id: &str) -> Vec<((String, i32), CommittedOffset)> {
        self.offsets.all(group_id)
    }

    /// Every group: with members, or with committed offsets only (shown as Empty).
    pub fn list(&self) -> Vec<(String, &'static str, String)> {
        let groups = self.groups.lock().expect("groups lock");
        let mut listed: Vec<(String, &'static str, String)> = groups
            .iter()
            .map(|(id, slot)| {
                (id.clone(), slot.group.state.name(), slot.group.protocol_type.clone().unwrap_or_default())
            })
            .collect();
        for id in self.offsets.groups() {
            if !groups.contains_key(&id) {
                listed.push((id, GroupState::Empty.name(), "consumer".to_string()));
            }
        }
        listed.sort();
        listed
    }

    /// DescribeGroups for one group; `None` when it does not exist.
    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        let groups = self.groups.lock().expect("groups lock");
        match groups.get(group_id) {
            Some(slot) => Some(GroupDescription {
                state: slot.group.state.name(),
                protocol_type: slot.group.protocol_type.clone().unwrap_or_default(),
                protocol_name: slot.group.protocol_name.clone().unwrap_or_default(),
                members: slot.group.members.values().cloned().collect(),
            }),
            None => (!self.offsets.all(group_id).is_empty()).then(|| GroupDescription {
                state: GroupState::Empty.name(),
                protocol_type: String::new(),
                protocol_name: String::new(),
                members: Vec::new(),
            }),
        }
    }

    /// DeleteGroups: only groups without members; removes their offsets.
    pub async fn delete_group(&self, group_id: &str) -> i16 {
        let owner = self.owner_code(group_id);
        if owner != 0 {
            return owner;
        }
        {
            let mut groups = self.groups.lock().expect("groups lock");
            if let Some(slot) = groups.get(group_id) {
                if !slot.group.members.is_empty() {
                    return ResponseError::NonEmptyGroup.code();
                }
                groups.remove(group_id);
            } else if self.offsets.all(group_id).is_empty() {
                return ResponseError::GroupIdNotFound.code();
            }
        }
        self.delete_offsets(group_id, None).await
    }

    /// OffsetDelete (or all offsets, for DeleteGroups).
    pub async fn delete_offsets(&self, group_id: &str, partitions: Option<Vec<(String, i32)>>) -> i16 {
        let owner = self.owner_code(group_id);
        if owner != 0 {
            return owner;
        }
        let keys: Vec<(String, i32)> =
            partitions.unwrap_or_else(|| self.offsets.all(group_id).into_iter().map(|(k, _)| k).collect());
        let entries = keys.into_iter().map(|k| (k, None)).collect();
        match self.offsets.write(group_id, entries).await {
            Ok(()) => 0,
            Err(error) => {
                tracing::warn!(group = group_id, %error, "deleting offsets failed");
                write_error_code(&error)
            }
        }
    }

    /// Whether the group has live members (OffsetDelete refuses then).
    pub fn has_members(&self, group_id: &str) -> bool {
        self.groups.lock().expect("groups lock").get(group_id).is_some_and(|s| !s.group.members.is_empty())
    }
}

/// The code a group request gets when its offsets could not be written, as Kafka maps
/// them: the partition moved (NOT_COORDINATOR, the client finds the new coordinator) or
/// is short of replicas for now (COORDINATOR_NOT_AVAILABLE, the client retries).
fn write_error_code(error: &ReplicaError) -> i16 {
    match error {
        ReplicaError::NotLeader(_) | ReplicaError::FencedLeaderEpoch { .. } | ReplicaError::Log(_) => {
            ResponseError::NotCoordinator.code()
        }
        ReplicaError::NotEnoughReplicas { .. }
        | ReplicaError::NotEnoughReplicasAfterAppend { .. }
        | ReplicaError::Timeout(_)
        | ReplicaError::UnknownLeaderEpoch { .. } => ResponseError::CoordinatorNotAvailable.code(),
    }
}
