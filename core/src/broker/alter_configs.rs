//! AlterConfigs (replace a topic's overrides) and IncrementalAlterConfigs (set, delete,
//! append to or subtract from single configs). Broker configs are static: refused.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as IncrementalResult;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};

use super::describe_configs::TOPIC;
use super::{Broker, str_bytes};

/// Applies (or, with `validate_only`, checks) a topic's new overrides: `(code, message)`.
async fn apply(
    broker: &Broker,
    topic: &str,
    overrides: BTreeMap<String, String>,
    validate_only: bool,
) -> (i16, Option<String>) {
    match broker.alter_topic_config(topic, overrides, validate_only).await {
        Ok(()) => (0, None),
        Err(error) => (error.code, Some(error.message)),
    }
}

pub(super) async fn handle(broker: &Broker, request: &AlterConfigsRequest) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in &request.resources {
        let (code, message) = if resource.resource_type != TOPIC {
            (ResponseError::InvalidRequest.code(), Some("only topic configs can be altered".to_string()))
        } else {
            let overrides = resource
                .configs
                .iter()
                .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
                .collect();
            apply(broker, &resource.resource_name, overrides, request.validate_only).await
        };
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone())
                .with_error_code(code)
                .with_error_message(message.map(str_bytes)),
        );
    }
    AlterConfigsResponse::default().with_responses(responses)
}

/// Kafka's incremental operations.
const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

pub(super) async fn handle_incremental(
    broker: &Broker,
    request: &IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in &request.resources {
        {
            let (code, message) = if resource.resource_type != TOPIC {
                (ResponseError::InvalidRequest.code(), Some("only topic configs can be altered".to_string()))
            } else if let Some(current) = broker.topic_overrides(&resource.resource_name) {
                let mut overrides = current;
                let mut invalid = None;
                for config in &resource.configs {
                    let name = config.name.to_string();
                    let value = config.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
                    match config.config_operation {
                        SET => {
                            overrides.insert(name, value);
                        }
                        DELETE => {
                            overrides.remove(&name);
                        }
                        APPEND | SUBTRACT if name == "cleanup.policy" => {
                            let current = overrides.get(&name).cloned().unwrap_or_else(|| "delete".to_string());
                            let mut items: Vec<String> = current.split(',').map(|s| s.trim().to_string()).collect();
                            for item in value.split(',').map(str::trim) {
                                if config.config_operation == APPEND {
                                    if !items.iter().any(|i| i == item) {
                                        items.push(item.to_string());
                                    }
                                } else {
                                    items.retain(|i| i != item);
                                }
                            }
                            overrides.insert(name, items.join(","));
                        }
                        _ => invalid = Some(format!("operation {} is not valid for {name}", config.config_operation)),
                    }
                }
                match invalid {
                    Some(message) => (ResponseError::InvalidConfig.code(), Some(message)),
                    None => apply(broker, &resource.resource_name, overrides, request.validate_only).await,
                }
            } else {
                (ResponseError::UnknownTopicOrPartition.code(), None)
            };
            responses.push(
                IncrementalResult::default()
                    .with_resource_type(resource.resource_type)
                    .with_resource_name(resource.resource_name.clone())
                    .with_error_code(code)
                    .with_error_message(message.map(str_bytes)),
            );
        }
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
