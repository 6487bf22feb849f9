//! The graph under construction.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::Arc;

use super::options::{Consumed, Materialized};
use super::{Data, KStream, KTable};
use crate::error::StreamsError;
use crate::processor::stateless::SourceNode;
use crate::processor::table::{TableSourceNode, store_getter};
use crate::processor::{Instantiation, Node, RawSource};
use crate::serde::Nullable;
use crate::state::StoreSpec;
use crate::topology::{BuildFn, NodeDef, NodeId, TopicRef, Topology};

#[derive(Default)]
pub(crate) struct Graph {
    pub(crate) nodes: Vec<NodeDef>,
    pub(crate) stores: BTreeMap<String, StoreSpec>,
    sources: BTreeSet<TopicRef>,
    /// A topology-wide counter for generated names, as in Kafka Streams.
    counter: usize,
    error: Option<String>,
}

/// What a new node is.
pub(crate) struct Decl {
    pub(crate) prefix: &'static str,
    pub(crate) parents: Vec<NodeId>,
    pub(crate) stores: Vec<String>,
    pub(crate) source: Option<TopicRef>,
    pub(crate) sink: Option<TopicRef>,
    pub(crate) repartition_partitions: Option<i32>,
}

impl Decl {
    pub(crate) fn new(prefix: &'static str, parents: Vec<NodeId>) -> Self {
        Self { prefix, parents, stores: Vec::new(), source: None, sink: None, repartition_partitions: None }
    }

    pub(crate) fn stores(mut self, stores: Vec<String>) -> Self {
        self.stores = stores;
        self
    }
}

/// Builds a topology. Cheap to clone: clones share one graph.
#[derive(Clone, Default)]
pub struct StreamsBuilder {
    pub(crate) graph: Rc<RefCell<Graph>>,
}

impl std::fmt::Debug for StreamsBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamsBuilder").field("nodes", &self.graph.borrow().nodes.len()).finish()
    }
}

