//! Zig-zag variable-length integers, as Kafka's record format uses them for record
//! lengths, deltas and key / value / header lengths (protobuf's encoding).

use super::RecordError;

/// The most bytes a zig-zag `i32` takes (7 bits a byte).
pub const VARINT_MAX_BYTES: usize = 5;
/// The most bytes a zig-zag `i64` takes.
pub const VARLONG_MAX_BYTES: usize = 10;

/// Reads a zig-zag `i32` from the front of `buf`; returns it and the bytes it took.
///
/// # Errors
/// [`RecordError::Varint`] if `buf` ends inside the number or it runs past 5 bytes.
#[inline]
pub fn read_varint(buf: &[u8]) -> Result<(i32, usize), RecordError> {
    let (raw, len) = read_unsigned(buf, VARINT_MAX_BYTES)?;
    let raw = u32::try_from(raw).map_err(|_| RecordError::Varint { reason: "varint overflows 32 bits" })?;
    Ok((((raw >> 1) as i32) ^ -((raw & 1) as i32), len))
}

/// Reads a zig-zag `i64` from the front of `buf`; returns it and the bytes it took.
///
/// # Errors
/// [`RecordError::Varint`] if `buf` ends inside the number or it runs past 10 bytes.
#[inline]
pub fn read_varlong(buf: &[u8]) -> Result<(i64, usize), RecordError> {
    let (raw, len) = read_unsigned(buf, VARLONG_MAX_BYTES)?;
    Ok((((raw >> 1) as i64) ^ -((raw & 1) as i64), len))
}

#[inline]
fn read_unsigned(buf: &[u8], max_bytes: usize) -> Result<(u64, usize), RecordError> {
    // Most varints in a record (lengths under 16 KiB, small deltas) take one or two bytes.
    match *buf {
        [first, ..] if first < 0x80 => return Ok((u64::from(first), 1)),
        [first, second, ..] if second < 0x80 => {
            return Ok((u64::from(first & 0x7f) | (u64::from(second) << 7), 2));
        }
        _ => {}
    }
    read_unsigned_slow(buf, max_bytes)
}

fn read_unsigned_slow(buf: &[u8], max_bytes: usize) -> Result<(u64, usize), RecordError> {
    let mut value: u64 = 0;
    for (i, &byte) in buf.iter().take(max_bytes).enumerate() {
        let bits = u64::from(byte & 0x7f);
        // The tenth byte of a varlong may only carry the top bit of 64.
        if i == VARLONG_MAX_BYTES - 1 && bits > 1 {
            return Err(RecordError::Varint { reason: "varlong overflows 64 bits" });
        }
        value |= bits << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    if buf.len() < max_bytes {
        Err(RecordError::Varint { reason: "buffer ends inside a varint" })
    } else {
        Err(RecordError::Varint { reason: "varint longer than its type allows" })
    }
}

/// Appends `value` as a zig-zag varint.
pub fn write_varint(out: &mut Vec<u8>, value: i32) {
    write_unsigned(out, u64::from(((value << 1) ^ (value >> 31)) as u32));
}

/// Appends `value` as a zig-zag varlong.
pub fn write_varlong(out: &mut Vec<u8>, value: i64) {
    write_unsigned(out, ((value << 1) ^ (value >> 63)) as u64);
}

/// The bytes `value` takes as a zig-zag varint.
pub fn varint_len(value: i32) -> usize {
    unsigned_len(u64::from(((value << 1) ^ (value >> 31)) as u32))
}

/// The bytes `value` takes as a zig-zag varlong.
pub fn varlong_len(value: i64) -> usize {
    unsigned_len(((value << 1) ^ (value >> 63)) as u64)
}

fn write_unsigned(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn unsigned_len(value: u64) -> usize {
    let bits = 64 - value.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings_match_kafka() {
        // Values from Kafka's ByteUtilsTest.
        let cases: &[(i32, &[u8])] = &[
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (63, &[0x7e]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (i32::MAX, &[0xfe, 0xff, 0xff, 0xff, 0x0f]),
            (i32::MIN, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ];
        for (value, bytes) in cases {
            let mut out = Vec::new();
            write_varint(&mut out, *value);
            assert_eq!(&out, bytes, "encoding {value}");
            assert_eq!(read_varint(bytes).unwrap(), (*value, bytes.len()));
            assert_eq!(varint_len(*value), bytes.len());
        }
    }

    #[test]
    fn truncated_and_overlong_varints_are_errors() {
        assert!(read_varint(&[]).is_err());
        assert!(read_varint(&[0x80]).is_err());
        assert!(read_varint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01]).is_err());
        assert!(read_varint(&[0xff, 0xff, 0xff, 0xff, 0x7f]).is_err(), "overflows 32 bits");
        assert!(read_varlong(&[0xff; 11]).is_err());
        assert!(read_varlong(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]).is_err());
    }

    proptest! {
        #[test]
        fn varint_round_trips(value: i32) {
            let mut out = Vec::new();
            write_varint(&mut out, value);
            prop_assert_eq!(out.len(), varint_len(value));
            prop_assert_eq!(read_varint(&out).unwrap(), (value, out.len()));
        }

        #[test]
        fn varlong_round_trips(value: i64) {
            let mut out = Vec::new();
            write_varlong(&mut out, value);
            prop_assert_eq!(out.len(), varlong_len(value));
            prop_assert_eq!(read_varlong(&out).unwrap(), (value, out.len()));
        }

        #[test]
        fn varint_reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..12)) {
            let _ = read_varint(&bytes);
            let _ = read_varlong(&bytes);
        }
    }
}
