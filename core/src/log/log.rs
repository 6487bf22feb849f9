//! The log of one partition: an ordered set of segments, the last one active.
//!
//! ```text
//!  log_start          recovery_point        flushed         log_end
//!     │ sealed segments (mapped, immutable) │ active segment │
//!     v                                     v     v          v
//!  [0000.log][0800.log][1600.log] ... [4000.log ..........]
//! ```
//!
//! Every mutation (append, roll, retention, the compaction swap) goes through one short
//! `std::sync::Mutex` section; reads take it only to pick a segment and copy a view, then
//! read without it. Slow work stays outside: fsync happens on the flusher's thread,
//! compaction rewrites segments off to the side and swaps them in at the end.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bytes::Bytes;
use tokio::sync::watch;

use super::checkpoint::{PartitionCheckpoint, sync_dir};
use super::clock::Clock;
use super::config::LogConfig;
use super::flusher::FlushHandle;
use super::leader_epoch::LeaderEpochCache;
use super::producer_state::{CompletedTxn, MarkerCheck, ProducerStateTable, SequenceCheck, TxnMarker};
use super::segment::{ActiveSegment, SealedSegment, SegmentPaths, SegmentView, sync_path};
use super::txn_index::{self, AbortedTxn};
use super::{LogError, cleaner};
use crate::record::{BatchIter, RecordBatch, RecordError};

/// What a log needs from its surroundings.
#[derive(Debug, Clone)]
pub struct LogContext {
    pub clock: Arc<dyn Clock>,
    pub flusher: FlushHandle,
}

/// The outcome of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// The offset given to the first record.
    pub first_offset: i64,
    /// The offset of the last record.
    pub last_offset: i64,
    /// The largest record timestamp appended.
    pub max_timestamp: i64,
    pub log_start: i64,
    /// A retried batch of an idempotent producer, already in the log: nothing was
    /// appended and the offsets are the original ones.
    pub duplicate: bool,
}

/// Whole batches from a read, and the log's bounds when it was read.
#[derive(Debug, Clone)]
pub struct ReadResult {
    /// Whole batches, exactly as stored; empty when there is nothing at `offset` yet.
    pub records: Bytes,
    pub log_start: i64,
    pub log_end: i64,
}

/// What a retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub deleted_segments: usize,
    pub deleted_bytes: u64,
}

/// What a log's recovery did on open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: usize,
    pub recovered_segments: usize,
    pub truncated_bytes: u64,
    pub rebuilt_indexes: usize,
    pub deleted_segments: usize,
}

/// Who is appending: producers may not write control batches; the transaction
/// coordinator writes only markers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOrigin {
    Client,
    Coordinator,
}

/// The flushed offset, or that flushing failed (the log then refuses all writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FlushState {
    flushed: i64,
    failed: bool,
}

#[derive(Debug)]
struct LogState {
    sealed: BTreeMap<i64, Arc<SealedSegment>>,
    active: ActiveSegment,
    log_start: i64,
    recovery_point: i64,
    clean_offset: i64,
    /// Sealed since the last flush: their data and index files still need an fsync.
    unsynced: Vec<Arc<SealedSegment>>,
    /// A segment file was created or removed since the last flush.
    dir_dirty: bool,
    /// Idempotent producers' epochs and recent sequences, and open transactions.
    producers: ProducerStateTable,
    /// Every aborted transaction in the log (the `.txnindex` files), in marker order.
    aborted: Vec<AbortedTxn>,
    /// Transactions completed by markers that may still be above the high watermark:
    /// until the high watermark passes its marker, a transaction is not stable.
    unstable: Vec<CompletedTxn>,
    /// The active segment's snapshot or transaction index was written since the last flush.
    txn_files_dirty: bool,
    /// Where each leader epoch starts (`leader-epoch-checkpoint`).
    epochs: LeaderEpochCache,
}

impl LogState {
    fn log_end(&self) -> i64 {
        self.active.next_offset
    }
    fn size_bytes(&self) -> u64 {
        self.sealed.values().map(|s| u64::from(s.size)).sum::<u64>() + u64::from(self.active.size)
    }
    fn checkpoint(&self) -> PartitionCheckpoint {
        PartitionCheckpoint {
            log_start: self.log_start,
            recovery_point: self.recovery_point,
            clean_offset: self.clean_offset,
        }
    }
}

/// One partition's log. Shared as `Arc<Log>`; every method takes `&self`.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    config: RwLock<Arc<LogConfig>>,
    state: Mutex<LogState>,
    /// Serialises the slow maintenance jobs (retention, compaction, DeleteRecords).
    maintenance: Mutex<()>,
    /// Serialises checkpoint writes, each of the state as it is when the lock is taken,
    /// so an older snapshot never lands after a newer one. Held only for the write: the
    /// flusher must never wait behind a long compaction.
    checkpoint_lock: Mutex<()>,
    /// Serialises flushes so the recovery point only moves over synced segments.
    flush_lock: Mutex<()>,
    flush_state: watch::Sender<FlushState>,
    log_end_watch: watch::Sender<i64>,
    flush_requested: AtomicBool,
    /// Completed flushes, to show how many appends shared each (group commit).
    flush_count: AtomicU64,
    /// When the last flush completed (or the log opened), by the log's clock: `flush.ms`.
    last_flush_ms: AtomicI64,
    /// With `remote.storage.enable`: every offset below this is in remote storage, so
    /// local retention may drop segments that end at or below it. Set by the tier; -1
    /// (nothing known to be uploaded) keeps every segment that total retention keeps.
    remote_end: AtomicI64,
    context: LogContext,
}

