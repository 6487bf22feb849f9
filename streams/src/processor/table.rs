//! Tables: a topic read as a table, and the operators on table changes.
//!
//! A table passes [`Change`]s. Operators that need a table's current value for a key
//! (joins) use its value getter: the materialized store of the table it derives from,
//! with the derivation (filters, value mappings) applied on read, so a derived table
//! needs no store of its own.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

use super::stateless::{MapValuesFn, Predicate};
use super::{Context, Downstream, Instantiation, Node, de_store, ser};
use crate::error::StreamsError;
use crate::record::{Change, Record};
use crate::serde::Serde;
use crate::state::Store;

/// The current value of a table row.
pub(crate) type Getter<K, V> = Rc<dyn Fn(&K) -> Result<Option<V>, StreamsError>>;
/// Makes a table's getter inside a task.
pub(crate) type GetterFactory<K, V> = Arc<dyn Fn(&Instantiation<'_>) -> Getter<K, V> + Send + Sync>;

/// A getter reading a materialized store.
pub(crate) fn store_getter<K: 'static, V: 'static>(
    store: String,
    key_serde: Arc<dyn Serde<K>>,
    value_serde: Arc<dyn Serde<V>>,
) -> GetterFactory<K, V> {
    Arc::new(move |inst| {
        let store = inst.store(&store);
        let key_serde = Arc::clone(&key_serde);
        let value_serde = Arc::clone(&value_serde);
        Rc::new(move |key: &K| {
            let mut buf = Vec::new();
            if !key_serde.serialize(key, &mut buf) {
                return Ok(None);
            }
            let store = store.borrow();
            store.get(&buf)?.map(|b| de_store(&*value_serde, &store.name, &b)).transpose()
        })
    })
}

/// Materializes a topic as a table: a null value deletes the row.
pub(crate) struct TableSourceNode<K, V> {
    pub(crate) store: Rc<RefCell<Store>>,
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) value_serde: Arc<dyn Serde<V>>,
    pub(crate) down: Downstream<K, Change<V>>,
}

impl<K: Clone, V: Clone> Node<K, Option<V>> for TableSourceNode<K, V> {
    fn process(&mut self, cx: &mut Context, record: Record<K, Option<V>>) {
        let Some(key_bytes) = ser(&*self.key_serde, &record.key) else { return };
        let mut store = self.store.borrow_mut();
        let old = match store
            .get(&key_bytes)
            .and_then(|b| b.map(|b| de_store(&*self.value_serde, &store.name, &b)).transpose())
        {
            Ok(old) => old,
            Err(e) => return cx.fail(e),
        };
        let value_bytes: Option<Bytes> = record.value.as_ref().and_then(|v| ser(&*self.value_serde, v));
        store.put(key_bytes, value_bytes, record.timestamp);
        drop(store);
        if old.is_none() && record.value.is_none() {
            return; // deleting a row that is not there changes nothing
        }
        let change = Change { new: record.value, old };
        self.down.forward(
            cx,
            Record { key: record.key, value: change, timestamp: record.timestamp, headers: record.headers },
        );
    }
}

pub(crate) struct TableFilterNode<K, V> {
    pub(crate) predicate: Predicate<K, V>,
    pub(crate) negate: bool,
    pub(crate) down: Downstream<K, Change<V>>,
}

impl<K: Clone, V: Clone> Node<K, Change<V>> for TableFilterNode<K, V> {
    fn process(&mut self, cx: &mut Context, record: Record<K, Change<V>>) {
        let keep = |v: Option<V>| v.filter(|v| (self.predicate)(&record.key, v) != self.negate);
        let change = Change { new: keep(record.value.new.clone()), old: keep(record.value.old.clone()) };
        if change.new.is_none() && change.old.is_none() {
            return;
        }
        self.down.forward(cx, record.with_value(change));
    }
}

pub(crate) struct TableMapValuesNode<K, V, V2> {
    pub(crate) f: MapValuesFn<K, V, V2>,
    pub(crate) down: Downstream<K, Change<V2>>,
}

impl<K: Clone, V, V2: Clone> Node<K, Change<V>> for TableMapValuesNode<K, V, V2> {
    fn process(&mut self, cx: &mut Context, record: Record<K, Change<V>>) {
        let key = &record.key;
        let change =
            Change { new: record.value.new.map(|v| (self.f)(key, v)), old: record.value.old.map(|v| (self.f)(key, v)) };
        let Record { key, timestamp, headers, .. } = record;
        self.down.forward(cx, Record { key, value: change, timestamp, headers });
    }
}

/// A table's changes as a stream of its new values; deletions are not passed on.
pub(crate) struct ToStreamNode<K, V> {
    pub(crate) down: Downstream<K, V>,
}

impl<K: Clone, V: Clone> Node<K, Change<V>> for ToStreamNode<K, V> {
    fn process(&mut self, cx: &mut Context, record: Record<K, Change<V>>) {
        let Record { key, value, timestamp, headers } = record;
        if let Some(new) = value.new {
            self.down.forward(cx, Record { key, value: new, timestamp, headers });
        }
    }
}

/// A table's changes as a changelog: a deletion becomes a null value (a tombstone).
pub(crate) struct ToChangelogNode<K, V> {
    pub(crate) down: Downstream<K, Option<V>>,
}

impl<K: Clone, V: Clone> Node<K, Change<V>> for ToChangelogNode<K, V> {
    fn process(&mut self, cx: &mut Context, record: Record<K, Change<V>>) {
        let Record { key, value, timestamp, headers } = record;
        self.down.forward(cx, Record { key, value: value.new, timestamp, headers });
    }
}

impl<K, V> Record<K, V> {
    pub(crate) fn with_value<V2>(self, value: V2) -> Record<K, V2> {
        Record { key: self.key, value, timestamp: self.timestamp, headers: self.headers }
    }
}
