//! Windowed clicks: JSON click events in, final per-page-minute counts and per-session
//! counts out, both in event time with a grace period for late clicks.
//!
//! Run: `cargo run --release -p headwater-examples --example windowed_clicks -- --bootstrap HOST:PORT
//!       --app-id clicks --input clicks --pages page-minutes --sessions user-sessions`

use clap::Parser;
use headwater_examples::{Target, init_logging, windowed_clicks};
use headwater_streams::KafkaStreams;

#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    target: Target,
    #[arg(long, default_value = "clicks")]
    input: String,
    #[arg(long, default_value = "page-minutes")]
    pages: String,
    #[arg(long, default_value = "user-sessions")]
    sessions: String,
}

fn main() -> anyhow::Result<()> {
    init_logging();
    let args = Args::parse();
    let topology = windowed_clicks::topology(&args.input, &args.pages, &args.sessions)?;
    eprintln!("{topology}");
    KafkaStreams::start(topology, args.target.config()?)?.run_until_signal()?;
    Ok(())
}
