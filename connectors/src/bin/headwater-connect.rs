//! `headwater-connect`: runs connectors from config files.
//!
//! ```text
//! headwater-connect run --bootstrap 127.0.0.1:9092 file-source.toml file-sink.toml
//! headwater-connect validate pg-sink.json
//! headwater-connect plugins
//! ```

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use headwater_connectors::distributed::{self, DistributedConfig};
use headwater_connectors::{ConnectorConfig, Runtime, WorkerConfig, plugins, runtime};

#[derive(Parser)]
#[command(
    name = "headwater-connect",
    version,
    about = "Moves data between topics and the world, driven by config files"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Standalone mode: runs the connectors in these files until SIGINT or SIGTERM.
    Run {
        /// The broker to connect to (`bootstrap.servers`).
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
        /// Where source offsets are kept (`offset.storage.topic`).
        #[arg(long, default_value = "connect-offsets")]
        offsets_topic: String,
        /// How often tasks commit offsets (`offset.flush.interval.ms`); they also commit
        /// when they stop.
        #[arg(long, default_value_t = 60_000)]
        offset_flush_interval_ms: u64,
        /// `exactly.once.source.support`: source tasks write their records and offsets in
        /// one transaction when their connector can replay from its offsets.
        #[arg(long, value_enum, default_value_t = Support::Disabled)]
        exactly_once_source_support: Support,
        /// Connector configs: TOML, JSON or Kafka Connect `.properties` files.
        #[arg(required = true)]
        configs: Vec<PathBuf>,
    },
    /// Distributed mode: a worker of a group that shares connectors' tasks, serving Kafka
    /// Connect's REST API; connectors are created through it.
    Worker {
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
        /// The workers' group (`group.id`).
        #[arg(long)]
        group: String,
        /// Where the REST API listens.
        #[arg(long, default_value = "127.0.0.1:8083")]
        rest_listen: String,
        #[arg(long, default_value = "connect-configs")]
        configs_topic: String,
        #[arg(long, default_value = "connect-offsets")]
        offsets_topic: String,
        #[arg(long, default_value = "connect-status")]
        status_topic: String,
        #[arg(long, default_value_t = 60_000)]
        offset_flush_interval_ms: u64,
        /// `exactly.once.source.support`, as for `run`.
        #[arg(long, value_enum, default_value_t = Support::Disabled)]
        exactly_once_source_support: Support,
        /// How soon the other workers take a dead worker's tasks (`session.timeout.ms`).
        #[arg(long, default_value_t = 10_000)]
        session_timeout_ms: u64,
    },
    /// Checks connector configs and prints every problem found.
    Validate {
        #[arg(required = true)]
        configs: Vec<PathBuf>,
    },
    /// Lists the connector classes and their settings.
    Plugins,
}

/// Kafka's `exactly.once.source.support` values (its `preparing` step, for rolling a
/// cluster of workers onto exactly-once, is not needed: every worker reads offsets the
/// same way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Support {
    Enabled,
    Disabled,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Run { bootstrap, offsets_topic, offset_flush_interval_ms, exactly_once_source_support, configs } => {
            let configs = read_configs(&configs)?;
            let worker = WorkerConfig {
                offsets_topic,
                offset_flush_interval: Duration::from_millis(offset_flush_interval_ms.max(1)),
                exactly_once_source: exactly_once_source_support == Support::Enabled,
                ..WorkerConfig::new(&bootstrap)
            };
            tokio::runtime::Runtime::new()?.block_on(run(worker, configs))
        }
        Command::Worker {
            bootstrap,
            group,
            rest_listen,
            configs_topic,
            offsets_topic,
            status_topic,
            offset_flush_interval_ms,
            exactly_once_source_support,
            session_timeout_ms,
        } => {
            let config = DistributedConfig {
                worker: WorkerConfig {
                    offsets_topic,
                    offset_flush_interval: Duration::from_millis(offset_flush_interval_ms.max(1)),
                    exactly_once_source: exactly_once_source_support == Support::Enabled,
                    transactional_id_prefix: group.clone(),
                    ..WorkerConfig::new(&bootstrap)
                },
                group,
                configs_topic,
                status_topic,
                session_timeout: Duration::from_millis(session_timeout_ms.max(1000)),
            };
            tokio::runtime::Runtime::new()?.block_on(worker(config, rest_listen))
        }
        Command::Validate { configs } => {
            let configs = read_configs(&configs)?;
            for config in &configs {
                println!("{}: ok ({})", config.name, config.class);
            }
            Ok(())
        }
        Command::Plugins => {
            for plugin in plugins::all() {
                println!("{} ({})", plugin.class, serde_json::to_value(plugin.connector_type)?.as_str().unwrap_or(""));
                for setting in &plugin.definition.settings {
                    let default = setting.default.map_or_else(|| "required".to_string(), |d| format!("default {d:?}"));
                    println!(
                        "  {:<28} {:<8} {:<18} {}",
                        setting.name,
                        format!("{:?}", setting.kind),
                        default,
                        setting.doc
                    );
                }
            }
            Ok(())
        }
    }
}

/// Reads and validates every file before anything starts, so a typo in the third file
/// does not leave the first two running.
fn read_configs(paths: &[PathBuf]) -> anyhow::Result<Vec<ConnectorConfig>> {
    let mut configs: Vec<ConnectorConfig> = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        match ConnectorConfig::from_file(path) {
            Ok(config) => {
                if let Err(error) = runtime::validate(&config) {
                    problems.push(format!("{}: {error}", path.display()));
                } else if configs.iter().any(|c| c.name == config.name) {
                    problems.push(format!("{}: a second connector named {}", path.display(), config.name));
                } else {
                    configs.push(config);
                }
            }
            Err(error) => problems.push(error.to_string()),
        }
    }
    if !problems.is_empty() {
        bail!("invalid connector configs:\n  {}", problems.join("\n  "));
    }
    Ok(configs)
}

async fn run(worker: WorkerConfig, configs: Vec<ConnectorConfig>) -> anyhow::Result<()> {
    let bootstrap = worker.bootstrap.clone();
    let runtime = Runtime::new(worker).await.with_context(|| format!("cannot start against {bootstrap}"))?;
    let names: Vec<String> = configs.iter().map(|c| c.name.clone()).collect();
    for config in configs {
        let name = config.name.clone();
        runtime.start_connector(config).await.with_context(|| format!("cannot start connector {name}"))?;
    }
    println!("headwater-connect running {} connector(s): {}", names.len(), names.join(", "));
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("stopping: tasks commit their offsets");
    runtime.stop_all().await;
    println!("headwater-connect stopped cleanly");
    Ok(())
}

async fn worker(config: DistributedConfig, rest_listen: String) -> anyhow::Result<()> {
    let listener =
        tokio::net::TcpListener::bind(&rest_listen).await.with_context(|| format!("cannot listen on {rest_listen}"))?;
    let url = format!("http://{}", listener.local_addr()?);
    let (shared, events) = distributed::start(&config, url.clone())
        .await
        .with_context(|| format!("cannot start against {}", config.worker.bootstrap))?;
    let router = distributed::rest::router(std::sync::Arc::clone(&shared));
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    println!("headwater-connect worker {url} in group {}", config.group);
    let shutdown = async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("stopping: tasks commit their offsets");
    };
    distributed::run(&config, shared, events, shutdown).await?;
    server.abort();
    println!("headwater-connect stopped cleanly");
    Ok(())
}
