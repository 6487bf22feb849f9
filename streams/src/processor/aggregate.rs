//! Aggregations of grouped streams into a key-value store: `count`, `reduce`,
//! `aggregate`. Each update is written to the store (and so its changelog) and passed on
//! as a table change.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

use super::{Context, Downstream, Node, de_store, ser};
use crate::record::{Change, Record};
use crate::serde::Serde;
use crate::state::Store;

pub(crate) type InitFn<VR> = Arc<dyn Fn() -> VR + Send + Sync>;
pub(crate) type AggFn<K, V, VR> = Arc<dyn Fn(&K, V, VR) -> VR + Send + Sync>;

pub(crate) struct AggregateNode<K, V, VR> {
    pub(crate) store: Rc<RefCell<Store>>,
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) agg_serde: Arc<dyn Serde<VR>>,
    pub(crate) init: InitFn<VR>,
    pub(crate) agg: AggFn<K, V, VR>,
    pub(crate) down: Downstream<K, Change<VR>>,
    pub(crate) key_buf: Vec<u8>,
}

impl<K: Clone, V, VR: Clone> Node<K, V> for AggregateNode<K, V, VR> {
    fn process(&mut self, cx: &mut Context, record: Record<K, V>) {
        self.key_buf.clear();
        if !self.key_serde.serialize(&record.key, &mut self.key_buf) {
            // Kafka Streams drops records with a null key from aggregations.
            return;
        }
        let (mut old, mut new) = (None, None);
        let Record { key, value, timestamp, headers } = record;
        let mut value = Some(value);
        let mut update = |current: Option<&Bytes>| {
            old = current.map(|b| de_store(&*self.agg_serde, "", b)).transpose()?;
            let base = old.clone().unwrap_or_else(|| (self.init)());
            let result = (self.agg)(&key, value.take().expect("called once"), base);
            let bytes = ser(&*self.agg_serde, &result);
            new = Some(result);
            Ok(bytes)
        };
        if let Err(e) = self.store.borrow_mut().update(&self.key_buf, timestamp, &mut update) {
            return cx.fail(e);
        }
        let record = Record { key, value: (), timestamp, headers };
        let new = new.expect("the update ran");
        let change = Change { new: Some(new), old };
        self.down.forward(
            cx,
            Record { key: record.key, value: change, timestamp: record.timestamp, headers: record.headers },
        );
    }
}
