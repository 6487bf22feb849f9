//! AddPartitionsToTxn (versions 0-3, from producers): the partitions a transaction is
//! about to write, so that its markers reach each of them.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};

use super::Broker;

pub(super) async fn handle(broker: &Broker, request: &AddPartitionsToTxnRequest) -> AddPartitionsToTxnResponse {
    let wanted: Vec<(String, i32)> = request
        .v3_and_below_topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.name.to_string(), *p)))
        .collect();
    let unknown: Vec<&(String, i32)> = wanted.iter().filter(|(t, p)| !broker.partition_exists(t, *p)).collect();
    // Kafka adds none when any is unknown: those get UNKNOWN_TOPIC_OR_PARTITION, the rest
    // OPERATION_NOT_ATTEMPTED.
    let code_of = |tp: &(String, i32), result: i16| {
        if unknown.is_empty() {
            result
        } else if unknown.contains(&tp) {
            ResponseError::UnknownTopicOrPartition.code()
        } else {
            ResponseError::OperationNotAttempted.code()
        }
    };
    let result = if unknown.is_empty() {
        let id = request.v3_and_below_transactional_id.to_string();
        let producer = (request.v3_and_below_producer_id.0, request.v3_and_below_producer_epoch);
        broker.txns.add_partitions(&id, producer.0, producer.1, &wanted).await.err().unwrap_or(0)
    } else {
        0
    };
    let topics = request
        .v3_and_below_topics
        .iter()
        .map(|topic| {
            let results = topic
                .partitions
                .iter()
                .map(|p| {
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(*p)
                        .with_partition_error_code(code_of(&(topic.name.to_string(), *p), result))
                })
                .collect();
            AddPartitionsToTxnTopicResult::default().with_name(topic.name.clone()).with_results_by_partition(results)
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topics)
}
