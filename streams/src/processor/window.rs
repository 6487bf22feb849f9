//! Tumbling and hopping window aggregations.
//!
//! Each window of a key is one store entry (`keys::window`). An in-memory index of open
//! windows by end time, rebuilt from the store when the task starts, finds the windows
//! that close as stream time passes: with emit-final their results are written then; in
//! either mode a closed window leaves the store, since no record can change it again.

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
use crate::window::{EmitStrategy, TimeWindows, Window, Windowed};

pub(crate) struct WindowAggregateNode<K, V, VR> {
    pub(crate) store: Rc<RefCell<Store>>,
    pub(crate) windows: TimeWindows,
    pub(crate) emit: EmitStrategy,
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) agg_serde: Arc<dyn Serde<VR>>,
    pub(crate) init: InitFn<VR>,
    pub(crate) agg: AggFn<K, V, VR>,
    pub(crate) down: Downstream<Windowed<K>, Change<VR>>,
    /// Open windows: (end, store key).
    pub(crate) open: BTreeSet<(i64, Bytes)>,
    pub(crate) key_buf: Vec<u8>,
    pub(crate) store_key_buf: Vec<u8>,
    /// The stream time last saved in the store.
    pub(crate) saved_time: i64,
}

impl<K, V, VR> WindowAggregateNode<K, V, VR> {
    fn closed(&self, end: i64, stream_time: i64) -> bool {
        // [start, end): the last timestamp it holds is end - 1.
        end - 1 + self.windows.grace_ms < stream_time
    }
}

impl<K: Clone, V: Clone, VR: Clone> Node<K, V> for WindowAggregateNode<K, V, VR> {
    fn process(&mut self, cx: &mut Context, record: Record<K, V>) {
        self.key_buf.clear();
        if !self.key_serde.serialize(&record.key, &mut self.key_buf) {
            return;
        }
        let windows = self.windows;
        for window in windows.windows_for(record.timestamp) {
            if self.closed(window.end, cx.stream_time) {
                cx.counters.dropped_late += 1;
                continue;
            }
            keys::window_into(&mut self.store_key_buf, &self.key_buf, window.start);
            let (mut old, mut new) = (None, None);
            let mut update = |current: Option<&Bytes>| {
                old = current.map(|b| de_store(&*self.agg_serde, "", b)).transpose()?;
                let base = old.clone().unwrap_or_else(|| (self.init)());
                let value = (self.agg)(&record.key, record.value.clone(), base);
                let bytes = ser(&*self.agg_serde, &value);
                new = Some(value);
                Ok(bytes)
            };
            if let Err(e) = self.store.borrow_mut().update(&self.store_key_buf, record.timestamp, &mut update) {
                return cx.fail(e);
            }
            if old.is_none() {
                self.open.insert((window.end, Bytes::copy_from_slice(&self.store_key_buf)));
            }
            if self.emit == EmitStrategy::OnWindowUpdate {
                let key = Windowed { key: record.key.clone(), window };
                self.down.forward(
                    cx,
                    Record { key, value: Change { new, old }, timestamp: record.timestamp, headers: Vec::new() },
                );
            }
        }
        self.punctuate(cx);
    }
}

impl<K: Clone, V, VR: Clone> Punctuate for WindowAggregateNode<K, V, VR> {
    fn save_stream_time(&mut self, cx: &mut Context) {
        super::save_stream_time(&mut self.store.borrow_mut(), &mut self.saved_time, cx.stream_time);
    }

    fn punctuate(&mut self, cx: &mut Context) {
        while let Some((end, _)) = self.open.first() {
            if !self.closed(*end, cx.stream_time) || cx.error.is_some() {
                return;
            }
            let (end, store_key) = self.open.pop_first().expect("a first entry");
            let (key_bytes, start) = keys::split_window(&store_key);
            let decode = (self.emit == EmitStrategy::OnWindowClose).then(|| (&*self.key_serde, &*self.agg_serde));
            match take_closed(&mut self.store.borrow_mut(), &store_key, key_bytes, end - 1, decode) {
                Ok(Some((key, value))) => {
                    let key = Windowed { key, window: Window { start, end } };
                    let change = Change { new: Some(value), old: None };
                    self.down.forward(cx, Record { key, value: change, timestamp: end - 1, headers: Vec::new() });
                }
                Ok(None) => {}
                Err(e) => return cx.fail(e),
            }
        }
    }
}

impl<K: Clone, V, VR: Clone> super::Restorable for WindowAggregateNode<K, V, VR> {
    /// Indexes the windows already in the store (restored from the changelog); returns
    /// the stream time saved there.
    fn index_store(&mut self) -> Result<Option<i64>, StreamsError> {
        let entries = self.store.borrow().range(&[], None)?;
        for (store_key, _) in entries.into_iter().filter(|(k, _)| !keys::is_meta(k)) {
            let (_, start) = keys::split_window(&store_key);
            self.open.insert((start + self.windows.size_ms, store_key));
        }
        let saved = super::saved_stream_time(&self.store.borrow())?;
        self.saved_time = saved.unwrap_or(i64::MIN);
        Ok(saved)
    }
}
