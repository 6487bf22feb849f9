//! Sources, sinks and the operators that keep no state.

use std::sync::Arc;

use headwater_core::client::ConsumerRecord;
use headwater_core::client::partitioner::partition_for_key;

use super::{Context, Downstream, Node, RawSource};
use crate::error::StreamsError;
use crate::record::Record;
use crate::runtime::OutRecord;
use crate::serde::Serde;

/// Extracts a record's event time from what the topic holds.
pub type TimestampExtractor = Arc<dyn Fn(&ConsumerRecord) -> i64 + Send + Sync>;

/// Reads a topic: deserializes keys and values and takes the record's event time.
pub(crate) struct SourceNode<K, V> {
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) value_serde: Arc<dyn Serde<V>>,
    pub(crate) extractor: Option<TimestampExtractor>,
    pub(crate) down: Downstream<K, V>,
}

impl<K: Clone, V: Clone> RawSource for SourceNode<K, V> {
    fn process_raw(&mut self, cx: &mut Context, raw: &ConsumerRecord) {
        let fail = |part, source| StreamsError::Deserialize {
            part,
            topic: raw.topic.to_string(),
            partition: raw.partition,
            offset: raw.offset,
            source,
        };
        let key = match self.key_serde.deserialize(raw.key.as_ref()) {
            Ok(key) => key,
            Err(e) => return cx.fail(fail("key", e)),
        };
        let value = match self.value_serde.deserialize(raw.value.as_ref()) {
            Ok(value) => value,
            Err(e) => return cx.fail(fail("value", e)),
        };
        let timestamp = match &self.extractor {
            Some(extract) => extract(raw),
            None => raw.timestamp,
        };
        if timestamp < 0 {
            cx.counters.skipped_no_timestamp += 1;
            return;
        }
        cx.stream_time = cx.stream_time.max(timestamp);
        self.down.forward(cx, Record { key, value, timestamp, headers: raw.headers.clone() });
    }
}

/// Chooses the partition of an outgoing record; `None` lets the producer choose.
pub type StreamPartitioner<K, V> = Arc<dyn Fn(&K, &V, i32) -> Option<i32> + Send + Sync>;

/// Writes records to a topic.
pub(crate) struct SinkNode<K, V> {
    pub(crate) topic: Arc<str>,
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) value_serde: Arc<dyn Serde<V>>,
    pub(crate) partitioner: Option<StreamPartitioner<K, V>>,
    pub(crate) buf: Vec<u8>,
    /// Outgoing keys and values are cut from this buffer: one allocation per chunk, not
    /// two per record.
    pub(crate) arena: bytes::BytesMut,
    /// The topic's partition count, looked up once.
    pub(crate) partitions: Option<i32>,
}

const ARENA_CHUNK: usize = 64 << 10;

impl<K, V> SinkNode<K, V> {
    fn cut(&mut self) -> bytes::Bytes {
        if self.arena.capacity() < self.buf.len() {
            self.arena.reserve(ARENA_CHUNK.max(self.buf.len()));
        }
        self.arena.extend_from_slice(&self.buf);
        self.arena.split().freeze()
    }

    fn serialize_key(&mut self, key: &K) -> Option<bytes::Bytes> {
        self.buf.clear();
        self.key_serde.serialize(key, &mut self.buf).then(|| self.cut())
    }

    fn serialize_value(&mut self, value: &V) -> Option<bytes::Bytes> {
        self.buf.clear();
        self.value_serde.serialize(value, &mut self.buf).then(|| self.cut())
    }
}

impl<K, V> Node<K, V> for SinkNode<K, V> {
    fn process(&mut self, cx: &mut Context, record: Record<K, V>) {
        let key = self.serialize_key(&record.key);
        let value = self.serialize_value(&record.value);
        let count = *self.partitions.get_or_insert_with(|| cx.partitions.get(&*self.topic).copied().unwrap_or(1));
        let partition = match &self.partitioner {
            Some(choose) => choose(&record.key, &record.value, count),
            // The Java client's default: murmur2 of the key; no key, the producer's choice.
            None => key.as_ref().map(|k| partition_for_key(k, count)),
        };
        cx.outbox.push(OutRecord {
            topic: Arc::clone(&self.topic),
            partition,
            key,
            value,
            timestamp: record.timestamp,
            headers: record.headers,
        });
    }
}

pub(crate) type MapFn<K, V, K2, V2> = Arc<dyn Fn(K, V) -> (K2, V2) + Send + Sync>;

