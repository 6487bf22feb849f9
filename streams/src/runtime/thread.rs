//! A stream thread: one group member (or one share of the embedded log) running the
//! tasks of the partitions it owns.
//!
//! ```text
//!  loop: rebalance wanted? -> commit, close tasks, rejoin
//!        poll -> make / restore tasks for new partitions -> hand records to tasks
//!        -> process -> send output -> every commit.interval: commit
//!  commit = send what tasks wrote (sinks, changelogs) -> flush (all acknowledged)
//!           -> source offsets committed (exactly_once_v2: with the transaction)
//!           -> stores commit (persistent checkpoints)
//! ```
//! Offsets are committed only after output and changelogs are durable, so a crash replays
//! records (at-least-once) and never skips one. A persistent store's checkpoint is
//! written last: under exactly_once_v2 its contents must never run ahead of a committed
//! transaction, and a store behind its changelog is caught up from it when it opens.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::backend::Backend;
use super::metrics::Metrics;
use super::task::{StreamTask, TaskId};
use crate::error::StreamsError;
use crate::topology::{TopicPlan, Topology};

/// How often idle tasks' time-driven nodes run on wall-clock time.
const PUNCTUATE_INTERVAL_MS: i64 = 1_000;

pub(crate) struct StreamThread<B> {
    pub(crate) name: String,
    pub(crate) topology: Arc<Topology>,
    pub(crate) application_id: String,
    pub(crate) state_dir: Option<std::path::PathBuf>,
    pub(crate) commit_interval: std::time::Duration,
    pub(crate) backend: B,
    pub(crate) shutdown: Arc<AtomicBool>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) plan: Option<TopicPlan>,
    pub(crate) partitions: Arc<HashMap<String, i32>>,
    pub(crate) tasks: BTreeMap<TaskId, StreamTask>,
    pub(crate) routes: HashMap<(Arc<str>, i32), TaskId>,
    pub(crate) last_commit: Instant,
    pub(crate) last_punctuate: i64,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl<B: Backend> StreamThread<B> {
    /// Plans the topics, creates the internal ones, subscribes, and runs until shutdown
    /// or a failure. A graceful stop commits everything first.
    pub(crate) async fn run(mut self) -> Result<(), StreamsError> {
        let mut outcome = self.run_loop().await;
        if outcome.is_ok() {
            // A failed last commit still closes the backend: its transaction is aborted
            // and the member leaves the group.
            outcome = self.commit_all().await;
        }
        self.tasks.clear();
        self.metrics.clear_thread(&self.name);
        let closed = self.backend.close().await;
        outcome.and(closed)
    }

    async fn setup(&mut self) -> Result<(), StreamsError> {
        let sources: Vec<String> = self.topology.external_sources().into_iter().collect();
        let counts = self.backend.partition_counts(&sources).await?;
        for topic in &sources {
            if !counts.contains_key(topic) {
                return Err(StreamsError::Topology(format!("source topic {topic} does not exist")));
            }
        }
        let plan = self.topology.plan_partitions(&self.application_id, &counts)?;
        self.backend.create_topics(&plan.internal).await?;
        // Sinks need partition counts for key partitioning; an output topic that does not
        // exist is created with one partition, like a broker's auto-creation.
        let sinks: Vec<String> = self.topology.sink_topics(&self.application_id).into_iter().collect();
        let missing: BTreeMap<String, crate::topology::InternalTopic> = {
            let known = self.backend.partition_counts(&sinks).await.unwrap_or_default();
            sinks
                .iter()
                .filter(|t| !known.contains_key(*t))
                .map(|t| (t.clone(), crate::topology::InternalTopic { partitions: 1, changelog: false }))
                .collect()
        };
        self.backend.create_topics(&missing).await?;
        // In a cluster, topics just created take a moment to appear in every broker's
        // metadata.
        let mut attempt = 0;
        self.partitions = loop {
            match self.backend.partition_counts(&sinks).await {
                Ok(counts) => break Arc::new(counts),
                Err(_) if attempt < 50 => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(error) => return Err(error),
            }
        };
        let mut subscribed: BTreeSet<String> = sources.into_iter().collect();
        for (name, topic) in &plan.internal {
            if !topic.changelog && self.topology.reads(&self.application_id, name) {
                subscribed.insert(name.clone());
            }
        }
        self.backend.subscribe(subscribed.into_iter().collect()).await?;
        self.plan = Some(plan);
        Ok(())
    }

    async fn run_loop(&mut self) -> Result<(), StreamsError> {
        self.setup().await?;
        while !self.shutdown.load(Ordering::Acquire) {
            if self.backend.rebalance_wanted() {
                // Everything processed is committed before any partition leaves.
                self.commit_or_rejoin().await?;
                self.tasks.clear();
                self.routes.clear();
                self.backend.rebalance().await?;
            }
            let records = self.backend.poll().await?;
            self.reconcile().await?;
            // A poll's records come in runs of one partition: look the task up once a run.
            let mut last: Option<(Arc<str>, i32, TaskId)> = None;
            for record in records {
                let id = match &last {
                    Some((topic, partition, id))
                        if Arc::ptr_eq(topic, &record.topic) && *partition == record.partition =>
                    {
                        *id
                    }
                    _ => match self.routes.get(&(Arc::clone(&record.topic), record.partition)) {
                        Some(id) => {
                            last = Some((Arc::clone(&record.topic), record.partition, *id));
                            *id
                        }
                        None => {
                            tracing::warn!(topic = %record.topic, partition = record.partition, "a record for no task");
                            continue;
                        }
                    },
                };
                self.tasks.get_mut(&id).expect("a routed task").add(record);
            }
            let now = now_ms();
            let punctuate = now - self.last_punctuate >= PUNCTUATE_INTERVAL_MS;
            let mut output = Vec::new();
            for task in self.tasks.values_mut() {
                if task.has_queued() {
                    let started = Instant::now();
                    task.process(now)?;
                    self.metrics.record_process(task.id, task.counters(), started.elapsed());
                } else if punctuate {
                    let started = Instant::now();
                    task.punctuate(now)?;
                    self.metrics.record_punctuate(task.id, started.elapsed());
                }
                output.extend(task.take_output()?);
            }
            if punctuate {
                self.last_punctuate = now;
            }
            if !output.is_empty() {
                self.backend.send(output).await?;
            }
            if self.last_commit.elapsed() >= self.commit_interval {
                self.commit_or_rejoin().await?;
            }
        }
        Ok(())
    }

    /// Starts the tasks of newly owned partitions (restoring their stores first) and
    /// drops those of partitions no longer owned.
    async fn reconcile(&mut self) -> Result<(), StreamsError> {
        let Some(plan) = &self.plan else { return Ok(()) };
        let owned: BTreeSet<(String, i32)> = self.backend.assignment().into_iter().collect();
        let mut wanted = BTreeSet::new();
        for sub in &self.topology.subtopologies {
            let count = plan.tasks.get(&sub.id).copied().unwrap_or(0);
            for partition in 0..count {
                let all = sub.sources.iter().all(|t| owned.contains(&(t.resolve(&self.application_id), partition)));
                if all {
                    wanted.insert(TaskId { subtopology: sub.id, partition });
                }
            }
        }
        let gone: Vec<TaskId> = self.tasks.keys().filter(|id| !wanted.contains(id)).copied().collect();
        for id in gone {
            self.tasks.remove(&id);
            self.metrics.remove(id);
        }
        self.routes.retain(|_, id| wanted.contains(id));
        for id in wanted {
            if self.tasks.contains_key(&id) {
                continue;
            }
            let task = self.restore(id).await?;
            for topic in task.source_topics() {
                self.routes.insert((Arc::clone(topic), id.partition), id);
            }
            tracing::info!(thread = %self.name, task = %id, "task started");
            self.tasks.insert(id, task);
        }
        Ok(())
    }

    async fn restore(&mut self, id: TaskId) -> Result<StreamTask, StreamsError> {
        let mut task = StreamTask::open(
            &self.topology,
            id,
            &self.application_id,
            Arc::clone(&self.partitions),
            self.state_dir.as_deref(),
        )?;
        let mut reached = HashMap::new();
        let started = Instant::now();
        let mut restored = 0u64;
        for changelog in task.changelogs() {
            let (start, end) = self.backend.bounds(&changelog.topic, changelog.partition).await?;
            let store = std::rc::Rc::clone(task.store(&changelog.store).expect("a changelog's store"));
            let from = match changelog.from {
                // A checkpoint inside the changelog: only what came after it.
                Some(from) if (start..=end).contains(&from) => from,
                // A checkpoint the changelog no longer holds (compacted or recreated):
                // start again from nothing.
                Some(_) => {
                    store.borrow_mut().clear()?;
                    start
                }
                None => start,
            };
            let mut apply = |record: headwater_core::client::ConsumerRecord| {
                if let Some(key) = record.key {
                    store.borrow_mut().restore(key, record.value);
                    restored += 1;
                }
            };
            self.backend.read_range(&changelog.topic, changelog.partition, from, end, &mut apply).await?;
            reached.insert((Arc::clone(&changelog.topic), changelog.partition), end);
        }
        task.commit_stores(&reached)?;
        task.start(&self.topology, &self.application_id)?;
        if restored > 0 {
            tracing::info!(task = %id, records = restored, elapsed = ?started.elapsed(), "state restored from changelogs");
        }
        Ok(task)
    }

    /// Commits; when the group refused the offsets because it has moved on (this member
    /// was fenced or missed a rebalance), its partitions may already be someone else's:
    /// the tasks are dropped uncommitted (their records will be processed again, which
    /// at-least-once allows) and the thread rejoins, instead of failing the application.
    async fn commit_or_rejoin(&mut self) -> Result<(), StreamsError> {
        match self.commit_all().await {
            Err(StreamsError::Commit { message }) if self.backend.rebalance_wanted() => {
                tracing::warn!(thread = %self.name, %message, "the group refused a commit; rejoining");
                for id in std::mem::take(&mut self.tasks).into_keys() {
                    self.metrics.remove(id);
                }
                self.routes.clear();
                self.last_commit = Instant::now();
                self.backend.rebalance().await
            }
            outcome => outcome,
        }
    }

    /// Sends what the tasks wrote, waits until it is durable, commits the source offsets
    /// (under exactly_once_v2, with the transaction), then the stores' checkpoints.
    async fn commit_all(&mut self) -> Result<(), StreamsError> {
        let started = Instant::now();
        let mut output = Vec::new();
        for task in self.tasks.values_mut() {
            output.extend(task.take_output()?);
        }
        if !output.is_empty() {
            self.backend.send(output).await?;
        }
        let reached = self.backend.flush().await?;
        let mut offsets = Vec::new();
        for task in self.tasks.values() {
            offsets.extend(task.positions().map(|(t, o)| (t.to_string(), task.id.partition, o)));
        }
        self.backend.commit(&offsets).await?;
        for task in self.tasks.values_mut() {
            task.commit_stores(&reached)?;
        }
        if !offsets.is_empty() {
            let partitions: Vec<(String, i32)> = offsets.iter().map(|(t, p, _)| (t.clone(), *p)).collect();
            if let Ok(ends) = self.backend.end_offsets(&partitions).await {
                for (topic, partition, offset) in &offsets {
                    if let (Some(end), Some(id)) = (
                        ends.get(&(topic.clone(), *partition)),
                        self.routes.get(&(Arc::from(topic.as_str()), *partition)),
                    ) {
                        self.metrics.record_lag(*id, topic, (end - offset).max(0));
                    }
                }
            }
        }
        self.metrics.record_commit(&self.name, self.tasks.keys().copied(), started.elapsed());
        self.last_commit = Instant::now();
        Ok(())
    }
}
