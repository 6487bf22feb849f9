//! A bounded cache of rebuilt row groups, least recently used out first, so consumers
//! reading remote history in order decode each row group once.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use super::convert::RebuiltBatches;

/// Which row group: the file's object path and the row group's index.
pub type RowGroupKey = (String, usize);

#[derive(Debug, Default)]
struct Inner {
    used: usize,
    tick: u64,
    entries: HashMap<RowGroupKey, (u64, Arc<RebuiltBatches>)>,
    /// Last use -> key, oldest first.
    order: BTreeMap<u64, RowGroupKey>,
}

/// Rebuilt batches by row group, at most `budget` bytes of them.
#[derive(Debug)]
pub struct RowGroupCache {
    budget: usize,
    inner: Mutex<Inner>,
}

impl RowGroupCache {
    pub fn new(budget: usize) -> Self {
        Self { budget, inner: Mutex::new(Inner::default()) }
    }

    pub fn get(&self, key: &RowGroupKey) -> Option<Arc<RebuiltBatches>> {
        let mut inner = self.inner.lock().expect("cache lock");
        inner.tick += 1;
        let tick = inner.tick;
        let (last, value) = inner.entries.get_mut(key)?;
        let old = std::mem::replace(last, tick);
        let value = Arc::clone(value);
        inner.order.remove(&old);
        inner.order.insert(tick, key.clone());
        Some(value)
    }

    /// Keeps `value` unless it alone is larger than the budget.
    pub fn insert(&self, key: RowGroupKey, value: Arc<RebuiltBatches>) {
        let size = value.bytes.len();
        if size > self.budget {
            return;
        }
        let mut inner = self.inner.lock().expect("cache lock");
        if let Some((last, old)) = inner.entries.remove(&key) {
            inner.order.remove(&last);
            inner.used -= old.bytes.len();
        }
        while inner.used + size > self.budget {
            let Some((_, oldest)) = inner.order.pop_first() else { break };
            if let Some((_, evicted)) = inner.entries.remove(&oldest) {
                inner.used -= evicted.bytes.len();
            }
        }
        inner.tick += 1;
        let tick = inner.tick;
        inner.used += size;
        inner.order.insert(tick, key.clone());
        inner.entries.insert(key, (tick, value));
    }

    /// Drops every row group of one file (deleted by retention).
    pub fn forget_file(&self, path: &str) {
        let mut inner = self.inner.lock().expect("cache lock");
        let keys: Vec<RowGroupKey> = inner.entries.keys().filter(|(p, _)| p == path).cloned().collect();
        for key in keys {
            if let Some((last, old)) = inner.entries.remove(&key) {
                inner.order.remove(&last);
                inner.used -= old.bytes.len();
            }
        }
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.inner.lock().expect("cache lock").used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(size: usize) -> Arc<RebuiltBatches> {
        Arc::new(RebuiltBatches { bytes: bytes::Bytes::from(vec![0; size]), batches: Vec::new() })
    }

    #[test]
    fn the_least_recently_used_goes_first_and_the_budget_holds() {
        let cache = RowGroupCache::new(100);
        let key = |i: usize| ("f".to_string(), i);
        cache.insert(key(0), entry(40));
        cache.insert(key(1), entry(40));
        assert!(cache.get(&key(0)).is_some());
        cache.insert(key(2), entry(40));
        assert!(cache.get(&key(1)).is_none(), "the least recently used was evicted");
        assert!(cache.get(&key(0)).is_some() && cache.get(&key(2)).is_some());
        assert_eq!(cache.used(), 80);
        cache.insert(key(3), entry(101));
        assert!(cache.get(&key(3)).is_none(), "larger than the whole budget");
        cache.forget_file("f");
        assert_eq!(cache.used(), 0);
    }
}
