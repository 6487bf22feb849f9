"""A transactional producer (librdkafka) that commits the even and aborts the odd of
TRANSACTIONS transactions of PER_TXN records each to TOPIC. Values are `t<n>-<i>`.
Usage: txn_alternate.py BOOTSTRAP TOPIC TXID TRANSACTIONS PER_TXN"""

import sys

from confluent_kafka import Producer

bootstrap, topic, txid, transactions, per_txn = sys.argv[1:6]
producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": txid, "linger.ms": 5})
producer.init_transactions(30)
for n in range(int(transactions)):
    producer.begin_transaction()
    for i in range(int(per_txn)):
        producer.produce(topic, key=str(i).encode(), value=f"t{n}-{i}".encode())
    producer.flush(30)
    if n % 2 == 0:
        producer.commit_transaction(30)
    else:
        producer.abort_transaction(30)
print(f"committed {(int(transactions) + 1) // 2} and aborted {int(transactions) // 2} transactions")
