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
use super::rpc::{
    BrokerHeartbeat, ControllerRequest, ControllerResponse, HeartbeatReply, ProposeError, read_message, write_message,
};
use super::state_machine::MetadataStateMachine;
use super::store::{ControllerDb, LogStore};
use super::{CommandResult, Node, NodeId, TypeConfig};
use crate::cluster::liveness::BrokerSessions;
use crate::cluster::metadata::{BrokerId, MetadataCommand, MetadataError, MetadataImage, MetadataOutcome};

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
    /// `broker.heartbeat.interval.ms`: how often a broker tells the controller it is alive.
    pub broker_heartbeat_interval: Duration,
    /// `broker.session.timeout.ms`: a broker silent this long is fenced.
    pub broker_session_timeout: Duration,
    /// `auto.leader.rebalance.enable`: move leadership back to preferred replicas every
    /// `leader.imbalance.check.interval.seconds` (this interval) where a broker's share of
    /// partitions it prefers but does not lead passes the percentage.
    pub leader_rebalance: Option<(Duration, u32)>,
}

impl ControllerConfig {
    /// The defaults of docs/design/0005: heartbeats every 200 ms, elections 1.3-1.6 s after
    /// the leader's last heartbeat.
    pub fn new(node_id: NodeId, advertised: String, voters: BTreeMap<NodeId, String>, data_dir: PathBuf) -> Self {
        Self {
            node_id,
            advertised,
            voters,
            data_dir,
            heartbeat_interval: Duration::from_millis(200),
            // openraft waits out a leader lease (the maximum election timeout) before the
            // election timeout itself, so a follower stands 1.3-1.6 s after the leader's
            // last heartbeat: six missed heartbeats at least, and over half of the 3 s
            // fail-over budget left for the dead broker's session and the clients.
            election_timeout_min: Duration::from_millis(500),
            election_timeout_max: Duration::from_millis(800),
            snapshot_after_entries: 10_000,
            broker_heartbeat_interval: Duration::from_millis(500),
            broker_session_timeout: Duration::from_millis(2000),
            // Kafka's defaults: every 300 s, past 10 %.
            leader_rebalance: Some((Duration::from_secs(300), 10)),
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
    shared: Arc<Shared>,
    server: JoinHandle<()>,
    liveness: JoinHandle<()>,
    rebalance: Option<JoinHandle<()>>,
    /// Connections to other nodes, for forwarded proposals and heartbeats; one lock each,
    /// so a slow peer holds up only its own callers.
    peers: std::sync::Mutex<BTreeMap<String, Arc<Mutex<PeerClient>>>>,
}

/// What the listener, the liveness task and the API share.
struct Shared {
    config: ControllerConfig,
    raft: Raft<TypeConfig>,
    image: watch::Receiver<Arc<MetadataImage>>,
    /// Broker sessions; kept only while this node is the active controller.
    sessions: std::sync::Mutex<BrokerSessions>,
}

impl Shared {
    fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.config.node_id)
    }

