//! Per-task metrics: records processed, lag, commit and punctuation latency.
//!
//! Each figure goes to the `metrics` facade (so `headwater serve`'s Prometheus exporter,
//! or any recorder the application installs, publishes it) and into a snapshot that
//! [`super::KafkaStreams::task_metrics`] returns.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use super::task::TaskId;
use crate::processor::TaskCounters;

/// One task's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskMetrics {
    pub task: String,
    pub thread: String,
    pub records_processed: u64,
    pub dropped_late: u64,
    /// Records not yet processed, per source topic, as of the last commit.
    pub lag: BTreeMap<String, i64>,
    pub last_commit_latency: Duration,
    pub last_process_latency: Duration,
    pub last_punctuate_latency: Duration,
}

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    application_id: String,
    tasks: Mutex<BTreeMap<TaskId, TaskMetrics>>,
}

impl Metrics {
    pub(crate) fn new(application_id: &str) -> Self {
        Self { application_id: application_id.to_string(), tasks: Mutex::new(BTreeMap::new()) }
    }

    fn with(&self, id: TaskId, f: impl FnOnce(&mut TaskMetrics)) {
        let mut tasks = self.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = tasks.entry(id).or_insert_with(|| TaskMetrics { task: id.to_string(), ..TaskMetrics::default() });
        f(entry);
    }

    pub(crate) fn record_process(&self, id: TaskId, counters: TaskCounters, elapsed: Duration) {
        let labels = [("application_id", self.application_id.clone()), ("task", id.to_string())];
        self.with(id, |m| {
            let added = counters.processed.saturating_sub(m.records_processed);
            metrics::counter!("headwater_streams_records_processed_total", &labels).increment(added);
            m.records_processed = counters.processed;
            m.dropped_late = counters.dropped_late;
            m.last_process_latency = elapsed;
        });
        metrics::gauge!("headwater_streams_dropped_late_records", &labels).set(counters.dropped_late as f64);
    }

    pub(crate) fn record_punctuate(&self, id: TaskId, elapsed: Duration) {
        let labels = [("application_id", self.application_id.clone()), ("task", id.to_string())];
        metrics::histogram!("headwater_streams_punctuate_seconds", &labels).record(elapsed.as_secs_f64());
        self.with(id, |m| m.last_punctuate_latency = elapsed);
    }

    pub(crate) fn record_lag(&self, id: TaskId, topic: &str, lag: i64) {
        let labels =
            [("application_id", self.application_id.clone()), ("task", id.to_string()), ("topic", topic.to_string())];
        metrics::gauge!("headwater_streams_records_lag", &labels).set(lag as f64);
        self.with(id, |m| {
            m.lag.insert(topic.to_string(), lag);
        });
    }

    pub(crate) fn record_commit(&self, thread: &str, tasks: impl Iterator<Item = TaskId>, elapsed: Duration) {
        for id in tasks {
            let labels = [("application_id", self.application_id.clone()), ("task", id.to_string())];
            metrics::histogram!("headwater_streams_commit_seconds", &labels).record(elapsed.as_secs_f64());
            self.with(id, |m| {
                m.thread = thread.to_string();
                m.last_commit_latency = elapsed;
            });
        }
    }

    pub(crate) fn remove(&self, id: TaskId) {
        self.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&id);
    }

    pub(crate) fn clear_thread(&self, thread: &str) {
        self.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|_, m| m.thread != thread);
    }

    pub(crate) fn snapshot(&self) -> Vec<TaskMetrics> {
        self.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).values().cloned().collect()
    }
}