pub(crate) struct MapNode<K, V, K2, V2> {
    pub(crate) f: MapFn<K, V, K2, V2>,
    pub(crate) down: Downstream<K2, V2>,
}

impl<K, V, K2: Clone, V2: Clone> Node<K, V> for MapNode<K, V, K2, V2> {
    fn process(&mut self, cx: &mut Context, record: Record<K, V>) {
        let Record { key, value, timestamp, headers } = record;
        let (key, value) = (self.f)(key, value);
        self.down.forward(cx, Record { key, value, timestamp, headers });
    }
}

pub(crate) type MapValuesFn<K, V, V2> = Arc<dyn Fn(&K, V) -> V2 + Send + Sync>;

pub(crate) struct MapValuesNode<K, V, V2> {
    pub(crate) f: MapValuesFn<K, V, V2>,
    pub(crate) down: Downstream<K, V2>,
}

impl<K: Clone, V, V2: Clone> Node<K, V> for MapValuesNode<K, V, V2> {
    fn process(&mut self, cx: &mut Context, record: Record<K, V>) {
        let value = (self.f)(&record.key, record.value);
        self.down.forward(cx, Record { key: record.key, value, timestamp: record.timestamp, headers: record.headers });
    }
}

pub(crate) type Predicate<K, V> = Arc<dyn Fn(&K, &V) -> bool + Send + Sync>;

pub(crate) struct FilterNode<K, V> {
    pub(crate) predicate: Predicate<K, V>,
    /// `filter_not`: keep what the predicate refuses.
    pub(crate) negate: bool,
    pub(crate) down: Downstream<K, V>,
}

impl<K: Clone, V: Clone> Node<K, V> for FilterNode<K, V> {
    fn process(&mut self, cx: &mut Context, record: Record<K, V>) {
        if (self.predicate)(&record.key, &record.value) != self.negate {
            self.down.forward(cx, record);
        }
    }
}

pub(crate) type FlatMapFn<K, V, K2, V2> = Arc<dyn Fn(K, V, &mut Vec<(K2, V2)>) + Send + Sync>;

/// `flat_map` and `flat_map_values`: each record becomes any number of records with its
/// timestamp and headers.
pub(crate) struct FlatMapNode<K, V, K2, V2> {
    pub(crate) f: FlatMapFn<K, V, K2, V2>,
    pub(crate) buf: Vec<(K2, V2)>,
    pub(crate) down: Downstream<K2, V2>,
}

impl<K, V, K2: Clone, V2: Clone> Node<K, V> for FlatMapNode<K, V, K2, V2> {
    fn process(&mut self, cx: &mut Context, record: Record<K, V>) {
        let Record { key, value, timestamp, headers } = record;
        let mut out = std::mem::take(&mut self.buf);
        (self.f)(key, value, &mut out);
        for (key, value) in out.drain(..) {
            self.down.forward(cx, Record { key, value, timestamp, headers: headers.clone() });
        }
        self.buf = out;
    }
}

pub(crate) type PeekFn<K, V> = Arc<dyn Fn(&K, &V) + Send + Sync>;

/// `peek` (passes the record on) and `foreach` (a terminal peek).
pub(crate) struct PeekNode<K, V> {
    pub(crate) f: PeekFn<K, V>,
    pub(crate) down: Downstream<K, V>,
}

impl<K: Clone, V: Clone> Node<K, V> for PeekNode<K, V> {
    fn process(&mut self, cx: &mut Context, record: Record<K, V>) {
        (self.f)(&record.key, &record.value);
        self.down.forward(cx, record);
    }
}

/// `split`: each record goes to the first branch whose predicate holds, else to the
/// default branch (the last).
pub(crate) struct BranchNode<K, V> {
    pub(crate) predicates: Vec<Predicate<K, V>>,
    /// One per predicate, then the default.
    pub(crate) branches: Vec<Downstream<K, V>>,
}

impl<K: Clone, V: Clone> Node<K, V> for BranchNode<K, V> {
    fn process(&mut self, cx: &mut Context, record: Record<K, V>) {
        let chosen =
            self.predicates.iter().position(|p| p(&record.key, &record.value)).unwrap_or(self.predicates.len());
        self.branches[chosen].forward(cx, record);
    }
}

/// Passes records on unchanged: `merge`, and the heads of branches.
pub(crate) struct PassNode<K, V> {
    pub(crate) down: Downstream<K, V>,
}

impl<K: Clone, V: Clone> Node<K, V> for PassNode<K, V> {
    fn process(&mut self, cx: &mut Context, record: Record<K, V>) {
        self.down.forward(cx, record);
    }
}
