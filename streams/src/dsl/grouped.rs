//! Grouped and windowed streams, and their aggregations.

use std::sync::Arc;

use super::builder::Decl;
use super::options::{Grouped, Materialized};
use super::{Data, KStream, KTable};
use crate::processor::aggregate::{AggFn, AggregateNode, InitFn};
use crate::processor::session::SessionAggregateNode;
use crate::processor::sliding::SlidingAggregateNode;
use crate::processor::table::store_getter;
use crate::processor::window::WindowAggregateNode;
use crate::processor::{Instantiation, Node, Restorable};
use crate::record::Change;
use crate::serde::{I64, Serde};
use crate::topology::NodeId;
use crate::window::{EmitStrategy, SessionWindows, SlidingWindows, TimeWindows, Windowed};

/// A stream grouped by key, ready to aggregate.
pub struct KGroupedStream<K, V> {
    stream: KStream<K, V>,
    grouped: Grouped<K, V>,
}

impl<K, V> std::fmt::Debug for KGroupedStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KGroupedStream").field("node", &self.stream.node).finish()
    }
}

impl<K: Data, V: Data> KGroupedStream<K, V> {
    pub(crate) fn new(stream: KStream<K, V>, grouped: Grouped<K, V>) -> Self {
        Self { stream, grouped }
    }

    /// The stream an aggregation reads: through a repartition topic named after the
    /// grouping (or the aggregation's store) when the key was changed upstream.
    fn input(&self, store: &str) -> KStream<K, V> {
        if !self.stream.key_changed {
            return self.stream.clone();
        }
        let name = self.grouped.name.clone().unwrap_or_else(|| store.to_string());
        self.stream.through_internal(
            &name,
            Arc::clone(&self.grouped.key_serde),
            Arc::clone(&self.grouped.value_serde),
            None,
        )
    }

    /// The number of records per key.
    pub fn count(&self, materialized: Materialized<i64>) -> KTable<K, i64> {
        let materialized = Materialized { value_serde: Some(Arc::new(I64)), ..materialized };
        self.aggregate_impl(Arc::new(|| 0), Arc::new(|_, _, n| n + 1), materialized)
    }

    /// Combines the values of a key: the first value as is, then `reducer(aggregate, value)`.
    pub fn reduce(
        &self,
        reducer: impl Fn(V, V) -> V + Send + Sync + 'static,
        materialized: Materialized<V>,
    ) -> KTable<K, V> {
        let materialized = Materialized {
            value_serde: materialized.value_serde.clone().or_else(|| Some(Arc::clone(&self.grouped.value_serde))),
            ..materialized
        };
        // A reduce is an aggregate whose initial value is "none yet".
        let reducer = Arc::new(reducer);
        let inner_serde = materialized.value_serde.clone().expect("set above");
        let table = self.aggregate_impl::<Option<V>>(
            Arc::new(|| None),
            Arc::new(move |_, v, agg| {
                Some(match agg {
                    Some(agg) => reducer(agg, v),
                    None => v,
                })
            }),
            Materialized {
                name: materialized.name,
                value_serde: Some(Arc::new(crate::serde::Nullable(super::builder::ArcSerde(inner_serde)))),
                kind: materialized.kind,
                logged: materialized.logged,
            },
        );
        let flatten = table.map_values(|v: Option<V>| v.expect("a reduced value"));
        KTable::new(
            flatten.builder.clone(),
            flatten.node,
            flatten.key_serde.clone(),
            materialized_value(&self.grouped),
            flatten.getter.clone(),
            flatten.stores.clone(),
        )
    }

    /// Folds the values of a key into an aggregate, starting from `init()`.
    pub fn aggregate<VR: Data>(
        &self,
        init: impl Fn() -> VR + Send + Sync + 'static,
        aggregator: impl Fn(&K, V, VR) -> VR + Send + Sync + 'static,
        materialized: Materialized<VR>,
    ) -> KTable<K, VR> {
        if materialized.value_serde.is_none() {
            self.stream.builder.fail("aggregate needs Materialized::with_value_serde for its result".into());
        }
        self.aggregate_impl(Arc::new(init), Arc::new(aggregator), materialized)
    }

