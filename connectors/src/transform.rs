//! Single-message transforms, configured as in Kafka Connect:
//!
//! ```text
//!  transforms = addSource,route
//!  transforms.addSource.type = InsertField$Value        (or the full Kafka class name)
//!  transforms.addSource.static.field = source
//!  transforms.addSource.static.value = file
//!  transforms.route.type = RegexRouter
//!  transforms.route.regex = (.*)
//!  transforms.route.replacement = mirror-$1
//!  transforms.route.predicate = notTombstone           (apply only where it holds)
//!  predicates = notTombstone
//!  predicates.notTombstone.type = RecordIsTombstone
//!  transforms.route.negate = true
//! ```
//!
//! Built: `InsertField$Key|$Value` (static, topic, partition, offset and timestamp fields),
//! `ReplaceField$Key|$Value` (`renames`, `exclude`, `include`), `Filter`, `RegexRouter`,
//! `TimestampRouter`; predicates `TopicNameMatches`, `HasHeaderKey`, `RecordIsTombstone`.
//! Field transforms work on JSON objects (Kafka Connect's schemaless maps); a tombstone
//! passes through them unchanged.

use regex::Regex;
use serde_json::Value;

use crate::config::{ConfigError, ConnectorConfig};
use crate::converter::Data;
use crate::record::ConnectRecord;

/// Why a transform failed on a record; the record goes to the dead-letter topic when
/// `errors.tolerance=all`.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    #[error("transform {transform}: {reason}")]
    Unsupported { transform: String, reason: &'static str },
}

/// Which part of a record a field transform changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Key,
    Value,
}

#[derive(Debug, Clone)]
enum Transform {
    InsertField {
        side: Side,
        static_field: Option<(String, Value)>,
        topic_field: Option<String>,
        partition_field: Option<String>,
        offset_field: Option<String>,
        timestamp_field: Option<String>,
    },
    ReplaceField {
        side: Side,
        renames: Vec<(String, String)>,
        exclude: Vec<String>,
        include: Vec<String>,
    },
    Filter,
    RegexRouter {
        regex: Regex,
        replacement: String,
    },
    TimestampRouter {
        topic_format: String,
        timestamp_format: String,
    },
}

#[derive(Debug, Clone)]
enum Predicate {
    TopicNameMatches(Regex),
    HasHeaderKey(String),
    RecordIsTombstone,
}

impl Predicate {
    fn holds(&self, record: &ConnectRecord) -> bool {
        match self {
            Predicate::TopicNameMatches(pattern) => pattern.is_match(&record.topic),
            Predicate::HasHeaderKey(name) => record.headers.iter().any(|(k, _)| k == name),
            Predicate::RecordIsTombstone => record.value == Data::Null,
        }
    }
}

#[derive(Debug, Clone)]
struct Step {
    name: String,
    transform: Transform,
    /// Applies only where the predicate holds (or, negated, where it does not).
    predicate: Option<(Predicate, bool)>,
}

/// A connector's transforms, in order.
#[derive(Debug, Clone, Default)]
pub struct Chain {
    steps: Vec<Step>,
}

/// A class name without Kafka's package: `org.apache.kafka.connect.transforms.Filter` is
/// `Filter`.
fn short_class(class: &str) -> &str {
    class.rsplit('.').next().unwrap_or(class).trim()
}

/// A regex that must match a whole name, as Java's `Matcher.matches()`.
fn full_match(config: &ConnectorConfig, key: &str) -> Result<Regex, ConfigError> {
    let pattern = config.required(key)?;
    Regex::new(&format!("^(?:{pattern})$")).map_err(|_| config.invalid(key, "not a valid regular expression"))
}

