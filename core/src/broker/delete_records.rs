//! DeleteRecords: moves a partition's log start offset forward (-1 means the high
//! watermark); whole segments below it are removed by the next retention pass.

use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::{Broker, error_code};

pub(super) fn handle(broker: &Broker, request: &DeleteRecordsRequest) -> DeleteRecordsResponse {
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let result = DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
                    let outcome = broker.logs.get(&topic.name, p.partition_index).and_then(|log| {
                        let offset = if p.offset == -1 { log.log_end() } else { p.offset };
                        log.advance_log_start(offset)
                    });
                    match outcome {
                        Ok(low_watermark) => result.with_low_watermark(low_watermark),
                        Err(error) => result.with_error_code(error_code(&error)).with_low_watermark(-1),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default().with_name(topic.name.clone()).with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
