//! The transactional producer's conversation with its transaction coordinator: Kafka's
//! InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, and TxnOffsetCommit to the
//! group's coordinator, each retried while the coordinator moves or is busy.
//!
//! ```text
//!  connect ──> FindCoordinator(key type 1) ──> InitProducerId(transactional.id): id, epoch
//!  begin ──> sends: a partition's first batch waits for AddPartitionsToTxn (the driver)
//!        ──> send_offsets: AddOffsetsToTxn, then TxnOffsetCommit to the group coordinator
//!        ──> commit / abort: flush, EndTxn
//! ```
//!
//! The producer keeps the state (which partitions are in the transaction, whether it
//! must be aborted); this module only speaks to the coordinators.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, EndTxnRequest, GroupId, InitProducerIdRequest, ProducerId,
    TopicName, TransactionalId, TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::group_consumer::find_coordinator_of;
use super::{ClientError, ClusterView, Connection};

/// How long a coordinator request is retried (busy, moving, loading) before it fails:
/// Kafka's `max.block.ms` default.
const RETRY_FOR: Duration = Duration::from_secs(60);
const RETRY_BACKOFF: Duration = Duration::from_millis(20);
/// The longest pause between retries: CONCURRENT_TRANSACTIONS clears once the previous
/// transaction's markers are written, usually within a few milliseconds.
const MAX_RETRY_BACKOFF: Duration = Duration::from_millis(500);

/// FindCoordinator's key type for a transactional id.
const TRANSACTION_KEY: i8 = 1;

/// A consumer group member's identity, which a transactional offset commit carries so the
/// group coordinator can fence a member that has been replaced (KIP-447).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadata {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

impl GroupMetadata {
    /// A group's metadata without membership: offsets committed for a group no member of
    /// which takes part (the broker then checks no generation).
    pub fn group(group_id: &str) -> Self {
        Self { group_id: group_id.to_string(), generation_id: -1, member_id: String::new(), group_instance_id: None }
    }
}

/// What a coordinator's code means to the producer.
enum Answer {
    Done,
    /// Ask again, after finding the coordinator again when `moved`.
    Retry {
        moved: bool,
    },
    Failed(ClientError),
}

fn classify(api: &'static str, code: i16) -> Answer {
    if code == 0 {
        return Answer::Done;
    }
    match ResponseError::try_from_code(code) {
        Some(ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable) => Answer::Retry { moved: true },
        Some(ResponseError::CoordinatorLoadInProgress | ResponseError::ConcurrentTransactions) => {
            Answer::Retry { moved: false }
        }
        Some(error) if error.is_retriable() => Answer::Retry { moved: false },
        _ => Answer::Failed(ClientError::Broker { api, code }),
    }
}

/// Whether a failure means this producer has been replaced (an epoch bump by a newer
/// instance with the same `transactional.id`, or by the coordinator's timeout abort):
/// nothing more can be done with it.
pub(super) fn is_fenced(error: &ClientError) -> bool {
    matches!(error, ClientError::Broker { code, .. }
        if [ResponseError::ProducerFenced, ResponseError::InvalidProducerEpoch, ResponseError::TransactionalIdAuthorizationFailed, ResponseError::InvalidProducerIdMapping]
            .iter()
            .any(|e| e.code() == *code))
}

/// The producer's transaction coordinator, found on first use and again when it moves.
#[derive(Debug)]
pub(super) struct TxnCoordinator {
    transactional_id: String,
    timeout: Duration,
    coordinator: tokio::sync::Mutex<Option<Arc<Connection>>>,
}

impl TxnCoordinator {
    pub(super) fn new(transactional_id: &str, timeout: Duration) -> Self {
        Self { transactional_id: transactional_id.to_string(), timeout, coordinator: tokio::sync::Mutex::new(None) }
    }

    fn txn_id(&self) -> TransactionalId {
        TransactionalId(StrBytes::from_string(self.transactional_id.clone()))
    }

