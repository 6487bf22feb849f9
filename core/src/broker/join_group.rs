//! JoinGroup: waits until the group's join phase completes (see `group::Group`).

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use super::{Broker, since, str_bytes};
use crate::group::JoinRequest;

pub(super) async fn handle(
    broker: &Broker,
    request: JoinGroupRequest,
    client_id: &str,
    version: i16,
) -> JoinGroupResponse {
    let join = JoinRequest {
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.map(|i| i.to_string()),
        client_id: client_id.to_string(),
        client_host: String::new(),
        session_timeout_ms: request.session_timeout_ms,
        // Before v1 there is no rebalance timeout; Kafka uses the session timeout.
        rebalance_timeout_ms: if version >= 1 { request.rebalance_timeout_ms } else { request.session_timeout_ms },
        protocol_type: request.protocol_type.to_string(),
        protocols: request.protocols.into_iter().map(|p| (p.name.to_string(), p.metadata)).collect(),
        require_known_member_id: version >= 4,
    };
    let result = broker.groups.join(&request.group_id, join).await;
    let members = result
        .members
        .into_iter()
        .map(|(member_id, instance, metadata)| {
            JoinGroupResponseMember::default()
                .with_member_id(str_bytes(member_id))
                .with_group_instance_id(since(version, 5, instance.map(str_bytes), None))
                .with_metadata(metadata)
        })
        .collect();
    JoinGroupResponse::default()
        .with_error_code(result.error_code)
        .with_generation_id(result.generation_id)
        .with_protocol_type(since(version, 7, result.protocol_type.map(str_bytes), None))
        .with_protocol_name(Some(str_bytes(result.protocol_name.unwrap_or_default())))
        .with_leader(str_bytes(result.leader))
        .with_member_id(str_bytes(result.member_id))
        .with_members(members)
}
