//! Headwater Streams: Rust stream jobs over Headwater topics.
//!
//! Nothing is implemented here yet. The plan (see `ARCHITECTURE.md`) is a typed DSL that
//! builds a topology of sources, stateless operators, windowed aggregations and joins,
//! split into one task per input partition, with state stores backed by compacted
//! changelog topics.
