//! SQL over topics, in process: sqllogictest files (`tests/sql/*.slt`) against topics
//! whose history is partly in tiered Parquet files and partly in the local tail, plus the
//! checks a `.slt` file cannot express (plans, memory limits).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::Array;
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use headwater_core::log::{LogManager, LogManagerOptions};
use headwater_core::record::{BatchBuilder, Compression, NewRecord};
use headwater_core::sql::{SingleNode, Sources, SqlEngine, SqlError, SqlOptions};
use headwater_core::tier::{TierManager, TierOptions, store};
use sqllogictest::{DBOutput, DefaultColumnType};

const T0: i64 = 1_700_000_000_000;

/// Topics with known contents:
/// - `orders` (2 partitions, value.format=json, tiered): 100 records per partition, the
///   first 80 in Parquet files and the last 20 in the local tail. Record `i` of partition
///   `p` has key `o-p-i`, timestamp T0 + i, and value
///   `{"id": i, "customer": "c<i % 5>", "amount": i * 1.5, "paid": i % 2 == 0}`; from
///   record 90 on, values also carry `"note": "late"`.
/// - `events` (1 partition, bytes): three JSON values and one that is not JSON.
/// - `empty` (3 partitions).
struct Fixture {
    _dir: tempfile::TempDir,
    engine: Arc<SqlEngine>,
    logs: Arc<LogManager>,
    tier: Arc<TierManager>,
}

