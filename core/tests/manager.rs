//! The log manager: topics and partitions under one data directory, persisted configs.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use headwater_core::log::{LogError, LogManager, LogManagerOptions, TopicPartition};

fn config(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn topics_partitions_and_configs_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let manager = LogManager::open(dir.path(), LogManagerOptions::default()).unwrap();
        manager.create_topic("orders", 3, config(&[("retention.ms", "60000")])).unwrap();
        manager.create_topic("users.v1", 1, config(&[("cleanup.policy", "compact")])).unwrap();
        for partition in 0..3 {
            let log = manager.get("orders", partition).unwrap();
            log.append(&batch(&[&format!("p{partition}")], 1), 0).unwrap();
        }
        manager.create_partitions("orders", 5).unwrap();
        manager
            .alter_topic_config("orders", config(&[("retention.ms", "120000"), ("segment.bytes", "1048576")]))
            .unwrap();
        manager.close().unwrap();
    }
    let manager = LogManager::open(dir.path(), LogManagerOptions::default()).unwrap();
    let topics = manager.topics();
    assert_eq!(topics.keys().collect::<Vec<_>>(), vec!["orders", "users.v1"]);
    assert_eq!(topics["orders"].partitions, 5);
    let orders = manager.topic_config("orders").unwrap();
    assert_eq!((orders.retention_ms, orders.segment_bytes), (120_000, 1_048_576));
    assert!(manager.topic_config("users.v1").unwrap().cleanup_policy.compact);
    for partition in 0..3 {
        let values: Vec<_> =
            read_all(&manager.get("orders", partition).unwrap()).into_iter().map(|r| r.2.unwrap()).collect();
        assert_eq!(values, vec![format!("p{partition}")]);
    }
    assert_eq!(manager.get("orders", 4).unwrap().log_end(), 0);
    assert!(dir.path().join("orders-4").is_dir());
}

#[test]
fn altered_configs_reach_open_logs() {
    let dir = tempfile::tempdir().unwrap();
    let manager = LogManager::open(dir.path(), LogManagerOptions::default()).unwrap();
    manager.create_topic("t", 1, BTreeMap::new()).unwrap();
    let log = manager.get("t", 0).unwrap();
    manager.alter_topic_config("t", config(&[("max.message.bytes", "100")])).unwrap();
    assert!(matches!(log.append(&batch(&[&"x".repeat(200)], 1), 0), Err(LogError::RecordTooLarge { .. })));
}

#[test]
fn bad_requests_get_typed_errors_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let manager = LogManager::open(dir.path(), LogManagerOptions::default()).unwrap();
    manager.create_topic("t", 2, BTreeMap::new()).unwrap();
    for name in ["", ".", "..", "has space", "slash/y", &"x".repeat(250)] {
        assert!(
            matches!(manager.create_topic(name, 1, BTreeMap::new()), Err(LogError::InvalidTopic { .. })),
            "{name:?}"
        );
    }
    assert!(matches!(manager.create_topic("t", 1, BTreeMap::new()), Err(LogError::TopicAlreadyExists { .. })));
    assert!(matches!(manager.create_topic("u", 0, BTreeMap::new()), Err(LogError::InvalidPartitions { .. })));
    assert!(matches!(
        manager.create_topic("u", 1, config(&[("retention.ms", "forever")])),
        Err(LogError::InvalidConfig { .. })
    ));
    assert!(manager.topic("u").is_none(), "a rejected topic leaves nothing behind");
    assert!(!dir.path().join("u-0").exists());
    assert!(matches!(manager.create_partitions("t", 1), Err(LogError::InvalidPartitions { .. })));
    assert!(matches!(manager.alter_topic_config("t", config(&[("nope", "1")])), Err(LogError::InvalidConfig { .. })));
    assert!(matches!(manager.get("t", 2), Err(LogError::UnknownTopicOrPartition { .. })));
    assert!(matches!(manager.delete_topic("missing"), Err(LogError::UnknownTopicOrPartition { .. })));
    assert_eq!(manager.topic("t").unwrap().partitions, 2);
}

