//! End-to-end connector throughput, with real processes: a `headwater serve` broker and
//! `headwater-connect run` workers from this build's directory, and a private PostgreSQL.
//!
//! - **file → broker → file**: `file-source` reads a file of lines into a topic and
//!   `file-sink` writes them to another file, both in one worker; timed from the worker's
//!   start until the output holds every byte. The limit beside it: copying the same file
//!   with an `fdatasync`, in the same directory.
//! - **postgres-sink**: JSON records already in a topic, upserted on their key by
//!   `postgres-sink` into an auto-created table; timed from the worker's start until the
//!   table holds them all. The limits beside it: the same rows loaded by `COPY` through psql,
//!   and by the sink's own statement (`json_populate_recordset` upserts of 3000 rows) run
//!   directly from one client.
//!
//! ```sh
//! cargo build --release -p headwater-core --bin headwater -p headwater-connectors --bin headwater-connect
//! cargo run --release -p headwater-benches --bin connect-bench -- --rounds 3
//! ```

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Lines in the file pipeline's input (about 100 bytes each).
    #[arg(long, default_value_t = 2_000_000)]
    lines: usize,
    /// Records for the postgres sink.
    #[arg(long, default_value_t = 500_000)]
    rows: usize,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Where the broker, files and PostgreSQL live.
    #[arg(long, default_value = "/tmp")]
    dir: PathBuf,
}

/// A child process stopped when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.0.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::current_exe()?.parent().context("bench dir")?.join(name);
    if !path.exists() {
        bail!("{} is missing: build it with --release first (see the module docs)", path.display());
    }
    Ok(path)
}

