//! Files: `file-source` reads a file's lines into a topic and keeps tailing it;
//! `file-sink` appends records' values to a file, one per line. They accept Kafka's
//! FileStreamSource / FileStreamSink settings (`file`, `topic`, `topics`, `batch.size`)
//! as well as `path`.

pub mod sink;
pub mod source;

pub use sink::{FileSink, FileSinkTask};
pub use source::{FileSource, FileSourceTask};
