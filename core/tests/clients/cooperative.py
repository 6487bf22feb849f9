"""A mixed consumer group on the cooperative protocol. Usage: cooperative.py BOOTSTRAP HEADWATER

Two confluent-kafka members with partition.assignment.strategy=cooperative-sticky and one
`headwater consume --group --assignor cooperative-sticky` process share a 6-partition topic
while members join and leave and more records arrive. Whichever client leads the group
assigns for the others, so each side must read the other's subscription (owned partitions)
and follow the other's incremental assignments. Every record must be consumed; every member
must get some; the librdkafka members must never have all their partitions revoked at once
while they stay (the eager protocol would)."""

import subprocess
import sys
import threading
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

REBALANCING = (KafkaError.ILLEGAL_GENERATION, KafkaError.REBALANCE_IN_PROGRESS, KafkaError.UNKNOWN_MEMBER_ID)
from confluent_kafka.admin import AdminClient, NewTopic

BOOTSTRAP, HEADWATER = sys.argv[1], sys.argv[2]
TOPIC, GROUP, PARTITIONS = "shared", "mixed", 6


def fail(message):
    print(message)
    sys.exit(1)


def produce(start, count):
    producer = Producer({"bootstrap.servers": BOOTSTRAP, "acks": "all"})
    for i in range(start, start + count):
        producer.produce(TOPIC, key=str(i).encode(), value=str(i).encode())
    if producer.flush(30) != 0:
        fail("produce did not finish")


def member(name, seconds, seen, lock, problems):
    consumer = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": GROUP, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "session.timeout.ms": 10000, "heartbeat.interval.ms": 500,
                         "partition.assignment.strategy": "cooperative-sticky"})
    owned = set()

    def on_assign(c, partitions):
        owned.update(p.partition for p in partitions)
        c.incremental_assign(partitions)

    def on_revoke(c, partitions):
        revoked = {p.partition for p in partitions}
        if owned and revoked == owned and not closing.is_set():
            problems.append(f"{name}: everything ({sorted(owned)}) revoked at once")
        owned.difference_update(revoked)
        c.incremental_unassign(partitions)

    closing = threading.Event()
    consumer.subscribe([TOPIC], on_assign=on_assign, on_revoke=on_revoke)
    deadline = time.time() + seconds
    count = 0
    while time.time() < deadline:
        msg = consumer.poll(0.2)
        if msg is None or msg.error():
            continue
        with lock:
            seen.add(int(msg.value()))
        count += 1
        try:
            consumer.commit(message=msg, asynchronous=False)
        except KafkaException as error:
            # A commit that races a rebalance is refused, as with Kafka; the member goes
            # on with its new generation and commits again.
            if error.args[0].code() not in REBALANCING:
                raise
    closing.set()
    consumer.close()
    with lock:
        counts[name] = count


counts = {}


def main():
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    for future in admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)]).values():
        future.result(30)
    produce(0, 3000)
    seen, lock, problems = set(), threading.Lock(), []
    a = threading.Thread(target=member, args=("a", 16, seen, lock, problems))
    a.start()
    time.sleep(2)
    ours = subprocess.Popen([HEADWATER, "consume", TOPIC, "--bootstrap", BOOTSTRAP, "--group", GROUP,
                             "--assignor", "cooperative-sticky", "--from-beginning"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ours_seen = set()
    reader = threading.Thread(target=lambda: ours_seen.update(int(line) for line in ours.stdout))
    reader.start()
    time.sleep(3)
    b = threading.Thread(target=member, args=("b", 16, seen, lock, problems))
    b.start()
    time.sleep(3)
    produce(3000, 3000)
    a.join()
    b.join()
    # The headwater member now owns everything; let it catch up, then stop it.
    time.sleep(4)
    ours.terminate()
    ours.wait(10)
    reader.join()
    stderr = ours.stderr.read()
    everything = seen | ours_seen
    if len(everything) != 6000:
        fail(f"consumed {len(everything)} of 6000: lost {sorted(set(range(6000)) - everything)[:10]}; "
             f"headwater stderr: {stderr}")
    if problems:
        fail("; ".join(problems))
    if not ours_seen or not counts.get("a") or not counts.get("b"):
        fail(f"a member got nothing: headwater {len(ours_seen)}, librdkafka {counts}; stderr {stderr}")
    print(f"mixed cooperative group consumed 6000: headwater {len(ours_seen)}, "
          f"librdkafka a {counts['a']}, b {counts['b']}")


main()
