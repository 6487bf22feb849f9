//! Segment to Parquet, and Parquet rows back to record batches.
//!
//! A sealed segment becomes one Parquet file, one row per record (see [`super::schema`]).
//! Row groups end only between batches, after about [`ConvertOptions::row_group_bytes`]
//! of keys and values, so a remote fetch decodes one row group and rebuilds whole
//! batches from it. Row groups carry min / max statistics of every column, offsets and
//! timestamps among them, for pruning.
//!
//! Rebuilt batches hold the same records (offsets, timestamps, keys, values, headers)
//! and batch fields (leader epoch, producer id / epoch / base sequence, transactional and
//! control flags, timestamp type) as the originals, uncompressed: what a consumer sees is
//! identical; the bytes on the wire are not the producer's.

use std::io::Write;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, BooleanBuilder, Int8Builder, Int16Builder, Int32Builder, Int64Builder,
    ListBuilder, RecordBatch, StringBuilder, StructBuilder, TimestampMillisecondBuilder,
};
use arrow::datatypes::{Field, Int8Type, Int16Type, Int32Type, Int64Type, Schema, SchemaRef, TimestampMillisecondType};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as ParquetCompression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde_json::Value;

use super::TierError;
use super::schema::{self, JsonType};
use crate::log::ValueFormat;
use crate::log::cleaner::MAX_DECOMPRESSED_BYTES;
use crate::record::{BatchBuilder, BatchIter, Compression, NewRecord};

/// How files are laid out.
#[derive(Debug, Clone, Copy)]
pub struct ConvertOptions {
    /// End a row group (at the next batch boundary) after this many bytes of keys and values.
    pub row_group_bytes: usize,
    /// ... or after this many records.
    pub row_group_rows: usize,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        Self { row_group_bytes: 4 << 20, row_group_rows: 64 * 1024 }
    }
}

/// What a conversion wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    pub records: u64,
    pub row_groups: usize,
    /// The smallest and largest record timestamps (-1 when there is no record).
    pub min_timestamp: i64,
    pub max_timestamp: i64,
    /// The typed JSON columns the file has (the previous file's, widened).
    pub json: Option<JsonType>,
}

/// Writes the records of `segment` (whole batches, as stored) as Parquet to `out`.
/// `previous_json` is the JSON type of the partition's last file, which this file's only
/// widens.
///
/// # Errors
/// [`TierError::Corrupt`] for a batch that does not decode, [`TierError::Parquet`].
pub fn write_segment(
    segment: &[u8],
    partition: i32,
    format: ValueFormat,
    previous_json: Option<&JsonType>,
    options: ConvertOptions,
    out: impl Write + Send,
) -> Result<Converted, TierError> {
    let json = match format {
        ValueFormat::Json => infer_json(segment, previous_json.cloned().unwrap_or(JsonType::Null))?,
        ValueFormat::Bytes => previous_json.cloned(),
    }
    .filter(|t| matches!(t, JsonType::Object(fields) if !fields.is_empty()));
    let schema = schema::file_schema(json.as_ref());
    let properties = WriterProperties::builder()
        .set_compression(ParquetCompression::ZSTD(ZstdLevel::try_new(1).expect("zstd level 1 is valid")))
        .set_max_row_group_row_count(Some(options.row_group_rows.max(1)))
        .set_created_by(format!("headwater {}", env!("CARGO_PKG_VERSION")))
        .build();
    let mut writer = ArrowWriter::try_new(out, Arc::clone(&schema), Some(properties))?;
    let mut chunk = RowsBuilder::new(partition, json.as_ref());
    let mut converted =
        Converted { records: 0, row_groups: 0, min_timestamp: -1, max_timestamp: -1, json: json.clone() };
    for batch in BatchIter::new(segment) {
        let batch = batch.map_err(|source| TierError::Corrupt { reason: "undecodable batch in segment", source })?;
        let rows = chunk.push_batch(&batch, i64::MIN..i64::MAX)?;
        if rows.records > 0 {
            if converted.records == 0 || rows.min_timestamp < converted.min_timestamp {
                converted.min_timestamp = rows.min_timestamp;
            }
            converted.max_timestamp = converted.max_timestamp.max(rows.max_timestamp);
            converted.records += rows.records;
        }
        if chunk.bytes >= options.row_group_bytes || chunk.rows >= options.row_group_rows {
            writer.write(&chunk.finish(&schema)?)?;
            writer.flush()?;
            converted.row_groups += 1;
        }
    }
    if chunk.rows > 0 {
        writer.write(&chunk.finish(&schema)?)?;
        converted.row_groups += 1;
    }
    writer.close()?;
    Ok(converted)
}

