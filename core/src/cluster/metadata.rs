//! The cluster metadata image and the commands that change it.
//!
//! [`MetadataImage`] is what every node knows about the cluster: brokers, topics, partition
//! assignments, leaders, in-sync replicas, epochs and topic configs. It changes only through
//! [`MetadataImage::apply`], which takes a committed [`MetadataCommand`] from the controller
//! quorum's log. Applying is pure and deterministic (no clock, no I/O, no randomness, ordered
//! maps only): every node that applies the same log reaches the same image, which is what
//! lets brokers act on their own copy. Choices that need input from outside (a topic's id,
//! the time) travel inside the command.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::election::elect_leader;
use super::placement::assign_replicas;

/// A broker's id, as in Kafka (`node.id`).
pub type BrokerId = i32;

/// No leader: the partition is offline.
pub const NO_LEADER: BrokerId = -1;

/// The most partitions a topic may have. Checked inside `apply`, so a command past it is
/// refused the same way on every node rather than exhausting memory on all of them, at
/// every replay of the log.
pub const MAX_PARTITIONS: u32 = 100_000;

/// The topic config that allows an out-of-sync replica to become leader.
pub const UNCLEAN_LEADER_ELECTION: &str = "unclean.leader.election.enable";

/// A broker known to the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub id: BrokerId,
    /// Changes each time the broker process starts, so the controller can tell a restart
    /// from a repeated registration.
    pub incarnation: uuid::Uuid,
    /// Where Kafka clients reach it.
    pub host: String,
    pub port: u16,
    /// Bumped at each registration (Kafka's broker epoch): requests from an older
    /// incarnation carry an older epoch and are refused.
    pub epoch: i64,
    /// A fenced broker leads nothing and is in no ISR (unless it was the last member).
    pub fenced: bool,
}

/// One partition's replicas, leader and ISR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRegistration {
    /// Assignment order; the first is the preferred leader.
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    pub leader: BrokerId,
    /// Bumped whenever the leader changes; fences a stale leader's writes and reads.
    pub leader_epoch: i32,
    /// Bumped on any change to the leader, ISR or replicas; fences stale ISR updates.
    pub partition_epoch: i32,
    /// While a reassignment runs: the replica set it moves to. `replicas` then holds the
    /// union of old and new, so new replicas catch up before old ones leave.
    pub target_replicas: Option<Vec<BrokerId>>,
}

impl PartitionRegistration {
    pub fn has_leader(&self) -> bool {
        self.leader != NO_LEADER
    }

    /// Sets a new leader (bumping the leader epoch) or keeps the current one, and bumps
    /// the partition epoch.
    fn change(&mut self, leader: BrokerId, isr: Vec<BrokerId>) {
        if leader != self.leader {
            self.leader = leader;
            self.leader_epoch += 1;
        }
        self.isr = isr;
        self.partition_epoch += 1;
    }
}

/// A topic and its partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    pub name: String,
    pub id: uuid::Uuid,
    /// Overrides only, with Kafka's names; unset keys take the broker defaults.
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<PartitionRegistration>,
}

