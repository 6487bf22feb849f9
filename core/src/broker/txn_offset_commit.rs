//! TxnOffsetCommit: a transactional producer commits a group's offsets inside its
//! transaction; they become visible when the transaction commits.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use super::Broker;
use crate::group::CommittedOffset;

pub(super) async fn handle(broker: &Broker, request: &TxnOffsetCommitRequest) -> TxnOffsetCommitResponse {
    let now = broker.clock.now_ms();
    let mut offsets = Vec::new();
    let mut unknown = Vec::new();
    for topic in &request.topics {
        for p in &topic.partitions {
            if !broker.partition_exists(&topic.name, p.partition_index) {
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
        .commit_transactional(
            &request.group_id,
            &request.member_id,
            request.generation_id,
            (request.producer_id.0, request.producer_epoch),
            offsets,
        )
        .await;
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let code = if unknown.contains(&(topic.name.to_string(), p.partition_index)) {
                        ResponseError::UnknownTopicOrPartition.code()
                    } else {
                        code
                    };
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            TxnOffsetCommitResponseTopic::default().with_name(topic.name.clone()).with_partitions(partitions)
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}
