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
use crate::partition::ReplicaManager;

pub(super) async fn handle(broker: &Broker, request: MetadataRequest, version: i16) -> MetadataResponse {
    if let Some(cluster) = &broker.cluster {
        return handle_cluster(broker, cluster, request, version).await;
    }
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

/// The names a request asks for: every topic when it names none.
fn requested_names(broker: &Broker, request: &MetadataRequest, version: i16) -> Vec<String> {
    match &request.topics {
        None => broker.topic_names(),
        Some(topics) if topics.is_empty() && version == 0 => broker.topic_names(),
        Some(topics) => topics
            .iter()
            .filter_map(|t| match &t.name {
                Some(name) => Some(name.to_string()),
                None => broker.topic_name_by_id(t.topic_id),
            })
            .collect(),
    }
}

/// A cluster's metadata, from this broker's image: live brokers, and each partition's
/// leader, leader epoch, replicas, ISR and offline replicas, so clients follow a leader
/// change by asking again.
async fn handle_cluster(
    broker: &Broker,
    cluster: &ReplicaManager,
    request: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    let allow_create = broker.config.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    let names = requested_names(broker, &request, version);
    let mut created_errors = BTreeMap::new();
    if allow_create {
        let image = cluster.image();
        for name in names.iter().filter(|n| !image.topics.contains_key(*n)) {
            let outcome = broker.create_topic(name, broker.config.num_partitions, -1, BTreeMap::new(), false).await;
            match outcome {
                Ok(_) => {}
                Err(error) if error.code == ResponseError::TopicAlreadyExists.code() => {}
                Err(error) => {
                    created_errors.insert(name.clone(), error.code);
                }
            }
        }
    }
    let image = cluster.image();
    let ids = |list: &[crate::cluster::BrokerId]| list.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
    let mut topics = Vec::with_capacity(names.len());
    for name in names {
        let response = MetadataResponseTopic::default().with_name(Some(topic_name(&name)));
        let Some(topic) = image.topics.get(&name) else {
            let code = created_errors.get(&name).copied().unwrap_or(ResponseError::UnknownTopicOrPartition.code());
            topics.push(response.with_error_code(code));
            continue;
        };
        let partitions = topic
            .partitions
            .iter()
            .enumerate()
            .map(|(index, p)| {
                let offline: Vec<_> =
                    p.replicas.iter().copied().filter(|r| image.brokers.get(r).is_none_or(|b| b.fenced)).collect();
                let error = if p.has_leader() { 0 } else { ResponseError::LeaderNotAvailable.code() };
                MetadataResponsePartition::default()
                    .with_error_code(error)
                    .with_partition_index(index as i32)
                    .with_leader_id(BrokerId(p.leader))
                    .with_leader_epoch(since(version, 7, p.leader_epoch, -1))
                    .with_replica_nodes(ids(&p.replicas))
                    .with_isr_nodes(ids(&p.isr))
                    .with_offline_replicas(since(version, 5, ids(&offline), Vec::new()))
            })
            .collect();
        topics.push(
            response
                .with_topic_id(since(version, 10, topic.id, uuid::Uuid::nil()))
                .with_is_internal(since(version, 1, name.starts_with("__"), false))
                .with_partitions(partitions),
        );
    }
    let brokers = image
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.id))
                .with_host(str_bytes(b.host.clone()))
                .with_port(i32::from(b.port))
        })
        .collect();
    // Every broker forwards admin requests to the controller quorum (KIP-590), so, as
    // Kafka's KRaft brokers do, name a live broker rather than the quorum's leader: a
    // client that sends CreateTopics "to the controller" then always finds it listed.
    let me = cluster.broker_id();
    let controller = if image.brokers.get(&me).is_some_and(|b| !b.fenced) {
        me
    } else {
        image.unfenced_brokers().first().copied().unwrap_or(-1)
    };
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(since(version, 2, Some(str_bytes(broker.cluster_id.clone())), None))
        .with_controller_id(since(version, 1, BrokerId(controller), BrokerId(-1)))
        .with_topics(topics)
}
