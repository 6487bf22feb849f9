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

/// A consumer group as ListGroups / DescribeGroups show it.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupInfo {
    pub group_id: String,
    pub state: String,
    pub protocol: String,
    pub members: Vec<GroupMemberInfo>,
}

/// `(member id, client id, assigned partitions)`.
pub type GroupMemberInfo = (String, String, Vec<(String, i32)>);

/// Topic and group administration against one broker.
#[derive(Debug, Clone)]
pub struct Admin {
    connection: Arc<Connection>,
}

impl Admin {
    /// # Errors
    /// A connection failure.
    pub async fn connect(bootstrap: &str) -> Result<Self, ClientError> {
        // Any broker of a comma-separated list will do: every one answers admin requests.
        Ok(Self { connection: super::ClusterView::new(bootstrap, "headwater-admin").any_connection().await? })
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
        self.create_replicated_topic(topic, partitions, -1, configs).await
    }

    /// Creates a topic with `replication_factor` replicas per partition (-1: the broker's
    /// `default.replication.factor`).
    ///
    /// # Errors
    /// As [`Self::create_topic`].
    pub async fn create_replicated_topic(
        &self,
        topic: &str,
        partitions: i32,
        replication_factor: i16,
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
                    .with_replication_factor(replication_factor)
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

    /// Grows `topic` to `total` partitions (Kafka never shrinks one).
    ///
    /// # Errors
    /// The broker's refusal (unknown topic, a count not larger than today's).
    pub async fn create_partitions(&self, topic: &str, total: i32) -> Result<(), ClientError> {
        use kafka_protocol::messages::CreatePartitionsRequest;
        use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
        let request = CreatePartitionsRequest::default()
            .with_topics(vec![CreatePartitionsTopic::default().with_name(name(topic)).with_count(total)])
            .with_timeout_ms(30_000);
        let response = self.connection.send(request).await?;
        let result = response
            .results
            .first()
            .ok_or(ClientError::Decode { api: "CreatePartitions", message: "no result".into() })?;
        check("CreatePartitions", result.error_code, result.error_message.as_ref())
    }

    /// Moves leadership of `topic`'s partitions (or every topic's, with `None`) back to
    /// their preferred replicas. Returns the partitions that moved; partitions already led
    /// by their preferred replica, or whose preferred replica cannot lead now, are skipped.
    ///
    /// # Errors
    /// A connection error, or the broker refusing the request.
    pub async fn elect_preferred_leaders(&self, topic: Option<&str>) -> Result<Vec<(String, i32)>, ClientError> {
        use kafka_protocol::error::ResponseError;
        use kafka_protocol::messages::ElectLeadersRequest;
        use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
        let topic_partitions = match topic {
            None => None,
            Some(topic) => {
                let info = self.topics(Some(&[topic.to_string()])).await?;
                let partitions =
                    info.first().map(|t| t.partitions.iter().map(|p| p.partition).collect()).unwrap_or_default();
                Some(vec![TopicPartitions::default().with_topic(name(topic)).with_partitions(partitions)])
            }
        };
        let request = ElectLeadersRequest::default()
            .with_election_type(0)
            .with_topic_partitions(topic_partitions)
            .with_timeout_ms(30_000);
        let response = self.connection.send(request).await?;
        check("ElectLeaders", response.error_code, None)?;
        let mut moved = Vec::new();
        for result in response.replica_election_results {
            for partition in result.partition_result {
                let skipped =
                    [ResponseError::ElectionNotNeeded.code(), ResponseError::PreferredLeaderNotAvailable.code()];
                if partition.error_code == 0 {
                    moved.push((result.topic.to_string(), partition.partition_id));
                } else if !skipped.contains(&partition.error_code) {
                    check("ElectLeaders", partition.error_code, partition.error_message.as_ref())?;
                }
            }
        }
        Ok(moved)
    }

    /// Starts moving `topic`-`partition` to `replicas` (the first is the preferred leader).
    /// The move completes once the new replicas have caught up.
    ///
    /// # Errors
    /// The broker's refusal (unknown topic or broker, a broker named twice).
    pub async fn reassign_partition(&self, topic: &str, partition: i32, replicas: &[i32]) -> Result<(), ClientError> {
        use kafka_protocol::messages::alter_partition_reassignments_request::{
            ReassignablePartition, ReassignableTopic,
        };
        use kafka_protocol::messages::{AlterPartitionReassignmentsRequest, BrokerId};
        let request = AlterPartitionReassignmentsRequest::default().with_timeout_ms(30_000).with_topics(vec![
            ReassignableTopic::default().with_name(name(topic)).with_partitions(vec![
                ReassignablePartition::default()
                    .with_partition_index(partition)
                    .with_replicas(Some(replicas.iter().map(|r| BrokerId(*r)).collect())),
            ]),
        ]);
        let response = self.connection.send(request).await?;
        check("AlterPartitionReassignments", response.error_code, response.error_message.as_ref())?;
        for result in response.responses.iter().flat_map(|t| &t.partitions) {
            check("AlterPartitionReassignments", result.error_code, result.error_message.as_ref())?;
        }
        Ok(())
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

    /// Every consumer group, with its state.
    ///
    /// # Errors
    /// A connection failure or a broker error.
    pub async fn groups(&self) -> Result<Vec<(String, String)>, ClientError> {
        let response = self.connection.send(kafka_protocol::messages::ListGroupsRequest::default()).await?;
        check("ListGroups", response.error_code, None)?;
        let mut groups: Vec<(String, String)> =
            response.groups.into_iter().map(|g| (g.group_id.to_string(), g.group_state.to_string())).collect();
        groups.sort();
        Ok(groups)
    }

    /// A group's state, protocol and members with their assignments.
    ///
    /// # Errors
    /// A connection failure or a broker error.
    pub async fn describe_group(&self, group_id: &str) -> Result<GroupInfo, ClientError> {
        use kafka_protocol::messages::{ConsumerProtocolAssignment, DescribeGroupsRequest, GroupId};
        use kafka_protocol::protocol::Decodable;
        let request =
            DescribeGroupsRequest::default().with_groups(vec![GroupId(StrBytes::from_string(group_id.to_string()))]);
        let response = self.connection.send(request).await?;
        let group = response
            .groups
            .into_iter()
            .next()
            .ok_or(ClientError::Decode { api: "DescribeGroups", message: "no group".into() })?;
        check("DescribeGroups", group.error_code, group.error_message.as_ref())?;
        let members = group
            .members
            .into_iter()
            .map(|m| {
                let mut assignment = m.member_assignment.clone();
                let partitions = if assignment.len() >= 2 {
                    let version = bytes::Buf::get_i16(&mut assignment).clamp(0, 3);
                    ConsumerProtocolAssignment::decode(&mut assignment, version)
                        .map(|a| {
                            a.assigned_partitions
                                .iter()
                                .flat_map(|tp| tp.partitions.iter().map(move |p| (tp.topic.to_string(), *p)))
                                .collect()
                        })
                        .unwrap_or_default()
                } else {
                    Vec::new()
                };
                (m.member_id.to_string(), m.client_id.to_string(), partitions)
            })
            .collect();
        Ok(GroupInfo {
            group_id: group_id.to_string(),
            state: group.group_state.to_string(),
            protocol: group.protocol_data.to_string(),
            members,
        })
    }

    /// Committed offsets of a group, per partition.
    ///
    /// # Errors
    /// A connection failure or a broker error.
    pub async fn committed_offsets(
        &self,
        group_id: &str,
        topic: &str,
        partitions: i32,
    ) -> Result<Vec<(i32, i64)>, ClientError> {
        use kafka_protocol::messages::offset_fetch_request::{
            OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
        };
        use kafka_protocol::messages::{GroupId, OffsetFetchRequest};
        let group = GroupId(StrBytes::from_string(group_id.to_string()));
        let indexes: Vec<i32> = (0..partitions).collect();
        let batched = self.connection.version(kafka_protocol::messages::ApiKey::OffsetFetch).is_some_and(|v| v >= 8);
        let mut offsets = Vec::new();
        if batched {
            let request = OffsetFetchRequest::default().with_groups(vec![
                OffsetFetchRequestGroup::default().with_group_id(group).with_member_epoch(-1).with_topics(Some(vec![
                    OffsetFetchRequestTopics::default().with_name(name(topic)).with_partition_indexes(indexes),
                ])),
            ]);
            let response = self.connection.send(request).await?;
            for topic in response.groups.into_iter().flat_map(|g| g.topics) {
                offsets.extend(topic.partitions.iter().map(|p| (p.partition_index, p.committed_offset)));
            }
        } else {
            let request = OffsetFetchRequest::default().with_group_id(group).with_topics(Some(vec![
                OffsetFetchRequestTopic::default().with_name(name(topic)).with_partition_indexes(indexes),
            ]));
            let response = self.connection.send(request).await?;
            for topic in response.topics {
                offsets.extend(topic.partitions.iter().map(|p| (p.partition_index, p.committed_offset)));
            }
        }
        offsets.sort();
        Ok(offsets)
    }

    /// The earliest (`-2`) or latest (`-1`) offset of each partition.
    ///
    /// # Errors
    /// A connection failure or a broker error.
    pub async fn list_offsets(
        &self,
        topic: &str,
        partitions: i32,
        timestamp: i64,
    ) -> Result<Vec<(i32, i64)>, ClientError> {
        use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
        use kafka_protocol::messages::{BrokerId, ListOffsetsRequest};
        let request = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
            ListOffsetsTopic::default().with_name(name(topic)).with_partitions(
                (0..partitions)
                    .map(|p| ListOffsetsPartition::default().with_partition_index(p).with_timestamp(timestamp))
                    .collect(),
            ),
        ]);
        let response = self.connection.send(request).await?;
        let mut offsets = Vec::new();
        for t in response.topics {
            for p in t.partitions {
                check("ListOffsets", p.error_code, None)?;
                offsets.push((p.partition_index, p.offset));
            }
        }
        offsets.sort();
        Ok(offsets)
    }

    /// Sets a group's committed offsets (the group must have no members, as in Kafka's
    /// `--reset-offsets`).
    ///
    /// # Errors
    /// The broker's refusal (a group with live members: ILLEGAL_GENERATION).
    pub async fn reset_offsets(&self, group_id: &str, topic: &str, offsets: &[(i32, i64)]) -> Result<(), ClientError> {
        use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
        use kafka_protocol::messages::{GroupId, OffsetCommitRequest};
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group_id.to_string())))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![
                OffsetCommitRequestTopic::default().with_name(name(topic)).with_partitions(
                    offsets
                        .iter()
                        .map(|(p, o)| {
                            OffsetCommitRequestPartition::default().with_partition_index(*p).with_committed_offset(*o)
                        })
                        .collect(),
                ),
            ]);
        let response = self.connection.send(request).await?;
        for p in response.topics.iter().flat_map(|t| t.partitions.iter()) {
            check("OffsetCommit", p.error_code, None)?;
        }
        Ok(())
    }
}
