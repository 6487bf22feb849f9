//! A stream thread against a broker: a group member (the application id is the group)
//! that holds its rebalances until it has committed, an idempotent producer, and an
//! admin client for internal topics and offsets.
//!
//! Under exactly_once_v2 the producer is transactional (one `transactional.id` per
//! thread, named after the instance's process id) and every consumer reads committed
//! data only: a commit sends the input offsets into the open transaction and commits it,
//! so output, changelogs and offsets become visible together or not at all.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use headwater_core::client::assignor::Assignor;
use headwater_core::client::{
    Admin, Consumer, ConsumerConfig, ConsumerRecord, DeliveryFuture, GroupConfig, GroupConsumer, IsolationLevel,
    OffsetReset, Producer, ProducerConfig, ProducerRecord,
};

use super::OutRecord;
use super::backend::{Backend, Reached};
use super::config::{ProcessingGuarantee, StreamsConfig};
use crate::error::StreamsError;
use crate::topology::InternalTopic;

pub(crate) struct BrokerBackend {
    bootstrap: String,
    client_id: String,
    group: GroupConfig,
    poll_wait: Duration,
    admin: Admin,
    producer: Producer,
    /// To start the producer again after it was fenced (exactly_once_v2).
    producer_config: ProducerConfig,
    consumer: Option<GroupConsumer>,
    /// Asks partition leaders for offsets (restore bounds, lag).
    offsets: Consumer,
    /// Records sent and not yet known to be acknowledged.
    in_flight: Vec<(Arc<str>, DeliveryFuture)>,
    /// What acknowledged records reached since the last flush, and the first failure.
    reached: Reached,
    failure: Option<headwater_core::client::ClientError>,
    /// exactly_once_v2: consumers read committed data, the producer is transactional.
    exactly_once: bool,
    isolation: IsolationLevel,
    /// The offsets last committed (exactly_once_v2), so an idle thread commits no
    /// transaction.
    committed: HashMap<(String, i32), i64>,
    /// A transaction is open (exactly_once_v2): begun at the first send after a commit.
    in_transaction: bool,
}

/// Past this many records in flight, acknowledged ones are settled early, so memory
/// follows what is unacknowledged, not the commit interval times the rate.
const REAP_AT: usize = 1 << 16;

impl BrokerBackend {
    /// `transactional_id` names the thread's producer under exactly_once_v2.
    pub(crate) async fn connect(
        bootstrap: &str,
        config: &StreamsConfig,
        thread: usize,
        transactional_id: &str,
    ) -> Result<Self, StreamsError> {
        let application_id = config.application_id.as_str();
        let poll_wait = config.poll_wait;
        let exactly_once = config.processing_guarantee == ProcessingGuarantee::ExactlyOnceV2;
        let client_id = format!("{application_id}-StreamThread-{}", thread + 1);
        let admin = Admin::connect(bootstrap).await?;
        let producer_config = ProducerConfig {
            bootstrap: bootstrap.to_string(),
            client_id: format!("{client_id}-producer"),
            acks: -1,
            // Kafka Streams' producer lingers 100 ms; a commit flushes anyway, so a longer
            // linger costs no latency at commit and makes larger batches.
            linger: Duration::from_millis(20),
            batch_bytes: 512 << 10,
            idempotent: true,
            transactional_id: exactly_once.then(|| transactional_id.to_string()),
            // Kafka Streams' transaction timeout under exactly-once: a crashed instance's
            // open transaction holds read_committed readers back this long at most.
            transaction_timeout: Duration::from_secs(10),
            ..ProducerConfig::default()
        };
        let producer = Producer::connect(producer_config.clone()).await?;
        let group = GroupConfig {
            session_timeout: config.session_timeout,
            heartbeat_interval: config.heartbeat_interval,
            // Range keeps partition p of every co-partitioned topic on one member: one task.
            assignors: vec![Assignor::Range],
            auto_commit: None,
            hold_rebalances: true,
            ..GroupConfig::new(application_id)
        };
        let isolation = if exactly_once { IsolationLevel::ReadCommitted } else { IsolationLevel::ReadUncommitted };
        let offsets =
            Consumer::connect(consumer_config(bootstrap, &client_id, poll_wait, isolation, "offsets")).await?;
        Ok(Self {
            bootstrap: bootstrap.to_string(),
            client_id,
            group,
            poll_wait,
            admin,
            producer,
            producer_config,
            consumer: None,
            offsets,
            in_flight: Vec::new(),
            reached: Reached::new(),
            failure: None,
            exactly_once,
            isolation,
            committed: HashMap::new(),
            in_transaction: false,
        })
    }

