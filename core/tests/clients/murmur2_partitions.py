"""Produces keys with librdkafka's murmur2 partitioner (the Java client's) and prints
`key partition` for each, so the Rust partitioner can be checked against it."""
import sys
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

bootstrap = sys.argv[1]
admin = AdminClient({"bootstrap.servers": bootstrap})
for f in admin.create_topics([NewTopic("keyed", 7, 1)]).values():
    f.result(30)
producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
placed = []
for i in range(300):
    key = f"user-{i * 7919}".encode()
    producer.produce("keyed", key=key, value=b"v", on_delivery=lambda err, msg: placed.append((msg.key().decode(), msg.partition())))
producer.flush(30)
for key, partition in placed:
    print(key, partition)
