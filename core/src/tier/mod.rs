//! Tiered storage (KIP-405's shape): closed segments of topics with
//! `remote.storage.enable=true` are copied to an object store as plain Parquet, listed in
//! their partition's manifest, and only then may local retention (`local.retention.*`)
//! drop them. Fetches below the local log start are served from the Parquet files.
//!
//! ```text
//!  TierManager (a background task, off the request path)
//!     │ every remote.log.manager.task.interval.ms, per partition this broker leads:
//!     │   sealed segment ──convert (blocking thread)──> staging file ──upload──> object store
//!     │   manifest.json updated ──> Log::set_remote_end ──> local retention may delete it
//!     │   remote retention: retention.ms / retention.bytes / log start drop whole files
//!     │ failures back off per partition; local data is never deleted for want of a copy
//!  broker::fetch (offset < local start) ──> TierManager::read ──> row group ──> rebuilt batches
//! ```
//!
//! Owns: the object store ([`store`]), the file layout ([`schema`], [`convert`]), manifests
//! ([`manifest`]), the row-group cache ([`cache`]) and the manager ([`manager`]: uploads,
//! remote retention, remote reads). Does not own the local log: it asks [`crate::log::Log`]
//! for sealed segments and tells it how far the remote copy reaches.

pub mod cache;
pub mod convert;
pub mod manager;
pub mod manifest;
mod read;
pub mod schema;
pub mod store;

use std::path::PathBuf;

pub use convert::{ConvertOptions, Converted, RebuiltBatches};
pub use manager::{Leadership, TierManager, TierOptions};
pub use manifest::{Manifest, RemoteFile};
pub use store::TierStore;

use crate::log::LogError;
use crate::record::RecordError;

/// Why a tier operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TierError {
    #[error("invalid tier setting: {reason}")]
    Config { reason: String },
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("{op} failed for {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("upload to {path} failed")]
    Upload {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt segment: {reason}")]
    Corrupt {
        reason: &'static str,
        #[source]
        source: RecordError,
    },
    #[error("cannot rebuild a record batch")]
    Record(#[from] RecordError),
    #[error("invalid manifest {path}")]
    Manifest {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("manifest of {partition} was written by leader epoch {found}, newer than this broker's {ours}")]
    Fenced { partition: String, found: i32, ours: i32 },
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("a tier task failed")]
    Join(#[from] tokio::task::JoinError),
    #[error("internal tier error: {reason}")]
    Internal { reason: &'static str },
}