    fn aggregate_impl<VR: Data>(
        &self,
        init: InitFn<VR>,
        agg: AggFn<K, V, VR>,
        materialized: Materialized<VR>,
    ) -> KTable<K, VR> {
        let builder = &self.stream.builder;
        let store = builder.store_name(&materialized, "KSTREAM-AGGREGATE-STATE-STORE");
        let input = self.input(&store);
        builder.add_store(&store, &materialized);
        let key_serde = Arc::clone(&self.grouped.key_serde);
        let agg_serde: Arc<dyn Serde<VR>> = match materialized.value_serde.clone() {
            Some(serde) => serde,
            None => return KTable::new(builder.clone(), input.node, None, None, None, Vec::new()),
        };
        let (ks, vs, s) = (Arc::clone(&key_serde), Arc::clone(&agg_serde), store.clone());
        let id = builder.add(
            Decl::new("KSTREAM-AGGREGATE", vec![input.node]).stores(vec![store.clone()]),
            Arc::new(move |inst, id| {
                let node = AggregateNode {
                    store: inst.store(&s),
                    key_serde: Arc::clone(&ks),
                    agg_serde: Arc::clone(&vs),
                    init: Arc::clone(&init),
                    agg: Arc::clone(&agg),
                    down: inst.downstream::<K, Change<VR>>(id),
                    key_buf: Vec::new(),
                };
                inst.register_node::<K, V, _>(id, node);
            }),
        );
        let getter = store_getter(store.clone(), Arc::clone(&key_serde), Arc::clone(&agg_serde));
        KTable::new(builder.clone(), id, Some(key_serde), Some(agg_serde), Some(getter), vec![store])
    }

    /// Tumbling or hopping windows.
    pub fn windowed_by(&self, windows: TimeWindows) -> TimeWindowedKStream<K, V> {
        TimeWindowedKStream { grouped: self.clone_inner(), windows, emit: EmitStrategy::default() }
    }

    /// Sliding windows.
    pub fn windowed_by_sliding(&self, windows: SlidingWindows) -> SlidingWindowedKStream<K, V> {
        SlidingWindowedKStream { grouped: self.clone_inner(), windows, emit: EmitStrategy::default() }
    }

    /// Session windows.
    pub fn windowed_by_session(&self, windows: SessionWindows) -> SessionWindowedKStream<K, V> {
        SessionWindowedKStream { grouped: self.clone_inner(), windows, emit: EmitStrategy::default() }
    }

    fn clone_inner(&self) -> Self {
        Self {
            stream: self.stream.clone(),
            grouped: Grouped {
                key_serde: Arc::clone(&self.grouped.key_serde),
                value_serde: Arc::clone(&self.grouped.value_serde),
                name: self.grouped.name.clone(),
            },
        }
    }
}

fn materialized_value<K, V>(grouped: &Grouped<K, V>) -> Option<Arc<dyn Serde<V>>> {
    Some(Arc::clone(&grouped.value_serde))
}

/// What a windowed aggregation's node needs in each task: its store and serdes.
struct WindowedInput<K, V, VR> {
    store: String,
    key_serde: Arc<dyn Serde<K>>,
    value_serde: Arc<dyn Serde<V>>,
    agg_serde: Arc<dyn Serde<VR>>,
}

