"""A consumer group member (librdkafka) that reads a topic until it has seen EXPECTED
distinct values, committing as it goes, through whatever happens to the brokers meanwhile.
Writes each value it receives to OUT (one per line, flushed, so the test can watch
progress), then prints the group's committed offsets as `partition offset` lines, read
back by a fresh consumer from the group's coordinator.
Usage: group_failover.py BOOTSTRAP TOPIC GROUP EXPECTED OUT TIMEOUT_SECONDS"""

import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

bootstrap, topic, group, expected, out_path, timeout = sys.argv[1:7]
expected, timeout = int(expected), float(timeout)

settings = {
    "bootstrap.servers": bootstrap,
    "group.id": group,
    "auto.offset.reset": "earliest",
    "enable.auto.commit": False,
    "session.timeout.ms": 6000,
    "reconnect.backoff.ms": 50,
    "reconnect.backoff.max.ms": 200,
}
consumer = Consumer(settings)
consumer.subscribe([topic])
seen = set()
out = open(out_path, "w")
deadline = time.time() + timeout
while len(seen) < expected and time.time() < deadline:
    messages = consumer.consume(num_messages=500, timeout=0.5)
    for message in messages:
        if message.error():
            continue
        value = message.value().decode()
        seen.add(value)
        out.write(value + "\n")
    out.flush()
    if messages:
        try:
            consumer.commit(asynchronous=False)
        except Exception as error:  # the coordinator moved: the next commit goes to the new one
            print(f"commit failed: {error}", file=sys.stderr)
try:
    consumer.commit(asynchronous=False)
except KafkaException as error:
    # Nothing consumed since the last commit is fine; anything else is not.
    if error.args[0].code() != KafkaError._NO_OFFSET:
        raise
consumer.close()
out.close()
if len(seen) < expected:
    print(f"saw only {len(seen)} of {expected} values", file=sys.stderr)
    sys.exit(1)

checker = Consumer({**settings, "group.id": group})
metadata = checker.list_topics(topic, timeout=10)
wanted = [TopicPartition(topic, p) for p in metadata.topics[topic].partitions]
for tp in checker.committed(wanted, timeout=10):
    print(f"{tp.partition} {tp.offset}")
checker.close()
