//! Headwater Connect: config-file driven sources and sinks, Kafka Connect's job.
//!
//! | Module | Owns |
//! | --- | --- |
//! | [`config`] | a connector's settings from TOML, JSON or `.properties` files |
//! | [`definition`] | a connector's settings table: types, defaults, validation |
//! | [`connector`] | the source and sink traits (connector and task) |
//! | [`converter`] | keys and values between topic bytes and connector data |
//! | [`record`] | the record connectors and transforms see |
//! | [`transform`] | single-message transforms and predicates |
//! | [`errors`] | `errors.tolerance`, the dead-letter topic, retries |
//! | [`exactly_once`] | exactly-once sources (KIP-618): `exactly.once.support`, `transaction.boundary` |
//! | [`distributed`] | workers sharing tasks through a group, internal topics, the REST API |
//! | [`runtime`] | running tasks: offsets, commits, retries, statuses |
//! | [`plugins`] | the built-in connectors by class name |
//! | [`file`] | `file-source`, `file-sink` |
//! | [`http`] | `http-source` (an endpoint answering once records are acknowledged), `http-sink` (batches with retries) |
//! | [`mirror`] | `mirror-source`: topics of another cluster, offsets translated for groups (MirrorMaker 2) |
//! | [`parquet`] | `parquet-sink` (files in an object store, rolled by count, size and age) |
//! | [`postgres`] | `postgres-sink` (upserts), `postgres-source` (incrementing / timestamp queries) |

pub mod config;
pub mod connector;
pub mod converter;
pub mod definition;
pub mod distributed;
pub mod errors;
pub mod exactly_once;
pub mod file;
pub mod http;
pub mod mirror;
pub mod parquet;
pub mod plugins;
pub mod postgres;
pub mod record;
pub mod runtime;
pub mod transform;

pub use config::{ConfigError, ConnectorConfig};
pub use connector::{
    Connector, ConnectorType, Plugin, SinkConnector, SinkTask, SourceConnector, SourceTask, TaskError,
};
pub use converter::{ConvertError, Converter, Data};
pub use errors::{ErrorPolicy, Tolerance};
pub use record::ConnectRecord;
pub use runtime::{Runtime, RuntimeError, WorkerConfig};
pub use transform::{Chain, TransformError};
