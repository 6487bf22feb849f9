//! DeleteTopics, by name (all versions) or by topic id (version 6).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};

use super::{Broker, since, str_bytes, topic_name};

pub(super) async fn handle(broker: &Broker, request: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
    let wanted: Vec<(Option<String>, uuid::Uuid)> = if version >= 6 {
        request.topics.iter().map(|t| (t.name.as_ref().map(|n| n.to_string()), t.topic_id)).collect()
    } else {
        request.topic_names.iter().map(|n| (Some(n.to_string()), uuid::Uuid::nil())).collect()
    };
    let mut responses = Vec::with_capacity(wanted.len());
    for (name, topic_id) in wanted {
        let name = name.or_else(|| broker.topic_name_by_id(topic_id));
        let result = DeletableTopicResult::default().with_topic_id(since(version, 6, topic_id, uuid::Uuid::nil()));
        let Some(name) = name else {
            responses.push(result.with_error_code(ResponseError::UnknownTopicId.code()));
            continue;
        };
        let result = result.with_name(Some(topic_name(&name)));
        responses.push(match broker.delete_topic(&name).await {
            Ok(()) => result,
            Err(error) => result.with_error_code(error.code).with_error_message(since(
                version,
                5,
                Some(str_bytes(error.message)),
                None,
            )),
        });
    }
    DeleteTopicsResponse::default().with_responses(responses)
}
