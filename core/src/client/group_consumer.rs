//! A consumer that is a member of a consumer group: subscribes to topics and consumes the
//! partitions the group gives it, with committed offsets.
//!
//! ```text
//!  subscribe ─> JoinGroup (MEMBER_ID_REQUIRED: rejoin with the id) ─> leader assigns
//!     ─> SyncGroup ─> OffsetFetch ─> consume ...  heartbeat task says when to rejoin
//! ```
//!
//! The eager protocol: a rebalance revokes everything (with auto-commit, positions are
//! committed first) and the new assignment starts from committed offsets.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedPartitions;
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

use super::assignor::{Assignor, Subscriptions};
use super::{ClientError, Connection, Consumer, ConsumerConfig, ConsumerRecord, partition_counts};

/// The embedded consumer protocol's version this client writes.
const PROTOCOL_VERSION: i16 = 1;

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
    coordinator: Arc<Connection>,
    topics: Vec<String>,
    member_id: String,
    generation_id: i32,
    rejoin: Arc<AtomicBool>,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
    last_commit: Instant,
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        if let Some(heartbeat) = self.heartbeat.take() {
            heartbeat.abort();
        }
    }
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
        let bootstrap = Connection::connect(&consumer_config.bootstrap, &consumer_config.client_id).await?;
        // Version 4 asks for a batch of keys; older versions for one.
        let batched = bootstrap.version(kafka_protocol::messages::ApiKey::FindCoordinator).is_some_and(|v| v >= 4);
        let request = if batched {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![str_bytes(&config.group_id)])
        } else {
            FindCoordinatorRequest::default().with_key(str_bytes(&config.group_id))
        };
        let found = bootstrap.send(request).await?;
        let (code, host, port) = match found.coordinators.first() {
            Some(c) => (c.error_code, c.host.to_string(), c.port),
            None => (found.error_code, found.host.to_string(), found.port),
        };
        if code != 0 {
            return Err(ClientError::Broker { api: "FindCoordinator", code });
        }
        let coordinator = Connection::connect(&format!("{host}:{port}"), &consumer_config.client_id).await?;
        Ok(Self {
            consumer,
            config,
            coordinator,
            topics,
            member_id: String::new(),
            generation_id: -1,
            rejoin: Arc::new(AtomicBool::new(true)),
            heartbeat: None,
            last_commit: Instant::now(),
        })
    }

    /// The partitions this member consumes now.
    pub fn assignment(&self) -> Vec<(String, i32)> {
        self.consumer.assignment()
    }

    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// Joins (or rejoins) the group when needed, commits on the auto-commit interval, and
    /// fetches records from the assigned partitions.
    ///
    /// # Errors
    /// A connection failure, or the group refusing this member.
    pub async fn poll(&mut self) -> Result<Vec<ConsumerRecord>, ClientError> {
        if self.rejoin.swap(false, Ordering::AcqRel) {
            self.join().await?;
        }
        if let Some(interval) = self.config.auto_commit
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

    async fn join(&mut self) -> Result<(), ClientError> {
        if self.config.auto_commit.is_some() && self.generation_id >= 0 {
            // Eager rebalance: commit what was consumed before giving partitions up.
            let _ = self.commit().await;
        }
        self.consumer.assign(Vec::new());
        let subscription =
            ConsumerProtocolSubscription::default().with_topics(self.topics.iter().map(|t| str_bytes(t)).collect());
        let metadata = embedded(&subscription)?;
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
                                .with_metadata(metadata.clone())
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
        self.generation_id = join.generation_id;
        let assignments = if join.leader == join.member_id {
            let protocol = join.protocol_name.as_ref().map(|p| p.to_string()).unwrap_or_default();
            let assignor = Assignor::from_name(&protocol).unwrap_or(Assignor::Range);
            let mut subscriptions = Subscriptions::new();
            for member in &join.members {
                let subscription: ConsumerProtocolSubscription = from_embedded(member.metadata.clone())?;
                subscriptions
                    .insert(member.member_id.to_string(), subscription.topics.iter().map(|t| t.to_string()).collect());
            }
            let mut topics: Vec<String> = subscriptions.values().flatten().cloned().collect();
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
                    .with_generation_id(self.generation_id)
                    .with_member_id(str_bytes(&self.member_id))
                    .with_group_instance_id(self.config.group_instance_id.as_deref().map(str_bytes))
                    .with_protocol_type(Some(str_bytes("consumer")))
                    .with_protocol_name(join.protocol_name.clone())
                    .with_assignments(assignments),
            )
            .await?;
        if sync.error_code == ResponseError::RebalanceInProgress.code() {
            self.rejoin.store(true, Ordering::Release);
            return Ok(());
        }
        if sync.error_code != 0 {
            return Err(ClientError::Broker { api: "SyncGroup", code: sync.error_code });
        }
        let assignment: ConsumerProtocolAssignment = from_embedded(sync.assignment)?;
        let partitions: Vec<(String, i32)> = assignment
            .assigned_partitions
            .iter()
            .flat_map(|tp| tp.partitions.iter().map(move |p| (tp.topic.to_string(), *p)))
            .collect();
        self.consumer.assign(partitions.clone());
        self.start_from_committed(&partitions).await?;
        self.start_heartbeat();
        Ok(())
    }

    async fn start_from_committed(&mut self, partitions: &[(String, i32)]) -> Result<(), ClientError> {
        if partitions.is_empty() {
            return Ok(());
        }
        let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in partitions {
            by_topic.entry(topic.clone()).or_default().push(*partition);
        }
        let version = self.coordinator.version(kafka_protocol::messages::ApiKey::OffsetFetch).unwrap_or(1);
        let committed: Vec<(String, i32, i64)> = if version >= 8 {
            // Version 8 batches groups.
            use kafka_protocol::messages::offset_fetch_request::{OffsetFetchRequestGroup, OffsetFetchRequestTopics};
            let topics = by_topic
                .into_iter()
                .map(|(t, ps)| {
                    OffsetFetchRequestTopics::default().with_name(TopicName(str_bytes(&t))).with_partition_indexes(ps)
                })
                .collect();
            let group = OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(str_bytes(&self.config.group_id)))
                .with_member_epoch(-1)
                .with_topics(Some(topics));
            let response = self.coordinator.send(OffsetFetchRequest::default().with_groups(vec![group])).await?;
            let mut committed = Vec::new();
            for topic in response.groups.into_iter().flat_map(|g| g.topics) {
                for p in topic.partitions.into_iter().filter(|p| p.error_code == 0) {
                    committed.push((topic.name.to_string(), p.partition_index, p.committed_offset));
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
                .with_group_id(GroupId(str_bytes(&self.config.group_id)))
                .with_topics(Some(topics));
            let response = self.coordinator.send(request).await?;
            let mut committed = Vec::new();
            for topic in response.topics {
                for p in topic.partitions.into_iter().filter(|p| p.error_code == 0) {
                    committed.push((topic.name.to_string(), p.partition_index, p.committed_offset));
                }
            }
            committed
        };
        for (topic, partition, offset) in committed {
            if offset >= 0 {
                self.consumer.seek(&topic, partition, offset);
            }
        }
        Ok(())
    }

    fn start_heartbeat(&mut self) {
        if let Some(previous) = self.heartbeat.take() {
            previous.abort();
        }
        let coordinator = Arc::clone(&self.coordinator);
        let rejoin = Arc::clone(&self.rejoin);
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
                    // Rebalancing, a new generation, or this member expired: rejoin.
                    Ok(_) | Err(_) => {
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
        self.last_commit = Instant::now();
        let mut by_topic: BTreeMap<String, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for (topic, partition) in self.consumer.assignment() {
            if let Some(offset) = self.consumer.position(&topic, partition) {
                by_topic.entry(topic).or_default().push(
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(partition)
                        .with_committed_offset(offset),
                );
            }
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
        let response = self.coordinator.send(request).await?;
        let code = response.topics.iter().flat_map(|t| t.partitions.iter()).map(|p| p.error_code).find(|c| *c != 0);
        match code {
            None => Ok(()),
            Some(code) => {
                self.rejoin.store(true, Ordering::Release);
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
