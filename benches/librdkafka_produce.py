#!/usr/bin/env python3
"""The produce benchmark through librdkafka (confluent-kafka), for comparison with
`headwater bench produce`. Usage: benches/librdkafka_produce.py BOOTSTRAP TOPIC [RECORDS] [ACKS]

Produces RECORDS (default 1,000,000) values of 1 KiB to TOPIC (which should have 6
partitions) with librdkafka's defaults (batches up to 1 MB, linger 5 ms, idempotence off)
and the given acks (default all), timing from the first produce() to the end of flush(),
and prints one JSON object like `headwater bench produce --json` (throughput only)."""

import json
import sys
import time

from confluent_kafka import Producer

bootstrap, topic = sys.argv[1], sys.argv[2]
records = int(sys.argv[3]) if len(sys.argv) > 3 else 1_000_000
acks = sys.argv[4] if len(sys.argv) > 4 else "all"
value = b"x" * 1024
producer = Producer({"bootstrap.servers": bootstrap, "acks": acks, "queue.buffering.max.messages": 1_000_000,
                     "queue.buffering.max.kbytes": 2_097_151})
failed = []
start = time.perf_counter()
for _ in range(records):
    while True:
        try:
            producer.produce(topic, value, on_delivery=lambda err, msg: err and failed.append(err))
            break
        except BufferError:
            producer.poll(0.01)
    producer.poll(0)
producer.flush(120)
seconds = time.perf_counter() - start
if failed:
    sys.exit(f"{len(failed)} records failed: {failed[0]}")
print(json.dumps({"records": records, "bytes": records * 1024, "seconds": round(seconds, 3),
                  "mb_per_s": round(records * 1024 / seconds / 1e6, 2), "records_per_s": round(records / seconds, 1)}))
