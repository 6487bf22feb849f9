//! A task: one partition of one sub-topology, with its nodes and stores.
//!
//! The stream thread (or the test driver) gives a task records of its source
//! partitions; the task processes them in timestamp order across those partitions (as
//! Kafka Streams' partition group does), runs the time-driven nodes, and hands back what
//! it wrote: records for sink topics and, drained from its stores, for changelogs.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use headwater_core::client::ConsumerRecord;

use super::OutRecord;
use crate::error::StreamsError;
use crate::processor::{Context, Instantiation, Punctuate, RawSource, TaskCounters};
use crate::state::Store;
use crate::topology::{TopicRef, Topology};

/// `<sub-topology>_<partition>`, as Kafka Streams names tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId {
    pub subtopology: usize,
    pub partition: i32,
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.subtopology, self.partition)
    }
}

/// One changelog a task restores from.
#[derive(Debug, Clone)]
pub(crate) struct Changelog {
    pub(crate) store: String,
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    /// Where to start reading; `None`: the beginning.
    pub(crate) from: Option<i64>,
}

pub(crate) struct StreamTask {
    pub(crate) id: TaskId,
    pub(crate) stores: HashMap<String, Rc<RefCell<Store>>>,
    sources: HashMap<Arc<str>, Rc<RefCell<dyn RawSource>>>,
    punctuators: Vec<Rc<RefCell<dyn Punctuate>>>,
    cx: Context,
    /// Records received and not yet processed, per source topic (this task's partition).
    queues: BTreeMap<Arc<str>, VecDeque<ConsumerRecord>>,
    /// The next offset to commit per source topic: one past the last processed record.
    positions: BTreeMap<Arc<str>, i64>,
    started: bool,
}

impl fmt::Debug for StreamTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamTask").field("id", &self.id).field("positions", &self.positions).finish()
    }
}

impl StreamTask {
    /// Opens the task's stores; [`Self::start`] makes its nodes once they are restored.
    pub(crate) fn open(
        topology: &Topology,
        id: TaskId,
        application_id: &str,
        partitions: Arc<HashMap<String, i32>>,
        state_dir: Option<&Path>,
    ) -> Result<Self, StreamsError> {
        let sub = &topology.subtopologies[id.subtopology];
        let mut stores = HashMap::new();
        for name in &sub.stores {
            let spec = &topology.stores[name];
            let changelog = TopicRef::Internal(spec.changelog_suffix()).resolve(application_id);
            let dir = state_dir.map(|d| d.join(application_id).join(id.to_string()));
            let store = Store::open(spec, Some((Arc::from(changelog.as_str()), id.partition)), dir.as_deref())?;
            stores.insert(name.clone(), Rc::new(RefCell::new(store)));
        }
        let queues =
            sub.sources.iter().map(|t| (Arc::from(t.resolve(application_id).as_str()), VecDeque::new())).collect();
        Ok(Self {
            id,
            stores,
            sources: HashMap::new(),
            punctuators: Vec::new(),
            cx: Context::new(partitions),
            queues,
            positions: BTreeMap::new(),
            started: false,
        })
    }

    /// The changelogs to restore before [`Self::start`].
    pub(crate) fn changelogs(&self) -> Vec<Changelog> {
        let mut out: Vec<Changelog> = self
            .stores
            .values()
            .filter_map(|store| {
                let store = store.borrow();
                let (topic, partition) = store.changelog.clone()?;
                Some(Changelog { store: store.name.clone(), topic, partition, from: store.checkpoint() })
            })
            .collect();
        out.sort_by(|a, b| a.store.cmp(&b.store));
        out
    }

    pub(crate) fn store(&self, name: &str) -> Option<&Rc<RefCell<Store>>> {
        self.stores.get(name)
    }

    /// Makes the task's nodes (after its stores are restored).
    pub(crate) fn start(&mut self, topology: &Topology, application_id: &str) -> Result<(), StreamsError> {
        let sub = &topology.subtopologies[self.id.subtopology];
        let resolve = |t: &TopicRef| -> Arc<str> { Arc::from(t.resolve(application_id).as_str()) };
        let mut inst = Instantiation::new(&topology.children, &self.stores, &resolve);
        for &node in sub.nodes.iter().rev() {
            (topology.nodes[node].build)(&mut inst, node);
        }
        if let Some(error) = inst.error.take() {
            return Err(error);
        }
        self.sources = std::mem::take(&mut inst.sources);
        self.punctuators = std::mem::take(&mut inst.punctuators);
        self.started = true;
        Ok(())
    }

