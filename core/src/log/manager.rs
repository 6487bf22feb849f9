//! Every topic-partition's log under one data directory: the embedded log that the
//! broker, streams and tests build on.
//!
//! ```text
//!  <data-dir>/topics/<topic>.toml    partitions + config overrides (Kafka names)
//!  <data-dir>/<topic>-<partition>/   one Log each
//! ```
//!
//! The topic file is the source of truth: it is written (atomically) before a topic's
//! logs are created and removed before they are deleted, so a crash in between leaves
//! either a complete topic or orphan directories, which the next open removes.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::LogError;
use super::checkpoint::{sync_dir, write_atomically};
use super::clock::{Clock, SystemClock};
use super::config::LogConfig;
use super::flusher::Flusher;
use super::log::{Log, LogContext};

const TOPICS_DIR: &str = "topics";

/// How often logs are checked against `flush.ms` (Kafka's `log.flush.scheduler.interval.ms`).
pub const FLUSH_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);
/// Kafka's limit on topic name length (so `<topic>-<partition>` fits a file name).
const TOPIC_NAME_MAX_CHARS: usize = 249;
/// A bound on partitions per topic, so a typo cannot create a million directories.
pub const PARTITIONS_MAX: i32 = 10_000;

/// A topic and partition: Kafka's unit of ordering and of ownership.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self { topic: topic.into(), partition }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// How a manager is set up.
#[derive(Debug, Clone)]
pub struct LogManagerOptions {
    pub clock: Arc<dyn Clock>,
    /// Broker-wide defaults for topic configs (Kafka names), under each topic's overrides.
    pub defaults: BTreeMap<String, String>,
}

impl Default for LogManagerOptions {
    fn default() -> Self {
        Self { clock: Arc::new(SystemClock), defaults: BTreeMap::new() }
    }
}

/// A topic as stored: its partition count and config overrides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicDescription {
    /// Kafka's topic id (KIP-516), fixed at creation.
    #[serde(default)]
    pub topic_id: uuid::Uuid,
    pub partitions: i32,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

#[derive(Debug)]
struct Maintenance {
    stop: Mutex<bool>,
    wake: Condvar,
}

/// The logs of all topics in a data directory.
#[derive(Debug)]
pub struct LogManager {
    data_dir: PathBuf,
    options: LogManagerOptions,
    topics: RwLock<BTreeMap<String, TopicDescription>>,
    logs: RwLock<HashMap<TopicPartition, Arc<Log>>>,
    /// Serialises topic creation, deletion and alteration.
    admin: Mutex<()>,
    context: LogContext,
    maintenance: Arc<Maintenance>,
    maintenance_thread: Mutex<Option<JoinHandle<()>>>,
    closed: AtomicBool,
    // Last, so it drops after the logs that may still queue flushes.
    _flusher: Flusher,
}

