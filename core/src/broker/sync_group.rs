//! SyncGroup: followers wait for the leader's assignments.

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::{Broker, since, str_bytes};

pub(super) async fn handle(broker: &Broker, request: SyncGroupRequest, version: i16) -> SyncGroupResponse {
    let assignments = request.assignments.into_iter().map(|a| (a.member_id.to_string(), a.assignment)).collect();
    let result = broker.groups.sync(&request.group_id, &request.member_id, request.generation_id, assignments).await;
    SyncGroupResponse::default()
        .with_error_code(result.error_code)
        .with_protocol_type(since(version, 5, result.protocol_type.map(str_bytes), None))
        .with_protocol_name(since(version, 5, result.protocol_name.map(str_bytes), None))
        .with_assignment(result.assignment)
}
