//! Helpers shared by the core crate's integration tests.
#![allow(dead_code)]

pub mod cluster;
pub mod server;

use std::path::Path;
use std::sync::Arc;

use headwater_core::log::{Clock, Flusher, Log, LogConfig, LogContext, ManualClock, RecoveryReport, SystemClock};
use headwater_core::record::{BatchBuilder, BatchIter, Compression, NewRecord, RecordBatch};

/// A log with its own flusher; the flusher must outlive the log's use.
pub struct TestLog {
    pub log: Arc<Log>,
    pub flusher: Flusher,
}

pub fn open_log(dir: &Path, config: LogConfig, clock: Arc<dyn Clock>) -> TestLog {
    let flusher = Flusher::start();
    let (log, _) = Log::open(dir, config, LogContext { clock, flusher: flusher.handle() }).expect("open log");
    TestLog { log, flusher }
}

/// Opens with the system clock and returns what recovery did.
pub fn open_log_with_report(dir: &Path, config: LogConfig) -> (TestLog, RecoveryReport) {
    let flusher = Flusher::start();
    let (log, report) = Log::open(dir, config, LogContext { clock: Arc::new(SystemClock), flusher: flusher.handle() })
        .expect("open log");
    (TestLog { log, flusher }, report)
}

pub fn open_log_system_clock(dir: &Path, config: LogConfig) -> TestLog {
    open_log(dir, config, Arc::new(SystemClock))
}

pub fn manual_clock(now_ms: i64) -> (ManualClock, Arc<dyn Clock>) {
    let clock = ManualClock::new(now_ms);
    (clock.clone(), Arc::new(clock))
}

/// A batch of `values`, keyless, all at `timestamp`.
pub fn batch(values: &[&str], timestamp: i64) -> Vec<u8> {
    keyed_batch(&values.iter().map(|v| (None, Some(*v))).collect::<Vec<_>>(), timestamp, Compression::None)
}

/// A batch of `(key, value)` records (a `None` value is a tombstone).
pub fn keyed_batch(records: &[(Option<&str>, Option<&str>)], timestamp: i64, codec: Compression) -> Vec<u8> {
    let mut builder = BatchBuilder::new(codec);
    for (key, value) in records {
        builder.append(NewRecord {
            timestamp,
            key: key.map(str::as_bytes),
            value: value.map(str::as_bytes),
            headers: &[],
        });
    }
    builder.build().expect("build batch")
}

/// Every record in `bytes` as `(offset, key, value)`.
pub fn records(bytes: &[u8]) -> Vec<(i64, Option<String>, Option<String>)> {
    let mut out = Vec::new();
    for batch in BatchIter::new(bytes) {
        let batch = batch.expect("whole batch");
        batch.validate().expect("valid batch");
        let records = batch.records(1 << 26).expect("records");
        for record in records.iter() {
            let record = record.expect("record");
            let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8(b.to_vec()).expect("utf-8"));
            out.push((record.offset, text(record.key), text(record.value)));
        }
    }
    out
}

/// Reads the whole log from its start.
pub fn read_all(log: &Log) -> Vec<(i64, Option<String>, Option<String>)> {
    let mut out = Vec::new();
    let mut offset = log.log_start();
    loop {
        let read = log.read(offset, None, 1 << 20).expect("read");
        if read.records.is_empty() {
            return out;
        }
        let mut last = offset;
        for batch in BatchIter::new(&read.records) {
            last = batch.expect("whole batch").next_offset();
        }
        out.extend(records(&read.records).into_iter().filter(|(o, _, _)| *o >= offset));
        offset = last;
    }
}

pub fn first_batch(bytes: &[u8]) -> RecordBatch<'_> {
    BatchIter::new(bytes).next().expect("a batch").expect("whole batch")
}

/// `partition offset value` lines, as the producer scripts and kcat (`-f '%p %o %s\n'`)
/// write them.
pub fn parse_acknowledged(text: &str) -> Vec<(i32, i64, String)> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let mut fields = line.splitn(3, ' ');
            let partition = fields.next().unwrap().parse().unwrap();
            let offset = fields.next().unwrap().parse().unwrap();
            (partition, offset, fields.next().unwrap_or_default().to_string())
        })
        .collect()
}

/// Every record of `topic` read from the beginning by a real consumer (kcat), by
/// partition and offset.
pub fn consume_all(bootstrap: &str, topic: &str) -> std::collections::HashMap<(i32, i64), String> {
    let read = std::process::Command::new("kcat")
        .args(["-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%p %o %s\\n"])
        .output()
        .expect("run kcat");
    assert!(read.status.success(), "kcat failed: {}", String::from_utf8_lossy(&read.stderr));
    parse_acknowledged(&String::from_utf8_lossy(&read.stdout)).into_iter().map(|(p, o, v)| ((p, o), v)).collect()
}

/// Checks that every acknowledged record is in `consumed`, at its offset.
pub fn assert_all_consumed(acked: &[(i32, i64, String)], consumed: &std::collections::HashMap<(i32, i64), String>) {
    for (partition, offset, value) in acked {
        assert_eq!(consumed.get(&(*partition, *offset)), Some(value), "acknowledged record {partition}/{offset} lost");
    }
}
