//! `parquet-sink`: records as Parquet files in an object store, laid out as Confluent's
//! S3 sink lays them out, so that Spark, DuckDB, pyarrow and DataFusion read the folder as
//! one dataset partitioned by Kafka partition:
//!
//! ```text
//! <url>/<topic>/partition=<p>/<topic>+<p>+<first offset, 20 digits>.parquet
//! ```
//!
//! | Setting | Default | Meaning |
//! | --- | --- | --- |
//! | `url` (`store.url`) | required | `s3://bucket/prefix` (AWS_* environment), `file:///dir` or `/dir` |
//! | `topics` | required | the topics to read |
//! | `flush.size` | 100000 | records per file |
//! | `file.size.bytes` | 67108864 | a file rolls once its records' JSON reaches this size |
//! | `rotate.interval.ms` | 600000 | a file rolls once it has been open this long |
//! | `value.columns` | true | JSON object values become typed columns; `false` keeps one `value` column of bytes |
//!
//! Every file has `_topic`, `_partition`, `_offset`, `_timestamp` and `_key` first. With
//! `value.columns`, a value's fields follow as columns typed by arrow's JSON inference over
//! the file's records (nested objects become structs, arrays lists); a value that is not a
//! JSON object is a failed record (the dead-letter topic, under `errors.tolerance=all`).
//!
//! A partition's records wait in memory until their file rolls; only offsets of records in
//! files are committed (the runtime asks [`SinkTask::committable`]), and a stop or a
//! rebalance writes every open file first. A graceful restart therefore writes each record
//! once; after a crash, the records of unfinished files are read again and written to a
//! file of the same name.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    ArrayRef, BinaryBuilder, Int32Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMillisecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use async_trait::async_trait;
use headwater_core::tier::TierStore;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde_json::Value;
use tokio::time::Instant;

use crate::config::{ConfigError, ConnectorConfig};
use crate::connector::{RecordFailure, SinkConnector, SinkTask, TaskConfig, TaskError};
use crate::converter::Data;
use crate::definition::{ConfigDef, Kind, Setting};
use crate::record::ConnectRecord;

pub fn definition() -> ConfigDef {
    ConfigDef::new([
        Setting::required("url|store.url", Kind::String, "s3://bucket/prefix, file:///dir or an absolute path."),
        Setting::required("topics", Kind::List, "The topics to read."),
        Setting::optional("flush.size", Kind::Long, "100000", "Records per file."),
        Setting::optional("file.size.bytes", Kind::Long, "67108864", "A file rolls at this much JSON."),
        Setting::optional("rotate.interval.ms", Kind::Long, "600000", "A file rolls once open this long."),
        Setting::optional("value.columns", Kind::Boolean, "true", "JSON object values become typed columns."),
    ])
}

#[derive(Debug, Default)]
pub struct ParquetSink;

#[async_trait]
impl SinkConnector for ParquetSink {
    fn validate(&self, config: &ConnectorConfig) -> Vec<ConfigError> {
        let url = definition().value(config, "url").unwrap_or_default().trim().to_string();
        let name = if config.get("url").is_some() { "url" } else { "store.url" };
        let mut errors = Vec::new();
        if !(url.starts_with("s3://") || url.starts_with("file:///") || url.starts_with('/')) {
            errors.push(config.invalid(name, "use s3://bucket/prefix, file:///dir or an absolute path"));
        }
        for setting in ["flush.size", "file.size.bytes", "rotate.interval.ms"] {
            if config.parse_or(setting, 1i64).is_ok_and(|v| v < 1) {
                errors.push(config.invalid(setting, "must be at least 1"));
            }
        }
        errors
    }

    fn task(&self, config: &TaskConfig) -> Result<Box<dyn SinkTask>, TaskError> {
        let def = definition();
        let number = |name: &str, default: u64| def.number(config, name, default);
        Ok(Box::new(ParquetSinkTask {
            url: def.value(config, "url").unwrap_or_default().trim().to_string(),
            store: None,
            flush_size: number("flush.size", 100_000).max(1) as usize,
            file_bytes: number("file.size.bytes", 64 << 20).max(1) as usize,
            rotate: Duration::from_millis(number("rotate.interval.ms", 600_000).max(1)),
            value_columns: def.value(config, "value.columns").is_none_or(|v| v.trim() != "false"),
            open: BTreeMap::new(),
        }))
    }
}