/// Adds a windowed aggregation: its input (through a repartition topic if the key was
/// changed), its store, and the node `make` builds in each task.
fn windowed_aggregate<K: Data, V: Data, VR: Data, N: Node<K, V> + Restorable + 'static>(
    grouped: &KGroupedStream<K, V>,
    materialized: &Materialized<VR>,
    node_prefix: &'static str,
    make: impl Fn(&mut Instantiation<'_>, NodeId, &WindowedInput<K, V, VR>) -> N + Send + Sync + 'static,
) -> KTable<Windowed<K>, VR> {
    let builder = grouped.stream.builder.clone();
    let store = builder.store_name(materialized, "KSTREAM-AGGREGATE-STATE-STORE");
    let input = grouped.input(&store);
    builder.add_store(&store, materialized);
    let Some(agg_serde) = materialized.value_serde.clone() else {
        builder.fail("a windowed aggregate needs Materialized::with_value_serde for its result".into());
        return KTable::new(builder, input.node, None, None, None, Vec::new());
    };
    let w = WindowedInput {
        store: store.clone(),
        key_serde: Arc::clone(&grouped.grouped.key_serde),
        value_serde: Arc::clone(&grouped.grouped.value_serde),
        agg_serde,
    };
    let id = builder.add(
        Decl::new(node_prefix, vec![input.node]).stores(vec![store.clone()]),
        Arc::new(move |inst, id| {
            let node = make(inst, id, &w);
            inst.register_timed::<K, V, _>(id, node);
        }),
    );
    KTable::new(builder, id, None, None, None, vec![store])
}

/// A grouped stream in tumbling or hopping windows.
pub struct TimeWindowedKStream<K, V> {
    grouped: KGroupedStream<K, V>,
    windows: TimeWindows,
    emit: EmitStrategy,
}

impl<K, V> std::fmt::Debug for TimeWindowedKStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimeWindowedKStream").field("windows", &self.windows).field("emit", &self.emit).finish()
    }
}

impl<K: Data, V: Data> TimeWindowedKStream<K, V> {
    /// When results are written: every update (the default) or once, at window close.
    pub fn emit(mut self, strategy: EmitStrategy) -> Self {
        self.emit = strategy;
        self
    }

    pub fn count(&self, materialized: Materialized<i64>) -> KTable<Windowed<K>, i64> {
        let materialized = Materialized { value_serde: Some(Arc::new(I64)), ..materialized };
        self.aggregate(|| 0, |_, _, n| n + 1, materialized)
    }

    pub fn reduce(
        &self,
        reducer: impl Fn(V, V) -> V + Send + Sync + 'static,
        materialized: Materialized<V>,
    ) -> KTable<Windowed<K>, V> {
        let inner = materialized.value_serde.clone().unwrap_or_else(|| Arc::clone(&self.grouped.grouped.value_serde));
        let reducer = Arc::new(reducer);
        let table = self.aggregate(
            || None,
            move |_, v, agg: Option<V>| {
                Some(match agg {
                    Some(agg) => reducer(agg, v),
                    None => v,
                })
            },
            Materialized {
                name: materialized.name,
                value_serde: Some(Arc::new(crate::serde::Nullable(super::builder::ArcSerde(inner)))),
                kind: materialized.kind,
                logged: materialized.logged,
            },
        );
        table.map_values(|v| v.expect("a reduced value"))
    }

    pub fn aggregate<VR: Data>(
        &self,
        init: impl Fn() -> VR + Send + Sync + 'static,
        aggregator: impl Fn(&K, V, VR) -> VR + Send + Sync + 'static,
        materialized: Materialized<VR>,
    ) -> KTable<Windowed<K>, VR> {
        let (windows, emit) = (self.windows, self.emit);
        let (init, agg): (InitFn<VR>, AggFn<K, V, VR>) = (Arc::new(init), Arc::new(aggregator));
        windowed_aggregate(&self.grouped, &materialized, "KSTREAM-WINDOWAGGREGATE", move |inst, id, w| {
            WindowAggregateNode {
                store: inst.store(&w.store),
                windows,
                emit,
                key_serde: Arc::clone(&w.key_serde),
                agg_serde: Arc::clone(&w.agg_serde),
                init: Arc::clone(&init),
                agg: Arc::clone(&agg),
                down: inst.downstream(id),
                open: Default::default(),
                key_buf: Vec::new(),
                store_key_buf: Vec::new(),
                saved_time: i64::MIN,
            }
        })
    }
}

/// A grouped stream in sliding windows.
pub struct SlidingWindowedKStream<K, V> {
    grouped: KGroupedStream<K, V>,
    windows: SlidingWindows,
    emit: EmitStrategy,
}

