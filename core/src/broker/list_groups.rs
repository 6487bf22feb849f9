//! ListGroups: every group, optionally filtered by state (v4+) or type (v5+).

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::{Broker, since, str_bytes};

pub(super) fn handle(broker: &Broker, request: &ListGroupsRequest, version: i16) -> ListGroupsResponse {
    let groups = broker
        .groups
        .list()
        .into_iter()
        .filter(|(_, state, _)| {
            request.states_filter.is_empty() || request.states_filter.iter().any(|s| s.as_str() == *state)
        })
        .filter(|_| request.types_filter.is_empty() || request.types_filter.iter().any(|t| t.as_str() == "classic"))
        .map(|(id, state, protocol_type)| {
            ListedGroup::default()
                .with_group_id(GroupId(str_bytes(id)))
                .with_protocol_type(str_bytes(protocol_type))
                .with_group_state(since(version, 4, str_bytes(state), str_bytes("")))
                .with_group_type(since(version, 5, str_bytes("classic"), str_bytes("")))
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}
