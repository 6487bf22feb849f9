//! Log compaction (`cleanup.policy=compact`): keep the latest record for every key.
//!
//! ```text
//!  plan:  sealed segments old enough (min.compaction.lag.ms), oldest first
//!  map:   key -> offset of its latest record, over the planned segments
//!  clean: each segment rewritten to <base>.log.cleaned, keeping a record only if it is
//!         its key's latest; a kept tombstone's batch gets a delete horizon (KIP-534):
//!         now + delete.retention.ms; a later pass past that horizon drops the tombstone
//!  swap:  under the log's lock: drop old indexes, rename over the .log, reindex
//! ```
//!
//! Batches whose records all survive are copied byte for byte; others are rebuilt with
//! the same base offset, producer fields and codec, so offsets never change and a batch's
//! offset range is kept (its last offset delta too). The active segment is never touched,
//! so appends go on while segments are cleaned. A batch whose records cannot be decoded
//! or are out of order is copied unchanged: compaction never loses what it cannot read.
//!
//! Transactions: only segments wholly below the first open transaction are cleaned, so
//! no undecided record ever shadows a committed one; records of aborted transactions are
//! left out of the key map and dropped, and markers are kept (a `read_committed` reader
//! of what is left still needs them to know where each transaction ended).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use super::LogError;
use super::config::LogConfig;
use super::segment::{SealedSegment, SegmentIndexer, SegmentPaths};
use super::txn_index::AbortedTxn;
use crate::record::{BatchBuilder, BatchIter, NewRecord, RecordBatch, RecordError};

/// Suffix of a segment being rewritten; leftovers are removed when a log opens.
pub const CLEANED_SUFFIX: &str = ".cleaned";
/// The most a compressed batch may expand to when its records are read. Kafka's largest
/// batch is `max.message.bytes` (1 MiB by default) compressed; 64 MiB leaves room for
/// highly compressible data while bounding what one batch can make us allocate.
pub const MAX_DECOMPRESSED_BYTES: usize = 64 << 20;
/// Bound on the key -> offset map of one compaction pass (Kafka's
/// `log.cleaner.dedupe.buffer.size` plays this role). A log with more distinct key bytes
/// is compacted in several passes, oldest segments first.
pub const DEDUPE_BUFFER_BYTES: usize = 128 << 20;

/// Which segments a pass cleans.
#[derive(Debug, Default)]
pub struct CompactionPlan {
    pub segments: Vec<Arc<SealedSegment>>,
    /// The offset after the last planned segment.
    pub clean_up_to: i64,
}

/// What a pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionOutcome {
    pub segments_cleaned: usize,
    pub records_removed: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// A rewritten segment waiting to be swapped in.
#[derive(Debug)]
pub struct CleanedSegment {
    /// The rewritten log and its indexes, named `<file>.cleaned`.
    pub paths: SegmentPaths,
    pub base_offset: i64,
    pub is_empty: bool,
}

impl CleanedSegment {
    /// Removes the rewritten files (when the segment went away meanwhile).
    pub fn discard(&self) {
        let _ = self.paths.remove();
    }
}

#[derive(Debug)]
pub struct Cleaned {
    pub segments: Vec<(Arc<SealedSegment>, CleanedSegment)>,
    pub outcome: CompactionOutcome,
    /// The offset after the last segment cleaned (the dedupe buffer may stop a pass early).
    pub clean_up_to: i64,
}

/// Chooses the sealed segments that may be compacted now: old enough, and wholly below
/// `first_unstable` (the first offset of the oldest open transaction, or the log end).
pub fn plan(sealed: &[Arc<SealedSegment>], config: &LogConfig, now_ms: i64, first_unstable: i64) -> CompactionPlan {
    if !config.cleanup_policy.compact {
        return CompactionPlan::default();
    }
    let lag_limit = now_ms.saturating_sub(config.min_compaction_lag_ms);
    let segments: Vec<_> = sealed
        .iter()
        .take_while(|s| s.max_timestamp <= lag_limit && s.next_offset <= first_unstable)
        .cloned()
        .collect();
    let clean_up_to = segments.last().map_or(0, |s| s.next_offset);
    CompactionPlan { segments, clean_up_to }
}

fn records_error(segment: &SealedSegment) -> impl Fn(RecordError) -> LogError + '_ {
    move |source| LogError::CorruptSegmentRecords { path: segment.paths.log.clone(), source }
}

