//! Topic changes (create, delete, grow, configure) on one broker or through the
//! controller, behind one face so that the API handlers do not care which.
//!
//! On one broker they go straight to the log manager. In a cluster they are proposed to
//! the controller quorum; once committed, every replica's broker applies them to its own
//! logs from the metadata image, and the answer waits until this broker's image has them,
//! so a client's next request here sees the change.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::error::ResponseError;

use super::{Broker, error_code};
use crate::cluster::{MetadataCommand, MetadataError, MetadataImage};
use crate::log::manager::{PARTITIONS_MAX, validate_topic_name};
use crate::log::{LogConfig, LogError};

/// How long a topic change may wait for the controller quorum.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a topic change failed: Kafka's code and a message for people.
#[derive(Debug, Clone)]
pub(super) struct AdminError {
    pub code: i16,
    pub message: String,
}

impl From<LogError> for AdminError {
    fn from(error: LogError) -> Self {
        Self { code: error_code(&error), message: error.to_string() }
    }
}

impl From<MetadataError> for AdminError {
    fn from(error: MetadataError) -> Self {
        Self { code: error.code(), message: error.to_string() }
    }
}

/// A created topic, as CreateTopics reports it.
pub(super) struct Created {
    pub topic_id: uuid::Uuid,
    pub partitions: i32,
    pub replication_factor: i16,
}

impl Broker {
    /// Every topic's name.
    pub(super) fn topic_names(&self) -> Vec<String> {
        match &self.cluster {
            None => self.logs.topics().into_keys().collect(),
            Some(cluster) => cluster.image().topics.keys().cloned().collect(),
        }
    }

    /// A topic's name from its id.
    pub(super) fn topic_name_by_id(&self, topic_id: uuid::Uuid) -> Option<String> {
        match &self.cluster {
            None => self.logs.topic_name(topic_id),
            Some(cluster) => cluster.image().topics.values().find(|t| t.id == topic_id).map(|t| t.name.clone()),
        }
    }

    /// A topic's config overrides, if it exists.
    pub(super) fn topic_overrides(&self, topic: &str) -> Option<BTreeMap<String, String>> {
        match &self.cluster {
            None => self.logs.topic(topic).map(|t| t.config),
            Some(cluster) => cluster.image().topics.get(topic).map(|t| t.configs.clone()),
        }
    }

    /// Creates a topic (`replication_factor` -1: `default.replication.factor`).
    pub(super) async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Created, AdminError> {
        validate_topic_name(name)?;
        LogConfig::from_overrides(&configs)?;
        if !(1..=PARTITIONS_MAX).contains(&partitions) {
            return Err(LogError::InvalidPartitions {
                topic: name.to_string(),
                reason: format!("must be between 1 and {PARTITIONS_MAX}"),
            }
            .into());
        }
        let Some(cluster) = &self.cluster else {
            if !(replication_factor == -1 || replication_factor == 1) {
                return Err(AdminError {
                    code: ResponseError::InvalidReplicationFactor.code(),
                    message: format!("replication factor {replication_factor} is more than the 1 broker there is"),
                });
            }
            if self.logs.topic(name).is_some() {
                return Err(LogError::TopicAlreadyExists { topic: name.to_string() }.into());
            }
            if !validate_only {
                self.logs.create_topic(name, partitions, configs)?;
            }
            let topic_id = self.logs.topic(name).map(|t| t.topic_id).unwrap_or_default();
            return Ok(Created { topic_id, partitions, replication_factor: 1 });
        };
        let replication_factor =
            if replication_factor == -1 { self.config.default_replication_factor } else { replication_factor };
        if replication_factor < 1 {
            return Err(AdminError {
                code: ResponseError::InvalidReplicationFactor.code(),
                message: format!("replication factor {replication_factor} must be at least 1"),
            });
        }
        let image = cluster.image();
        if image.topics.contains_key(name) {
            return Err(MetadataError::TopicExists(name.to_string()).into());
        }
        let available = image.unfenced_brokers().len();
        if replication_factor as usize > available {
            return Err(MetadataError::InvalidReplicationFactor { wanted: replication_factor as u16, available }.into());
        }
        if validate_only {
            return Ok(Created { topic_id: uuid::Uuid::nil(), partitions, replication_factor });
        }
        let topic_id = uuid::Uuid::new_v4();
        let command = MetadataCommand::CreateTopic {
            name: name.to_string(),
            id: topic_id,
            partitions: partitions as u32,
            replication_factor: replication_factor as u16,
            configs,
        };
        self.propose(command, |image| image.topics.get(name).is_some_and(|t| t.id == topic_id)).await?;
        Ok(Created { topic_id, partitions, replication_factor })
    }