impl TopicImage {
    fn unclean_election(&self) -> bool {
        self.configs.get(UNCLEAN_LEADER_ELECTION).is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

/// Everything the cluster knows, as of one point in the metadata log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    pub brokers: BTreeMap<BrokerId, BrokerRegistration>,
    /// Shared so that a copy of the image (one per change, for the watchers) is cheap.
    pub topics: BTreeMap<String, Arc<TopicImage>>,
    /// Where the next topic's replica placement starts, so leaders spread over brokers.
    pub placement_cursor: u32,
    /// The last metadata log index applied; doubles as the next broker epoch.
    pub applied_index: u64,
}

/// A change to the metadata, as proposed to the controller quorum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataCommand {
    /// A broker starts (or restarts). It stays fenced until it asks to be unfenced.
    RegisterBroker {
        id: BrokerId,
        incarnation: uuid::Uuid,
        host: String,
        port: u16,
    },
    /// The broker is ready to lead and to be in ISRs.
    UnfenceBroker {
        id: BrokerId,
        epoch: i64,
    },
    /// The broker missed its session (or shut down): its leaderships move, it leaves ISRs.
    /// Carries the epoch of the incarnation the decision was about, so a fence decided
    /// just before the broker registered again does not fence the new incarnation.
    FenceBroker {
        id: BrokerId,
        epoch: i64,
    },
    CreateTopic {
        name: String,
        id: uuid::Uuid,
        partitions: u32,
        replication_factor: u16,
        configs: BTreeMap<String, String>,
    },
    DeleteTopic {
        name: String,
    },
    /// Grows a topic to `total` partitions.
    CreatePartitions {
        name: String,
        total: u32,
    },
    /// Replaces a topic's config overrides.
    AlterTopicConfigs {
        name: String,
        configs: BTreeMap<String, String>,
    },
    /// A leader changes its ISR (Kafka's AlterPartition, KIP-497).
    AlterPartition {
        topic: String,
        partition: u32,
        leader: BrokerId,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<BrokerId>,
    },
    /// Moves leadership to the preferred replica when it is in the ISR and unfenced.
    ElectPreferredLeader {
        topic: String,
        partition: u32,
    },
    /// Replaces a partition's replica set (a reassignment).
    ReassignPartition {
        topic: String,
        partition: u32,
        replicas: Vec<BrokerId>,
    },
}

/// What applying a command produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataOutcome {
    Done,
    /// The epoch given to a registered broker.
    BrokerEpoch(i64),
    /// A partition's new state, for AlterPartition and elections.
    Partition(PartitionRegistration),
}

/// Why a command changed nothing. Each maps to one of Kafka's error codes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum MetadataError {
    #[error("topic {0} already exists")]
    TopicExists(String),
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    #[error("topic {topic} has no partition {partition}")]
    UnknownPartition { topic: String, partition: u32 },
    #[error("unknown broker {0}")]
    UnknownBroker(BrokerId),
    #[error("replication factor {wanted} is larger than the {available} available broker(s)")]
    InvalidReplicationFactor { wanted: u16, available: usize },
    #[error("invalid partition count: {0}")]
    InvalidPartitions(String),
    #[error("invalid replica assignment: {0}")]
    InvalidReplicaAssignment(String),
    #[error("stale broker epoch {given} for broker {id} (current {current})")]
    StaleBrokerEpoch { id: BrokerId, given: i64, current: i64 },
    #[error("broker {broker} is not the leader of {topic}-{partition} at leader epoch {leader_epoch}")]
    FencedLeaderEpoch { topic: String, partition: u32, broker: BrokerId, leader_epoch: i32 },
    #[error("partition epoch {given} of {topic}-{partition} is stale (current {current})")]
    InvalidUpdateVersion { topic: String, partition: u32, given: i32, current: i32 },
    #[error("broker {0} cannot join the ISR: fenced, unknown or not a replica")]
    IneligibleReplica(BrokerId),
}

impl MetadataError {
    /// Kafka's error code for this refusal.
    pub fn code(&self) -> i16 {
        use kafka_protocol::ResponseError as E;
        match self {
            Self::TopicExists(_) => E::TopicAlreadyExists.code(),
            Self::UnknownTopic(_) | Self::UnknownPartition { .. } => E::UnknownTopicOrPartition.code(),
            Self::UnknownBroker(_) => E::BrokerNotAvailable.code(),
            Self::InvalidReplicationFactor { .. } => E::InvalidReplicationFactor.code(),
            Self::InvalidPartitions(_) => E::InvalidPartitions.code(),
            Self::InvalidReplicaAssignment(_) => E::InvalidReplicaAssignment.code(),
            Self::StaleBrokerEpoch { .. } => E::StaleBrokerEpoch.code(),
            Self::FencedLeaderEpoch { .. } => E::FencedLeaderEpoch.code(),
            Self::InvalidUpdateVersion { .. } => E::InvalidUpdateVersion.code(),
            Self::IneligibleReplica(_) => E::IneligibleReplica.code(),
        }
    }
}

