//! One node's member of the controller quorum: it opens the durable state, starts openraft,
//! serves the controller listener, forms the quorum on first start, and proposes metadata
//! changes (forwarding them to the active controller when that is another node).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{Config, Raft, SnapshotPolicy};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, Semaphore, watch};
use tokio::task::JoinHandle;

use super::network::{Network, PeerClient};
use super::rpc::{ControllerRequest, ControllerResponse, ProposeError, read_message, write_message};
use super::state_machine::MetadataStateMachine;
use super::store::{ControllerDb, LogStore};
use super::{CommandResult, Node, NodeId, TypeConfig};
use crate::cluster::metadata::{MetadataCommand, MetadataImage};

/// How many controller connections one node serves at once: one per peer per stream
/// (replication, snapshots, votes) plus brokers' requests.
const MAX_CONNECTIONS: usize = 256;

/// A controller node's settings.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub node_id: NodeId,
    /// Where this node's controller listener is reachable by the others.
    pub advertised: String,
    /// The voters of the quorum, by id: the same map on every node.
    pub voters: BTreeMap<NodeId, String>,
    /// Where `controller.redb` lives.
    pub data_dir: PathBuf,
    pub heartbeat_interval: Duration,
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// Take a snapshot (and purge the log before it) after this many entries.
    pub snapshot_after_entries: u64,
}

impl ControllerConfig {
    /// The defaults of docs/design/0005: heartbeats every 250 ms, elections after 1-2 s.
    pub fn new(node_id: NodeId, advertised: String, voters: BTreeMap<NodeId, String>, data_dir: PathBuf) -> Self {
        Self {
            node_id,
            advertised,
            voters,
            data_dir,
            heartbeat_interval: Duration::from_millis(250),
            election_timeout_min: Duration::from_millis(1000),
            election_timeout_max: Duration::from_millis(2000),
            snapshot_after_entries: 10_000,
        }
    }
}

/// Why the quorum could not start or a proposal failed.
#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    #[error("cannot open the controller store {path}: {source}")]
    Store { path: PathBuf, source: redb::Error },
    #[error("invalid controller settings: {0}")]
    Config(#[from] openraft::ConfigError),
    #[error("the controller quorum stopped: {0}")]
    Fatal(String),
    #[error("controller storage failed: {0}")]
    Storage(#[from] openraft::StorageError<NodeId>),
    #[error("no active controller answered in {0:?}")]
    Unavailable(Duration),
    #[error("cannot serve the controller listener: {0}")]
    Io(#[from] std::io::Error),
}

/// This node's quorum member.
pub struct Controller {
    config: ControllerConfig,
    raft: Raft<TypeConfig>,
    image: watch::Receiver<Arc<MetadataImage>>,
    server: JoinHandle<()>,
    /// Connections to other nodes, for forwarded proposals.
    peers: Mutex<BTreeMap<String, PeerClient>>,
}

impl Controller {
    /// Starts the quorum member on `listener` (bound by the caller, so tests can use port
    /// 0), and on the first start of a voter forms the quorum from `config.voters`.
    ///
    /// # Errors
    /// The store cannot be opened, or the settings are invalid.
    pub async fn start(config: ControllerConfig, listener: TcpListener) -> Result<Self, QuorumError> {
        std::fs::create_dir_all(&config.data_dir)?;
        let path = config.data_dir.join("controller.redb");
        let db = ControllerDb::open(&path).map_err(|source| QuorumError::Store { path, source })?;
        let state_machine = MetadataStateMachine::open(db.clone()).await?;
        let image = state_machine.subscribe();
        let raft_config = Config {
            cluster_name: "headwater".into(),
            heartbeat_interval: config.heartbeat_interval.as_millis() as u64,
            election_timeout_min: config.election_timeout_min.as_millis() as u64,
            election_timeout_max: config.election_timeout_max.as_millis() as u64,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_after_entries),
            max_in_snapshot_log_to_keep: 100,
            // A follower's AppendEntries includes its fsync; allow more than a heartbeat.
            install_snapshot_timeout: 2000,
            ..Config::default()
        }
        .validate()?;
        let network = Network { node_id: config.node_id };
        let raft = Raft::new(config.node_id, Arc::new(raft_config), network, LogStore::new(db), state_machine)
            .await
            .map_err(|e| QuorumError::Fatal(e.to_string()))?;
        let server = tokio::spawn(serve(listener, raft.clone()));
        let controller = Self { config, raft, image, server, peers: Mutex::new(BTreeMap::new()) };
        controller.form_quorum().await?;
        Ok(controller)
    }

    /// On a pristine voter, proposes the initial membership. Every voter does this with the
    /// same map, which openraft allows; on a node that has any state it is refused, which
    /// is the restart case and fine.
    async fn form_quorum(&self) -> Result<(), QuorumError> {
        if !self.config.voters.contains_key(&self.config.node_id) {
            return Ok(());
        }
        let members: BTreeMap<NodeId, Node> =
            self.config.voters.iter().map(|(id, addr)| (*id, Node { addr: addr.clone() })).collect();
        match self.raft.initialize(members).await {
            Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(QuorumError::Fatal(e.to_string())),
        }
    }

    pub fn node_id(&self) -> NodeId {
        self.config.node_id
    }

    /// The metadata image, updated as entries are applied on this node.
    pub fn image(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image.clone()
    }

    /// The active controller, as far as this node knows.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    pub fn is_leader(&self) -> bool {
        self.leader() == Some(self.config.node_id)
    }

    /// openraft's view of this node (state, term, log, membership), for status and tests.
    pub fn metrics(&self) -> watch::Receiver<openraft::RaftMetrics<NodeId, Node>> {
        self.raft.metrics()
    }

    /// Commits `command` to the metadata log and returns its outcome, going to the active
    /// controller wherever it is, and retrying through elections until `timeout`.
    ///
    /// # Errors
    /// [`QuorumError::Unavailable`] if no controller accepted it in time.
    pub async fn propose(&self, command: MetadataCommand, timeout: Duration) -> Result<CommandResult, QuorumError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut leader_hint: Option<(NodeId, String)> = None;
        loop {
            let attempt = match &leader_hint {
                Some((id, addr)) if *id != self.config.node_id => self.forward(addr, command.clone()).await,
                _ => propose_locally(&self.raft, command.clone()).await,
            };
            match attempt {
                Ok(result) => return Ok(result),
                Err(ProposeError::NotLeader { leader }) => leader_hint = leader.or_else(|| self.known_leader()),
                Err(ProposeError::Quorum(message)) => {
                    tracing::debug!(%message, "proposal failed, retrying");
                    leader_hint = self.known_leader();
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(QuorumError::Unavailable(timeout));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The leader and its address from this node's view of the membership.
    fn known_leader(&self) -> Option<(NodeId, String)> {
        let metrics = self.raft.metrics().borrow().clone();
        let leader = metrics.current_leader?;
        let node = metrics.membership_config.membership().get_node(&leader)?.clone();
        Some((leader, node.addr))
    }

    async fn forward(&self, addr: &str, command: MetadataCommand) -> Result<CommandResult, ProposeError> {
        let mut peers = self.peers.lock().await;
        let client = peers.entry(addr.to_owned()).or_insert_with(|| PeerClient::new(addr));
        match client.call(&ControllerRequest::Propose(command), Duration::from_secs(5)).await {
            Ok(ControllerResponse::Propose(answer)) => answer,
            Ok(other) => Err(ProposeError::Quorum(format!("unexpected answer {other:?}"))),
            Err(e) => Err(ProposeError::Quorum(format!("{addr}: {e}"))),
        }
    }

    /// Stops openraft and the listener.
    pub async fn shutdown(self) {
        self.server.abort();
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "controller quorum did not stop cleanly");
        }
    }
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("config", &self.config)
            .field("leader", &self.leader())
            .finish_non_exhaustive()
    }
}

