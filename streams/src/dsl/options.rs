//! The options operators take, after Kafka Streams' `Consumed`, `Produced`, `Grouped`,
//! `Materialized`, `Repartitioned` and `JoinWindows`.

use std::sync::Arc;
use std::time::Duration;

use headwater_core::client::ConsumerRecord;

use crate::processor::stateless::{StreamPartitioner, TimestampExtractor};
use crate::serde::Serde;
use crate::state::StoreKind;

/// How a source topic is read.
pub struct Consumed<K, V> {
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) value_serde: Arc<dyn Serde<V>>,
    pub(crate) extractor: Option<TimestampExtractor>,
}

impl<K, V> Consumed<K, V> {
    pub fn with(key_serde: impl Serde<K> + 'static, value_serde: impl Serde<V> + 'static) -> Self {
        Self { key_serde: Arc::new(key_serde), value_serde: Arc::new(value_serde), extractor: None }
    }

    /// Event time from the record (its payload, say) rather than its Kafka timestamp. A
    /// negative result skips the record (counted as `skipped-no-timestamp`).
    pub fn with_timestamp_extractor(
        mut self,
        extract: impl Fn(&ConsumerRecord) -> i64 + Send + Sync + 'static,
    ) -> Self {
        self.extractor = Some(Arc::new(extract));
        self
    }
}

/// How a sink topic is written.
pub struct Produced<K, V> {
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) value_serde: Arc<dyn Serde<V>>,
    pub(crate) partitioner: Option<StreamPartitioner<K, V>>,
}

impl<K, V> Produced<K, V> {
    pub fn with(key_serde: impl Serde<K> + 'static, value_serde: impl Serde<V> + 'static) -> Self {
        Self { key_serde: Arc::new(key_serde), value_serde: Arc::new(value_serde), partitioner: None }
    }

    /// Chooses partitions (given the topic's partition count) instead of murmur2 of the
    /// key; `None` leaves the choice to the producer.
    pub fn with_partitioner(mut self, choose: impl Fn(&K, &V, i32) -> Option<i32> + Send + Sync + 'static) -> Self {
        self.partitioner = Some(Arc::new(choose));
        self
    }
}

/// Serdes for the repartition topic a grouping may need, and its name.
pub struct Grouped<K, V> {
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) value_serde: Arc<dyn Serde<V>>,
    pub(crate) name: Option<String>,
}

impl<K, V> Grouped<K, V> {
    pub fn with(key_serde: impl Serde<K> + 'static, value_serde: impl Serde<V> + 'static) -> Self {
        Self { key_serde: Arc::new(key_serde), value_serde: Arc::new(value_serde), name: None }
    }

    /// Names the repartition topic `<application.id>-<name>-repartition`.
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }
}

/// An explicit repartition: serdes, topic name and partition count.
pub struct Repartitioned<K, V> {
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) value_serde: Arc<dyn Serde<V>>,
    pub(crate) name: Option<String>,
    pub(crate) partitions: Option<i32>,
}

impl<K, V> Repartitioned<K, V> {
    pub fn with(key_serde: impl Serde<K> + 'static, value_serde: impl Serde<V> + 'static) -> Self {
        Self { key_serde: Arc::new(key_serde), value_serde: Arc::new(value_serde), name: None, partitions: None }
    }

    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }

    /// The topic's partition count (by default that of the topics upstream).
    pub fn with_partitions(mut self, partitions: i32) -> Self {
        self.partitions = Some(partitions);
        self
    }
}

/// A state store: its name (which names its changelog), kind and value serde.
pub struct Materialized<V> {
    pub(crate) name: Option<String>,
    pub(crate) value_serde: Option<Arc<dyn Serde<V>>>,
    pub(crate) kind: StoreKind,
    pub(crate) logged: bool,
}

impl<V> Default for Materialized<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> Materialized<V> {
    /// An in-memory, logged store with a generated name.
    pub fn new() -> Self {
        Self { name: None, value_serde: None, kind: StoreKind::InMemory, logged: true }
    }

    /// A store named `name`: its changelog is `<application.id>-<name>-changelog`, and the
    /// test driver finds it by this name.
    pub fn as_store(name: &str) -> Self {
        Self { name: Some(name.to_string()), ..Self::new() }
    }

    pub fn with_value_serde(mut self, serde: impl Serde<V> + 'static) -> Self {
        self.value_serde = Some(Arc::new(serde));
        self
    }

    /// On disk (redb) under the state directory, restored from its checkpoint.
    pub fn persistent(mut self) -> Self {
        self.kind = StoreKind::Persistent;
        self
    }

    pub fn in_memory(mut self) -> Self {
        self.kind = StoreKind::InMemory;
        self
    }

    /// No changelog: the store is rebuilt empty when its task moves. For caches only.
    pub fn without_logging(mut self) -> Self {
        self.logged = false;
        self
    }
}

/// How far apart in time two records of a stream-stream join may be: the other side's
/// record at most `before` earlier or `after` later than this side's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinWindows {
    pub before_ms: i64,
    pub after_ms: i64,
    pub grace_ms: i64,
}

impl JoinWindows {
    /// Records at most `difference` apart, either way, with no grace period.
    pub fn of(difference: Duration) -> Self {
        let ms = i64::try_from(difference.as_millis()).unwrap_or(i64::MAX);
        Self { before_ms: ms, after_ms: ms, grace_ms: 0 }
    }

    pub fn before(mut self, before: Duration) -> Self {
        self.before_ms = i64::try_from(before.as_millis()).unwrap_or(i64::MAX);
        self
    }

    pub fn after(mut self, after: Duration) -> Self {
        self.after_ms = i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
        self
    }

    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        self
    }
}

impl<K, V> std::fmt::Debug for Consumed<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Consumed")
    }
}

impl<K, V> std::fmt::Debug for Produced<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Produced")
    }
}

impl<K, V> std::fmt::Debug for Grouped<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Grouped")
    }
}

impl<K, V> std::fmt::Debug for Repartitioned<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Repartitioned")
    }
}

impl<V> std::fmt::Debug for Materialized<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Materialized")
    }
}
