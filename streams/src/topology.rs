//! A built topology: the node graph, its stores and topics, split into sub-topologies.
//!
//! A sub-topology is a connected part of the graph: nodes joined by edges or by a shared
//! store. Repartition topics cut the graph (a sink writes the topic, a source in another
//! sub-topology reads it), so each sub-topology reads co-partitioned topics and runs as
//! one task per partition: task `s_p` reads partition `p` of every source topic of
//! sub-topology `s` and owns partition `p` of its stores' changelogs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use crate::error::StreamsError;
use crate::processor::Instantiation;
use crate::state::StoreSpec;

pub(crate) type NodeId = usize;

/// A topic a node reads or writes: the user's, or one the application owns, named
/// `<application.id>-<suffix>` when the application starts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum TopicRef {
    External(String),
    Internal(String),
}

impl TopicRef {
    pub(crate) fn resolve(&self, application_id: &str) -> String {
        match self {
            Self::External(name) => name.clone(),
            Self::Internal(suffix) => format!("{application_id}-{suffix}"),
        }
    }
}

pub(crate) type BuildFn = Arc<dyn Fn(&mut Instantiation<'_>, NodeId) + Send + Sync>;

/// One node of the graph, as the DSL declared it.
pub(crate) struct NodeDef {
    pub(crate) name: String,
    pub(crate) parents: Vec<NodeId>,
    /// Stores the node reads or writes.
    pub(crate) stores: Vec<String>,
    /// For a source: the topic it reads.
    pub(crate) source: Option<TopicRef>,
    /// For a sink: the topic it writes.
    pub(crate) sink: Option<TopicRef>,
    /// For a repartition sink: the partition count asked for.
    pub(crate) repartition_partitions: Option<i32>,
    pub(crate) build: BuildFn,
}

/// A connected part of the graph.
#[derive(Debug, Clone)]
pub(crate) struct Subtopology {
    pub(crate) id: usize,
    /// In creation order (parents before children).
    pub(crate) nodes: Vec<NodeId>,
    pub(crate) sources: Vec<TopicRef>,
    pub(crate) stores: Vec<String>,
}

/// A topology ready to run: built once, shared by every task of every stream thread.
pub struct Topology {
    pub(crate) nodes: Vec<NodeDef>,
    pub(crate) children: Vec<Vec<NodeId>>,
    pub(crate) stores: BTreeMap<String, StoreSpec>,
    pub(crate) subtopologies: Vec<Subtopology>,
}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl Topology {
    pub(crate) fn new(nodes: Vec<NodeDef>, stores: BTreeMap<String, StoreSpec>) -> Result<Self, StreamsError> {
        if !nodes.iter().any(|n| n.source.is_some()) {
            return Err(StreamsError::Topology("the topology reads no topic".into()));
        }
        let mut children = vec![Vec::new(); nodes.len()];
        for (id, node) in nodes.iter().enumerate() {
            for &parent in &node.parents {
                debug_assert!(parent < id, "parents are declared before their children");
                children[parent].push(id);
            }
        }
        // Union-find over edges and shared stores.
        let mut root: Vec<usize> = (0..nodes.len()).collect();
        fn find(root: &mut [usize], mut x: usize) -> usize {
            while root[x] != x {
                root[x] = root[root[x]];
                x = root[x];
            }
            x
        }
        let union = |root: &mut Vec<usize>, a: usize, b: usize| {
            let (a, b) = (find(root, a), find(root, b));
            if a != b {
                root[a.max(b)] = a.min(b);
            }
        };
        let mut store_owner: HashMap<&str, NodeId> = HashMap::new();
        for (id, node) in nodes.iter().enumerate() {
            for &parent in &node.parents {
                union(&mut root, id, parent);
            }
            for store in &node.stores {
                match store_owner.get(store.as_str()) {
                    Some(&other) => union(&mut root, id, other),
                    None => {
                        store_owner.insert(store, id);
                    }
                }
            }
        }
        let mut groups: BTreeMap<usize, Vec<NodeId>> = BTreeMap::new();
        for id in 0..nodes.len() {
            let r = find(&mut root, id);
            groups.entry(r).or_default().push(id);
        }
        let subtopologies = groups
            .into_values()
            .enumerate()
            .map(|(id, members)| {
                let mut sources = BTreeSet::new();
                let mut used = BTreeSet::new();
                for &n in &members {
                    sources.extend(nodes[n].source.clone());
                    used.extend(nodes[n].stores.iter().cloned());
                }
                Subtopology {
                    id,
                    nodes: members,
                    sources: sources.into_iter().collect(),
                    stores: used.into_iter().collect(),
                }
            })
            .collect::<Vec<_>>();
        for sub in &subtopologies {
            if sub.sources.is_empty() {
                return Err(StreamsError::Topology(format!("sub-topology {} reads no topic", sub.id)));
            }
        }
        Ok(Self { nodes, children, stores, subtopologies })
    }

    /// Source topics the user owns (they must exist).
    pub(crate) fn external_sources(&self) -> BTreeSet<String> {
        self.nodes
            .iter()
            .filter_map(|n| match &n.source {
                Some(TopicRef::External(t)) => Some(t.clone()),
                _ => None,
            })
            .collect()
    }

    /// Whether a source reads `topic` (resolved).
    pub(crate) fn reads(&self, application_id: &str, topic: &str) -> bool {
        self.nodes.iter().any(|n| n.source.as_ref().is_some_and(|t| t.resolve(application_id) == topic))
    }

    /// Every topic a sink writes, resolved.
    pub(crate) fn sink_topics(&self, application_id: &str) -> BTreeSet<String> {
        self.nodes.iter().filter_map(|n| n.sink.as_ref().map(|t| t.resolve(application_id))).collect()
    }

    /// Partition counts of every internal topic, given those of the external sources: a
    /// repartition topic gets the count asked for, or that of the sub-topology writing
    /// it (Kafka Streams' rule); a changelog that of its sub-topology.
    ///
    /// # Errors
    /// [`StreamsError::Topology`] when a sub-topology reads topics of different
    /// partition counts (they could not meet in one task).
    pub(crate) fn plan_partitions(
        &self,
        application_id: &str,
        external: &HashMap<String, i32>,
    ) -> Result<TopicPlan, StreamsError> {
        let mut counts: HashMap<TopicRef, i32> = HashMap::new();
        for (name, count) in external {
            counts.insert(TopicRef::External(name.clone()), *count);
        }
        // A repartition topic read beside user topics (a join after a key change) gets
        // their partition count, so the two are co-partitioned (Kafka Streams does the
        // same); one whose count was given explicitly keeps it.
        let mut copartitioned = BTreeSet::new();
        for sub in &self.subtopologies {
            let Some(count) = sub.sources.iter().find_map(|s| match s {
                TopicRef::External(_) => counts.get(s).copied(),
                TopicRef::Internal(_) => None,
            }) else {
                continue;
            };
            for source in sub.sources.iter().filter(|s| matches!(s, TopicRef::Internal(_))) {
                let explicit =
                    self.nodes.iter().any(|n| n.sink.as_ref() == Some(source) && n.repartition_partitions.is_some());
                if !explicit {
                    counts.insert(source.clone(), count);
                    copartitioned.insert(source.clone());
                }
            }
        }
        let mut tasks: BTreeMap<usize, i32> = BTreeMap::new();
        // A sub-topology can be planned once the topics it reads are: its writers first.
        while tasks.len() < self.subtopologies.len() {
            let ready = self
                .subtopologies
                .iter()
                .find(|sub| !tasks.contains_key(&sub.id) && sub.sources.iter().all(|s| counts.contains_key(s)));
            let Some(sub) = ready else {
                let missing: Vec<String> = self
                    .subtopologies
                    .iter()
                    .filter(|sub| !tasks.contains_key(&sub.id))
                    .flat_map(|sub| sub.sources.iter().filter(|s| !counts.contains_key(*s)))
                    .map(|s| s.resolve(application_id))
                    .collect();
                return Err(StreamsError::Topology(format!(
                    "cannot tell the partition count of {}: no sub-topology writes them",
                    missing.join(", ")
                )));
            };
            let seen: BTreeSet<i32> = sub.sources.iter().map(|s| counts[s]).collect();
            if seen.len() > 1 {
                return Err(StreamsError::Topology(format!(
                    "sub-topology {} reads topics {} with different partition counts {:?}: they are not \
                     co-partitioned; repartition one of them first",
                    sub.id,
                    sub.sources.iter().map(|s| s.resolve(application_id)).collect::<Vec<_>>().join(", "),
                    seen
                )));
            }
            let count = *seen.iter().next().expect("a sub-topology reads a topic");
            tasks.insert(sub.id, count);
            for &n in &sub.nodes {
                let node = &self.nodes[n];
                if let Some(sink @ TopicRef::Internal(_)) = &node.sink
                    && !copartitioned.contains(sink)
                {
                    let wanted = node.repartition_partitions.unwrap_or(count);
                    let entry = counts.entry(sink.clone()).or_insert(wanted);
                    *entry = (*entry).max(wanted);
                }
            }
        }
        let mut internal = BTreeMap::new();
        for (topic, count) in &counts {
            if let TopicRef::Internal(_) = topic {
                internal.insert(topic.resolve(application_id), InternalTopic { partitions: *count, changelog: false });
            }
        }
        for sub in &self.subtopologies {
            for store in &sub.stores {
                let spec = &self.stores[store];
                if spec.logged {
                    internal.insert(
                        TopicRef::Internal(spec.changelog_suffix()).resolve(application_id),
                        InternalTopic { partitions: tasks[&sub.id], changelog: true },
                    );
                }
            }
        }
        Ok(TopicPlan { tasks, internal })
    }
}

/// What the application needs of the log before it runs.
#[derive(Debug, Clone)]
pub(crate) struct TopicPlan {
    /// Tasks per sub-topology.
    pub(crate) tasks: BTreeMap<usize, i32>,
    /// Internal topics to create (resolved names).
    pub(crate) internal: BTreeMap<String, InternalTopic>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct InternalTopic {
    pub(crate) partitions: i32,
    /// A changelog is compacted; a repartition topic is not (its records are consumed once).
    pub(crate) changelog: bool,
}

impl InternalTopic {
    pub(crate) fn configs(&self) -> BTreeMap<String, String> {
        if self.changelog {
            BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())])
        } else {
            BTreeMap::new()
        }
    }
}

/// A description in the spirit of Kafka Streams' `Topology#describe`.
impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Topologies:")?;
        for sub in &self.subtopologies {
            writeln!(f, "  Sub-topology: {}", sub.id)?;
            for &n in &sub.nodes {
                let node = &self.nodes[n];
                let children: Vec<&str> = self.children[n].iter().map(|c| self.nodes[*c].name.as_str()).collect();
                let mut line = format!("    {}", node.name);
                if let Some(source) = &node.source {
                    line.push_str(&format!(" (topic: {})", describe_topic(source)));
                }
                if let Some(sink) = &node.sink {
                    line.push_str(&format!(" (topic: {})", describe_topic(sink)));
                }
                if !node.stores.is_empty() {
                    line.push_str(&format!(" (stores: {})", node.stores.join(", ")));
                }
                if !children.is_empty() {
                    line.push_str(&format!(" --> {}", children.join(", ")));
                }
                writeln!(f, "{line}")?;
            }
        }
        Ok(())
    }
}

fn describe_topic(topic: &TopicRef) -> String {
    match topic {
        TopicRef::External(t) => t.clone(),
        TopicRef::Internal(s) => format!("<application.id>-{s}"),
    }
}
