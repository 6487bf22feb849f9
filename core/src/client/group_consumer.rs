//! A consumer that is a member of a consumer group: subscribes to topics and consumes the
//! partitions the group gives it, with committed offsets.
//!
//! ```text
//!  subscribe ─> JoinGroup (MEMBER_ID_REQUIRED: rejoin with the id) ─> leader assigns
//!     ─> SyncGroup ─> OffsetFetch ─> consume ...  heartbeat task says when to rejoin
//! ```
//!
//! Two rebalance protocols, chosen by the configured assignors as in the Java client
//! (cooperative only when every assignor is):
//! - eager: a rebalance revokes everything (with auto-commit, positions are committed
//!   first) and the new assignment starts from committed offsets;
//! - cooperative (KIP-429, `cooperative-sticky`): the member keeps its partitions and their
//!   positions through the rebalance and tells the leader what it owns; it gives up only
//!   what the new assignment leaves out, and rejoins at once when it gave something up, so
//!   the partitions reach their new owner in a second, short rebalance.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI16, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedPartitions;
use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedPartitions;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, FindCoordinatorRequest, GroupId, HeartbeatRequest,
    JoinGroupRequest, LeaveGroupRequest, OffsetCommitRequest, OffsetFetchRequest, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::assignor::{Assignor, MemberSubscription, RebalanceProtocol, Subscriptions};
use super::{ClientError, ClusterView, Connection, Consumer, ConsumerConfig, ConsumerRecord, partition_counts};

/// The embedded consumer protocol's version this client writes: 2 carries the owned
/// partitions and their generation, which the sticky assignors need.
const PROTOCOL_VERSION: i16 = 2;

/// Group settings, with the Java client's names and defaults.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub group_id: String,
    /// `group.instance.id`: static membership.
    pub group_instance_id: Option<String>,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub heartbeat_interval: Duration,
    /// Preferred first.
    pub assignors: Vec<Assignor>,
    /// `enable.auto.commit` with `auto.commit.interval.ms`.
    pub auto_commit: Option<Duration>,
    /// When set, [`GroupConsumer::poll`] never starts a rebalance round itself: the caller
    /// sees [`GroupConsumer::rebalance_wanted`], commits what it has processed (after
    /// flushing its output and state), and then calls [`GroupConsumer::rebalance`]. This
    /// is what a stream processor needs so that no partition leaves it uncommitted.
    pub hold_rebalances: bool,
}

impl GroupConfig {
    pub fn new(group_id: &str) -> Self {
        Self {
            group_id: group_id.to_string(),
            group_instance_id: None,
            session_timeout: Duration::from_secs(45),
            rebalance_timeout: Duration::from_secs(300),
            heartbeat_interval: Duration::from_secs(3),
            assignors: vec![Assignor::Range, Assignor::RoundRobin],
            auto_commit: Some(Duration::from_secs(5)),
            hold_rebalances: false,
        }
    }
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn embedded<T: Encodable>(message: &T) -> Result<Bytes, ClientError> {
    let mut buf = BytesMut::new();
    buf.put_i16(PROTOCOL_VERSION);
    message
        .encode(&mut buf, PROTOCOL_VERSION)
        .map_err(|e| ClientError::Encode { api: "ConsumerProtocol", message: e.to_string() })?;
    Ok(buf.freeze())
}

fn from_embedded<T: Decodable + Default>(mut bytes: Bytes) -> Result<T, ClientError> {
    if bytes.is_empty() {
        return Ok(T::default());
    }
    if bytes.len() < 2 {
        return Err(ClientError::Decode { api: "ConsumerProtocol", message: "no version".into() });
    }
    let version = bytes.get_i16().clamp(0, 3);
    T::decode(&mut bytes, version).map_err(|e| ClientError::Decode { api: "ConsumerProtocol", message: e.to_string() })
}

/// A consumer group member.
#[derive(Debug)]
pub struct GroupConsumer {
    consumer: Consumer,
    config: GroupConfig,
    /// The bootstrap brokers, to find the coordinator again when it moves.
    cluster: ClusterView,
    coordinator: Arc<Connection>,
    /// The coordinator answered that it is not (or no longer) the group's: find it again
    /// before the next JoinGroup.
    coordinator_moved: Arc<AtomicBool>,
    topics: Vec<String>,
    member_id: String,
    generation_id: i32,
    /// The generation in which the current assignment was received.
    assignment_generation: i32,
    rejoin: Arc<AtomicBool>,
    /// The error that ended the last heartbeat loop: when it says this member is no longer
    /// in the group, its partitions are lost and must not be committed or claimed.
    heartbeat_error: Arc<AtomicI16>,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
    /// A JoinGroup / SyncGroup round in flight; under the cooperative protocol the member
    /// goes on consuming what it owns meanwhile.
    rebalance: Option<tokio::task::JoinHandle<Result<Joined, ClientError>>>,
    /// `fetch.max.wait.ms`: how long a poll with nothing to fetch waits for a rebalance.
    poll_wait: Duration,
    last_commit: Instant,
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        for task in [self.heartbeat.take().map(|t| t.abort_handle()), self.rebalance.take().map(|t| t.abort_handle())]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
    }
}

