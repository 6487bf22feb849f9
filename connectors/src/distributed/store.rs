//! The distributed worker's internal topics, in Kafka Connect's layouts, each read from the
//! start and then tailed by every worker:
//!
//! | Topic | Key | Value |
//! | --- | --- | --- |
//! | configs (1 partition) | `connector-<name>` | `{"properties": {...}}`; a tombstone deletes |
//! | | `target-state-<name>` | `{"state": "STARTED"}` or `"PAUSED"` |
//! | | `restart-connector-<name>` | `{"include-tasks": true, "only-failed": false}` (KIP-745) |
//! | status (5 partitions) | `status-task-<name>-<id>` | `{"state": "RUNNING", "trace": ..., "worker_id": ..., "generation": N}` |
//!
//! One partition for configs gives every worker the same order of changes, so any worker
//! may write them (no forwarding to a leader): the last write wins everywhere.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use headwater_core::client::{
    Admin, ClientError, Consumer, ConsumerConfig, ConsumerRecord, OffsetReset, Producer, ProducerConfig,
};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::config::ConnectorConfig;
use crate::runtime::Target;
use crate::runtime::offsets::{EnsureError, ensure_compacted_topic};
use crate::runtime::status::{State, TaskStatus};

/// Why an internal topic could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("internal topic {topic}: {source}")]
    Client {
        topic: String,
        #[source]
        source: ClientError,
    },
    #[error("internal topic {topic} is not compacted ({policy})")]
    NotCompacted { topic: String, policy: String },
    #[error("internal topic {topic}: the write was not read back in time")]
    Timeout { topic: String },
}

/// What a worker learns from the configs topic.
#[derive(Debug)]
pub enum ConfigEvent {
    /// A connector was created, changed or deleted: the tasks must be dealt again.
    Connectors,
    Target {
        connector: String,
        target: Target,
    },
    Restart {
        connector: String,
        include_tasks: bool,
        only_failed: bool,
    },
}

/// The configs as read so far.
#[derive(Debug, Default, Clone)]
pub struct Configs {
    pub connectors: BTreeMap<String, ConnectorConfig>,
    pub targets: BTreeMap<String, Target>,
}

/// Creates an internal topic when missing and checks that it is compacted.
pub(crate) async fn ensure(admin: &Admin, topic: &str, partitions: i32) -> Result<(), StoreError> {
    ensure_compacted_topic(admin, topic, partitions).await.map_err(|e| match e {
        EnsureError::Client(source) => StoreError::Client { topic: topic.to_string(), source },
        EnsureError::NotCompacted(policy) => StoreError::NotCompacted { topic: topic.to_string(), policy },
    })
}