    /// The leader and its address from this node's view of the membership.
    fn known_leader(&self) -> Option<(NodeId, String)> {
        let metrics = self.raft.metrics().borrow().clone();
        let leader = metrics.current_leader?;
        let node = metrics.membership_config.membership().get_node(&leader)?.clone();
        Some((leader, node.addr))
    }
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
        let sessions = std::sync::Mutex::new(BrokerSessions::new(config.broker_session_timeout));
        let shared = Arc::new(Shared { config, raft, image, sessions });
        let server = tokio::spawn(serve(listener, Arc::clone(&shared)));
        let liveness = tokio::spawn(watch_sessions(Arc::clone(&shared)));
        let rebalance = shared
            .config
            .leader_rebalance
            .map(|(interval, percentage)| tokio::spawn(rebalance_leaders(Arc::clone(&shared), interval, percentage)));
        let controller = Self { shared, server, liveness, rebalance, peers: std::sync::Mutex::new(BTreeMap::new()) };
        controller.form_quorum().await?;
        Ok(controller)
    }

    /// On a pristine voter, proposes the initial membership. Every voter does this with the
    /// same map, which openraft allows; on a node that has any state it is refused, which
    /// is the restart case and fine. A node that is not a voter asks to follow the metadata
    /// log as a learner instead (in the background, until a voter accepts).
    async fn form_quorum(&self) -> Result<(), QuorumError> {
        if !self.shared.config.voters.contains_key(&self.shared.config.node_id) {
            self.join_as_learner();
            return Ok(());
        }
        let members: BTreeMap<NodeId, Node> =
            self.shared.config.voters.iter().map(|(id, addr)| (*id, Node { addr: addr.clone() })).collect();
        match self.shared.raft.initialize(members).await {
            Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(QuorumError::Fatal(e.to_string())),
        }
    }

    /// Asks the voters, until the active controller accepts, to add this node as a learner:
    /// it then receives the metadata log without voting (a broker joining a running
    /// cluster). Asking again after a restart changes nothing.
    fn join_as_learner(&self) {
        let shared = Arc::clone(&self.shared);
        tokio::spawn(async move {
            let request =
                || ControllerRequest::AddLearner { id: shared.config.node_id, addr: shared.config.advertised.clone() };
            let mut targets: Vec<String> = shared.config.voters.values().cloned().collect();
            let mut attempt = 0usize;
            loop {
                let addr = targets[attempt % targets.len()].clone();
                attempt += 1;
                let mut client = PeerClient::new(&addr);
                match client.call(&request(), Duration::from_secs(5)).await {
                    Ok(ControllerResponse::AddLearner(Ok(()))) => {
                        tracing::info!(node = shared.config.node_id, via = %addr, "joined the metadata quorum as a learner");
                        return;
                    }
                    Ok(ControllerResponse::AddLearner(Err(ProposeError::NotLeader { leader: Some((_, leader)) }))) => {
                        // Ask the leader next, then the voters in turn again.
                        targets = std::iter::once(leader.clone())
                            .chain(shared.config.voters.values().filter(|v| **v != leader).cloned())
                            .collect();
                        attempt = 0;
                    }
                    Ok(other) => tracing::debug!(?other, "learner request not accepted yet"),
                    Err(error) => tracing::debug!(%error, via = %addr, "learner request failed"),
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    }

    pub fn node_id(&self) -> NodeId {
        self.shared.config.node_id
    }

    /// The metadata image, updated as entries are applied on this node.
    pub fn image(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.shared.image.clone()
    }

    /// The active controller, as far as this node knows.
    pub fn leader(&self) -> Option<NodeId> {
        self.shared.raft.metrics().borrow().current_leader
    }

    pub fn is_leader(&self) -> bool {
        self.leader() == Some(self.shared.config.node_id)
    }

    /// openraft's view of this node (state, term, log, membership), for status and tests.
    pub fn metrics(&self) -> watch::Receiver<openraft::RaftMetrics<NodeId, Node>> {
        self.shared.raft.metrics()
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
                Some((id, addr)) if *id != self.shared.config.node_id => {
                    match self.forward(addr, ControllerRequest::Propose(command.clone()), Duration::from_secs(5)).await
                    {
                        Ok(ControllerResponse::Propose(answer)) => answer,
                        Ok(other) => Err(ProposeError::Quorum(format!("unexpected answer {other:?}"))),
                        Err(e) => Err(e),
                    }
                }
                _ => propose_locally(&self.shared.raft, command.clone()).await,
            };
            match attempt {
                Ok(result) => return Ok(result),
                Err(ProposeError::NotLeader { leader }) => leader_hint = leader.or_else(|| self.shared.known_leader()),
                Err(ProposeError::Quorum(message)) => {
                    tracing::debug!(%message, "proposal failed, retrying");
                    leader_hint = self.shared.known_leader();
                }
                Err(ProposeError::Refused(error)) => return Ok(Err(error)),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(QuorumError::Unavailable(timeout));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends `request` to the node at `addr` (the active controller, as far as we know).
    async fn forward(
        &self,
        addr: &str,
        request: ControllerRequest,
        timeout: Duration,
    ) -> Result<ControllerResponse, ProposeError> {
        let peer = {
            let mut peers = self.peers.lock().expect("peers lock");
            Arc::clone(peers.entry(addr.to_owned()).or_insert_with(|| Arc::new(Mutex::new(PeerClient::new(addr)))))
        };
        let mut client = peer.lock().await;
        client.call(&request, timeout).await.map_err(|e| ProposeError::Quorum(format!("{addr}: {e}")))
    }

    /// Registers broker `id` (a new incarnation) and returns its broker epoch.
    ///
    /// # Errors
    /// No active controller in `timeout`, or the registration was refused.
    pub async fn register_broker(
        &self,
        id: BrokerId,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<i64, QuorumError> {
        let incarnation = uuid::Uuid::new_v4();
        let command = MetadataCommand::RegisterBroker { id, incarnation, host: host.to_owned(), port };
        match self.propose(command, timeout).await? {
            Ok(MetadataOutcome::BrokerEpoch(epoch)) => Ok(epoch),
            other => Err(QuorumError::Fatal(format!("unexpected registration outcome {other:?}"))),
        }
    }

    /// Sends a broker heartbeat to the active controller.
    ///
    /// # Errors
    /// [`ProposeError::Refused`] when the broker must register again (a stale epoch), or
    /// a retriable error when no active controller answered.
    pub async fn heartbeat(&self, heartbeat: BrokerHeartbeat) -> Result<HeartbeatReply, ProposeError> {
        if self.shared.is_leader() {
            return handle_heartbeat(&self.shared, heartbeat).await;
        }
        let Some((_, addr)) = self.shared.known_leader() else {
            return Err(ProposeError::NotLeader { leader: None });
        };
        // Within one heartbeat interval, so a controller that vanished without a reset does
        // not hold the next heartbeat (to its successor) past the broker's session.
        let timeout = self.shared.config.broker_heartbeat_interval;
        match self.forward(&addr, ControllerRequest::BrokerHeartbeat(heartbeat), timeout).await? {
            ControllerResponse::BrokerHeartbeat(reply) => reply,
            other => Err(ProposeError::Quorum(format!("unexpected answer {other:?}"))),
        }
    }

    /// Keeps broker `id` registered and alive until the returned task is aborted:
    /// registers, publishes the broker epoch on `registered`, then heartbeats every
    /// `broker.heartbeat.interval.ms`, asking to be unfenced once `ready` is true (the
    /// broker has applied the metadata up to its registration, KIP-631), and registering
    /// again if the controller no longer knows this incarnation.
    pub fn run_broker(
        self: &Arc<Self>,
        id: BrokerId,
        host: String,
        port: u16,
        registered: watch::Sender<Option<i64>>,
        ready: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let controller = Arc::clone(self);
        tokio::spawn(async move {
            let interval = controller.shared.config.broker_heartbeat_interval;
            'register: loop {
                let epoch = match controller.register_broker(id, &host, port, Duration::from_secs(30)).await {
                    Ok(epoch) => epoch,
                    Err(e) => {
                        tracing::warn!(broker = id, error = %e, "broker registration failed; retrying");
                        tokio::time::sleep(interval).await;
                        continue;
                    }
                };
                tracing::info!(broker = id, epoch, "broker registered");
                registered.send_replace(Some(epoch));
                loop {
                    let ready = *ready.borrow();
                    match controller.heartbeat(BrokerHeartbeat { id, epoch, ready }).await {
                        Ok(_) => {}
                        Err(ProposeError::Refused(error)) => {
                            tracing::warn!(broker = id, %error, "heartbeat refused; registering again");
                            continue 'register;
                        }
                        Err(error) => tracing::debug!(broker = id, %error, "heartbeat not delivered"),
                    }
                    tokio::time::sleep(interval).await;
                }
            }
        })
    }

    /// Kafka's controlled shutdown: fences broker `id` (incarnation `epoch`) at once, so
    /// its leaderships move before it stops instead of a session later. Stop its
    /// heartbeats first, or the next one unfences it again.
    ///
    /// # Errors
    /// [`QuorumError::Unavailable`] when no active controller answered in `timeout`.
    pub async fn fence_for_shutdown(&self, id: BrokerId, epoch: i64, timeout: Duration) -> Result<(), QuorumError> {
        match self.propose(MetadataCommand::FenceBroker { id, epoch }, timeout).await? {
            Ok(_) => Ok(()),
            // Already fenced or re-registered: nothing of this incarnation leads.
            Err(error) => {
                tracing::info!(broker = id, %error, "controlled shutdown: fence refused");
                Ok(())
            }
        }
    }

    /// Stops openraft and the listener.
    pub async fn shutdown(&self) {
        self.server.abort();
        self.liveness.abort();
        if let Some(rebalance) = &self.rebalance {
            rebalance.abort();
        }
        if let Err(e) = self.shared.raft.shutdown().await {
            tracing::warn!(error = %e, "controller quorum did not stop cleanly");
        }
    }
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("config", &self.shared.config)
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

/// The active controller's side of a heartbeat: renew the session, and unfence a broker
/// that is ready.
async fn handle_heartbeat(shared: &Shared, heartbeat: BrokerHeartbeat) -> Result<HeartbeatReply, ProposeError> {
    if !shared.is_leader() {
        return Err(ProposeError::NotLeader { leader: shared.known_leader() });
    }
    let BrokerHeartbeat { id, epoch, ready } = heartbeat;
    let registered = shared.image.borrow().brokers.get(&id).map(|b| (b.epoch, b.fenced));
    let fenced = match registered {
        Some((current, fenced)) if current == epoch => fenced,
        // A registration this node has not applied yet: not an error, try again.
        Some((current, _)) if current < epoch => {
            return Err(ProposeError::Quorum("registration not applied yet".into()));
        }
        Some((current, _)) => return Err(MetadataError::StaleBrokerEpoch { id, given: epoch, current }.into()),
        None => return Err(ProposeError::Quorum(format!("broker {id} not registered here yet"))),
    };
    shared.sessions.lock().expect("sessions lock").heartbeat(id, std::time::Instant::now());
    if fenced && ready {
        let unfenced = propose_locally(&shared.raft, MetadataCommand::UnfenceBroker { id, epoch }).await?;
        return Ok(HeartbeatReply { fenced: unfenced.is_err() });
    }
    Ok(HeartbeatReply { fenced })
}

/// While this node is the active controller, fences brokers whose sessions run out.
async fn watch_sessions(shared: Arc<Shared>) {
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The Raft term this node has been the active controller in, if it is.
    let mut active_term: Option<u64> = None;
    // The last other node seen leading: when this node takes over from it, its broker (the
    // same node, in combined mode) most likely died with it.
    let mut previous_leader: Option<NodeId> = None;
    loop {
        ticker.tick().await;
        let (leader, term, current) = {
            let metrics = shared.raft.metrics();
            let metrics = metrics.borrow();
            (metrics.current_leader == Some(shared.config.node_id), metrics.current_term, metrics.current_leader)
        };
        if !leader {
            if active_term.take().is_some() {
                shared.sessions.lock().expect("sessions lock").clear();
            }
            if current.is_some() {
                previous_leader = current;
            }
            continue;
        }
        let now = std::time::Instant::now();
        let image = shared.image.borrow().clone();
        let live: Vec<BrokerId> = image.brokers.values().filter(|b| !b.fenced).map(|b| b.id).collect();
        if active_term != Some(term) {
            // A new term as active controller (even one regained within a tick): heartbeats
            // went to someone else meanwhile, so everyone starts afresh.
            let mut sessions = shared.sessions.lock().expect("sessions lock");
            sessions.restart(live.iter().copied(), now);
            // Except the broker of the controller this node took over from: the quorum
            // lost that node, so its broker gets two heartbeat intervals (time for a live
            // broker to learn of the new controller from its AppendEntries and send its next
            // heartbeat) rather than a whole session. That is what keeps fail-over of a
            // combined node near the broker-only case (docs/design/0005). A live broker
            // fenced by mistake loses its leaderships and ISR places and is unfenced by its
            // next heartbeat; its replicas rejoin the ISR once caught up.
            if let Some(previous) = previous_leader.filter(|p| *p != shared.config.node_id) {
                let id = previous as BrokerId;
                if live.contains(&id) {
                    sessions.heartbeat_within(id, now, 2 * shared.config.broker_heartbeat_interval);
                }
            }
            active_term = Some(term);
            continue;
        }
        // Brokers unfenced by entries applied since (this node's image may have lagged the
        // log when it took over) get a session too.
        shared.sessions.lock().expect("sessions lock").watch(live.iter().copied(), now);
        let expired = shared.sessions.lock().expect("sessions lock").expired(now);
        for id in expired {
            if !live.contains(&id) {
                shared.sessions.lock().expect("sessions lock").forget(id);
                continue;
            }
            tracing::warn!(broker = id, "broker missed its session; fencing it");
            let epoch = image.brokers[&id].epoch;
            match propose_locally(&shared.raft, MetadataCommand::FenceBroker { id, epoch }).await {
                // Forgotten only once the fence is applied; otherwise tried again next tick.
                Ok(_) => shared.sessions.lock().expect("sessions lock").forget(id),
                Err(e) => tracing::warn!(broker = id, error = %e, "could not fence broker; retrying"),
            }
        }
    }
}

/// While this node is the active controller, moves leadership back to preferred replicas
/// every `interval` (Kafka's auto leader rebalance).
async fn rebalance_leaders(shared: Arc<Shared>, interval: Duration, percentage: u32) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        if !shared.is_leader() {
            continue;
        }
        let image = shared.image.borrow().clone();
        for (topic, partition) in crate::cluster::election::imbalanced_partitions(&image, percentage) {
            tracing::info!(%topic, partition, "moving leadership back to the preferred replica");
            if let Err(error) =
                propose_locally(&shared.raft, MetadataCommand::ElectPreferredLeader { topic, partition }).await
            {
                tracing::warn!(?error, "preferred leader election failed");
                break;
            }
        }
    }
}

/// Accepts controller connections until aborted.
async fn serve(listener: TcpListener, shared: Arc<Shared>) {
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
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            match serve_connection(stream, &shared).await {
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    // Not a Headwater node speaking: say so once, and close.
                    tracing::warn!(%peer, error = %e, "bad frame on the controller listener; connection closed");
                }
                Err(e) if e.kind() != std::io::ErrorKind::UnexpectedEof => {
                    tracing::debug!(%peer, error = %e, "controller connection closed");
                }
                _ => {}
            }
            drop(permit);
        });
    }
}

async fn serve_connection(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let raft = &shared.raft;
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
            ControllerRequest::BrokerHeartbeat(heartbeat) => {
                ControllerResponse::BrokerHeartbeat(handle_heartbeat(shared, heartbeat).await)
            }
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
