//! `postgres-sink`: JSON records become rows, upserted on the primary key in batches;
//! tombstones delete.
//!
//! | Setting | Default | Meaning (Confluent JDBC sink's name in brackets) |
//! | --- | --- | --- |
//! | `url` (`connection.url`) | required | `postgres://user:password@host:port/database` |
//! | `topics` | required | the topics to read |
//! | `table` (`table.name.format`) | `${topic}` | the table, `${topic}` replaced; may be `schema.table` |
//! | `primary_key` (`pk.fields`) | none | key columns: with them records are upserted, without them inserted |
//! | `auto_create` (`auto.create`) | false | create a missing table, with column types from the first records |
//! | `auto_evolve` (`auto.evolve`) | false | add columns for fields the table lacks |
//! | `delete.enabled` | true with a primary key | a tombstone deletes the row its key names |
//! | `batch.size` | 3000 | the most rows in one statement |
//!
//! A record's value must be a JSON object (the default converter is JSON without schemas);
//! its fields are columns. Primary-key values come from the value, or else from the key
//! (an object's fields, or a scalar key for a single key column). Each `put` is one
//! transaction, so a flush has nothing left to do. Within a batch only the last write to
//! a key counts, as it would have had the rows been written one by one. When PostgreSQL
//! refuses a batch for its data (a constraint, a type), the batch is written again record
//! by record, and the records it refuses go to the error policy (the dead-letter topic).

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use serde_json::{Map, Value};
use tokio_postgres::Client;

use super::connection::{classify, connect, describe, is_transient, quote, quote_table, split_table};
use crate::config::{ConfigError, ConnectorConfig};
use crate::connector::{RecordFailure, SinkConnector, SinkTask, TaskConfig, TaskError};
use crate::converter::Data;
use crate::definition::{ConfigDef, Kind, Setting};
use crate::record::ConnectRecord;

pub fn definition() -> ConfigDef {
    ConfigDef::new([
        Setting::required("url|connection.url", Kind::String, "PostgreSQL URL: postgres://user:password@host:port/db."),
        Setting::optional("connection.user", Kind::String, "", "User, if not in the URL."),
        Setting::optional("connection.password", Kind::Password, "", "Password, if not in the URL."),
        Setting::required("topics", Kind::List, "The topics to read."),
        Setting::optional("table|table.name.format", Kind::String, "${topic}", "The table; ${topic} is replaced."),
        Setting::optional("primary_key|pk.fields", Kind::List, "", "Primary key columns: upsert on them."),
        Setting::optional("auto_create|auto.create", Kind::Boolean, "false", "Create a missing table."),
        Setting::optional("auto_evolve|auto.evolve", Kind::Boolean, "false", "Add missing columns."),
        Setting::optional("delete.enabled", Kind::Boolean, "true", "Tombstones delete (needs a primary key)."),
        Setting::optional("batch.size", Kind::Int, "3000", "The most rows per statement."),
    ])
}

/// The URL with `connection.user` / `connection.password` applied.
pub(crate) fn connection_url(def: &ConfigDef, config: &ConnectorConfig) -> String {
    let mut url = def.value(config, "url").unwrap_or_default().to_string();
    let mut extra = Vec::new();
    for (setting, key) in [("connection.user", "user"), ("connection.password", "password")] {
        if let Some(value) = config.get(setting).filter(|v| !v.is_empty()) {
            extra.push(format!("{key}={}", urlencode(value)));
        }
    }
    if !extra.is_empty() && url.contains("://") {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&extra.join("&"));
    } else if !extra.is_empty() {
        url = format!("{url} {}", extra.join(" "));
    }
    url
}

fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(Debug, Default)]
pub struct PostgresSink;

#[async_trait]
impl SinkConnector for PostgresSink {
    fn validate(&self, config: &ConnectorConfig) -> Vec<ConfigError> {
        let def = definition();
        let mut errors = Vec::new();
        let url = def.value(config, "url").unwrap_or_default();
        if url.parse::<tokio_postgres::Config>().is_err() {
            errors.push(config.invalid("url", "not a PostgreSQL connection URL"));
        }
        let keys = def.value(config, "primary_key").unwrap_or_default();
        if keys.split(',').any(|k| k.trim().is_empty()) && !keys.trim().is_empty() {
            errors.push(config.invalid("primary_key", "an empty column name"));
        }
        let batch: i64 = def.number(config, "batch.size", 3000);
        if batch < 1 {
            errors.push(config.invalid("batch.size", "must be at least 1"));
        }
        errors
    }

