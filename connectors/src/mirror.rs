//! `mirror-source`: topics of another Kafka-compatible cluster copied into this one, as
//! MirrorMaker 2's MirrorSourceConnector copies them, with offsets translated for
//! consumer groups that move across.
//!
//! | Setting | Default | Meaning |
//! | --- | --- | --- |
//! | `source.bootstrap.servers` (`source.cluster.bootstrap.servers`) | required | the cluster to copy from |
//! | `source.cluster.alias` | `source` | its name, the prefix of copied topics under the default policy |
//! | `topics` | `.*` | regular expressions (comma-separated) of topics to copy |
//! | `topics.exclude` | `__.*, .*\.internal, .*-internal` | topics never copied |
//! | `replication.policy` | `default` | `default`: `orders` becomes `<alias>.orders`; `identity`: names kept |
//! | `refresh.topics.interval.seconds` | 10 | how often new source topics are looked for |
//! | `sync.group.offsets.enabled` | false | copy consumer groups' committed offsets, translated |
//! | `groups` | `.*` | regular expressions of groups whose offsets are copied |
//! | `sync.group.offsets.interval.seconds` | 10 | how often they are |
//!
//! Records keep their key, value, headers, timestamp and partition number; target topics
//! are created with the source's partition count. The source offset of each copied record
//! is committed in the worker's offsets topic, so a restart resumes after the last record
//! copied. Each acknowledged record's (upstream, downstream) offsets form an *offset sync*
//! (one per poll per partition is kept, written to the compacted topic
//! `mm2-offset-syncs.<alias>.internal`, as MirrorMaker 2 does); a group's committed
//! offset upstream is translated to the downstream offset after the last sync at or
//! before it, which never skips a record (a consumer that moves may see a few again). A
//! group's offsets are written downstream only while it has no members there, and never
//! moved backwards. Tasks share partitions by hash, so each finds new topics by itself.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use headwater_core::client::{
    Admin, ClientError, Consumer, ConsumerConfig, OffsetReset, Producer, ProducerConfig, RecordMetadata,
};
use regex::Regex;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::config::{ConfigError, ConnectorConfig};
use crate::connector::{SourceConnector, SourceOffsets, SourceRecord, SourceTask, TaskConfig, TaskError};
use crate::converter::Data;
use crate::definition::{ConfigDef, Kind, Setting};
use crate::record::ConnectRecord;

/// Offset syncs kept per partition for translation; older ones are dropped.
const SYNCS_KEPT: usize = 1024;

pub fn definition() -> ConfigDef {
    ConfigDef::new([
        Setting::required(
            "source.bootstrap.servers|source.cluster.bootstrap.servers",
            Kind::String,
            "The cluster to copy from.",
        ),
        Setting::optional("source.cluster.alias", Kind::String, "source", "The source cluster's name."),
        Setting::optional("topics", Kind::List, ".*", "Regular expressions of topics to copy."),
        Setting::optional("topics.exclude", Kind::List, "__.*,.*\\.internal,.*-internal", "Topics never copied."),
        Setting::optional("replication.policy", Kind::String, "default", "default (alias.topic) or identity."),
        Setting::optional("refresh.topics.interval.seconds", Kind::Long, "10", "How often new topics are found."),
        Setting::optional("sync.group.offsets.enabled", Kind::Boolean, "false", "Copy groups' offsets, translated."),
        Setting::optional("groups", Kind::List, ".*", "Regular expressions of groups to copy."),
        Setting::optional("sync.group.offsets.interval.seconds", Kind::Long, "10", "How often groups are copied."),
    ])
}

/// Regular expressions, each matching whole names.
fn patterns(config: &ConnectorConfig, def: &ConfigDef, name: &str) -> Result<Vec<Regex>, ConfigError> {
    def.value(config, name)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| Regex::new(&format!("^(?:{p})$")).map_err(|_| config.invalid(name, "not a valid regular expression")))
        .collect()
}

/// How source topic names become target names.
#[derive(Debug, Clone)]
enum Policy {
    /// `orders` is `<alias>.orders`.
    Prefix(String),
    Identity,
}

impl Policy {
    fn target(&self, topic: &str) -> String {
        match self {
            Policy::Prefix(alias) => format!("{alias}.{topic}"),
            Policy::Identity => topic.to_string(),
        }
    }
}

