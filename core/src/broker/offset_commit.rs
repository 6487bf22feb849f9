//! OffsetCommit: checks the member's generation, then writes the offsets durably.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use super::Broker;
use crate::group::CommittedOffset;

pub(super) async fn handle(broker: &Broker, request: OffsetCommitRequest) -> OffsetCommitResponse {
    let now = broker.clock.now_ms();
    let mut offsets = Vec::new();
    let mut unknown = Vec::new();
    for topic in &request.topics {
        for p in &topic.partitions {
            if broker.logs.log(&crate::log::TopicPartition::new(topic.name.to_string(), p.partition_index)).is_none() {
                unknown.push((topic.name.to_string(), p.partition_index));
                continue;
            }
            offsets.push((
                (topic.name.to_string(), p.partition_index),
                CommittedOffset {
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                    commit_timestamp: now,
                },
            ));
        }
    }
    let code = broker
        .groups
        .commit(&request.group_id, &request.member_id, request.generation_id_or_member_epoch, offsets)
        .await;
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.to_string();
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let code = if unknown.contains(&(name.clone(), p.partition_index)) {
                        ResponseError::UnknownTopicOrPartition.code()
                    } else {
                        code
                    };
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetCommitResponseTopic::default().with_name(topic.name).with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
