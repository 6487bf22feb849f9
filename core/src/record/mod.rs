//! Kafka's RecordBatch v2 (magic 2): parse, validate (CRC-32C), iterate, build, compress.
//!
//! Owns the byte format of batches and records. Does not own where batches live (that is
//! [`crate::log`]) nor what offsets they get (the log assigns them at append).
//!
//! ```text
//!  produce request / segment file / fetch response
//!  ┌──────────────┬──────────────┬──────────────┐
//!  │ RecordBatch  │ RecordBatch  │ RecordBatch  │   BatchIter: zero-copy views
//!  └──────┬───────┴──────────────┴──────────────┘
//!         │ records(max_decompressed_bytes)   (decompresses only when asked)
//!         v
//!      Records ──iter()──> Record { offset, timestamp, key, value, headers }
//! ```
//!
//! The hot path (append, fetch) only reads headers and checks CRCs; records are decoded
//! by readers that need them: compaction, timestamp lookup, tiering, SQL.

mod batch;
mod builder;
mod compression;
mod records;
pub mod varint;

pub use batch::{
    BATCH_HEADER_BYTES, BatchIter, CONTROL_FLAG, DELETE_HORIZON_FLAG, LOG_OVERHEAD, MAGIC_V2, RecordBatch,
    TIMESTAMP_TYPE_FLAG, TRANSACTIONAL_FLAG, assign_offset, peek_batch_size,
};
pub use builder::{BatchBuilder, NewRecord};
pub use compression::Compression;
pub use records::{Header, Headers, Record, RecordIter, Records};

/// Why bytes are not a valid batch or record.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("batch truncated: needs {needed} bytes, {available} available")]
    Truncated { needed: usize, available: usize },
    #[error("invalid batch length {length}: shorter than a batch header")]
    InvalidLength { length: i32 },
    #[error("unsupported record format magic {magic}: only v2 is stored")]
    InvalidMagic { magic: i8 },
    #[error("corrupt batch at base offset {base_offset}: crc {actual:#010x}, expected {expected:#010x}")]
    CorruptBatch { base_offset: i64, expected: u32, actual: u32 },
    #[error("invalid batch header: {reason}")]
    InvalidHeader { reason: &'static str },
    #[error("unsupported compression codec id {id}")]
    UnsupportedCompression { id: u8 },
    #[error("{codec} decompression failed")]
    Compression {
        codec: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("batch decompresses past the limit of {max_bytes} bytes")]
    DecompressedTooLarge { max_bytes: usize },
    #[error("invalid record: {reason}")]
    InvalidRecord { reason: &'static str },
    #[error("invalid varint: {reason}")]
    Varint { reason: &'static str },
    #[error("{count} bytes after the batch")]
    TrailingBytes { count: usize },
}

#[cfg(test)]
mod record_test;
