//! The Rust client's transactional producer and read_committed consumer against a real
//! broker process, checked both ways against librdkafka (confluent-kafka): what the Rust
//! producer commits a librdkafka read_committed consumer reads, and the reverse.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use common::server::{ServerProcess, run_python};
use headwater_core::client::{
    Admin, ClientError, Consumer, ConsumerConfig, GroupMetadata, IsolationLevel, OffsetReset, Producer, ProducerConfig,
};
use kafka_protocol::error::ResponseError;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn transactional(bootstrap: &str, id: &str) -> ProducerConfig {
    ProducerConfig {
        bootstrap: bootstrap.to_string(),
        transactional_id: Some(id.to_string()),
        transaction_timeout: Duration::from_secs(30),
        ..ProducerConfig::default()
    }
}

/// Every value of `topic`'s partitions from the start, as a consumer of `isolation` reads
/// them up to the partitions' ends at that isolation.
async fn read_values(bootstrap: &str, topic: &str, partitions: i32, isolation: IsolationLevel) -> Vec<String> {
    let mut consumer = Consumer::connect(ConsumerConfig {
        bootstrap: bootstrap.to_string(),
        auto_offset_reset: OffsetReset::Earliest,
        isolation_level: isolation,
        fetch_max_wait: Duration::from_millis(100),
        ..ConsumerConfig::default()
    })
    .await
    .unwrap();
    let all: Vec<(String, i32)> = (0..partitions).map(|p| (topic.to_string(), p)).collect();
    let ends = consumer.list_offsets(all.clone(), -1).await.unwrap();
    consumer.assign(all);
    let mut values = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while ends.iter().any(|((t, p), end)| consumer.position(t, *p).unwrap_or(0) < *end) {
        assert!(std::time::Instant::now() < deadline, "did not reach the ends {ends:?}");
        for record in consumer.poll().await.unwrap() {
            values.push(String::from_utf8(record.value.unwrap().to_vec()).unwrap());
        }
    }
    values
}

async fn send_values(producer: &Producer, topic: &str, prefix: &str, count: usize) {
    let mut deliveries = Vec::new();
    for i in 0..count {
        let key = Bytes::from(format!("k{i}"));
        let value = Bytes::from(format!("{prefix}-{i}"));
        deliveries.push(producer.send(topic, Some(key), Some(value), vec![]).await.unwrap());
    }
    producer.flush().await.unwrap();
    for delivery in deliveries {
        delivery.await.unwrap();
    }
}

fn is_code(error: &ClientError, codes: &[ResponseError]) -> bool {
    matches!(error, ClientError::Broker { code, .. } if codes.iter().any(|e| e.code() == *code))
}

