//! The controller quorum's state machine: committed metadata commands applied to the
//! [`MetadataImage`], which is published to the rest of the node through a watch channel.
//!
//! The image lives in memory. What makes it durable is the Raft log plus the latest
//! snapshot (the image as JSON, kept in [`ControllerDb`]): at start the snapshot is loaded
//! and openraft re-applies the committed entries after it.

use std::io::Cursor;
use std::sync::{Arc, Mutex};

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::store::{ControllerDb, SNAPSHOT_DATA, SNAPSHOT_META, StoreResult, to_json};
use super::{Entry, Node, NodeId, TypeConfig};
use crate::cluster::MetadataError;
use crate::cluster::metadata::{MetadataImage, MetadataOutcome};

/// What applying one log entry answers: the command's outcome or why it was refused.
pub type CommandResult = Result<MetadataOutcome, MetadataError>;

/// The state machine's whole state; also the snapshot's content.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Applied {
    image: MetadataImage,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Node>,
}

/// openraft's state machine over the metadata image.
#[derive(Debug, Clone)]
pub struct MetadataStateMachine {
    state: Arc<Mutex<Applied>>,
    db: ControllerDb,
    published: watch::Sender<Arc<MetadataImage>>,
}

impl MetadataStateMachine {
    /// Loads the latest snapshot, if any.
    ///
    /// # Errors
    /// The snapshot cannot be read or decoded.
    pub async fn open(db: ControllerDb) -> StoreResult<Self> {
        let state: Applied = match db.get_meta::<Vec<u8>>(SNAPSHOT_DATA).await? {
            Some(data) => {
                serde_json::from_slice(&data).map_err(|e| StorageIOError::read_snapshot(None, AnyError::new(&e)))?
            }
            None => Applied::default(),
        };
        let (published, _) = watch::channel(Arc::new(state.image.clone()));
        Ok(Self { state: Arc::new(Mutex::new(state)), db, published })
    }

    /// The image as of the last applied entry, updated on every change.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.published.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Applied> {
        self.state.lock().expect("state machine lock")
    }

    fn publish(&self, image: MetadataImage) {
        self.published.send_replace(Arc::new(image));
    }
}

impl RaftSnapshotBuilder<TypeConfig> for MetadataStateMachine {
    async fn build_snapshot(&mut self) -> StoreResult<Snapshot<TypeConfig>> {
        let state = self.lock().clone();
        let data = to_json(&state)?;
        let snapshot_id = match state.last_applied {
            Some(id) => format!("{}-{}", id.leader_id, id.index),
            None => "empty".to_owned(),
        };
        let meta = SnapshotMeta { last_log_id: state.last_applied, last_membership: state.membership, snapshot_id };
        let index = meta.last_log_id.map(|id| id.index);
        if !self.db.put_snapshot(index, to_json(&meta)?, to_json(&data)?).await? {
            // A newer snapshot was installed meanwhile; it stays, and is what we offer.
            if let Some(current) = self.get_current_snapshot().await? {
                return Ok(current);
            }
        }
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for MetadataStateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> StoreResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, Node>)> {
        let state = self.lock();
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StoreResult<Vec<CommandResult>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut results = Vec::new();
        let image = {
            let mut state = self.lock();
            for entry in entries {
                state.last_applied = Some(entry.log_id);
                results.push(match entry.payload {
                    EntryPayload::Blank => Ok(MetadataOutcome::Done),
                    EntryPayload::Normal(command) => state.image.apply(entry.log_id.index, &command),
                    EntryPayload::Membership(membership) => {
                        state.membership = StoredMembership::new(Some(entry.log_id), membership);
                        Ok(MetadataOutcome::Done)
                    }
                });
            }
            state.image.clone()
        };
        self.publish(image);
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StoreResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StoreResult<()> {
        let data = snapshot.into_inner();
        let mut state: Applied = serde_json::from_slice(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), AnyError::new(&e)))?;
        // The meta is authoritative for where the snapshot stands.
        state.last_applied = meta.last_log_id;
        state.membership = meta.last_membership.clone();
        self.db.put_meta(vec![(SNAPSHOT_META, to_json(meta)?), (SNAPSHOT_DATA, to_json(&data)?)]).await?;
        let image = state.image.clone();
        *self.lock() = state;
        self.publish(image);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StoreResult<Option<Snapshot<TypeConfig>>> {
        let Some(meta) = self.db.get_meta::<SnapshotMeta<NodeId, Node>>(SNAPSHOT_META).await? else { return Ok(None) };
        let data: Vec<u8> = self.db.get_meta(SNAPSHOT_DATA).await?.unwrap_or_default();
        Ok(Some(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}
