//! A zero-copy view of one Kafka RecordBatch v2 (magic 2), and iteration over a buffer
//! of concatenated batches as they sit in a produce request, a segment file or a fetch.
//!
//! ```text
//!  0 base_offset            i64  ┐ rewritten by the log at append; outside the CRC
//!  8 batch_length           i32  │ bytes after this field
//! 12 partition_leader_epoch i32  ┘ rewritten by the log at append; outside the CRC
//! 16 magic                  i8     always 2
//! 17 crc                    u32    CRC-32C of byte 21 to the end
//! 21 attributes             i16    codec, timestamp type, transactional, control
//! 23 last_offset_delta      i32
//! 27 base_timestamp         i64
//! 35 max_timestamp          i64
//! 43 producer_id            i64
//! 51 producer_epoch         i16
//! 53 base_sequence          i32
//! 57 records_count          i32
//! 61 records (compressed as a whole when the codec is not none)
//! ```

use std::borrow::Cow;

use super::{Compression, RecordError, Records};

/// Bytes before `batch_length` counts: base offset and the length itself.
pub const LOG_OVERHEAD: usize = 12;
/// Bytes of the header, up to and including the record count.
pub const BATCH_HEADER_BYTES: usize = 61;
/// The only record format this log stores.
pub const MAGIC_V2: i8 = 2;

pub(crate) const BASE_OFFSET_AT: usize = 0;
pub(crate) const LENGTH_AT: usize = 8;
pub(crate) const LEADER_EPOCH_AT: usize = 12;
pub(crate) const MAGIC_AT: usize = 16;
pub(crate) const CRC_AT: usize = 17;
pub(crate) const ATTRIBUTES_AT: usize = 21;
pub(crate) const LAST_OFFSET_DELTA_AT: usize = 23;
pub(crate) const BASE_TIMESTAMP_AT: usize = 27;
pub(crate) const MAX_TIMESTAMP_AT: usize = 35;
pub(crate) const PRODUCER_ID_AT: usize = 43;
pub(crate) const PRODUCER_EPOCH_AT: usize = 51;
pub(crate) const BASE_SEQUENCE_AT: usize = 53;
pub(crate) const RECORDS_COUNT_AT: usize = 57;

/// Attribute bit: timestamps are the broker's append time, not the producer's.
pub const TIMESTAMP_TYPE_FLAG: i16 = 0x08;
/// Attribute bit: the batch belongs to a transaction.
pub const TRANSACTIONAL_FLAG: i16 = 0x10;
/// Attribute bit: the batch holds a control record (a transaction marker).
pub const CONTROL_FLAG: i16 = 0x20;
/// Attribute bit (KIP-534): compaction set a delete horizon, held in `base_timestamp`;
/// tombstones in the batch may go once the horizon has passed.
pub const DELETE_HORIZON_FLAG: i16 = 0x40;

/// One record batch, borrowed from a larger buffer. Accessors read fields in place.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RecordBatch<'a> {
    bytes: &'a [u8],
}

impl std::fmt::Debug for RecordBatch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordBatch")
            .field("base_offset", &self.base_offset())
            .field("last_offset_delta", &self.last_offset_delta())
            .field("records_count", &self.records_count())
            .field("size", &self.bytes.len())
            .finish()
    }
}

/// Reads the `batch_length` field at the front of `buf` and returns the whole batch's
/// size, or `None` when fewer than [`LOG_OVERHEAD`] bytes are there.
pub fn peek_batch_size(buf: &[u8]) -> Option<Result<usize, RecordError>> {
    let length = i32::from_be_bytes(buf.get(LENGTH_AT..LOG_OVERHEAD)?.try_into().expect("4 bytes"));
    let min = (BATCH_HEADER_BYTES - LOG_OVERHEAD) as i32;
    if length < min {
        return Some(Err(RecordError::InvalidLength { length }));
    }
    Some(Ok(LOG_OVERHEAD + length as usize))
}

impl<'a> RecordBatch<'a> {
    /// Splits the first batch off `buf`, checking its framing and magic but not its CRC.
    ///
    /// # Errors
    /// [`RecordError::Truncated`] when the batch runs past `buf`, [`RecordError::InvalidLength`]
    /// for a length shorter than a header, [`RecordError::InvalidMagic`] for anything but v2.
    pub fn split_first(buf: &'a [u8]) -> Result<(Self, &'a [u8]), RecordError> {
        let size = match peek_batch_size(buf) {
            None => return Err(RecordError::Truncated { needed: LOG_OVERHEAD, available: buf.len() }),
            Some(size) => size?,
        };
        if buf.len() < size {
            return Err(RecordError::Truncated { needed: size, available: buf.len() });
        }
        let magic = buf[MAGIC_AT] as i8;
        if magic != MAGIC_V2 {
            return Err(RecordError::InvalidMagic { magic });
        }
        let (bytes, rest) = buf.split_at(size);
        Ok((Self { bytes }, rest))
    }

    /// Parses exactly one batch filling `buf` and checks its CRC.
    ///
    /// # Errors
    /// As [`Self::split_first`] and [`Self::validate`], plus [`RecordError::TrailingBytes`].
    pub fn parse(buf: &'a [u8]) -> Result<Self, RecordError> {
        let (batch, rest) = Self::split_first(buf)?;
        if !rest.is_empty() {
            return Err(RecordError::TrailingBytes { count: rest.len() });
        }
        batch.validate()?;
        Ok(batch)
    }

