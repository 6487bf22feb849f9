//! Durable appends on a broker's own behalf: the coordinators' records in their internal
//! topics (`__consumer_offsets`, `__transaction_state`) and the transaction markers they
//! write into data partitions. One broker appends to its local log and waits for the
//! fsync; a cluster broker must lead the partition and waits for its in-sync replicas.

use std::sync::Arc;
use std::time::Duration;

use crate::log::{AppendInfo, AppendOrigin, Log, LogManager, TopicPartition};
use crate::partition::{ReplicaError, ReplicaManager};

/// How long an internal append may wait for its partition's in-sync replicas.
pub const REPLICATION_TIMEOUT: Duration = Duration::from_secs(5);

/// Where internal appends go.
#[derive(Debug, Clone)]
pub enum InternalLog {
    /// One broker: the local log, acknowledged after its fsync.
    Local(Arc<LogManager>),
    /// A cluster: the replica here, which must lead; acknowledged once the partition's
    /// in-sync replicas have the records.
    Replicated(Arc<ReplicaManager>),
}

impl InternalLog {
    /// Appends `batch` and waits until it is durable (fsynced, or replicated to the ISR).
    ///
    /// # Errors
    /// The append, flush or replication failed; [`ReplicaError::NotLeader`] in a cluster
    /// when this broker does not lead the partition.
    pub async fn append(
        &self,
        topic: &str,
        partition: i32,
        batch: &[u8],
        origin: AppendOrigin,
    ) -> Result<AppendInfo, ReplicaError> {
        match self {
            InternalLog::Local(logs) => {
                let log = logs.get(topic, partition)?;
                let appended = log.append_with(batch, 0, origin)?;
                log.wait_flushed(appended.last_offset + 1).await?;
                Ok(appended)
            }
            InternalLog::Replicated(replicas) => {
                let replica = replicas
                    .replica(topic, partition)
                    .ok_or_else(|| ReplicaError::NotLeader(TopicPartition::new(topic, partition)))?;
                let min_insync_replicas = replica.log.config().min_insync_replicas;
                let (appended, epoch, actions) =
                    replica.append_as_leader_from(batch, true, min_insync_replicas, origin)?;
                replicas.act(&replica, actions);
                let next = appended.last_offset + 1;
                if replica.log.ack_needs_flush(next) {
                    replica.log.wait_flushed(next).await?;
                }
                replica.wait_replicated(next, epoch, min_insync_replicas, REPLICATION_TIMEOUT).await?;
                Ok(appended)
            }
        }
    }

    /// The partition's log here, if this broker has it (in a cluster: as its leader).
    pub fn leader_log(&self, topic: &str, partition: i32) -> Option<Arc<Log>> {
        match self {
            InternalLog::Local(logs) => logs.get(topic, partition).ok(),
            InternalLog::Replicated(replicas) => {
                replicas.replica(topic, partition).filter(|r| r.status().leading).map(|r| Arc::clone(&r.log))
            }
        }
    }
}
