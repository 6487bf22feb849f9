//! AddOffsetsToTxn: a transaction will commit a group's offsets, so its markers must
//! reach the group's `__consumer_offsets` partition too.

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use super::Broker;
use crate::group::{OFFSETS_TOPIC, partition_for};

pub(super) async fn handle(broker: &Broker, request: &AddOffsetsToTxnRequest) -> AddOffsetsToTxnResponse {
    let partition = (OFFSETS_TOPIC.to_string(), partition_for(&request.group_id));
    let code = broker
        .txns
        .add_partitions(&request.transactional_id, request.producer_id.0, request.producer_epoch, &[partition])
        .await
        .err()
        .unwrap_or(0);
    AddOffsetsToTxnResponse::default().with_error_code(code)
}
