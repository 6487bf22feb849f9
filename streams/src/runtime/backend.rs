//! What a stream thread needs of the log: the seam between the runtime and a broker
//! ([`super::broker`]) or the embedded log ([`super::embedded`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use headwater_core::client::ConsumerRecord;

use super::OutRecord;
use crate::error::StreamsError;
use crate::topology::InternalTopic;

/// The changelog offsets a flush reached: (topic, partition) -> the next offset.
pub(crate) type Reached = HashMap<(Arc<str>, i32), i64>;

/// One stream thread's view of the log: its share of the source partitions, a producer,
/// and commits. Used from one thread, so futures need not be `Send`.
pub(crate) trait Backend {
    /// Partition counts of existing topics.
    ///
    /// # Errors
    /// A topic that does not exist, or the log failing.
    async fn partition_counts(&self, topics: &[String]) -> Result<HashMap<String, i32>, StreamsError>;

    /// Creates the topics that do not exist yet.
    async fn create_topics(&self, topics: &BTreeMap<String, InternalTopic>) -> Result<(), StreamsError>;

    /// Starts consuming the source topics (joining the group, with a broker).
    async fn subscribe(&mut self, topics: Vec<String>) -> Result<(), StreamsError>;

    /// Records of assigned partitions, waiting up to the poll wait.
    async fn poll(&mut self) -> Result<Vec<ConsumerRecord>, StreamsError>;

    /// The partitions this thread owns now.
    fn assignment(&self) -> Vec<(String, i32)>;

    /// Whether the group wants to rebalance: commit, then call [`Self::rebalance`].
    fn rebalance_wanted(&self) -> bool;

    /// Gives up every partition and rejoins.
    async fn rebalance(&mut self) -> Result<(), StreamsError>;

    /// Sends records (not yet acknowledged).
    async fn send(&mut self, records: Vec<OutRecord>) -> Result<(), StreamsError>;

    /// Waits until every record sent is acknowledged (durable), and tells how far the
    /// changelogs written got.
    async fn flush(&mut self) -> Result<Reached, StreamsError>;

    /// Commits the offsets (the next record to process) of source partitions.
    async fn commit(&mut self, offsets: &[(String, i32, i64)]) -> Result<(), StreamsError>;

    /// The first and the next offset of a partition.
    async fn bounds(&mut self, topic: &str, partition: i32) -> Result<(i64, i64), StreamsError>;

    /// Reads a partition from `from` up to `end`, calling `apply` on each record.
    async fn read_range(
        &self,
        topic: &str,
        partition: i32,
        from: i64,
        end: i64,
        apply: &mut dyn FnMut(ConsumerRecord),
    ) -> Result<(), StreamsError>;

    /// The next offset of each partition, for lag.
    async fn end_offsets(&mut self, partitions: &[(String, i32)]) -> Result<HashMap<(String, i32), i64>, StreamsError>;

    /// Leaves the group and closes connections.
    async fn close(self) -> Result<(), StreamsError>;
}
