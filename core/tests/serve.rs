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
