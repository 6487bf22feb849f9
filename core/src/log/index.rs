//! The sparse indexes of a segment, in Kafka's on-disk layout.
//!
//! - Offset index (`.index`): 8-byte entries `relative_offset: u32 BE, position: u32 BE`, one
//!   per `index.interval.bytes` of log; `relative_offset` is a batch's base offset minus
//!   the segment's base offset, `position` the batch's byte position in the `.log` file.
//! - Time index (`.timeindex`): 12-byte entries `timestamp: i64 BE, relative_offset: u32 BE`:
//!   every record at or below the offset has a timestamp at most `timestamp`.
//!
//! Both are rebuildable from the log, so they are written lazily and checked on open.
//! The active segment keeps its entries in memory; a sealed one maps its file.

use std::fs::File;
use std::marker::PhantomData;
use std::ops::Deref;
use std::path::Path;

use memmap2::Mmap;

use super::LogError;

pub const OFFSET_ENTRY_BYTES: usize = 8;
pub const TIME_ENTRY_BYTES: usize = 12;

/// Entry bytes, owned (being built) or mapped from a sealed segment's file.
#[derive(Debug)]
pub enum IndexBytes {
    Owned(Vec<u8>),
    Mapped(Mmap),
}

impl Deref for IndexBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Self::Owned(bytes) => bytes,
            Self::Mapped(map) => map,
        }
    }
}

impl IndexBytes {
    /// Maps an index file read-only; an empty file becomes an empty owned buffer.
    ///
    /// # Errors
    /// [`LogError::Io`] if the file cannot be opened or mapped.
    pub fn map(path: &Path) -> Result<Self, LogError> {
        let io = |op| move |source| LogError::Io { op, path: path.to_path_buf(), source };
        let file = File::open(path).map_err(io("open index"))?;
        if file.metadata().map_err(io("stat index"))?.len() == 0 {
            return Ok(Self::Owned(Vec::new()));
        }
        // SAFETY: sealed index files are never written again; replacing one goes through a
        // rename, which leaves this mapping on the old inode.
        let map = unsafe { Mmap::map(&file) }.map_err(io("map index"))?;
        Ok(Self::Mapped(map))
    }
}

/// One fixed-size, big-endian index entry.
pub trait IndexEntry: Copy + std::fmt::Debug {
    const BYTES: usize;
    fn decode(bytes: &[u8]) -> Self;
    fn encode(self, out: &mut Vec<u8>);
    /// Whether `self` may come after `previous`: both fields strictly increase.
    fn follows(self, previous: Self) -> bool;
}

/// An offset index entry: a batch's base offset (relative to the segment's) and position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

/// A time index entry: every record at or below `relative_offset` is at most `timestamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

impl IndexEntry for OffsetEntry {
    const BYTES: usize = OFFSET_ENTRY_BYTES;
    fn decode(b: &[u8]) -> Self {
        Self {
            relative_offset: u32::from_be_bytes(b[..4].try_into().expect("4")),
            position: u32::from_be_bytes(b[4..8].try_into().expect("4")),
        }
    }
    fn encode(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
        out.extend_from_slice(&self.position.to_be_bytes());
    }
    fn follows(self, previous: Self) -> bool {
        self.relative_offset > previous.relative_offset && self.position > previous.position
    }
}

impl IndexEntry for TimeEntry {
    const BYTES: usize = TIME_ENTRY_BYTES;
    fn decode(b: &[u8]) -> Self {
        Self {
            timestamp: i64::from_be_bytes(b[..8].try_into().expect("8")),
            relative_offset: u32::from_be_bytes(b[8..12].try_into().expect("4")),
        }
    }
    fn encode(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
    }
    fn follows(self, previous: Self) -> bool {
        self.timestamp > previous.timestamp && self.relative_offset > previous.relative_offset
    }
}

/// A sorted run of entries, being built (owned) or sealed (mapped).
#[derive(Debug)]
pub struct Index<E> {
    entries: IndexBytes,
    _entry: PhantomData<E>,
}

/// The offset index of one segment.
pub type OffsetIndex = Index<OffsetEntry>;
/// The time index of one segment.
pub type TimeIndex = Index<TimeEntry>;

