//! Produce: append each partition's batches, then (for acks=all) wait until they are
//! flushed. Partitions are independent: one partition's error does not fail the others.
//!
//! The appends happen when the request is handled, in the connection's request order; the
//! wait for the flush is the returned future, which the connection awaits while it goes on
//! appending the requests behind this one, so one connection's requests share group
//! commits instead of each paying a whole fsync in turn.

use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use super::{Broker, error_code, since, str_bytes};

pub(super) fn handle(
    broker: &Broker,
    request: ProduceRequest,
    version: i16,
) -> impl Future<Output = ProduceResponse> + Send + 'static {
    let acks = request.acks;
    let mut responses = Vec::with_capacity(request.topic_data.len());
    // (topic index, partition index, log, offset that must be flushed)
    let mut flushes = Vec::new();
    for topic in request.topic_data {
        let name = topic.name.to_string();
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for data in topic.partition_data {
            let mut response = PartitionProduceResponse::default().with_index(data.index).with_base_offset(-1);
            if !matches!(acks, -1..=1) {
                partitions.push(response.with_error_code(ResponseError::InvalidRequiredAcks.code()));
                continue;
            }
            if request.transactional_id.is_some() {
                partitions.push(response.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code()));
                continue;
            }
            let log = match broker.logs.get(&name, data.index) {
                Ok(log) => log,
                Err(error) => {
                    partitions.push(response.with_error_code(error_code(&error)));
                    continue;
                }
            };
            let Some(records) = data.records else {
                partitions.push(response.with_error_code(ResponseError::InvalidRecord.code()));
                continue;
            };
            // Straight from the request's buffer: the log patches offsets as it writes.
            let batches = records;
            match log.append(&batches, 0) {
                Ok(info) => {
                    if !info.duplicate {
                        let records = info.last_offset - info.first_offset + 1;
                        metrics::counter!(crate::metrics::BYTES_IN, "topic" => name.clone())
                            .increment(batches.len() as u64);
                        metrics::counter!(crate::metrics::RECORDS_IN, "topic" => name.clone())
                            .increment(records as u64);
                    }
                    response = response.with_base_offset(info.first_offset).with_log_start_offset(since(
                        version,
                        5,
                        info.log_start,
                        -1,
                    ));
                    // acks=all waits for the fsync once `flush.messages` offsets are
                    // unflushed (by default, always).
                    if acks == -1 && log.ack_needs_flush(info.last_offset + 1) {
                        flushes.push((responses.len(), partitions.len(), log, info.last_offset + 1));
                    }
                }
                Err(error) => {
                    tracing::debug!(topic = %name, partition = data.index, %error, "produce rejected");
                    response = response.with_error_code(error_code(&error)).with_error_message(since(
                        version,
                        8,
                        Some(str_bytes(error.to_string())),
                        None,
                    ));
                }
            }
            partitions.push(response);
        }
        // An owned name: the request's, a slice of its frame, would keep the whole frame
        // (megabytes of batches) alive while the response waits for its flush.
        let owned_name = kafka_protocol::messages::TopicName(str_bytes(name));
        responses.push(TopicProduceResponse::default().with_name(owned_name).with_partition_responses(partitions));
    }
    let timeout = Duration::from_millis(request.timeout_ms.max(0) as u64);
    async move { acknowledge(responses, flushes, timeout).await }
}

/// acks=all: waits until every appended partition is flushed (group commit), within the
/// request's timeout, and marks the partitions that were not.
async fn acknowledge(
    mut responses: Vec<TopicProduceResponse>,
    flushes: Vec<(usize, usize, std::sync::Arc<crate::log::Log>, i64)>,
    timeout: Duration,
) -> ProduceResponse {
    if !flushes.is_empty() {
        let waits = flushes.iter().map(|(_, _, log, offset)| log.wait_flushed(*offset));
        let results = tokio::time::timeout(timeout, futures::future::join_all(waits)).await;
        for (i, (t, p, _, _)) in flushes.iter().enumerate() {
            let code = match &results {
                Err(_) => Some(ResponseError::RequestTimedOut.code()),
                Ok(results) => results[i].as_ref().err().map(error_code),
            };
            if let Some(code) = code {
                let partition = &mut responses[*t].partition_responses[*p];
                partition.error_code = code;
                partition.base_offset = -1;
            }
        }
    }
    ProduceResponse::default().with_responses(responses)
}
