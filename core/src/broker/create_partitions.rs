//! CreatePartitions: grows a topic (Kafka never shrinks one).

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::{Broker, error_code, str_bytes};
use crate::log::LogError;

pub(super) fn handle(broker: &Broker, request: &CreatePartitionsRequest) -> CreatePartitionsResponse {
    let results = request
        .topics
        .iter()
        .map(|topic| {
            let outcome = if request.validate_only {
                match broker.logs.topic(&topic.name) {
                    None => Err(LogError::UnknownTopicOrPartition { topic: topic.name.to_string(), partition: -1 }),
                    Some(t) if topic.count <= t.partitions => Err(LogError::InvalidPartitions {
                        topic: topic.name.to_string(),
                        reason: format!("topic has {} partitions; the new count must be larger", t.partitions),
                    }),
                    Some(_) => Ok(()),
                }
            } else {
                broker.logs.create_partitions(&topic.name, topic.count)
            };
            let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
            match outcome {
                Ok(()) => result,
                Err(error) => {
                    result.with_error_code(error_code(&error)).with_error_message(Some(str_bytes(error.to_string())))
                }
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}
