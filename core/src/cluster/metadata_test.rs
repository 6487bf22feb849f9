//! The metadata state machine: commands in, image out, no I/O.

use std::collections::BTreeMap;

use super::metadata::*;

struct Cluster {
    image: MetadataImage,
    index: u64,
}

impl Cluster {
    /// Brokers `1..=n`, registered and unfenced.
    fn with_brokers(n: i32) -> Self {
        let mut cluster = Self { image: MetadataImage::default(), index: 0 };
        for id in 1..=n {
            cluster.start(id);
        }
        cluster
    }

    fn apply(&mut self, command: MetadataCommand) -> Result<MetadataOutcome, MetadataError> {
        self.index += 1;
        self.image.apply(self.index, &command)
    }

    /// Registers (or re-registers) broker `id` and unfences it.
    fn start(&mut self, id: BrokerId) {
        let registered = self.apply(MetadataCommand::RegisterBroker {
            id,
            incarnation: uuid::Uuid::new_v4(),
            host: "127.0.0.1".into(),
            port: 9000 + id as u16,
        });
        let Ok(MetadataOutcome::BrokerEpoch(epoch)) = registered else { panic!("registered: {registered:?}") };
        assert!(self.image.brokers[&id].fenced, "a registered broker starts fenced");
        self.apply(MetadataCommand::UnfenceBroker { id, epoch }).unwrap();
    }

    fn create(
        &mut self,
        name: &str,
        partitions: u32,
        replication_factor: u16,
    ) -> Result<MetadataOutcome, MetadataError> {
        self.apply(MetadataCommand::CreateTopic {
            name: name.into(),
            id: uuid::Uuid::new_v4(),
            partitions,
            replication_factor,
            configs: BTreeMap::new(),
        })
    }

    /// Fences the current incarnation of broker `id`.
    fn fence(&mut self, id: BrokerId) -> Result<MetadataOutcome, MetadataError> {
        let epoch = self.image.brokers[&id].epoch;
        self.apply(MetadataCommand::FenceBroker { id, epoch })
    }

    fn partition(&self, topic: &str, partition: u32) -> PartitionRegistration {
        self.image.partition(topic, partition).expect("partition exists").clone()
    }

    fn alter_isr(&mut self, topic: &str, partition: u32, isr: Vec<BrokerId>) -> Result<MetadataOutcome, MetadataError> {
        let p = self.partition(topic, partition);
        self.apply(MetadataCommand::AlterPartition {
            topic: topic.into(),
            partition,
            leader: p.leader,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            isr,
        })
    }
}

#[test]
fn a_new_topic_has_every_replica_in_sync_and_leaders_spread_over_brokers() {
    let mut cluster = Cluster::with_brokers(3);
    cluster.create("orders", 6, 3).unwrap();
    let mut leaders = BTreeMap::new();
    for p in 0..6 {
        let partition = cluster.partition("orders", p);
        assert_eq!(partition.isr, partition.replicas);
        assert_eq!(partition.leader, partition.replicas[0]);
        assert_eq!((partition.leader_epoch, partition.partition_epoch), (0, 0));
        *leaders.entry(partition.leader).or_insert(0) += 1;
    }
    assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
    assert_eq!(cluster.create("orders", 1, 1), Err(MetadataError::TopicExists("orders".into())));
    assert_eq!(cluster.create("wide", 1, 4), Err(MetadataError::InvalidReplicationFactor { wanted: 4, available: 3 }));
}

#[test]
fn fencing_the_leader_elects_the_next_in_sync_replica_with_a_new_epoch() {
    let mut cluster = Cluster::with_brokers(3);
    cluster.create("t", 1, 3).unwrap();
    let before = cluster.partition("t", 0);
    cluster.fence(before.leader).unwrap();
    let after = cluster.partition("t", 0);
    assert_ne!(after.leader, before.leader);
    assert_eq!(after.leader, before.replicas[1], "the next replica in assignment order");
    assert_eq!(after.leader_epoch, before.leader_epoch + 1);
    assert!(after.partition_epoch > before.partition_epoch);
    assert!(!after.isr.contains(&before.leader), "a fenced broker leaves the ISR");
    assert_eq!(after.isr.len(), 2);
}