/// Rewrites the planned segments beside the originals.
///
/// # Errors
/// [`LogError::Io`] writing the cleaned files; [`LogError::CorruptSegmentRecords`] when a
/// stored batch cannot be decoded (it passed its CRC, so the disk is lying).
pub fn clean(
    dir: &Path,
    plan: &CompactionPlan,
    config: &LogConfig,
    now_ms: i64,
    aborted: &[AbortedTxn],
) -> Result<Cleaned, LogError> {
    let is_aborted = |batch: &RecordBatch<'_>| {
        batch.is_transactional()
            && !batch.is_control()
            && aborted.iter().any(|a| {
                a.producer_id == batch.producer_id() && (a.first_offset..=a.last_offset).contains(&batch.base_offset())
            })
    };
    // Pass 1: the latest offset of every key, bounded in memory.
    let mut latest: HashMap<Vec<u8>, i64> = HashMap::new();
    let mut map_bytes = 0usize;
    let mut mapped = 0;
    for segment in &plan.segments {
        for batch in BatchIter::new(segment.bytes()) {
            let batch = batch.map_err(records_error(segment))?;
            if batch.is_control() || is_aborted(&batch) {
                continue;
            }
            let Ok(records) = batch.records(MAX_DECOMPRESSED_BYTES) else { continue };
            for record in records.iter().map_while(Result::ok) {
                if let Some(key) = record.key {
                    match latest.get_mut(key) {
                        Some(offset) => *offset = (*offset).max(record.offset),
                        None => {
                            map_bytes += key.len() + 48;
                            latest.insert(key.to_vec(), record.offset);
                        }
                    }
                }
            }
        }
        mapped += 1;
        if map_bytes > DEDUPE_BUFFER_BYTES {
            break;
        }
    }

    // Pass 2: rewrite each mapped segment.
    let clean_up_to = plan.segments[..mapped].last().map_or(plan.clean_up_to, |s| s.next_offset);
    let mut cleaned = Cleaned { segments: Vec::new(), outcome: CompactionOutcome::default(), clean_up_to };
    let horizon = now_ms.saturating_add(config.delete_retention_ms);
    for segment in &plan.segments[..mapped] {
        let paths = cleaned_paths(dir, segment.base_offset);
        let tmp_path = paths.log.clone();
        let io = |op| {
            let path = tmp_path.clone();
            move |source| LogError::Io { op, path, source }
        };
        let mut indexer = SegmentIndexer::new(segment.base_offset, config.index_interval_bytes);
        let file = File::create(&tmp_path).map_err(io("create cleaned segment"))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut written = 0u64;
        for batch in BatchIter::new(segment.bytes()) {
            let batch = batch.map_err(records_error(segment))?;
            let (kept, removed) = if is_aborted(&batch) {
                (Kept::None, batch.records_count() as u64)
            } else {
                filter_batch(&batch, &latest, now_ms, horizon)
            };
            cleaned.outcome.records_removed += removed;
            let bytes = match &kept {
                Kept::All => batch.as_bytes(),
                Kept::None => continue,
                Kept::Rebuilt(bytes) => bytes,
            };
            let (written_batch, _) = RecordBatch::split_first(bytes).map_err(records_error(segment))?;
            indexer.on_batch(&written_batch, written as u32);
            out.write_all(bytes).map_err(io("write cleaned segment"))?;
            written += bytes.len() as u64;
        }
        let file = out.into_inner().map_err(|e| LogError::Io {
            op: "write cleaned segment",
            path: tmp_path.clone(),
            source: e.into_error(),
        })?;
        file.sync_data().map_err(io("sync cleaned segment"))?;
        indexer.finish();
        // Synced before the rename: they land below the recovery point.
        for (path, bytes) in
            [(&paths.index, indexer.offset_index.as_bytes()), (&paths.time_index, indexer.time_index.as_bytes())]
        {
            fs::write(path, bytes).and_then(|()| File::open(path)?.sync_all()).map_err(|source| LogError::Io {
                op: "write cleaned index",
                path: path.clone(),
                source,
            })?;
        }
        cleaned.outcome.segments_cleaned += 1;
        cleaned.outcome.bytes_before += u64::from(segment.size);
        cleaned.outcome.bytes_after += written;
        cleaned.segments.push((
            Arc::clone(segment),
            CleanedSegment { paths, base_offset: segment.base_offset, is_empty: written == 0 },
        ));
    }
    Ok(cleaned)
}

enum Kept {
    All,
    None,
    Rebuilt(Vec<u8>),
}

