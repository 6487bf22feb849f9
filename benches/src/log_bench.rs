//! `log-bench`: throughput of the commit log on this machine, beside `dd` measured in
//! the same run on the same directory, because these machines are noisy.
//!
//! Measures, for 1 KiB records in 16 KiB and 1 MiB batches:
//! - append with no per-batch flush (one fdatasync at the end, like `dd conv=fdatasync`);
//! - append with group commit: several writers, each waiting for its batch to be fsynced;
//! - sequential read with a hot page cache, each chunk copied once as a socket write would.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use headwater_core::log::{Flusher, Log, LogConfig, LogContext, SystemClock};
use headwater_core::record::{BatchBuilder, Compression, NewRecord};

#[derive(Debug, Parser)]
#[command(about = "Measure the commit log's append and read throughput beside dd")]
struct Args {
    /// Directory to write in (a fresh subdirectory is made and removed).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    dir: PathBuf,
    /// MiB written by each append run and by dd.
    #[arg(long, default_value_t = 2048)]
    mib: u64,
    /// Bytes of each record's value.
    #[arg(long, default_value_t = 1024)]
    record_bytes: usize,
    /// Concurrent writers in the group-commit runs, one run per value. Group commit's
    /// throughput grows with the appends that wait together: 16 is about three producers
    /// with Kafka's default of five requests in flight; 64 a busier broker.
    #[arg(long, value_delimiter = ',', default_values_t = [16, 64])]
    writers: Vec<usize>,
    /// Rounds; each runs dd and every measurement once, and medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let root = args.dir.join(format!("headwater-log-bench-{}", std::process::id()));
    std::fs::create_dir_all(&root).with_context(|| format!("create {}", root.display()))?;
    let result = run(&args, &root);
    let _ = std::fs::remove_dir_all(&root);
    result
}

fn run(args: &Args, root: &Path) -> anyhow::Result<()> {
    let flusher = Flusher::start();
    // name -> (samples, note of the last round)
    let mut samples: Vec<(String, Vec<f64>, String)> = Vec::new();
    let mut record = |name: String, value: f64, note: String| match samples.iter_mut().find(|(n, _, _)| *n == name) {
        Some((_, values, last_note)) => {
            values.push(value);
            *last_note = note;
        }
        None => samples.push((name, vec![value], note)),
    };
    for round in 0..args.rounds {
        if !args.json {
            eprintln!("round {} of {}", round + 1, args.rounds);
        }
        record(DD.into(), dd_mb_per_s(root, args.mib)?, String::new());
        for (name, value, note) in one_round(args, root, &flusher)? {
            record(name, value, note);
        }
    }
    let dd = median(&samples[0].1);
    if args.json {
        let items: Vec<String> = samples
            .iter()
            .map(|(name, values, _)| {
                format!(
                    "{{\"name\":\"{name}\",\"mb_per_s\":{:.1},\"of_dd\":{:.3}}}",
                    median(values),
                    median(values) / dd
                )
            })
            .collect();
        println!(
            "{{\"mib\":{},\"record_bytes\":{},\"rounds\":{},\"figures\":[{}]}}",
            args.mib,
            args.record_bytes,
            args.rounds,
            items.join(",")
        );
    } else {
        println!(
            "log-bench: {} MiB per run, {} B records, {} rounds (median, min-max), in {}",
            args.mib,
            args.record_bytes,
            args.rounds,
            root.display()
        );
        for (name, values, note) in &samples {
            let (lo, hi) =
                (values.iter().copied().fold(f64::MAX, f64::min), values.iter().copied().fold(0.0, f64::max));
            let ratio = if name == DD || name.starts_with("sequential read") {
                String::new()
            } else {
                format!("{:>4.0}% of dd", 100.0 * median(values) / dd)
            };
            println!("{name:<50} {:>8.0} MB/s ({lo:.0}-{hi:.0})  {ratio}  {note}", median(values));
        }
    }
    Ok(())
}

