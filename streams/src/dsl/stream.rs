//! `KStream`: an unbounded sequence of records.

use std::marker::PhantomData;
use std::sync::Arc;

use super::builder::{Decl, StreamsBuilder};
use super::grouped::KGroupedStream;
use super::options::{Consumed, Grouped, JoinWindows, Produced, Repartitioned};
use super::{Data, KTable};
use crate::processor::join::{
    StreamJoinFn, StreamJoinSide, StreamStreamJoinNode, StreamTableJoinFn, StreamTableJoinNode,
};
use crate::processor::stateless::{
    BranchNode, FilterNode, FlatMapNode, MapNode, MapValuesNode, PassNode, PeekNode, SinkNode,
};
use crate::serde::Serde;
use crate::state::StoreKind;
use crate::topology::{NodeId, TopicRef};

/// A predicate of [`KStream::split`].
pub type BranchPredicate<K, V> = Box<dyn Fn(&K, &V) -> bool + Send + Sync>;

/// A stream of records with keys `K` and values `V`.
pub struct KStream<K, V> {
    pub(crate) builder: StreamsBuilder,
    pub(crate) node: NodeId,
    /// The key was changed since the stream was last read from a topic: grouping or
    /// joining by key needs a repartition first.
    pub(crate) key_changed: bool,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for KStream<K, V> {
    fn clone(&self) -> Self {
        Self { builder: self.builder.clone(), node: self.node, key_changed: self.key_changed, _types: PhantomData }
    }
}

impl<K, V> std::fmt::Debug for KStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KStream").field("node", &self.node).finish()
    }
}

impl<K: Data, V: Data> KStream<K, V> {
    pub(crate) fn new(builder: StreamsBuilder, node: NodeId, key_changed: bool) -> Self {
        Self { builder, node, key_changed, _types: PhantomData }
    }

    fn derive<K2: Data, V2: Data>(&self, node: NodeId, key_changed: bool) -> KStream<K2, V2> {
        KStream::new(self.builder.clone(), node, self.key_changed || key_changed)
    }

