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
    metrics::gauge!(crate::metrics::CONNECTIONS).increment(1.0);
    let _open = scopeguard(|| metrics::gauge!(crate::metrics::CONNECTIONS).decrement(1.0));
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
        let started = std::time::Instant::now();
        let Some(response) = handle_frame(&broker, frame, &peer).await else { break };
        let Some(response) = response else { continue }; // acks=0: no response at all
        metrics::histogram!(crate::metrics::REQUEST_DURATION, "api" => api_name(response.api_key))
            .record(started.elapsed().as_secs_f64());
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

/// Kafka's name for an API, as a metric label.
fn api_name(api_key: kafka_protocol::messages::ApiKey) -> &'static str {
    // The Debug name is Kafka's name (Produce, Fetch, ...); leaked once per API, bounded.
    static NAMES: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<i16, &'static str>>> =
        std::sync::OnceLock::new();
    let names = NAMES.get_or_init(Default::default);
    let mut names = names.lock().expect("api names lock");
    names.entry(api_key as i16).or_insert_with(|| Box::leak(format!("{api_key:?}").into_boxed_str()))
}

/// Runs `f` when dropped: the connection gauge goes down however the loop ends.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