#[test]
fn the_last_in_sync_replica_stays_recorded_and_leads_again_when_it_returns() {
    let mut cluster = Cluster::with_brokers(3);
    cluster.create("t", 1, 3).unwrap();
    let replicas = cluster.partition("t", 0).replicas;
    // Followers fall out of the ISR first; then the leader dies.
    cluster.alter_isr("t", 0, vec![replicas[0]]).unwrap();
    cluster.fence(replicas[0]).unwrap();
    let offline = cluster.partition("t", 0);
    assert_eq!(offline.leader, NO_LEADER, "no clean candidate: the partition goes offline");
    assert_eq!(offline.isr, vec![replicas[0]], "the last in-sync replica stays recorded");

    // An out-of-sync replica coming back does not lead (unclean election is off)...
    cluster.start(replicas[1]);
    assert_eq!(cluster.partition("t", 0).leader, NO_LEADER);
    // ...but the last in-sync replica does.
    cluster.start(replicas[0]);
    let online = cluster.partition("t", 0);
    assert_eq!(online.leader, replicas[0]);
    assert_eq!(online.leader_epoch, offline.leader_epoch + 1);
}

#[test]
fn unclean_election_lets_an_out_of_sync_replica_lead_alone() {
    let mut cluster = Cluster::with_brokers(2);
    cluster.create("t", 1, 2).unwrap();
    let replicas = cluster.partition("t", 0).replicas;
    cluster.alter_isr("t", 0, vec![replicas[0]]).unwrap();
    cluster.fence(replicas[0]).unwrap();
    assert_eq!(cluster.partition("t", 0).leader, NO_LEADER);
    let configs = BTreeMap::from([(UNCLEAN_LEADER_ELECTION.to_owned(), "true".to_owned())]);
    cluster.apply(MetadataCommand::AlterTopicConfigs { name: "t".into(), configs }).unwrap();
    let p = cluster.partition("t", 0);
    assert_eq!((p.leader, p.isr.clone()), (replicas[1], vec![replicas[1]]));
}

#[test]
fn alter_partition_is_fenced_by_leader_and_partition_epochs() {
    let mut cluster = Cluster::with_brokers(3);
    cluster.create("t", 1, 3).unwrap();
    let p = cluster.partition("t", 0);
    let shrink = |leader_epoch, partition_epoch, isr: Vec<BrokerId>| MetadataCommand::AlterPartition {
        topic: "t".into(),
        partition: 0,
        leader: p.leader,
        leader_epoch,
        partition_epoch,
        isr,
    };
    let two = vec![p.replicas[0], p.replicas[1]];
    assert!(matches!(
        cluster.apply(shrink(p.leader_epoch + 1, 0, two.clone())),
        Err(MetadataError::FencedLeaderEpoch { .. })
    ));
    assert!(matches!(cluster.apply(shrink(0, 5, two.clone())), Err(MetadataError::InvalidUpdateVersion { .. })));
    assert_eq!(cluster.apply(shrink(0, 0, vec![p.replicas[1]])), Err(MetadataError::IneligibleReplica(p.leader)));
    let Ok(MetadataOutcome::Partition(shrunk)) = cluster.apply(shrink(0, 0, two.clone())) else { panic!() };
    assert_eq!((shrunk.isr.clone(), shrunk.partition_epoch, shrunk.leader_epoch), (two.clone(), 1, 0));
    // The same request again is now stale.
    assert!(matches!(cluster.apply(shrink(0, 0, two)), Err(MetadataError::InvalidUpdateVersion { .. })));
    // A fenced replica may not be added back.
    cluster.fence(p.replicas[2]).unwrap();
    assert_eq!(cluster.alter_isr("t", 0, p.replicas.clone()), Err(MetadataError::IneligibleReplica(p.replicas[2])));
}

#[test]
fn a_restarted_broker_comes_back_fenced_and_gives_up_its_leaderships() {
    let mut cluster = Cluster::with_brokers(3);
    cluster.create("t", 3, 3).unwrap();
    let led_by_one: Vec<u32> = (0..3).filter(|p| cluster.partition("t", *p).leader == 1).collect();
    assert!(!led_by_one.is_empty());
    cluster
        .apply(MetadataCommand::RegisterBroker { id: 1, incarnation: uuid::Uuid::new_v4(), host: "h".into(), port: 1 })
        .unwrap();
    assert!(cluster.image.brokers[&1].fenced);
    for p in led_by_one {
        assert_ne!(cluster.partition("t", p).leader, 1);
    }
    // An unfence from the previous incarnation is refused.
    let stale = cluster.apply(MetadataCommand::UnfenceBroker { id: 1, epoch: 1 });
    assert!(matches!(stale, Err(MetadataError::StaleBrokerEpoch { .. })));
}

