//! OffsetForLeaderEpoch: the end offset of a leader epoch, which clients use to detect
//! log truncation after a leader change and followers use to find where their log agrees
//! with a new leader's. Answered from the log's leader epoch cache. One broker: the
//! current leader epoch is 0.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::{Broker, error_code};

pub(super) fn handle(broker: &Broker, request: &OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let answer = EpochEndOffset::default().with_partition(p.partition);
                    if let Some(cluster) = &broker.cluster {
                        // Only the leader answers, at the epoch the asker believes current.
                        let Some(replica) = cluster.replica(&topic.topic, p.partition) else {
                            return answer.with_error_code(ResponseError::NotLeaderOrFollower.code());
                        };
                        if let Err(error) = replica.check_leader(p.current_leader_epoch) {
                            return answer.with_error_code(error.code());
                        }
                        return match replica.log.end_offset_for_epoch(p.leader_epoch) {
                            Some((epoch, end)) => answer.with_leader_epoch(epoch).with_end_offset(end),
                            None => answer.with_leader_epoch(-1).with_end_offset(-1),
                        };
                    }
                    match broker.logs.get(&topic.topic, p.partition) {
                        Err(error) => answer.with_error_code(error_code(&error)),
                        // A client that knows a newer epoch than ours is ahead of this broker.
                        Ok(_) if p.current_leader_epoch > 0 => {
                            answer.with_error_code(ResponseError::UnknownLeaderEpoch.code())
                        }
                        Ok(log) => match log.end_offset_for_epoch(p.leader_epoch) {
                            Some((epoch, end)) => answer.with_leader_epoch(epoch).with_end_offset(end),
                            // An epoch this log never had, or an empty log: a client asking
                            // about epoch 0 of an empty partition gets the log end.
                            None if p.leader_epoch == 0 && log.latest_epoch().is_none() => {
                                answer.with_leader_epoch(0).with_end_offset(log.log_end())
                            }
                            None => answer.with_leader_epoch(-1).with_end_offset(-1),
                        },
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default().with_topic(topic.topic.clone()).with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
