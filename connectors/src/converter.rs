//! Converters: record keys and values between the bytes in a topic and the data
//! connectors work with, as Kafka Connect's `key.converter` / `value.converter` do.
//!
//! | Setting | Kafka Connect class | Bytes |
//! | --- | --- | --- |
//! | `json` | `org.apache.kafka.connect.json.JsonConverter` | JSON; with `schemas.enable` (Kafka's default) an envelope `{"schema": ..., "payload": ...}` |
//! | `string` | `org.apache.kafka.connect.storage.StringConverter` | UTF-8 text |
//! | `bytes` | `org.apache.kafka.connect.converters.ByteArrayConverter` | as they are |
//!
//! A null key or value (a tombstone) is [`Data::Null`] both ways.

use bytes::Bytes;
use serde_json::{Value, json};

use crate::config::{ConfigError, ConnectorConfig};

/// A key or value as connectors and transforms see it.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    Null,
    Bytes(Bytes),
    Text(String),
    Json(Value),
}

/// Why a key or value could not be converted; such records go to the dead-letter topic
/// when `errors.tolerance=all`.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("JsonConverter with schemas.enable needs an object with \"schema\" and \"payload\" fields")]
    NoEnvelope,
    #[error("not valid UTF-8 text")]
    NotText,
}

/// One of the three converters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Converter {
    Json { schemas: bool },
    String,
    Bytes,
}

impl Converter {
    /// The converter a connector's config names under `prefix` (`key.converter` or
    /// `value.converter`), with its `schemas.enable`; `default` when it names none.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for an unknown converter or a bad `schemas.enable`.
    pub fn from_config(config: &ConnectorConfig, prefix: &str, default: Converter) -> Result<Self, ConfigError> {
        let Some(class) = config.get(prefix) else { return Ok(default) };
        let schemas_key = format!("{prefix}.schemas.enable");
        match class.trim() {
            "json" | "org.apache.kafka.connect.json.JsonConverter" => {
                Ok(Converter::Json { schemas: config.parse_or(&schemas_key, true)? })
            }
            "string" | "org.apache.kafka.connect.storage.StringConverter" => Ok(Converter::String),
            "bytes" | "org.apache.kafka.connect.converters.ByteArrayConverter" => Ok(Converter::Bytes),
            _ => Err(config.invalid(prefix, "unknown converter (json, string or bytes)")),
        }
    }

    /// Bytes from a topic as data (a sink's side).
    ///
    /// # Errors
    /// [`ConvertError`] for bytes this converter cannot read.
    pub fn to_data(&self, bytes: Option<&[u8]>) -> Result<Data, ConvertError> {
        let Some(bytes) = bytes else { return Ok(Data::Null) };
        match self {
            Converter::Bytes => Ok(Data::Bytes(Bytes::copy_from_slice(bytes))),
            Converter::String => {
                std::str::from_utf8(bytes).map(|s| Data::Text(s.to_string())).map_err(|_| ConvertError::NotText)
            }
            Converter::Json { schemas } => {
                let value: Value = serde_json::from_slice(bytes)?;
                if !schemas {
                    return Ok(Data::Json(value));
                }
                match value {
                    Value::Object(mut envelope)
                        if envelope.contains_key("schema") && envelope.contains_key("payload") =>
                    {
                        Ok(Data::Json(envelope.remove("payload").unwrap_or(Value::Null)))
                    }
                    _ => Err(ConvertError::NoEnvelope),
                }
            }
        }
    }

    /// Data as bytes for a topic (a source's side).
    ///
    /// # Errors
    /// [`ConvertError::NotText`] for bytes that are not UTF-8 given to the string converter.
    pub fn from_data(&self, data: &Data) -> Result<Option<Vec<u8>>, ConvertError> {
        let value = match (self, data) {
            (_, Data::Null) => return Ok(None),
            (Converter::Bytes | Converter::String, Data::Text(text)) => text.as_bytes().to_vec(),
            (Converter::Bytes, Data::Bytes(bytes)) => bytes.to_vec(),
            (Converter::Bytes | Converter::String, Data::Json(value)) => serde_json::to_vec(value)?,
            (Converter::String, Data::Bytes(bytes)) => {
                std::str::from_utf8(bytes).map_err(|_| ConvertError::NotText)?.as_bytes().to_vec()
            }
            (Converter::Json { schemas }, data) => {
                let (schema, payload) = match data {
                    Data::Json(value) => (schema_of(value), value.clone()),
                    Data::Text(text) => (json!({"type": "string", "optional": false}), Value::String(text.clone())),
                    Data::Bytes(bytes) => (json!({"type": "bytes", "optional": false}), Value::String(base64(bytes))),
                    Data::Null => unreachable!("handled above"),
                };
                if *schemas {
                    serde_json::to_vec(&json!({"schema": schema, "payload": payload}))?
                } else {
                    serde_json::to_vec(&payload)?
                }
            }
        };
        Ok(Some(value))
    }
}

