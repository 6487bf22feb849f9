//! `headwater serve` as an operator runs it: readiness, shutdown, restart on the same data.

mod common;

use common::server::{ServerProcess, run_python};

#[test]
fn sigterm_right_after_readiness_still_shuts_down_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..10 {
        let server = ServerProcess::start(dir.path());
        let status = server.stop();
        assert!(status.success(), "round {round}: {status}");
    }
}

#[test]
fn data_written_before_a_clean_restart_is_served_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let output = run_python("produce_consume.py", &[&server.bootstrap]);
    assert!(output.contains("rd-zstd-idem: 300 records round-tripped"), "{output}");
    let status = server.stop();
    assert!(status.success(), "{status}");
    // The same data dir, a new process: the topics and every record are still there.
    let server = ServerProcess::start(dir.path());
    let listing = std::process::Command::new("kcat")
        .args(["-b", &server.bootstrap, "-C", "-t", "rd-zstd-idem", "-o", "beginning", "-e", "-f", "%o %k\n"])
        .output()
        .unwrap();
    let lines: Vec<String> = String::from_utf8_lossy(&listing.stdout).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 300);
    assert_eq!(lines[299], "299 key-299");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    body
}

fn metric(body: &str, prefix: &str) -> Option<f64> {
    body.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn prometheus_metrics_count_traffic_latency_connections_and_lag() {
    let dir = tempfile::tempdir().unwrap();
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let server = ServerProcess::start_with_args(dir.path(), &["--metrics-listen", &metrics_addr]);
    run_python("groups.py", &[&server.bootstrap, "1"]);
    // Lag is published every 5 s; wait for it, with a deadline.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let body = loop {
        let body = scrape(&metrics_addr);
        if body.contains("headwater_consumer_group_lag{") || std::time::Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    };
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert_eq!(metric(&body, "headwater_records_in_total{topic=\"orders\"}"), Some(3000.0), "{body}");
    assert!(metric(&body, "headwater_bytes_in_total{topic=\"orders\"}").unwrap() > 3000.0);
    assert!(metric(&body, "headwater_records_out_total{topic=\"orders\"}").unwrap() >= 3000.0);
    assert!(body.contains("headwater_request_duration_seconds_bucket{api=\"Produce\""), "{body}");
    assert!(body.contains("headwater_request_duration_seconds_count{api=\"JoinGroup\"}"), "{body}");
    assert!(metric(&body, "headwater_connections").is_some(), "{body}");
    // The group consumed everything and committed: no lag on orders.
    let lag: Vec<f64> = body
        .lines()
        .filter(|l| l.starts_with("headwater_consumer_group_lag{group=\"billing\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    assert_eq!(lag.len(), 6, "{body}");
    assert!(lag.iter().all(|l| *l == 0.0), "{lag:?}");
}

#[test]
fn bench_produce_reports_throughput_and_latency_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_headwater"))
        .args(["bench", "produce", "--bootstrap", &server.bootstrap, "--records", "20000", "--record-bytes", "100"])
        .args(["--partitions", "3", "--acks", "all", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let json = String::from_utf8_lossy(&output.stdout);
    for field in [
        "\"records\":20000",
        "\"mb_per_s\":",
        "\"records_per_s\":",
        "\"latency_ms\":{\"p50\":",
        "\"p999\":",
        "\"max\":",
    ] {
        assert!(json.contains(field), "{field} missing from {json}");
    }
    let e2e = std::process::Command::new(env!("CARGO_BIN_EXE_headwater"))
        .args([
            "bench",
            "produce",
            "--bootstrap",
            &server.bootstrap,
            "--topic",
            "e2e",
            "--records",
            "5000",
            "--record-bytes",
            "100",
        ])
        .args(["--partitions", "2", "--acks", "1", "--rate", "20000", "--end-to-end", "--json"])
        .output()
        .unwrap();
    assert!(e2e.status.success(), "{}", String::from_utf8_lossy(&e2e.stderr));
    assert!(
        String::from_utf8_lossy(&e2e.stdout).contains("\"end_to_end_ms\":{\"p50\":"),
        "{}",
        String::from_utf8_lossy(&e2e.stdout)
    );
    let consumed = std::process::Command::new(env!("CARGO_BIN_EXE_headwater"))
        .args(["bench", "consume", "--bootstrap", &server.bootstrap, "--topic", "headwater-bench", "--json"])
        .output()
        .unwrap();
    assert!(consumed.status.success(), "{}", String::from_utf8_lossy(&consumed.stderr));
    let json = String::from_utf8_lossy(&consumed.stdout);
    assert!(json.contains("\"records\":20000") && json.contains("\"mb_per_s\":"), "{json}");
    assert!(!json.contains("latency"), "no latency is measured when consuming: {json}");

    // A bad flag is one clear line and a non-zero exit.
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_headwater"))
        .args(["bench", "produce", "--bootstrap", &server.bootstrap, "--acks", "two"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert_eq!(
        String::from_utf8_lossy(&bad.stderr).trim().lines().count(),
        1,
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

/// The stdout of a command that must succeed (its stderr in the failure message).
fn ok(output: std::process::Output) -> String {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn headwater(args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_headwater"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

#[test]
fn the_cli_manages_topics_and_produces_lines() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let b = server.bootstrap.as_str();
    ok(headwater(
        &["topic", "create", "cli-topic", "--partitions", "3", "--config", "retention.ms=60000", "--bootstrap", b],
        None,
    ));
    assert!(ok(headwater(&["topic", "list", "--bootstrap", b], None)).contains("cli-topic\t3 partition(s)"));
    ok(headwater(
        &[
            "topic",
            "alter",
            "cli-topic",
            "--set",
            "segment.bytes=1048576",
            "--delete",
            "retention.ms",
            "--bootstrap",
            b,
        ],
        None,
    ));
    let described = ok(headwater(&["topic", "describe", "cli-topic", "--bootstrap", b], None));
    assert!(described.contains("segment.bytes = 1048576 (topic)"), "{described}");
    assert!(described.contains("retention.ms = 604800000 (default)"), "{described}");
    assert!(described.contains("partition 2 leader 0"), "{described}");

    let output =
        headwater(&["produce", "lines", "--key-separator", ":", "--bootstrap", b], Some("a:one\nb:two\nc:three\n"));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stderr).contains("produced 3 record(s)"));
    let consumed = std::process::Command::new("kcat")
        .args(["-b", b, "-C", "-t", "lines", "-o", "beginning", "-e", "-f", "%k=%s\n"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&consumed.stdout), "a=one\nb=two\nc=three\n");
    let ours = ok(headwater(
        &["consume", "lines", "--from-beginning", "--print-key", "--exit-at-end", "--bootstrap", b],
        None,
    ));
    assert_eq!(ours, "a=one\nb=two\nc=three\n");
    let first_two = ok(headwater(&["consume", "lines", "--from-beginning", "--max", "2", "--bootstrap", b], None));
    assert_eq!(first_two, "one\ntwo\n");

    // Errors are one clear line and a non-zero exit.
    for args in [
        vec!["topic", "create", "cli-topic", "--bootstrap", b],
        vec!["topic", "alter", "cli-topic", "--set", "retention.ms=soon", "--bootstrap", b],
        vec!["topic", "describe", "missing", "--bootstrap", b],
        vec!["topic", "list", "--bootstrap", "127.0.0.1:1"],
    ] {
        let output = headwater(&args, None);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("headwater: "), "{stderr}");
    }
    ok(headwater(&["topic", "delete", "cli-topic", "--bootstrap", b], None));
    assert!(!ok(headwater(&["topic", "list", "--bootstrap", b], None)).contains("cli-topic"));
}

#[test]
fn the_cli_consumes_as_a_group_describes_it_and_resets_its_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let b = server.bootstrap.as_str();
    ok(headwater(&["topic", "create", "jobs", "--partitions", "2", "--bootstrap", b], None));
    let lines: String = (0..10).map(|i| format!("job-{i}\n")).collect();
    ok(headwater(&["produce", "jobs", "--bootstrap", b], Some(&lines)));

    let first = ok(headwater(
        &["consume", "jobs", "--group", "workers", "--from-beginning", "--exit-at-end", "--bootstrap", b],
        None,
    ));
    assert_eq!(first.lines().count(), 10, "{first}");
    let again = ok(headwater(
        &["consume", "jobs", "--group", "workers", "--from-beginning", "--exit-at-end", "--bootstrap", b],
        None,
    ));
    assert_eq!(again, "", "the group resumes after its commits");

    assert!(ok(headwater(&["group", "list", "--bootstrap", b], None)).contains("workers\tEmpty"));
    let described = ok(headwater(&["group", "describe", "workers", "--topic", "jobs", "--bootstrap", b], None));
    let lags: Vec<&str> = described.lines().filter(|l| l.contains("lag")).collect();
    assert_eq!(lags.len(), 2, "{described}");
    assert!(lags.iter().all(|l| l.ends_with("lag 0")), "{described}");

    ok(headwater(&["group", "reset-offsets", "workers", "--topic", "jobs", "--to-earliest", "--bootstrap", b], None));
    let replay = ok(headwater(&["consume", "jobs", "--group", "workers", "--exit-at-end", "--bootstrap", b], None));
    assert_eq!(replay.lines().count(), 10, "reset to earliest replays everything: {replay}");
}
