//! `streams-bench`: records per second per core of Headwater Streams pipelines, beside
//! the rate at which the same records are merely read, measured in the same run.
//!
//! Pipelines, each over one input partition (one task, one stream thread):
//! - **stateless**: `filter` then `map_values` then `to`;
//! - **tumbling count**: `group_by_key`, 1 s tumbling windows, `count`, results to a
//!   topic on every update; and the same with emit-final.
//!
//! Records have 1000 distinct UTF-8 keys and an 8-byte value, ten per millisecond of
//! event time. Embedded: the log is in this process. Broker: a `headwater serve` from
//! the same target directory, on loopback; the broker's CPU is not counted.
//! "Per core" divides by the CPU time this process spent while the pipeline ran.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use headwater_core::client::{Consumer, ConsumerConfig, OffsetReset, Producer, ProducerConfig, decode_records};
use headwater_streams::serde::{I64, Utf8};
use headwater_streams::{
    Consumed, EmbeddedLog, EmitStrategy, Grouped, KafkaStreams, Materialized, Produced, StreamsBuilder, StreamsConfig,
    TimeWindows, Topology,
};

#[derive(Debug, Parser)]
#[command(about = "Measure Headwater Streams pipelines beside a plain read of the same records")]
struct Args {
    /// Records per embedded run.
    #[arg(long, default_value_t = 4_000_000)]
    records: u64,
    /// Records per broker run (0: skip the broker).
    #[arg(long, default_value_t = 1_000_000)]
    broker_records: u64,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    dir: PathBuf,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Pipeline {
    Stateless,
    TumblingCount,
    TumblingCountFinal,
}

impl Pipeline {
    fn name(self) -> &'static str {
        match self {
            Self::Stateless => "stateless filter/map_values/to",
            Self::TumblingCount => "tumbling 1 s count, emit on update",
            Self::TumblingCountFinal => "tumbling 1 s count, emit final",
        }
    }

    fn topology(self) -> anyhow::Result<Topology> {
        let builder = StreamsBuilder::new();
        let input = builder.stream("input", Consumed::with(Utf8, I64));
        match self {
            Self::Stateless => {
                input.filter(|_, v| v % 3 != 0).map_values(|v| v * 2).to("output", Produced::with(Utf8, I64));
            }
            Self::TumblingCount | Self::TumblingCountFinal => {
                let emit = if self == Self::TumblingCount {
                    EmitStrategy::OnWindowUpdate
                } else {
                    EmitStrategy::OnWindowClose
                };
                input
                    .group_by_key(Grouped::with(Utf8, I64))
                    .windowed_by(TimeWindows::of(Duration::from_secs(1)))
                    .emit(emit)
                    .count(Materialized::as_store("counts"))
                    .to_stream()
                    .map(|k, c| (k.key, c))
                    .to("output", Produced::with(Utf8, I64));
            }
        }
        Ok(builder.build()?)
    }
}

const PIPELINES: [Pipeline; 3] = [Pipeline::Stateless, Pipeline::TumblingCount, Pipeline::TumblingCountFinal];
const KEYS: u64 = 1000;

fn record(i: u64) -> (String, [u8; 8], i64) {
    (format!("key-{:04}", i % KEYS), (i as i64).to_be_bytes(), 1_700_000_000_000 + (i / 10) as i64)
}

/// CPU seconds this process has used.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    per_second: f64,
    per_cpu_second: f64,
}

