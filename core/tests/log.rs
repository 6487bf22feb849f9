//! The log of one partition: append, read, roll, timestamps, retention, compaction,
//! durability and bad input.

mod common;

use std::sync::Arc;

use common::*;
use headwater_core::log::{LogConfig, LogError};
use headwater_core::record::{BatchIter, Compression};

fn small_segments(bytes: u32) -> LogConfig {
    LogConfig { segment_bytes: bytes, index_interval_bytes: 128, ..LogConfig::default() }
}

#[test]
fn append_assigns_offsets_and_stores_the_producers_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let t = open_log_system_clock(dir.path(), LogConfig::default());
    let first = batch(&["a", "b", "c"], 1000);
    let original = first.clone();
    let info = t.log.append(&first, 7).unwrap();
    assert_eq!((info.first_offset, info.last_offset), (0, 2));
    let info = t.log.append(&batch(&["d"], 1001), 7).unwrap();
    assert_eq!((info.first_offset, info.last_offset), (3, 3));
    assert_eq!(t.log.log_end(), 4);

    let read = t.log.read(0, None, 1 << 20).unwrap();
    let stored = first_batch(&read.records);
    assert_eq!(stored.base_offset(), 0);
    assert_eq!(stored.partition_leader_epoch(), 7);
    // Everything from the magic byte on is exactly what the producer sent.
    assert_eq!(&stored.as_bytes()[16..], &original[16..]);
    let all = read_all(&t.log);
    let values: Vec<_> = all.iter().map(|(o, _, v)| (*o, v.clone().unwrap())).collect();
    assert_eq!(values, vec![(0, "a".into()), (1, "b".into()), (2, "c".into()), (3, "d".into())]);
}

#[test]
fn several_batches_in_one_append_get_consecutive_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let t = open_log_system_clock(dir.path(), LogConfig::default());
    let mut both = batch(&["a", "b"], 1);
    both.extend(batch(&["c"], 2));
    let info = t.log.append(&both, 0).unwrap();
    assert_eq!((info.first_offset, info.last_offset), (0, 2));
    let offsets: Vec<_> = read_all(&t.log).into_iter().map(|(o, _, _)| o).collect();
    assert_eq!(offsets, vec![0, 1, 2]);
}

#[test]
fn a_read_from_inside_a_batch_returns_that_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let t = open_log_system_clock(dir.path(), LogConfig::default());
    t.log.append(&batch(&["a", "b", "c"], 1), 0).unwrap();
    let read = t.log.read(1, None, 1 << 20).unwrap();
    assert_eq!(first_batch(&read.records).base_offset(), 0);
}

#[test]
fn reads_honour_max_bytes_but_always_return_one_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let t = open_log_system_clock(dir.path(), LogConfig::default());
    let big = "x".repeat(1000);
    for _ in 0..10 {
        t.log.append(&batch(&[&big], 1), 0).unwrap();
    }
    let one = t.log.read(0, None, 10).unwrap();
    assert_eq!(BatchIter::new(&one.records).count(), 1, "a batch larger than max_bytes still comes back whole");
    let size = one.records.len();
    let three = t.log.read(0, None, size * 3 + size / 2).unwrap();
    assert_eq!(three.records.len(), size * 3, "cut at the last whole batch");
    assert!(BatchIter::new(&three.records).all(|b| b.unwrap().validate().is_ok()));
}

#[test]
fn reads_stop_below_max_offset() {
    let dir = tempfile::tempdir().unwrap();
    let t = open_log_system_clock(dir.path(), LogConfig::default());
    for i in 0..5 {
        t.log.append(&batch(&[&i.to_string()], 1), 0).unwrap();
    }
    let read = t.log.read(0, Some(3), 1 << 20).unwrap();
    let offsets: Vec<_> = records(&read.records).into_iter().map(|(o, _, _)| o).collect();
    assert_eq!(offsets, vec![0, 1, 2]);
    assert!(t.log.read(3, Some(3), 1 << 20).unwrap().records.is_empty());
}