/// One record waiting for its file.
struct Row {
    offset: i64,
    timestamp: Option<i64>,
    key: Option<Vec<u8>>,
    value: RowValue,
}

enum RowValue {
    Fields(Value),
    Bytes(Option<Vec<u8>>),
}

/// A partition's file being filled.
struct OpenFile {
    rows: Vec<Row>,
    bytes: usize,
    opened: Instant,
}

pub struct ParquetSinkTask {
    url: String,
    store: Option<TierStore>,
    flush_size: usize,
    file_bytes: usize,
    rotate: Duration,
    value_columns: bool,
    open: BTreeMap<(String, i32), OpenFile>,
}

impl std::fmt::Debug for ParquetSinkTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetSinkTask").field("url", &self.url).field("open", &self.open.len()).finish()
    }
}

fn bytes_of(data: &Data) -> Option<Vec<u8>> {
    match data {
        Data::Null => None,
        Data::Bytes(bytes) => Some(bytes.to_vec()),
        Data::Text(text) => Some(text.as_bytes().to_vec()),
        Data::Json(value) => Some(serde_json::to_vec(value).expect("JSON values serialize")),
    }
}

/// The Parquet bytes of a partition's rows.
fn encode(topic: &str, partition: i32, rows: &[Row], value_columns: bool) -> Result<Vec<u8>, String> {
    let mut fields = vec![
        Field::new("_topic", DataType::Utf8, false),
        Field::new("_partition", DataType::Int32, false),
        Field::new("_offset", DataType::Int64, false),
        Field::new("_timestamp", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), true),
        Field::new("_key", DataType::Binary, true),
    ];
    let mut topics = StringBuilder::new();
    let mut partitions = Int32Builder::new();
    let mut offsets = Int64Builder::new();
    let mut timestamps = TimestampMillisecondBuilder::new().with_timezone("UTC");
    let mut keys = BinaryBuilder::new();
    for row in rows {
        topics.append_value(topic);
        partitions.append_value(partition);
        offsets.append_value(row.offset);
        timestamps.append_option(row.timestamp);
        keys.append_option(row.key.as_deref());
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(topics.finish()),
        Arc::new(partitions.finish()),
        Arc::new(offsets.finish()),
        Arc::new(timestamps.finish()),
        Arc::new(keys.finish()),
    ];
    if value_columns {
        let values: Vec<&Value> =
            rows.iter().filter_map(|r| if let RowValue::Fields(v) = &r.value { Some(v) } else { None }).collect();
        let schema = arrow::json::reader::infer_json_schema_from_iterator(values.iter().map(|v| Ok((*v).clone())))
            .map_err(|e| e.to_string())?;
        if !schema.fields().is_empty() {
            let mut decoder =
                arrow::json::ReaderBuilder::new(Arc::new(schema.clone())).build_decoder().map_err(|e| e.to_string())?;
            decoder.serialize(&values).map_err(|e| e.to_string())?;
            let batch = decoder.flush().map_err(|e| e.to_string())?.ok_or("no rows decoded")?;
            for (field, column) in schema.fields().iter().zip(batch.columns()) {
                fields.push(field.as_ref().clone());
                columns.push(Arc::clone(column));
            }
        }
    } else {
        let mut values = BinaryBuilder::new();
        for row in rows {
            match &row.value {
                RowValue::Bytes(bytes) => values.append_option(bytes.as_deref()),
                RowValue::Fields(value) => {
                    values.append_value(serde_json::to_vec(value).expect("JSON values serialize"))
                }
            }
        }
        fields.push(Field::new("value", DataType::Binary, true));
        columns.push(Arc::new(values.finish()));
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| e.to_string())?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(64 * 1024))
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(properties)).map_err(|e| e.to_string())?;
    writer.write(&batch).map_err(|e| e.to_string())?;
    writer.close().map_err(|e| e.to_string())?;
    Ok(out)
}

impl ParquetSinkTask {
    fn store(&mut self) -> Result<&TierStore, TaskError> {
        if self.store.is_none() {
            let store = headwater_core::tier::store::open(&self.url)
                .map_err(|e| TaskError::Fatal(format!("object store {}: {e}", self.url)))?;
            self.store = Some(store);
        }
        Ok(self.store.as_ref().expect("opened above"))
    }