fn policy(config: &ConnectorConfig, def: &ConfigDef) -> Result<Policy, ConfigError> {
    let alias = def.value(config, "source.cluster.alias").unwrap_or("source").trim().to_string();
    match def.value(config, "replication.policy").map(str::trim) {
        None
        | Some("default" | "DefaultReplicationPolicy" | "org.apache.kafka.connect.mirror.DefaultReplicationPolicy") => {
            Ok(Policy::Prefix(alias))
        }
        Some(
            "identity" | "IdentityReplicationPolicy" | "org.apache.kafka.connect.mirror.IdentityReplicationPolicy",
        ) => Ok(Policy::Identity),
        Some(_) => Err(config.invalid("replication.policy", "must be default or identity")),
    }
}

#[derive(Debug, Default)]
pub struct MirrorSource;

#[async_trait]
impl SourceConnector for MirrorSource {
    /// The source cluster's offsets replay exactly the records after them.
    fn exactly_once(&self, _config: &ConnectorConfig) -> bool {
        true
    }

    fn validate(&self, config: &ConnectorConfig) -> Vec<ConfigError> {
        let def = definition();
        let mut errors = Vec::new();
        for name in ["topics", "topics.exclude", "groups"] {
            if let Err(error) = patterns(config, &def, name) {
                errors.push(error);
            }
        }
        if let Err(error) = policy(config, &def) {
            errors.push(error);
        }
        errors
    }

    /// `tasks.max` tasks; each takes the partitions whose hash falls to it.
    async fn task_configs(&self, config: &ConnectorConfig) -> Result<Vec<TaskConfig>, TaskError> {
        Ok((0..config.tasks_max)
            .map(|task| {
                let mut task_config = config.clone();
                task_config.settings.insert("mirror.task.count".into(), config.tasks_max.to_string());
                task_config.settings.insert("mirror.task.index".into(), task.to_string());
                task_config
            })
            .collect())
    }

    fn task(&self, config: &TaskConfig) -> Result<Box<dyn SourceTask>, TaskError> {
        Ok(Box::new(MirrorSourceTask::new(config)?))
    }
}

/// The connections a running task holds, besides its consumer (which is not `Sync`, so it
/// is kept apart and borrowed only where it is used).
struct Clients {
    source_admin: Admin,
    target_admin: Admin,
    /// Writes offset syncs to the target cluster.
    syncs_producer: Producer,
}

pub struct MirrorSourceTask {
    source: String,
    target: String,
    alias: String,
    syncs_topic: String,
    include: Vec<Regex>,
    exclude: Vec<Regex>,
    groups: Vec<Regex>,
    sync_groups: bool,
    policy: Policy,
    refresh: Duration,
    group_interval: Duration,
    task_index: usize,
    task_count: usize,
    clients: Option<Clients>,
    consumer: Option<Consumer>,
    committed: SourceOffsets,
    /// Source partitions this task copies, and their target topic.
    partitions: BTreeMap<(String, i32), String>,
    next_refresh: Instant,
    next_group_sync: Instant,
    /// Per source partition: (upstream, downstream) offset syncs, oldest first.
    syncs: HashMap<(String, i32), Vec<(i64, i64)>>,
    /// The latest sync of each partition not yet written to the syncs topic.
    pending_syncs: BTreeMap<(String, i32), (i64, i64)>,
    /// The source partition and offset of each record polled and not yet acknowledged,
    /// in poll order (the order acknowledgements come in).
    in_flight: VecDeque<(String, i32, i64)>,
}

impl std::fmt::Debug for MirrorSourceTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirrorSourceTask")
            .field("source", &self.source)
            .field("partitions", &self.partitions.len())
            .finish()
    }
}

impl MirrorSourceTask {
    /// A task for a config [`definition`] accepted.
    ///
    /// # Errors
    /// [`TaskError::Config`] for a setting that does not parse.
    pub fn new(config: &TaskConfig) -> Result<Self, TaskError> {
        let def = definition();
        let number = |name: &str, default: u64| def.number(config, name, default);
        let policy = policy(config, &def)?;
        let alias = def.value(config, "source.cluster.alias").unwrap_or("source").trim().to_string();
        Ok(MirrorSourceTask {
            source: def.value(config, "source.bootstrap.servers").unwrap_or_default().trim().to_string(),
            target: config.get("worker.bootstrap.servers").unwrap_or_default().to_string(),
            syncs_topic: format!("mm2-offset-syncs.{alias}.internal"),
            alias,
            include: patterns(config, &def, "topics")?,
            exclude: patterns(config, &def, "topics.exclude")?,
            groups: patterns(config, &def, "groups")?,
            sync_groups: def.value(config, "sync.group.offsets.enabled").is_some_and(|v| v.trim() == "true"),
            policy,
            refresh: Duration::from_secs(number("refresh.topics.interval.seconds", 10).max(1)),
            group_interval: Duration::from_secs(number("sync.group.offsets.interval.seconds", 10).max(1)),
            task_index: number("mirror.task.index", 0) as usize,
            task_count: number("mirror.task.count", 1).max(1) as usize,
            clients: None,
            consumer: None,
            committed: SourceOffsets::default(),
            partitions: BTreeMap::new(),
            next_refresh: Instant::now(),
            next_group_sync: Instant::now(),
            syncs: HashMap::new(),
            pending_syncs: BTreeMap::new(),
            in_flight: VecDeque::new(),
        })
    }
}

