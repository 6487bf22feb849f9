//! `sql-bench`: tiered storage and SQL over topics, each beside a limit measured in the
//! same run.
//!
//! - **conversion + upload**: closed segments of a JSON topic converted to Parquet and
//!   written to the local-folder object store by one tier pass, in MB/s of segment bytes;
//!   the limit is copying the same segment files on the same disk.
//! - **GROUP BY over tiered Parquet**: an aggregate through the topic's table, against
//!   DataFusion reading the same files directly (a listing table over the folder), with the
//!   same session settings. The issue's bound: at most 25 % slower.
//! - **hot-tail scan**: `count(*)` with `sum(amount)` (a typed JSON column, so every value
//!   is parsed) and with `max(offset)` (no JSON) over a topic held only on local disk, in
//!   records/s; the limit is decoding the same batches' records without Arrow or JSON, one
//!   thread per partition as the scan uses.
//!
//! ```sh
//! cargo run --release -p headwater-benches --bin sql-bench -- [--records N] [--rounds R] [--json]
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use headwater_core::log::{LogManager, LogManagerOptions};
use headwater_core::record::{BatchBuilder, BatchIter, Compression, NewRecord};
use headwater_core::sql::{SingleNode, Sources, SqlEngine, SqlOptions};
use headwater_core::tier::{TierManager, TierOptions, store};

