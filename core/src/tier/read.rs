//! Remote reads: a fetch below the local log start, and ListOffsets by time over remote
//! history. Ranged reads only: a file's footer (cached), then the column chunks of one
//! row group, chosen by the row groups' offset or timestamp statistics.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Int64Type, TimestampMillisecondType};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, TryFutureExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::statistics::Statistics;

use super::TierError;
use super::convert::{RebuiltBatches, rebuild_batches};
use super::manager::{FOOTERS_MAX, TierManager};
use super::schema;
use crate::log::TopicPartition;

impl TierManager {
    /// Whole batches from remote storage starting with the one that holds `offset` (or
    /// the first after it), up to `max_bytes` but at least one batch. `None` when remote
    /// storage has nothing at or after `offset` (or `offset` is below its start).
    ///
    /// # Errors
    /// The object store or a file failed.
    pub async fn read(&self, tp: &TopicPartition, offset: i64, max_bytes: usize) -> Result<Option<Bytes>, TierError> {
        let Some(part) = self.loaded(tp) else { return Ok(None) };
        let manifest = part.manifest();
        if manifest.start().is_none_or(|start| offset < start) {
            return Ok(None);
        }
        let Some(first) = manifest.file_index(offset) else { return Ok(None) };
        for file in &manifest.files[first..] {
            let object = part.folder.clone().join(file.name.as_str());
            let footer = self.footer(&object, file.size).await?;
            let column = column_index(&footer, schema::OFFSET)?;
            for row_group in 0..footer.metadata().num_row_groups() {
                if max_statistic(&footer, row_group, column).is_some_and(|max| max < offset) {
                    continue;
                }
                let rebuilt = self.row_group(&object, file.size, &footer, row_group).await?;
                if let Some(bytes) = rebuilt.slice_from(offset, max_bytes) {
                    ::metrics::counter!(crate::metrics::TIER_READ_BYTES, "topic" => tp.topic.clone())
                        .increment(bytes.len() as u64);
                    return Ok(Some(bytes));
                }
            }
        }
        Ok(None)
    }

    /// The first remote offset at or after the log start whose timestamp is at least
    /// `timestamp`, with that timestamp (ListOffsets by time). `None` if remote storage
    /// has none.
    ///
    /// # Errors
    /// The object store or a file failed.
    pub async fn offset_for_timestamp(
        &self,
        tp: &TopicPartition,
        timestamp: i64,
    ) -> Result<Option<(i64, i64)>, TierError> {
        let Some(part) = self.loaded(tp) else { return Ok(None) };
        let manifest = part.manifest();
        let Some(start) = manifest.start() else { return Ok(None) };
        for file in manifest.files.iter().filter(|f| f.max_timestamp >= timestamp && f.next_offset > start) {
            let object = part.folder.clone().join(file.name.as_str());
            let footer = self.footer(&object, file.size).await?;
            let column = column_index(&footer, schema::TIMESTAMP)?;
            for row_group in 0..footer.metadata().num_row_groups() {
                if max_statistic(&footer, row_group, column).is_some_and(|max| max < timestamp) {
                    continue;
                }
                let offset_column = column_index(&footer, schema::OFFSET)?;
                let rows = self.read_columns(&object, file.size, &footer, row_group, &[offset_column, column]).await?;
                let offsets = rows.column(0).as_primitive::<Int64Type>();
                let timestamps = rows.column(1).as_primitive::<TimestampMillisecondType>();
                for row in 0..rows.num_rows() {
                    if timestamps.value(row) >= timestamp && offsets.value(row) >= start {
                        return Ok(Some((offsets.value(row), timestamps.value(row))));
                    }
                }
            }
        }
        Ok(None)
    }

    /// The largest record timestamp in remote storage.
    pub fn max_timestamp(&self, tp: &TopicPartition) -> Option<i64> {
        let manifest = self.manifest(tp)?;
        manifest.files.iter().map(|f| f.max_timestamp).max().filter(|t| *t >= 0)
    }

