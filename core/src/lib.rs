//! Headwater's storage core: Kafka's record format and the partitioned commit log.
//!
//! ```text
//!   bytes from a producer ──> record (parse, CRC) ──> log::Log::append ──> segment files
//!   fetch ──> log::Log::read ──> whole batches, as stored
//!   log::LogManager: every topic-partition under one data dir, one group-commit flusher
//! ```
//!
//! What exists today: [`record`] (RecordBatch v2 codec) and [`log`] (segments, indexes,
//! retention, compaction, group-commit durability, crash recovery, the log manager).
//! The broker, cluster, tiering and SQL modules arrive with their issues.

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
