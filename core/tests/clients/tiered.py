"""Tiered storage seen by real clients.

  tiered.py produce BOOTSTRAP TOPIC COUNT [RF] create a tiered JSON topic, produce COUNT records
  tiered.py consume BOOTSTRAP TOPIC COUNT      read every partition from offset 0, compare
  tiered.py parquet TOPIC ENDS DIR             pyarrow reads the tiered files under DIR
  tiered.py parquet-s3 TOPIC ENDS ENDPOINT BUCKET PREFIX KEY SECRET
                                               pyarrow reads them from an S3-compatible server

ENDS is each partition's remote end offset, comma-separated (from the manifests): the
files must hold every record below it.

Records are a pure function of (partition, index), so every mode knows what to expect.
"""
import json
import sys
import time

PARTITIONS = 2


def record(partition, index):
    key = f"p{partition}-k{index}".encode()
    value = json.dumps({"id": index, "user": f"user-{index % 13}", "amount": index * 1.5, "ok": index % 2 == 0})
    headers = [("trace", f"t{index}".encode()), ("empty", None)]
    timestamp = 1_700_000_000_000 + index
    return key, value.encode(), headers, timestamp


def produce(bootstrap, topic, count, replication=1):
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    configs = {
        "remote.storage.enable": "true",
        "local.retention.bytes": "0",
        "segment.bytes": "8192",
        "value.format": "json",
        # The records' timestamps are fixed (2023), so time retention must not apply.
        "retention.ms": "-1",
    }
    futures = admin.create_topics([NewTopic(topic, PARTITIONS, replication, config=configs)])
    for future in futures.values():
        try:
            future.result(timeout=30)
        except Exception as error:  # created beforehand (a cluster test creates it once brokers are up)
            if "TOPIC_ALREADY_EXISTS" not in str(error):
                raise
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "compression.type": "lz4", "acks": "all"})
    per_partition = count // PARTITIONS
    for index in range(per_partition):
        for partition in range(PARTITIONS):
            key, value, headers, timestamp = record(partition, index)
            producer.produce(topic, value=value, key=key, headers=headers, partition=partition, timestamp=timestamp)
        if index % 500 == 0:
            producer.flush(30)
    assert producer.flush(30) == 0, "undelivered records"
    print(f"produced {per_partition * PARTITIONS}")


def consume(bootstrap, topic, count):
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{time.time()}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    per_partition = count // PARTITIONS
    for partition in range(PARTITIONS):
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        assert (low, high) == (0, per_partition), f"partition {partition} watermarks {(low, high)}"
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    seen = {p: [] for p in range(PARTITIONS)}
    deadline = time.time() + 60
    while sum(len(v) for v in seen.values()) < per_partition * PARTITIONS:
        assert time.time() < deadline, f"only {[len(v) for v in seen.values()]} records"
        message = consumer.poll(1.0)
        if message is None:
            continue
        assert message.error() is None, message.error()
        seen[message.partition()].append(message)
    for partition, messages in seen.items():
        for index, message in enumerate(messages):
            key, value, headers, timestamp = record(partition, index)
            assert message.offset() == index, (partition, index, message.offset())
            assert message.key() == key and message.value() == value, (partition, index)
            assert message.headers() == headers, (partition, index, message.headers())
            assert message.timestamp()[1] == timestamp, (partition, index, message.timestamp())
    # A seek into the middle of remote history lands on the exact record.
    middle = per_partition // 2
    consumer.assign([TopicPartition(topic, 1, middle)])
    message = None
    while message is None:
        message = consumer.poll(5.0)
    assert message.offset() == middle and message.key() == record(1, middle)[0]
    consumer.close()
    print(f"consumed {per_partition * PARTITIONS} identical")


def check_table(table, ends):
    import pyarrow.compute as pc

    ends = [int(e) for e in ends.split(",")]
    assert table.num_rows == sum(ends), f"{table.num_rows} rows, expected {sum(ends)}"
    names = table.schema.names
    for column in ["partition", "offset", "timestamp", "key", "value", "headers", "id", "user", "amount", "ok"]:
        assert column in names, f"no column {column} in {names}"
    for partition in range(PARTITIONS):
        rows = table.filter(pc.equal(table["partition"], partition)).sort_by("offset")
        assert rows["offset"].to_pylist() == list(range(ends[partition])), f"partition {partition} offsets"
        assert rows["id"].to_pylist() == list(range(ends[partition])), "typed id column"
        sample = rows.slice(7, 1).to_pylist()[0]
        key, value, headers, timestamp = record(partition, 7)
        assert sample["key"] == key and sample["value"] == value, sample
        assert sample["user"] == "user-7" and sample["amount"] == 10.5 and sample["ok"] is False, sample
        assert [(h["key"], h["value"]) for h in sample["headers"]] == headers, sample["headers"]
        assert int(sample["timestamp"].timestamp() * 1000) == timestamp, sample["timestamp"]
    print(f"pyarrow read {table.num_rows} rows")


def parquet_local(topic, ends, directory):
    import glob
    import pyarrow.parquet as pq
    import pyarrow as pa

    files = sorted(glob.glob(f"{directory}/topics/{topic}/*/*/*.parquet"))
    assert files, f"no parquet files under {directory}"
    table = pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")
    check_table(table, ends)


def parquet_s3(topic, ends, endpoint, bucket, prefix, key, secret):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyarrow import fs

    s3 = fs.S3FileSystem(access_key=key, secret_key=secret, endpoint_override=endpoint, scheme="http",
                         region="us-east-1")
    selector = fs.FileSelector(f"{bucket}/{prefix}/topics/{topic}", recursive=True)
    files = sorted(i.path for i in s3.get_file_info(selector) if i.path.endswith(".parquet"))
    assert files, "no parquet objects in the bucket"
    table = pa.concat_tables([pq.read_table(f, filesystem=s3) for f in files], promote_options="default")
    check_table(table, ends)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "produce":
        produce(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]) if len(sys.argv) > 5 else 1)
    elif mode == "consume":
        consume(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif mode == "parquet":
        parquet_local(sys.argv[2], sys.argv[3], sys.argv[4])
    elif mode == "parquet-s3":
        parquet_s3(sys.argv[2], sys.argv[3], *sys.argv[4:9])
    else:
        raise SystemExit(f"unknown mode {mode}")
