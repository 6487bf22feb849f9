//! PostgreSQL: `postgres-sink` upserts JSON records into a table in batches (tombstones
//! delete); `postgres-source` reads new and changed rows with incrementing and / or
//! timestamp column queries, like Confluent's JDBC source. Both use tokio-postgres.

mod connection;
pub mod sink;
pub mod source;

pub use sink::PostgresSink;
pub use source::PostgresSource;
