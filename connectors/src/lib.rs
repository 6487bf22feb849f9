//! Headwater Connect: config-file driven sources and sinks.
//!
//! Built so far: [`config`], a connector's settings from TOML, JSON or Kafka Connect's
//! `.properties` files, and [`converter`], keys and values between topic bytes and
//! connector data (JSON with or without schemas, string, bytes), [`record`] and
//! [`transform`] (Kafka Connect's single-message transforms and predicates), [`errors`]
//! (`errors.tolerance`, the dead-letter topic, retries with backoff). Still to come
//! with its issue: the source and sink traits, the runtime (offsets in topics, retries,
//! dead-letter topic), the built-in connectors and the `headwater-connect` binary.

pub mod config;
pub mod converter;
pub mod errors;
pub mod record;
pub mod transform;

pub use config::{ConfigError, ConnectorConfig};
pub use converter::{ConvertError, Converter, Data};
pub use errors::{ErrorPolicy, Tolerance};
pub use record::ConnectRecord;
pub use transform::{Chain, TransformError};
