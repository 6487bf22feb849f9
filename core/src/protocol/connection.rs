//! One client connection: frames in, responses out, one request at a time.

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::ResponseHeader;
use kafka_protocol::protocol::Encodable;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::frame::read_frame;
use super::request::{RequestError, decode_request};
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

/// Decodes and handles one request. `None` closes the connection (a request that cannot
/// be decoded); `Some(None)` sends nothing (acks=0 produce).
async fn handle_frame(broker: &Broker, frame: bytes::Bytes, peer: &str) -> Option<Option<Response>> {
    match decode_request(frame, |key, version| broker.supports(key, version)) {
        Ok((header, request)) => Some(broker.handle(&header, request).await),
        Err(RequestError::NewerApiVersions { correlation_id, .. }) => {
            Some(Some(broker.unsupported_api_versions(correlation_id)))
        }
        Err(error) => {
            // Logged once, for this connection only; other clients are not affected.
            tracing::warn!(%peer, %error, "closing connection");
            None
        }
    }
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
