//! `postgres-source`: new and changed rows of tables, found with an incrementing and / or
//! a timestamp column, like Confluent's JDBC source. Each row becomes one JSON record
//! (`row_to_json`), in the topic `topic.prefix` + table.
//!
//! | Setting | Default | Meaning |
//! | --- | --- | --- |
//! | `url` (`connection.url`) | required | `postgres://user:password@host:port/database` |
//! | `table` (`table.whitelist`) | required | tables to read (a list; `tasks.max` tasks share them) |
//! | `mode` | required | `incrementing`, `timestamp` or `timestamp+incrementing` |
//! | `incrementing.column.name` | | a strictly increasing integer column (a serial id) |
//! | `timestamp.column.name` | | a column set to the time of each insert and update |
//! | `timestamp.delay.interval.ms` | 0 | rows newer than now minus this wait, for transactions still open |
//! | `topic.prefix` | "" | the topic is this followed by the table's name |
//! | `poll.interval.ms` | 5000 | how often a table is asked for new rows once it has none |
//! | `batch.max.rows` | 1000 | the most rows one query returns |
//!
//! The source partition is `{"table": NAME}` and the offset the last row's column values
//! (`{"incrementing": 41}`, `{"timestamp": "2026-12-02 10:00:00.123+00"}` or both), so a
//! restart asks for rows after them. `incrementing` sees inserts only; `timestamp` sees
//! updates too, and reads every row of a timestamp at once so that none is split across
//! queries; `timestamp+incrementing` is exact for both.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_postgres::Client;

use super::connection::{classify, connect, quote, quote_table, split_table};
use super::sink::connection_url;
use crate::config::{ConfigError, ConnectorConfig};
use crate::connector::{SourceConnector, SourceOffsets, SourceRecord, SourceTask, TaskConfig, TaskError};
use crate::converter::Data;
use crate::definition::{ConfigDef, Kind, Setting};
use crate::record::ConnectRecord;

pub fn definition() -> ConfigDef {
    ConfigDef::new([
        Setting::required("url|connection.url", Kind::String, "PostgreSQL URL: postgres://user:password@host:port/db."),
        Setting::optional("connection.user", Kind::String, "", "User, if not in the URL."),
        Setting::optional("connection.password", Kind::Password, "", "Password, if not in the URL."),
        Setting::required("table|table.whitelist", Kind::List, "The tables to read."),
        Setting::required("mode", Kind::String, "incrementing, timestamp or timestamp+incrementing."),
        Setting::optional("incrementing.column.name", Kind::String, "", "A strictly increasing integer column."),
        Setting::optional("timestamp.column.name", Kind::String, "", "A column holding each row's last change."),
        Setting::optional("timestamp.delay.interval.ms", Kind::Long, "0", "Rows newer than this wait."),
        Setting::optional("topic.prefix", Kind::String, "", "The topic is this followed by the table name."),
        Setting::optional("poll.interval.ms", Kind::Long, "5000", "How often an idle table is queried."),
        Setting::optional("batch.max.rows", Kind::Int, "1000", "The most rows per query."),
    ])
}

/// Which columns find new rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Incrementing,
    Timestamp,
    TimestampIncrementing,
}

fn mode(config: &ConnectorConfig) -> Result<Mode, ConfigError> {
    match config.get("mode").map(str::trim) {
        Some("incrementing") => Ok(Mode::Incrementing),
        Some("timestamp") => Ok(Mode::Timestamp),
        Some("timestamp+incrementing") => Ok(Mode::TimestampIncrementing),
        _ => Err(config.invalid("mode", "must be incrementing, timestamp or timestamp+incrementing")),
    }
}

#[derive(Debug, Default)]
pub struct PostgresSource;

#[async_trait]
impl SourceConnector for PostgresSource {
    /// The incrementing id and timestamp (never split within one timestamp) replay
    /// exactly the rows after them.
    fn exactly_once(&self, _config: &ConnectorConfig) -> bool {
        true
    }

