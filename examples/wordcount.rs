//! Word count: the stream job every stream processor starts with.
//!
//! Reads lines of text, splits them on whitespace, lowercases the words, counts each
//! word, and writes key = the word (UTF-8) and value = its count as a decimal UTF-8
//! string. The counts live in a persistent store under `--state-dir`, backed by a
//! changelog topic, so a restart or a second instance carries on exactly.
//!
//! Run: `cargo run --release -p headwater-examples --example wordcount -- --bootstrap HOST:PORT
//!       --input TOPIC --output TOPIC --app-id ID --state-dir DIR` (SIGTERM stops it cleanly),
//! or with `--embedded-dir DIR` instead of `--bootstrap` to run on an embedded log.

use std::path::PathBuf;

use clap::Parser;
use headwater_streams::serde::{I64Text, Unit, Utf8};
use headwater_streams::{
    Consumed, EmbeddedLog, Grouped, KafkaStreams, Materialized, Produced, StreamsBuilder, StreamsConfig, Topology,
};

#[derive(Debug, Parser)]
struct Args {
    /// Broker to run against.
    #[arg(long, required_unless_present = "embedded_dir")]
    bootstrap: Option<String>,
    /// Run on an embedded log in this directory instead of a broker.
    #[arg(long, conflicts_with = "bootstrap")]
    embedded_dir: Option<PathBuf>,
    #[arg(long)]
    input: String,
    #[arg(long)]
    output: String,
    #[arg(long, default_value = "wordcount")]
    app_id: String,
    #[arg(long, default_value = "/tmp/headwater-streams")]
    state_dir: PathBuf,
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn topology(input: &str, output: &str) -> anyhow::Result<Topology> {
    let builder = StreamsBuilder::new();
    builder
        .stream(input, Consumed::with(Unit, Utf8))
        .flat_map_values(|line: String| line.split_whitespace().map(str::to_lowercase).collect::<Vec<_>>())
        .group_by(|_, word: &String| word.clone(), Grouped::with(Utf8, Utf8).named("words"))
        .count(Materialized::as_store("word-counts").persistent())
        .to_stream()
        .to(output, Produced::with(Utf8, I64Text));
    Ok(builder.build()?)
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let topology = topology(&args.input, &args.output)?;
    let config = match (&args.bootstrap, &args.embedded_dir) {
        (Some(bootstrap), _) => StreamsConfig::new(&args.app_id, bootstrap),
        (None, Some(dir)) => StreamsConfig::embedded(&args.app_id, EmbeddedLog::open(dir)?),
        (None, None) => anyhow::bail!("give --bootstrap or --embedded-dir"),
    };
    let config = config.state_dir(&args.state_dir).num_stream_threads(args.threads);
    eprintln!("{topology}");
    let streams = KafkaStreams::start(topology, config)?;
    println!("wordcount running");
    streams.run_until_signal()?;
    println!("wordcount stopped");
    Ok(())
}
