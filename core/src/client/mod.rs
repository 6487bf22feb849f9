//! The Rust client: a producer, an admin client, and a consumer of assigned partitions or
//! as a group member, speaking
//! the Kafka protocol to Headwater or any Kafka-compatible broker.
//!
//! ```text
//!  Producer::send ──> accumulator (one lock): per-partition batches, sequences at seal
//!                          │ woken per batch            (bounded: unacknowledged records)
//!                          v
//!                     driver task: linger, one Produce request per round, ≤5 in flight
//!                          v
//!                     Connection (correlation ids, pipelined) ──TCP──> broker
//! ```

mod admin;
pub mod assignor;
mod cluster;
mod connection;
mod consumer;
mod group_consumer;
pub mod partitioner;
mod producer;
mod stream;
mod transaction;

pub use admin::{Admin, ConfigValue, GroupInfo, PartitionInfo, TopicInfo};
pub use cluster::ClusterView;
pub use connection::{Connection, MAX_IN_FLIGHT, PendingResponse};
pub use consumer::{
    AbortedTransactions, Consumer, ConsumerConfig, ConsumerRecord, IsolationLevel, OffsetReset, decode_committed,
    decode_records,
};
pub use group_consumer::{GroupConfig, GroupConsumer, find_coordinator};
pub use producer::{DeliveryFuture, Producer, ProducerConfig, ProducerRecord, RecordMetadata};
pub use stream::{PollRecords, records};
pub use transaction::GroupMetadata;

use std::collections::HashMap;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

/// Why a client operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::sync::Arc<std::io::Error>,
    },
    #[error("connection to {addr} lost: {reason}")]
    Disconnected { addr: String, reason: String },
    #[error("the broker does not support {api}")]
    Unsupported { api: &'static str },
    #[error("cannot encode {api} request: {message}")]
    Encode { api: &'static str, message: String },
    #[error("cannot decode {api} response: {message}")]
    Decode { api: &'static str, message: String },
    #[error("{api} failed with Kafka error code {code} ({})", kafka_protocol::error::ResponseError::try_from_code(*code).map_or("unknown".to_string(), |e| e.to_string()))]
    Broker { api: &'static str, code: i16 },
    #[error("unknown topic {topic}")]
    UnknownTopic { topic: String },
    #[error("invalid record: {message}")]
    InvalidRecord { message: String },
    #[error("the producer is closed")]
    Closed,
    #[error("transaction: {message}")]
    Transaction { message: &'static str },
    #[error("request timed out after {ms} ms")]
    Timeout { ms: u64 },
}

impl From<std::io::Error> for ClientError {
    fn from(source: std::io::Error) -> Self {
        Self::Connect { addr: String::new(), source: std::sync::Arc::new(source) }
    }
}

/// Partition counts of topics, from Metadata (which may create the topics, as with any
/// Kafka client when the broker allows it).
///
/// # Errors
/// [`ClientError::UnknownTopic`] for a topic the broker does not have and will not create.
pub async fn partition_counts(connection: &Connection, topics: &[String]) -> Result<HashMap<String, i32>, ClientError> {
    let request = MetadataRequest::default().with_allow_auto_topic_creation(true).with_topics(Some(
        topics
            .iter()
            .map(|t| MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(t.clone())))))
            .collect(),
    ));
    let response = connection.send(request).await?;
    let mut counts = HashMap::new();
    for topic in response.topics {
        let name = topic.name.map(|n| n.to_string()).unwrap_or_default();
        if topic.error_code != 0 || topic.partitions.is_empty() {
            return Err(ClientError::UnknownTopic { topic: name });
        }
        counts.insert(name, topic.partitions.len() as i32);
    }
    Ok(counts)
}