#[derive(Debug, Parser)]
struct Args {
    /// Records per topic (split over two partitions).
    #[arg(long, default_value_t = 4_000_000)]
    records: u64,
    /// Timed rounds of each query; medians are reported.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Where the data goes [default: a temporary folder].
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

const PARTITIONS: i32 = 2;
const QUERY: &str = "SELECT customer, count(*) AS n, sum(amount) AS total FROM {table} GROUP BY customer";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let base = match &args.dir {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir()?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let logs = LogManager::open(&base.path().join("data"), LogManagerOptions::default())?;
    let config = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    let common = [("value.format", "json"), ("retention.ms", "-1"), ("segment.bytes", "67108864")];
    let mut cold = config(&common);
    cold.insert("remote.storage.enable".into(), "true".into());
    logs.create_topic("cold", PARTITIONS, cold)?;
    logs.create_topic("hot", PARTITIONS, config(&common))?;
    let (records, segment_bytes) = fill(&logs, "cold", args.records)?;
    fill(&logs, "hot", args.records)?;

    // Conversion + upload, and copying the same files as the limit.
    let tier_dir = base.path().join("tier");
    let tier = TierManager::single_node(
        store::open(tier_dir.to_str().context("utf-8 path")?)?,
        Arc::clone(&logs),
        TierOptions::new(base.path().join("tier-staging")),
    );
    let started = Instant::now();
    runtime.block_on(tier.run_pass());
    let upload_s = started.elapsed().as_secs_f64();
    let parquet_bytes: u64 = (0..PARTITIONS)
        .filter_map(|p| tier.manifest(&headwater_core::log::TopicPartition::new("cold", p)))
        .flat_map(|m| m.files.clone())
        .map(|f| f.size)
        .sum();
    anyhow::ensure!(parquet_bytes > 0, "nothing was tiered");
    let copy_mb_s = copy_rate(&base.path().join("data"), &base.path().join("copy"))?;

    // The same query through the topic table and straight over the files.
    let sources = Sources { logs: Arc::clone(&logs), tier: Some(Arc::clone(&tier)), visibility: Arc::new(SingleNode) };
    let engine = SqlEngine::start(sources, SqlOptions::default())?;
    // The files sit in <topic id>/<partition>/ folders under the topic's.
    let direct_config = SessionConfig::new()
        .with_target_partitions(2)
        .with_batch_size(8192)
        .set_bool("datafusion.execution.listing_table_ignore_subdirectory", false);
    let direct = SessionContext::new_with_config(direct_config);
    let folder = tier_dir.join("topics").join("cold");
    runtime.block_on(direct.register_parquet(
        "direct",
        folder.to_str().context("utf-8 path")?,
        ParquetReadOptions::default(),
    ))?;
    let mut through_table = Vec::new();
    let mut straight = Vec::new();
    for _ in 0..args.rounds {
        through_table.push(runtime.block_on(time_topic_query(&engine, &QUERY.replace("{table}", "cold"), records))?);
        straight.push(runtime.block_on(time_direct_query(&direct, &QUERY.replace("{table}", "direct"), records))?);
    }
    let hot_query = "SELECT count(*) AS n, sum(amount) AS total FROM hot";
    let hot_plain_query = "SELECT count(*) AS n, max(\"offset\") AS last FROM hot";
    let mut hot = Vec::new();
    let mut hot_plain = Vec::new();
    let mut decode = Vec::new();
    for _ in 0..args.rounds {
        hot.push(records as f64 / runtime.block_on(time_scalar_query(&engine, hot_query, records))?);
        hot_plain.push(records as f64 / runtime.block_on(time_scalar_query(&engine, hot_plain_query, records))?);
        decode.push(decode_rate(&logs, "hot")?);
    }
    let engine_for_shutdown = Arc::clone(&engine);
    drop(engine);
    engine_for_shutdown.shutdown();

    let table_s = median(&mut through_table);
    let direct_s = median(&mut straight);
    let upload_mb_s = segment_bytes as f64 / 1e6 / upload_s;
    let hot_rate = median(&mut hot);
    let hot_plain_rate = median(&mut hot_plain);
    let decode_rate = median(&mut decode);
    if args.json {
        println!(
            "{{\"records\":{records},\"segment_mb\":{:.1},\"parquet_mb\":{:.1},\"upload_mb_s\":{upload_mb_s:.1},\
             \"copy_mb_s\":{copy_mb_s:.1},\"group_by_table_s\":{table_s:.4},\"group_by_direct_s\":{direct_s:.4},\
             \"overhead_pct\":{:.1},\"hot_scan_records_s\":{hot_rate:.0},\"hot_scan_no_json_records_s\":{hot_plain_rate:.0},\
             \"decode_records_s\":{decode_rate:.0}}}",
            segment_bytes as f64 / 1e6,
            parquet_bytes as f64 / 1e6,
            (table_s / direct_s - 1.0) * 100.0
        );
    } else {
        println!("records: {records} in {PARTITIONS} partitions, {:.1} MB of segments", segment_bytes as f64 / 1e6);
        println!(
            "conversion + upload: {upload_mb_s:.1} MB/s of segments ({:.1} MB of Parquet); copying the segments: {copy_mb_s:.1} MB/s",
            parquet_bytes as f64 / 1e6
        );
        println!(
            "GROUP BY over tiered Parquet: topic table {:.3} s, DataFusion on the files {:.3} s: overhead {:+.1} %",
            table_s,
            direct_s,
            (table_s / direct_s - 1.0) * 100.0
        );
        println!(
            "hot-tail scan: {:.2} M records/s with a JSON column, {:.2} M without; \
             decoding the same records without Arrow: {:.2} M records/s",
            hot_rate / 1e6,
            hot_plain_rate / 1e6,
            decode_rate / 1e6
        );
    }
    Ok(())
}

/// Appends `records` JSON records (lz4 batches of 500) over the topic's partitions and
/// seals them. Returns the records and the segment bytes written.
fn fill(logs: &LogManager, topic: &str, records: u64) -> anyhow::Result<(u64, u64)> {
    let per_partition = records / PARTITIONS as u64;
    let mut bytes = 0u64;
    for partition in 0..PARTITIONS {
        let log = logs.get(topic, partition)?;
        let mut i = 0u64;
        while i < per_partition {
            let mut builder = BatchBuilder::new(Compression::Lz4);
            let end = (i + 500).min(per_partition);
            let values: Vec<String> = (i..end)
                .map(|n| {
                    format!(
                        r#"{{"id":{n},"customer":"c{}","amount":{},"region":"r{}","ok":{}}}"#,
                        n % 1000,
                        (n % 997) as f64 * 0.5,
                        n % 7,
                        n % 3 == 0
                    )
                })
                .collect();
            for (n, value) in (i..end).zip(&values) {
                let key = n.to_be_bytes();
                builder.append(NewRecord {
                    timestamp: 1_700_000_000_000 + n as i64,
                    key: Some(&key),
                    value: Some(value.as_bytes()),
                    headers: &[],
                });
            }
            log.append(&builder.build()?, 0)?;
            i = end;
        }
        log.force_roll()?;
        bytes += log.size_bytes();
    }
    Ok((per_partition * PARTITIONS as u64, bytes))
}

/// MB/s copying every segment file under `data` to `target`, with a final fsync.
fn copy_rate(data: &Path, target: &Path) -> anyhow::Result<f64> {
    std::fs::create_dir_all(target)?;
    let mut bytes = 0u64;
    let started = Instant::now();
    for partition in 0..PARTITIONS {
        let dir = data.join(format!("cold-{partition}"));
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "log") {
                let out =
                    target.join(format!("{partition}-{}", path.file_name().unwrap_or_default().to_string_lossy()));
                bytes += std::fs::copy(&path, &out)?;
                std::fs::File::open(&out)?.sync_all()?;
            }
        }
    }
    Ok(bytes as f64 / 1e6 / started.elapsed().as_secs_f64())
}