/// The JSON type of a segment's values, widened from `start`.
fn infer_json(segment: &[u8], start: JsonType) -> Result<Option<JsonType>, TierError> {
    let mut ty = start;
    for batch in BatchIter::new(segment) {
        let batch = batch.map_err(|source| TierError::Corrupt { reason: "undecodable batch in segment", source })?;
        if batch.is_control() {
            continue;
        }
        let records = batch
            .records(MAX_DECOMPRESSED_BYTES)
            .map_err(|source| TierError::Corrupt { reason: "undecodable records in segment", source })?;
        for record in records.iter().map_while(Result::ok) {
            if let Some(value) = record.value {
                ty.observe_bytes(value);
            }
        }
    }
    Ok(Some(ty))
}

/// The fields of the batch a record came from.
#[derive(Debug, Clone, Copy)]
struct BatchFields {
    base_offset: i64,
    last_offset: i64,
    leader_epoch: i32,
    base_sequence: i32,
    producer_id: i64,
    producer_epoch: i16,
    transactional: bool,
    control: bool,
    log_append_time: bool,
}

/// What one batch added to a [`RowsBuilder`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BatchRows {
    pub records: u64,
    pub min_timestamp: i64,
    pub max_timestamp: i64,
}

/// Which of the costly columns a [`RowsBuilder`] fills. A scan that does not read a column
/// gets NULLs there (and empty header lists) and skips its decoding.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wanted {
    pub key: bool,
    pub value: bool,
    pub headers: bool,
    pub json: bool,
}

impl Wanted {
    pub(crate) const ALL: Self = Self { key: true, value: true, headers: true, json: true };
}

/// Rows in the tiered layout, column by column: a row group being written, or (for SQL)
/// the local tail being scanned.
pub(crate) struct RowsBuilder<'a> {
    partition: i32,
    json: Option<&'a JsonType>,
    wanted: Wanted,
    rows: usize,
    bytes: usize,
    partitions: Int32Builder,
    offsets: Int64Builder,
    timestamps: TimestampMillisecondBuilder,
    keys: BinaryBuilder,
    values: BinaryBuilder,
    headers: ListBuilder<StructBuilder>,
    batch_offsets: Int64Builder,
    batch_last_offsets: Int64Builder,
    leader_epochs: Int32Builder,
    base_sequences: Int32Builder,
    producer_ids: Int64Builder,
    producer_epochs: Int16Builder,
    transactional: BooleanBuilder,
    control: BooleanBuilder,
    timestamp_types: Int8Builder,
    /// The values for the JSON columns, newline-separated (`{}` for a row that is not an
    /// object), and where each row's ends.
    json_text: Vec<u8>,
    json_ends: Vec<usize>,
}

impl<'a> RowsBuilder<'a> {
    pub(crate) fn new(partition: i32, json: Option<&'a JsonType>) -> Self {
        let header = StructBuilder::new(
            schema::header_fields(),
            vec![Box::new(StringBuilder::new()), Box::new(BinaryBuilder::new())],
        );
        let item = Field::new("item", arrow::datatypes::DataType::Struct(schema::header_fields()), false);
        Self {
            partition,
            json,
            wanted: Wanted::ALL,
            rows: 0,
            bytes: 0,
            partitions: Int32Builder::new(),
            offsets: Int64Builder::new(),
            timestamps: TimestampMillisecondBuilder::new().with_timezone("UTC"),
            keys: BinaryBuilder::new(),
            values: BinaryBuilder::new(),
            headers: ListBuilder::new(header).with_field(Arc::new(item)),
            batch_offsets: Int64Builder::new(),
            batch_last_offsets: Int64Builder::new(),
            leader_epochs: Int32Builder::new(),
            base_sequences: Int32Builder::new(),
            producer_ids: Int64Builder::new(),
            producer_epochs: Int16Builder::new(),
            transactional: BooleanBuilder::new(),
            control: BooleanBuilder::new(),
            timestamp_types: Int8Builder::new(),
            json_text: Vec::new(),
            json_ends: Vec::new(),
        }
    }

    /// Fills only the `wanted` costly columns.
    #[cfg_attr(not(feature = "sql"), allow(dead_code))]
    pub(crate) fn with_wanted(mut self, wanted: Wanted) -> Self {
        self.wanted = wanted;
        self
    }

