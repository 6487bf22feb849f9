//! ApiVersions: which APIs and versions this broker answers.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, ResponseKind};

use super::{Response, SUPPORTED};

fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|&(key, min, max)| {
            ApiVersion::default()
                .with_api_key(key as i16)
                .with_min_version(min)
                .with_max_version(max.min(key.valid_versions().max))
        })
        .collect()
}

pub(super) fn handle(_request: &ApiVersionsRequest) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_error_code(0).with_api_keys(api_keys())
}

/// KIP-511: a client asking with a newer ApiVersions version gets UNSUPPORTED_VERSION and
/// our ranges, encoded as version 0, and retries with a version we know.
pub(super) fn unsupported(correlation_id: i32) -> Response {
    let body = ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_keys());
    Response { api_key: ApiKey::ApiVersions, api_version: 0, correlation_id, body: ResponseKind::ApiVersions(body) }
}
