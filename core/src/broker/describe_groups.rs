//! DescribeGroups: state, protocol and members (with their metadata and assignment).

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use super::{Broker, since, str_bytes};

pub(super) fn handle(broker: &Broker, request: &DescribeGroupsRequest, version: i16) -> DescribeGroupsResponse {
    let groups = request
        .groups
        .iter()
        .map(|group_id| {
            let described = DescribedGroup::default().with_group_id(group_id.clone());
            let owner = broker.groups.owner_code(group_id);
            if owner != 0 {
                return described.with_error_code(owner);
            }
            let Some(group) = broker.groups.describe(group_id) else {
                // Kafka describes an unknown group as Dead with no members.
                return described.with_group_state(str_bytes("Dead"));
            };
            let members = group
                .members
                .into_iter()
                .map(|m| {
                    let metadata = m
                        .protocols
                        .iter()
                        .find(|(n, _)| *n == group.protocol_name)
                        .map(|(_, md)| md.clone())
                        .unwrap_or_default();
                    DescribedGroupMember::default()
                        .with_member_id(str_bytes(m.member_id))
                        .with_group_instance_id(since(version, 4, m.group_instance_id.map(str_bytes), None))
                        .with_client_id(str_bytes(m.client_id))
                        .with_client_host(str_bytes(m.client_host))
                        .with_member_metadata(metadata)
                        .with_member_assignment(m.assignment)
                })
                .collect();
            described
                .with_group_state(str_bytes(group.state))
                .with_protocol_type(str_bytes(group.protocol_type))
                .with_protocol_data(str_bytes(group.protocol_name))
                .with_members(members)
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}
