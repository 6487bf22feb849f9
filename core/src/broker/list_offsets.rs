//! ListOffsets: the earliest, latest, or first offset at a timestamp.

use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

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
                    match broker.logs.get(&name, p.partition_index).and_then(|log| lookup(&log, p.timestamp)) {
                        Ok((offset, timestamp)) => response
                            .with_offset(offset)
                            .with_timestamp(timestamp)
                            .with_leader_epoch(since(version, 4, 0, -1)),
                        Err(error) => response.with_error_code(error_code(&error)).with_offset(-1).with_timestamp(-1),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default().with_name(topic.name).with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// `(offset, timestamp)`; `(-1, -1)` when no record is at or after the timestamp.
fn lookup(log: &Log, timestamp: i64) -> Result<(i64, i64), LogError> {
    Ok(match timestamp {
        LATEST => (log.log_end(), -1),
        EARLIEST => (log.log_start(), -1),
        MAX_TIMESTAMP => match log.max_timestamp() {
            Some(max) => log.offset_for_timestamp(max)?.unwrap_or((-1, -1)),
            None => (-1, -1),
        },
        timestamp => log.offset_for_timestamp(timestamp)?.unwrap_or((-1, -1)),
    })
}
