//! Any bytes through the batch parser, validator and record iterator: errors are fine,
//! panics and unbounded allocation are not.
#![no_main]

use headwater_core::record::{BatchIter, RecordBatch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for batch in BatchIter::new(data) {
        let Ok(batch) = batch else { break };
        let valid = batch.validate().is_ok();
        let _ = (batch.last_offset(), batch.max_timestamp(), batch.compression());
        // Decompression is bounded: 1 MiB here.
        if let Ok(records) = batch.records(1 << 20) {
            for record in records.iter() {
                let Ok(record) = record else { break };
                let _ = record.headers.iter().count();
            }
        }
        if valid {
            assert!(RecordBatch::parse(batch.as_bytes()).is_ok());
        }
    }
});
