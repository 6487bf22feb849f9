//! Why a stream job failed.

use headwater_core::client::ClientError;
use headwater_core::log::LogError;

use crate::serde::SerdeError;

/// Errors of building, starting or running a stream job.
#[derive(Debug, thiserror::Error)]
pub enum StreamsError {
    /// The topology cannot run: an operator needs something it was not given, or
    /// co-partitioned topics have different partition counts.
    #[error("invalid topology: {0}")]
    Topology(String),
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A source record that its serdes cannot read. The job stops: skipping it silently
    /// would lose data (Kafka Streams' `LogAndFailExceptionHandler`).
    #[error("cannot deserialize the {part} of {topic}-{partition} at offset {offset}: {source}")]
    Deserialize {
        part: &'static str,
        topic: String,
        partition: i32,
        offset: i64,
        #[source]
        source: SerdeError,
    },
    /// A state store's bytes that its serdes cannot read: the store or its changelog is
    /// damaged, or the job changed a store's serdes.
    #[error("state store {store}: {source}")]
    StoreSerde {
        store: String,
        #[source]
        source: SerdeError,
    },
    #[error("state store {store}: {message}")]
    Store { store: String, message: String },
    /// Committing offsets failed (the group moved on, the log failed).
    #[error("cannot commit offsets: {message}")]
    Commit { message: String },
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}
