//! CreatePartitions: grows a topic (Kafka never shrinks one).

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::{Broker, str_bytes};

pub(super) async fn handle(broker: &Broker, request: &CreatePartitionsRequest) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let outcome = broker.create_partitions(&topic.name, topic.count, request.validate_only).await;
        let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        results.push(match outcome {
            Ok(()) => result,
            Err(error) => result.with_error_code(error.code).with_error_message(Some(str_bytes(error.message))),
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}