impl Log {
    /// Opens (or creates) the log in `dir`, recovering it: segments after the recovery
    /// checkpoint are validated batch by batch and a torn or corrupt tail is truncated;
    /// damaged or missing indexes are rebuilt; leftovers of an interrupted compaction are
    /// removed.
    ///
    /// # Errors
    /// [`LogError::Io`] when the directory or a segment cannot be read or repaired.
    pub fn open(dir: &Path, config: LogConfig, context: LogContext) -> Result<(Arc<Self>, RecoveryReport), LogError> {
        let io = |op, path: &Path| {
            let path = path.to_path_buf();
            move |source| LogError::Io { op, path, source }
        };
        fs::create_dir_all(dir).map_err(io("create log directory", dir))?;
        let mut bases = Vec::new();
        for entry in fs::read_dir(dir).map_err(io("list log directory", dir))? {
            let entry = entry.map_err(io("list log directory", dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(cleaner::CLEANED_SUFFIX) || name.ends_with(".tmp") {
                fs::remove_file(entry.path()).map_err(io("remove leftover file", &entry.path()))?;
            } else if let Some(base) = name.strip_suffix(".log").and_then(|b| b.parse::<i64>().ok()) {
                bases.push(base);
            }
        }
        bases.sort_unstable();
        let now = context.clock.now_ms();
        let checkpoint = PartitionCheckpoint::read(dir).unwrap_or_default();
        let interval = config.index_interval_bytes;
        let mut report = RecoveryReport { segments: bases.len(), ..Default::default() };

        // Recovery starts at the segment holding the recovery point (Kafka's rule).
        let recover_from = bases.iter().copied().filter(|b| *b <= checkpoint.recovery_point).max().unwrap_or(i64::MIN);
        let mut sealed = BTreeMap::new();
        let mut active = None;
        let mut expected_next = None::<i64>;
        for (i, &base) in bases.iter().enumerate() {
            let is_last = i + 1 == bases.len();
            if expected_next.is_some_and(|next| base < next) || active.is_some() {
                // A segment that overlaps its predecessor, or follows a truncated tail,
                // holds nothing trustworthy.
                SegmentPaths::new(dir, base).remove()?;
                report.deleted_segments += 1;
                continue;
            }
            if base < recover_from && !is_last {
                match SealedSegment::open(dir, base, interval) {
                    Ok((segment, _)) if segment.size == 0 => {
                        // An empty segment in the middle (a crash right after a roll)
                        // holds nothing and would only confuse reads.
                        SegmentPaths::new(dir, base).remove()?;
                        report.deleted_segments += 1;
                        continue;
                    }
                    Ok((segment, rebuilt)) => {
                        if rebuilt {
                            report.rebuilt_indexes += 1;
                            segment.sync()?;
                        }
                        expected_next = Some(segment.next_offset);
                        sealed.insert(base, Arc::new(segment));
                        continue;
                    }
                    // Damage below the recovery point (a bad disk): validate this segment
                    // batch by batch like an unflushed one.
                    Err(LogError::CorruptSegment { path, position }) => {
                        tracing::warn!(segment = %path.display(), position, "corrupt segment below the recovery point");
                    }
                    Err(error) => return Err(error),
                }
            }
            let (segment, tail) = ActiveSegment::recover(dir, base, interval, now)?;
            report.recovered_segments += 1;
            if tail.truncated_bytes > 0 {
                tracing::warn!(segment = %segment.paths.log.display(), bytes = tail.truncated_bytes,
                    reason = tail.reason.as_deref().unwrap_or(""), "truncated the log's tail during recovery");
                report.truncated_bytes += tail.truncated_bytes;
            }
            if segment.is_empty() && !is_last && tail.truncated_bytes == 0 {
                let paths = segment.paths.clone();
                drop(segment);
                paths.remove()?;
                report.deleted_segments += 1;
                continue;
            }
            expected_next = Some(segment.next_offset);
            if is_last || tail.truncated_bytes > 0 {
                active = Some(segment);
            } else {
                // Validated, but possibly only in the page cache: make it durable before
                // the recovery point moves past it.
                let segment = segment.seal()?;
                segment.sync()?;
                report.rebuilt_indexes += 1;
                sealed.insert(base, Arc::new(segment));
            }
        }
        let active = match active {
            Some(active) => active,
            None => {
                let base = expected_next.unwrap_or(checkpoint.log_start.max(0));
                ActiveSegment::create(dir, base, interval, now)?
            }
        };
        let first_base = sealed.keys().next().copied().unwrap_or(active.base_offset);
        let log_end = active.next_offset;
        let log_start = checkpoint.log_start.clamp(first_base, log_end);
        // What survived recovery is on disk now; make it durable, with the directory's
        // creations and removals, before the checkpoint says so and before serving it.
        active.file.sync_data().map_err(io("sync segment", &active.paths.log))?;
        sync_dir(dir)?;
        let txns = recover_transactions(&sealed, &active, recover_from)?;
        let epochs = load_epochs(dir, &sealed, &active, log_start, log_end)?;
        let state = LogState {
            epochs,
            producers: txns.producers,
            aborted: txns.aborted,
            unstable: txns.unstable,
            txn_files_dirty: false,
            sealed,
            recovery_point: active.base_offset,
            clean_offset: checkpoint.clean_offset.clamp(log_start, log_end),
            active,
            log_start,
            unsynced: Vec::new(),
            dir_dirty: false,
        };
        state.checkpoint().write(dir)?;
        let log = Arc::new(Self {
            dir: dir.to_path_buf(),
            config: RwLock::new(Arc::new(config)),
            state: Mutex::new(state),
            maintenance: Mutex::new(()),
            checkpoint_lock: Mutex::new(()),
            flush_lock: Mutex::new(()),
            flush_state: watch::Sender::new(FlushState { flushed: log_end, failed: false }),
            log_end_watch: watch::Sender::new(log_end),
            flush_requested: AtomicBool::new(false),
            flush_count: AtomicU64::new(0),
            last_flush_ms: AtomicI64::new(context.clock.now_ms()),
            remote_end: AtomicI64::new(-1),
            context,
        });
        Ok((log, report))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn config(&self) -> Arc<LogConfig> {
        Arc::clone(&self.config.read().expect("config lock"))
    }
    /// Replaces the log's config; it applies from the next append or maintenance pass.
    pub fn set_config(&self, config: LogConfig) {
        *self.config.write().expect("config lock") = Arc::new(config);
    }
    /// The first offset on local disk. With remote storage the partition's true start
    /// may be lower: the tier knows it.
    pub fn log_start(&self) -> i64 {
        self.lock().log_start
    }
    /// Tells local retention that every offset below `offset` is safely in remote
    /// storage (the tier's manifest says so).
    pub fn set_remote_end(&self, offset: i64) {
        self.remote_end.fetch_max(offset, Ordering::AcqRel);
    }
    /// The offset below which the tier has everything; -1 when nothing is known.
    pub fn remote_end(&self) -> i64 {
        self.remote_end.load(Ordering::Acquire)
    }
    /// The sealed (immutable) segments, oldest first: what the tier uploads.
    pub fn sealed_segments(&self) -> Vec<Arc<SealedSegment>> {
        self.lock().sealed.values().cloned().collect()
    }
    pub fn log_end(&self) -> i64 {
        self.lock().log_end()
    }
    /// The offset below which every batch is on disk (fsynced).
    pub fn flushed(&self) -> i64 {
        self.flush_state.borrow().flushed
    }
    /// The largest record timestamp in the log, if any record has one.
    pub fn max_timestamp(&self) -> Option<i64> {
        let state = self.lock();
        let max = state.sealed.values().map(|s| s.max_timestamp).chain([state.active.indexer.max_timestamp]).max()?;
        (max >= 0).then_some(max)
    }
    /// Flushes completed since the log was opened.
    pub fn flush_count(&self) -> u64 {
        self.flush_count.load(Ordering::Relaxed)
    }
    /// Whether an acks=all write ending before `next_offset` must wait for an fsync:
    /// `flush.messages` or more offsets are unflushed.
    pub fn ack_needs_flush(&self, next_offset: i64) -> bool {
        next_offset - self.flushed() >= self.config().flush_messages
    }
    /// Asks for a flush if unflushed data has waited `flush.ms` since the last flush.
    pub fn flush_if_overdue(self: &Arc<Self>) {
        let flush_ms = self.config().flush_ms;
        if flush_ms == i64::MAX {
            return;
        }
        let waited = self.context.clock.now_ms() - self.last_flush_ms.load(Ordering::Relaxed);
        if waited >= flush_ms && self.flushed() < *self.log_end_watch.borrow() {
            self.request_flush();
        }
    }
    /// Bytes on local disk.
    pub fn size_bytes(&self) -> u64 {
        self.lock().size_bytes()
    }
    pub fn segment_count(&self) -> usize {
        let state = self.lock();
        state.sealed.len() + 1
    }
    /// Base offsets of all segments, oldest first.
    pub fn segment_bases(&self) -> Vec<i64> {
        let state = self.lock();
        state.sealed.keys().copied().chain([state.active.base_offset]).collect()
    }
    /// A receiver that sees the log end offset move, for long-polling readers.
    pub fn subscribe_log_end(&self) -> watch::Receiver<i64> {
        self.log_end_watch.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state.lock().expect("log state lock poisoned")
    }

    /// Appends batches as a producer sent them. Each batch is validated (framing, magic,
    /// CRC, header), then stored with offsets from the log end and `leader_epoch` written
    /// into it; both fields lie outside the CRC, so the bytes stored are the producer's.
    /// `batches` itself is not changed: the fields are patched on the way to the file.
    /// All batches are appended or none is.
    ///
    /// # Errors
    /// [`LogError::InvalidRecords`] for malformed batches, [`LogError::RecordTooLarge`]
    /// past `max.message.bytes`, [`LogError::Io`] if the write fails, and
    /// [`LogError::Failed`] once a flush has failed.
    pub fn append(&self, batches: &[u8], leader_epoch: i32) -> Result<AppendInfo, LogError> {
        self.append_with(batches, leader_epoch, AppendOrigin::Client)
    }

    /// As [`Self::append`], for `origin`: the transaction coordinator's batches must all be
    /// markers, and are checked against the producers' epochs instead of sequences.
    ///
    /// # Errors
    /// As [`Self::append`]; [`LogError::InvalidProducerEpoch`] for a marker of an epoch
    /// older than its producer's, [`LogError::InvalidAppend`] for a client's control batch.
    pub fn append_with(&self, batches: &[u8], leader_epoch: i32, origin: AppendOrigin) -> Result<AppendInfo, LogError> {
        let config = self.config();
        let mut sizes = Vec::new();
        let mut offsets = 0i64;
        let mut max_timestamp = -1i64;
        for batch in BatchIter::new(batches) {
            let batch = batch.map_err(|source| LogError::InvalidRecords { source })?;
            batch.validate().map_err(|source| LogError::InvalidRecords { source })?;
            if batch.size() > config.max_message_bytes as usize {
                return Err(LogError::RecordTooLarge { size: batch.size(), max: config.max_message_bytes });
            }
            if batch.records_count() == 0 || batch.last_offset_delta() != batch.records_count() - 1 {
                return Err(LogError::InvalidAppend {
                    reason: "a producer's batch must hold records with consecutive offsets",
                });
            }
            validate_records(&batch, &config)?;
            match origin {
                AppendOrigin::Client if batch.is_control() => {
                    return Err(LogError::InvalidAppend { reason: "producers may not write control batches" });
                }
                AppendOrigin::Coordinator if TxnMarker::decode(&batch).is_none() => {
                    return Err(LogError::InvalidAppend { reason: "the coordinator writes only transaction markers" });
                }
                _ => {}
            }
            sizes.push(batch.size());
            offsets += i64::from(batch.last_offset_delta()) + 1;
            max_timestamp = max_timestamp.max(batch.max_timestamp());
        }
        if sizes.is_empty() {
            return Err(LogError::InvalidAppend { reason: "no record batches" });
        }
        let total: usize = sizes.iter().sum();

        let mut state = self.lock();
        if self.flush_state.borrow().failed {
            return Err(LogError::Failed { dir: self.dir.clone() });
        }
        if self.should_roll(&state, &config, total, offsets) {
            self.roll(&mut state)?;
        }
        // Idempotent producers: a retry is acknowledged with its original offsets; a gap
        // or a stale epoch is refused. Checked under the lock, with the offsets assigned.
        let mut scratch: Option<ProducerStateTable> = None;
        let mut position = 0;
        let mut next = state.log_end();
        for &size in &sizes {
            let (batch, _) = RecordBatch::split_first(&batches[position..position + size]).expect("validated above");
            let table = scratch.as_ref().unwrap_or(&state.producers);
            if let Some(marker) = TxnMarker::decode(&batch) {
                match table.check_marker(batch.producer_id(), batch.producer_epoch(), marker) {
                    MarkerCheck::Append => {}
                    MarkerCheck::StaleEpoch { current } => {
                        return Err(LogError::InvalidProducerEpoch {
                            producer_id: batch.producer_id(),
                            epoch: batch.producer_epoch(),
                            current,
                        });
                    }
                    MarkerCheck::StaleCoordinator { .. } => {
                        return Err(LogError::StaleCoordinatorEpoch { producer_id: batch.producer_id() });
                    }
                }
            }
            match table.check(&batch) {
                SequenceCheck::Append => {}
                SequenceCheck::Duplicate(seen) if sizes.len() == 1 => {
                    return Ok(AppendInfo {
                        first_offset: seen.first_offset,
                        last_offset: seen.last_offset,
                        max_timestamp,
                        log_start: state.log_start,
                        duplicate: true,
                    });
                }
                SequenceCheck::Duplicate(_) => {
                    return Err(LogError::InvalidAppend { reason: "a retried batch must come alone" });
                }
                SequenceCheck::StaleEpoch { current } => {
                    return Err(LogError::InvalidProducerEpoch {
                        producer_id: batch.producer_id(),
                        epoch: batch.producer_epoch(),
                        current,
                    });
                }
                SequenceCheck::OutOfOrder { expected } => {
                    return Err(LogError::OutOfOrderSequence {
                        producer_id: batch.producer_id(),
                        expected,
                        got: batch.base_sequence(),
                    });
                }
            }
            if sizes.len() > 1 {
                // Later batches of this append are checked against this one.
                scratch.get_or_insert_with(|| state.producers.clone()).record_at(&batch, next);
            }
            next += i64::from(batch.last_offset_delta()) + 1;
            position += size;
        }

        let first_offset = state.log_end();
        // A new leader epoch starts here: on record before its first batch is (so a
        // crash never leaves batches of an epoch the cache does not know).
        if state.epochs.assign(leader_epoch, first_offset) {
            state.epochs.write(&self.dir)?;
        }
        state.active.append(&batches[..total], first_offset, leader_epoch)?;
        let next = self.record_producers(&mut state, &batches[..total], Some(first_offset))?;
        Ok(self.appended(state, first_offset, next, max_timestamp))
    }

    /// Applies appended batches to the producer state (offsets assigned from
    /// `first_offset`, or the batches' own), indexing the transactions they abort. Returns
    /// the offset after them.
    fn record_producers(
        &self,
        state: &mut LogState,
        batches: &[u8],
        first_offset: Option<i64>,
    ) -> Result<i64, LogError> {
        let mut next = first_offset.unwrap_or(i64::MIN);
        let mut aborted = Vec::new();
        for batch in BatchIter::new(batches).map_while(Result::ok) {
            let base = if first_offset.is_some() { next } else { batch.base_offset() };
            if let Some(completed) = state.producers.record_at(&batch, base) {
                if completed.aborted {
                    let lso = state.producers.first_unstable_offset().unwrap_or(completed.last_offset + 1);
                    aborted.push(AbortedTxn {
                        producer_id: completed.producer_id,
                        first_offset: completed.first_offset,
                        last_offset: completed.last_offset,
                        last_stable_offset: lso,
                    });
                }
                state.unstable.push(completed);
            }
            next = base + i64::from(batch.last_offset_delta()) + 1;
        }
        if !aborted.is_empty() {
            if let Err(error) = txn_index::append(&state.active.paths.txn_index, &aborted) {
                // The markers are in the log but a read_committed reader would not know to
                // skip what they abort: refuse writes until a restart rebuilds the index.
                tracing::error!(dir = %self.dir.display(), %error, "transaction index write failed; the log refuses further writes");
                self.flush_state.send_modify(|s| s.failed = true);
                return Err(error);
            }
            state.aborted.extend(aborted);
            state.txn_files_dirty = true;
        }
        Ok(next)
    }

    /// The last stable offset given the high watermark: no `read_committed` reader may go
    /// past the first offset of a transaction still open, or completed by a marker not
    /// yet below the high watermark.
    pub fn last_stable_offset(&self, high_watermark: i64) -> i64 {
        let mut state = self.lock();
        state.unstable.retain(|t| t.last_offset >= high_watermark);
        let open = state.producers.first_unstable_offset();
        let completing = state.unstable.iter().map(|t| t.first_offset).min();
        [Some(high_watermark), open, completing].into_iter().flatten().min().expect("high watermark")
    }

    /// The aborted transactions a reader of `from..upto` must know of: those whose records
    /// may lie in that range (their marker at or past `from`, their start before `upto`).
    pub fn aborted_transactions(&self, from: i64, upto: i64) -> Vec<AbortedTxn> {
        let state = self.lock();
        let start = state.aborted.partition_point(|a| a.last_offset < from);
        state.aborted[start..].iter().filter(|a| a.first_offset < upto).copied().collect()
    }

    /// Open transactions here, as (producer id, first offset), oldest first.
    pub fn ongoing_transactions(&self) -> Vec<(i64, i64)> {
        self.lock().producers.ongoing().collect()
    }

    fn should_roll(&self, state: &LogState, config: &LogConfig, bytes: usize, offsets: i64) -> bool {
        let active = &state.active;
        if active.is_empty() {
            return false;
        }
        let now = self.context.clock.now_ms();
        u64::from(active.size) + bytes as u64 > u64::from(config.segment_bytes)
            || now - active.rolling_base_ms >= config.segment_ms
            || active.index_bytes_after_next_entry() > config.segment_index_bytes as usize
            // Relative offsets in the indexes are u32.
            || active.next_offset + offsets - active.base_offset > i64::from(u32::MAX)
    }

    /// Seals the active segment and starts a new one at the log end. If either step
    /// fails, the old segment stays active and nothing is lost.
    fn roll(&self, state: &mut LogState) -> Result<(), LogError> {
        let base = state.log_end();
        self.roll_at(state, base)
    }

    /// Seals the active segment and starts a new one at `base` (the log end, or past it
    /// when a follower starts again at its leader's log start).
    fn roll_at(&self, state: &mut LogState, base: i64) -> Result<(), LogError> {
        let interval = self.config().index_interval_bytes;
        let fresh = ActiveSegment::create(&self.dir, base, interval, self.context.clock.now_ms())?;
        let map = match state.active.prepare_seal() {
            Ok(map) => map,
            Err(error) => {
                let _ = fresh.paths.remove();
                return Err(error);
            }
        };
        // The producer state as of the new segment's base: recovery that starts there
        // needs to replay nothing before it. Synced with the next flush.
        if let Err(error) = write_snapshot(&fresh.paths.snapshot, &state.producers) {
            let _ = fresh.paths.remove();
            return Err(error);
        }
        state.txn_files_dirty = true;
        let old = std::mem::replace(&mut state.active, fresh);
        let sealed = Arc::new(old.into_sealed(map));
        state.unsynced.push(Arc::clone(&sealed));
        state.sealed.insert(sealed.base_offset, sealed);
        state.dir_dirty = true;
        Ok(())
    }

    /// Seals the active segment now if it holds anything (for tests and tools).
    ///
    /// # Errors
    /// [`LogError::Io`] if the new segment cannot be created.
    pub fn force_roll(&self) -> Result<(), LogError> {
        let mut state = self.lock();
        if state.active.is_empty() {
            return Ok(());
        }
        self.roll(&mut state)
    }

    /// Reads whole batches starting with the one that holds `offset`, up to `max_bytes`
    /// (at least one batch, however large), none with an offset at or past `max_offset`
    /// (the high watermark for consumers; `None` means the log end).
    ///
    /// # Errors
    /// [`LogError::OffsetOutOfRange`] outside `[log_start, log_end]`, [`LogError::Io`].
    pub fn read(&self, offset: i64, max_offset: Option<i64>, max_bytes: usize) -> Result<ReadResult, LogError> {
        let mut cursor = offset;
        loop {
            let (view, next_segment_offset, log_start, log_end) = {
                let state = self.lock();
                let (log_start, log_end) = (state.log_start, state.log_end());
                if offset < log_start || offset > log_end {
                    return Err(LogError::OffsetOutOfRange { offset, log_start, log_end });
                }
                let (view, next) = view_at(&state, cursor);
                (view, next, log_start, log_end)
            };
            let limit = max_offset.unwrap_or(log_end).min(log_end);
            let empty = || ReadResult { records: Bytes::new(), log_start, log_end };
            if cursor >= limit {
                return Ok(empty());
            }
            if let Some(records) = view.read_batches(cursor, limit, max_bytes)? {
                return Ok(ReadResult { records, log_start, log_end });
            }
            // Compaction can leave a segment with nothing at or past `cursor`: go on.
            match next_segment_offset {
                Some(next) if next > cursor => cursor = next,
                _ => return Ok(empty()),
            }
        }
    }

    /// The earliest offset whose record timestamp is at least `timestamp`, with that
    /// record's timestamp (Kafka's ListOffsets by time). `None` when every record is older.
    ///
    /// # Errors
    /// [`LogError::Io`] or a record that cannot be decoded.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>, LogError> {
        let start = {
            let state = self.lock();
            let segment = state.sealed.values().find(|s| s.max_timestamp >= timestamp);
            match segment {
                Some(segment) => segment.offset_before_timestamp(timestamp).map_or(segment.base_offset, |o| o + 1),
                None if state.active.indexer.max_timestamp >= timestamp => state.active.base_offset,
                None => return Ok(None),
            }
            .max(state.log_start)
        };
        let mut cursor = start;
        loop {
            let read = self.read(cursor, None, 1 << 20)?;
            if read.records.is_empty() {
                return Ok(None);
            }
            for batch in BatchIter::new(&read.records) {
                let batch = batch.map_err(|source| LogError::InvalidRecords { source })?;
                cursor = batch.next_offset();
                if batch.max_timestamp() < timestamp || batch.is_control() {
                    continue;
                }
                let records = batch
                    .records(cleaner::MAX_DECOMPRESSED_BYTES)
                    .map_err(|source| LogError::InvalidRecords { source })?;
                for record in records.iter() {
                    let record = record.map_err(|source| LogError::InvalidRecords { source })?;
                    if record.timestamp >= timestamp && record.offset >= read.log_start {
                        return Ok(Some((record.offset, record.timestamp)));
                    }
                }
            }
        }
    }

    /// Waits until every offset below `offset` is on disk, asking the flusher for a flush.
    /// Appends that wait together share one fsync (group commit).
    ///
    /// # Errors
    /// [`LogError::Failed`] if a flush failed.
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future only stops waiting; the flush still happens.
    pub async fn wait_flushed(self: &Arc<Self>, offset: i64) -> Result<(), LogError> {
        let mut rx = self.flush_state.subscribe();
        let current = *rx.borrow_and_update();
        if current.flushed >= offset {
            return Ok(());
        }
        if current.failed {
            return Err(LogError::Failed { dir: self.dir.clone() });
        }
        self.request_flush();
        let state = *rx
            .wait_for(|s| s.flushed >= offset || s.failed)
            .await
            .map_err(|_| LogError::Failed { dir: self.dir.clone() })?;
        if state.flushed >= offset { Ok(()) } else { Err(LogError::Failed { dir: self.dir.clone() }) }
    }

    /// [`Self::wait_flushed`] for threads outside an async runtime.
    ///
    /// # Errors
    /// As [`Self::wait_flushed`].
    pub fn wait_flushed_blocking(self: &Arc<Self>, offset: i64) -> Result<(), LogError> {
        futures::executor::block_on(self.wait_flushed(offset))
    }

    /// Asks the flusher to flush this log soon.
    pub fn request_flush(self: &Arc<Self>) {
        if !self.flush_requested.swap(true, Ordering::AcqRel) {
            self.context.flusher.enqueue(Arc::clone(self));
        }
    }

    pub(crate) fn clear_flush_request(&self) {
        self.flush_requested.store(false, Ordering::Release);
    }

    /// Makes everything appended so far durable: sealed segments and their indexes, the
    /// active segment, the directory; then moves the flushed offset and, when a segment
    /// was sealed, the recovery checkpoint. Called by the flusher and on close.
    ///
    /// A failed fsync leaves the log failed: the page cache may have dropped the dirty
    /// pages, so nothing written since the last good flush can be trusted as durable.
    ///
    /// # Errors
    /// [`LogError::Io`] for the failed sync, [`LogError::Failed`] afterwards.
    pub fn flush(&self) -> Result<(), LogError> {
        let _serial = lock_unit(&self.flush_lock);
        let (unsynced, active_file, active_path, active_base, end, dir_dirty, txn_files) = {
            let mut state = self.lock();
            let dir_dirty = std::mem::take(&mut state.dir_dirty);
            let txn_files = std::mem::take(&mut state.txn_files_dirty)
                .then(|| (state.active.paths.txn_index.clone(), state.active.paths.snapshot.clone()));
            (
                std::mem::take(&mut state.unsynced),
                Arc::clone(&state.active.file),
                state.active.paths.log.clone(),
                state.active.base_offset,
                state.log_end(),
                dir_dirty,
                txn_files,
            )
        };
        if self.flush_state.borrow().failed {
            return Err(LogError::Failed { dir: self.dir.clone() });
        }
        let result = (|| {
            for segment in &unsynced {
                segment.sync()?;
            }
            active_file.sync_data().map_err(|source| LogError::Io {
                op: "sync segment",
                path: active_path.clone(),
                source,
            })?;
            if let Some((txn_index, snapshot)) = &txn_files {
                sync_path(txn_index)?;
                sync_path(snapshot)?;
            }
            if dir_dirty {
                sync_dir(&self.dir)?;
            }
            Ok(())
        })();
        if let Err(error) = result {
            tracing::error!(dir = %self.dir.display(), %error, "flush failed; the log refuses further writes");
            self.flush_state.send_modify(|s| s.failed = true);
            return Err(error);
        }
        self.flush_count.fetch_add(1, Ordering::Relaxed);
        self.last_flush_ms.store(self.context.clock.now_ms(), Ordering::Relaxed);
        self.flush_state.send_if_modified(|s| {
            let moved = end > s.flushed;
            s.flushed = s.flushed.max(end);
            moved
        });
        // Segments below the active one at the snapshot are synced, indexes included.
        let moved = {
            let mut state = self.lock();
            let moved = active_base > state.recovery_point;
            state.recovery_point = state.recovery_point.max(active_base);
            moved
        };
        if moved {
            self.write_checkpoint()?;
        }
        Ok(())
    }

    /// Writes the partition checkpoint as the state is now.
    fn write_checkpoint(&self) -> Result<(), LogError> {
        let _serial = lock_unit(&self.checkpoint_lock);
        let checkpoint = self.lock().checkpoint();
        checkpoint.write(&self.dir)?;
        // Epochs wholly below the log start go with it (after it: a crash between the two
        // leaves an extra old epoch, which answers nothing wrongly). The epoch file is only
        // ever written under the state lock, so a stale copy never lands after a newer one.
        let mut state = self.lock();
        let log_start = state.log_start;
        if state.epochs.truncate_from_start(log_start) {
            state.epochs.write(&self.dir)?;
        }
        Ok(())
    }

    /// Records that leader epoch `epoch` starts at the current log end, as a broker does
    /// when it becomes the partition's leader: followers asking OffsetForLeaderEpoch about
    /// it get an answer before its first append. An epoch not newer than the latest changes
    /// nothing.
    ///
    /// # Errors
    /// [`LogError::Io`] if the checkpoint cannot be written.
    pub fn assign_epoch(&self, epoch: i32) -> Result<(), LogError> {
        let mut state = self.lock();
        let log_end = state.log_end();
        if state.epochs.assign(epoch, log_end) {
            state.epochs.write(&self.dir)?;
        }
        Ok(())
    }

    /// Ends an append that stored offsets `first_offset..next`: releases the lock, then
    /// wakes whoever waits on the log end (long-polling fetches, followers' leaders).
    fn appended(
        &self,
        state: MutexGuard<'_, LogState>,
        first_offset: i64,
        next: i64,
        max_timestamp: i64,
    ) -> AppendInfo {
        let info = AppendInfo {
            first_offset,
            last_offset: next - 1,
            max_timestamp,
            log_start: state.log_start,
            duplicate: false,
        };
        drop(state);
        self.log_end_watch.send_replace(next);
        info
    }

    /// Appends batches fetched from the partition's leader, keeping their offsets and
    /// leader epochs (Kafka's `appendAsFollower`). Each batch is checked (framing, CRC) and
    /// its base offset must be at or past the log end and increase; producer sequences are
    /// recorded, not checked (the leader checked them).
    ///
    /// # Errors
    /// [`LogError::InvalidRecords`], [`LogError::InvalidAppend`] for offsets that go back,
    /// [`LogError::Io`].
    pub fn append_as_follower(&self, batches: &[u8]) -> Result<AppendInfo, LogError> {
        let config = self.config();
        let mut total = 0usize;
        let mut first_offset = None;
        let mut next = i64::MIN;
        let mut max_timestamp = -1i64;
        for batch in BatchIter::new(batches) {
            let batch = batch.map_err(|source| LogError::InvalidRecords { source })?;
            batch.validate().map_err(|source| LogError::InvalidRecords { source })?;
            if batch.base_offset() < next || batch.last_offset_delta() < 0 {
                return Err(LogError::InvalidAppend { reason: "a leader's batches must have increasing offsets" });
            }
            first_offset.get_or_insert(batch.base_offset());
            next = batch.next_offset();
            max_timestamp = max_timestamp.max(batch.max_timestamp());
            total += batch.size();
        }
        let Some(first_offset) = first_offset else {
            return Err(LogError::InvalidAppend { reason: "no record batches" });
        };
        let mut state = self.lock();
        if self.flush_state.borrow().failed {
            return Err(LogError::Failed { dir: self.dir.clone() });
        }
        if first_offset < state.log_end() {
            return Err(LogError::InvalidAppend { reason: "a follower's append must start at or past its log end" });
        }
        if self.should_roll(&state, &config, total, next - state.log_end()) {
            self.roll(&mut state)?;
        }
        let mut epochs_changed = false;
        for batch in BatchIter::new(&batches[..total]).map_while(Result::ok) {
            epochs_changed |= state.epochs.assign(batch.partition_leader_epoch(), batch.base_offset());
        }
        if epochs_changed {
            state.epochs.write(&self.dir)?;
        }
        state.active.append_stored(&batches[..total])?;
        self.record_producers(&mut state, &batches[..total], None)?;
        Ok(self.appended(state, first_offset, next, max_timestamp))
    }

    /// Removes the batch holding `offset` and everything after it, as a follower does
    /// when its log has diverged from a new leader's (Kafka's `truncateTo`). Returns the
    /// new log end: `offset`, or the base of the batch that held it.
    ///
    /// Mapped files are never cut short (a reader of the old bytes would fault): later
    /// segments are unlinked, and the segment holding `offset` is replaced by a copy of its
    /// kept prefix, renamed over it, then reopened as the active segment. Later segments go
    /// first, so a crash part-way leaves a log that ends no earlier than `offset`.
    ///
    /// # Errors
    /// [`LogError::OffsetOutOfRange`] below the log start; [`LogError::Io`].
    pub fn truncate_to(&self, offset: i64) -> Result<i64, LogError> {
        let _maintenance = lock_unit(&self.maintenance);
        let _flush = lock_unit(&self.flush_lock);
        let truncated = (|| {
            let mut state = self.lock();
            let log_end = state.log_end();
            if offset >= log_end {
                return Ok(None);
            }
            if offset < state.log_start {
                return Err(LogError::OffsetOutOfRange { offset, log_start: state.log_start, log_end });
            }
            let target = if offset >= state.active.base_offset {
                state.active.base_offset
            } else {
                *state.sealed.range(..=offset).next_back().expect("the log start lies in a segment").0
            };
            // The kept prefix of the target segment: whole batches that end before `offset`.
            let mut kept = 0u64;
            let mut stop = false;
            let mut measure = |batch: &RecordBatch<'_>| {
                if !stop && batch.last_offset() < offset {
                    kept += batch.size() as u64;
                } else {
                    stop = true;
                }
            };
            if target == state.active.base_offset {
                state.active.for_each_batch(&mut measure)?;
            } else {
                BatchIter::new(state.sealed[&target].bytes()).map_while(Result::ok).for_each(|b| measure(&b));
            }

            // 1. Every segment after the target goes, the newest first: a crash part-way
            // leaves a shorter log, never one with a hole in it.
            if state.active.base_offset > target {
                state.active.paths.remove()?;
            }
            let later: Vec<i64> = state.sealed.range(target + 1..).map(|(base, _)| *base).rev().collect();
            for base in later {
                let segment = state.sealed.remove(&base).expect("listed above");
                state.unsynced.retain(|s| !Arc::ptr_eq(s, &segment));
                segment.paths.remove()?;
            }
            // 2. The target's kept prefix replaces it: copied (by the kernel) into a new
            // file renamed over the old name, so readers keep the old one until they let go.
            let paths = SegmentPaths::new(&self.dir, target);
            copy_prefix(&paths.log, kept)?;
            if let Some(segment) = state.sealed.remove(&target) {
                state.unsynced.retain(|s| !Arc::ptr_eq(s, &segment));
            }
            let interval = self.config().index_interval_bytes;
            let (active, _) = ActiveSegment::recover(&self.dir, target, interval, self.context.clock.now_ms())?;
            state.active = active;
            let new_end = state.log_end();
            // The batch holding `offset` may have started below the log start.
            state.log_start = state.log_start.min(new_end);
            state.recovery_point = state.recovery_point.min(target);
            state.clean_offset = state.clean_offset.min(new_end);
            let txns = recover_transactions(&state.sealed, &state.active, target)?;
            state.producers = txns.producers;
            state.aborted = txns.aborted;
            state.unstable = txns.unstable;
            if state.epochs.truncate_from_end(new_end) {
                state.epochs.write(&self.dir)?;
            }
            self.flush_state.send_modify(|s| s.flushed = s.flushed.min(new_end));
            self.log_end_watch.send_replace(new_end);
            Ok(Some(new_end))
        })();
        let new_end = match truncated {
            Ok(Some(new_end)) => new_end,
            Ok(None) => return Ok(self.log_end()),
            Err(error @ LogError::Io { .. }) => {
                // Half done: refuse writes until a restart recovers the files as they are.
                tracing::error!(dir = %self.dir.display(), %error, "truncation failed; the log refuses further writes");
                self.flush_state.send_modify(|s| s.failed = true);
                return Err(error);
            }
            Err(error) => return Err(error),
        };
        self.write_checkpoint()?;
        tracing::info!(dir = %self.dir.display(), offset, new_end, "log truncated");
        Ok(new_end)
    }

    /// Empties the log and starts it again at `offset`, past its end (Kafka's
    /// `truncateFullyAndStartAt`): what a follower does whose log ends below its leader's
    /// log start, after retention or DeleteRecords removed what it would have fetched.
    ///
    /// The old segments stay on disk, below the new log start, until the next retention
    /// pass removes them; a fresh active segment starts at `offset`. The epoch cache and
    /// producer state start empty, as the leader's batches will fill them.
    ///
    /// # Errors
    /// [`LogError::InvalidAppend`] for an offset not past the log end, [`LogError::Io`].
    pub fn truncate_fully_and_start_at(&self, offset: i64) -> Result<(), LogError> {
        {
            let mut state = self.lock();
            if offset <= state.log_end() {
                return Err(LogError::InvalidAppend { reason: "a log starts again only past its end" });
            }
            let interval = self.config().index_interval_bytes;
            // Before the roll, so the new segment's snapshot is of the empty state.
            state.producers = Default::default();
            state.aborted.clear();
            state.unstable.clear();
            if state.active.is_empty() {
                // Nothing to seal: the empty segment is replaced outright.
                let fresh = ActiveSegment::create(&self.dir, offset, interval, self.context.clock.now_ms())?;
                write_snapshot(&fresh.paths.snapshot, &state.producers)?;
                let old = std::mem::replace(&mut state.active, fresh);
                old.paths.remove()?;
                state.dir_dirty = true;
                state.txn_files_dirty = true;
            } else {
                self.roll_at(&mut state, offset)?;
            }
            state.log_start = offset;
            state.recovery_point = state.recovery_point.max(offset);
            state.clean_offset = state.clean_offset.max(offset);
            state.epochs = LeaderEpochCache::default();
            state.epochs.write(&self.dir)?;
        }
        self.flush_state.send_modify(|s| s.flushed = s.flushed.max(offset));
        self.log_end_watch.send_replace(offset);
        self.write_checkpoint()?;
        tracing::info!(dir = %self.dir.display(), offset, "log emptied to start again at the leader's log start");
        Ok(())
    }

    /// A copy of the leader epoch cache and the log end it goes with, for a follower
    /// deciding where to truncate.
    pub fn epoch_cache(&self) -> (super::leader_epoch::LeaderEpochCache, i64) {
        let state = self.lock();
        (state.epochs.clone(), state.log_end())
    }

    /// The latest leader epoch that wrote to this log.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.lock().epochs.latest_epoch()
    }

