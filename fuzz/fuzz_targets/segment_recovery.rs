//! Arbitrary bytes after a valid prefix in the last segment, and an arbitrary index:
//! opening the log must not panic, must keep the valid prefix, and must never serve a
//! batch that fails validation. Half the inputs append a CRC-valid batch whose offsets
//! (base offset, last offset delta) come from the input, so the offset checks of
//! recovery are reached, not only the CRC check.
#![no_main]

use std::sync::{Arc, OnceLock};

use headwater_core::log::{Flusher, Log, LogConfig, LogContext, SystemClock};
use headwater_core::record::{BatchBuilder, BatchIter, Compression, NewRecord};
use libfuzzer_sys::fuzz_target;

fn prefix() -> &'static Vec<u8> {
    static PREFIX: OnceLock<Vec<u8>> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let mut out = Vec::new();
        for i in 0..3i64 {
            let mut builder = BatchBuilder::new(Compression::None).base_offset(i * 2);
            for j in 0..2 {
                builder.append(NewRecord { timestamp: i * 10 + j, key: Some(b"k"), value: Some(b"value"), headers: &[] });
            }
            out.extend(builder.build().unwrap());
        }
        out
    })
}

fuzz_target!(|data: &[u8]| {
    let (tail, index) = data.split_at(data.len() / 2);
    let dir = tempfile::tempdir().unwrap();
    let mut segment = prefix().clone();
    match tail {
        [0, rest @ ..] if rest.len() >= 12 => {
            let base = i64::from_be_bytes(rest[..8].try_into().unwrap());
            let delta = i32::from_be_bytes(rest[8..12].try_into().unwrap());
            let mut builder = BatchBuilder::new(Compression::None).base_offset(base);
            builder.append(NewRecord { timestamp: 1, key: None, value: Some(&rest[12..]), headers: &[] });
            let mut batch = builder.build().unwrap();
            batch[23..27].copy_from_slice(&delta.to_be_bytes());
            let crc = crc32c::crc32c(&batch[21..]);
            batch[17..21].copy_from_slice(&crc.to_be_bytes());
            segment.extend_from_slice(&batch);
        }
        _ => segment.extend_from_slice(tail),
    }
    std::fs::write(dir.path().join(format!("{:020}.log", 0)), &segment).unwrap();
    std::fs::write(dir.path().join(format!("{:020}.index", 0)), index).unwrap();
    let flusher = Flusher::start();
    let context = LogContext { clock: Arc::new(SystemClock), flusher: flusher.handle() };
    let (log, _) = Log::open(dir.path(), LogConfig::default(), context).unwrap();
    assert!(log.log_end() >= 6, "the valid prefix survives");
    let mut offset = 0;
    while offset < log.log_end() {
        let read = log.read(offset, None, 1 << 20).unwrap();
        assert!(!read.records.is_empty());
        for batch in BatchIter::new(&read.records) {
            let batch = batch.unwrap();
            batch.validate().unwrap();
            assert!(batch.base_offset() >= offset);
            offset = batch.next_offset();
        }
    }
});
