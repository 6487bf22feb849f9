//! Records as a stream job sees them: typed key and value, the event time, headers.

use bytes::Bytes;

/// Kafka record headers, in order.
pub type Headers = Vec<(String, Option<Bytes>)>;

/// One record flowing through a topology.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<K, V> {
    pub key: K,
    pub value: V,
    /// Event time, milliseconds since the epoch: the source record's timestamp (or what
    /// the source's timestamp extractor made of it), kept by stateless operators; an
    /// aggregate's result carries the time of the record that changed it.
    pub timestamp: i64,
    pub headers: Headers,
}

impl<K, V> Record<K, V> {
    pub fn new(key: K, value: V, timestamp: i64) -> Self {
        Self { key, value, timestamp, headers: Vec::new() }
    }
}

/// An update of a table row: the value after it (`None`: deleted) and before it
/// (`None`: the row is new). What a [`crate::KTable`]'s operators pass along, so that a
/// downstream aggregate can take the old value out and put the new one in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change<V> {
    pub new: Option<V>,
    pub old: Option<V>,
}