impl<E: IndexEntry> Index<E> {
    pub fn new() -> Self {
        Self::from_bytes(IndexBytes::Owned(Vec::new()))
    }
    pub fn from_bytes(entries: IndexBytes) -> Self {
        Self { entries, _entry: PhantomData }
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.entries
    }
    pub fn len(&self) -> usize {
        self.entries.len() / E::BYTES
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn entry(&self, i: usize) -> E {
        E::decode(&self.entries[i * E::BYTES..(i + 1) * E::BYTES])
    }
    pub fn last(&self) -> Option<E> {
        self.len().checked_sub(1).map(|i| self.entry(i))
    }

    /// Appends `entry` if it follows the last one; returns whether it did.
    ///
    /// # Panics
    /// If the index is mapped (sealed).
    pub fn push(&mut self, entry: E) -> bool {
        if self.last().is_some_and(|last| !entry.follows(last)) {
            return false;
        }
        let IndexBytes::Owned(entries) = &mut self.entries else { panic!("a sealed index is read-only") };
        entry.encode(entries);
        true
    }

    /// The number of leading entries for which `pred` holds (entries are sorted, so
    /// `pred` must hold for a prefix): a binary search.
    fn partition_point(&self, pred: impl Fn(E) -> bool) -> usize {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if pred(self.entry(mid)) { lo = mid + 1 } else { hi = mid }
        }
        lo
    }

    /// Whole entries, each following the one before.
    fn is_well_formed(&self) -> bool {
        self.entries.len().is_multiple_of(E::BYTES) && (1..self.len()).all(|i| self.entry(i).follows(self.entry(i - 1)))
    }
}

impl<E: IndexEntry> Default for Index<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl OffsetIndex {
    /// The position of the last indexed batch starting at or before `relative_offset`
    /// (0, the segment's start, when none does).
    pub fn floor_position(&self, relative_offset: u32) -> u32 {
        match self.partition_point(|e| e.relative_offset <= relative_offset) {
            0 => 0,
            n => self.entry(n - 1).position,
        }
    }

    /// Checks the entries increase strictly and stay within `log_size` bytes.
    pub fn is_sane(&self, log_size: u32) -> bool {
        self.is_well_formed() && self.last().is_none_or(|e| e.position < log_size)
    }
}

impl TimeIndex {
    /// The relative offset after which records may reach `timestamp`: every record at or
    /// below the returned offset is strictly older. `None` when no entry is that old.
    pub fn offset_before(&self, timestamp: i64) -> Option<u32> {
        match self.partition_point(|e| e.timestamp < timestamp) {
            0 => None,
            n => Some(self.entry(n - 1).relative_offset),
        }
    }

    /// Checks the entries increase and stay within the segment's offsets.
    pub fn is_sane(&self, max_relative_offset: u32) -> bool {
        self.is_well_formed() && self.last().is_none_or(|e| e.relative_offset <= max_relative_offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// floor_position agrees with a linear scan for any increasing index.
        #[test]
        fn floor_matches_a_linear_scan(steps in proptest::collection::vec((1u32..100, 1u32..5000), 0..200), probe in 0u32..30_000) {
            let mut index = OffsetIndex::new();
            let (mut offset, mut position) = (0u32, 0u32);
            let mut entries = Vec::new();
            for (d_offset, d_position) in steps {
                offset += d_offset;
                position += d_position;
                index.push(OffsetEntry { relative_offset: offset, position });
                entries.push((offset, position));
            }
            let expected = entries.iter().rev().find(|(o, _)| *o <= probe).map_or(0, |(_, p)| *p);
            prop_assert_eq!(index.floor_position(probe), expected);
            prop_assert!(index.is_sane(position + 1));
        }

        #[test]
        fn time_lookup_matches_a_linear_scan(steps in proptest::collection::vec((1i64..100, 1u32..50), 0..200), probe in 0i64..25_000) {
            let mut index = TimeIndex::new();
            let (mut timestamp, mut offset) = (0i64, 0u32);
            let mut entries = Vec::new();
            for (d_time, d_offset) in steps {
                timestamp += d_time;
                offset += d_offset;
                let pushed = index.push(TimeEntry { timestamp, relative_offset: offset });
                prop_assert!(pushed);
                entries.push((timestamp, offset));
            }
            let expected = entries.iter().rev().find(|(t, _)| *t < probe).map(|(_, o)| *o);
            prop_assert_eq!(index.offset_before(probe), expected);
        }
    }

    #[test]
    fn insane_indexes_are_recognised() {
        let mut index = OffsetIndex::new();
        index.push(OffsetEntry { relative_offset: 1, position: 100 });
        index.push(OffsetEntry { relative_offset: 5, position: 200 });
        assert!(index.is_sane(201));
        assert!(!index.is_sane(200), "position past the log");
        let mut bytes = index.as_bytes().to_vec();
        bytes.push(0);
        assert!(!OffsetIndex::from_bytes(IndexBytes::Owned(bytes)).is_sane(1000), "partial entry");
        let mut swapped = index.as_bytes()[8..].to_vec();
        swapped.extend_from_slice(&index.as_bytes()[..8]);
        assert!(!OffsetIndex::from_bytes(IndexBytes::Owned(swapped)).is_sane(1000), "decreasing");
    }
}
