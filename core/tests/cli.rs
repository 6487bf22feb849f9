//! The `headwater` binary, run as a user would.

mod common;

use std::process::Command;

use common::*;
use headwater_core::log::LogConfig;

#[test]
fn log_dump_prints_batches_and_fails_on_a_corrupt_segment() {
    let dir = tempfile::tempdir().unwrap();
    {
        let t = open_log_system_clock(dir.path(), LogConfig::default());
        t.log.append(&batch(&["a", "b", "c"], 42), 3).unwrap();
        t.log.append(&batch(&["d"], 43), 3).unwrap();
        t.log.close().unwrap();
    }
    let output = Command::new(env!("CARGO_BIN_EXE_headwater"))
        .args(["log", "dump", "--records"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("offsets 0..=2") && stdout.contains("offsets 3..=3"), "{stdout}");
    assert!(stdout.contains("offset 1 timestamp 42"), "{stdout}");

    let segment = dir.path().join(format!("{:020}.log", 0));
    let mut bytes = std::fs::read(&segment).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0xff;
    std::fs::write(&segment, bytes).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_headwater")).args(["log", "dump"]).arg(&segment).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("corrupt batch"));
    assert!(String::from_utf8_lossy(&output.stderr).contains("1 invalid batch"));

    let output =
        Command::new(env!("CARGO_BIN_EXE_headwater")).args(["log", "dump", "/nonexistent/x.log"]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "one clear line: {stderr}");
}
