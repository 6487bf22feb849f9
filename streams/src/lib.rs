//! Headwater Streams: stream jobs in Rust over Headwater (or any Kafka) topics.
//!
//! What Kafka Streams is to Kafka. A job builds a topology with the DSL
//! ([`StreamsBuilder`], [`KStream`], [`KTable`]): stateless operators, aggregations in
//! tumbling, hopping, sliding and session windows, joins, tables. The runtime splits the
//! topology into tasks, one per input partition, and runs them against a broker (the
//! application id is a consumer group that shares the tasks among instances) or against
//! an embedded log in the same process. State lives in stores backed by compacted
//! changelog topics, so it survives restarts and moves with its task.
//!
//! ```text
//!  dsl (StreamsBuilder, KStream, KTable) ──build──> Topology (nodes, stores, sub-topologies)
//!        runtime::task::StreamTask = one partition of a sub-topology: processor nodes + state stores
//!        runtime::test_driver = tasks in-process, for unit tests
//! ```

pub mod dsl;
pub mod error;
pub(crate) mod processor;
pub mod record;
pub mod runtime;
pub mod serde;
pub(crate) mod state;
pub mod topology;
pub mod window;

pub use dsl::{
    Consumed, Data, Grouped, JoinWindows, KGroupedStream, KStream, KTable, Materialized, Produced, Repartitioned,
    SessionWindowedKStream, SlidingWindowedKStream, StreamJoined, StreamsBuilder, TimeWindowedKStream,
};
pub use error::StreamsError;
pub use processor::TaskCounters;
pub use record::{Change, Headers, Record};
pub use runtime::{
    EmbeddedLog, KafkaStreams, LogTarget, ProcessingGuarantee, StreamsConfig, TaskId, TaskMetrics, test_driver,
};
pub use state::StoreKind;
pub use topology::Topology;
pub use window::{EmitStrategy, SessionWindows, SlidingWindows, TimeWindows, Window, Windowed, WindowedSerde};
