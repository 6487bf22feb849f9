//! Where a new partition's replicas go.
//!
//! Kafka's placement without racks: partition `p` starts at broker `(start + p) % n` and
//! takes the next `replication_factor` brokers, with a shift for the followers every `n`
//! partitions so that no two brokers always follow each other. The first replica is the
//! preferred leader, so leaderships spread evenly; `start` rotates per topic so that the
//! first partitions of many small topics do not all land on the same broker.

use super::metadata::{BrokerId, MetadataError};

/// Replica lists for partitions `0..partitions`, over `brokers` (unfenced, in id order).
///
/// # Errors
/// [`MetadataError::InvalidReplicationFactor`] if there are fewer brokers than replicas
/// wanted, [`MetadataError::InvalidPartitions`] for a replication factor of 0.
pub(crate) fn assign_replicas(
    brokers: &[BrokerId],
    partitions: u32,
    replication_factor: u16,
    start: u32,
) -> Result<Vec<Vec<BrokerId>>, MetadataError> {
    let n = brokers.len();
    let rf = usize::from(replication_factor);
    if rf == 0 {
        return Err(MetadataError::InvalidPartitions("the replication factor must be at least 1".into()));
    }
    if rf > n {
        return Err(MetadataError::InvalidReplicationFactor { wanted: replication_factor, available: n });
    }
    let start = start as usize % n;
    Ok((0..partitions as usize)
        .map(|p| {
            let first = (start + p) % n;
            // Followers sit at a shift of 1..n-1 from the first replica, changing every n
            // partitions (Kafka's `nextReplicaShift`).
            let shift = if n > 1 { 1 + (p / n + start) % (n - 1) } else { 0 };
            let mut replicas = Vec::with_capacity(rf);
            replicas.push(brokers[first]);
            for i in 0..rf - 1 {
                let offset = 1 + (shift - 1 + i) % (n - 1);
                replicas.push(brokers[(first + offset) % n]);
            }
            replicas
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_partition_gets_distinct_replicas_and_leaders_spread_evenly() {
        let brokers = [1, 2, 3, 4];
        for rf in 1..=4u16 {
            for start in 0..4 {
                let assignment = assign_replicas(&brokers, 12, rf, start).unwrap();
                let mut leaders = [0; 5];
                for replicas in &assignment {
                    assert_eq!(replicas.len(), rf as usize);
                    let mut sorted = replicas.clone();
                    sorted.sort_unstable();
                    sorted.dedup();
                    assert_eq!(sorted.len(), rf as usize, "distinct replicas in {replicas:?}");
                    leaders[replicas[0] as usize] += 1;
                }
                assert_eq!(&leaders[1..], &[3, 3, 3, 3], "rf {rf} start {start}");
            }
        }
    }

    #[test]
    fn too_few_brokers_is_an_invalid_replication_factor() {
        let error = assign_replicas(&[1, 2], 1, 3, 0).unwrap_err();
        assert_eq!(error, MetadataError::InvalidReplicationFactor { wanted: 3, available: 2 });
        assert!(matches!(assign_replicas(&[1], 1, 0, 0), Err(MetadataError::InvalidPartitions(_))));
    }
}
