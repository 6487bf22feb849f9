//! Transactions in one partition's log: the last stable offset, markers, the aborted
//! transaction index, and their recovery (with and without producer snapshots), through
//! truncation and compaction.

mod common;

use common::*;
use headwater_core::log::producer_state::TxnMarker;
use headwater_core::log::txn_index::AbortedTxn;
use headwater_core::log::{AppendOrigin, LogConfig, LogError};
use headwater_core::record::{BatchBuilder, Compression, NewRecord};

fn txn_batch(producer_id: i64, epoch: i16, sequence: i32, records: &[(Option<&str>, &str)]) -> Vec<u8> {
    let mut builder = BatchBuilder::new(Compression::None).producer(producer_id, epoch, sequence).transactional(true);
    for (key, value) in records {
        builder.append(NewRecord {
            timestamp: 1,
            key: key.map(str::as_bytes),
            value: Some(value.as_bytes()),
            ..Default::default()
        });
    }
    builder.build().unwrap()
}

fn marker(producer_id: i64, epoch: i16, commit: bool) -> Vec<u8> {
    let (key, value) = TxnMarker { commit, coordinator_epoch: 0 }.encode();
    let mut builder =
        BatchBuilder::new(Compression::None).producer(producer_id, epoch, -1).transactional(true).control(true);
    builder.append(NewRecord { timestamp: 1, key: Some(&key), value: Some(&value), ..Default::default() });
    builder.build().unwrap()
}

fn values<'a>(records: &[&'a str]) -> Vec<(Option<&'a str>, &'a str)> {
    records.iter().map(|v| (None, *v)).collect()
}

#[test]
fn the_last_stable_offset_waits_for_open_transactions_and_aborts_are_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let t = open_log_system_clock(dir.path(), LogConfig::default());
    t.log.append(&batch(&["plain"], 1), 0).unwrap(); // 0
    t.log.append(&txn_batch(7, 0, 0, &values(&["a", "b"])), 0).unwrap(); // 1-2
    t.log.append(&txn_batch(8, 0, 0, &values(&["x"])), 0).unwrap(); // 3
    assert_eq!(t.log.last_stable_offset(t.log.log_end()), 1, "producer 7's transaction is open from 1");
    t.log.append_with(&marker(7, 0, false), 0, AppendOrigin::Coordinator).unwrap(); // 4: abort 7
    assert_eq!(t.log.last_stable_offset(t.log.log_end()), 3, "producer 8's is still open");
    t.log.append_with(&marker(8, 0, true), 0, AppendOrigin::Coordinator).unwrap(); // 5: commit 8
    assert_eq!(t.log.last_stable_offset(5), 3, "a marker above the high watermark is not stable yet");
    assert_eq!(t.log.last_stable_offset(6), 6);
    assert_eq!(t.log.ongoing_transactions(), vec![]);

    let aborted = AbortedTxn { producer_id: 7, first_offset: 1, last_offset: 4, last_stable_offset: 3 };
    assert_eq!(t.log.aborted_transactions(0, 6), vec![aborted]);
    assert_eq!(t.log.aborted_transactions(5, 6), vec![], "the abort ended before the read");
    assert_eq!(t.log.aborted_transactions(0, 1), vec![], "the read ends before the transaction");

    // Producers cannot write markers; a stale epoch's marker is refused.
    assert!(matches!(t.log.append(&marker(9, 0, true), 0), Err(LogError::InvalidAppend { .. })));
    t.log.append(&txn_batch(7, 1, 0, &values(&["c"])), 0).unwrap();
    let stale = t.log.append_with(&marker(7, 0, true), 0, AppendOrigin::Coordinator).unwrap_err();
    assert!(matches!(stale, LogError::InvalidProducerEpoch { current: 1, .. }), "{stale}");
    // ... and so is a zombie's data once a marker has bumped the epoch.
    t.log.append_with(&marker(7, 2, false), 0, AppendOrigin::Coordinator).unwrap();
    let zombie = t.log.append(&txn_batch(7, 1, 1, &values(&["late"])), 0).unwrap_err();
    assert!(matches!(zombie, LogError::InvalidProducerEpoch { current: 2, .. }), "{zombie}");
}

