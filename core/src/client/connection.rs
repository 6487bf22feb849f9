//! One connection to a broker: requests go out tagged with correlation ids, responses come
//! back in order and are matched to their callers, so many requests can be in flight at
//! once (bounded). Versions are negotiated once with ApiVersions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{Semaphore, oneshot};

use super::ClientError;
use crate::protocol::{EncodeBuf, read_frame};

/// The newest version this client speaks, per API: below the versions that name topics
/// by id only (Produce / Fetch 13), which this client does not track yet.
fn client_max(api_key: ApiKey) -> i16 {
    match api_key {
        ApiKey::Produce | ApiKey::Fetch => 12,
        ApiKey::Metadata => 12,
        // Transactions as before KIP-890: the client adds its partitions (v4+ of
        // AddPartitionsToTxn is for brokers), and EndTxn / TxnOffsetCommit v5 would ask for
        // the epoch bump per transaction of transaction version 2.
        ApiKey::AddPartitionsToTxn => 3,
        ApiKey::EndTxn | ApiKey::TxnOffsetCommit => 4,
        other => other.valid_versions().max,
    }
}

/// Requests in flight on one connection; Kafka's clients default to 5 per connection.
pub const MAX_IN_FLIGHT: usize = 5;
/// The largest response accepted (Kafka's fetch.max.bytes is 50 MiB; headroom above it).
const MAX_RESPONSE_BYTES: usize = 100 << 20;

type Pending = Arc<Mutex<HashMap<i32, oneshot::Sender<Result<Bytes, ClientError>>>>>;

/// The response to a request already written.
pub type PendingResponse<T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, ClientError>> + Send>>;

/// A connection to one broker.
#[derive(Debug)]
pub struct Connection {
    addr: String,
    client_id: String,
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    pending: Pending,
    next_correlation_id: AtomicI32,
    versions: HashMap<i16, (i16, i16)>,
    in_flight: Arc<Semaphore>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Connection {
    /// Connects and negotiates API versions.
    ///
    /// # Errors
    /// [`ClientError::Connect`] or a failed ApiVersions exchange.
    pub async fn connect(addr: &str, client_id: &str) -> Result<Arc<Self>, ClientError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Connect { addr: addr.to_string(), source: Arc::new(source) })?;
        stream.set_nodelay(true).ok();
        let (mut reader, writer) = stream.into_split();
        let pending: Pending = Arc::default();
        let reader_task = {
            let pending = Arc::clone(&pending);
            let addr = addr.to_string();
            tokio::spawn(async move {
                let mut buf = BytesMut::new();
                let failure = loop {
                    match read_frame(&mut reader, MAX_RESPONSE_BYTES, &mut buf).await {
                        Ok(Some(frame)) if frame.len() >= 4 => {
                            let correlation_id = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
                            let waiter = pending.lock().expect("pending lock").remove(&correlation_id);
                            if let Some(waiter) = waiter {
                                let _ = waiter.send(Ok(frame));
                            }
                        }
                        Ok(Some(_)) => break "a response shorter than its header".to_string(),
                        Ok(None) => break "the broker closed the connection".to_string(),
                        Err(error) => break error.to_string(),
                    }
                };
                for (_, waiter) in pending.lock().expect("pending lock").drain() {
                    let _ = waiter.send(Err(ClientError::Disconnected { addr: addr.clone(), reason: failure.clone() }));
                }
            })
        };
        let mut connection = Self {
            addr: addr.to_string(),
            client_id: client_id.to_string(),
            writer: tokio::sync::Mutex::new(writer),
            pending,
            next_correlation_id: AtomicI32::new(0),
            versions: HashMap::new(),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            reader: reader_task,
        };
        let versions: ApiVersionsResponse = connection.send_at(ApiVersionsRequest::default(), 3).await?;
        if versions.error_code != 0 {
            return Err(ClientError::Broker { api: "ApiVersions", code: versions.error_code });
        }
        connection.versions = versions.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect();
        Ok(Arc::new(connection))
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether the connection has failed or the broker closed it: every request on it
    /// fails from now on.
    pub fn is_closed(&self) -> bool {
        self.reader.is_finished()
    }

    /// The version both sides speak for `api_key`, if any.
    pub fn version(&self, api_key: ApiKey) -> Option<i16> {
        let (min, max) = *self.versions.get(&(api_key as i16))?;
        let ours = api_key.valid_versions();
        let version = max.min(client_max(api_key)).min(ours.max);
        (version >= min.max(ours.min)).then_some(version)
    }

    /// Sends a request at the best common version and waits for its response.
    ///
    /// # Errors
    /// [`ClientError::Unsupported`] when the broker lacks the API, or a connection error.
    pub async fn send<R>(&self, request: R) -> Result<R::Response, ClientError>
    where
        R: Request + Encodable,
        R::Response: Send + 'static,
    {
        let (_, version) = self.negotiated::<R>()?;
        self.send_at(request, version).await
    }

