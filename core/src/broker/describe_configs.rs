//! DescribeConfigs: every config of a topic (or broker) with its value, source and type,
//! defaults included, because clients and tools expect the whole set.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::{Broker, since, str_bytes};
use crate::log::{LOG_CONFIG_NAMES, LogConfig};

/// Kafka's resource types.
pub(super) const TOPIC: i8 = 2;
pub(super) const BROKER: i8 = 4;

/// Kafka's config sources.
const TOPIC_CONFIG: i8 = 1;
const STATIC_BROKER_CONFIG: i8 = 4;
const DEFAULT_CONFIG: i8 = 5;

/// Kafka's config types, for the topic configs this broker has.
fn config_type(name: &str) -> i8 {
    const INT: i8 = 3;
    const LONG: i8 = 5;
    const DOUBLE: i8 = 6;
    const LIST: i8 = 7;
    match name {
        "cleanup.policy" => LIST,
        "min.cleanable.dirty.ratio" => DOUBLE,
        "segment.bytes" | "segment.index.bytes" | "index.interval.bytes" | "max.message.bytes" => INT,
        _ => LONG,
    }
}

pub(super) fn handle(broker: &Broker, request: &DescribeConfigsRequest, version: i16) -> DescribeConfigsResponse {
    let results = request
        .resources
        .iter()
        .map(|resource| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let wanted = |name: &str| {
                resource.configuration_keys.as_ref().is_none_or(|keys| keys.iter().any(|k| k.as_str() == name))
            };
            let entries: Vec<(String, String, i8, i8)> = match resource.resource_type {
                TOPIC => {
                    let Some(topic) = broker.logs.topic(&resource.resource_name) else {
                        return result.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    let defaults = &broker.config.topic_defaults;
                    let effective = LogConfig::merged(defaults, &topic.config).unwrap_or_default();
                    LOG_CONFIG_NAMES
                        .iter()
                        .filter(|name| wanted(name))
                        .map(|name| {
                            let source = if topic.config.contains_key(*name) {
                                TOPIC_CONFIG
                            } else if defaults.contains_key(*name) {
                                STATIC_BROKER_CONFIG
                            } else {
                                DEFAULT_CONFIG
                            };
                            (name.to_string(), effective.get(name).unwrap_or_default(), source, config_type(name))
                        })
                        .collect()
                }
                BROKER => {
                    let c = &broker.config;
                    [
                        ("num.partitions", c.num_partitions.to_string(), 3),
                        ("auto.create.topics.enable", c.auto_create_topics.to_string(), 1),
                        ("socket.request.max.bytes", c.socket_request_max_bytes.to_string(), 3),
                        ("max.connections", c.max_connections.to_string(), 3),
                        ("log.retention.check.interval.ms", c.retention_check_interval_ms.to_string(), 5),
                    ]
                    .into_iter()
                    .filter(|(name, _, _)| wanted(name))
                    .map(|(name, value, kind)| (name.to_string(), value, STATIC_BROKER_CONFIG, kind))
                    .collect()
                }
                _ => return result.with_error_code(ResponseError::InvalidRequest.code()),
            };
            let configs = entries
                .into_iter()
                .map(|(name, value, source, kind)| {
                    DescribeConfigsResourceResult::default()
                        .with_name(str_bytes(name))
                        .with_value(Some(str_bytes(value)))
                        .with_read_only(resource.resource_type == BROKER)
                        .with_config_source(source)
                        .with_config_type(since(version, 3, kind, 0))
                })
                .collect();
            result.with_configs(configs)
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}
