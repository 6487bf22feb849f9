//! The dead-letter topic: where a sink sends the records it skips under
//! `errors.tolerance=all`, exactly as they were read, so none is lost and each can be
//! replayed once fixed. With `errors.deadletterqueue.context.headers.enable` each carries
//! Kafka Connect's `__connect.errors.*` headers saying where it came from and why it failed.

use std::collections::BTreeMap;

use bytes::Bytes;
use headwater_core::client::{Admin, ClientError, ConsumerRecord, DeliveryFuture, Producer, ProducerRecord};

/// Where in the pipeline a record failed: Kafka Connect's stage names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    KeyConverter,
    ValueConverter,
    Transformation,
    TaskPut,
    TaskPoll,
    KafkaProduce,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::KeyConverter => "KEY_CONVERTER",
            Stage::ValueConverter => "VALUE_CONVERTER",
            Stage::Transformation => "TRANSFORMATION",
            Stage::TaskPut => "TASK_PUT",
            Stage::TaskPoll => "TASK_POLL",
            Stage::KafkaProduce => "KAFKA_PRODUCE",
        }
    }
}

/// A sink task's dead-letter topic.
#[derive(Debug)]
pub struct DeadLetterQueue {
    topic: String,
    context_headers: bool,
    connector: String,
    task: u32,
    /// Sends not yet known to be acknowledged; settled before offsets are committed, so a
    /// skipped record is in the topic before its offset is.
    pending: Vec<DeliveryFuture>,
}

impl DeadLetterQueue {
    /// The queue in `topic`, created (one partition) when missing, as Kafka Connect does.
    ///
    /// # Errors
    /// A broker refusing to create the topic.
    pub async fn open(
        admin: &Admin,
        topic: &str,
        context_headers: bool,
        connector: &str,
        task: u32,
    ) -> Result<Self, ClientError> {
        if let Err(ClientError::UnknownTopic { .. }) = admin.topics(Some(&[topic.to_string()])).await
            && let Err(error) = admin.create_topic(topic, 1, &BTreeMap::new()).await
            && admin.topics(Some(&[topic.to_string()])).await.is_err()
        {
            return Err(error);
        }
        Ok(Self {
            topic: topic.to_string(),
            context_headers,
            connector: connector.to_string(),
            task,
            pending: Vec::new(),
        })
    }

    /// Sends a record as it was read, with the failure in headers when asked to.
    ///
    /// # Errors
    /// The producer refusing the record.
    pub async fn report(
        &mut self,
        producer: &Producer,
        record: &ConsumerRecord,
        stage: Stage,
        error: &(dyn std::error::Error + Send + Sync + 'static),
    ) -> Result<(), ClientError> {
        let mut headers = record.headers.clone();
        if self.context_headers {
            let mut message = error.to_string();
            let mut cause = error.source();
            while let Some(inner) = cause {
                message.push_str(": ");
                message.push_str(&inner.to_string());
                cause = inner.source();
            }
            let text = |s: String| Some(Bytes::from(s));
            headers.extend([
                ("__connect.errors.topic".to_string(), text(record.topic.to_string())),
                ("__connect.errors.partition".to_string(), text(record.partition.to_string())),
                ("__connect.errors.offset".to_string(), text(record.offset.to_string())),
                ("__connect.errors.connector.name".to_string(), text(self.connector.clone())),
                ("__connect.errors.task.id".to_string(), text(self.task.to_string())),
                ("__connect.errors.stage".to_string(), text(stage.name().to_string())),
                ("__connect.errors.exception.message".to_string(), text(message)),
            ]);
        }
        let delivery = producer
            .send_record(ProducerRecord {
                topic: &self.topic,
                partition: None,
                timestamp: Some(record.timestamp),
                key: record.key.clone(),
                value: record.value.clone(),
                headers,
            })
            .await?;
        self.pending.push(delivery);
        Ok(())
    }

    /// Waits until every reported record is acknowledged (after the producer's flush).
    ///
    /// # Errors
    /// The first failed send.
    pub async fn settle(&mut self) -> Result<(), ClientError> {
        for delivery in self.pending.drain(..) {
            delivery.await?;
        }
        Ok(())
    }
}
