//! The partition checkpoint: offsets that must survive a restart but are not in the
//! segments themselves. Written atomically (temp file, fsync, rename, fsync dir) and
//! checksummed, so a crash leaves the old or the new version, never a torn one.
//!
//! ```text
//! headwater-partition-checkpoint v1 <log_start> <recovery_point> <clean_offset> <crc32c>
//! ```

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::LogError;

pub const CHECKPOINT_FILE: &str = "partition.checkpoint";
const TAG: &str = "headwater-partition-checkpoint v1";

/// Offsets kept across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartitionCheckpoint {
    /// The first offset readers may see (retention and DeleteRecords move it).
    pub log_start: i64,
    /// Everything below was flushed, indexes included: recovery starts here.
    pub recovery_point: i64,
    /// Compaction has cleaned the log below this offset.
    pub clean_offset: i64,
}

impl PartitionCheckpoint {
    /// Reads the checkpoint in `dir`; `Ok(None)` when there is none or it is damaged
    /// (the caller then recovers the whole log, which is always safe).
    pub fn read(dir: &Path) -> Option<Self> {
        let text = fs::read_to_string(dir.join(CHECKPOINT_FILE)).ok()?;
        let body = text.trim_end().strip_prefix(TAG)?.trim();
        let fields: Vec<&str> = body.split(' ').collect();
        let [log_start, recovery_point, clean_offset, crc] = fields[..] else { return None };
        let payload = format!("{log_start} {recovery_point} {clean_offset}");
        if crc32c::crc32c(payload.as_bytes()).to_string() != crc {
            return None;
        }
        Some(Self {
            log_start: log_start.parse().ok()?,
            recovery_point: recovery_point.parse().ok()?,
            clean_offset: clean_offset.parse().ok()?,
        })
    }

    /// Replaces the checkpoint in `dir` atomically and durably.
    ///
    /// # Errors
    /// [`LogError::Io`] if writing, syncing or renaming fails.
    pub fn write(&self, dir: &Path) -> Result<(), LogError> {
        let payload = format!("{} {} {}", self.log_start, self.recovery_point, self.clean_offset);
        let text = format!("{TAG} {payload} {}\n", crc32c::crc32c(payload.as_bytes()));
        write_atomically(&dir.join(CHECKPOINT_FILE), text.as_bytes())
    }
}

/// Replaces the file at `path` with `bytes` atomically and durably: a temp file beside
/// it, fsync, rename over, fsync the directory. A crash leaves the old or the new file.
///
/// # Errors
/// [`LogError::Io`] if writing, syncing or renaming fails.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), LogError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let io = |op: &'static str, path: &PathBuf| {
        let path = path.clone();
        move |source| LogError::Io { op, path, source }
    };
    let mut file = File::create(&tmp).map_err(io("create file", &tmp))?;
    file.write_all(bytes).map_err(io("write file", &tmp))?;
    file.sync_data().map_err(io("sync file", &tmp))?;
    fs::rename(&tmp, path).map_err(io("rename file", &path.to_path_buf()))?;
    sync_dir(dir)
}

/// Makes a directory's entries (created, renamed, deleted files) durable.
///
/// # Errors
/// [`LogError::Io`] if the directory cannot be opened or synced.
pub fn sync_dir(dir: &Path) -> Result<(), LogError> {
    let io = |op| move |source| LogError::Io { op, path: dir.to_path_buf(), source };
    File::open(dir).map_err(io("open directory"))?.sync_all().map_err(io("sync directory"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(PartitionCheckpoint::read(dir.path()), None);
        let checkpoint = PartitionCheckpoint { log_start: 5, recovery_point: 1000, clean_offset: 7 };
        checkpoint.write(dir.path()).unwrap();
        assert_eq!(PartitionCheckpoint::read(dir.path()), Some(checkpoint));
        let path = dir.path().join(CHECKPOINT_FILE);
        let damaged = fs::read_to_string(&path).unwrap().replace("1000", "1001");
        fs::write(&path, damaged).unwrap();
        assert_eq!(PartitionCheckpoint::read(dir.path()), None);
    }
}