/// A stable hash of a partition, to deal partitions to tasks.
fn owner(topic: &str, partition: i32, tasks: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in topic.bytes().chain(partition.to_be_bytes()) {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    (hash % tasks as u64) as usize
}

fn unreachable(cluster: &str) -> impl Fn(ClientError) -> TaskError + '_ {
    move |e| TaskError::Retriable(format!("cluster {cluster}: {e}"))
}

/// Whether a source topic is copied.
fn wanted(include: &[Regex], exclude: &[Regex], alias: &str, topic: &str) -> bool {
    include.iter().any(|r| r.is_match(topic))
        && !exclude.iter().any(|r| r.is_match(topic))
        // Never copy back what was copied from this source: a topic already named for it.
        && !topic.starts_with(&format!("{alias}."))
}

impl MirrorSourceTask {
    /// Finds the source topics to copy, creates their targets, and starts reading new
    /// partitions after their committed offsets (from the start when none).
    async fn refresh_topics(&mut self) -> Result<(), TaskError> {
        let clients = self.clients.as_ref().expect("started");
        let topics = clients.source_admin.topics(None).await.map_err(unreachable(&self.source))?;
        let mut added = Vec::new();
        for topic in topics.iter().filter(|t| !t.internal) {
            if !wanted(&self.include, &self.exclude, &self.alias, &topic.name) {
                continue;
            }
            let target = self.policy.target(&topic.name);
            let count = topic.partitions.len() as i32;
            let mine: Vec<i32> = topic
                .partitions
                .iter()
                .map(|p| p.partition)
                .filter(|p| owner(&topic.name, *p, self.task_count) == self.task_index)
                .filter(|p| !self.partitions.contains_key(&(topic.name.clone(), *p)))
                .collect();
            if mine.is_empty() {
                continue;
            }
            ensure_topic(&clients.target_admin, &target, count).await.map_err(unreachable(&self.target))?;
            for partition in mine {
                added.push((topic.name.clone(), partition));
                self.partitions.insert((topic.name.clone(), partition), target.clone());
            }
        }
        if added.is_empty() {
            return Ok(());
        }
        let all: Vec<(String, i32)> = self.partitions.keys().cloned().collect();
        let consumer = self.consumer.as_mut().expect("started");
        consumer.assign(all);
        for (topic, partition) in &added {
            let partition_key = json!({ "cluster": self.alias, "topic": topic, "partition": partition });
            if let Some(next) = self.committed.get(&partition_key).and_then(|o| o.get("offset")).and_then(Value::as_i64)
            {
                consumer.seek(topic, *partition, next + 1);
            }
            tracing::info!(topic, partition, target = %self.partitions[&(topic.clone(), *partition)], "mirroring");
        }
        Ok(())
    }

    /// The downstream offset for an upstream committed offset (the next record to read).
    /// Exact when the sync before it is for the record just before, or when the syncs on
    /// both sides show no gap between them (then the offsets run in step); otherwise the
    /// record after the sync before, so records are read again downstream, never skipped.
    fn translate(&self, topic: &str, partition: i32, upstream: i64) -> Option<i64> {
        let syncs = self.syncs.get(&(topic.to_string(), partition))?;
        let index = syncs.partition_point(|(u, _)| *u < upstream).checked_sub(1)?;
        let (u, d) = syncs[index];
        if u == upstream - 1 {
            return Some(d + 1);
        }
        match syncs.get(index + 1) {
            Some(&(u2, d2)) if d2 - d == u2 - u => Some(d + (upstream - u)),
            _ => Some(d + 1),
        }
    }

