//! Arrow columns as Postgres values: the type each column is described with, and each
//! value encoded in the format the client asked for. Types Postgres has a match for go as
//! that type (integers, floats, booleans, text, bytea, timestamps); the rest (lists,
//! structs) go as text in DataFusion's display form.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, TimeUnit, UInt8Type, UInt16Type,
    UInt32Type,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use pgwire::api::Type;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo};
use pgwire::error::PgWireResult;
use pgwire::messages::data::DataRow;

/// The Postgres type a column of `data_type` is described as.
pub fn pg_type(data_type: &DataType) -> Type {
    match data_type {
        DataType::Boolean => Type::BOOL,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => Type::INT2,
        DataType::Int32 | DataType::UInt16 => Type::INT4,
        DataType::Int64 | DataType::UInt32 => Type::INT8,
        DataType::Float32 => Type::FLOAT4,
        DataType::Float64 => Type::FLOAT8,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Type::TEXT,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => Type::BYTEA,
        DataType::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        DataType::Timestamp(_, None) => Type::TIMESTAMP,
        _ => Type::TEXT,
    }
}

/// The row description of a result: names, types and per-column formats.
pub fn fields(schema: &arrow::datatypes::Schema, format: impl Fn(usize) -> FieldFormat) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| FieldInfo::new(f.name().clone(), None, None, pg_type(f.data_type()), format(i)))
        .collect()
}

/// The rows of `batch`, encoded for `fields` (which [`fields`] made from its schema).
///
/// # Errors
/// A value the encoder refuses.
pub fn encode_rows(batch: &RecordBatch, fields: &Arc<Vec<FieldInfo>>) -> PgWireResult<Vec<DataRow>> {
    let options = FormatOptions::default().with_null("").with_timestamp_tz_format(Some("%Y-%m-%d %H:%M:%S%.3f%:z"));
    let formatters: Vec<Option<ArrayFormatter<'_>>> =
        batch.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &options).ok()).collect();
    let mut encoder = DataRowEncoder::new(Arc::clone(fields));
    let mut rows = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        for (column, formatter) in batch.columns().iter().zip(&formatters) {
            encode_value(&mut encoder, column.as_ref(), formatter.as_ref(), row)?;
        }
        rows.push(encoder.take_row());
    }
    Ok(rows)
}

fn encode_value(
    encoder: &mut DataRowEncoder,
    column: &dyn Array,
    formatter: Option<&ArrayFormatter<'_>>,
    row: usize,
) -> PgWireResult<()> {
    if column.is_null(row) {
        return encoder.encode_field(&None::<i8>);
    }
    match column.data_type() {
        DataType::Boolean => encoder.encode_field(&column.as_boolean().value(row)),
        DataType::Int8 => encoder.encode_field(&i16::from(column.as_primitive::<Int8Type>().value(row))),
        DataType::Int16 => encoder.encode_field(&column.as_primitive::<Int16Type>().value(row)),
        DataType::UInt8 => encoder.encode_field(&i16::from(column.as_primitive::<UInt8Type>().value(row))),
        DataType::Int32 => encoder.encode_field(&column.as_primitive::<Int32Type>().value(row)),
        DataType::UInt16 => encoder.encode_field(&i32::from(column.as_primitive::<UInt16Type>().value(row))),
        DataType::Int64 => encoder.encode_field(&column.as_primitive::<Int64Type>().value(row)),
        DataType::UInt32 => encoder.encode_field(&i64::from(column.as_primitive::<UInt32Type>().value(row))),
        DataType::Float32 => encoder.encode_field(&column.as_primitive::<Float32Type>().value(row)),
        DataType::Float64 => encoder.encode_field(&column.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => encoder.encode_field(&column.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => encoder.encode_field(&column.as_string::<i64>().value(row)),
        DataType::Utf8View => encoder.encode_field(&column.as_string_view().value(row)),
        DataType::Binary => encoder.encode_field(&column.as_binary::<i32>().value(row)),
        DataType::LargeBinary => encoder.encode_field(&column.as_binary::<i64>().value(row)),
        DataType::BinaryView => encoder.encode_field(&column.as_binary_view().value(row)),
        DataType::Timestamp(unit, tz) => {
            let value = timestamp_micros(column, *unit, row);
            let utc = chrono::DateTime::from_timestamp_micros(value).unwrap_or_default();
            if tz.is_some() { encoder.encode_field(&utc) } else { encoder.encode_field(&utc.naive_utc()) }
        }
        _ => {
            let text = formatter.map_or_else(String::new, |f| f.value(row).to_string());
            encoder.encode_field(&text)
        }
    }
}

fn timestamp_micros(column: &dyn Array, unit: TimeUnit, row: usize) -> i64 {
    use arrow::datatypes::{
        TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
    };
    match unit {
        TimeUnit::Second => column.as_primitive::<TimestampSecondType>().value(row).saturating_mul(1_000_000),
        TimeUnit::Millisecond => column.as_primitive::<TimestampMillisecondType>().value(row).saturating_mul(1_000),
        TimeUnit::Microsecond => column.as_primitive::<TimestampMicrosecondType>().value(row),
        TimeUnit::Nanosecond => column.as_primitive::<TimestampNanosecondType>().value(row) / 1_000,
    }
}
