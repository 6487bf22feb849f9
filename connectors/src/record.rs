//! A record as connectors, converters and transforms see it: Kafka Connect's
//! `ConnectRecord`, with key and value as [`Data`].

use bytes::Bytes;

use crate::converter::Data;

/// One record on its way into a topic (from a source) or out of one (to a sink).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectRecord {
    pub topic: String,
    /// The partition; `None` lets the producer's partitioner choose.
    pub partition: Option<i32>,
    /// The record's offset in its topic (sinks only).
    pub offset: Option<i64>,
    pub key: Data,
    pub value: Data,
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Milliseconds since the epoch.
    pub timestamp: Option<i64>,
}

impl ConnectRecord {
    /// A record for `topic` with a value and nothing else.
    pub fn new(topic: impl Into<String>, value: Data) -> Self {
        Self {
            topic: topic.into(),
            partition: None,
            offset: None,
            key: Data::Null,
            value,
            headers: Vec::new(),
            timestamp: None,
        }
    }
}