    /// Writes one partition's open file to the store; the rows stay until it is written.
    async fn roll(&mut self, topic: &str, partition: i32) -> Result<(), TaskError> {
        let Some(file) = self.open.get(&(topic.to_string(), partition)) else { return Ok(()) };
        if file.rows.is_empty() {
            return Ok(());
        }
        let first = file.rows[0].offset;
        let count = file.rows.len();
        let rows = self.open.remove(&(topic.to_string(), partition)).expect("checked above").rows;
        let value_columns = self.value_columns;
        let owned_topic = topic.to_string();
        let encoded = tokio::task::spawn_blocking(move || {
            let encoded = encode(&owned_topic, partition, &rows, value_columns);
            (encoded, rows)
        })
        .await
        .map_err(TaskError::fatal)?;
        let (encoded, rows) = encoded;
        let bytes = match encoded {
            Ok(bytes) => bytes,
            Err(error) => {
                return Err(TaskError::Fatal(format!("cannot write Parquet for {topic}-{partition}: {error}")));
            }
        };
        let store = self.store()?.clone();
        let name = format!("{topic}/partition={partition}/{topic}+{partition}+{first:020}.parquet");
        // `Path::from` splits on `/`: each folder is its own part.
        let path = if store.root.as_ref().is_empty() {
            Path::from(name)
        } else {
            Path::from(format!("{}/{name}", store.root))
        };
        let size = bytes.len();
        if let Err(error) = store.store.put(&path, bytes.into()).await {
            // Keep the rows, to write the file again on the retry.
            let opened = Instant::now();
            self.open.insert((topic.to_string(), partition), OpenFile { bytes: 0, rows, opened });
            return Err(TaskError::Retriable(format!("writing {path} to {}: {error}", self.url)));
        }
        tracing::info!(%path, records = count, bytes = size, "wrote a Parquet file");
        Ok(())
    }

    /// Files that are full or old enough, written.
    async fn roll_due(&mut self) -> Result<(), TaskError> {
        let due: Vec<(String, i32)> = self
            .open
            .iter()
            .filter(|(_, f)| {
                f.rows.len() >= self.flush_size || f.bytes >= self.file_bytes || f.opened.elapsed() >= self.rotate
            })
            .map(|(tp, _)| tp.clone())
            .collect();
        for (topic, partition) in due {
            self.roll(&topic, partition).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl SinkTask for ParquetSinkTask {
    async fn start(&mut self) -> Result<(), TaskError> {
        self.store().map(|_| ())
    }

    async fn put(&mut self, records: &[ConnectRecord]) -> Result<Vec<RecordFailure>, TaskError> {
        let mut failures = Vec::new();
        for (index, record) in records.iter().enumerate() {
            let value = match (&record.value, self.value_columns) {
                (Data::Json(value @ Value::Object(_)), true) => RowValue::Fields(value.clone()),
                (_, true) => {
                    failures.push(RecordFailure { index, reason: "value.columns needs JSON object values".into() });
                    continue;
                }
                (data, false) => RowValue::Bytes(bytes_of(data)),
            };
            let size = match &value {
                RowValue::Fields(v) => v.to_string().len(),
                RowValue::Bytes(b) => b.as_ref().map_or(0, Vec::len),
            };
            let partition = record.partition.unwrap_or(0);
            let file = self.open.entry((record.topic.clone(), partition)).or_insert_with(|| OpenFile {
                rows: Vec::new(),
                bytes: 0,
                opened: Instant::now(),
            });
            file.bytes += size + 32;
            file.rows.push(Row {
                offset: record.offset.unwrap_or(0),
                timestamp: record.timestamp,
                key: bytes_of(&record.key),
                value,
            });
            // A file holds exactly `flush.size` records (or fewer, when size or age roll it).
            if file.rows.len() >= self.flush_size || file.bytes >= self.file_bytes {
                self.roll(&record.topic, partition).await?;
            }
        }
        self.roll_due().await?;
        Ok(failures)
    }

    async fn flush(&mut self) -> Result<(), TaskError> {
        // Only files that are due: the rest are committed up to their first record.
        self.roll_due().await
    }

    fn committable(&self) -> BTreeMap<(String, i32), i64> {
        self.open.iter().filter_map(|(tp, f)| f.rows.first().map(|r| (tp.clone(), r.offset))).collect()
    }

    async fn close(&mut self) -> Result<(), TaskError> {
        let open: Vec<(String, i32)> = self.open.keys().cloned().collect();
        for (topic, partition) in open {
            self.roll(&topic, partition).await?;
        }
        Ok(())
    }
}