#[test]
fn offsets_outside_the_log_are_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let t = open_log_system_clock(dir.path(), LogConfig::default());
    t.log.append(&batch(&["a"], 1), 0).unwrap();
    assert!(t.log.read(1, None, 100).unwrap().records.is_empty(), "the log end itself is a valid, empty read");
    assert!(matches!(
        t.log.read(2, None, 100),
        Err(LogError::OffsetOutOfRange { offset: 2, log_start: 0, log_end: 1 })
    ));
    assert!(matches!(t.log.read(-1, None, 100), Err(LogError::OffsetOutOfRange { .. })));
}

#[test]
fn segments_roll_on_segment_bytes_and_reads_cross_them() {
    let dir = tempfile::tempdir().unwrap();
    let t = open_log_system_clock(dir.path(), small_segments(4096));
    let value = "v".repeat(500);
    for _ in 0..40 {
        t.log.append(&batch(&[&value, &value], 1), 0).unwrap();
    }
    assert!(t.log.segment_count() > 5, "rolled into {} segments", t.log.segment_count());
    let bases = t.log.segment_bases();
    let names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(names.contains(&format!("{:020}.log", bases[1])), "{names:?}");
    assert!(names.contains(&format!("{:020}.index", bases[0])), "{names:?}");
    let offsets: Vec<_> = read_all(&t.log).into_iter().map(|(o, _, _)| o).collect();
    assert_eq!(offsets, (0..80).collect::<Vec<_>>());
    for offset in [0, 17, 39, 40, 41, 79] {
        let read = t.log.read(offset, None, 1).unwrap();
        let batch = first_batch(&read.records);
        assert!(batch.base_offset() <= offset && offset <= batch.last_offset(), "offset {offset}");
    }
}

#[test]
fn segment_ms_rolls_by_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, shared) = manual_clock(1_000_000);
    let config = LogConfig { segment_ms: 60_000, ..LogConfig::default() };
    let t = open_log(dir.path(), config, shared);
    t.log.append(&batch(&["a"], 1_000_000), 0).unwrap();
    t.log.append(&batch(&["b"], 1_000_000), 0).unwrap();
    assert_eq!(t.log.segment_count(), 1);
    clock.advance_ms(60_000);
    t.log.append(&batch(&["c"], 1_060_000), 0).unwrap();
    assert_eq!(t.log.segment_bases(), vec![0, 2]);
}

#[test]
fn timestamp_lookup_finds_the_earliest_record_at_or_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let t = open_log_system_clock(dir.path(), small_segments(2048));
    // Offsets 0..100 at timestamps 1000, 1010, ...; a few out of order.
    for i in 0..100i64 {
        let ts = if i % 17 == 5 { 500 } else { 1000 + i * 10 };
        t.log.append(&batch(&[&"p".repeat(100)], ts), 0).unwrap();
    }
    assert!(t.log.segment_count() > 3);
    assert_eq!(t.log.offset_for_timestamp(0).unwrap(), Some((0, 1000)));
    assert_eq!(t.log.offset_for_timestamp(1000).unwrap(), Some((0, 1000)));
    assert_eq!(t.log.offset_for_timestamp(1001).unwrap(), Some((1, 1010)));
    assert_eq!(t.log.offset_for_timestamp(1500).unwrap(), Some((50, 1500)));
    assert_eq!(t.log.offset_for_timestamp(1985).unwrap(), Some((99, 1990)));
    assert_eq!(t.log.offset_for_timestamp(1991).unwrap(), None);
}

