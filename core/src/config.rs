//! The server's configuration: a TOML file, overridden by command-line flags. Names
//! follow Kafka's where Kafka has one (`num.partitions`, `auto.create.topics.enable`,
//! `socket.request.max.bytes`, topic defaults such as `retention.ms`), so operators'
//! habits carry over.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::log::LogConfig;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config file {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("invalid setting {name}: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Cluster mode's settings, derived from [`ServerConfig`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The controller quorum's voters by node id.
    pub voters: BTreeMap<u64, String>,
    /// Where this node's controller listener binds (and is reached).
    pub controller_listen: String,
}

/// Everything `headwater serve` needs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Where logs live.
    pub data_dir: PathBuf,
    /// Where the Kafka protocol listens.
    pub listen: SocketAddr,
    /// The `host:port` clients are told to connect to (Metadata); defaults to `listen`.
    pub advertised_listener: Option<String>,
    /// This broker's id.
    pub node_id: i32,
    /// Where `/metrics` is served (Prometheus text format); off when absent.
    pub metrics_listen: Option<SocketAddr>,
    /// `num.partitions`: partitions of an automatically created topic.
    #[serde(rename = "num.partitions")]
    pub num_partitions: i32,
    /// `auto.create.topics.enable`: create unknown topics when a client asks for them.
    #[serde(rename = "auto.create.topics.enable")]
    pub auto_create_topics: bool,
    /// `socket.request.max.bytes`: the largest request frame accepted.
    #[serde(rename = "socket.request.max.bytes")]
    pub socket_request_max_bytes: usize,
    /// `max.connections`: connections beyond this wait to be accepted.
    #[serde(rename = "max.connections")]
    pub max_connections: usize,
    /// `log.retention.check.interval.ms`: how often retention and compaction run.
    #[serde(rename = "log.retention.check.interval.ms")]
    pub retention_check_interval_ms: u64,
    /// Where this node's controller listener binds (cluster mode). Defaults to this node's
    /// address in `voters`.
    pub controller_listen: Option<SocketAddr>,
    /// The controller quorum, `ID@HOST:PORT,...` (Kafka's `controller.quorum.voters`).
    /// Absent: a single node, as before.
    pub voters: Option<String>,
    /// `default.replication.factor`: replicas of a topic created without one (by a client's
    /// CreateTopics with -1, or automatically).
    #[serde(rename = "default.replication.factor")]
    pub default_replication_factor: i16,
    /// `replica.lag.time.max.ms`: a follower that has not caught up for this long leaves
    /// the ISR. Kafka's default is 30 s; 10 s here keeps an acks=all stall after a
    /// follower dies short (docs/design/0005).
    #[serde(rename = "replica.lag.time.max.ms")]
    pub replica_lag_time_max_ms: u64,
    /// `auto.leader.rebalance.enable`: the controller moves leadership back to preferred
    /// replicas (a restarted broker leads its partitions again).
    #[serde(rename = "auto.leader.rebalance.enable")]
    pub auto_leader_rebalance: bool,
    /// `leader.imbalance.check.interval.seconds`: how often it looks.
    #[serde(rename = "leader.imbalance.check.interval.seconds")]
    pub leader_imbalance_check_interval_seconds: u64,
    /// `leader.imbalance.per.broker.percentage`: the share of a broker's preferred
    /// partitions that may be led elsewhere before it acts.
    #[serde(rename = "leader.imbalance.per.broker.percentage")]
    pub leader_imbalance_per_broker_percentage: u32,
    /// Defaults for every topic's config, with Kafka's names (`retention.ms`, ...).
    pub topic_defaults: BTreeMap<String, String>,
    /// Where tiered segments go: `s3://bucket/prefix`, `file:///abs/dir`, or an absolute
    /// path. Defaults to `<data_dir>/tier` on local disk.
    pub tier_url: Option<String>,
    /// `remote.log.manager.task.interval.ms`: how often closed segments are looked for,
    /// uploaded and remote retention applied.
    #[serde(rename = "remote.log.manager.task.interval.ms")]
    pub remote_log_manager_task_interval_ms: u64,
    /// `remote.fetch.cache.bytes`: memory for rebuilt remote row groups (remote reads).
    #[serde(rename = "remote.fetch.cache.bytes")]
    pub remote_fetch_cache_bytes: usize,
    /// Where the Postgres wire endpoint listens (SQL over topics); off when absent.
    pub pg_listen: Option<SocketAddr>,
    /// The login the Postgres endpoint accepts.
    pub pg_user: String,
    pub pg_password: String,
    pub pg_database: String,
    /// Memory all running SQL queries may use together.
    #[serde(rename = "sql.memory.limit.bytes")]
    pub sql_memory_limit_bytes: usize,
    /// Threads that run SQL queries (apart from the network threads).
    #[serde(rename = "sql.threads")]
    pub sql_threads: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            listen: "127.0.0.1:9092".parse().expect("valid address"),
            advertised_listener: None,
            node_id: 0,
            metrics_listen: None,
            num_partitions: 1,
            auto_create_topics: true,
            // Kafka's default: 100 MiB.
            socket_request_max_bytes: 104_857_600,
            max_connections: 1000,
            retention_check_interval_ms: 300_000,
            controller_listen: None,
            voters: None,
            default_replication_factor: 1,
            replica_lag_time_max_ms: 10_000,
            auto_leader_rebalance: true,
            leader_imbalance_check_interval_seconds: 300,
            leader_imbalance_per_broker_percentage: 10,
            topic_defaults: BTreeMap::new(),
            tier_url: None,
            remote_log_manager_task_interval_ms: 10_000,
            remote_fetch_cache_bytes: 64 << 20,
            pg_listen: None,
            pg_user: "headwater".into(),
            pg_password: "headwater".into(),
            pg_database: "headwater".into(),
            sql_memory_limit_bytes: 1 << 30,
            sql_threads: 2,
        }
    }
}

