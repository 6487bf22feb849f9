//! FindCoordinator: on one node this broker coordinates every group and transactional
//! id; in a cluster the leader of the key's partition of `__consumer_offsets` (a group)
//! or `__transaction_state` (a transactional id) does, so coordination fails over with
//! the partition.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use super::{Broker, str_bytes};
use crate::group::{OFFSETS_PARTITIONS, OFFSETS_TOPIC, offsets_topic_configs, partition_for};
use crate::partition::ReplicaManager;
use crate::txn::metadata::{TRANSACTION_STATE_PARTITIONS, TRANSACTION_STATE_TOPIC, topic_configs};

/// Kafka's `offsets.topic.replication.factor`; fewer on a smaller cluster.
const OFFSETS_REPLICATION_FACTOR: usize = 3;

/// `key_type` of a group (0) and a transactional id (1).
const GROUP: i8 = 0;
const TRANSACTION: i8 = 1;

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
        let here = (0, broker.config.node_id, broker.advertised.0.clone(), broker.advertised.1);
        found.push(match (request.key_type, &broker.cluster) {
            (GROUP, None) => here,
            (GROUP, Some(cluster)) => {
                let topic = CoordinatorTopic {
                    name: OFFSETS_TOPIC,
                    partitions: OFFSETS_PARTITIONS,
                    configs: offsets_topic_configs,
                    partition_for,
                };
                in_cluster(broker, cluster, &topic, key).await
            }
            (TRANSACTION, None) => match broker.txns.ensure_local_topic() {
                Ok(()) => here,
                Err(error) => {
                    tracing::error!(%error, "cannot create {TRANSACTION_STATE_TOPIC}");
                    (ResponseError::CoordinatorNotAvailable.code(), -1, String::new(), -1)
                }
            },
            (TRANSACTION, Some(cluster)) => {
                let topic = CoordinatorTopic {
                    name: TRANSACTION_STATE_TOPIC,
                    partitions: TRANSACTION_STATE_PARTITIONS,
                    configs: topic_configs,
                    partition_for: crate::txn::metadata::partition_for,
                };
                in_cluster(broker, cluster, &topic, key).await
            }
            _ => (ResponseError::InvalidRequest.code(), -1, String::new(), -1),
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

/// The internal topic whose partition leaders coordinate a kind of key.
struct CoordinatorTopic {
    name: &'static str,
    partitions: i32,
    configs: fn() -> std::collections::BTreeMap<String, String>,
    partition_for: fn(&str) -> i32,
}

/// A key's coordinator in a cluster: the leader of its partition of the internal topic.
/// The first request creates the topic (replicated like any topic, up to three copies).
async fn in_cluster(broker: &Broker, cluster: &ReplicaManager, internal: &CoordinatorTopic, key: &str) -> Found {
    let unavailable = (ResponseError::CoordinatorNotAvailable.code(), -1, String::new(), -1);
    let image = cluster.image();
    let Some(topic) = image.topics.get(internal.name) else {
        let replication_factor = image.unfenced_brokers().len().clamp(1, OFFSETS_REPLICATION_FACTOR) as i16;
        let created = broker
            .create_topic(internal.name, internal.partitions, replication_factor, (internal.configs)(), false)
            .await;
        if let Err(error) = created {
            tracing::warn!(message = %error.message, topic = internal.name, "cannot create an internal topic");
        }
        // Its leaders are still being set up: the client asks again.
        return unavailable;
    };
    let Some(partition) = topic.partitions.get((internal.partition_for)(key) as usize) else { return unavailable };
    match image.brokers.get(&partition.leader).filter(|b| !b.fenced) {
        Some(leader) => (0, leader.id, leader.host.clone(), i32::from(leader.port)),
        None => unavailable,
    }
}
