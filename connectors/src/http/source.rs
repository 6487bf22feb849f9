//! `http-source`: an HTTP endpoint that turns POSTed bodies into records, and answers only
//! once the broker has acknowledged them, so a 200 means the records are durable.
//!
//! | Content-Type | Records |
//! | --- | --- |
//! | `application/json` | a JSON array is one record per element; any other JSON value is one record |
//! | `application/x-ndjson`, `application/jsonl` | one JSON record per non-empty line |
//! | `text/plain` | one text record per non-empty line |
//! | anything else | the body as one record of bytes |
//!
//! The answer is `200 {"accepted": N, "failed": M}` (failed: skipped under
//! `errors.tolerance=all`); a malformed body gets 400 and writes nothing, a body over
//! `max.request.bytes` 413, a missing or wrong bearer token (with `auth.token`) 401, and a
//! request not acknowledged within `request.timeout.ms` 504 (its records may still be
//! written: retrying may duplicate them). Requests wait in a bounded queue; when it is
//! full for `request.timeout.ms` the answer is 503.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::config::{ConfigError, ConnectorConfig};
use crate::connector::{SourceConnector, SourceOffsets, SourceRecord, SourceTask, TaskConfig, TaskError};
use crate::converter::Data;
use crate::definition::{ConfigDef, Kind, Setting};
use crate::record::ConnectRecord;

/// Requests queued between the endpoint and the task.
const QUEUE_REQUESTS: usize = 256;

/// The most records one poll hands to the runtime.
const POLL_RECORDS: usize = 10_000;

pub fn definition() -> ConfigDef {
    ConfigDef::new([
        Setting::required("listen", Kind::String, "The address to listen on, HOST:PORT."),
        Setting::required("topic", Kind::String, "The topic records are written to."),
        Setting::optional("path", Kind::String, "/", "The path records are POSTed to."),
        Setting::optional("key.field", Kind::String, "", "A JSON field whose value becomes the record key."),
        Setting::optional("auth.token", Kind::Password, "", "A bearer token requests must carry."),
        Setting::optional("max.request.bytes", Kind::Int, "10485760", "The largest body accepted."),
        Setting::optional("request.timeout.ms", Kind::Long, "30000", "How long a request waits for its records."),
    ])
}

#[derive(Debug, Default)]
pub struct HttpSource;

#[async_trait]
impl SourceConnector for HttpSource {
    fn validate(&self, config: &ConnectorConfig) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if config.get("listen").is_some_and(|l| l.trim().parse::<std::net::SocketAddr>().is_err()) {
            errors.push(config.invalid("listen", "not HOST:PORT with an IP address"));
        }
        if !definition().value(config, "path").unwrap_or("/").starts_with('/') {
            errors.push(config.invalid("path", "must start with /"));
        }
        errors
    }

    fn task(&self, config: &TaskConfig) -> Result<Box<dyn SourceTask>, TaskError> {
        let def = definition();
        let text = |name: &str| def.value(config, name).unwrap_or_default().trim().to_string();
        let number = |name: &str, default: u64| def.number(config, name, default);
        Ok(Box::new(HttpSourceTask {
            settings: Arc::new(Settings {
                topic: text("topic"),
                key_field: Some(text("key.field")).filter(|f| !f.is_empty()),
                token: Some(text("auth.token")).filter(|t| !t.is_empty()),
                timeout: Duration::from_millis(number("request.timeout.ms", 30_000)),
            }),
            listen: text("listen"),
            path: text("path"),
            max_bytes: number("max.request.bytes", 10 << 20) as usize,
            requests: None,
            server: None,
            partition: json!({ "listener": text("listen") }),
            next_seq: 0,
            waiting: VecDeque::new(),
        }))
    }
}

/// What the endpoint's handlers need.
#[derive(Debug)]
struct Settings {
    topic: String,
    key_field: Option<String>,
    token: Option<String>,
    timeout: Duration,
}

/// The outcome of a request: records written and given up.
#[derive(Debug, Default, Clone, Copy)]
struct Outcome {
    accepted: usize,
    failed: usize,
}

/// A POSTed body's records on their way to the task.
struct Batch {
    records: Vec<ConnectRecord>,
    reply: oneshot::Sender<Outcome>,
}