/// What a rebalance round needs, moved into its task.
struct JoinRound {
    coordinator: Arc<Connection>,
    config: GroupConfig,
    member_id: String,
    /// The embedded subscription: topics, owned partitions, their generation.
    metadata: Bytes,
}

/// The end of a rebalance round.
#[derive(Debug)]
struct Joined {
    member_id: String,
    generation_id: i32,
    /// `None` when the group began another rebalance before SyncGroup answered.
    assignment: Option<Vec<(String, i32)>>,
}

impl GroupConsumer {
    /// Connects, finds the group's coordinator, and subscribes to `topics`; the first
    /// [`Self::poll`] joins the group.
    ///
    /// # Errors
    /// A connection failure, or no coordinator for the group.
    pub async fn subscribe(
        consumer_config: ConsumerConfig,
        config: GroupConfig,
        topics: Vec<String>,
    ) -> Result<Self, ClientError> {
        let consumer = Consumer::connect(consumer_config.clone()).await?;
        let cluster = ClusterView::new(&consumer_config.bootstrap, &consumer_config.client_id);
        let coordinator = find_coordinator(&cluster, &config.group_id).await?;
        Ok(Self {
            consumer,
            config,
            cluster,
            coordinator,
            coordinator_moved: Arc::new(AtomicBool::new(false)),
            topics,
            member_id: String::new(),
            generation_id: -1,
            assignment_generation: -1,
            rejoin: Arc::new(AtomicBool::new(true)),
            heartbeat_error: Arc::new(AtomicI16::new(0)),
            heartbeat: None,
            rebalance: None,
            poll_wait: consumer_config.fetch_max_wait,
            last_commit: Instant::now(),
        })
    }

    /// The partitions this member consumes now.
    pub fn assignment(&self) -> Vec<(String, i32)> {
        self.consumer.assignment()
    }

    /// Stops fetching from these partitions (Kafka's `pause`); the member stays in the
    /// group, and polls go on driving heartbeats and rebalances.
    pub fn pause(&mut self, partitions: impl IntoIterator<Item = (String, i32)>) {
        self.consumer.pause(partitions);
    }

    /// Fetches from paused partitions again.
    pub fn resume(&mut self, partitions: impl IntoIterator<Item = (String, i32)>) {
        self.consumer.resume(partitions);
    }

    /// Asks for a rejoin: the member learnt by other means (a transactional offset
    /// commit refused for its generation) that the group has moved on.
    pub fn request_rejoin(&self) {
        self.rejoin.store(true, Ordering::Release);
    }