#[test]
fn the_rust_transactional_producer_commits_aborts_and_is_fenced_like_kafka() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let bootstrap = server.bootstrap.clone();
    runtime().block_on(async {
        let admin = Admin::connect(&bootstrap).await.unwrap();
        admin.create_topic("rtx", 3, &BTreeMap::new()).await.unwrap();
        admin.create_topic("rtx-in", 1, &BTreeMap::new()).await.unwrap();

        // Commit, abort, commit.
        let producer = Producer::connect(transactional(&bootstrap, "rust-txn")).await.unwrap();
        let unopened = producer.send("rtx", None, Some(Bytes::from_static(b"x")), vec![]).await;
        assert!(matches!(unopened, Err(ClientError::Transaction { .. })), "a send outside a transaction is refused");
        for (prefix, commit) in [("c0", true), ("a0", false), ("c1", true)] {
            producer.begin_transaction().unwrap();
            send_values(&producer, "rtx", prefix, 30).await;
            if commit {
                producer.commit_transaction().await.unwrap();
            } else {
                producer.abort_transaction().await.unwrap();
            }
        }
        let committed: BTreeSet<String> =
            read_values(&bootstrap, "rtx", 3, IsolationLevel::ReadCommitted).await.into_iter().collect();
        let expected: BTreeSet<String> =
            ["c0", "c1"].iter().flat_map(|p| (0..30).map(move |i| format!("{p}-{i}"))).collect();
        assert_eq!(committed, expected, "read_committed sees the committed transactions only");
        let everything = read_values(&bootstrap, "rtx", 3, IsolationLevel::ReadUncommitted).await;
        assert_eq!(everything.len(), 90, "read_uncommitted sees the aborted records too");

        // An open transaction holds read_committed's end at its first offset.
        producer.begin_transaction().unwrap();
        send_values(&producer, "rtx", "open", 30).await;
        let mut probe = Consumer::connect(ConsumerConfig {
            bootstrap: bootstrap.clone(),
            isolation_level: IsolationLevel::ReadCommitted,
            ..ConsumerConfig::default()
        })
        .await
        .unwrap();
        let partitions: Vec<(String, i32)> = (0..3).map(|p| ("rtx".to_string(), p)).collect();
        let stable: i64 = probe.list_offsets(partitions.clone(), -1).await.unwrap().values().sum();
        let uncommitted: i64 =
            Consumer::connect(ConsumerConfig { bootstrap: bootstrap.clone(), ..ConsumerConfig::default() })
                .await
                .unwrap()
                .list_offsets(partitions.clone(), -1)
                .await
                .unwrap()
                .values()
                .sum();
        assert!(
            stable < uncommitted,
            "the last stable offsets ({stable}) stay below the open transaction ({uncommitted})"
        );

        // Offsets in the transaction: committed with it, for a group.
        let group = GroupMetadata::group("rtx-group");
        producer.send_offsets_to_transaction(&[("rtx-in".to_string(), 0, 42)], &group).await.unwrap();
        producer.commit_transaction().await.unwrap();
        // EndTxn answers once the decision is durable; the markers follow, and with them
        // the offsets become visible.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while admin.committed_offsets("rtx-group", "rtx-in", 1).await.unwrap() != vec![(0, 42)] {
            assert!(std::time::Instant::now() < deadline, "the committed transaction's offsets never became visible");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        producer.begin_transaction().unwrap();
        producer.send_offsets_to_transaction(&[("rtx-in".to_string(), 0, 99)], &group).await.unwrap();
        producer.abort_transaction().await.unwrap();
        for _ in 0..20 {
            assert_eq!(
                admin.committed_offsets("rtx-group", "rtx-in", 1).await.unwrap(),
                vec![(0, 42)],
                "an aborted transaction's offsets are not committed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // A second producer of the same transactional.id fences the first and aborts its
        // open transaction.
        producer.begin_transaction().unwrap();
        send_values(&producer, "rtx", "zombie", 10).await;
        let successor = Producer::connect(transactional(&bootstrap, "rust-txn")).await.unwrap();
        let fenced = producer.commit_transaction().await.unwrap_err();
        assert!(
            is_code(&fenced, &[ResponseError::ProducerFenced, ResponseError::InvalidProducerEpoch]),
            "the zombie's commit is fenced: {fenced}"
        );
        assert!(producer.begin_transaction().is_err(), "a fenced producer stays fenced");
        successor.begin_transaction().unwrap();
        send_values(&successor, "rtx", "c2", 30).await;
        successor.commit_transaction().await.unwrap();
        let committed = read_values(&bootstrap, "rtx", 3, IsolationLevel::ReadCommitted).await;
        assert!(!committed.iter().any(|v| v.starts_with("zombie")), "the zombie's records were aborted");
        assert_eq!(committed.len(), 120, "c0, c1, open and c2: {committed:?}");
    });

    // librdkafka's read_committed consumer agrees with the Rust one.
    let mut seen: Vec<String> =
        run_python("read_committed.py", &[&bootstrap, "rtx", "3"]).lines().map(String::from).collect();
    seen.sort();
    let mut expected: Vec<String> =
        ["c0", "c1", "open", "c2"].iter().flat_map(|p| (0..30).map(move |i| format!("{p}-{i}"))).collect();
    expected.sort();
    assert_eq!(seen, expected, "librdkafka reads exactly the committed records");

    // And the reverse: of librdkafka's transactions, the Rust read_committed consumer
    // reads the committed ones only.
    let output = run_python("txn_alternate.py", &[&bootstrap, "from-librdkafka", "py-txn", "20", "5"]);
    assert!(output.contains("committed 10 and aborted 10"), "{output}");
    runtime().block_on(async {
        let mut values = read_values(&bootstrap, "from-librdkafka", 1, IsolationLevel::ReadCommitted).await;
        values.sort();
        let mut expected: Vec<String> =
            (0..20).step_by(2).flat_map(|n| (0..5).map(move |i| format!("t{n}-{i}"))).collect();
        expected.sort();
        assert_eq!(values, expected, "exactly the committed transactions' records");
        let everything = read_values(&bootstrap, "from-librdkafka", 1, IsolationLevel::ReadUncommitted).await;
        assert_eq!(everything.len(), 100, "read_uncommitted reads the aborted ones too");
    });
    server.kill();
}
