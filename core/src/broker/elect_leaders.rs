//! ElectLeaders: moves leadership back to partitions' preferred replicas (Kafka's
//! `kafka-leader-election.sh --election-type preferred`). A cluster only: one broker leads
//! everything already. Unclean elections are left to `unclean.leader.election.enable`.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse};

use super::{Broker, str_bytes, topic_name};
use crate::cluster::MetadataCommand;
use crate::cluster::election::preferred_leader_eligible;

/// Kafka's election types.
const PREFERRED: i8 = 0;

pub(super) async fn handle(broker: &Broker, request: ElectLeadersRequest) -> ElectLeadersResponse {
    let Some(cluster) = &broker.cluster else {
        // One broker: every partition is led by its only (so preferred) replica.
        return ElectLeadersResponse::default().with_replica_election_results(
            request
                .topic_partitions
                .unwrap_or_default()
                .into_iter()
                .map(|t| {
                    let results = t
                        .partitions
                        .into_iter()
                        .map(|p| {
                            PartitionResult::default()
                                .with_partition_id(p)
                                .with_error_code(ResponseError::ElectionNotNeeded.code())
                        })
                        .collect();
                    ReplicaElectionResult::default().with_topic(t.topic).with_partition_result(results)
                })
                .collect(),
        );
    };
    let image = cluster.image();
    let wanted: Vec<(String, Vec<i32>)> = match request.topic_partitions {
        Some(topics) => topics.into_iter().map(|t| (t.topic.to_string(), t.partitions)).collect(),
        None => image.topics.iter().map(|(name, t)| (name.clone(), (0..t.partitions.len() as i32).collect())).collect(),
    };
    let mut results = Vec::with_capacity(wanted.len());
    for (topic, partitions) in wanted {
        let mut partition_results = Vec::with_capacity(partitions.len());
        for index in partitions {
            let result = PartitionResult::default().with_partition_id(index);
            let registration = image.partition(&topic, index.max(0) as u32).filter(|_| index >= 0);
            let (code, message) = if request.election_type != PREFERRED {
                (ResponseError::InvalidRequest.code(), Some("only preferred elections are supported".to_string()))
            } else {
                match registration {
                    None => (ResponseError::UnknownTopicOrPartition.code(), None),
                    Some(p) if p.replicas.first() == Some(&p.leader) => (ResponseError::ElectionNotNeeded.code(), None),
                    Some(p) if !preferred_leader_eligible(p, &image.brokers) => (
                        ResponseError::PreferredLeaderNotAvailable.code(),
                        Some(format!("preferred replica {:?} is not in the ISR or not alive", p.replicas.first())),
                    ),
                    Some(_) => {
                        let command =
                            MetadataCommand::ElectPreferredLeader { topic: topic.clone(), partition: index as u32 };
                        match cluster.controller().propose(command, std::time::Duration::from_secs(10)).await {
                            Ok(Ok(_)) => (0, None),
                            Ok(Err(error)) => (error.code(), Some(error.to_string())),
                            Err(error) => (ResponseError::RequestTimedOut.code(), Some(error.to_string())),
                        }
                    }
                }
            };
            partition_results.push(result.with_error_code(code).with_error_message(message.map(str_bytes)));
        }
        results.push(
            ReplicaElectionResult::default().with_topic(topic_name(&topic)).with_partition_result(partition_results),
        );
    }
    ElectLeadersResponse::default().with_replica_election_results(results)
}
