//! The buffer messages are encoded into when they carry record sets. A fetch response is
//! mostly record batches that already sit in memory (a segment's mapping), a produce
//! request mostly batches the producer built: instead of copying them into the encoded
//! message, the buffer keeps them by reference, and the message goes to the socket as a
//! list of parts, encoded fields between shared record sets. Only the socket write copies
//! the records, as `sendfile` would in Kafka.

use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;

/// Record sets smaller than this are copied: a part costs a write of its own.
const SHARE_MIN_BYTES: usize = 4096;

/// An encode target that copies everything except the record sets it was given, which
/// it takes by reference when the encoder writes exactly one of them.
#[derive(Debug, Default)]
pub struct EncodeBuf {
    /// Encoded bytes not yet cut into a part.
    head: BytesMut,
    parts: Vec<Bytes>,
    /// Bytes in `parts`.
    parts_len: usize,
    /// The record sets that may be shared, recognised by address and length, in the order
    /// the message holds them (so the encoder meets them in this order too).
    shared: Vec<Bytes>,
    /// Where the search for the next shared record set starts: each is found in one step
    /// when met in order, so a response with many partitions costs linear time.
    next_shared: usize,
}

impl EncodeBuf {
    /// A buffer that shares `shared` (the message's record sets) instead of copying them.
    pub fn new(shared: Vec<Bytes>) -> Self {
        let shared = shared.into_iter().filter(|b| b.len() >= SHARE_MIN_BYTES).collect();
        Self { shared, ..Self::default() }
    }

    /// Bytes encoded so far.
    pub fn encoded_len(&self) -> usize {
        self.parts_len + self.head.len()
    }

    /// The encoded message, in order.
    pub fn into_parts(mut self) -> Vec<Bytes> {
        if !self.head.is_empty() {
            self.parts.push(self.head.freeze());
        }
        self.parts
    }

    fn shared_copy_of(&mut self, src: &[u8]) -> Option<Bytes> {
        if src.len() < SHARE_MIN_BYTES {
            return None;
        }
        let is_src = |b: &Bytes| b.as_ptr() == src.as_ptr() && b.len() == src.len();
        // In order first; then from the start, should an encoder ever write out of order.
        let found =
            (self.next_shared..self.shared.len()).chain(0..self.next_shared).find(|&i| is_src(&self.shared[i]))?;
        self.next_shared = found + 1;
        Some(self.shared[found].clone())
    }
}

// SAFETY: every method delegates to `head`, a `BytesMut`, whose implementation upholds
// the trait's contract; `put_slice` only adds whole `Bytes` parts beside it.
unsafe impl BufMut for EncodeBuf {
    fn remaining_mut(&self) -> usize {
        self.head.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller's promise about `cnt` is about `head`'s chunk, which
        // `chunk_mut` returned.
        unsafe { self.head.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.head.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        match self.shared_copy_of(src) {
            Some(records) => {
                if !self.head.is_empty() {
                    let encoded = self.head.split().freeze();
                    self.parts_len += encoded.len();
                    self.parts.push(encoded);
                }
                self.parts_len += records.len();
                self.parts.push(records);
            }
            None => self.head.put_slice(src),
        }
    }
}

impl ByteBufMut for EncodeBuf {
    fn offset(&self) -> usize {
        self.encoded_len()
    }

    /// Only within the bytes not yet cut into parts: the encoders that go back (to fill
    /// in a length) do so within one record set's encoding, never across a shared one.
    fn seek(&mut self, offset: usize) {
        assert!(offset >= self.parts_len, "seek before a shared part");
        self.head.resize(offset - self.parts_len, 0);
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        assert!(r.start >= self.parts_len, "range before a shared part");
        &mut self.head[r.start - self.parts_len..r.end - self.parts_len]
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::FetchResponse;
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    use super::*;

    /// The parts, joined, are byte for byte what encoding into one buffer gives, and the
    /// large record sets are the very buffers the response held.
    #[test]
    fn shared_record_sets_encode_like_copied_ones() {
        let big = Bytes::from(vec![7u8; 100_000]);
        let small = Bytes::from(vec![9u8; 100]);
        let partitions = vec![
            PartitionData::default().with_partition_index(0).with_records(Some(big.clone())),
            PartitionData::default().with_partition_index(1).with_records(Some(small.clone())),
            PartitionData::default().with_partition_index(2).with_records(Some(big.slice(10..50_000))),
        ];
        let response = FetchResponse::default().with_responses(vec![
            FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(partitions),
        ]);
        for version in [4, 11, 12] {
            let mut copied = BytesMut::new();
            response.encode(&mut copied, version).unwrap();
            let mut spliced = EncodeBuf::new(vec![big.clone(), small.clone(), big.slice(10..50_000)]);
            response.encode(&mut spliced, version).unwrap();
            assert_eq!(spliced.encoded_len(), copied.len());
            let parts = spliced.into_parts();
            assert_eq!(parts.concat(), copied.to_vec(), "version {version}");
            let shared: Vec<&Bytes> = parts.iter().filter(|p| p.len() >= SHARE_MIN_BYTES).collect();
            assert_eq!(shared.len(), 2);
            assert_eq!(shared[0].as_ptr(), big.as_ptr(), "the first record set was copied");
        }
    }
}
