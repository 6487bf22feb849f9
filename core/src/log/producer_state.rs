//! Idempotent producers: per producer id, its epoch and its last few batches' sequence
//! numbers, so a retried batch is acknowledged without a second append and a gap in the
//! sequence is refused (Kafka's ProducerStateManager).
//!
//! A pure table: [`ProducerStateTable::check`] looks at a batch header and says what to
//! do; [`ProducerStateTable::record`] applies an appended batch. The log calls both under
//! its lock, so the check and the offsets it assigns cannot interleave with another append.
//!
//! Transactions are tracked here too: a transactional producer's first batch opens its
//! transaction at that offset, and the coordinator's marker (a control batch) closes it.
//! The first offset of the oldest open transaction bounds the last stable offset, the
//! point `read_committed` consumers may read up to.
//!
//! The table is saved as a snapshot at each segment roll (the state as of the new
//! segment's base) and loaded on open, so recovery replays only the segments after the
//! recovery point. Without a snapshot the whole log is replayed.

use std::collections::{BTreeMap, HashMap, VecDeque};

use bytes::{Buf, BufMut};

use crate::record::{BatchIter, RecordBatch};

/// Batches remembered per producer: Kafka's bound on a producer's requests in flight
/// (`max.in.flight.requests.per.connection` may be at most 5 with idempotence).
pub const BATCHES_REMEMBERED: usize = 5;

const SNAPSHOT_VERSION: u16 = 1;

/// A batch already in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub first_offset: i64,
    pub last_offset: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchMetadata>,
    /// The epoch of the coordinator that wrote this producer's last marker.
    coordinator_epoch: i32,
    /// Where the producer's open transaction starts, if one is open.
    txn_first_offset: Option<i64>,
}

/// What a transaction marker says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnMarker {
    pub commit: bool,
    pub coordinator_epoch: i32,
}

/// Control record key types (Kafka's `ControlRecordType`).
const ABORT_MARKER: i16 = 0;
const COMMIT_MARKER: i16 = 1;

impl TxnMarker {
    /// The key and value of the one record of a marker batch, in Kafka's layout:
    /// key = version i16 (0) | type i16; value = version i16 (0) | coordinator epoch i32.
    pub fn encode(&self) -> ([u8; 4], [u8; 6]) {
        let mut key = [0u8; 4];
        key[2..].copy_from_slice(&(if self.commit { COMMIT_MARKER } else { ABORT_MARKER }).to_be_bytes());
        let mut value = [0u8; 6];
        value[2..].copy_from_slice(&self.coordinator_epoch.to_be_bytes());
        (key, value)
    }

    /// The marker in a control batch; `None` for other control records (or a damaged one).
    pub fn decode(batch: &RecordBatch<'_>) -> Option<Self> {
        if !batch.is_control() {
            return None;
        }
        let records = batch.records(1 << 16).ok()?;
        let record = records.iter().next()?.ok()?;
        let mut key = record.key?;
        if key.remaining() < 4 {
            return None;
        }
        let _version = key.get_i16();
        let commit = match key.get_i16() {
            ABORT_MARKER => false,
            COMMIT_MARKER => true,
            _ => return None,
        };
        let coordinator_epoch = match record.value {
            Some(mut value) if value.remaining() >= 6 => {
                value.get_i16();
                value.get_i32()
            }
            _ => -1,
        };
        Some(Self { commit, coordinator_epoch })
    }
}

/// A transaction closed by a marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The marker's offset.
    pub last_offset: i64,
    pub aborted: bool,
}

/// What to do with a producer's batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// New and in order (or not idempotent): append it.
    Append,
    /// A retry of a batch already appended: acknowledge it again, append nothing.
    Duplicate(BatchMetadata),
    /// Its epoch is older than the producer's current one (a zombie).
    StaleEpoch { current: i16 },
    /// Its first sequence is not the one expected next.
    OutOfOrder { expected: i32 },
}

