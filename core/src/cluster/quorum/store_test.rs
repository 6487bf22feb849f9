//! openraft's own conformance suite, run against the redb log store and the metadata state
//! machine: every ordering, truncation, purge, vote and snapshot rule the library relies on.

use super::TypeConfig;
use super::state_machine::MetadataStateMachine;
use super::store::{ControllerDb, LogStore, StoreResult};

struct Builder;

impl openraft::testing::StoreBuilder<TypeConfig, LogStore, MetadataStateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> StoreResult<(tempfile::TempDir, LogStore, MetadataStateMachine)> {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = ControllerDb::open(&dir.path().join("controller.redb")).expect("open store");
        let state_machine = MetadataStateMachine::open(db.clone()).await?;
        Ok((dir, LogStore::new(db), state_machine))
    }
}

#[test]
fn the_controller_store_passes_openraft_conformance_suite() {
    openraft::testing::Suite::test_all(Builder).expect("conformance");
}
