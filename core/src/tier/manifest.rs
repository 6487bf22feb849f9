//! A partition's manifest: the list of its remote files, with their offset and time
//! ranges, and the partition's log start. One JSON object in the object store beside the
//! files, replaced whole (object stores replace an object atomically), always after the
//! files it names are uploaded and before the files it drops are deleted: a reader that
//! follows the manifest never meets a missing file.
//!
//! ```text
//!  <root>/topics/<topic>/<topic id>/<partition>/manifest.json
//!                                              /00000000000000000000.parquet
//!                                              /00000000000000004096.parquet ...
//! ```

use serde::{Deserialize, Serialize};

/// The manifest format this code writes and reads.
pub const MANIFEST_VERSION: u32 = 1;
pub const MANIFEST_FILE: &str = "manifest.json";

/// One remote file: the records of one segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteFile {
    /// The file's name inside the partition's folder.
    pub name: String,
    /// The segment's base offset and the offset after its last batch.
    pub base_offset: i64,
    pub next_offset: i64,
    pub records: u64,
    /// Record timestamps, smallest and largest (-1 when unknown).
    pub min_timestamp: i64,
    pub max_timestamp: i64,
    /// Bytes of the Parquet file.
    pub size: u64,
    /// Bytes the segment took on local disk: what retention.bytes counts.
    pub segment_bytes: u64,
    /// The segment's aborted-transaction index: transactions whose abort marker is in it,
    /// for `read_committed` fetches of remote history.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aborted_transactions: Vec<crate::log::txn_index::AbortedTxn>,
}

/// The remote part of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub topic: String,
    pub topic_id: uuid::Uuid,
    pub partition: i32,
    /// Offsets below this are gone (retention, DeleteRecords) even where a file holds them.
    pub log_start: i64,
    /// The leader epoch of the broker that last wrote it: a broker that led in an older
    /// epoch does not overwrite it.
    pub leader_epoch: i32,
    /// Files in offset order.
    pub files: Vec<RemoteFile>,
}

impl Manifest {
    pub fn empty(topic: &str, topic_id: uuid::Uuid, partition: i32) -> Self {
        Self {
            version: MANIFEST_VERSION,
            topic: topic.to_string(),
            topic_id,
            partition,
            log_start: 0,
            leader_epoch: -1,
            files: Vec::new(),
        }
    }

    /// The first offset readable from remote storage; `None` with no file.
    pub fn start(&self) -> Option<i64> {
        let first = self.files.first()?;
        Some(self.log_start.max(first.base_offset))
    }

    /// The offset after the last remote batch; `None` with no file.
    pub fn end(&self) -> Option<i64> {
        self.files.last().map(|f| f.next_offset)
    }

    /// The index of the file holding `offset`, or of the first file after it (past a gap).
    pub fn file_index(&self, offset: i64) -> Option<usize> {
        let index = self.files.partition_point(|f| f.next_offset <= offset);
        (index < self.files.len()).then_some(index)
    }

    /// Record bytes (as on local disk) of remote files that end at or below `offset`.
    pub fn bytes_below(&self, offset: i64) -> u64 {
        self.files.iter().filter(|f| f.next_offset <= offset).map(|f| f.segment_bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(base: i64, next: i64) -> RemoteFile {
        RemoteFile {
            name: format!("{base:020}.parquet"),
            base_offset: base,
            next_offset: next,
            records: (next - base) as u64,
            min_timestamp: base,
            max_timestamp: next - 1,
            size: 10,
            segment_bytes: 100,
            aborted_transactions: Vec::new(),
        }
    }

    #[test]
    fn files_are_found_by_offset_across_gaps() {
        let mut manifest = Manifest::empty("t", uuid::Uuid::nil(), 0);
        assert_eq!((manifest.start(), manifest.end(), manifest.file_index(0)), (None, None, None));
        manifest.files = vec![file(0, 10), file(10, 20), file(30, 40)];
        manifest.log_start = 5;
        assert_eq!((manifest.start(), manifest.end()), (Some(5), Some(40)));
        assert_eq!(manifest.file_index(9), Some(0));
        assert_eq!(manifest.file_index(10), Some(1));
        assert_eq!(manifest.file_index(25), Some(2), "a gap reads on from the next file");
        assert_eq!(manifest.file_index(40), None);
        assert_eq!(manifest.bytes_below(20), 200);
        let text = serde_json::to_string(&manifest).unwrap();
        assert_eq!(serde_json::from_str::<Manifest>(&text).unwrap(), manifest);
    }
}
