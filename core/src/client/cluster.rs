//! What a client knows of the cluster: its brokers, each partition's leader, and one
//! connection per broker, so requests go to the partition's leader as Kafka's clients do.
//!
//! Learnt from Metadata, asked of any broker that answers (the bootstrap list first, then
//! the brokers it named). When a leader moves, the broker that answers NOT_LEADER_OR_FOLLOWER
//! (or a connection that fails) marks the view stale and the next lookup asks again.
//!
//! ```text
//!  leader_of(topic, partition) ──stale?──> Metadata ──> brokers, leaders
//!  connection(broker) ──> one pipelined Connection per broker, made on first use
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::Mutex;

use super::{ClientError, Connection};

/// How long a connection attempt to one broker may take before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a Metadata request may take: a broker cut off by the network keeps its TCP
/// connection open and never answers, and the next broker must be asked instead.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// A partition's leader: the broker id, or none while it has no leader.
pub type Leader = Option<i32>;

#[derive(Debug, Default)]
struct View {
    brokers: HashMap<i32, String>,
    /// By topic: each partition's leader.
    leaders: HashMap<String, Vec<Leader>>,
    stale: bool,
}

/// The brokers and partition leaders a client routes by, with a connection per broker.
#[derive(Debug)]
pub struct ClusterView {
    bootstrap: Vec<String>,
    client_id: String,
    view: std::sync::Mutex<View>,
    connections: Mutex<HashMap<String, Arc<Connection>>>,
}

impl ClusterView {
    /// A view that starts from `bootstrap`, a comma-separated list of `host:port`.
    pub fn new(bootstrap: &str, client_id: &str) -> Self {
        Self {
            bootstrap: bootstrap.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect(),
            client_id: client_id.to_string(),
            view: std::sync::Mutex::new(View::default()),
            connections: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A connection to the broker at `addr`, made on first use.
    ///
    /// # Errors
    /// [`ClientError::Connect`], or a timeout as one.
    pub async fn connect(&self, addr: &str) -> Result<Arc<Connection>, ClientError> {
        let mut connections = self.connections.lock().await;
        if let Some(connection) = connections.get(addr)
            && !connection.is_closed()
        {
            return Ok(Arc::clone(connection));
        }
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(addr, &self.client_id)).await;
        let connection = connected.map_err(|_| ClientError::Connect {
            addr: addr.to_string(),
            source: Arc::new(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")),
        })??;
        connections.insert(addr.to_string(), Arc::clone(&connection));
        Ok(connection)
    }

    /// The next lookup asks the cluster again (a leader moved).
    pub fn mark_stale(&self) {
        self.lock().stale = true;
    }

    /// The addresses to ask, in turn: the known brokers, then the bootstrap list.
    fn candidates(&self) -> Vec<String> {
        let mut candidates: Vec<String> = self.lock().brokers.values().cloned().collect();
        candidates.sort();
        candidates.extend(self.bootstrap.iter().filter(|b| !candidates.contains(b)).cloned().collect::<Vec<_>>());
        candidates
    }

    /// Any broker that answers: the known brokers, then the bootstrap list.
    ///
    /// # Errors
    /// The last connection error when none answers.
    pub async fn any_connection(&self) -> Result<Arc<Connection>, ClientError> {
        let mut last = ClientError::Connect {
            addr: self.bootstrap.join(","),
            source: Arc::new(std::io::Error::new(std::io::ErrorKind::NotFound, "no bootstrap broker")),
        };
        for addr in self.candidates() {
            match self.connect(&addr).await {
                Ok(connection) => return Ok(connection),
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    /// Forgets the connection to `addr`: it failed or stopped answering.
    pub async fn forget(&self, addr: &str) {
        self.connections.lock().await.remove(addr);
    }

    /// Asks the cluster for `topics`' leaders (creating them if the broker auto-creates).
    ///
    /// # Errors
    /// No broker answered. A topic that does not exist is left out of the view.
    pub async fn refresh(&self, topics: &[String]) -> Result<(), ClientError> {
        let request = MetadataRequest::default().with_allow_auto_topic_creation(true).with_topics(Some(
            topics
                .iter()
                .map(|t| MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(t.clone())))))
                .collect(),
        ));
        let mut last = None;
        let mut answer = None;
        for addr in self.candidates() {
            let connection = match self.connect(&addr).await {
                Ok(connection) => connection,
                Err(error) => {
                    last = Some(error);
                    continue;
                }
            };
            match tokio::time::timeout(METADATA_TIMEOUT, connection.send(request.clone())).await {
                Ok(Ok(response)) => {
                    answer = Some(response);
                    break;
                }
                Ok(Err(error)) => last = Some(error),
                Err(_) => last = Some(ClientError::Timeout { ms: METADATA_TIMEOUT.as_millis() as u64 }),
            }
            self.forget(&addr).await;
        }
        let Some(response) = answer else {
            self.mark_stale();
            return Err(last.unwrap_or(ClientError::Timeout { ms: METADATA_TIMEOUT.as_millis() as u64 }));
        };
        let mut view = self.lock();
        view.brokers = response.brokers.iter().map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port))).collect();
        for topic in response.topics {
            let name = topic.name.map(|n| n.to_string()).unwrap_or_default();
            if topic.partitions.is_empty() {
                // Deleted (or never there): forgotten, so it does not fail lookups of the
                // other topics; whoever asked about it finds it missing.
                view.leaders.remove(&name);
                continue;
            }
            let mut leaders = vec![None; topic.partitions.len()];
            for p in &topic.partitions {
                if let Some(slot) = usize::try_from(p.partition_index).ok().and_then(|i| leaders.get_mut(i)) {
                    *slot = (p.error_code == 0 && p.leader_id.0 >= 0).then_some(p.leader_id.0);
                }
            }
            view.leaders.insert(name, leaders);
        }
        view.stale = false;
        Ok(())
    }

    /// `topic`'s partition count, asking the cluster if it is not known yet.
    ///
    /// # Errors
    /// As [`Self::refresh`].
    pub async fn partition_count(&self, topic: &str) -> Result<i32, ClientError> {
        if let Some(leaders) = self.lock().leaders.get(topic) {
            return Ok(leaders.len() as i32);
        }
        self.refresh(&[topic.to_string()]).await?;
        self.lock().leaders.get(topic).map(|l| l.len() as i32).ok_or(ClientError::UnknownTopic { topic: topic.into() })
    }

    /// The address of `topic`-`partition`'s leader, asking again first when the view is
    /// stale; `None` while the partition has no leader.
    ///
    /// # Errors
    /// As [`Self::refresh`].
    pub async fn leader_address(&self, topic: &str, partition: i32) -> Result<Option<String>, ClientError> {
        let known = {
            let view = self.lock();
            (!view.stale).then(|| view.leaders.get(topic).map(|l| l.get(partition as usize).copied().flatten()))
        };
        let leader = match known.flatten() {
            Some(leader) => leader,
            None => {
                let topics: Vec<String> = {
                    let view = self.lock();
                    let mut topics: Vec<String> = view.leaders.keys().cloned().collect();
                    if !view.leaders.contains_key(topic) {
                        topics.push(topic.to_string());
                    }
                    topics
                };
                self.refresh(&topics).await?;
                let view = self.lock();
                let leaders = view.leaders.get(topic).ok_or(ClientError::UnknownTopic { topic: topic.into() })?;
                leaders.get(partition as usize).copied().flatten()
            }
        };
        Ok(leader.and_then(|id| self.lock().brokers.get(&id).cloned()))
    }
}
