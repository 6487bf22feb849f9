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

/// Whether `partition`'s preferred replica (its first) could lead it now: in the ISR and
/// unfenced, and not leading already.
pub fn preferred_leader_eligible(
    partition: &PartitionRegistration,
    brokers: &BTreeMap<BrokerId, BrokerRegistration>,
) -> bool {
    let Some(&preferred) = partition.replicas.first() else { return false };
    preferred != partition.leader
        && partition.isr.contains(&preferred)
        && brokers.get(&preferred).is_some_and(|b| !b.fenced)
}

/// Kafka's automatic leader rebalance (`auto.leader.rebalance.enable`): for every broker
/// whose share of partitions it prefers but does not lead exceeds
/// `leader.imbalance.per.broker.percentage`, the partitions that can move back to it.
/// In topic and partition order, so every controller would choose the same.
pub fn imbalanced_partitions(image: &super::MetadataImage, percentage: u32) -> Vec<(String, u32)> {
    let mut preferred: BTreeMap<BrokerId, (u32, Vec<(String, u32)>)> = BTreeMap::new();
    for (name, topic) in &image.topics {
        for (index, partition) in topic.partitions.iter().enumerate() {
            let Some(&first) = partition.replicas.first() else { continue };
            let entry = preferred.entry(first).or_default();
            entry.0 += 1;
            if partition.leader != first && preferred_leader_eligible(partition, &image.brokers) {
                entry.1.push((name.clone(), index as u32));
            }
        }
    }
    let mut moves = Vec::new();
    for (_, (total, movable)) in preferred {
        // Imbalance as Kafka counts it: partitions not led by their preferred broker,
        // against all it prefers; only those that can move count here.
        if !movable.is_empty() && movable.len() as u64 * 100 > u64::from(total) * u64::from(percentage) {
            moves.extend(movable);
        }
    }
    moves.sort();
    moves
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::cluster::{MetadataImage, TopicImage};

    fn broker(id: BrokerId, fenced: bool) -> BrokerRegistration {
        BrokerRegistration { id, incarnation: uuid::Uuid::nil(), host: "h".into(), port: 1, epoch: 1, fenced }
    }

    fn partition(replicas: &[BrokerId], isr: &[BrokerId], leader: BrokerId) -> PartitionRegistration {
        PartitionRegistration {
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader,
            leader_epoch: 1,
            partition_epoch: 1,
            target_replicas: None,
        }
    }

    fn image(partitions: Vec<PartitionRegistration>, fenced: &[BrokerId]) -> MetadataImage {
        let brokers = (1..=3).map(|id| (id, broker(id, fenced.contains(&id)))).collect();
        let topic = TopicImage { name: "t".into(), id: uuid::Uuid::nil(), configs: BTreeMap::new(), partitions };
        MetadataImage { brokers, topics: BTreeMap::from([("t".to_string(), Arc::new(topic))]), ..Default::default() }
    }

    #[test]
    fn leadership_moves_back_to_a_preferred_replica_that_is_in_sync() {
        let balanced = partition(&[1, 2, 3], &[1, 2, 3], 1);
        let moved = partition(&[2, 3, 1], &[2, 3, 1], 3);
        let image_now = image(vec![balanced.clone(), moved.clone()], &[]);
        assert_eq!(imbalanced_partitions(&image_now, 10), vec![("t".to_string(), 1)]);
        // Within the allowed share (1 of 1 preferred = 100% > 10%, but not past 100%).
        assert!(imbalanced_partitions(&image_now, 100).is_empty());
    }

    #[test]
    fn a_preferred_replica_out_of_the_isr_or_fenced_gets_nothing_back() {
        let out_of_sync = partition(&[2, 3, 1], &[3, 1], 3);
        assert!(imbalanced_partitions(&image(vec![out_of_sync], &[]), 10).is_empty());
        let fenced = partition(&[2, 3, 1], &[2, 3, 1], 3);
        assert!(imbalanced_partitions(&image(vec![fenced.clone()], &[2]), 10).is_empty());
        assert!(!preferred_leader_eligible(&partition(&[1, 2], &[1, 2], 1), &image(vec![], &[]).brokers));
    }
}
