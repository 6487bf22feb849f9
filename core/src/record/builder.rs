//! Building record batches: for clients, tiering, compaction and tests. The broker's
//! append path never uses this; it stores what producers sent.

use super::batch::{
    ATTRIBUTES_AT, BATCH_HEADER_BYTES, CONTROL_FLAG, CRC_AT, DELETE_HORIZON_FLAG, LOG_OVERHEAD, MAGIC_V2,
    TIMESTAMP_TYPE_FLAG, TRANSACTIONAL_FLAG,
};
use super::varint::{varint_len, varlong_len, write_varint, write_varlong};
use super::{Compression, RecordError};

/// A record to put in a batch.
#[derive(Debug, Clone, Copy, Default)]
pub struct NewRecord<'a> {
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [(&'a [u8], Option<&'a [u8]>)],
}

/// Accumulates records and encodes them as one RecordBatch v2.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    compression: Compression,
    base_offset: i64,
    partition_leader_epoch: i32,
    attributes: i16,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    base_timestamp: Option<i64>,
    max_timestamp: i64,
    count: i32,
    last_offset_delta: i32,
    /// The batch as it will be sent: [`BATCH_HEADER_BYTES`] of header, written by
    /// [`build`](Self::build), then the records. Reserving the header up front means an
    /// uncompressed batch is never copied after its records are written.
    buf: Vec<u8>,
}

