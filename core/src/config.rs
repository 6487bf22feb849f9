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
    /// Defaults for every topic's config, with Kafka's names (`retention.ms`, ...).
    pub topic_defaults: BTreeMap<String, String>,
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
            topic_defaults: BTreeMap::new(),
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
        Ok(())
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
