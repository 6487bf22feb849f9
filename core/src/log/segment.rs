//! One segment of a partition's log: `<base_offset:020>.log` with its `.index` and
//! `.timeindex`. Writable and sealed segments are different types: the active segment
//! appends and keeps its indexes in memory; a sealed one is immutable and mapped, so
//! readers use it without locks.
//!
//! ```text
//!  ActiveSegment ──seal()──> SealedSegment     (roll: index files written, flushed later)
//!       ^                         │
//!   recover() on open      open() on open: index checked, rebuilt if damaged
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{IoSlice, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use memmap2::Mmap;

use super::LogError;
use super::index::{IndexBytes, OffsetEntry, OffsetIndex, TimeEntry, TimeIndex};
use crate::record::{BatchIter, LOG_OVERHEAD, RecordBatch, assign_offset};

/// Bytes of a batch header needed to know its offsets and timestamps.
const HEADER_PEEK_BYTES: usize = 43;

/// The paths of one segment's files.
#[derive(Debug, Clone)]
pub struct SegmentPaths {
    pub log: PathBuf,
    pub index: PathBuf,
    pub time_index: PathBuf,
    /// Aborted transactions whose markers are in the segment (see [`super::txn_index`]).
    pub txn_index: PathBuf,
    /// The producer state as of the segment's base offset (written when it became active).
    pub snapshot: PathBuf,
}

impl SegmentPaths {
    pub fn new(dir: &Path, base_offset: i64) -> Self {
        Self {
            log: dir.join(format!("{base_offset:020}.log")),
            index: dir.join(format!("{base_offset:020}.index")),
            time_index: dir.join(format!("{base_offset:020}.timeindex")),
            txn_index: dir.join(format!("{base_offset:020}.txnindex")),
            snapshot: dir.join(format!("{base_offset:020}.snapshot")),
        }
    }

    /// Removes the segment's files; missing ones are fine.
    ///
    /// # Errors
    /// [`LogError::Io`] for any other failure.
    pub fn remove(&self) -> Result<(), LogError> {
        for path in [&self.index, &self.time_index, &self.txn_index, &self.snapshot, &self.log] {
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(LogError::Io { op: "remove segment file", path: path.clone(), source }),
            }
        }
        Ok(())
    }
}

/// Builds a segment's indexes as batches go by, the same way for append, recovery and
/// compaction: an offset entry (and a time entry when the maximum timestamp rose) once
/// `index.interval.bytes` of log have passed since the last entry.
#[derive(Debug)]
pub struct SegmentIndexer {
    base_offset: i64,
    interval_bytes: u32,
    bytes_since_entry: u32,
    pub max_timestamp: i64,
    offset_of_max_timestamp: i64,
    pub offset_index: OffsetIndex,
    pub time_index: TimeIndex,
}

impl SegmentIndexer {
    pub fn new(base_offset: i64, interval_bytes: u32) -> Self {
        Self {
            base_offset,
            interval_bytes,
            bytes_since_entry: 0,
            max_timestamp: -1,
            offset_of_max_timestamp: base_offset,
            offset_index: OffsetIndex::new(),
            time_index: TimeIndex::new(),
        }
    }

    /// Records a batch written at `position`.
    pub fn on_batch(&mut self, batch: &RecordBatch<'_>, position: u32) {
        self.on_batch_at(batch, batch.base_offset(), position);
    }

