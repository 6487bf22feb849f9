"""Prints the value of every record a read_committed consumer (librdkafka) reads from
the start of TOPIC's PARTITIONS partitions, until nothing new comes for a few seconds.
Usage: read_committed.py BOOTSTRAP TOPIC PARTITIONS"""

import sys
import time

from confluent_kafka import Consumer, KafkaError, TopicPartition

bootstrap, topic, partitions = sys.argv[1], sys.argv[2], int(sys.argv[3])
consumer = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": f"read-committed-{time.time()}",
    "enable.auto.commit": False,
    "isolation.level": "read_committed",
})
consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
last = time.time()
while time.time() - last < 5:
    msg = consumer.poll(0.2)
    if msg is None:
        continue
    if msg.error():
        if msg.error().code() == KafkaError._PARTITION_EOF:
            continue
        print(f"consume error: {msg.error()}", file=sys.stderr)
        sys.exit(1)
    print(msg.value().decode())
    last = time.time()
consumer.close()