    /// This member's identity in the current generation, for a transactional producer's
    /// [`super::Producer::send_offsets_to_transaction`].
    pub fn group_metadata(&self) -> super::GroupMetadata {
        super::GroupMetadata {
            group_id: self.config.group_id.clone(),
            generation_id: self.generation_id,
            member_id: self.member_id.clone(),
            group_instance_id: self.config.group_instance_id.clone(),
        }
    }

    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// Joins (or rejoins) the group when needed, commits on the auto-commit interval, and
    /// fetches records from the assigned partitions.
    ///
    /// A rebalance runs beside the polls, so no poll takes much longer than
    /// `fetch.max.wait.ms`: under the cooperative protocol a member goes on fetching what
    /// it owns while its JoinGroup waits for the others, and a later poll applies the new
    /// assignment; under the eager protocol it has nothing to fetch meanwhile, and a poll
    /// returns no records until the round ends.
    ///
    /// # Errors
    /// A connection failure, or the group refusing this member.
    pub async fn poll(&mut self) -> Result<Vec<ConsumerRecord>, ClientError> {
        if !self.config.hold_rebalances && self.rebalance.is_none() && self.rejoin.swap(false, Ordering::AcqRel) {
            self.begin_rebalance().await?;
        }
        let idle = self.consumer.assignment().is_empty();
        if let Some(task) = self.rebalance.as_mut() {
            // With nothing to fetch, wait for the round as long as a fetch would wait.
            let outcome = if task.is_finished() {
                Some(task.await)
            } else if idle {
                tokio::time::timeout(self.poll_wait, task).await.ok()
            } else {
                None
            };
            match outcome {
                Some(outcome) => {
                    self.rebalance = None;
                    let joined = outcome.map_err(|e| ClientError::Disconnected {
                        addr: "group coordinator".into(),
                        reason: format!("rebalance task failed: {e}"),
                    })?;
                    match joined {
                        Ok(joined) => self.finish_rebalance(joined).await?,
                        // The coordinator moved or went away during the round: find it
                        // and join again, as Kafka's clients do.
                        Err(error) if coordinator_gone(&error) => {
                            self.coordinator_moved.store(true, Ordering::Release);
                            self.rejoin.store(true, Ordering::Release);
                            tokio::time::sleep(COORDINATOR_BACKOFF).await;
                            return Ok(Vec::new());
                        }
                        Err(error) => return Err(error),
                    }
                }
                None if idle => return Ok(Vec::new()),
                None => {}
            }
        }
        if let Some(interval) = self.config.auto_commit
            && self.rebalance.is_none()
            && self.last_commit.elapsed() >= interval
        {
            match self.commit().await {
                Ok(()) => {}
                // The group moved on (a rebalance, a new generation): commit() has asked
                // for a rejoin, which starts from the last successful commit.
                Err(ClientError::Broker { api: "OffsetCommit", .. }) => {}
                Err(error) => return Err(error),
            }
        }
        self.consumer.poll().await
    }

    /// Whether this member must rejoin its group (it has not joined yet, the group is
    /// rebalancing, or the member was fenced) and no round is under way. Only meaningful
    /// with [`GroupConfig::hold_rebalances`]; otherwise `poll` rejoins by itself.
    pub fn rebalance_wanted(&self) -> bool {
        self.rebalance.is_none() && self.rejoin.load(Ordering::Acquire)
    }

    /// Starts the wanted rebalance round (see [`GroupConfig::hold_rebalances`]): under the
    /// eager protocol every partition is given up now; later polls finish the round.
    ///
    /// # Errors
    /// A connection failure while finding the coordinator.
    pub async fn rebalance(&mut self) -> Result<(), ClientError> {
        if self.rebalance.is_none() && self.rejoin.swap(false, Ordering::AcqRel) {
            self.begin_rebalance().await?;
        }
        Ok(())
    }

