//! The tier manager: which partitions have remote data, the uploads that put it there,
//! and the remote retention that takes it away. Reads live in `read.rs`.
//!
//! One upload at a time per partition (its `work` lock), oldest segment first, so a
//! manifest only ever grows at its end. An upload is: convert the sealed segment to a
//! Parquet staging file on a blocking thread, stream it to the object store, write the
//! manifest that names it, then tell the log (`Log::set_remote_end`), so local retention
//! may drop the segment. A failure anywhere leaves the local segment where it was and
//! backs the partition off (1 s doubling to `max_backoff`); the other partitions go on.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::arrow_reader::ArrowReaderMetadata;
use tokio::io::AsyncWriteExt;

use super::TierError;
use super::cache::RowGroupCache;
use super::convert::{ConvertOptions, write_segment};
use super::manifest::{MANIFEST_FILE, Manifest, RemoteFile};
use super::schema::JsonType;
use super::store::TierStore;
use crate::log::segment::SealedSegment;
use crate::log::txn_index::AbortedTxn;
use crate::log::{Log, LogConfig, LogManager, TopicPartition};

/// How the tier runs.
#[derive(Debug, Clone)]
pub struct TierOptions {
    pub convert: ConvertOptions,
    /// How often partitions are looked at (Kafka's `remote.log.manager.task.interval.ms`).
    pub interval: Duration,
    /// Bytes of rebuilt row groups kept for remote reads.
    pub cache_bytes: usize,
    /// The longest wait before a failing partition is tried again.
    pub max_backoff: Duration,
    /// Where segments are converted before upload (`<data-dir>/tier-staging`).
    pub staging_dir: PathBuf,
    /// Partitions converted and uploaded at once.
    pub concurrency: usize,
}

impl TierOptions {
    pub fn new(staging_dir: PathBuf) -> Self {
        Self {
            convert: ConvertOptions::default(),
            interval: Duration::from_secs(10),
            cache_bytes: 64 << 20,
            max_backoff: Duration::from_secs(60),
            staging_dir,
            concurrency: 2,
        }
    }
}

/// Who may upload a partition: only its leader, and only what is committed.
pub trait Leadership: Send + Sync + std::fmt::Debug {
    /// `Some((upload limit, leader epoch))` when this broker leads `tp`: segments ending
    /// at or below the limit (the high watermark) may go. `None` on a follower.
    fn leads(&self, tp: &TopicPartition, log: &Log) -> Option<(i64, i32)>;
}

/// A single broker leads every partition, and all of its log is committed.
#[derive(Debug, Default)]
pub struct SingleNode;

impl Leadership for SingleNode {
    fn leads(&self, _tp: &TopicPartition, log: &Log) -> Option<(i64, i32)> {
        Some((log.log_end(), 0))
    }
}

impl Leadership for crate::partition::ReplicaManager {
    fn leads(&self, tp: &TopicPartition, _log: &Log) -> Option<(i64, i32)> {
        let replica = self.replica(&tp.topic, tp.partition)?;
        let status = replica.check_leader(-1).ok()?;
        status.leading.then_some((status.high_watermark, status.leader_epoch))
    }
}

/// One partition's remote state.
#[derive(Debug)]
pub(super) struct PartitionTier {
    pub(super) tp: TopicPartition,
    pub(super) topic_id: uuid::Uuid,
    pub(super) folder: Path,
    manifest: RwLock<Arc<Manifest>>,
    /// The typed JSON columns of the newest file: `None` until looked up.
    json: Mutex<Option<Option<JsonType>>>,
    /// The leader epoch the manifest was last loaded or written under.
    epoch: AtomicI32,
    last_reload: Mutex<Instant>,
    /// One upload, retention pass or log-start move at a time.
    work: tokio::sync::Mutex<()>,
}