    fn validate(&self, config: &ConnectorConfig) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if definition().value(config, "url").unwrap_or_default().parse::<tokio_postgres::Config>().is_err() {
            errors.push(config.invalid("url", "not a PostgreSQL connection URL"));
        }
        match mode(config) {
            Err(error) => errors.push(error),
            Ok(mode) => {
                let needs = |name: &str| config.get(name).is_none_or(|v| v.trim().is_empty());
                if mode != Mode::Timestamp && needs("incrementing.column.name") {
                    errors.push(ConfigError::Missing {
                        connector: config.name.clone(),
                        name: "incrementing.column.name".into(),
                    });
                }
                if mode != Mode::Incrementing && needs("timestamp.column.name") {
                    errors.push(ConfigError::Missing {
                        connector: config.name.clone(),
                        name: "timestamp.column.name".into(),
                    });
                }
            }
        }
        errors
    }

    /// The tables, dealt round-robin to at most `tasks.max` tasks.
    async fn task_configs(&self, config: &ConnectorConfig) -> Result<Vec<TaskConfig>, TaskError> {
        let tables = tables(config);
        let count = (config.tasks_max as usize).min(tables.len()).max(1);
        Ok((0..count)
            .map(|task| {
                let mine: Vec<&str> = tables.iter().skip(task).step_by(count).map(String::as_str).collect();
                let mut task_config = config.clone();
                task_config.settings.remove("table.whitelist");
                task_config.settings.insert("table".into(), mine.join(","));
                task_config
            })
            .collect())
    }

    fn task(&self, config: &TaskConfig) -> Result<Box<dyn SourceTask>, TaskError> {
        let def = definition();
        let number = |name: &str, default: u64| def.number(config, name, default);
        let column = |name: &str| config.get(name).map(str::trim).filter(|c| !c.is_empty()).map(str::to_string);
        let prefix = config.get("topic.prefix").unwrap_or_default().to_string();
        Ok(Box::new(PostgresSourceTask {
            url: connection_url(&def, config),
            mode: mode(config)?,
            incrementing: column("incrementing.column.name"),
            timestamp: column("timestamp.column.name"),
            delay: Duration::from_millis(number("timestamp.delay.interval.ms", 0)),
            poll_interval: Duration::from_millis(number("poll.interval.ms", 5000)),
            max_rows: number("batch.max.rows", 1000).max(1) as i64,
            tables: tables(config)
                .into_iter()
                .map(|name| TableState {
                    topic: format!("{prefix}{name}"),
                    partition: json!({ "table": name }),
                    name,
                    incrementing: -1,
                    timestamp: None,
                    timestamp_type: String::new(),
                    next_query: Instant::now(),
                })
                .collect(),
            client: None,
        }))
    }
}

fn tables(config: &ConnectorConfig) -> Vec<String> {
    let mut tables = config.list("table");
    tables.extend(config.list("table.whitelist"));
    tables
}

/// Where reading one table stands.
#[derive(Debug)]
struct TableState {
    name: String,
    topic: String,
    partition: Value,
    /// The last incrementing value read (-1: none).
    incrementing: i64,
    /// The last timestamp read, as PostgreSQL prints it.
    timestamp: Option<String>,
    /// The timestamp column's type (`timestamp with time zone`), to read the offset back.
    timestamp_type: String,
    next_query: Instant,
}

#[derive(Debug)]
pub struct PostgresSourceTask {
    url: String,
    mode: Mode,
    incrementing: Option<String>,
    timestamp: Option<String>,
    delay: Duration,
    poll_interval: Duration,
    max_rows: i64,
    tables: Vec<TableState>,
    client: Option<Client>,
}

impl PostgresSourceTask {
    async fn client(&mut self) -> Result<&Client, TaskError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            let client = connect(&self.url).await?;
            if let Some(column) = &self.timestamp {
                for table in &mut self.tables {
                    let (schema, name) = split_table(&table.name);
                    let row = client
                        .query_opt(
                            "SELECT data_type::text FROM information_schema.columns \
                             WHERE table_name = $1 AND table_schema = COALESCE($2, current_schema()) AND column_name = $3",
                            &[&name, &schema, column],
                        )
                        .await
                        .map_err(|e| classify(&e, &format!("reading the columns of {}", table.name)))?;
                    let Some(row) = row else {
                        return Err(TaskError::Fatal(format!("table {} has no column {column}", table.name)));
                    };
                    table.timestamp_type = row.get(0);
                }
            }
            self.client = Some(client);
        }
        Ok(self.client.as_ref().expect("connected above"))
    }

    /// The query for new rows of a table: each row as JSON text, then its incrementing
    /// and timestamp values for the offset. Parameters, by mode: incrementing (the last
    /// value, the limit); timestamp (the last timestamp, the delay in ms, the limit);
    /// timestamp+incrementing (the last value, the last timestamp, the delay, the limit).
    fn query(&self, table: &TableState) -> String {
        let t = quote_table(&table.name);
        let inc = self.incrementing.as_deref().map(quote).unwrap_or_default();
        let ts = self.timestamp.as_deref().map(quote).unwrap_or_default();
        let kind = &table.timestamp_type;
        let before = |delay: &str| {
            format!("r.{ts} < CAST(CURRENT_TIMESTAMP - {delay}::bigint * INTERVAL '1 millisecond' AS {kind})")
        };
        let after = |since: &str| format!("r.{ts} > CAST({since}::text AS {kind})");
        match self.mode {
            Mode::Incrementing => format!(
                "SELECT row_to_json(r)::text, r.{inc}::bigint, NULL::text FROM {t} r \
                 WHERE r.{inc} > $1::bigint ORDER BY r.{inc} LIMIT $2"
            ),
            // Every row of the last timestamp comes in the same query, so none is split
            // from its peers by the limit.
            Mode::Timestamp => format!(
                "WITH bound AS (SELECT max(s.ts) AS ts FROM (SELECT r.{ts} AS ts FROM {t} r \
                 WHERE {} AND {} ORDER BY r.{ts} LIMIT $3) s) \
                 SELECT row_to_json(r)::text, NULL::bigint, r.{ts}::text FROM {t} r, bound \
                 WHERE {} AND r.{ts} <= bound.ts ORDER BY r.{ts}",
                after("$1"),
                before("$2"),
                after("$1"),
            ),
            Mode::TimestampIncrementing => format!(
                "SELECT row_to_json(r)::text, r.{inc}::bigint, r.{ts}::text FROM {t} r \
                 WHERE {} AND ({} OR (r.{ts} = CAST($2::text AS {kind}) AND r.{inc} > $1::bigint)) \
                 ORDER BY r.{ts}, r.{inc} LIMIT $4",
                before("$3"),
                after("$2"),
            ),
        }
    }

    fn offset(&self, table: &TableState) -> Value {
        match self.mode {
            Mode::Incrementing => json!({ "incrementing": table.incrementing }),
            Mode::Timestamp => json!({ "timestamp": table.timestamp }),
            Mode::TimestampIncrementing => json!({ "incrementing": table.incrementing, "timestamp": table.timestamp }),
        }
    }
}

