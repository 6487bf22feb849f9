//! An application's settings, with Kafka Streams' names where it has one.

use std::path::PathBuf;
use std::time::Duration;

use super::embedded::EmbeddedLog;

/// Where the topics live.
#[derive(Debug, Clone)]
pub enum LogTarget {
    /// A broker (any Kafka-compatible one): `bootstrap.servers`.
    Bootstrap(String),
    /// A log in this process: no server at all.
    Embedded(EmbeddedLog),
}

/// The settings of a stream application.
#[derive(Debug, Clone)]
pub struct StreamsConfig {
    /// `application.id`: the consumer group, and the prefix of internal topics.
    pub application_id: String,
    pub log: LogTarget,
    /// `state.dir`: where persistent stores live, under `<application.id>/<task>/`.
    pub state_dir: Option<PathBuf>,
    /// `num.stream.threads`.
    pub num_stream_threads: usize,
    /// `commit.interval.ms`. Kafka Streams' default is 30 s; a second here keeps the
    /// records reprocessed after a crash few, and a commit costs a flush and one request.
    pub commit_interval: Duration,
    /// How long a poll waits for records.
    pub poll_wait: Duration,
    /// `session.timeout.ms` and `heartbeat.interval.ms` of the group (broker only).
    pub session_timeout: Duration,
    pub heartbeat_interval: Duration,
}

impl StreamsConfig {
    /// An application against a broker.
    pub fn new(application_id: &str, bootstrap: &str) -> Self {
        Self::with_log(application_id, LogTarget::Bootstrap(bootstrap.to_string()))
    }

    /// An application against an embedded log.
    pub fn embedded(application_id: &str, log: EmbeddedLog) -> Self {
        Self::with_log(application_id, LogTarget::Embedded(log))
    }

    fn with_log(application_id: &str, log: LogTarget) -> Self {
        Self {
            application_id: application_id.to_string(),
            log,
            state_dir: None,
            num_stream_threads: 1,
            commit_interval: Duration::from_secs(1),
            poll_wait: Duration::from_millis(100),
            session_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(1),
        }
    }

    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    pub fn num_stream_threads(mut self, threads: usize) -> Self {
        self.num_stream_threads = threads;
        self
    }

    pub fn commit_interval(mut self, interval: Duration) -> Self {
        self.commit_interval = interval;
        self
    }
}
