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
    /// Records sent and not yet known to be acknowledged.
    in_flight: Vec<(Arc<str>, DeliveryFuture)>,
}

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
            linger: Duration::from_millis(5),
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
        Ok(Self {
            bootstrap: bootstrap.to_string(),
            client_id,
            group,
            poll_wait,
            admin,
            producer,
            consumer: None,
            in_flight: Vec::new(),
        })
    }

    fn consumer_config(&self, suffix: &str) -> ConsumerConfig {
        ConsumerConfig {
            bootstrap: self.bootstrap.clone(),
            client_id: format!("{}-{suffix}", self.client_id),
            fetch_max_wait: self.poll_wait,
            auto_offset_reset: OffsetReset::Earliest,
            ..ConsumerConfig::default()
        }
    }

    async fn list_offsets(
        &self,
        topic: &str,
        partitions: i32,
        timestamp: i64,
    ) -> Result<Vec<(i32, i64)>, StreamsError> {
        Ok(self.admin.list_offsets(topic, partitions, timestamp).await?)
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
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<Reached, StreamsError> {
        self.producer.flush().await?;
        let mut reached = Reached::new();
        let mut failure = None;
        for (topic, delivery) in self.in_flight.drain(..) {
            match delivery.await {
                Ok(meta) => {
                    let next = reached.entry((topic, meta.partition)).or_insert(0);
                    *next = (*next).max(meta.offset + 1);
                }
                Err(error) => {
                    failure.get_or_insert(error);
                }
            }
        }
        match failure {
            Some(error) => Err(error.into()),
            None => Ok(reached),
        }
    }

    async fn commit(&mut self, offsets: &[(String, i32, i64)]) -> Result<(), StreamsError> {
        let consumer = self.consumer.as_mut().ok_or_else(|| StreamsError::Config("commit before subscribe".into()))?;
        consumer.commit_offsets(offsets).await.map_err(|e| StreamsError::Commit { message: e.to_string() })
    }

    async fn bounds(&self, topic: &str, partition: i32) -> Result<(i64, i64), StreamsError> {
        let find = |offsets: Vec<(i32, i64)>| offsets.into_iter().find(|(p, _)| *p == partition).map_or(0, |(_, o)| o);
        let start = find(self.list_offsets(topic, partition + 1, -2).await?);
        let end = find(self.list_offsets(topic, partition + 1, -1).await?);
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

    async fn end_offsets(&self, partitions: &[(String, i32)]) -> Result<HashMap<(String, i32), i64>, StreamsError> {
        let mut by_topic: BTreeMap<&str, i32> = BTreeMap::new();
        for (topic, partition) in partitions {
            let count = by_topic.entry(topic).or_insert(0);
            *count = (*count).max(partition + 1);
        }
        let mut out = HashMap::new();
        for (topic, count) in by_topic {
            for (partition, offset) in self.list_offsets(topic, count, -1).await? {
                out.insert((topic.to_string(), partition), offset);
            }
        }
        Ok(out)
    }

    async fn close(mut self) -> Result<(), StreamsError> {
        self.flush().await?;
        if let Some(consumer) = self.consumer.take() {
            consumer.close().await?;
        }
        Ok(())
    }
}
