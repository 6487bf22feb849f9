//! Distributed mode: workers that share connectors' tasks through a group, keep configs,
//! offsets and statuses in internal topics, and answer Kafka Connect's REST API.
//!
//! ```text
//!  REST (any worker) ──write──> configs topic ──tailed by──> every worker ──change──> rejoin
//!  group (protocol "connect"): leader deals (connector, task) pairs round-robin ──> each worker
//!  worker: Runtime::start_task for its share ──status──> status topic ──> REST status on any worker
//! ```
//!
//! | Module | Owns |
//! | --- | --- |
//! | [`member`] | JoinGroup / SyncGroup / Heartbeat with protocol type `connect` |
//! | [`store`] | the configs and status topics |
//! | [`rest`] | the REST API |
//!
//! Task configs are computed where a task starts, from the connector's config (every
//! built-in divides its work deterministically), rather than written to the configs topic
//! by the leader as Kafka Connect does: one less record kind to keep consistent.

pub mod member;
pub mod rest;
pub mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use headwater_core::client::{Consumer, ConsumerConfig};
use tokio::sync::mpsc;

use crate::connector::TaskConfig;
use crate::runtime::status::TaskStatus;
use crate::runtime::{Runtime, RuntimeError, Target, WorkerConfig};
use member::{Assignment, Member, MemberMetadata};
use store::{ConfigEvent, ConfigStore, StatusStore, StoreError};

/// A distributed worker's settings, with Kafka Connect's names.
#[derive(Debug, Clone)]
pub struct DistributedConfig {
    pub worker: WorkerConfig,
    /// `group.id`.
    pub group: String,
    /// `config.storage.topic`.
    pub configs_topic: String,
    /// `status.storage.topic`.
    pub status_topic: String,
    /// `session.timeout.ms`: how soon the others take a dead worker's tasks.
    pub session_timeout: Duration,
}

/// Why a worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("group {group}: {source}")]
    Group {
        group: String,
        #[source]
        source: headwater_core::client::ClientError,
    },
}

/// What the REST API and the worker loop share.
pub struct Shared {
    pub runtime: Runtime,
    pub configs: ConfigStore,
    pub statuses: StatusStore,
    pub url: String,
    /// The tasks this worker runs, as last assigned.
    pub assigned: tokio::sync::Mutex<Vec<(String, u32)>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("url", &self.url).finish()
    }
}

/// The next offset of the configs topic's partition.
async fn end_offset(bootstrap: &str, topic: &str) -> Result<i64, StoreError> {
    let fail = |source| StoreError::Client { topic: topic.to_string(), source };
    let mut consumer =
        Consumer::connect(ConsumerConfig { bootstrap: bootstrap.to_string(), ..ConsumerConfig::default() })
            .await
            .map_err(fail)?;
    let ends = consumer.list_offsets(vec![(topic.to_string(), 0)], -1).await.map_err(fail)?;
    Ok(ends.get(&(topic.to_string(), 0)).copied().unwrap_or(0))
}

/// Starts a worker: opens the internal topics and reads the configs to their end. Then
/// [`run`] serves the group.
///
/// # Errors
/// [`WorkerError`].
pub async fn start(
    config: &DistributedConfig,
    url: String,
) -> Result<(Arc<Shared>, mpsc::UnboundedReceiver<ConfigEvent>), WorkerError> {
    let bootstrap = config.worker.bootstrap.clone();
    let mut worker = config.worker.clone();
    worker.worker_id = url.clone();
    let runtime = Runtime::new(worker).await?;
    let (events_tx, events) = mpsc::unbounded_channel();
    let configs = ConfigStore::open(&bootstrap, &config.configs_topic, events_tx).await?;
    let end = end_offset(&bootstrap, &config.configs_topic).await?;
    configs.read_to(end, Duration::from_secs(60)).await?;
    let statuses = StatusStore::open(&bootstrap, &config.status_topic).await?;
    let shared = Arc::new(Shared { runtime, configs, statuses, url, assigned: tokio::sync::Mutex::new(Vec::new()) });
    Ok((shared, events))
}

/// The leader's deal: every connector's tasks, round-robin over the members by id.
async fn deal(shared: &Shared, members: &[(String, MemberMetadata)]) -> Vec<(String, Assignment)> {
    let configs = shared.configs.snapshot();
    let mut tasks: Vec<(String, u32)> = Vec::new();
    for (name, config) in &configs.connectors {
        match Runtime::task_configs(config).await {
            Ok(configs) => tasks.extend((0..configs.len() as u32).map(|id| (name.clone(), id))),
            Err(error) => tracing::warn!(connector = %name, "not dealt: {error}"),
        }
    }
    let mut ids: Vec<&(String, MemberMetadata)> = members.iter().collect();
    ids.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out: Vec<(String, Assignment)> = ids
        .iter()
        .map(|(id, _)| {
            (
                id.clone(),
                Assignment {
                    leader_url: shared.url.clone(),
                    config_offset: shared.configs.position(),
                    tasks: Vec::new(),
                },
            )
        })
        .collect();
    if out.is_empty() {
        return out;
    }
    let count = out.len();
    for (i, task) in tasks.into_iter().enumerate() {
        out[i % count].1.tasks.push(task);
    }
    out
}

