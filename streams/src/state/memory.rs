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

    fn update(&mut self, key: &[u8], f: &mut super::UpdateFn<'_>) -> Result<(), StreamsError> {
        // Looked up by the borrowed key: an existing entry is updated in place.
        match self.entries.get_mut(key) {
            Some(current) => match f(Some(current))? {
                Some(value) => *current = value,
                None => {
                    self.entries.remove(key);
                }
            },
            None => {
                if let Some(value) = f(None)? {
                    self.entries.insert(Bytes::copy_from_slice(key), value);
                }
            }
        }
        Ok(())
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