async fn time_topic_query(engine: &SqlEngine, sql: &str, records: u64) -> anyhow::Result<f64> {
    let started = Instant::now();
    let (_, batches) = engine.collect(sql).await?;
    let elapsed = started.elapsed().as_secs_f64();
    check_groups(&batches, records)?;
    Ok(elapsed)
}

async fn time_direct_query(context: &SessionContext, sql: &str, records: u64) -> anyhow::Result<f64> {
    let started = Instant::now();
    let batches = context.sql(sql).await?.collect().await?;
    let elapsed = started.elapsed().as_secs_f64();
    check_groups(&batches, records)?;
    Ok(elapsed)
}

/// Both queries must see every record: the counts add up.
fn check_groups(batches: &[arrow::array::RecordBatch], records: u64) -> anyhow::Result<()> {
    use arrow::array::AsArray;
    let counted: i64 = batches
        .iter()
        .map(|b| b.column(1).as_primitive::<arrow::datatypes::Int64Type>().iter().flatten().sum::<i64>())
        .sum();
    anyhow::ensure!(counted as u64 == records, "the query counted {counted} of {records} records");
    Ok(())
}

async fn time_scalar_query(engine: &SqlEngine, sql: &str, records: u64) -> anyhow::Result<f64> {
    use arrow::array::AsArray;
    let started = Instant::now();
    let (_, batches) = engine.collect(sql).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let n = batches[0].column(0).as_primitive::<arrow::datatypes::Int64Type>().value(0);
    anyhow::ensure!(n as u64 == records, "the scan counted {n} of {records} records");
    Ok(elapsed)
}

/// Records/s decoding every record of the topic's batches (decompressing, iterating
/// records and touching their values), one thread per partition.
fn decode_rate(logs: &LogManager, topic: &str) -> anyhow::Result<f64> {
    let started = Instant::now();
    let counts: Vec<anyhow::Result<u64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..PARTITIONS)
            .map(|partition| {
                let log = logs.get(topic, partition);
                scope.spawn(move || -> anyhow::Result<u64> {
                    let log = log?;
                    let (mut offset, mut count, mut value_bytes) = (log.log_start(), 0u64, 0usize);
                    loop {
                        let read = log.read(offset, None, 1 << 20)?;
                        if read.records.is_empty() {
                            return Ok(count + (value_bytes == usize::MAX) as u64);
                        }
                        for batch in BatchIter::new(&read.records) {
                            let batch = batch?;
                            offset = batch.next_offset();
                            for record in batch.records(64 << 20)?.iter() {
                                value_bytes = value_bytes.wrapping_add(record?.value.map_or(0, <[u8]>::len));
                                count += 1;
                            }
                        }
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("decode thread")).collect()
    });
    let mut total = 0;
    for count in counts {
        total += count?;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
