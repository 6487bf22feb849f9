//! The columns of a tiered file: one row per record, with the batch fields a fetch needs
//! to rebuild the batches, and for `value.format=json` topics the values' top-level
//! fields as typed columns.
//!
//! ```text
//!  partition offset timestamp key value headers | batch_offset batch_last_offset ... | JSON fields
//!  ─────────────── what SQL shows ─────────────   ─── how to serve it to Kafka ───    typed columns
//! ```
//!
//! The JSON schema is inferred from the data and only ever widened (an integer field that
//! meets a float becomes a float; fields that disagree otherwise become strings), so an
//! older file's columns always cast to the newest file's.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use serde_json::Value;

/// Record columns, in file order.
pub const PARTITION: &str = "partition";
pub const OFFSET: &str = "offset";
pub const TIMESTAMP: &str = "timestamp";
pub const KEY: &str = "key";
pub const VALUE: &str = "value";
pub const HEADERS: &str = "headers";
/// Batch columns: the original batch's offsets, leader epoch and producer fields.
pub const BATCH_OFFSET: &str = "batch_offset";
pub const BATCH_LAST_OFFSET: &str = "batch_last_offset";
pub const BATCH_LEADER_EPOCH: &str = "batch_leader_epoch";
pub const BATCH_BASE_SEQUENCE: &str = "batch_base_sequence";
pub const PRODUCER_ID: &str = "producer_id";
pub const PRODUCER_EPOCH: &str = "producer_epoch";
pub const IS_TRANSACTIONAL: &str = "is_transactional";
pub const IS_CONTROL: &str = "is_control";
/// 0: the producer's create time; 1: the broker's log append time.
pub const TIMESTAMP_TYPE: &str = "timestamp_type";

/// The record columns SQL shows, before any typed JSON column.
pub const RECORD_COLUMNS: [&str; 6] = [PARTITION, OFFSET, TIMESTAMP, KEY, VALUE, HEADERS];
/// Every fixed column; a JSON field with one of these names is stored as `value_<name>`.
pub const FIXED_COLUMNS: [&str; 15] = [
    PARTITION,
    OFFSET,
    TIMESTAMP,
    KEY,
    VALUE,
    HEADERS,
    BATCH_OFFSET,
    BATCH_LAST_OFFSET,
    BATCH_LEADER_EPOCH,
    BATCH_BASE_SEQUENCE,
    PRODUCER_ID,
    PRODUCER_EPOCH,
    IS_TRANSACTIONAL,
    IS_CONTROL,
    TIMESTAMP_TYPE,
];

/// Milliseconds since the epoch, in UTC: Kafka's record timestamps.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// A header: its key (a string in Kafka's protocol) and its value bytes.
pub fn header_fields() -> Fields {
    Fields::from(vec![Field::new("key", DataType::Utf8, false), Field::new("value", DataType::Binary, true)])
}

pub fn headers_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Struct(header_fields()), false)))
}

/// The fixed columns of every tiered file.
pub fn record_fields() -> Vec<Field> {
    vec![
        Field::new(PARTITION, DataType::Int32, false),
        Field::new(OFFSET, DataType::Int64, false),
        Field::new(TIMESTAMP, timestamp_type(), false),
        Field::new(KEY, DataType::Binary, true),
        Field::new(VALUE, DataType::Binary, true),
        Field::new(HEADERS, headers_type(), false),
        Field::new(BATCH_OFFSET, DataType::Int64, false),
        Field::new(BATCH_LAST_OFFSET, DataType::Int64, false),
        Field::new(BATCH_LEADER_EPOCH, DataType::Int32, false),
        Field::new(BATCH_BASE_SEQUENCE, DataType::Int32, false),
        Field::new(PRODUCER_ID, DataType::Int64, false),
        Field::new(PRODUCER_EPOCH, DataType::Int16, false),
        Field::new(IS_TRANSACTIONAL, DataType::Boolean, false),
        Field::new(IS_CONTROL, DataType::Boolean, false),
        Field::new(TIMESTAMP_TYPE, DataType::Int8, false),
    ]
}

/// A file's schema: the fixed columns, then the typed JSON columns.
pub fn file_schema(json: Option<&JsonType>) -> SchemaRef {
    let mut fields = record_fields();
    if let Some(JsonType::Object(columns)) = json {
        fields.extend(columns.iter().map(|(name, ty)| Field::new(column_name(name), ty.data_type(), true)));
    }
    Arc::new(Schema::new(fields))
}

/// The column a top-level JSON field is stored under.
pub fn column_name(field: &str) -> String {
    if FIXED_COLUMNS.contains(&field) { format!("value_{field}") } else { field.to_string() }
}

