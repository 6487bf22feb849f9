//! A stream thread against a broker: a group member (the application id is the group)
//! that holds its rebalances until it has committed, an idempotent producer, and an
//! admin client for internal topics and offsets.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use headwater_core::client::assignor::Assignor;
use headwater_core::client::{
    Admin, Consumer, ConsumerConfig, ConsumerRecord, DeliveryFuture, GroupConfig, GroupConsumer, OffsetReset, Producer,
    ProducerConfig, ProducerRecord,
};

use super::OutRecord;
use super::backend::{Backend, Reached};
use crate::error::StreamsError;
use crate::topology::InternalTopic;

pub(crate) struct BrokerBackend {
    bootstrap: String,
    client_id: String,
    group: GroupConfig,
    poll_wait: Duration,
    admin: Admin,
    producer: Producer,
    consumer: Option<GroupConsumer>,
    /// Asks partition leaders for offsets (restore bounds, lag).
    offsets: Consumer,
    /// Records sent and not yet known to be acknowledged.
    in_flight: Vec<(Arc<str>, DeliveryFuture)>,
    /// What acknowledged records reached since the last flush, and the first failure.
    reached: Reached,
    failure: Option<headwater_core::client::ClientError>,
}

/// Past this many records in flight, acknowledged ones are settled early, so memory
/// follows what is unacknowledged, not the commit interval times the rate.
const REAP_AT: usize = 1 << 16;

impl BrokerBackend {
    pub(crate) async fn connect(
        bootstrap: &str,
        application_id: &str,
        thread: usize,
        poll_wait: Duration,
        session_timeout: Duration,
        heartbeat_interval: Duration,
    ) -> Result<Self, StreamsError> {
        let client_id = format!("{application_id}-StreamThread-{}", thread + 1);
        let admin = Admin::connect(bootstrap).await?;
        let producer = Producer::connect(ProducerConfig {
            bootstrap: bootstrap.to_string(),
            client_id: format!("{client_id}-producer"),
            acks: -1,
            // Kafka Streams' producer lingers 100 ms; a commit flushes anyway, so a longer
            // linger costs no latency at commit and makes larger batches.
            linger: Duration::from_millis(20),
            batch_bytes: 512 << 10,
            idempotent: true,
            ..ProducerConfig::default()
        })
        .await?;
        let group = GroupConfig {
            session_timeout,
            heartbeat_interval,
            // Range keeps partition p of every co-partitioned topic on one member: one task.
            assignors: vec![Assignor::Range],
            auto_commit: None,
            hold_rebalances: true,
            ..GroupConfig::new(application_id)
        };
        let offsets = Consumer::connect(consumer_config(bootstrap, &client_id, poll_wait, "offsets")).await?;
        Ok(Self {
            bootstrap: bootstrap.to_string(),
            client_id,
            group,
            poll_wait,
            admin,
            producer,
            consumer: None,
            offsets,
            in_flight: Vec::new(),
            reached: Reached::new(),
            failure: None,
        })
    }

    fn consumer_config(&self, suffix: &str) -> ConsumerConfig {
        consumer_config(&self.bootstrap, &self.client_id, self.poll_wait, suffix)
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
        if let Some(consumer) = self.consumer.as_mut() {
            consumer.rebalance().await?;
        }
        Ok(())
    }

    async fn send(&mut self, records: Vec<OutRecord>) -> Result<(), StreamsError> {
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
        consumer.commit_offsets(offsets).await.map_err(|e| StreamsError::Commit { message: e.to_string() })
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
        self.flush().await?;
        if let Some(consumer) = self.consumer.take() {
            consumer.close().await?;
        }
        Ok(())
    }
}

fn consumer_config(bootstrap: &str, client_id: &str, poll_wait: Duration, suffix: &str) -> ConsumerConfig {
    ConsumerConfig {
        bootstrap: bootstrap.to_string(),
        client_id: format!("{client_id}-{suffix}"),
        fetch_max_wait: poll_wait,
        // Kafka Streams' auto.offset.reset.
        auto_offset_reset: OffsetReset::Earliest,
        ..ConsumerConfig::default()
    }
}
