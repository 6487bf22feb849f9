//! CreateTopics: one broker, so a replication factor of 1 (or -1, the default).

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::{Broker, error_code, since, str_bytes};
use crate::log::{LogConfig, LogError, manager::validate_topic_name};

pub(super) fn handle(broker: &Broker, request: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
    let results = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.to_string();
            let result = CreatableTopicResult::default().with_name(topic.name.clone());
            if !(topic.replication_factor == -1 || topic.replication_factor == 1) {
                return result.with_error_code(ResponseError::InvalidReplicationFactor.code()).with_error_message(
                    since(
                        version,
                        1,
                        Some(str_bytes(format!(
                            "replication factor {} is more than the 1 broker there is",
                            topic.replication_factor
                        ))),
                        None,
                    ),
                );
            }
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
            let outcome = if request.validate_only {
                validate_topic_name(&name).and_then(|()| LogConfig::from_overrides(&configs).map(drop)).and_then(|()| {
                    match broker.logs.topic(&name) {
                        Some(_) => Err(LogError::TopicAlreadyExists { topic: name.clone() }),
                        None => Ok(()),
                    }
                })
            } else {
                broker.logs.create_topic(&name, partitions, configs)
            };
            match outcome {
                Ok(()) => {
                    let topic_id = broker.logs.topic(&name).map(|t| t.topic_id).unwrap_or_default();
                    result
                        .with_topic_id(since(version, 7, topic_id, uuid::Uuid::nil()))
                        .with_num_partitions(since(version, 5, partitions, -1))
                        .with_replication_factor(since(version, 5, 1, -1))
                }
                Err(error) => result.with_error_code(error_code(&error)).with_error_message(since(
                    version,
                    1,
                    Some(str_bytes(error.to_string())),
                    None,
                )),
            }
        })
        .collect();
    CreateTopicsResponse::default().with_topics(results)
}