/// This worker's config for one of a connector's tasks.
async fn task_config(
    shared: &Shared,
    connector: &str,
    id: u32,
) -> Option<(crate::config::ConnectorConfig, TaskConfig)> {
    let config = shared.configs.snapshot().connectors.get(connector)?.clone();
    let task = Runtime::task_configs(&config).await.ok()?.into_iter().nth(id as usize)?;
    Some((config, task))
}

async fn start_assigned(shared: &Shared, tasks: &[(String, u32)]) {
    let targets = shared.configs.snapshot().targets;
    for (connector, id) in tasks {
        let Some((config, task)) = task_config(shared, connector, *id).await else { continue };
        if let Err(error) = shared.runtime.start_task(&config, *id, task).await {
            tracing::error!(connector = %connector, task = id, "cannot start: {error}");
            continue;
        }
        if targets.get(connector) == Some(&Target::Paused) {
            let _ = shared.runtime.set_target(connector, Target::Paused).await;
        }
    }
}

/// Publishes changes of this worker's task statuses to the status topic.
async fn publish_statuses(shared: Arc<Shared>) {
    let mut published: BTreeMap<(String, u32), TaskStatus> = BTreeMap::new();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let assigned = shared.assigned.lock().await.clone();
        for (connector, id) in assigned {
            let Some(status) = shared.runtime.status().task(&connector, id) else { continue };
            let key = (connector.clone(), id);
            if published.get(&key) == Some(&status) {
                continue;
            }
            match shared.statuses.publish(&connector, id, Some(&status)).await {
                Ok(()) => {
                    published.insert(key, status);
                }
                Err(error) => tracing::warn!("publishing a status: {error}"),
            }
        }
    }
}

/// Serves the group until `shutdown` resolves: joins, runs its share of the tasks, and
/// rejoins whenever the group or the configs change. Stops every task before returning.
///
/// # Errors
/// [`WorkerError::Group`] when the group cannot be joined.
pub async fn run(
    config: &DistributedConfig,
    shared: Arc<Shared>,
    mut events: mpsc::UnboundedReceiver<ConfigEvent>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), WorkerError> {
    let group_error = |source| WorkerError::Group { group: config.group.clone(), source };
    let mut member =
        Member::new(&config.worker.bootstrap, &config.group, config.session_timeout).await.map_err(group_error)?;
    let publisher = tokio::spawn(publish_statuses(Arc::clone(&shared)));
    // The history read at start asks for nothing: the first join deals it anyway.
    while events.try_recv().is_ok() {}
    tokio::pin!(shutdown);
    let result = 'serve: loop {
        // Eager: nothing runs while the group deals.
        shared.runtime.stop_all().await;
        shared.assigned.lock().await.clear();
        let metadata = MemberMetadata { url: shared.url.clone(), config_offset: shared.configs.position() };
        let joined = tokio::select! {
            joined = member.join(&metadata) => joined,
            () = &mut shutdown => break 'serve Ok(()),
        };
        let joined = match joined {
            Ok(joined) => joined,
            Err(error) => {
                tracing::warn!("joining group {}: {error}", config.group);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let assignments = match &joined.members {
            Some(members) => deal(&shared, members).await,
            None => Vec::new(),
        };
        let assignment = match member.sync(assignments).await {
            Ok(Some(assignment)) => assignment,
            Ok(None) => continue,
            Err(error) => {
                tracing::warn!("syncing group {}: {error}", config.group);
                continue;
            }
        };
        if let Err(error) = shared.configs.read_to(assignment.config_offset, Duration::from_secs(30)).await {
            tracing::warn!("{error}; rejoining");
            continue;
        }
        tracing::info!(generation = joined.generation, tasks = ?assignment.tasks, "assigned");
        start_assigned(&shared, &assignment.tasks).await;
        *shared.assigned.lock().await = assignment.tasks.clone();
        loop {
            tokio::select! {
                () = member.rejoin_wanted() => continue 'serve,
                () = &mut shutdown => break 'serve Ok(()),
                event = events.recv() => {
                    let Some(event) = event else { break 'serve Ok(()) };
                    // Changes come in bursts: take them all before acting.
                    let mut pending = vec![event];
                    while let Ok(more) = events.try_recv() {
                        pending.push(more);
                    }
                    if apply_events(&shared, &assignment.tasks, pending).await {
                        member.request_rejoin();
                    }
                }
            }
        }
    };
    publisher.abort();
    shared.runtime.stop_all().await;
    member.leave().await;
    result
}

/// Applies pause / resume and restarts to this worker's tasks; whether the tasks must be
/// dealt again.
async fn apply_events(shared: &Shared, mine: &[(String, u32)], events: Vec<ConfigEvent>) -> bool {
    let mut redeal = false;
    for event in events {
        match event {
            ConfigEvent::Connectors => redeal = true,
            ConfigEvent::Target { connector, target } => {
                let _ = shared.runtime.set_target(&connector, target).await;
            }
            ConfigEvent::Restart { connector, include_tasks, only_failed } => {
                if !include_tasks {
                    continue;
                }
                let restart: BTreeSet<u32> = mine
                    .iter()
                    .filter(|(c, _)| *c == connector)
                    .map(|(_, id)| *id)
                    .filter(|id| {
                        !only_failed
                            || shared
                                .runtime
                                .status()
                                .task(&connector, *id)
                                .is_some_and(|s| s.state == crate::runtime::status::State::Failed)
                    })
                    .collect();
                for id in restart {
                    shared.runtime.stop_task(&connector, id).await;
                    start_assigned(shared, &[(connector.clone(), id)]).await;
                }
            }
        }
    }
    redeal
}
