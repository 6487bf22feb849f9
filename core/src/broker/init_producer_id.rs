//! InitProducerId: ids for idempotent producers, and for transactional ones (a
//! `transactional.id`) an id and epoch from the transaction coordinator.
//!
//! Ids come from blocks reserved in `<data-dir>/producer-ids` before any id in the block
//! is handed out, so an id is never given twice, even across crashes.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::Broker;
use crate::log::{LogError, write_atomically};

const FILE: &str = "producer-ids";
/// Ids reserved per write: one fsync per thousand producers.
const BLOCK: i64 = 1000;
/// In a cluster, broker N hands out ids `k * NODE_STRIDE + N`: unique across brokers
/// without a round trip to the controller, for node ids below the stride.
pub(super) const NODE_STRIDE: i32 = 1024;

#[derive(Debug)]
pub(super) struct ProducerIdAllocator {
    path: PathBuf,
    /// (next id to hand out, end of the reserved block), counted in strides
    state: Mutex<(i64, i64)>,
    /// In a cluster: (this node's id, the stride).
    stride: Option<(i32, i32)>,
}

impl ProducerIdAllocator {
    pub(super) fn open(data_dir: &Path, stride: Option<(i32, i32)>) -> Result<Self, LogError> {
        if let Some((node, stride)) = stride {
            assert!((0..stride).contains(&node), "node id {node} outside the producer id stride {stride}");
        }
        let path = data_dir.join(FILE);
        let reserved = match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().parse::<i64>().map_err(|_| LogError::InvalidConfig {
                name: path.display().to_string(),
                value: text.trim().to_string(),
                reason: "not a producer id".into(),
            })?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => 0,
            Err(source) => return Err(LogError::Io { op: "read producer ids", path, source }),
        };
        Ok(Self { path, state: Mutex::new((reserved, reserved)), stride })
    }

    fn next(&self) -> Result<i64, LogError> {
        let mut state = self.state.lock().expect("producer id lock");
        if state.0 == state.1 {
            let end = state.1 + BLOCK;
            write_atomically(&self.path, end.to_string().as_bytes())?;
            state.1 = end;
        }
        let n = state.0;
        state.0 += 1;
        Ok(match self.stride {
            None => n,
            Some((node, stride)) => n * i64::from(stride) + i64::from(node),
        })
    }
}

pub(super) async fn handle(broker: &Broker, request: &InitProducerIdRequest) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default();
    if let Some(id) = &request.transactional_id {
        if let Err(error) = broker.txns.ensure_local_topic() {
            tracing::error!(%error, "cannot create the transaction state topic");
            return response.with_error_code(ResponseError::CoordinatorNotAvailable.code());
        }
        let expected = (request.producer_id.0 >= 0).then_some((request.producer_id.0, request.producer_epoch));
        let allocate = || {
            broker.producer_ids.next().map_err(|error| {
                tracing::error!(%error, "cannot reserve producer ids");
                ResponseError::KafkaStorageError.code()
            })
        };
        return match broker.txns.init_producer_id(id, request.transaction_timeout_ms, expected, allocate).await {
            Ok((producer_id, epoch)) => response.with_producer_id(ProducerId(producer_id)).with_producer_epoch(epoch),
            Err(code) => response.with_error_code(code).with_producer_id(ProducerId(-1)).with_producer_epoch(-1),
        };
    }
    // KIP-360: a producer that already has an id may ask for its epoch to be bumped.
    if request.producer_id.0 >= 0 && request.producer_epoch >= 0 && request.producer_epoch < i16::MAX - 1 {
        return response.with_producer_id(request.producer_id).with_producer_epoch(request.producer_epoch + 1);
    }
    match broker.producer_ids.next() {
        Ok(id) => response.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(error) => {
            tracing::error!(%error, "cannot reserve producer ids");
            response.with_error_code(ResponseError::KafkaStorageError.code())
        }
    }
}