#[test]
fn retention_ms_deletes_whole_expired_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, shared) = manual_clock(10_000_000);
    let mut config = small_segments(1024);
    config.retention_ms = 60_000;
    let t = open_log(dir.path(), config, shared);
    let value = "r".repeat(300);
    for i in 0..30i64 {
        // Timestamps one second apart, ending at "now".
        t.log.append(&batch(&[&value], 10_000_000 - (29 - i) * 1000), 0).unwrap();
    }
    let before = t.log.segment_count();
    assert_eq!(t.log.apply_retention().unwrap().deleted_segments, 0, "nothing is older than a minute yet");
    // Records older than 14.5 s before the last one are now past the minute.
    clock.advance_ms(60_000 - 14_500);
    let outcome = t.log.apply_retention().unwrap();
    assert!(outcome.deleted_segments > 0 && t.log.segment_count() < before);
    let start = t.log.log_start();
    assert!(start > 0);
    // What is left is exactly the records whose segments still hold something young enough.
    let left = read_all(&t.log);
    assert_eq!(left.first().unwrap().0, start);
    assert!(matches!(t.log.read(0, None, 100), Err(LogError::OffsetOutOfRange { .. })));
    // Everything expires eventually, the active segment too; the log end stays.
    clock.advance_ms(3_600_000);
    t.log.apply_retention().unwrap();
    assert_eq!(t.log.log_start(), 30);
    assert_eq!(t.log.log_end(), 30);
    assert_eq!(t.log.append(&batch(&["after"], 1), 0).unwrap().first_offset, 30);
}

#[test]
fn retention_bytes_keeps_the_newest_segments_under_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_segments(1024);
    config.retention_bytes = 3000;
    config.retention_ms = -1;
    let t = open_log_system_clock(dir.path(), config);
    for _ in 0..40 {
        t.log.append(&batch(&[&"s".repeat(300)], 1), 0).unwrap();
    }
    t.log.apply_retention().unwrap();
    assert!(t.log.size_bytes() <= 3000 + 1024, "size {}", t.log.size_bytes());
    assert!(t.log.size_bytes() >= 3000 - 1024, "size {}", t.log.size_bytes());
    assert_eq!(read_all(&t.log).last().unwrap().0, 39);
}

#[test]
fn delete_records_moves_the_log_start_and_retention_drops_segments_below_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_segments(1024);
    config.retention_ms = -1;
    let t = open_log_system_clock(dir.path(), config);
    for _ in 0..20 {
        t.log.append(&batch(&[&"d".repeat(300)], 1), 0).unwrap();
    }
    assert_eq!(t.log.advance_log_start(12).unwrap(), 12);
    assert!(matches!(t.log.read(11, None, 10), Err(LogError::OffsetOutOfRange { .. })));
    assert!(t.log.apply_retention().unwrap().deleted_segments > 0);
    assert_eq!(read_all(&t.log).first().unwrap().0, 12);
    assert!(t.log.advance_log_start(21).is_err());
}

#[test]
fn compaction_keeps_the_latest_record_per_key_and_expires_tombstones() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, shared) = manual_clock(1_000_000);
    let mut config = small_segments(512);
    config.cleanup_policy.compact = true;
    config.cleanup_policy.delete = false;
    config.delete_retention_ms = 100_000;
    let t = open_log(dir.path(), config, shared);
    for round in 0..10 {
        for key in ["a", "b", "c"] {
            let value = format!("{key}{round}");
            t.log.append(&keyed_batch(&[(Some(key), Some(&value))], 1_000_000, Compression::Lz4), 0).unwrap();
        }
    }
    // A tombstone for "b", then enough data to seal everything of interest.
    t.log.append(&keyed_batch(&[(Some("b"), None)], 1_000_000, Compression::None), 0).unwrap();
    for i in 0..5 {
        t.log
            .append(&keyed_batch(&[(Some("z"), Some(&"z".repeat(200 + i)))], 1_000_000, Compression::None), 0)
            .unwrap();
    }
    t.log.force_roll().unwrap();
    let before = read_all(&t.log).len();
    let outcome = t.log.compact().unwrap();
    assert!(outcome.records_removed > 0 && outcome.bytes_after < outcome.bytes_before, "{outcome:?}");
    let after = read_all(&t.log);
    assert!(after.len() < before);
    let of = |key: &str| after.iter().filter(|(_, k, _)| k.as_deref() == Some(key)).cloned().collect::<Vec<_>>();
    assert_eq!(of("a"), vec![(27, Some("a".into()), Some("a9".into()))], "offsets never change");
    assert_eq!(of("c"), vec![(29, Some("c".into()), Some("c9".into()))]);
    assert_eq!(of("b"), vec![(30, Some("b".into()), None)], "a young tombstone stays");
    assert_eq!(of("z").len(), 1);
    // Past delete.retention.ms the tombstone goes too.
    clock.advance_ms(100_001);
    t.log.compact().unwrap();
    let after = read_all(&t.log);
    assert!(after.iter().all(|(_, k, _)| k.as_deref() != Some("b")), "{after:?}");
    // The log still appends after its last offset, and reopening gives the same records.
    assert_eq!(
        t.log.append(&keyed_batch(&[(Some("n"), Some("next"))], 1, Compression::None), 0).unwrap().first_offset,
        36
    );
    let expected = read_all(&t.log);
    t.log.close().unwrap();
    drop(t);
    let (_, shared) = manual_clock(1_200_000);
    let mut config = small_segments(512);
    config.cleanup_policy.compact = true;
    let reopened = open_log(dir.path(), config, shared);
    assert_eq!(read_all(&reopened.log), expected);
}