    /// Where leader epoch `epoch` ends in this log, as (epoch, end offset), for
    /// OffsetForLeaderEpoch; see [`LeaderEpochCache::end_offset_for`].
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let state = self.lock();
        state.epochs.end_offset_for(epoch, state.log_end())
    }

    /// Flushes and writes the checkpoint; the log can be dropped after this.
    ///
    /// # Errors
    /// As [`Self::flush`].
    pub fn close(&self) -> Result<(), LogError> {
        self.flush()?;
        self.write_checkpoint()
    }

    /// Moves the log start offset forward (Kafka's DeleteRecords); whole segments below it
    /// go at the next retention pass. Returns the new log start.
    ///
    /// # Errors
    /// [`LogError::OffsetOutOfRange`] past the log end, [`LogError::Io`] for the checkpoint.
    pub fn advance_log_start(&self, offset: i64) -> Result<i64, LogError> {
        let log_start = {
            let mut state = self.lock();
            if offset > state.log_end() {
                return Err(LogError::OffsetOutOfRange {
                    offset,
                    log_start: state.log_start,
                    log_end: state.log_end(),
                });
            }
            state.log_start = state.log_start.max(offset);
            state.clean_offset = state.clean_offset.max(state.log_start);
            state.log_start
        };
        self.write_checkpoint()?;
        Ok(log_start)
    }

    /// Deletes whole segments past `retention.ms` (by their newest timestamp) and past
    /// `retention.bytes` (oldest first), and segments wholly below the log start. With
    /// `cleanup.policy` lacking `delete`, only the last applies. Never deletes what a
    /// reader could still be offered: the log start moves first.
    ///
    /// # Errors
    /// [`LogError::Io`] if a file cannot be removed or the checkpoint written.
    ///
    /// With `remote.storage.enable`, a segment that the tier holds (it ends at or below
    /// [`Self::remote_end`]) also goes once it is past `local.retention.ms` or
    /// `local.retention.bytes`; one the tier does not hold yet stays until total retention
    /// wants it, so an unreachable object store never costs data.
    pub fn apply_retention(&self) -> Result<RetentionOutcome, LogError> {
        let _maintenance = lock_unit(&self.maintenance);
        let config = self.config();
        let now = self.context.clock.now_ms();
        let remote_end = self.remote_end();
        let tiered = config.remote_storage_enable && config.cleanup_policy.delete;
        let local_ms = config.effective_local_retention_ms();
        let local_time_limit = (tiered && local_ms >= 0).then(|| now - local_ms);
        let local_bytes = config.effective_local_retention_bytes();
        let doomed = {
            let mut state = self.lock();
            let time_limit =
                (config.cleanup_policy.delete && config.retention_ms >= 0).then(|| now - config.retention_ms);
            // Kafka rolls an expired active segment so that retention can delete it too.
            if let Some(limit) = time_limit
                && !state.active.is_empty()
                && (0..limit).contains(&state.active.indexer.max_timestamp)
                && state.sealed.values().all(|s| s.retention_timestamp() < limit)
            {
                self.roll(&mut state)?;
            }
            let mut size = state.size_bytes();
            let mut doomed = Vec::new();
            while let Some((&base, segment)) = state.sealed.iter().next() {
                let below_start = segment.next_offset <= state.log_start;
                let expired = time_limit.is_some_and(|limit| segment.retention_timestamp() < limit);
                let oversized = config.cleanup_policy.delete
                    && config.retention_bytes >= 0
                    && size - u64::from(segment.size) >= config.retention_bytes as u64;
                let uploaded = tiered && segment.next_offset <= remote_end;
                let locally_expired = local_time_limit.is_some_and(|limit| segment.retention_timestamp() < limit);
                let locally_oversized = local_bytes >= 0 && size - u64::from(segment.size) >= local_bytes as u64;
                let local_only = uploaded && (locally_expired || locally_oversized);
                if !(below_start || expired || oversized || local_only) {
                    break;
                }
                size -= u64::from(segment.size);
                let segment = state.sealed.remove(&base).expect("first segment exists");
                state.unsynced.retain(|s| !Arc::ptr_eq(s, &segment));
                doomed.push(segment);
            }
            if doomed.is_empty() {
                return Ok(RetentionOutcome::default());
            }
            let first = state.sealed.keys().next().copied().unwrap_or(state.active.base_offset);
            state.log_start = state.log_start.max(first);
            state.aborted.retain(|a| a.last_offset >= first);
            state.clean_offset = state.clean_offset.max(state.log_start);
            state.dir_dirty = true;
            doomed
        };
        // The new log start is durable before any file goes, so a crash between the two
        // never shows a log start below the first segment.
        self.write_checkpoint()?;
        let mut outcome = RetentionOutcome::default();
        for segment in doomed {
            segment.paths.remove()?;
            outcome.deleted_segments += 1;
            outcome.deleted_bytes += u64::from(segment.size);
        }
        sync_dir(&self.dir)?;
        Ok(outcome)
    }

    /// The share of the cleanable log (sealed segments) not yet compacted.
    pub fn dirty_ratio(&self) -> f64 {
        let state = self.lock();
        let (mut clean, mut dirty) = (0u64, 0u64);
        for segment in state.sealed.values() {
            if segment.next_offset <= state.clean_offset {
                clean += u64::from(segment.size)
            } else {
                dirty += u64::from(segment.size)
            }
        }
        if clean + dirty == 0 { 0.0 } else { dirty as f64 / (clean + dirty) as f64 }
    }

    /// Compacts the sealed segments (`cleanup.policy=compact`): keeps the latest record per
    /// key, drops tombstones older than `delete.retention.ms`. Runs beside appends and
    /// reads; only the final swap takes the log's lock.
    ///
    /// # Errors
    /// [`LogError::Io`] if a cleaned segment cannot be written or swapped in.
    pub fn compact(&self) -> Result<cleaner::CompactionOutcome, LogError> {
        let _maintenance = lock_unit(&self.maintenance);
        let config = self.config();
        let now = self.context.clock.now_ms();
        let (segments, first_unstable, aborted) = {
            let state = self.lock();
            // Only undecided transactions matter here: a decided one's marker says what its
            // records are (a marker later lost to truncation is written again by the
            // coordinator, with the same decision).
            let first_unstable = state.producers.first_unstable_offset().unwrap_or(state.log_end());
            (state.sealed.values().cloned().collect::<Vec<_>>(), first_unstable, state.aborted.clone())
        };
        let plan = cleaner::plan(&segments, &config, now, first_unstable);
        if plan.segments.is_empty() {
            return Ok(cleaner::CompactionOutcome::default());
        }
        let cleaned = cleaner::clean(&self.dir, &plan, &config, now, &aborted)?;
        {
            let mut state = self.lock();
            for (old, new) in cleaned.segments {
                match state.sealed.get(&old.base_offset) {
                    Some(current) if Arc::ptr_eq(current, &old) => {}
                    // Retention removed it meanwhile.
                    _ => {
                        new.discard();
                        continue;
                    }
                }
                let replacement = cleaner::swap_in(&self.dir, &old, new, config.index_interval_bytes)?;
                state.unsynced.retain(|s| !Arc::ptr_eq(s, &old));
                match replacement {
                    Some(segment) => {
                        state.unsynced.push(Arc::clone(&segment));
                        state.sealed.insert(segment.base_offset, segment);
                    }
                    None => {
                        state.sealed.remove(&old.base_offset);
                    }
                }
            }
            state.dir_dirty = true;
            state.clean_offset = state.clean_offset.max(cleaned.clean_up_to);
        }
        self.write_checkpoint()?;
        Ok(cleaned.outcome)
    }
}