    /// Sends a request built by `make` to the coordinator of `key` (the transactional id,
    /// or a group for TxnOffsetCommit) until its answer is final.
    async fn call<R, F, C>(
        &self,
        cluster: &ClusterView,
        api: &'static str,
        group: Option<&str>,
        make: F,
        code: C,
    ) -> Result<R::Response, ClientError>
    where
        R: kafka_protocol::protocol::Request + kafka_protocol::protocol::Encodable,
        R::Response: Send + 'static,
        F: Fn() -> R,
        C: Fn(&R::Response) -> i16,
    {
        let deadline = Instant::now() + RETRY_FOR;
        let mut backoff = RETRY_BACKOFF;
        let mut group_coordinator: Option<Arc<Connection>> = None;
        loop {
            let connection = match group {
                Some(group) => match &group_coordinator {
                    Some(c) => Ok(Arc::clone(c)),
                    None => find_coordinator_of(cluster, group, 0).await,
                },
                None => self.coordinator(cluster).await,
            };
            let answer = match connection {
                Ok(connection) => {
                    if group.is_some() {
                        group_coordinator = Some(Arc::clone(&connection));
                    }
                    match connection.send(make()).await {
                        Ok(response) => match classify(api, code(&response)) {
                            Answer::Done => return Ok(response),
                            answer => answer,
                        },
                        Err(error @ (ClientError::Disconnected { .. } | ClientError::Timeout { .. })) => {
                            tracing::debug!(api, %error, "coordinator request failed; retrying");
                            Answer::Retry { moved: true }
                        }
                        Err(error) => Answer::Failed(error),
                    }
                }
                Err(
                    error @ (ClientError::Connect { .. } | ClientError::Broker { .. } | ClientError::Timeout { .. }),
                ) => {
                    tracing::debug!(api, %error, "no coordinator yet; retrying");
                    Answer::Retry { moved: true }
                }
                Err(error) => Answer::Failed(error),
            };
            match answer {
                Answer::Failed(error) => return Err(error),
                Answer::Retry { .. } if Instant::now() >= deadline => {
                    return Err(ClientError::Timeout { ms: RETRY_FOR.as_millis() as u64 });
                }
                Answer::Retry { moved } => {
                    if moved {
                        cluster.mark_stale();
                        group_coordinator = None;
                        if group.is_none() {
                            *self.coordinator.lock().await = None;
                        }
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_RETRY_BACKOFF);
                }
                Answer::Done => unreachable!("returned above"),
            }
        }
    }