    /// Rows so far.
    #[cfg_attr(not(feature = "sql"), allow(dead_code))]
    pub(crate) fn len(&self) -> usize {
        self.rows
    }

    /// Adds the records of `batch` whose offsets lie in `offsets`.
    ///
    /// # Errors
    /// [`TierError::Corrupt`] for records that do not decode.
    pub(crate) fn push_batch(
        &mut self,
        batch: &crate::record::RecordBatch<'_>,
        offsets: std::ops::Range<i64>,
    ) -> Result<BatchRows, TierError> {
        let records = batch
            .records(MAX_DECOMPRESSED_BYTES)
            .map_err(|source| TierError::Corrupt { reason: "undecodable records in segment", source })?;
        let fields = BatchFields {
            base_offset: batch.base_offset(),
            last_offset: batch.last_offset(),
            leader_epoch: batch.partition_leader_epoch(),
            base_sequence: batch.base_sequence(),
            producer_id: batch.producer_id(),
            producer_epoch: batch.producer_epoch(),
            transactional: batch.is_transactional(),
            control: batch.is_control(),
            log_append_time: batch.is_log_append_time(),
        };
        let mut rows = BatchRows { records: 0, min_timestamp: -1, max_timestamp: -1 };
        for record in records.iter() {
            let record =
                record.map_err(|source| TierError::Corrupt { reason: "undecodable record in segment", source })?;
            if !offsets.contains(&record.offset) {
                continue;
            }
            // A log-append-time batch's records all carry the broker's time.
            let timestamp = if fields.log_append_time { batch.max_timestamp() } else { record.timestamp };
            if rows.records == 0 || timestamp < rows.min_timestamp {
                rows.min_timestamp = timestamp;
            }
            rows.max_timestamp = rows.max_timestamp.max(timestamp);
            rows.records += 1;
            self.push(&fields, record.offset, timestamp, record.key, record.value, &record.headers);
        }
        Ok(rows)
    }

    fn push(
        &mut self,
        batch: &BatchFields,
        offset: i64,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &crate::record::Headers<'_>,
    ) {
        self.rows += 1;
        self.bytes += key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len);
        self.partitions.append_value(self.partition);
        self.offsets.append_value(offset);
        self.timestamps.append_value(timestamp);
        self.keys.append_option(key.filter(|_| self.wanted.key));
        self.values.append_option(value.filter(|_| self.wanted.value));
        for header in headers.iter().filter(|_| self.wanted.headers) {
            let entry = self.headers.values();
            entry
                .field_builder::<StringBuilder>(0)
                .expect("header key")
                .append_value(String::from_utf8_lossy(header.key));
            entry.field_builder::<BinaryBuilder>(1).expect("header value").append_option(header.value);
            entry.append(true);
        }
        self.headers.append(true);
        self.batch_offsets.append_value(batch.base_offset);
        self.batch_last_offsets.append_value(batch.last_offset);
        self.leader_epochs.append_value(batch.leader_epoch);
        self.base_sequences.append_value(batch.base_sequence);
        self.producer_ids.append_value(batch.producer_id);
        self.producer_epochs.append_value(batch.producer_epoch);
        self.transactional.append_value(batch.transactional);
        self.control.append_value(batch.control);
        self.timestamp_types.append_value(i8::from(batch.log_append_time));
        if self.json.is_some() && self.wanted.json {
            match value.filter(|v| !batch.control && v.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')) {
                Some(object) => self.json_text.extend_from_slice(object),
                None => self.json_text.extend_from_slice(b"{}"),
            }
            self.json_text.push(b'\n');
            self.json_ends.push(self.json_text.len());
        }
    }

    /// The rows so far as one Arrow batch of `schema` (a file schema with this builder's
    /// JSON type); the builders start empty again.
    pub(crate) fn finish(&mut self, schema: &SchemaRef) -> Result<RecordBatch, TierError> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.partitions.finish()),
            Arc::new(self.offsets.finish()),
            Arc::new(self.timestamps.finish()),
            Arc::new(self.keys.finish()),
            Arc::new(self.values.finish()),
            Arc::new(self.headers.finish()),
            Arc::new(self.batch_offsets.finish()),
            Arc::new(self.batch_last_offsets.finish()),
            Arc::new(self.leader_epochs.finish()),
            Arc::new(self.base_sequences.finish()),
            Arc::new(self.producer_ids.finish()),
            Arc::new(self.producer_epochs.finish()),
            Arc::new(self.transactional.finish()),
            Arc::new(self.control.finish()),
            Arc::new(self.timestamp_types.finish()),
        ];
        if let Some(JsonType::Object(fields)) = self.json.filter(|_| !self.wanted.json) {
            columns.extend(fields.iter().map(|(_, t)| arrow::array::new_null_array(&t.data_type(), self.rows)));
        } else if let Some(ty @ JsonType::Object(fields)) = self.json {
            let json_schema = Arc::new(Schema::new(
                fields.iter().map(|(name, t)| Field::new(name, t.data_type(), true)).collect::<Vec<_>>(),
            ));
            let rows = self.json_ends.len();
            // The values as they are, through arrow-json's tape decoder; only a chunk with
            // a value that does not fit (not JSON, or a type the table has widened) goes
            // the slow way, value by value.
            let decoded = match decode_json(&json_schema, &self.json_text, rows) {
                Ok(Some(decoded)) if decoded.num_rows() == rows => decoded,
                _ => {
                    let mut start = 0;
                    let values: Vec<Value> = self
                        .json_ends
                        .iter()
                        .map(|&end| {
                            let text = &self.json_text[start..end];
                            start = end;
                            match serde_json::from_slice::<Value>(text) {
                                Ok(value @ Value::Object(_)) => ty.conform(value),
                                _ => Value::Object(serde_json::Map::new()),
                            }
                        })
                        .collect();
                    let mut decoder = arrow::json::ReaderBuilder::new(Arc::clone(&json_schema))
                        .with_coerce_primitive(true)
                        .with_batch_size(rows.max(1))
                        .build_decoder()?;
                    decoder.serialize(&values)?;
                    match decoder.flush()? {
                        Some(decoded) if decoded.num_rows() == rows => decoded,
                        // Conformed values always decode; never write a file with missing rows.
                        _ => return Err(TierError::Internal { reason: "typed JSON columns lost rows" }),
                    }
                }
            };
            self.json_text.clear();
            self.json_ends.clear();
            columns.extend(decoded.columns().iter().cloned());
        }
        self.rows = 0;
        self.bytes = 0;
        Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
    }
}

