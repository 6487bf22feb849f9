//! Joins: stream-table, table-table and windowed stream-stream.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

use super::table::Getter;
use super::{Context, Downstream, Node, Punctuate, ser};
use crate::dsl::JoinWindows;
use crate::error::StreamsError;
use crate::record::{Change, Record};
use crate::serde::Serde;
use crate::state::{Store, keys};

/// A stream-table join's result for a record and the table's row; `None` drops the record.
pub(crate) type StreamTableJoinFn<V, VT, VR> = Arc<dyn Fn(&V, Option<&VT>) -> Option<VR> + Send + Sync>;
/// A stream-stream join's result; either side may be absent in left and outer joins.
pub(crate) type StreamJoinFn<V, VO, VR> = Arc<dyn Fn(Option<&V>, Option<&VO>) -> VR + Send + Sync>;

/// Looks up each stream record's key in a table.
pub(crate) struct StreamTableJoinNode<K, V, VT, VR> {
    pub(crate) getter: Getter<K, VT>,
    /// `None` drops the record (an inner join without a row).
    pub(crate) joiner: StreamTableJoinFn<V, VT, VR>,
    pub(crate) down: Downstream<K, VR>,
}

impl<K: Clone, V, VT, VR: Clone> Node<K, V> for StreamTableJoinNode<K, V, VT, VR> {
    fn process(&mut self, cx: &mut Context, record: Record<K, V>) {
        let row = match (self.getter)(&record.key) {
            Ok(row) => row,
            Err(e) => return cx.fail(e),
        };
        if let Some(value) = (self.joiner)(&record.value, row.as_ref()) {
            self.down.forward(cx, record.with_value(value));
        }
    }
}

/// A table-table join's result for a pair of (possibly absent) rows; `None`: no row.
pub(crate) type TableJoinFn<V, VO, VR> = Arc<dyn Fn(Option<&V>, Option<&VO>) -> Option<VR> + Send + Sync>;

/// One side of a table-table join: a change here meets the other table's current row.
pub(crate) struct TableTableJoinNode<K, V, VO, VR> {
    pub(crate) other: Getter<K, VO>,
    pub(crate) joiner: TableJoinFn<V, VO, VR>,
    pub(crate) down: Downstream<K, Change<VR>>,
}

impl<K: Clone, V, VO, VR: Clone> Node<K, Change<V>> for TableTableJoinNode<K, V, VO, VR> {
    fn process(&mut self, cx: &mut Context, record: Record<K, Change<V>>) {
        let other = match (self.other)(&record.key) {
            Ok(other) => other,
            Err(e) => return cx.fail(e),
        };
        let new = (self.joiner)(record.value.new.as_ref(), other.as_ref());
        let old = (self.joiner)(record.value.old.as_ref(), other.as_ref());
        if new.is_none() && old.is_none() {
            return;
        }
        self.down.forward(cx, record.with_value(Change { new, old }));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamJoinSide {
    /// The stream `join_stream` was called on: the other side's records may be up to
    /// `before` earlier and `after` later.
    This,
    Other,
}

/// One side of a windowed stream-stream join.
///
/// Each side buffers its records in a window store (`keys::window_seq(key, time, offset)`)
/// and looks up the other side's buffer. For a left or outer join, a record that has met
/// nothing yet waits in a second store until either a match arrives (it leaves) or its
/// window closes (it is emitted with `None`): Kafka Streams' behaviour since 3.1, which
/// avoids emitting a `None` result that a later match would contradict.
pub(crate) struct StreamStreamJoinNode<K, V, VO, VR> {
    pub(crate) side: StreamJoinSide,
    pub(crate) windows: JoinWindows,
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) own_serde: Arc<dyn Serde<V>>,
    pub(crate) other_serde: Arc<dyn Serde<VO>>,
    pub(crate) own_store: Rc<RefCell<Store>>,
    pub(crate) other_store: Rc<RefCell<Store>>,
    /// This side's unmatched records (left / outer joins).
    pub(crate) own_pending: Option<Rc<RefCell<Store>>>,
    /// The other side's unmatched records, which a match here takes out.
    pub(crate) other_pending: Option<Rc<RefCell<Store>>>,
    pub(crate) joiner: StreamJoinFn<V, VO, VR>,
    pub(crate) down: Downstream<K, VR>,
    /// This side's buffered and pending records by time: (time, store key, pending).
    pub(crate) index: BTreeSet<(i64, Bytes, bool)>,
    /// The stream time last saved in this side's buffer.
    pub(crate) saved_time: i64,
}

impl<K, V, VO, VR> StreamStreamJoinNode<K, V, VO, VR> {
    /// How much later (than this side's record) the other side's may be, and earlier.
    fn reach(&self) -> (i64, i64) {
        match self.side {
            StreamJoinSide::This => (self.windows.after_ms, self.windows.before_ms),
            StreamJoinSide::Other => (self.windows.before_ms, self.windows.after_ms),
        }
    }
}

impl<K: Clone, V: Clone, VO, VR: Clone> Node<K, V> for StreamStreamJoinNode<K, V, VO, VR> {
    fn process(&mut self, cx: &mut Context, record: Record<K, V>) {
        let Some(key_bytes) = ser(&*self.key_serde, &record.key) else { return };
        let t = record.timestamp;
        let (later, earlier) = self.reach();
        if t.saturating_add(later).saturating_add(self.windows.grace_ms) < cx.stream_time {
            cx.counters.dropped_late += 1;
            return;
        }
        let own_key = keys::window_seq(&key_bytes, t, cx.next_seq());
        let value_bytes = Some(super::ser_tagged(&*self.own_serde, &record.value));
        self.own_store.borrow_mut().put(own_key.clone(), value_bytes.clone(), t);
        self.index.insert((t, own_key.clone(), false));
        let (lower, upper) = keys::window_range(&key_bytes, t.saturating_sub(earlier), t.saturating_add(later));
        let matches = {
            let other = self.other_store.borrow();
            let found = match other.range(&lower, Some(&upper)) {
                Ok(found) => found,
                Err(e) => return cx.fail(e),
            };
            let mut matches = Vec::with_capacity(found.len());
            for (store_key, value) in found {
                match super::de_tagged(&*self.other_serde, &other.name, &value) {
                    Ok(v) => matches.push((store_key, v)),
                    Err(e) => return cx.fail(e),
                }
            }
            matches
        };
        if matches.is_empty() {
            if let Some(pending) = &self.own_pending {
                pending.borrow_mut().put(own_key.clone(), value_bytes, t);
                self.index.insert((t, own_key, true));
            }
            return;
        }
        for (store_key, other_value) in matches {
            if let Some(pending) = &self.other_pending {
                let mut pending = pending.borrow_mut();
                if matches!(pending.get(&store_key), Ok(Some(_))) {
                    pending.put(store_key.clone(), None, t);
                }
            }
            let other_time = keys::split_window(&store_key).1;
            let joined = (self.joiner)(Some(&record.value), Some(&other_value));
            self.down.forward(
                cx,
                Record {
                    key: record.key.clone(),
                    value: joined,
                    timestamp: t.max(other_time),
                    headers: record.headers.clone(),
                },
            );
        }
    }
}

impl<K: Clone, V: Clone, VO, VR: Clone> Punctuate for StreamStreamJoinNode<K, V, VO, VR> {
    fn save_stream_time(&mut self, cx: &mut Context) {
        super::save_stream_time(&mut self.own_store.borrow_mut(), &mut self.saved_time, cx.stream_time);
    }