impl ServerConfig {
    /// Reads a TOML config file.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and what is wrong.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let config: Self = toml::from_str(&text)
            .map_err(|error| ConfigError::Parse { path: path.to_path_buf(), message: error.message().to_string() })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges and the topic defaults.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=crate::log::manager::PARTITIONS_MAX).contains(&self.num_partitions) {
            return Err(ConfigError::Invalid { name: "num.partitions", reason: "must be between 1 and 10000".into() });
        }
        if self.socket_request_max_bytes < 1024 || self.socket_request_max_bytes > i32::MAX as usize {
            return Err(ConfigError::Invalid {
                name: "socket.request.max.bytes",
                reason: "must be between 1024 and 2147483647".into(),
            });
        }
        if self.max_connections == 0 {
            return Err(ConfigError::Invalid { name: "max.connections", reason: "must be at least 1".into() });
        }
        LogConfig::from_overrides(&self.topic_defaults)
            .map_err(|error| ConfigError::Invalid { name: "topic_defaults", reason: error.to_string() })?;
        if self.default_replication_factor < 1 {
            return Err(ConfigError::Invalid {
                name: "default.replication.factor",
                reason: "must be at least 1".into(),
            });
        }
        if self.leader_imbalance_check_interval_seconds == 0 {
            return Err(ConfigError::Invalid {
                name: "leader.imbalance.check.interval.seconds",
                reason: "must be at least 1".into(),
            });
        }
        if self.replica_lag_time_max_ms == 0 {
            return Err(ConfigError::Invalid { name: "replica.lag.time.max.ms", reason: "must be at least 1".into() });
        }
        if self.remote_log_manager_task_interval_ms == 0 {
            return Err(ConfigError::Invalid {
                name: "remote.log.manager.task.interval.ms",
                reason: "must be at least 1".into(),
            });
        }
        if self.sql_threads == 0 {
            return Err(ConfigError::Invalid { name: "sql.threads", reason: "must be at least 1".into() });
        }
        if self.sql_memory_limit_bytes < 1 << 20 {
            return Err(ConfigError::Invalid {
                name: "sql.memory.limit.bytes",
                reason: "must be at least 1 MiB".into(),
            });
        }
        if self.voters.is_some() {
            self.cluster()?;
        }
        Ok(())
    }

    /// The tier's object store URL: `tier_url`, or `<data_dir>/tier` as an absolute path.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when the data dir has no absolute form.
    pub fn tier_url(&self) -> Result<String, ConfigError> {
        if let Some(url) = &self.tier_url {
            return Ok(url.clone());
        }
        let dir = std::path::absolute(self.data_dir.join("tier"))
            .map_err(|error| ConfigError::Invalid { name: "data_dir", reason: error.to_string() })?;
        Ok(dir.display().to_string())
    }

    /// The quorum voters by node id, parsed from `voters`; empty without it.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for an entry that is not `ID@HOST:PORT`, or a repeated id.
    pub fn voters(&self) -> Result<BTreeMap<u64, String>, ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid { name: "voters", reason };
        let mut voters = BTreeMap::new();
        let Some(text) = &self.voters else { return Ok(voters) };
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (id, addr) = entry.split_once('@').ok_or_else(|| invalid(format!("{entry:?} is not ID@HOST:PORT")))?;
            let id: u64 = id.parse().map_err(|_| invalid(format!("{id:?} in {entry:?} is not a node id")))?;
            let port_ok =
                addr.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !port_ok {
                return Err(invalid(format!("{addr:?} in {entry:?} is not HOST:PORT")));
            }
            if voters.insert(id, addr.to_string()).is_some() {
                return Err(invalid(format!("node {id} is named twice")));
            }
        }
        if voters.is_empty() {
            return Err(invalid("names no voter".into()));
        }
        Ok(voters)
    }

    /// Cluster mode's settings: the voters and where this node's controller listener binds,
    /// or `None` for a single node.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for bad voters, or a node that is not a voter and does not
    /// say where its controller listener is.
    pub fn cluster(&self) -> Result<Option<ClusterConfig>, ConfigError> {
        if self.voters.is_none() {
            return Ok(None);
        }
        let voters = self.voters()?;
        if !(0..1024).contains(&self.node_id) {
            // Producer ids are interleaved by node id with a stride of 1024.
            return Err(ConfigError::Invalid {
                name: "node_id",
                reason: "must be between 0 and 1023 in a cluster".into(),
            });
        }
        // A voter listens where the voters say; any other node (a broker joining a running
        // cluster, as a learner of the metadata log) must say where it listens.
        let listen = match (voters.get(&(self.node_id as u64)), self.controller_listen) {
            (_, Some(addr)) => addr.to_string(),
            (Some(own), None) => own.clone(),
            (None, None) => {
                return Err(ConfigError::Invalid {
                    name: "controller_listen",
                    reason: format!(
                        "node {} is not among the voters, so it joins as a broker and needs --controller-listen",
                        self.node_id
                    ),
                });
            }
        };
        Ok(Some(ClusterConfig { voters, controller_listen: listen }))
    }

    /// The `(host, port)` clients should connect to.
    pub fn advertised(&self) -> Result<(String, i32), ConfigError> {
        match &self.advertised_listener {
            None => Ok((self.listen.ip().to_string(), i32::from(self.listen.port()))),
            Some(listener) => {
                let (host, port) = listener.rsplit_once(':').ok_or(ConfigError::Invalid {
                    name: "advertised_listener",
                    reason: format!("{listener:?} is not host:port"),
                })?;
                let port = port.parse::<u16>().map_err(|_| ConfigError::Invalid {
                    name: "advertised_listener",
                    reason: format!("{port:?} is not a port"),
                })?;
                Ok((host.to_string(), i32::from(port)))
            }
        }
    }
}
