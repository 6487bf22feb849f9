//! What a connector is: Kafka Connect's `Connector` and `Task` split, as Rust traits.
//!
//! A connector (one per config) checks its settings and divides its work into task
//! configs; the runtime starts one task per config and does everything else: converting,
//! transforming, producing, consuming, committing offsets, retrying and the dead-letter
//! topic. A source task turns the outside world into [`SourceRecord`]s, each carrying its
//! *source partition* and *source offset* (for a file: the path and a byte position); a
//! sink task takes [`ConnectRecord`]s and makes them durable when asked to flush.
//!
//! ```text
//!  SourceConnector::task_configs ──> SourceTask::poll ──> transforms ──> converter ──> Producer
//!                                        ^ offsets read at start       offsets topic <── after acks
//!  GroupConsumer ──> converter ──> transforms ──> SinkTask::put ... SinkTask::flush ──> commit
//! ```

use std::collections::BTreeMap;

use async_trait::async_trait;
use headwater_core::client::RecordMetadata;
use serde_json::Value;

use crate::config::{ConfigError, ConnectorConfig};
use crate::converter::Converter;
use crate::definition::ConfigDef;
use crate::record::ConnectRecord;

/// Whether a connector reads into topics or writes out of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectorType {
    Source,
    Sink,
}

/// Why a task could not go on.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// Worth trying again after a pause (a connection refused, a timeout): the runtime
    /// retries the same call with backoff, as Kafka Connect does with a
    /// `RetriableException`.
    #[error("{0}")]
    Retriable(String),
    /// The task cannot go on; it is marked FAILED with this message.
    #[error("{0}")]
    Fatal(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl TaskError {
    pub fn retriable(error: impl std::fmt::Display) -> Self {
        Self::Retriable(error.to_string())
    }

    pub fn fatal(error: impl std::fmt::Display) -> Self {
        Self::Fatal(error.to_string())
    }
}

/// A record from a source, with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRecord {
    pub record: ConnectRecord,
    /// The source partition, a JSON object (`{"filename": "/var/log/app.log"}`).
    pub source_partition: Value,
    /// The position after this record in its source partition (`{"position": 1234}`).
    pub source_offset: Value,
}

/// One task's settings: the connector's, plus whatever the connector added to divide the
/// work (`task.id` always).
pub type TaskConfig = ConnectorConfig;

/// The offsets a source task's earlier runs committed, by source partition.
#[derive(Debug, Clone, Default)]
pub struct SourceOffsets {
    offsets: BTreeMap<String, Value>,
}

impl SourceOffsets {
    pub fn new(offsets: impl IntoIterator<Item = (Value, Value)>) -> Self {
        Self { offsets: offsets.into_iter().map(|(p, o)| (canonical(&p), o)).collect() }
    }

    /// The committed offset of a source partition.
    pub fn get(&self, partition: &Value) -> Option<&Value> {
        self.offsets.get(&canonical(partition))
    }
}

