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
    /// Keeps the stream time with the node's state: once per batch, not per record.
    fn save_stream_time(&mut self, _cx: &mut Context) {}
}

/// A time-driven node with state to index when its task starts (windows, sessions,
/// join buffers): it returns the stream time saved in its store.
pub(crate) trait Restorable: Punctuate {
    fn index_store(&mut self) -> Result<Option<i64>, StreamsError>;
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
    /// Which of the task's inputs the current record came from, and how many buffered
    /// records it has produced so far: with the offset, a unique, replayable identity.
    pub(crate) input: u8,
    pub(crate) fanout: u16,
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
            input: 0,
            fanout: 0,
        }
    }

    /// A sequence number that tells apart records a node buffers under the same key and
    /// time: the input, the source record's offset, and a count of what it fanned out to.
    /// The same input replayed gets the same numbers, so a replay overwrites, not adds.
    pub(crate) fn next_seq(&mut self) -> u64 {
        let seq =
            (u64::from(self.input) << 56) | (((self.offset as u64) & ((1 << 40) - 1)) << 16) | u64::from(self.fanout);
        self.fanout = self.fanout.wrapping_add(1);
        seq
    }

    pub(crate) fn fail(&mut self, error: StreamsError) {
        self.error.get_or_insert(error);
    }
}

/// Serializes with a serde into fresh bytes (`None`: null).
pub(crate) fn ser<T>(serde: &dyn Serde<T>, value: &T) -> Option<Bytes> {
    crate::serde::to_bytes(serde, value)
}

/// A value for a buffer store, which must keep nulls too: a tag byte (0 null, 1 value)
/// then the bytes.
pub(crate) fn ser_tagged<T>(serde: &dyn Serde<T>, value: &T) -> Bytes {
    let mut out = vec![1];
    if serde.serialize(value, &mut out) { Bytes::from(out) } else { Bytes::from_static(&[0]) }
}

/// Reads a value written by [`ser_tagged`].
pub(crate) fn de_tagged<T>(serde: &dyn Serde<T>, store: &str, bytes: &Bytes) -> Result<T, StreamsError> {
    let value = match bytes.first() {
        Some(1) => Some(bytes.slice(1..)),
        _ => None,
    };
    serde.deserialize(value.as_ref()).map_err(|source| StreamsError::StoreSerde { store: store.to_string(), source })
}

/// Reads the stream time a windowed node saved in its store.
pub(crate) fn saved_stream_time(store: &Store) -> Result<Option<i64>, StreamsError> {
    Ok(store.get(crate::state::keys::STREAM_TIME)?.and_then(|b| b[..].try_into().ok().map(i64::from_be_bytes)))
}

/// Saves the task's stream time in a windowed node's store when it has moved on.
pub(crate) fn save_stream_time(store: &mut Store, saved: &mut i64, stream_time: i64) {
    if stream_time > *saved {
        *saved = stream_time;
        store.put(
            Bytes::from_static(crate::state::keys::STREAM_TIME),
            Some(Bytes::copy_from_slice(&stream_time.to_be_bytes())),
            stream_time,
        );
    }
}

/// Removes a closed window's or session's entry from its store; with `decode` (emit-final),
/// returns its key and aggregate to write downstream.
pub(crate) fn take_closed<K, VR>(
    store: &mut Store,
    store_key: &Bytes,
    key_bytes: &[u8],
    timestamp: i64,
    decode: Option<(&dyn Serde<K>, &dyn Serde<VR>)>,
) -> Result<Option<(K, VR)>, StreamsError> {
    let decoded = match decode {
        None => None,
        Some((key_serde, agg_serde)) => match store.get(store_key)? {
            None => None,
            Some(value) => {
                let key = key_serde
                    .deserialize(Some(&Bytes::copy_from_slice(key_bytes)))
                    .map_err(|source| StreamsError::StoreSerde { store: store.name.clone(), source })?;
                Some((key, de_store(agg_serde, &store.name, &value)?))
            }
        },
    };
    store.put(store_key.clone(), None, timestamp);
    Ok(decoded)
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
    /// The latest stream time a node found saved in its store.
    pub(crate) restored_stream_time: i64,
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
            restored_stream_time: i64::MIN,
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

    /// Registers a time-driven node: its input port, its punctuation, and what its store
    /// holds (indexed now; the saved stream time noted).
    pub(crate) fn register_timed<K: 'static, V: 'static, N: Node<K, V> + Restorable + 'static>(
        &mut self,
        id: NodeId,
        node: N,
    ) {
        let node = self.register_node::<K, V, N>(id, node);
        let restored = node.borrow_mut().index_store();
        self.restored(restored);
        self.punctuators.push(node);
    }

    /// Notes what indexing a node's store found; errors fail the task.
    pub(crate) fn restored(&mut self, outcome: Result<Option<i64>, StreamsError>) {
        match outcome {
            Ok(Some(t)) => self.restored_stream_time = self.restored_stream_time.max(t),
            Ok(None) => {}
            Err(e) => self.fail(e),
        }
    }

    pub(crate) fn store(&self, name: &str) -> Rc<RefCell<Store>> {
        Rc::clone(self.stores.get(name).expect("a node's stores are opened with its task"))
    }

    pub(crate) fn topic(&self, topic: &TopicRef) -> Arc<str> {
        (self.resolve)(topic)
    }
}
