"""Transactions with confluent-kafka (librdkafka). Usage: transactions.py BOOTSTRAP PHASE

phase 1:
  - commits are visible to read_committed consumers and aborts are not; read_uncommitted
    consumers see both, and the markers take offsets of their own;
  - an open transaction holds read_committed consumers at its first offset until it
    commits;
  - a second producer with the same transactional.id fences the first (a zombie): the
    zombie's open transaction is aborted and its later commit fails;
  - a transaction left open past transaction.timeout.ms is aborted by the broker and the
    producer's commit fails;
  - consume-transform-produce: offsets sent in a transaction are committed with it, and
    an aborted transaction's offsets are not.
phase 2 (after a broker restart): every outcome above reads back the same.
"""

import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaAdminClient

BOOTSTRAP, PHASE = sys.argv[1], sys.argv[2]


def fail(message):
    print(message)
    sys.exit(1)


def producer(txid, **extra):
    config = {"bootstrap.servers": BOOTSTRAP, "transactional.id": txid, "linger.ms": 5}
    config.update(extra)
    p = Producer(config)
    p.init_transactions(30)
    return p


def read_all(topic, isolation, partitions=1, idle=3.0, group=None):
    """Values (and offsets) of every record a fresh consumer gets, until nothing comes for `idle` s."""
    consumer = Consumer({
        "bootstrap.servers": BOOTSTRAP,
        "group.id": group or f"reader-{topic}-{isolation}-{time.time()}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "isolation.level": isolation,
    })
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got = []
    last = time.time()
    while time.time() - last < idle:
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                continue
            fail(f"consume error: {msg.error()}")
        got.append((msg.value().decode(), msg.offset()))
        last = time.time()
    consumer.close()
    return got


def values(records):
    return [v for v, _ in records]


def expect_failure(what, action):
    try:
        action()
    except KafkaException as e:
        return e.args[0]
    fail(f"{what} should have failed")


def commit_abort_and_isolation():
    p = producer("tx-basic")
    p.begin_transaction()
    for i in range(10):
        p.produce("txn", value=f"committed-{i}".encode())
    p.commit_transaction(30)
    p.begin_transaction()
    for i in range(10):
        p.produce("txn", value=f"aborted-{i}".encode())
    p.flush(30)  # in the log before the abort
    p.abort_transaction(30)
    p.begin_transaction()
    for i in range(5):
        p.produce("txn", value=f"second-{i}".encode())
    p.commit_transaction(30)
    check_basic()


def check_admin():
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    listed = {t.transactional_id: str(t.state.value) for ts in admin.list_transactions().values() for t in ts}
    want = {"tx-basic": "CompleteCommit", "tx-open": "CompleteCommit", "tx-zombie": "CompleteCommit",
            "tx-timeout": "CompleteAbort", "tx-ctp": "CompleteAbort"}
    if listed != want:
        fail(f"ListTransactions said {listed}")
    admin.close()
    print("DescribeTransactions and ListTransactions agree")


def check_basic():
    committed = values(read_all("txn", "read_committed"))
    want = [f"committed-{i}" for i in range(10)] + [f"second-{i}" for i in range(5)]
    if committed != want:
        fail(f"read_committed saw {committed}, wanted {want}")
    everything = read_all("txn", "read_uncommitted")
    want_all = [f"committed-{i}" for i in range(10)] + [f"aborted-{i}" for i in range(10)] + \
        [f"second-{i}" for i in range(5)]
    if values(everything) != want_all:
        fail(f"read_uncommitted saw {values(everything)}")
    offsets = [o for _, o in everything]
    # Three markers: after the first commit, the abort and the second commit.
    if offsets[10] != 11 or offsets[20] != 22 or offsets[-1] != 26:
        fail(f"markers should take offsets 10, 21 and 27: {offsets}")
    print("commit visible, abort invisible, read_uncommitted sees both")


