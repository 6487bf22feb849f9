//! The `headwater` command line: `serve` runs a broker; `log dump` inspects files.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use std::sync::Arc;

/// A request may claim absurd array sizes; see `headwater_core::alloc`.
#[global_allocator]
static ALLOCATOR: headwater_core::alloc::GuardedAllocator = headwater_core::alloc::GuardedAllocator;

use headwater_core::broker::Broker;
use headwater_core::cluster::quorum::{Controller, ControllerConfig};
use headwater_core::config::{ClusterConfig, ServerConfig};
use headwater_core::log::{LogManager, LogManagerOptions};
use headwater_core::partition::ReplicaManager;
use headwater_core::protocol::Server;
use headwater_core::record::{BatchIter, RecordBatch};
use headwater_core::sql::SqlEngine;
use headwater_core::tier::{Leadership, TierManager, TierOptions};

#[derive(Debug, Parser)]
#[command(
    name = "headwater",
    version,
    about = "Headwater: a stream-processing framework with its own Kafka-compatible log"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a broker that Kafka clients can use.
    Serve(ServeArgs),
    /// Create, list, describe, alter and delete topics.
    Topic {
        /// The broker to talk to.
        #[arg(long, global = true, default_value = "127.0.0.1:9092")]
        bootstrap: String,
        #[command(subcommand)]
        command: TopicCommand,
    },
    /// Move partitions' replicas and leaders between brokers (a cluster).
    Partition {
        #[arg(long, global = true, default_value = "127.0.0.1:9092")]
        bootstrap: String,
        #[command(subcommand)]
        command: PartitionCommand,
    },
    /// List, describe and reset consumer groups.
    Group {
        #[arg(long, global = true, default_value = "127.0.0.1:9092")]
        bootstrap: String,
        #[command(subcommand)]
        command: GroupCommand,
    },
    /// Produce lines from stdin as records, one per line.
    Produce(ProduceArgs),
    /// Print a topic's records (values, or key=value with --print-key), one per line.
    Consume(ConsumeArgs),
    /// Measure a broker: load generation with latency percentiles.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Inspect log files on disk.
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
    /// Query topics with SQL through a broker's Postgres endpoint (serve --pg-listen):
    /// one query, or a prompt when none is given.
    Sql(SqlArgs),
}

#[derive(Debug, clap::Args)]
struct SqlArgs {
    /// The broker's Postgres endpoint.
    #[arg(long, default_value = "127.0.0.1:5433")]
    pg: String,
    #[arg(long, default_value = "headwater")]
    user: String,
    /// The password [default: $PGPASSWORD, or headwater].
    #[arg(long)]
    password: Option<String>,
    #[arg(long, default_value = "headwater")]
    database: String,
    /// The query; without one, read queries (ending in ;) from a prompt.
    query: Option<String>,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// A TOML config file; flags given here override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where logs live [default: ./data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address for Kafka clients [default: 127.0.0.1:9092].
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// host:port that clients are told to connect to [default: the listen address].
    #[arg(long)]
    advertised_listener: Option<String>,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics [default: off].
    #[arg(long)]
    metrics_listen: Option<std::net::SocketAddr>,
    /// This node's id [default: 0].
    #[arg(long)]
    node_id: Option<i32>,
    /// The controller quorum, ID@HOST:PORT,... (cluster mode) [default: a single node].
    #[arg(long)]
    voters: Option<String>,
    /// Where this node's controller listener binds [default: its address in --voters].
    #[arg(long)]
    controller_listen: Option<std::net::SocketAddr>,
    /// Serve SQL over topics to Postgres clients (psql, drivers) at HOST:PORT [default: off].
    #[arg(long)]
    pg_listen: Option<std::net::SocketAddr>,
    /// Where tiered segments go: s3://bucket/prefix (AWS_* environment variables for
    /// credentials, AWS_ENDPOINT_URL for S3-compatible servers) or a local folder
    /// [default: DATA_DIR/tier].
    #[arg(long)]
    tier_url: Option<String>,
}

#[derive(Debug, Subcommand)]
enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        /// Replicas per partition [default: the broker's default.replication.factor].
        #[arg(long, default_value_t = -1)]
        replication_factor: i16,
        /// A topic config, KEY=VALUE with Kafka's names (repeatable).
        #[arg(long = "config", value_parser = parse_key_value)]
        configs: Vec<(String, String)>,
    },
    /// List topics.
    List,
    /// Show a topic's partitions and every config with its source.
    Describe { name: String },
    /// Set or remove topic configs.
    Alter {
        name: String,
        /// KEY=VALUE to set (repeatable).
        #[arg(long = "set", value_parser = parse_key_value)]
        set: Vec<(String, String)>,
        /// KEY to remove, back to the default (repeatable).
        #[arg(long = "delete")]
        delete: Vec<String>,
        /// Grow the topic to this many partitions.
        #[arg(long)]
        partitions: Option<i32>,
    },
    /// Delete a topic and its data.
    Delete { name: String },
}

