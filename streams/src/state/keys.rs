//! Key layouts of window and session stores over an ordered byte map.
//!
//! ```text
//!  window:   len:u32 | key | start:i64        (| seq:u64 for stores that keep duplicates)
//!  session:  len:u32 | key | end:i64 | start:i64
//! ```
//! The key's length comes first so that one key is never a prefix of another's range;
//! times are big-endian with the sign bit flipped, so byte order is time order. All
//! windows of a key are one contiguous range, in time order.

use bytes::{BufMut, Bytes, BytesMut};

fn time_bytes(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

fn time_from(bytes: &[u8]) -> i64 {
    (u64::from_be_bytes(bytes.try_into().expect("8 bytes")) ^ (1 << 63)) as i64
}

fn prefix(key: &[u8], extra: usize) -> BytesMut {
    let mut out = BytesMut::with_capacity(4 + key.len() + extra);
    out.put_u32(key.len() as u32);
    out.put_slice(key);
    out
}

/// The store key of `key`'s window starting at `start`.
pub(crate) fn window(key: &[u8], start: i64) -> Bytes {
    let mut out = prefix(key, 8);
    out.put_slice(&time_bytes(start));
    out.freeze()
}

/// [`window`] into a reused buffer, for lookups that allocate nothing.
pub(crate) fn window_into(out: &mut Vec<u8>, key: &[u8], start: i64) {
    out.clear();
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&time_bytes(start));
}

/// A window store key that keeps duplicates apart (join and sliding buffers): `seq`
/// tells records of one key and time apart (see `Context::next_seq`).
pub(crate) fn window_seq(key: &[u8], start: i64, seq: u64) -> Bytes {
    let mut out = prefix(key, 16);
    out.put_slice(&time_bytes(start));
    out.put_u64(seq);
    out.freeze()
}

/// Where windowed nodes keep their task's stream time, so that a task that moves or
/// restarts goes on closing windows where it left off. No entry's key starts with a
/// length of `u32::MAX`, so it is never inside a key's range.
pub(crate) const STREAM_TIME: &[u8] = &[0xff, 0xff, 0xff, 0xff];

/// Whether a store key is the stream-time entry rather than a window or session.
pub(crate) fn is_meta(store_key: &[u8]) -> bool {
    store_key == STREAM_TIME
}

/// The range of `key`'s windows with `from <= start <= to`: `[lower, upper)`.
pub(crate) fn window_range(key: &[u8], from: i64, to: i64) -> (Bytes, Bytes) {
    let mut upper = prefix(key, 8);
    match to.checked_add(1) {
        Some(next) => upper.put_slice(&time_bytes(next)),
        // Past every time: the next key length's prefix.
        None => upper.put_slice(&[0xff; 9]),
    }
    (window(key, from), upper.freeze())
}

/// The key part and the start time of a window store key.
pub(crate) fn split_window(store_key: &[u8]) -> (&[u8], i64) {
    let len = u32::from_be_bytes(store_key[..4].try_into().expect("length")) as usize;
    (&store_key[4..4 + len], time_from(&store_key[4 + len..12 + len]))
}

/// The store key of `key`'s session `[start, end]`.
pub(crate) fn session(key: &[u8], start: i64, end: i64) -> Bytes {
    let mut out = prefix(key, 16);
    out.put_slice(&time_bytes(end));
    out.put_slice(&time_bytes(start));
    out.freeze()
}

/// The range of `key`'s sessions ending at or after `end_from`.
pub(crate) fn sessions_ending_from(key: &[u8], end_from: i64) -> (Bytes, Bytes) {
    let mut lower = prefix(key, 8);
    lower.put_slice(&time_bytes(end_from));
    let mut upper = prefix(key, 9);
    upper.put_slice(&[0xff; 9]);
    (lower.freeze(), upper.freeze())
}

/// The key part, start and end of a session store key.
pub(crate) fn split_session(store_key: &[u8]) -> (&[u8], i64, i64) {
    let len = u32::from_be_bytes(store_key[..4].try_into().expect("length")) as usize;
    let end = time_from(&store_key[4 + len..12 + len]);
    let start = time_from(&store_key[12 + len..20 + len]);
    (&store_key[4..4 + len], start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_order_is_key_then_time_order() {
        assert!(window(b"a", -5) < window(b"a", 3));
        assert!(window(b"a", 3) < window(b"a", 1 << 40));
        assert!(window(b"ab", 0) > window(b"a", i64::MAX), "a longer key never falls in a shorter key's range");
        let (lo, hi) = window_range(b"a", 0, 10);
        assert!(window(b"a", 10) < hi && window(b"a", 11) >= hi && window(b"a", 0) >= lo);
        assert_eq!(split_window(&window(b"key", -42)), (&b"key"[..], -42));
        assert_eq!(split_session(&session(b"k", 3, 9)), (&b"k"[..], 3, 9));
        let (lo, hi) = sessions_ending_from(b"k", 5);
        assert!(session(b"k", 0, 5) >= lo && session(b"k", 0, i64::MAX) < hi && session(b"k", 0, 4) < lo);
    }
}
