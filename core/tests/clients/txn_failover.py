"""A transactional producer (librdkafka) that commits TRANSACTIONS transactions of
PER_TXN records each to TOPIC, through whatever happens to the brokers meanwhile. A
transaction that fails abortably is aborted and sent again; a failed commit is retried.
Writes the number of each committed transaction to OUT (one per line, flushed, so the
test can watch progress). Values are `t<transaction>-<record>`, so exactly-once means
every value is read exactly once by a read_committed consumer.
Usage: txn_failover.py BOOTSTRAP TOPIC TXID TRANSACTIONS PER_TXN OUT TIMEOUT_SECONDS"""

import sys
import time

from confluent_kafka import KafkaException, Producer

bootstrap, topic, txid, transactions, per_txn, out_path, timeout = sys.argv[1:8]
transactions, per_txn, timeout = int(transactions), int(per_txn), float(timeout)
deadline = time.time() + timeout

producer = Producer({
    "bootstrap.servers": bootstrap,
    "transactional.id": txid,
    "transaction.timeout.ms": 30000,
    "linger.ms": 5,
    "reconnect.backoff.ms": 50,
    "reconnect.backoff.max.ms": 200,
})
producer.init_transactions(60)
out = open(out_path, "w")
retries = 0


def retried(action):
    """Runs a commit until it succeeds; False when the transaction must be aborted."""
    global retries
    while time.time() < deadline:
        try:
            action()
            return True
        except KafkaException as e:
            error = e.args[0]
            if error.fatal():
                raise
            if error.txn_requires_abort():
                return False
            retries += 1
            time.sleep(0.2)
    raise SystemExit("timed out")


n = 0
while n < transactions:
    if time.time() > deadline:
        print(f"committed only {n} of {transactions}", file=sys.stderr)
        sys.exit(1)
    try:
        producer.begin_transaction()
        for i in range(per_txn):
            producer.produce(topic, key=str(i).encode(), value=f"t{n}-{i}".encode())
        committed = retried(lambda: producer.commit_transaction(30))
    except KafkaException as e:
        if e.args[0].fatal():
            raise
        committed = False
    if not committed:
        retries += 1
        retried(lambda: producer.abort_transaction(30))
        continue
    out.write(f"{n}\n")
    out.flush()
    n += 1
out.close()
print(f"committed {transactions} transactions after {retries} retries")