/// The view of the segment that holds `offset` (or the first one after it, past a gap
/// that compaction left), and the offset where that segment ends if it is sealed.
fn view_at(state: &LogState, offset: i64) -> (SegmentView, Option<i64>) {
    let holding = state.sealed.range(..=offset).next_back().filter(|(_, s)| offset < s.next_offset);
    match holding.or_else(|| state.sealed.range(offset..).next()) {
        Some((_, segment)) => (segment.view(offset), Some(segment.next_offset)),
        None => (state.active.view(offset), None),
    }
}

/// Locks a mutex that guards no data, only the order of operations: a panic in another
/// holder leaves nothing inconsistent behind it, so poisoning is ignored.
fn lock_unit(mutex: &Mutex<()>) -> MutexGuard<'_, ()> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Kafka's checks of a producer's records (its LogValidator): every record decodes, their
/// offset deltas run 0, 1, 2, ... as the header says, and a compacted topic gets keys.
/// Compressed batches are decompressed for this, as Kafka does: compaction and readers
/// must be able to trust what the log accepted.
fn validate_records(batch: &RecordBatch<'_>, config: &LogConfig) -> Result<(), LogError> {
    let invalid = |source| LogError::InvalidRecords { source };
    let records = batch.records(cleaner::MAX_DECOMPRESSED_BYTES).map_err(invalid)?;
    let mut expected = batch.base_offset();
    for record in records.iter() {
        let record = record.map_err(invalid)?;
        if record.offset != expected {
            return Err(invalid(RecordError::InvalidRecord {
                reason: "record offsets are not consecutive from the batch's base",
            }));
        }
        if config.cleanup_policy.compact && record.key.is_none() && !batch.is_control() {
            return Err(LogError::InvalidAppend { reason: "a compacted topic needs a key on every record" });
        }
        expected += 1;
    }
    if expected != batch.next_offset() {
        return Err(invalid(RecordError::InvalidRecord { reason: "record count disagrees with the batch header" }));
    }
    Ok(())
}

