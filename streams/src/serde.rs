//! Serdes: how keys and values become bytes and back.
//!
//! A serde is a value implementing [`Serde<T>`]; the DSL takes them wherever data meets
//! bytes (sources, sinks, repartition topics, state stores). The built-ins match Kafka's
//! own where Kafka has one, so Java and Python peers read what a job writes:
//! [`I64`] is Kafka's `LongSerializer` (8 bytes, big-endian), [`Utf8`] its
//! `StringSerializer`, [`RawBytes`] its `BytesSerializer`.

use std::marker::PhantomData;

use bytes::Bytes;

/// Why bytes could not become a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SerdeError {
    #[error("null where a {expected} was expected")]
    Null { expected: &'static str },
    #[error("not a valid {expected}: {message}")]
    Invalid { expected: &'static str, message: String },
}

/// Turns values of `T` into bytes and back. `None` bytes are Kafka's null.
pub trait Serde<T>: Send + Sync {
    /// Writes `value` into `out` (empty on entry); returns `false` for null.
    fn serialize(&self, value: &T, out: &mut Vec<u8>) -> bool;
    /// Reads a value.
    ///
    /// # Errors
    /// [`SerdeError`] when the bytes (or their absence) are not a `T`.
    fn deserialize(&self, bytes: Option<&Bytes>) -> Result<T, SerdeError>;
}

/// Serializes to owned bytes, `None` for null.
pub fn to_bytes<T>(serde: &dyn Serde<T>, value: &T) -> Option<Bytes> {
    let mut out = Vec::new();
    serde.serialize(value, &mut out).then(|| Bytes::from(out))
}

/// Bytes as they are ([`Bytes`]); null is refused.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawBytes;

impl Serde<Bytes> for RawBytes {
    fn serialize(&self, value: &Bytes, out: &mut Vec<u8>) -> bool {
        out.extend_from_slice(value);
        true
    }
    fn deserialize(&self, bytes: Option<&Bytes>) -> Result<Bytes, SerdeError> {
        bytes.cloned().ok_or(SerdeError::Null { expected: "byte string" })
    }
}

/// UTF-8 text ([`String`]); invalid UTF-8 and null are refused.
#[derive(Debug, Clone, Copy, Default)]
pub struct Utf8;

impl Serde<String> for Utf8 {
    fn serialize(&self, value: &String, out: &mut Vec<u8>) -> bool {
        out.extend_from_slice(value.as_bytes());
        true
    }
    fn deserialize(&self, bytes: Option<&Bytes>) -> Result<String, SerdeError> {
        let bytes = bytes.ok_or(SerdeError::Null { expected: "UTF-8 string" })?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|e| SerdeError::Invalid { expected: "UTF-8 string", message: e.to_string() })
    }
}

/// A 64-bit integer as Kafka's `LongSerializer` writes it: 8 bytes, big-endian.
#[derive(Debug, Clone, Copy, Default)]
pub struct I64;

impl Serde<i64> for I64 {
    fn serialize(&self, value: &i64, out: &mut Vec<u8>) -> bool {
        out.extend_from_slice(&value.to_be_bytes());
        true
    }
    fn deserialize(&self, bytes: Option<&Bytes>) -> Result<i64, SerdeError> {
        let bytes = bytes.ok_or(SerdeError::Null { expected: "64-bit integer" })?;
        let array: [u8; 8] = bytes[..].try_into().map_err(|_| SerdeError::Invalid {
            expected: "64-bit integer",
            message: format!("{} bytes, not 8", bytes.len()),
        })?;
        Ok(i64::from_be_bytes(array))
    }
}

/// A 64-bit integer as decimal UTF-8 text ("42"), for topics people read.
#[derive(Debug, Clone, Copy, Default)]
pub struct I64Text;

