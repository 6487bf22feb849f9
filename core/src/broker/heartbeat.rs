//! Heartbeat: keeps a member's session alive and tells it when to rejoin.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::Broker;

pub(super) fn handle(broker: &Broker, request: &HeartbeatRequest) -> HeartbeatResponse {
    HeartbeatResponse::default().with_error_code(broker.groups.heartbeat(
        &request.group_id,
        &request.member_id,
        request.generation_id,
    ))
}