/// The leader epoch cache as of the recovered log: the checkpoint, trimmed to the log's
/// range, or rebuilt from the batches' epochs when it is missing or damaged.
fn load_epochs(
    dir: &Path,
    sealed: &BTreeMap<i64, Arc<SealedSegment>>,
    active: &ActiveSegment,
    log_start: i64,
    log_end: i64,
) -> Result<LeaderEpochCache, LogError> {
    let mut epochs = match LeaderEpochCache::read(dir) {
        Ok(epochs) => epochs,
        Err(error) => {
            tracing::warn!(%error, "rebuilding the leader epoch cache from the log");
            LeaderEpochCache::default()
        }
    };
    let mut changed = false;
    if epochs.latest_epoch().is_none() && log_end > log_start {
        let mut note =
            |batch: &RecordBatch<'_>| changed |= epochs.assign(batch.partition_leader_epoch(), batch.base_offset());
        for segment in sealed.values() {
            BatchIter::new(segment.bytes()).map_while(Result::ok).for_each(|batch| note(&batch));
        }
        active.for_each_batch(|batch| note(batch))?;
    }
    // Recovery may have cut the tail; retention may have moved the start.
    changed |= epochs.truncate_from_end(log_end);
    changed |= epochs.truncate_from_start(log_start);
    if changed {
        epochs.write(dir)?;
    }
    Ok(epochs)
}

