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

/// `processing.guarantee`: what a crash may do to the results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProcessingGuarantee {
    /// Offsets are committed after output and state are durable: a crash replays what
    /// followed the last commit, so results may count a record twice, never zero times.
    #[default]
    AtLeastOnce,
    /// Kafka's `exactly_once_v2`: each thread's output records, changelog writes and
    /// input offsets go in one transaction, and every consumer reads committed data only,
    /// so a crash loses and repeats nothing. Needs a broker with transactions.
    ExactlyOnceV2,
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
    /// `processing.guarantee`.
    pub processing_guarantee: ProcessingGuarantee,
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
            processing_guarantee: ProcessingGuarantee::AtLeastOnce,
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

    /// `processing.guarantee = exactly_once_v2`, with Kafka Streams' commit interval for
    /// it (100 ms: a transaction's output is invisible to read_committed consumers until
    /// it commits, so the interval is the latency downstream). Set a commit interval after
    /// this call to change it.
    pub fn exactly_once(mut self) -> Self {
        self.processing_guarantee = ProcessingGuarantee::ExactlyOnceV2;
        self.commit_interval = Duration::from_millis(100);
        self
    }
}
