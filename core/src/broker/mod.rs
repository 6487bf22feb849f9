//! The broker: what each Kafka request means, answered from the log manager.
//!
//! One file per API (`produce.rs`, `fetch.rs`, ...), each a function from request to
//! response. Errors from the log become Kafka's error codes here, in one place
//! ([`error_code`]), so clients see exactly what a Kafka broker would send.
//!
//! ```text
//!  protocol::connection ──(RequestHeader, RequestKind)──> Broker::handle ──> api file
//!                      <──────────── Response (ResponseKind + version) ───────┘
//! ```

mod add_offsets_to_txn;
mod add_partitions_to_txn;
mod admin;
mod alter_configs;
mod alter_partition_reassignments;
mod api_versions;
mod create_partitions;
mod create_topics;
mod delete_groups;
mod delete_records;
mod delete_topics;
mod describe_cluster;
mod describe_configs;
mod describe_groups;
mod describe_transactions;
mod elect_leaders;
mod end_txn;
mod fetch;
mod find_coordinator;
mod heartbeat;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
mod list_offsets;
mod list_transactions;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod offset_for_leader_epoch;
mod produce;
mod sync_group;
mod txn_offset_commit;
mod write_txn_markers;

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};

use crate::config::ServerConfig;
use crate::group::GroupCoordinator;
use crate::log::{Clock, LogError, LogManager, SystemClock};
use crate::partition::ReplicaManager;
use crate::tier::TierManager;
use crate::txn::TransactionCoordinator;

/// A response ready to encode: its body, the version to encode it at, and the
/// correlation id of the request it answers.
#[derive(Debug)]
pub struct Response {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub correlation_id: i32,
    pub body: ResponseKind,
}

/// A response that may still be waiting (an acks=all produce waits for its flush).
pub type PendingResponse = futures::future::BoxFuture<'static, Response>;

/// Versions this broker answers, per API. Produce and Fetch are advertised from version
/// 0 because librdkafka decides features (compression among them) from those ranges, but
/// only the versions the codec decodes (magic v2 batches) are served. They stop below
/// the versions that name topics by id only (Produce 13, Fetch 13).
const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 0, 12),
    (ApiKey::Fetch, 0, 12),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::FindCoordinator, 0, 5),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::AlterPartitionReassignments, 0, 0),
    // Transactions, below the versions of KIP-890's server-side verification.
    (ApiKey::AddPartitionsToTxn, 0, 3),
    (ApiKey::AddOffsetsToTxn, 0, 3),
    (ApiKey::EndTxn, 0, 3),
    (ApiKey::TxnOffsetCommit, 0, 3),
    (ApiKey::WriteTxnMarkers, 1, 1),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 1),
];

/// The broker of one node.
#[derive(Debug)]
pub struct Broker {
    logs: Arc<LogManager>,
    config: ServerConfig,
    advertised: (String, i32),
    cluster_id: String,
    producer_ids: init_producer_id::ProducerIdAllocator,
    groups: Arc<GroupCoordinator>,
    txns: Arc<TransactionCoordinator>,
    clock: Arc<dyn Clock>,
    /// In a cluster: this broker's replicas and the controller. `None` on a single node,
    /// where every partition is led here and the log end is the high watermark.
    cluster: Option<Arc<ReplicaManager>>,
    /// Tiered storage: remote history below each partition's local start.
    tier: Option<Arc<TierManager>>,
}

impl Broker {
    /// # Errors
    /// An invalid advertised listener, or a producer id file that cannot be read.
    pub fn new(logs: Arc<LogManager>, config: ServerConfig) -> anyhow::Result<Self> {
        Self::build(logs, config, None)
    }

    /// A broker of a cluster, serving the partitions `replicas` holds.
    ///
    /// # Errors
    /// As [`Self::new`].
    pub fn clustered(
        logs: Arc<LogManager>,
        config: ServerConfig,
        replicas: Arc<ReplicaManager>,
    ) -> anyhow::Result<Self> {
        Self::build(logs, config, Some(replicas))
    }