def open_transaction_holds_the_lso():
    p = producer("tx-open")
    p.begin_transaction()
    for i in range(3):
        p.produce("txn-open", value=f"pending-{i}".encode())
    p.flush(30)
    plain = Producer({"bootstrap.servers": BOOTSTRAP})
    plain.produce("txn-open", value=b"after-open")
    plain.flush(30)
    if read_all("txn-open", "read_committed", idle=2.0):
        fail("read_committed read past an open transaction")
    if len(read_all("txn-open", "read_uncommitted", idle=2.0)) != 4:
        fail("read_uncommitted should see the open transaction's records")
    # Kafka's admin APIs see it too (kafka-python's admin client).
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    described = admin.describe_transactions(["tx-open"])["tx-open"]
    if str(described.state.value) != "Ongoing" or {(tp.topic, tp.partition) for tp in described.topic_partitions} != {("txn-open", 0)}:
        fail(f"DescribeTransactions said {described}")
    listed = [t for ts in admin.list_transactions(state_filters=["Ongoing"]).values() for t in ts]
    if [t.transactional_id for t in listed] != ["tx-open"]:
        fail(f"ListTransactions (Ongoing) said {listed}")
    admin.close()
    p.commit_transaction(30)
    got = values(read_all("txn-open", "read_committed"))
    if got != ["pending-0", "pending-1", "pending-2", "after-open"]:
        fail(f"after the commit read_committed saw {got}")
    print("an open transaction holds read_committed at its first offset")


def zombie_is_fenced():
    zombie = producer("tx-zombie")
    zombie.begin_transaction()
    zombie.produce("txn-zombie", value=b"zombie-1")
    zombie.flush(30)
    successor = producer("tx-zombie")  # fences the zombie and aborts its transaction
    successor.begin_transaction()
    successor.produce("txn-zombie", value=b"successor-1")
    successor.commit_transaction(30)

    def zombie_commits():
        zombie.produce("txn-zombie", value=b"zombie-2")
        zombie.commit_transaction(30)

    error = expect_failure("the zombie's commit", zombie_commits)
    if not error.fatal() and error.code() not in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED,
                                                  KafkaError.INVALID_PRODUCER_EPOCH):
        fail(f"the zombie should be fenced, got {error}")
    check_zombie()


def check_zombie():
    got = values(read_all("txn-zombie", "read_committed"))
    if got != ["successor-1"]:
        fail(f"read_committed after fencing saw {got}")
    print("a zombie producer is fenced and its transaction aborted")


def timeout_aborts():
    p = producer("tx-timeout", **{"transaction.timeout.ms": 3000, "message.timeout.ms": 3000})
    p.begin_transaction()
    p.produce("txn-timeout", value=b"too-late")
    p.flush(30)
    time.sleep(6)
    expect_failure("a commit after the transaction timed out", lambda: p.commit_transaction(30))
    check_timeout()


def check_timeout():
    if read_all("txn-timeout", "read_committed"):
        fail("a timed-out transaction's records are visible")
    if values(read_all("txn-timeout", "read_uncommitted")) != ["too-late"]:
        fail("the timed-out record should still be in the log")
    print("a transaction past its timeout is aborted")


def consume_transform_produce():
    plain = Producer({"bootstrap.servers": BOOTSTRAP})
    for i in range(20):
        plain.produce("ctp-in", value=str(i).encode())
    plain.flush(30)
    consumer = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": "ctp", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
    consumer.subscribe(["ctp-in"])
    p = producer("tx-ctp")

    def process(count, commit):
        p.begin_transaction()
        taken = 0
        deadline = time.time() + 30
        while taken < count and time.time() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            p.produce("ctp-out", value=f"x{int(msg.value()) * 10}".encode())
            taken += 1
        if taken != count:
            fail(f"consumed {taken} of {count}")
        p.send_offsets_to_transaction(consumer.position(consumer.assignment()),
                                      consumer.consumer_group_metadata(), 30)
        if commit:
            p.commit_transaction(30)
        else:
            p.abort_transaction(30)

    process(12, commit=True)
    process(8, commit=False)
    consumer.close()
    check_ctp()


def check_ctp():
    checker = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": "ctp", "isolation.level": "read_committed"})
    committed = checker.committed([TopicPartition("ctp-in", 0)], timeout=30)
    checker.close()
    if committed[0].offset != 12:
        fail(f"the committed transaction's offset should be 12, got {committed[0].offset}")
    got = values(read_all("ctp-out", "read_committed"))
    if got != [f"x{i * 10}" for i in range(12)]:
        fail(f"ctp-out holds {got}")
    print("offsets commit with their transaction and not with an aborted one")


if PHASE == "1":
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    topics = ["txn", "txn-open", "txn-zombie", "txn-timeout", "ctp-in", "ctp-out"]
    for future in admin.create_topics([NewTopic(t, 1, 1) for t in topics]).values():
        future.result(30)
    commit_abort_and_isolation()
    open_transaction_holds_the_lso()
    zombie_is_fenced()
    timeout_aborts()
    consume_transform_produce()
    check_admin()
else:
    check_admin()
    check_basic()
    check_zombie()
    check_timeout()
    check_ctp()
print("transactions behaved like Kafka")