impl BatchBuilder {
    /// A builder for a non-idempotent batch (producer id -1), offsets from 0.
    pub fn new(compression: Compression) -> Self {
        Self {
            compression,
            base_offset: 0,
            partition_leader_epoch: -1,
            attributes: compression.id(),
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            base_timestamp: None,
            max_timestamp: -1,
            count: 0,
            last_offset_delta: -1,
            buf: vec![0; BATCH_HEADER_BYTES],
        }
    }
    /// Reserves room for about `bytes` of records, so a batch that is filled to a known
    /// size is not reallocated (and copied) as it grows.
    pub fn with_capacity(mut self, bytes: usize) -> Self {
        self.buf.reserve(bytes);
        self
    }
    pub fn base_offset(mut self, base_offset: i64) -> Self {
        self.base_offset = base_offset;
        self
    }
    pub fn partition_leader_epoch(mut self, epoch: i32) -> Self {
        self.partition_leader_epoch = epoch;
        self
    }
    /// Marks the batch as an idempotent producer's: its id, epoch and first sequence.
    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }
    pub fn transactional(mut self, yes: bool) -> Self {
        self.set_flag(TRANSACTIONAL_FLAG, yes);
        self
    }
    pub fn control(mut self, yes: bool) -> Self {
        self.set_flag(CONTROL_FLAG, yes);
        self
    }
    pub fn log_append_time(mut self, yes: bool) -> Self {
        self.set_flag(TIMESTAMP_TYPE_FLAG, yes);
        self
    }
    /// Sets compaction's delete horizon (KIP-534): it becomes the base timestamp, and
    /// record timestamps are stored relative to it. Call before appending records.
    ///
    /// # Panics
    /// If records were appended already.
    pub fn delete_horizon(mut self, horizon_ms: i64) -> Self {
        assert!(self.count == 0, "the delete horizon must be set before records are appended");
        self.base_timestamp = Some(horizon_ms);
        self.set_flag(DELETE_HORIZON_FLAG, true);
        self
    }
    fn set_flag(&mut self, flag: i16, yes: bool) {
        if yes { self.attributes |= flag } else { self.attributes &= !flag }
    }

    /// Records appended so far.
    pub fn len(&self) -> usize {
        self.count as usize
    }
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    /// Uncompressed bytes of the batch so far, header included.
    pub fn estimated_size(&self) -> usize {
        self.buf.len()
    }

    /// Appends a record at the next offset.
    pub fn append(&mut self, record: NewRecord<'_>) {
        self.append_at(self.last_offset_delta + 1, record);
    }

    /// Appends a record at an explicit offset delta (compaction keeps records' offsets).
    ///
    /// # Panics
    /// If `offset_delta` does not move forward: a batch's offsets always increase.
    pub fn append_at(&mut self, offset_delta: i32, record: NewRecord<'_>) {
        assert!(offset_delta > self.last_offset_delta, "record offsets must increase within a batch");
        let base_timestamp = *self.base_timestamp.get_or_insert(record.timestamp);
        let timestamp_delta = record.timestamp.wrapping_sub(base_timestamp);
        // The body's length comes first, so compute it, then write in place: no
        // allocation per record.
        let field = |bytes: Option<&[u8]>| bytes.map_or(varint_len(-1), |b| varint_len(b.len() as i32) + b.len());
        let body_len = 1
            + varlong_len(timestamp_delta)
            + varint_len(offset_delta)
            + field(record.key)
            + field(record.value)
            + varint_len(record.headers.len() as i32)
            + record.headers.iter().map(|(k, v)| field(Some(k)) + field(*v)).sum::<usize>();
        self.buf.reserve(varint_len(body_len as i32) + body_len);
        write_varint(&mut self.buf, body_len as i32);
        self.buf.push(0); // record attributes: unused by Kafka
        write_varlong(&mut self.buf, timestamp_delta);
        write_varint(&mut self.buf, offset_delta);
        write_bytes(&mut self.buf, record.key);
        write_bytes(&mut self.buf, record.value);
        write_varint(&mut self.buf, record.headers.len() as i32);
        for (key, value) in record.headers {
            write_bytes(&mut self.buf, Some(key));
            write_bytes(&mut self.buf, *value);
        }
        self.max_timestamp = self.max_timestamp.max(record.timestamp);
        self.count += 1;
        self.last_offset_delta = offset_delta;
    }

    /// Extends the batch's last offset past its last record, as compaction does when it
    /// drops a batch's final records but keeps the batch's offset range.
    pub fn last_offset_delta(mut self, delta: i32) -> Self {
        assert!(delta >= self.last_offset_delta, "last offset delta cannot move back");
        self.last_offset_delta = delta;
        self
    }

    /// Encodes the batch with its CRC.
    ///
    /// # Errors
    /// [`RecordError::Compression`] if the codec fails.
    pub fn build(self) -> Result<Vec<u8>, RecordError> {
        let mut out = match self.compression {
            Compression::None => self.buf,
            codec => {
                let payload = codec.compress(&self.buf[BATCH_HEADER_BYTES..])?;
                let mut out = Vec::with_capacity(BATCH_HEADER_BYTES + payload.len());
                out.resize(BATCH_HEADER_BYTES, 0);
                out.extend_from_slice(&payload);
                out
            }
        };
        let batch_length = (out.len() - LOG_OVERHEAD) as i32;
        let base_timestamp = self.base_timestamp.unwrap_or(-1);
        let mut header = &mut out[..BATCH_HEADER_BYTES];
        let mut put = |bytes: &[u8]| {
            let (field, rest) = std::mem::take(&mut header).split_at_mut(bytes.len());
            field.copy_from_slice(bytes);
            header = rest;
        };
        put(&self.base_offset.to_be_bytes());
        put(&batch_length.to_be_bytes());
        put(&self.partition_leader_epoch.to_be_bytes());
        put(&[MAGIC_V2 as u8]);
        put(&[0; 4]); // crc, filled below
        put(&self.attributes.to_be_bytes());
        put(&self.last_offset_delta.max(0).to_be_bytes());
        put(&base_timestamp.to_be_bytes());
        put(&self.max_timestamp.to_be_bytes());
        put(&self.producer_id.to_be_bytes());
        put(&self.producer_epoch.to_be_bytes());
        put(&self.base_sequence.to_be_bytes());
        put(&self.count.to_be_bytes());
        debug_assert!(header.is_empty(), "every header byte is written");
        let crc = crc32c::crc32c(&out[ATTRIBUTES_AT..]);
        out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        Ok(out)
    }
}

fn write_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => write_varint(out, -1),
        Some(bytes) => {
            write_varint(out, bytes.len() as i32);
            out.extend_from_slice(bytes);
        }
    }
}
