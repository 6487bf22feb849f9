//! The controller listener's protocol: each frame is a 4-byte big-endian length and a JSON
//! message; a connection carries one request at a time, each answered before the next.
//!
//! This is an internal protocol between Headwater nodes, not the Kafka protocol: no Kafka
//! client talks to controllers, and openraft's messages serialize as they are
//! (docs/design/0005-cluster-and-replication.md).

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{CommandResult, NodeId, TypeConfig};
use crate::cluster::metadata::{BrokerId, MetadataCommand, MetadataError};

/// The largest frame either side accepts: well above a snapshot chunk (3 MiB by default)
/// and a batch of metadata entries.
pub const MAX_FRAME_BYTES: usize = 64 << 20;

#[derive(Debug, Serialize, Deserialize)]
pub enum ControllerRequest {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A metadata change, for the active controller.
    Propose(MetadataCommand),
    /// A node that is not a voter asks to follow the metadata log.
    AddLearner {
        id: NodeId,
        addr: String,
    },
    /// A broker is alive (for the active controller's session bookkeeping).
    BrokerHeartbeat(BrokerHeartbeat),
}

/// A broker's heartbeat (Kafka's BrokerHeartbeat, KIP-631).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerHeartbeat {
    pub id: BrokerId,
    /// The epoch its registration was given; an older one means a previous incarnation.
    pub epoch: i64,
    /// The broker is ready to lead and to be in ISRs (it asks to be unfenced).
    pub ready: bool,
}

/// The active controller's answer to a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatReply {
    pub fenced: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum ControllerResponse {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    Propose(Result<CommandResult, ProposeError>),
    AddLearner(Result<(), ProposeError>),
    BrokerHeartbeat(Result<HeartbeatReply, ProposeError>),
}

/// Why a proposal was not applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ProposeError {
    /// This node is not the active controller; the leader is given when it is known.
    #[error("not the active controller (leader: {leader:?})")]
    NotLeader { leader: Option<(NodeId, String)> },
    #[error("the controller quorum failed: {0}")]
    Quorum(String),
    /// The request was refused for good (a stale broker epoch, an unknown broker).
    #[error(transparent)]
    Refused(#[from] MetadataError),
}

/// Reads one frame and decodes it.
///
/// # Errors
/// I/O errors, a frame over [`MAX_FRAME_BYTES`], or a body that does not decode
/// (`InvalidData`).
pub async fn read_message<T: DeserializeOwned>(stream: &mut (impl AsyncReadExt + Unpin)) -> std::io::Result<T> {
    let len = stream.read_u32().await? as usize;
    if len > MAX_FRAME_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("controller frame of {len} bytes is over the limit of {MAX_FRAME_BYTES}"),
        ));
    }
    // Grown as bytes arrive, not allocated at the claimed size: a peer that claims 64 MiB
    // and sends nothing costs nothing.
    let mut body = Vec::new();
    stream.take(len as u64).read_to_end(&mut body).await?;
    if body.len() < len {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "controller frame cut short"));
    }
    serde_json::from_slice(&body).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Encodes and writes one frame.
///
/// # Errors
/// I/O errors, or a message over [`MAX_FRAME_BYTES`].
pub async fn write_message<T: Serialize>(
    stream: &mut (impl AsyncWriteExt + Unpin),
    message: &T,
) -> std::io::Result<()> {
    let body = serde_json::to_vec(message).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    if body.len() > MAX_FRAME_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("controller message of {} bytes is over the limit of {MAX_FRAME_BYTES}", body.len()),
        ));
    }
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    stream.write_all(&frame).await?;
    stream.flush().await
}
