//! Session window aggregation.
//!
//! A record at `t` of key `k` joins every session of `k` that ends at or after
//! `t - gap` and starts at or before `t + gap`; those sessions and the record become one
//! session, whose aggregate is the merge of theirs plus the record. The replaced sessions
//! are retracted downstream (a change with `new: None`) when results are emitted on
//! update. A session is final once stream time passes its end + gap + grace: no later
//! record can reach it (a record is dropped when the session it would form ends before
//! stream time minus grace).

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

use super::aggregate::{AggFn, InitFn};
use super::{Context, Downstream, Node, Punctuate, de_store, ser, take_closed};
use crate::error::StreamsError;
use crate::record::{Change, Record};
use crate::serde::Serde;
use crate::state::{Store, keys};
use crate::window::{EmitStrategy, SessionWindows, Window, Windowed};

pub(crate) type MergeFn<K, VR> = Arc<dyn Fn(&K, VR, VR) -> VR + Send + Sync>;

pub(crate) struct SessionAggregateNode<K, V, VR> {
    pub(crate) store: Rc<RefCell<Store>>,
    pub(crate) windows: SessionWindows,
    pub(crate) emit: EmitStrategy,
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) agg_serde: Arc<dyn Serde<VR>>,
    pub(crate) init: InitFn<VR>,
    pub(crate) agg: AggFn<K, V, VR>,
    pub(crate) merger: MergeFn<K, VR>,
    pub(crate) down: Downstream<Windowed<K>, Change<VR>>,
    /// Sessions in the store: (end, store key).
    pub(crate) index: BTreeSet<(i64, Bytes)>,
    pub(crate) key_buf: Vec<u8>,
    /// The stream time last saved in the store.
    pub(crate) saved_time: i64,
}

impl<K, V, VR> SessionAggregateNode<K, V, VR> {
    fn is_final(&self, end: i64, stream_time: i64) -> bool {
        end.saturating_add(self.windows.gap_ms).saturating_add(self.windows.grace_ms) < stream_time
    }
}

impl<K: Clone, V, VR: Clone> Node<K, V> for SessionAggregateNode<K, V, VR> {
    fn process(&mut self, cx: &mut Context, record: Record<K, V>) {
        self.key_buf.clear();
        if !self.key_serde.serialize(&record.key, &mut self.key_buf) {
            return;
        }
        let t = record.timestamp;
        let (gap, grace) = (self.windows.gap_ms, self.windows.grace_ms);
        let mut store = self.store.borrow_mut();
        let (lower, upper) = keys::sessions_ending_from(&self.key_buf, t.saturating_sub(gap));
        let found = match store.range(&lower, Some(&upper)) {
            Ok(found) => found,
            Err(e) => return cx.fail(e),
        };
        let mut merged = Window { start: t, end: t };
        let mut overlapping = Vec::new();
        for (store_key, value) in found {
            let (_, start, end) = keys::split_session(&store_key);
            if start > t.saturating_add(gap) {
                continue;
            }
            merged.start = merged.start.min(start);
            merged.end = merged.end.max(end);
            match de_store(&*self.agg_serde, &store.name, &value) {
                Ok(value) => overlapping.push((store_key, Window { start, end }, value)),
                Err(e) => return cx.fail(e),
            }
        }
        if merged.end.saturating_add(grace) < cx.stream_time {
            cx.counters.dropped_late += 1;
            return;
        }
        let mut aggregate = (self.init)();
        for (_, _, value) in &overlapping {
            aggregate = (self.merger)(&record.key, aggregate, value.clone());
        }
        let aggregate = (self.agg)(&record.key, record.value, aggregate);
        let new_key = keys::session(&self.key_buf, merged.start, merged.end);
        let mut retracted = Vec::new();
        let mut previous = None;
        for (store_key, window, value) in overlapping {
            if store_key == new_key {
                previous = Some(value);
                continue;
            }
            store.put(store_key.clone(), None, t);
            self.index.remove(&(window.end, store_key));
            retracted.push((window, value));
        }
        store.put(new_key.clone(), ser(&*self.agg_serde, &aggregate), t);
        drop(store);
        self.index.insert((merged.end, new_key));
        if self.emit == EmitStrategy::OnWindowUpdate {
            for (window, old) in retracted {
                let key = Windowed { key: record.key.clone(), window };
                self.down.forward(cx, Record::new(key, Change { new: None, old: Some(old) }, t));
            }
            let key = Windowed { key: record.key.clone(), window: merged };
            self.down.forward(cx, Record::new(key, Change { new: Some(aggregate), old: previous }, t));
        }
        self.punctuate(cx);
    }
}

impl<K: Clone, V, VR: Clone> Punctuate for SessionAggregateNode<K, V, VR> {
    fn save_stream_time(&mut self, cx: &mut Context) {
        super::save_stream_time(&mut self.store.borrow_mut(), &mut self.saved_time, cx.stream_time);
    }

    fn punctuate(&mut self, cx: &mut Context) {
        while let Some((end, _)) = self.index.first() {
            if !self.is_final(*end, cx.stream_time) || cx.error.is_some() {
                return;
            }
            let (end, store_key) = self.index.pop_first().expect("a first entry");
            let (key_bytes, start, _) = keys::split_session(&store_key);
            let decode = (self.emit == EmitStrategy::OnWindowClose).then(|| (&*self.key_serde, &*self.agg_serde));
            match take_closed(&mut self.store.borrow_mut(), &store_key, key_bytes, end, decode) {
                Ok(Some((key, value))) => {
                    let key = Windowed { key, window: Window { start, end } };
                    self.down.forward(cx, Record::new(key, Change { new: Some(value), old: None }, end));
                }
                Ok(None) => {}
                Err(e) => return cx.fail(e),
            }
        }
    }
}

impl<K: Clone, V, VR: Clone> super::Restorable for SessionAggregateNode<K, V, VR> {
    fn index_store(&mut self) -> Result<Option<i64>, StreamsError> {
        let entries = self.store.borrow().range(&[], None)?;
        for (store_key, _) in entries.into_iter().filter(|(k, _)| !keys::is_meta(k)) {
            let (_, _, end) = keys::split_session(&store_key);
            self.index.insert((end, store_key));
        }
        let saved = super::saved_stream_time(&self.store.borrow())?;
        self.saved_time = saved.unwrap_or(i64::MIN);
        Ok(saved)
    }
}
