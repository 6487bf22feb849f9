//! HTTP: `http-source` is an endpoint that accepts POSTed records and answers once the
//! broker has them; `http-sink` POSTs batches of records to a URL, with retries.
//! The server side is axum, the client reqwest.

pub mod sink;
pub mod source;

pub use sink::HttpSink;
pub use source::HttpSource;