    /// Records a batch written at `position` with `base_offset` assigned (the bytes in hand
    /// may still carry the producer's).
    pub fn on_batch_at(&mut self, batch: &RecordBatch<'_>, base_offset: i64, position: u32) {
        if batch.max_timestamp() > self.max_timestamp {
            self.max_timestamp = batch.max_timestamp();
            self.offset_of_max_timestamp = base_offset + i64::from(batch.last_offset_delta());
        }
        if self.bytes_since_entry > self.interval_bytes {
            let pushed = self.offset_index.push(OffsetEntry { relative_offset: self.relative(base_offset), position });
            debug_assert!(pushed, "batches arrive in offset order");
            self.time_index.push(TimeEntry {
                timestamp: self.max_timestamp,
                relative_offset: self.relative(self.offset_of_max_timestamp),
            });
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += batch.size() as u32;
    }

    /// Adds the final time entry so the segment's maximum timestamp is on disk.
    pub fn finish(&mut self) {
        if self.max_timestamp >= 0 {
            self.time_index.push(TimeEntry {
                timestamp: self.max_timestamp,
                relative_offset: self.relative(self.offset_of_max_timestamp),
            });
        }
    }

    fn relative(&self, offset: i64) -> u32 {
        (offset - self.base_offset) as u32
    }
}

/// Where a read gets its bytes: a sealed segment's mapping, or the active segment's file.
#[derive(Debug, Clone)]
pub enum ReadSource {
    Mapped(Arc<Mmap>),
    File(Arc<File>),
}

/// A point-in-time view of a segment for one read, taken under the log's lock and used
/// without it: the bytes below `size` are whole batches and never change.
#[derive(Debug, Clone)]
pub struct SegmentView {
    pub base_offset: i64,
    pub source: ReadSource,
    pub size: u32,
    /// Where to start looking: the offset index's floor for the wanted offset.
    pub start_position: u32,
    pub path: PathBuf,
}

/// The owner of a mapped slice, so a fetch can hold segment bytes without copying them.
struct MapSlice {
    map: Arc<Mmap>,
    start: usize,
    end: usize,
}

impl AsRef<[u8]> for MapSlice {
    fn as_ref(&self) -> &[u8] {
        &self.map[self.start..self.end]
    }
}

impl SegmentView {
    fn read(&self, position: u32, len: usize) -> Result<Bytes, LogError> {
        let start = position as usize;
        let end = (start + len).min(self.size as usize);
        match &self.source {
            ReadSource::Mapped(map) => Ok(Bytes::from_owner(MapSlice { map: Arc::clone(map), start, end })),
            ReadSource::File(file) => {
                let mut buf = BytesMut::zeroed(end - start);
                file.read_exact_at(&mut buf, start as u64).map_err(|source| LogError::Io {
                    op: "read segment",
                    path: self.path.clone(),
                    source,
                })?;
                Ok(buf.freeze())
            }
        }
    }

    /// `(base_offset, last_offset, size)` of the batch at `position`.
    fn peek(&self, position: u32) -> Result<(i64, i64, u32), LogError> {
        let header = self.read(position, HEADER_PEEK_BYTES)?;
        let corrupt = || LogError::CorruptSegment { path: self.path.clone(), position: u64::from(position) };
        if header.len() < HEADER_PEEK_BYTES {
            return Err(corrupt());
        }
        let base_offset = i64::from_be_bytes(header[0..8].try_into().expect("8"));
        let length = i32::from_be_bytes(header[8..12].try_into().expect("4"));
        let last_delta = i32::from_be_bytes(header[23..27].try_into().expect("4"));
        let size = LOG_OVERHEAD as i64 + i64::from(length);
        if length < 0 || u64::from(position) + size as u64 > u64::from(self.size) {
            return Err(corrupt());
        }
        Ok((base_offset, base_offset + i64::from(last_delta), size as u32))
    }

