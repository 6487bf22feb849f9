//! DescribeCluster: this one broker, which is also the controller.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::{Broker, str_bytes};

pub(super) fn handle(broker: &Broker, _request: &DescribeClusterRequest) -> DescribeClusterResponse {
    let node = BrokerId(broker.config.node_id);
    let (host, port) = broker.advertised.clone();
    DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(broker.cluster_id.clone()))
        .with_controller_id(node)
        .with_brokers(vec![
            DescribeClusterBroker::default().with_broker_id(node).with_host(str_bytes(host)).with_port(port),
        ])
}