/// Runs `topology` until it has processed `n` records. The clock starts at the first
/// processed record, so joining the group (a new group waits 3 s for members, as Kafka
/// does) and starting the task are not counted.
fn run_pipeline(topology: Topology, config: StreamsConfig, n: u64) -> anyhow::Result<Sample> {
    let streams = KafkaStreams::start(topology, config)?;
    let processed = |streams: &KafkaStreams| -> u64 {
        streams.task_metrics().iter().filter(|t| t.task.starts_with("0_")).map(|t| t.records_processed).sum()
    };
    let mut started = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done = processed(&streams);
        if started.is_none() && done > 0 {
            started = Some((Instant::now(), cpu_seconds(), done));
        }
        if done >= n {
            break;
        }
        if Instant::now() > deadline || !streams.is_running() {
            bail!("the pipeline did not finish: {:?}", streams.failure());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let (wall, cpu, first) = started.expect("records were processed");
    let (elapsed, cpu) = (wall.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    streams.close()?;
    let counted = (n - first) as f64;
    Ok(Sample { per_second: counted / elapsed, per_cpu_second: counted / cpu })
}

fn embedded_round(args: &Args, results: &mut BTreeMap<String, Vec<Sample>>) -> anyhow::Result<()> {
    let dir = tempfile::tempdir_in(&args.dir)?;
    let log = EmbeddedLog::open(dir.path())?;
    log.create_topic("input", 1, BTreeMap::new())?;
    let mut i = 0;
    while i < args.records {
        let chunk: Vec<_> = (i..(i + 10_000).min(args.records)).map(record).collect();
        let raw: Vec<_> = chunk.iter().map(|(k, v, t)| (Some(k.as_bytes()), Some(&v[..]), *t)).collect();
        log.append("input", 0, &raw)?;
        i += chunk.len() as u64;
    }
    // The limit: the same records read and decoded, nothing else.
    let input = log.logs().get("input", 0)?;
    let (wall, cpu) = (Instant::now(), cpu_seconds());
    let (mut offset, mut count, name) = (0, 0u64, Arc::from("input"));
    while offset < input.log_end() {
        let read = input.read(offset, None, 1 << 20)?;
        let (records, next) = decode_records(&name, 0, offset, &read.records)?;
        count += records.len() as u64;
        offset = next;
    }
    anyhow::ensure!(count == args.records, "read {count} of {} records", args.records);
    let (elapsed, cpu) = (wall.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    results
        .entry("embedded: read and decode only (the limit)".into())
        .or_default()
        .push(Sample { per_second: count as f64 / elapsed, per_cpu_second: count as f64 / cpu });
    for (n, pipeline) in PIPELINES.iter().enumerate() {
        let state = tempfile::tempdir_in(&args.dir)?;
        let config = StreamsConfig::embedded(&format!("bench-{n}"), log.clone()).state_dir(state.path());
        log.create_topic("output", 1, BTreeMap::new())?;
        let sample = run_pipeline(pipeline.topology()?, config, args.records)?;
        log.logs().delete_topic("output")?;
        results.entry(format!("embedded: {}", pipeline.name())).or_default().push(sample);
    }
    Ok(())
}

fn broker_round(args: &Args, results: &mut BTreeMap<String, Vec<Sample>>) -> anyhow::Result<()> {
    let data = tempfile::tempdir_in(&args.dir)?;
    let exe = std::env::current_exe()?;
    let headwater = exe.parent().context("bench dir")?.join("headwater");
    let mut broker = Command::new(&headwater)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| {
            format!("start {} (build it: cargo build --release -p headwater-core)", headwater.display())
        })?;
    let mut lines = BufReader::new(broker.stdout.take().context("stdout")?).lines();
    let bootstrap = loop {
        let line = lines.next().context("broker exited")??;
        if let Some(rest) = line.strip_prefix("headwater listening on ") {
            break rest.split(' ').next().context("address")?.to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let n = args.broker_records;
    let outcome = (|| -> anyhow::Result<()> {
        runtime.block_on(async {
            let admin = headwater_core::client::Admin::connect(&bootstrap).await?;
            admin.create_topic("input", 1, &BTreeMap::new()).await?;
            // The write limit: the same records produced with the streams producer's settings.
            let (wall, cpu) = (Instant::now(), cpu_seconds());
            let producer = Producer::connect(ProducerConfig {
                bootstrap: bootstrap.clone(),
                linger: Duration::from_millis(20),
                batch_bytes: 512 << 10,
                ..ProducerConfig::default()
            })
            .await?;
            let mut last = None;
            for i in 0..n {
                let (k, v, t) = record(i);
                last = Some(
                    producer
                        .send_record(headwater_core::client::ProducerRecord {
                            topic: "input",
                            partition: Some(0),
                            timestamp: Some(t),
                            key: Some(Bytes::from(k)),
                            value: Some(Bytes::copy_from_slice(&v)),
                            headers: Vec::new(),
                        })
                        .await?,
                );
            }
            producer.flush().await?;
            if let Some(last) = last {
                last.await?;
            }
            let (elapsed, cpu) = (wall.elapsed().as_secs_f64(), cpu_seconds() - cpu);
            results
                .entry("broker: produce only, acks=all (the write limit)".into())
                .or_default()
                .push(Sample { per_second: n as f64 / elapsed, per_cpu_second: n as f64 / cpu });
            // The limit: a consumer reading the same records, nothing else.
            let (wall, cpu) = (Instant::now(), cpu_seconds());
            let mut consumer = Consumer::connect(ConsumerConfig {
                bootstrap: bootstrap.clone(),
                auto_offset_reset: OffsetReset::Earliest,
                ..ConsumerConfig::default()
            })
            .await?;
            consumer.assign([("input".to_string(), 0)]);
            let mut count = 0u64;
            while count < n {
                count += consumer.poll().await?.len() as u64;
            }
            let (elapsed, cpu) = (wall.elapsed().as_secs_f64(), cpu_seconds() - cpu);
            results
                .entry("broker: consumer read only (the limit)".into())
                .or_default()
                .push(Sample { per_second: count as f64 / elapsed, per_cpu_second: count as f64 / cpu });
            anyhow::Ok(())
        })?;
        for (i, pipeline) in PIPELINES.iter().enumerate() {
            let state = tempfile::tempdir_in(&args.dir)?;
            let config = StreamsConfig::new(&format!("bench-{i}"), &bootstrap).state_dir(state.path());
            let sample = run_pipeline(pipeline.topology()?, config, n)?;
            results.entry(format!("broker: {}", pipeline.name())).or_default().push(sample);
        }
        // The same pipelines under exactly_once_v2: a transaction per 100 ms commit, every
        // consumer at read_committed.
        for (i, pipeline) in [Pipeline::Stateless, Pipeline::TumblingCount].iter().enumerate() {
            let state = tempfile::tempdir_in(&args.dir)?;
            let config =
                StreamsConfig::new(&format!("bench-eos-{i}"), &bootstrap).state_dir(state.path()).exactly_once();
            let sample = run_pipeline(pipeline.topology()?, config, n)?;
            results.entry(format!("broker, exactly once: {}", pipeline.name())).or_default().push(sample);
        }
        Ok(())
    })();
    let _ = broker.kill();
    let _ = broker.wait();
    outcome
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut results: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    for _ in 0..args.rounds {
        embedded_round(&args, &mut results)?;
        if args.broker_records > 0 {
            broker_round(&args, &mut results)?;
        }
    }
    if args.json {
        let rows: Vec<String> = results
            .iter()
            .map(|(name, samples)| {
                let mut per_s: Vec<f64> = samples.iter().map(|s| s.per_second).collect();
                let mut per_cpu: Vec<f64> = samples.iter().map(|s| s.per_cpu_second).collect();
                format!(
                    "\"{name}\":{{\"records_per_s\":{:.0},\"records_per_cpu_s\":{:.0}}}",
                    median(&mut per_s),
                    median(&mut per_cpu)
                )
            })
            .collect();
        println!("{{{}}}", rows.join(","));
        return Ok(());
    }
    println!(
        "streams-bench: {} embedded / {} broker records per run, {} rounds (median, min-max)",
        args.records, args.broker_records, args.rounds
    );
    for (name, samples) in &results {
        let mut per_s: Vec<f64> = samples.iter().map(|s| s.per_second).collect();
        let mut per_cpu: Vec<f64> = samples.iter().map(|s| s.per_cpu_second).collect();
        let (lo, hi) = (per_s.iter().copied().fold(f64::MAX, f64::min), per_s.iter().copied().fold(0.0, f64::max));
        println!(
            "{name:<52} {:>10.0} rec/s ({lo:.0}-{hi:.0})  {:>10.0} rec/CPU-s",
            median(&mut per_s),
            median(&mut per_cpu)
        );
    }
    Ok(())
}