    /// Whole batches from the first one holding `offset` or later: at most `max_bytes`
    /// unless the first batch alone is larger (then that batch, so a consumer always makes
    /// progress), and only batches whose last offset is below `max_offset`.
    /// `None` when the segment has nothing at or past `offset` below `max_offset`.
    ///
    /// # Errors
    /// [`LogError::Io`] for a failed read, [`LogError::CorruptSegment`] for a framing error
    /// in bytes that recovery already checked (a broken disk).
    pub fn read_batches(&self, offset: i64, max_offset: i64, max_bytes: usize) -> Result<Option<Bytes>, LogError> {
        let mut position = self.start_position;
        // Walk from the index floor to the first batch that holds `offset`.
        loop {
            if position >= self.size {
                return Ok(None);
            }
            let (_, last_offset, size) = self.peek(position)?;
            if last_offset >= offset {
                break;
            }
            position += size;
        }
        let (_, first_last_offset, first_size) = self.peek(position)?;
        if first_last_offset >= max_offset {
            return Ok(None);
        }
        let want = max_bytes.max(first_size as usize);
        let chunk = self.read(position, want)?;
        // Cut at the last whole batch below `max_offset`.
        let mut end = 0usize;
        while end + LOG_OVERHEAD <= chunk.len() {
            let length = i32::from_be_bytes(chunk[end + 8..end + 12].try_into().expect("4"));
            let size = LOG_OVERHEAD + length.max(0) as usize;
            if end + size > chunk.len() || end + 27 > chunk.len() {
                break;
            }
            let base = i64::from_be_bytes(chunk[end..end + 8].try_into().expect("8"));
            let last = base + i64::from(i32::from_be_bytes(chunk[end + 23..end + 27].try_into().expect("4")));
            if last >= max_offset {
                break;
            }
            end += size;
        }
        Ok((end > 0).then(|| chunk.slice(..end)))
    }
}

/// The segment being appended to.
#[derive(Debug)]
pub struct ActiveSegment {
    pub base_offset: i64,
    pub paths: SegmentPaths,
    pub file: Arc<File>,
    /// Bytes of whole, written batches; reads never go past it.
    pub size: u32,
    /// The offset after the last batch (the base offset when empty).
    pub next_offset: i64,
    pub indexer: SegmentIndexer,
    /// When the segment was created (or reopened), by the broker's clock, for `segment.ms`.
    /// Kafka measures from the first batch's timestamp; producer clocks (or replayed old
    /// data) then roll a segment on every append, so the broker's own clock is used.
    pub rolling_base_ms: i64,
    /// A read-only mapping reaching at least `size`, so reads of the tail are served
    /// without copying, as sealed segments are; `None` if mapping failed (reads then copy).
    read_map: Option<Arc<Mmap>>,
}

/// The smallest mapping of an active segment; it doubles as the segment grows.
const ACTIVE_MAP_MIN_BYTES: u64 = 64 << 20;

/// Maps `len` bytes of an active segment's file, past its current end.
fn map_active(file: &File, len: u64) -> Option<Arc<Mmap>> {
    // SAFETY: the mapping is only read below the size of a view taken under the log's lock.
    // Bytes below that size were written before it was published and are never written
    // again; the file is only truncated back to the committed size after a failed write
    // (never below a published size) or during recovery (before any mapping exists). So
    // no read touches a page past the end of the file, nor bytes that change.
    let map = unsafe { memmap2::MmapOptions::new().len(usize::try_from(len).ok()?).map(file) };
    map.map_err(|error| tracing::warn!(%error, "cannot map the active segment; its reads will copy")).ok().map(Arc::new)
}

/// The mapping length for an active segment of `size` bytes.
fn active_map_len(size: u32) -> u64 {
    (u64::from(size) + 1).next_power_of_two().max(ACTIVE_MAP_MIN_BYTES)
}

/// What recovery found in a segment's tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredTail {
    /// Bytes cut off the end (a torn or corrupt tail).
    pub truncated_bytes: u64,
    pub reason: Option<String>,
}

