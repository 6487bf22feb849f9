//! Model-based property test of the log's offset math: random appends across many small
//! segments, reads at random offsets with random byte limits and upper bounds, a reopen
//! in the middle; every answer is checked against a plain in-memory model.

mod common;

use common::*;
use headwater_core::log::LogConfig;
use headwater_core::record::BatchIter;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append { records: usize, value_bytes: usize },
    Read { offset_seed: u32, max_bytes: usize, bound_seed: Option<u32> },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..6, 0usize..700).prop_map(|(records, value_bytes)| Op::Append { records, value_bytes }),
        3 => (any::<u32>(), 1usize..5000, proptest::option::of(any::<u32>()))
            .prop_map(|(offset_seed, max_bytes, bound_seed)| Op::Read { offset_seed, max_bytes, bound_seed }),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn reads_agree_with_a_model(segment_bytes in 200u32..3000, interval in 0u32..600, ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig { segment_bytes, index_interval_bytes: interval, ..LogConfig::default() };
        let mut t = open_log_system_clock(dir.path(), config.clone());
        // The model: every record's value, by offset; and each batch's (first, last).
        let mut values: Vec<String> = Vec::new();
        let mut batches: Vec<(i64, i64)> = Vec::new();
        for op in ops {
            match op {
                Op::Append { records, value_bytes } => {
                    let vals: Vec<String> = (0..records).map(|r| format!("{}-{r}-{}", values.len(), "v".repeat(value_bytes))).collect();
                    let refs: Vec<&str> = vals.iter().map(String::as_str).collect();
                    let info = t.log.append(&batch(&refs, 1), 0).unwrap();
                    prop_assert_eq!(info.first_offset, values.len() as i64);
                    prop_assert_eq!(info.last_offset, (values.len() + records - 1) as i64);
                    batches.push((info.first_offset, info.last_offset));
                    values.extend(vals);
                }
                Op::Read { offset_seed, max_bytes, bound_seed } => {
                    let end = values.len() as i64;
                    let offset = i64::from(offset_seed) % (end + 1);
                    let bound = bound_seed.map(|b| i64::from(b) % (end + 1));
                    let read = t.log.read(offset, bound, max_bytes).unwrap();
                    let limit = bound.unwrap_or(end);
                    // Expected: batches from the one holding `offset`, all below `limit`.
                    let first = batches.iter().position(|&(_, last)| last >= offset);
                    let got: Vec<(i64, i64)> = BatchIter::new(&read.records).map(|b| {
                        let b = b.unwrap();
                        b.validate().unwrap();
                        (b.base_offset(), b.last_offset())
                    }).collect();
                    match first {
                        Some(i) if batches[i].1 < limit => {
                            prop_assert!(!got.is_empty(), "offset {} limit {} got nothing", offset, limit);
                            prop_assert_eq!(got[0], batches[i], "starts with the batch holding the offset");
                            prop_assert_eq!(&got[..], &batches[i..i + got.len()], "consecutive batches");
                            prop_assert!(got.iter().all(|&(_, last)| last < limit));
                            prop_assert!(got.len() == 1 || read.records.len() <= max_bytes, "over max_bytes");
                        }
                        _ => prop_assert!(got.is_empty(), "offset {} limit {}: expected nothing, got {:?}", offset, limit, got),
                    }
                    for (o, _, v) in records(&read.records) {
                        prop_assert_eq!(v.as_deref(), Some(values[o as usize].as_str()));
                    }
                }
                Op::Reopen => {
                    t.log.close().unwrap();
                    drop(t);
                    t = open_log_system_clock(dir.path(), config.clone());
                    prop_assert_eq!(t.log.log_end(), values.len() as i64);
                }
            }
        }
        let all = read_all(&t.log);
        prop_assert_eq!(all.len(), values.len());
        for (o, _, v) in all {
            prop_assert_eq!(v.as_deref(), Some(values[o as usize].as_str()));
        }
    }
}
