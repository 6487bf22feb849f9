//! `KTable`: a changelog seen as the latest value per key.

use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

use super::builder::{ArcSerde, Decl, StreamsBuilder};
use super::options::Produced;
use super::stream::pass_node;
use super::{Data, KStream};
use crate::processor::join::{TableJoinFn, TableTableJoinNode};
use crate::processor::table::{GetterFactory, TableFilterNode, TableMapValuesNode, ToChangelogNode, ToStreamNode};
use crate::record::Change;
use crate::serde::{Nullable, Serde};
use crate::topology::{NodeId, TopicRef};

/// A table with keys `K` and values `V`.
pub struct KTable<K, V> {
    pub(crate) builder: StreamsBuilder,
    pub(crate) node: NodeId,
    pub(crate) key_serde: Option<Arc<dyn Serde<K>>>,
    pub(crate) value_serde: Option<Arc<dyn Serde<V>>>,
    /// Reads the current value of a key (joins); `None` for windowed tables.
    pub(crate) getter: Option<GetterFactory<K, V>>,
    /// The stores the getter reads: a node using it must run in their task.
    pub(crate) stores: Vec<String>,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for KTable<K, V> {
    fn clone(&self) -> Self {
        Self {
            builder: self.builder.clone(),
            node: self.node,
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
            getter: self.getter.clone(),
            stores: self.stores.clone(),
            _types: PhantomData,
        }
    }
}

impl<K, V> std::fmt::Debug for KTable<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KTable").field("node", &self.node).field("stores", &self.stores).finish()
    }
}

impl<K: Data, V: Data> KTable<K, V> {
    pub(crate) fn new(
        builder: StreamsBuilder,
        node: NodeId,
        key_serde: Option<Arc<dyn Serde<K>>>,
        value_serde: Option<Arc<dyn Serde<V>>>,
        getter: Option<GetterFactory<K, V>>,
        stores: Vec<String>,
    ) -> Self {
        Self { builder, node, key_serde, value_serde, getter, stores, _types: PhantomData }
    }

