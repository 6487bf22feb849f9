//! ListOffsets: the earliest, latest, or first offset at a timestamp.

use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use kafka_protocol::error::ResponseError;

use super::{Broker, error_code, since};
use crate::log::{Log, LogError};

/// Kafka's special timestamps.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

pub(super) fn handle(broker: &Broker, request: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.to_string();
            let partitions = topic
                .partitions
                .into_iter()
                .map(|p| {
                    let response = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
                    let found = match &broker.cluster {
                        None => broker
                            .logs
                            .get(&name, p.partition_index)
                            .and_then(|log| lookup(&log, p.timestamp, None))
                            .map(|(offset, timestamp)| (offset, timestamp, 0))
                            .map_err(|e| error_code(&e)),
                        Some(cluster) => match cluster.replica(&name, p.partition_index) {
                            None => Err(ResponseError::NotLeaderOrFollower.code()),
                            Some(replica) => {
                                replica.check_leader(p.current_leader_epoch).map_err(|e| e.code()).and_then(|status| {
                                    lookup(&replica.log, p.timestamp, Some(status.high_watermark))
                                        .map(|(offset, timestamp)| (offset, timestamp, status.leader_epoch))
                                        .map_err(|e| error_code(&e))
                                })
                            }
                        },
                    };
                    match found {
                        Ok((offset, timestamp, epoch)) => response
                            .with_offset(offset)
                            .with_timestamp(timestamp)
                            .with_leader_epoch(since(version, 4, epoch, -1)),
                        Err(code) => response.with_error_code(code).with_offset(-1).with_timestamp(-1),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default().with_name(topic.name).with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// `(offset, timestamp)`; `(-1, -1)` when no record is at or after the timestamp. In a
/// cluster, the latest offset a consumer can read is the high watermark.
fn lookup(log: &Log, timestamp: i64, high_watermark: Option<i64>) -> Result<(i64, i64), LogError> {
    Ok(match timestamp {
        LATEST => (high_watermark.unwrap_or_else(|| log.log_end()), -1),
        EARLIEST => (log.log_start(), -1),
        MAX_TIMESTAMP => match log.max_timestamp() {
            Some(max) => log.offset_for_timestamp(max)?.unwrap_or((-1, -1)),
            None => (-1, -1),
        },
        timestamp => log.offset_for_timestamp(timestamp)?.unwrap_or((-1, -1)),
    })
}
