"""Produces with acks=all for a while, through broker restarts, and writes every
acknowledged record as `partition offset value` to a file. Records that fail are not
acknowledged and are not written.
Usage: acked_producer.py BOOTSTRAP TOPIC OUT SECONDS [REPLICATION_FACTOR [MIN_INSYNC_REPLICAS]]"""

import os
import sys
import time

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

bootstrap, topic, out_path, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
replication_factor = int(sys.argv[5]) if len(sys.argv) > 5 else 1
configs = {"min.insync.replicas": sys.argv[6]} if len(sys.argv) > 6 else {}

admin = AdminClient({"bootstrap.servers": bootstrap})
for future in admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=replication_factor, config=configs)]).values():
    try:
        future.result(timeout=30)
    except KafkaException as error:
        # Created beforehand by the test (a cluster must be up before it can place replicas).
        if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise

producer = Producer({
    "bootstrap.servers": bootstrap,
    "acks": "all",
    "enable.idempotence": True,
    "linger.ms": 2,
    # MESSAGE_TIMEOUT_MS: how long a record may wait for its acknowledgement.
    "message.timeout.ms": int(os.environ.get("MESSAGE_TIMEOUT_MS", "60000")),
    "reconnect.backoff.ms": 50,
    "reconnect.backoff.max.ms": 200,
})
out = open(out_path, "w")
acked = 0


def on_delivery(err, msg):
    global acked
    if err is None:
        out.write(f"{msg.partition()} {msg.offset()} {msg.value().decode()}\n")
        acked += 1


deadline = time.time() + seconds
i = 0
while time.time() < deadline:
    try:
        producer.produce(topic, key=str(i).encode(), value=f"record-{i}-{'x' * (i % 200)}".encode(), on_delivery=on_delivery)
        i += 1
    except BufferError:
        producer.poll(0.05)
    producer.poll(0)
left = producer.flush(90)
out.close()
print(f"produced {i} acked {acked} unflushed {left}")