    fn build(
        logs: Arc<LogManager>,
        config: ServerConfig,
        cluster: Option<Arc<ReplicaManager>>,
    ) -> anyhow::Result<Self> {
        let advertised = config.advertised()?;
        // In a cluster every broker hands out ids; interleaving them by node id keeps them
        // unique without asking the controller for each block.
        let stride = if cluster.is_some() { Some((config.node_id, init_producer_id::NODE_STRIDE)) } else { None };
        let producer_ids = init_producer_id::ProducerIdAllocator::open(logs.data_dir(), stride)?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let groups = GroupCoordinator::start(Arc::clone(&logs), Arc::clone(&clock), cluster.clone())?;
        let txns =
            TransactionCoordinator::start(Arc::clone(&logs), Arc::clone(&clock), cluster.clone(), Arc::clone(&groups))?;
        // Stable per data dir would be better (a later issue stores cluster metadata);
        // one id per broker process is what single-node clients need. A cluster's id is
        // the same on every broker.
        let cluster_id = match &cluster {
            None => format!("headwater-{}", config.node_id),
            Some(_) => "headwater-cluster".to_string(),
        };
        Ok(Self { logs, config, advertised, cluster_id, producer_ids, groups, txns, clock, cluster, tier: None })
    }

    /// Serves remote history from `tier` below each partition's local log start.
    pub fn with_tier(mut self, tier: Arc<TierManager>) -> Self {
        self.tier = Some(tier);
        self
    }

    /// A partition's true log start: remote history included.
    fn log_start(&self, topic: &str, partition: i32, local_start: i64) -> i64 {
        match &self.tier {
            Some(tier) => tier.log_start(&crate::log::TopicPartition::new(topic, partition), local_start),
            None => local_start,
        }
    }

    /// Whether `topic`-`partition` exists (in a cluster: in the metadata image).
    fn partition_exists(&self, topic: &str, partition: i32) -> bool {
        match &self.cluster {
            None => self.logs.topic(topic).is_some_and(|t| (0..t.partitions).contains(&partition)),
            Some(cluster) => partition >= 0 && cluster.image().partition(topic, partition as u32).is_some(),
        }
    }

    pub fn logs(&self) -> &Arc<LogManager> {
        &self.logs
    }

    /// Whether this broker can decode and answer `api_key` at `version`.
    pub fn supports(&self, api_key: ApiKey, version: i16) -> bool {
        supports(api_key, version)
    }

    /// The answer to an ApiVersions request newer than this broker knows (KIP-511).
    pub fn unsupported_api_versions(&self, correlation_id: i32) -> Response {
        api_versions::unsupported(correlation_id)
    }