/// Why a marker cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerCheck {
    Append,
    /// The producer has moved to a newer epoch than the marker's.
    StaleEpoch {
        current: i16,
    },
    /// A coordinator older than the one that wrote the producer's last marker.
    StaleCoordinator {
        current: i32,
    },
}

/// The producer state of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStateTable {
    producers: HashMap<i64, ProducerEntry>,
    /// Open transactions: first offset -> producer id.
    ongoing: BTreeMap<i64, i64>,
}

fn last_sequence(batch: &RecordBatch<'_>) -> i32 {
    // Sequences wrap at i32::MAX to 0, as in Kafka.
    ((i64::from(batch.base_sequence()) + i64::from(batch.last_offset_delta())) % (i64::from(i32::MAX) + 1)) as i32
}

fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX { 0 } else { sequence + 1 }
}

impl ProducerStateTable {
    /// Decides what to do with `batch` given the state so far.
    pub fn check(&self, batch: &RecordBatch<'_>) -> SequenceCheck {
        let producer_id = batch.producer_id();
        if producer_id < 0 {
            return SequenceCheck::Append;
        }
        let Some(entry) = self.producers.get(&producer_id) else { return SequenceCheck::Append };
        let epoch = batch.producer_epoch();
        if epoch < entry.epoch {
            return SequenceCheck::StaleEpoch { current: entry.epoch };
        }
        if batch.base_sequence() < 0 {
            // Without a sequence (a transaction's offsets) only the epoch is checked.
            return SequenceCheck::Append;
        }
        if epoch > entry.epoch {
            // A bumped epoch starts its sequence again at 0.
            return if batch.base_sequence() == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::OutOfOrder { expected: 0 }
            };
        }
        let first = batch.base_sequence();
        let last = last_sequence(batch);
        if let Some(seen) = entry.batches.iter().find(|b| b.first_sequence == first && b.last_sequence == last) {
            return SequenceCheck::Duplicate(*seen);
        }
        let expected = entry.batches.back().map_or(first, |b| next_sequence(b.last_sequence));
        if first == expected { SequenceCheck::Append } else { SequenceCheck::OutOfOrder { expected } }
    }

    /// Decides whether a marker for `producer_id` at `epoch` may be written.
    pub fn check_marker(&self, producer_id: i64, epoch: i16, marker: TxnMarker) -> MarkerCheck {
        let Some(entry) = self.producers.get(&producer_id) else { return MarkerCheck::Append };
        if epoch < entry.epoch {
            MarkerCheck::StaleEpoch { current: entry.epoch }
        } else if marker.coordinator_epoch < entry.coordinator_epoch {
            MarkerCheck::StaleCoordinator { current: entry.coordinator_epoch }
        } else {
            MarkerCheck::Append
        }
    }

    /// Records a batch appended at its (assigned) offsets; a marker returns the
    /// transaction it closed.
    pub fn record(&mut self, batch: &RecordBatch<'_>) -> Option<CompletedTxn> {
        self.record_at(batch, batch.base_offset())
    }

    /// As [`Self::record`], for a batch that will be written with `base_offset`.
    pub fn record_at(&mut self, batch: &RecordBatch<'_>, base_offset: i64) -> Option<CompletedTxn> {
        let producer_id = batch.producer_id();
        if producer_id < 0 {
            return None;
        }
        if batch.is_control() {
            let marker = TxnMarker::decode(batch)?;
            let entry = self.producers.entry(producer_id).or_default();
            if batch.producer_epoch() != entry.epoch {
                // A marker after a fence carries the bumped epoch, which fences the zombie.
                entry.epoch = batch.producer_epoch();
                entry.batches.clear();
            }
            entry.coordinator_epoch = marker.coordinator_epoch;
            let first_offset = entry.txn_first_offset.take()?;
            self.ongoing.remove(&first_offset);
            return Some(CompletedTxn { producer_id, first_offset, last_offset: base_offset, aborted: !marker.commit });
        }
        let entry = self.producers.entry(producer_id).or_default();
        if batch.is_transactional() && entry.txn_first_offset.is_none() {
            entry.txn_first_offset = Some(base_offset);
            self.ongoing.insert(base_offset, producer_id);
        }
        if batch.base_sequence() < 0 {
            return None;
        }
        if batch.producer_epoch() != entry.epoch {
            entry.epoch = batch.producer_epoch();
            entry.batches.clear();
        }
        if entry.batches.len() == BATCHES_REMEMBERED {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchMetadata {
            first_sequence: batch.base_sequence(),
            last_sequence: last_sequence(batch),
            first_offset: base_offset,
            last_offset: base_offset + i64::from(batch.last_offset_delta()),
        });
        None
    }

    /// Replays stored batches (with their offsets), returning the transactions closed.
    pub fn replay(&mut self, bytes: &[u8], completed: &mut Vec<CompletedTxn>) {
        for batch in BatchIter::new(bytes).map_while(Result::ok) {
            completed.extend(self.record(&batch));
        }
    }

    /// The first offset of the oldest open transaction.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing.keys().next().copied()
    }

    /// Open transactions as (producer id, first offset), oldest first.
    pub fn ongoing(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.ongoing.iter().map(|(first, pid)| (*pid, *first))
    }

    /// The producer's current epoch, if it has state here.
    pub fn epoch(&self, producer_id: i64) -> Option<i16> {
        self.producers.get(&producer_id).map(|e| e.epoch)
    }

    /// The snapshot file's bytes: `version u16 | crc32c u32 of the rest | count u32 |`
    /// per producer `id i64 | epoch i16 | coordinator epoch i32 | txn first offset i64
    /// (-1: none) | batch count u8 | batches (first seq i32, last seq i32, first offset
    /// i64, last offset i64)`.
    pub fn to_snapshot(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(4 + self.producers.len() * 32);
        body.put_u32(self.producers.len() as u32);
        let mut ids: Vec<&i64> = self.producers.keys().collect();
        ids.sort_unstable();
        for id in ids {
            let entry = &self.producers[id];
            body.put_i64(*id);
            body.put_i16(entry.epoch);
            body.put_i32(entry.coordinator_epoch);
            body.put_i64(entry.txn_first_offset.unwrap_or(-1));
            body.put_u8(entry.batches.len() as u8);
            for b in &entry.batches {
                body.put_i32(b.first_sequence);
                body.put_i32(b.last_sequence);
                body.put_i64(b.first_offset);
                body.put_i64(b.last_offset);
            }
        }
        let mut out = Vec::with_capacity(6 + body.len());
        out.put_u16(SNAPSHOT_VERSION);
        out.put_u32(crc32c::crc32c(&body));
        out.extend_from_slice(&body);
        out
    }

    /// Reads a snapshot; `None` if it is damaged or of an unknown version.
    pub fn from_snapshot(mut bytes: &[u8]) -> Option<Self> {
        if bytes.remaining() < 10 || bytes.get_u16() != SNAPSHOT_VERSION {
            return None;
        }
        let crc = bytes.get_u32();
        if crc32c::crc32c(bytes) != crc {
            return None;
        }
        let mut table = Self::default();
        let count = bytes.get_u32();
        for _ in 0..count {
            if bytes.remaining() < 23 {
                return None;
            }
            let id = bytes.get_i64();
            let epoch = bytes.get_i16();
            let coordinator_epoch = bytes.get_i32();
            let first = bytes.get_i64();
            let n = usize::from(bytes.get_u8());
            if n > BATCHES_REMEMBERED || bytes.remaining() < n * 24 {
                return None;
            }
            let mut batches = VecDeque::with_capacity(n);
            for _ in 0..n {
                batches.push_back(BatchMetadata {
                    first_sequence: bytes.get_i32(),
                    last_sequence: bytes.get_i32(),
                    first_offset: bytes.get_i64(),
                    last_offset: bytes.get_i64(),
                });
            }
            let txn_first_offset = (first >= 0).then_some(first);
            if let Some(first) = txn_first_offset {
                table.ongoing.insert(first, id);
            }
            table.producers.insert(id, ProducerEntry { epoch, batches, coordinator_epoch, txn_first_offset });
        }
        bytes.is_empty().then_some(table)
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{BatchBuilder, Compression, NewRecord};

    fn batch(producer_id: i64, epoch: i16, sequence: i32, records: usize, base_offset: i64) -> Vec<u8> {
        let mut builder =
            BatchBuilder::new(Compression::None).producer(producer_id, epoch, sequence).base_offset(base_offset);
        for _ in 0..records {
            builder.append(NewRecord { timestamp: 1, value: Some(b"v"), ..Default::default() });
        }
        builder.build().unwrap()
    }

    fn apply(table: &mut ProducerStateTable, bytes: &[u8]) -> SequenceCheck {
        let batch = RecordBatch::parse(bytes).unwrap();
        let check = table.check(&batch);
        if check == SequenceCheck::Append {
            table.record(&batch);
        }
        check
    }

    #[test]
    fn in_order_batches_append_and_retries_are_duplicates() {
        let mut table = ProducerStateTable::default();
        assert_eq!(apply(&mut table, &batch(7, 0, 0, 3, 0)), SequenceCheck::Append);
        assert_eq!(apply(&mut table, &batch(7, 0, 3, 2, 3)), SequenceCheck::Append);
        // A retry of the first batch, whatever offset the client thinks it has.
        let retry = apply(&mut table, &batch(7, 0, 0, 3, 0));
        assert_eq!(
            retry,
            SequenceCheck::Duplicate(BatchMetadata {
                first_sequence: 0,
                last_sequence: 2,
                first_offset: 0,
                last_offset: 2
            })
        );
        assert_eq!(apply(&mut table, &batch(7, 0, 9, 1, 5)), SequenceCheck::OutOfOrder { expected: 5 });
        assert_eq!(apply(&mut table, &batch(7, 0, 5, 1, 5)), SequenceCheck::Append);
    }

    #[test]
    fn epochs_fence_zombies_and_restart_sequences() {
        let mut table = ProducerStateTable::default();
        apply(&mut table, &batch(1, 3, 0, 1, 0));
        assert_eq!(apply(&mut table, &batch(1, 2, 1, 1, 1)), SequenceCheck::StaleEpoch { current: 3 });
        assert_eq!(apply(&mut table, &batch(1, 4, 5, 1, 1)), SequenceCheck::OutOfOrder { expected: 0 });
        assert_eq!(apply(&mut table, &batch(1, 4, 0, 1, 1)), SequenceCheck::Append);
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut table = ProducerStateTable::default();
        for i in 0..7 {
            apply(&mut table, &batch(1, 0, i, 1, i64::from(i)));
        }
        assert!(matches!(apply(&mut table, &batch(1, 0, 6, 1, 6)), SequenceCheck::Duplicate(_)));
        assert!(matches!(apply(&mut table, &batch(1, 0, 1, 1, 1)), SequenceCheck::OutOfOrder { .. }));
        assert_eq!(apply(&mut table, &batch(2, 0, 42, 1, 7)), SequenceCheck::Append, "unknown producers are accepted");
        assert_eq!(apply(&mut table, &batch(-1, -1, -1, 1, 8)), SequenceCheck::Append, "not idempotent");
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        let mut table = ProducerStateTable::default();
        apply(&mut table, &batch(1, 0, i32::MAX - 1, 2, 0));
        assert_eq!(apply(&mut table, &batch(1, 0, 0, 1, 2)), SequenceCheck::Append);
    }
}