/// A Kafka Connect schema (as JsonConverter writes it) for a JSON value.
fn schema_of(value: &Value) -> Value {
    match value {
        Value::Null => json!({"type": "string", "optional": true}),
        Value::Bool(_) => json!({"type": "boolean", "optional": false}),
        Value::Number(n) if n.is_i64() => json!({"type": "int64", "optional": false}),
        Value::Number(_) => json!({"type": "double", "optional": false}),
        Value::String(_) => json!({"type": "string", "optional": false}),
        Value::Array(items) => {
            let item = items.first().map_or_else(|| json!({"type": "string", "optional": true}), schema_of);
            json!({"type": "array", "items": item, "optional": false})
        }
        Value::Object(fields) => {
            let fields: Vec<Value> = fields
                .iter()
                .map(|(name, v)| {
                    let mut field = schema_of(v);
                    field["field"] = Value::String(name.clone());
                    field["optional"] = Value::Bool(true);
                    field
                })
                .collect();
            json!({"type": "struct", "fields": fields, "optional": false})
        }
    }
}

/// Standard base64 with padding: how JsonConverter writes bytes.
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> ConnectorConfig {
        crate::config::test_config("file-sink", pairs)
    }

    #[test]
    fn converters_are_chosen_by_kafka_names_and_short_names() {
        let c = config(&[
            ("value.converter", "org.apache.kafka.connect.json.JsonConverter"),
            ("value.converter.schemas.enable", "false"),
            ("key.converter", "string"),
        ]);
        assert_eq!(
            Converter::from_config(&c, "value.converter", Converter::Bytes).unwrap(),
            Converter::Json { schemas: false }
        );
        assert_eq!(Converter::from_config(&c, "key.converter", Converter::Bytes).unwrap(), Converter::String);
        assert_eq!(Converter::from_config(&c, "header.converter", Converter::Bytes).unwrap(), Converter::Bytes);
        let bad = config(&[("value.converter", "avro")]);
        let error = Converter::from_config(&bad, "value.converter", Converter::Bytes).unwrap_err().to_string();
        assert!(error.contains("value.converter") && error.contains("avro"), "{error}");
    }

    #[test]
    fn json_round_trips_with_and_without_the_envelope() {
        let value = json!({"id": 7, "name": "ann", "score": 1.5, "tags": ["a"]});
        for schemas in [true, false] {
            let converter = Converter::Json { schemas };
            let bytes = converter.from_data(&Data::Json(value.clone())).unwrap().unwrap();
            assert_eq!(converter.to_data(Some(&bytes)).unwrap(), Data::Json(value.clone()));
        }
        let enveloped = Converter::Json { schemas: true }.from_data(&Data::Json(value)).unwrap().unwrap();
        let parsed: Value = serde_json::from_slice(&enveloped).unwrap();
        assert_eq!(parsed["schema"]["type"], "struct");
        assert_eq!(parsed["schema"]["fields"][0], json!({"field": "id", "type": "int64", "optional": true}));
        assert!(matches!(
            Converter::Json { schemas: true }.to_data(Some(b"{\"id\": 1}")),
            Err(ConvertError::NoEnvelope)
        ));
        assert!(matches!(Converter::Json { schemas: false }.to_data(Some(b"{oops")), Err(ConvertError::Json(_))));
        assert_eq!(Converter::Json { schemas: true }.to_data(None).unwrap(), Data::Null);
        assert_eq!(Converter::Json { schemas: true }.from_data(&Data::Null).unwrap(), None);
    }

    #[test]
    fn strings_and_bytes_keep_what_they_are_given() {
        assert_eq!(Converter::String.to_data(Some("héllo".as_bytes())).unwrap(), Data::Text("héllo".into()));
        assert!(matches!(Converter::String.to_data(Some(&[0xff, 0xfe])), Err(ConvertError::NotText)));
        assert_eq!(Converter::Bytes.to_data(Some(&[0xff])).unwrap(), Data::Bytes(Bytes::from_static(&[0xff])));
        assert_eq!(Converter::Bytes.from_data(&Data::Text("x".into())).unwrap(), Some(b"x".to_vec()));
        let bytes = Converter::Json { schemas: false }.from_data(&Data::Bytes(Bytes::from_static(b"hello"))).unwrap();
        assert_eq!(bytes, Some(b"\"aGVsbG8=\"".to_vec()));
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
    }
}
