//! SQL over topics, with DataFusion: every topic is a table named after it, spanning its
//! cold history (the tier's Parquet files) and its hot tail (local segments up to the
//! high watermark) in one plan.
//!
//! ```text
//!  psql / driver ──pgwire──> pg::PgServer ─┐
//!  headwater sql ──pgwire──────────────────┤ (network runtime)
//!                                          v
//!  SqlEngine (own runtime, memory limit) ── SessionContext ── catalog::Topics ── table::TopicTable
//!        TopicTable::scan ──> Union( DataSourceExec(Parquet files, pruned by the manifest and statistics),
//!                                    StreamingTableExec(tail::TailPartition per partition) )
//! ```
//!
//! Owns the SQL surface: the table layout ([`table`]), the scan of the local tail
//! ([`tail`]), the Postgres endpoint ([`pg`]) and the query engine here. Read-only: DDL
//! and DML are refused. Queries run on their own runtime, so a heavy query never stalls
//! the broker's network threads, and within one memory pool, so a query that would
//! outgrow it fails with a clear error instead of taking the broker's memory.

pub mod catalog;
pub mod functions;
pub mod pg;
pub mod table;
pub mod tail;
pub mod text;

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};

use crate::log::{Log, LogManager, TopicPartition};
use crate::tier::TierManager;

/// The catalog and schema every topic lives in: `SELECT * FROM headwater.public.orders`,
/// or just `orders`.
pub const CATALOG: &str = "headwater";
pub const SCHEMA: &str = "public";
/// The object store URL the tier's files are read through.
pub const TIER_STORE_URL: &str = "headwater-tier://store";

/// Why a query failed; the message is for the person who wrote it.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("{}", .0.find_root())]
    DataFusion(#[from] DataFusionError),
    #[error("the SQL engine has stopped")]
    Stopped,
    #[error("cannot start the SQL engine")]
    Start(#[source] std::io::Error),
}

impl SqlError {
    /// The Postgres SQLSTATE for this error, so drivers classify it as Postgres would.
    pub fn sqlstate(&self) -> &'static str {
        let SqlError::DataFusion(error) = self else { return "XX000" };
        match error.find_root() {
            DataFusionError::SQL(..) => "42601",
            DataFusionError::SchemaError(..) => "42703",
            DataFusionError::Plan(message) if message.contains("not found") && message.contains("able") => "42P01",
            DataFusionError::Plan(_) => "42000",
            DataFusionError::NotImplemented(_) => "0A000",
            DataFusionError::ResourcesExhausted(_) => "53200",
            _ => "XX000",
        }
    }
}

/// How far each partition may be read: the high watermark (a cluster) or the log end (one
/// broker).
pub trait Visibility: Send + Sync + std::fmt::Debug {
    fn high_watermark(&self, tp: &TopicPartition, log: &Log) -> i64;
}

/// One broker: everything appended is committed.
#[derive(Debug, Default)]
pub struct SingleNode;

impl Visibility for SingleNode {
    fn high_watermark(&self, _tp: &TopicPartition, log: &Log) -> i64 {
        log.log_end()
    }
}

impl Visibility for crate::partition::ReplicaManager {
    fn high_watermark(&self, tp: &TopicPartition, log: &Log) -> i64 {
        match self.replica(&tp.topic, tp.partition) {
            Some(replica) => replica.check_leader(-1).map_or(log.log_start(), |s| s.high_watermark),
            None => log.log_start(),
        }
    }
}

/// How queries run.
#[derive(Debug, Clone)]
pub struct SqlOptions {
    /// Threads of the query runtime.
    pub threads: usize,
    /// Memory all running queries may use together (sorts, joins, aggregations).
    pub memory_limit: usize,
    /// Rows per Arrow batch.
    pub batch_size: usize,
}

impl Default for SqlOptions {
    fn default() -> Self {
        Self { threads: 2, memory_limit: 1 << 30, batch_size: 8192 }
    }
}

/// What the tables read from.
#[derive(Debug, Clone)]
pub struct Sources {
    pub logs: Arc<LogManager>,
    pub tier: Option<Arc<TierManager>>,
    pub visibility: Arc<dyn Visibility>,
}

/// A running query: its schema, then its batches as they are produced.
#[derive(Debug)]
pub struct QueryStream {
    pub schema: SchemaRef,
    pub batches: mpsc::Receiver<Result<RecordBatch, SqlError>>,
}

/// The query engine of one broker.
#[derive(Debug)]
pub struct SqlEngine {
    sources: Sources,
    runtime_env: Arc<RuntimeEnv>,
    options: SqlOptions,
    runtime: std::sync::Mutex<Option<tokio::runtime::Runtime>>,
    handle: tokio::runtime::Handle,
}

