//! DeleteRecords: moves a partition's log start offset forward (-1 means the high
//! watermark); whole segments below it are removed by the next retention pass, and whole
//! remote files by the tier's next pass.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::{Broker, error_code};
use crate::log::TopicPartition;

pub(super) async fn handle(broker: &Broker, request: &DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let result = DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
            let outcome = broker.logs.get(&topic.name, p.partition_index).and_then(|log| {
                let offset = if p.offset == -1 { log.log_end() } else { p.offset };
                log.advance_log_start(offset).map(|local_start| (offset, local_start))
            });
            let outcome = match (outcome, &broker.tier) {
                (Ok((offset, local_start)), Some(tier)) => {
                    let tp = TopicPartition::new(topic.name.to_string(), p.partition_index);
                    match tier.advance_log_start(&tp, offset).await {
                        Ok(remote_start) => Ok(remote_start.map_or(local_start, |r| r.min(local_start))),
                        Err(error) => {
                            tracing::warn!(partition = %tp, error = %crate::tier::manager::error_chain(&error),
                                "could not move the remote log start");
                            Err(ResponseError::KafkaStorageError.code())
                        }
                    }
                }
                (Ok((_, local_start)), None) => Ok(local_start),
                (Err(error), _) => Err(error_code(&error)),
            };
            partitions.push(match outcome {
                Ok(low_watermark) => result.with_low_watermark(low_watermark),
                Err(code) => result.with_error_code(code).with_low_watermark(-1),
            });
        }
        topics.push(DeleteRecordsTopicResult::default().with_name(topic.name.clone()).with_partitions(partitions));
    }
    DeleteRecordsResponse::default().with_topics(topics)
}