/// Spawns and waits for a stdout line starting with `ready`.
fn spawn(mut command: Command, ready: &str) -> anyhow::Result<(Proc, String)> {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let proc = Proc(child);
    let line = loop {
        let line = lines.next().context("exited before it was ready")??;
        if line.starts_with(ready) {
            break line;
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Ok((proc, line))
}

fn broker(dir: &Path) -> anyhow::Result<(Proc, String)> {
    let mut command = Command::new(sibling("headwater")?);
    command.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(dir).env("RUST_LOG", "warn");
    let (proc, line) = spawn(command, "headwater listening on ")?;
    let bootstrap = line["headwater listening on ".len()..].split(' ').next().context("address")?.to_string();
    Ok((proc, bootstrap))
}

fn connect(bootstrap: &str, configs: &[&Path]) -> anyhow::Result<Proc> {
    let mut command = Command::new(sibling("headwater-connect")?);
    command.args(["run", "--bootstrap", bootstrap]).args(configs).env("RUST_LOG", "warn");
    Ok(spawn(command, "headwater-connect running")?.0)
}

fn median(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (values[values.len() / 2], values[0], values[values.len() - 1])
}

fn report(name: &str, unit: &str, values: Vec<f64>) {
    let (mid, lo, hi) = median(values);
    println!("{name:<58} {mid:>12.1} {unit} ({lo:.1}-{hi:.1})");
}

/// One file round: (pipeline MB/s, copy-with-fdatasync MB/s).
fn file_round(args: &Args) -> anyhow::Result<(f64, f64)> {
    let dir = tempfile::tempdir_in(&args.dir)?;
    let input = dir.path().join("in.txt");
    {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&input)?);
        for i in 0..args.lines {
            writeln!(out, "{i:012} {}", "abcdefghij".repeat(9))?;
        }
        out.flush()?;
    }
    let bytes = std::fs::metadata(&input)?.len();
    // The limit: the same bytes copied and made durable, in the same directory.
    let copy = dir.path().join("copy.txt");
    let started = Instant::now();
    std::fs::copy(&input, &copy)?;
    std::fs::File::open(&copy)?.sync_data()?;
    let copy_mbs = bytes as f64 / 1e6 / started.elapsed().as_secs_f64();
    std::fs::remove_file(&copy)?;

    let (_broker, bootstrap) = broker(&dir.path().join("broker"))?;
    let output = dir.path().join("out.txt");
    let source = dir.path().join("source.toml");
    std::fs::write(
        &source,
        format!(
            "name = \"in\"\nconnector.class = \"file-source\"\npath = \"{}\"\ntopic = \"lines\"\nbatch.size = 10000\n",
            input.display()
        ),
    )?;
    let sink = dir.path().join("sink.toml");
    std::fs::write(
        &sink,
        format!(
            "name = \"out\"\nconnector.class = \"file-sink\"\ntopics = \"lines\"\npath = \"{}\"\n",
            output.display()
        ),
    )?;
    let started = Instant::now();
    let _connect = connect(&bootstrap, &[&source, &sink])?;
    while std::fs::metadata(&output).map_or(0, |m| m.len()) < bytes {
        if started.elapsed() > Duration::from_secs(600) {
            bail!("the file pipeline did not finish");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let pipeline_mbs = bytes as f64 / 1e6 / started.elapsed().as_secs_f64();
    Ok((pipeline_mbs, copy_mbs))
}

/// A private PostgreSQL (fsync on), as the `postgres` user when run as root.
struct Postgres {
    _proc: Proc,
    url: String,
}

fn as_postgres(program: &Path) -> Command {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn postgres(dir: &Path) -> anyhow::Result<Postgres> {
    let mut bins: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL's server is not installed (scripts/test installs it)")?
        .filter_map(Result::ok)
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    bins.sort();
    let bin = bins.pop().context("no initdb")?;
    let data = dir.join("pgdata");
    std::fs::create_dir_all(&data)?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir).status()?;
    }
    let status = as_postgres(&bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args(["-U", "headwater", "-A", "trust", "-E", "UTF8"])
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("initdb failed");
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = as_postgres(&bin.join("postgres"))
        .arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1", "-k"])
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let url = format!("postgres://headwater@127.0.0.1:{port}/postgres");
    let pg = Postgres { _proc: Proc(child), url };
    let deadline = Instant::now() + Duration::from_secs(60);
    while psql(&pg.url, "SELECT 1").is_err() {
        if Instant::now() > deadline {
            bail!("PostgreSQL did not start");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(pg)
}

fn psql(url: &str, sql: &str) -> anyhow::Result<String> {
    let output = Command::new("psql").args([url, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql]).output()?;
    if !output.status.success() {
        bail!("psql: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn row(i: usize) -> String {
    format!(
        r#"{{"id":{i},"customer":"c{}","amount":{}.25,"status":"paid","note":"order number {i}"}}"#,
        i % 1000,
        i % 500
    )
}

/// One postgres round: (sink rows/s, COPY rows/s, direct statement rows/s).
fn postgres_round(args: &Args) -> anyhow::Result<(f64, f64, f64)> {
    let dir = tempfile::tempdir_in(&args.dir)?;
    // The postgres user must reach its data directory inside.
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let pg = postgres(&dir.path().join("pg"))?;
    let n = args.rows;
    let table =
        "CREATE TABLE {t} (id bigint PRIMARY KEY, customer text, amount double precision, status text, note text)";

    // Limit 1: COPY of the same rows through psql.
    let csv = dir.path().join("rows.csv");
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&csv)?);
        for i in 0..n {
            writeln!(out, "{i},c{},{}.25,paid,order number {i}", i % 1000, i % 500)?;
        }
        out.flush()?;
    }
    psql(&pg.url, &table.replace("{t}", "copied"))?;
    let started = Instant::now();
    psql(&pg.url, &format!("\\copy copied FROM '{}' CSV", csv.display()))?;
    let copy_rate = n as f64 / started.elapsed().as_secs_f64();

    // Limit 2: the sink's statement, 3000 rows at a time, from one client.
    psql(&pg.url, &table.replace("{t}", "direct"))?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let direct_rate = runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        let sql = "INSERT INTO direct (id, customer, amount, status, note) SELECT id, customer, amount, status, note \
                   FROM json_populate_recordset(NULL::direct, $1::text::json) ON CONFLICT (id) DO UPDATE SET \
                   customer = EXCLUDED.customer, amount = EXCLUDED.amount, status = EXCLUDED.status, note = EXCLUDED.note";
        let started = Instant::now();
        for chunk in (0..n).collect::<Vec<_>>().chunks(3000) {
            let body = format!("[{}]", chunk.iter().map(|i| row(*i)).collect::<Vec<_>>().join(","));
            client.execute(sql, &[&body]).await?;
        }
        anyhow::Ok(n as f64 / started.elapsed().as_secs_f64())
    })?;

    // The connector.
    let (_broker, bootstrap) = broker(&dir.path().join("broker"))?;
    runtime.block_on(async {
        let producer = headwater_core::client::Producer::connect(headwater_core::client::ProducerConfig {
            bootstrap: bootstrap.clone(),
            linger: Duration::from_millis(20),
            batch_bytes: 512 << 10,
            ..Default::default()
        })
        .await?;
        for i in 0..n {
            let key = bytes::Bytes::from(i.to_string());
            producer.send("orders", Some(key), Some(bytes::Bytes::from(row(i))), Vec::new()).await?;
        }
        producer.flush().await?;
        anyhow::Ok(())
    })?;
    let sink = dir.path().join("pg.toml");
    std::fs::write(
        &sink,
        format!(
            "name = \"pg\"\nconnector.class = \"postgres-sink\"\ntopics = \"orders\"\nurl = \"{}\"\ntable = \"sunk\"\n\
             primary_key = \"id\"\nauto_create = true\n",
            pg.url
        ),
    )?;
    let started = Instant::now();
    let _connect = connect(&bootstrap, &[&sink])?;
    loop {
        let count: usize = psql(&pg.url, "SELECT count(*) FROM sunk").ok().and_then(|c| c.parse().ok()).unwrap_or(0);
        if count >= n {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("the postgres sink did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let sink_rate = n as f64 / started.elapsed().as_secs_f64();
    Ok((sink_rate, copy_rate, direct_rate))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (mut pipeline, mut copy) = (Vec::new(), Vec::new());
    let (mut sink, mut pg_copy, mut direct) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..args.rounds {
        let (p, c) = file_round(&args)?;
        eprintln!("round {round}: file pipeline {p:.1} MB/s, copy+fdatasync {c:.1} MB/s");
        pipeline.push(p);
        copy.push(c);
        let (s, k, d) = postgres_round(&args)?;
        eprintln!("round {round}: postgres-sink {s:.0} rows/s, COPY {k:.0} rows/s, direct upserts {d:.0} rows/s");
        sink.push(s);
        pg_copy.push(k);
        direct.push(d);
    }
    println!("median (min-max) of {} rounds; {} lines, {} rows", args.rounds, args.lines, args.rows);
    report("file-source -> broker -> file-sink", "MB/s", pipeline);
    report("limit: copy the same file + fdatasync", "MB/s", copy);
    report("postgres-sink (upserts, auto-created table)", "rows/s", sink);
    report("limit: COPY of the same rows (psql \\copy)", "rows/s", pg_copy);
    report("limit: the sink's upsert statement from one client", "rows/s", direct);
    Ok(())
}
