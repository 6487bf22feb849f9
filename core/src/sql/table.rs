//! A topic as a table: `partition, offset, timestamp, key, value, headers`, then the typed
//! JSON columns of `value.format=json` topics.
//!
//! A scan is one plan over both places a partition's records live:
//!
//! ```text
//!  offsets  [log start ........ remote end)[remote end ............. high watermark)
//!            Parquet files (tier manifest)   local segments (tail::TailPartition)
//! ```
//!
//! Filters on `partition`, `offset` and `timestamp` choose the partitions, the files (by
//! the manifest's offset and time ranges) and where each tail scan starts and stops; all
//! filters also reach the Parquet reader, which prunes row groups by their statistics.
//! Every filter is reported Inexact, so DataFusion still applies it to the rows.

use std::ops::Not;
use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator, TableProviderFilterPushDown, col, lit};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::filter::FilterExecBuilder;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::union::UnionExec;

use super::tail::{TailPartition, infer_tail_json};
use super::{Sources, TIER_STORE_URL};
use crate::log::TopicPartition;
use crate::tier::schema::{self, JsonType};

/// The columns SQL shows of a file or a tail scan: the record columns, then the JSON ones
/// (the batch columns in between stay in the files).
pub fn sql_columns(file_schema: &arrow::datatypes::Schema) -> Vec<usize> {
    let fixed = schema::FIXED_COLUMNS.len();
    (0..schema::RECORD_COLUMNS.len()).chain(fixed..file_schema.fields().len()).collect()
}

/// What SQL sees of a file schema: [`sql_columns`], with the JSON columns' strings as
/// `Utf8View` (DataFusion's fast string type, which its Parquet reader produces directly).
///
/// # Errors
/// Never for a schema [`schema::file_schema`] made.
pub fn sql_schema(file_schema: &arrow::datatypes::Schema) -> Result<SchemaRef> {
    let projected = file_schema.project(&sql_columns(file_schema))?;
    let fields: Vec<arrow::datatypes::FieldRef> = projected
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| match f.data_type() {
            DataType::Utf8 if i >= schema::RECORD_COLUMNS.len() => {
                Arc::new(f.as_ref().clone().with_data_type(DataType::Utf8View))
            }
            _ => Arc::clone(f),
        })
        .collect();
    Ok(Arc::new(arrow::datatypes::Schema::new(fields)))
}

/// One topic's table.
#[derive(Debug)]
pub struct TopicTable {
    topic: String,
    partitions: i32,
    sources: Sources,
    json: Option<JsonType>,
    /// The full layout of a tiered file with this table's JSON columns.
    file_schema: SchemaRef,
    /// What SQL sees.
    schema: SchemaRef,
}

impl TopicTable {
    /// The table of `topic`, with the JSON columns its newest remote files and the start
    /// of its local tail have.
    ///
    /// # Errors
    /// The topic is gone, or a remote footer cannot be read.
    pub async fn open(sources: Sources, topic: &str) -> Result<Self> {
        let description = sources
            .logs
            .topic(topic)
            .ok_or_else(|| DataFusionError::Plan(format!("table '{topic}' not found: no such topic")))?;
        let config = sources.logs.topic_config(topic).map_err(|e| DataFusionError::External(Box::new(e)))?;
        let mut json = JsonType::Null;
        for partition in 0..description.partitions {
            let tp = TopicPartition::new(topic, partition);
            if let Some(tier) = &sources.tier
                && let Some(columns) =
                    tier.json_columns(&tp).await.map_err(|e| DataFusionError::External(Box::new(e)))?
            {
                json = json.widen(&columns);
            }
            if config.value_format == crate::log::ValueFormat::Json
                && let Some(log) = sources.logs.log(&tp)
            {
                json = infer_tail_json(&log, json);
            }
        }
        let json = Some(json).filter(|t| matches!(t, JsonType::Object(fields) if !fields.is_empty()));
        let file_schema = schema::file_schema(json.as_ref());
        let schema = sql_schema(&file_schema)?;
        Ok(Self { topic: topic.to_string(), partitions: description.partitions, sources, json, file_schema, schema })
    }
}

/// What the filters say about where to look.
#[derive(Debug, Clone)]
struct Bounds {
    partitions: Option<Vec<i32>>,
    /// Offsets `[low, high)`.
    offsets: (i64, i64),
    /// Timestamps `[low, high]`, in milliseconds.
    timestamps: (i64, i64),
}

impl Bounds {
    fn from_filters(filters: &[Expr]) -> Self {
        let mut bounds = Self { partitions: None, offsets: (i64::MIN, i64::MAX), timestamps: (i64::MIN, i64::MAX) };
        for filter in filters {
            bounds.narrow(filter);
        }
        bounds
    }