impl MetadataImage {
    /// Applies one committed command, at metadata log index `index`.
    ///
    /// # Errors
    /// A [`MetadataError`] when the command is refused; the image is then unchanged except
    /// for `applied_index`.
    pub fn apply(&mut self, index: u64, command: &MetadataCommand) -> Result<MetadataOutcome, MetadataError> {
        self.applied_index = index;
        match command {
            MetadataCommand::RegisterBroker { id, incarnation, host, port } => {
                let epoch = index as i64;
                let registration = BrokerRegistration {
                    id: *id,
                    incarnation: *incarnation,
                    host: host.clone(),
                    port: *port,
                    epoch,
                    fenced: true,
                };
                // A restarted broker comes back fenced: what it led has moved already
                // (or moves now), and it rejoins ISRs by catching up.
                self.brokers.insert(*id, registration);
                self.fence_leaderships(*id);
                Ok(MetadataOutcome::BrokerEpoch(epoch))
            }
            MetadataCommand::UnfenceBroker { id, epoch } => {
                let broker = self.brokers.get_mut(id).ok_or(MetadataError::UnknownBroker(*id))?;
                if broker.epoch != *epoch {
                    return Err(MetadataError::StaleBrokerEpoch { id: *id, given: *epoch, current: broker.epoch });
                }
                broker.fenced = false;
                self.elect_offline_leaders();
                Ok(MetadataOutcome::Done)
            }
            MetadataCommand::FenceBroker { id, epoch } => {
                let broker = self.brokers.get_mut(id).ok_or(MetadataError::UnknownBroker(*id))?;
                if broker.epoch != *epoch {
                    return Err(MetadataError::StaleBrokerEpoch { id: *id, given: *epoch, current: broker.epoch });
                }
                broker.fenced = true;
                self.fence_leaderships(*id);
                Ok(MetadataOutcome::Done)
            }
            MetadataCommand::CreateTopic { name, id, partitions, replication_factor, configs } => {
                if self.topics.contains_key(name) {
                    return Err(MetadataError::TopicExists(name.clone()));
                }
                if *partitions == 0 || *partitions > MAX_PARTITIONS {
                    return Err(MetadataError::InvalidPartitions(format!(
                        "a topic has 1 to {MAX_PARTITIONS} partitions, not {partitions}"
                    )));
                }
                let live = self.unfenced_brokers();
                let assignment = assign_replicas(&live, *partitions, *replication_factor, self.placement_cursor)?;
                self.placement_cursor = self.placement_cursor.wrapping_add(1);
                let partitions = assignment.into_iter().map(new_partition).collect();
                let topic = TopicImage { name: name.clone(), id: *id, configs: configs.clone(), partitions };
                self.topics.insert(name.clone(), Arc::new(topic));
                Ok(MetadataOutcome::Done)
            }
            MetadataCommand::DeleteTopic { name } => {
                self.topics.remove(name).ok_or_else(|| MetadataError::UnknownTopic(name.clone()))?;
                Ok(MetadataOutcome::Done)
            }
            MetadataCommand::CreatePartitions { name, total } => {
                let live = self.unfenced_brokers();
                let cursor = self.placement_cursor;
                let topic = self.topic_mut(name)?;
                let existing = topic.partitions.len() as u32;
                if *total > MAX_PARTITIONS {
                    return Err(MetadataError::InvalidPartitions(format!(
                        "a topic has at most {MAX_PARTITIONS} partitions, not {total}"
                    )));
                }
                if *total <= existing {
                    return Err(MetadataError::InvalidPartitions(format!(
                        "topic {name} has {existing} partitions; the new count must be larger, got {total}"
                    )));
                }
                // The target set while a reassignment runs: `replicas` is then old and new.
                let first = &topic.partitions[0];
                let replication_factor = first.target_replicas.as_ref().unwrap_or(&first.replicas).len() as u16;
                // Continue the placement where partition `existing` would have gone.
                let assignment = assign_replicas(&live, *total, replication_factor, cursor)?;
                topic.partitions.extend(assignment.into_iter().skip(existing as usize).map(new_partition));
                Ok(MetadataOutcome::Done)
            }
            MetadataCommand::AlterTopicConfigs { name, configs } => {
                let topic = self.topic_mut(name)?;
                topic.configs = configs.clone();
                let unclean = topic.unclean_election();
                if unclean {
                    self.elect_offline_leaders();
                }
                Ok(MetadataOutcome::Done)
            }
            MetadataCommand::AlterPartition { topic, partition, leader, leader_epoch, partition_epoch, isr } => {
                self.alter_partition(topic, *partition, *leader, *leader_epoch, *partition_epoch, isr)
            }
            MetadataCommand::ElectPreferredLeader { topic, partition } => {
                let brokers = self.brokers.clone();
                let p = self.partition_mut(topic, *partition)?;
                let preferred = p.replicas[0];
                let eligible = p.isr.contains(&preferred) && brokers.get(&preferred).is_some_and(|b| !b.fenced);
                if eligible && p.leader != preferred {
                    let isr = p.isr.clone();
                    p.change(preferred, isr);
                }
                Ok(MetadataOutcome::Partition(p.clone()))
            }
            MetadataCommand::ReassignPartition { topic, partition, replicas } => {
                self.reassign(topic, *partition, replicas)
            }
        }
    }