    fn punctuate(&mut self, cx: &mut Context) {
        let (later, earlier) = self.reach();
        let grace = self.windows.grace_ms;
        // A record of the other side can still meet one of ours at `t` while it is not
        // late itself: up to stream time t + later + earlier + grace. Until then a pending
        // (unmatched) record waits, so a `None` result is never followed by a match, and
        // a buffered one is kept.
        let due = |t: i64| t.saturating_add(later).saturating_add(earlier).saturating_add(grace) < cx.stream_time;
        let due: Vec<(i64, Bytes, bool)> = self.index.iter().take_while(|(t, _, _)| due(*t)).cloned().collect();
        for entry in due {
            self.index.remove(&entry);
            let (t, store_key, pending) = entry;
            if !pending {
                self.own_store.borrow_mut().put(store_key, None, t);
                continue;
            }
            let Some(store) = &self.own_pending else { continue };
            let value = {
                let mut store = store.borrow_mut();
                let value = match store.get(&store_key) {
                    Ok(value) => value,
                    Err(e) => return cx.fail(e),
                };
                if value.is_some() {
                    store.put(store_key.clone(), None, t);
                }
                value
            };
            // Taken out already: a match arrived.
            let Some(value) = value else { continue };
            let (key_bytes, _) = keys::split_window(&store_key);
            let decoded = self
                .key_serde
                .deserialize(Some(&Bytes::copy_from_slice(key_bytes)))
                .map_err(|source| StreamsError::StoreSerde { store: store.borrow().name.clone(), source })
                .and_then(|k| Ok((k, super::de_tagged(&*self.own_serde, &store.borrow().name, &value)?)));
            let (key, own) = match decoded {
                Ok(decoded) => decoded,
                Err(e) => return cx.fail(e),
            };
            let joined = (self.joiner)(Some(&own), None);
            self.down.forward(cx, Record::new(key, joined, t));
        }
    }
}

impl<K: Clone, V: Clone, VO, VR: Clone> super::Restorable for StreamStreamJoinNode<K, V, VO, VR> {
    fn index_store(&mut self) -> Result<Option<i64>, StreamsError> {
        for (store_key, _) in self.own_store.borrow().range(&[], None)?.into_iter().filter(|(k, _)| !keys::is_meta(k)) {
            let t = keys::split_window(&store_key).1;
            self.index.insert((t, store_key, false));
        }
        if let Some(pending) = &self.own_pending {
            for (store_key, _) in pending.borrow().range(&[], None)? {
                let t = keys::split_window(&store_key).1;
                self.index.insert((t, store_key, true));
            }
        }
        let saved = super::saved_stream_time(&self.own_store.borrow())?;
        self.saved_time = saved.unwrap_or(i64::MIN);
        Ok(saved)
    }
}
