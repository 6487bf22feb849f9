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

/// The offset index of one segment.
#[derive(Debug)]
pub struct OffsetIndex {
    entries: IndexBytes,
}

impl OffsetIndex {
    pub fn new() -> Self {
        Self { entries: IndexBytes::Owned(Vec::new()) }
    }
    pub fn from_bytes(entries: IndexBytes) -> Self {
        Self { entries }
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.entries
    }
    pub fn len(&self) -> usize {
        self.entries.len() / OFFSET_ENTRY_BYTES
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn entry(&self, i: usize) -> (u32, u32) {
        let e = &self.entries[i * OFFSET_ENTRY_BYTES..(i + 1) * OFFSET_ENTRY_BYTES];
        (u32::from_be_bytes(e[..4].try_into().expect("4")), u32::from_be_bytes(e[4..].try_into().expect("4")))
    }
    pub fn last(&self) -> Option<(u32, u32)> {
        self.len().checked_sub(1).map(|i| self.entry(i))
    }

    /// Appends an entry.
    ///
    /// # Panics
    /// If the index is mapped (sealed), or offsets or positions do not increase.
    pub fn push(&mut self, relative_offset: u32, position: u32) {
        if let Some((last_offset, last_position)) = self.last() {
            assert!(relative_offset > last_offset && position > last_position, "offset index must increase");
        }
        let IndexBytes::Owned(entries) = &mut self.entries else { panic!("a sealed index is read-only") };
        entries.extend_from_slice(&relative_offset.to_be_bytes());
        entries.extend_from_slice(&position.to_be_bytes());
    }

    /// The position of the last indexed batch starting at or before `relative_offset`
    /// (0, the segment's start, when none does).
    pub fn floor_position(&self, relative_offset: u32) -> u32 {
        let n = self.len();
        // First entry whose offset is greater; the one before it is the floor.
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.entry(mid).0 <= relative_offset { lo = mid + 1 } else { hi = mid }
        }
        if lo == 0 { 0 } else { self.entry(lo - 1).1 }
    }

    /// Checks the entries increase strictly and stay within `log_size` bytes.
    pub fn is_sane(&self, log_size: u32) -> bool {
        if !self.entries.len().is_multiple_of(OFFSET_ENTRY_BYTES) {
            return false;
        }
        let mut previous: Option<(u32, u32)> = None;
        for i in 0..self.len() {
            let (offset, position) = self.entry(i);
            if position >= log_size || previous.is_some_and(|(o, p)| offset <= o || position <= p) {
                return false;
            }
            previous = Some((offset, position));
        }
        true
    }
}

impl Default for OffsetIndex {
    fn default() -> Self {
        Self::new()
    }
}

/// The time index of one segment.
#[derive(Debug)]
pub struct TimeIndex {
    entries: IndexBytes,
}

impl TimeIndex {
    pub fn new() -> Self {
        Self { entries: IndexBytes::Owned(Vec::new()) }
    }
    pub fn from_bytes(entries: IndexBytes) -> Self {
        Self { entries }
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.entries
    }
    pub fn len(&self) -> usize {
        self.entries.len() / TIME_ENTRY_BYTES
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn entry(&self, i: usize) -> (i64, u32) {
        let e = &self.entries[i * TIME_ENTRY_BYTES..(i + 1) * TIME_ENTRY_BYTES];
        (i64::from_be_bytes(e[..8].try_into().expect("8")), u32::from_be_bytes(e[8..].try_into().expect("4")))
    }
    pub fn last(&self) -> Option<(i64, u32)> {
        self.len().checked_sub(1).map(|i| self.entry(i))
    }

    /// Appends an entry if it raises the maximum timestamp; returns whether it did.
    ///
    /// # Panics
    /// If the index is mapped (sealed).
    pub fn maybe_push(&mut self, timestamp: i64, relative_offset: u32) -> bool {
        if self.last().is_some_and(|(t, o)| timestamp <= t || relative_offset <= o) {
            return false;
        }
        let IndexBytes::Owned(entries) = &mut self.entries else { panic!("a sealed index is read-only") };
        entries.extend_from_slice(&timestamp.to_be_bytes());
        entries.extend_from_slice(&relative_offset.to_be_bytes());
        true
    }

    /// The relative offset after which records may reach `timestamp`: every record at or
    /// below the returned offset is strictly older. `None` when no entry is that old.
    pub fn offset_before(&self, timestamp: i64) -> Option<u32> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.entry(mid).0 < timestamp { lo = mid + 1 } else { hi = mid }
        }
        (lo > 0).then(|| self.entry(lo - 1).1)
    }

    /// Checks the entries increase and stay within the segment's offsets.
    pub fn is_sane(&self, max_relative_offset: u32) -> bool {
        if !self.entries.len().is_multiple_of(TIME_ENTRY_BYTES) {
            return false;
        }
        let mut previous: Option<(i64, u32)> = None;
        for i in 0..self.len() {
            let (timestamp, offset) = self.entry(i);
            if offset > max_relative_offset || previous.is_some_and(|(t, o)| timestamp <= t || offset <= o) {
                return false;
            }
            previous = Some((timestamp, offset));
        }
        true
    }
}

impl Default for TimeIndex {
    fn default() -> Self {
        Self::new()
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
                index.push(offset, position);
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
                prop_assert!(index.maybe_push(timestamp, offset));
                entries.push((timestamp, offset));
            }
            let expected = entries.iter().rev().find(|(t, _)| *t < probe).map(|(_, o)| *o);
            prop_assert_eq!(index.offset_before(probe), expected);
        }
    }

    #[test]
    fn insane_indexes_are_recognised() {
        let mut index = OffsetIndex::new();
        index.push(1, 100);
        index.push(5, 200);
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
