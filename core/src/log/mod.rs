//! The commit log: each partition's log on local disk, and the manager of all of them.
//!
//! Owns segment files, indexes, offsets (`log_start`, `flushed`, `log_end`), durability
//! (group-commit fsync, crash recovery), retention and compaction. Does not own
//! replication, the high watermark or what a batch means: callers bring bytes in Kafka's
//! format (see [`crate::record`]) and get the same bytes back.
//!
//! ```text
//!  LogManager ── topics/<topic>.toml          (partition count + config overrides)
//!     │      ── <topic>-<partition>/          one Log each
//!     │            00000000000000000000.log / .index / .timeindex
//!     │            00000000000000004096.log / ...          (segments)
//!     │            .txnindex (aborted transactions) / .snapshot (producer state)
//!     │            partition.checkpoint                    (log start, recovery point)
//!     ├── Flusher (a few threads): group-commit fsync for every log
//!     └── maintenance thread: retention, compaction
//! ```

mod checkpoint;
pub mod cleaner;
mod clock;
mod config;
mod flusher;
pub mod index;
pub mod leader_epoch;
#[allow(clippy::module_inception)]
mod log;
pub mod manager;
pub mod producer_state;
pub mod segment;
pub mod txn_index;

use std::path::PathBuf;

pub use checkpoint::{PartitionCheckpoint, write_atomically};
pub use cleaner::CompactionOutcome;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{CleanupPolicy, LOCAL_RETENTION_SAME_AS_TOTAL, LOG_CONFIG_NAMES, LogConfig, ValueFormat};
pub use flusher::{FlushHandle, Flusher};
pub use log::{AppendInfo, AppendOrigin, Log, LogContext, ReadResult, RecoveryReport, RetentionOutcome};
pub use manager::{LogManager, LogManagerOptions, TopicDescription, TopicPartition};

use crate::record::RecordError;

/// Why a log operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{op} failed for {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid record batch")]
    InvalidRecords {
        #[source]
        source: RecordError,
    },
    #[error("record batch of {size} bytes is larger than max.message.bytes {max}")]
    RecordTooLarge { size: usize, max: u32 },
    #[error("invalid append: {reason}")]
    InvalidAppend { reason: &'static str },
    #[error("offset {offset} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange { offset: i64, log_start: i64, log_end: i64 },
    #[error("corrupt segment {} at byte {position}", path.display())]
    CorruptSegment { path: PathBuf, position: u64 },
    #[error("undecodable records in segment {}", path.display())]
    CorruptSegmentRecords {
        path: PathBuf,
        #[source]
        source: RecordError,
    },
    #[error("corrupt checkpoint {}: {reason}", path.display())]
    CorruptCheckpoint { path: PathBuf, reason: &'static str },
    #[error("log {} stopped after a failed flush; restart to recover it", dir.display())]
    Failed { dir: PathBuf },
    #[error("invalid value {value:?} for topic config {name}: {reason}")]
    InvalidConfig { name: String, value: String, reason: String },
    #[error("unknown topic or partition {topic}-{partition}")]
    UnknownTopicOrPartition { topic: String, partition: i32 },
    #[error("topic {topic} already exists")]
    TopicAlreadyExists { topic: String },
    #[error("invalid topic name {topic:?}: {reason}")]
    InvalidTopic { topic: String, reason: &'static str },
    #[error("out of order sequence from producer {producer_id}: got {got}, expected {expected}")]
    OutOfOrderSequence { producer_id: i64, expected: i32, got: i32 },
    #[error("producer {producer_id} epoch {epoch} is older than its current epoch {current}")]
    InvalidProducerEpoch { producer_id: i64, epoch: i16, current: i16 },
    #[error("a newer transaction coordinator has written markers for producer {producer_id}")]
    StaleCoordinatorEpoch { producer_id: i64 },
    #[error("invalid partition count for topic {topic}: {reason}")]
    InvalidPartitions { topic: String, reason: String },
}
