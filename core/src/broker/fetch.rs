//! Fetch: whole batches from each partition, as stored. A long poll: when less than
//! `min_bytes` is ready, the request waits up to `max_wait_ms`, woken by appends (or, for
//! consumers in a cluster, by the high watermark moving).
//!
//! With `isolation_level = read_committed` a consumer reads only up to the last stable
//! offset, and is told which aborted transactions overlap what it got so that it can drop
//! their records (Kafka's clients do the dropping; the broker returns batches as stored).
//!
//! In a cluster only the leader serves, consumers up to the high watermark; a follower's
//! fetch (its broker id in `replica_id`) reads up to the log end and moves the high
//! watermark.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::FetchPartition;
use kafka_protocol::messages::fetch_response::{AbortedTransaction, FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId};
use tokio::sync::watch;

use super::{Broker, error_code, since};
use crate::log::{Log, LogError};
use crate::partition::{ReplicaManager, ReplicaStatus};

pub(super) async fn handle(broker: &Broker, request: FetchRequest, version: i16) -> FetchResponse {
    let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);
    let min_bytes = request.min_bytes.max(0) as usize;
    loop {
        // Subscribe before reading, so an append between the read and the wait wakes us.
        let mut watches = subscribe(broker, &request);
        let (mut response, bytes, had_error, remote) = read_once(broker, &request, version);
        if !remote.is_empty() {
            // Remote history is there for the taking: answer now, with it.
            read_remote(broker, &mut response, remote).await;
            return counted(response);
        }
        let now = Instant::now();
        if bytes >= min_bytes.max(1) || had_error || now >= deadline || watches.is_empty() {
            return counted(response);
        }
        let changed = futures::future::select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
        if tokio::time::timeout(deadline - now, changed).await.is_err() {
            let (mut response, _, _, remote) = read_once(broker, &request, version);
            read_remote(broker, &mut response, remote).await;
            return counted(response);
        }
    }
}

/// A consumer's fetch below the local log start, to be answered from remote storage.
struct RemoteRead {
    topic: usize,
    partition: usize,
    fetch_offset: i64,
    max_bytes: usize,
    log: Arc<Log>,
    high_watermark: Option<i64>,
    read_committed: bool,
}

/// Fills in the partitions that read below their local start: from remote storage, or,
/// where remote storage has nothing at or past the offset, from the local start (the
/// consumer skips the gap, as it does past compacted offsets).
async fn read_remote(broker: &Broker, response: &mut FetchResponse, remote: Vec<RemoteRead>) {
    let Some(tier) = &broker.tier else { return };
    for read in remote {
        let topic = &mut response.responses[read.topic];
        let tp =
            crate::log::TopicPartition::new(topic.topic.to_string(), topic.partitions[read.partition].partition_index);
        let data = &mut topic.partitions[read.partition];
        match tier.read(&tp, read.fetch_offset, read.max_bytes).await {
            Ok(Some(records)) => {
                if read.read_committed {
                    // Remote history keeps its segments' aborted-transaction indexes; a
                    // transaction whose abort marker is still local is in the log's.
                    let upto = last_offset_after(&records).unwrap_or(read.fetch_offset);
                    let mut aborted = tier.aborted_transactions(&tp, read.fetch_offset, upto);
                    for local in read.log.aborted_transactions(read.fetch_offset, upto) {
                        if !aborted.contains(&local) {
                            aborted.push(local);
                        }
                    }
                    let aborted = aborted
                        .into_iter()
                        .map(|a| {
                            AbortedTransaction::default()
                                .with_producer_id(ProducerId(a.producer_id))
                                .with_first_offset(a.first_offset)
                        })
                        .collect();
                    data.aborted_transactions = Some(aborted);
                }
                data.records = Some(records);
            }
            Ok(None) => match read.log.read(read.log.log_start(), read.high_watermark, read.max_bytes) {
                Ok(local) => data.records = Some(local.records),
                Err(error) => data.error_code = error_code(&error),
            },
            Err(error) => {
                tracing::warn!(partition = %tp, offset = read.fetch_offset,
                    error = %crate::tier::manager::error_chain(&error), "remote read failed");
                data.error_code = ResponseError::KafkaStorageError.code();
            }
        }
    }
}

