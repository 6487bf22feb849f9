//! Micro-benchmarks of the batch codec's hot paths: header + CRC validation (every
//! append), record iteration (compaction, timestamp lookup), and building (clients).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use headwater_core::record::{BatchBuilder, Compression, NewRecord, RecordBatch};

fn batch(records: usize, codec: Compression) -> Vec<u8> {
    let value = vec![7u8; 1024];
    let mut builder = BatchBuilder::new(codec);
    for i in 0..records {
        builder.append(NewRecord { timestamp: i as i64, key: Some(b"key"), value: Some(&value), headers: &[] });
    }
    builder.build().unwrap()
}

fn validate(c: &mut Criterion) {
    let bytes = batch(16, Compression::None);
    let mut group = c.benchmark_group("record");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("parse_and_validate_16k_batch", |b| {
        b.iter(|| RecordBatch::parse(std::hint::black_box(&bytes)).unwrap().records_count())
    });
    group.bench_function("iterate_16_records", |b| {
        b.iter(|| {
            let batch = RecordBatch::parse(&bytes).unwrap();
            batch.records(1 << 20).unwrap().iter().map(|r| r.unwrap().value.unwrap().len()).sum::<usize>()
        })
    });
    let lz4 = batch(16, Compression::Lz4);
    group.bench_function("iterate_16_records_lz4", |b| {
        b.iter(|| {
            let batch = RecordBatch::parse(&lz4).unwrap();
            batch.records(1 << 20).unwrap().iter().map(|r| r.unwrap().value.unwrap().len()).sum::<usize>()
        })
    });
    group.bench_function("build_16_records", |b| b.iter(|| batch(16, Compression::None).len()));
    group.finish();
}

criterion_group!(benches, validate);
criterion_main!(benches);