/// Newline-separated JSON objects as Arrow columns of `schema`, in one go.
fn decode_json(schema: &SchemaRef, text: &[u8], rows: usize) -> Result<Option<RecordBatch>, TierError> {
    let mut decoder = arrow::json::ReaderBuilder::new(Arc::clone(schema))
        .with_coerce_primitive(true)
        .with_batch_size(rows.max(1))
        .build_decoder()?;
    let mut read = 0;
    while read < text.len() {
        let consumed = decoder.decode(&text[read..])?;
        if consumed == 0 {
            break;
        }
        read += consumed;
    }
    Ok(decoder.flush()?)
}

/// Whole batches rebuilt from rows, and where each starts.
#[derive(Debug, Clone, Default)]
pub struct RebuiltBatches {
    pub bytes: bytes::Bytes,
    /// `(last offset, start position)` of every batch, in order.
    pub batches: Vec<(i64, usize)>,
}

impl RebuiltBatches {
    /// Whole batches from the one that holds `offset` (or the first after it), up to
    /// `max_bytes` but at least one batch. `None` when every batch ends before `offset`.
    pub fn slice_from(&self, offset: i64, max_bytes: usize) -> Option<bytes::Bytes> {
        let first = self.batches.partition_point(|(last, _)| *last < offset);
        let start = self.batches.get(first)?.1;
        let mut end = self.batches.get(first + 1).map_or(self.bytes.len(), |b| b.1);
        for next in first + 2..=self.batches.len() {
            let candidate = self.batches.get(next).map_or(self.bytes.len(), |b| b.1);
            if candidate - start > max_bytes {
                break;
            }
            end = candidate;
        }
        Some(self.bytes.slice(start..end))
    }

    /// The last offset of the last batch.
    pub fn last_offset(&self) -> Option<i64> {
        self.batches.last().map(|(last, _)| *last)
    }
}

