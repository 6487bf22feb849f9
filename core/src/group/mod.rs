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

#[allow(clippy::module_inception)]
mod group;

pub use group::{Group, GroupState, JoinRequest, JoinResult, Member, Outcome, Reply, SyncResult};