    fn task(&self, config: &TaskConfig) -> Result<Box<dyn SinkTask>, TaskError> {
        Ok(Box::new(PostgresSinkTask::new(config)))
    }
}

/// What the sink knows of a table: its columns (name → type).
#[derive(Debug, Default, Clone)]
struct TableInfo {
    columns: BTreeMap<String, String>,
}

/// One write to a table, in record order.
#[derive(Debug)]
enum Op {
    Upsert { index: usize, row: Map<String, Value> },
    Delete { index: usize, key: Map<String, Value> },
}

impl Op {
    fn index(&self) -> usize {
        match self {
            Op::Upsert { index, .. } | Op::Delete { index, .. } => *index,
        }
    }
}

#[derive(Debug)]
pub struct PostgresSinkTask {
    url: String,
    table_format: String,
    primary_key: Vec<String>,
    auto_create: bool,
    auto_evolve: bool,
    delete_enabled: bool,
    batch_size: usize,
    client: Option<Client>,
    tables: HashMap<String, TableInfo>,
}

impl PostgresSinkTask {
    /// A task for a config [`definition`] accepted.
    pub fn new(config: &ConnectorConfig) -> Self {
        let def = definition();
        let flag = |name: &str| def.flag(config, name);
        let primary_key: Vec<String> = def
            .value(config, "primary_key")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_string)
            .collect();
        Self {
            url: connection_url(&def, config),
            table_format: def.value(config, "table").unwrap_or("${topic}").to_string(),
            delete_enabled: flag("delete.enabled") && !primary_key.is_empty(),
            primary_key,
            auto_create: flag("auto_create"),
            auto_evolve: flag("auto_evolve"),
            batch_size: def.number(config, "batch.size", 3000),
            client: None,
            tables: HashMap::new(),
        }
    }

    async fn client(&mut self) -> Result<&mut Client, TaskError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = Some(connect(&self.url).await?);
            // Another session may have changed the tables meanwhile.
            self.tables.clear();
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    /// The table's columns, creating it (or adding columns) when allowed and needed for
    /// `rows`.
    async fn prepare(&mut self, table: &str, rows: &[&Map<String, Value>]) -> Result<TableInfo, TaskError> {
        if !self.tables.contains_key(table) {
            let columns = self.columns(table).await?;
            if let Some(columns) = columns {
                self.tables.insert(table.to_string(), TableInfo { columns });
            }
        }
        let wanted = column_types(rows);
        let Some(info) = self.tables.get(table).cloned() else {
            if !self.auto_create {
                return Err(TaskError::Fatal(format!(
                    "table {table} does not exist (set auto_create = true to create it)"
                )));
            }
            self.create(table, &wanted).await?;
            let columns = self.columns(table).await?.unwrap_or_default();
            let info = TableInfo { columns };
            self.tables.insert(table.to_string(), info.clone());
            return Ok(info);
        };
        let missing: Vec<(&String, &&str)> = wanted.iter().filter(|(c, _)| !info.columns.contains_key(*c)).collect();
        if missing.is_empty() || !self.auto_evolve {
            return Ok(info);
        }
        let statements: Vec<String> = missing
            .iter()
            .map(|(c, t)| format!("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {t}", quote_table(table), quote(c)))
            .collect();
        let client = self.client().await?;
        client
            .batch_execute(&statements.join(";\n"))
            .await
            .map_err(|e| classify(&e, &format!("adding columns to {table}")))?;
        tracing::info!(table, columns = ?missing.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(), "added columns");
        let columns = self.columns(table).await?.unwrap_or_default();
        let info = TableInfo { columns };
        self.tables.insert(table.to_string(), info.clone());
        Ok(info)
    }

    /// A table's columns, or `None` when it does not exist.
    async fn columns(&mut self, table: &str) -> Result<Option<BTreeMap<String, String>>, TaskError> {
        let (schema, name) = split_table(table);
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_name = $1 AND table_schema = COALESCE($2, current_schema()) ORDER BY ordinal_position",
                &[&name, &schema],
            )
            .await
            .map_err(|e| classify(&e, &format!("reading the columns of {table}")))?;
        if rows.is_empty() {
            return Ok(None);
        }
        Ok(Some(rows.iter().map(|r| (r.get::<_, String>(0), r.get::<_, String>(1))).collect()))
    }

    async fn create(&mut self, table: &str, types: &BTreeMap<String, &str>) -> Result<(), TaskError> {
        let mut columns: Vec<String> = Vec::new();
        for key in &self.primary_key {
            let kind = types.get(key).copied().unwrap_or("TEXT");
            columns.push(format!("{} {kind} NOT NULL", quote(key)));
        }
        for (column, kind) in types {
            if !self.primary_key.contains(column) {
                columns.push(format!("{} {kind}", quote(column)));
            }
        }
        if !self.primary_key.is_empty() {
            let keys: Vec<String> = self.primary_key.iter().map(|k| quote(k)).collect();
            columns.push(format!("PRIMARY KEY ({})", keys.join(", ")));
        }
        let sql = format!("CREATE TABLE IF NOT EXISTS {} ({})", quote_table(table), columns.join(", "));
        let client = self.client().await?;
        client.batch_execute(&sql).await.map_err(|e| classify(&e, &format!("creating {table}")))?;
        tracing::info!(table, "created the table");
        Ok(())
    }

    /// The write a record asks for, or why it cannot be written.
    fn op(&self, index: usize, record: &ConnectRecord) -> Result<Option<Op>, String> {
        let key_fields = || -> Result<Map<String, Value>, String> {
            let mut key = Map::new();
            let from_key = match &record.key {
                Data::Json(Value::Object(fields)) => Some(fields.clone()),
                _ => None,
            };
            let scalar = match &record.key {
                Data::Json(value) if !value.is_object() && !value.is_null() => Some(value.clone()),
                Data::Text(text) => Some(Value::String(text.clone())),
                _ => None,
            };
            for column in &self.primary_key {
                let value = match &record.value {
                    Data::Json(Value::Object(fields)) => fields.get(column).filter(|v| !v.is_null()).cloned(),
                    _ => None,
                }
                .or_else(|| from_key.as_ref().and_then(|k| k.get(column).cloned()))
                .or_else(|| if self.primary_key.len() == 1 { scalar.clone() } else { None });
                match value {
                    Some(value) => {
                        key.insert(column.clone(), value);
                    }
                    None => return Err(format!("no value for primary key column {column} in the value or the key")),
                }
            }
            Ok(key)
        };
        match &record.value {
            Data::Null if self.delete_enabled => Ok(Some(Op::Delete { index, key: key_fields()? })),
            Data::Null => Ok(None),
            Data::Json(Value::Object(fields)) => {
                let mut row = fields.clone();
                if !self.primary_key.is_empty() {
                    row.extend(key_fields()?);
                }
                Ok(Some(Op::Upsert { index, row }))
            }
            Data::Json(_) | Data::Text(_) | Data::Bytes(_) => Err("the value is not a JSON object".into()),
        }
    }

    /// Writes one table's ops in one transaction.
    async fn write(&mut self, table: &str, ops: &[Op]) -> Result<(), tokio_postgres::Error> {
        let statements = self.statements(table, ops);
        let client = self.client.as_mut().expect("connected before writing");
        let transaction = client.transaction().await?;
        for (sql, json) in &statements {
            transaction.execute(sql.as_str(), &[json]).await?;
        }
        transaction.commit().await
    }

    /// The statements for `ops`: only the last write to a key counts; upserts with the
    /// same columns share one statement, fed one JSON array of rows.
    fn statements(&self, table: &str, ops: &[Op]) -> Vec<(String, String)> {
        let quoted = quote_table(table);
        let mut upserts: BTreeMap<Vec<String>, Vec<&Map<String, Value>>> = BTreeMap::new();
        let mut deletes: Vec<&Map<String, Value>> = Vec::new();
        let mut last: Vec<&Op> = Vec::new();
        if self.primary_key.is_empty() {
            last.extend(ops);
        } else {
            let mut latest: HashMap<String, usize> = HashMap::new();
            for (i, op) in ops.iter().enumerate() {
                let fields = match op {
                    Op::Upsert { row, .. } => row,
                    Op::Delete { key, .. } => key,
                };
                let key: Vec<&Value> = self.primary_key.iter().map(|k| &fields[k]).collect();
                latest.insert(serde_json::to_string(&key).expect("JSON values serialize"), i);
            }
            let mut keep: Vec<usize> = latest.into_values().collect();
            keep.sort_unstable();
            last.extend(keep.into_iter().map(|i| &ops[i]));
        }
        for op in last {
            match op {
                Op::Upsert { row, .. } => upserts.entry(row.keys().cloned().collect()).or_default().push(row),
                Op::Delete { key, .. } => deletes.push(key),
            }
        }
        let mut statements = Vec::new();
        if !deletes.is_empty() {
            let keys: Vec<String> = self.primary_key.iter().map(|k| quote(k)).collect();
            let keys = keys.join(", ");
            let sql = format!(
                "DELETE FROM {quoted} WHERE ({keys}) IN \
                 (SELECT {keys} FROM json_populate_recordset(NULL::{quoted}, $1::text::json))"
            );
            statements.push((sql, Value::Array(deletes.into_iter().cloned().map(Value::Object).collect()).to_string()));
        }
        for (columns, rows) in upserts {
            let list: Vec<String> = columns.iter().map(|c| quote(c)).collect();
            let list = list.join(", ");
            let mut sql = format!(
                "INSERT INTO {quoted} ({list}) SELECT {list} FROM json_populate_recordset(NULL::{quoted}, $1::text::json)"
            );
            if !self.primary_key.is_empty() {
                let keys: Vec<String> = self.primary_key.iter().map(|k| quote(k)).collect();
                let updates: Vec<String> = columns
                    .iter()
                    .filter(|c| !self.primary_key.contains(c))
                    .map(|c| format!("{0} = EXCLUDED.{0}", quote(c)))
                    .collect();
                if updates.is_empty() {
                    sql.push_str(&format!(" ON CONFLICT ({}) DO NOTHING", keys.join(", ")));
                } else {
                    sql.push_str(&format!(" ON CONFLICT ({}) DO UPDATE SET {}", keys.join(", "), updates.join(", ")));
                }
            }
            statements.push((sql, Value::Array(rows.into_iter().cloned().map(Value::Object).collect()).to_string()));
        }
        statements
    }
}