/// Rebuilds the record batches of `rows` (the fixed columns of a tiered file, in file
/// order; typed JSON columns may be absent). Rows of one batch must be consecutive and
/// no batch may straddle two calls.
///
/// # Errors
/// [`TierError::Internal`] for rows not in the layout [`write_segment`] writes.
pub fn rebuild_batches(rows: &RecordBatch) -> Result<RebuiltBatches, TierError> {
    let column = |name: &str| {
        rows.column_by_name(name).ok_or(TierError::Internal { reason: "a tiered file lacks a record column" })
    };
    let offsets = column(schema::OFFSET)?.as_primitive::<Int64Type>();
    let timestamps = column(schema::TIMESTAMP)?.as_primitive::<TimestampMillisecondType>();
    let keys = column(schema::KEY)?.as_binary::<i32>();
    let values = column(schema::VALUE)?.as_binary::<i32>();
    let headers = column(schema::HEADERS)?.as_list::<i32>();
    let batch_offsets = column(schema::BATCH_OFFSET)?.as_primitive::<Int64Type>();
    let batch_last = column(schema::BATCH_LAST_OFFSET)?.as_primitive::<Int64Type>();
    let epochs = column(schema::BATCH_LEADER_EPOCH)?.as_primitive::<Int32Type>();
    let sequences = column(schema::BATCH_BASE_SEQUENCE)?.as_primitive::<Int32Type>();
    let producer_ids = column(schema::PRODUCER_ID)?.as_primitive::<Int64Type>();
    let producer_epochs = column(schema::PRODUCER_EPOCH)?.as_primitive::<Int16Type>();
    let transactional = column(schema::IS_TRANSACTIONAL)?.as_boolean();
    let control = column(schema::IS_CONTROL)?.as_boolean();
    let timestamp_types = column(schema::TIMESTAMP_TYPE)?.as_primitive::<Int8Type>();

    let mut out = Vec::with_capacity(rows.get_array_memory_size());
    let mut spans = Vec::new();
    let mut row = 0;
    let mut header_scratch: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
    while row < rows.num_rows() {
        let base = batch_offsets.value(row);
        let mut builder = BatchBuilder::new(Compression::None)
            .base_offset(base)
            .partition_leader_epoch(epochs.value(row))
            .producer(producer_ids.value(row), producer_epochs.value(row), sequences.value(row))
            .transactional(transactional.value(row))
            .control(control.value(row))
            .log_append_time(timestamp_types.value(row) == 1);
        while row < rows.num_rows() && batch_offsets.value(row) == base {
            let delta = offsets.value(row) - base;
            let delta =
                i32::try_from(delta).map_err(|_| TierError::Internal { reason: "record far from its batch" })?;
            header_scratch.clear();
            if headers.is_valid(row) {
                let entries = headers.value(row);
                let entries = entries.as_struct();
                let header_keys = entries.column(0).as_string::<i32>();
                let header_values = entries.column(1).as_binary::<i32>();
                for i in 0..entries.len() {
                    let value = header_values.is_valid(i).then(|| header_values.value(i).to_vec());
                    header_scratch.push((header_keys.value(i).as_bytes().to_vec(), value));
                }
            }
            let header_refs: Vec<(&[u8], Option<&[u8]>)> =
                header_scratch.iter().map(|(k, v)| (k.as_slice(), v.as_deref())).collect();
            builder.append_at(
                delta,
                NewRecord {
                    timestamp: timestamps.value(row),
                    key: keys.is_valid(row).then(|| keys.value(row)),
                    value: values.is_valid(row).then(|| values.value(row)),
                    headers: &header_refs,
                },
            );
            row += 1;
        }
        let last = batch_last.value(row - 1);
        let last_delta =
            i32::try_from(last - base).map_err(|_| TierError::Internal { reason: "batch longer than its offsets" })?;
        let built = builder.last_offset_delta(last_delta).build()?;
        spans.push((last, out.len()));
        out.extend_from_slice(&built);
    }
    Ok(RebuiltBatches { bytes: bytes::Bytes::from(out), batches: spans })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn segment() -> Vec<u8> {
        let mut out = Vec::new();
        let mut offset = 0;
        for (b, codec) in [Compression::None, Compression::Zstd, Compression::Lz4].into_iter().enumerate() {
            let mut builder =
                BatchBuilder::new(codec).base_offset(offset).partition_leader_epoch(3).producer(77, 2, (b * 10) as i32);
            for i in 0..10 {
                let value = format!(r#"{{"n": {i}, "user": "u{b}", "score": {}.5}}"#, i);
                let key = format!("k{i}");
                builder.append(NewRecord {
                    timestamp: 1_000 + offset + i,
                    key: Some(key.as_bytes()),
                    value: (i != 3).then_some(value.as_bytes()),
                    headers: &[(b"trace", Some(b"abc")), (b"empty", None)],
                });
            }
            out.extend(builder.build().unwrap());
            offset += 10;
        }
        out
    }

    type Header = (Vec<u8>, Option<Vec<u8>>);
    type Seen = (i64, i64, Option<Vec<u8>>, Option<Vec<u8>>, Vec<Header>);

    fn records(bytes: &[u8]) -> Vec<Seen> {
        let mut out = Vec::new();
        for batch in BatchIter::new(bytes) {
            let batch = batch.unwrap();
            batch.validate().unwrap();
            for r in batch.records(1 << 26).unwrap().iter() {
                let r = r.unwrap();
                let headers = r.headers.iter().map(|h| (h.key.to_vec(), h.value.map(<[u8]>::to_vec))).collect();
                out.push((r.offset, r.timestamp, r.key.map(<[u8]>::to_vec), r.value.map(<[u8]>::to_vec), headers));
            }
        }
        out
    }

    #[test]
    fn rows_rebuild_the_same_records_and_batch_fields() {
        let original = segment();
        let mut file = Vec::new();
        let options = ConvertOptions { row_group_bytes: 200, row_group_rows: 1000 };
        let converted = write_segment(&original, 5, ValueFormat::Json, None, options, &mut file).unwrap();
        assert_eq!(converted.records, 30);
        assert!(converted.row_groups >= 2, "{converted:?}");
        assert_eq!((converted.min_timestamp, converted.max_timestamp), (1_000, 1_029));
        let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(file)).unwrap();
        let schema = reader.schema().clone();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(&names[schema::FIXED_COLUMNS.len()..], ["n", "user", "score"]);
        let mut rebuilt = Vec::new();
        for rows in reader.build().unwrap() {
            let rows = rows.unwrap();
            assert_eq!(rows.column_by_name("partition").unwrap().as_primitive::<Int32Type>().value(0), 5);
            rebuilt.extend_from_slice(&rebuild_batches(&rows).unwrap().bytes);
        }
        assert_eq!(records(&rebuilt), records(&original));
        for (a, b) in BatchIter::new(&rebuilt).zip(BatchIter::new(&original)) {
            let (a, b) = (a.unwrap(), b.unwrap());
            assert_eq!(
                (a.base_offset(), a.last_offset(), a.partition_leader_epoch(), a.producer_id(), a.producer_epoch()),
                (b.base_offset(), b.last_offset(), b.partition_leader_epoch(), b.producer_id(), b.producer_epoch())
            );
            assert_eq!(a.base_sequence(), b.base_sequence());
        }
    }

    #[test]
    fn typed_columns_hold_the_json_fields() {
        let mut file = Vec::new();
        write_segment(&segment(), 0, ValueFormat::Json, None, ConvertOptions::default(), &mut file).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(file)).unwrap().build().unwrap();
        let rows = reader.into_iter().next().unwrap().unwrap();
        let n = rows.column_by_name("n").unwrap().as_primitive::<Int64Type>();
        assert_eq!(n.value(1), 1);
        assert!(n.is_null(3), "a tombstone has no fields");
        let score = rows.column_by_name("score").unwrap().as_primitive::<arrow::datatypes::Float64Type>();
        assert_eq!(score.value(2), 2.5);
        assert_eq!(rows.column_by_name("user").unwrap().as_string::<i32>().value(25), "u2");
    }

    #[test]
    fn slices_are_whole_batches_from_the_offset() {
        let mut file = Vec::new();
        write_segment(&segment(), 0, ValueFormat::Bytes, None, ConvertOptions::default(), &mut file).unwrap();
        let rows = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(file)).unwrap().build().unwrap();
        let rows = rows.into_iter().next().unwrap().unwrap();
        assert_eq!(rows.num_columns(), schema::FIXED_COLUMNS.len());
        let rebuilt = rebuild_batches(&rows).unwrap();
        let one = rebuilt.slice_from(12, 1).unwrap();
        let batches: Vec<_> = BatchIter::new(&one).map(|b| b.unwrap().base_offset()).collect();
        assert_eq!(batches, [10]);
        let all = rebuilt.slice_from(0, usize::MAX).unwrap();
        assert_eq!(all.len(), rebuilt.bytes.len());
        assert!(rebuilt.slice_from(30, 100).is_none());
    }
}