    /// The records of successive polls as a [`futures::Stream`], one record at a time; see
    /// [`super::records`].
    pub fn stream(&mut self) -> impl futures::Stream<Item = Result<ConsumerRecord, ClientError>> + '_ {
        super::records(self)
    }

    /// The protocol the configured assignors share: cooperative only if all are.
    fn protocol(&self) -> RebalanceProtocol {
        if !self.config.assignors.is_empty()
            && self.config.assignors.iter().all(|a| a.protocol() == RebalanceProtocol::Cooperative)
        {
            RebalanceProtocol::Cooperative
        } else {
            RebalanceProtocol::Eager
        }
    }

    /// Gives up what the protocol says to give up and starts a JoinGroup / SyncGroup round
    /// in its own task.
    async fn begin_rebalance(&mut self) -> Result<(), ClientError> {
        let fenced = [
            ResponseError::UnknownMemberId.code(),
            ResponseError::IllegalGeneration.code(),
            ResponseError::FencedInstanceId.code(),
        ];
        let heartbeat_error = self.heartbeat_error.swap(0, Ordering::AcqRel);
        if self.coordinator_moved.swap(false, Ordering::AcqRel)
            || self.coordinator.is_closed()
            || coordinator_code(heartbeat_error)
        {
            self.coordinator = find_coordinator(&self.cluster, &self.config.group_id).await?;
        }
        if fenced.contains(&heartbeat_error) {
            // The group has already given these partitions to others: lost, not revoked.
            self.consumer.assign(Vec::new());
            self.assignment_generation = -1;
        } else if self.config.auto_commit.is_some() && self.generation_id >= 0 {
            // Commit what was consumed before any partition can move.
            let _ = self.commit().await;
        }
        if self.protocol() == RebalanceProtocol::Eager {
            self.consumer.assign(Vec::new());
        }
        // The coordinator keeps a member that waits in JoinGroup alive; heartbeats resume
        // with the new generation.
        if let Some(heartbeat) = self.heartbeat.take() {
            heartbeat.abort();
        }
        let mut owned: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in self.consumer.assignment() {
            owned.entry(topic).or_default().push(partition);
        }
        let subscription = ConsumerProtocolSubscription::default()
            .with_topics(self.topics.iter().map(|t| str_bytes(t)).collect())
            .with_owned_partitions(
                owned
                    .into_iter()
                    .map(|(t, ps)| OwnedPartitions::default().with_topic(TopicName(str_bytes(&t))).with_partitions(ps))
                    .collect(),
            )
            .with_generation_id(self.assignment_generation);
        let round = JoinRound {
            coordinator: Arc::clone(&self.coordinator),
            config: self.config.clone(),
            member_id: self.member_id.clone(),
            metadata: embedded(&subscription)?,
        };
        self.rebalance = Some(tokio::spawn(round.run()));
        Ok(())
    }

    /// Applies a round's assignment: partitions kept keep their positions, new ones start
    /// from committed offsets, and under the cooperative protocol giving anything up
    /// starts the follow-up round that hands it to its new owner.
    async fn finish_rebalance(&mut self, joined: Joined) -> Result<(), ClientError> {
        self.member_id = joined.member_id;
        self.generation_id = joined.generation_id;
        let Some(partitions) = joined.assignment else {
            self.rejoin.store(true, Ordering::Release);
            return Ok(());
        };
        let before = self.consumer.assignment();
        let added: Vec<(String, i32)> = partitions.iter().filter(|tp| !before.contains(tp)).cloned().collect();
        let revoked = before.iter().any(|tp| !partitions.contains(tp));
        if revoked && self.config.auto_commit.is_some() {
            // Records consumed during the round, before their partitions go.
            let _ = self.commit().await;
        }
        self.consumer.assign(partitions);
        self.assignment_generation = self.generation_id;
        // Heartbeats first: a read_committed member may wait for offsets of an undecided
        // transaction for longer than its session timeout.
        self.start_heartbeat();
        self.start_from_committed(&added).await?;
        if revoked && self.protocol() == RebalanceProtocol::Cooperative {
            self.rejoin.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Positions newly assigned partitions at their committed offsets. An error is never
    /// taken for "nothing committed" (that would replay the partition from
    /// `auto.offset.reset`): a coordinator that is moving or loading is asked again,
    /// found again if needed, and any other error fails the poll.
    async fn start_from_committed(&mut self, partitions: &[(String, i32)]) -> Result<(), ClientError> {
        if partitions.is_empty() {
            return Ok(());
        }
        let mut attempt = 0;
        // A read_committed member waits for offsets committed in a transaction not yet
        // decided (KIP-447), which may take until the transaction times out.
        let require_stable = self.consumer.isolation_level() == super::IsolationLevel::ReadCommitted;
        let unstable_until = Instant::now() + UNSTABLE_OFFSETS_WAIT;
        let committed = loop {
            match Self::fetch_committed(&self.coordinator, &self.config.group_id, partitions, require_stable).await {
                Ok(committed) => break committed,
                Err(ClientError::Broker { code, .. })
                    if code == ResponseError::UnstableOffsetCommit.code() && Instant::now() < unstable_until =>
                {
                    tokio::time::sleep(COORDINATOR_BACKOFF).await;
                }
                Err(ClientError::Broker { code, .. }) if coordinator_code(code) && attempt < 50 => {
                    attempt += 1;
                    tokio::time::sleep(COORDINATOR_BACKOFF).await;
                    if code != ResponseError::CoordinatorLoadInProgress.code() {
                        self.coordinator = find_coordinator(&self.cluster, &self.config.group_id).await?;
                    }
                }
                Err(error) => return Err(error),
            }
        };
        for (topic, partition, offset) in committed {
            if offset >= 0 {
                self.consumer.seek(&topic, partition, offset);
            }
        }
        Ok(())
    }

    /// OffsetFetch for `partitions`; a group- or partition-level error is an error.
    /// Takes the coordinator and group rather than `&self`, so that the future is `Send`
    /// without `GroupConsumer` being `Sync` (its prefetches are not).
    async fn fetch_committed(
        coordinator: &Connection,
        group_id: &str,
        partitions: &[(String, i32)],
        require_stable: bool,
    ) -> Result<Vec<(String, i32, i64)>, ClientError> {
        let failed = |code: i16| ClientError::Broker { api: "OffsetFetch", code };
        let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in partitions {
            by_topic.entry(topic.clone()).or_default().push(*partition);
        }
        let version = coordinator.version(kafka_protocol::messages::ApiKey::OffsetFetch).unwrap_or(1);
        let committed = if version >= 8 {
            // Version 8 batches groups.
            use kafka_protocol::messages::offset_fetch_request::{OffsetFetchRequestGroup, OffsetFetchRequestTopics};
            let topics = by_topic
                .into_iter()
                .map(|(t, ps)| {
                    OffsetFetchRequestTopics::default().with_name(TopicName(str_bytes(&t))).with_partition_indexes(ps)
                })
                .collect();
            let group = OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(str_bytes(group_id)))
                .with_member_epoch(-1)
                .with_topics(Some(topics));
            let request = OffsetFetchRequest::default().with_groups(vec![group]).with_require_stable(require_stable);
            let response = coordinator.send(request).await?;
            let mut committed = Vec::new();
            for group in response.groups {
                if group.error_code != 0 {
                    return Err(failed(group.error_code));
                }
                for topic in group.topics {
                    for p in topic.partitions {
                        if p.error_code != 0 {
                            return Err(failed(p.error_code));
                        }
                        committed.push((topic.name.to_string(), p.partition_index, p.committed_offset));
                    }
                }
            }
            committed
        } else {
            let topics = by_topic
                .into_iter()
                .map(|(t, ps)| {
                    OffsetFetchRequestTopic::default().with_name(TopicName(str_bytes(&t))).with_partition_indexes(ps)
                })
                .collect();
            let request = OffsetFetchRequest::default()
                .with_group_id(GroupId(str_bytes(group_id)))
                .with_topics(Some(topics))
                .with_require_stable(require_stable);
            let response = coordinator.send(request).await?;
            if response.error_code != 0 {
                return Err(failed(response.error_code));
            }
            let mut committed = Vec::new();
            for topic in response.topics {
                for p in topic.partitions {
                    if p.error_code != 0 {
                        return Err(failed(p.error_code));
                    }
                    committed.push((topic.name.to_string(), p.partition_index, p.committed_offset));
                }
            }
            committed
        };
        Ok(committed)
    }

    fn start_heartbeat(&mut self) {
        if let Some(previous) = self.heartbeat.take() {
            previous.abort();
        }
        let coordinator = Arc::clone(&self.coordinator);
        let rejoin = Arc::clone(&self.rejoin);
        let heartbeat_error = Arc::clone(&self.heartbeat_error);
        let request = HeartbeatRequest::default()
            .with_group_id(GroupId(str_bytes(&self.config.group_id)))
            .with_generation_id(self.generation_id)
            .with_member_id(str_bytes(&self.member_id))
            .with_group_instance_id(self.config.group_instance_id.as_deref().map(str_bytes));
        let interval = self.config.heartbeat_interval;
        self.heartbeat = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                match coordinator.send(request.clone()).await {
                    Ok(response) if response.error_code == 0 => {}
                    // A rebalance began: rejoin at the next poll, and go on heartbeating
                    // until then, so a member between polls is not expired for it.
                    Ok(response) if response.error_code == ResponseError::RebalanceInProgress.code() => {
                        rejoin.store(true, Ordering::Release);
                    }
                    // A new generation, or this member expired or was fenced: rejoin.
                    Ok(response) => {
                        heartbeat_error.store(response.error_code, Ordering::Release);
                        rejoin.store(true, Ordering::Release);
                        return;
                    }
                    Err(_) => {
                        rejoin.store(true, Ordering::Release);
                        return;
                    }
                }
            }
        }));
    }

    /// Commits the current position of every assigned partition.
    ///
    /// # Errors
    /// A connection failure, or the group refusing the commit (then a rejoin follows).
    pub async fn commit(&mut self) -> Result<(), ClientError> {
        let positions: Vec<(String, i32, i64)> = self
            .consumer
            .assignment()
            .into_iter()
            .filter_map(|(topic, partition)| {
                self.consumer.position(&topic, partition).map(|offset| (topic, partition, offset))
            })
            .collect();
        self.commit_offsets(&positions).await
    }

    /// Commits the given offsets (the next record to read of each partition), as this
    /// member of the current generation: a stream processor commits what it has
    /// processed and flushed, which may lag the positions.
    ///
    /// # Errors
    /// As [`Self::commit`].
    pub async fn commit_offsets(&mut self, offsets: &[(String, i32, i64)]) -> Result<(), ClientError> {
        self.last_commit = Instant::now();
        let mut by_topic: BTreeMap<String, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for (topic, partition, offset) in offsets {
            by_topic.entry(topic.clone()).or_default().push(
                OffsetCommitRequestPartition::default().with_partition_index(*partition).with_committed_offset(*offset),
            );
        }
        if by_topic.is_empty() {
            return Ok(());
        }
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(str_bytes(&self.config.group_id)))
            .with_generation_id_or_member_epoch(self.generation_id)
            .with_member_id(str_bytes(&self.member_id))
            .with_group_instance_id(self.config.group_instance_id.as_deref().map(str_bytes))
            .with_topics(
                by_topic
                    .into_iter()
                    .map(|(t, ps)| {
                        OffsetCommitRequestTopic::default().with_name(TopicName(str_bytes(&t))).with_partitions(ps)
                    })
                    .collect(),
            );
        let response = match self.coordinator.send(request).await {
            Ok(response) => response,
            Err(error) => {
                // The coordinator went away: the commit is retried after finding it again.
                self.coordinator_moved.store(true, Ordering::Release);
                self.rejoin.store(true, Ordering::Release);
                return Err(error);
            }
        };
        let code = response.topics.iter().flat_map(|t| t.partitions.iter()).map(|p| p.error_code).find(|c| *c != 0);
        match code {
            None => Ok(()),
            Some(code) => {
                if coordinator_code(code) {
                    self.coordinator_moved.store(true, Ordering::Release);
                }
                if self.rebalance.is_none() {
                    self.rejoin.store(true, Ordering::Release);
                }
                Err(ClientError::Broker { api: "OffsetCommit", code })
            }
        }
    }

    /// Commits (with auto-commit) and leaves the group, so the others rebalance at once.
    ///
    /// # Errors
    /// A connection failure.
    pub async fn close(mut self) -> Result<(), ClientError> {
        if let Some(heartbeat) = self.heartbeat.take() {
            heartbeat.abort();
        }
        if let Some(rebalance) = self.rebalance.take() {
            rebalance.abort();
        }
        if self.config.auto_commit.is_some() && self.generation_id >= 0 {
            let _ = self.commit().await;
        }
        if !self.member_id.is_empty() && self.config.group_instance_id.is_none() {
            let group = GroupId(str_bytes(&self.config.group_id));
            // Version 3 leaves in batches of members; older versions with one member id.
            let batched =
                self.coordinator.version(kafka_protocol::messages::ApiKey::LeaveGroup).is_some_and(|v| v >= 3);
            let request = if batched {
                LeaveGroupRequest::default()
                    .with_group_id(group)
                    .with_members(vec![MemberIdentity::default().with_member_id(str_bytes(&self.member_id))])
            } else {
                LeaveGroupRequest::default().with_group_id(group).with_member_id(str_bytes(&self.member_id))
            };
            self.coordinator.send(request).await?;
        }
        Ok(())
    }
}

