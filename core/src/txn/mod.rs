//! Transactions: the transaction coordinator and the state it keeps per
//! `transactional.id` in `__transaction_state`.
//!
//! ```text
//!  producer ──InitProducerId / AddPartitionsToTxn / AddOffsetsToTxn / EndTxn──> TransactionCoordinator
//!                                                                  │ persist each transition
//!                                                                  v
//!                                                      __transaction_state (compacted)
//!                    EndTxn decided ──> markers (control batches) into every partition of the
//!                    transaction, local or by WriteTxnMarkers to its leader ──> Complete*
//! ```
//!
//! The partitions' side (open transactions, the last stable offset, the aborted index)
//! lives in the log: [`crate::log::producer_state`] and [`crate::log::txn_index`]. A
//! transaction's consumer offsets are the group coordinator's (TxnOffsetCommit).

pub mod coordinator;
pub mod metadata;

pub use coordinator::TransactionCoordinator;
pub use metadata::{TRANSACTION_STATE_PARTITIONS, TRANSACTION_STATE_TOPIC, TxnMetadata, TxnState};
