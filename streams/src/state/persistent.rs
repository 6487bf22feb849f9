//! A persistent store: redb, one database file per store per task under the state
//! directory.
//!
//! Why redb: it is pure Rust, already in the workspace (the controller quorum keeps its
//! log in it), ordered (range scans for window and session stores), and its transactions
//! make a commit atomic: the entries and the changelog checkpoint they reflect are written
//! together, so a store reopened after `kill -9` is exactly the state of its last commit
//! and restoring resumes at that checkpoint. (fjall, an LSM tree, would write faster but
//! needs its own journal and a second dependency for the same guarantee.)
//!
//! Writes between commits are kept in an overlay in memory and written in one write
//! transaction at commit, so the per-record cost is a map insert, not a B-tree write.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;

use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::Backing;
use crate::error::StreamsError;

const ENTRIES: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("entries");
const META: TableDefinition<'_, &str, i64> = TableDefinition::new("meta");
const CHECKPOINT: &str = "changelog_next";

pub(crate) struct PersistentBacking {
    name: String,
    db: Database,
    /// Writes since the last commit; `None` deletes.
    overlay: BTreeMap<Bytes, Option<Bytes>>,
    checkpoint: Option<i64>,
}

impl std::fmt::Debug for PersistentBacking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistentBacking").field("name", &self.name).finish()
    }
}

fn store_err(name: &str) -> impl Fn(redb::Error) -> StreamsError + '_ {
    move |e| StreamsError::Store { store: name.to_string(), message: e.to_string() }
}

impl PersistentBacking {
    /// Opens (or creates) `<dir>/<name>.redb`.
    pub(crate) fn open(name: &str, dir: &Path) -> Result<Self, StreamsError> {
        std::fs::create_dir_all(dir)
            .map_err(|source| StreamsError::Io { context: format!("creating {}", dir.display()), source })?;
        let err = store_err(name);
        let db = Database::create(dir.join(format!("{name}.redb"))).map_err(|e| err(e.into()))?;
        let txn = db.begin_write().map_err(|e| err(e.into()))?;
        txn.open_table(ENTRIES).map_err(|e| err(e.into()))?;
        let checkpoint = {
            let meta = txn.open_table(META).map_err(|e| err(e.into()))?;
            meta.get(CHECKPOINT).map_err(|e| err(e.into()))?.map(|v| v.value())
        };
        txn.commit().map_err(|e| err(e.into()))?;
        Ok(Self { name: name.to_string(), db, overlay: BTreeMap::new(), checkpoint })
    }
}

impl Backing for PersistentBacking {
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StreamsError> {
        if let Some(value) = self.overlay.get(key) {
            return Ok(value.clone());
        }
        let err = store_err(&self.name);
        let txn = self.db.begin_read().map_err(|e| err(e.into()))?;
        let table = txn.open_table(ENTRIES).map_err(|e| err(e.into()))?;
        Ok(table.get(key).map_err(|e| err(e.into()))?.map(|v| Bytes::copy_from_slice(v.value())))
    }

    fn range(&self, from: &[u8], to: Option<&[u8]>) -> Result<Vec<(Bytes, Bytes)>, StreamsError> {
        let err = store_err(&self.name);
        let mut merged: BTreeMap<Bytes, Bytes> = BTreeMap::new();
        {
            let txn = self.db.begin_read().map_err(|e| err(e.into()))?;
            let table = txn.open_table(ENTRIES).map_err(|e| err(e.into()))?;
            let upper = to.map_or(Bound::Unbounded, Bound::Excluded);
            for row in table.range::<&[u8]>((Bound::Included(from), upper)).map_err(|e| err(e.into()))? {
                let (k, v) = row.map_err(|e| err(e.into()))?;
                merged.insert(Bytes::copy_from_slice(k.value()), Bytes::copy_from_slice(v.value()));
            }
        }
        let upper = to.map_or(Bound::Unbounded, Bound::Excluded);
        for (k, v) in self.overlay.range::<[u8], _>((Bound::Included(from), upper)) {
            match v {
                Some(v) => merged.insert(k.clone(), v.clone()),
                None => merged.remove(k),
            };
        }
        Ok(merged.into_iter().collect())
    }

    fn put(&mut self, key: Bytes, value: Option<Bytes>) {
        self.overlay.insert(key, value);
    }

    fn commit(&mut self, changelog_next: Option<i64>) -> Result<(), StreamsError> {
        if self.overlay.is_empty() && (changelog_next.is_none() || changelog_next == self.checkpoint) {
            return Ok(());
        }
        let err = store_err(&self.name);
        let txn = self.db.begin_write().map_err(|e| err(e.into()))?;
        {
            let mut table = txn.open_table(ENTRIES).map_err(|e| err(e.into()))?;
            for (k, v) in &self.overlay {
                match v {
                    Some(v) => {
                        table.insert(&k[..], &v[..]).map_err(|e| err(e.into()))?;
                    }
                    None => {
                        table.remove(&k[..]).map_err(|e| err(e.into()))?;
                    }
                }
            }
            if let Some(next) = changelog_next {
                let mut meta = txn.open_table(META).map_err(|e| err(e.into()))?;
                meta.insert(CHECKPOINT, next).map_err(|e| err(e.into()))?;
            }
        }
        txn.commit().map_err(|e| err(e.into()))?;
        self.overlay.clear();
        if changelog_next.is_some() {
            self.checkpoint = changelog_next;
        }
        Ok(())
    }

    fn checkpoint(&self) -> Option<i64> {
        self.checkpoint
    }

    fn clear(&mut self) -> Result<(), StreamsError> {
        let err = store_err(&self.name);
        let txn = self.db.begin_write().map_err(|e| err(e.into()))?;
        txn.delete_table(ENTRIES).map_err(|e| err(e.into()))?;
        txn.open_table(ENTRIES).map_err(|e| err(e.into()))?;
        txn.open_table(META).map_err(|e| err(e.into()))?.remove(CHECKPOINT).map_err(|e| err(e.into()))?;
        txn.commit().map_err(|e| err(e.into()))?;
        self.overlay.clear();
        self.checkpoint = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_are_durable_and_the_overlay_reads_through() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = PersistentBacking::open("s", dir.path()).unwrap();
        assert_eq!(store.checkpoint(), None);
        store.put(Bytes::from_static(b"a"), Some(Bytes::from_static(b"1")));
        store.put(Bytes::from_static(b"b"), Some(Bytes::from_static(b"2")));
        store.commit(Some(7)).unwrap();
        store.put(Bytes::from_static(b"a"), None);
        store.put(Bytes::from_static(b"c"), Some(Bytes::from_static(b"3")));
        assert_eq!(store.get(b"a").unwrap(), None);
        let keys: Vec<_> = store.range(b"", None).unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec![Bytes::from_static(b"b"), Bytes::from_static(b"c")]);
        drop(store);
        // The uncommitted overlay is gone; the commit and its checkpoint stayed.
        let store = PersistentBacking::open("s", dir.path()).unwrap();
        assert_eq!(store.checkpoint(), Some(7));
        assert_eq!(store.get(b"a").unwrap(), Some(Bytes::from_static(b"1")));
        assert_eq!(store.get(b"c").unwrap(), None);
    }
}