impl LogManager {
    /// Opens the data directory, recovering every partition's log.
    ///
    /// # Errors
    /// [`LogError::Io`] when the directory or a log cannot be read or repaired;
    /// [`LogError::InvalidConfig`] for a stored topic whose config no longer parses.
    pub fn open(data_dir: &Path, options: LogManagerOptions) -> Result<Arc<Self>, LogError> {
        let io = |op, path: &Path| {
            let path = path.to_path_buf();
            move |source| LogError::Io { op, path, source }
        };
        let topics_dir = data_dir.join(TOPICS_DIR);
        fs::create_dir_all(&topics_dir).map_err(io("create data directory", &topics_dir))?;
        LogConfig::from_overrides(&options.defaults)?;
        let flusher = Flusher::start();
        let context = LogContext { clock: Arc::clone(&options.clock), flusher: flusher.handle() };
        // The manager owns the flusher thread only to stop it on drop.
        let manager = Self {
            data_dir: data_dir.to_path_buf(),
            options,
            topics: RwLock::new(BTreeMap::new()),
            logs: RwLock::new(HashMap::new()),
            admin: Mutex::new(()),
            context,
            maintenance: Arc::new(Maintenance { stop: Mutex::new(false), wake: Condvar::new() }),
            maintenance_thread: Mutex::new(None),
            closed: AtomicBool::new(false),
            _flusher: flusher,
        };

        let mut topics = BTreeMap::new();
        for entry in fs::read_dir(&topics_dir).map_err(io("list topics", &topics_dir))? {
            let path = entry.map_err(io("list topics", &topics_dir))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".toml")) else {
                continue;
            };
            let text = fs::read_to_string(&path).map_err(io("read topic", &path))?;
            let mut description: TopicDescription = toml::from_str(&text).map_err(|error| LogError::InvalidConfig {
                name: path.display().to_string(),
                value: String::new(),
                reason: error.to_string(),
            })?;
            if description.topic_id.is_nil() {
                description.topic_id = uuid::Uuid::new_v4();
                manager.write_topic(name, &description)?;
            }
            topics.insert(name.to_string(), description);
        }
        let mut logs = HashMap::new();
        for (topic, description) in &topics {
            let config = manager.effective_config(&description.config)?;
            for partition in 0..description.partitions {
                let tp = TopicPartition::new(topic.clone(), partition);
                let (log, report) = Log::open(&manager.partition_dir(&tp), config.clone(), manager.context.clone())?;
                if report.truncated_bytes > 0 || report.deleted_segments > 0 || report.rebuilt_indexes > 0 {
                    tracing::info!(partition = %tp, ?report, "recovered log");
                }
                logs.insert(tp, log);
            }
        }
        // Directories of topics whose file is gone: a deletion that a crash interrupted.
        for entry in fs::read_dir(data_dir).map_err(io("list data directory", data_dir))? {
            let entry = entry.map_err(io("list data directory", data_dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((topic, partition)) = name.rsplit_once('-') else { continue };
            if partition.parse::<i32>().is_err() || !entry.path().is_dir() {
                continue;
            }
            if !topics.get(topic).is_some_and(|t| partition.parse::<i32>().is_ok_and(|p| p < t.partitions)) {
                tracing::warn!(dir = %entry.path().display(), "removing the log of a deleted topic");
                fs::remove_dir_all(entry.path()).map_err(io("remove deleted log", &entry.path()))?;
            }
        }
        *manager.topics.write().expect("topics lock") = topics;
        *manager.logs.write().expect("logs lock") = logs;
        Ok(Arc::new(manager))
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The clock that drives retention (injected in tests).
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.options.clock
    }

    fn partition_dir(&self, tp: &TopicPartition) -> PathBuf {
        self.data_dir.join(tp.to_string())
    }

    fn topic_file(&self, topic: &str) -> PathBuf {
        self.data_dir.join(TOPICS_DIR).join(format!("{topic}.toml"))
    }

    fn effective_config(&self, overrides: &BTreeMap<String, String>) -> Result<LogConfig, LogError> {
        LogConfig::merged(&self.options.defaults, overrides)
    }

    /// The log of one partition.
    pub fn log(&self, tp: &TopicPartition) -> Option<Arc<Log>> {
        self.logs.read().expect("logs lock").get(tp).cloned()
    }

    /// The log of one partition, or Kafka's UNKNOWN_TOPIC_OR_PARTITION.
    ///
    /// # Errors
    /// [`LogError::UnknownTopicOrPartition`].
    pub fn get(&self, topic: &str, partition: i32) -> Result<Arc<Log>, LogError> {
        self.log(&TopicPartition::new(topic, partition))
            .ok_or_else(|| LogError::UnknownTopicOrPartition { topic: topic.to_string(), partition })
    }

    /// All topics, by name.
    pub fn topics(&self) -> BTreeMap<String, TopicDescription> {
        self.topics.read().expect("topics lock").clone()
    }

    /// The name of the topic with this id.
    pub fn topic_name(&self, topic_id: uuid::Uuid) -> Option<String> {
        self.topics.read().expect("topics lock").iter().find(|(_, t)| t.topic_id == topic_id).map(|(n, _)| n.clone())
    }

    pub fn topic(&self, topic: &str) -> Option<TopicDescription> {
        self.topics.read().expect("topics lock").get(topic).cloned()
    }

    /// A topic's effective config: broker defaults under the topic's overrides.
    ///
    /// # Errors
    /// [`LogError::UnknownTopicOrPartition`] for an unknown topic.
    pub fn topic_config(&self, topic: &str) -> Result<LogConfig, LogError> {
        let description = self
            .topic(topic)
            .ok_or_else(|| LogError::UnknownTopicOrPartition { topic: topic.to_string(), partition: -1 })?;
        self.effective_config(&description.config)
    }

    /// Creates a topic with `partitions` partitions and config overrides (Kafka names).
    ///
    /// # Errors
    /// [`LogError::InvalidTopic`], [`LogError::TopicAlreadyExists`],
    /// [`LogError::InvalidPartitions`], [`LogError::InvalidConfig`], [`LogError::Io`].
    pub fn create_topic(&self, topic: &str, partitions: i32, config: BTreeMap<String, String>) -> Result<(), LogError> {
        self.create_topic_with_id(topic, uuid::Uuid::new_v4(), partitions, config)
    }

    /// Creates a topic under an id chosen elsewhere (the cluster's, so every broker's copy
    /// of the topic has the same id).
    ///
    /// # Errors
    /// As [`Self::create_topic`].
    pub fn create_topic_with_id(
        &self,
        topic: &str,
        topic_id: uuid::Uuid,
        partitions: i32,
        config: BTreeMap<String, String>,
    ) -> Result<(), LogError> {
        validate_topic_name(topic)?;
        if !(1..=PARTITIONS_MAX).contains(&partitions) {
            return Err(LogError::InvalidPartitions {
                topic: topic.to_string(),
                reason: format!("must be between 1 and {PARTITIONS_MAX}"),
            });
        }
        let _admin = self.admin.lock().expect("admin lock");
        if self.topic(topic).is_some() {
            return Err(LogError::TopicAlreadyExists { topic: topic.to_string() });
        }
        let log_config = self.effective_config(&config)?;
        let description = TopicDescription { topic_id, partitions, config };
        self.write_topic(topic, &description)?;
        self.open_partitions(topic, 0..partitions, &log_config)?;
        self.topics.write().expect("topics lock").insert(topic.to_string(), description);
        Ok(())
    }

    fn write_topic(&self, topic: &str, description: &TopicDescription) -> Result<(), LogError> {
        let text = toml::to_string(description).expect("a topic description serialises");
        write_atomically(&self.topic_file(topic), text.as_bytes())
    }

    fn open_partitions(
        &self,
        topic: &str,
        partitions: std::ops::Range<i32>,
        config: &LogConfig,
    ) -> Result<(), LogError> {
        for partition in partitions {
            let tp = TopicPartition::new(topic, partition);
            let (log, _) = Log::open(&self.partition_dir(&tp), config.clone(), self.context.clone())?;
            self.logs.write().expect("logs lock").insert(tp, log);
        }
        sync_dir(&self.data_dir)
    }

    /// Grows a topic to `partitions` partitions (Kafka never shrinks one).
    ///
    /// # Errors
    /// [`LogError::UnknownTopicOrPartition`], [`LogError::InvalidPartitions`], [`LogError::Io`].
    pub fn create_partitions(&self, topic: &str, partitions: i32) -> Result<(), LogError> {
        let _admin = self.admin.lock().expect("admin lock");
        let mut description = self
            .topic(topic)
            .ok_or_else(|| LogError::UnknownTopicOrPartition { topic: topic.to_string(), partition: -1 })?;
        if partitions <= description.partitions || partitions > PARTITIONS_MAX {
            return Err(LogError::InvalidPartitions {
                topic: topic.to_string(),
                reason: format!(
                    "topic has {} partitions; the new count must be larger and at most {PARTITIONS_MAX}",
                    description.partitions
                ),
            });
        }
        let config = self.effective_config(&description.config)?;
        let old = description.partitions;
        description.partitions = partitions;
        self.write_topic(topic, &description)?;
        self.open_partitions(topic, old..partitions, &config)?;
        self.topics.write().expect("topics lock").insert(topic.to_string(), description);
        Ok(())
    }

    /// Replaces a topic's config overrides; every partition picks them up at once.
    ///
    /// # Errors
    /// [`LogError::UnknownTopicOrPartition`], [`LogError::InvalidConfig`], [`LogError::Io`].
    pub fn alter_topic_config(&self, topic: &str, config: BTreeMap<String, String>) -> Result<(), LogError> {
        let _admin = self.admin.lock().expect("admin lock");
        let mut description = self
            .topic(topic)
            .ok_or_else(|| LogError::UnknownTopicOrPartition { topic: topic.to_string(), partition: -1 })?;
        let log_config = self.effective_config(&config)?;
        description.config = config;
        self.write_topic(topic, &description)?;
        for partition in 0..description.partitions {
            if let Some(log) = self.log(&TopicPartition::new(topic, partition)) {
                log.set_config(log_config.clone());
            }
        }
        self.topics.write().expect("topics lock").insert(topic.to_string(), description);
        Ok(())
    }

    /// Deletes a topic and its data.
    ///
    /// # Errors
    /// [`LogError::UnknownTopicOrPartition`], [`LogError::Io`].
    pub fn delete_topic(&self, topic: &str) -> Result<(), LogError> {
        let _admin = self.admin.lock().expect("admin lock");
        let description = self
            .topic(topic)
            .ok_or_else(|| LogError::UnknownTopicOrPartition { topic: topic.to_string(), partition: -1 })?;
        let path = self.topic_file(topic);
        fs::remove_file(&path).map_err(|source| LogError::Io { op: "remove topic", path: path.clone(), source })?;
        sync_dir(&self.data_dir.join(TOPICS_DIR))?;
        self.topics.write().expect("topics lock").remove(topic);
        for partition in 0..description.partitions {
            let tp = TopicPartition::new(topic, partition);
            self.logs.write().expect("logs lock").remove(&tp);
            let dir = self.partition_dir(&tp);
            fs::remove_dir_all(&dir).map_err(|source| LogError::Io { op: "remove log", path: dir, source })?;
        }
        Ok(())
    }

    fn all_logs(&self) -> Vec<(TopicPartition, Arc<Log>)> {
        self.logs.read().expect("logs lock").iter().map(|(tp, log)| (tp.clone(), Arc::clone(log))).collect()
    }

    /// One pass of retention and (where due) compaction over every log. Errors are logged
    /// per partition so one bad log does not stop the others' maintenance.
    pub fn run_maintenance(&self) {
        for (tp, log) in self.all_logs() {
            if let Err(error) = log.apply_retention() {
                tracing::error!(partition = %tp, %error, "retention failed");
            }
            let config = log.config();
            if config.cleanup_policy.compact && log.dirty_ratio() >= config.min_cleanable_dirty_ratio {
                match log.compact() {
                    Ok(outcome) if outcome.segments_cleaned > 0 => {
                        tracing::debug!(partition = %tp, ?outcome, "compacted")
                    }
                    Ok(_) => {}
                    Err(error) => tracing::error!(partition = %tp, %error, "compaction failed"),
                }
            }
        }
    }

    /// Asks for a flush of every log whose unflushed data has waited `flush.ms`.
    pub fn flush_overdue(&self) {
        for (_, log) in self.all_logs() {
            log.flush_if_overdue();
        }
    }

    /// Runs [`Self::run_maintenance`] every `interval` on a background thread (Kafka's
    /// `log.retention.check.interval.ms`), and [`Self::flush_overdue`] every
    /// [`FLUSH_CHECK_INTERVAL`], until the manager closes.
    ///
    /// # Panics
    /// If the operating system cannot start a thread.
    pub fn start_maintenance(self: &Arc<Self>, interval: Duration) {
        let weak = Arc::downgrade(self);
        let maintenance = Arc::clone(&self.maintenance);
        let thread = std::thread::Builder::new()
            .name("headwater-log-maintenance".into())
            .spawn(move || {
                let mut last_maintenance = std::time::Instant::now();
                loop {
                    {
                        let stop = maintenance.stop.lock().expect("maintenance lock");
                        let tick = interval.min(FLUSH_CHECK_INTERVAL);
                        let (stop, _) =
                            maintenance.wake.wait_timeout_while(stop, tick, |stop| !*stop).expect("maintenance lock");
                        if *stop {
                            return;
                        }
                    }
                    let Some(manager) = weak.upgrade() else { return };
                    manager.flush_overdue();
                    if last_maintenance.elapsed() >= interval {
                        manager.run_maintenance();
                        last_maintenance = std::time::Instant::now();
                    }
                }
            })
            .expect("start the maintenance thread");
        *self.maintenance_thread.lock().expect("maintenance thread lock") = Some(thread);
    }

    /// Stops maintenance and flushes every log. Safe to call more than once.
    ///
    /// # Errors
    /// The first flush error; every log is still tried.
    pub fn close(&self) -> Result<(), LogError> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        *self.maintenance.stop.lock().expect("maintenance lock") = true;
        self.maintenance.wake.notify_all();
        if let Some(thread) = self.maintenance_thread.lock().expect("maintenance thread lock").take() {
            let _ = thread.join();
        }
        let mut first_error = None;
        for (tp, log) in self.all_logs() {
            if let Err(error) = log.close() {
                tracing::error!(partition = %tp, %error, "closing log failed");
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for LogManager {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// Kafka's rule: 1 to 249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(topic: &str) -> Result<(), LogError> {
    let invalid = |reason| Err(LogError::InvalidTopic { topic: topic.to_string(), reason });
    if topic.is_empty() {
        return invalid("empty");
    }
    if topic == "." || topic == ".." {
        return invalid("may not be . or ..");
    }
    if topic.len() > TOPIC_NAME_MAX_CHARS {
        return invalid("longer than 249 characters");
    }
    if !topic.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
        return invalid("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}
