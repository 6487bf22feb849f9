//! The example stream jobs' topologies, shared by the runnable examples (`examples/*.rs`)
//! and their tests.

pub mod enrich_orders;
pub mod windowed_clicks;
pub mod wordcount;

use std::path::PathBuf;

use headwater_streams::{EmbeddedLog, StreamsConfig};

/// Where an example runs: `--bootstrap` or `--embedded-dir`.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// Broker to run against.
    #[arg(long, required_unless_present = "embedded_dir")]
    pub bootstrap: Option<String>,
    /// Run on an embedded log in this directory instead of a broker.
    #[arg(long, conflicts_with = "bootstrap")]
    pub embedded_dir: Option<PathBuf>,
    #[arg(long)]
    pub app_id: String,
    #[arg(long, default_value = "/tmp/headwater-streams")]
    pub state_dir: PathBuf,
    /// `processing.guarantee = exactly_once_v2` (needs `--bootstrap`).
    #[arg(long, conflicts_with = "embedded_dir")]
    pub exactly_once: bool,
}

impl Target {
    /// The application's config.
    ///
    /// # Errors
    /// The embedded log cannot be opened.
    pub fn config(&self) -> anyhow::Result<StreamsConfig> {
        let config = match (&self.bootstrap, &self.embedded_dir) {
            (Some(bootstrap), _) => StreamsConfig::new(&self.app_id, bootstrap),
            (None, Some(dir)) => StreamsConfig::embedded(&self.app_id, EmbeddedLog::open(dir)?),
            (None, None) => anyhow::bail!("give --bootstrap or --embedded-dir"),
        };
        let config = config.state_dir(&self.state_dir);
        Ok(if self.exactly_once { config.exactly_once() } else { config })
    }
}

/// Logs to stderr, `RUST_LOG` or info.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
}