/// Producer and transaction state recovered from disk.
struct RecoveredTxns {
    producers: ProducerStateTable,
    aborted: Vec<AbortedTxn>,
    unstable: Vec<CompletedTxn>,
}

/// Rebuilds producer state, open transactions and the aborted-transaction index for a log
/// whose segments from `recover_from` on were recovered (and may have lost a tail): the
/// snapshot at the first such segment is loaded and those segments replayed, their
/// `.txnindex` rewritten from their markers; older segments' indexes are read as stored.
/// Without a usable snapshot, every segment is replayed for the state.
fn recover_transactions(
    sealed: &BTreeMap<i64, Arc<SealedSegment>>,
    active: &ActiveSegment,
    recover_from: i64,
) -> Result<RecoveredTxns, LogError> {
    let first_recovered = sealed.keys().copied().find(|b| *b >= recover_from).unwrap_or(active.base_offset);
    let snapshot_at = |base: i64| {
        let path = if base == active.base_offset { &active.paths.snapshot } else { &sealed[&base].paths.snapshot };
        fs::read(path).ok().and_then(|bytes| ProducerStateTable::from_snapshot(&bytes))
    };
    let (producers, replay_from) = match snapshot_at(first_recovered) {
        Some(table) => (table, first_recovered),
        None => (ProducerStateTable::default(), i64::MIN),
    };
    let mut recovered = RecoveredTxns { producers, aborted: Vec::new(), unstable: Vec::new() };
    for (&base, segment) in sealed {
        let replayed = if base < replay_from {
            None
        } else {
            let mut completed = Vec::new();
            recovered.producers.replay(segment.bytes(), &mut completed);
            Some(completed)
        };
        recovered.segment_done(&segment.paths, base >= first_recovered, replayed)?;
    }
    if snapshot_at(active.base_offset).is_none() {
        // So that the next recovery, which starts at the active segment, has one.
        write_snapshot(&active.paths.snapshot, &recovered.producers)?;
        sync_path(&active.paths.snapshot)?;
    }
    let mut completed = Vec::new();
    active.for_each_batch(|batch| completed.extend(recovered.producers.record(batch)))?;
    recovered.segment_done(&active.paths, true, Some(completed))?;
    Ok(recovered)
}