impl Serde<i64> for I64Text {
    fn serialize(&self, value: &i64, out: &mut Vec<u8>) -> bool {
        out.extend_from_slice(value.to_string().as_bytes());
        true
    }
    fn deserialize(&self, bytes: Option<&Bytes>) -> Result<i64, SerdeError> {
        let text = Utf8.deserialize(bytes)?;
        text.trim().parse().map_err(|e: std::num::ParseIntError| SerdeError::Invalid {
            expected: "decimal integer",
            message: format!("{text:?}: {e}"),
        })
    }
}

/// No value: writes null and reads anything (its bytes ignored) as `()`. For the key of a
/// topic whose keys a job does not use.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unit;

impl Serde<()> for Unit {
    fn serialize(&self, _: &(), _: &mut Vec<u8>) -> bool {
        false
    }
    fn deserialize(&self, _: Option<&Bytes>) -> Result<(), SerdeError> {
        Ok(())
    }
}

/// `Option<T>` over a serde of `T`: `None` is null.
#[derive(Debug, Clone, Copy, Default)]
pub struct Nullable<S>(pub S);

impl<T, S: Serde<T>> Serde<Option<T>> for Nullable<S> {
    fn serialize(&self, value: &Option<T>, out: &mut Vec<u8>) -> bool {
        value.as_ref().is_some_and(|v| self.0.serialize(v, out))
    }
    fn deserialize(&self, bytes: Option<&Bytes>) -> Result<Option<T>, SerdeError> {
        bytes.map(|b| self.0.deserialize(Some(b))).transpose()
    }
}

/// JSON through serde.
pub struct Json<T>(PhantomData<fn() -> T>);

impl<T> Json<T> {
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T> Default for Json<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for Json<T> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<T> std::fmt::Debug for Json<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Json<{}>", std::any::type_name::<T>())
    }
}

impl<T: serde::Serialize + serde::de::DeserializeOwned + 'static> Serde<T> for Json<T> {
    fn serialize(&self, value: &T, out: &mut Vec<u8>) -> bool {
        // Serializing plain data to a Vec cannot fail; a type whose Serialize impl fails
        // (a map with non-string keys) is written as null rather than half-written.
        if serde_json::to_writer(&mut *out, value).is_err() {
            out.clear();
            return false;
        }
        true
    }
    fn deserialize(&self, bytes: Option<&Bytes>) -> Result<T, SerdeError> {
        let bytes = bytes.ok_or(SerdeError::Null { expected: "JSON document" })?;
        serde_json::from_slice(bytes)
            .map_err(|e| SerdeError::Invalid { expected: "JSON document", message: e.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: PartialEq + std::fmt::Debug>(serde: &dyn Serde<T>, value: T) {
        let bytes = to_bytes(serde, &value);
        assert_eq!(serde.deserialize(bytes.as_ref()).unwrap(), value);
    }

    #[test]
    fn built_ins_round_trip_and_match_kafka_encodings() {
        round_trip(&Utf8, "héllo".to_string());
        round_trip(&I64, -42);
        round_trip(&I64Text, 1234);
        round_trip(&RawBytes, Bytes::from_static(b"\x00\xff"));
        round_trip(&Nullable(Utf8), None);
        round_trip(&Nullable(Utf8), Some("x".to_string()));
        round_trip(&Json::<Vec<u32>>::new(), vec![1, 2, 3]);
        assert_eq!(to_bytes(&I64, &1).unwrap().as_ref(), &[0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(to_bytes(&I64Text, &-7).unwrap().as_ref(), b"-7");
        assert_eq!(to_bytes(&Unit, &()), None);
    }

    #[test]
    fn bad_bytes_are_typed_errors() {
        assert_eq!(Utf8.deserialize(None), Err(SerdeError::Null { expected: "UTF-8 string" }));
        assert!(matches!(Utf8.deserialize(Some(&Bytes::from_static(b"\xff"))), Err(SerdeError::Invalid { .. })));
        assert!(matches!(I64.deserialize(Some(&Bytes::from_static(b"123"))), Err(SerdeError::Invalid { .. })));
        assert!(matches!(
            Json::<u32>::new().deserialize(Some(&Bytes::from_static(b"{"))),
            Err(SerdeError::Invalid { .. })
        ));
    }
}