impl<K, V> std::fmt::Debug for SlidingWindowedKStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlidingWindowedKStream").field("windows", &self.windows).finish()
    }
}

impl<K: Data, V: Data> SlidingWindowedKStream<K, V> {
    /// When results are written: every update (the default) or once, at window close.
    pub fn emit(mut self, strategy: EmitStrategy) -> Self {
        self.emit = strategy;
        self
    }

    pub fn count(&self, materialized: Materialized<i64>) -> KTable<Windowed<K>, i64> {
        let materialized = Materialized { value_serde: Some(Arc::new(I64)), ..materialized };
        self.aggregate(|| 0, |_, _, n| n + 1, materialized)
    }

    /// Folds each window's values, in timestamp order, from `init()`.
    pub fn aggregate<VR: Data>(
        &self,
        init: impl Fn() -> VR + Send + Sync + 'static,
        aggregator: impl Fn(&K, V, VR) -> VR + Send + Sync + 'static,
        materialized: Materialized<VR>,
    ) -> KTable<Windowed<K>, VR> {
        let (windows, emit) = (self.windows, self.emit);
        let (init, agg): (InitFn<VR>, AggFn<K, V, VR>) = (Arc::new(init), Arc::new(aggregator));
        windowed_aggregate(&self.grouped, &materialized, "KSTREAM-SLIDINGWINDOWAGGREGATE", move |inst, id, w| {
            SlidingAggregateNode {
                store: inst.store(&w.store),
                windows,
                emit,
                key_serde: Arc::clone(&w.key_serde),
                value_serde: Arc::clone(&w.value_serde),
                init: Arc::clone(&init),
                agg: Arc::clone(&agg),
                down: inst.downstream(id),
                index: Default::default(),
                emitted_through: i64::MIN,
                saved_time: i64::MIN,
            }
        })
    }
}

/// A grouped stream in session windows.
pub struct SessionWindowedKStream<K, V> {
    grouped: KGroupedStream<K, V>,
    windows: SessionWindows,
    emit: EmitStrategy,
}

impl<K, V> std::fmt::Debug for SessionWindowedKStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionWindowedKStream").field("windows", &self.windows).field("emit", &self.emit).finish()
    }
}

impl<K: Data, V: Data> SessionWindowedKStream<K, V> {
    pub fn emit(mut self, strategy: EmitStrategy) -> Self {
        self.emit = strategy;
        self
    }

    pub fn count(&self, materialized: Materialized<i64>) -> KTable<Windowed<K>, i64> {
        let materialized = Materialized { value_serde: Some(Arc::new(I64)), ..materialized };
        self.aggregate(|| 0, |_, _, n| n + 1, |_, a, b| a + b, materialized)
    }

    /// Folds a session's values from `init()`; when a record joins sessions, `merger`
    /// combines their aggregates.
    pub fn aggregate<VR: Data>(
        &self,
        init: impl Fn() -> VR + Send + Sync + 'static,
        aggregator: impl Fn(&K, V, VR) -> VR + Send + Sync + 'static,
        merger: impl Fn(&K, VR, VR) -> VR + Send + Sync + 'static,
        materialized: Materialized<VR>,
    ) -> KTable<Windowed<K>, VR> {
        let (windows, emit) = (self.windows, self.emit);
        let (init, agg): (InitFn<VR>, AggFn<K, V, VR>) = (Arc::new(init), Arc::new(aggregator));
        let merger: crate::processor::session::MergeFn<K, VR> = Arc::new(merger);
        windowed_aggregate(&self.grouped, &materialized, "KSTREAM-SESSIONWINDOWAGGREGATE", move |inst, id, w| {
            SessionAggregateNode {
                store: inst.store(&w.store),
                windows,
                emit,
                key_serde: Arc::clone(&w.key_serde),
                agg_serde: Arc::clone(&w.agg_serde),
                init: Arc::clone(&init),
                agg: Arc::clone(&agg),
                merger: Arc::clone(&merger),
                down: inst.downstream(id),
                index: Default::default(),
                key_buf: Vec::new(),
                saved_time: i64::MIN,
            }
        })
    }
}