#[test]
fn compaction_respects_min_compaction_lag() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, shared) = manual_clock(1_000_000);
    let mut config = small_segments(256);
    config.cleanup_policy.compact = true;
    config.min_compaction_lag_ms = 10_000;
    let t = open_log(dir.path(), config, shared);
    for i in 0..10 {
        t.log
            .append(
                &keyed_batch(&[(Some("k"), Some(&format!("{i}{}", "x".repeat(200))))], 1_000_000, Compression::None),
                0,
            )
            .unwrap();
    }
    t.log.force_roll().unwrap();
    assert_eq!(t.log.compact().unwrap().segments_cleaned, 0, "too young to compact");
    clock.advance_ms(10_000);
    assert!(t.log.compact().unwrap().segments_cleaned > 0);
    assert_eq!(read_all(&t.log).len(), 1);
}

#[test]
fn compaction_does_not_block_appends() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_segments(4096);
    config.cleanup_policy.compact = true;
    let t = open_log_system_clock(dir.path(), config);
    for i in 0..2000 {
        let key = format!("k{}", i % 50);
        t.log.append(&keyed_batch(&[(Some(&key), Some(&"v".repeat(100)))], 1, Compression::Snappy), 0).unwrap();
    }
    t.log.force_roll().unwrap();
    let log = Arc::clone(&t.log);
    let appender = std::thread::spawn(move || {
        for i in 0..2000 {
            let key = format!("k{}", i % 50);
            log.append(&keyed_batch(&[(Some(&key), Some("new"))], 2, Compression::None), 0).unwrap();
        }
    });
    let outcome = t.log.compact().unwrap();
    appender.join().unwrap();
    assert!(outcome.segments_cleaned > 0);
    let all = read_all(&t.log);
    let offsets: Vec<i64> = all.iter().map(|(o, _, _)| *o).collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "offsets stay ordered");
    assert_eq!(*offsets.last().unwrap(), 3999);
    // Keys repeat, so compaction may also have cleaned a segment the appender rolled
    // meanwhile; what must hold is that every key's latest record is there, unchanged.
    let mut latest = std::collections::BTreeMap::new();
    for (offset, key, value) in &all {
        latest.insert(key.clone().unwrap(), (*offset, value.clone().unwrap()));
    }
    assert_eq!(latest.len(), 50);
    for j in 0..50 {
        assert_eq!(latest[&format!("k{j}")], (3950 + j, "new".to_string()), "key k{j}");
    }
    // The records appended during the compaction sit after the cleaned segments, whole.
    let after_start = all.iter().position(|(_, _, v)| v.as_deref() == Some("new")).unwrap();
    assert!(all[after_start..].iter().all(|(_, _, v)| v.as_deref() == Some("new")));
}

