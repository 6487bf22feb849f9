//! SQL over a running broker's Postgres endpoint (`serve --pg-listen`): psql (Debian's
//! postgresql-client, which `scripts/test` installs), `headwater sql`, and a Postgres
//! driver's extended protocol (tokio-postgres), over a topic whose history is partly
//! tiered to Parquet.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::server::{ServerProcess, run_python};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn psql(port: u16, password: &str, sql: &str) -> std::process::Output {
    Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "headwater", "-d", "headwater"])
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql is installed by scripts/test")
}

fn text(output: &std::process::Output) -> (String, String) {
    (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// Waits until both partitions of `tiered` have remote files.
fn wait_for_remote_files(data: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let manifests = walk(&data.join("tier")).into_iter().filter(|p| p.ends_with("manifest.json")).count();
        if manifests == 2 {
            return;
        }
        assert!(Instant::now() < deadline, "nothing tiered");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() { out.extend(walk(&path)) } else { out.push(path) }
    }
    out
}

#[test]
fn psql_headwater_sql_and_a_driver_query_topics_across_the_tier() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        "\"remote.log.manager.task.interval.ms\" = 200\n\"log.retention.check.interval.ms\" = 200\n",
    )
    .unwrap();
    let pg_port = free_port();
    let pg_listen = format!("127.0.0.1:{pg_port}");
    let server =
        ServerProcess::start_with_args(&data, &["--config", config.to_str().unwrap(), "--pg-listen", &pg_listen]);
    run_python("tiered.py", &["produce", &server.bootstrap, "tiered", "4000"]);
    wait_for_remote_files(&data);

    // psql: one query over Parquet history and the local tail.
    let output = psql(
        pg_port,
        "headwater",
        "SELECT partition, count(*), min(\"offset\"), max(\"offset\") FROM tiered GROUP BY partition ORDER BY partition",
    );
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stdout, "0|2000|0|1999\n1|2000|0|1999\n");
    let output = psql(
        pg_port,
        "headwater",
        "SELECT user, count(*) FROM tiered WHERE partition = 0 GROUP BY user ORDER BY user LIMIT 2",
    );
    assert_eq!(text(&output).0, "user-0|154\nuser-1|154\n", "{}", text(&output).1);

    // Bad input: a clear error, and the endpoint and the broker carry on.
    let output = psql(pg_port, "headwater", "SELECT * FROM no_such_topic");
    assert!(!output.status.success());
    assert!(text(&output).1.contains("table 'headwater.public.no_such_topic' not found"), "{}", text(&output).1);
    let output = psql(pg_port, "wrong", "SELECT 1");
    assert!(!output.status.success());
    assert!(text(&output).1.to_lowercase().contains("password"), "{}", text(&output).1);
    let output = psql(pg_port, "headwater", "CREATE TABLE t (a INT)");
    assert!(!output.status.success() && text(&output).1.contains("DDL not supported"), "{}", text(&output).1);

    // headwater sql: a table, like psql's.
    let headwater = env!("CARGO_BIN_EXE_headwater");
    let output = Command::new(headwater)
        .args([
            "sql",
            "--pg",
            &pg_listen,
            "SELECT partition, count(*) AS n FROM tiered GROUP BY partition ORDER BY partition",
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stdout, " partition | n\n-----------+------\n 0         | 2000\n 1         | 2000\n(2 rows)\n");
    // ... and its prompt, fed from stdin: a failed query does not end it.
    let mut repl = Command::new(headwater)
        .args(["sql", "--pg", &pg_listen])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    repl.stdin.take().unwrap().write_all(b"SELEC 1;\nSELECT count(*) AS n\n  FROM tiered;\n").unwrap();
    let output = repl.wait_with_output().unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("ERROR") && stderr.contains("SELEC"), "{stderr}");
    assert!(stdout.contains(" 4000\n(1 row)"), "{stdout}");

    // A driver's extended protocol: a prepared statement with typed parameters.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(
            &format!("host=127.0.0.1 port={pg_port} user=headwater password=headwater dbname=headwater"),
            tokio_postgres::NoTls,
        )
        .await
        .unwrap();
        tokio::spawn(connection);
        let rows = client
            .query(
                "SELECT \"offset\", user, amount FROM tiered WHERE partition = $1 AND \"offset\" >= $2 ORDER BY \"offset\" LIMIT 3",
                &[&1i32, &1500i64],
            )
            .await
            .unwrap();
        let got: Vec<(i64, String, f64)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
        assert_eq!(got, [(1500, "user-5".into(), 2250.0), (1501, "user-6".into(), 2251.5), (1502, "user-7".into(), 2253.0)]);
        let error = client.query("SELECT nope FROM tiered", &[]).await.unwrap_err();
        assert_eq!(error.code().map(|c| c.code()), Some("42703"), "{error:?}");
    });

    // Kafka clients never noticed.
    run_python("tiered.py", &["consume", &server.bootstrap, "tiered", "4000"]);
    assert!(server.stop().success());
}