#[async_trait]
impl SourceTask for PostgresSourceTask {
    async fn start(&mut self, offsets: SourceOffsets) -> Result<(), TaskError> {
        for table in &mut self.tables {
            if let Some(offset) = offsets.get(&table.partition) {
                table.incrementing = offset.get("incrementing").and_then(Value::as_i64).unwrap_or(-1);
                table.timestamp = offset.get("timestamp").and_then(Value::as_str).map(str::to_string);
            }
        }
        self.client().await.map(|_| ())
    }

    async fn poll(&mut self) -> Result<Vec<SourceRecord>, TaskError> {
        let now = Instant::now();
        let Some(index) = (0..self.tables.len())
            .filter(|i| self.tables[*i].next_query <= now)
            .min_by_key(|i| self.tables[*i].next_query)
        else {
            // Nothing due: wait for the first table that is, but no more than a second.
            let next = self.tables.iter().map(|t| t.next_query).min().unwrap_or(now + self.poll_interval);
            tokio::time::sleep_until(next.min(now + Duration::from_secs(1))).await;
            return Ok(Vec::new());
        };
        self.client().await?;
        let table = &self.tables[index];
        let sql = self.query(table);
        let since = table.timestamp.clone().unwrap_or_else(|| "-infinity".to_string());
        let delay = self.delay.as_millis() as i64;
        let client = self.client.as_ref().expect("connected above");
        let rows = match self.mode {
            Mode::Incrementing => client.query(sql.as_str(), &[&table.incrementing, &self.max_rows]).await,
            Mode::Timestamp => client.query(sql.as_str(), &[&since, &delay, &self.max_rows]).await,
            Mode::TimestampIncrementing => {
                client.query(sql.as_str(), &[&table.incrementing, &since, &delay, &self.max_rows]).await
            }
        };
        let rows = match rows {
            Ok(rows) => rows,
            Err(error) => {
                let error = classify(&error, &format!("querying {}", table.name));
                if matches!(error, TaskError::Retriable(_)) {
                    self.client = None;
                }
                return Err(error);
            }
        };
        let full = rows.len() as i64 >= self.max_rows;
        let mut records = Vec::with_capacity(rows.len());
        for row in rows {
            let text: String = row.get(0);
            let value: Value = serde_json::from_str(&text).map_err(TaskError::fatal)?;
            let table = &mut self.tables[index];
            if let Some(incrementing) = row.get::<_, Option<i64>>(1) {
                table.incrementing = incrementing;
            }
            if let Some(timestamp) = row.get::<_, Option<String>>(2) {
                table.timestamp = Some(timestamp);
            }
            let table = &self.tables[index];
            records.push(SourceRecord {
                record: ConnectRecord::new(table.topic.clone(), Data::Json(value)),
                source_partition: table.partition.clone(),
                source_offset: self.offset(table),
            });
        }
        // A table that returned a full batch has more: ask again at once.
        let table = &mut self.tables[index];
        table.next_query = if full { Instant::now() } else { Instant::now() + self.poll_interval };
        Ok(records)
    }
}