#[test]
fn bad_batches_are_rejected_with_typed_errors_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { max_message_bytes: 2000, ..LogConfig::default() };
    let t = open_log_system_clock(dir.path(), config);
    t.log.append(&batch(&["good"], 1), 0).unwrap();
    let good = batch(&["x"], 1);

    let mut wrong_crc = good.clone();
    *wrong_crc.last_mut().unwrap() ^= 1;
    let mut wrong_magic = good.clone();
    wrong_magic[16] = 0;
    let mut runs_past = good.clone();
    runs_past[8..12].copy_from_slice(&1000i32.to_be_bytes());
    let mut good_then_bad = good.clone();
    good_then_bad.extend_from_slice(&wrong_crc);
    let mut too_large = batch(&[&"L".repeat(3000)], 1);
    let mut empty: Vec<u8> = Vec::new();

    for (name, bytes) in [
        ("wrong crc", &mut wrong_crc),
        ("wrong magic", &mut wrong_magic),
        ("length past the buffer", &mut runs_past),
        ("a good batch then a bad one", &mut good_then_bad),
        ("too large", &mut too_large),
        ("empty", &mut empty),
    ] {
        let error = t.log.append(bytes, 0).unwrap_err();
        assert!(
            matches!(
                error,
                LogError::InvalidRecords { .. } | LogError::RecordTooLarge { .. } | LogError::InvalidAppend { .. }
            ),
            "{name}: {error:?}"
        );
    }
    assert_eq!(t.log.log_end(), 1, "nothing was stored");
    assert_eq!(read_all(&t.log).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_appends_share_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let t = open_log_system_clock(dir.path(), LogConfig::default());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let log = Arc::clone(&t.log);
        tasks.spawn(async move {
            let info = log.append(&batch(&[&i.to_string()], 1), 0).unwrap();
            log.wait_flushed(info.last_offset + 1).await.unwrap();
            info.last_offset
        });
    }
    while let Some(done) = tasks.join_next().await {
        let last = done.unwrap();
        assert!(t.log.flushed() > last);
    }
    assert_eq!(t.log.flushed(), 200);
}

#[test]
fn a_clean_reopen_keeps_offsets_segments_and_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_segments(1024);
    config.retention_ms = -1;
    let expected;
    {
        let t = open_log_system_clock(dir.path(), config.clone());
        for i in 0..50 {
            t.log.append(&batch(&[&format!("{i:0>200}")], i), 0).unwrap();
        }
        t.log.advance_log_start(3).unwrap();
        expected = read_all(&t.log);
        t.log.close().unwrap();
    }
    let t = open_log_system_clock(dir.path(), config);
    assert_eq!(t.log.log_start(), 3);
    assert_eq!(t.log.log_end(), 50);
    assert_eq!(read_all(&t.log), expected);
    assert_eq!(t.log.offset_for_timestamp(25).unwrap(), Some((25, 25)));
    assert_eq!(t.log.append(&batch(&["more"], 1), 0).unwrap().first_offset, 50);
}

#[test]
fn records_inside_a_batch_are_validated_like_kafka_does() {
    let dir = tempfile::tempdir().unwrap();
    let t = open_log_system_clock(dir.path(), LogConfig::default());
    // Two records whose offset deltas read 1, 1 instead of 0, 1; the CRC is made to match.
    let mut bad = batch(&["a", "b"], 1);
    assert_eq!(bad[64], 0, "first record's offset delta");
    bad[64] = 2; // zig-zag 1
    let crc = crc32c::crc32c(&bad[21..]);
    bad[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(t.log.append(&bad, 0), Err(LogError::InvalidRecords { .. })));
    assert_eq!(t.log.log_end(), 0);

    let compacted = LogConfig {
        cleanup_policy: headwater_core::log::CleanupPolicy { delete: false, compact: true },
        ..LogConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let t = open_log_system_clock(dir.path(), compacted);
    let error = t.log.append(&batch(&["no key"], 1), 0).unwrap_err();
    assert!(matches!(error, LogError::InvalidAppend { .. }), "{error}");
    t.log.append(&keyed_batch(&[(Some("k"), Some("v"))], 1, Compression::Gzip), 0).unwrap();
}

#[test]
fn segments_without_timestamps_expire_by_file_time() {
    let dir = tempfile::tempdir().unwrap();
    let now = {
        use headwater_core::log::Clock;
        headwater_core::log::SystemClock.now_ms()
    };
    let (clock, shared) = manual_clock(now);
    let config = LogConfig { retention_ms: 60_000, ..small_segments(1024) };
    let t = open_log(dir.path(), config, shared);
    for _ in 0..10 {
        t.log.append(&batch(&[&"n".repeat(300)], -1), 0).unwrap();
    }
    assert!(t.log.segment_count() > 2);
    assert_eq!(t.log.apply_retention().unwrap().deleted_segments, 0, "written just now");
    clock.advance_ms(120_000);
    assert!(t.log.apply_retention().unwrap().deleted_segments > 0);
}

#[test]
fn a_tombstone_outlives_its_first_compaction_whatever_its_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, shared) = manual_clock(1_000_000_000);
    let config = LogConfig {
        cleanup_policy: headwater_core::log::CleanupPolicy { delete: false, compact: true },
        delete_retention_ms: 1_000,
        ..small_segments(256)
    };
    let t = open_log(dir.path(), config, shared);
    // Replayed data: producer timestamps from long ago.
    t.log.append(&keyed_batch(&[(Some("k"), Some("old value"))], 0, Compression::None), 0).unwrap();
    t.log.append(&keyed_batch(&[(Some("k"), None)], 0, Compression::None), 0).unwrap();
    t.log.force_roll().unwrap();
    t.log.compact().unwrap();
    // The value is gone; the tombstone stays delete.retention.ms from this compaction, so
    // a consumer that read the value still sees the delete.
    assert_eq!(read_all(&t.log), vec![(1, Some("k".into()), None)]);
    let read = t.log.read(1, None, 1 << 20).unwrap();
    assert_eq!(first_batch(&read.records).delete_horizon_ms(), Some(1_000_001_000));
    clock.advance_ms(999);
    t.log.compact().unwrap();
    assert_eq!(read_all(&t.log).len(), 1);
    clock.advance_ms(1);
    t.log.compact().unwrap();
    assert!(read_all(&t.log).is_empty());
}

