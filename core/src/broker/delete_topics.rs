//! DeleteTopics, by name (all versions) or by topic id (version 6).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};

use super::{Broker, error_code, since, str_bytes, topic_name};

pub(super) fn handle(broker: &Broker, request: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
    let wanted: Vec<(Option<String>, uuid::Uuid)> = if version >= 6 {
        request.topics.iter().map(|t| (t.name.as_ref().map(|n| n.to_string()), t.topic_id)).collect()
    } else {
        request.topic_names.iter().map(|n| (Some(n.to_string()), uuid::Uuid::nil())).collect()
    };
    let responses = wanted
        .into_iter()
        .map(|(name, topic_id)| {
            let name = name.or_else(|| broker.logs.topic_name(topic_id));
            let result = DeletableTopicResult::default().with_topic_id(since(version, 6, topic_id, uuid::Uuid::nil()));
            let Some(name) = name else {
                return result.with_error_code(ResponseError::UnknownTopicId.code());
            };
            let result = result.with_name(Some(topic_name(&name)));
            match broker.logs.delete_topic(&name) {
                Ok(()) => result,
                Err(error) => result.with_error_code(error_code(&error)).with_error_message(since(
                    version,
                    5,
                    Some(str_bytes(error.to_string())),
                    None,
                )),
            }
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}