async fn propose_locally(raft: &Raft<TypeConfig>, command: MetadataCommand) -> Result<CommandResult, ProposeError> {
    match raft.client_write(command).await {
        Ok(response) => Ok(response.data),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
            Err(ProposeError::NotLeader { leader: forward.leader_id.zip(forward.leader_node.map(|n| n.addr)) })
        }
        Err(e) => Err(ProposeError::Quorum(e.to_string())),
    }
}

/// Accepts controller connections until aborted.
async fn serve(listener: TcpListener, raft: Raft<TypeConfig>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else { return };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "controller listener accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let raft = raft.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_connection(stream, &raft).await
                && e.kind() != std::io::ErrorKind::UnexpectedEof
            {
                tracing::debug!(%peer, error = %e, "controller connection closed");
            }
            drop(permit);
        });
    }
}

async fn serve_connection(mut stream: TcpStream, raft: &Raft<TypeConfig>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    loop {
        let request: ControllerRequest = read_message(&mut stream).await?;
        let response = match request {
            ControllerRequest::AppendEntries(rpc) => ControllerResponse::AppendEntries(raft.append_entries(rpc).await),
            ControllerRequest::Vote(rpc) => ControllerResponse::Vote(raft.vote(rpc).await),
            ControllerRequest::InstallSnapshot(rpc) => {
                ControllerResponse::InstallSnapshot(raft.install_snapshot(rpc).await)
            }
            ControllerRequest::Propose(command) => ControllerResponse::Propose(propose_locally(raft, command).await),
            ControllerRequest::AddLearner { id, addr } => {
                ControllerResponse::AddLearner(match raft.add_learner(id, Node { addr }, false).await {
                    Ok(_) => Ok(()),
                    Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                        Err(ProposeError::NotLeader {
                            leader: forward.leader_id.zip(forward.leader_node.map(|n| n.addr)),
                        })
                    }
                    Err(e) => Err(ProposeError::Quorum(e.to_string())),
                })
            }
        };
        write_message(&mut stream, &response).await?;
    }
}