#[test]
fn deleting_a_topic_removes_its_data_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let manager = LogManager::open(dir.path(), LogManagerOptions::default()).unwrap();
    manager.create_topic("gone", 2, BTreeMap::new()).unwrap();
    manager.get("gone", 0).unwrap().append(&batch(&["a"], 1), 0).unwrap();
    manager.delete_topic("gone").unwrap();
    assert!(manager.log(&TopicPartition::new("gone", 0)).is_none());
    assert!(!dir.path().join("gone-0").exists());
    // Recreating starts from offset zero.
    manager.create_topic("gone", 1, BTreeMap::new()).unwrap();
    assert_eq!(manager.get("gone", 0).unwrap().log_end(), 0);
}

#[test]
fn directories_of_a_half_deleted_topic_are_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let manager = LogManager::open(dir.path(), LogManagerOptions::default()).unwrap();
        manager.create_topic("half", 2, BTreeMap::new()).unwrap();
        manager.close().unwrap();
    }
    // A crash after the topic file went but before its logs did.
    std::fs::remove_file(dir.path().join("topics/half.toml")).unwrap();
    let manager = LogManager::open(dir.path(), LogManagerOptions::default()).unwrap();
    assert!(manager.topics().is_empty());
    assert!(!dir.path().join("half-0").exists() && !dir.path().join("half-1").exists());
}

#[test]
fn maintenance_applies_retention_to_every_log() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, shared) = manual_clock(1_000_000);
    let options = LogManagerOptions { clock: shared, defaults: config(&[("segment.bytes", "1024")]) };
    let manager: Arc<LogManager> = LogManager::open(dir.path(), options).unwrap();
    manager.create_topic("r", 2, config(&[("retention.ms", "1000")])).unwrap();
    for partition in 0..2 {
        let log = manager.get("r", partition).unwrap();
        for _ in 0..10 {
            log.append(&batch(&[&"z".repeat(300)], 1_000_000), 0).unwrap();
        }
    }
    clock.advance_ms(5_000);
    manager.run_maintenance();
    for partition in 0..2 {
        let log = manager.get("r", partition).unwrap();
        assert_eq!((log.log_start(), log.log_end()), (10, 10), "partition {partition}");
    }
}

#[test]
fn flush_messages_decides_when_an_acks_all_write_waits_for_an_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let manager = LogManager::open(dir.path(), LogManagerOptions::default()).unwrap();
    manager.create_topic("strict", 1, BTreeMap::new()).unwrap();
    manager.create_topic("relaxed", 1, config(&[("flush.messages", "3")])).unwrap();
    let strict = manager.get("strict", 0).unwrap();
    let relaxed = manager.get("relaxed", 0).unwrap();
    for log in [&strict, &relaxed] {
        log.append(&batch(&["a"], 1), 0).unwrap();
    }
    // The default (1): every acknowledged acks=all write is fsynced first.
    assert!(strict.ack_needs_flush(1));
    // Below the threshold the write is acknowledged unflushed; at it, it waits.
    assert!(!relaxed.ack_needs_flush(1));
    relaxed.append(&batch(&["b", "c"], 1), 0).unwrap();
    assert!(relaxed.ack_needs_flush(3));
    relaxed.wait_flushed_blocking(3).unwrap();
    relaxed.append(&batch(&["d"], 1), 0).unwrap();
    assert!(!relaxed.ack_needs_flush(4), "the count starts again after a flush");
    manager.close().unwrap();
}

#[test]
fn flush_ms_flushes_unflushed_data_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let manager = Arc::new(LogManager::open(dir.path(), LogManagerOptions::default()).unwrap());
    manager.create_topic("timed", 1, config(&[("flush.ms", "50")])).unwrap();
    manager.create_topic("untimed", 1, BTreeMap::new()).unwrap();
    manager.start_maintenance(std::time::Duration::from_secs(3600));
    let timed = manager.get("timed", 0).unwrap();
    let untimed = manager.get("untimed", 0).unwrap();
    for log in [&timed, &untimed] {
        log.append(&batch(&["a", "b"], 1), 0).unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while timed.flushed() < 2 {
        assert!(std::time::Instant::now() < deadline, "flush.ms=50 never flushed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Kafka's default (unbounded) leaves it to the OS, and to acks=all writes.
    assert_eq!(untimed.flushed(), 0);
    assert_eq!(untimed.flush_count(), 0);
    manager.close().unwrap();
}