    /// The rows for which `predicate` holds; a row that stops matching is deleted.
    pub fn filter(&self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> Self {
        self.filter_impl(Arc::new(predicate), false)
    }

    pub fn filter_not(&self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> Self {
        self.filter_impl(Arc::new(predicate), true)
    }

    fn filter_impl(&self, predicate: crate::processor::stateless::Predicate<K, V>, negate: bool) -> Self {
        let p = Arc::clone(&predicate);
        let id = self.builder.add(
            Decl::new("KTABLE-FILTER", vec![self.node]),
            Arc::new(move |inst, id| {
                let node = TableFilterNode { predicate: Arc::clone(&p), negate, down: inst.downstream(id) };
                inst.register_node::<K, Change<V>, _>(id, node);
            }),
        );
        let getter = self.getter.clone().map(|parent| -> GetterFactory<K, V> {
            Arc::new(move |inst| {
                let get = parent(inst);
                let predicate = Arc::clone(&predicate);
                Rc::new(move |k: &K| Ok(get(k)?.filter(|v| predicate(k, v) != negate)))
            })
        });
        KTable::new(
            self.builder.clone(),
            id,
            self.key_serde.clone(),
            self.value_serde.clone(),
            getter,
            self.stores.clone(),
        )
    }

    /// A new value per row.
    pub fn map_values<V2: Data>(&self, f: impl Fn(V) -> V2 + Send + Sync + 'static) -> KTable<K, V2> {
        let f: crate::processor::stateless::MapValuesFn<K, V, V2> = Arc::new(move |_, v| f(v));
        let node_f = Arc::clone(&f);
        let id = self.builder.add(
            Decl::new("KTABLE-MAPVALUES", vec![self.node]),
            Arc::new(move |inst, id| {
                let node = TableMapValuesNode { f: Arc::clone(&node_f), down: inst.downstream(id) };
                inst.register_node::<K, Change<V>, _>(id, node);
            }),
        );
        let getter = self.getter.clone().map(|parent| -> GetterFactory<K, V2> {
            Arc::new(move |inst| {
                let get = parent(inst);
                let f = Arc::clone(&f);
                Rc::new(move |k: &K| Ok(get(k)?.map(|v| f(k, v))))
            })
        });
        KTable::new(self.builder.clone(), id, self.key_serde.clone(), None, getter, self.stores.clone())
    }

    /// The table's updates as a stream of new values (deletions are left out; use
    /// [`Self::to`] to write a table with its tombstones).
    pub fn to_stream(&self) -> KStream<K, V> {
        let id = self.builder.add(
            Decl::new("KTABLE-TOSTREAM", vec![self.node]),
            Arc::new(|inst, id| {
                let node = ToStreamNode { down: inst.downstream(id) };
                inst.register_node::<K, Change<V>, _>(id, node);
            }),
        );
        KStream::new(self.builder.clone(), id, false)
    }

    /// Writes the table's changelog to `topic`: every update, and a null value (a
    /// tombstone) for every deletion, so a compacted topic ends up holding the table.
    pub fn to(&self, topic: &str, produced: Produced<K, V>) {
        let id = self.builder.add(
            Decl::new("KTABLE-TOCHANGELOG", vec![self.node]),
            Arc::new(|inst, id| {
                let node = ToChangelogNode { down: inst.downstream(id) };
                inst.register_node::<K, Change<V>, _>(id, node);
            }),
        );
        let changelog: KStream<K, Option<V>> = KStream::new(self.builder.clone(), id, false);
        let produced = Produced {
            key_serde: produced.key_serde,
            value_serde: Arc::new(Nullable(ArcSerde(produced.value_serde))) as Arc<dyn Serde<Option<V>>>,
            partitioner: None,
        };
        changelog.sink(TopicRef::External(topic.to_string()), produced, None);
    }

    /// Table-table inner join: a row for each key both tables have.
    pub fn join<V2: Data, VR: Data>(
        &self,
        other: &KTable<K, V2>,
        joiner: impl Fn(&V, &V2) -> VR + Send + Sync + 'static,
    ) -> KTable<K, VR> {
        self.table_join(other, Arc::new(move |a: Option<&V>, b: Option<&V2>| Some(joiner(a?, b?))))
    }

    /// Table-table left join: a row for each key of this table.
    pub fn left_join<V2: Data, VR: Data>(
        &self,
        other: &KTable<K, V2>,
        joiner: impl Fn(&V, Option<&V2>) -> VR + Send + Sync + 'static,
    ) -> KTable<K, VR> {
        self.table_join(other, Arc::new(move |a: Option<&V>, b: Option<&V2>| Some(joiner(a?, b))))
    }

    /// Table-table outer join: a row for each key either table has.
    pub fn outer_join<V2: Data, VR: Data>(
        &self,
        other: &KTable<K, V2>,
        joiner: impl Fn(Option<&V>, Option<&V2>) -> VR + Send + Sync + 'static,
    ) -> KTable<K, VR> {
        self.table_join(
            other,
            Arc::new(
                move |a: Option<&V>, b: Option<&V2>| {
                    if a.is_none() && b.is_none() { None } else { Some(joiner(a, b)) }
                },
            ),
        )
    }

    fn table_join<V2: Data, VR: Data>(&self, other: &KTable<K, V2>, joiner: TableJoinFn<V, V2, VR>) -> KTable<K, VR> {
        let (Some(this_getter), Some(other_getter)) = (self.getter.clone(), other.getter.clone()) else {
            self.builder.fail("table-table joins need materialized tables (not windowed aggregates)".into());
            return KTable::new(self.builder.clone(), self.node, None, None, None, Vec::new());
        };
        let mut stores = self.stores.clone();
        stores.extend(other.stores.iter().cloned());
        let (j, og) = (Arc::clone(&joiner), Arc::clone(&other_getter));
        let left = self.builder.add(
            Decl::new("KTABLE-JOINTHIS", vec![self.node]).stores(stores.clone()),
            Arc::new(move |inst, id| {
                let j = Arc::clone(&j);
                let node = TableTableJoinNode::<K, V, V2, VR> {
                    other: og(inst),
                    joiner: Arc::new(move |own: Option<&V>, other: Option<&V2>| j(own, other)),
                    down: inst.downstream(id),
                };
                inst.register_node::<K, Change<V>, _>(id, node);
            }),
        );
        let (j, tg) = (Arc::clone(&joiner), Arc::clone(&this_getter));
        let right = self.builder.add(
            Decl::new("KTABLE-JOINOTHER", vec![other.node]).stores(stores.clone()),
            Arc::new(move |inst, id| {
                let j = Arc::clone(&j);
                let node = TableTableJoinNode::<K, V2, V, VR> {
                    other: tg(inst),
                    joiner: Arc::new(move |own: Option<&V2>, other: Option<&V>| j(other, own)),
                    down: inst.downstream(id),
                };
                inst.register_node::<K, Change<V2>, _>(id, node);
            }),
        );
        let merged = self.builder.add(Decl::new("KTABLE-MERGE", vec![left, right]), pass_node::<K, Change<VR>>());
        let getter: GetterFactory<K, VR> = Arc::new(move |inst| {
            let (a, b, j) = (this_getter(inst), other_getter(inst), Arc::clone(&joiner));
            Rc::new(move |k: &K| Ok(j(a(k)?.as_ref(), b(k)?.as_ref())))
        });
        KTable::new(self.builder.clone(), merged, self.key_serde.clone(), None, Some(getter), stores)
    }
}
