//! The controller quorum's durable state: its Raft log, its vote, and the latest snapshot of
//! the metadata image, in one redb database (`controller.redb` in the data dir).
//!
//! openraft's contract, which this upholds: an append is readable when `append` returns and
//! durable when its callback runs; a vote is durable when `save_vote` returns; writes are
//! applied in the order they were issued. redb commits with fsync by default, and every
//! call here commits before it returns, on a blocking thread.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogId, LogState, RaftLogReader, StorageError, StorageIOError, Vote};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Entry, NodeId, TypeConfig};

/// Log entries by index, each as JSON.
const LOGS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("raft_log");
/// Single values (vote, committed, purged, snapshot), each as JSON.
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("raft_meta");

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "last_purged";
pub(super) const SNAPSHOT_META: &str = "snapshot_meta";
pub(super) const SNAPSHOT_DATA: &str = "snapshot_data";

pub(super) type StoreResult<T> = Result<T, StorageError<NodeId>>;

/// The redb database behind both the log store and the state machine's snapshots.
#[derive(Debug, Clone)]
pub struct ControllerDb {
    db: Arc<Database>,
}

impl ControllerDb {
    /// Opens (or creates) the database and its tables.
    ///
    /// # Errors
    /// The database cannot be opened, or is not a redb file.
    pub fn open(path: &Path) -> Result<Self, redb::Error> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(LOGS)?;
        txn.open_table(META)?;
        txn.commit()?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Runs `f` on a blocking thread: redb's calls block, and a commit waits for an fsync.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || f(&db)).await.map_err(|e| StorageIOError::write(AnyError::new(&e)))?
    }

    pub(super) async fn get_meta<T: DeserializeOwned + Send + 'static>(
        &self,
        key: &'static str,
    ) -> StoreResult<Option<T>> {
        self.run(move |db| {
            let txn = db.begin_read().map_err(read_err)?;
            let table = txn.open_table(META).map_err(read_err)?;
            let Some(value) = table.get(key).map_err(read_err)? else { return Ok(None) };
            serde_json::from_slice(value.value()).map(Some).map_err(read_err)
        })
        .await
    }

    /// Writes several single values in one durable commit.
    pub(super) async fn put_meta(&self, values: Vec<(&'static str, Vec<u8>)>) -> StoreResult<()> {
        self.run(move |db| {
            let txn = db.begin_write().map_err(write_err)?;
            {
                let mut table = txn.open_table(META).map_err(write_err)?;
                for (key, value) in &values {
                    table.insert(*key, value.as_slice()).map_err(write_err)?;
                }
            }
            txn.commit().map_err(write_err)
        })
        .await
    }
}

impl ControllerDb {
    /// Stores a snapshot unless the one stored is at least as recent: openraft builds
    /// snapshots in a task of their own, so an older build can finish after a newer
    /// snapshot was installed, and must not replace it. Returns whether it was stored.
    pub(super) async fn put_snapshot(
        &self,
        last_applied: Option<u64>,
        meta: Vec<u8>,
        data: Vec<u8>,
    ) -> StoreResult<bool> {
        self.run(move |db| {
            let txn = db.begin_write().map_err(write_err)?;
            let stored = {
                let mut table = txn.open_table(META).map_err(write_err)?;
                let current: Option<openraft::SnapshotMeta<NodeId, super::Node>> =
                    match table.get(SNAPSHOT_META).map_err(write_err)? {
                        Some(value) => Some(serde_json::from_slice(value.value()).map_err(read_err)?),
                        None => None,
                    };
                let newer = current.and_then(|m| m.last_log_id).map(|id| id.index);
                if newer.is_some() && newer >= last_applied {
                    false
                } else {
                    table.insert(SNAPSHOT_META, meta.as_slice()).map_err(write_err)?;
                    table.insert(SNAPSHOT_DATA, data.as_slice()).map_err(write_err)?;
                    true
                }
            };
            txn.commit().map_err(write_err)?;
            Ok(stored)
        })
        .await
    }
}

pub(super) fn to_json<T: Serialize>(value: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(value).map_err(write_err)
}