/// A PostgreSQL type for each field of `rows`: its first non-null value's, widened to
/// `DOUBLE PRECISION` when whole numbers and fractions mix, `TEXT` when only nulls came.
fn column_types(rows: &[&Map<String, Value>]) -> BTreeMap<String, &'static str> {
    let mut types: BTreeMap<String, Option<&'static str>> = BTreeMap::new();
    for row in rows {
        for (field, value) in *row {
            let kind = match value {
                Value::Null => None,
                Value::Bool(_) => Some("BOOLEAN"),
                Value::Number(n) if n.is_i64() || n.is_u64() => Some("BIGINT"),
                Value::Number(_) => Some("DOUBLE PRECISION"),
                Value::String(_) => Some("TEXT"),
                Value::Array(_) | Value::Object(_) => Some("JSONB"),
            };
            let entry = types.entry(field.clone()).or_insert(None);
            *entry = match (*entry, kind) {
                (None, kind) => kind,
                (Some("BIGINT"), Some("DOUBLE PRECISION")) => Some("DOUBLE PRECISION"),
                (known, _) => known,
            };
        }
    }
    types.into_iter().map(|(field, kind)| (field, kind.unwrap_or("TEXT"))).collect()
}

#[async_trait]
impl SinkTask for PostgresSinkTask {
    async fn start(&mut self) -> Result<(), TaskError> {
        self.client().await.map(|_| ())
    }

