//! OffsetFetch: a group's committed offsets; -1 where none is committed. One group per
//! request before v8, a batch of groups from v8. With `require_stable` (KIP-447), a
//! partition whose offsets a transaction has written but not yet decided answers
//! UNSTABLE_OFFSET_COMMIT, and the client retries.

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse};

use kafka_protocol::error::ResponseError;

use super::{Broker, since, str_bytes, topic_name};

/// `(topic, [(partition, offset, leader_epoch, metadata, error_code)])` for the requested
/// partitions, or every committed one when `wanted` is `None`.
type Fetched = Vec<(String, Vec<(i32, i64, i32, Option<String>, i16)>)>;

fn fetch(broker: &Broker, group: &str, wanted: Option<Vec<(String, Vec<i32>)>>, require_stable: bool) -> Fetched {
    let wanted = wanted.unwrap_or_else(|| {
        let mut by_topic: std::collections::BTreeMap<String, Vec<i32>> = Default::default();
        for ((topic, partition), _) in broker.groups.all_committed(group) {
            by_topic.entry(topic).or_default().push(partition);
        }
        by_topic.into_iter().collect()
    });
    wanted
        .into_iter()
        .map(|(topic, partitions)| {
            let fetched = partitions
                .into_iter()
                .map(|p| {
                    if require_stable && broker.groups.has_pending_offsets(group, &topic, p) {
                        return (p, -1, -1, None, ResponseError::UnstableOffsetCommit.code());
                    }
                    match broker.groups.committed(group, &topic, p) {
                        Some(c) => (p, c.offset, c.leader_epoch, c.metadata, 0),
                        None => (p, -1, -1, None, 0),
                    }
                })
                .collect();
            (topic, fetched)
        })
        .collect()
}

pub(super) fn handle(broker: &Broker, request: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = request
            .groups
            .into_iter()
            .map(|g| {
                let owner = broker.groups.owner_code(&g.group_id);
                if owner != 0 {
                    return OffsetFetchResponseGroup::default().with_group_id(g.group_id).with_error_code(owner);
                }
                let wanted =
                    g.topics.map(|ts| ts.into_iter().map(|t| (t.name.to_string(), t.partition_indexes)).collect());
                let topics = fetch(broker, &g.group_id, wanted, request.require_stable)
                    .into_iter()
                    .map(|(topic, partitions)| {
                        let partitions = partitions
                            .into_iter()
                            .map(|(p, offset, epoch, metadata, code)| {
                                OffsetFetchResponsePartitions::default()
                                    .with_partition_index(p)
                                    .with_error_code(code)
                                    .with_committed_offset(offset)
                                    .with_committed_leader_epoch(epoch)
                                    .with_metadata(metadata.map(str_bytes).or(Some(str_bytes(""))))
                            })
                            .collect();
                        OffsetFetchResponseTopics::default().with_name(topic_name(&topic)).with_partitions(partitions)
                    })
                    .collect();
                OffsetFetchResponseGroup::default().with_group_id(g.group_id).with_topics(topics)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let owner = broker.groups.owner_code(&request.group_id);
    if owner != 0 {
        // The request-level error exists from v2; older clients see no offsets.
        return OffsetFetchResponse::default().with_error_code(since(version, 2, owner, 0));
    }
    let wanted = request.topics.map(|ts| ts.into_iter().map(|t| (t.name.to_string(), t.partition_indexes)).collect());
    let topics = fetch(broker, &request.group_id, wanted, version >= 7 && request.require_stable)
        .into_iter()
        .map(|(topic, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|(p, offset, epoch, metadata, code)| {
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(p)
                        .with_error_code(code)
                        .with_committed_offset(offset)
                        .with_committed_leader_epoch(since(version, 5, epoch, -1))
                        .with_metadata(metadata.map(str_bytes).or(Some(str_bytes(""))))
                })
                .collect();
            OffsetFetchResponseTopic::default().with_name(topic_name(&topic)).with_partitions(partitions)
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}
