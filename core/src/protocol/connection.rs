//! One client connection: frames in, responses out, one request at a time.

use std::sync::Arc;

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::frame::read_frame;
use crate::broker::{Broker, Response};

/// Serves one connection until the peer closes it, it misbehaves, or shutdown.
pub(super) async fn serve(
    stream: TcpStream,
    broker: Arc<Broker>,
    max_request_bytes: usize,
    shutdown: CancellationToken,
) {
    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let _ = stream.set_nodelay(true);
    let (mut reader, writer) = stream.into_split();
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    let mut frame_buf = BytesMut::new();
    let mut out = BytesMut::new();
    loop {
        let frame = tokio::select! {
            frame = read_frame(&mut reader, max_request_bytes, &mut frame_buf) => frame,
            () = shutdown.cancelled() => break,
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(error) => {
                tracing::warn!(%peer, %error, "closing connection: bad frame");
                break;
            }
        };
        let Some(response) = handle_frame(&broker, frame, &peer).await else { break };
        let Some(response) = response else { continue }; // acks=0: no response at all
        out.clear();
        if let Err(error) = encode_response(&response, &mut out) {
            tracing::error!(%peer, %error, api = ?response.api_key, "closing connection: cannot encode response");
            break;
        }
        if writer.write_all(&out).await.is_err() || writer.flush().await.is_err() {
            break;
        }
    }
}

/// Decodes and handles one request. `None` closes the connection (undecodable request);
/// `Some(None)` sends nothing (acks=0 produce).
async fn handle_frame(broker: &Broker, mut frame: bytes::Bytes, peer: &str) -> Option<Option<Response>> {
    if frame.len() < 8 {
        tracing::warn!(%peer, "closing connection: request shorter than a header");
        return None;
    }
    let api_key_raw = i16::from_be_bytes([frame[0], frame[1]]);
    let api_version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let Ok(api_key) = ApiKey::try_from(api_key_raw) else {
        tracing::warn!(%peer, api_key = api_key_raw, "closing connection: unknown api key");
        return None;
    };
    // KIP-511: an ApiVersions request newer than we know still gets our ranges, encoded
    // as version 0 so that any client can read them.
    if api_key == ApiKey::ApiVersions && api_version > api_key.valid_versions().max {
        return Some(Some(broker.unsupported_api_versions(correlation_id)));
    }
    if !broker.supports(api_key, api_version) {
        tracing::warn!(%peer, ?api_key, api_version, "closing connection: unsupported api version");
        return None;
    }
    let header_version = api_key.request_header_version(api_version);
    let header = match RequestHeader::decode(&mut frame, header_version) {
        Ok(header) => header,
        Err(error) => {
            tracing::warn!(%peer, ?api_key, %error, "closing connection: malformed request header");
            return None;
        }
    };
    let request = match RequestKind::decode(api_key, &mut frame, api_version) {
        Ok(request) => request,
        Err(error) => {
            tracing::warn!(%peer, ?api_key, api_version, %error, "closing connection: malformed request");
            return None;
        }
    };
    if frame.has_remaining() {
        tracing::debug!(%peer, ?api_key, bytes = frame.remaining(), "ignoring bytes after a request");
    }
    Some(broker.handle(&header, request).await)
}

fn encode_response(response: &Response, out: &mut BytesMut) -> anyhow::Result<()> {
    out.put_i32(0); // size, filled below
    let header = ResponseHeader::default().with_correlation_id(response.correlation_id);
    header.encode(out, response.api_key.response_header_version(response.api_version))?;
    response.body.encode(out, response.api_version)?;
    let size = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&size.to_be_bytes());
    Ok(())
}
