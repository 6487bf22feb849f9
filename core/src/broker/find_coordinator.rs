//! FindCoordinator: this broker coordinates every group (one node). Transactions come
//! with the transaction coordinator.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use super::{Broker, str_bytes};

/// `key_type` of a group (0) and a transactional id (1).
const GROUP: i8 = 0;

pub(super) fn handle(broker: &Broker, request: &FindCoordinatorRequest, version: i16) -> FindCoordinatorResponse {
    let node = BrokerId(broker.config.node_id);
    let (host, port) = broker.advertised.clone();
    let error = if request.key_type == GROUP { 0 } else { ResponseError::CoordinatorNotAvailable.code() };
    if version >= 4 {
        let coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| {
                Coordinator::default()
                    .with_key(key.clone())
                    .with_node_id(node)
                    .with_host(str_bytes(host.clone()))
                    .with_port(port)
                    .with_error_code(error)
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    FindCoordinatorResponse::default()
        .with_error_code(error)
        .with_node_id(node)
        .with_host(str_bytes(host))
        .with_port(port)
}
