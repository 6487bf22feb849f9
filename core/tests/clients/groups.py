"""Consumer groups with real clients. Usage: groups.py BOOTSTRAP PHASE

phase 1: a group of three confluent-kafka consumers (members join one by one, one leaves,
         another joins) reads 3000 records from 6 partitions, committing as it goes; every
         record must be consumed and the committed offsets must reach the end of each
         partition. A kafka-python group reads another topic the same way.
phase 2 (after a broker restart): the committed offsets are still there, and a consumer
         of the same group gets only records produced after them."""

import sys
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer

BOOTSTRAP, PHASE = sys.argv[1], sys.argv[2]
TOPIC, GROUP, COUNT, PARTITIONS = "orders", "billing", 3000, 6


def fail(message):
    print(message)
    sys.exit(1)


def produce(topic, start, count):
    producer = Producer({"bootstrap.servers": BOOTSTRAP, "acks": "all", "compression.type": "lz4"})
    for i in range(start, start + count):
        producer.produce(topic, key=str(i).encode(), value=str(i).encode())
    if producer.flush(30) != 0:
        fail("produce did not finish")


def member(name, seconds, seen, lock):
    consumer = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": GROUP, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "session.timeout.ms": 10000, "heartbeat.interval.ms": 500})
    consumer.subscribe([TOPIC])
    deadline = time.time() + seconds
    while time.time() < deadline:
        msg = consumer.poll(0.2)
        if msg is None or msg.error():
            continue
        with lock:
            seen.add(int(msg.value()))
        consumer.commit(message=msg, asynchronous=False)
    consumer.close()


def phase1():
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    for future in admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)]).values():
        future.result(30)
    produce(TOPIC, 0, COUNT)
    seen, lock = set(), threading.Lock()
    plan = [("a", 0, 14), ("b", 1, 13), ("c", 2, 4), ("d", 7, 7)]  # c leaves early, d joins late
    threads = []
    start = time.time()
    for name, delay, seconds in plan:
        time.sleep(max(0, start + delay - time.time()))
        thread = threading.Thread(target=member, args=(name, seconds, seen, lock))
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    if len(seen) != COUNT:
        fail(f"consumed {len(seen)} distinct records of {COUNT}: lost {sorted(set(range(COUNT)) - seen)[:10]}")
    checker = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": GROUP})
    committed = checker.committed([TopicPartition(TOPIC, p) for p in range(PARTITIONS)], timeout=10)
    total = sum(tp.offset for tp in committed)
    checker.close()
    if total != COUNT:
        fail(f"committed offsets add up to {total}, not {COUNT}: {[(tp.partition, tp.offset) for tp in committed]}")
    print(f"group of 3 rebalanced through joins and leaves, consumed {COUNT}, committed {total}")

    produce("events", 0, 500)
    kconsumer = KafkaConsumer("events", bootstrap_servers=BOOTSTRAP, group_id="audit", auto_offset_reset="earliest",
                              enable_auto_commit=False, consumer_timeout_ms=15000)
    values = set()
    for msg in kconsumer:
        values.add(int(msg.value))
        if len(values) == 500:
            break
    kconsumer.commit()
    kconsumer.close()
    if len(values) != 500:
        fail(f"kafka-python group consumed {len(values)} of 500")
    print("kafka-python group consumed 500 and committed")


def phase2():
    checker = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": GROUP})
    committed = checker.committed([TopicPartition(TOPIC, p) for p in range(PARTITIONS)], timeout=10)
    checker.close()
    total = sum(tp.offset for tp in committed)
    if total != COUNT:
        fail(f"after restart the committed offsets add up to {total}, not {COUNT}")
    produce(TOPIC, COUNT, 60)
    consumer = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": GROUP, "auto.offset.reset": "earliest",
                         "session.timeout.ms": 10000})
    consumer.subscribe([TOPIC])
    got = set()
    deadline = time.time() + 20
    while time.time() < deadline and len(got) < 60:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            got.add(int(msg.value()))
    consumer.close()
    if got != set(range(COUNT, COUNT + 60)):
        fail(f"resumed from the committed offsets expected exactly the 60 new records, got {len(got)}: {sorted(got)[:5]}")
    print("after restart: committed offsets kept, group resumed with only the 60 new records")


phase1() if PHASE == "1" else phase2()
