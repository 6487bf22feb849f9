//! Micro-benchmarks of the log's in-process paths: an append to the page cache (no
//! flush) and a read of one batch from a sealed (mapped) segment.

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use headwater_core::log::{Flusher, Log, LogConfig, LogContext, SystemClock};
use headwater_core::record::{BatchBuilder, Compression, NewRecord};

fn batch() -> Vec<u8> {
    let value = vec![7u8; 1024];
    let mut builder = BatchBuilder::new(Compression::None);
    for i in 0..16 {
        builder.append(NewRecord { timestamp: i, key: None, value: Some(&value), headers: &[] });
    }
    builder.build().unwrap()
}

fn log_paths(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let flusher = Flusher::start();
    let config = LogConfig { segment_bytes: 64 << 20, retention_ms: -1, ..LogConfig::default() };
    let (log, _) =
        Log::open(dir.path(), config, LogContext { clock: Arc::new(SystemClock), flusher: flusher.handle() }).unwrap();
    let bytes = batch();
    let mut group = c.benchmark_group("log");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("append_16k_batch_no_flush", |b| b.iter(|| log.append(&bytes, 0).unwrap().last_offset));
    log.force_roll().unwrap();
    let end = log.log_end();
    let mut i = 0i64;
    group.bench_function("read_one_batch_sealed_segment", |b| {
        b.iter(|| {
            i = (i + 16 * 97) % (end - 16);
            log.read(i, None, 16 << 10).unwrap().records.len()
        })
    });
    group.finish();
}

criterion_group!(benches, log_paths);
criterion_main!(benches);
