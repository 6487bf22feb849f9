//! ListOffsets: the earliest, latest, or first offset at a timestamp. With tiered storage
//! the earliest offset is the true start of the log (remote history included), and a
//! timestamp is looked up in remote history before the local log. Under read_committed
//! (`isolation_level = 1`) the latest offset is the last stable offset, as in Kafka.

use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use kafka_protocol::error::ResponseError;

use super::{Broker, error_code, since};
use crate::log::{Log, TopicPartition};

/// Kafka's special timestamps.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

pub(super) async fn handle(broker: &Broker, request: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let read_committed = request.isolation_level == 1;
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.to_string();
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let response = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
            let located = match &broker.cluster {
                None => broker.logs.get(&name, p.partition_index).map(|log| (log, None, 0)).map_err(|e| error_code(&e)),
                Some(cluster) => match cluster.replica(&name, p.partition_index) {
                    None => Err(ResponseError::NotLeaderOrFollower.code()),
                    Some(replica) => replica
                        .check_leader(p.current_leader_epoch)
                        .map(|status| (replica.log.clone(), Some(status.high_watermark), status.leader_epoch))
                        .map_err(|e| e.code()),
                },
            };
            let tp = TopicPartition::new(name.clone(), p.partition_index);
            let found = match located {
                Ok((log, high_watermark, epoch)) => {
                    lookup(broker, &tp, &log, p.timestamp, high_watermark, read_committed)
                        .await
                        .map(|(o, t)| (o, t, epoch))
                }
                Err(code) => Err(code),
            };
            partitions.push(match found {
                Ok((offset, timestamp, epoch)) => response
                    .with_offset(offset)
                    .with_timestamp(timestamp)
                    .with_leader_epoch(since(version, 4, epoch, -1)),
                Err(code) => response.with_error_code(code).with_offset(-1).with_timestamp(-1),
            });
        }
        topics.push(ListOffsetsTopicResponse::default().with_name(topic.name).with_partitions(partitions));
    }
    ListOffsetsResponse::default().with_topics(topics)
}

/// `(offset, timestamp)`; `(-1, -1)` when no record is at or after the timestamp. In a
/// cluster, the latest offset a consumer can read is the high watermark; a read_committed
/// consumer's is the last stable offset below it.
async fn lookup(
    broker: &Broker,
    tp: &TopicPartition,
    log: &Log,
    timestamp: i64,
    high_watermark: Option<i64>,
    read_committed: bool,
) -> Result<(i64, i64), i16> {
    let local = |timestamp| log.offset_for_timestamp(timestamp).map_err(|e| error_code(&e));
    let by_time = async |timestamp: i64| -> Result<Option<(i64, i64)>, i16> {
        if let Some(tier) = &broker.tier {
            match tier.offset_for_timestamp(tp, timestamp).await {
                Ok(Some(found)) => return Ok(Some(found)),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(partition = %tp, error = %crate::tier::manager::error_chain(&error),
                        "remote timestamp lookup failed");
                    return Err(ResponseError::KafkaStorageError.code());
                }
            }
        }
        local(timestamp)
    };
    Ok(match timestamp {
        LATEST => {
            let visible = high_watermark.unwrap_or_else(|| log.log_end());
            (if read_committed { log.last_stable_offset(visible) } else { visible }, -1)
        }
        EARLIEST => (broker.log_start(&tp.topic, tp.partition, log.log_start()), -1),
        MAX_TIMESTAMP => {
            let remote = broker.tier.as_ref().and_then(|t| t.max_timestamp(tp));
            match log.max_timestamp().max(remote) {
                Some(max) => by_time(max).await?.unwrap_or((-1, -1)),
                None => (-1, -1),
            }
        }
        timestamp => by_time(timestamp).await?.unwrap_or((-1, -1)),
    })
}
