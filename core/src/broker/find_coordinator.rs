//! FindCoordinator: on one node this broker coordinates every group; in a cluster the
//! leader of the group's `__consumer_offsets` partition does, so groups and their
//! committed offsets fail over with it. Transactions come with the transaction
//! coordinator.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use super::{Broker, str_bytes};
use crate::group::{OFFSETS_PARTITIONS, OFFSETS_TOPIC, offsets_topic_configs, partition_for};
use crate::partition::ReplicaManager;

/// Kafka's `offsets.topic.replication.factor`; fewer on a smaller cluster.
const OFFSETS_REPLICATION_FACTOR: usize = 3;

/// `key_type` of a group (0) and a transactional id (1).
const GROUP: i8 = 0;

/// `(error code, node, host, port)` of one key's coordinator.
type Found = (i16, i32, String, i32);

pub(super) async fn handle(broker: &Broker, request: &FindCoordinatorRequest, version: i16) -> FindCoordinatorResponse {
    let keys: Vec<String> = if version >= 4 {
        request.coordinator_keys.iter().map(ToString::to_string).collect()
    } else {
        vec![request.key.to_string()]
    };
    let mut found = Vec::with_capacity(keys.len());
    for key in &keys {
        found.push(if request.key_type != GROUP {
            (ResponseError::CoordinatorNotAvailable.code(), -1, String::new(), -1)
        } else {
            match &broker.cluster {
                None => (0, broker.config.node_id, broker.advertised.0.clone(), broker.advertised.1),
                Some(cluster) => in_cluster(broker, cluster, key).await,
            }
        });
    }
    if version >= 4 {
        let coordinators = keys
            .into_iter()
            .zip(found)
            .map(|(key, (code, node, host, port))| {
                Coordinator::default()
                    .with_key(str_bytes(key))
                    .with_node_id(BrokerId(node))
                    .with_host(str_bytes(host))
                    .with_port(port)
                    .with_error_code(code)
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let (code, node, host, port) = found.into_iter().next().unwrap_or_default();
    FindCoordinatorResponse::default()
        .with_error_code(code)
        .with_node_id(BrokerId(node))
        .with_host(str_bytes(host))
        .with_port(port)
}

/// A group's coordinator in a cluster: the leader of its `__consumer_offsets` partition.
/// The first request creates the topic (replicated like any topic, up to three copies).
async fn in_cluster(broker: &Broker, cluster: &ReplicaManager, group: &str) -> Found {
    let unavailable = (ResponseError::CoordinatorNotAvailable.code(), -1, String::new(), -1);
    let image = cluster.image();
    let Some(topic) = image.topics.get(OFFSETS_TOPIC) else {
        let replication_factor = image.unfenced_brokers().len().clamp(1, OFFSETS_REPLICATION_FACTOR) as i16;
        let created = broker
            .create_topic(OFFSETS_TOPIC, OFFSETS_PARTITIONS, replication_factor, offsets_topic_configs(), false)
            .await;
        if let Err(error) = created {
            tracing::warn!(message = %error.message, "cannot create {OFFSETS_TOPIC}");
        }
        // Its leaders are still being set up: the client asks again.
        return unavailable;
    };
    let Some(partition) = topic.partitions.get(partition_for(group) as usize) else { return unavailable };
    match image.brokers.get(&partition.leader).filter(|b| !b.fenced) {
        Some(leader) => (0, leader.id, leader.host.clone(), i32::from(leader.port)),
        None => unavailable,
    }
}
