//! `http-sink`: records POSTed to a URL in batches.
//!
//! | Setting | Default | Meaning |
//! | --- | --- | --- |
//! | `url` | required | where batches are POSTed |
//! | `topics` | required | the topics to read |
//! | `batch.size` | 500 | the most records per request |
//! | `batch.format` | `json-array` | `json-array` (one JSON array of values) or `ndjson` (one JSON value per line) |
//! | `headers` | none | extra request headers, `Name: value` pairs separated by `\|` |
//! | `request.timeout.ms` | 30000 | one request's limit |
//! | `max.retries` | 10 | retries of a request that failed transiently (a connection, a timeout, 408, 429, 5xx) |
//! | `retry.backoff.ms` | 100 | the first wait between retries; each doubles, up to 10 s |
//!
//! Values become JSON: JSON as it is, text as a JSON string, bytes as a string when they
//! are UTF-8 and base64 otherwise, a tombstone as `null`. A batch the server refuses for
//! good (another 4xx), or that still fails after the retries, is handed back as failed
//! records, so `errors.tolerance` decides: the task fails, or they go to the dead-letter
//! topic. Each put waits for its requests, so a flush has nothing left to do.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::config::{ConfigError, ConnectorConfig};
use crate::connector::{RecordFailure, SinkConnector, SinkTask, TaskConfig, TaskError};
use crate::converter::Data;
use crate::definition::{ConfigDef, Kind, Setting};
use crate::record::ConnectRecord;

/// The longest wait between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

pub fn definition() -> ConfigDef {
    ConfigDef::new([
        Setting::required("url", Kind::String, "Where batches are POSTed."),
        Setting::required("topics", Kind::List, "The topics to read."),
        Setting::optional("batch.size", Kind::Int, "500", "The most records per request."),
        Setting::optional("batch.format", Kind::String, "json-array", "json-array or ndjson."),
        Setting::optional("headers", Kind::String, "", "Extra headers: Name: value|Name2: value2."),
        Setting::optional("request.timeout.ms", Kind::Long, "30000", "One request's limit."),
        Setting::optional("max.retries", Kind::Int, "10", "Retries of a transient failure."),
        Setting::optional("retry.backoff.ms", Kind::Long, "100", "The first wait between retries."),
    ])
}

/// How a batch is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    JsonArray,
    Ndjson,
}

fn headers(config: &ConnectorConfig) -> Result<HeaderMap, ConfigError> {
    let mut map = HeaderMap::new();
    for pair in config.get("headers").unwrap_or_default().split('|').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once(':').ok_or_else(|| config.invalid("headers", "not Name: value pairs"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| config.invalid("headers", "a bad header name"))?;
        let value = HeaderValue::from_str(value.trim()).map_err(|_| config.invalid("headers", "a bad header value"))?;
        map.insert(name, value);
    }
    Ok(map)
}

#[derive(Debug, Default)]
pub struct HttpSink;

#[async_trait]
impl SinkConnector for HttpSink {
    fn validate(&self, config: &ConnectorConfig) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        match config.get("url").map(|u| reqwest::Url::parse(u.trim())) {
            Some(Ok(url)) if matches!(url.scheme(), "http" | "https") => {}
            _ => errors.push(config.invalid("url", "not an http:// or https:// URL")),
        }
        if !matches!(definition().value(config, "batch.format").map(str::trim), Some("json-array" | "ndjson")) {
            errors.push(config.invalid("batch.format", "must be json-array or ndjson"));
        }
        if let Err(error) = headers(config) {
            errors.push(error);
        }
        if config.parse_or("batch.size", 500i64).is_ok_and(|b| b < 1) {
            errors.push(config.invalid("batch.size", "must be at least 1"));
        }
        errors
    }

    fn task(&self, config: &TaskConfig) -> Result<Box<dyn SinkTask>, TaskError> {
        let def = definition();
        let number = |name: &str, default: u64| def.number(config, name, default);
        let timeout = Duration::from_millis(number("request.timeout.ms", 30_000));
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .default_headers(headers(config)?)
            .user_agent(concat!("headwater-connect/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(TaskError::fatal)?;
        Ok(Box::new(HttpSinkTask {
            client,
            url: config.get("url").unwrap_or_default().trim().to_string(),
            batch_size: number("batch.size", 500).max(1) as usize,
            format: if def.value(config, "batch.format").map(str::trim) == Some("ndjson") {
                Format::Ndjson
            } else {
                Format::JsonArray
            },
            max_retries: number("max.retries", 10) as u32,
            backoff: Duration::from_millis(number("retry.backoff.ms", 100)),
        }))
    }
}

#[derive(Debug)]
pub struct HttpSinkTask {
    client: reqwest::Client,
    url: String,
    batch_size: usize,
    format: Format,
    max_retries: u32,
    backoff: Duration,
}

/// A value as JSON.
fn json(data: &Data) -> Value {
    match data {
        Data::Null => Value::Null,
        Data::Json(value) => value.clone(),
        Data::Text(text) => Value::String(text.clone()),
        Data::Bytes(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => Value::String(text.to_string()),
            Err(_) => Value::String(crate::converter::base64(bytes)),
        },
    }
}

impl HttpSinkTask {
    fn body(&self, records: &[ConnectRecord]) -> (Vec<u8>, &'static str) {
        match self.format {
            Format::JsonArray => {
                let values: Vec<Value> = records.iter().map(|r| json(&r.value)).collect();
                (serde_json::to_vec(&values).expect("JSON values serialize"), "application/json")
            }
            Format::Ndjson => {
                let mut body = Vec::new();
                for record in records {
                    serde_json::to_writer(&mut body, &json(&record.value)).expect("JSON values serialize");
                    body.push(b'\n');
                }
                (body, "application/x-ndjson")
            }
        }
    }

    /// POSTs one batch: `Ok` once the server took it, `Err` with the reason it was given
    /// up (refused, or still failing after the retries).
    async fn send(&self, records: &[ConnectRecord]) -> Result<(), String> {
        let (body, content_type) = self.body(records);
        let mut attempt = 0;
        loop {
            let response =
                self.client.post(&self.url).header(CONTENT_TYPE, content_type).body(body.clone()).send().await;
            let failure = match response {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => {
                    let status = response.status();
                    let text: String = response.text().await.unwrap_or_default().chars().take(300).collect();
                    let reason = format!("{} answered {status}: {text}", self.url);
                    let transient = status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429;
                    if !transient {
                        return Err(reason);
                    }
                    reason
                }
                Err(error) => format!("POST {}: {error}", self.url),
            };
            if attempt >= self.max_retries {
                return Err(format!("{failure} (after {attempt} retries)"));
            }
            attempt += 1;
            let wait = self.backoff.saturating_mul(1 << (attempt - 1).min(16)).min(MAX_BACKOFF);
            tracing::warn!(attempt, "retrying in {wait:?}: {failure}");
            tokio::time::sleep(wait).await;
        }
    }
}

#[async_trait]
impl SinkTask for HttpSinkTask {
    async fn put(&mut self, records: &[ConnectRecord]) -> Result<Vec<RecordFailure>, TaskError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let mut failures = Vec::new();
        for (chunk_index, chunk) in records.chunks(self.batch_size).enumerate() {
            if let Err(reason) = self.send(chunk).await {
                let start = chunk_index * self.batch_size;
                failures
                    .extend((start..start + chunk.len()).map(|index| RecordFailure { index, reason: reason.clone() }));
            }
        }
        Ok(failures)
    }

    async fn flush(&mut self) -> Result<(), TaskError> {
        Ok(())
    }
}
