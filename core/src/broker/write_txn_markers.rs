//! WriteTxnMarkers: a transaction coordinator on another broker ends a transaction in
//! partitions this broker leads.

use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use super::Broker;
use crate::log::producer_state::TxnMarker;

pub(super) async fn handle(broker: &Broker, request: &WriteTxnMarkersRequest) -> WriteTxnMarkersResponse {
    let mut markers = Vec::with_capacity(request.markers.len());
    for wanted in &request.markers {
        let marker = TxnMarker { commit: wanted.transaction_result, coordinator_epoch: wanted.coordinator_epoch };
        let mut topics = Vec::with_capacity(wanted.topics.len());
        for topic in &wanted.topics {
            let mut partitions = Vec::with_capacity(topic.partition_indexes.len());
            for &partition in &topic.partition_indexes {
                let code = broker
                    .txns
                    .write_marker_here(&topic.name, partition, wanted.producer_id.0, wanted.producer_epoch, marker)
                    .await
                    .err()
                    .unwrap_or(0);
                partitions.push(
                    WritableTxnMarkerPartitionResult::default().with_partition_index(partition).with_error_code(code),
                );
            }
            topics.push(
                WritableTxnMarkerTopicResult::default().with_name(topic.name.clone()).with_partitions(partitions),
            );
        }
        markers.push(WritableTxnMarkerResult::default().with_producer_id(wanted.producer_id).with_topics(topics));
    }
    WriteTxnMarkersResponse::default().with_markers(markers)
}