/// What a waiting fetch wakes on: a follower on the log end (new batches to copy), a
/// consumer in a cluster on the high watermark (new batches it may see).
enum Watch {
    LogEnd(watch::Receiver<i64>),
    Replica(watch::Receiver<ReplicaStatus>),
}

impl Watch {
    async fn changed(&mut self) {
        let closed = match self {
            Watch::LogEnd(w) => w.changed().await.is_err(),
            Watch::Replica(w) => w.changed().await.is_err(),
        };
        if closed {
            // The partition went away: nothing more will wake this watch.
            std::future::pending::<()>().await;
        }
    }
}

fn subscribe(broker: &Broker, request: &FetchRequest) -> Vec<Watch> {
    let follower = request.replica_id.0 >= 0;
    let wanted = request.topics.iter().flat_map(|t| t.partitions.iter().map(move |p| (t.topic.as_str(), p.partition)));
    match &broker.cluster {
        None => wanted
            .filter_map(|(t, p)| broker.logs.get(t, p).ok())
            .map(|l| Watch::LogEnd(l.subscribe_log_end()))
            .collect(),
        Some(cluster) => wanted
            .filter_map(|(t, p)| cluster.replica(t, p))
            .map(|r| if follower { Watch::LogEnd(r.log.subscribe_log_end()) } else { Watch::Replica(r.subscribe()) })
            .collect(),
    }
}

/// Counts the bytes and records a response carries, per topic.
fn counted(response: FetchResponse) -> FetchResponse {
    for topic in &response.responses {
        let (mut bytes, mut records) = (0u64, 0u64);
        for partition in &topic.partitions {
            if let Some(data) = &partition.records {
                bytes += data.len() as u64;
                records += crate::record::BatchIter::new(data)
                    .map_while(Result::ok)
                    .map(|b| u64::from(b.records_count().max(0) as u32))
                    .sum::<u64>();
            }
        }
        if bytes > 0 {
            let name = topic.topic.to_string();
            metrics::counter!(crate::metrics::BYTES_OUT, "topic" => name.clone()).increment(bytes);
            metrics::counter!(crate::metrics::RECORDS_OUT, "topic" => name).increment(records);
        }
    }
    response
}

