//! A task: one partition of one sub-topology, with its nodes and stores.
//!
//! The stream thread (or the test driver) gives a task records of its source
//! partitions; the task processes them in timestamp order across those partitions (as
//! Kafka Streams' partition group does), runs the time-driven nodes, and hands back what
//! it wrote: records for sink topics and, drained from its stores, for changelogs.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
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
    /// One per source topic (this task's partition), looked up by position, not by name,
    /// on the per-record path.
    inputs: Vec<Input>,
    punctuators: Vec<Rc<RefCell<dyn Punctuate>>>,
    cx: Context,
    started: bool,
}

/// One source partition of a task.
struct Input {
    topic: Arc<str>,
    source: Option<Rc<RefCell<dyn RawSource>>>,
    /// Records received and not yet processed.
    queue: VecDeque<ConsumerRecord>,
    /// The next offset to commit: one past the last processed record.
    position: Option<i64>,
}

impl fmt::Debug for StreamTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamTask").field("id", &self.id).finish()
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
        let inputs = sub
            .sources
            .iter()
            .map(|t| Input {
                topic: Arc::from(t.resolve(application_id).as_str()),
                source: None,
                queue: VecDeque::new(),
                position: None,
            })
            .collect();
        Ok(Self { id, stores, inputs, punctuators: Vec::new(), cx: Context::new(partitions), started: false })
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
        self.cx.stream_time = self.cx.stream_time.max(inst.restored_stream_time);
        let mut sources = std::mem::take(&mut inst.sources);
        for input in &mut self.inputs {
            input.source = sources.remove(&input.topic);
        }
        self.punctuators = std::mem::take(&mut inst.punctuators);
        self.started = true;
        Ok(())
    }

    /// Source topics of this task (resolved names), all at [`TaskId::partition`].
    pub(crate) fn source_topics(&self) -> impl Iterator<Item = &Arc<str>> {
        self.inputs.iter().map(|i| &i.topic)
    }

    /// Queues a record of one of this task's source partitions.
    pub(crate) fn add(&mut self, record: ConsumerRecord) {
        // Records of one fetch share their topic's `Arc`: compare pointers first.
        let input = self.inputs.iter_mut().find(|i| Arc::ptr_eq(&i.topic, &record.topic) || i.topic == record.topic);
        if let Some(input) = input {
            input.queue.push_back(record);
        }
    }

    pub(crate) fn has_queued(&self) -> bool {
        self.inputs.iter().any(|i| !i.queue.is_empty())
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
            // The earliest head across the task's partitions (Kafka Streams' partition group).
            let next = if self.inputs.len() == 1 {
                if self.inputs[0].queue.is_empty() { None } else { Some(0) }
            } else {
                self.inputs
                    .iter()
                    .enumerate()
                    .filter_map(|(i, input)| input.queue.front().map(|r| (r.timestamp, i)))
                    .min()
                    .map(|(_, i)| i)
            };
            let Some(at) = next else { break };
            let input = &mut self.inputs[at];
            let record = input.queue.pop_front().expect("a head");
            let Some(source) = input.source.as_ref() else { continue };
            self.cx.topic = Arc::clone(&input.topic);
            self.cx.offset = record.offset;
            self.cx.input = at as u8;
            self.cx.fanout = 0;
            source.borrow_mut().process_raw(&mut self.cx, &record);
            if let Some(error) = self.cx.error.take() {
                return Err(error);
            }
            input.position = Some(record.offset + 1);
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
            let mut node = node.borrow_mut();
            node.punctuate(&mut self.cx);
            node.save_stream_time(&mut self.cx);
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
    pub(crate) fn take_output(&mut self) -> Result<Vec<OutRecord>, StreamsError> {
        let mut out = std::mem::take(&mut self.cx.outbox);
        let mut names: Vec<&String> = self.stores.keys().collect();
        names.sort();
        for name in names {
            self.stores[name].borrow_mut().drain_changelog(&mut out)?;
        }
        Ok(out)
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
        self.inputs.iter().filter_map(|i| i.position.map(|p| (&i.topic, p)))
    }

    pub(crate) fn counters(&self) -> TaskCounters {
        self.cx.counters
    }
}