/// The type of a JSON value, as inferred so far. Objects keep their fields in the order
/// first seen, so columns come out in a stable order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonType {
    /// Only nulls seen: becomes a string column if nothing else turns up.
    Null,
    Bool,
    Int,
    Float,
    Str,
    List(Box<JsonType>),
    Object(Vec<(String, JsonType)>),
}

impl JsonType {
    /// The type of one value.
    pub fn of(value: &Value) -> Self {
        match value {
            Value::Null => Self::Null,
            Value::Bool(_) => Self::Bool,
            Value::Number(n) if n.is_i64() => Self::Int,
            Value::Number(_) => Self::Float,
            Value::String(_) => Self::Str,
            Value::Array(items) => Self::List(Box::new(items.iter().fold(Self::Null, |t, v| t.widen(&Self::of(v))))),
            Value::Object(map) => Self::Object(map.iter().map(|(k, v)| (k.clone(), Self::of(v))).collect()),
        }
    }

    /// Widens `self` to hold `other` too.
    pub fn widen(&self, other: &Self) -> Self {
        match (self, other) {
            (Self::Null, t) | (t, Self::Null) => t.clone(),
            (a, b) if a == b => a.clone(),
            (Self::Int, Self::Float) | (Self::Float, Self::Int) => Self::Float,
            (Self::List(a), Self::List(b)) => Self::List(Box::new(a.widen(b))),
            (Self::Object(a), Self::Object(b)) => {
                let mut fields = a.clone();
                for (name, ty) in b {
                    match fields.iter_mut().find(|(n, _)| n == name) {
                        Some((_, existing)) => *existing = existing.widen(ty),
                        None => fields.push((name.clone(), ty.clone())),
                    }
                }
                Self::Object(fields)
            }
            _ => Self::Str,
        }
    }

    /// Folds one record value in: only objects contribute columns.
    pub fn observe(&mut self, value: &Value) {
        if value.is_object() {
            *self = self.widen(&Self::of(value));
        }
    }

    /// [`Self::observe`] straight from a value's bytes, without building the value: the
    /// type is widened in place as the parser walks it. Values that are not JSON objects
    /// contribute nothing.
    pub fn observe_bytes(&mut self, bytes: &[u8]) {
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return;
        }
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        // A value that turns out malformed part-way has widened the type with what it
        // showed before the error: fields that real records carry.
        let _ = serde::de::DeserializeSeed::deserialize(Observe(self), &mut deserializer);
    }

    /// The Arrow type of a column of this JSON type.
    pub fn data_type(&self) -> DataType {
        match self {
            Self::Null | Self::Str => DataType::Utf8,
            Self::Bool => DataType::Boolean,
            Self::Int => DataType::Int64,
            Self::Float => DataType::Float64,
            Self::List(item) => DataType::List(Arc::new(Field::new("item", item.data_type(), true))),
            Self::Object(fields) => DataType::Struct(
                fields.iter().map(|(name, ty)| Field::new(name, ty.data_type(), true)).collect::<Vec<_>>().into(),
            ),
        }
    }

    /// The JSON type of an Arrow column written by [`Self::data_type`], to resume
    /// widening from a file written earlier.
    pub fn from_data_type(data_type: &DataType) -> Self {
        match data_type {
            DataType::Boolean => Self::Bool,
            DataType::Int64 => Self::Int,
            DataType::Float64 => Self::Float,
            DataType::List(item) => Self::List(Box::new(Self::from_data_type(item.data_type()))),
            DataType::Struct(fields) => {
                Self::Object(fields.iter().map(|f| (f.name().clone(), Self::from_data_type(f.data_type()))).collect())
            }
            _ => Self::Str,
        }
    }

    /// The JSON columns of a file's schema (every column after the fixed ones), with the
    /// JSON field names they came from.
    pub fn from_file_schema(schema: &Schema) -> Option<Self> {
        let fixed = record_fields().len();
        if schema.fields().len() <= fixed {
            return None;
        }
        let columns = schema.fields()[fixed..]
            .iter()
            .map(|f| {
                let name = f.name().strip_prefix("value_").filter(|n| FIXED_COLUMNS.contains(n)).unwrap_or(f.name());
                (name.to_string(), Self::from_data_type(f.data_type()))
            })
            .collect();
        Some(Self::Object(columns))
    }

    /// `value` reshaped to decode as this type: parts that do not fit (an object where a
    /// string column is, after widening) become their JSON text, so no row fails.
    pub fn conform(&self, value: Value) -> Value {
        match (self, value) {
            (_, Value::Null) => Value::Null,
            (Self::Str, Value::String(s)) => Value::String(s),
            (Self::Str | Self::Null, other) => Value::String(other.to_string()),
            (Self::Float, Value::Number(n)) => Value::Number(n),
            (Self::Int, Value::Number(n)) if n.is_i64() => Value::Number(n),
            (Self::Bool, Value::Bool(b)) => Value::Bool(b),
            (Self::List(item), Value::Array(items)) => {
                Value::Array(items.into_iter().map(|v| item.conform(v)).collect())
            }
            (Self::Object(fields), Value::Object(mut map)) => {
                let mut out = serde_json::Map::with_capacity(fields.len());
                for (name, ty) in fields {
                    if let Some(v) = map.remove(name) {
                        out.insert(name.clone(), ty.conform(v));
                    }
                }
                Value::Object(out)
            }
            // Cannot happen after widening; dropped rather than failing the file.
            _ => Value::Null,
        }
    }
}