    async fn put(&mut self, records: &[ConnectRecord]) -> Result<Vec<RecordFailure>, TaskError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let mut failures = Vec::new();
        // Per table, in record order.
        let mut by_table: BTreeMap<String, Vec<Op>> = BTreeMap::new();
        for (index, record) in records.iter().enumerate() {
            match self.op(index, record) {
                Ok(Some(op)) => {
                    by_table.entry(self.table_format.replace("${topic}", &record.topic)).or_default().push(op)
                }
                Ok(None) => {}
                Err(reason) => failures.push(RecordFailure { index, reason }),
            }
        }
        self.client().await?;
        for (table, ops) in by_table {
            let rows: Vec<&Map<String, Value>> =
                ops.iter().filter_map(|op| if let Op::Upsert { row, .. } = op { Some(row) } else { None }).collect();
            let info = self.prepare(&table, &rows).await?;
            // Fields the table lacks fail their records, as Confluent's sink does without
            // auto.evolve: silently dropping them would lose data.
            let mut writable = Vec::with_capacity(ops.len());
            for op in ops {
                let unknown: Vec<&String> = match &op {
                    Op::Upsert { row, .. } => row.keys().filter(|c| !info.columns.contains_key(*c)).collect(),
                    Op::Delete { .. } => Vec::new(),
                };
                if unknown.is_empty() {
                    writable.push(op);
                } else {
                    let reason = format!("table {table} has no column {unknown:?} (set auto_evolve = true to add it)");
                    failures.push(RecordFailure { index: op.index(), reason });
                }
            }
            for chunk in writable.chunks(self.batch_size.max(1)) {
                match self.write(&table, chunk).await {
                    Ok(()) => {}
                    Err(error) if is_transient(&error) => {
                        self.client = None;
                        return Err(classify(&error, &format!("writing to {table}")));
                    }
                    // Refused for its data: find the records at fault one by one.
                    Err(error) => {
                        tracing::debug!(
                            table,
                            "a batch was refused, writing it record by record: {}",
                            describe(&error, "batch")
                        );
                        for op in chunk {
                            match self.write(&table, std::slice::from_ref(op)).await {
                                Ok(()) => {}
                                Err(error) if is_transient(&error) => {
                                    self.client = None;
                                    return Err(classify(&error, &format!("writing to {table}")));
                                }
                                Err(error) => failures.push(RecordFailure {
                                    index: op.index(),
                                    reason: describe(&error, &format!("PostgreSQL refused the row for {table}")),
                                }),
                            }
                        }
                    }
                }
            }
        }
        failures.sort_by_key(|f| f.index);
        Ok(failures)
    }

    async fn flush(&mut self) -> Result<(), TaskError> {
        // Every put committed its transaction.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(pairs: &[(&str, &str)]) -> PostgresSinkTask {
        let mut all = vec![("url", "postgres://u@localhost/db"), ("topics", "orders")];
        all.extend_from_slice(pairs);
        let config = crate::config::test_config("postgres-sink", &all);
        assert!(definition().validate(&config).is_empty());
        PostgresSinkTask::new(&config)
    }

    fn json_record(key: Value, value: Option<Value>) -> ConnectRecord {
        let mut record = ConnectRecord::new("orders", value.map_or(Data::Null, Data::Json));
        record.key = Data::Json(key);
        record
    }

    #[test]
    fn only_the_last_write_to_a_key_counts() {
        let task = task(&[("primary_key", "id")]);
        let records = [
            json_record(Value::from(1), Some(serde_json::json!({"id": 1, "qty": 1}))),
            json_record(Value::from(2), Some(serde_json::json!({"id": 2, "qty": 5}))),
            json_record(Value::from(1), Some(serde_json::json!({"id": 1, "qty": 2}))),
            json_record(Value::from(2), None),
        ];
        let ops: Vec<Op> = records.iter().enumerate().map(|(i, r)| task.op(i, r).unwrap().unwrap()).collect();
        let statements = task.statements("orders", &ops);
        assert_eq!(statements.len(), 2);
        assert!(statements[0].0.starts_with("DELETE FROM \"orders\""));
        assert_eq!(statements[0].1, r#"[{"id":2}]"#);
        assert!(statements[1].0.contains("ON CONFLICT (\"id\") DO UPDATE SET \"qty\" = EXCLUDED.\"qty\""));
        assert_eq!(statements[1].1, r#"[{"id":1,"qty":2}]"#);
    }

    #[test]
    fn keys_come_from_the_value_or_the_key() {
        let task = task(&[("primary_key", "id")]);
        let from_key = json_record(Value::from("a-1"), Some(serde_json::json!({"qty": 3})));
        let Some(Op::Upsert { row, .. }) = task.op(0, &from_key).unwrap() else { panic!("an upsert") };
        assert_eq!(row["id"], "a-1");
        let nothing = json_record(Value::Null, Some(serde_json::json!({"qty": 3})));
        assert!(task.op(0, &nothing).unwrap_err().contains("primary key column id"));
        let text = ConnectRecord::new("orders", Data::Text("hello".into()));
        assert!(task.op(0, &text).unwrap_err().contains("not a JSON object"));
    }

    #[test]
    fn column_types_follow_the_values() {
        let a = serde_json::json!({"id": 1, "price": 2, "name": null, "tags": ["x"], "ok": true});
        let b = serde_json::json!({"id": 2, "price": 2.5, "name": "pen"});
        let rows = [a.as_object().unwrap(), b.as_object().unwrap()];
        let types = column_types(&rows);
        assert_eq!(types["id"], "BIGINT");
        assert_eq!(types["price"], "DOUBLE PRECISION");
        assert_eq!(types["name"], "TEXT");
        assert_eq!(types["tags"], "JSONB");
        assert_eq!(types["ok"], "BOOLEAN");
    }

    #[test]
    fn credentials_join_the_url() {
        let config = crate::config::test_config(
            "postgres-sink",
            &[
                ("connection.url", "postgres://localhost:5432/shop"),
                ("topics", "t"),
                ("connection.user", "app"),
                ("connection.password", "p@ss word"),
            ],
        );
        assert_eq!(
            connection_url(&definition(), &config),
            "postgres://localhost:5432/shop?user=app&password=p%40ss%20word"
        );
    }
}
