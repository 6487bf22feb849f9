//! The records inside one batch: iteration over their varint-framed encoding.
//!
//! ```text
//! length varint | attributes i8 | timestamp_delta varlong | offset_delta varint
//! key_length varint | key | value_length varint | value
//! header_count varint | (key_length varint | key | value_length varint | value)*
//! ```
//! A length of -1 is null (keys, values and header values).

use std::borrow::Cow;

use super::RecordError;
use super::varint::{read_varint, read_varlong};

/// The records of one batch, decompressed if they were compressed.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    payload: Cow<'a, [u8]>,
    base_offset: i64,
    base_timestamp: i64,
    count: i32,
}

impl<'a> Records<'a> {
    pub(crate) fn new(payload: Cow<'a, [u8]>, base_offset: i64, base_timestamp: i64, count: i32) -> Self {
        Self { payload, base_offset, base_timestamp, count }
    }

    /// Iterates the records; an error ends the iteration.
    pub fn iter(&self) -> RecordIter<'_> {
        RecordIter {
            rest: &self.payload,
            base_offset: self.base_offset,
            base_timestamp: self.base_timestamp,
            remaining: self.count,
            failed: false,
        }
    }
}

/// One record, borrowed from its batch's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub offset: i64,
    pub timestamp: i64,
    pub attributes: i8,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Headers<'a>,
}

/// The headers of one record, parsed lazily.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headers<'a> {
    bytes: &'a [u8],
    count: i32,
}

/// One record header. Kafka's header keys are strings; they are left as bytes here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub key: &'a [u8],
    pub value: Option<&'a [u8]>,
}

impl<'a> Headers<'a> {
    pub fn len(&self) -> usize {
        self.count as usize
    }
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    /// Iterates the headers. They were checked when the record was read, so this cannot fail.
    pub fn iter(&self) -> impl Iterator<Item = Header<'a>> + 'a {
        let mut rest = self.bytes;
        (0..self.count).map(move |_| {
            let (key, after) = read_bytes(rest).expect("headers validated on read").0;
            let key = key.expect("header keys validated non-null");
            let (value, after) = read_bytes(after).expect("headers validated on read").0;
            rest = after;
            Header { key, value }
        })
    }
}

/// Iterator over [`Records`].
#[derive(Debug)]
pub struct RecordIter<'a> {
    rest: &'a [u8],
    base_offset: i64,
    base_timestamp: i64,
    remaining: i32,
    failed: bool,
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<Record<'a>, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.remaining == 0 {
            if self.rest.is_empty() {
                return None;
            }
            self.failed = true;
            return Some(Err(RecordError::InvalidRecord { reason: "bytes after the last record" }));
        }
        match self.read_record() {
            Ok(record) => {
                self.remaining -= 1;
                Some(Ok(record))
            }
            Err(error) => {
                self.failed = true;
                Some(Err(error))
            }
        }
    }
}

impl<'a> RecordIter<'a> {
    fn read_record(&mut self) -> Result<Record<'a>, RecordError> {
        let (length, used) = read_varint(self.rest)?;
        let length =
            usize::try_from(length).map_err(|_| RecordError::InvalidRecord { reason: "negative record length" })?;
        let body = self
            .rest
            .get(used..used + length)
            .ok_or(RecordError::InvalidRecord { reason: "record runs past its batch" })?;
        self.rest = &self.rest[used + length..];

        let (&attributes, rest) = body.split_first().ok_or(RecordError::InvalidRecord { reason: "empty record" })?;
        let (timestamp_delta, used) = read_varlong(rest)?;
        let rest = &rest[used..];
        let (offset_delta, used) = read_varint(rest)?;
        let rest = &rest[used..];
        let ((key, rest), _) = read_bytes(rest)?;
        let ((value, rest), _) = read_bytes(rest)?;
        let (count, used) = read_varint(rest)?;
        if count < 0 {
            return Err(RecordError::InvalidRecord { reason: "negative header count" });
        }
        let headers_bytes = &rest[used..];
        let mut check = headers_bytes;
        for _ in 0..count {
            let ((key, after), _) = read_bytes(check)?;
            if key.is_none() {
                return Err(RecordError::InvalidRecord { reason: "null header key" });
            }
            let ((_, after), _) = read_bytes(after)?;
            check = after;
        }
        if !check.is_empty() {
            return Err(RecordError::InvalidRecord { reason: "record length disagrees with its fields" });
        }
        Ok(Record {
            offset: self.base_offset + i64::from(offset_delta),
            timestamp: self.base_timestamp.wrapping_add(timestamp_delta),
            attributes: attributes as i8,
            key,
            value,
            headers: Headers { bytes: headers_bytes, count },
        })
    }
}

type Split<'a> = (Option<&'a [u8]>, &'a [u8]);

/// Reads a varint-length-prefixed byte string (-1 is null); returns it, the rest, and
/// the bytes consumed.
fn read_bytes(buf: &[u8]) -> Result<(Split<'_>, usize), RecordError> {
    let (len, used) = read_varint(buf)?;
    if len == -1 {
        return Ok(((None, &buf[used..]), used));
    }
    let len = usize::try_from(len).map_err(|_| RecordError::InvalidRecord { reason: "negative field length" })?;
    let bytes = buf.get(used..used + len).ok_or(RecordError::InvalidRecord { reason: "field runs past its record" })?;
    Ok(((Some(bytes), &buf[used + len..]), used + len))
}
