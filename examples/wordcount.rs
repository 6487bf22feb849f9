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
//! `--exactly-once` runs it under exactly_once_v2: a crash neither loses nor repeats a
//! count, as read_committed consumers of the output see it.

use clap::Parser;
use headwater_examples::{Target, init_logging, wordcount};
use headwater_streams::KafkaStreams;

#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    target: Target,
    #[arg(long)]
    input: String,
    #[arg(long)]
    output: String,
    /// `num.stream.threads`.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn main() -> anyhow::Result<()> {
    init_logging();
    let args = Args::parse();
    let topology = wordcount::topology(&args.input, &args.output)?;
    eprintln!("{topology}");
    let config = args.target.config()?.num_stream_threads(args.threads);
    let streams = KafkaStreams::start(topology, config)?;
    streams.run_until_signal()?;
    Ok(())
}
