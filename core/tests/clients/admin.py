"""Topic and group admin with confluent-kafka's AdminClient against a real broker:
create, describe and alter configs (full and incremental), add partitions, delete records,
describe the cluster, list / describe / delete consumer groups, delete topics."""

import sys

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource,
                                   NewPartitions, NewTopic)

BOOTSTRAP = sys.argv[1]
# Kept referenced for as long as its futures are outstanding.
admin = AdminClient({"bootstrap.servers": BOOTSTRAP})


def check(condition, message):
    if not condition:
        print("FAILED:", message)
        sys.exit(1)


def wait(futures):
    return {k: f.result(30) for k, f in futures.items()}


wait(admin.create_topics([NewTopic("adm", 2, 1, config={"retention.ms": "3600000", "cleanup.policy": "compact"})]))
bad = admin.create_topics([NewTopic("bad topic!", 1, 1)])["bad topic!"]
try:
    bad.result(30)
    check(False, "an invalid topic name was accepted")
except Exception as error:
    check("TOPIC_EXCEPTION" in str(error) and "invalid topic name" in str(error), f"unexpected error {error}")

resource = ConfigResource(ConfigResource.Type.TOPIC, "adm")
configs = wait(admin.describe_configs([resource]))[resource]
check(configs["retention.ms"].value == "3600000", "retention.ms override")
check(configs["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value, "override source")
check(configs["segment.bytes"].value == "1073741824", "default segment.bytes listed")
check(configs["segment.bytes"].source == ConfigSource.DEFAULT_CONFIG.value, "default source")
check(len(configs) >= 11, f"only {len(configs)} configs described")

wait(admin.incremental_alter_configs([ConfigResource(ConfigResource.Type.TOPIC, "adm", incremental_configs=[
    ConfigEntry("retention.ms", "60000", incremental_operation=AlterConfigOpType.SET),
    ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.APPEND)])]))
configs = wait(admin.describe_configs([resource]))[resource]
check(configs["retention.ms"].value == "60000", "incremental set")
check(configs["cleanup.policy"].value == "compact,delete", f"incremental append: {configs['cleanup.policy'].value}")
bad = admin.incremental_alter_configs([ConfigResource(ConfigResource.Type.TOPIC, "adm", incremental_configs=[
    ConfigEntry("retention.ms", "soon", incremental_operation=AlterConfigOpType.SET)])])
try:
    list(bad.values())[0].result(30)
    check(False, "an invalid config value was accepted")
except Exception as error:
    check("INVALID_CONFIG" in str(error) or "retention.ms" in str(error), f"unexpected error {error}")

wait(admin.create_partitions([NewPartitions("adm", 4)]))
metadata = admin.list_topics("adm", timeout=10)
check(len(metadata.topics["adm"].partitions) == 4, "partitions added")

producer = Producer({"bootstrap.servers": BOOTSTRAP})
for i in range(100):
    producer.produce("recs", value=str(i).encode(), partition=0)
producer.flush(30)
deleted = wait(admin.delete_records([TopicPartition("recs", 0, 40)]))
check(list(deleted.values())[0].low_watermark == 40, f"low watermark after delete records: {deleted}")
consumer = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": "adm-group", "auto.offset.reset": "earliest"})
low, high = consumer.get_watermark_offsets(TopicPartition("recs", 0), timeout=10)
check((low, high) == (40, 100), f"watermarks {(low, high)}")
consumer.assign([TopicPartition("recs", 0, 40)])
first = consumer.poll(10)
check(first is not None and first.value() == b"40", "reading resumes at the new log start")
consumer.commit(asynchronous=False)
consumer.close()

cluster = admin.describe_cluster().result(30)
check(len(cluster.nodes) == 1 and cluster.controller is not None, f"cluster {cluster}")

groups = admin.list_consumer_groups().result(30)
check(any(g.group_id == "adm-group" for g in groups.valid), f"groups {groups.valid}")
described = wait(admin.describe_consumer_groups(["adm-group"]))["adm-group"]
check(described.group_id == "adm-group", "describe group")
wait(admin.delete_consumer_groups(["adm-group"]))
groups = admin.list_consumer_groups().result(30)
check(not any(g.group_id == "adm-group" for g in groups.valid), "group deleted")

wait(admin.delete_topics(["adm"]))
check("adm" not in admin.list_topics(timeout=10).topics, "topic deleted")
print("admin operations all behaved like Kafka")