impl JoinRound {
    /// JoinGroup until admitted; the leader assigns; SyncGroup.
    async fn run(mut self) -> Result<Joined, ClientError> {
        let join = loop {
            let request = JoinGroupRequest::default()
                .with_group_id(GroupId(str_bytes(&self.config.group_id)))
                .with_session_timeout_ms(self.config.session_timeout.as_millis() as i32)
                .with_rebalance_timeout_ms(self.config.rebalance_timeout.as_millis() as i32)
                .with_member_id(str_bytes(&self.member_id))
                .with_group_instance_id(self.config.group_instance_id.as_deref().map(str_bytes))
                .with_protocol_type(str_bytes("consumer"))
                .with_protocols(
                    self.config
                        .assignors
                        .iter()
                        .map(|a| {
                            JoinGroupRequestProtocol::default()
                                .with_name(str_bytes(a.name()))
                                .with_metadata(self.metadata.clone())
                        })
                        .collect(),
                );
            let response = self.coordinator.send(request).await?;
            if response.error_code == ResponseError::MemberIdRequired.code() {
                self.member_id = response.member_id.to_string();
                continue;
            }
            if response.error_code == ResponseError::UnknownMemberId.code() {
                self.member_id.clear();
                continue;
            }
            if response.error_code != 0 {
                return Err(ClientError::Broker { api: "JoinGroup", code: response.error_code });
            }
            break response;
        };
        self.member_id = join.member_id.to_string();
        let generation_id = join.generation_id;
        let assignments = if join.leader == join.member_id {
            let protocol = join.protocol_name.as_ref().map(|p| p.to_string()).unwrap_or_default();
            let assignor = Assignor::from_name(&protocol).unwrap_or(Assignor::Range);
            let mut subscriptions = Subscriptions::new();
            for member in &join.members {
                let subscription: ConsumerProtocolSubscription = from_embedded(member.metadata.clone())?;
                subscriptions.insert(
                    member.member_id.to_string(),
                    MemberSubscription {
                        topics: subscription.topics.iter().map(|t| t.to_string()).collect(),
                        owned: subscription
                            .owned_partitions
                            .iter()
                            .flat_map(|tp| tp.partitions.iter().map(|p| (tp.topic.to_string(), *p)))
                            .collect(),
                        generation: subscription.generation_id,
                    },
                );
            }
            let mut topics: Vec<String> = subscriptions.values().flat_map(|s| s.topics.iter()).cloned().collect();
            topics.sort();
            topics.dedup();
            let counts: BTreeMap<String, i32> =
                partition_counts(&self.coordinator, &topics).await?.into_iter().collect();
            let assigned = assignor.assign(&subscriptions, &counts);
            let mut encoded = Vec::new();
            for (member, partitions) in assigned {
                let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
                for (topic, partition) in partitions {
                    by_topic.entry(topic).or_default().push(partition);
                }
                let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(
                    by_topic
                        .into_iter()
                        .map(|(t, ps)| {
                            AssignedPartitions::default().with_topic(TopicName(str_bytes(&t))).with_partitions(ps)
                        })
                        .collect(),
                );
                encoded.push(
                    SyncGroupRequestAssignment::default()
                        .with_member_id(str_bytes(&member))
                        .with_assignment(embedded(&assignment)?),
                );
            }
            encoded
        } else {
            Vec::new()
        };
        let sync = self
            .coordinator
            .send(
                SyncGroupRequest::default()
                    .with_group_id(GroupId(str_bytes(&self.config.group_id)))
                    .with_generation_id(generation_id)
                    .with_member_id(str_bytes(&self.member_id))
                    .with_group_instance_id(self.config.group_instance_id.as_deref().map(str_bytes))
                    .with_protocol_type(Some(str_bytes("consumer")))
                    .with_protocol_name(join.protocol_name.clone())
                    .with_assignments(assignments),
            )
            .await?;
        if sync.error_code == ResponseError::RebalanceInProgress.code() {
            return Ok(Joined { member_id: self.member_id, generation_id, assignment: None });
        }
        if sync.error_code != 0 {
            return Err(ClientError::Broker { api: "SyncGroup", code: sync.error_code });
        }
        let assignment: ConsumerProtocolAssignment = from_embedded(sync.assignment)?;
        let partitions = assignment
            .assigned_partitions
            .iter()
            .flat_map(|tp| tp.partitions.iter().map(move |p| (tp.topic.to_string(), *p)))
            .collect();
        Ok(Joined { member_id: self.member_id, generation_id, assignment: Some(partitions) })
    }
}