fn idempotent_batch(producer_id: i64, epoch: i16, sequence: i32, values: &[&str]) -> Vec<u8> {
    let mut builder =
        headwater_core::record::BatchBuilder::new(Compression::None).producer(producer_id, epoch, sequence);
    for value in values {
        builder.append(headwater_core::record::NewRecord {
            timestamp: 1,
            value: Some(value.as_bytes()),
            ..Default::default()
        });
    }
    builder.build().unwrap()
}

#[test]
fn an_idempotent_producers_retry_is_acknowledged_once_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let t = open_log_system_clock(dir.path(), LogConfig::default());
        let first = t.log.append(&idempotent_batch(42, 0, 0, &["a", "b"]), 0).unwrap();
        assert_eq!((first.first_offset, first.last_offset, first.duplicate), (0, 1, false));
        let retry = t.log.append(&idempotent_batch(42, 0, 0, &["a", "b"]), 0).unwrap();
        assert_eq!((retry.first_offset, retry.last_offset, retry.duplicate), (0, 1, true));
        assert_eq!(t.log.log_end(), 2, "the retry appended nothing");
        let gap = t.log.append(&idempotent_batch(42, 0, 5, &["c"]), 0).unwrap_err();
        assert!(matches!(gap, LogError::OutOfOrderSequence { producer_id: 42, expected: 2, got: 5 }), "{gap}");
        t.log.append(&idempotent_batch(42, 0, 2, &["c"]), 0).unwrap();
        t.log.close().unwrap();
    }
    let t = open_log_system_clock(dir.path(), LogConfig::default());
    let retry = t.log.append(&idempotent_batch(42, 0, 2, &["c"]), 0).unwrap();
    assert!(retry.duplicate, "producer state is rebuilt from the log");
    let zombie = t.log.append(&idempotent_batch(42, 1, 0, &["new epoch"]), 0).unwrap();
    assert_eq!(zombie.first_offset, 3);
    assert!(matches!(
        t.log.append(&idempotent_batch(42, 0, 3, &["old epoch"]), 0),
        Err(LogError::InvalidProducerEpoch { current: 1, .. })
    ));
}