    /// Answers one request; `None` when the protocol says to send nothing (acks=0). The
    /// work that must follow request order (appends) is done before this returns; the
    /// answer may still wait (for a flush) in the returned future.
    pub async fn handle(&self, header: &RequestHeader, request: RequestKind) -> Option<PendingResponse> {
        let version = header.request_api_version;
        let correlation_id = header.correlation_id;
        let (api_key, body) = match request {
            RequestKind::ApiVersions(r) => (ApiKey::ApiVersions, ResponseKind::ApiVersions(api_versions::handle(&r))),
            RequestKind::Metadata(r) => {
                (ApiKey::Metadata, ResponseKind::Metadata(metadata::handle(self, r, version).await))
            }
            RequestKind::Produce(r) => {
                let acks = r.acks;
                let response = produce::handle(self, r, version);
                if acks == 0 {
                    return None;
                }
                return Some(Box::pin(async move {
                    let body = ResponseKind::Produce(response.await);
                    Response { api_key: ApiKey::Produce, api_version: version, correlation_id, body }
                }));
            }
            RequestKind::Fetch(r) => (ApiKey::Fetch, ResponseKind::Fetch(fetch::handle(self, r, version).await)),
            RequestKind::ListOffsets(r) => {
                (ApiKey::ListOffsets, ResponseKind::ListOffsets(list_offsets::handle(self, r, version).await))
            }
            RequestKind::CreateTopics(r) => {
                (ApiKey::CreateTopics, ResponseKind::CreateTopics(create_topics::handle(self, r, version).await))
            }
            RequestKind::FindCoordinator(r) => (
                ApiKey::FindCoordinator,
                ResponseKind::FindCoordinator(find_coordinator::handle(self, &r, version).await),
            ),
            RequestKind::JoinGroup(r) => {
                let client_id = header.client_id.as_ref().map(|c| c.to_string()).unwrap_or_default();
                (ApiKey::JoinGroup, ResponseKind::JoinGroup(join_group::handle(self, r, &client_id, version).await))
            }
            RequestKind::SyncGroup(r) => {
                (ApiKey::SyncGroup, ResponseKind::SyncGroup(sync_group::handle(self, r, version).await))
            }
            RequestKind::Heartbeat(r) => (ApiKey::Heartbeat, ResponseKind::Heartbeat(heartbeat::handle(self, &r))),
            RequestKind::LeaveGroup(r) => {
                (ApiKey::LeaveGroup, ResponseKind::LeaveGroup(leave_group::handle(self, &r, version)))
            }
            RequestKind::OffsetCommit(r) => {
                (ApiKey::OffsetCommit, ResponseKind::OffsetCommit(offset_commit::handle(self, r).await))
            }
            RequestKind::OffsetFetch(r) => {
                (ApiKey::OffsetFetch, ResponseKind::OffsetFetch(offset_fetch::handle(self, r, version)))
            }
            RequestKind::ListGroups(r) => {
                (ApiKey::ListGroups, ResponseKind::ListGroups(list_groups::handle(self, &r, version)))
            }
            RequestKind::DescribeGroups(r) => {
                (ApiKey::DescribeGroups, ResponseKind::DescribeGroups(describe_groups::handle(self, &r, version)))
            }
            RequestKind::DeleteGroups(r) => {
                (ApiKey::DeleteGroups, ResponseKind::DeleteGroups(delete_groups::handle(self, r).await))
            }
            RequestKind::OffsetDelete(r) => {
                (ApiKey::OffsetDelete, ResponseKind::OffsetDelete(offset_delete::handle(self, r).await))
            }
            RequestKind::DescribeConfigs(r) => {
                (ApiKey::DescribeConfigs, ResponseKind::DescribeConfigs(describe_configs::handle(self, &r, version)))
            }
            RequestKind::AlterConfigs(r) => {
                (ApiKey::AlterConfigs, ResponseKind::AlterConfigs(alter_configs::handle(self, &r).await))
            }
            RequestKind::IncrementalAlterConfigs(r) => (
                ApiKey::IncrementalAlterConfigs,
                ResponseKind::IncrementalAlterConfigs(alter_configs::handle_incremental(self, &r).await),
            ),
            RequestKind::CreatePartitions(r) => {
                (ApiKey::CreatePartitions, ResponseKind::CreatePartitions(create_partitions::handle(self, &r).await))
            }
            RequestKind::DeleteRecords(r) => {
                (ApiKey::DeleteRecords, ResponseKind::DeleteRecords(delete_records::handle(self, &r).await))
            }
            RequestKind::OffsetForLeaderEpoch(r) => (
                ApiKey::OffsetForLeaderEpoch,
                ResponseKind::OffsetForLeaderEpoch(offset_for_leader_epoch::handle(self, &r)),
            ),
            RequestKind::ElectLeaders(r) => {
                (ApiKey::ElectLeaders, ResponseKind::ElectLeaders(elect_leaders::handle(self, r).await))
            }
            RequestKind::AlterPartitionReassignments(r) => (
                ApiKey::AlterPartitionReassignments,
                ResponseKind::AlterPartitionReassignments(alter_partition_reassignments::handle(self, r).await),
            ),
            RequestKind::DescribeCluster(r) => {
                (ApiKey::DescribeCluster, ResponseKind::DescribeCluster(describe_cluster::handle(self, &r)))
            }
            RequestKind::InitProducerId(r) => {
                (ApiKey::InitProducerId, ResponseKind::InitProducerId(init_producer_id::handle(self, &r).await))
            }
            RequestKind::AddPartitionsToTxn(r) => (
                ApiKey::AddPartitionsToTxn,
                ResponseKind::AddPartitionsToTxn(add_partitions_to_txn::handle(self, &r).await),
            ),
            RequestKind::AddOffsetsToTxn(r) => {
                (ApiKey::AddOffsetsToTxn, ResponseKind::AddOffsetsToTxn(add_offsets_to_txn::handle(self, &r).await))
            }
            RequestKind::EndTxn(r) => (ApiKey::EndTxn, ResponseKind::EndTxn(end_txn::handle(self, &r).await)),
            RequestKind::TxnOffsetCommit(r) => {
                (ApiKey::TxnOffsetCommit, ResponseKind::TxnOffsetCommit(txn_offset_commit::handle(self, &r).await))
            }
            RequestKind::WriteTxnMarkers(r) => {
                (ApiKey::WriteTxnMarkers, ResponseKind::WriteTxnMarkers(write_txn_markers::handle(self, &r).await))
            }
            RequestKind::DescribeTransactions(r) => (
                ApiKey::DescribeTransactions,
                ResponseKind::DescribeTransactions(describe_transactions::handle(self, &r)),
            ),
            RequestKind::ListTransactions(r) => {
                (ApiKey::ListTransactions, ResponseKind::ListTransactions(list_transactions::handle(self, &r)))
            }
            RequestKind::DeleteTopics(r) => {
                (ApiKey::DeleteTopics, ResponseKind::DeleteTopics(delete_topics::handle(self, r, version).await))
            }
            other => {
                // `supports` keeps unknown APIs from being decoded at all.
                unreachable!("request {other:?} passed the version check but has no handler")
            }
        };
        Some(Box::pin(std::future::ready(Response { api_key, api_version: version, correlation_id, body })))
    }
}