    /// Checks the CRC-32C and the header's own consistency.
    ///
    /// # Errors
    /// [`RecordError::CorruptBatch`] on a CRC mismatch, [`RecordError::InvalidHeader`] for
    /// negative counts or deltas and unknown codecs.
    pub fn validate(&self) -> Result<(), RecordError> {
        let actual = crc32c::crc32c(&self.bytes[ATTRIBUTES_AT..]);
        let expected = self.crc();
        if actual != expected {
            return Err(RecordError::CorruptBatch { base_offset: self.base_offset(), expected, actual });
        }
        if self.records_count() < 0 {
            return Err(RecordError::InvalidHeader { reason: "negative record count" });
        }
        if self.last_offset_delta() < 0 {
            return Err(RecordError::InvalidHeader { reason: "negative last offset delta" });
        }
        if self.records_count() > 0 && self.last_offset_delta() < self.records_count() - 1 {
            return Err(RecordError::InvalidHeader { reason: "last offset delta below record count" });
        }
        Compression::from_attributes(self.attributes())?;
        Ok(())
    }

    /// The batch's bytes, header included, exactly as stored.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
    /// Size of the whole batch in bytes.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }
    pub fn base_offset(&self) -> i64 {
        i64_at(self.bytes, BASE_OFFSET_AT)
    }
    /// The offset of the batch's last record (kept by compaction even if that record is gone).
    /// Saturates rather than overflow on a corrupt header; the log rejects such batches.
    pub fn last_offset(&self) -> i64 {
        self.base_offset().saturating_add(i64::from(self.last_offset_delta()))
    }
    /// The offset after this batch: where the next batch starts.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }
    pub fn partition_leader_epoch(&self) -> i32 {
        i32_at(self.bytes, LEADER_EPOCH_AT)
    }
    pub fn magic(&self) -> i8 {
        self.bytes[MAGIC_AT] as i8
    }
    pub fn crc(&self) -> u32 {
        u32::from_be_bytes(self.bytes[CRC_AT..CRC_AT + 4].try_into().expect("4 bytes"))
    }
    pub fn attributes(&self) -> i16 {
        i16_at(self.bytes, ATTRIBUTES_AT)
    }
    /// The codec; an unknown one reads as an error from [`Self::records`] and [`Self::validate`].
    pub fn compression(&self) -> Result<Compression, RecordError> {
        Compression::from_attributes(self.attributes())
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes() & TRANSACTIONAL_FLAG != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes() & CONTROL_FLAG != 0
    }
    /// The time after which compaction may drop this batch's tombstones, once a
    /// compaction has set it (KIP-534).
    pub fn delete_horizon_ms(&self) -> Option<i64> {
        (self.attributes() & DELETE_HORIZON_FLAG != 0).then(|| self.base_timestamp())
    }
    /// True when timestamps are the broker's append time (`LogAppendTime`).
    pub fn is_log_append_time(&self) -> bool {
        self.attributes() & TIMESTAMP_TYPE_FLAG != 0
    }
    pub fn last_offset_delta(&self) -> i32 {
        i32_at(self.bytes, LAST_OFFSET_DELTA_AT)
    }
    pub fn base_timestamp(&self) -> i64 {
        i64_at(self.bytes, BASE_TIMESTAMP_AT)
    }
    pub fn max_timestamp(&self) -> i64 {
        i64_at(self.bytes, MAX_TIMESTAMP_AT)
    }
    pub fn producer_id(&self) -> i64 {
        i64_at(self.bytes, PRODUCER_ID_AT)
    }
    pub fn producer_epoch(&self) -> i16 {
        i16_at(self.bytes, PRODUCER_EPOCH_AT)
    }
    pub fn base_sequence(&self) -> i32 {
        i32_at(self.bytes, BASE_SEQUENCE_AT)
    }
    pub fn records_count(&self) -> i32 {
        i32_at(self.bytes, RECORDS_COUNT_AT)
    }

    /// The records' bytes, decompressed when the batch is compressed (bounded by
    /// `max_decompressed_bytes`); iterate them with [`Records::iter`].
    ///
    /// # Errors
    /// [`RecordError::Compression`], [`RecordError::DecompressedTooLarge`], or an unknown codec.
    pub fn records(&self, max_decompressed_bytes: usize) -> Result<Records<'a>, RecordError> {
        let payload = &self.bytes[BATCH_HEADER_BYTES..];
        let payload = match self.compression()? {
            Compression::None => Cow::Borrowed(payload),
            codec => Cow::Owned(codec.decompress(payload, max_decompressed_bytes)?),
        };
        Ok(Records::new(payload, self.base_offset(), self.base_timestamp(), self.records_count()))
    }
}

/// Rewrites the fields that the log owns and that lie outside the CRC: base offset and
/// partition leader epoch. `batch` must start with a batch header.
pub fn assign_offset(batch: &mut [u8], base_offset: i64, partition_leader_epoch: i32) {
    batch[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&base_offset.to_be_bytes());
    batch[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4].copy_from_slice(&partition_leader_epoch.to_be_bytes());
}

/// Iterates the batches of a buffer, stopping at the first malformed one.
#[derive(Debug, Clone)]
pub struct BatchIter<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> BatchIter<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { rest: buf, failed: false }
    }
    /// Bytes not yet consumed.
    pub fn remaining(&self) -> &'a [u8] {
        self.rest
    }
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Result<RecordBatch<'a>, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.failed {
            return None;
        }
        match RecordBatch::split_first(self.rest) {
            Ok((batch, rest)) => {
                self.rest = rest;
                Some(Ok(batch))
            }
            Err(error) => {
                self.failed = true;
                Some(Err(error))
            }
        }
    }
}

fn i16_at(bytes: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(bytes[at..at + 2].try_into().expect("2 bytes"))
}
fn i32_at(bytes: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}
fn i64_at(bytes: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}
