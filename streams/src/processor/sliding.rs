//! Sliding window aggregation (Kafka Streams' `SlidingWindows`).
//!
//! The windows of a key are the distinct `[start, end]` spans of `time_difference` that
//! begin or end at a record: each record's left window `[t - d, t]`, and its right window
//! `[t + 1, t + 1 + d]` when that holds any record. The node keeps the key's raw records
//! (timestamp, offset, value) for as long as an open window may hold them, and a new
//! record recomputes each window that contains it from those records, so results are
//! exact whatever the arrival order. Results are emitted on update, or once per window
//! when it closes (`end + grace < stream time`): then the windows that closed since the
//! last punctuation are found from the records' times (left windows end at a record,
//! right windows one `time_difference + 1` after one) and computed from the records.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

use super::aggregate::{AggFn, InitFn};
use super::{Context, Downstream, Node, Punctuate, de_tagged, ser, ser_tagged};
use crate::error::StreamsError;
use crate::record::{Change, Record};
use crate::serde::Serde;
use crate::state::{Store, keys};
use crate::window::{EmitStrategy, SlidingWindows, Window, Windowed};

pub(crate) struct SlidingAggregateNode<K, V, VR> {
    /// Raw records: `keys::window_seq(key, timestamp, offset)` -> value.
    pub(crate) store: Rc<RefCell<Store>>,
    pub(crate) windows: SlidingWindows,
    pub(crate) emit: EmitStrategy,
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) value_serde: Arc<dyn Serde<V>>,
    pub(crate) init: InitFn<VR>,
    pub(crate) agg: AggFn<K, V, VR>,
    pub(crate) down: Downstream<Windowed<K>, Change<VR>>,
    /// Raw records by timestamp, for expiry.
    pub(crate) index: BTreeSet<(i64, Bytes)>,
    /// Emit-final: windows ending at or before this have been emitted.
    pub(crate) emitted_through: i64,
    /// The stream time last saved in the store.
    pub(crate) saved_time: i64,
}

impl<K: Clone, V: Clone, VR: Clone> SlidingAggregateNode<K, V, VR> {
    fn fold(&self, key: &K, records: impl Iterator<Item = V>) -> VR {
        records.fold((self.init)(), |acc, v| (self.agg)(key, v, acc))
    }
}

impl<K: Clone, V: Clone, VR: Clone> Node<K, V> for SlidingAggregateNode<K, V, VR> {
    fn process(&mut self, cx: &mut Context, record: Record<K, V>) {
        let Some(key_bytes) = ser(&*self.key_serde, &record.key) else { return };
        let (d, grace, t) = (self.windows.time_difference_ms, self.windows.grace_ms, record.timestamp);
        // Late only when every window that could hold it (ending by t + d) is closed.
        if t.saturating_add(d).saturating_add(grace) < cx.stream_time {
            cx.counters.dropped_late += 1;
            return;
        }
        let closed = |w: &Window| w.end.saturating_add(grace) < cx.stream_time;
        let (lower, upper) = keys::window_range(&key_bytes, t.saturating_sub(2 * d + 2), t.saturating_add(d + 1));
        let existing: Vec<(i64, V)> = {
            let store = self.store.borrow();
            let found = match store.range(&lower, Some(&upper)) {
                Ok(found) => found,
                Err(e) => return cx.fail(e),
            };
            let mut existing = Vec::with_capacity(found.len());
            for (store_key, value) in found {
                match de_tagged(&*self.value_serde, &store.name, &value) {
                    Ok(v) => existing.push((keys::split_window(&store_key).1, v)),
                    Err(e) => return cx.fail(e),
                }
            }
            existing
        };
        let mut containing = BTreeSet::new();
        containing.insert(Window { start: t - d, end: t });
        for (ts, _) in &existing {
            if (t..=t + d).contains(ts) {
                containing.insert(Window { start: ts - d, end: *ts });
            }
            if (t - d - 1..t).contains(ts) {
                containing.insert(Window { start: ts + 1, end: ts + 1 + d });
            }
        }
        let existed =
            |w: &Window, contents: bool| contents && existing.iter().any(|(ts, _)| *ts == w.end || *ts == w.start - 1);
        let in_window = |w: Window| existing.iter().filter(move |(ts, _)| w.start <= *ts && *ts <= w.end);
        let mut updates = Vec::new();
        for w in containing.into_iter().filter(|w| !closed(w)) {
            let before: Vec<&(i64, V)> = in_window(w).collect();
            let old =
                existed(&w, !before.is_empty()).then(|| self.fold(&record.key, before.iter().map(|(_, v)| v.clone())));
            // The new record goes in timestamp order among the others (after equal ones).
            let mut after: Vec<(i64, V)> = before.iter().map(|(ts, v)| (*ts, v.clone())).collect();
            let at = after.partition_point(|(ts, _)| *ts <= t);
            after.insert(at, (t, record.value.clone()));
            let latest = after.last().map_or(t, |(ts, _)| *ts);
            let new = self.fold(&record.key, after.into_iter().map(|(_, v)| v));
            updates.push((w, Change { new: Some(new), old }, latest));
        }
        // The record's right window, if it holds records and did not exist already.
        let right = Window { start: t + 1, end: t + 1 + d };
        let contents: Vec<&(i64, V)> = in_window(right).collect();
        if !contents.is_empty() && !existed(&right, true) && !closed(&right) {
            let latest = contents.last().map_or(t, |(ts, _)| *ts);
            let new = self.fold(&record.key, contents.iter().map(|(_, v)| v.clone()));
            updates.push((right, Change { new: Some(new), old: None }, latest));
        }
        let store_key = keys::window_seq(&key_bytes, t, cx.next_seq());
        self.store.borrow_mut().put(store_key.clone(), Some(ser_tagged(&*self.value_serde, &record.value)), t);
        self.index.insert((t, store_key));
        if self.emit == EmitStrategy::OnWindowUpdate {
            for (window, change, timestamp) in updates {
                let key = Windowed { key: record.key.clone(), window };
                self.down.forward(cx, Record::new(key, change, timestamp));
            }
        }
        self.punctuate(cx);
    }
}

