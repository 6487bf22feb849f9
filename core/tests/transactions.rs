//! Transactions with a real client (confluent-kafka / librdkafka) against a real broker:
//! commit and abort under both isolation levels, the last stable offset, zombie fencing,
//! timeouts, and offsets committed in a transaction; then the same outcomes after the
//! broker is killed with SIGKILL and restarted (the markers, the aborted-transaction
//! index and `__transaction_state` are recovered from disk).

mod common;

use common::server::{ServerProcess, run_python};

#[test]
fn confluent_transactions_commit_abort_fence_time_out_and_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let output = run_python("transactions.py", &[&server.bootstrap, "1"]);
    for line in [
        "commit visible, abort invisible, read_uncommitted sees both",
        "an open transaction holds read_committed at its first offset",
        "a zombie producer is fenced and its transaction aborted",
        "a transaction past its timeout is aborted",
        "offsets commit with their transaction and not with an aborted one",
        "DescribeTransactions and ListTransactions agree",
        "transactions behaved like Kafka",
    ] {
        assert!(output.contains(line), "missing {line:?} in:\n{output}");
    }
    server.kill();

    let server = ServerProcess::start(dir.path());
    let output = run_python("transactions.py", &[&server.bootstrap, "2"]);
    assert!(output.contains("DescribeTransactions and ListTransactions agree"), "after SIGKILL:\n{output}");
    assert!(output.contains("transactions behaved like Kafka"), "after SIGKILL:\n{output}");
    // The aborted transaction of the first topic is in its segment's index.
    let index = dir.path().join("txn-0").join(format!("{:020}.txnindex", 0));
    let bytes = std::fs::read(&index).unwrap();
    assert_eq!(bytes.len(), headwater_core::log::txn_index::ENTRY_BYTES, "one aborted transaction");
}

/// Kills the transaction coordinator of a producer committing transaction after
/// transaction on a three-node cluster: the coordinator's partition of
/// `__transaction_state` fails over, the new leader loads it and finishes what was
/// decided, and a read_committed consumer reads every committed record exactly once.
#[test]
fn the_transaction_coordinator_fails_over_on_a_three_node_cluster() {
    use std::time::{Duration, Instant};

    use common::cluster::Cluster;
    use common::server::spawn_python;

    const TXID: &str = "failover-txn";
    let (transactions, per_txn) = (60, 10);
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3);
    let bootstrap = cluster.bootstrap();
    cluster.create_topic("txn-events", 3, 3, &[("min.insync.replicas", "2")]);
    let out = dir.path().join("committed.txt");
    let producer = spawn_python(
        "txn_failover.py",
        [
            &bootstrap,
            "txn-events",
            TXID,
            &transactions.to_string(),
            &per_txn.to_string(),
            &out.display().to_string(),
            "120",
        ]
        .map(String::from)
        .to_vec(),
    );
    let state_partition = headwater_core::txn::metadata::partition_for(TXID) as usize;
    let state = cluster.wait_for("__transaction_state", Duration::from_secs(60), |ps| {
        ps.get(state_partition).is_some_and(|p| p.leader >= 0)
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(&out).map_or(0, |t| t.lines().count()) < transactions / 4 {
        assert!(Instant::now() < deadline, "the producer made no progress");
        std::thread::sleep(Duration::from_millis(50));
    }
    let coordinator = state[state_partition].leader;
    cluster.kill(coordinator);

    let output = producer.join().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "producer failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let after = cluster.wait_for("__transaction_state", Duration::from_secs(10), |ps| ps[state_partition].leader >= 0);
    assert_ne!(after[state_partition].leader, coordinator, "the coordinator moved");

    let consumed = run_python("read_committed.py", &[&cluster.bootstrap(), "txn-events", "3"]);
    let mut values: Vec<&str> = consumed.lines().collect();
    let total = values.len();
    values.sort_unstable();
    values.dedup();
    assert_eq!(values.len(), total, "a record was read twice");
    assert_eq!(total, transactions * per_txn, "every committed record, nothing else: {stdout}");
    for n in 0..transactions {
        for i in 0..per_txn {
            assert!(values.binary_search(&format!("t{n}-{i}").as_str()).is_ok(), "t{n}-{i} missing");
        }
    }
    cluster.restart(coordinator);
    cluster.wait_for("txn-events", Duration::from_secs(30), |ps| ps.iter().all(|p| p.isr.len() == 3));
    cluster.stop_all();
    println!("{stdout}");
}
