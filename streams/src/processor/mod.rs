//! The running form of a topology: processor nodes wired into one graph per task.
//!
//! A [`crate::Topology`] holds, for every node, a factory. When a task starts, the
//! factories run from the last node to the first, so each node finds its children's
//! input ports already made; a port is an `Rc<RefCell<dyn Node<K, V>>>`, typed by what the
//! node accepts, and the one downcast from `Any` happens then, never per record. A record
//! then travels depth-first: `process` on a node calls `process` on its children.
//!
//! Everything here belongs to one task on one thread (hence `Rc`), so nodes need no
//! locks; user functions are shared between tasks as `Arc<dyn Fn + Send + Sync>`.

pub(crate) mod aggregate;
pub(crate) mod join;
pub(crate) mod session;
pub(crate) mod sliding;
pub(crate) mod stateless;
pub(crate) mod table;
pub(crate) mod window;

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use headwater_core::client::ConsumerRecord;

use crate::error::StreamsError;
use crate::record::Record;
use crate::runtime::OutRecord;
use crate::serde::Serde;
use crate::state::Store;
use crate::topology::{NodeId, TopicRef};

/// A node that takes records of key `K` and value `V`.
pub(crate) trait Node<K, V> {
    fn process(&mut self, cx: &mut Context, record: Record<K, V>);
}

/// A node's input, as its parents hold it.
pub(crate) type Port<K, V> = Rc<RefCell<dyn Node<K, V>>>;

/// A node fed raw records from a topic partition.
pub(crate) trait RawSource {
    fn process_raw(&mut self, cx: &mut Context, record: &ConsumerRecord);
}

/// A node that acts as time passes (emit-final windows, expiry), called after each
/// batch of records and on the wall-clock punctuation interval.
pub(crate) trait Punctuate {
    fn punctuate(&mut self, cx: &mut Context);
}

/// The children of a node with output `K`, `V`.
pub(crate) struct Downstream<K, V> {
    ports: Vec<Port<K, V>>,
}

impl<K: Clone, V: Clone> Downstream<K, V> {
    /// Passes `record` to every child, cloning it for all but the last. Nothing is passed
    /// once the task has failed.
    pub(crate) fn forward(&self, cx: &mut Context, record: Record<K, V>) {
        if cx.error.is_some() {
            return;
        }
        if let Some((last, rest)) = self.ports.split_last() {
            for port in rest {
                port.borrow_mut().process(cx, record.clone());
            }
            last.borrow_mut().process(cx, record);
        }
    }
}

/// Counters a task keeps, read by metrics and the test driver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskCounters {
    pub processed: u64,
    /// Records that reached a window after it closed.
    pub dropped_late: u64,
    /// Source records without a valid (non-negative) timestamp.
    pub skipped_no_timestamp: u64,
}

/// What a node can see and do while it handles a record.
pub(crate) struct Context {
    /// Where the record being processed came from.
    pub(crate) topic: Arc<str>,
    pub(crate) offset: i64,
    /// The largest timestamp this task has processed.
    pub(crate) stream_time: i64,
    /// Wall-clock time of the current punctuation or batch, in milliseconds.
    pub(crate) wall_time: i64,
    /// Records for sink topics and changelogs, sent after the batch.
    pub(crate) outbox: Vec<OutRecord>,
    /// The first failure: the task stops processing.
    pub(crate) error: Option<StreamsError>,
    /// Partition counts of the topics this task writes.
    pub(crate) partitions: Arc<HashMap<String, i32>>,
    pub(crate) counters: TaskCounters,
}

impl Context {
    pub(crate) fn new(partitions: Arc<HashMap<String, i32>>) -> Self {
        Self {
            topic: Arc::from(""),
            offset: -1,
            stream_time: i64::MIN,
            wall_time: 0,
            outbox: Vec::new(),
            error: None,
            partitions,
            counters: TaskCounters::default(),
        }
    }

    pub(crate) fn fail(&mut self, error: StreamsError) {
        self.error.get_or_insert(error);
    }
}

/// Serializes with a serde into fresh bytes (`None`: null).
pub(crate) fn ser<T>(serde: &dyn Serde<T>, value: &T) -> Option<Bytes> {
    crate::serde::to_bytes(serde, value)
}

/// Deserializes a store's bytes, naming the store on failure.
pub(crate) fn de_store<T>(serde: &dyn Serde<T>, store: &str, bytes: &Bytes) -> Result<T, StreamsError> {
    serde.deserialize(Some(bytes)).map_err(|source| StreamsError::StoreSerde { store: store.to_string(), source })
}

/// Builds one task's nodes from the topology's factories.
pub(crate) struct Instantiation<'a> {
    pub(crate) children: &'a [Vec<NodeId>],
    pub(crate) stores: &'a HashMap<String, Rc<RefCell<Store>>>,
    pub(crate) resolve: &'a dyn Fn(&TopicRef) -> Arc<str>,
    ports: HashMap<NodeId, Box<dyn Any>>,
    pub(crate) sources: HashMap<Arc<str>, Rc<RefCell<dyn RawSource>>>,
    pub(crate) punctuators: Vec<Rc<RefCell<dyn Punctuate>>>,
    /// A node that could not start (its store unreadable): the task fails.
    pub(crate) error: Option<StreamsError>,
}

impl<'a> Instantiation<'a> {
    pub(crate) fn new(
        children: &'a [Vec<NodeId>],
        stores: &'a HashMap<String, Rc<RefCell<Store>>>,
        resolve: &'a dyn Fn(&TopicRef) -> Arc<str>,
    ) -> Self {
        Self {
            children,
            stores,
            resolve,
            ports: HashMap::new(),
            sources: HashMap::new(),
            punctuators: Vec::new(),
            error: None,
        }
    }

    /// The input ports of `node`'s children, which take `K`, `V`.
    ///
    /// # Panics
    /// When a child takes other types: the DSL's typing rules this out.
    pub(crate) fn downstream<K: 'static, V: 'static>(&self, node: NodeId) -> Downstream<K, V> {
        let ports = self.children[node]
            .iter()
            .filter_map(|child| self.ports.get(child))
            .map(|port| {
                port.downcast_ref::<Port<K, V>>().expect("a child's input type matches its parent's output").clone()
            })
            .collect();
        Downstream { ports }
    }

    /// The input port of one child, as a downstream of its own (branches).
    pub(crate) fn downstream_of<K: 'static, V: 'static>(&self, child: NodeId) -> Downstream<K, V> {
        let port = self.ports.get(&child).expect("children are built before their parents");
        Downstream { ports: vec![port.downcast_ref::<Port<K, V>>().expect("a branch's input type").clone()] }
    }

    /// Records `node`'s input port.
    pub(crate) fn register<K: 'static, V: 'static>(&mut self, node: NodeId, port: Port<K, V>) {
        self.ports.insert(node, Box::new(port));
    }

    pub(crate) fn fail(&mut self, error: StreamsError) {
        self.error.get_or_insert(error);
    }

    pub(crate) fn store(&self, name: &str) -> Rc<RefCell<Store>> {
        Rc::clone(self.stores.get(name).expect("a node's stores are opened with its task"))
    }

    pub(crate) fn topic(&self, topic: &TopicRef) -> Arc<str> {
        (self.resolve)(topic)
    }
}
