//! Prometheus metrics, served at `http://<metrics_listen>/metrics`.
//!
//! The names live here, in one place; the code that counts uses the `metrics` crate's
//! macros with these names, and the exporter (`metrics-exporter-prometheus`) serves them.
//!
//! | name | kind | labels |
//! | --- | --- | --- |
//! | `headwater_bytes_in_total` | counter | topic |
//! | `headwater_records_in_total` | counter | topic |
//! | `headwater_bytes_out_total` | counter | topic |
//! | `headwater_records_out_total` | counter | topic |
//! | `headwater_request_duration_seconds` | histogram | api |
//! | `headwater_connections` | gauge | |
//! | `headwater_consumer_group_lag` | gauge | group, topic, partition |
//! | `headwater_tier_uploaded_bytes_total` | counter | topic |
//! | `headwater_tier_uploaded_segments_total` | counter | topic |
//! | `headwater_tier_upload_failures_total` | counter | topic |
//! | `headwater_tier_deleted_files_total` | counter | topic |
//! | `headwater_tier_read_bytes_total` | counter | topic |

use std::net::SocketAddr;

use metrics_exporter_prometheus::PrometheusBuilder;

pub const BYTES_IN: &str = "headwater_bytes_in_total";
pub const RECORDS_IN: &str = "headwater_records_in_total";
pub const BYTES_OUT: &str = "headwater_bytes_out_total";
pub const RECORDS_OUT: &str = "headwater_records_out_total";
pub const REQUEST_DURATION: &str = "headwater_request_duration_seconds";
pub const CONNECTIONS: &str = "headwater_connections";
pub const CONSUMER_LAG: &str = "headwater_consumer_group_lag";
pub const TIER_UPLOADED_BYTES: &str = "headwater_tier_uploaded_bytes_total";
pub const TIER_UPLOADED_SEGMENTS: &str = "headwater_tier_uploaded_segments_total";
pub const TIER_UPLOAD_FAILURES: &str = "headwater_tier_upload_failures_total";
pub const TIER_DELETED_FILES: &str = "headwater_tier_deleted_files_total";
pub const TIER_READ_BYTES: &str = "headwater_tier_read_bytes_total";

/// Request latency buckets: 50 µs to 10 s. Produce with acks=all is an fsync (~0.2 ms
/// here); fetch long-polls up to its max wait, typically 0.1-0.5 s.
const LATENCY_BUCKETS: &[f64] =
    &[0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Why metrics could not be served.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve metrics on {addr}: {message}")]
pub struct MetricsError {
    pub addr: SocketAddr,
    pub message: String,
}

/// Installs the global recorder and serves `/metrics` on `addr`. Must run inside a tokio
/// runtime (the listener runs on it).
///
/// # Errors
/// [`MetricsError`] if the address cannot be bound or a recorder is already installed.
pub fn serve(addr: SocketAddr) -> Result<(), MetricsError> {
    let error = |message: String| MetricsError { addr, message };
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(REQUEST_DURATION.to_string()),
            LATENCY_BUCKETS,
        )
        .map_err(|e| error(e.to_string()))?
        .install()
        .map_err(|e| error(e.to_string()))
}
