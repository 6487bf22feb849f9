//! ListTransactions: the transactional ids this broker coordinates, filtered by state and
//! producer id (an admin client asks every broker and merges).

use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId};

use super::{Broker, str_bytes};
use crate::txn::TxnState;

const STATES: [TxnState; 8] = [
    TxnState::Empty,
    TxnState::Ongoing,
    TxnState::PrepareCommit,
    TxnState::PrepareAbort,
    TxnState::CompleteCommit,
    TxnState::CompleteAbort,
    TxnState::Dead,
    TxnState::PrepareEpochFence,
];

pub(super) fn handle(broker: &Broker, request: &ListTransactionsRequest) -> ListTransactionsResponse {
    let unknown: Vec<_> =
        request.state_filters.iter().filter(|f| !STATES.iter().any(|s| s.name() == f.as_str())).cloned().collect();
    let now = broker.clock.now_ms();
    let states = broker
        .txns
        .list()
        .into_iter()
        .filter(|m| {
            request.state_filters.is_empty() || request.state_filters.iter().any(|f| f.as_str() == m.state.name())
        })
        .filter(|m| {
            request.producer_id_filters.is_empty() || request.producer_id_filters.contains(&ProducerId(m.producer_id))
        })
        // KIP-994: only transactions running longer than the duration.
        .filter(|m| {
            request.duration_filter < 0 || (m.state == TxnState::Ongoing && now - m.start_ms > request.duration_filter)
        })
        .map(|m| {
            TransactionState::default()
                .with_transactional_id(TransactionalId(str_bytes(m.transactional_id)))
                .with_producer_id(ProducerId(m.producer_id))
                .with_transaction_state(str_bytes(m.state.name()))
        })
        .collect();
    ListTransactionsResponse::default().with_unknown_state_filters(unknown).with_transaction_states(states)
}