/// A JSON value as text with object keys sorted, so that equal source partitions are
/// equal keys whatever order their fields were built in.
pub fn canonical(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                Value::Object(entries.into_iter().map(|(k, v)| (k.clone(), sorted(v))).collect())
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

/// A connector that brings data into topics.
#[async_trait]
pub trait SourceConnector: Send + Sync {
    /// Checks what the settings table cannot: combinations, reachable endpoints.
    fn validate(&self, _config: &ConnectorConfig) -> Vec<ConfigError> {
        Vec::new()
    }

    /// Divides the work into at most `config.tasks_max` task configs. The default is one
    /// task, which is all a connector with one source partition can use.
    async fn task_configs(&self, config: &ConnectorConfig) -> Result<Vec<TaskConfig>, TaskError> {
        Ok(vec![config.clone()])
    }

    /// A task for one of the configs [`Self::task_configs`] returned.
    fn task(&self, config: &TaskConfig) -> Result<Box<dyn SourceTask>, TaskError>;

    /// Whether its tasks can deliver exactly once (KIP-618's `exactlyOnceSupport`): a
    /// task started from committed offsets produces exactly the records that followed
    /// them, so a transaction that holds records and offsets together loses and repeats
    /// nothing. False for a source that cannot replay (a push endpoint).
    fn exactly_once(&self, _config: &ConnectorConfig) -> bool {
        false
    }
}

/// A running source task.
#[async_trait]
pub trait SourceTask: Send {
    /// Called once, with what earlier runs committed, before the first poll.
    async fn start(&mut self, offsets: SourceOffsets) -> Result<(), TaskError>;

    /// The next records, or none for now. It may wait for data, but should return within
    /// a second or so, so that the task stops and commits promptly.
    async fn poll(&mut self) -> Result<Vec<SourceRecord>, TaskError>;

    /// A record polled earlier was acknowledged by the broker (`written`: where it went),
    /// or given up (`None`: dropped by a transform, or skipped under
    /// `errors.tolerance=all`); called in poll order, as Kafka's `commitRecord`. A source
    /// that answers its producers (an HTTP request) answers here; a mirror learns the
    /// downstream offset.
    fn commit_record(&mut self, _source_offset: &Value, _written: Option<RecordMetadata>) {}

    /// The offsets of every record polled so far are committed (after the records were
    /// acknowledged): a source that must acknowledge upstream does it here.
    async fn commit(&mut self) -> Result<(), TaskError> {
        Ok(())
    }

    /// The task stops for good; release resources.
    async fn stop(&mut self) {}
}

/// A record a sink task could not deliver while it delivered the rest of its batch: the
/// index in the batch given to `put`, and why.
#[derive(Debug)]
pub struct RecordFailure {
    pub index: usize,
    pub reason: String,
}

/// A connector that takes data out of topics.
#[async_trait]
pub trait SinkConnector: Send + Sync {
    /// As [`SourceConnector::validate`].
    fn validate(&self, _config: &ConnectorConfig) -> Vec<ConfigError> {
        Vec::new()
    }

    /// `tasks.max` tasks by default: they share the topics' partitions through the
    /// connector's consumer group.
    async fn task_configs(&self, config: &ConnectorConfig) -> Result<Vec<TaskConfig>, TaskError> {
        Ok(vec![config.clone(); config.tasks_max as usize])
    }

    fn task(&self, config: &TaskConfig) -> Result<Box<dyn SinkTask>, TaskError>;
}

/// A running sink task.
#[async_trait]
pub trait SinkTask: Send {
    async fn start(&mut self) -> Result<(), TaskError> {
        Ok(())
    }

    /// Takes records, in offset order per partition. They need not be durable before
    /// [`Self::flush`]. After a retriable error the same records come again. Records it could not deliver (a row a database refused) are
    /// returned, and the runtime applies `errors.tolerance` to them; an error fails (or,
    /// if retriable, retries) the whole batch. A poll that brought nothing calls it with no
    /// records, so time-based work runs while a topic is idle.
    async fn put(&mut self, records: &[ConnectRecord]) -> Result<Vec<RecordFailure>, TaskError>;

    /// Makes the records put so far durable; their offsets are committed after it, up to
    /// what [`Self::committable`] allows.
    async fn flush(&mut self) -> Result<(), TaskError>;

    /// For a task that keeps records past a flush (a file still being filled): the next
    /// offset it may have committed, per partition it holds records of. Partitions not named
    /// are committed up to everything put. Kafka's `preCommit`.
    fn committable(&self) -> BTreeMap<(String, i32), i64> {
        BTreeMap::new()
    }

    /// The task is stopping or giving up its partitions (a rebalance): make everything put
    /// durable. By default, a flush.
    async fn close(&mut self) -> Result<(), TaskError> {
        self.flush().await
    }

    async fn stop(&mut self) {}
}

/// A connector implementation, of either kind.
#[derive(Clone)]
pub enum Connector {
    Source(std::sync::Arc<dyn SourceConnector>),
    Sink(std::sync::Arc<dyn SinkConnector>),
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Connector::Source(_) => "Connector::Source",
            Connector::Sink(_) => "Connector::Sink",
        })
    }
}

/// A connector class the worker knows, as `/connector-plugins` lists it.
#[derive(Clone)]
pub struct Plugin {
    /// The short name configs use in `connector.class` (`file-source`).
    pub class: &'static str,
    pub connector_type: ConnectorType,
    /// The settings it takes, their types and defaults.
    pub definition: ConfigDef,
    /// Key and value converters when the config names none.
    pub key_converter: Converter,
    pub value_converter: Converter,
    pub make: fn() -> Connector,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin").field("class", &self.class).field("type", &self.connector_type).finish()
    }
}

impl Plugin {
    /// Every problem with a config: the settings table's checks, then the connector's own.
    pub fn validate(&self, config: &ConnectorConfig) -> Vec<ConfigError> {
        let mut errors = self.definition.validate(config);
        if errors.is_empty() {
            errors.extend(match (self.make)() {
                Connector::Source(c) => c.validate(config),
                Connector::Sink(c) => c.validate(config),
            });
        }
        errors
    }
}
