//! State stores: what a task keeps between records, and how it survives.
//!
//! ```text
//!  operator ──put──> Store ──> Backing (memory: BTreeMap | persistent: redb, written at commit)
//!                      └──> dirty keys ──drained at the end of each batch──> changelog topic
//! ```
//!
//! Every store is an ordered map of bytes, owned by one task. Each write is also noted
//! as dirty; the task drains the dirty set into the store's compacted changelog topic
//! (`<application.id>-<store>-changelog`, the task's partition), so the changelog gets the
//! last value of a key per batch rather than every update (Kafka Streams' record cache
//! does the same). A task that moves, or an instance that restarts, rebuilds the store by
//! reading its changelog: from the beginning for an in-memory store, from the store's
//! checkpoint (the changelog offset its last commit reflects) for a persistent one.
//!
//! Window and session stores are key layouts over the same map ([`keys`]).

pub(crate) mod keys;
mod memory;
mod persistent;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::StreamsError;
use crate::runtime::OutRecord;

pub(crate) use memory::MemoryBacking;
pub(crate) use persistent::PersistentBacking;

/// Makes a new value from the current one, for [`Backing::update`].
pub(crate) type UpdateFn<'a> = dyn FnMut(Option<&Bytes>) -> Result<Option<Bytes>, StreamsError> + 'a;

/// Where a store's entries live.
pub(crate) trait Backing {
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StreamsError>;
    /// Entries with `from <= key < to` (`to: None`: to the end), in key order.
    fn range(&self, from: &[u8], to: Option<&[u8]>) -> Result<Vec<(Bytes, Bytes)>, StreamsError>;
    fn put(&mut self, key: Bytes, value: Option<Bytes>);
    /// Replaces `key`'s value with what `f` makes of the current one (`None` deletes),
    /// in one lookup where the backing allows; returns the new value.
    fn update(&mut self, key: &[u8], f: &mut UpdateFn<'_>) -> Result<(), StreamsError> {
        let new = f(self.get(key)?.as_ref())?;
        self.put(Bytes::copy_from_slice(key), new);
        Ok(())
    }
    /// Makes the writes so far durable, with the changelog offset they reach (the next
    /// offset to restore from). A no-op in memory.
    fn commit(&mut self, changelog_next: Option<i64>) -> Result<(), StreamsError>;
    /// The changelog offset to restore from; `None`: from the beginning.
    fn checkpoint(&self) -> Option<i64>;
    /// Drops every entry (a checkpoint that the changelog no longer reaches).
    fn clear(&mut self) -> Result<(), StreamsError>;
}

/// How a store keeps its entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoreKind {
    /// In memory; restored from the changelog's beginning when its task starts.
    #[default]
    InMemory,
    /// On local disk (redb) under the state directory; restored from its checkpoint.
    Persistent,
}

/// A store's declaration in a topology.
#[derive(Debug, Clone)]
pub(crate) struct StoreSpec {
    pub(crate) name: String,
    pub(crate) kind: StoreKind,
    /// Whether writes go to a changelog topic (a store without one is lost with its task).
    pub(crate) logged: bool,
}

impl StoreSpec {
    pub(crate) fn changelog_suffix(&self) -> String {
        format!("{}-changelog", self.name)
    }
}

/// One task's instance of a store.
pub(crate) struct Store {
    pub(crate) name: String,
    backing: Box<dyn Backing>,
    /// Changelog topic (resolved) and partition.
    pub(crate) changelog: Option<(Arc<str>, i32)>,
    /// Writes not yet sent to the changelog: the last value and its record's timestamp.
    /// Keys written since the last drain, with the latest write's record time; their
    /// values are read back from the backing when drained.
    dirty: HashMap<Bytes, i64, BuildHasherDefault<Fx>>,
}

/// The rustc hasher's mix (FxHash), eight bytes at a time: store keys are short and
/// not adversarial (they are the job's own), and SipHash costs a good share of a
/// windowed count's time.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Fx(u64);