#[test]
fn transaction_state_survives_a_crash_with_and_without_snapshots() {
    for drop_snapshots in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig { segment_bytes: 400, index_interval_bytes: 128, ..LogConfig::default() };
        {
            let t = open_log_system_clock(dir.path(), config.clone());
            t.log.append(&txn_batch(1, 0, 0, &values(&["open-a"])), 0).unwrap(); // 0: stays open
            for i in 0..6 {
                t.log.append(&txn_batch(2, 0, i * 4, &values(&["aborted"; 4])), 0).unwrap();
            }
            t.log.append_with(&marker(2, 0, false), 0, AppendOrigin::Coordinator).unwrap();
            t.log.append(&batch(&["after"], 1), 0).unwrap();
            t.log.flush().unwrap();
            assert!(t.log.segment_count() > 2, "the transactions span segments");
            // No close: the process dies here.
        }
        if drop_snapshots {
            for entry in std::fs::read_dir(dir.path()).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "snapshot") {
                    std::fs::remove_file(path).unwrap();
                }
            }
        }
        let t = open_log_system_clock(dir.path(), config);
        let end = t.log.log_end();
        assert_eq!(t.log.last_stable_offset(end), 0, "producer 1's transaction is still open");
        assert_eq!(t.log.ongoing_transactions(), vec![(1, 0)]);
        let aborted = t.log.aborted_transactions(0, end);
        assert_eq!(aborted.len(), 1, "{aborted:?}");
        assert_eq!((aborted[0].producer_id, aborted[0].first_offset), (2, 1));
        t.log.append_with(&marker(1, 0, true), 0, AppendOrigin::Coordinator).unwrap();
        assert_eq!(t.log.last_stable_offset(t.log.log_end()), t.log.log_end());
    }
}

#[test]
fn truncation_forgets_markers_past_the_new_end() {
    let dir = tempfile::tempdir().unwrap();
    let t = open_log_system_clock(dir.path(), LogConfig::default());
    t.log.append(&txn_batch(3, 0, 0, &values(&["a"])), 0).unwrap(); // 0
    t.log.append_with(&marker(3, 0, false), 0, AppendOrigin::Coordinator).unwrap(); // 1
    t.log.append(&txn_batch(4, 0, 0, &values(&["b"])), 0).unwrap(); // 2
    t.log.append_with(&marker(4, 0, false), 0, AppendOrigin::Coordinator).unwrap(); // 3
    assert_eq!(t.log.aborted_transactions(0, 4).len(), 2);
    t.log.truncate_to(3).unwrap();
    assert_eq!(t.log.aborted_transactions(0, 4).len(), 1, "the second abort marker is gone");
    assert_eq!(t.log.ongoing_transactions(), vec![(4, 2)], "producer 4's transaction is open again");
}

#[test]
fn compaction_drops_aborted_records_and_never_passes_an_open_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, shared) = manual_clock(1_000_000);
    let config = LogConfig {
        segment_bytes: 300,
        cleanup_policy: headwater_core::log::CleanupPolicy { delete: false, compact: true },
        min_compaction_lag_ms: 0,
        ..LogConfig::default()
    };
    let t = open_log(dir.path(), config, shared);
    t.log.append(&keyed_batch(&[(Some("k"), Some("committed"))], 1, Compression::None), 0).unwrap();
    t.log.append(&txn_batch(5, 0, 0, &[(Some("k"), "aborted")]), 0).unwrap();
    t.log.append_with(&marker(5, 0, false), 0, AppendOrigin::Coordinator).unwrap();
    t.log.force_roll().unwrap();
    t.log.append(&txn_batch(6, 0, 0, &[(Some("j"), "undecided")]), 0).unwrap();
    for i in 0..6 {
        t.log.append(&keyed_batch(&[(Some("j"), Some(&format!("later-{i}")))], 1, Compression::None), 0).unwrap();
    }
    t.log.force_roll().unwrap();
    clock.advance_ms(10);
    t.log.compact().unwrap();
    let all: Vec<(Option<String>, Option<String>)> = read_all(&t.log).into_iter().map(|(_, k, v)| (k, v)).collect();
    assert!(all.contains(&(Some("k".into()), Some("committed".into()))), "an aborted record shadows nothing: {all:?}");
    assert!(!all.iter().any(|(_, v)| v.as_deref() == Some("aborted")), "{all:?}");
    assert!(all.iter().any(|(_, v)| v.as_deref() == Some("undecided")), "past the open transaction: {all:?}");
}