fn read_err<E: std::error::Error + 'static>(e: E) -> StorageError<NodeId> {
    StorageIOError::read(AnyError::new(&e)).into()
}

fn write_err<E: std::error::Error + 'static>(e: E) -> StorageError<NodeId> {
    StorageIOError::write(AnyError::new(&e)).into()
}

/// openraft's log store over [`ControllerDb`].
#[derive(Debug, Clone)]
pub struct LogStore {
    db: ControllerDb,
}

impl LogStore {
    pub fn new(db: ControllerDb) -> Self {
        Self { db }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> StoreResult<Vec<Entry>> {
        let bounds: (Bound<u64>, Bound<u64>) = (range.start_bound().cloned(), range.end_bound().cloned());
        self.db
            .run(move |db| {
                let txn = db.begin_read().map_err(read_err)?;
                let table = txn.open_table(LOGS).map_err(read_err)?;
                let mut entries = Vec::new();
                for row in table.range(bounds).map_err(read_err)? {
                    let (_, value) = row.map_err(read_err)?;
                    entries.push(serde_json::from_slice(value.value()).map_err(read_err)?);
                }
                Ok(entries)
            })
            .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StoreResult<LogState<TypeConfig>> {
        let purged: Option<LogId<NodeId>> = self.db.get_meta(PURGED).await?;
        let last = self
            .db
            .run(|db| {
                let txn = db.begin_read().map_err(read_err)?;
                let table = txn.open_table(LOGS).map_err(read_err)?;
                let Some((_, value)) = table.last().map_err(read_err)? else { return Ok(None) };
                let entry: Entry = serde_json::from_slice(value.value()).map_err(read_err)?;
                Ok(Some(entry.log_id))
            })
            .await?;
        Ok(LogState { last_purged_log_id: purged, last_log_id: last.or(purged) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StoreResult<()> {
        self.db.put_meta(vec![(VOTE, to_json(vote)?)]).await
    }

    async fn read_vote(&mut self) -> StoreResult<Option<Vote<NodeId>>> {
        self.db.get_meta(VOTE).await
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StoreResult<()> {
        self.db.put_meta(vec![(COMMITTED, to_json(&committed)?)]).await
    }

    async fn read_committed(&mut self) -> StoreResult<Option<LogId<NodeId>>> {
        Ok(self.db.get_meta::<Option<LogId<NodeId>>>(COMMITTED).await?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StoreResult<()>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let rows = entries
            .into_iter()
            .map(|entry| Ok((entry.log_id.index, to_json(&entry)?)))
            .collect::<StoreResult<Vec<(u64, Vec<u8>)>>>()?;
        let written = self
            .db
            .run(move |db| {
                let txn = db.begin_write().map_err(write_err)?;
                {
                    let mut table = txn.open_table(LOGS).map_err(write_err)?;
                    for (index, value) in &rows {
                        table.insert(*index, value.as_slice()).map_err(write_err)?;
                    }
                }
                txn.commit().map_err(write_err)
            })
            .await;
        // The commit above is durable (redb's default), so the entries are flushed now.
        match &written {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        written
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        self.remove_logs((Bound::Included(log_id.index), Bound::Unbounded), None).await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        self.remove_logs((Bound::Unbounded, Bound::Included(log_id.index)), Some(log_id)).await
    }
}

impl LogStore {
    /// Removes a range of entries, recording the last purged id in the same commit.
    async fn remove_logs(&self, range: (Bound<u64>, Bound<u64>), purged: Option<LogId<NodeId>>) -> StoreResult<()> {
        let purged = purged.map(|id| to_json(&id)).transpose()?;
        self.db
            .run(move |db| {
                let txn = db.begin_write().map_err(write_err)?;
                {
                    let mut logs = txn.open_table(LOGS).map_err(write_err)?;
                    logs.retain_in(range, |_, _| false).map_err(write_err)?;
                    if let Some(purged) = &purged {
                        txn.open_table(META)
                            .map_err(write_err)?
                            .insert(PURGED, purged.as_slice())
                            .map_err(write_err)?;
                    }
                }
                txn.commit().map_err(write_err)
            })
            .await
    }
}
