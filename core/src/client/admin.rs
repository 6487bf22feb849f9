//! The admin client: topics and their configs.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::{
    CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest, IncrementalAlterConfigsRequest, MetadataRequest,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::{ClientError, Connection};

/// Kafka's resource type for topics.
const TOPIC: i8 = 2;

/// A topic as Metadata and DescribeConfigs describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicInfo {
    pub name: String,
    pub partitions: Vec<PartitionInfo>,
    pub internal: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PartitionInfo {
    pub partition: i32,
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// A config and where its value comes from (Kafka's config source names).
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigValue {
    pub value: Option<String>,
    pub source: &'static str,
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn check(api: &'static str, code: i16, message: Option<&StrBytes>) -> Result<(), ClientError> {
    match (code, message) {
        (0, _) => Ok(()),
        (_, Some(message)) if !message.is_empty() => Err(ClientError::InvalidRecord { message: message.to_string() }),
        (code, _) => Err(ClientError::Broker { api, code }),
    }
}

/// Topic administration against one broker.
#[derive(Debug, Clone)]
pub struct Admin {
    connection: Arc<Connection>,
}

impl Admin {
    /// # Errors
    /// A connection failure.
    pub async fn connect(bootstrap: &str) -> Result<Self, ClientError> {
        Ok(Self { connection: Connection::connect(bootstrap, "headwater-admin").await? })
    }

    /// Creates a topic with config overrides (Kafka's names).
    ///
    /// # Errors
    /// The broker's refusal (topic exists, invalid name or config), with its message.
    pub async fn create_topic(
        &self,
        topic: &str,
        partitions: i32,
        configs: &BTreeMap<String, String>,
    ) -> Result<(), ClientError> {
        let configs = configs
            .iter()
            .map(|(k, v)| {
                CreatableTopicConfig::default()
                    .with_name(StrBytes::from_string(k.clone()))
                    .with_value(Some(StrBytes::from_string(v.clone())))
            })
            .collect();
        let request = CreateTopicsRequest::default()
            .with_topics(vec![
                CreatableTopic::default()
                    .with_name(name(topic))
                    .with_num_partitions(partitions)
                    .with_replication_factor(-1)
                    .with_configs(configs),
            ])
            .with_timeout_ms(30_000);
        let response = self.connection.send(request).await?;
        let result =
            response.topics.first().ok_or(ClientError::Decode { api: "CreateTopics", message: "no result".into() })?;
        check("CreateTopics", result.error_code, result.error_message.as_ref())
    }

    /// Deletes a topic.
    ///
    /// # Errors
    /// The broker's refusal (unknown topic).
    pub async fn delete_topic(&self, topic: &str) -> Result<(), ClientError> {
        let request = DeleteTopicsRequest::default()
            .with_topic_names(vec![name(topic)])
            .with_topics(vec![DeleteTopicState::default().with_name(Some(name(topic)))])
            .with_timeout_ms(30_000);
        let response = self.connection.send(request).await?;
        let result = response
            .responses
            .first()
            .ok_or(ClientError::Decode { api: "DeleteTopics", message: "no result".into() })?;
        check("DeleteTopics", result.error_code, result.error_message.as_ref())
    }

    /// Every topic (`None`) or the named ones, with partitions, leaders and replicas.
    ///
    /// # Errors
    /// [`ClientError::UnknownTopic`] for a named topic that does not exist.
    pub async fn topics(&self, names: Option<&[String]>) -> Result<Vec<TopicInfo>, ClientError> {
        use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
        let request = MetadataRequest::default().with_allow_auto_topic_creation(false).with_topics(
            names.map(|names| names.iter().map(|n| MetadataRequestTopic::default().with_name(Some(name(n)))).collect()),
        );
        let response = self.connection.send(request).await?;
        let mut topics = Vec::new();
        for topic in response.topics {
            let topic_name = topic.name.map(|n| n.to_string()).unwrap_or_default();
            if topic.error_code != 0 {
                return Err(ClientError::UnknownTopic { topic: topic_name });
            }
            let mut partitions: Vec<PartitionInfo> = topic
                .partitions
                .into_iter()
                .map(|p| PartitionInfo {
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            topics.push(TopicInfo { name: topic_name, partitions, internal: topic.is_internal });
        }
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    /// Every config of a topic, defaults included, with its source.
    ///
    /// # Errors
    /// The broker's refusal (unknown topic).
    pub async fn topic_configs(&self, topic: &str) -> Result<BTreeMap<String, ConfigValue>, ClientError> {
        let request = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(TOPIC)
                .with_resource_name(StrBytes::from_string(topic.to_string()))
                .with_configuration_keys(None),
        ]);
        let response = self.connection.send(request).await?;
        let result = response
            .results
            .into_iter()
            .next()
            .ok_or(ClientError::Decode { api: "DescribeConfigs", message: "no result".into() })?;
        check("DescribeConfigs", result.error_code, result.error_message.as_ref())?;
        Ok(result
            .configs
            .into_iter()
            .map(|c| {
                let source = match c.config_source {
                    1 => "topic",
                    4 => "broker",
                    5 => "default",
                    _ => "other",
                };
                (c.name.to_string(), ConfigValue { value: c.value.map(|v| v.to_string()), source })
            })
            .collect())
    }

    /// Sets (`Some`) or removes (`None`) topic config overrides.
    ///
    /// # Errors
    /// The broker's refusal (unknown topic, invalid value), with its message.
    pub async fn alter_topic_configs(
        &self,
        topic: &str,
        changes: &BTreeMap<String, Option<String>>,
    ) -> Result<(), ClientError> {
        let configs = changes
            .iter()
            .map(|(k, v)| {
                AlterableConfig::default()
                    .with_name(StrBytes::from_string(k.clone()))
                    .with_config_operation(if v.is_some() { 0 } else { 1 })
                    .with_value(v.clone().map(StrBytes::from_string))
            })
            .collect();
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(TOPIC)
                .with_resource_name(StrBytes::from_string(topic.to_string()))
                .with_configs(configs),
        ]);
        let response = self.connection.send(request).await?;
        let result = response
            .responses
            .first()
            .ok_or(ClientError::Decode { api: "IncrementalAlterConfigs", message: "no result".into() })?;
        check("IncrementalAlterConfigs", result.error_code, result.error_message.as_ref())
    }
}