impl Chain {
    /// The chain a connector's `transforms` and `predicates` settings describe.
    ///
    /// # Errors
    /// [`ConfigError`] naming the transform setting that is missing or wrong.
    pub fn from_config(config: &ConnectorConfig) -> Result<Self, ConfigError> {
        let mut steps = Vec::new();
        for name in config.list("transforms") {
            let key = |setting: &str| format!("transforms.{name}.{setting}");
            let class = config.required(&key("type"))?;
            let opt = |setting: &str| config.get(&key(setting)).map(str::to_string).filter(|v| !v.is_empty());
            let side = |class: &str| if class.ends_with("$Key") { Side::Key } else { Side::Value };
            let short = short_class(class);
            let transform = match short.split('$').next().unwrap_or(short) {
                "InsertField" | "insert-field" => {
                    let static_field = match (opt("static.field"), opt("static.value")) {
                        (Some(field), value) => Some((field, value.map_or(Value::Null, Value::String))),
                        (None, Some(_)) => {
                            return Err(config.invalid(&key("static.value"), "needs static.field"));
                        }
                        (None, None) => None,
                    };
                    Transform::InsertField {
                        side: side(short),
                        static_field,
                        topic_field: opt("topic.field"),
                        partition_field: opt("partition.field"),
                        offset_field: opt("offset.field"),
                        timestamp_field: opt("timestamp.field"),
                    }
                }
                "ReplaceField" | "replace-field" => {
                    let mut renames = Vec::new();
                    for pair in config.list(&key("renames")) {
                        let (from, to) =
                            pair.split_once(':').ok_or_else(|| config.invalid(&key("renames"), "not FROM:TO pairs"))?;
                        renames.push((from.trim().to_string(), to.trim().to_string()));
                    }
                    let mut exclude = config.list(&key("exclude"));
                    exclude.extend(config.list(&key("blacklist")));
                    let mut include = config.list(&key("include"));
                    include.extend(config.list(&key("whitelist")));
                    Transform::ReplaceField { side: side(short), renames, exclude, include }
                }
                "Filter" | "filter" => Transform::Filter,
                "RegexRouter" | "regex-router" => Transform::RegexRouter {
                    regex: full_match(config, &key("regex"))?,
                    replacement: config.required(&key("replacement"))?.to_string(),
                },
                "TimestampRouter" | "timestamp-router" => Transform::TimestampRouter {
                    topic_format: opt("topic.format").unwrap_or_else(|| "${topic}-${timestamp}".into()),
                    timestamp_format: opt("timestamp.format").unwrap_or_else(|| "yyyyMMdd".into()),
                },
                _ => return Err(config.invalid(&key("type"), "unknown transform")),
            };
            let predicate = match opt("predicate") {
                None => None,
                Some(predicate) => {
                    let pkey = |setting: &str| format!("predicates.{predicate}.{setting}");
                    if !config.list("predicates").contains(&predicate) {
                        return Err(config.invalid(&key("predicate"), "not listed in predicates"));
                    }
                    let parsed = match short_class(config.required(&pkey("type"))?) {
                        "TopicNameMatches" => Predicate::TopicNameMatches(full_match(config, &pkey("pattern"))?),
                        "HasHeaderKey" => Predicate::HasHeaderKey(config.required(&pkey("name"))?.to_string()),
                        "RecordIsTombstone" => Predicate::RecordIsTombstone,
                        _ => return Err(config.invalid(&pkey("type"), "unknown predicate")),
                    };
                    Some((parsed, config.parse_or(&key("negate"), false)?))
                }
            };
            steps.push(Step { name, transform, predicate });
        }
        Ok(Self { steps })
    }