impl Hasher for Fx {
    /// The multiply leaves the low bits (which pick the bucket) poor when keys differ
    /// only early on; a final avalanche (murmur3's) spreads every input bit over them.
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let mut tail = [0u8; 8];
        tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.add(u64::from_le_bytes(tail) ^ bytes.len() as u64);
    }
}

impl Fx {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("name", &self.name).field("changelog", &self.changelog).finish()
    }
}

impl Store {
    /// Opens a task's store: in memory, or under `state_dir` for a persistent one.
    pub(crate) fn open(
        spec: &StoreSpec,
        changelog: Option<(Arc<str>, i32)>,
        state_dir: Option<&Path>,
    ) -> Result<Self, StreamsError> {
        let backing: Box<dyn Backing> = match (spec.kind, state_dir) {
            (StoreKind::Persistent, Some(dir)) => Box::new(PersistentBacking::open(&spec.name, dir)?),
            (StoreKind::Persistent, None) => {
                return Err(StreamsError::Config(format!(
                    "store {} is persistent but there is no state.dir",
                    spec.name
                )));
            }
            (StoreKind::InMemory, _) => Box::new(MemoryBacking::default()),
        };
        Ok(Self {
            name: spec.name.clone(),
            backing,
            changelog: changelog.filter(|_| spec.logged),
            dirty: HashMap::default(),
        })
    }

    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StreamsError> {
        self.backing.get(key)
    }

    pub(crate) fn range(&self, from: &[u8], to: Option<&[u8]>) -> Result<Vec<(Bytes, Bytes)>, StreamsError> {
        self.backing.range(from, to)
    }

    /// Writes (or with `None` deletes) an entry; `timestamp` is the record time the
    /// changelog record gets.
    pub(crate) fn put(&mut self, key: Bytes, value: Option<Bytes>, timestamp: i64) {
        if self.changelog.is_some() {
            self.dirty.insert(key.clone(), timestamp);
        }
        self.backing.put(key, value);
    }

    /// Read-modify-write of one entry (see [`Backing::update`]), logged like a put.
    /// A serde failure inside `f` is reported with this store's name.
    /// The key is borrowed: an entry updated again in the same batch costs no allocation.
    pub(crate) fn update(&mut self, key: &[u8], timestamp: i64, f: &mut UpdateFn<'_>) -> Result<(), StreamsError> {
        let named = |e| match e {
            StreamsError::StoreSerde { source, .. } => StreamsError::StoreSerde { store: self.name.clone(), source },
            other => other,
        };
        self.backing.update(key, f).map_err(named)?;
        if self.changelog.is_some() {
            match self.dirty.get_mut(key) {
                Some(t) => *t = timestamp,
                None => {
                    self.dirty.insert(Bytes::copy_from_slice(key), timestamp);
                }
            }
        }
        Ok(())
    }

    /// Moves the dirty entries to `out` as changelog records, each with its current
    /// value (`None`: deleted, a tombstone).
    ///
    /// # Errors
    /// The backing cannot be read.
    pub(crate) fn drain_changelog(&mut self, out: &mut Vec<OutRecord>) -> Result<(), StreamsError> {
        let Some((topic, partition)) = &self.changelog else { return Ok(()) };
        for (key, timestamp) in self.dirty.drain() {
            let value = self.backing.get(&key)?;
            out.push(OutRecord {
                topic: Arc::clone(topic),
                partition: Some(*partition),
                key: Some(key),
                value,
                timestamp,
                headers: Vec::new(),
            });
        }
        Ok(())
    }

    /// Applies a changelog record while restoring: not logged again.
    pub(crate) fn restore(&mut self, key: Bytes, value: Option<Bytes>) {
        self.backing.put(key, value);
    }

    pub(crate) fn commit(&mut self, changelog_next: Option<i64>) -> Result<(), StreamsError> {
        self.backing.commit(changelog_next)
    }

    pub(crate) fn checkpoint(&self) -> Option<i64> {
        self.backing.checkpoint()
    }

    pub(crate) fn clear(&mut self) -> Result<(), StreamsError> {
        self.dirty.clear();
        self.backing.clear()
    }
}
