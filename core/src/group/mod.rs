//! Consumer groups: Kafka's classic group protocol and committed offsets.
//!
//! ```text
//!  broker (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, ...)
//!     │
//!     v
//!  GroupCoordinator ── group::Group (pure state machine per group; replies to waiters)
//!     │            └── ticker: session and rebalance timeouts
//!     v
//!  OffsetStore ── committed offsets in memory, persisted in __consumer_offsets (compacted)
//! ```

mod coordinator;
#[allow(clippy::module_inception)]
mod group;
mod offsets;

pub use coordinator::{GroupCoordinator, GroupDescription};
pub use group::{Group, GroupState, JoinRequest, JoinResult, Member, Outcome, Reply, SyncResult};
pub use offsets::{
    CommittedOffset, OFFSETS_PARTITIONS, OFFSETS_TOPIC, OffsetStore, offsets_topic_configs, partition_for,
};
