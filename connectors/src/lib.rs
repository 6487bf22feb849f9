//! Headwater Connect: config-file driven sources and sinks.
//!
//! Nothing is implemented here yet. The plan (see `ARCHITECTURE.md`) is source and sink
//! traits, a runtime that runs their tasks with offsets kept in topics, converters,
//! single-message transforms and a dead-letter topic.
