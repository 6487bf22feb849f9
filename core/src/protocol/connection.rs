//! One client connection: frames in, handled in order, responses out in the same order.

use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Encodable;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::encode_buf::EncodeBuf;
use super::frame::read_frame;
use super::request::{RequestError, decode_request};
use crate::broker::{Broker, PendingResponse, Response};

/// Requests read ahead of the response being written: Kafka clients keep at most five in
/// flight, and the bound keeps a connection's pending work (and memory) finite.
const MAX_PIPELINED: usize = 16;

/// Serves one connection until the peer closes it, it misbehaves, or shutdown.
///
/// Two halves joined in one task: the reader decodes and handles requests in order (so
/// appends follow request order) and queues their responses, which may still be waiting
/// for a flush; the writer sends them in the same order as they complete. A produce
/// waiting for its fsync therefore does not stop the requests behind it from being
/// appended. On close or shutdown the writer drains what is queued.
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
    let (queue, mut queued) = tokio::sync::mpsc::channel::<(Instant, PendingResponse)>(MAX_PIPELINED);
    let read = async {
        let mut frame_buf = BytesMut::new();
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
            let started = Instant::now();
            let Some(response) = handle_frame(&broker, frame, &peer).await else { break };
            let Some(response) = response else { continue }; // acks=0: no response at all
            if queue.send((started, response)).await.is_err() {
                break; // the writer stopped: the peer is gone
            }
        }
        drop(queue);
    };
    let write = async {
        // Small parts gather in the buffer; parts larger than it go straight to the socket.
        let mut writer = BufWriter::with_capacity(64 * 1024, writer);
        'responses: while let Some((started, response)) = queued.recv().await {
            let response = response.await;
            metrics::histogram!(crate::metrics::REQUEST_DURATION, "api" => api_name(response.api_key))
                .record(started.elapsed().as_secs_f64());
            let parts = match encode_response(&response) {
                Ok(parts) => parts,
                Err(error) => {
                    tracing::error!(%peer, %error, api = ?response.api_key, "closing connection: cannot encode response");
                    break;
                }
            };
            for part in parts {
                if writer.write_all(&part).await.is_err() {
                    break 'responses;
                }
            }
            // Flush only when nothing else is ready, so responses that complete together
            // share a write.
            if queued.is_empty() && writer.flush().await.is_err() {
                break;
            }
        }
        let _ = writer.flush().await;
        queued.close();
    };
    tokio::join!(read, write);
}

/// Decodes and handles one request. `None` closes the connection (a request that cannot
/// be decoded); `Some(None)` sends nothing (acks=0 produce).
async fn handle_frame(broker: &Broker, frame: bytes::Bytes, peer: &str) -> Option<Option<PendingResponse>> {
    match decode_request(frame, |key, version| broker.supports(key, version)) {
        Ok((header, request)) => Some(broker.handle(&header, request).await),
        Err(RequestError::NewerApiVersions { correlation_id, .. }) => {
            Some(Some(Box::pin(std::future::ready(broker.unsupported_api_versions(correlation_id)))))
        }
        Err(error) => {
            // Logged once, for this connection only; other clients are not affected.
            tracing::warn!(%peer, %error, "closing connection");
            None
        }
    }
}

/// Encodes a response with its size prefix, as parts to write in order: a fetch
/// response's record sets are not copied.
fn encode_response(response: &Response) -> anyhow::Result<Vec<Bytes>> {
    let shared = match &response.body {
        ResponseKind::Fetch(fetch) => {
            fetch.responses.iter().flat_map(|t| t.partitions.iter()).filter_map(|p| p.records.clone()).collect()
        }
        _ => Vec::new(),
    };
    let mut buf = EncodeBuf::new(shared);
    let header = ResponseHeader::default().with_correlation_id(response.correlation_id);
    header.encode(&mut buf, response.api_key.response_header_version(response.api_version))?;
    match &response.body {
        ResponseKind::Fetch(fetch) => fetch.encode(&mut buf, response.api_version)?,
        // The other responses are small; `ResponseKind` encodes into a `BytesMut` only.
        body => {
            let mut encoded = BytesMut::new();
            body.encode(&mut encoded, response.api_version)?;
            buf.put_slice(&encoded);
        }
    }
    let size = i32::try_from(buf.encoded_len())?;
    let mut parts = Vec::with_capacity(4);
    parts.push(Bytes::copy_from_slice(&size.to_be_bytes()));
    parts.extend(buf.into_parts());
    Ok(parts)
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