impl ActiveSegment {
    /// Creates an empty segment.
    ///
    /// # Errors
    /// [`LogError::Io`] if the file exists or cannot be created.
    pub fn create(dir: &Path, base_offset: i64, interval_bytes: u32, now_ms: i64) -> Result<Self, LogError> {
        let paths = SegmentPaths::new(dir, base_offset);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&paths.log)
            .map_err(|source| LogError::Io { op: "create segment", path: paths.log.clone(), source })?;
        let read_map = map_active(&file, active_map_len(0));
        Ok(Self {
            base_offset,
            paths,
            file: Arc::new(file),
            size: 0,
            next_offset: base_offset,
            indexer: SegmentIndexer::new(base_offset, interval_bytes),
            rolling_base_ms: now_ms,
            read_map,
        })
    }

    /// Opens an existing segment for append, validating every batch (framing, CRC, offsets
    /// increasing from `expected_offset`) and truncating at the first bad one. Indexes are
    /// rebuilt from what survives, so a damaged index cannot matter.
    ///
    /// # Errors
    /// [`LogError::Io`] if the file cannot be opened, read or truncated.
    pub fn recover(
        dir: &Path,
        base_offset: i64,
        interval_bytes: u32,
        now_ms: i64,
    ) -> Result<(Self, RecoveredTail), LogError> {
        let paths = SegmentPaths::new(dir, base_offset);
        let io = |op| {
            let path = paths.log.clone();
            move |source| LogError::Io { op, path, source }
        };
        let file = OpenOptions::new().read(true).write(true).open(&paths.log).map_err(io("open segment"))?;
        let file_len = file.metadata().map_err(io("stat segment"))?.len();
        let mut indexer = SegmentIndexer::new(base_offset, interval_bytes);
        let mut next_offset = base_offset;
        let mut valid: u64 = 0;
        let mut reason = None;
        if file_len > 0 {
            // SAFETY: nothing else writes this file while the log is being opened.
            let map = unsafe { Mmap::map(&file) }.map_err(io("map segment"))?;
            let mut iter = BatchIter::new(&map);
            for batch in iter.by_ref() {
                let batch = match batch.and_then(|b| b.validate().map(|()| b)) {
                    Ok(batch) => batch,
                    Err(error) => {
                        reason = Some(error.to_string());
                        break;
                    }
                };
                // Offsets must increase and stay within what the u32 relative offsets of
                // the indexes can name; positions within what u32 positions can.
                if batch.base_offset() < next_offset
                    || batch.next_offset() - base_offset > i64::from(u32::MAX)
                    || batch.last_offset_delta() < 0
                    || valid + batch.size() as u64 > u64::from(u32::MAX)
                {
                    reason = Some(format!("batch at offset {} out of order or out of range", batch.base_offset()));
                    break;
                }
                indexer.on_batch(&batch, valid as u32);
                next_offset = batch.next_offset();
                valid += batch.size() as u64;
            }
        }
        if valid < file_len {
            file.set_len(valid).map_err(io("truncate segment"))?;
            file.sync_all().map_err(io("sync segment"))?;
            reason.get_or_insert_with(|| "partial batch".to_string());
        }
        // The old indexes described bytes that may be gone; they are rebuilt at seal.
        for stale in [&paths.index, &paths.time_index] {
            let _ = fs::remove_file(stale);
        }
        let read_map = map_active(&file, active_map_len(valid as u32));
        let segment = Self {
            base_offset,
            paths,
            file: Arc::new(file),
            size: valid as u32,
            next_offset,
            indexer,
            rolling_base_ms: now_ms,
            read_map,
        };
        Ok((segment, RecoveredTail { truncated_bytes: file_len - valid, reason }))
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Writes already validated batches at the end of the segment, the first with base
    /// offset `first_offset` and the rest following on, all with `leader_epoch`. Both fields
    /// lie outside the CRC and are written from a patched copy of each batch's first 16
    /// bytes; the rest goes to the file straight from `batches`, uncopied.
    ///
    /// # Errors
    /// [`LogError::Io`]; the segment's size does not move, so nothing half-written is read.
    pub fn append(&mut self, batches: &[u8], first_offset: i64, leader_epoch: i32) -> Result<(), LogError> {
        let mut heads: Vec<[u8; PATCHED_BYTES]> = Vec::new();
        let mut next = first_offset;
        for batch in BatchIter::new(batches) {
            let batch = batch.expect("batches are validated before append");
            let mut head = [0u8; PATCHED_BYTES];
            head.copy_from_slice(&batch.as_bytes()[..PATCHED_BYTES]);
            assign_offset(&mut head, next, leader_epoch);
            heads.push(head);
            next += i64::from(batch.last_offset_delta()) + 1;
        }
        let mut slices = Vec::with_capacity(heads.len() * 2);
        for (batch, head) in BatchIter::new(batches).zip(&heads) {
            let batch = batch.expect("batches are validated before append");
            slices.push(IoSlice::new(head));
            slices.push(IoSlice::new(&batch.as_bytes()[PATCHED_BYTES..]));
        }
        if let Err(source) = write_all_vectored_at(&self.file, &mut slices, u64::from(self.size)) {
            // Best effort: drop the torn bytes now; recovery would cut them anyway.
            let _ = self.file.set_len(u64::from(self.size));
            return Err(LogError::Io { op: "append to segment", path: self.paths.log.clone(), source });
        }
        let mut position = self.size;
        let mut next = first_offset;
        for batch in BatchIter::new(batches) {
            let batch = batch.expect("batches are validated before append");
            self.indexer.on_batch_at(&batch, next, position);
            position += batch.size() as u32;
            next += i64::from(batch.last_offset_delta()) + 1;
        }
        self.next_offset = next;
        self.size = position;
        if self.read_map.as_ref().is_some_and(|map| map.len() < position as usize) {
            // Readers holding the old mapping keep it; new views get the longer one.
            self.read_map = map_active(&self.file, active_map_len(position));
        }
        Ok(())
    }

    /// Writes batches exactly as they are, offsets and epochs included: a follower's
    /// copy of what its leader stored. Base offsets must increase past `next_offset`
    /// (checked by the caller); gaps, as compaction leaves them, are kept.
    ///
    /// # Errors
    /// [`LogError::Io`]; the segment's size does not move, so nothing half-written is read.
    pub fn append_stored(&mut self, batches: &[u8]) -> Result<(), LogError> {
        let mut slices = [IoSlice::new(batches)];
        if let Err(source) = write_all_vectored_at(&self.file, &mut slices, u64::from(self.size)) {
            let _ = self.file.set_len(u64::from(self.size));
            return Err(LogError::Io { op: "append to segment", path: self.paths.log.clone(), source });
        }
        let mut position = self.size;
        for batch in BatchIter::new(batches) {
            let batch = batch.expect("batches are validated before append");
            self.indexer.on_batch(&batch, position);
            position += batch.size() as u32;
            self.next_offset = batch.next_offset();
        }
        self.size = position;
        if self.read_map.as_ref().is_some_and(|map| map.len() < position as usize) {
            self.read_map = map_active(&self.file, active_map_len(position));
        }
        Ok(())
    }

    /// Calls `f` with each batch written so far (from a read-only mapping).
    ///
    /// # Errors
    /// [`LogError::Io`] if the file cannot be mapped.
    pub fn for_each_batch(&self, mut f: impl FnMut(&RecordBatch<'_>)) -> Result<(), LogError> {
        let Some(map) = map_log(&self.file, &self.paths.log)? else { return Ok(()) };
        for batch in BatchIter::new(&map[..self.size as usize]).map_while(Result::ok) {
            f(&batch);
        }
        Ok(())
    }

    /// A view for a read at `offset`.
    pub fn view(&self, offset: i64) -> SegmentView {
        let relative = offset.saturating_sub(self.base_offset).clamp(0, u32::MAX as i64) as u32;
        let source = match &self.read_map {
            Some(map) => ReadSource::Mapped(Arc::clone(map)),
            None => ReadSource::File(Arc::clone(&self.file)),
        };
        SegmentView {
            base_offset: self.base_offset,
            source,
            size: self.size,
            start_position: self.indexer.offset_index.floor_position(relative),
            path: self.paths.log.clone(),
        }
    }

    /// Bytes the offset index will take after one more entry.
    pub fn index_bytes_after_next_entry(&self) -> usize {
        self.indexer.offset_index.as_bytes().len() + super::index::OFFSET_ENTRY_BYTES
    }

    /// The fallible half of sealing: writes the index files and maps the log. The segment
    /// stays usable as the active one if this fails, so a roll that fails loses nothing.
    ///
    /// # Errors
    /// [`LogError::Io`] if an index file cannot be written or the log mapped.
    pub fn prepare_seal(&mut self) -> Result<Option<Arc<Mmap>>, LogError> {
        self.indexer.finish();
        write_file(&self.paths.index, self.indexer.offset_index.as_bytes())?;
        write_file(&self.paths.time_index, self.indexer.time_index.as_bytes())?;
        map_log(&self.file, &self.paths.log)
    }

    /// The infallible half of sealing, after [`Self::prepare_seal`]. The files are not
    /// synced here; the caller hands the segment to the flusher.
    pub fn into_sealed(self, map: Option<Arc<Mmap>>) -> SealedSegment {
        SealedSegment {
            base_offset: self.base_offset,
            next_offset: self.next_offset,
            size: self.size,
            max_timestamp: self.indexer.max_timestamp,
            last_modified_ms: modified_ms(&self.file),
            paths: self.paths,
            file: self.file,
            map,
            index: self.indexer.offset_index,
            time_index: self.indexer.time_index,
        }
    }

    /// Ends the segment: both halves of sealing.
    ///
    /// # Errors
    /// As [`Self::prepare_seal`].
    pub fn seal(mut self) -> Result<SealedSegment, LogError> {
        let map = self.prepare_seal()?;
        Ok(self.into_sealed(map))
    }
}

/// The bytes of a batch header that hold what the log assigns: the base offset, the
/// length (unchanged) and the partition leader epoch.
const PATCHED_BYTES: usize = 16;

/// Writes every slice, in order, from `position`. Appends are serialised by the log's lock,
/// and nothing else uses the file's cursor (reads and syncs are positional), so seeking it
/// here is safe.
fn write_all_vectored_at(file: &File, mut slices: &mut [IoSlice<'_>], position: u64) -> std::io::Result<()> {
    let mut file = file;
    file.seek(SeekFrom::Start(position))?;
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(written) => IoSlice::advance_slices(&mut slices, written),
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Writes a whole file (an index), not synced.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), LogError> {
    fs::write(path, bytes).map_err(|source| LogError::Io { op: "write index", path: path.to_path_buf(), source })
}

/// Syncs the file at `path`; a file that is gone (replaced by compaction or deleted by
/// retention meanwhile) needs no sync.
pub fn sync_path(path: &Path) -> Result<(), LogError> {
    match File::open(path).and_then(|f| f.sync_all()) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(LogError::Io { op: "sync file", path: path.to_path_buf(), source }),
    }
}

/// The file's modification time in ms since the epoch (0 if unknown): retention's clock
/// for segments whose records carry no timestamps, as in Kafka.
fn modified_ms(file: &File) -> i64 {
    file.metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64)
}

