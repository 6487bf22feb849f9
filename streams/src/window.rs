//! Window definitions and windowed keys.
//!
//! All windows are on event time. A window accepts records until stream time (the largest
//! timestamp its task has seen) passes its end plus the grace period; records that
//! arrive later are dropped and counted (`dropped-late`). With
//! [`EmitStrategy::OnWindowClose`] a window's result is written once, when it closes.

use std::time::Duration;

use bytes::Bytes;

use crate::serde::{Serde, SerdeError};

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A window: `[start, end)` for time windows, `[start, end]` for sliding and session
/// windows (Kafka Streams' conventions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

/// A key with its window: the key of a windowed aggregate's results.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Windowed<K> {
    pub key: K,
    pub window: Window,
}

/// When a windowed aggregate writes its results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmitStrategy {
    /// Every update, as it happens (Kafka Streams' default).
    #[default]
    OnWindowUpdate,
    /// Once per window, when it closes (end + grace passed): the final result only.
    OnWindowClose,
}

/// Tumbling (`advance == size`) or hopping (`advance < size`) windows of fixed size,
/// aligned to the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindows {
    pub size_ms: i64,
    pub advance_ms: i64,
    pub grace_ms: i64,
}

impl TimeWindows {
    /// Tumbling windows of `size` with no grace period.
    ///
    /// # Panics
    /// On a zero size.
    pub fn of(size: Duration) -> Self {
        let size_ms = ms(size);
        assert!(size_ms > 0, "a window's size must be positive");
        Self { size_ms, advance_ms: size_ms, grace_ms: 0 }
    }

    /// Hopping windows: a new window every `advance`.
    ///
    /// # Panics
    /// When `advance` is zero or larger than the size.
    pub fn advance_by(mut self, advance: Duration) -> Self {
        let advance_ms = ms(advance);
        assert!(advance_ms > 0 && advance_ms <= self.size_ms, "advance must be in (0, size]");
        self.advance_ms = advance_ms;
        self
    }

    /// How long after a window's end it still accepts late records.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace_ms = ms(grace);
        self
    }

    /// The windows a record at `timestamp` falls in, earliest first.
    pub fn windows_for(&self, timestamp: i64) -> impl Iterator<Item = Window> + '_ {
        let last_start = timestamp - timestamp.rem_euclid(self.advance_ms);
        // The earliest window holding the timestamp starts just after timestamp - size.
        let first_start = (timestamp - self.size_ms + 1).max(0);
        // Starts are multiples of advance from first_start (itself a multiple) on.
        let first_start = first_start + (self.advance_ms - first_start.rem_euclid(self.advance_ms)) % self.advance_ms;
        (0..)
            .map(move |i| first_start + i * self.advance_ms)
            .take_while(move |start| *start <= last_start)
            .filter(move |start| *start + self.size_ms > timestamp)
            .map(move |start| Window { start, end: start + self.size_ms })
    }
}

/// Sliding windows (Kafka Streams' `SlidingWindows`): every window of `time_difference`
/// that some set of records spans, `[start, end]` inclusive, with ends and starts at
/// record timestamps. Two records fall in a common window when their timestamps differ
/// by at most `time_difference`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingWindows {
    pub time_difference_ms: i64,
    pub grace_ms: i64,
}

impl SlidingWindows {
    /// # Panics
    /// On a zero time difference.
    pub fn with_time_difference_and_grace(time_difference: Duration, grace: Duration) -> Self {
        let time_difference_ms = ms(time_difference);
        assert!(time_difference_ms > 0, "a sliding window's time difference must be positive");
        Self { time_difference_ms, grace_ms: ms(grace) }
    }
}

/// Session windows: records of a key closer than `gap` to each other form one session;
/// a record between two sessions merges them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionWindows {
    pub gap_ms: i64,
    pub grace_ms: i64,
}

impl SessionWindows {
    /// Sessions with inactivity gap `gap` and no grace period.
    ///
    /// # Panics
    /// On a zero gap.
    pub fn with_inactivity_gap(gap: Duration) -> Self {
        let gap_ms = ms(gap);
        assert!(gap_ms > 0, "a session's inactivity gap must be positive");
        Self { gap_ms, grace_ms: 0 }
    }

    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace_ms = ms(grace);
        self
    }
}

/// Windowed keys on a topic: the key's bytes, then the window's start and end as 8-byte
/// big-endian integers (Kafka Streams writes the start only; the end is kept here so that
/// session and sliding windows read back whole).
#[derive(Debug, Clone, Copy, Default)]
pub struct WindowedSerde<S>(pub S);

impl<K, S: Serde<K>> Serde<Windowed<K>> for WindowedSerde<S> {
    fn serialize(&self, value: &Windowed<K>, out: &mut Vec<u8>) -> bool {
        self.0.serialize(&value.key, out);
        out.extend_from_slice(&value.window.start.to_be_bytes());
        out.extend_from_slice(&value.window.end.to_be_bytes());
        true
    }
    fn deserialize(&self, bytes: Option<&Bytes>) -> Result<Windowed<K>, SerdeError> {
        let bytes = bytes.ok_or(SerdeError::Null { expected: "windowed key" })?;
        if bytes.len() < 16 {
            return Err(SerdeError::Invalid { expected: "windowed key", message: format!("{} bytes", bytes.len()) });
        }
        let at = bytes.len() - 16;
        let key = self.0.deserialize(Some(&bytes.slice(..at)))?;
        let start = i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let end = i64::from_be_bytes(bytes[at + 8..].try_into().expect("8 bytes"));
        Ok(Windowed { key, window: Window { start, end } })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn starts(w: TimeWindows, t: i64) -> Vec<i64> {
        w.windows_for(t).map(|w| w.start).collect()
    }

    #[test]
    fn tumbling_windows_hold_each_timestamp_once() {
        let w = TimeWindows::of(Duration::from_millis(10));
        assert_eq!(starts(w, 0), vec![0]);
        assert_eq!(starts(w, 9), vec![0]);
        assert_eq!(starts(w, 10), vec![10]);
        assert_eq!(w.windows_for(15).next(), Some(Window { start: 10, end: 20 }));
    }

    #[test]
    fn hopping_windows_overlap() {
        let w = TimeWindows::of(Duration::from_millis(10)).advance_by(Duration::from_millis(5));
        assert_eq!(starts(w, 12), vec![5, 10]);
        assert_eq!(starts(w, 10), vec![5, 10]);
        assert_eq!(starts(w, 3), vec![0]);
        let w = TimeWindows::of(Duration::from_millis(10)).advance_by(Duration::from_millis(3));
        assert_eq!(starts(w, 12), vec![3, 6, 9, 12]);
    }

    #[test]
    fn windowed_keys_round_trip() {
        let serde = WindowedSerde(crate::serde::Utf8);
        let key = Windowed { key: "k".to_string(), window: Window { start: 5, end: 15 } };
        let bytes = crate::serde::to_bytes(&serde, &key);
        assert_eq!(serde.deserialize(bytes.as_ref()).unwrap(), key);
    }
}