    /// Keeps the records for which `predicate` holds.
    pub fn filter(&self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> Self {
        self.filter_impl(Arc::new(predicate), false)
    }

    /// Keeps the records for which `predicate` does not hold.
    pub fn filter_not(&self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> Self {
        self.filter_impl(Arc::new(predicate), true)
    }

    fn filter_impl(&self, predicate: crate::processor::stateless::Predicate<K, V>, negate: bool) -> Self {
        let id = self.builder.add(
            Decl::new("KSTREAM-FILTER", vec![self.node]),
            Arc::new(move |inst, id| {
                let node = FilterNode { predicate: Arc::clone(&predicate), negate, down: inst.downstream(id) };
                inst.register_node::<K, V, _>(id, node);
            }),
        );
        self.derive(id, false)
    }

    /// A new key and value per record. Grouping by the new key repartitions.
    pub fn map<K2: Data, V2: Data>(&self, f: impl Fn(K, V) -> (K2, V2) + Send + Sync + 'static) -> KStream<K2, V2> {
        let f: crate::processor::stateless::MapFn<K, V, K2, V2> = Arc::new(f);
        let id = self.builder.add(
            Decl::new("KSTREAM-MAP", vec![self.node]),
            Arc::new(move |inst, id| {
                let node = MapNode { f: Arc::clone(&f), down: inst.downstream(id) };
                inst.register_node::<K, V, _>(id, node);
            }),
        );
        self.derive(id, true)
    }

    /// A new value per record; the key stays, so no repartition follows.
    pub fn map_values<V2: Data>(&self, f: impl Fn(V) -> V2 + Send + Sync + 'static) -> KStream<K, V2> {
        self.map_values_with_key(move |_, v| f(v))
    }

    /// As [`Self::map_values`], seeing the key.
    pub fn map_values_with_key<V2: Data>(&self, f: impl Fn(&K, V) -> V2 + Send + Sync + 'static) -> KStream<K, V2> {
        let f: crate::processor::stateless::MapValuesFn<K, V, V2> = Arc::new(f);
        let id = self.builder.add(
            Decl::new("KSTREAM-MAPVALUES", vec![self.node]),
            Arc::new(move |inst, id| {
                let node = MapValuesNode { f: Arc::clone(&f), down: inst.downstream(id) };
                inst.register_node::<K, V, _>(id, node);
            }),
        );
        self.derive(id, false)
    }

    /// A new key per record, computed from it; the value stays.
    pub fn select_key<K2: Data>(&self, f: impl Fn(&K, &V) -> K2 + Send + Sync + 'static) -> KStream<K2, V> {
        self.map(move |k, v| (f(&k, &v), v))
    }

    /// Zero or more records per record.
    pub fn flat_map<K2: Data, V2: Data, I>(&self, f: impl Fn(K, V) -> I + Send + Sync + 'static) -> KStream<K2, V2>
    where
        I: IntoIterator<Item = (K2, V2)>,
    {
        self.flat_map_impl(Arc::new(move |k, v, out: &mut Vec<(K2, V2)>| out.extend(f(k, v))), true)
    }

    /// Zero or more values per record, each with the record's key.
    pub fn flat_map_values<V2: Data, I>(&self, f: impl Fn(V) -> I + Send + Sync + 'static) -> KStream<K, V2>
    where
        I: IntoIterator<Item = V2>,
    {
        self.flat_map_impl(
            Arc::new(move |k: K, v, out: &mut Vec<(K, V2)>| out.extend(f(v).into_iter().map(|v2| (k.clone(), v2)))),
            false,
        )
    }

    fn flat_map_impl<K2: Data, V2: Data>(
        &self,
        f: crate::processor::stateless::FlatMapFn<K, V, K2, V2>,
        key_changed: bool,
    ) -> KStream<K2, V2> {
        let id = self.builder.add(
            Decl::new(if key_changed { "KSTREAM-FLATMAP" } else { "KSTREAM-FLATMAPVALUES" }, vec![self.node]),
            Arc::new(move |inst, id| {
                let node = FlatMapNode { f: Arc::clone(&f), buf: Vec::new(), down: inst.downstream(id) };
                inst.register_node::<K, V, _>(id, node);
            }),
        );
        self.derive(id, key_changed)
    }

    /// Calls `f` on each record and passes it on.
    pub fn peek(&self, f: impl Fn(&K, &V) + Send + Sync + 'static) -> Self {
        let f: crate::processor::stateless::PeekFn<K, V> = Arc::new(f);
        let id = self.builder.add(
            Decl::new("KSTREAM-PEEK", vec![self.node]),
            Arc::new(move |inst, id| {
                let node = PeekNode { f: Arc::clone(&f), down: inst.downstream(id) };
                inst.register_node::<K, V, _>(id, node);
            }),
        );
        self.derive(id, false)
    }

    /// Calls `f` on each record: the end of this branch of the topology.
    pub fn foreach(&self, f: impl Fn(&K, &V) + Send + Sync + 'static) {
        self.peek(f);
    }

    /// Splits the stream: a record goes to the first branch whose predicate holds; the
    /// last stream returned has the records no predicate took (one more than predicates).
    pub fn split(&self, predicates: Vec<BranchPredicate<K, V>>) -> Vec<Self> {
        let predicates: Vec<crate::processor::stateless::Predicate<K, V>> =
            predicates.into_iter().map(Arc::from).collect();
        let count = predicates.len() + 1;
        let branch = self.builder.add(
            Decl::new("KSTREAM-BRANCH", vec![self.node]),
            Arc::new(move |inst, id| {
                let branches = inst.children[id].iter().map(|c| inst.downstream_of::<K, V>(*c)).collect();
                let node = BranchNode { predicates: predicates.clone(), branches };
                inst.register_node::<K, V, _>(id, node);
            }),
        );
        (0..count)
            .map(|_| {
                let id = self.builder.add(Decl::new("KSTREAM-BRANCHCHILD", vec![branch]), pass_node::<K, V>());
                self.derive(id, false)
            })
            .collect()
    }

    /// The records of both streams, interleaved as they arrive.
    pub fn merge(&self, other: &Self) -> Self {
        let id = self.builder.add(Decl::new("KSTREAM-MERGE", vec![self.node, other.node]), pass_node::<K, V>());
        KStream::new(self.builder.clone(), id, self.key_changed || other.key_changed)
    }

    /// Writes the records to `topic`.
    pub fn to(&self, topic: &str, produced: Produced<K, V>) {
        self.sink(TopicRef::External(topic.to_string()), produced, None);
    }

    pub(crate) fn sink(&self, topic: TopicRef, produced: Produced<K, V>, partitions: Option<i32>) -> NodeId {
        let mut decl = Decl::new("KSTREAM-SINK", vec![self.node]);
        decl.sink = Some(topic.clone());
        decl.repartition_partitions = partitions;
        self.builder.add(
            decl,
            Arc::new(move |inst, id| {
                let node = SinkNode {
                    topic: inst.topic(&topic),
                    key_serde: Arc::clone(&produced.key_serde),
                    value_serde: Arc::clone(&produced.value_serde),
                    partitioner: produced.partitioner.clone(),
                    buf: Vec::new(),
                    arena: bytes::BytesMut::new(),
                    partitions: None,
                };
                inst.register_node::<K, V, _>(id, node);
            }),
        )
    }

    /// Writes the records through an internal topic (`<application.id>-<name>-repartition`),
    /// partitioned by key, and reads them back: records of one key then meet in one task.
    pub fn repartition(&self, repartitioned: Repartitioned<K, V>) -> Self {
        let name = repartitioned.name.clone().unwrap_or_else(|| self.builder.generated("KSTREAM-REPARTITION"));
        self.through_internal(&name, repartitioned.key_serde, repartitioned.value_serde, repartitioned.partitions)
    }

    pub(crate) fn through_internal(
        &self,
        name: &str,
        key_serde: Arc<dyn Serde<K>>,
        value_serde: Arc<dyn Serde<V>>,
        partitions: Option<i32>,
    ) -> Self {
        let topic = TopicRef::Internal(format!("{name}-repartition"));
        let produced =
            Produced { key_serde: Arc::clone(&key_serde), value_serde: Arc::clone(&value_serde), partitioner: None };
        self.sink(topic.clone(), produced, partitions);
        let source = self.builder.source(topic, Consumed { key_serde, value_serde, extractor: None });
        KStream::new(self.builder.clone(), source, false)
    }

    /// Groups records by their key, for an aggregation; repartitions first if the key
    /// was changed upstream.
    pub fn group_by_key(&self, grouped: Grouped<K, V>) -> KGroupedStream<K, V> {
        KGroupedStream::new(self.clone(), grouped)
    }

    /// Groups records by a new key: `select_key` then `group_by_key`.
    pub fn group_by<K2: Data>(
        &self,
        key: impl Fn(&K, &V) -> K2 + Send + Sync + 'static,
        grouped: Grouped<K2, V>,
    ) -> KGroupedStream<K2, V> {
        self.select_key(key).group_by_key(grouped)
    }

    /// Stream-table inner join: each record meets the table's current value for its key;
    /// records whose key the table lacks are dropped. The stream and the table must be
    /// co-partitioned.
    pub fn join<VT: Data, VR: Data>(
        &self,
        table: &KTable<K, VT>,
        joiner: impl Fn(&V, &VT) -> VR + Send + Sync + 'static,
    ) -> KStream<K, VR> {
        self.table_join(table, Arc::new(move |v: &V, t: Option<&VT>| t.map(|t| joiner(v, t))))
    }

    /// Stream-table left join: as [`Self::join`], and records without a table row are
    /// passed with `None`.
    pub fn left_join<VT: Data, VR: Data>(
        &self,
        table: &KTable<K, VT>,
        joiner: impl Fn(&V, Option<&VT>) -> VR + Send + Sync + 'static,
    ) -> KStream<K, VR> {
        self.table_join(table, Arc::new(move |v: &V, t: Option<&VT>| Some(joiner(v, t))))
    }

    fn table_join<VT: Data, VR: Data>(
        &self,
        table: &KTable<K, VT>,
        joiner: StreamTableJoinFn<V, VT, VR>,
    ) -> KStream<K, VR> {
        let Some(getter) = table.getter.clone() else {
            self.builder.fail("a stream can only join a table that is materialized (not a windowed aggregate)".into());
            return self.derive(self.node, false);
        };
        if self.key_changed {
            self.builder.fail(
                "a stream whose key was changed must be repartitioned (KStream::repartition) before a join".into(),
            );
        }
        let id = self.builder.add(
            Decl::new("KSTREAM-JOIN", vec![self.node]).stores(table.stores.clone()),
            Arc::new(move |inst, id| {
                let node = StreamTableJoinNode {
                    getter: getter(inst),
                    joiner: Arc::clone(&joiner),
                    down: inst.downstream(id),
                };
                inst.register_node::<K, V, _>(id, node);
            }),
        );
        self.derive(id, false)
    }

    /// Stream-stream inner join: records of the two streams with the same key, within
    /// `windows` of each other; each pair once, at the time of the later record.
    pub fn join_stream<V2: Data, VR: Data>(
        &self,
        other: &KStream<K, V2>,
        joiner: impl Fn(&V, &V2) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
        serdes: StreamJoined<K, V, V2>,
    ) -> KStream<K, VR> {
        let joiner = Arc::new(joiner);
        self.stream_join(
            other,
            windows,
            serdes,
            (false, false),
            Arc::new(move |l: Option<&V>, r: Option<&V2>| {
                joiner(l.expect("inner join has both"), r.expect("inner join has both"))
            }),
        )
    }

    /// Stream-stream left join: as [`Self::join_stream`], and a record of this stream
    /// that met none of the other's within the window is passed with `None` once the
    /// window has closed.
    pub fn left_join_stream<V2: Data, VR: Data>(
        &self,
        other: &KStream<K, V2>,
        joiner: impl Fn(&V, Option<&V2>) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
        serdes: StreamJoined<K, V, V2>,
    ) -> KStream<K, VR> {
        let joiner = Arc::new(joiner);
        self.stream_join(
            other,
            windows,
            serdes,
            (true, false),
            Arc::new(move |l: Option<&V>, r: Option<&V2>| joiner(l.expect("left join has the left"), r)),
        )
    }

    /// Stream-stream outer join: unmatched records of either side are passed with the
    /// other side `None` once their window has closed.
    pub fn outer_join_stream<V2: Data, VR: Data>(
        &self,
        other: &KStream<K, V2>,
        joiner: impl Fn(Option<&V>, Option<&V2>) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
        serdes: StreamJoined<K, V, V2>,
    ) -> KStream<K, VR> {
        self.stream_join(other, windows, serdes, (true, true), Arc::new(joiner))
    }

    fn stream_join<V2: Data, VR: Data>(
        &self,
        other: &KStream<K, V2>,
        windows: JoinWindows,
        serdes: StreamJoined<K, V, V2>,
        outer: (bool, bool),
        joiner: StreamJoinFn<V, V2, VR>,
    ) -> KStream<K, VR> {
        if self.key_changed || other.key_changed {
            self.builder.fail(
                "a stream whose key was changed must be repartitioned (KStream::repartition) before a join".into(),
            );
        }
        let name = serdes.name.clone().unwrap_or_else(|| self.builder.generated("KSTREAM-JOIN"));
        let this_store = format!("{name}-this-join-store");
        let other_store = format!("{name}-other-join-store");
        let this_pending = format!("{name}-this-outer-store");
        let other_pending = format!("{name}-other-outer-store");
        let mut stores = vec![this_store.clone(), other_store.clone()];
        let materialized = super::Materialized::<()> { name: None, value_serde: None, kind: serdes.kind, logged: true };
        self.builder.add_store(&this_store, &materialized);
        self.builder.add_store(&other_store, &materialized);
        if outer.0 {
            self.builder.add_store(&this_pending, &materialized);
            stores.push(this_pending.clone());
        }
        if outer.1 {
            self.builder.add_store(&other_pending, &materialized);
            stores.push(other_pending.clone());
        }
        // Both sides and the merge of their results; each side writes its own buffer and
        // reads the other's.
        let this_side = JoinSide::<K, V, V2, VR> {
            side: StreamJoinSide::This,
            windows,
            key_serde: Arc::clone(&serdes.key_serde),
            own_serde: Arc::clone(&serdes.value_serde),
            other_serde: Arc::clone(&serdes.other_value_serde),
            own_store: this_store.clone(),
            other_store: other_store.clone(),
            own_pending: outer.0.then(|| this_pending.clone()),
            other_pending: outer.1.then(|| other_pending.clone()),
            joiner: Arc::clone(&joiner),
        };
        let other_side = JoinSide::<K, V2, V, VR> {
            side: StreamJoinSide::Other,
            windows,
            key_serde: Arc::clone(&serdes.key_serde),
            own_serde: Arc::clone(&serdes.other_value_serde),
            other_serde: Arc::clone(&serdes.value_serde),
            own_store: other_store,
            other_store: this_store,
            own_pending: outer.1.then_some(other_pending),
            other_pending: outer.0.then_some(this_pending),
            joiner: Arc::new(move |own: Option<&V2>, other: Option<&V>| joiner(other, own)),
        };
        // Both sides and the merge of their results; each side writes its own buffer and
        // reads the other's.
        let merge_parents = vec![
            self.builder.add(Decl::new("KSTREAM-JOINTHIS", vec![self.node]).stores(stores.clone()), this_side.build()),
            self.builder.add(Decl::new("KSTREAM-JOINOTHER", vec![other.node]).stores(stores), other_side.build()),
        ];
        let id = self.builder.add(Decl::new("KSTREAM-MERGE", merge_parents), pass_node::<K, VR>());
        self.derive(id, false)
    }
}

/// One side of a stream-stream join, as its factory builds it in each task.
struct JoinSide<K, V, VO, VR> {
    side: StreamJoinSide,
    windows: JoinWindows,
    key_serde: Arc<dyn Serde<K>>,
    own_serde: Arc<dyn Serde<V>>,
    other_serde: Arc<dyn Serde<VO>>,
    own_store: String,
    other_store: String,
    own_pending: Option<String>,
    other_pending: Option<String>,
    joiner: StreamJoinFn<V, VO, VR>,
}

impl<K: Data, V: Data, VO: Data, VR: Data> JoinSide<K, V, VO, VR> {
    fn build(self) -> crate::topology::BuildFn {
        Arc::new(move |inst, id| {
            let node = StreamStreamJoinNode::<K, V, VO, VR> {
                side: self.side,
                windows: self.windows,
                key_serde: Arc::clone(&self.key_serde),
                own_serde: Arc::clone(&self.own_serde),
                other_serde: Arc::clone(&self.other_serde),
                own_store: inst.store(&self.own_store),
                other_store: inst.store(&self.other_store),
                own_pending: self.own_pending.as_ref().map(|s| inst.store(s)),
                other_pending: self.other_pending.as_ref().map(|s| inst.store(s)),
                joiner: Arc::clone(&self.joiner),
                down: inst.downstream(id),
                index: Default::default(),
                saved_time: i64::MIN,
            };
            inst.register_timed::<K, V, _>(id, node);
        })
    }
}

/// Serdes (and store kind and name) of a stream-stream join's window buffers.
pub struct StreamJoined<K, V, V2> {
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) value_serde: Arc<dyn Serde<V>>,
    pub(crate) other_value_serde: Arc<dyn Serde<V2>>,
    pub(crate) name: Option<String>,
    pub(crate) kind: StoreKind,
}

impl<K, V, V2> StreamJoined<K, V, V2> {
    pub fn with(
        key_serde: impl Serde<K> + 'static,
        value_serde: impl Serde<V> + 'static,
        other_value_serde: impl Serde<V2> + 'static,
    ) -> Self {
        Self {
            key_serde: Arc::new(key_serde),
            value_serde: Arc::new(value_serde),
            other_value_serde: Arc::new(other_value_serde),
            name: None,
            kind: StoreKind::InMemory,
        }
    }

    /// Names the join's stores `<name>-this-join-store` and so on.
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }

    pub fn persistent(mut self) -> Self {
        self.kind = StoreKind::Persistent;
        self
    }
}

pub(crate) fn pass_node<K: Data, V: Data>() -> crate::topology::BuildFn {
    Arc::new(|inst, id| {
        let node = PassNode { down: inst.downstream(id) };
        inst.register_node::<K, V, _>(id, node);
    })
}

impl<K, V, V2> std::fmt::Debug for StreamJoined<K, V, V2> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamJoined").field("name", &self.name).field("kind", &self.kind).finish()
    }
}