    pub(super) async fn delete_topic(&self, name: &str) -> Result<(), AdminError> {
        let Some(cluster) = &self.cluster else {
            return Ok(self.logs.delete_topic(name)?);
        };
        if !cluster.image().topics.contains_key(name) {
            return Err(MetadataError::UnknownTopic(name.to_string()).into());
        }
        let command = MetadataCommand::DeleteTopic { name: name.to_string() };
        self.propose(command, |image| !image.topics.contains_key(name)).await
    }

    /// Grows `name` to `total` partitions.
    pub(super) async fn create_partitions(
        &self,
        name: &str,
        total: i32,
        validate_only: bool,
    ) -> Result<(), AdminError> {
        let current = match &self.cluster {
            None => self.logs.topic(name).map(|t| t.partitions),
            Some(cluster) => cluster.image().topics.get(name).map(|t| t.partitions.len() as i32),
        };
        let Some(current) = current else {
            return Err(LogError::UnknownTopicOrPartition { topic: name.to_string(), partition: -1 }.into());
        };
        if total <= current || total > PARTITIONS_MAX {
            return Err(LogError::InvalidPartitions {
                topic: name.to_string(),
                reason: format!(
                    "topic has {current} partitions; the new count must be larger and at most {PARTITIONS_MAX}"
                ),
            }
            .into());
        }
        if validate_only {
            return Ok(());
        }
        if self.cluster.is_none() {
            return Ok(self.logs.create_partitions(name, total)?);
        }
        let command = MetadataCommand::CreatePartitions { name: name.to_string(), total: total as u32 };
        self.propose(command, |image| image.topics.get(name).is_some_and(|t| t.partitions.len() as i32 >= total)).await
    }

    /// Replaces a topic's config overrides.
    pub(super) async fn alter_topic_config(
        &self,
        name: &str,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), AdminError> {
        if self.topic_overrides(name).is_none() {
            return Err(LogError::UnknownTopicOrPartition { topic: name.to_string(), partition: -1 }.into());
        }
        LogConfig::from_overrides(&overrides)?;
        if validate_only {
            return Ok(());
        }
        if self.cluster.is_none() {
            return Ok(self.logs.alter_topic_config(name, overrides)?);
        }
        let expected = overrides.clone();
        let command = MetadataCommand::AlterTopicConfigs { name: name.to_string(), configs: overrides };
        self.propose(command, |image| image.topics.get(name).is_some_and(|t| t.configs == expected)).await
    }

    /// Commits `command` and waits until this broker's image shows `applied`.
    async fn propose(
        &self,
        command: MetadataCommand,
        applied: impl Fn(&MetadataImage) -> bool,
    ) -> Result<(), AdminError> {
        let cluster = self.cluster.as_ref().expect("only clusters propose");
        let controller = cluster.controller();
        let unavailable = |message: String| AdminError { code: ResponseError::RequestTimedOut.code(), message };
        match controller.propose(command, PROPOSE_TIMEOUT).await {
            Err(error) => return Err(unavailable(error.to_string())),
            Ok(Err(error)) => return Err(error.into()),
            Ok(Ok(_)) => {}
        }
        let mut image = controller.image();
        match tokio::time::timeout(PROPOSE_TIMEOUT, image.wait_for(|i| applied(i))).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(unavailable("the change committed but this broker has not applied it yet".into())),
        }
    }
}
