//! The local tail of a partition as Arrow batches: its batches read from the segments
//! (as a fetch reads them) between two offsets, decoded into the tiered layout, and
//! projected to the SQL columns. Batches whose newest record is older than the query's
//! time bound are skipped without decoding.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;

use super::table::sql_columns;
use crate::log::cleaner::MAX_DECOMPRESSED_BYTES;
use crate::log::{Log, LogError};
use crate::record::BatchIter;
use crate::tier::convert::{RowsBuilder, Wanted};
use crate::tier::schema::JsonType;

/// Bytes of batches read from the log at a time.
const READ_BYTES: usize = 1 << 20;
/// Bytes of values the JSON columns are inferred from, per partition.
const INFER_BYTES: usize = 2 << 20;

/// One partition's local records in `[offsets.start, offsets.end)`, reading no batch
/// that reaches `high_watermark`.
#[derive(Debug)]
pub struct TailPartition {
    log: Arc<Log>,
    partition: i32,
    offsets: Range<i64>,
    high_watermark: i64,
    timestamps: (i64, i64),
    json: Option<JsonType>,
    file_schema: SchemaRef,
    schema: SchemaRef,
    batch_rows: usize,
    wanted: Wanted,
}

impl TailPartition {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        log: Arc<Log>,
        partition: i32,
        offsets: Range<i64>,
        high_watermark: i64,
        timestamps: (i64, i64),
        json: Option<JsonType>,
        file_schema: SchemaRef,
        schema: SchemaRef,
        batch_rows: usize,
        projection: Option<&Vec<usize>>,
    ) -> Self {
        let batch_rows = batch_rows.max(1);
        // Columns of the SQL schema: 3 key, 4 value, 5 headers, then the JSON ones.
        let reads = |column: usize| projection.is_none_or(|p| p.contains(&column));
        let reads_json = projection.is_none_or(|p| p.iter().any(|c| *c > 5));
        let wanted = Wanted { key: reads(3), value: reads(4), headers: reads(5), json: reads_json };
        Self { log, partition, offsets, high_watermark, timestamps, json, file_schema, schema, batch_rows, wanted }
    }
}

impl PartitionStream for TailPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _context: Arc<TaskContext>) -> SendableRecordBatchStream {
        let reader = TailReader {
            log: Arc::clone(&self.log),
            partition: self.partition,
            cursor: self.offsets.start,
            end: self.offsets.end,
            high_watermark: self.high_watermark,
            min_timestamp: self.timestamps.0,
            json: self.json.clone(),
            file_schema: Arc::clone(&self.file_schema),
            columns: sql_columns(&self.file_schema),
            schema: Arc::clone(&self.schema),
            batch_rows: self.batch_rows,
            wanted: self.wanted,
            done: false,
        };
        let stream = futures::stream::unfold(reader, |mut reader| async move {
            match reader.next_batch() {
                Ok(Some(batch)) => Some((Ok(batch), reader)),
                Ok(None) => None,
                Err(error) => {
                    reader.done = true;
                    Some((Err(error), reader))
                }
            }
        });
        Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&self.schema), stream))
    }
}

struct TailReader {
    log: Arc<Log>,
    partition: i32,
    cursor: i64,
    end: i64,
    high_watermark: i64,
    min_timestamp: i64,
    json: Option<JsonType>,
    file_schema: SchemaRef,
    columns: Vec<usize>,
    schema: SchemaRef,
    batch_rows: usize,
    wanted: Wanted,
    done: bool,
}

impl TailReader {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>, DataFusionError> {
        let external = |e: Box<dyn std::error::Error + Send + Sync>| DataFusionError::External(e);
        let mut rows = RowsBuilder::new(self.partition, self.json.as_ref()).with_wanted(self.wanted);
        while !self.done && self.cursor < self.end && rows.len() < self.batch_rows {
            // Whole batches up to the high watermark; records past `end` are dropped below.
            let read = match self.log.read(self.cursor, Some(self.high_watermark), READ_BYTES) {
                Ok(read) => read,
                // Retention moved the start past the cursor meanwhile: go on from there.
                Err(LogError::OffsetOutOfRange { log_start, .. }) if self.cursor < log_start => {
                    self.cursor = log_start;
                    continue;
                }
                Err(error) => return Err(external(Box::new(error))),
            };
            if read.records.is_empty() {
                self.done = true;
                break;
            }
            for batch in BatchIter::new(&read.records) {
                let batch = batch.map_err(|e| external(Box::new(e)))?;
                let next = batch.next_offset();
                if batch.max_timestamp() >= self.min_timestamp && !batch.is_control() {
                    rows.push_batch(&batch, self.cursor..self.end).map_err(|e| external(Box::new(e)))?;
                }
                self.cursor = self.cursor.max(next);
            }
        }
        if rows.len() == 0 {
            return Ok(None);
        }
        let batch = rows.finish(&self.file_schema).map_err(|e| external(Box::new(e)))?.project(&self.columns)?;
        // The SQL schema's types (strings as views) where the builder's differ.
        let columns = batch
            .columns()
            .iter()
            .zip(self.schema.fields())
            .map(|(column, field)| {
                if column.data_type() == field.data_type() {
                    Ok(Arc::clone(column))
                } else {
                    arrow::compute::cast(column, field.data_type())
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(RecordBatch::try_new(Arc::clone(&self.schema), columns)?))
    }
}

/// Widens `json` with the values at the start of the partition's local tail (what is
/// not in remote files yet), reading at most [`INFER_BYTES`].
pub fn infer_tail_json(log: &Log, mut json: JsonType) -> JsonType {
    let mut cursor = log.remote_end().max(log.log_start());
    let mut budget = INFER_BYTES;
    while budget > 0 {
        let Ok(read) = log.read(cursor, None, READ_BYTES.min(budget)) else { break };
        if read.records.is_empty() {
            break;
        }
        budget = budget.saturating_sub(read.records.len());
        for batch in BatchIter::new(&read.records).map_while(Result::ok) {
            cursor = batch.next_offset();
            if batch.is_control() {
                continue;
            }
            let Ok(records) = batch.records(MAX_DECOMPRESSED_BYTES) else { continue };
            for record in records.iter().map_while(Result::ok) {
                if let Some(value) = record.value {
                    json.observe_bytes(value);
                }
            }
        }
    }
    json
}
