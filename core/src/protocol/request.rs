//! Decoding one request frame: header, then body, for APIs the broker supports.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;

/// A frame that is not a request this broker answers.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("request of {size} bytes is shorter than a request header")]
    TooShort { size: usize },
    #[error("unknown api key {api_key}")]
    UnknownApi { api_key: i16 },
    /// An ApiVersions request newer than this broker: answered with our ranges (KIP-511).
    #[error("api versions request version {api_version} is newer than this broker knows")]
    NewerApiVersions { correlation_id: i32, api_version: i16 },
    #[error("unsupported version {api_version} of {api_key:?}")]
    UnsupportedVersion { api_key: ApiKey, api_version: i16 },
    #[error("malformed {api_key:?} v{api_version} request: {message}")]
    Malformed { api_key: ApiKey, api_version: i16, message: String },
}

/// Decodes a request frame. `supports` says which API versions the broker answers; others
/// are not decoded at all.
///
/// # Errors
/// [`RequestError`], naming what is wrong.
pub fn decode_request(
    mut frame: Bytes,
    supports: impl Fn(ApiKey, i16) -> bool,
) -> Result<(RequestHeader, RequestKind), RequestError> {
    if frame.len() < 8 {
        return Err(RequestError::TooShort { size: frame.len() });
    }
    let api_key_raw = i16::from_be_bytes([frame[0], frame[1]]);
    let api_version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key = ApiKey::try_from(api_key_raw).map_err(|_| RequestError::UnknownApi { api_key: api_key_raw })?;
    if api_key == ApiKey::ApiVersions && api_version > api_key.valid_versions().max {
        return Err(RequestError::NewerApiVersions { correlation_id, api_version });
    }
    if !supports(api_key, api_version) {
        return Err(RequestError::UnsupportedVersion { api_key, api_version });
    }
    let malformed = |error: anyhow::Error| RequestError::Malformed { api_key, api_version, message: error.to_string() };
    let header = RequestHeader::decode(&mut frame, api_key.request_header_version(api_version)).map_err(malformed)?;
    let request = RequestKind::decode(api_key, &mut frame, api_version).map_err(malformed)?;
    if frame.has_remaining() {
        tracing::debug!(?api_key, bytes = frame.remaining(), "ignoring bytes after a request");
    }
    Ok((header, request))
}
