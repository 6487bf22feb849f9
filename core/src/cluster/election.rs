//! Choosing a partition's leader.
//!
//! Kafka's rule: keep the current leader while it is in the ISR and unfenced; otherwise
//! the first replica, in assignment order, that is in the ISR and unfenced. Only when no
//! in-sync replica is available, and the topic allows it (`unclean.leader.election.enable`),
//! may an out-of-sync replica lead, and it alone is then the ISR: the records it lacks are
//! lost, which is why the default is no.

use std::collections::BTreeMap;

use super::metadata::{BrokerId, BrokerRegistration, NO_LEADER, PartitionRegistration};

/// The leader and ISR `partition` should have, given which brokers are alive.
pub(crate) fn elect_leader(
    partition: &PartitionRegistration,
    brokers: &BTreeMap<BrokerId, BrokerRegistration>,
    unclean: bool,
) -> (BrokerId, Vec<BrokerId>) {
    let live = |id: BrokerId| brokers.get(&id).is_some_and(|b| !b.fenced);
    let in_sync = |id: BrokerId| partition.isr.contains(&id);
    if partition.leader != NO_LEADER && live(partition.leader) && in_sync(partition.leader) {
        return (partition.leader, partition.isr.clone());
    }
    if let Some(&leader) = partition.replicas.iter().find(|&&r| live(r) && in_sync(r)) {
        return (leader, partition.isr.clone());
    }
    if unclean && let Some(&leader) = partition.replicas.iter().find(|&&r| live(r)) {
        return (leader, vec![leader]);
    }
    (NO_LEADER, partition.isr.clone())
}