    fn consumer_config(&self, suffix: &str) -> ConsumerConfig {
        consumer_config(&self.bootstrap, &self.client_id, self.poll_wait, self.isolation, suffix)
    }

    /// Opens a transaction if none is (exactly_once_v2).
    fn ensure_transaction(&mut self) -> Result<(), StreamsError> {
        if self.exactly_once && !self.in_transaction {
            self.producer.begin_transaction()?;
            self.in_transaction = true;
        }
        Ok(())
    }

    /// Aborts the open transaction, if any: its records are never read by the
    /// read_committed consumers downstream, and its offsets never committed. A producer
    /// that was fenced (its transaction timed out, so the coordinator aborted it with a
    /// new epoch) is replaced by a new one of the same `transactional.id`.
    async fn abort(&mut self) {
        if !self.in_transaction {
            return;
        }
        self.in_transaction = false;
        let Err(error) = self.producer.abort_transaction().await else { return };
        tracing::warn!(%error, "aborting the stream thread's transaction failed; starting a new producer");
        match Producer::connect(self.producer_config.clone()).await {
            Ok(producer) => self.producer = producer,
            Err(error) => tracing::warn!(%error, "a new transactional producer could not start"),
        }
    }

    /// Offsets of partitions from their leaders, asking again while leaders move.
    async fn list_offsets(
        &mut self,
        partitions: &[(String, i32)],
        timestamp: i64,
    ) -> Result<HashMap<(String, i32), i64>, StreamsError> {
        let mut found = HashMap::new();
        for attempt in 0..50 {
            let missing: Vec<(String, i32)> =
                partitions.iter().filter(|tp| !found.contains_key(*tp)).cloned().collect();
            if missing.is_empty() {
                break;
            }
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            found.extend(self.offsets.list_offsets(missing, timestamp).await?);
        }
        if found.len() < partitions.len() {
            return Err(StreamsError::Config(format!("no leader answered ListOffsets for {partitions:?}")));
        }
        Ok(found)
    }
}

impl BrokerBackend {
    /// Settles the records already acknowledged (or failed), keeping the others.
    fn reap(&mut self) {
        let mut pending = Vec::with_capacity(self.in_flight.len());
        for (topic, delivery) in std::mem::take(&mut self.in_flight) {
            if delivery.is_settled() {
                let outcome = futures::FutureExt::now_or_never(delivery).expect("a settled delivery is ready");
                self.settle(topic, outcome);
            } else {
                pending.push((topic, delivery));
            }
        }
        self.in_flight = pending;
    }

    fn settle(
        &mut self,
        topic: Arc<str>,
        outcome: Result<headwater_core::client::RecordMetadata, headwater_core::client::ClientError>,
    ) {
        match outcome {
            Ok(meta) => {
                let next = self.reached.entry((topic, meta.partition)).or_insert(0);
                *next = (*next).max(meta.offset + 1);
            }
            Err(error) => {
                self.failure.get_or_insert(error);
            }
        }
    }
}

impl Backend for BrokerBackend {
    async fn partition_counts(&self, topics: &[String]) -> Result<HashMap<String, i32>, StreamsError> {
        let infos = self.admin.topics(Some(topics)).await?;
        Ok(infos.into_iter().map(|t| (t.name, t.partitions.len() as i32)).collect())
    }