impl RecoveredTxns {
    /// Takes in one segment's aborts: from the markers `replayed` if it was recovered
    /// (rewriting its index), else from its index as stored.
    fn segment_done(
        &mut self,
        paths: &SegmentPaths,
        recovered: bool,
        replayed: Option<Vec<CompletedTxn>>,
    ) -> Result<(), LogError> {
        let completed = match replayed {
            Some(completed) if recovered => completed,
            _ => {
                self.aborted.extend(txn_index::read(&paths.txn_index)?);
                return Ok(());
            }
        };
        let entries: Vec<AbortedTxn> = completed
            .iter()
            .filter(|t| t.aborted)
            .map(|t| AbortedTxn {
                producer_id: t.producer_id,
                first_offset: t.first_offset,
                last_offset: t.last_offset,
                last_stable_offset: t.last_offset + 1,
            })
            .collect();
        txn_index::rewrite(&paths.txn_index, &entries)?;
        sync_path(&paths.txn_index)?;
        self.aborted.extend(entries);
        self.unstable.extend(completed);
        Ok(())
    }
}

/// Writes a producer state snapshot (not synced).
fn write_snapshot(path: &Path, producers: &ProducerStateTable) -> Result<(), LogError> {
    fs::write(path, producers.to_snapshot()).map_err(|source| LogError::Io {
        op: "write producer snapshot",
        path: path.to_path_buf(),
        source,
    })
}

/// Replaces the file at `path` with its first `len` bytes: a new file, fsynced, renamed
/// over it, the directory fsynced. The old file is never cut short, since it may be mapped.
fn copy_prefix(path: &Path, len: u64) -> Result<(), LogError> {
    use std::io::Read;
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| LogError::Io { op, path, source }
    };
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let source = fs::File::open(path).map_err(io("open segment", path))?;
    let mut target = fs::File::create(&tmp).map_err(io("create file", &tmp))?;
    let copied = std::io::copy(&mut source.take(len), &mut target).map_err(io("copy segment", &tmp))?;
    if copied != len {
        let source = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "segment shorter than its batches");
        return Err(LogError::Io { op: "copy segment", path: tmp, source });
    }
    target.sync_data().map_err(io("sync file", &tmp))?;
    fs::rename(&tmp, path).map_err(io("rename file", path))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}