/// Reads `topic` from the start forever, handing each record to `apply`; `position`
/// counts the records read (configs: the topic's single partition's next offset).
fn tail(
    bootstrap: String,
    topic: String,
    partitions: i32,
    mut apply: impl FnMut(ConsumerRecord) + Send + 'static,
    position: watch::Sender<i64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut consumer = loop {
            match Consumer::connect(ConsumerConfig {
                bootstrap: bootstrap.clone(),
                client_id: format!("headwater-connect-{topic}"),
                fetch_max_wait: Duration::from_millis(200),
                auto_offset_reset: OffsetReset::Earliest,
                ..ConsumerConfig::default()
            })
            .await
            {
                Ok(consumer) => break consumer,
                Err(error) => {
                    tracing::warn!(%topic, "cannot read: {error}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        consumer.assign((0..partitions).map(|p| (topic.clone(), p)));
        for p in 0..partitions {
            consumer.seek(&topic, p, 0);
        }
        loop {
            match consumer.poll().await {
                Ok(records) => {
                    for record in records {
                        apply(record);
                    }
                    let read: i64 = (0..partitions).map(|p| consumer.position(&topic, p).unwrap_or(0)).sum();
                    position.send_replace(read);
                }
                Err(error) => {
                    tracing::warn!(%topic, "reading: {error}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    })
}

fn text(record: &ConsumerRecord) -> Option<String> {
    record.key.as_deref().and_then(|k| std::str::from_utf8(k).ok()).map(str::to_string)
}

/// The configs topic: writes, and every worker's view of it.
pub struct ConfigStore {
    topic: String,
    producer: Producer,
    configs: Arc<Mutex<Configs>>,
    position: watch::Receiver<i64>,
    reader: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for ConfigStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigStore").field("topic", &self.topic).finish()
    }
}

impl Drop for ConfigStore {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl ConfigStore {
    /// Opens the topic (created when missing) and starts reading it; events go to
    /// `events`.
    ///
    /// # Errors
    /// [`StoreError`].
    pub async fn open(
        bootstrap: &str,
        topic: &str,
        events: mpsc::UnboundedSender<ConfigEvent>,
    ) -> Result<Self, StoreError> {
        let fail = |source| StoreError::Client { topic: topic.to_string(), source };
        ensure(&Admin::connect(bootstrap).await.map_err(fail)?, topic, 1).await?;
        let producer = Producer::connect(ProducerConfig {
            bootstrap: bootstrap.to_string(),
            client_id: "headwater-connect-configs".into(),
            linger: Duration::ZERO,
            ..ProducerConfig::default()
        })
        .await
        .map_err(fail)?;
        let configs = Arc::new(Mutex::new(Configs::default()));
        let (position_tx, position) = watch::channel(0);
        let shared = Arc::clone(&configs);
        let reader = tail(
            bootstrap.to_string(),
            topic.to_string(),
            1,
            move |record| apply_config(&shared, &events, &record),
            position_tx,
        );
        Ok(Self { topic: topic.to_string(), producer, configs, position, reader })
    }

    pub fn snapshot(&self) -> Configs {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, Configs> {
        self.configs.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How far the topic has been read.
    pub fn position(&self) -> i64 {
        *self.position.borrow()
    }

    /// Waits until the topic has been read to at least `offset`.
    ///
    /// # Errors
    /// [`StoreError::Timeout`] after `timeout`.
    pub async fn read_to(&self, offset: i64, timeout: Duration) -> Result<(), StoreError> {
        let mut position = self.position.clone();
        tokio::time::timeout(timeout, position.wait_for(|p| *p >= offset))
            .await
            .map(|_| ())
            .map_err(|_| StoreError::Timeout { topic: self.topic.clone() })
    }

    /// Writes a record and waits until this worker has read it back, so what a request
    /// wrote is what the next request sees.
    async fn write(&self, key: String, value: Option<Value>) -> Result<(), StoreError> {
        let fail = |source| StoreError::Client { topic: self.topic.clone(), source };
        let value = value.map(|v| Bytes::from(v.to_string()));
        let delivery = self
            .producer
            .send_to(&self.topic, Some(0), Some(Bytes::from(key)), value, Vec::new())
            .await
            .map_err(fail)?;
        self.producer.flush().await.map_err(fail)?;
        let written = delivery.await.map_err(fail)?;
        self.read_to(written.offset + 1, Duration::from_secs(30)).await
    }

    /// Creates or replaces a connector's config; `None` deletes the connector.
    ///
    /// # Errors
    /// [`StoreError`].
    pub async fn put_connector(&self, name: &str, config: Option<&ConnectorConfig>) -> Result<(), StoreError> {
        let value = config.map(|c| json!({ "properties": c.settings }));
        if config.is_none() {
            self.write(format!("target-state-{name}"), None).await?;
        }
        self.write(format!("connector-{name}"), value).await
    }

    /// # Errors
    /// [`StoreError`].
    pub async fn put_target(&self, name: &str, target: Target) -> Result<(), StoreError> {
        let state = if target == Target::Paused { "PAUSED" } else { "STARTED" };
        self.write(format!("target-state-{name}"), Some(json!({ "state": state }))).await
    }

    /// # Errors
    /// [`StoreError`].
    pub async fn put_restart(&self, name: &str, include_tasks: bool, only_failed: bool) -> Result<(), StoreError> {
        let value = json!({ "include-tasks": include_tasks, "only-failed": only_failed });
        self.write(format!("restart-connector-{name}"), Some(value)).await
    }
}

fn apply_config(configs: &Mutex<Configs>, events: &mpsc::UnboundedSender<ConfigEvent>, record: &ConsumerRecord) {
    let Some(key) = text(record) else { return };
    let value: Option<Value> = record.value.as_deref().and_then(|v| serde_json::from_slice(v).ok());
    let mut configs = configs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(name) = key.strip_prefix("connector-") {
        let settings: Option<BTreeMap<String, String>> =
            value.as_ref().and_then(|v| v.get("properties")).and_then(|p| serde_json::from_value(p.clone()).ok());
        match settings.map(ConnectorConfig::from_settings) {
            Some(Ok(config)) => {
                configs.connectors.insert(name.to_string(), config);
            }
            Some(Err(error)) => tracing::warn!(connector = name, "ignoring a config the topic holds: {error}"),
            None => {
                configs.connectors.remove(name);
                configs.targets.remove(name);
            }
        }
        let _ = events.send(ConfigEvent::Connectors);
    } else if let Some(name) = key.strip_prefix("target-state-") {
        let target = match value.as_ref().and_then(|v| v.get("state")).and_then(Value::as_str) {
            Some("PAUSED") => Target::Paused,
            _ => Target::Running,
        };
        configs.targets.insert(name.to_string(), target);
        let _ = events.send(ConfigEvent::Target { connector: name.to_string(), target });
    } else if let Some(name) = key.strip_prefix("restart-connector-")
        && let Some(value) = value
    {
        let flag = |k: &str, default: bool| value.get(k).and_then(Value::as_bool).unwrap_or(default);
        let _ = events.send(ConfigEvent::Restart {
            connector: name.to_string(),
            include_tasks: flag("include-tasks", false),
            only_failed: flag("only-failed", false),
        });
    }
}

/// The status topic: this worker's task statuses out, everyone's in.
pub struct StatusStore {
    topic: String,
    producer: Producer,
    statuses: Arc<Mutex<BTreeMap<(String, u32), TaskStatus>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for StatusStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusStore").field("topic", &self.topic).finish()
    }
}

impl Drop for StatusStore {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Partitions of a new status topic, Kafka Connect's `status.storage.partitions`.
const STATUS_PARTITIONS: i32 = 5;

impl StatusStore {
    /// # Errors
    /// [`StoreError`].
    pub async fn open(bootstrap: &str, topic: &str) -> Result<Self, StoreError> {
        let fail = |source| StoreError::Client { topic: topic.to_string(), source };
        let admin = Admin::connect(bootstrap).await.map_err(fail)?;
        ensure(&admin, topic, STATUS_PARTITIONS).await?;
        let partitions = admin
            .topics(Some(&[topic.to_string()]))
            .await
            .map_err(fail)?
            .first()
            .map_or(1, |t| t.partitions.len() as i32);
        let producer = Producer::connect(ProducerConfig {
            bootstrap: bootstrap.to_string(),
            client_id: "headwater-connect-status".into(),
            linger: Duration::ZERO,
            ..ProducerConfig::default()
        })
        .await
        .map_err(fail)?;
        let statuses: Arc<Mutex<BTreeMap<(String, u32), TaskStatus>>> = Arc::default();
        let shared = Arc::clone(&statuses);
        let (position, _) = watch::channel(0);
        let reader = tail(
            bootstrap.to_string(),
            topic.to_string(),
            partitions,
            move |record| {
                let Some(key) = text(&record) else { return };
                let Some(rest) = key.strip_prefix("status-task-") else { return };
                let Some((connector, id)) = rest.rsplit_once('-') else { return };
                let Ok(id) = id.parse::<u32>() else { return };
                let mut statuses = shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let status = record.value.as_deref().and_then(|v| serde_json::from_slice::<Value>(v).ok());
                match status.and_then(|s| parse_status(id, &s)) {
                    Some(status) => {
                        statuses.insert((connector.to_string(), id), status);
                    }
                    None => {
                        statuses.remove(&(connector.to_string(), id));
                    }
                }
            },
            position,
        );
        Ok(Self { topic: topic.to_string(), producer, statuses, reader })
    }

    /// Publishes a task's status (`None`: the task is gone).
    ///
    /// # Errors
    /// [`StoreError`] when the write fails.
    pub async fn publish(&self, connector: &str, id: u32, status: Option<&TaskStatus>) -> Result<(), StoreError> {
        let fail = |source| StoreError::Client { topic: self.topic.clone(), source };
        let value = status
            .map(|s| Bytes::from(json!({ "state": s.state, "trace": s.trace, "worker_id": s.worker_id }).to_string()));
        let key = Bytes::from(format!("status-task-{connector}-{id}"));
        let delivery = self.producer.send(&self.topic, Some(key), value, Vec::new()).await.map_err(fail)?;
        self.producer.flush().await.map_err(fail)?;
        delivery.await.map_err(fail)?;
        Ok(())
    }

    /// Every worker's statuses of a connector's tasks, as last published.
    pub fn tasks(&self, connector: &str) -> Vec<TaskStatus> {
        let statuses = self.statuses.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        statuses.iter().filter(|((c, _), _)| c == connector).map(|(_, s)| s.clone()).collect()
    }
}

fn parse_status(id: u32, value: &Value) -> Option<TaskStatus> {
    let state = match value.get("state")?.as_str()? {
        "RUNNING" => State::Running,
        "PAUSED" => State::Paused,
        "FAILED" => State::Failed,
        "RESTARTING" => State::Restarting,
        _ => State::Unassigned,
    };
    Some(TaskStatus {
        id,
        state,
        worker_id: value.get("worker_id").and_then(Value::as_str).unwrap_or_default().to_string(),
        trace: value.get("trace").and_then(Value::as_str).map(str::to_string),
    })
}