#[test]
fn leader_epochs_are_recorded_survive_a_reopen_and_follow_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_segments(1024);
    config.retention_ms = -1;
    {
        let t = open_log_system_clock(dir.path(), config.clone());
        for epoch in [0, 0, 2, 2, 2, 5] {
            t.log.append(&batch(&[&"e".repeat(300)], 1), epoch).unwrap();
        }
        assert_eq!(t.log.latest_epoch(), Some(5));
        assert_eq!(t.log.end_offset_for_epoch(0), Some((0, 2)), "epoch 0 ends where epoch 2 starts");
        assert_eq!(t.log.end_offset_for_epoch(1), Some((0, 2)), "an unknown epoch answers for the one below");
        assert_eq!(t.log.end_offset_for_epoch(2), Some((2, 5)));
        assert_eq!(t.log.end_offset_for_epoch(5), Some((5, 6)), "the latest epoch ends at the log end");
        assert_eq!(t.log.end_offset_for_epoch(6), None);
        t.log.close().unwrap();
    }
    {
        let t = open_log_system_clock(dir.path(), config.clone());
        assert_eq!(t.log.end_offset_for_epoch(2), Some((2, 5)), "read back from the checkpoint");
        // Records before offset 3 go: epoch 0 goes with them, epoch 2 now starts at 3.
        t.log.advance_log_start(3).unwrap();
        t.log.close().unwrap();
    }
    let checkpoint = dir.path().join("leader-epoch-checkpoint");
    assert_eq!(std::fs::read_to_string(&checkpoint).unwrap(), "0\n2\n2 3\n5 5\n");
    // A lost checkpoint is rebuilt from the batches themselves.
    std::fs::remove_file(&checkpoint).unwrap();
    let t = open_log_system_clock(dir.path(), config);
    assert_eq!(t.log.end_offset_for_epoch(0), Some((0, 3)), "epoch 0 is below the log start, which ends it");
    assert_eq!(t.log.end_offset_for_epoch(2), Some((2, 5)));
    assert_eq!(t.log.latest_epoch(), Some(5));
}

#[test]
fn truncation_removes_the_batch_holding_the_offset_and_everything_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_segments(1024);
    config.retention_ms = -1;
    let t = open_log_system_clock(dir.path(), config.clone());
    // Two-record batches, so offset 13 lies inside the batch [12, 13].
    for i in 0..10 {
        t.log.append(&batch(&[&"x".repeat(200), &"y".repeat(200)], 1), if i < 5 { 1 } else { 3 }).unwrap();
    }
    assert!(t.log.segment_count() > 2, "several segments: {}", t.log.segment_count());
    // A reader holding bytes of the tail keeps them through the truncation.
    let held = t.log.read(16, None, 1 << 20).unwrap().records;
    assert_eq!(t.log.truncate_to(13).unwrap(), 12, "the whole batch holding 13 goes");
    assert_eq!(t.log.log_end(), 12);
    assert_eq!(first_batch(&held).base_offset(), 16, "bytes read before are still readable");
    assert_eq!(read_all(&t.log).last().unwrap().0, 11);
    assert_eq!(t.log.latest_epoch(), Some(3));
    assert_eq!(t.log.end_offset_for_epoch(1), Some((1, 10)));
    assert_eq!(t.log.truncate_to(12).unwrap(), 12, "at the end: nothing to do");

    // Truncating into epoch 1 forgets epoch 3, and appends carry on at the new end.
    assert_eq!(t.log.truncate_to(4).unwrap(), 4);
    assert_eq!(t.log.latest_epoch(), Some(1));
    let info = t.log.append(&batch(&["after"], 2), 4).unwrap();
    assert_eq!(info.first_offset, 4);
    t.log.close().unwrap();
    drop(t);

    let t = open_log_system_clock(dir.path(), config);
    let all = read_all(&t.log);
    assert_eq!(all.iter().map(|(o, _, _)| *o).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
    assert_eq!(all[4].2.as_deref(), Some("after"));
    assert_eq!(t.log.end_offset_for_epoch(1), Some((1, 4)));
    assert!(matches!(t.log.truncate_to(-1), Err(LogError::OffsetOutOfRange { .. })));
}