impl SqlEngine {
    /// Starts the query runtime.
    ///
    /// # Errors
    /// [`SqlError::Start`] when its threads cannot start.
    pub fn start(sources: Sources, options: SqlOptions) -> Result<Arc<Self>, SqlError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(options.threads.max(1))
            .thread_name("headwater-sql")
            .enable_all()
            .build()
            .map_err(SqlError::Start)?;
        let handle = runtime.handle().clone();
        // No spilling: a query past the memory limit fails rather than filling the broker's
        // disk (the data dir's, or the temp dir's) with sort runs.
        let disk = DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled);
        let runtime_env = RuntimeEnvBuilder::new()
            .with_memory_limit(options.memory_limit, 1.0)
            .with_disk_manager_builder(disk)
            .build_arc()?;
        if let Some(tier) = &sources.tier {
            let url = datafusion::execution::object_store::ObjectStoreUrl::parse(TIER_STORE_URL)?;
            runtime_env.register_object_store(url.as_ref(), Arc::clone(&tier.store().store));
        }
        Ok(Arc::new(Self { sources, runtime_env, options, runtime: std::sync::Mutex::new(Some(runtime)), handle }))
    }

    /// A session with every topic as a table and the JSON functions registered.
    pub fn context(&self) -> SessionContext {
        let config = SessionConfig::new()
            .with_default_catalog_and_schema(CATALOG, SCHEMA)
            .with_information_schema(true)
            .with_batch_size(self.options.batch_size)
            .with_target_partitions(self.options.threads.max(1));
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(Arc::clone(&self.runtime_env))
            .with_default_features()
            .build();
        let context = SessionContext::new_with_state(state);
        context.register_catalog(CATALOG, Arc::new(catalog::TopicCatalog::new(self.sources.clone())));
        let mut state = context.state();
        if let Err(error) = functions::register(&mut state) {
            tracing::warn!(%error, "the JSON functions did not register");
        }
        SessionContext::new_with_state(state)
    }

    /// Plans and starts `sql` on the query runtime. Read-only: DDL and DML are refused.
    ///
    /// # Errors
    /// [`SqlError::DataFusion`] for a query that does not parse or plan.
    pub async fn execute(&self, sql: &str) -> Result<QueryStream, SqlError> {
        self.execute_with_params(sql, Vec::new()).await
    }

    /// [`Self::execute`] with values for the placeholders `$1`, `$2`, ... given as text
    /// (as Postgres clients send them), each parsed as the type the query gives it.
    ///
    /// # Errors
    /// As [`Self::execute`], and a parameter that does not parse as its type.
    pub async fn execute_with_params(&self, sql: &str, params: Vec<Option<String>>) -> Result<QueryStream, SqlError> {
        let context = self.context();
        let sql = sql.to_string();
        let (schema_tx, schema_rx) = oneshot::channel();
        let (tx, batches) = mpsc::channel(4);
        self.handle.spawn(async move {
            let planned = async {
                let mut frame = context.sql_with_options(&sql, read_only()).await?;
                if !params.is_empty() {
                    let types = frame.logical_plan().get_parameter_types()?;
                    let mut values = Vec::with_capacity(params.len());
                    for (i, param) in params.iter().enumerate() {
                        let ty = types.get(&format!("${}", i + 1)).cloned().flatten().unwrap_or(DataType::Utf8);
                        values.push(match param {
                            None => ScalarValue::try_from(&ty)?,
                            Some(text) => ScalarValue::try_from_string(text.clone(), &ty)?,
                        });
                    }
                    frame = frame.with_param_values(ParamValues::List(values.into_iter().map(Into::into).collect()))?;
                }
                let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
                let stream = frame.execute_stream().await?;
                Ok::<_, DataFusionError>((schema, stream))
            }
            .await;
            let mut stream = match planned {
                Ok((schema, stream)) => {
                    if schema_tx.send(Ok(schema)).is_err() {
                        return;
                    }
                    stream
                }
                Err(error) => {
                    let _ = schema_tx.send(Err(SqlError::from(error)));
                    return;
                }
            };
            while let Some(batch) = stream.next().await {
                let failed = batch.is_err();
                // The receiver went away: stop the query.
                if tx.send(batch.map_err(SqlError::from)).await.is_err() || failed {
                    return;
                }
            }
        });
        let schema = schema_rx.await.map_err(|_| SqlError::Stopped)??;
        Ok(QueryStream { schema, batches })
    }

    /// The schema of what `sql` returns and the types of its placeholders, without running
    /// it (a Postgres Describe).
    ///
    /// # Errors
    /// As [`Self::execute`].
    pub async fn describe(&self, sql: &str) -> Result<(SchemaRef, Vec<Option<DataType>>), SqlError> {
        let context = self.context();
        let sql = sql.to_string();
        self.handle
            .spawn(async move {
                let frame = context.sql_with_options(&sql, read_only()).await?;
                let types = frame.logical_plan().get_parameter_types()?;
                let mut params: Vec<(usize, Option<DataType>)> = types
                    .into_iter()
                    .filter_map(|(name, ty)| Some((name.strip_prefix('$')?.parse().ok()?, ty)))
                    .collect();
                params.sort_by_key(|(i, _)| *i);
                let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
                Ok::<_, SqlError>((schema, params.into_iter().map(|(_, ty)| ty).collect()))
            })
            .await
            .map_err(|_| SqlError::Stopped)?
    }

    /// Runs `sql` to the end.
    ///
    /// # Errors
    /// As [`Self::execute`], and any error while it runs.
    pub async fn collect(&self, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>), SqlError> {
        let mut stream = self.execute(sql).await?;
        let mut batches = Vec::new();
        while let Some(batch) = stream.batches.recv().await {
            batches.push(batch?);
        }
        Ok((stream.schema, batches))
    }

    /// Stops the query runtime; running queries end.
    pub fn shutdown(&self) {
        if let Some(runtime) = self.runtime.lock().expect("runtime lock").take() {
            runtime.shutdown_background();
        }
    }
}

/// Queries only: no CREATE, INSERT, COPY or the like.
fn read_only() -> SQLOptions {
    SQLOptions::new().with_allow_ddl(false).with_allow_dml(false)
}

impl Drop for SqlEngine {
    fn drop(&mut self) {
        self.shutdown();
    }
}