    async fn create_topics(&self, topics: &BTreeMap<String, InternalTopic>) -> Result<(), StreamsError> {
        let existing: Vec<String> = self.admin.topics(None).await?.into_iter().map(|t| t.name).collect();
        for (name, topic) in topics {
            if existing.contains(name) {
                continue;
            }
            match self.admin.create_topic(name, topic.partitions, &topic.configs()).await {
                Ok(()) => {}
                // Another instance created it first.
                Err(headwater_core::client::ClientError::Broker { code: 36, .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    async fn subscribe(&mut self, topics: Vec<String>) -> Result<(), StreamsError> {
        let consumer = GroupConsumer::subscribe(self.consumer_config("consumer"), self.group.clone(), topics).await?;
        self.consumer = Some(consumer);
        Ok(())
    }

    async fn poll(&mut self) -> Result<Vec<ConsumerRecord>, StreamsError> {
        let consumer = self.consumer.as_mut().ok_or_else(|| StreamsError::Config("poll before subscribe".into()))?;
        Ok(consumer.poll().await?)
    }

    fn assignment(&self) -> Vec<(String, i32)> {
        self.consumer.as_ref().map(GroupConsumer::assignment).unwrap_or_default()
    }

    fn rebalance_wanted(&self) -> bool {
        self.consumer.as_ref().is_some_and(GroupConsumer::rebalance_wanted)
    }

    async fn rebalance(&mut self) -> Result<(), StreamsError> {
        // Partitions may come back with offsets another member committed.
        self.committed.clear();
        if let Some(consumer) = self.consumer.as_mut() {
            consumer.rebalance().await?;
        }
        Ok(())
    }

    async fn send(&mut self, records: Vec<OutRecord>) -> Result<(), StreamsError> {
        self.ensure_transaction()?;
        for record in records {
            let delivery = self
                .producer
                .send_record(ProducerRecord {
                    topic: &record.topic,
                    partition: record.partition,
                    timestamp: Some(record.timestamp),
                    key: record.key,
                    value: record.value,
                    headers: record.headers,
                })
                .await?;
            self.in_flight.push((record.topic, delivery));
            if self.in_flight.len() >= REAP_AT {
                self.reap();
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<Reached, StreamsError> {
        self.producer.flush().await?;
        for (topic, delivery) in std::mem::take(&mut self.in_flight) {
            let outcome = delivery.await;
            self.settle(topic, outcome);
        }
        match self.failure.take() {
            Some(error) => Err(error.into()),
            None => Ok(std::mem::take(&mut self.reached)),
        }
    }

    async fn commit(&mut self, offsets: &[(String, i32, i64)]) -> Result<(), StreamsError> {
        let consumer = self.consumer.as_mut().ok_or_else(|| StreamsError::Config("commit before subscribe".into()))?;
        if !self.exactly_once {
            return consumer.commit_offsets(offsets).await.map_err(|e| StreamsError::Commit { message: e.to_string() });
        }
        let moved: Vec<(String, i32, i64)> =
            offsets.iter().filter(|(t, p, o)| self.committed.get(&(t.clone(), *p)) != Some(o)).cloned().collect();
        if moved.is_empty() && !self.in_transaction {
            return Ok(());
        }
        let group = consumer.group_metadata();
        self.ensure_transaction()?;
        let committed = async {
            self.producer.send_offsets_to_transaction(&moved, &group).await?;
            self.producer.commit_transaction().await
        }
        .await;
        match committed {
            Ok(()) => {
                self.in_transaction = false;
                self.committed.extend(moved.into_iter().map(|(t, p, o)| ((t, p), o)));
                Ok(())
            }
            Err(error) => {
                // A member the group has replaced, or a producer fenced: what this
                // transaction holds must never be seen, and the tasks start again from
                // the committed offsets after a rejoin.
                if let Some(consumer) = &self.consumer {
                    consumer.request_rejoin();
                }
                self.committed.clear();
                self.abort().await;
                Err(StreamsError::Commit { message: error.to_string() })
            }
        }
    }

    async fn bounds(&mut self, topic: &str, partition: i32) -> Result<(i64, i64), StreamsError> {
        let tp = [(topic.to_string(), partition)];
        let start = self.list_offsets(&tp, -2).await?[&tp[0]];
        let end = self.list_offsets(&tp, -1).await?[&tp[0]];
        Ok((start, end))
    }

    async fn read_range(
        &self,
        topic: &str,
        partition: i32,
        from: i64,
        end: i64,
        apply: &mut dyn FnMut(ConsumerRecord),
    ) -> Result<(), StreamsError> {
        if from >= end {
            return Ok(());
        }
        let mut consumer = Consumer::connect(self.consumer_config("restore-consumer")).await?;
        consumer.assign([(topic.to_string(), partition)]);
        consumer.seek(topic, partition, from);
        while consumer.position(topic, partition).unwrap_or(from) < end {
            for record in consumer.poll().await? {
                if record.offset < end {
                    apply(record);
                }
            }
        }
        Ok(())
    }

    async fn end_offsets(&mut self, partitions: &[(String, i32)]) -> Result<HashMap<(String, i32), i64>, StreamsError> {
        self.list_offsets(partitions, -1).await
    }

    async fn close(mut self) -> Result<(), StreamsError> {
        // A graceful stop has committed; after a failure the open transaction is aborted.
        self.abort().await;
        self.flush().await?;
        if let Some(consumer) = self.consumer.take() {
            consumer.close().await?;
        }
        Ok(())
    }
}

fn consumer_config(
    bootstrap: &str,
    client_id: &str,
    poll_wait: Duration,
    isolation_level: IsolationLevel,
    suffix: &str,
) -> ConsumerConfig {
    ConsumerConfig {
        isolation_level,
        bootstrap: bootstrap.to_string(),
        client_id: format!("{client_id}-{suffix}"),
        fetch_max_wait: poll_wait,
        // Kafka Streams' auto.offset.reset.
        auto_offset_reset: OffsetReset::Earliest,
        ..ConsumerConfig::default()
    }
}
