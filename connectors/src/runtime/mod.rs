//! The runtime: starts connectors' tasks on tokio tasks and drives them (converters,
//! transforms, producing and consuming, offsets, retries, the dead-letter topic), and
//! tracks their status. Standalone and distributed workers both run connectors through it.
//!
//! | Module | Owns |
//! | --- | --- |
//! | [`source`] | a source task's loop: poll, produce, commit offsets after acknowledgement |
//! | [`sink`] | a sink task's loop: consume in a group, put, flush, commit |
//! | [`offsets`] | source offsets in a compacted topic, Kafka Connect's layout |
//! | [`dead_letter`] | the dead-letter topic and its context headers |
//! | [`status`] | connector and task states |

pub mod dead_letter;
pub mod offsets;
mod sink;
mod source;
pub mod status;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use crate::config::{ConfigError, ConnectorConfig};
use crate::connector::{Connector, Plugin, TaskConfig, TaskError};
use crate::converter::Converter;
use crate::errors::{ErrorPolicy, Tolerance};
use crate::exactly_once::{Boundary, ExactlyOnce, Support};
use crate::plugins;
use crate::transform::Chain;
use dead_letter::Stage;
use offsets::{OffsetError, OffsetStore};
use status::{State, StatusBoard, TaskStatus};

/// A worker's own settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// `bootstrap.servers`.
    pub bootstrap: String,
    /// How this worker names itself in statuses (`host:port` of its REST listener).
    pub worker_id: String,
    /// `offset.storage.topic`.
    pub offsets_topic: String,
    /// `offset.flush.interval.ms`: how often tasks commit offsets (they also commit when
    /// they stop).
    pub offset_flush_interval: Duration,
    /// `exactly.once.source.support=enabled`: source tasks that can write their records
    /// and offsets in one transaction do ([`crate::exactly_once`]).
    pub exactly_once_source: bool,
    /// Source tasks' transactional ids are `<prefix>-<connector>-<task>`: the group in
    /// distributed mode, as in Kafka Connect.
    pub transactional_id_prefix: String,
}

impl WorkerConfig {
    pub fn new(bootstrap: &str) -> Self {
        Self {
            bootstrap: bootstrap.to_string(),
            worker_id: "standalone".into(),
            offsets_topic: "connect-offsets".into(),
            offset_flush_interval: Duration::from_secs(60),
            exactly_once_source: false,
            transactional_id_prefix: "connect-standalone".into(),
        }
    }
}

/// What a task should be doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Running,
    Paused,
    Stopped,
}

/// Why the runtime refused a connector.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("connector {connector}: unknown connector.class {class} (known: {known})")]
    UnknownClass { connector: String, class: String, known: String },
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<ConfigError>),
    #[error("connector {0} is already running")]
    Exists(String),
    #[error("connector {0} is not running here")]
    NotFound(String),
    #[error(transparent)]
    Offsets(#[from] OffsetError),
    #[error("connector {connector}: {source}")]
    Task {
        connector: String,
        #[source]
        source: TaskError,
    },
}

/// What every task of a connector shares, made once from its config.
pub(crate) struct TaskContext {
    pub(crate) connector: String,
    pub(crate) task_id: u32,
    pub(crate) worker: Arc<WorkerConfig>,
    pub(crate) chain: Chain,
    pub(crate) key_converter: Converter,
    pub(crate) value_converter: Converter,
    pub(crate) policy: ErrorPolicy,
    pub(crate) status: StatusBoard,
    /// For a source task that runs exactly once: when its transactions commit.
    pub(crate) transactions: Option<Boundary>,
}

impl TaskContext {
    pub(crate) fn report(&self, state: State, trace: Option<String>) {
        self.status.set(&self.connector, self.task_id, &self.worker.worker_id, state, trace);
    }

