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
