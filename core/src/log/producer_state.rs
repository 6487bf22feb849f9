//! Idempotent producers: per producer id, its epoch and its last few batches' sequence
//! numbers, so a retried batch is acknowledged without a second append and a gap in the
//! sequence is refused (Kafka's ProducerStateManager).
//!
//! A pure table: [`ProducerStateTable::check`] looks at a batch header and says what to
//! do; [`ProducerStateTable::record`] applies an appended batch. The log calls both under
//! its lock, so the check and the offsets it assigns cannot interleave with another append.
//!
//! The table is rebuilt on open from the batch headers of the log's last segments. A
//! producer whose last batch is older than that has no state and its next batch is
//! accepted whatever its sequence, as Kafka does once a producer's state has expired.

use std::collections::{HashMap, VecDeque};

use crate::record::RecordBatch;

/// Batches remembered per producer: Kafka's bound on a producer's requests in flight
/// (`max.in.flight.requests.per.connection` may be at most 5 with idempotence).
pub const BATCHES_REMEMBERED: usize = 5;

/// A batch already in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub first_offset: i64,
    pub last_offset: i64,
}

#[derive(Debug, Clone, Default)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchMetadata>,
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

/// The producer state of one partition.
#[derive(Debug, Clone, Default)]
pub struct ProducerStateTable {
    producers: HashMap<i64, ProducerEntry>,
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
        if producer_id < 0 || batch.base_sequence() < 0 {
            return SequenceCheck::Append;
        }
        let Some(entry) = self.producers.get(&producer_id) else { return SequenceCheck::Append };
        let epoch = batch.producer_epoch();
        if epoch < entry.epoch {
            return SequenceCheck::StaleEpoch { current: entry.epoch };
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

    /// Records a batch appended at its (assigned) offsets.
    pub fn record(&mut self, batch: &RecordBatch<'_>) {
        self.record_at(batch, batch.base_offset());
    }

    /// As [`Self::record`], for a batch that will be written with `base_offset`.
    pub fn record_at(&mut self, batch: &RecordBatch<'_>, base_offset: i64) {
        let producer_id = batch.producer_id();
        if producer_id < 0 || batch.base_sequence() < 0 {
            return;
        }
        let entry = self.producers.entry(producer_id).or_default();
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