    /// Writes the latest offset syncs, and copies groups' committed offsets when due.
    async fn sync(&mut self) -> Result<(), TaskError> {
        let pending = std::mem::take(&mut self.pending_syncs);
        if !pending.is_empty() {
            let clients = self.clients.as_ref().expect("started");
            let mut deliveries = Vec::new();
            for ((topic, partition), (upstream, downstream)) in pending {
                let history = self.syncs.entry((topic.clone(), partition)).or_default();
                if history.last() != Some(&(upstream, downstream)) {
                    history.push((upstream, downstream));
                }
                if history.len() > SYNCS_KEPT {
                    history.drain(..history.len() - SYNCS_KEPT);
                }
                let key = json!({ "cluster": self.alias, "topic": topic, "partition": partition }).to_string();
                let value = json!({ "upstream": upstream, "downstream": downstream }).to_string();
                let sent = clients
                    .syncs_producer
                    .send(&self.syncs_topic, Some(Bytes::from(key)), Some(Bytes::from(value)), Vec::new())
                    .await;
                deliveries.push(sent.map_err(unreachable(&self.target))?);
            }
            // Offset syncs are advice for translation: one lost is replaced by the next.
            drop(deliveries);
        }
        if !self.sync_groups || Instant::now() < self.next_group_sync {
            return Ok(());
        }
        self.next_group_sync = Instant::now() + self.group_interval;
        let clients = self.clients.as_ref().expect("started");
        let groups = clients.source_admin.groups().await.map_err(unreachable(&self.source))?;
        for (group, _) in groups.into_iter().filter(|(g, _)| self.groups.iter().any(|r| r.is_match(g))) {
            // A group that is live downstream owns its offsets there.
            let downstream = clients.target_admin.describe_group(&group).await;
            if downstream.as_ref().is_ok_and(|g| !g.members.is_empty()) {
                continue;
            }
            let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            for (topic, partition) in self.partitions.keys() {
                by_topic.entry(topic.clone()).or_default().push(*partition);
            }
            for (topic, mine) in by_topic {
                let count = mine.iter().max().map_or(0, |m| m + 1);
                let upstream = clients
                    .source_admin
                    .committed_offsets(&group, &topic, count)
                    .await
                    .map_err(unreachable(&self.source))?;
                let target = self.policy.target(&topic);
                let current: HashMap<i32, i64> = clients
                    .target_admin
                    .committed_offsets(&group, &target, count)
                    .await
                    .map(|o| o.into_iter().collect())
                    .unwrap_or_default();
                let translated: Vec<(i32, i64)> = upstream
                    .into_iter()
                    .filter(|(p, offset)| *offset >= 0 && mine.contains(p))
                    .filter_map(|(p, offset)| self.translate(&topic, p, offset).map(|d| (p, d)))
                    .filter(|(p, d)| current.get(p).is_none_or(|c| *c < *d))
                    .collect();
                if !translated.is_empty() {
                    clients
                        .target_admin
                        .reset_offsets(&group, &target, &translated)
                        .await
                        .map_err(unreachable(&self.target))?;
                    tracing::debug!(group, topic = %target, ?translated, "copied committed offsets");
                }
            }
        }
        Ok(())
    }
}

/// Creates a target topic with `partitions` partitions if it is missing.
async fn ensure_topic(admin: &Admin, topic: &str, partitions: i32) -> Result<(), ClientError> {
    match admin.topics(Some(&[topic.to_string()])).await {
        Ok(_) => Ok(()),
        Err(ClientError::UnknownTopic { .. }) => match admin.create_topic(topic, partitions, &BTreeMap::new()).await {
            Ok(()) => Ok(()),
            Err(error) => admin.topics(Some(&[topic.to_string()])).await.map(|_| ()).map_err(|_| error),
        },
        Err(error) => Err(error),
    }
}

#[async_trait]
impl SourceTask for MirrorSourceTask {
    async fn start(&mut self, offsets: SourceOffsets) -> Result<(), TaskError> {
        if self.target.is_empty() {
            return Err(TaskError::fatal("no target cluster (worker.bootstrap.servers)"));
        }
        let consumer = Consumer::connect(ConsumerConfig {
            bootstrap: self.source.clone(),
            client_id: format!("mirror-source-{}-{}", self.alias, self.task_index),
            fetch_max_wait: Duration::from_millis(200),
            auto_offset_reset: OffsetReset::Earliest,
            ..ConsumerConfig::default()
        })
        .await
        .map_err(unreachable(&self.source))?;
        let source_admin = Admin::connect(&self.source).await.map_err(unreachable(&self.source))?;
        let target_admin = Admin::connect(&self.target).await.map_err(unreachable(&self.target))?;
        if let Err(error) = crate::runtime::offsets::ensure_compacted_topic(&target_admin, &self.syncs_topic, 1).await {
            let reason = match error {
                crate::runtime::offsets::EnsureError::Client(e) => e.to_string(),
                crate::runtime::offsets::EnsureError::NotCompacted(policy) => format!("not compacted ({policy})"),
            };
            return Err(TaskError::Fatal(format!("offset syncs topic {}: {reason}", self.syncs_topic)));
        }
        let syncs_producer = Producer::connect(ProducerConfig {
            bootstrap: self.target.clone(),
            client_id: format!("mirror-offset-syncs-{}", self.alias),
            ..ProducerConfig::default()
        })
        .await
        .map_err(unreachable(&self.target))?;
        self.clients = Some(Clients { source_admin, target_admin, syncs_producer });
        self.consumer = Some(consumer);
        self.committed = offsets;
        self.refresh_topics().await
    }