    fn narrow(&mut self, expr: &Expr) {
        match expr {
            Expr::BinaryExpr(BinaryExpr { left, op: Operator::And, right }) => {
                self.narrow(left);
                self.narrow(right);
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (column, op, value) = match (column_of(left), literal_of(right), column_of(right), literal_of(left))
                {
                    (Some(c), Some(v), _, _) => (c, *op, v),
                    (_, _, Some(c), Some(v)) => match op.swap() {
                        Some(op) => (c, op, v),
                        None => return,
                    },
                    _ => return,
                };
                self.compare(column, op, value);
            }
            Expr::Between(Between { expr, negated: false, low, high }) => {
                if let (Some(column), Some(low), Some(high)) = (column_of(expr), literal_of(low), literal_of(high)) {
                    self.compare(column, Operator::GtEq, low);
                    self.compare(column, Operator::LtEq, high);
                }
            }
            Expr::InList(list) if !list.negated && column_of(&list.expr) == Some(schema::PARTITION) => {
                let values: Option<Vec<i32>> = list.list.iter().map(|e| literal_of(e).and_then(as_i32)).collect();
                if let Some(values) = values {
                    self.keep_partitions(values);
                }
            }
            _ => {}
        }
    }

    fn compare(&mut self, column: &str, op: Operator, value: &ScalarValue) {
        match column {
            schema::PARTITION => {
                if let (Operator::Eq, Some(p)) = (op, as_i32(value)) {
                    self.keep_partitions(vec![p]);
                }
            }
            schema::OFFSET => {
                if let Some(v) = as_i64(value) {
                    narrow_range(&mut self.offsets, op, v, true);
                }
            }
            schema::TIMESTAMP => {
                if let Some(v) = as_millis(value) {
                    narrow_range(&mut self.timestamps, op, v, false);
                }
            }
            _ => {}
        }
    }

    fn keep_partitions(&mut self, values: Vec<i32>) {
        self.partitions = Some(match self.partitions.take() {
            None => values,
            Some(existing) => existing.into_iter().filter(|p| values.contains(p)).collect(),
        });
    }
}

/// Narrows `[low, high)` (offsets, `exclusive_high`) or `[low, high]` (timestamps).
fn narrow_range(range: &mut (i64, i64), op: Operator, v: i64, exclusive_high: bool) {
    let up = |v: i64| if exclusive_high { v.saturating_add(1) } else { v };
    match op {
        Operator::Eq => {
            range.0 = range.0.max(v);
            range.1 = range.1.min(up(v));
        }
        Operator::Gt => range.0 = range.0.max(v.saturating_add(1)),
        Operator::GtEq => range.0 = range.0.max(v),
        Operator::Lt => range.1 = range.1.min(if exclusive_high { v } else { v.saturating_sub(1) }),
        Operator::LtEq => range.1 = range.1.min(up(v)),
        _ => {}
    }
}

fn column_of(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Column(column) => Some(column.name.as_str()),
        Expr::Cast(cast) => column_of(&cast.expr),
        _ => None,
    }
}

fn literal_of(expr: &Expr) -> Option<&ScalarValue> {
    match expr {
        Expr::Literal(value, _) => Some(value),
        _ => None,
    }
}

fn as_i64(value: &ScalarValue) -> Option<i64> {
    match value.cast_to(&DataType::Int64).ok()? {
        ScalarValue::Int64(v) => v,
        _ => None,
    }
}

fn as_i32(value: &ScalarValue) -> Option<i32> {
    as_i64(value).and_then(|v| i32::try_from(v).ok())
}

fn as_millis(value: &ScalarValue) -> Option<i64> {
    match value.cast_to(&DataType::Timestamp(TimeUnit::Millisecond, None)).ok()? {
        ScalarValue::TimestampMillisecond(v, _) => v,
        _ => None,
    }
}

#[async_trait]
impl TableProvider for TopicTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let bounds = Bounds::from_filters(filters);
        let mut files = Vec::new();
        let mut tails: Vec<Arc<dyn PartitionStream>> = Vec::new();
        // Partitions whose remote start lies inside their first file: rows below it are gone.
        let mut hidden_below: Vec<(i32, i64)> = Vec::new();
        for partition in 0..self.partitions {
            if bounds.partitions.as_ref().is_some_and(|wanted| !wanted.contains(&partition)) {
                continue;
            }
            let tp = TopicPartition::new(self.topic.clone(), partition);
            let Some(log) = self.sources.logs.log(&tp) else { continue };
            let high_watermark = self.sources.visibility.high_watermark(&tp, &log);
            let mut tail_from = log.log_start();
            if let Some(tier) = &self.sources.tier
                && let Some(manifest) = tier.manifest(&tp)
                && let (Some(start), Some(end)) = (manifest.start(), manifest.end())
            {
                tail_from = tail_from.max(end);
                if manifest.files.first().is_some_and(|f| f.base_offset < start) {
                    hidden_below.push((partition, start));
                }
                for file in &manifest.files {
                    let wanted = file.next_offset > start.max(bounds.offsets.0)
                        && file.base_offset < bounds.offsets.1
                        && file.max_timestamp >= bounds.timestamps.0
                        && file.min_timestamp <= bounds.timestamps.1;
                    if wanted && let Some(path) = tier.file_path(&tp, file) {
                        files.push(PartitionedFile::new(path.to_string(), file.size));
                    }
                }
            }
            let from = tail_from.max(bounds.offsets.0);
            let to = high_watermark.min(bounds.offsets.1);
            if from < to {
                tails.push(Arc::new(TailPartition::new(
                    log,
                    partition,
                    from..to,
                    high_watermark,
                    bounds.timestamps,
                    self.json.clone(),
                    Arc::clone(&self.file_schema),
                    Arc::clone(&self.schema),
                    state.config().batch_size(),
                    projection,
                )));
            }
        }

        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if !files.is_empty() {
            inputs.push(self.parquet_scan(state, files, projection, filters, limit, &hidden_below)?);
        }
        if !tails.is_empty() {
            let tail = StreamingTableExec::try_new(Arc::clone(&self.schema), tails, projection, [], false, limit)?;
            inputs.push(Arc::new(tail));
        }
        match inputs.len() {
            0 => {
                let projected = match projection {
                    Some(columns) => Arc::new(self.schema.project(columns)?),
                    None => Arc::clone(&self.schema),
                };
                Ok(Arc::new(EmptyExec::new(projected)))
            }
            _ => UnionExec::try_new(inputs),
        }
    }
}