    /// Runs the chain: the transformed record, or `None` when a filter dropped it.
    ///
    /// # Errors
    /// [`TransformError`] for a record a transform cannot change.
    pub fn apply(&self, mut record: ConnectRecord) -> Result<Option<ConnectRecord>, TransformError> {
        for step in &self.steps {
            if let Some((predicate, negate)) = &step.predicate
                && predicate.holds(&record) == *negate
            {
                continue;
            }
            match &step.transform {
                Transform::Filter => return Ok(None),
                Transform::RegexRouter { regex, replacement } => {
                    if regex.is_match(&record.topic) {
                        record.topic = regex.replace(&record.topic, replacement.as_str()).into_owned();
                    }
                }
                Transform::TimestampRouter { topic_format, timestamp_format } => {
                    let timestamp = record.timestamp.ok_or(TransformError::Unsupported {
                        transform: step.name.clone(),
                        reason: "the record has no timestamp",
                    })?;
                    let formatted = format_timestamp(timestamp, timestamp_format);
                    record.topic = topic_format.replace("${topic}", &record.topic).replace("${timestamp}", &formatted);
                }
                Transform::InsertField { side, .. } | Transform::ReplaceField { side, .. } => {
                    let (topic, partition, offset, timestamp) =
                        (record.topic.clone(), record.partition, record.offset, record.timestamp);
                    let data = if *side == Side::Key { &mut record.key } else { &mut record.value };
                    let fields = match data {
                        Data::Null => continue,
                        Data::Json(Value::Object(fields)) => fields,
                        _ => {
                            return Err(TransformError::Unsupported {
                                transform: step.name.clone(),
                                reason: "works on JSON objects only (use the JSON converter)",
                            });
                        }
                    };
                    match &step.transform {
                        Transform::InsertField {
                            static_field,
                            topic_field,
                            partition_field,
                            offset_field,
                            timestamp_field,
                            ..
                        } => {
                            if let Some((name, value)) = static_field {
                                fields.insert(name.clone(), value.clone());
                            }
                            if let Some(name) = topic_field {
                                fields.insert(name.clone(), Value::String(topic));
                            }
                            let optional = |v: Option<i64>| v.map_or(Value::Null, Value::from);
                            if let Some(name) = partition_field {
                                fields.insert(name.clone(), optional(partition.map(i64::from)));
                            }
                            if let Some(name) = offset_field {
                                fields.insert(name.clone(), optional(offset));
                            }
                            if let Some(name) = timestamp_field {
                                fields.insert(name.clone(), optional(timestamp));
                            }
                        }
                        Transform::ReplaceField { renames, exclude, include, .. } => {
                            let kept: serde_json::Map<String, Value> = std::mem::take(fields)
                                .into_iter()
                                .filter(|(k, _)| !exclude.contains(k) && (include.is_empty() || include.contains(k)))
                                .map(|(k, v)| match renames.iter().find(|(from, _)| *from == k) {
                                    Some((_, to)) => (to.clone(), v),
                                    None => (k, v),
                                })
                                .collect();
                            *fields = kept;
                        }
                        _ => unreachable!("matched above"),
                    }
                }
            }
        }
        Ok(Some(record))
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// A timestamp in UTC, formatted with Java's `SimpleDateFormat` letters (what
/// `TimestampRouter` takes): `yyyy`, `yy`, `MM`, `dd`, `HH`, `mm`, `ss`, `SSS`, and text in
/// single quotes.
fn format_timestamp(timestamp_ms: i64, pattern: &str) -> String {
    let Some(time) = chrono::DateTime::from_timestamp_millis(timestamp_ms) else { return timestamp_ms.to_string() };
    let mut out = String::new();
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            let end = chars[i + 1..].iter().position(|&q| q == '\'').map_or(chars.len(), |p| i + 1 + p);
            out.extend(&chars[i + 1..end]);
            i = end + 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&r| r == c).count();
        let piece = match (c, run) {
            ('y', 2) => time.format("%y").to_string(),
            ('y', _) => time.format("%Y").to_string(),
            ('M', _) => time.format("%m").to_string(),
            ('d', _) => time.format("%d").to_string(),
            ('H', _) => time.format("%H").to_string(),
            ('m', _) => time.format("%M").to_string(),
            ('s', _) => time.format("%S").to_string(),
            ('S', _) => format!("{:03}", timestamp_ms.rem_euclid(1000)),
            _ => std::iter::repeat_n(c, run).collect(),
        };
        out.push_str(&piece);
        i += run;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(pairs: &[(&str, &str)]) -> ConnectorConfig {
        crate::config::test_config("file-source", pairs)
    }

    fn record(value: Value) -> ConnectRecord {
        ConnectRecord {
            partition: Some(2),
            offset: Some(41),
            timestamp: Some(1_700_000_000_123),
            ..ConnectRecord::new("orders", Data::Json(value))
        }
    }

    #[test]
    fn insert_and_replace_fields_then_route() {
        let chain = Chain::from_config(&config(&[
            ("transforms", "add,fix,route"),
            ("transforms.add.type", "org.apache.kafka.connect.transforms.InsertField$Value"),
            ("transforms.add.static.field", "source"),
            ("transforms.add.static.value", "file"),
            ("transforms.add.topic.field", "from"),
            ("transforms.add.offset.field", "at"),
            ("transforms.fix.type", "ReplaceField$Value"),
            ("transforms.fix.renames", "id:order_id"),
            ("transforms.fix.exclude", "secret"),
            ("transforms.route.type", "org.apache.kafka.connect.transforms.RegexRouter"),
            ("transforms.route.regex", "(ord)ers"),
            ("transforms.route.replacement", "mirror-$1"),
        ]))
        .unwrap();
        let out = chain.apply(record(json!({"id": 1, "secret": "x"}))).unwrap().unwrap();
        assert_eq!(out.value, Data::Json(json!({"order_id": 1, "source": "file", "from": "orders", "at": 41})));
        assert_eq!(out.topic, "mirror-ord");
        // A tombstone passes the field transforms untouched; a name that does not match
        // the whole regex is not routed.
        let tombstone = ConnectRecord::new("orders-x", Data::Null);
        let out = chain.apply(tombstone).unwrap().unwrap();
        assert_eq!((out.value, out.topic.as_str()), (Data::Null, "orders-x"));
        let text = ConnectRecord::new("orders", Data::Text("plain".into()));
        assert!(chain.apply(text).unwrap_err().to_string().contains("JSON objects only"));
    }

    #[test]
    fn filters_follow_their_predicates() {
        let chain = Chain::from_config(&config(&[
            ("transforms", "dropTombstones,onlyOrders"),
            ("transforms.dropTombstones.type", "Filter"),
            ("transforms.dropTombstones.predicate", "isTombstone"),
            ("transforms.onlyOrders.type", "org.apache.kafka.connect.transforms.Filter"),
            ("transforms.onlyOrders.predicate", "isOrders"),
            ("transforms.onlyOrders.negate", "true"),
            ("predicates", "isTombstone,isOrders"),
            ("predicates.isTombstone.type", "org.apache.kafka.connect.transforms.predicates.RecordIsTombstone"),
            ("predicates.isOrders.type", "TopicNameMatches"),
            ("predicates.isOrders.pattern", "orders.*"),
        ]))
        .unwrap();
        assert!(chain.apply(ConnectRecord::new("orders", Data::Null)).unwrap().is_none());
        assert!(chain.apply(ConnectRecord::new("payments", Data::Text("x".into()))).unwrap().is_none());
        assert!(chain.apply(ConnectRecord::new("orders-eu", Data::Text("x".into()))).unwrap().is_some());
    }

    #[test]
    fn timestamp_router_formats_like_simple_date_format() {
        let chain = Chain::from_config(&config(&[
            ("transforms", "daily"),
            ("transforms.daily.type", "TimestampRouter"),
            ("transforms.daily.topic.format", "${topic}_${timestamp}"),
            ("transforms.daily.timestamp.format", "yyyy-MM-dd'T'HH.SSS"),
        ]))
        .unwrap();
        let out = chain.apply(record(json!({}))).unwrap().unwrap();
        assert_eq!(out.topic, "orders_2023-11-14T22.123");
        let default =
            Chain::from_config(&config(&[("transforms", "t"), ("transforms.t.type", "TimestampRouter")])).unwrap();
        assert_eq!(default.apply(record(json!({}))).unwrap().unwrap().topic, "orders-20231114");
        let untimed = ConnectRecord::new("orders", Data::Null);
        assert!(default.apply(untimed).unwrap_err().to_string().contains("no timestamp"));
    }

    #[test]
    fn bad_transform_settings_are_named() {
        let error = |pairs: &[(&str, &str)]| Chain::from_config(&config(pairs)).unwrap_err().to_string();
        assert!(error(&[("transforms", "x")]).contains("transforms.x.type"));
        assert!(error(&[("transforms", "x"), ("transforms.x.type", "Flatten")]).contains("unknown transform"));
        let regex = error(&[("transforms", "r"), ("transforms.r.type", "RegexRouter"), ("transforms.r.regex", "(")]);
        assert!(regex.contains("transforms.r.regex"), "{regex}");
        let unlisted = error(&[("transforms", "f"), ("transforms.f.type", "Filter"), ("transforms.f.predicate", "p")]);
        assert!(unlisted.contains("not listed in predicates"), "{unlisted}");
        assert!(Chain::from_config(&config(&[])).unwrap().is_empty());
    }
}
