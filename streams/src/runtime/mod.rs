//! Running topologies: tasks, the test driver, and the application runtime over a broker
//! or an embedded log.
//!
//! ```text
//!  KafkaStreams ──> StreamThread × num.stream.threads (own OS thread + tokio runtime)
//!                        │ Backend: broker (group member, producer, admin) | embedded log
//!                        └─> StreamTask per owned partition of each sub-topology
//! ```

mod app;
mod backend;
mod broker;
mod config;
pub mod embedded;
mod metrics;
pub(crate) mod task;
pub mod test_driver;
mod thread;

use std::sync::Arc;

use bytes::Bytes;

use crate::record::Headers;

pub use app::KafkaStreams;
pub use config::{LogTarget, ProcessingGuarantee, StreamsConfig};
pub use embedded::EmbeddedLog;
pub use metrics::TaskMetrics;
pub use task::TaskId;

/// A record a task writes: to a sink topic or a changelog.
#[derive(Debug, Clone, PartialEq)]
pub struct OutRecord {
    pub topic: Arc<str>,
    /// `None`: the producer's choice (no key, no partitioner).
    pub partition: Option<i32>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub timestamp: i64,
    pub headers: Headers,
}
