//! One transactional id's state, its transitions, and its records in the compacted
//! internal topic `__transaction_state`, in Kafka's layout so Kafka's tools read ours:
//!
//! ```text
//! key   (v0): version i16 = 0 | transactional_id string
//! value (v0): version i16 = 0 | producer_id i64 | producer_epoch i16 | timeout_ms i32
//!             | status i8 | partitions: i32 count of (topic string, i32 count of i32)
//!             | last_update_ms i64 | start_ms i64
//! ```
//! (strings are an i16 length and UTF-8). A transactional id lives in partition
//! `abs(java_hash(id)) % 50`, whose leader is its coordinator.
//!
//! ```text
//!        InitProducerId            AddPartitions          EndTxn
//!  Empty ───────────────> Empty ─────────────────> Ongoing ─────> PrepareCommit ──markers──> CompleteCommit
//!    ^  CompleteCommit/Abort ──InitProducerId──> Empty │          PrepareAbort  ──markers──> CompleteAbort
//!    └──────────────────────────────────────────────── timeout or fence: PrepareAbort (epoch + 1)
//! ```

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, BufMut};

pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";
/// Kafka's `transaction.state.log.num.partitions`.
pub const TRANSACTION_STATE_PARTITIONS: i32 = 50;
/// Kafka's `transaction.max.timeout.ms`: the longest `transaction.timeout.ms` accepted.
pub const MAX_TRANSACTION_TIMEOUT_MS: i32 = 900_000;

/// Where a transaction is in its life (Kafka's `TransactionState`, same numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TxnState {
    pub fn code(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    pub fn from_code(code: i8) -> Option<Self> {
        Some(match code {
            0 => TxnState::Empty,
            1 => TxnState::Ongoing,
            2 => TxnState::PrepareCommit,
            3 => TxnState::PrepareAbort,
            4 => TxnState::CompleteCommit,
            5 => TxnState::CompleteAbort,
            6 => TxnState::Dead,
            7 => TxnState::PrepareEpochFence,
            _ => return None,
        })
    }

    /// The name DescribeTransactions and ListTransactions use.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    /// Markers are being written: the transaction is decided but not finished.
    pub fn is_preparing(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence)
    }
}

/// One transactional id as its coordinator keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// The partitions written in the current transaction.
    pub partitions: BTreeSet<(String, i32)>,
    pub start_ms: i64,
    pub last_update_ms: i64,
}

/// Java's `String.hashCode`, which Kafka uses to place a transactional id.
fn java_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// The `__transaction_state` partition of `transactional_id`.
pub fn partition_for(transactional_id: &str) -> i32 {
    (java_hash(transactional_id).unsigned_abs() % TRANSACTION_STATE_PARTITIONS as u32) as i32
}

/// The config overrides of `__transaction_state`, as Kafka sets them.
pub fn topic_configs() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("cleanup.policy".to_string(), "compact".to_string()),
        // Kafka's transaction.state.log.segment.bytes.
        ("segment.bytes".to_string(), "104857600".to_string()),
    ])
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.put_i16(s.len() as i16);
    out.put_slice(s.as_bytes());
}

fn get_string(buf: &mut &[u8]) -> Option<String> {
    if buf.remaining() < 2 {
        return None;
    }
    let len = usize::try_from(buf.get_i16()).ok()?;
    if buf.remaining() < len {
        return None;
    }
    let s = String::from_utf8(buf[..len].to_vec()).ok()?;
    buf.advance(len);
    Some(s)
}

pub fn encode_key(transactional_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(4 + transactional_id.len());
    key.put_i16(0);
    put_string(&mut key, transactional_id);
    key
}

pub fn decode_key(mut key: &[u8]) -> Option<String> {
    if key.remaining() < 2 || key.get_i16() != 0 {
        return None;
    }
    get_string(&mut key)
}

impl TxnMetadata {
    pub fn encode_value(&self) -> Vec<u8> {
        let mut value = Vec::with_capacity(64);
        value.put_i16(0);
        value.put_i64(self.producer_id);
        value.put_i16(self.producer_epoch);
        value.put_i32(self.timeout_ms);
        value.put_i8(self.state.code());
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in &self.partitions {
            by_topic.entry(topic).or_default().push(*partition);
        }
        value.put_i32(by_topic.len() as i32);
        for (topic, partitions) in by_topic {
            put_string(&mut value, topic);
            value.put_i32(partitions.len() as i32);
            partitions.iter().for_each(|p| value.put_i32(*p));
        }
        value.put_i64(self.last_update_ms);
        value.put_i64(self.start_ms);
        value
    }

    pub fn decode_value(transactional_id: &str, mut value: &[u8]) -> Option<Self> {
        if value.remaining() < 2 + 8 + 2 + 4 + 1 + 4 || value.get_i16() != 0 {
            return None;
        }
        let producer_id = value.get_i64();
        let producer_epoch = value.get_i16();
        let timeout_ms = value.get_i32();
        let state = TxnState::from_code(value.get_i8())?;
        let topics = value.get_i32();
        let mut partitions = BTreeSet::new();
        for _ in 0..topics.max(0) {
            let topic = get_string(&mut value)?;
            if value.remaining() < 4 {
                return None;
            }
            let count = value.get_i32();
            if count < 0 || value.remaining() < count as usize * 4 {
                return None;
            }
            for _ in 0..count {
                partitions.insert((topic.clone(), value.get_i32()));
            }
        }
        if value.remaining() < 16 {
            return None;
        }
        let last_update_ms = value.get_i64();
        let start_ms = value.get_i64();
        Some(Self {
            transactional_id: transactional_id.to_string(),
            producer_id,
            producer_epoch,
            timeout_ms,
            state,
            partitions,
            start_ms,
            last_update_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_in_kafkas_layout() {
        let meta = TxnMetadata {
            transactional_id: "tx-1".into(),
            producer_id: 4000,
            producer_epoch: 3,
            timeout_ms: 60_000,
            state: TxnState::Ongoing,
            partitions: BTreeSet::from([("a".to_string(), 0), ("a".to_string(), 2), ("b".to_string(), 1)]),
            start_ms: 10,
            last_update_ms: 20,
        };
        let key = encode_key("tx-1");
        assert_eq!(&key[..2], &[0, 0], "key version 0");
        assert_eq!(decode_key(&key).as_deref(), Some("tx-1"));
        let value = meta.encode_value();
        assert_eq!(TxnMetadata::decode_value("tx-1", &value), Some(meta));
        assert_eq!(TxnMetadata::decode_value("tx-1", &value[..value.len() - 1]), None);
        assert!((0..TRANSACTION_STATE_PARTITIONS).contains(&partition_for("anything")));
        for state in 0..8 {
            assert_eq!(TxnState::from_code(state).map(TxnState::code), Some(state));
        }
    }
}