impl<K: Clone, V: Clone, VR: Clone> SlidingAggregateNode<K, V, VR> {
    /// Emit-final: every window that closed since the last call, computed from the
    /// records, in order of window end.
    fn emit_closed(&mut self, cx: &mut Context) -> Result<(), StreamsError> {
        let (d, grace) = (self.windows.time_difference_ms, self.windows.grace_ms);
        // Closed: end + grace < stream time.
        let bound = cx.stream_time.saturating_sub(grace).saturating_sub(1);
        if cx.stream_time == i64::MIN || bound <= self.emitted_through {
            return Ok(());
        }
        let from = self.emitted_through;
        let mut closing: BTreeSet<(i64, i64, Bytes)> = BTreeSet::new();
        // Left windows end at a record; right windows end d + 1 after one.
        let lowest = from.saturating_sub(d + 1);
        for (t, store_key) in self.index.range((lowest, Bytes::new())..) {
            if keys::is_meta(store_key) {
                continue;
            }
            if *t > bound {
                break;
            }
            let key = Bytes::copy_from_slice(keys::split_window(store_key).0);
            if *t > from {
                closing.insert((*t, t - d, key.clone()));
            }
            let right_end = t + 1 + d;
            if right_end > from && right_end <= bound {
                closing.insert((right_end, t + 1, key));
            }
        }
        self.emitted_through = bound;
        for (end, start, key_bytes) in closing {
            let (lower, upper) = keys::window_range(&key_bytes, start, end);
            let (key, values) = {
                let store = self.store.borrow();
                let found = store.range(&lower, Some(&upper))?;
                if found.is_empty() {
                    continue; // a right window with nothing in it is not a window
                }
                let key = self
                    .key_serde
                    .deserialize(Some(&key_bytes))
                    .map_err(|source| StreamsError::StoreSerde { store: store.name.clone(), source })?;
                let mut values = Vec::with_capacity(found.len());
                for (store_key, value) in found {
                    values
                        .push((keys::split_window(&store_key).1, de_tagged(&*self.value_serde, &store.name, &value)?));
                }
                (key, values)
            };
            let latest = values.last().map_or(end, |(t, _)| *t);
            let aggregate = self.fold(&key, values.into_iter().map(|(_, v)| v));
            let windowed = Windowed { key, window: Window { start, end } };
            self.down.forward(cx, Record::new(windowed, Change { new: Some(aggregate), old: None }, latest));
        }
        Ok(())
    }
}

impl<K: Clone, V: Clone, VR: Clone> Punctuate for SlidingAggregateNode<K, V, VR> {
    fn save_stream_time(&mut self, cx: &mut Context) {
        super::save_stream_time(&mut self.store.borrow_mut(), &mut self.saved_time, cx.stream_time);
    }

    fn punctuate(&mut self, cx: &mut Context) {
        if self.emit == EmitStrategy::OnWindowClose
            && let Err(e) = self.emit_closed(cx)
        {
            return cx.fail(e);
        }
        let horizon = self.windows.time_difference_ms + 1 + self.windows.grace_ms;
        while let Some((t, _)) = self.index.first() {
            // No open window holds a record this old any more.
            if t.saturating_add(horizon) >= cx.stream_time {
                return;
            }
            let (t, store_key) = self.index.pop_first().expect("a first entry");
            self.store.borrow_mut().put(store_key, None, t);
        }
    }
}

impl<K: Clone, V: Clone, VR: Clone> super::Restorable for SlidingAggregateNode<K, V, VR> {
    fn index_store(&mut self) -> Result<Option<i64>, StreamsError> {
        let entries = self.store.borrow().range(&[], None)?;
        for (store_key, _) in entries.into_iter().filter(|(k, _)| !keys::is_meta(k)) {
            let (_, t) = keys::split_window(&store_key);
            self.index.insert((t, store_key));
        }
        let saved = super::saved_stream_time(&self.store.borrow())?;
        self.saved_time = saved.unwrap_or(i64::MIN);
        // Windows that closed before the save were emitted then.
        if let Some(saved) = saved {
            self.emitted_through = saved.saturating_sub(self.windows.grace_ms).saturating_sub(1);
        }
        Ok(saved)
    }
}