/// One pass over the requested partitions: the response, its record bytes, whether any
/// partition answered with an error (which returns at once, as Kafka does), and the
/// partitions to read from remote storage.
fn read_once(broker: &Broker, request: &FetchRequest, version: i16) -> (FetchResponse, usize, bool, Vec<RemoteRead>) {
    let mut remote = Vec::new();
    let consumer = request.replica_id.0 < 0;
    let mut remaining = request.max_bytes.max(0) as usize;
    let mut total = 0usize;
    let mut had_error = false;
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let name = topic.topic.to_string();
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for wanted in &topic.partitions {
            let mut data =
                PartitionData::default().with_partition_index(wanted.partition).with_records(Some(Bytes::new()));
            // Where reading stops: the log end for one broker and for followers, the high
            // watermark for consumers in a cluster.
            let located = match &broker.cluster {
                None => broker.logs.get(&name, wanted.partition).map(|log| (log, None)).map_err(|e| error_code(&e)),
                Some(cluster) => locate(cluster, &name, wanted, request.replica_id.0),
            };
            let (log, high_watermark) = match located {
                Ok(found) => found,
                Err(code) => {
                    had_error = true;
                    partitions.push(data.with_error_code(code));
                    continue;
                }
            };
            let limit = (wanted.partition_max_bytes.max(0) as usize).min(remaining);
            // A read_committed consumer stops at the last stable offset: nothing of a
            // transaction still undecided is handed out.
            let visible = high_watermark.filter(|_| consumer);
            let last_stable = consumer.then(|| log.last_stable_offset(visible.unwrap_or_else(|| log.log_end())));
            let read_committed = consumer && request.isolation_level == 1;
            let max_offset = if read_committed { last_stable } else { visible };
            let result = if limit == 0 && total > 0 {
                Ok(None)
            } else {
                log.read(wanted.fetch_offset, max_offset, limit).map(Some)
            };
            // A consumer below the local start reads remote history, if there is some
            // (a follower starts again at the leader's local start instead, as in KIP-405).
            let result = match result {
                Err(LogError::OffsetOutOfRange { offset, log_start, log_end })
                    if consumer
                        && offset < log_start
                        && broker.log_start(&name, wanted.partition, log_start) <= offset =>
                {
                    remote.push(RemoteRead {
                        topic: topics.len(),
                        partition: partitions.len(),
                        fetch_offset: offset,
                        max_bytes: limit.max(1),
                        log: Arc::clone(&log),
                        high_watermark,
                        read_committed,
                    });
                    Ok(Some(crate::log::ReadResult { records: Bytes::new(), log_start, log_end }))
                }
                other => other,
            };
            match result {
                Ok(read) => {
                    let (log_start, log_end) =
                        read.as_ref().map_or((log.log_start(), log.log_end()), |r| (r.log_start, r.log_end));
                    let log_start =
                        if consumer { broker.log_start(&name, wanted.partition, log_start) } else { log_start };
                    let high_watermark = high_watermark.unwrap_or(log_end);
                    data = data
                        .with_high_watermark(high_watermark)
                        .with_last_stable_offset(last_stable.unwrap_or(high_watermark))
                        .with_log_start_offset(since(version, 5, log_start, -1));
                    let mut returned = None;
                    if let Some(read) = read {
                        // Only the first batch of the whole response may exceed max_bytes.
                        if !(total > 0 && read.records.len() > limit) {
                            total += read.records.len();
                            remaining = remaining.saturating_sub(read.records.len());
                            returned = last_offset_after(&read.records);
                            data = data.with_records(Some(read.records));
                        }
                    }
                    if read_committed {
                        let aborted = returned.map_or_else(Vec::new, |upto| {
                            log.aborted_transactions(wanted.fetch_offset, upto)
                                .into_iter()
                                .map(|a| {
                                    AbortedTransaction::default()
                                        .with_producer_id(ProducerId(a.producer_id))
                                        .with_first_offset(a.first_offset)
                                })
                                .collect()
                        });
                        data = data.with_aborted_transactions(Some(aborted));
                    }
                }
                Err(error) => {
                    had_error = true;
                    let log_start = log.log_start();
                    let log_start =
                        if consumer { broker.log_start(&name, wanted.partition, log_start) } else { log_start };
                    data = data
                        .with_error_code(error_code(&error))
                        .with_high_watermark(high_watermark.unwrap_or_else(|| log.log_end()))
                        .with_log_start_offset(since(version, 5, log_start, -1));
                }
            }
            partitions.push(data);
        }
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_topic_id(topic.topic_id)
                .with_partitions(partitions),
        );
    }
    (FetchResponse::default().with_responses(topics), total, had_error, remote)
}

/// The offset after the last batch in `records`, if there is one.
fn last_offset_after(records: &Bytes) -> Option<i64> {
    crate::record::BatchIter::new(records).map_while(Result::ok).last().map(|b| b.next_offset())
}

/// A cluster's partition for a fetch: its log and the high watermark, after the checks a
/// leader makes. A follower's fetch (`replica_id >= 0`) also tells the leader how far the
/// follower has got.
fn locate(
    cluster: &Arc<ReplicaManager>,
    topic: &str,
    wanted: &FetchPartition,
    replica_id: i32,
) -> Result<(Arc<Log>, Option<i64>), i16> {
    let Some(replica) = cluster.replica(topic, wanted.partition) else {
        let known = cluster.image().partition(topic, wanted.partition as u32).is_some();
        let code = if known { ResponseError::NotLeaderOrFollower } else { ResponseError::UnknownTopicOrPartition };
        return Err(code.code());
    };
    let epoch = wanted.current_leader_epoch;
    let high_watermark = if replica_id >= 0 {
        let (hw, actions) =
            replica.on_follower_fetch(replica_id, wanted.fetch_offset, epoch, Instant::now()).map_err(|e| e.code())?;
        cluster.act(&replica, actions);
        hw
    } else {
        replica.check_leader(epoch).map_err(|e| e.code())?.high_watermark
    };
    Ok((Arc::clone(&replica.log), Some(high_watermark)))
}