    /// Applies `errors.tolerance` to a failed record: an error that fails the task, or
    /// (tolerated) a log line when `errors.log.enable` asks for one.
    pub(crate) fn tolerate(&self, stage: Stage, error: &dyn std::error::Error) -> Result<(), TaskError> {
        match self.policy.tolerance {
            Tolerance::None => {
                Err(TaskError::Fatal(format!("{} failed and errors.tolerance=none: {error}", stage.name())))
            }
            Tolerance::All => {
                if self.policy.log {
                    tracing::warn!(connector = %self.connector, task = self.task_id, stage = stage.name(), "skipping a record: {error}");
                }
                Ok(())
            }
        }
    }
}

/// The common settings every connector takes, checked once for all of them.
struct Common {
    plugin: Plugin,
    chain: Chain,
    key_converter: Converter,
    value_converter: Converter,
    policy: ErrorPolicy,
    /// A source connector's exactly-once settings, and whether it can deliver exactly once.
    exactly_once: Option<(ExactlyOnce, bool)>,
}

/// A connector config checked against its plugin and the common settings.
///
/// # Errors
/// [`RuntimeError::UnknownClass`] or [`RuntimeError::Invalid`] with every problem found.
pub fn validate(config: &ConnectorConfig) -> Result<Plugin, RuntimeError> {
    common(config).map(|c| c.plugin)
}

fn common(config: &ConnectorConfig) -> Result<Common, RuntimeError> {
    let plugin = plugins::find(&config.class).ok_or_else(|| RuntimeError::UnknownClass {
        connector: config.name.clone(),
        class: config.class.clone(),
        known: plugins::all().iter().map(|p| p.class).collect::<Vec<_>>().join(", "),
    })?;
    let mut errors = plugin.validate(config);
    let chain = Chain::from_config(config).map_err(|e| errors.push(e)).ok();
    let key_converter =
        Converter::from_config(config, "key.converter", plugin.key_converter).map_err(|e| errors.push(e)).ok();
    let value_converter =
        Converter::from_config(config, "value.converter", plugin.value_converter).map_err(|e| errors.push(e)).ok();
    let policy = ErrorPolicy::from_config(config).map_err(|e| errors.push(e)).ok();
    let mut exactly_once = None;
    if let Connector::Source(source) = (plugin.make)() {
        match ExactlyOnce::from_config(config) {
            Ok(settings) => {
                let capable = source.exactly_once(config);
                if settings.support == Support::Required && !capable {
                    errors.push(config.invalid(
                        "exactly.once.support",
                        &format!(
                            "is required, but {} cannot replay from its offsets to deliver exactly once",
                            plugin.class
                        ),
                    ));
                }
                exactly_once = Some((settings, capable));
            }
            Err(error) => errors.push(error),
        }
    }
    if plugin.connector_type == crate::connector::ConnectorType::Source
        && policy.as_ref().is_some_and(|p| p.dead_letter_topic.is_some())
    {
        // As in Kafka Connect, the dead-letter topic holds records read from topics.
        errors
            .push(config.invalid("errors.deadletterqueue.topic.name", "only sink connectors have a dead-letter topic"));
    }
    match (chain, key_converter, value_converter, policy) {
        (Some(chain), Some(key_converter), Some(value_converter), Some(policy)) if errors.is_empty() => {
            Ok(Common { plugin, chain, key_converter, value_converter, policy, exactly_once })
        }
        _ => Err(RuntimeError::Invalid(errors)),
    }
}

/// A task running on this worker.
struct RunningTask {
    target: watch::Sender<Target>,
    handle: JoinHandle<()>,
}

/// A connector running on this worker: its config and its tasks.
struct RunningConnector {
    config: ConnectorConfig,
    tasks: BTreeMap<u32, RunningTask>,
}

/// Connectors and their tasks on one worker.
pub struct Runtime {
    worker: Arc<WorkerConfig>,
    store: Arc<OffsetStore>,
    status: StatusBoard,
    connectors: Mutex<BTreeMap<String, RunningConnector>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("worker", &self.worker).finish()
    }
}