#[derive(Clone)]
struct Endpoint {
    settings: Arc<Settings>,
    queue: mpsc::Sender<Batch>,
}

/// A request whose records are in flight: the sequence number after its last record.
struct Waiting {
    end: u64,
    outcome: Outcome,
    reply: oneshot::Sender<Outcome>,
}

pub struct HttpSourceTask {
    settings: Arc<Settings>,
    listen: String,
    path: String,
    max_bytes: usize,
    requests: Option<mpsc::Receiver<Batch>>,
    server: Option<tokio::task::JoinHandle<()>>,
    partition: Value,
    /// The sequence number of the next record polled.
    next_seq: u64,
    waiting: VecDeque<Waiting>,
}

impl std::fmt::Debug for HttpSourceTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSourceTask").field("listen", &self.listen).field("path", &self.path).finish()
    }
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// The records of a body, by its content type.
fn records(settings: &Settings, headers: &HeaderMap, body: &[u8]) -> Result<Vec<ConnectRecord>, String> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .unwrap_or_default();
    let record = |value: Data| {
        let key = match (&settings.key_field, &value) {
            (Some(field), Data::Json(Value::Object(fields))) => {
                fields.get(field).cloned().map_or(Data::Null, Data::Json)
            }
            _ => Data::Null,
        };
        let mut record = ConnectRecord::new(settings.topic.clone(), value);
        record.key = key;
        record
    };
    match content_type.as_str() {
        "application/json" => {
            match serde_json::from_slice::<Value>(body).map_err(|e| format!("not valid JSON: {e}"))? {
                Value::Array(items) => Ok(items.into_iter().map(|v| record(Data::Json(v))).collect()),
                value => Ok(vec![record(Data::Json(value))]),
            }
        }
        "application/x-ndjson" | "application/jsonl" | "application/json-lines" => {
            let text = std::str::from_utf8(body).map_err(|_| "not UTF-8".to_string())?;
            text.lines()
                .enumerate()
                .filter(|(_, line)| !line.trim().is_empty())
                .map(|(n, line)| {
                    serde_json::from_str(line)
                        .map(|v| record(Data::Json(v)))
                        .map_err(|e| format!("line {}: not valid JSON: {e}", n + 1))
                })
                .collect()
        }
        "text/plain" => {
            let text = std::str::from_utf8(body).map_err(|_| "not UTF-8".to_string())?;
            Ok(text.lines().filter(|l| !l.is_empty()).map(|l| record(Data::Text(l.to_string()))).collect())
        }
        _ => Ok(vec![record(Data::Bytes(Bytes::copy_from_slice(body)))]),
    }
}

async fn accept(State(endpoint): State<Endpoint>, headers: HeaderMap, body: Bytes) -> Response {
    let settings = &endpoint.settings;
    if let Some(token) = &settings.token {
        let given =
            headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.as_str()) {
            return answer(StatusCode::UNAUTHORIZED, json!({ "error": "a valid bearer token is required" }));
        }
    }
    let records = match records(settings, &headers, &body) {
        Ok(records) => records,
        Err(message) => return answer(StatusCode::BAD_REQUEST, json!({ "error": message })),
    };
    if records.is_empty() {
        return answer(StatusCode::OK, json!({ "accepted": 0, "failed": 0 }));
    }
    let (reply, outcome) = oneshot::channel();
    let queued = tokio::time::timeout(settings.timeout, endpoint.queue.send(Batch { records, reply })).await;
    match queued {
        Ok(Ok(())) => {}
        Ok(Err(_)) => return answer(StatusCode::SERVICE_UNAVAILABLE, json!({ "error": "the connector is stopping" })),
        Err(_) => return answer(StatusCode::SERVICE_UNAVAILABLE, json!({ "error": "busy: the queue stayed full" })),
    }
    match tokio::time::timeout(settings.timeout, outcome).await {
        Ok(Ok(outcome)) => answer(StatusCode::OK, json!({ "accepted": outcome.accepted, "failed": outcome.failed })),
        Ok(Err(_)) => answer(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "error": "the connector stopped before the records were acknowledged" }),
        ),
        Err(_) => answer(
            StatusCode::GATEWAY_TIMEOUT,
            json!({ "error": "the records were not acknowledged in time; they may still be written" }),
        ),
    }
}

