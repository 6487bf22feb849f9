//! Produce: append each partition's batches, then (for acks=all) wait until they are
//! flushed. Partitions are independent: one partition's error does not fail the others.
//!
//! The appends happen when the request is handled, in the connection's request order; the
//! wait for the flush is the returned future, which the connection awaits while it goes on
//! appending the requests behind this one, so one connection's requests share group
//! commits instead of each paying a whole fsync in turn.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use super::{Broker, error_code, since, str_bytes};
use crate::log::{AppendInfo, Log};
use crate::partition::{Replica, ReplicaManager};

pub(super) fn handle(
    broker: &Broker,
    request: ProduceRequest,
    version: i16,
) -> impl Future<Output = ProduceResponse> + Send + 'static {
    let acks = request.acks;
    let mut responses = Vec::with_capacity(request.topic_data.len());
    // (topic index, partition index, what its acknowledgement waits for)
    let mut waits = Vec::new();
    for topic in request.topic_data {
        let name = topic.name.to_string();
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for data in topic.partition_data {
            let mut response = PartitionProduceResponse::default().with_index(data.index).with_base_offset(-1);
            if !matches!(acks, -1..=1) {
                partitions.push(response.with_error_code(ResponseError::InvalidRequiredAcks.code()));
                continue;
            }
            let Some(records) = data.records else {
                partitions.push(response.with_error_code(ResponseError::InvalidRecord.code()));
                continue;
            };
            // Straight from the request's buffer: the log patches offsets as it writes.
            let batches = records;
            let appended = match &broker.cluster {
                None => append_single(broker, &name, data.index, &batches, acks),
                Some(cluster) => append_replicated(cluster, &name, data.index, &batches, acks),
            };
            match appended {
                Ok((info, wait)) => {
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
                    if let Some(wait) = wait {
                        waits.push((responses.len(), partitions.len(), wait));
                    }
                }
                Err((code, message)) => {
                    tracing::debug!(topic = %name, partition = data.index, %message, "produce rejected");
                    response = response.with_error_code(code).with_error_message(since(
                        version,
                        8,
                        Some(str_bytes(message)),
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
    async move { acknowledge(responses, waits, timeout).await }
}

/// What an acks=all acknowledgement waits for.
enum Wait {
    /// The fsync of the log up to this offset (one broker, `flush.messages`).
    Flush(Arc<Log>, i64),
    /// The high watermark (every in-sync replica) reaching `next` under the leadership at
    /// `leader_epoch`, and the leader's own fsync when `flush.messages` asks for it.
    Replicated { replica: Arc<Replica>, next: i64, leader_epoch: i32, min_insync_replicas: u32, flush: bool },
}

impl Wait {
    async fn done(self, timeout: Duration) -> Result<(), i16> {
        match self {
            Wait::Flush(log, offset) => match tokio::time::timeout(timeout, log.wait_flushed(offset)).await {
                Err(_) => Err(ResponseError::RequestTimedOut.code()),
                Ok(result) => result.map_err(|error| error_code(&error)),
            },
            Wait::Replicated { replica, next, leader_epoch, min_insync_replicas, flush } => {
                let started = tokio::time::Instant::now();
                if flush {
                    match tokio::time::timeout(timeout, replica.log.wait_flushed(next)).await {
                        Err(_) => return Err(ResponseError::RequestTimedOut.code()),
                        Ok(result) => result.map_err(|error| error_code(&error))?,
                    }
                }
                let left = timeout.saturating_sub(started.elapsed());
                replica.wait_replicated(next, leader_epoch, min_insync_replicas, left).await.map_err(|e| e.code())
            }
        }
    }
}

type Appended = Result<(AppendInfo, Option<Wait>), (i16, String)>;

/// One broker: append to the local log; acks=all waits for the fsync per `flush.messages`.
fn append_single(broker: &Broker, topic: &str, partition: i32, batches: &[u8], acks: i16) -> Appended {
    let log = broker.logs.get(topic, partition).map_err(|e| (error_code(&e), e.to_string()))?;
    let info = log.append(batches, 0).map_err(|e| (error_code(&e), e.to_string()))?;
    // acks=all waits for the fsync once `flush.messages` offsets are unflushed (by
    // default, always).
    let next = info.last_offset + 1;
    let wait = (acks == -1 && log.ack_needs_flush(next)).then(|| Wait::Flush(log, next));
    Ok((info, wait))
}

/// A cluster: append as the partition's leader; acks=all waits for the ISR.
fn append_replicated(
    cluster: &Arc<ReplicaManager>,
    topic: &str,
    partition: i32,
    batches: &[u8],
    acks: i16,
) -> Appended {
    let Some(replica) = cluster.replica(topic, partition) else {
        // A topic the cluster has but this broker does not host: the client's metadata is
        // stale. Unknown everywhere: say so.
        let known = cluster.image().partition(topic, partition as u32).is_some();
        let code = if known { ResponseError::NotLeaderOrFollower } else { ResponseError::UnknownTopicOrPartition };
        return Err((code.code(), format!("this broker does not lead {topic}-{partition}")));
    };
    let config = replica.log.config();
    let min_insync_replicas = config.min_insync_replicas;
    let (info, leader_epoch, actions) =
        replica.append_as_leader(batches, acks == -1, min_insync_replicas).map_err(|e| (e.code(), e.to_string()))?;
    cluster.act(&replica, actions);
    let next = info.last_offset + 1;
    let wait = (acks == -1).then(|| {
        let flush = replica.log.ack_needs_flush(next);
        Wait::Replicated { replica, next, leader_epoch, min_insync_replicas, flush }
    });
    Ok((info, wait))
}

/// acks=all: waits until every appended partition is acknowledged (flushed, or replicated
/// to the ISR), within the request's timeout, and marks the partitions that were not.
async fn acknowledge(
    mut responses: Vec<TopicProduceResponse>,
    waits: Vec<(usize, usize, Wait)>,
    timeout: Duration,
) -> ProduceResponse {
    if !waits.is_empty() {
        let (places, waits): (Vec<_>, Vec<_>) = waits.into_iter().map(|(t, p, w)| ((t, p), w)).unzip();
        let results = futures::future::join_all(waits.into_iter().map(|w| w.done(timeout))).await;
        for ((t, p), result) in places.into_iter().zip(results) {
            if let Err(code) = result {
                let partition = &mut responses[t].partition_responses[p];
                partition.error_code = code;
                partition.base_offset = -1;
            }
        }
    }
    ProduceResponse::default().with_responses(responses)
}