impl PartitionTier {
    pub(super) fn manifest(&self) -> Arc<Manifest> {
        Arc::clone(&self.manifest.read().expect("manifest lock"))
    }
    fn set_manifest(&self, manifest: Manifest) {
        *self.manifest.write().expect("manifest lock") = Arc::new(manifest);
    }
}

#[derive(Debug, Clone, Copy)]
struct Retry {
    failures: u32,
    next: Instant,
}

/// Every partition's remote data, for one broker.
#[derive(Debug)]
pub struct TierManager {
    pub(super) store: TierStore,
    pub(super) logs: Arc<LogManager>,
    options: TierOptions,
    leadership: Arc<dyn Leadership>,
    partitions: RwLock<HashMap<TopicPartition, Arc<PartitionTier>>>,
    retries: Mutex<HashMap<TopicPartition, Retry>>,
    pub(super) cache: RowGroupCache,
    /// Parquet footers by object path (bounded: cleared when full).
    pub(super) footers: Mutex<HashMap<String, ArrowReaderMetadata>>,
    orphans_checked: AtomicBool,
}

/// Footers kept before the footer cache starts again.
pub(super) const FOOTERS_MAX: usize = 4096;

impl TierManager {
    /// A manager over `logs`, storing in `store`. Nothing runs until [`Self::start`] (or
    /// [`Self::run_pass`]); [`Self::load`] reads existing manifests.
    pub fn new(
        store: TierStore,
        logs: Arc<LogManager>,
        leadership: Arc<dyn Leadership>,
        options: TierOptions,
    ) -> Arc<Self> {
        Arc::new(Self {
            cache: RowGroupCache::new(options.cache_bytes),
            store,
            logs,
            options,
            leadership,
            partitions: RwLock::new(HashMap::new()),
            retries: Mutex::new(HashMap::new()),
            footers: Mutex::new(HashMap::new()),
            orphans_checked: AtomicBool::new(false),
        })
    }

    /// A single broker's manager.
    pub fn single_node(store: TierStore, logs: Arc<LogManager>, options: TierOptions) -> Arc<Self> {
        Self::new(store, logs, Arc::new(SingleNode), options)
    }

    pub fn store(&self) -> &TierStore {
        &self.store
    }