/// Widens a [`JsonType`] with the value being deserialized.
struct Observe<'a>(&'a mut JsonType);

impl<'de> serde::de::DeserializeSeed<'de> for Observe<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Observe<'_> {
    fn scalar(self, seen: JsonType) {
        if *self.0 != seen {
            *self.0 = self.0.widen(&seen);
        }
    }
}

impl<'de> serde::de::Visitor<'de> for Observe<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        self.scalar(JsonType::Bool);
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        self.scalar(JsonType::Int);
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.scalar(if i64::try_from(v).is_ok() { JsonType::Int } else { JsonType::Float });
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        self.scalar(JsonType::Float);
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        self.scalar(JsonType::Str);
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if matches!(self.0, JsonType::Null) {
            *self.0 = JsonType::List(Box::new(JsonType::Null));
        }
        match self.0 {
            JsonType::List(item) => while seq.next_element_seed(Observe(item))?.is_some() {},
            other => {
                *other = JsonType::Str;
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            }
        }
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if matches!(self.0, JsonType::Null) {
            *self.0 = JsonType::Object(Vec::new());
        }
        let JsonType::Object(fields) = self.0 else {
            *self.0 = JsonType::Str;
            while map.next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?.is_some() {}
            return Ok(());
        };
        while let Some(key) = map.next_key_seed(Key)? {
            let index = match fields.iter().position(|(name, _)| *name == *key) {
                Some(index) => index,
                None => {
                    fields.push((key.into_owned(), JsonType::Null));
                    fields.len() - 1
                }
            };
            map.next_value_seed(Observe(&mut fields[index].1))?;
        }
        Ok(())
    }
}

/// An object key, borrowed from the input when it has no escapes.
struct Key;

impl<'de> serde::de::DeserializeSeed<'de> for Key {
    type Value = std::borrow::Cow<'de, str>;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Key {
    type Value = std::borrow::Cow<'de, str>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Owned(v.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn widening_keeps_the_first_seen_order_and_never_narrows() {
        let mut ty = JsonType::Null;
        ty.observe(&json!({"user": "ana", "n": 1, "tags": ["a"]}));
        ty.observe(&json!({"n": 2.5, "extra": true}));
        ty.observe(&json!({"user": {"id": 7}}));
        ty.observe(&json!([1, 2])); // not an object: no columns
        assert_eq!(
            ty,
            JsonType::Object(vec![
                ("user".into(), JsonType::Str),
                ("n".into(), JsonType::Float),
                ("tags".into(), JsonType::List(Box::new(JsonType::Str))),
                ("extra".into(), JsonType::Bool),
            ])
        );
        let schema = file_schema(Some(&ty));
        assert_eq!(JsonType::from_file_schema(&schema), Some(ty.clone()));
        // An object where a string column is turns into its text.
        let conformed = ty.conform(json!({"user": {"id": 7}, "n": 3}));
        assert_eq!(conformed, json!({"user": "{\"id\":7}", "n": 3}));
    }

    #[test]
    fn observing_bytes_matches_observing_values() {
        let values = [
            json!({"user": "ana", "n": 1, "tags": ["a"], "deep": {"x": 1}}),
            json!({"n": 2.5, "extra": true, "deep": {"y": [1, 2.5]}}),
            json!({"user": {"id": 7}, "tags": "solo", "big": 18446744073709551615u64}),
            json!([1, 2]),
            json!("scalar"),
        ];
        let (mut from_values, mut from_bytes) = (JsonType::Null, JsonType::Null);
        for value in &values {
            from_values.observe(value);
            from_bytes.observe_bytes(value.to_string().as_bytes());
        }
        assert_eq!(from_bytes, from_values);
        from_bytes.observe_bytes(b"{\"user\": \"x\", broken");
        assert_eq!(from_bytes, from_values, "what a broken value showed was already known");
    }

    #[test]
    fn json_fields_named_like_record_columns_are_renamed() {
        let ty = JsonType::of(&json!({"offset": 1, "value": "x", "amount": 2}));
        let schema = file_schema(Some(&ty));
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).skip(FIXED_COLUMNS.len()).collect();
        assert_eq!(names, ["value_offset", "value_value", "amount"]);
        assert_eq!(JsonType::from_file_schema(&schema), Some(ty));
    }
}