    /// Brokers that may take new replicas and leaderships, in id order.
    pub fn unfenced_brokers(&self) -> Vec<BrokerId> {
        self.brokers.values().filter(|b| !b.fenced).map(|b| b.id).collect()
    }

    pub fn partition(&self, topic: &str, partition: u32) -> Option<&PartitionRegistration> {
        self.topics.get(topic)?.partitions.get(partition as usize)
    }

    fn topic_mut(&mut self, name: &str) -> Result<&mut TopicImage, MetadataError> {
        self.topics.get_mut(name).map(Arc::make_mut).ok_or_else(|| MetadataError::UnknownTopic(name.to_owned()))
    }

    fn partition_mut(&mut self, topic: &str, partition: u32) -> Result<&mut PartitionRegistration, MetadataError> {
        self.topic_mut(topic)?
            .partitions
            .get_mut(partition as usize)
            .ok_or_else(|| MetadataError::UnknownPartition { topic: topic.to_owned(), partition })
    }

    fn alter_partition(
        &mut self,
        topic: &str,
        partition: u32,
        leader: BrokerId,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: &[BrokerId],
    ) -> Result<MetadataOutcome, MetadataError> {
        let brokers = self.brokers.clone();
        let p = self.partition_mut(topic, partition)?;
        if p.leader != leader || p.leader_epoch != leader_epoch {
            return Err(MetadataError::FencedLeaderEpoch {
                topic: topic.to_owned(),
                partition,
                broker: leader,
                leader_epoch,
            });
        }
        if p.partition_epoch != partition_epoch {
            return Err(MetadataError::InvalidUpdateVersion {
                topic: topic.to_owned(),
                partition,
                given: partition_epoch,
                current: p.partition_epoch,
            });
        }
        let mut new_isr: Vec<BrokerId> = Vec::with_capacity(isr.len());
        for &replica in isr {
            // A member may only be added while it is a live replica; members already in the
            // ISR may stay (the leader decides when they fall behind).
            let eligible = p.replicas.contains(&replica)
                && (p.isr.contains(&replica) || brokers.get(&replica).is_some_and(|b| !b.fenced));
            if !eligible {
                return Err(MetadataError::IneligibleReplica(replica));
            }
            if !new_isr.contains(&replica) {
                new_isr.push(replica);
            }
        }
        if !new_isr.contains(&leader) {
            return Err(MetadataError::IneligibleReplica(leader));
        }
        p.change(leader, new_isr);
        let unclean = self.topics.get(topic).is_some_and(|t| t.unclean_election());
        let p = self.partition_mut(topic, partition)?;
        complete_reassignment(p, &brokers, unclean);
        Ok(MetadataOutcome::Partition(p.clone()))
    }

