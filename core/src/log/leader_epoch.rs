//! The leader epoch cache: where each leader epoch starts in a partition's log
//! (Kafka's `leader-epoch-checkpoint`, KIP-101 and KIP-279).
//!
//! It answers OffsetForLeaderEpoch ("where does epoch E end?") without scanning segments:
//! a follower of a new leader asks with its own latest epoch and truncates its log to the
//! answer, which is what keeps replicas from diverging below the high watermark. It
//! changes when a batch of a new epoch is appended and when the log is truncated at
//! either end, and is written atomically beside the segments in Kafka's text format:
//! a version line (`0`), a count, then one `epoch start_offset` line per entry.

use std::path::{Path, PathBuf};

use super::LogError;
use super::checkpoint::write_atomically;

/// The checkpoint's file name, as in Kafka.
pub const LEADER_EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";

/// An epoch and the first offset written in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

/// Epochs in increasing order, each with its start offset (also increasing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Records that `epoch` starts at `start_offset`. Returns whether the cache changed
    /// (the caller then writes the checkpoint). An epoch already known, or older than the
    /// latest, changes nothing; entries at or after `start_offset` (left over from a log
    /// that was truncated) are replaced.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || self.latest_epoch().is_some_and(|latest| epoch <= latest) {
            return false;
        }
        self.entries.retain(|e| e.start_offset < start_offset);
        self.entries.push(EpochEntry { epoch, start_offset });
        true
    }

    /// Where `requested` ends in a log whose end is `log_end`, as (epoch, end offset):
    /// the latest epoch ends at the log end; an older one at the start of the next epoch
    /// this log knows, reported under the largest known epoch not above it. `None` when
    /// the log knows no epoch at or above the requested one (Kafka's UNDEFINED, -1/-1).
    pub fn end_offset_for(&self, requested: i32, log_end: i64) -> Option<(i32, i64)> {
        let latest = self.latest_epoch()?;
        if requested < 0 {
            return None;
        }
        if requested == latest {
            return Some((latest, log_end));
        }
        let higher = self.entries.iter().find(|e| e.epoch > requested)?;
        match self.entries.iter().rev().find(|e| e.epoch <= requested) {
            Some(floor) => Some((floor.epoch, higher.start_offset)),
            // Older than anything here: it ends where this log's first epoch starts.
            None => Some((requested, higher.start_offset)),
        }
    }

    /// The log was truncated to end at `end_offset`: epochs starting at or after it go.
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end_offset);
        before != self.entries.len()
    }

    /// The log now starts at `start_offset`: epochs wholly before it go, and the one it
    /// falls in starts there.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let Some(keep) = self.entries.iter().rposition(|e| e.start_offset <= start_offset) else { return false };
        let changed = keep > 0 || self.entries[keep].start_offset != start_offset;
        self.entries.drain(..keep);
        self.entries[0].start_offset = start_offset;
        changed
    }

    /// Reads the checkpoint in `dir`; a missing file is an empty cache.
    ///
    /// # Errors
    /// [`LogError::CorruptCheckpoint`] if the file exists but is not a valid checkpoint; the caller
    /// rebuilds the cache from the log's batches then.
    pub fn read(dir: &Path) -> Result<Self, LogError> {
        let path = dir.join(LEADER_EPOCH_CHECKPOINT);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => return Err(LogError::Io { op: "read leader epoch checkpoint", path, source }),
        };
        parse(&text).ok_or(LogError::CorruptCheckpoint { path, reason: "malformed leader epoch checkpoint" })
    }

    /// Writes the checkpoint into `dir` atomically.
    ///
    /// # Errors
    /// [`LogError::Io`] if writing, syncing or renaming fails.
    pub fn write(&self, dir: &Path) -> Result<(), LogError> {
        let mut text = format!("0\n{}\n", self.entries.len());
        for e in &self.entries {
            text.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
        }
        write_atomically(&checkpoint_path(dir), text.as_bytes())
    }
}

fn checkpoint_path(dir: &Path) -> PathBuf {
    dir.join(LEADER_EPOCH_CHECKPOINT)
}

fn parse(text: &str) -> Option<LeaderEpochCache> {
    let mut lines = text.lines();
    if lines.next()?.trim() != "0" {
        return None;
    }
    let count: usize = lines.next()?.trim().parse().ok()?;
    let mut cache = LeaderEpochCache::default();
    for _ in 0..count {
        let mut fields = lines.next()?.split_whitespace();
        let epoch: i32 = fields.next()?.parse().ok()?;
        let start_offset: i64 = fields.next()?.parse().ok()?;
        if fields.next().is_some() || !cache.assign(epoch, start_offset) {
            return None;
        }
    }
    Some(cache)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        let mut cache = LeaderEpochCache::default();
        for (epoch, start) in entries {
            assert!(cache.assign(*epoch, *start));
        }
        cache
    }

    #[test]
    fn an_epoch_ends_where_the_next_known_one_starts() {
        let c = cache(&[(0, 0), (2, 100), (5, 250)]);
        assert_eq!(c.end_offset_for(5, 300), Some((5, 300)), "the latest epoch ends at the log end");
        assert_eq!(c.end_offset_for(2, 300), Some((2, 250)));
        assert_eq!(c.end_offset_for(0, 300), Some((0, 100)));
        // An epoch this log never had: reported under the largest one below it.
        assert_eq!(c.end_offset_for(3, 300), Some((2, 250)));
        assert_eq!(c.end_offset_for(6, 300), None, "newer than anything here");
        assert_eq!(c.end_offset_for(-1, 300), None);
        assert_eq!(LeaderEpochCache::default().end_offset_for(0, 0), None);
        let later = cache(&[(3, 40)]);
        assert_eq!(later.end_offset_for(1, 90), Some((1, 40)), "older than the first epoch known");
    }

    #[test]
    fn only_newer_epochs_are_assigned_and_truncated_tails_are_replaced() {
        let mut c = cache(&[(0, 0), (1, 10)]);
        assert!(!c.assign(1, 20), "an epoch already known");
        assert!(!c.assign(0, 30), "an older epoch");
        c.truncate_from_end(5);
        assert_eq!(c.entries(), &[EpochEntry { epoch: 0, start_offset: 0 }]);
        assert!(c.assign(3, 5));
        assert_eq!(c.latest_epoch(), Some(3));
    }

    #[test]
    fn truncating_the_start_moves_the_first_epoch_up() {
        let mut c = cache(&[(0, 0), (1, 10), (2, 20)]);
        assert!(c.truncate_from_start(15));
        assert_eq!(
            c.entries(),
            &[EpochEntry { epoch: 1, start_offset: 15 }, EpochEntry { epoch: 2, start_offset: 20 }]
        );
        assert!(!c.truncate_from_start(15));
    }

    #[test]
    fn the_checkpoint_round_trips_and_a_damaged_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(LeaderEpochCache::read(dir.path()).unwrap(), LeaderEpochCache::default());
        let c = cache(&[(0, 0), (4, 77)]);
        c.write(dir.path()).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join(LEADER_EPOCH_CHECKPOINT)).unwrap(), "0\n2\n0 0\n4 77\n");
        assert_eq!(LeaderEpochCache::read(dir.path()).unwrap(), c);
        for bad in ["1\n0\n", "0\n2\n0 0\n", "0\n1\nx 0\n", "0\n2\n4 0\n1 5\n"] {
            std::fs::write(dir.path().join(LEADER_EPOCH_CHECKPOINT), bad).unwrap();
            assert!(matches!(LeaderEpochCache::read(dir.path()), Err(LogError::CorruptCheckpoint { .. })), "{bad:?}");
        }
    }
}