    /// Source topics of this task (resolved names), all at [`TaskId::partition`].
    pub(crate) fn source_topics(&self) -> impl Iterator<Item = &Arc<str>> {
        self.queues.keys()
    }

    /// Queues a record of one of this task's source partitions.
    pub(crate) fn add(&mut self, record: ConsumerRecord) {
        if let Some(queue) = self.queues.get_mut(&*record.topic) {
            queue.push_back(record);
        }
    }

    pub(crate) fn has_queued(&self) -> bool {
        self.queues.values().any(|q| !q.is_empty())
    }

    /// Processes every queued record, earliest timestamp first across the task's
    /// partitions, then lets time-driven nodes act.
    ///
    /// # Errors
    /// The first failure of a node (a record its serdes cannot read, a store error):
    /// the task must not go on, and nothing after the failing record is committed.
    pub(crate) fn process(&mut self, wall_time: i64) -> Result<usize, StreamsError> {
        debug_assert!(self.started, "a task processes only after it has started");
        self.cx.wall_time = wall_time;
        let mut processed = 0;
        loop {
            let next = if self.queues.len() == 1 {
                self.queues.values_mut().next().and_then(VecDeque::pop_front)
            } else {
                let topic = self
                    .queues
                    .iter()
                    .filter_map(|(t, q)| q.front().map(|r| (r.timestamp, t)))
                    .min()
                    .map(|(_, t)| Arc::clone(t));
                topic.and_then(|t| self.queues.get_mut(&t).and_then(VecDeque::pop_front))
            };
            let Some(record) = next else { break };
            let Some(source) = self.sources.get(&*record.topic).cloned() else { continue };
            self.cx.topic = Arc::clone(&record.topic);
            self.cx.offset = record.offset;
            source.borrow_mut().process_raw(&mut self.cx, &record);
            if let Some(error) = self.cx.error.take() {
                return Err(error);
            }
            self.positions.insert(Arc::clone(&record.topic), record.offset + 1);
            self.cx.counters.processed += 1;
            processed += 1;
        }
        self.punctuate(wall_time)?;
        Ok(processed)
    }

    /// Runs the time-driven nodes at the current stream time and `wall_time`.
    pub(crate) fn punctuate(&mut self, wall_time: i64) -> Result<(), StreamsError> {
        self.cx.wall_time = wall_time;
        for node in &self.punctuators {
            node.borrow_mut().punctuate(&mut self.cx);
            if let Some(error) = self.cx.error.take() {
                return Err(error);
            }
        }
        Ok(())
    }

    /// Moves stream time forward (the test driver's `advance_stream_time`).
    pub(crate) fn advance_stream_time(&mut self, to: i64) {
        self.cx.stream_time = self.cx.stream_time.max(to);
    }

    /// What the task wrote since the last call: sink records, then changelog records
    /// drained from its stores.
    pub(crate) fn take_output(&mut self) -> Vec<OutRecord> {
        let mut out = std::mem::take(&mut self.cx.outbox);
        let mut names: Vec<&String> = self.stores.keys().collect();
        names.sort();
        for name in names {
            self.stores[name].borrow_mut().drain_changelog(&mut out);
        }
        out
    }

    /// Makes the stores' writes durable; `changelog_next` gives, per store, the changelog
    /// offset their contents now reach (persistent stores keep it as their checkpoint).
    pub(crate) fn commit_stores(&mut self, changelog_next: &HashMap<(Arc<str>, i32), i64>) -> Result<(), StreamsError> {
        for store in self.stores.values() {
            let mut store = store.borrow_mut();
            let next = store.changelog.as_ref().and_then(|tp| changelog_next.get(tp).copied());
            store.commit(next)?;
        }
        Ok(())
    }

    /// The offsets to commit: per source topic, one past the last processed record.
    pub(crate) fn positions(&self) -> impl Iterator<Item = (&Arc<str>, i64)> {
        self.positions.iter().map(|(t, o)| (t, *o))
    }

    pub(crate) fn counters(&self) -> TaskCounters {
        self.cx.counters
    }
}