#[test]
fn a_follower_stores_the_leaders_batches_with_their_offsets_and_epochs() {
    let leader_dir = tempfile::tempdir().unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    let config = small_segments(1024);
    let leader = open_log_system_clock(leader_dir.path(), config.clone());
    for epoch in [2, 2, 5] {
        leader.log.append(&batch(&[&"v".repeat(300), "w"], 1), epoch).unwrap();
    }
    let follower = open_log_system_clock(follower_dir.path(), config);
    let mut offset = 0;
    while offset < leader.log.log_end() {
        let fetched = leader.log.read(offset, None, 700).unwrap().records;
        let info = follower.log.append_as_follower(&fetched).unwrap();
        assert_eq!(info.first_offset, offset);
        offset = info.last_offset + 1;
    }
    assert_eq!(follower.log.log_end(), 6);
    // Byte for byte the leader's log, and the same epochs.
    let all = |log: &headwater_core::log::Log| log.read(0, None, 1 << 20).unwrap().records;
    assert_eq!(all(&follower.log), all(&leader.log));
    assert_eq!(follower.log.end_offset_for_epoch(2), Some((2, 4)));
    assert_eq!(follower.log.latest_epoch(), Some(5));
    // Going back is refused, and nothing is stored.
    let again = leader.log.read(0, None, 1 << 20).unwrap().records;
    assert!(matches!(follower.log.append_as_follower(&again), Err(LogError::InvalidAppend { .. })));
    assert_eq!(follower.log.log_end(), 6);
    // A corrupt batch is refused too.
    let mut corrupt = leader.log.read(4, None, 1 << 20).unwrap().records.to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    let follower_two = tempfile::tempdir().unwrap();
    let other = open_log_system_clock(follower_two.path(), small_segments(1024));
    assert!(matches!(other.log.append_as_follower(&corrupt), Err(LogError::InvalidRecords { .. })));
}

#[test]
fn a_new_leaders_epoch_is_recorded_before_its_first_append() {
    let dir = tempfile::tempdir().unwrap();
    let t = open_log_system_clock(dir.path(), LogConfig::default());
    t.log.append(&batch(&["a", "b"], 1), 3).unwrap();
    t.log.assign_epoch(4).unwrap();
    assert_eq!(t.log.end_offset_for_epoch(3), Some((3, 2)), "epoch 3 ends where the new leader took over");
    assert_eq!(t.log.end_offset_for_epoch(4), Some((4, 2)));
    t.log.assign_epoch(2).unwrap();
    assert_eq!(t.log.latest_epoch(), Some(4), "an older epoch changes nothing");
}

#[test]
fn a_follower_behind_its_leaders_log_start_starts_again_there() {
    let dir = tempfile::tempdir().unwrap();
    {
        let follower = open_log_system_clock(dir.path(), small_segments(1024));
        for _ in 0..3 {
            follower.log.append(&batch(&["old"], 1), 1).unwrap();
        }
        // Only forward: a log never starts again inside what it has.
        assert!(matches!(follower.log.truncate_fully_and_start_at(3), Err(LogError::InvalidAppend { .. })));
        follower.log.truncate_fully_and_start_at(50).unwrap();
        assert_eq!((follower.log.log_start(), follower.log.log_end()), (50, 50));
        assert!(follower.log.read(50, None, 1 << 20).unwrap().records.is_empty());
        assert!(matches!(follower.log.read(2, None, 1 << 20), Err(LogError::OffsetOutOfRange { .. })));
        assert_eq!(follower.log.latest_epoch(), None, "the epochs start again with the leader's batches");
        // The leader's batch at offset 50 follows (the base offset lies outside the CRC).
        let mut leaders = batch(&["new", "newer"], 2);
        leaders[..8].copy_from_slice(&50i64.to_be_bytes());
        follower.log.append_as_follower(&leaders).unwrap();
        assert_eq!(follower.log.log_end(), 52);
        follower.log.close().unwrap();
    }
    let reopened = open_log_system_clock(dir.path(), small_segments(1024));
    assert_eq!((reopened.log.log_start(), reopened.log.log_end()), (50, 52), "it survives a reopen");
    let values: Vec<_> = common::records(&reopened.log.read(50, None, 1 << 20).unwrap().records)
        .into_iter()
        .map(|(offset, _, value)| (offset, value.unwrap()))
        .collect();
    assert_eq!(values, vec![(50, "new".to_string()), (51, "newer".to_string())]);
}
