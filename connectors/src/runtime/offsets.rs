//! Source offsets in a compacted topic, in Kafka Connect's layout, so a restarted source
//! resumes where it stopped and Kafka's tools can read them.
//!
//! | | Bytes (JSON, no schema envelope) |
//! | --- | --- |
//! | key | `["<connector>", <source partition>]`, e.g. `["lines",{"filename":"/var/log/a.log"}]` |
//! | value | the source offset, e.g. `{"position":1234}`; a tombstone forgets the partition |
//!
//! Keys go to their murmur2 partition (the producer's default), so the writes for one
//! source partition stay in order and the last one wins, during compaction and when the
//! store is read back.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;
use headwater_core::client::{Admin, ClientError, Consumer, ConsumerConfig, IsolationLevel, OffsetReset, Producer};
use serde_json::Value;

use crate::connector::{SourceOffsets, canonical};

/// Partitions of a new offsets topic: Kafka Connect's `offset.storage.partitions`.
pub const PARTITIONS: i32 = 25;

/// How long reading the topic to its end may take before the store gives up.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Why the offsets topic could not be used.
#[derive(Debug, thiserror::Error)]
pub enum OffsetError {
    #[error("offsets topic {topic}: {source}")]
    Client {
        topic: String,
        #[source]
        source: ClientError,
    },
    #[error("offsets topic {topic}: not read to its end within {READ_TIMEOUT:?}")]
    Timeout { topic: String },
    #[error("offsets topic {topic} is not compacted (cleanup.policy={policy}): old offsets would be lost")]
    NotCompacted { topic: String, policy: String },
}

/// The offsets topic of a worker.
#[derive(Debug)]
pub struct OffsetStore {
    bootstrap: String,
    topic: String,
}