/// Whether the broker can decode and answer `api_key` at `version`: advertised by us and
/// known to the codec.
pub fn supports(api_key: ApiKey, version: i16) -> bool {
    let codec = api_key.valid_versions();
    SUPPORTED
        .iter()
        .any(|&(key, min, max)| key == api_key && version >= min.max(codec.min) && version <= max.min(codec.max))
}

/// Kafka's error code for a log error. The one place where internal errors meet the wire.
pub fn error_code(error: &LogError) -> i16 {
    use crate::record::RecordError;
    let code = match error {
        LogError::UnknownTopicOrPartition { .. } => ResponseError::UnknownTopicOrPartition,
        LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        LogError::RecordTooLarge { .. } => ResponseError::MessageTooLarge,
        LogError::InvalidRecords { source: RecordError::CorruptBatch { .. } } => ResponseError::CorruptMessage,
        LogError::InvalidRecords { .. } | LogError::InvalidAppend { .. } => ResponseError::InvalidRecord,
        LogError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        LogError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        LogError::StaleCoordinatorEpoch { .. } => ResponseError::TransactionCoordinatorFenced,
        LogError::TopicAlreadyExists { .. } => ResponseError::TopicAlreadyExists,
        LogError::InvalidTopic { .. } => ResponseError::InvalidTopicException,
        LogError::InvalidPartitions { .. } => ResponseError::InvalidPartitions,
        LogError::InvalidConfig { .. } => ResponseError::InvalidConfig,
        LogError::Io { .. }
        | LogError::Failed { .. }
        | LogError::CorruptSegment { .. }
        | LogError::CorruptSegmentRecords { .. }
        | LogError::CorruptCheckpoint { .. } => ResponseError::KafkaStorageError,
    };
    code.code()
}

/// `value` if the response `version` has the field (it exists from `min`), else the
/// field's default: kafka-protocol refuses to encode a non-default value in a version
/// that lacks the field, and clients of old versions must still be answered.
fn since<T>(version: i16, min: i16, value: T, default: T) -> T {
    if version >= min { value } else { default }
}

/// A `StrBytes` from a `String`.
fn str_bytes(s: impl Into<String>) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(s.into())
}

/// A `TopicName` from a `&str`.
fn topic_name(s: &str) -> kafka_protocol::messages::TopicName {
    kafka_protocol::messages::TopicName(str_bytes(s))
}