/// Whether a batch read from a segment is whole, valid and in order: CRC and header
/// checks, offsets not below `next_offset`, and within what the indexes' u32 relative
/// offsets can name.
fn batch_in_order(batch: &RecordBatch<'_>, next_offset: i64, base_offset: i64) -> bool {
    batch.validate().is_ok()
        && batch.base_offset() >= next_offset
        && batch.next_offset() - base_offset <= i64::from(u32::MAX)
}

fn map_log(file: &File, path: &Path) -> Result<Option<Arc<Mmap>>, LogError> {
    let len =
        file.metadata().map_err(|source| LogError::Io { op: "stat segment", path: path.to_path_buf(), source })?.len();
    if len == 0 {
        return Ok(None);
    }
    // SAFETY: a sealed segment's file is never written or truncated again; compaction
    // replaces it by rename, which leaves this mapping on the old inode.
    let map = unsafe { Mmap::map(file) }.map_err(|source| LogError::Io {
        op: "map segment",
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Some(Arc::new(map)))
}

/// A segment that is no longer written. Immutable, so shared as `Arc` and read lock-free.
#[derive(Debug)]
pub struct SealedSegment {
    pub base_offset: i64,
    /// The offset after the segment's last batch.
    pub next_offset: i64,
    pub size: u32,
    /// The largest record timestamp, -1 when no record has one.
    pub max_timestamp: i64,
    /// The file's modification time when it was sealed or opened.
    pub last_modified_ms: i64,
    pub paths: SegmentPaths,
    pub file: Arc<File>,
    map: Option<Arc<Mmap>>,
    pub index: OffsetIndex,
    pub time_index: TimeIndex,
}

impl SealedSegment {
    /// Opens a segment below the recovery point: its bytes were flushed, so batches are
    /// not re-validated, but its indexes are checked and rebuilt when missing or damaged.
    /// Returns whether they were rebuilt.
    ///
    /// # Errors
    /// [`LogError::Io`] if a file cannot be opened, mapped or written;
    /// [`LogError::CorruptSegment`] when the log's own framing is broken.
    pub fn open(dir: &Path, base_offset: i64, interval_bytes: u32) -> Result<(Self, bool), LogError> {
        let paths = SegmentPaths::new(dir, base_offset);
        let file = File::open(&paths.log).map_err(|source| LogError::Io {
            op: "open segment",
            path: paths.log.clone(),
            source,
        })?;
        let map = map_log(&file, &paths.log)?;
        let bytes: &[u8] = map.as_deref().map_or(&[], |m| &m[..]);
        let size = u32::try_from(bytes.len())
            .map_err(|_| LogError::CorruptSegment { path: paths.log.clone(), position: u64::from(u32::MAX) })?;

        let index = IndexBytes::map(&paths.index).ok().map(OffsetIndex::from_bytes);
        let time_index = IndexBytes::map(&paths.time_index).ok().map(TimeIndex::from_bytes);
        let checked = match (index, time_index) {
            (Some(index), Some(time_index))
                if index.is_sane(size.max(1)) && Self::index_points_at_batches(bytes, base_offset, &index) =>
            {
                // The tail after the last indexed batch gives the end offset.
                let from = index.last().map_or(0, |e| e.position as usize);
                let mut next_offset = base_offset;
                // Checked like recovery checks (a few KiB past the last index entry), so a
                // damaged header cannot claim offsets that would push later segments away.
                for batch in BatchIter::new(&bytes[from..]) {
                    let corrupt = || LogError::CorruptSegment { path: paths.log.clone(), position: from as u64 };
                    let batch = batch.map_err(|_| corrupt())?;
                    if !batch_in_order(&batch, next_offset, base_offset) {
                        return Err(corrupt());
                    }
                    next_offset = batch.next_offset();
                }
                let max_relative = (next_offset - base_offset).max(0) as u32;
                match time_index.last() {
                    Some(TimeEntry { timestamp: max_timestamp, .. }) if time_index.is_sane(max_relative) => {
                        Some((index, time_index, next_offset, max_timestamp))
                    }
                    None if bytes.is_empty() => Some((index, time_index, next_offset, -1)),
                    _ => None,
                }
            }
            _ => None,
        };
        let (index, time_index, next_offset, max_timestamp, rebuilt) = match checked {
            Some((index, time_index, next_offset, max_timestamp)) => {
                (index, time_index, next_offset, max_timestamp, false)
            }
            None => {
                let mut indexer = SegmentIndexer::new(base_offset, interval_bytes);
                let mut next_offset = base_offset;
                let mut position = 0u32;
                for batch in BatchIter::new(bytes) {
                    let corrupt =
                        || LogError::CorruptSegment { path: paths.log.clone(), position: u64::from(position) };
                    let batch = batch.map_err(|_| corrupt())?;
                    if !batch_in_order(&batch, next_offset, base_offset) {
                        return Err(corrupt());
                    }
                    indexer.on_batch(&batch, position);
                    position += batch.size() as u32;
                    next_offset = batch.next_offset();
                }
                indexer.finish();
                write_file(&paths.index, indexer.offset_index.as_bytes())?;
                write_file(&paths.time_index, indexer.time_index.as_bytes())?;
                (indexer.offset_index, indexer.time_index, next_offset, indexer.max_timestamp, true)
            }
        };
        let last_modified_ms = modified_ms(&file);
        let segment = Self {
            base_offset,
            next_offset,
            size,
            max_timestamp,
            last_modified_ms,
            paths,
            file: Arc::new(file),
            map,
            index,
            time_index,
        };
        Ok((segment, rebuilt))
    }

    /// A stale index (say, from before compaction rewrote the log) can be sane yet wrong:
    /// check its last entry lands on a batch with the offset it claims.
    fn index_points_at_batches(bytes: &[u8], base_offset: i64, index: &OffsetIndex) -> bool {
        let Some(OffsetEntry { relative_offset: relative, position }) = index.last() else { return true };
        bytes
            .get(position as usize..)
            .and_then(|rest| RecordBatch::split_first(rest).ok())
            .is_some_and(|(batch, _)| batch.base_offset() == base_offset + i64::from(relative))
    }

    /// A view for a read at `offset`.
    pub fn view(&self, offset: i64) -> SegmentView {
        let relative = offset.saturating_sub(self.base_offset).clamp(0, u32::MAX as i64) as u32;
        SegmentView {
            base_offset: self.base_offset,
            source: match &self.map {
                Some(map) => ReadSource::Mapped(Arc::clone(map)),
                None => ReadSource::File(Arc::clone(&self.file)),
            },
            size: self.size,
            start_position: self.index.floor_position(relative),
            path: self.paths.log.clone(),
        }
    }

    /// Makes the segment's log and index files durable.
    ///
    /// # Errors
    /// [`LogError::Io`] if a sync fails.
    pub fn sync(&self) -> Result<(), LogError> {
        self.file.sync_data().map_err(|source| LogError::Io {
            op: "sync segment",
            path: self.paths.log.clone(),
            source,
        })?;
        sync_path(&self.paths.index)?;
        sync_path(&self.paths.time_index)?;
        sync_path(&self.paths.txn_index)?;
        sync_path(&self.paths.snapshot)
    }

    /// The time retention judges the segment by: its newest record's timestamp, or the
    /// file's modification time when its records carry none (Kafka's rule).
    pub fn retention_timestamp(&self) -> i64 {
        if self.max_timestamp >= 0 { self.max_timestamp } else { self.last_modified_ms }
    }

    /// The segment's bytes (whole batches), for compaction and tiering.
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().map_or(&[], |m| &m[..])
    }

    /// The first offset at or after which records may have `timestamp` or later.
    pub fn offset_before_timestamp(&self, timestamp: i64) -> Option<i64> {
        self.time_index.offset_before(timestamp).map(|relative| self.base_offset + i64::from(relative))
    }
}
