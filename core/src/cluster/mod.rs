//! The cluster: who the brokers are, which topics exist, and who leads each partition.
//!
//! ```text
//!   broker ──register / heartbeat / AlterPartition──> active controller (the Raft leader)
//!   controller ──MetadataCommand──> Raft log (every node) ──apply──> MetadataImage
//!   MetadataImage (every node) ──watch──> broker: become leader / follower, serve metadata
//! ```
//!
//! - [`metadata`]: the image and the commands that change it; pure and deterministic.
//! - [`election`]: choosing a partition's leader from its ISR.
//! - [`liveness`]: broker sessions kept by the active controller.
//! - [`placement`]: where a new partition's replicas go.
//! - [`quorum`]: the controller quorum (openraft) that replicates the metadata log.
//!
//! Why the controller quorum runs on openraft and every node holds the image:
//! `docs/design/0005-cluster-and-replication.md`.

pub mod election;
pub mod liveness;
pub mod metadata;
pub mod placement;
pub mod quorum;

#[cfg(test)]
mod metadata_test;

pub use metadata::{
    BrokerId, BrokerRegistration, MetadataCommand, MetadataError, MetadataImage, MetadataOutcome, NO_LEADER,
    PartitionRegistration, TopicImage,
};
