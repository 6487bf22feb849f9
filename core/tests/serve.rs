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
