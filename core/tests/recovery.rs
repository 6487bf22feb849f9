//! Recovery from damaged files: torn and corrupt segment tails, damaged or missing
//! indexes, a damaged checkpoint, leftovers of an interrupted compaction.

mod common;

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use common::*;
use headwater_core::log::LogConfig;
use headwater_core::record::BatchIter;

fn config() -> LogConfig {
    LogConfig { segment_bytes: 4096, index_interval_bytes: 256, ..LogConfig::default() }
}

/// Writes 60 one-record batches of ~300 bytes (several segments), closes the log, and
/// returns what it held.
fn fill(dir: &Path) -> Vec<(i64, Option<String>, Option<String>)> {
    let t = open_log_system_clock(dir, config());
    for i in 0..60 {
        t.log.append(&batch(&[&format!("{i:0>300}")], 1000 + i), 0).unwrap();
    }
    let all = read_all(&t.log);
    t.log.close().unwrap();
    all
}

fn files(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == extension))
        .collect();
    files.sort();
    files
}

#[test]
fn a_torn_tail_is_truncated_to_the_last_whole_batch() {
    for cut in [1u64, 10, 61, 200] {
        let dir = tempfile::tempdir().unwrap();
        let all = fill(dir.path());
        let last = files(dir.path(), "log").pop().unwrap();
        let len = fs::metadata(&last).unwrap().len();
        OpenOptions::new().write(true).open(&last).unwrap().set_len(len - cut).unwrap();

        let t = open_log_system_clock(dir.path(), config());
        let survived = read_all(&t.log);
        assert_eq!(survived[..], all[..all.len() - 1], "cut {cut}: only the torn batch is gone");
        assert_eq!(t.log.log_end(), 59);
        assert_eq!(t.log.append(&batch(&["after"], 1), 0).unwrap().first_offset, 59);
    }
}

#[test]
fn a_corrupt_last_batch_is_dropped_and_the_log_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let all = fill(dir.path());
    let last = files(dir.path(), "log").pop().unwrap();
    let mut bytes = fs::read(&last).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x5a;
    fs::write(&last, &bytes).unwrap();

    let t = open_log_system_clock(dir.path(), config());
    assert_eq!(read_all(&t.log)[..], all[..59]);
    let read = t.log.read(58, None, 1 << 20).unwrap();
    assert!(BatchIter::new(&read.records).all(|b| b.unwrap().validate().is_ok()));
}

#[test]
fn corruption_in_an_unflushed_middle_segment_drops_everything_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let _ = fill(dir.path());
    // Forget the checkpoint: every segment is now after the recovery point.
    fs::remove_file(dir.path().join("partition.checkpoint")).unwrap();
    let logs = files(dir.path(), "log");
    assert!(logs.len() >= 4);
    let victim = &logs[1];
    let mut bytes = fs::read(victim).unwrap();
    bytes[100] ^= 0xff;
    fs::write(victim, &bytes).unwrap();

    let t = open_log_system_clock(dir.path(), config());
    let survived = read_all(&t.log);
    let victim_base: i64 = victim.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    assert_eq!(survived.last().unwrap().0, victim_base - 1, "the log ends before the corrupt batch");
    assert_eq!(t.log.log_end(), victim_base);
    assert_eq!(files(dir.path(), "log").len(), 2, "segments after the corruption are removed");
}

#[test]
fn damaged_and_missing_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let all = fill(dir.path());
    let indexes = files(dir.path(), "index");
    let time_indexes = files(dir.path(), "timeindex");
    // Garbage in one, a torn entry in another, one missing, one stale (another segment's).
    fs::write(&indexes[0], b"definitely not an index").unwrap();
    let mut torn = fs::read(&indexes[1]).unwrap();
    torn.truncate(torn.len().saturating_sub(3));
    fs::write(&indexes[1], torn).unwrap();
    fs::remove_file(&indexes[2]).unwrap();
    fs::copy(&indexes[0], &indexes[3]).unwrap();
    fs::remove_file(&time_indexes[1]).unwrap();

    let (t, report) = open_log_with_report(dir.path(), config());
    let log = &t.log;
    assert!(report.rebuilt_indexes >= 4, "{report:?}");
    assert_eq!(report.truncated_bytes, 0);
    assert_eq!(read_all(log), all);
    for offset in 0..60 {
        let read = log.read(offset, None, 1).unwrap();
        assert_eq!(first_batch(&read.records).base_offset(), offset);
    }
    assert_eq!(log.offset_for_timestamp(1030).unwrap(), Some((30, 1030)));
    // The rebuilt index files are good on the next open.
    log.close().unwrap();
    drop(t);
    let (_, report) = open_log_with_report(dir.path(), config());
    assert_eq!(report.rebuilt_indexes, 0, "{report:?}");
}

#[test]
fn a_damaged_checkpoint_means_full_recovery_not_data_loss() {
    let dir = tempfile::tempdir().unwrap();
    let all = fill(dir.path());
    fs::write(dir.path().join("partition.checkpoint"), b"headwater-partition-checkpoint v1 9 9 9 0\n").unwrap();
    let t = open_log_system_clock(dir.path(), config());
    assert_eq!(read_all(&t.log), all);
}

#[test]
fn leftovers_of_an_interrupted_compaction_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let all = fill(dir.path());
    let first = files(dir.path(), "log").remove(0);
    let leftover = PathBuf::from(format!("{}.cleaned", first.display()));
    fs::write(&leftover, b"half a cleaned segment").unwrap();
    let t = open_log_system_clock(dir.path(), config());
    assert!(!leftover.exists());
    assert_eq!(read_all(&t.log), all);
}

#[test]
fn an_empty_segment_left_by_a_crash_after_a_roll_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let all = fill(dir.path());
    // A roll created the next segment, then the process died before writing to it, and a
    // later run rolled again past it.
    let logs = files(dir.path(), "log");
    let last_base: i64 = logs.last().unwrap().file_stem().unwrap().to_str().unwrap().parse().unwrap();
    let t = open_log_system_clock(dir.path(), config());
    let end = t.log.log_end();
    t.log.close().unwrap();
    drop(t);
    std::fs::write(dir.path().join(format!("{:020}.log", end)), b"").unwrap();
    std::fs::write(dir.path().join(format!("{:020}.log", end + 1_000)), b"").unwrap();
    let t = open_log_system_clock(dir.path(), config());
    assert!(!dir.path().join(format!("{end:020}.log")).exists());
    assert_eq!(read_all(&t.log), all);
    assert!(last_base < end);
    // The log carries on from the last empty segment's base, which the log end now is.
    let next = t.log.append(&batch(&["next"], 1), 0).unwrap().first_offset;
    assert_eq!(next, end + 1_000);
    assert_eq!(read_all(&t.log).last().unwrap().0, end + 1_000);
}
