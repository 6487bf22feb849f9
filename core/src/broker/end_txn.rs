//! EndTxn: commit or abort; answered once the decision is durable (the markers follow).

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};

use super::Broker;

pub(super) async fn handle(broker: &Broker, request: &EndTxnRequest) -> EndTxnResponse {
    let code = broker
        .txns
        .end_transaction(&request.transactional_id, request.producer_id.0, request.producer_epoch, request.committed)
        .await
        .err()
        .unwrap_or(0);
    EndTxnResponse::default().with_error_code(code)
}