/// Decides what of a batch survives. Never fails: what it cannot read it keeps as is.
fn filter_batch(batch: &RecordBatch<'_>, latest: &HashMap<Vec<u8>, i64>, now_ms: i64, horizon_ms: i64) -> (Kept, u64) {
    if batch.is_control() {
        return (Kept::All, 0);
    }
    let Ok(records) = batch.records(MAX_DECOMPRESSED_BYTES) else { return (Kept::All, 0) };
    let Ok(records) = records.iter().collect::<Result<Vec<_>, _>>() else { return (Kept::All, 0) };
    let in_order = records.windows(2).all(|w| w[0].offset < w[1].offset)
        && records.first().is_none_or(|r| r.offset >= batch.base_offset())
        && records.last().is_none_or(|r| r.offset <= batch.last_offset());
    if !in_order {
        return (Kept::All, 0);
    }
    let existing_horizon = batch.delete_horizon_ms();
    let mut needs_horizon = false;
    let mut keep = Vec::with_capacity(records.len());
    for record in &records {
        let superseded = record.key.is_some_and(|key| latest.get(key).is_some_and(|&o| o > record.offset));
        if superseded {
            continue;
        }
        if record.value.is_none() {
            match existing_horizon {
                Some(horizon) if now_ms >= horizon => continue,
                Some(_) => {}
                None => needs_horizon = true,
            }
        }
        keep.push(record);
    }
    let removed = (records.len() - keep.len()) as u64;
    if removed == 0 && !needs_horizon {
        return (Kept::All, 0);
    }
    if keep.is_empty() {
        return (Kept::None, removed);
    }
    let Ok(codec) = batch.compression() else { return (Kept::All, 0) };
    let mut builder = BatchBuilder::new(codec)
        .base_offset(batch.base_offset())
        .partition_leader_epoch(batch.partition_leader_epoch())
        .producer(batch.producer_id(), batch.producer_epoch(), batch.base_sequence())
        .transactional(batch.is_transactional())
        .log_append_time(batch.is_log_append_time());
    if let Some(horizon) = existing_horizon.or(needs_horizon.then_some(horizon_ms)) {
        builder = builder.delete_horizon(horizon);
    }
    for record in &keep {
        let headers: Vec<(&[u8], Option<&[u8]>)> = record.headers.iter().map(|h| (h.key, h.value)).collect();
        let delta = (record.offset - batch.base_offset()) as i32;
        builder.append_at(
            delta,
            NewRecord { timestamp: record.timestamp, key: record.key, value: record.value, headers: &headers },
        );
    }
    match builder.last_offset_delta(batch.last_offset_delta()).build() {
        Ok(bytes) => (Kept::Rebuilt(bytes), removed),
        Err(_) => (Kept::All, 0),
    }
}

fn cleaned_paths(dir: &Path, base_offset: i64) -> SegmentPaths {
    let plain = SegmentPaths::new(dir, base_offset);
    let suffixed = |path: &Path| {
        path.with_file_name(format!("{}{CLEANED_SUFFIX}", path.file_name().expect("file name").to_string_lossy()))
    };
    SegmentPaths {
        log: suffixed(&plain.log),
        index: suffixed(&plain.index),
        time_index: suffixed(&plain.time_index),
        txn_index: suffixed(&plain.txn_index),
        snapshot: suffixed(&plain.snapshot),
    }
}

/// Replaces `old` by its cleaned files with renames only (the indexes were built while
/// cleaning, so the caller's lock is held briefly). Old indexes go first and the new
/// ones follow the log, so a crash at any step leaves a log (old or new) whose missing
/// indexes are rebuilt on open. Returns `None` when nothing survived and the segment was
/// removed.
///
/// # Errors
/// [`LogError::Io`] for a failed rename; [`LogError::CorruptSegment`] if the new file
/// cannot be opened as a segment.
pub fn swap_in(
    dir: &Path,
    old: &SealedSegment,
    new: CleanedSegment,
    interval_bytes: u32,
) -> Result<Option<Arc<SealedSegment>>, LogError> {
    for path in [&old.paths.index, &old.paths.time_index] {
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(LogError::Io { op: "remove index", path: path.clone(), source }),
        }
    }
    if new.is_empty {
        new.discard();
        old.paths.remove()?;
        return Ok(None);
    }
    for (from, to) in [
        (&new.paths.log, &old.paths.log),
        (&new.paths.index, &old.paths.index),
        (&new.paths.time_index, &old.paths.time_index),
    ] {
        fs::rename(from, to).map_err(|source| LogError::Io { op: "swap cleaned segment", path: to.clone(), source })?;
    }
    let (segment, _) = SealedSegment::open(dir, new.base_offset, interval_bytes)?;
    Ok(Some(Arc::new(segment)))
}
