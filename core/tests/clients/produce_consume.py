"""Real clients against a real broker: confluent-kafka (librdkafka) and kafka-python
produce keyed records with headers under every codec, then read them back and compare
them record by record. Exits non-zero on any difference."""

import sys

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KTopicPartition

BOOTSTRAP = sys.argv[1]
COUNT = 300


def expected(topic):
    return [(f"key-{i}".encode(), f"{topic} value {i} ".encode() * (1 + i % 5), [("n", str(i).encode())]) for i in range(COUNT)]


def librdkafka(codec, idempotent):
    topic = f"rd-{codec}-{'idem' if idempotent else 'plain'}"
    producer = Producer({"bootstrap.servers": BOOTSTRAP, "acks": "all", "compression.type": codec,
                         "enable.idempotence": idempotent, "linger.ms": 5})
    failures = []
    for key, value, headers in expected(topic):
        producer.produce(topic, key=key, value=value, headers=headers,
                         on_delivery=lambda err, msg: err and failures.append(err))
    if producer.flush(30) != 0 or failures:
        raise SystemExit(f"{topic}: delivery failed: {failures[:3]}")
    consumer = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": "unused", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    got = []
    while len(got) < COUNT:
        msg = consumer.poll(10)
        if msg is None:
            break
        if msg.error():
            raise KafkaException(msg.error())
        got.append((msg.key(), msg.value(), [(k, v) for k, v in (msg.headers() or [])]))
    consumer.close()
    if got != expected(topic):
        raise SystemExit(f"{topic}: read back {len(got)} records that differ from what was produced")
    print(f"{topic}: {COUNT} records round-tripped")


def kafka_python(codec):
    topic = f"kp-{codec}"
    producer = KafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", compression_type=None if codec == "none" else codec)
    futures = [producer.send(topic, key=k, value=v, headers=h) for k, v, h in expected(topic)]
    producer.flush()
    offsets = [f.get(timeout=30).offset for f in futures]
    if offsets != list(range(COUNT)):
        raise SystemExit(f"{topic}: offsets {offsets[:5]}... are not 0..{COUNT}")
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False, consumer_timeout_ms=10000)
    consumer.assign([KTopicPartition(topic, 0)])
    consumer.seek_to_beginning()
    got = []
    for msg in consumer:
        got.append((msg.key, msg.value, [(k, v) for k, v in msg.headers]))
        if len(got) == COUNT:
            break
    consumer.close()
    if got != expected(topic):
        raise SystemExit(f"{topic}: read back {len(got)} records that differ from what was produced")
    print(f"{topic}: {COUNT} records round-tripped")


for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
    librdkafka(codec, idempotent=False)
librdkafka("zstd", idempotent=True)
for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
    kafka_python(codec)