#[test]
fn a_reassignment_adds_the_new_replicas_first_and_drops_the_old_once_they_are_in_sync() {
    let mut cluster = Cluster::with_brokers(4);
    cluster.create("t", 1, 3).unwrap();
    let old = cluster.partition("t", 0);
    let outside = (1..=4).find(|b| !old.replicas.contains(b)).unwrap();
    let target = vec![outside, old.replicas[1], old.replicas[2]];
    cluster
        .apply(MetadataCommand::ReassignPartition { topic: "t".into(), partition: 0, replicas: target.clone() })
        .unwrap();
    let moving = cluster.partition("t", 0);
    assert_eq!(moving.replicas.len(), 4, "old and new replicas while the new one catches up");
    assert_eq!(moving.target_replicas.as_ref(), Some(&target));
    assert_eq!(moving.leader, old.leader, "leadership stays until the move completes");

    // The new replica caught up: the leader adds it to the ISR, which completes the move.
    let mut isr = moving.isr.clone();
    isr.push(outside);
    cluster.alter_isr("t", 0, isr).unwrap();
    let done = cluster.partition("t", 0);
    assert_eq!(done.replicas, target);
    assert_eq!(done.target_replicas, None);
    assert!(!done.isr.contains(&old.leader));
    assert_eq!(done.leader, outside, "the first in-sync replica of the new set leads");
    assert_eq!(done.leader_epoch, old.leader_epoch + 1);
}

#[test]
fn preferred_leader_election_moves_leadership_back_when_the_preferred_replica_is_in_sync() {
    let mut cluster = Cluster::with_brokers(3);
    cluster.create("t", 1, 3).unwrap();
    let preferred = cluster.partition("t", 0).replicas[0];
    cluster.fence(preferred).unwrap();
    cluster.start(preferred);
    assert_ne!(cluster.partition("t", 0).leader, preferred);
    let elect = || MetadataCommand::ElectPreferredLeader { topic: "t".into(), partition: 0 };
    cluster.apply(elect()).unwrap();
    assert_ne!(cluster.partition("t", 0).leader, preferred, "not back in the ISR yet");
    let mut isr = cluster.partition("t", 0).isr;
    isr.push(preferred);
    cluster.alter_isr("t", 0, isr).unwrap();
    cluster.apply(elect()).unwrap();
    assert_eq!(cluster.partition("t", 0).leader, preferred);
}

#[test]
fn partitions_grow_and_topics_go() {
    let mut cluster = Cluster::with_brokers(3);
    cluster.create("t", 2, 2).unwrap();
    assert!(matches!(
        cluster.apply(MetadataCommand::CreatePartitions { name: "t".into(), total: 2 }),
        Err(MetadataError::InvalidPartitions(_))
    ));
    cluster.apply(MetadataCommand::CreatePartitions { name: "t".into(), total: 5 }).unwrap();
    let topic = &cluster.image.topics["t"];
    assert_eq!(topic.partitions.len(), 5);
    assert!(topic.partitions.iter().all(|p| p.replicas.len() == 2));
    cluster.apply(MetadataCommand::DeleteTopic { name: "t".into() }).unwrap();
    assert!(cluster.image.topics.is_empty());
    assert_eq!(
        cluster.apply(MetadataCommand::DeleteTopic { name: "t".into() }),
        Err(MetadataError::UnknownTopic("t".into()))
    );
}

#[test]
fn absurd_partition_counts_are_refused_the_same_way_on_every_node() {
    let mut cluster = Cluster::with_brokers(1);
    assert!(matches!(cluster.create("huge", 4_000_000_000, 1), Err(MetadataError::InvalidPartitions(_))));
    cluster.create("t", 1, 1).unwrap();
    let grow = MetadataCommand::CreatePartitions { name: "t".into(), total: u32::MAX };
    assert!(matches!(cluster.apply(grow), Err(MetadataError::InvalidPartitions(_))));
}

#[test]
fn a_fence_decided_for_an_old_incarnation_does_not_fence_the_new_one() {
    let mut cluster = Cluster::with_brokers(2);
    let old_epoch = cluster.image.brokers[&2].epoch;
    cluster.start(2);
    let stale = cluster.apply(MetadataCommand::FenceBroker { id: 2, epoch: old_epoch });
    assert!(matches!(stale, Err(MetadataError::StaleBrokerEpoch { .. })));
    assert!(!cluster.image.brokers[&2].fenced);
}
