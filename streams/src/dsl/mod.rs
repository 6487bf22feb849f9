//! The DSL: [`StreamsBuilder`] makes [`KStream`]s and [`KTable`]s; their operators add
//! nodes to one graph, which [`StreamsBuilder::build`] turns into a [`Topology`].
//!
//! Operators take plain closures (`Fn + Send + Sync`, shared by every task) and, where
//! records meet bytes, serdes: [`Consumed`] at sources, [`Produced`] at sinks, [`Grouped`]
//! at repartition topics, [`Materialized`] for stores.

mod builder;
mod grouped;
mod options;
mod stream;
mod table;

pub use builder::StreamsBuilder;
pub use grouped::{KGroupedStream, SessionWindowedKStream, SlidingWindowedKStream, TimeWindowedKStream};
pub use options::{Consumed, Grouped, JoinWindows, Materialized, Produced, Repartitioned};
pub use stream::{BranchPredicate, KStream, StreamJoined};
pub use table::KTable;

/// What may flow through a topology: keys and values are cloned when a stream feeds
/// several operators.
pub trait Data: Clone + 'static {}

impl<T: Clone + 'static> Data for T {}
