//! The embedded log: topics and partitions on local disk, in-process, no server.
//!
//! Run: `cargo run -p headwater-examples --example embedded_log`

use std::collections::BTreeMap;

use headwater_core::log::{LogManager, LogManagerOptions};
use headwater_core::record::{BatchBuilder, BatchIter, Compression, NewRecord};

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let manager = LogManager::open(dir.path(), LogManagerOptions::default())?;
    let config = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
    manager.create_topic("users", 3, config)?;

    // A producer-style batch: two keyed records, zstd-compressed.
    let mut builder = BatchBuilder::new(Compression::Zstd);
    builder.append(NewRecord {
        timestamp: 1_700_000_000_000,
        key: Some(b"alice"),
        value: Some(b"{\"age\":30}"),
        headers: &[],
    });
    builder.append(NewRecord {
        timestamp: 1_700_000_000_001,
        key: Some(b"bob"),
        value: Some(b"{\"age\":41}"),
        headers: &[],
    });
    let batch = builder.build()?;

    let log = manager.get("users", 0)?;
    let appended = log.append(&batch, 0)?;
    // Wait until the batch is on disk: what an acks=all producer would wait for.
    log.wait_flushed_blocking(appended.last_offset + 1)?;
    println!("appended offsets {}..={}", appended.first_offset, appended.last_offset);

    let read = log.read(0, None, 1 << 20)?;
    for batch in BatchIter::new(&read.records) {
        for record in batch?.records(1 << 20)?.iter() {
            let record = record?;
            println!(
                "offset {} key {} value {}",
                record.offset,
                String::from_utf8_lossy(record.key.unwrap_or_default()),
                String::from_utf8_lossy(record.value.unwrap_or_default())
            );
        }
    }
    manager.close()?;
    Ok(())
}