    /// Starts moving a partition to `replicas`, as Kafka's reassignment does: the new
    /// replicas are added at once and fetch from the leader; when all of them are in the
    /// ISR (see [`Self::alter_partition`]) the old ones are dropped and, if the leader was
    /// one of them, a new replica leads.
    fn reassign(
        &mut self,
        topic: &str,
        partition: u32,
        replicas: &[BrokerId],
    ) -> Result<MetadataOutcome, MetadataError> {
        let brokers = self.brokers.clone();
        let unclean = self.topics.get(topic).is_some_and(|t| t.unclean_election());
        let p = self.partition_mut(topic, partition)?;
        let mut seen = Vec::with_capacity(replicas.len());
        for &replica in replicas {
            if !brokers.contains_key(&replica) {
                return Err(MetadataError::UnknownBroker(replica));
            }
            if seen.contains(&replica) {
                return Err(MetadataError::InvalidReplicaAssignment(format!("broker {replica} named twice")));
            }
            seen.push(replica);
        }
        if seen.is_empty() {
            return Err(MetadataError::InvalidReplicaAssignment("no replicas".into()));
        }
        if seen == p.replicas && p.target_replicas.is_none() {
            return Ok(MetadataOutcome::Partition(p.clone()));
        }
        let mut union = seen.clone();
        union.extend(p.replicas.iter().copied().filter(|r| !seen.contains(r)));
        p.replicas = union;
        p.target_replicas = Some(seen);
        p.partition_epoch += 1;
        complete_reassignment(p, &brokers, unclean);
        Ok(MetadataOutcome::Partition(p.clone()))
    }

    /// Moves every leadership away from `broker` and drops it from every ISR it is in
    /// (except as the last member, which is kept so that it can lead again on return
    /// without an unclean election).
    fn fence_leaderships(&mut self, broker: BrokerId) {
        let brokers = self.brokers.clone();
        for topic in self.topics.values_mut() {
            let unclean = topic.unclean_election();
            let affected = topic.partitions.iter().any(|p| p.leader == broker || p.isr.contains(&broker));
            if !affected {
                continue;
            }
            for p in &mut Arc::make_mut(topic).partitions {
                if p.leader != broker && !p.isr.contains(&broker) {
                    continue;
                }
                let mut candidate = p.clone();
                if candidate.isr.len() > 1 {
                    candidate.isr.retain(|r| *r != broker);
                }
                let (leader, isr) = elect_leader(&candidate, &brokers, unclean);
                if leader != p.leader || isr != p.isr {
                    p.change(leader, isr);
                }
            }
        }
    }

    /// Gives a leader to every partition that has none, where one is eligible.
    fn elect_offline_leaders(&mut self) {
        let brokers = self.brokers.clone();
        for topic in self.topics.values_mut() {
            let unclean = topic.unclean_election();
            if topic.partitions.iter().all(PartitionRegistration::has_leader) {
                continue;
            }
            for p in &mut Arc::make_mut(topic).partitions {
                if p.has_leader() {
                    continue;
                }
                let (leader, isr) = elect_leader(p, &brokers, unclean);
                if leader != NO_LEADER {
                    p.change(leader, isr);
                }
            }
        }
    }
}

fn new_partition(replicas: Vec<BrokerId>) -> PartitionRegistration {
    PartitionRegistration {
        leader: replicas[0],
        isr: replicas.clone(),
        replicas,
        leader_epoch: 0,
        partition_epoch: 0,
        target_replicas: None,
    }
}

/// Ends a reassignment once every target replica is in the ISR: the old replicas go, and
/// leadership moves into the new set if it was outside it.
fn complete_reassignment(
    p: &mut PartitionRegistration,
    brokers: &BTreeMap<BrokerId, BrokerRegistration>,
    unclean: bool,
) {
    let Some(target) = p.target_replicas.clone() else { return };
    if !target.iter().all(|r| p.isr.contains(r)) {
        return;
    }
    let mut next = p.clone();
    next.isr.retain(|r| target.contains(r));
    next.replicas = target;
    next.target_replicas = None;
    let (leader, isr) = elect_leader(&next, brokers, unclean);
    next.change(leader, isr);
    *p = next;
}