impl StreamsBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A stream of a topic's records.
    pub fn stream<K: Data, V: Data>(&self, topic: &str, consumed: Consumed<K, V>) -> KStream<K, V> {
        let node = self.source(TopicRef::External(topic.to_string()), consumed);
        KStream::new(self.clone(), node, false)
    }

    /// A topic read as a table (a compacted topic, usually): the latest value per key,
    /// a null value deleting the key. The table is kept in a store, `materialized`'s
    /// name or a generated one.
    pub fn table<K: Data, V: Data>(
        &self,
        topic: &str,
        consumed: Consumed<K, V>,
        materialized: Materialized<V>,
    ) -> KTable<K, V> {
        let key_serde = Arc::clone(&consumed.key_serde);
        let value_serde = materialized.value_serde.clone().unwrap_or_else(|| Arc::clone(&consumed.value_serde));
        let nullable = Consumed {
            key_serde: Arc::clone(&consumed.key_serde),
            value_serde: Arc::new(Nullable(ArcSerde(Arc::clone(&consumed.value_serde)))),
            extractor: consumed.extractor.clone(),
        };
        let source = self.source(TopicRef::External(topic.to_string()), nullable);
        let store = self.store_name(&materialized, "KTABLE-SOURCE-STATE-STORE");
        self.add_store(&store, &materialized);
        let (ks, vs) = (Arc::clone(&key_serde), Arc::clone(&value_serde));
        let store_for_node = store.clone();
        let node = self.add(
            Decl::new("KTABLE-SOURCE", vec![source]).stores(vec![store.clone()]),
            Arc::new(move |inst, id| {
                let node = TableSourceNode {
                    store: inst.store(&store_for_node),
                    key_serde: Arc::clone(&ks),
                    value_serde: Arc::clone(&vs),
                    down: inst.downstream(id),
                };
                inst.register_node::<K, Option<V>, _>(id, node);
            }),
        );
        let getter = store_getter(store.clone(), Arc::clone(&key_serde), Arc::clone(&value_serde));
        KTable::new(self.clone(), node, Some(key_serde), Some(value_serde), Some(getter), vec![store])
    }

    /// Builds the topology.
    ///
    /// # Errors
    /// [`StreamsError::Topology`] for a topology that cannot run (a topic read twice,
    /// nothing read at all).
    pub fn build(self) -> Result<Topology, StreamsError> {
        let graph = std::mem::take(&mut *self.graph.borrow_mut());
        if let Some(error) = graph.error {
            return Err(StreamsError::Topology(error));
        }
        Topology::new(graph.nodes, graph.stores)
    }

    pub(crate) fn source<K: Data, V: Data>(&self, topic: TopicRef, consumed: Consumed<K, V>) -> NodeId {
        {
            let mut graph = self.graph.borrow_mut();
            if !graph.sources.insert(topic.clone()) {
                graph.error.get_or_insert(format!("topic {topic:?} is read by more than one source"));
            }
        }
        let mut decl = Decl::new("KSTREAM-SOURCE", Vec::new());
        decl.source = Some(topic.clone());
        self.add(
            decl,
            Arc::new(move |inst, id| {
                let node = SourceNode {
                    key_serde: Arc::clone(&consumed.key_serde),
                    value_serde: Arc::clone(&consumed.value_serde),
                    extractor: consumed.extractor.clone(),
                    down: inst.downstream::<K, V>(id),
                };
                let port: Rc<RefCell<dyn RawSource>> = Rc::new(RefCell::new(node));
                let resolved = inst.topic(&topic);
                inst.sources.insert(resolved, port);
            }),
        )
    }

    /// Adds a node; returns its id.
    pub(crate) fn add(&self, decl: Decl, build: BuildFn) -> NodeId {
        let mut graph = self.graph.borrow_mut();
        let id = graph.nodes.len();
        let name = format!("{}-{:010}", decl.prefix, graph.counter);
        graph.counter += 1;
        graph.nodes.push(NodeDef {
            name,
            parents: decl.parents,
            stores: decl.stores,
            source: decl.source,
            sink: decl.sink,
            repartition_partitions: decl.repartition_partitions,
            build,
        });
        id
    }

    /// A generated name with the topology-wide counter (store and topic names).
    pub(crate) fn generated(&self, prefix: &str) -> String {
        let mut graph = self.graph.borrow_mut();
        let name = format!("{prefix}-{:010}", graph.counter);
        graph.counter += 1;
        name
    }

    pub(crate) fn store_name<V>(&self, materialized: &Materialized<V>, prefix: &str) -> String {
        materialized.name.clone().unwrap_or_else(|| self.generated(prefix))
    }

    pub(crate) fn add_store<V>(&self, name: &str, materialized: &Materialized<V>) {
        let mut graph = self.graph.borrow_mut();
        let spec = StoreSpec { name: name.to_string(), kind: materialized.kind, logged: materialized.logged };
        if graph.stores.insert(name.to_string(), spec).is_some() {
            graph.error.get_or_insert(format!("store {name} is declared twice"));
        }
    }

    pub(crate) fn fail(&self, error: String) {
        self.graph.borrow_mut().error.get_or_insert(error);
    }
}

impl Instantiation<'_> {
    /// Registers `node` as `id`'s input; returns it for punctuation.
    pub(crate) fn register_node<K: 'static, V: 'static, N: Node<K, V> + 'static>(
        &mut self,
        id: NodeId,
        node: N,
    ) -> Rc<RefCell<N>> {
        let node = Rc::new(RefCell::new(node));
        let port: crate::processor::Port<K, V> = node.clone();
        self.register(id, port);
        node
    }
}

/// A shared serde as a serde, to wrap it (in [`Nullable`], say).
pub(crate) struct ArcSerde<T>(pub(crate) Arc<dyn crate::serde::Serde<T>>);

impl<T: 'static> crate::serde::Serde<T> for ArcSerde<T> {
    fn serialize(&self, value: &T, out: &mut Vec<u8>) -> bool {
        self.0.serialize(value, out)
    }
    fn deserialize(&self, bytes: Option<&bytes::Bytes>) -> Result<T, crate::serde::SerdeError> {
        self.0.deserialize(bytes)
    }
}
