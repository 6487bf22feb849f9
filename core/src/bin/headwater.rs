//! The `headwater` command line. Today it has the log tools; `serve` and the client
//! commands arrive with the broker.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use headwater_core::record::{BatchIter, RecordBatch};

#[derive(Debug, Parser)]
#[command(
    name = "headwater",
    version,
    about = "Headwater: a stream-processing framework with its own Kafka-compatible log"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect log files on disk.
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
}

#[derive(Debug, Subcommand)]
enum LogCommand {
    /// Print the batches of a segment file (or of every segment in a partition
    /// directory), checking each CRC, like Kafka's kafka-dump-log.
    Dump {
        /// A `.log` segment file or a `<topic>-<partition>` directory.
        path: PathBuf,
        /// Print every record's offset, timestamp, key and value size too.
        #[arg(long)]
        records: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Log { command: LogCommand::Dump { path, records } } => dump(&path, records),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("headwater: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn dump(path: &Path, records: bool) -> anyhow::Result<()> {
    let segments = if path.is_dir() {
        let mut segments: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot list {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        segments.sort();
        segments
    } else {
        vec![path.to_path_buf()]
    };
    if segments.is_empty() {
        bail!("no .log segment files in {}", path.display());
    }
    let mut bad = 0;
    for segment in segments {
        let bytes = std::fs::read(&segment).with_context(|| format!("cannot read {}", segment.display()))?;
        println!("segment {} ({} bytes)", segment.display(), bytes.len());
        let mut position = 0usize;
        for batch in BatchIter::new(&bytes) {
            let batch = match batch {
                Ok(batch) => batch,
                Err(error) => {
                    println!("  position {position}: {error}; the rest of the segment is unreadable");
                    bad += 1;
                    break;
                }
            };
            print_batch(position, &batch, records);
            if batch.validate().is_err() {
                bad += 1;
            }
            position += batch.size();
        }
    }
    if bad > 0 {
        bail!("{bad} invalid batch(es)");
    }
    Ok(())
}

fn print_batch(position: usize, batch: &RecordBatch<'_>, records: bool) {
    let validity = match batch.validate() {
        Ok(()) => "valid".to_string(),
        Err(error) => error.to_string(),
    };
    println!(
        "  offsets {}..={} position {position} size {} count {} codec {} max_timestamp {} producer {}/{} seq {} epoch {}{}{} {validity}",
        batch.base_offset(),
        batch.last_offset(),
        batch.size(),
        batch.records_count(),
        batch.compression().map_or("unknown", |c| c.name()),
        batch.max_timestamp(),
        batch.producer_id(),
        batch.producer_epoch(),
        batch.base_sequence(),
        batch.partition_leader_epoch(),
        if batch.is_transactional() { " transactional" } else { "" },
        if batch.is_control() { " control" } else { "" },
    );
    if !records {
        return;
    }
    match batch.records(64 << 20) {
        Ok(decoded) => {
            for record in decoded.iter() {
                match record {
                    Ok(r) => println!(
                        "    offset {} timestamp {} key {} value {} headers {}",
                        r.offset,
                        r.timestamp,
                        r.key.map_or("null".into(), |k| format!("{:?}", String::from_utf8_lossy(k))),
                        r.value.map_or("null".into(), |v| format!("{} bytes", v.len())),
                        r.headers.len()
                    ),
                    Err(error) => println!("    {error}"),
                }
            }
        }
        Err(error) => println!("    records unreadable: {error}"),
    }
}
