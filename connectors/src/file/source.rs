//! `file-source`: a file's lines, then the lines appended to it, into a topic.
//!
//! The source partition is `{"filename": PATH}` and the offset `{"position": BYTES}`, the
//! byte just after the last line sent, so a restart reads on from there. A line counts
//! once it ends in `\n`: a half-written last line waits for the rest. When the file
//! shrinks below the position (truncated) or the path names a new file (rotated), reading
//! starts again at its beginning.

use std::io::SeekFrom;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncSeekExt, BufReader};

use crate::config::ConnectorConfig;
use crate::connector::{SourceConnector, SourceOffsets, SourceRecord, SourceTask, TaskConfig, TaskError};
use crate::converter::Data;
use crate::definition::{ConfigDef, Kind, Setting};
use crate::record::ConnectRecord;

/// How long a poll that found nothing new waits before returning.
const IDLE_WAIT: Duration = Duration::from_millis(100);

/// The longest line kept; a longer one fails (it would otherwise grow without bound).
const MAX_LINE_BYTES: usize = 16 << 20;

pub fn definition() -> ConfigDef {
    ConfigDef::new([
        Setting::required("path|file", Kind::String, "The file to read."),
        Setting::required("topic", Kind::String, "The topic to write its lines to."),
        Setting::optional("batch.size", Kind::Int, "2000", "The most lines one poll returns."),
    ])
}

#[derive(Debug, Default)]
pub struct FileSource;

#[async_trait]
impl SourceConnector for FileSource {
    /// A byte position replays exactly the lines after it.
    fn exactly_once(&self, _config: &ConnectorConfig) -> bool {
        true
    }

    fn validate(&self, config: &ConnectorConfig) -> Vec<crate::config::ConfigError> {
        let batch: i64 = config.parse_or("batch.size", 2000).unwrap_or(2000);
        if batch < 1 { vec![config.invalid("batch.size", "must be at least 1")] } else { Vec::new() }
    }

    fn task(&self, config: &TaskConfig) -> Result<Box<dyn SourceTask>, TaskError> {
        let def = definition();
        let path = def.value(config, "path").unwrap_or_default();
        Ok(Box::new(FileSourceTask {
            path: PathBuf::from(path),
            topic: def.value(config, "topic").unwrap_or_default().to_string(),
            batch_size: config.parse_or("batch.size", 2000usize)?,
            partition: json!({ "filename": path }),
            reader: None,
            position: 0,
            partial: Vec::new(),
            waiting_logged: false,
        }))
    }
}

/// Reads one file.
#[derive(Debug)]
pub struct FileSourceTask {
    path: PathBuf,
    topic: String,
    batch_size: usize,
    partition: Value,
    /// The open file and its inode; `None` until it exists.
    reader: Option<(BufReader<tokio::fs::File>, u64)>,
    /// The byte after the last whole line read.
    position: u64,
    /// The start of a line whose end has not been written yet.
    partial: Vec<u8>,
    waiting_logged: bool,
}

impl FileSourceTask {
    /// Opens the file at `position`, or reports that it does not exist yet.
    async fn open(&mut self) -> Result<bool, TaskError> {
        let file = match tokio::fs::File::open(&self.path).await {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                if !self.waiting_logged {
                    self.waiting_logged = true;
                    tracing::info!(path = %self.path.display(), "waiting for the file to appear");
                }
                return Ok(false);
            }
            Err(error) => return Err(TaskError::Fatal(format!("cannot open {}: {error}", self.path.display()))),
        };
        let meta = file.metadata().await.map_err(|e| TaskError::fatal(format!("{}: {e}", self.path.display())))?;
        if meta.len() < self.position {
            tracing::warn!(path = %self.path.display(), position = self.position, length = meta.len(),
                "the file is shorter than the committed position (truncated?): reading it from the start");
            self.position = 0;
        }
        let mut reader = BufReader::with_capacity(256 << 10, file);
        reader
            .seek(SeekFrom::Start(self.position))
            .await
            .map_err(|e| TaskError::fatal(format!("{}: {e}", self.path.display())))?;
        self.partial.clear();
        self.reader = Some((reader, meta.ino()));
        Ok(true)
    }

    /// At the end of the file: whether the path now names another file, or the file was
    /// truncated under us; either way reading starts again at the new file's beginning.
    async fn replaced(&mut self) -> bool {
        let Some((reader, inode)) = &self.reader else { return false };
        let now = tokio::fs::metadata(&self.path).await;
        let open_len = reader.get_ref().metadata().await.map(|m| m.len()).unwrap_or(u64::MAX);
        let rotated = now.as_ref().is_ok_and(|m| m.ino() != *inode);
        let truncated = open_len < self.position + self.partial.len() as u64;
        if rotated || truncated {
            tracing::info!(path = %self.path.display(), rotated, truncated, "reading the file again from its start");
            self.reader = None;
            self.position = 0;
            self.partial.clear();
            true
        } else {
            false
        }
    }
}

#[async_trait]
impl SourceTask for FileSourceTask {
    async fn start(&mut self, offsets: SourceOffsets) -> Result<(), TaskError> {
        if let Some(position) = offsets.get(&self.partition).and_then(|o| o.get("position")).and_then(Value::as_u64) {
            self.position = position;
        }
        tracing::info!(path = %self.path.display(), position = self.position, "reading");
        Ok(())
    }

    async fn poll(&mut self) -> Result<Vec<SourceRecord>, TaskError> {
        if self.reader.is_none() && !self.open().await? {
            tokio::time::sleep(IDLE_WAIT * 5).await;
            return Ok(Vec::new());
        }
        let mut records = Vec::new();
        let mut line = std::mem::take(&mut self.partial);
        while records.len() < self.batch_size {
            let (reader, _) = self.reader.as_mut().expect("opened above");
            let read = reader
                .read_until(b'\n', &mut line)
                .await
                .map_err(|e| TaskError::retriable(format!("reading {}: {e}", self.path.display())))?;
            if read == 0 || line.last() != Some(&b'\n') {
                if line.len() > MAX_LINE_BYTES {
                    return Err(TaskError::Fatal(format!(
                        "{}: a line at byte {} is longer than {MAX_LINE_BYTES} bytes",
                        self.path.display(),
                        self.position
                    )));
                }
                // The end of what is written: keep a partial line for the next poll.
                self.partial = line;
                break;
            }
            self.position += line.len() as u64;
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let value = match String::from_utf8(std::mem::take(&mut line)) {
                Ok(text) => Data::Text(text),
                Err(raw) => Data::Bytes(raw.into_bytes().into()),
            };
            records.push(SourceRecord {
                record: ConnectRecord::new(self.topic.clone(), value),
                source_partition: self.partition.clone(),
                source_offset: json!({ "position": self.position }),
            });
        }
        if records.is_empty() && !self.replaced().await {
            tokio::time::sleep(IDLE_WAIT).await;
        }
        Ok(records)
    }
}