impl TopicTable {
    /// The Parquet half of a scan: DataFusion's reader over the chosen files, given every
    /// filter for row-group pruning.
    fn parquet_scan(
        &self,
        state: &dyn Session,
        files: Vec<PartitionedFile>,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
        hidden_below: &[(i32, i64)],
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let df_schema = DFSchema::try_from(Arc::clone(&self.schema))?;
        // The session's Parquet settings, as a listing table would use them.
        let mut source = ParquetSource::new(Arc::clone(&self.schema))
            .with_table_parquet_options(state.table_options().parquet.clone());
        if let Some(predicate) = filters.iter().cloned().reduce(|a, b| a.and(b)) {
            source = source.with_predicate(state.create_physical_expr(predicate, &df_schema)?);
        }
        let groups = split_into_groups(files, state.config().target_partitions());
        // Rows below a partition's start (DeleteRecords, retention inside a file) are
        // dropped here; the limit then applies above the filter.
        let hide = hidden_below
            .iter()
            .map(|(p, start)| col(schema::PARTITION).eq(lit(*p)).and(col(schema::OFFSET).lt(lit(*start))).not())
            .reduce(|a, b| a.and(b));
        let (scan_projection, scan_limit) = if hide.is_some() { (None, None) } else { (projection.cloned(), limit) };
        let config = FileScanConfigBuilder::new(ObjectStoreUrl::parse(TIER_STORE_URL)?, Arc::new(source))
            .with_file_groups(groups)
            .with_projection_indices(scan_projection)?
            .with_limit(scan_limit)
            .build();
        let scan: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(config);
        let Some(hide) = hide else { return Ok(scan) };
        let filtered = FilterExecBuilder::new(state.create_physical_expr(hide, &df_schema)?, scan)
            .apply_projection(projection.cloned())?
            .build()?;
        Ok(Arc::new(filtered))
    }
}

/// Spreads files over `n` groups of about equal bytes, so the scan runs on every thread.
fn split_into_groups(mut files: Vec<PartitionedFile>, n: usize) -> Vec<FileGroup> {
    let n = n.max(1).min(files.len().max(1));
    files.sort_by_key(|f| std::cmp::Reverse(f.object_meta.size));
    let mut groups: Vec<(u64, Vec<PartitionedFile>)> = (0..n).map(|_| (0, Vec::new())).collect();
    for file in files {
        let lightest = groups.iter_mut().min_by_key(|(bytes, _)| *bytes).expect("at least one group");
        lightest.0 += file.object_meta.size;
        lightest.1.push(file);
    }
    groups.into_iter().filter(|(_, f)| !f.is_empty()).map(|(_, f)| FileGroup::new(f)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{col, lit};

    #[test]
    fn filters_bound_partitions_offsets_and_timestamps() {
        let filters = vec![
            col("partition").eq(lit(1i32)).and(col("offset").gt_eq(lit(10i64))),
            lit(100i64).gt(col("offset")),
            col("timestamp").between(
                lit(ScalarValue::TimestampMillisecond(Some(5), None)),
                lit(ScalarValue::TimestampMillisecond(Some(9), None)),
            ),
            col("value").is_not_null(),
        ];
        let bounds = Bounds::from_filters(&filters);
        assert_eq!(bounds.partitions, Some(vec![1]));
        assert_eq!(bounds.offsets, (10, 100));
        assert_eq!(bounds.timestamps, (5, 9));
        let listed = Bounds::from_filters(&[col("partition").in_list(vec![lit(0), lit(2)], false)]);
        assert_eq!(listed.partitions, Some(vec![0, 2]));
        let exact = Bounds::from_filters(&[col("offset").eq(lit(7i64))]);
        assert_eq!(exact.offsets, (7, 8));
    }
}
