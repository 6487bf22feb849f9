//! DescribeTransactions: the state of transactional ids this broker coordinates.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId};

use super::{Broker, str_bytes, topic_name};

pub(super) fn handle(broker: &Broker, request: &DescribeTransactionsRequest) -> DescribeTransactionsResponse {
    let states = request
        .transactional_ids
        .iter()
        .map(|id| {
            let state = TransactionState::default().with_transactional_id(id.clone());
            match broker.txns.describe(id) {
                Err(code) => state.with_error_code(code).with_producer_id(ProducerId(-1)).with_producer_epoch(-1),
                Ok(meta) => {
                    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
                    for (topic, partition) in &meta.partitions {
                        by_topic.entry(topic).or_default().push(*partition);
                    }
                    let topics = by_topic
                        .into_iter()
                        .map(|(t, partitions)| {
                            TopicData::default().with_topic(topic_name(t)).with_partitions(partitions)
                        })
                        .collect();
                    state
                        .with_transaction_state(str_bytes(meta.state.name()))
                        .with_transaction_timeout_ms(meta.timeout_ms)
                        .with_transaction_start_time_ms(meta.start_ms)
                        .with_producer_id(ProducerId(meta.producer_id))
                        .with_producer_epoch(meta.producer_epoch)
                        .with_topics(topics)
                }
            }
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}