fn order(partition: i32, i: i64) -> (String, String) {
    let note = if i >= 90 { r#", "note": "late""# } else { "" };
    let value = format!(
        r#"{{"id": {i}, "customer": "c{}", "amount": {}, "paid": {}{note}}}"#,
        i % 5,
        i as f64 * 1.5,
        i % 2 == 0
    );
    (format!("o-{partition}-{i}"), value)
}

fn append(logs: &LogManager, topic: &str, partition: i32, records: &[(String, String, i64)]) {
    let mut builder = BatchBuilder::new(Compression::Lz4);
    for (key, value, timestamp) in records {
        builder.append(NewRecord {
            timestamp: *timestamp,
            key: Some(key.as_bytes()),
            value: Some(value.as_bytes()),
            headers: &[(b"origin", Some(b"test"))],
        });
    }
    logs.get(topic, partition).unwrap().append(&builder.build().unwrap(), 0).unwrap();
}

async fn fixture(options: SqlOptions) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let logs = LogManager::open(dir.path(), LogManagerOptions::default()).unwrap();
    let tiered: BTreeMap<String, String> = [
        ("remote.storage.enable", "true"),
        ("local.retention.bytes", "0"),
        ("value.format", "json"),
        ("retention.ms", "-1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    logs.create_topic("orders", 2, tiered).unwrap();
    logs.create_topic("events", 1, BTreeMap::new()).unwrap();
    logs.create_topic("empty", 3, BTreeMap::new()).unwrap();
    for partition in 0..2 {
        // Eight segments of ten records, then the tail.
        for segment in 0..8 {
            let records: Vec<_> = (segment * 10..segment * 10 + 10)
                .map(|i| {
                    let (k, v) = order(partition, i);
                    (k, v, T0 + i)
                })
                .collect();
            append(&logs, "orders", partition, &records);
            logs.get("orders", partition).unwrap().force_roll().unwrap();
        }
    }
    let tier = TierManager::single_node(
        store::open(dir.path().join("tier").to_str().unwrap()).unwrap(),
        Arc::clone(&logs),
        TierOptions::new(dir.path().join("tier-staging")),
    );
    tier.run_pass().await;
    for partition in 0..2 {
        let log = logs.get("orders", partition).unwrap();
        assert_eq!(log.log_start(), 80, "the first 80 records left local disk");
        let records: Vec<_> = (80..100)
            .map(|i| {
                let (k, v) = order(partition, i);
                (k, v, T0 + i)
            })
            .collect();
        append(&logs, "orders", partition, &records[..10]);
        append(&logs, "orders", partition, &records[10..]);
    }
    let events = [
        (r#"{"kind": "click", "n": 1}"#, T0),
        (r#"{"kind": "view", "n": 2}"#, T0 + 1),
        (r#"{"kind": "click", "n": 3, "extra": {"x": true}}"#, T0 + 2),
        ("not json", T0 + 3),
    ];
    let events: Vec<_> = events.iter().enumerate().map(|(i, (v, t))| (format!("e{i}"), v.to_string(), *t)).collect();
    append(&logs, "events", 0, &events);
    let sources = Sources { logs: Arc::clone(&logs), tier: Some(Arc::clone(&tier)), visibility: Arc::new(SingleNode) };
    let engine = SqlEngine::start(sources, options).unwrap();
    Fixture { _dir: dir, engine, logs, tier }
}

/// The engine as sqllogictest sees it.
struct Db(Arc<SqlEngine>);

#[async_trait]
impl sqllogictest::AsyncDB for Db {
    type Error = SqlError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SqlError> {
        let (schema, batches) = self.0.collect(sql).await?;
        let types = schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                t if t.is_integer() => DefaultColumnType::Integer,
                DataType::Float32 | DataType::Float64 | DataType::Decimal128(..) => DefaultColumnType::FloatingPoint,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => DefaultColumnType::Text,
                _ => DefaultColumnType::Any,
            })
            .collect();
        let options = FormatOptions::default().with_null("NULL");
        let mut rows = Vec::new();
        for batch in &batches {
            let formatters: Vec<ArrayFormatter<'_>> =
                batch.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap()).collect();
            for row in 0..batch.num_rows() {
                rows.push(
                    formatters
                        .iter()
                        .zip(batch.columns())
                        .map(|(f, c)| {
                            let text = f.value(row).to_string();
                            if text.is_empty() && !c.is_null(row) { "(empty)".to_string() } else { text }
                        })
                        .collect(),
                );
            }
        }
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "headwater"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqllogictest_files() {
    let fixture = fixture(SqlOptions::default()).await;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sql");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.retain(|p| p.extension().is_some_and(|e| e == "slt"));
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    for file in files {
        let engine = Arc::clone(&fixture.engine);
        let mut runner = sqllogictest::Runner::new(move || {
            let engine = Arc::clone(&engine);
            async move { Ok(Db(engine)) }
        });
        if let Err(error) = runner.run_file_async(&file).await {
            panic!("{}: {error}", file.display());
        }
    }
    shutdown(fixture.engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_and_partition_filters_prune_files_and_the_tail() {
    let fixture = fixture(SqlOptions::default()).await;
    let plan = explain(&fixture.engine, "SELECT count(*) FROM orders WHERE \"offset\" < 15 AND partition = 1").await;
    // Offsets below 15 of partition 1: two of its sixteen files, and no tail scan.
    assert_eq!(plan.matches(".parquet").count(), 2, "{plan}");
    assert!(!plan.contains("StreamingTableExec"), "{plan}");
    let tail_only = explain(&fixture.engine, "SELECT count(*) FROM orders WHERE \"offset\" >= 85").await;
    assert!(!tail_only.contains(".parquet") && tail_only.contains("StreamingTableExec"), "{tail_only}");
    let both = explain(&fixture.engine, "SELECT count(*) FROM orders").await;
    assert!(both.contains(".parquet") && both.contains("StreamingTableExec"), "{both}");
    // DeleteRecords inside a file hides the rows below the new start.
    fixture.tier.advance_log_start(&headwater_core::log::TopicPartition::new("orders", 0), 35).await.unwrap();
    let (_, batches) =
        fixture.engine.collect("SELECT min(\"offset\"), count(*) FROM orders WHERE partition = 0").await.unwrap();
    let formatted = arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string();
    assert!(formatted.contains("| 35 ") && formatted.contains("| 65 "), "{formatted}");
    assert!(fixture.logs.topic("orders").is_some());
    shutdown(fixture.engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_past_the_memory_limit_fails_alone() {
    let fixture = fixture(SqlOptions { memory_limit: 1 << 20, ..SqlOptions::default() }).await;
    // A sort of ~50 MB of strings, in 1 MiB and without spilling.
    let heavy =
        "SELECT repeat(CAST(o1.value AS VARCHAR), 20) AS big FROM orders AS o1 CROSS JOIN orders AS o2 ORDER BY big";
    let error = fixture.engine.collect(heavy).await.unwrap_err();
    assert_eq!(error.sqlstate(), "53200", "{error}");
    assert!(error.to_string().contains("Resources exhausted"), "{error}");
    let (_, batches) = fixture.engine.collect("SELECT count(*) AS n FROM orders").await.unwrap();
    assert_eq!(arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string().matches("200").count(), 1);
    shutdown(fixture.engine).await;
}

async fn explain(engine: &SqlEngine, sql: &str) -> String {
    let (_, batches) = engine.collect(&format!("EXPLAIN {sql}")).await.unwrap();
    arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string()
}

/// The engine's runtime cannot be dropped on an async thread.
async fn shutdown(engine: Arc<SqlEngine>) {
    tokio::task::spawn_blocking(move || engine.shutdown()).await.unwrap();
}