    /// A file's footer: schema, row groups and their statistics.
    pub(super) async fn footer(&self, object: &Path, size: u64) -> Result<ArrowReaderMetadata, TierError> {
        let key = object.to_string();
        if let Some(found) = self.footers.lock().expect("footers lock").get(&key) {
            return Ok(found.clone());
        }
        let mut reader = RemoteFileReader { store: Arc::clone(&self.store.store), path: object.clone(), size };
        let footer = ArrowReaderMetadata::load_async(&mut reader, ArrowReaderOptions::new()).await?;
        let mut footers = self.footers.lock().expect("footers lock");
        if footers.len() >= FOOTERS_MAX {
            footers.clear();
        }
        footers.insert(key, footer.clone());
        Ok(footer)
    }

    /// One row group's batches, rebuilt (cached).
    async fn row_group(
        &self,
        object: &Path,
        size: u64,
        footer: &ArrowReaderMetadata,
        row_group: usize,
    ) -> Result<Arc<RebuiltBatches>, TierError> {
        let key = (object.to_string(), row_group);
        if let Some(hit) = self.cache.get(&key) {
            return Ok(hit);
        }
        let columns: Vec<usize> = (0..schema::FIXED_COLUMNS.len()).collect();
        let rows = self.read_columns(object, size, footer, row_group, &columns).await?;
        let rebuilt = Arc::new(tokio::task::spawn_blocking(move || rebuild_batches(&rows)).await??);
        self.cache.insert(key, Arc::clone(&rebuilt));
        Ok(rebuilt)
    }

    /// Some top-level columns of one row group, as one Arrow batch.
    async fn read_columns(
        &self,
        object: &Path,
        size: u64,
        footer: &ArrowReaderMetadata,
        row_group: usize,
        columns: &[usize],
    ) -> Result<RecordBatch, TierError> {
        let rows = footer.metadata().row_group(row_group).num_rows().max(1) as usize;
        let reader = RemoteFileReader { store: Arc::clone(&self.store.store), path: object.clone(), size };
        let mask = ProjectionMask::roots(footer.metadata().file_metadata().schema_descr(), columns.iter().copied());
        let stream = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, footer.clone())
            .with_row_groups(vec![row_group])
            .with_projection(mask)
            .with_batch_size(rows)
            .build()?;
        let schema = stream.schema().clone();
        let batches: Vec<RecordBatch> = stream.try_collect().await?;
        Ok(match batches.len() {
            1 => batches.into_iter().next().expect("one batch"),
            _ => arrow::compute::concat_batches(&schema, &batches)?,
        })
    }
}

/// The index of a top-level column, which is also its leaf index: the record columns
/// looked up here are all flat and come before the nested `headers`.
fn column_index(footer: &ArrowReaderMetadata, name: &str) -> Result<usize, TierError> {
    let index =
        footer.schema().index_of(name).map_err(|_| TierError::Internal { reason: "a tiered file lacks a column" })?;
    debug_assert!(index < schema::RECORD_COLUMNS.iter().position(|c| *c == schema::HEADERS).unwrap_or(usize::MAX));
    Ok(index)
}

/// The largest value of an INT64 column (offsets, timestamps) in one row group.
fn max_statistic(footer: &ArrowReaderMetadata, row_group: usize, column: usize) -> Option<i64> {
    match footer.metadata().row_group(row_group).column(column).statistics()? {
        Statistics::Int64(stats) => stats.max_opt().copied(),
        _ => None,
    }
}

/// Ranged reads of one remote file whose size the manifest gives, so no request asks
/// for it.
#[derive(Debug, Clone)]
struct RemoteFileReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

fn parquet_error(error: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(error))
}

impl AsyncFileReader for RemoteFileReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        self.store.get_range(&self.path, range).map_err(parquet_error).boxed()
    }

    fn get_byte_ranges(&mut self, ranges: Vec<Range<u64>>) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move { self.store.get_ranges(&self.path, &ranges).await.map_err(parquet_error) }.boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let metadata =
                ParquetMetaDataReader::new().with_arrow_reader_options(options).load_and_finish(self, size).await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}