    /// Sends a request that gets no response (Produce with acks=0).
    ///
    /// # Errors
    /// A connection error.
    /// `records` as for [`Self::begin_sharing`].
    pub async fn send_without_response<R>(&self, request: R, records: Vec<Bytes>) -> Result<(), ClientError>
    where
        R: Request + Encodable,
    {
        let (api_key, version) = self.negotiated::<R>()?;
        let correlation_id = self.next_correlation_id.fetch_add(1, Ordering::Relaxed);
        let frame = self.encode(&request, api_key, version, correlation_id, records)?;
        self.write(frame).await
    }

    async fn send_at<R>(&self, request: R, version: i16) -> Result<R::Response, ClientError>
    where
        R: Request + Encodable,
        R::Response: Send + 'static,
    {
        self.begin_at(request, version, Vec::new()).await?.await
    }

    /// The API of request type `R` and the version negotiated for it.
    fn negotiated<R: Request>(&self) -> Result<(ApiKey, i16), ClientError> {
        let api_key = ApiKey::try_from(R::KEY).expect("a known api");
        let version = self.version(api_key).ok_or(ClientError::Unsupported { api: api_key_name(api_key) })?;
        Ok((api_key, version))
    }

    /// Writes a request now and returns a future for its response. Requests begun one
    /// after another are written in that order, which the broker keeps: a producer relies
    /// on it to keep a partition's batches in order while several are in flight.
    ///
    /// # Errors
    /// [`ClientError::Unsupported`] when the broker lacks the API, or a connection error.
    pub async fn begin<R>(&self, request: R) -> Result<PendingResponse<R::Response>, ClientError>
    where
        R: Request + Encodable,
        R::Response: Send + 'static,
    {
        self.begin_sharing(request, Vec::new()).await
    }

    /// As [`Self::begin`], for a request that carries record sets (`records`, the very
    /// buffers the request holds): they go to the socket without being copied into the
    /// encoded request.
    ///
    /// # Errors
    /// As [`Self::begin`].
    pub async fn begin_sharing<R>(
        &self,
        request: R,
        records: Vec<Bytes>,
    ) -> Result<PendingResponse<R::Response>, ClientError>
    where
        R: Request + Encodable,
        R::Response: Send + 'static,
    {
        let (_, version) = self.negotiated::<R>()?;
        self.begin_at(request, version, records).await
    }

    async fn begin_at<R>(
        &self,
        request: R,
        version: i16,
        records: Vec<Bytes>,
    ) -> Result<PendingResponse<R::Response>, ClientError>
    where
        R: Request + Encodable,
        R::Response: Send + 'static,
    {
        let api_key = ApiKey::try_from(R::KEY).expect("a known api");
        let permit = Arc::clone(&self.in_flight).acquire_owned().await.expect("semaphore never closes");
        let correlation_id = self.next_correlation_id.fetch_add(1, Ordering::Relaxed);
        let frame = self.encode(&request, api_key, version, correlation_id, records)?;
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("pending lock").insert(correlation_id, tx);
        if let Err(error) = self.write(frame).await {
            self.pending.lock().expect("pending lock").remove(&correlation_id);
            return Err(error);
        }
        let addr = self.addr.clone();
        Ok(Box::pin(async move {
            let _permit = permit;
            let mut response =
                rx.await.map_err(|_| ClientError::Disconnected { addr, reason: "connection dropped".into() })??;
            let decode =
                |error: anyhow::Error| ClientError::Decode { api: api_key_name(api_key), message: error.to_string() };
            ResponseHeader::decode(&mut response, R::Response::header_version(version)).map_err(decode)?;
            R::Response::decode(&mut response, version).map_err(decode)
        }))
    }

    fn encode<R: Encodable>(
        &self,
        request: &R,
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
        records: Vec<Bytes>,
    ) -> Result<Vec<Bytes>, ClientError> {
        let mut frame = EncodeBuf::new(records);
        let encode =
            |error: anyhow::Error| ClientError::Encode { api: api_key_name(api_key), message: error.to_string() };
        RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_string(self.client_id.clone())))
            .encode(&mut frame, api_key.request_header_version(version))
            .map_err(encode)?;
        request.encode(&mut frame, version).map_err(encode)?;
        let size = i32::try_from(frame.encoded_len())
            .map_err(|_| ClientError::Encode { api: api_key_name(api_key), message: "request over 2 GiB".into() })?;
        let mut parts = vec![Bytes::copy_from_slice(&size.to_be_bytes())];
        parts.extend(frame.into_parts());
        Ok(parts)
    }

    /// Writes one request's parts, in order, with no other request's bytes between them.
    async fn write(&self, parts: Vec<Bytes>) -> Result<(), ClientError> {
        let mut writer = self.writer.lock().await;
        for part in parts {
            writer
                .write_all(&part)
                .await
                .map_err(|source| ClientError::Disconnected { addr: self.addr.clone(), reason: source.to_string() })?;
        }
        Ok(())
    }
}

/// Kafka's name for an API, for error messages.
pub(super) fn api_key_name(api_key: ApiKey) -> &'static str {
    match api_key {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Metadata => "Metadata",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::InitProducerId => "InitProducerId",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        _ => "request",
    }
}