#[async_trait]
impl SourceTask for HttpSourceTask {
    async fn start(&mut self, _offsets: SourceOffsets) -> Result<(), TaskError> {
        let listener = tokio::net::TcpListener::bind(&self.listen)
            .await
            .map_err(|e| TaskError::Fatal(format!("cannot listen on {}: {e}", self.listen)))?;
        let (queue, requests) = mpsc::channel(QUEUE_REQUESTS);
        let endpoint = Endpoint { settings: Arc::clone(&self.settings), queue };
        let router = axum::Router::new()
            .route(&self.path, post(accept))
            .layer(DefaultBodyLimit::max(self.max_bytes))
            .with_state(endpoint);
        self.server = Some(tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                tracing::error!("http-source endpoint stopped: {error}");
            }
        }));
        self.requests = Some(requests);
        tracing::info!(listen = %self.listen, path = %self.path, "accepting records");
        Ok(())
    }

    async fn poll(&mut self) -> Result<Vec<SourceRecord>, TaskError> {
        let requests = self.requests.as_mut().expect("started");
        let first = match tokio::time::timeout(Duration::from_millis(100), requests.recv()).await {
            Ok(Some(batch)) => batch,
            Ok(None) => return Err(TaskError::fatal("the endpoint stopped")),
            Err(_) => return Ok(Vec::new()),
        };
        let mut batches = vec![first];
        let mut count = batches[0].records.len();
        while count < POLL_RECORDS {
            match requests.try_recv() {
                Ok(batch) => {
                    count += batch.records.len();
                    batches.push(batch);
                }
                Err(_) => break,
            }
        }
        let mut out = Vec::with_capacity(count);
        for batch in batches {
            for record in batch.records {
                self.next_seq += 1;
                out.push(SourceRecord {
                    record,
                    source_partition: self.partition.clone(),
                    source_offset: json!({ "seq": self.next_seq }),
                });
            }
            self.waiting.push_back(Waiting { end: self.next_seq, outcome: Outcome::default(), reply: batch.reply });
        }
        Ok(out)
    }

    fn commit_record(&mut self, source_offset: &Value, written: Option<headwater_core::client::RecordMetadata>) {
        let Some(seq) = source_offset.get("seq").and_then(Value::as_u64) else { return };
        let Some(front) = self.waiting.front_mut() else { return };
        if written.is_some() {
            front.outcome.accepted += 1;
        } else {
            front.outcome.failed += 1;
        }
        if seq >= front.end {
            let done = self.waiting.pop_front().expect("front exists");
            let _ = done.reply.send(done.outcome);
        }
    }

    async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// The (key, value) of each record a body gives, for tests.
#[cfg(test)]
fn parse(content_type: &str, body: &str, key_field: Option<&str>) -> Result<Vec<(Data, Data)>, String> {
    let settings = Settings {
        topic: "t".into(),
        key_field: key_field.map(str::to_string),
        token: None,
        timeout: Duration::from_secs(1),
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, content_type.parse().unwrap());
    records(&settings, &headers, body.as_bytes()).map(|r| r.into_iter().map(|r| (r.key, r.value)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_become_records_by_content_type() {
        let got = parse("application/json; charset=utf-8", r#"[{"id": 1}, {"id": 2, "x": true}]"#, Some("id")).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], (Data::Json(json!(2)), Data::Json(json!({"id": 2, "x": true}))));
        assert_eq!(parse("application/json", r#"{"one": 1}"#, None).unwrap().len(), 1);
        let lines = parse("application/x-ndjson", "{\"a\":1}\n\n{\"a\":2}\n", None).unwrap();
        assert_eq!(lines.len(), 2);
        assert!(parse("application/x-ndjson", "{\"a\":1}\n{oops\n", None).unwrap_err().starts_with("line 2"));
        assert_eq!(parse("text/plain", "one\ntwo\n", None).unwrap()[1].1, Data::Text("two".into()));
        assert!(matches!(parse("application/octet-stream", "raw", None).unwrap()[0].1, Data::Bytes(_)));
        assert!(parse("application/json", "{", None).unwrap_err().contains("not valid JSON"));
    }
}
