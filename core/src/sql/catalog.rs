//! The catalog: one schema (`public`) whose tables are the topics, looked up when a
//! query names them, so a topic created a moment ago is queryable at once.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::DataFusionError;

use super::table::TopicTable;
use super::{SCHEMA, Sources};

/// The `headwater` catalog.
#[derive(Debug)]
pub struct TopicCatalog {
    topics: Arc<TopicSchema>,
}

impl TopicCatalog {
    pub fn new(sources: Sources) -> Self {
        Self { topics: Arc::new(TopicSchema { sources }) }
    }
}

impl CatalogProvider for TopicCatalog {
    fn schema_names(&self) -> Vec<String> {
        vec![SCHEMA.to_string()]
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        (name == SCHEMA).then(|| Arc::clone(&self.topics) as Arc<dyn SchemaProvider>)
    }
}

/// Every topic, as a table.
#[derive(Debug)]
pub struct TopicSchema {
    sources: Sources,
}

#[async_trait]
impl SchemaProvider for TopicSchema {
    fn table_names(&self) -> Vec<String> {
        self.sources.logs.topics().into_keys().collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        if self.sources.logs.topic(name).is_none() {
            return Ok(None);
        }
        let table = TopicTable::open(self.sources.clone(), name).await?;
        Ok(Some(Arc::new(table)))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.sources.logs.topic(name).is_some()
    }
}
