//! openraft's transport: Raft messages to another controller node over the controller
//! listener's protocol ([`super::rpc`]).

use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{RPCTypes, RaftNetwork, RaftNetworkFactory};
use tokio::net::TcpStream;

use super::rpc::{ControllerRequest, ControllerResponse, read_message, write_message};
use super::{Node, NodeId, TypeConfig};

/// One connection to a controller node, opened on first use and reopened after an error.
#[derive(Debug)]
pub struct PeerClient {
    addr: String,
    stream: Option<TcpStream>,
}

impl PeerClient {
    pub fn new(addr: impl Into<String>) -> Self {
        Self { addr: addr.into(), stream: None }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends one request and waits up to `timeout` for its answer.
    ///
    /// # Errors
    /// `TimedOut` when the deadline passes, or the connection's I/O error. The connection
    /// is dropped either way, since a late answer would be taken for the next request's.
    pub async fn call(
        &mut self,
        request: &ControllerRequest,
        timeout: Duration,
    ) -> std::io::Result<ControllerResponse> {
        let exchange = async {
            if self.stream.is_none() {
                let stream = TcpStream::connect(&self.addr).await?;
                stream.set_nodelay(true)?;
                self.stream = Some(stream);
            }
            let stream = self.stream.as_mut().expect("connected above");
            write_message(stream, request).await?;
            read_message(stream).await
        };
        let result = match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer from {} in {timeout:?}", self.addr),
            )),
        };
        if result.is_err() {
            self.stream = None;
        }
        result
    }
}

/// Makes a [`PeerNetwork`] per target, as openraft asks.
#[derive(Debug, Clone)]
pub struct Network {
    pub node_id: NodeId,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerNetwork {
        PeerNetwork { from: self.node_id, target, client: PeerClient::new(node.addr.clone()) }
    }
}

/// openraft's client for one target node.
#[derive(Debug)]
pub struct PeerNetwork {
    from: NodeId,
    target: NodeId,
    client: PeerClient,
}

impl PeerNetwork {
    async fn send<E: std::error::Error>(
        &mut self,
        action: RPCTypes,
        request: ControllerRequest,
        option: &RPCOption,
    ) -> Result<ControllerResponse, RPCError<NodeId, Node, E>> {
        let timeout = option.hard_ttl();
        self.client.call(&request, timeout).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::TimedOut => {
                RPCError::Timeout(Timeout { action, id: self.from, target: self.target, timeout })
            }
            std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::NotConnected
            | std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::BrokenPipe => RPCError::Unreachable(Unreachable::new(&e)),
            _ => RPCError::Network(NetworkError::new(&e)),
        })
    }

    fn unexpected<E: std::error::Error>(response: &ControllerResponse) -> RPCError<NodeId, Node, E> {
        let e = std::io::Error::new(std::io::ErrorKind::InvalidData, format!("unexpected answer {response:?}"));
        RPCError::Network(NetworkError::new(&e))
    }
}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        match self.send(RPCTypes::AppendEntries, ControllerRequest::AppendEntries(rpc), &option).await? {
            ControllerResponse::AppendEntries(answer) => {
                answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(Self::unexpected(&other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        match self.send(RPCTypes::Vote, ControllerRequest::Vote(rpc), &option).await? {
            ControllerResponse::Vote(answer) => {
                answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(Self::unexpected(&other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>> {
        match self.send(RPCTypes::InstallSnapshot, ControllerRequest::InstallSnapshot(rpc), &option).await? {
            ControllerResponse::InstallSnapshot(answer) => {
                answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(Self::unexpected(&other)),
        }
    }
}
