//! DescribeCluster: the live brokers and the controller. On one node this broker is both;
//! in a cluster the controller named is the quorum's active controller, as far as this
//! broker knows (Metadata names any live broker instead, see `metadata.rs`).

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::{Broker, str_bytes};

pub(super) fn handle(broker: &Broker, _request: &DescribeClusterRequest) -> DescribeClusterResponse {
    let response = DescribeClusterResponse::default().with_cluster_id(str_bytes(broker.cluster_id.clone()));
    let Some(cluster) = &broker.cluster else {
        let node = BrokerId(broker.config.node_id);
        let (host, port) = broker.advertised.clone();
        return response.with_controller_id(node).with_brokers(vec![
            DescribeClusterBroker::default().with_broker_id(node).with_host(str_bytes(host)).with_port(port),
        ]);
    };
    let image = cluster.image();
    let brokers = image
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.id))
                .with_host(str_bytes(b.host.clone()))
                .with_port(i32::from(b.port))
        })
        .collect();
    let controller = cluster.controller().leader().map_or(-1, |id| id as i32);
    response.with_controller_id(BrokerId(controller)).with_brokers(brokers)
}