    async fn coordinator(&self, cluster: &ClusterView) -> Result<Arc<Connection>, ClientError> {
        let mut slot = self.coordinator.lock().await;
        if let Some(connection) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(connection));
        }
        let connection = find_coordinator_of(cluster, &self.transactional_id, TRANSACTION_KEY).await?;
        *slot = Some(Arc::clone(&connection));
        Ok(connection)
    }

    /// InitProducerId for the transactional id: a producer id and a new epoch, which
    /// fences every earlier producer of the id and aborts its open transaction.
    pub(super) async fn init_producer_id(&self, cluster: &ClusterView) -> Result<(i64, i16), ClientError> {
        let response = self
            .call(
                cluster,
                "InitProducerId",
                None,
                || {
                    InitProducerIdRequest::default()
                        .with_transactional_id(Some(self.txn_id()))
                        .with_transaction_timeout_ms(self.timeout.as_millis().min(i32::MAX as u128) as i32)
                },
                |r| r.error_code,
            )
            .await?;
        Ok((response.producer_id.0, response.producer_epoch))
    }

    /// Adds partitions to the open transaction; every partition's answer must be no error.
    pub(super) async fn add_partitions(
        &self,
        cluster: &ClusterView,
        producer: (i64, i16),
        partitions: &[(String, i32)],
    ) -> Result<(), ClientError> {
        let mut by_topic: std::collections::BTreeMap<&str, Vec<i32>> = std::collections::BTreeMap::new();
        for (topic, partition) in partitions {
            by_topic.entry(topic).or_default().push(*partition);
        }
        let topics: Vec<AddPartitionsToTxnTopic> = by_topic
            .into_iter()
            .map(|(t, ps)| {
                AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(StrBytes::from_string(t.to_string())))
                    .with_partitions(ps)
            })
            .collect();
        self.call(
            cluster,
            "AddPartitionsToTxn",
            None,
            || {
                AddPartitionsToTxnRequest::default()
                    .with_v3_and_below_transactional_id(self.txn_id())
                    .with_v3_and_below_producer_id(ProducerId(producer.0))
                    .with_v3_and_below_producer_epoch(producer.1)
                    .with_v3_and_below_topics(topics.clone())
            },
            |r| {
                // The worst partition's code decides: an error beside OPERATION_NOT_ATTEMPTED
                // (the others, left out because of it) is the one to act on.
                let codes = r.results_by_topic_v3_and_below.iter().flat_map(|t| t.results_by_partition.iter());
                let not_attempted = ResponseError::OperationNotAttempted.code();
                codes
                    .clone()
                    .map(|p| p.partition_error_code)
                    .find(|c| *c != 0 && *c != not_attempted)
                    .or_else(|| codes.map(|p| p.partition_error_code).find(|c| *c != 0))
                    .unwrap_or(r.error_code)
            },
        )
        .await
        .map(drop)
    }

    /// Adds the group's offsets partition to the transaction (AddOffsetsToTxn), then
    /// commits `offsets` in it through the group's coordinator (TxnOffsetCommit).
    pub(super) async fn send_offsets(
        &self,
        cluster: &ClusterView,
        producer: (i64, i16),
        offsets: &[(String, i32, i64)],
        group: &GroupMetadata,
    ) -> Result<(), ClientError> {
        let group_id = GroupId(StrBytes::from_string(group.group_id.clone()));
        self.call(
            cluster,
            "AddOffsetsToTxn",
            None,
            || {
                AddOffsetsToTxnRequest::default()
                    .with_transactional_id(self.txn_id())
                    .with_producer_id(ProducerId(producer.0))
                    .with_producer_epoch(producer.1)
                    .with_group_id(group_id.clone())
            },
            |r| r.error_code,
        )
        .await?;
        let mut by_topic: std::collections::BTreeMap<&str, Vec<TxnOffsetCommitRequestPartition>> =
            std::collections::BTreeMap::new();
        for (topic, partition, offset) in offsets {
            by_topic.entry(topic).or_default().push(
                TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(*partition)
                    .with_committed_offset(*offset)
                    .with_committed_leader_epoch(-1),
            );
        }
        let topics: Vec<TxnOffsetCommitRequestTopic> = by_topic
            .into_iter()
            .map(|(t, ps)| {
                TxnOffsetCommitRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_string(t.to_string())))
                    .with_partitions(ps)
            })
            .collect();
        self.call(
            cluster,
            "TxnOffsetCommit",
            Some(&group.group_id),
            || {
                TxnOffsetCommitRequest::default()
                    .with_transactional_id(self.txn_id())
                    .with_group_id(group_id.clone())
                    .with_producer_id(ProducerId(producer.0))
                    .with_producer_epoch(producer.1)
                    .with_generation_id(group.generation_id)
                    .with_member_id(StrBytes::from_string(group.member_id.clone()))
                    .with_group_instance_id(group.group_instance_id.clone().map(StrBytes::from_string))
                    .with_topics(topics.clone())
            },
            |r| r.topics.iter().flat_map(|t| t.partitions.iter()).map(|p| p.error_code).find(|c| *c != 0).unwrap_or(0),
        )
        .await
        .map(drop)
    }

    /// Ends the transaction: EndTxn with commit or abort.
    pub(super) async fn end(
        &self,
        cluster: &ClusterView,
        producer: (i64, i16),
        commit: bool,
    ) -> Result<(), ClientError> {
        self.call(
            cluster,
            "EndTxn",
            None,
            || {
                EndTxnRequest::default()
                    .with_transactional_id(self.txn_id())
                    .with_producer_id(ProducerId(producer.0))
                    .with_producer_epoch(producer.1)
                    .with_committed(commit)
            },
            |r| r.error_code,
        )
        .await
        .map(drop)
    }
}