/// How long to wait before asking for a coordinator again.
const COORDINATOR_BACKOFF: Duration = Duration::from_millis(100);
/// How long a read_committed member waits for offsets of an undecided transaction: past
/// Kafka's default `transaction.timeout.ms` (60 s), after which the coordinator aborts it.
const UNSTABLE_OFFSETS_WAIT: Duration = Duration::from_secs(90);
/// How long one FindCoordinator may take before another broker is asked.
const FIND_COORDINATOR_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `find_coordinator` keeps asking while the group has none (its offsets
/// partition is being created or is changing leader).
const FIND_COORDINATOR_TIMEOUT: Duration = Duration::from_secs(30);

/// Codes that mean the group's coordinator is elsewhere or not ready yet.
fn coordinator_code(code: i16) -> bool {
    [
        ResponseError::NotCoordinator.code(),
        ResponseError::CoordinatorNotAvailable.code(),
        ResponseError::CoordinatorLoadInProgress.code(),
    ]
    .contains(&code)
}

/// Whether a failed group request means the coordinator moved or went away.
fn coordinator_gone(error: &ClientError) -> bool {
    match error {
        ClientError::Broker { code, .. } => coordinator_code(*code),
        ClientError::Disconnected { .. } | ClientError::Connect { .. } | ClientError::Timeout { .. } => true,
        _ => false,
    }
}

/// Asks any broker for `group`'s coordinator (FindCoordinator) and connects to it, asking
/// again while the group has none. Public for group members of other protocols (Connect
/// workers).
///
/// # Errors
/// No coordinator within 30 s, or no broker reachable.
pub async fn find_coordinator(cluster: &ClusterView, group: &str) -> Result<Arc<Connection>, ClientError> {
    find_coordinator_of(cluster, group, 0).await
}

/// As [`find_coordinator`], for a key of FindCoordinator's `key_type`: 0 for a group, 1
/// for a transactional id.
///
/// # Errors
/// As [`find_coordinator`].
pub(super) async fn find_coordinator_of(
    cluster: &ClusterView,
    key: &str,
    key_type: i8,
) -> Result<Arc<Connection>, ClientError> {
    let deadline = Instant::now() + FIND_COORDINATOR_TIMEOUT;
    loop {
        let attempt = async {
            let bootstrap = cluster.any_connection().await?;
            // Version 4 asks for a batch of keys; older versions for one.
            let batched = bootstrap.version(kafka_protocol::messages::ApiKey::FindCoordinator).is_some_and(|v| v >= 4);
            let request = if batched {
                FindCoordinatorRequest::default().with_coordinator_keys(vec![str_bytes(key)])
            } else {
                FindCoordinatorRequest::default().with_key(str_bytes(key))
            }
            .with_key_type(key_type);
            let found = match tokio::time::timeout(FIND_COORDINATOR_REQUEST_TIMEOUT, bootstrap.send(request)).await {
                Ok(found) => found?,
                Err(_) => {
                    // A broker that stopped answering: ask another next time.
                    cluster.forget(bootstrap.addr()).await;
                    return Err(ClientError::Timeout { ms: FIND_COORDINATOR_REQUEST_TIMEOUT.as_millis() as u64 });
                }
            };
            let (code, host, port) = match found.coordinators.first() {
                Some(c) => (c.error_code, c.host.to_string(), c.port),
                None => (found.error_code, found.host.to_string(), found.port),
            };
            if code != 0 {
                return Err(ClientError::Broker { api: "FindCoordinator", code });
            }
            cluster.connect(&format!("{host}:{port}")).await
        };
        match attempt.await {
            Ok(coordinator) => return Ok(coordinator),
            Err(error) if coordinator_gone(&error) && Instant::now() < deadline => {
                tokio::time::sleep(COORDINATOR_BACKOFF).await;
            }
            Err(error) => return Err(error),
        }
    }
}