    async fn poll(&mut self) -> Result<Vec<SourceRecord>, TaskError> {
        if Instant::now() >= self.next_refresh {
            self.next_refresh = Instant::now() + self.refresh;
            self.refresh_topics().await?;
        }
        self.sync().await?;
        if self.partitions.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
            return Ok(Vec::new());
        }
        let consumed = self.consumer.as_mut().expect("started").poll().await.map_err(unreachable(&self.source))?;
        let mut records = Vec::with_capacity(consumed.len());
        for record in consumed {
            let Some(target) = self.partitions.get(&(record.topic.to_string(), record.partition)) else { continue };
            let mut copy = ConnectRecord::new(target.clone(), record.value.clone().map_or(Data::Null, Data::Bytes));
            copy.key = record.key.clone().map_or(Data::Null, Data::Bytes);
            copy.partition = Some(record.partition);
            copy.timestamp = Some(record.timestamp);
            copy.headers = record.headers.clone();
            self.in_flight.push_back((record.topic.to_string(), record.partition, record.offset));
            records.push(SourceRecord {
                record: copy,
                source_partition: json!({ "cluster": self.alias, "topic": record.topic.as_ref(), "partition": record.partition }),
                source_offset: json!({ "offset": record.offset }),
            });
        }
        Ok(records)
    }

    fn commit_record(&mut self, _source_offset: &Value, written: Option<RecordMetadata>) {
        let Some((topic, partition, upstream)) = self.in_flight.pop_front() else { return };
        if let Some(metadata) = written.filter(|m| m.offset >= 0) {
            // The first record of a partition is a sync of its own, so that offsets from
            // the start can be translated.
            let history = self.syncs.entry((topic.clone(), partition)).or_default();
            if history.is_empty() {
                history.push((upstream, metadata.offset));
            }
            self.pending_syncs.insert((topic, partition), (upstream, metadata.offset));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(syncs: &[(i64, i64)]) -> MirrorSourceTask {
        let config = crate::config::test_config(
            "mirror-source",
            &[("source.bootstrap.servers", "a:9092"), ("source.cluster.alias", "east")],
        );
        let mut task = MirrorSourceTask::new(&config).unwrap();
        task.syncs.insert(("t".into(), 0), syncs.to_vec());
        task
    }

    #[test]
    fn offsets_translate_exactly_where_they_can_and_never_skip() {
        // 0..=99 copied in step, then a gap upstream (compaction) of 10.
        let task = task(&[(0, 0), (99, 99), (150, 140)]);
        assert_eq!(task.translate("t", 0, 40), Some(40), "in step between syncs");
        assert_eq!(task.translate("t", 0, 100), Some(100), "just after a sync");
        assert_eq!(task.translate("t", 0, 120), Some(100), "across a gap: from the sync before");
        assert_eq!(task.translate("t", 0, 151), Some(141));
        assert_eq!(task.translate("t", 0, 0), None, "nothing before");
        assert_eq!(task.translate("u", 0, 5), None);
    }

    #[test]
    fn topics_are_chosen_and_renamed_by_policy() {
        let task = task(&[]);
        assert!(wanted(&task.include, &task.exclude, "east", "orders"));
        assert!(!wanted(&task.include, &task.exclude, "east", "__consumer_offsets"));
        assert!(!wanted(&task.include, &task.exclude, "east", "mm2-offset-syncs.west.internal"));
        assert!(!wanted(&task.include, &task.exclude, "east", "east.orders"), "never copied back");
        assert_eq!(task.policy.target("orders"), "east.orders");
        assert_eq!(Policy::Identity.target("orders"), "orders");
        assert_eq!(owner("orders", 3, 1), 0);
    }
}
