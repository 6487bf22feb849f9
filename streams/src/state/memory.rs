//! An in-memory store: a `BTreeMap`, ordered for window and session range scans.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;

use super::Backing;
use crate::error::StreamsError;

#[derive(Debug, Default)]
pub(crate) struct MemoryBacking {
    entries: BTreeMap<Bytes, Bytes>,
}

impl Backing for MemoryBacking {
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StreamsError> {
        Ok(self.entries.get(key).cloned())
    }

    fn range(&self, from: &[u8], to: Option<&[u8]>) -> Result<Vec<(Bytes, Bytes)>, StreamsError> {
        let upper = to.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(self.entries.range::<[u8], _>((Bound::Included(from), upper)).map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    fn put(&mut self, key: Bytes, value: Option<Bytes>) {
        match value {
            Some(value) => {
                self.entries.insert(key, value);
            }
            None => {
                self.entries.remove(&key);
            }
        }
    }

    fn update(&mut self, key: Bytes, f: &mut super::UpdateFn<'_>) -> Result<Option<Bytes>, StreamsError> {
        use std::collections::btree_map::Entry;
        match self.entries.entry(key) {
            Entry::Occupied(mut entry) => {
                let new = f(Some(entry.get()))?;
                match &new {
                    Some(value) => *entry.get_mut() = value.clone(),
                    None => {
                        entry.remove();
                    }
                }
                Ok(new)
            }
            Entry::Vacant(entry) => {
                let new = f(None)?;
                if let Some(value) = &new {
                    entry.insert(value.clone());
                }
                Ok(new)
            }
        }
    }

    fn commit(&mut self, _: Option<i64>) -> Result<(), StreamsError> {
        Ok(())
    }

    fn checkpoint(&self) -> Option<i64> {
        None
    }

    fn clear(&mut self) -> Result<(), StreamsError> {
        self.entries.clear();
        Ok(())
    }
}
