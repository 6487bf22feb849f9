//! Metadata: brokers, topics and partition leaders; creates unknown topics when
//! `auto.create.topics.enable` is on and the client allows it.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};

use super::{Broker, error_code, since, str_bytes, topic_name};
use crate::log::LogError;

pub(super) fn handle(broker: &Broker, request: MetadataRequest, version: i16) -> MetadataResponse {
    let node = BrokerId(broker.config.node_id);
    // Before v4 there is no flag: creation was always allowed.
    let allow_create = broker.config.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    let names: Vec<String> = match &request.topics {
        // v0 asks for every topic with an empty list; later versions with null.
        None => broker.logs.topics().into_keys().collect(),
        Some(topics) if topics.is_empty() && version == 0 => broker.logs.topics().into_keys().collect(),
        Some(topics) => topics
            .iter()
            .filter_map(|t| match &t.name {
                Some(name) => Some(name.to_string()),
                None => broker.logs.topic_name(t.topic_id),
            })
            .collect(),
    };
    let mut topics = Vec::with_capacity(names.len());
    for name in names {
        let mut description = broker.logs.topic(&name);
        if description.is_none() && allow_create {
            match broker.logs.create_topic(&name, broker.config.num_partitions, BTreeMap::new()) {
                Ok(()) | Err(LogError::TopicAlreadyExists { .. }) => description = broker.logs.topic(&name),
                Err(error) => {
                    topics.push(
                        MetadataResponseTopic::default()
                            .with_name(Some(topic_name(&name)))
                            .with_error_code(error_code(&error)),
                    );
                    continue;
                }
            }
        }
        let Some(description) = description else {
            topics.push(
                MetadataResponseTopic::default()
                    .with_name(Some(topic_name(&name)))
                    .with_error_code(ResponseError::UnknownTopicOrPartition.code()),
            );
            continue;
        };
        let partitions = (0..description.partitions)
            .map(|p| {
                MetadataResponsePartition::default()
                    .with_partition_index(p)
                    .with_leader_id(node)
                    .with_leader_epoch(since(version, 7, 0, -1))
                    .with_replica_nodes(vec![node])
                    .with_isr_nodes(vec![node])
            })
            .collect();
        topics.push(
            MetadataResponseTopic::default()
                .with_name(Some(topic_name(&name)))
                .with_topic_id(since(version, 10, description.topic_id, uuid::Uuid::nil()))
                .with_is_internal(since(version, 1, name.starts_with("__"), false))
                .with_partitions(partitions),
        );
    }
    let (host, port) = &broker.advertised;
    MetadataResponse::default()
        .with_brokers(vec![
            MetadataResponseBroker::default().with_node_id(node).with_host(str_bytes(host.clone())).with_port(*port),
        ])
        .with_cluster_id(since(version, 2, Some(str_bytes(broker.cluster_id.clone())), None))
        .with_controller_id(since(version, 1, node, BrokerId(-1)))
        .with_topics(topics)
}