    /// Reads the manifest of every partition of every topic with remote storage, so the
    /// broker serves remote data from the first request on.
    ///
    /// # Errors
    /// The first manifest that cannot be read (the store unreachable, a bad manifest).
    pub async fn load(&self) -> Result<(), TierError> {
        // Staging files of uploads a stop or crash cut short: their segments go again.
        match std::fs::remove_dir_all(&self.options.staging_dir) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(TierError::Io {
                    op: "clear staging folder",
                    path: self.options.staging_dir.clone(),
                    source,
                });
            }
        }
        for (topic, description) in self.logs.topics() {
            let Ok(config) = self.logs.topic_config(&topic) else { continue };
            if config.remote_storage_enable {
                for partition in 0..description.partitions {
                    self.partition(&TopicPartition::new(topic.clone(), partition), description.topic_id).await?;
                }
            }
        }
        Ok(())
    }

    /// Runs passes every [`TierOptions::interval`] until `shutdown` turns true.
    pub fn start(self: &Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let manager = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                manager.run_pass().await;
                tokio::select! {
                    _ = tokio::time::sleep(manager.options.interval) => {}
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
            }
        })
    }

    /// One pass over every partition: uploads, remote retention, cleanup of deleted
    /// topics. Errors are logged and back the partition off; they never stop the pass.
    pub async fn run_pass(&self) {
        if !self.orphans_checked.swap(true, Ordering::AcqRel)
            && let Err(error) = self.remove_deleted_topics().await
        {
            tracing::warn!(%error, "could not look for remote data of deleted topics");
            self.orphans_checked.store(false, Ordering::Release);
        }
        let topics = self.logs.topics();
        let gone: Vec<Arc<PartitionTier>> = {
            let mut partitions = self.partitions.write().expect("partitions lock");
            let doomed: Vec<TopicPartition> = partitions
                .iter()
                .filter(|(tp, part)| {
                    topics.get(&tp.topic).is_none_or(|t| t.topic_id != part.topic_id || tp.partition >= t.partitions)
                })
                .map(|(tp, _)| tp.clone())
                .collect();
            doomed.iter().filter_map(|tp| partitions.remove(tp)).collect()
        };
        for part in gone {
            if let Err(error) = self.delete_prefix(&part.folder).await {
                tracing::warn!(partition = %part.tp, %error, "could not delete a deleted topic's remote data");
            }
        }
        let mut due = Vec::new();
        for (topic, description) in topics {
            let Ok(config) = self.logs.topic_config(&topic) else { continue };
            if !config.remote_storage_enable {
                continue;
            }
            let config = Arc::new(config);
            for partition in 0..description.partitions {
                let tp = TopicPartition::new(topic.clone(), partition);
                if self.due(&tp) {
                    due.push((tp, description.topic_id, Arc::clone(&config)));
                }
            }
        }
        // A few partitions at a time: conversion is CPU-bound, one blocking thread each.
        futures::stream::iter(due)
            .for_each_concurrent(self.options.concurrency.max(1), |(tp, topic_id, config)| async move {
                let outcome = async {
                    let part = self.partition(&tp, topic_id).await?;
                    self.tier_partition(&part, &config).await
                }
                .await;
                self.note_outcome(&tp, outcome);
            })
            .await;
    }

    fn due(&self, tp: &TopicPartition) -> bool {
        self.retries.lock().expect("retries lock").get(tp).is_none_or(|r| Instant::now() >= r.next)
    }

    fn note_outcome(&self, tp: &TopicPartition, outcome: Result<(), TierError>) {
        let mut retries = self.retries.lock().expect("retries lock");
        match outcome {
            Ok(()) => {
                retries.remove(tp);
            }
            Err(error) => {
                ::metrics::counter!(crate::metrics::TIER_UPLOAD_FAILURES, "topic" => tp.topic.clone()).increment(1);
                let failures = retries.get(tp).map_or(1, |r| r.failures.saturating_add(1));
                let backoff =
                    Duration::from_secs(1 << failures.min(16).saturating_sub(1)).min(self.options.max_backoff);
                tracing::warn!(partition = %tp, error = %error_chain(&error), retry_in = ?backoff,
                    "tiering failed; local data stays until it succeeds");
                retries.insert(tp.clone(), Retry { failures, next: Instant::now() + backoff });
            }
        }
    }

    /// The partition's remote state, loading its manifest on first use.
    pub(super) async fn partition(
        &self,
        tp: &TopicPartition,
        topic_id: uuid::Uuid,
    ) -> Result<Arc<PartitionTier>, TierError> {
        if let Some(part) = self.loaded(tp).filter(|p| p.topic_id == topic_id) {
            return Ok(part);
        }
        let folder = self.partition_folder(tp, topic_id);
        let manifest =
            self.fetch_manifest(&folder).await?.unwrap_or_else(|| Manifest::empty(&tp.topic, topic_id, tp.partition));
        let epoch = manifest.leader_epoch;
        if let (Some(end), Some(log)) = (manifest.end(), self.logs.log(tp)) {
            log.set_remote_end(end);
        }
        let part = Arc::new(PartitionTier {
            tp: tp.clone(),
            topic_id,
            folder,
            manifest: RwLock::new(Arc::new(manifest)),
            json: Mutex::new(None),
            epoch: AtomicI32::new(epoch),
            last_reload: Mutex::new(Instant::now()),
            work: tokio::sync::Mutex::new(()),
        });
        self.partitions.write().expect("partitions lock").insert(tp.clone(), Arc::clone(&part));
        Ok(part)
    }

    /// The partition's remote state if it has been loaded.
    pub(super) fn loaded(&self, tp: &TopicPartition) -> Option<Arc<PartitionTier>> {
        self.partitions.read().expect("partitions lock").get(tp).cloned()
    }

    fn partition_folder(&self, tp: &TopicPartition, topic_id: uuid::Uuid) -> Path {
        self.topics_folder().join(tp.topic.as_str()).join(topic_id.to_string()).join(tp.partition.to_string())
    }

    fn topics_folder(&self) -> Path {
        self.store.root.clone().join("topics")
    }

    async fn fetch_manifest(&self, folder: &Path) -> Result<Option<Manifest>, TierError> {
        let path = folder.clone().join(MANIFEST_FILE);
        let bytes = match self.store.store.get(&path).await {
            Ok(found) => found.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|source| TierError::Manifest { path: path.to_string(), source })?;
        Ok(Some(manifest))
    }

    /// Writes `manifest` as the partition's, unless a newer leader wrote one meanwhile.
    async fn write_manifest(&self, part: &PartitionTier, manifest: Manifest) -> Result<(), TierError> {
        let current = part.manifest();
        if current.leader_epoch > manifest.leader_epoch {
            return Err(TierError::Fenced {
                partition: part.tp.to_string(),
                found: current.leader_epoch,
                ours: manifest.leader_epoch,
            });
        }
        let text = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
        self.store.store.put(&part.folder.clone().join(MANIFEST_FILE), PutPayload::from(text)).await?;
        part.set_manifest(manifest);
        Ok(())
    }

    /// Uploads what is due for one partition and applies remote retention; on a follower,
    /// refreshes the manifest now and then so local retention knows what is remote.
    async fn tier_partition(&self, part: &PartitionTier, config: &LogConfig) -> Result<(), TierError> {
        let _work = part.work.lock().await;
        let log = self.logs.get(&part.tp.topic, part.tp.partition)?;
        let Some((limit, epoch)) = self.leadership.leads(&part.tp, &log) else {
            let reload_due = part.last_reload.lock().expect("reload lock").elapsed() >= self.options.interval * 3;
            if reload_due {
                self.reload(part, &log).await?;
            }
            return Ok(());
        };
        if epoch != part.epoch.load(Ordering::Acquire) {
            // Newly leading: start from what the previous leader wrote.
            self.reload(part, &log).await?;
            self.remove_unlisted_files(part).await?;
            part.epoch.store(epoch, Ordering::Release);
        }
        let mut uploaded = false;
        for segment in log.sealed_segments() {
            let end = part.manifest().end().unwrap_or(i64::MIN);
            if segment.next_offset <= end || segment.size == 0 || segment.next_offset <= log.log_start() {
                continue;
            }
            if segment.next_offset > limit {
                break;
            }
            self.upload_segment(part, &log, segment, config, epoch).await?;
            uploaded = true;
        }
        if uploaded {
            let log = Arc::clone(&log);
            tokio::task::spawn_blocking(move || log.apply_retention()).await??;
        }
        self.expire_remote(part, &log, config, epoch).await
    }

    async fn reload(&self, part: &PartitionTier, log: &Log) -> Result<(), TierError> {
        *part.last_reload.lock().expect("reload lock") = Instant::now();
        if let Some(manifest) = self.fetch_manifest(&part.folder).await? {
            if let Some(end) = manifest.end() {
                log.set_remote_end(end);
            }
            part.set_manifest(manifest);
            *part.json.lock().expect("json lock") = None;
        }
        Ok(())
    }

    /// The typed JSON columns of a partition's newest remote file (`None` without files
    /// or without JSON columns).
    ///
    /// # Errors
    /// The newest file's footer cannot be read.
    pub async fn json_columns(&self, tp: &TopicPartition) -> Result<Option<JsonType>, TierError> {
        match self.loaded(tp) {
            Some(part) => self.json_type(&part).await,
            None => Ok(None),
        }
    }

    /// The typed JSON columns of the partition's newest file.
    async fn json_type(&self, part: &PartitionTier) -> Result<Option<JsonType>, TierError> {
        if let Some(known) = part.json.lock().expect("json lock").clone() {
            return Ok(known);
        }
        let manifest = part.manifest();
        let found = match manifest.files.last() {
            None => None,
            Some(file) => {
                let footer = self.footer(&part.folder.clone().join(file.name.as_str()), file.size).await?;
                JsonType::from_file_schema(footer.schema())
            }
        };
        *part.json.lock().expect("json lock") = Some(found.clone());
        Ok(found)
    }

    async fn upload_segment(
        &self,
        part: &PartitionTier,
        log: &Log,
        segment: Arc<SealedSegment>,
        config: &LogConfig,
        epoch: i32,
    ) -> Result<(), TierError> {
        let started = Instant::now();
        let previous = self.json_type(part).await?;
        let staging_dir = self.options.staging_dir.clone();
        let staging = staging_dir.join(format!("{}-{:020}.parquet", part.tp, segment.base_offset));
        let (format, partition, options) = (config.value_format, part.tp.partition, self.options.convert);
        let (file, segment) = (staging.clone(), Arc::clone(&segment));
        let converted = tokio::task::spawn_blocking(move || {
            let io = |op| {
                let path = file.clone();
                move |source| TierError::Io { op, path, source }
            };
            std::fs::create_dir_all(&staging_dir).map_err(io("create staging folder"))?;
            let out = std::fs::File::create(&file).map_err(io("create staging file"))?;
            let mut out = std::io::BufWriter::with_capacity(1 << 20, out);
            let converted = write_segment(segment.bytes(), partition, format, previous.as_ref(), options, &mut out)?;
            out.into_inner().map_err(|e| e.into_error()).map_err(io("write staging file"))?;
            Ok::<_, TierError>((converted, segment))
        })
        .await?;
        let (converted, segment) = match converted {
            Ok(done) => done,
            Err(error) => {
                let _ = std::fs::remove_file(&staging);
                return Err(error);
            }
        };
        let name = format!("{:020}.parquet", segment.base_offset);
        let object = part.folder.clone().join(name.as_str());
        let uploaded = self.upload_file(&staging, &object).await;
        let _ = tokio::fs::remove_file(&staging).await;
        let size = uploaded?;

        let mut manifest = (*part.manifest()).clone();
        if manifest.files.is_empty() {
            manifest.log_start = manifest.log_start.max(log.log_start());
        }
        manifest.leader_epoch = manifest.leader_epoch.max(epoch);
        manifest.files.push(RemoteFile {
            name,
            base_offset: segment.base_offset,
            next_offset: segment.next_offset,
            records: converted.records,
            min_timestamp: converted.min_timestamp,
            max_timestamp: converted.max_timestamp,
            size,
            segment_bytes: u64::from(segment.size),
            aborted_transactions: log
                .aborted_transactions(segment.base_offset, segment.next_offset)
                .into_iter()
                .filter(|a| a.last_offset < segment.next_offset)
                .collect(),
        });
        self.write_manifest(part, manifest).await?;
        *part.json.lock().expect("json lock") = Some(converted.json);
        log.set_remote_end(segment.next_offset);
        ::metrics::counter!(crate::metrics::TIER_UPLOADED_BYTES, "topic" => part.tp.topic.clone()).increment(size);
        ::metrics::counter!(crate::metrics::TIER_UPLOADED_SEGMENTS, "topic" => part.tp.topic.clone()).increment(1);
        tracing::info!(partition = %part.tp, base = segment.base_offset, next = segment.next_offset,
            records = converted.records, bytes = size, took = ?started.elapsed(), "segment tiered");
        Ok(())
    }

    /// Streams a local file to `object` (multipart for large files); returns its size.
    async fn upload_file(&self, file: &std::path::Path, object: &Path) -> Result<u64, TierError> {
        let upload_error = |source| TierError::Upload { path: object.to_string(), source };
        let mut source = tokio::fs::File::open(file).await.map_err(|source| TierError::Io {
            op: "open staging file",
            path: file.to_path_buf(),
            source,
        })?;
        let mut writer =
            object_store::buffered::BufWriter::with_capacity(Arc::clone(&self.store.store), object.clone(), 8 << 20);
        let copied = match tokio::io::copy(&mut source, &mut writer).await {
            Ok(copied) => copied,
            Err(error) => {
                let _ = writer.abort().await;
                return Err(upload_error(error));
            }
        };
        writer.shutdown().await.map_err(upload_error)?;
        Ok(copied)
    }

    /// Drops whole remote files below the log start or past `retention.ms` /
    /// `retention.bytes` (counting local and remote-only data once each). The manifest
    /// goes first, then the files.
    async fn expire_remote(
        &self,
        part: &PartitionTier,
        log: &Log,
        config: &LogConfig,
        epoch: i32,
    ) -> Result<(), TierError> {
        if !config.cleanup_policy.delete {
            return Ok(());
        }
        let manifest = part.manifest();
        let files = &manifest.files;
        let now = self.logs.clock().now_ms();
        let local_start = log.log_start();
        let mut drop = 0;
        while drop < files.len() && files[drop].next_offset <= manifest.log_start {
            drop += 1;
        }
        if config.retention_ms >= 0 {
            let limit = now - config.retention_ms;
            while drop < files.len() && files[drop].max_timestamp < limit {
                drop += 1;
            }
        }
        if config.retention_bytes >= 0 {
            let remote_only: u64 =
                files[drop..].iter().filter(|f| f.next_offset <= local_start).map(|f| f.segment_bytes).sum();
            let mut total = log.size_bytes() + remote_only;
            while drop < files.len() && files[drop].next_offset <= local_start && total > config.retention_bytes as u64
            {
                total -= files[drop].segment_bytes;
                drop += 1;
            }
        }
        if drop == 0 {
            return Ok(());
        }
        let mut next = (*manifest).clone();
        let dropped: Vec<RemoteFile> = next.files.drain(..drop).collect();
        next.log_start = next.log_start.max(dropped.last().map_or(i64::MIN, |f| f.next_offset));
        next.leader_epoch = next.leader_epoch.max(epoch);
        self.write_manifest(part, next).await?;
        for file in &dropped {
            let object = part.folder.clone().join(file.name.as_str());
            self.forget_file(&object);
            match self.store.store.delete(&object).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                // Unlisted now: the next leader's cleanup or a later pass removes it.
                Err(error) => tracing::warn!(object = %object, %error, "could not delete an expired remote file"),
            }
        }
        ::metrics::counter!(crate::metrics::TIER_DELETED_FILES, "topic" => part.tp.topic.clone())
            .increment(dropped.len() as u64);
        tracing::info!(partition = %part.tp, files = dropped.len(), log_start = part.manifest().log_start,
            "remote retention deleted files");
        Ok(())
    }

    fn forget_file(&self, object: &Path) {
        let key = object.to_string();
        self.cache.forget_file(&key);
        self.footers.lock().expect("footers lock").remove(&key);
    }

    /// Moves the partition's log start forward (DeleteRecords) in remote storage too;
    /// whole files below it go at the next pass. Returns the remote start afterwards.
    ///
    /// # Errors
    /// The manifest could not be written.
    pub async fn advance_log_start(&self, tp: &TopicPartition, offset: i64) -> Result<Option<i64>, TierError> {
        let Some(part) = self.loaded(tp) else { return Ok(None) };
        let _work = part.work.lock().await;
        let manifest = part.manifest();
        if manifest.files.is_empty() || offset <= manifest.log_start {
            return Ok(manifest.start());
        }
        let mut next = (*manifest).clone();
        next.log_start = offset;
        next.leader_epoch = next.leader_epoch.max(part.epoch.load(Ordering::Acquire));
        self.write_manifest(&part, next).await?;
        Ok(part.manifest().start())
    }

    /// The partition's remote offsets `[start, end)`, if it has remote data.
    pub fn remote_range(&self, tp: &TopicPartition) -> Option<(i64, i64)> {
        let manifest = self.loaded(tp)?.manifest();
        Some((manifest.start()?, manifest.end()?))
    }

    /// The partition's true log start: the remote start when remote data reaches below
    /// the local start, else the local one.
    pub fn log_start(&self, tp: &TopicPartition, local_start: i64) -> i64 {
        match self.remote_range(tp) {
            Some((start, _)) => start.min(local_start),
            None => local_start,
        }
    }

    /// The partition's manifest as last loaded or written.
    /// The aborted transactions in remote history that a `read_committed` reader of
    /// `from..upto` must know of (their marker at or past `from`, their start before `upto`).
    pub fn aborted_transactions(&self, tp: &TopicPartition, from: i64, upto: i64) -> Vec<AbortedTxn> {
        let Some(manifest) = self.manifest(tp) else { return Vec::new() };
        manifest
            .files
            .iter()
            .filter(|f| f.next_offset > from)
            .flat_map(|f| f.aborted_transactions.iter())
            .filter(|a| a.last_offset >= from && a.first_offset < upto)
            .copied()
            .collect()
    }

    pub fn manifest(&self, tp: &TopicPartition) -> Option<Arc<Manifest>> {
        Some(self.loaded(tp)?.manifest())
    }

    /// The object path of one of a partition's files.
    pub fn file_path(&self, tp: &TopicPartition, file: &RemoteFile) -> Option<Path> {
        Some(self.loaded(tp)?.folder.clone().join(file.name.as_str()))
    }

    /// Deletes remote files a previous leader uploaded but never listed (a crash between
    /// upload and manifest, or between manifest and delete).
    async fn remove_unlisted_files(&self, part: &PartitionTier) -> Result<(), TierError> {
        let manifest = part.manifest();
        let listed: std::collections::HashSet<&str> = manifest.files.iter().map(|f| f.name.as_str()).collect();
        let objects: Vec<_> = self.store.store.list(Some(&part.folder)).try_collect().await?;
        for object in objects {
            let name = object.location.filename().unwrap_or_default().to_string();
            if name.ends_with(".parquet") && !listed.contains(name.as_str()) {
                tracing::info!(object = %object.location, "removing an unlisted remote file");
                self.store.store.delete(&object.location).await?;
            }
        }
        Ok(())
    }

    /// Deletes the remote data of topics that no longer exist (or were recreated with a
    /// new id) while this broker was down.
    async fn remove_deleted_topics(&self) -> Result<(), TierError> {
        let topics_folder = self.topics_folder();
        let listing = self.store.store.list_with_delimiter(Some(&topics_folder)).await?;
        for topic_prefix in listing.common_prefixes {
            let Some(topic) = topic_prefix.filename().map(str::to_string) else { continue };
            let ids = self.store.store.list_with_delimiter(Some(&topic_prefix)).await?;
            let current = self.logs.topic(&topic).map(|t| t.topic_id.to_string());
            for id_prefix in ids.common_prefixes {
                if id_prefix.filename() != current.as_deref() {
                    tracing::info!(prefix = %id_prefix, "removing remote data of a deleted topic");
                    self.delete_prefix(&id_prefix).await?;
                }
            }
        }
        Ok(())
    }

    async fn delete_prefix(&self, prefix: &Path) -> Result<(), TierError> {
        let locations = self.store.store.list(Some(prefix)).map_ok(|meta| meta.location).boxed();
        let mut deleted = self.store.store.delete_stream(locations);
        while let Some(result) = deleted.next().await {
            match result {
                Ok(path) => self.forget_file(&path),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }
}

/// An error with its causes, for one log line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
