//! Replica state of a partition: what its leader knows about its followers (high
//! watermark, ISR changes). Pure state machines; the broker drives them with fetches,
//! appends, ticks and metadata changes, and carries out what they return.
//!
//! - [`leader`]: the leader's view: follower positions, the high watermark, ISR shrink and
//!   expand through the controller.
//! - [`follower`]: where a follower truncates when it starts following a new leader.

pub mod follower;
pub mod leader;

#[cfg(test)]
mod leader_test;
#[cfg(test)]
mod simulation_test;

pub use leader::{LeaderAction, LeaderState};
