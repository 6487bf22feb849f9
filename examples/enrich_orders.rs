//! Enrich orders: each order joined with its customer's latest record.
//!
//! Run: `cargo run --release -p headwater-examples --example enrich_orders -- --bootstrap HOST:PORT
//!       --app-id enrich --orders orders --customers customers --output enriched-orders`

use clap::Parser;
use headwater_examples::{Target, enrich_orders, init_logging};
use headwater_streams::KafkaStreams;

#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    target: Target,
    #[arg(long, default_value = "orders")]
    orders: String,
    #[arg(long, default_value = "customers")]
    customers: String,
    #[arg(long, default_value = "enriched-orders")]
    output: String,
}

fn main() -> anyhow::Result<()> {
    init_logging();
    let args = Args::parse();
    let topology = enrich_orders::topology(&args.orders, &args.customers, &args.output)?;
    eprintln!("{topology}");
    KafkaStreams::start(topology, args.target.config()?)?.run_until_signal()?;
    Ok(())
}
