//! The controller quorum: the metadata log replicated by Raft (openraft) among the nodes
//! named in `--voters`, and followed by every other node as a learner.
//!
//! - [`store`]: the Raft log, vote and snapshots, durable in redb.
//! - [`state_machine`]: applies committed commands to the metadata image.
//! - [`rpc`]: the controller listener's frames and messages.
//! - [`network`]: openraft's transport to the other nodes, over [`rpc`].
//! - [`controller`]: one node's quorum member: start, serve, propose.

// openraft's trait methods return its own `StorageError` (over 200 bytes); the helpers that
// build those results share the type rather than box it and convert at every boundary.
#![allow(clippy::result_large_err)]

pub mod controller;
pub mod network;
pub mod rpc;
pub mod state_machine;
pub mod store;

#[cfg(test)]
mod store_test;

use std::io::Cursor;

use crate::cluster::metadata::MetadataCommand;

pub use controller::{Controller, ControllerConfig, QuorumError};
pub use state_machine::CommandResult;

/// A controller node's id: the broker id of the node it runs in.
pub type NodeId = u64;
/// A controller node's address, as openraft keeps it in the membership.
pub type Node = openraft::BasicNode;

openraft::declare_raft_types!(
    /// openraft's types for the metadata log.
    pub TypeConfig:
        D = MetadataCommand,
        R = CommandResult,
        NodeId = NodeId,
        Node = Node,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// One entry of the metadata log.
pub type Entry = openraft::Entry<TypeConfig>;
