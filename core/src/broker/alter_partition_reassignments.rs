//! AlterPartitionReassignments: moves partitions' replicas to other brokers while clients
//! run (Kafka's `kafka-reassign-partitions.sh`). The controller adds the new replicas, they
//! catch up as followers and join the ISR, and only then are the old ones dropped (and
//! leadership moves if the leader was one of them). A cluster only.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::{AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse};

use super::{Broker, str_bytes};
use crate::cluster::MetadataCommand;

pub(super) async fn handle(
    broker: &Broker,
    request: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let Some(cluster) = &broker.cluster else {
        return AlterPartitionReassignmentsResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_error_message(Some(str_bytes("a single broker has nowhere to move replicas")));
    };
    let mut responses = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for partition in topic.partitions {
            let response = ReassignablePartitionResponse::default().with_partition_index(partition.partition_index);
            let (code, message) = match partition.replicas {
                // Kafka cancels a reassignment with null replicas; the metadata keeps no
                // record of the set it started from, so there is nothing to go back to.
                None => (
                    ResponseError::InvalidRequest.code(),
                    Some("cancelling a reassignment is not supported; reassign to the old replicas".to_string()),
                ),
                Some(_) if partition.partition_index < 0 => (ResponseError::UnknownTopicOrPartition.code(), None),
                Some(replicas) => {
                    let command = MetadataCommand::ReassignPartition {
                        topic: topic.name.to_string(),
                        partition: partition.partition_index as u32,
                        replicas: replicas.into_iter().map(|b| b.0).collect(),
                    };
                    match cluster.controller().propose(command, std::time::Duration::from_secs(10)).await {
                        Ok(Ok(_)) => (0, None),
                        Ok(Err(error)) => (error.code(), Some(error.to_string())),
                        Err(error) => (ResponseError::RequestTimedOut.code(), Some(error.to_string())),
                    }
                }
            };
            partitions.push(response.with_error_code(code).with_error_message(message.map(str_bytes)));
        }
        responses.push(ReassignableTopicResponse::default().with_name(topic.name).with_partitions(partitions));
    }
    AlterPartitionReassignmentsResponse::default().with_responses(responses)
}