impl OffsetStore {
    /// The store in `topic`, created (compacted) when missing. An existing topic must be
    /// compacted: with deletion, offsets would expire and sources start over.
    ///
    /// # Errors
    /// [`OffsetError`].
    pub async fn open(bootstrap: &str, topic: &str) -> Result<Self, OffsetError> {
        let fail = |source| OffsetError::Client { topic: topic.to_string(), source };
        let admin = Admin::connect(bootstrap).await.map_err(fail)?;
        ensure_compacted_topic(&admin, topic, PARTITIONS).await.map_err(|e| match e {
            EnsureError::Client(source) => fail(source),
            EnsureError::NotCompacted(policy) => OffsetError::NotCompacted { topic: topic.to_string(), policy },
        })?;
        Ok(Self { bootstrap: bootstrap.to_string(), topic: topic.to_string() })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Every connector's latest offsets, read from the start of the topic to its end.
    /// `committed` reads only offsets of committed transactions (an exactly-once task's),
    /// up to the end as it was when the read began: the transactions open then are
    /// waited for, not skipped, so an offset committed after one of them is not missed.
    ///
    /// # Errors
    /// [`OffsetError`].
    pub async fn read_all(&self, committed: bool) -> Result<HashMap<String, SourceOffsets>, OffsetError> {
        let fail = |source| OffsetError::Client { topic: self.topic.clone(), source };
        let config = ConsumerConfig {
            bootstrap: self.bootstrap.clone(),
            client_id: "headwater-connect-offsets".into(),
            fetch_max_wait: Duration::from_millis(100),
            auto_offset_reset: OffsetReset::Earliest,
            ..ConsumerConfig::default()
        };
        // Ends are asked at read_uncommitted: the high watermark, not the last stable offset.
        let mut ends_of = Consumer::connect(config.clone()).await.map_err(fail)?;
        let isolation_level = if committed { IsolationLevel::ReadCommitted } else { IsolationLevel::ReadUncommitted };
        let mut consumer = Consumer::connect(ConsumerConfig { isolation_level, ..config }).await.map_err(fail)?;
        let partitions: Vec<(String, i32)> = (0..partition_count(&self.bootstrap, &self.topic).await.map_err(fail)?)
            .map(|p| (self.topic.clone(), p))
            .collect();
        let deadline = tokio::time::Instant::now() + READ_TIMEOUT;
        let mut ends = BTreeMap::new();
        while ends.len() < partitions.len() {
            ends = ends_of.list_offsets(partitions.clone(), -1).await.map_err(fail)?;
            if tokio::time::Instant::now() > deadline {
                return Err(OffsetError::Timeout { topic: self.topic.clone() });
            }
        }
        let mut latest: BTreeMap<String, (String, Value, Option<Value>)> = BTreeMap::new();
        let unread: Vec<(String, i32)> = ends.iter().filter(|(_, end)| **end > 0).map(|(tp, _)| tp.clone()).collect();
        consumer.assign(unread.clone());
        for (topic, partition) in &unread {
            consumer.seek(topic, *partition, 0);
        }
        let done = |consumer: &Consumer| {
            unread.iter().all(|(t, p)| consumer.position(t, *p).is_some_and(|pos| pos >= ends[&(t.clone(), *p)]))
        };
        while !done(&consumer) {
            if tokio::time::Instant::now() > deadline {
                return Err(OffsetError::Timeout { topic: self.topic.clone() });
            }
            for record in consumer.poll().await.map_err(fail)? {
                let Some(key) = record.key.as_deref() else { continue };
                // Keys other tools wrote in another shape are not ours to read.
                let Ok(Value::Array(parts)) = serde_json::from_slice::<Value>(key) else { continue };
                let [Value::String(connector), partition] = parts.as_slice() else { continue };
                let offset = record.value.as_deref().and_then(|v| serde_json::from_slice::<Value>(v).ok());
                let id = format!("{connector}\u{0}{}", canonical(partition));
                latest.insert(id, (connector.clone(), partition.clone(), offset));
            }
        }
        let mut by_connector: HashMap<String, Vec<(Value, Value)>> = HashMap::new();
        for (connector, partition, offset) in latest.into_values() {
            let entries = by_connector.entry(connector).or_default();
            if let Some(offset) = offset.filter(|o| !o.is_null()) {
                entries.push((partition, offset));
            }
        }
        Ok(by_connector.into_iter().map(|(c, entries)| (c, SourceOffsets::new(entries))).collect())
    }

    /// One connector's offsets; `committed` as for [`Self::read_all`].
    ///
    /// # Errors
    /// [`OffsetError`].
    pub async fn read(&self, connector: &str, committed: bool) -> Result<SourceOffsets, OffsetError> {
        Ok(self.read_all(committed).await?.remove(connector).unwrap_or_default())
    }

    /// Writes offsets through `producer` and waits until they are acknowledged (acks=all).
    ///
    /// # Errors
    /// [`OffsetError::Client`] when a write failed; nothing is known committed then.
    pub async fn write(
        &self,
        producer: &Producer,
        connector: &str,
        offsets: &[(Value, Option<Value>)],
    ) -> Result<(), OffsetError> {
        let fail = |source| OffsetError::Client { topic: self.topic.clone(), source };
        let mut deliveries = Vec::with_capacity(offsets.len());
        for (partition, offset) in offsets {
            let key = serde_json::to_vec(&Value::Array(vec![Value::String(connector.to_string()), partition.clone()]))
                .expect("JSON values serialize");
            let value = offset.as_ref().map(|o| Bytes::from(serde_json::to_vec(o).expect("JSON values serialize")));
            deliveries.push(producer.send(&self.topic, Some(Bytes::from(key)), value, Vec::new()).await.map_err(fail)?);
        }
        producer.flush().await.map_err(fail)?;
        for delivery in deliveries {
            delivery.await.map_err(fail)?;
        }
        Ok(())
    }
}

/// Why an internal topic could not be used.
pub(crate) enum EnsureError {
    Client(ClientError),
    NotCompacted(String),
}

/// Creates a compacted internal topic if it does not exist, and checks that one that does
/// is compacted.
pub(crate) async fn ensure_compacted_topic(admin: &Admin, topic: &str, partitions: i32) -> Result<(), EnsureError> {
    let configs = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
    let exists = match admin.topics(Some(&[topic.to_string()])).await {
        Ok(_) => true,
        Err(ClientError::UnknownTopic { .. }) => false,
        Err(error) => return Err(EnsureError::Client(error)),
    };
    if !exists {
        match admin.create_topic(topic, partitions, &configs).await {
            Ok(()) => return Ok(()),
            // Another worker may have created it meanwhile: check what it made.
            Err(error) => {
                if admin.topics(Some(&[topic.to_string()])).await.is_err() {
                    return Err(EnsureError::Client(error));
                }
            }
        }
    }
    let existing = admin.topic_configs(topic).await.map_err(EnsureError::Client)?;
    let policy = existing.get("cleanup.policy").and_then(|c| c.value.clone()).unwrap_or_else(|| "delete".into());
    if policy.split(',').any(|p| p.trim() == "compact") { Ok(()) } else { Err(EnsureError::NotCompacted(policy)) }
}

async fn partition_count(bootstrap: &str, topic: &str) -> Result<i32, ClientError> {
    let admin = Admin::connect(bootstrap).await?;
    let topics = admin.topics(Some(&[topic.to_string()])).await?;
    topics
        .into_iter()
        .find(|t| t.name == topic)
        .map(|t| t.partitions.len() as i32)
        .ok_or_else(|| ClientError::UnknownTopic { topic: topic.to_string() })
}
