//! Headwater's storage core: Kafka's record format and the partitioned commit log.
//!
//! ```text
//!   bytes from a producer ──> record (parse, CRC) ──> log::Log::append ──> segment files
//!   fetch ──> log::Log::read ──> whole batches, as stored
//!   log::LogManager: every topic-partition under one data dir, one group-commit flusher
//!
//!   tier: closed segments -> Parquet in an object store; fetches below the local start
//! ```
//!
//! [`record`] is the RecordBatch v2 codec; [`log`] the local log (segments, indexes,
//! retention, compaction, group-commit durability, crash recovery); [`broker`] and
//! [`protocol`] the Kafka server; [`cluster`] and [`partition`] replication; [`group`]
//! consumer groups; [`tier`] tiered storage; [`client`] the Rust clients.

pub mod alloc;
pub mod bench;
pub mod broker;
pub mod client;
pub mod cluster;
pub mod config;
pub mod group;
pub mod log;
pub mod metrics;
pub mod partition;
pub mod protocol;
pub mod record;
#[cfg(feature = "sql")]
pub mod sql;
pub mod tier;
pub mod txn;