const DD: &str = "dd bs=1M conv=fdatasync";

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn one_round(args: &Args, root: &Path, flusher: &Flusher) -> anyhow::Result<Vec<(String, f64, String)>> {
    let total = args.mib << 20;
    let mut figures = Vec::new();
    let mut read_figure = None;
    for batch_bytes in [16 << 10, 1 << 20] {
        let batch = template_batch(batch_bytes, args.record_bytes)?;
        let label = if batch_bytes < (1 << 20) { "16 KiB" } else { "1 MiB" };

        let dir = root.join(format!("append-{batch_bytes}"));
        let log = open(&dir, flusher)?;
        let start = Instant::now();
        let buf = batch.clone();
        let mut written = 0u64;
        while written < total {
            log.append(&buf, 0)?;
            written += buf.len() as u64;
        }
        log.flush()?;
        let mb_per_s = written as f64 / start.elapsed().as_secs_f64() / 1e6;
        figures.push((format!("append {label} batches, no flush"), mb_per_s, String::new()));

        if batch_bytes == 1 << 20 {
            // Read the same log back twice; the second pass is from the page cache.
            read_mb_per_s(&log)?;
            read_figure = Some(("sequential read, hot page cache".to_string(), read_mb_per_s(&log)?, String::new()));
        }
        log.close()?;
        drop(log);
        std::fs::remove_dir_all(&dir)?;

        for &writers in &args.writers {
            let dir = root.join(format!("group-{batch_bytes}-{writers}"));
            let log = open(&dir, flusher)?;
            let per_writer = total / writers as u64;
            let start = Instant::now();
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build()?;
            let written: u64 = rt.block_on(async {
                let mut tasks = tokio::task::JoinSet::new();
                for _ in 0..writers {
                    let log = Arc::clone(&log);
                    let buf = batch.clone();
                    tasks.spawn(async move {
                        let mut written = 0u64;
                        while written < per_writer {
                            let info = log.append(&buf, 0)?;
                            log.wait_flushed(info.last_offset + 1).await?;
                            written += buf.len() as u64;
                        }
                        anyhow::Ok(written)
                    });
                }
                let mut sum = 0;
                while let Some(done) = tasks.join_next().await {
                    sum += done??;
                }
                anyhow::Ok(sum)
            })?;
            let mb_per_s = written as f64 / start.elapsed().as_secs_f64() / 1e6;
            let appends = written / batch.len() as u64;
            let note = format!("{:.1} appends per fsync", appends as f64 / log.flush_count().max(1) as f64);
            figures.push((format!("append {label} batches, group commit, {writers} writers"), mb_per_s, note));
            log.close()?;
            drop(log);
            std::fs::remove_dir_all(&dir)?;
        }
    }
    figures.extend(read_figure);
    Ok(figures)
}

fn open(dir: &Path, flusher: &Flusher) -> anyhow::Result<Arc<Log>> {
    // Segments of Kafka's default size; time-based rolling and retention out of the way.
    let config = LogConfig { retention_ms: -1, ..LogConfig::default() };
    let (log, _) = Log::open(dir, config, LogContext { clock: Arc::new(SystemClock), flusher: flusher.handle() })?;
    Ok(log)
}

/// One batch of `record_bytes`-sized records, about `batch_bytes` long.
fn template_batch(batch_bytes: usize, record_bytes: usize) -> anyhow::Result<Vec<u8>> {
    let value: Vec<u8> = (0..record_bytes).map(|i| (i * 31 % 251) as u8).collect();
    let mut builder = BatchBuilder::new(Compression::None);
    let now = SystemClockNow::now();
    while builder.estimated_size() + record_bytes + 16 <= batch_bytes {
        builder.append(NewRecord { timestamp: now, key: None, value: Some(&value), headers: &[] });
    }
    Ok(builder.build()?)
}

struct SystemClockNow;
impl SystemClockNow {
    fn now() -> i64 {
        use headwater_core::log::Clock;
        SystemClock.now_ms()
    }
}

fn read_mb_per_s(log: &Log) -> anyhow::Result<f64> {
    let mut sink = vec![0u8; 2 << 20];
    let mut offset = log.log_start();
    let mut bytes = 0u64;
    let start = Instant::now();
    while offset < log.log_end() {
        let read = log.read(offset, None, 1 << 20)?;
        let records = &read.records;
        // A copy, as a socket write would make.
        sink[..records.len()].copy_from_slice(records);
        std::hint::black_box(&sink);
        bytes += records.len() as u64;
        offset = last_next_offset(records);
    }
    assert_eq!(offset, log.log_end(), "read the whole log");
    Ok(bytes as f64 / start.elapsed().as_secs_f64() / 1e6)
}

fn last_next_offset(records: &[u8]) -> i64 {
    let mut next = 0;
    for batch in headwater_core::record::BatchIter::new(records) {
        next = batch.expect("whole batches").next_offset();
    }
    next
}

fn dd_mb_per_s(dir: &Path, mib: u64) -> anyhow::Result<f64> {
    let file = dir.join("dd.out");
    let start = Instant::now();
    let status = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", file.display()))
        .args(["bs=1M", &format!("count={mib}"), "conv=fdatasync", "status=none"])
        .status()
        .context("run dd")?;
    let elapsed = start.elapsed().as_secs_f64();
    if !status.success() {
        bail!("dd failed: {status}");
    }
    std::fs::remove_file(&file)?;
    Ok((mib << 20) as f64 / elapsed / 1e6)
}
