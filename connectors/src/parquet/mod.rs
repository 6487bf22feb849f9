//! Parquet: `parquet-sink` writes records as Parquet files to an object store (a local
//! folder or S3, through `object_store`), rolling files by record count, size and age.

pub mod sink;

pub use sink::ParquetSink;
