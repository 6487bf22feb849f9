//! Replica state of a partition: what its leader knows about its followers (high
//! watermark, ISR changes). Pure state machines; the broker drives them with fetches,
//! appends, ticks and metadata changes, and carries out what they return.
//!
//! - [`leader`]: the leader's view: follower positions, the high watermark, ISR shrink and
//!   expand through the controller.
//! - [`follower`]: where a follower truncates when it starts following a new leader.
//! - [`replica`]: this broker's replica of one partition: role, high watermark, appends.
//! - [`replica_manager`]: keeps every replica in the role the metadata image gives it.
//! - [`fetcher`]: copies followed partitions from their leader.
//! - [`internal`]: durable appends on the broker's own behalf (coordinators, markers).

mod fetcher;
pub mod follower;
pub mod internal;
pub mod leader;
pub mod replica;
pub mod replica_manager;

#[cfg(test)]
mod leader_test;
#[cfg(test)]
mod simulation_test;

pub use internal::InternalLog;
pub use leader::{LeaderAction, LeaderState};
pub use replica::{Replica, ReplicaError, ReplicaStatus};
pub use replica_manager::ReplicaManager;
