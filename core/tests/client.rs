//! The Rust client against a real broker: the producer's batching, acks, idempotence and
//! partitioning.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use common::read_all;
use common::server::{ServerProcess, run_python};
use headwater_core::broker::Broker;
use headwater_core::client::partitioner::partition_for_key;
use headwater_core::client::{Producer, ProducerConfig};
use headwater_core::config::ServerConfig;
use headwater_core::log::{LogManager, LogManagerOptions};
use headwater_core::protocol::Server;
use headwater_core::record::Compression;

/// A broker in this process, on a free port.
async fn broker(dir: &std::path::Path) -> (String, Arc<LogManager>) {
    let logs = LogManager::open(dir, LogManagerOptions::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config =
        ServerConfig { listen: listener.local_addr().unwrap(), data_dir: dir.to_path_buf(), ..ServerConfig::default() };
    let broker = Arc::new(Broker::new(Arc::clone(&logs), config.clone()).unwrap());
    let server = Server::new(listener, broker, 100, 100 << 20);
    tokio::spawn(server.run());
    (config.listen.to_string(), logs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_producer_delivers_every_record_once_in_order_per_partition() {
    let dir = tempfile::tempdir().unwrap();
    let (bootstrap, logs) = broker(dir.path()).await;
    logs.create_topic("p", 6, BTreeMap::new()).unwrap();
    let producer =
        Producer::connect(ProducerConfig { bootstrap, compression: Compression::Lz4, ..ProducerConfig::default() })
            .await
            .unwrap();
    let mut deliveries = Vec::new();
    for i in 0..10_000u32 {
        let key = Bytes::from(format!("key-{}", i % 97));
        let value = Bytes::from(format!("value-{i}"));
        deliveries.push((i, key.clone(), producer.send("p", Some(key), Some(value), vec![]).await.unwrap()));
    }
    producer.flush().await.unwrap();
    let mut stored: BTreeMap<(i32, i64), String> = BTreeMap::new();
    for partition in 0..6 {
        for (offset, _, value) in read_all(&logs.get("p", partition).unwrap()) {
            stored.insert((partition, offset), value.unwrap());
        }
    }
    assert_eq!(stored.len(), 10_000, "each record stored exactly once");
    let mut last_offset: BTreeMap<(i32, String), i64> = BTreeMap::new();
    for (i, key, delivery) in deliveries {
        let meta = delivery.await.unwrap();
        assert_eq!(meta.partition, partition_for_key(&key, 6), "keys partition like the Java client");
        assert_eq!(
            stored.get(&(meta.partition, meta.offset)),
            Some(&format!("value-{i}")),
            "acknowledged at its offset"
        );
        // Records of one key keep their order.
        let key = String::from_utf8(key.to_vec()).unwrap();
        if let Some(previous) = last_offset.insert((meta.partition, key), meta.offset) {
            assert!(meta.offset > previous);
        }
    }
    // The batches carry the producer id: the idempotent producer is on by default.
    let read = logs.get("p", 0).unwrap().read(0, None, 1 << 20).unwrap();
    let batch = headwater_core::record::BatchIter::new(&read.records).next().unwrap().unwrap();
    assert!(batch.producer_id() >= 0);
    assert_eq!(batch.compression().unwrap(), Compression::Lz4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_records_spread_over_partitions_and_acks_zero_works() {
    let dir = tempfile::tempdir().unwrap();
    let (bootstrap, logs) = broker(dir.path()).await;
    logs.create_topic("spread", 4, BTreeMap::new()).unwrap();
    let config =
        ProducerConfig { bootstrap, acks: 0, idempotent: false, batch_bytes: 1024, ..ProducerConfig::default() };
    let producer = Producer::connect(config).await.unwrap();
    let mut deliveries = Vec::new();
    for i in 0..2_000 {
        deliveries.push(producer.send("spread", None, Some(Bytes::from(format!("{i:0>100}"))), vec![]).await.unwrap());
    }
    producer.flush().await.unwrap();
    for delivery in deliveries {
        assert_eq!(delivery.await.unwrap().offset, -1, "acks=0: no offsets");
    }
    // acks=0 has no answer to wait for: poll the logs until everything is there.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let counts: Vec<i64> = (0..4).map(|p| logs.get("spread", p).unwrap().log_end()).collect();
        if counts.iter().sum::<i64>() == 2_000 {
            assert!(counts.iter().filter(|c| **c > 0).count() >= 3, "sticky partitions move on: {counts:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "only {counts:?} arrived");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[test]
fn keys_land_in_the_same_partition_as_with_librdkafkas_murmur2() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let output = run_python("murmur2_partitions.py", &[&server.bootstrap]);
    let placed: Vec<(String, i32)> = output
        .lines()
        .map(|line| {
            let (key, partition) = line.split_once(' ').unwrap();
            (key.to_string(), partition.parse().unwrap())
        })
        .collect();
    assert_eq!(placed.len(), 300);
    for (key, partition) in placed {
        assert_eq!(partition_for_key(key.as_bytes(), 7), partition, "key {key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_reads_seeks_pauses_and_resets() {
    use headwater_core::client::{Consumer, ConsumerConfig, OffsetReset};
    let dir = tempfile::tempdir().unwrap();
    let (bootstrap, logs) = broker(dir.path()).await;
    logs.create_topic("c", 2, BTreeMap::new()).unwrap();
    let producer = Producer::connect(ProducerConfig {
        bootstrap: bootstrap.clone(),
        compression: Compression::Zstd,
        ..ProducerConfig::default()
    })
    .await
    .unwrap();
    for i in 0..200 {
        producer.send_to("c", Some(i % 2), None, Some(Bytes::from(format!("v{i}"))), vec![]).await.unwrap();
    }
    producer.flush().await.unwrap();

    let config = ConsumerConfig {
        bootstrap,
        auto_offset_reset: OffsetReset::Earliest,
        fetch_max_wait: std::time::Duration::from_millis(50),
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::connect(config).await.unwrap();
    consumer.assign([("c".to_string(), 0), ("c".to_string(), 1)]);
    // Partition 1 starts in the middle of a compressed batch.
    consumer.seek("c", 1, 37);
    consumer.pause([("c".to_string(), 0)]);
    let mut got = Vec::new();
    while got.len() < 63 {
        got.extend(consumer.poll().await.unwrap());
    }
    assert!(got.iter().all(|r| r.partition == 1), "paused partition 0 stays quiet");
    assert_eq!(got.first().map(|r| r.offset), Some(37));
    assert_eq!(got.last().map(|r| (r.offset, r.value.clone())), Some((99, Some(Bytes::from("v199")))));
    consumer.resume([("c".to_string(), 0)]);
    let mut zero = Vec::new();
    while zero.len() < 100 {
        zero.extend(consumer.poll().await.unwrap().into_iter().filter(|r| r.partition == 0));
    }
    let offsets: Vec<i64> = zero.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (0..100).collect::<Vec<_>>());
    // A position past the end is out of range: reset to the earliest, as configured.
    consumer.seek("c", 0, 10_000);
    let again = consumer.poll().await.unwrap();
    assert!(again.is_empty());
    assert_eq!(consumer.position("c", 0), None);
    let after_reset = consumer.poll().await.unwrap();
    assert_eq!(after_reset.iter().filter(|r| r.partition == 0).map(|r| r.offset).next(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_consumers_share_partitions_rebalance_and_resume_from_commits() {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use headwater_core::client::GroupConsumer;
    let dir = tempfile::tempdir().unwrap();
    let (bootstrap, logs) = broker(dir.path()).await;
    logs.create_topic("g", 6, BTreeMap::new()).unwrap();
    let producer =
        Producer::connect(ProducerConfig { bootstrap: bootstrap.clone(), ..ProducerConfig::default() }).await.unwrap();
    for i in 0..3000u32 {
        producer.send("g", Some(Bytes::from(i.to_string())), Some(Bytes::from(i.to_string())), vec![]).await.unwrap();
    }
    producer.flush().await.unwrap();

    let (consumer_config, group_config) = fast_group(&bootstrap, "workers");
    let mut members = Vec::new();
    for _ in 0..3 {
        members.push(
            GroupConsumer::subscribe(consumer_config.clone(), group_config.clone(), vec!["g".into()]).await.unwrap(),
        );
    }
    // Everyone polls until the group is stable and all records are in.
    let mut seen = BTreeSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    let mut polls = futures::future::join_all(members.iter_mut().map(|m| m.poll())).await;
    loop {
        for records in polls.drain(..) {
            seen.extend(records.unwrap().into_iter().map(|r| r.offset * 10 + i64::from(r.partition)));
        }
        let owned: Vec<Vec<(String, i32)>> = members.iter().map(|m| m.assignment()).collect();
        let all: BTreeSet<(String, i32)> = owned.iter().flatten().cloned().collect();
        if seen.len() == 3000 && all.len() == 6 && owned.iter().all(|o| o.len() == 2) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "seen {} records, assignments {owned:?}", seen.len());
        polls = futures::future::join_all(members.iter_mut().map(|m| m.poll())).await;
    }
    // One leaves: the other two take its partitions.
    let leaver = members.pop().unwrap();
    leaver.close().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        for result in futures::future::join_all(members.iter_mut().map(|m| m.poll())).await {
            result.unwrap();
        }
        let owned: Vec<usize> = members.iter().map(|m| m.assignment().len()).collect();
        if owned == vec![3, 3] {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "after a leave: {owned:?}");
    }
    for member in members {
        member.close().await.unwrap();
    }
    // A new member of the group starts after the committed offsets: nothing old again.
    producer.send("g", Some(Bytes::from("new")), Some(Bytes::from("new")), vec![]).await.unwrap();
    producer.flush().await.unwrap();
    let mut late = GroupConsumer::subscribe(consumer_config, group_config, vec!["g".into()]).await.unwrap();
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while got.is_empty() && std::time::Instant::now() < deadline {
        got.extend(late.poll().await.unwrap());
    }
    let values: Vec<Option<Bytes>> = got.into_iter().map(|r| r.value).collect();
    assert_eq!(values, vec![Some(Bytes::from("new"))]);
}

/// Consumer and group settings for tests: from the earliest offset, short waits and
/// timeouts, auto-commit every 200 ms.
fn fast_group(
    bootstrap: &str,
    group: &str,
) -> (headwater_core::client::ConsumerConfig, headwater_core::client::GroupConfig) {
    use std::time::Duration;

    use headwater_core::client::{ConsumerConfig, GroupConfig, OffsetReset};
    let consumer = ConsumerConfig {
        bootstrap: bootstrap.to_string(),
        auto_offset_reset: OffsetReset::Earliest,
        fetch_max_wait: Duration::from_millis(100),
        ..ConsumerConfig::default()
    };
    let group = GroupConfig {
        session_timeout: Duration::from_secs(10),
        heartbeat_interval: Duration::from_millis(200),
        auto_commit: Some(Duration::from_millis(200)),
        ..GroupConfig::new(group)
    };
    (consumer, group)
}

/// Polls every member together until `done` holds for their assignments, checking after
/// every round that no partition has two owners; returns the offsets seen (as
/// `offset * 10 + partition`).
async fn poll_until(
    members: &mut [headwater_core::client::GroupConsumer],
    seen: &mut std::collections::BTreeSet<i64>,
    done: impl Fn(&[Vec<(String, i32)>], usize) -> bool,
) -> Vec<Vec<(String, i32)>> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    loop {
        for result in futures::future::join_all(members.iter_mut().map(|m| m.poll())).await {
            seen.extend(result.unwrap().into_iter().map(|r| r.offset * 10 + i64::from(r.partition)));
        }
        let owned: Vec<Vec<(String, i32)>> = members.iter().map(|m| m.assignment()).collect();
        let total: usize = owned.iter().map(Vec::len).sum();
        let distinct: std::collections::BTreeSet<&(String, i32)> = owned.iter().flatten().collect();
        assert_eq!(total, distinct.len(), "a partition with two owners: {owned:?}");
        if done(&owned, seen.len()) {
            return owned;
        }
        assert!(std::time::Instant::now() < deadline, "seen {}, assignments {owned:?}", seen.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_sticky_members_keep_their_partitions_through_rebalances() {
    use std::collections::BTreeSet;

    use headwater_core::client::assignor::Assignor;
    use headwater_core::client::{GroupConfig, GroupConsumer};
    let dir = tempfile::tempdir().unwrap();
    let (bootstrap, logs) = broker(dir.path()).await;
    logs.create_topic("c", 6, BTreeMap::new()).unwrap();
    let producer =
        Producer::connect(ProducerConfig { bootstrap: bootstrap.clone(), ..ProducerConfig::default() }).await.unwrap();
    let produce = |from: u32| {
        let producer = &producer;
        async move {
            for i in from..from + 3000 {
                producer.send("c", Some(Bytes::from(i.to_string())), Some(Bytes::new()), vec![]).await.unwrap();
            }
            producer.flush().await.unwrap();
        }
    };
    produce(0).await;

    let (consumer_config, group_config) = fast_group(&bootstrap, "cooperative");
    let group_config = GroupConfig { assignors: vec![Assignor::CooperativeSticky], ..group_config };
    let join = || GroupConsumer::subscribe(consumer_config.clone(), group_config.clone(), vec!["c".into()]);
    let subset = |now: &[(String, i32)], before: &[(String, i32)]| now.iter().all(|tp| before.contains(tp));
    let mut seen = BTreeSet::new();
    let mut members = vec![join().await.unwrap()];
    let alone = poll_until(&mut members, &mut seen, |owned, n| owned[0].len() == 6 && n == 3000).await;

    // A second member: the first gives up three partitions and keeps the other three.
    members.push(join().await.unwrap());
    let two = poll_until(&mut members, &mut seen, |owned, _| owned.iter().all(|o| o.len() == 3)).await;
    assert!(subset(&two[0], &alone[0]), "the first member's kept partitions moved: {two:?}");

    // A third, while more records arrive: each earlier member keeps two of its own.
    members.push(join().await.unwrap());
    produce(3000).await;
    let three = poll_until(&mut members, &mut seen, |owned, n| owned.iter().all(|o| o.len() == 2) && n == 6000).await;
    assert!(subset(&three[0], &two[0]) && subset(&three[1], &two[1]), "{two:?} -> {three:?}");

    // The third leaves: its partitions go to the others, who lose nothing.
    members.pop().unwrap().close().await.unwrap();
    let after = poll_until(&mut members, &mut seen, |owned, _| owned.iter().all(|o| o.len() == 3)).await;
    assert!(subset(&three[0], &after[0]) && subset(&three[1], &after[1]), "{three:?} -> {after:?}");
    assert_eq!(seen.len(), 6000);

    // The records as a Stream: what arrives after the rebalances, in order per partition.
    produce(6000).await;
    let mut member = members.pop().unwrap();
    members.pop().unwrap().close().await.unwrap();
    let streamed: Vec<_> = {
        use futures::StreamExt;
        member.stream().take(3000).collect().await
    };
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    for record in streamed {
        let record = record.unwrap();
        let previous = last.insert(record.partition, record.offset);
        assert!(previous.is_none_or(|p| p < record.offset), "out of order in partition {}", record.partition);
    }
    assert_eq!(last.len(), 6, "the last member ends up with every partition");
    member.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_a_dropped_producer_fail_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let (bootstrap, logs) = broker(dir.path()).await;
    logs.create_topic("dropped", 2, BTreeMap::new()).unwrap();
    // A long linger keeps the records in their open batches until the producer goes.
    let config = ProducerConfig { bootstrap, linger: std::time::Duration::from_secs(60), ..ProducerConfig::default() };
    let producer = Producer::connect(config).await.unwrap();
    let mut deliveries = Vec::new();
    for i in 0..10u32 {
        deliveries.push(producer.send("dropped", None, Some(Bytes::from(i.to_string())), vec![]).await.unwrap());
    }
    assert!(deliveries.iter().all(|d| !d.is_settled()));
    drop(producer);
    for delivery in deliveries {
        let result = tokio::time::timeout(std::time::Duration::from_secs(5), delivery).await.expect("settled");
        assert!(matches!(result, Err(headwater_core::client::ClientError::Closed)), "{result:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_all_waits_for_the_fsync_unless_flush_messages_says_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let (bootstrap, logs) = broker(dir.path()).await;
    logs.create_topic("fsynced", 1, BTreeMap::new()).unwrap();
    // Kafka's own default: acks=all means "in the leader's log", the OS flushes later.
    let kafka_default = BTreeMap::from([("flush.messages".to_string(), i64::MAX.to_string())]);
    logs.create_topic("kafka-like", 1, kafka_default).unwrap();
    let producer = Producer::connect(ProducerConfig { bootstrap, ..ProducerConfig::default() }).await.unwrap();
    for topic in ["fsynced", "kafka-like"] {
        let delivery = producer.send(topic, None, Some(Bytes::from_static(b"v")), vec![]).await.unwrap();
        producer.flush().await.unwrap();
        assert_eq!(delivery.await.unwrap().offset, 0);
    }
    assert_eq!(logs.get("fsynced", 0).unwrap().flushed(), 1, "acknowledged after its fsync");
    let relaxed = logs.get("kafka-like", 0).unwrap();
    assert_eq!((relaxed.flushed(), relaxed.flush_count()), (0, 0), "acknowledged without an fsync");
}
