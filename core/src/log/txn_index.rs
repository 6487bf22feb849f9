//! The aborted-transaction index of one segment, `<base_offset:020>.txnindex`: an entry
//! per transaction whose abort marker lies in the segment, so a `read_committed` fetch can
//! tell its client which producers' records to drop (Kafka's `TransactionIndex`).
//!
//! Entries are in Kafka's layout, 34 bytes each, in marker order:
//!
//! ```text
//! version i16 (0) | producer_id i64 | first_offset i64 | last_offset i64 | last_stable_offset i64
//! ```
//!
//! The file is appended when an abort marker is written and synced with its segment. A
//! torn last entry (a crash mid-write) is ignored; segments that recovery replays get
//! their index rewritten from the markers themselves.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use bytes::{Buf, BufMut};

use super::LogError;

/// Bytes per entry.
pub const ENTRY_BYTES: usize = 34;
const VERSION: i16 = 0;

/// A transaction that was aborted: `producer_id`'s records in `first_offset..=last_offset`
/// (the marker) are not to be read by `read_committed` consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
    /// The last stable offset when the marker was written.
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    fn encode(&self, out: &mut Vec<u8>) {
        out.put_i16(VERSION);
        out.put_i64(self.producer_id);
        out.put_i64(self.first_offset);
        out.put_i64(self.last_offset);
        out.put_i64(self.last_stable_offset);
    }
}

/// Appends `entries` to the index at `path` (created if missing).
///
/// # Errors
/// [`LogError::Io`].
pub fn append(path: &Path, entries: &[AbortedTxn]) -> Result<(), LogError> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut bytes = Vec::with_capacity(entries.len() * ENTRY_BYTES);
    entries.iter().for_each(|e| e.encode(&mut bytes));
    let io = |source| LogError::Io { op: "append transaction index", path: path.to_path_buf(), source };
    let mut file = OpenOptions::new().create(true).append(true).open(path).map_err(io)?;
    file.write_all(&bytes).map_err(io)
}

/// Replaces the index at `path` with `entries` (removes it when there are none).
///
/// # Errors
/// [`LogError::Io`].
pub fn rewrite(path: &Path, entries: &[AbortedTxn]) -> Result<(), LogError> {
    if entries.is_empty() {
        return match fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(LogError::Io { op: "remove transaction index", path: path.to_path_buf(), source: e })
            }
            _ => Ok(()),
        };
    }
    let mut bytes = Vec::with_capacity(entries.len() * ENTRY_BYTES);
    entries.iter().for_each(|e| e.encode(&mut bytes));
    fs::write(path, bytes).map_err(|source| LogError::Io {
        op: "write transaction index",
        path: path.to_path_buf(),
        source,
    })
}

/// The entries at `path`; none when it does not exist. A partial trailing entry or an
/// entry of an unknown version ends the list.
///
/// # Errors
/// [`LogError::Io`] for a file that exists but cannot be read.
pub fn read(path: &Path) -> Result<Vec<AbortedTxn>, LogError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(LogError::Io { op: "read transaction index", path: path.to_path_buf(), source }),
    };
    let mut entries = Vec::with_capacity(bytes.len() / ENTRY_BYTES);
    for mut chunk in bytes.chunks_exact(ENTRY_BYTES) {
        if chunk.get_i16() != VERSION {
            break;
        }
        entries.push(AbortedTxn {
            producer_id: chunk.get_i64(),
            first_offset: chunk.get_i64(),
            last_offset: chunk.get_i64(),
            last_stable_offset: chunk.get_i64(),
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_a_torn_tail_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.txnindex");
        assert!(read(&path).unwrap().is_empty());
        let a = AbortedTxn { producer_id: 7, first_offset: 10, last_offset: 20, last_stable_offset: 10 };
        let b = AbortedTxn { producer_id: 8, first_offset: 15, last_offset: 30, last_stable_offset: 15 };
        append(&path, &[a]).unwrap();
        append(&path, &[b]).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), 2 * ENTRY_BYTES as u64);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[0, 0, 1, 2]).unwrap();
        assert_eq!(read(&path).unwrap(), vec![a, b]);
        rewrite(&path, &[b]).unwrap();
        assert_eq!(read(&path).unwrap(), vec![b]);
        rewrite(&path, &[]).unwrap();
        assert!(!path.exists());
    }
}