#[derive(Debug, Subcommand)]
enum PartitionCommand {
    /// Move a partition to other brokers while clients run; the first is the preferred
    /// leader. The old replicas leave once the new ones are in sync.
    Reassign {
        topic: String,
        partition: i32,
        /// Broker ids, comma-separated (e.g. 2,3,4).
        #[arg(long, value_delimiter = ',', required = true)]
        replicas: Vec<i32>,
    },
    /// Move leadership back to the preferred replicas, of one topic or of all.
    ElectLeaders {
        /// Only this topic's partitions.
        topic: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum GroupCommand {
    /// List consumer groups and their states.
    List,
    /// Show a group's members, assignments, and committed offsets and lag per partition of
    /// a topic.
    Describe {
        group: String,
        /// Show committed offsets and lag for this topic.
        #[arg(long)]
        topic: Option<String>,
    },
    /// Set a group's committed offsets for a topic (the group must be empty).
    ResetOffsets {
        group: String,
        #[arg(long)]
        topic: String,
        #[arg(long, conflicts_with_all = ["to_latest", "to_offset"])]
        to_earliest: bool,
        #[arg(long, conflicts_with = "to_offset")]
        to_latest: bool,
        #[arg(long)]
        to_offset: Option<i64>,
    },
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

#[derive(Debug, clap::Args)]
struct ProduceArgs {
    topic: String,
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Split each line at the first SEP into key and value.
    #[arg(long)]
    key_separator: Option<String>,
    /// 0, 1 or all.
    #[arg(long, default_value = "all")]
    acks: String,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    compression: String,
}

#[derive(Debug, clap::Args)]
struct ConsumeArgs {
    topic: String,
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Start at the oldest record instead of the newest.
    #[arg(long)]
    from_beginning: bool,
    /// Stop after this many records.
    #[arg(long)]
    max: Option<u64>,
    /// Stop once caught up with the end of every partition.
    #[arg(long)]
    exit_at_end: bool,
    /// Print key=value rather than the value alone.
    #[arg(long)]
    print_key: bool,
    /// Consume as a member of this consumer group, from its committed offsets.
    #[arg(long)]
    group: Option<String>,
    /// With --group, the assignors to offer, preferred first (Kafka's
    /// `partition.assignment.strategy`): range, roundrobin, sticky, cooperative-sticky.
    #[arg(long, value_delimiter = ',', default_value = "range,roundrobin", value_parser = parse_assignor)]
    assignor: Vec<headwater_core::client::assignor::Assignor>,
}

fn parse_assignor(name: &str) -> Result<headwater_core::client::assignor::Assignor, String> {
    headwater_core::client::assignor::Assignor::from_name(name)
        .ok_or_else(|| format!("unknown assignor {name:?}: expected range, roundrobin, sticky or cooperative-sticky"))
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Produce records as fast as possible (or at --rate) and report MB/s, records/s and
    /// latency percentiles.
    Produce(ProduceBenchArgs),
    /// Read a topic from the beginning and report MB/s and records/s.
    Consume(ConsumeBenchArgs),
}

#[derive(Debug, clap::Args)]
struct ConsumeBenchArgs {
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    #[arg(long, default_value = "headwater-bench")]
    topic: String,
    /// Stop after this many records (or at the end of the topic).
    #[arg(long, default_value_t = u64::MAX)]
    records: u64,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct ProduceBenchArgs {
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    #[arg(long, default_value = "headwater-bench")]
    topic: String,
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    #[arg(long, default_value_t = 1024)]
    record_bytes: usize,
    /// Partitions of the topic, if the bench creates it.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Replicas per partition, if the bench creates the topic [default: the broker's].
    #[arg(long, default_value_t = -1)]
    replication_factor: i16,
    /// Transactional producers that commit every this many milliseconds (as Kafka's
    /// producer perf tool); with --end-to-end the consumer reads committed data.
    #[arg(long)]
    transaction_duration_ms: Option<u64>,
    /// A config of the topic, if the bench creates it: KEY=VALUE (repeatable).
    #[arg(long = "topic-config", value_parser = parse_key_value)]
    topic_configs: Vec<(String, String)>,
    /// 0, 1 or all.
    #[arg(long, default_value = "all")]
    acks: String,
    #[arg(long, default_value_t = 1)]
    producers: usize,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    compression: String,
    /// Target records per second for all producers together (default: as fast as possible).
    #[arg(long)]
    rate: Option<u64>,
    /// Also consume the topic and report produce-to-consume latency (end_to_end_ms).
    #[arg(long)]
    end_to_end: bool,
    /// The producer's batch.size in bytes.
    #[arg(long, default_value_t = 16384)]
    batch_bytes: usize,
    /// The producer's linger.ms.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// Print one JSON object: mb_per_s, records_per_s, latency_ms {p50, p99, p999, max}.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum LogCommand {
    /// Print the batches of a segment file (or of every segment in a partition
    /// directory), checking each CRC, like Kafka's kafka-dump-log.
    Dump {
        /// A `.log` segment file or a `<topic>-<partition>` directory.
        path: PathBuf,
        /// Print every record's offset, timestamp, key and value size too.
        #[arg(long)]
        records: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Bench { command: BenchCommand::Produce(args) } => bench_produce(args),
        Command::Bench { command: BenchCommand::Consume(args) } => run_async(async move {
            let json = args.json;
            let bench = headwater_core::bench::ConsumeBench {
                bootstrap: args.bootstrap,
                topic: args.topic,
                records: args.records,
            };
            let result = headwater_core::bench::run_consume(bench).await?;
            if json {
                // Reading what is already there has no per-record latency to report.
                println!("{}", result.to_throughput_json());
            } else {
                println!(
                    "{} records, {:.1} MB/s, {:.0} records/s",
                    result.records, result.mb_per_s, result.records_per_s
                );
            }
            Ok(())
        }),
        Command::Topic { bootstrap, command } => run_async(topic(bootstrap, command)),
        Command::Produce(args) => run_async(produce(args)),
        Command::Consume(args) => run_async(consume(args)),
        Command::Group { bootstrap, command } => run_async(group(bootstrap, command)),
        Command::Partition { bootstrap, command } => run_async(partition(bootstrap, command)),
        Command::Log { command: LogCommand::Dump { path, records } } => dump(&path, records),
        Command::Sql(args) => run_async(sql(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("headwater: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let mut config = match &args.config {
        Some(path) => ServerConfig::from_file(path)?,
        None => ServerConfig::default(),
    };
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(advertised) = args.advertised_listener {
        config.advertised_listener = Some(advertised);
    }
    if let Some(metrics) = args.metrics_listen {
        config.metrics_listen = Some(metrics);
    }
    if let Some(node_id) = args.node_id {
        config.node_id = node_id;
    }
    if let Some(voters) = args.voters {
        config.voters = Some(voters);
    }
    if let Some(listen) = args.controller_listen {
        config.controller_listen = Some(listen);
    }
    if let Some(url) = args.tier_url {
        config.tier_url = Some(url);
    }
    if let Some(listen) = args.pg_listen {
        config.pg_listen = Some(listen);
    }
    config.validate()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run_server(config))
}

async fn run_server(mut config: ServerConfig) -> anyhow::Result<()> {
    // Signal handlers go in before anything announces readiness: a supervisor may send
    // SIGTERM the moment it sees the listening line, and that must still shut down cleanly.
    let shutdown = shutdown_signal()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    config.listen = listener.local_addr()?;
    if let Some(addr) = config.metrics_listen {
        headwater_core::metrics::serve(addr)?;
    }
    let options = LogManagerOptions { defaults: config.topic_defaults.clone(), ..LogManagerOptions::default() };
    let data_dir = config.data_dir.clone();
    let logs = tokio::task::spawn_blocking(move || LogManager::open(&data_dir, options))
        .await?
        .with_context(|| format!("cannot open data dir {}", config.data_dir.display()))?;
    logs.start_maintenance(std::time::Duration::from_millis(config.retention_check_interval_ms));
    let cluster = match config.cluster()? {
        None => None,
        Some(cluster) => Some(start_cluster_node(&config, cluster, Arc::clone(&logs)).await?),
    };
    let broker = match &cluster {
        None => Broker::new(Arc::clone(&logs), config.clone())?,
        Some(node) => Broker::clustered(Arc::clone(&logs), config.clone(), Arc::clone(&node.replicas))?,
    };
    let tier = start_tier(&config, &logs, cluster.as_ref()).await?;
    let broker = broker.with_tier(Arc::clone(&tier.manager));
    let pg = start_pg(&config, &logs, &tier.manager, cluster.as_ref()).await?;
    let server = Server::new(listener, Arc::new(broker), config.max_connections, config.socket_request_max_bytes);
    let handle = server.handle();
    // One line on stdout that scripts can wait for.
    println!("headwater listening on {} (data dir {})", server.local_addr()?, config.data_dir.display());
    if let Some(pg) = &pg {
        println!("headwater sql listening on {} (postgres protocol)", pg.addr);
    }
    let running = tokio::spawn(server.run());
    shutdown.await;
    if let Some(node) = &cluster {
        node.controlled_shutdown(config.node_id).await;
    }
    tracing::info!("shutting down: no new connections, finishing requests, flushing logs");
    handle.shutdown();
    running.await?;
    if let Some(pg) = pg {
        pg.stop().await;
    }
    tier.stop().await;
    if let Some(node) = cluster {
        node.replicas.shutdown();
        node.controller.shutdown().await;
    }
    tokio::task::spawn_blocking(move || logs.close()).await??;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Tiered storage's background task.
struct RunningTier {
    manager: Arc<TierManager>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningTier {
    /// Stops after the upload in progress, if any, or after 30 s (an upload cut short
    /// leaves its segment local, to go again at the next start).
    async fn stop(self) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(std::time::Duration::from_secs(30), &mut task).await.is_err() {
            tracing::warn!("tiering did not stop within 30 s; abandoning the upload in progress");
            task.abort();
        }
    }
}

/// Opens the tier's object store, reads the manifests, and starts uploading.
async fn start_tier(
    config: &ServerConfig,
    logs: &Arc<LogManager>,
    cluster: Option<&ClusterNode>,
) -> anyhow::Result<RunningTier> {
    let url = config.tier_url()?;
    let store = headwater_core::tier::store::open(&url).with_context(|| format!("cannot open the tier at {url}"))?;
    let mut options = TierOptions::new(config.data_dir.join("tier-staging"));
    options.interval = std::time::Duration::from_millis(config.remote_log_manager_task_interval_ms);
    options.cache_bytes = config.remote_fetch_cache_bytes;
    let manager = match cluster {
        None => TierManager::single_node(store, Arc::clone(logs), options),
        Some(node) => {
            let leadership: Arc<dyn Leadership> = node.replicas.clone();
            TierManager::new(store, Arc::clone(logs), leadership, options)
        }
    };
    // An unreachable store must not keep the broker down: reads of remote history wait
    // for the first pass that reaches it, and local data stays until then.
    match tokio::time::timeout(std::time::Duration::from_secs(10), manager.load()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%url, error = %headwater_core::tier::manager::error_chain(&error),
            "cannot read the tier's manifests yet; retrying in the background"),
        Err(_) => tracing::warn!(%url, "the tier did not answer within 10 s; retrying in the background"),
    }
    tracing::info!(%url, "tiered storage ready");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = manager.start(stopped);
    Ok(RunningTier { manager, stop, task })
}

/// The Postgres endpoint and its query engine.
struct RunningPg {
    addr: std::net::SocketAddr,
    engine: Arc<SqlEngine>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningPg {
    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        // The query runtime cannot be dropped on an async thread.
        let engine = self.engine;
        let _ = tokio::task::spawn_blocking(move || engine.shutdown()).await;
    }
}

/// Starts SQL over topics on `--pg-listen`, if given.
async fn start_pg(
    config: &ServerConfig,
    logs: &Arc<LogManager>,
    tier: &Arc<TierManager>,
    cluster: Option<&ClusterNode>,
) -> anyhow::Result<Option<RunningPg>> {
    let Some(listen) = config.pg_listen else { return Ok(None) };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen for postgres on {listen}"))?;
    let addr = listener.local_addr()?;
    let visibility: Arc<dyn headwater_core::sql::Visibility> = match cluster {
        None => Arc::new(headwater_core::sql::SingleNode),
        Some(node) => node.replicas.clone(),
    };
    let sources = headwater_core::sql::Sources { logs: Arc::clone(logs), tier: Some(Arc::clone(tier)), visibility };
    let options = headwater_core::sql::SqlOptions {
        threads: config.sql_threads,
        memory_limit: config.sql_memory_limit_bytes,
        ..Default::default()
    };
    let engine = SqlEngine::start(sources, options)?;
    let pg_options = headwater_core::sql::pg::PgOptions {
        user: config.pg_user.clone(),
        password: config.pg_password.clone(),
        database: config.pg_database.clone(),
        ..Default::default()
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(headwater_core::sql::pg::serve(listener, Arc::clone(&engine), pg_options, stopped));
    Ok(Some(RunningPg { addr, engine, stop, task }))
}

/// `headwater sql`: one query, or a prompt, through the broker's Postgres endpoint.
async fn sql(args: SqlArgs) -> anyhow::Result<()> {
    use std::io::{BufRead, IsTerminal, Write};
    let (host, port) = args.pg.rsplit_once(':').with_context(|| format!("--pg {}: not HOST:PORT", args.pg))?;
    let password = args.password.or_else(|| std::env::var("PGPASSWORD").ok()).unwrap_or_else(|| "headwater".into());
    let mut config = tokio_postgres::Config::new();
    config.host(host).port(port.parse().context("--pg: not a port")?).user(&args.user).password(password);
    config.dbname(&args.database).connect_timeout(std::time::Duration::from_secs(10));
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.with_context(|| {
        format!("cannot reach the SQL endpoint at {} (is the broker serving --pg-listen?)", args.pg)
    })?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("headwater: connection: {error}");
        }
    });
    if let Some(query) = args.query {
        return run_query(&client, &query).await;
    }
    let interactive = std::io::stdin().is_terminal();
    let mut pending = String::new();
    let stdin = std::io::stdin();
    loop {
        if interactive {
            print!("{}", if pending.is_empty() { "headwater=> " } else { "headwater-> " });
            std::io::stdout().flush()?;
        }
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            return Ok(());
        }
        let trimmed = line.trim();
        if pending.is_empty() && matches!(trimmed, "\\q" | "quit" | "exit") {
            return Ok(());
        }
        pending.push_str(&line);
        if trimmed.ends_with(';') {
            let query = std::mem::take(&mut pending);
            // A failed query is reported and the prompt goes on.
            if let Err(error) = run_query(&client, query.trim()).await {
                eprintln!("{error:#}");
            }
        }
    }
}

/// Runs one query and prints its rows as an aligned table, as psql does.
async fn run_query(client: &tokio_postgres::Client, query: &str) -> anyhow::Result<()> {
    use tokio_postgres::SimpleQueryMessage;
    let messages = client.simple_query(query).await.map_err(|error| match error.as_db_error() {
        Some(db) => anyhow::anyhow!("ERROR: {}", db.message()),
        None => anyhow::anyhow!(error),
    })?;
    let mut columns: Vec<String> = Vec::new();
    let mut rows: Vec<Vec<String>> = Vec::new();
    for message in messages {
        match message {
            SimpleQueryMessage::RowDescription(description) => {
                columns = description.iter().map(|c| c.name().to_string()).collect();
            }
            SimpleQueryMessage::Row(row) => {
                if columns.is_empty() {
                    columns = row.columns().iter().map(|c| c.name().to_string()).collect();
                }
                rows.push((0..row.len()).map(|i| row.get(i).unwrap_or("").to_string()).collect());
            }
            SimpleQueryMessage::CommandComplete(_) => {}
            _ => {}
        }
    }
    print!("{}", format_table(&columns, &rows));
    Ok(())
}

fn format_table(columns: &[String], rows: &[Vec<String>]) -> String {
    if columns.is_empty() {
        return String::new();
    }
    let mut widths: Vec<usize> = columns.iter().map(|c| c.chars().count()).collect();
    for row in rows {
        for (width, value) in widths.iter_mut().zip(row) {
            *width = (*width).max(value.chars().count());
        }
    }
    let line = |values: &[String]| {
        let cells: Vec<String> = values.iter().zip(&widths).map(|(v, w)| format!(" {v:<w$} ")).collect();
        format!("{}\n", cells.join("|").trim_end())
    };
    let mut out = line(columns);
    out.push_str(&widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("+"));
    out.push('\n');
    for row in rows {
        out.push_str(&line(row));
    }
    out.push_str(&format!("({} row{})\n", rows.len(), if rows.len() == 1 { "" } else { "s" }));
    out
}

/// The parts of a cluster node beside its Kafka listener.
struct ClusterNode {
    controller: Arc<Controller>,
    replicas: Arc<ReplicaManager>,
    heartbeats: tokio::task::JoinHandle<()>,
    registered: tokio::sync::watch::Receiver<Option<i64>>,
}

impl ClusterNode {
    /// Before stopping, hands this broker's leaderships to the other replicas (Kafka's
    /// controlled shutdown), so clients move at once rather than after a session timeout.
    async fn controlled_shutdown(&self, node_id: i32) {
        self.heartbeats.abort();
        let Some(epoch) = *self.registered.borrow() else { return };
        tracing::info!("controlled shutdown: moving leaderships away");
        // Short: when the whole cluster stops, the last nodes have no quorum to answer.
        let timeout = std::time::Duration::from_secs(2);
        if let Err(error) = self.controller.fence_for_shutdown(node_id, epoch, timeout).await {
            tracing::warn!(%error, "controlled shutdown: no controller answered; stopping anyway");
            return;
        }
        // Until this node's image shows the move, so its replicas step down before the
        // listener closes.
        let mut image = self.controller.image();
        let moved = image.wait_for(|i| i.brokers.get(&node_id).is_none_or(|b| b.fenced));
        let _ = tokio::time::timeout(timeout, moved).await;
    }
}

/// Starts this node's controller quorum member, its broker registration and heartbeats,
/// and the replica manager that makes its logs follow the metadata.
async fn start_cluster_node(
    config: &ServerConfig,
    cluster: ClusterConfig,
    logs: Arc<LogManager>,
) -> anyhow::Result<ClusterNode> {
    let node_id = config.node_id;
    // A data dir that a single node wrote holds topics no cluster metadata knows of; the
    // replica manager would delete them as deleted topics. Refuse rather than lose them.
    let single_node_topics: Vec<String> =
        logs.topics().into_keys().filter(|t| t != headwater_core::group::OFFSETS_TOPIC).collect();
    if !config.data_dir.join("controller.redb").exists() && !single_node_topics.is_empty() {
        bail!(
            "data dir {} holds topics of a single-node broker ({}); cluster mode starts on an empty data dir",
            config.data_dir.display(),
            single_node_topics.join(", ")
        );
    }
    let bind = &cluster.controller_listen;
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen for controllers on {bind}"))?;
    let advertised = cluster.voters.get(&(node_id as u64)).cloned().unwrap_or_else(|| bind.clone());
    let mut controller_config =
        ControllerConfig::new(node_id as u64, advertised, cluster.voters, config.data_dir.clone());
    controller_config.leader_rebalance = config.auto_leader_rebalance.then(|| {
        let interval = std::time::Duration::from_secs(config.leader_imbalance_check_interval_seconds);
        (interval, config.leader_imbalance_per_broker_percentage)
    });
    let controller = Arc::new(Controller::start(controller_config, listener).await?);
    let (registered_tx, registered) = tokio::sync::watch::channel(None);
    let (ready, ready_rx) = tokio::sync::watch::channel(false);
    let lag_max = std::time::Duration::from_millis(config.replica_lag_time_max_ms);
    let replicas = ReplicaManager::start(node_id, logs, Arc::clone(&controller), lag_max, registered, ready);
    let (host, port) = config.advertised()?;
    let registered = registered_tx.subscribe();
    let heartbeats = controller.run_broker(node_id, host, port as u16, registered_tx, ready_rx);
    tracing::info!(node = node_id, controller = %bind, "cluster node started");
    Ok(ClusterNode { controller, replicas, heartbeats, registered })
}

/// Installs the SIGTERM and SIGINT handlers now and returns a future that completes on
/// either.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

fn run_async(future: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?.block_on(future)
}

fn parse_acks(acks: &str) -> anyhow::Result<i16> {
    Ok(match acks {
        "all" | "-1" => -1,
        "1" => 1,
        "0" => 0,
        other => bail!("--acks must be 0, 1 or all, not {other:?}"),
    })
}

fn parse_compression(name: &str) -> anyhow::Result<headwater_core::record::Compression> {
    headwater_core::record::Compression::from_name(name)
        .with_context(|| format!("--compression must be none, gzip, snappy, lz4 or zstd, not {name:?}"))
}

async fn topic(bootstrap: String, command: TopicCommand) -> anyhow::Result<()> {
    use headwater_core::client::Admin;
    let admin = Admin::connect(&bootstrap).await?;
    match command {
        TopicCommand::Create { name, partitions, replication_factor, configs } => {
            admin
                .create_replicated_topic(&name, partitions, replication_factor, &configs.into_iter().collect())
                .await?;
            println!("created topic {name} with {partitions} partition(s)");
        }
        TopicCommand::List => {
            for topic in admin.topics(None).await? {
                let internal = if topic.internal { "\tinternal" } else { "" };
                println!("{}\t{} partition(s){internal}", topic.name, topic.partitions.len());
            }
        }
        TopicCommand::Describe { name } => {
            let topic =
                admin.topics(Some(std::slice::from_ref(&name))).await?.into_iter().next().context("no such topic")?;
            println!("topic {} ({} partitions)", topic.name, topic.partitions.len());
            for p in &topic.partitions {
                println!("  partition {} leader {} replicas {:?} isr {:?}", p.partition, p.leader, p.replicas, p.isr);
            }
            println!("configs:");
            for (key, config) in admin.topic_configs(&name).await? {
                println!("  {key} = {} ({})", config.value.unwrap_or_default(), config.source);
            }
        }
        TopicCommand::Alter { name, set, delete, partitions } => {
            if set.is_empty() && delete.is_empty() && partitions.is_none() {
                bail!("nothing to alter: give --set KEY=VALUE, --delete KEY or --partitions N");
            }
            if let Some(total) = partitions {
                admin.create_partitions(&name, total).await?;
                println!("topic {name} has {total} partitions");
            }
            if !set.is_empty() || !delete.is_empty() {
                let mut changes: std::collections::BTreeMap<String, Option<String>> =
                    set.into_iter().map(|(k, v)| (k, Some(v))).collect();
                changes.extend(delete.into_iter().map(|k| (k, None)));
                admin.alter_topic_configs(&name, &changes).await?;
                println!("altered topic {name}");
            }
        }
        TopicCommand::Delete { name } => {
            admin.delete_topic(&name).await?;
            println!("deleted topic {name}");
        }
    }
    Ok(())
}

async fn produce(args: ProduceArgs) -> anyhow::Result<()> {
    use headwater_core::client::{Producer, ProducerConfig};
    use std::io::BufRead;
    let config = ProducerConfig {
        bootstrap: args.bootstrap,
        client_id: "headwater-cli".into(),
        acks: parse_acks(&args.acks)?,
        compression: parse_compression(&args.compression)?,
        ..ProducerConfig::default()
    };
    let producer = Producer::connect(config).await?;
    let mut deliveries = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let line = line.context("cannot read stdin")?;
        let (key, value) = match &args.key_separator {
            Some(sep) => match line.split_once(sep.as_str()) {
                Some((k, v)) => (Some(bytes::Bytes::from(k.to_string())), bytes::Bytes::from(v.to_string())),
                None => bail!("line {line:?} has no key separator {sep:?}"),
            },
            None => (None, bytes::Bytes::from(line)),
        };
        deliveries.push(producer.send(&args.topic, key, Some(value), vec![]).await?);
    }
    producer.flush().await?;
    let count = deliveries.len();
    for delivery in deliveries {
        delivery.await?;
    }
    eprintln!("produced {count} record(s) to {}", args.topic);
    Ok(())
}

async fn consume(args: ConsumeArgs) -> anyhow::Result<()> {
    use headwater_core::client::{Admin, Consumer, ConsumerConfig, OffsetReset};
    use std::io::Write;
    let admin = Admin::connect(&args.bootstrap).await?;
    let topic = admin
        .topics(Some(std::slice::from_ref(&args.topic)))
        .await?
        .into_iter()
        .next()
        .with_context(|| format!("no topic {}", args.topic))?;
    let reset = if args.from_beginning { OffsetReset::Earliest } else { OffsetReset::Latest };
    let config = ConsumerConfig {
        bootstrap: args.bootstrap.clone(),
        client_id: "headwater-cli".into(),
        auto_offset_reset: reset,
        fetch_max_wait: std::time::Duration::from_millis(if args.exit_at_end { 100 } else { 500 }),
        ..ConsumerConfig::default()
    };
    let mut out = std::io::stdout().lock();
    let mut seen = 0u64;
    let mut print = |records: Vec<headwater_core::client::ConsumerRecord>| -> anyhow::Result<bool> {
        for record in records {
            let value = record.value.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
            if args.print_key {
                let key = record.key.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
                writeln!(out, "{key}={value}")?;
            } else {
                writeln!(out, "{value}")?;
            }
            seen += 1;
            if args.max.is_some_and(|max| seen >= max) {
                return Ok(true);
            }
        }
        out.flush()?;
        Ok(false)
    };
    if let Some(group) = &args.group {
        use headwater_core::client::{GroupConfig, GroupConsumer};
        let group_config = GroupConfig { assignors: args.assignor.clone(), ..GroupConfig::new(group) };
        let mut consumer = GroupConsumer::subscribe(config, group_config, vec![args.topic.clone()]).await?;
        let mut idle = 0;
        loop {
            let records = consumer.poll().await?;
            // With --exit-at-end, stop after a few empty polls once the group has assigned us.
            idle = if records.is_empty() && !consumer.assignment().is_empty() { idle + 1 } else { 0 };
            if print(records)? || (args.exit_at_end && idle >= 3) {
                consumer.commit().await?;
                consumer.close().await?;
                return Ok(());
            }
        }
    }
    let mut consumer = Consumer::connect(config).await?;
    consumer.assign(topic.partitions.iter().map(|p| (args.topic.clone(), p.partition)));
    loop {
        let records = consumer.poll().await?;
        if records.is_empty() && args.exit_at_end {
            return Ok(());
        }
        if print(records)? {
            return Ok(());
        }
    }
}

async fn partition(bootstrap: String, command: PartitionCommand) -> anyhow::Result<()> {
    let admin = headwater_core::client::Admin::connect(&bootstrap).await?;
    match command {
        PartitionCommand::Reassign { topic, partition, replicas } => {
            admin.reassign_partition(&topic, partition, &replicas).await?;
            println!("moving {topic}-{partition} to brokers {replicas:?}; it completes once they are in sync");
        }
        PartitionCommand::ElectLeaders { topic } => {
            let moved = admin.elect_preferred_leaders(topic.as_deref()).await?;
            for (topic, partition) in &moved {
                println!("{topic}-{partition}: led by its preferred replica again");
            }
            println!("{} partition(s) moved", moved.len());
        }
    }
    Ok(())
}

async fn group(bootstrap: String, command: GroupCommand) -> anyhow::Result<()> {
    use headwater_core::client::Admin;
    let admin = Admin::connect(&bootstrap).await?;
    match command {
        GroupCommand::List => {
            for (group, state) in admin.groups().await? {
                println!("{group}\t{state}");
            }
        }
        GroupCommand::Describe { group, topic } => {
            let info = admin.describe_group(&group).await?;
            println!("group {} state {} protocol {}", info.group_id, info.state, info.protocol);
            for (member, client, partitions) in &info.members {
                println!("  member {member} client {client} partitions {partitions:?}");
            }
            if let Some(topic) = topic {
                let count = admin
                    .topics(Some(std::slice::from_ref(&topic)))
                    .await?
                    .first()
                    .map_or(0, |t| t.partitions.len() as i32);
                let ends = admin.list_offsets(&topic, count, -1).await?;
                for ((partition, committed), (_, end)) in
                    admin.committed_offsets(&group, &topic, count).await?.into_iter().zip(ends)
                {
                    let lag = if committed >= 0 { (end - committed).to_string() } else { "-".to_string() };
                    println!("  {topic}-{partition} committed {committed} end {end} lag {lag}");
                }
            }
        }
        GroupCommand::ResetOffsets { group, topic, to_earliest, to_latest, to_offset } => {
            let count = admin
                .topics(Some(std::slice::from_ref(&topic)))
                .await?
                .first()
                .map_or(0, |t| t.partitions.len() as i32);
            let offsets = match (to_earliest, to_latest, to_offset) {
                (true, _, _) => admin.list_offsets(&topic, count, -2).await?,
                (_, true, _) => admin.list_offsets(&topic, count, -1).await?,
                (_, _, Some(offset)) => (0..count).map(|p| (p, offset)).collect(),
                _ => bail!("give one of --to-earliest, --to-latest or --to-offset N"),
            };
            admin.reset_offsets(&group, &topic, &offsets).await?;
            println!("reset {group} on {topic}: {offsets:?}");
        }
    }
    Ok(())
}

fn bench_produce(args: ProduceBenchArgs) -> anyhow::Result<()> {
    let acks = parse_acks(&args.acks)?;
    let compression = parse_compression(&args.compression)?;
    if args.producers == 0 || args.records == 0 {
        bail!("--producers and --records must be at least 1");
    }
    let bench = headwater_core::bench::ProduceBench {
        bootstrap: args.bootstrap,
        topic: args.topic,
        records: args.records,
        record_bytes: args.record_bytes,
        partitions: args.partitions,
        acks,
        producers: args.producers,
        compression,
        rate: args.rate,
        end_to_end: args.end_to_end,
        batch_bytes: args.batch_bytes,
        linger: std::time::Duration::from_millis(args.linger_ms),
        replication_factor: args.replication_factor,
        topic_configs: args.topic_configs,
        transaction_duration: args.transaction_duration_ms.map(std::time::Duration::from_millis),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = runtime.block_on(headwater_core::bench::run_produce(bench))?;
    if args.json {
        println!("{}", result.to_json());
    } else {
        println!(
            "{} records, {:.1} MB/s, {:.0} records/s; latency ms p50 {:.2} p99 {:.2} p999 {:.2} max {:.2}; longest ack gap {:.0} ms",
            result.records,
            result.mb_per_s,
            result.records_per_s,
            result.latency_ms_p50,
            result.latency_ms_p99,
            result.latency_ms_p999,
            result.latency_ms_max,
            result.max_ack_gap_ms
        );
        if let Some([p50, p99, p999, max]) = result.end_to_end_ms {
            println!("end to end latency ms p50 {p50:.2} p99 {p99:.2} p999 {p999:.2} max {max:.2}");
        }
    }
    Ok(())
}

fn dump(path: &Path, records: bool) -> anyhow::Result<()> {
    let segments = if path.is_dir() {
        let mut segments: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot list {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        segments.sort();
        segments
    } else {
        vec![path.to_path_buf()]
    };
    if segments.is_empty() {
        bail!("no .log segment files in {}", path.display());
    }
    let mut bad = 0;
    for segment in segments {
        let bytes = std::fs::read(&segment).with_context(|| format!("cannot read {}", segment.display()))?;
        println!("segment {} ({} bytes)", segment.display(), bytes.len());
        let mut position = 0usize;
        for batch in BatchIter::new(&bytes) {
            let batch = match batch {
                Ok(batch) => batch,
                Err(error) => {
                    println!("  position {position}: {error}; the rest of the segment is unreadable");
                    bad += 1;
                    break;
                }
            };
            print_batch(position, &batch, records);
            if batch.validate().is_err() {
                bad += 1;
            }
            position += batch.size();
        }
    }
    if bad > 0 {
        bail!("{bad} invalid batch(es)");
    }
    Ok(())
}

fn print_batch(position: usize, batch: &RecordBatch<'_>, records: bool) {
    let validity = match batch.validate() {
        Ok(()) => "valid".to_string(),
        Err(error) => error.to_string(),
    };
    println!(
        "  offsets {}..={} position {position} size {} count {} codec {} max_timestamp {} producer {}/{} seq {} epoch {}{}{} {validity}",
        batch.base_offset(),
        batch.last_offset(),
        batch.size(),
        batch.records_count(),
        batch.compression().map_or("unknown", |c| c.name()),
        batch.max_timestamp(),
        batch.producer_id(),
        batch.producer_epoch(),
        batch.base_sequence(),
        batch.partition_leader_epoch(),
        if batch.is_transactional() { " transactional" } else { "" },
        if batch.is_control() { " control" } else { "" },
    );
    if !records {
        return;
    }
    match batch.records(64 << 20) {
        Ok(decoded) => {
            for record in decoded.iter() {
                match record {
                    Ok(r) => println!(
                        "    offset {} timestamp {} key {} value {} headers {}",
                        r.offset,
                        r.timestamp,
                        r.key.map_or("null".into(), |k| format!("{:?}", String::from_utf8_lossy(k))),
                        r.value.map_or("null".into(), |v| format!("{} bytes", v.len())),
                        r.headers.len()
                    ),
                    Err(error) => println!("    {error}"),
                }
            }
        }
        Err(error) => println!("    records unreadable: {error}"),
    }
}
