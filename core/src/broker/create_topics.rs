//! CreateTopics: on one broker a replication factor of 1 (or -1, the default); in a
//! cluster, any factor up to the live brokers, placed by the controller.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::{Broker, since, str_bytes};

pub(super) async fn handle(broker: &Broker, request: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.to_string();
        let result = CreatableTopicResult::default().with_name(topic.name.clone());
        let partitions = match (topic.num_partitions, topic.assignments.len()) {
            (-1, 0) => broker.config.num_partitions,
            (-1, n) => n as i32,
            (n, _) => n,
        };
        let configs: BTreeMap<String, String> = topic
            .configs
            .iter()
            .filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string())))
            .collect();
        let outcome =
            broker.create_topic(&name, partitions, topic.replication_factor, configs, request.validate_only).await;
        results.push(match outcome {
            Ok(created) => result
                .with_topic_id(since(version, 7, created.topic_id, uuid::Uuid::nil()))
                .with_num_partitions(since(version, 5, created.partitions, -1))
                .with_replication_factor(since(version, 5, created.replication_factor, -1)),
            Err(error) => result.with_error_code(error.code).with_error_message(since(
                version,
                1,
                Some(str_bytes(error.message)),
                None,
            )),
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}