impl Runtime {
    /// A runtime against a broker; its offsets topic is created if missing.
    ///
    /// # Errors
    /// [`RuntimeError::Offsets`] when the offsets topic cannot be used.
    pub async fn new(worker: WorkerConfig) -> Result<Self, RuntimeError> {
        let store = OffsetStore::open(&worker.bootstrap, &worker.offsets_topic).await?;
        Ok(Self {
            worker: Arc::new(worker),
            store: Arc::new(store),
            status: StatusBoard::default(),
            connectors: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn status(&self) -> &StatusBoard {
        &self.status
    }

    pub fn worker(&self) -> &WorkerConfig {
        &self.worker
    }

    /// The task configs a connector divides its work into.
    ///
    /// # Errors
    /// As [`validate`], or the connector failing to divide its work.
    pub async fn task_configs(config: &ConnectorConfig) -> Result<Vec<TaskConfig>, RuntimeError> {
        let plugin = validate(config)?;
        let fail = |source| RuntimeError::Task { connector: config.name.clone(), source };
        let mut tasks = match (plugin.make)() {
            Connector::Source(c) => c.task_configs(config).await.map_err(fail)?,
            Connector::Sink(c) => c.task_configs(config).await.map_err(fail)?,
        };
        tasks.truncate(config.tasks_max as usize);
        for (id, task) in tasks.iter_mut().enumerate() {
            task.settings.insert("task.id".into(), id.to_string());
        }
        Ok(tasks)
    }

    /// Validates a connector and starts all its tasks here (standalone mode).
    ///
    /// # Errors
    /// As [`Self::task_configs`]; [`RuntimeError::Exists`] for a name already running.
    pub async fn start_connector(&self, config: ConnectorConfig) -> Result<(), RuntimeError> {
        if self.connectors.lock().await.contains_key(&config.name) {
            return Err(RuntimeError::Exists(config.name));
        }
        let tasks = Self::task_configs(&config).await?;
        for (id, task) in tasks.into_iter().enumerate() {
            self.start_task(&config, id as u32, task).await?;
        }
        Ok(())
    }

    /// Starts one task of a connector.
    ///
    /// # Errors
    /// As [`validate`].
    pub async fn start_task(
        &self,
        config: &ConnectorConfig,
        id: u32,
        mut task_config: TaskConfig,
    ) -> Result<(), RuntimeError> {
        let common = common(config)?;
        let transactions = match common.exactly_once {
            Some((settings, capable)) if self.worker.exactly_once_source && capable => Some(settings.boundary),
            Some((settings, _)) if settings.support == Support::Required => {
                return Err(RuntimeError::Invalid(vec![config.invalid(
                    "exactly.once.support",
                    "is required, but this worker runs without exactly.once.source.support=enabled",
                )]));
            }
            Some(_) if self.worker.exactly_once_source => {
                tracing::warn!(connector = %config.name, class = common.plugin.class,
                    "the connector cannot deliver exactly once; its tasks run at least once");
                None
            }
            _ => None,
        };
        // The cluster this worker writes to, for tasks that talk to it themselves (a mirror
        // creates its topics there).
        task_config.settings.insert("worker.bootstrap.servers".into(), self.worker.bootstrap.clone());
        let context = TaskContext {
            connector: config.name.clone(),
            task_id: id,
            worker: Arc::clone(&self.worker),
            chain: common.chain,
            key_converter: common.key_converter,
            value_converter: common.value_converter,
            policy: common.policy,
            status: self.status.clone(),
            transactions,
        };
        let (target, target_rx) = watch::channel(Target::Running);
        context.report(State::Unassigned, None);
        let store = Arc::clone(&self.store);
        let make = common.plugin.make;
        let handle = tokio::spawn(async move {
            let connector = context.connector.clone();
            let result = run_task(make(), context, &task_config, store, target_rx).await;
            if let Err((context, error)) = result {
                tracing::error!(connector = %connector, task = id, "task failed: {error}");
                context.report(State::Failed, Some(error.to_string()));
            }
        });
        let mut connectors = self.connectors.lock().await;
        let entry = connectors
            .entry(config.name.clone())
            .or_insert_with(|| RunningConnector { config: config.clone(), tasks: BTreeMap::new() });
        entry.config = config.clone();
        if let Some(old) = entry.tasks.insert(id, RunningTask { target, handle }) {
            let _ = old.target.send(Target::Stopped);
        }
        Ok(())
    }

    /// Sets what a connector's tasks should be doing (pause, resume).
    ///
    /// # Errors
    /// [`RuntimeError::NotFound`].
    pub async fn set_target(&self, name: &str, target: Target) -> Result<(), RuntimeError> {
        let connectors = self.connectors.lock().await;
        let connector = connectors.get(name).ok_or_else(|| RuntimeError::NotFound(name.to_string()))?;
        for task in connector.tasks.values() {
            let _ = task.target.send(target);
        }
        Ok(())
    }

    /// Stops a connector's tasks here and waits until they have committed.
    ///
    /// # Errors
    /// [`RuntimeError::NotFound`].
    pub async fn stop_connector(&self, name: &str) -> Result<(), RuntimeError> {
        let connector =
            self.connectors.lock().await.remove(name).ok_or_else(|| RuntimeError::NotFound(name.to_string()))?;
        stop_tasks(connector.tasks.into_values()).await;
        self.status.remove_connector(name);
        Ok(())
    }

    /// Stops one task and waits until it has committed.
    pub async fn stop_task(&self, name: &str, id: u32) {
        let task = {
            let mut connectors = self.connectors.lock().await;
            let Some(connector) = connectors.get_mut(name) else { return };
            let task = connector.tasks.remove(&id);
            if connector.tasks.is_empty() {
                connectors.remove(name);
            }
            task
        };
        stop_tasks(task).await;
    }

    /// Stops everything (a worker shutting down), each task committing first.
    pub async fn stop_all(&self) {
        let connectors = std::mem::take(&mut *self.connectors.lock().await);
        stop_tasks(connectors.into_values().flat_map(|c| c.tasks.into_values())).await;
    }

    /// The names of the connectors running here.
    pub async fn connectors(&self) -> Vec<String> {
        self.connectors.lock().await.keys().cloned().collect()
    }

    /// A running connector's config.
    pub async fn config(&self, name: &str) -> Option<ConnectorConfig> {
        self.connectors.lock().await.get(name).map(|c| c.config.clone())
    }

    /// A connector's task statuses here.
    pub fn task_statuses(&self, name: &str) -> Vec<TaskStatus> {
        self.status.tasks(name)
    }
}

async fn stop_tasks(tasks: impl IntoIterator<Item = RunningTask>) {
    let handles: Vec<JoinHandle<()>> = tasks
        .into_iter()
        .map(|task| {
            let _ = task.target.send(Target::Stopped);
            task.handle
        })
        .collect();
    for handle in handles {
        let _ = handle.await;
    }
}

/// Builds and runs a task; on failure hands back the context to report through.
async fn run_task(
    connector: Connector,
    context: TaskContext,
    config: &TaskConfig,
    store: Arc<OffsetStore>,
    target: watch::Receiver<Target>,
) -> Result<(), (Arc<TaskContext>, TaskError)> {
    let context = Arc::new(context);
    let ctx = Arc::clone(&context);
    let result = match connector {
        Connector::Source(source) => match source.task(config) {
            Ok(task) => source::SourceWorker { context: Arc::clone(&context), task, store, target }.run().await,
            Err(error) => Err(error),
        },
        Connector::Sink(sink) => match sink.task(config) {
            Ok(task) => {
                let topics = config.list("topics");
                sink::SinkWorker { context: Arc::clone(&context), task, topics, target }.run().await
            }
            Err(error) => Err(error),
        },
    };
    result.map_err(|error| (ctx, error))
}
