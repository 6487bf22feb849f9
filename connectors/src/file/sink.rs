//! `file-sink`: records' values appended to a file, one per line.
//!
//! Text is written as it is, JSON as compact JSON text (a JSON string as its text), bytes
//! as they are; a null value (a tombstone) writes nothing. Each put ends with one write of
//! its lines, so readers see them at once; a flush `fdatasync`s the file, so the offsets
//! committed after it never pass a line the disk does not hold.

use std::path::PathBuf;

use async_trait::async_trait;
use tokio::io::{AsyncWriteExt, BufWriter};

use crate::config::ConnectorConfig;
use crate::connector::{RecordFailure, SinkConnector, SinkTask, TaskConfig, TaskError};
use crate::converter::Data;
use crate::definition::{ConfigDef, Kind, Setting};
use crate::record::ConnectRecord;

pub fn definition() -> ConfigDef {
    ConfigDef::new([
        Setting::required("path|file", Kind::String, "The file to append to (created if missing)."),
        Setting::required("topics", Kind::List, "The topics to read."),
    ])
}

#[derive(Debug, Default)]
pub struct FileSink;

#[async_trait]
impl SinkConnector for FileSink {
    fn validate(&self, config: &ConnectorConfig) -> Vec<crate::config::ConfigError> {
        let path = definition().value(config, "path").map(PathBuf::from).unwrap_or_default();
        match path.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(dir) if !dir.is_dir() => {
                vec![config.invalid(
                    if config.get("path").is_some() { "path" } else { "file" },
                    "its directory does not exist",
                )]
            }
            _ => Vec::new(),
        }
    }

    fn task(&self, config: &TaskConfig) -> Result<Box<dyn SinkTask>, TaskError> {
        let path = definition().value(config, "path").unwrap_or_default();
        Ok(Box::new(FileSinkTask { path: PathBuf::from(path), writer: None }))
    }
}

/// Appends to one file. Tasks of one connector writing the same file would interleave
/// lines, so give each task its own file or keep `tasks.max=1`.
#[derive(Debug)]
pub struct FileSinkTask {
    path: PathBuf,
    writer: Option<BufWriter<tokio::fs::File>>,
}

impl FileSinkTask {
    async fn writer(&mut self) -> Result<&mut BufWriter<tokio::fs::File>, TaskError> {
        if self.writer.is_none() {
            let file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .await
                .map_err(|e| TaskError::Fatal(format!("cannot open {}: {e}", self.path.display())))?;
            self.writer = Some(BufWriter::with_capacity(1 << 20, file));
        }
        Ok(self.writer.as_mut().expect("opened above"))
    }
}

#[async_trait]
impl SinkTask for FileSinkTask {
    async fn put(&mut self, records: &[ConnectRecord]) -> Result<Vec<RecordFailure>, TaskError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let path = self.path.display().to_string();
        let writer = self.writer().await?;
        let io = |e: std::io::Error| TaskError::Retriable(format!("writing {path}: {e}"));
        for record in records {
            let text;
            let bytes: &[u8] = match &record.value {
                Data::Null => continue,
                Data::Text(s) => s.as_bytes(),
                Data::Bytes(b) => b,
                Data::Json(serde_json::Value::String(s)) => s.as_bytes(),
                Data::Json(value) => {
                    text = value.to_string();
                    text.as_bytes()
                }
            };
            writer.write_all(bytes).await.map_err(io)?;
            writer.write_all(b"\n").await.map_err(io)?;
        }
        // Into the page cache at once, so readers of the file see records within a poll;
        // the fsync waits for `flush`.
        writer.flush().await.map_err(io)?;
        Ok(Vec::new())
    }

    async fn flush(&mut self) -> Result<(), TaskError> {
        let path = self.path.display().to_string();
        let Some(writer) = self.writer.as_mut() else { return Ok(()) };
        let io = |e: std::io::Error| TaskError::Retriable(format!("flushing {path}: {e}"));
        writer.flush().await.map_err(io)?;
        writer.get_ref().sync_data().await.map_err(io)
    }

    async fn stop(&mut self) {
        if let Some(mut writer) = self.writer.take() {
            let _ = writer.flush().await;
        }
    }
}
