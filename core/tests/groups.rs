//! Consumer groups with real clients against a real broker: rebalances as members join
//! and leave lose no record; committed offsets survive a broker restart.

mod common;

use common::server::{ServerProcess, run_python};

#[test]
fn a_group_rebalances_without_loss_and_its_offsets_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let output = run_python("groups.py", &[&server.bootstrap, "1"]);
    assert!(output.contains("consumed 3000, committed 3000"), "{output}");
    assert!(output.contains("kafka-python group consumed 500"), "{output}");
    let status = server.stop();
    assert!(status.success(), "{status}");

    let server = ServerProcess::start(dir.path());
    let output = run_python("groups.py", &[&server.bootstrap, "2"]);
    assert!(output.contains("group resumed with only the 60 new records"), "{output}");

    // Kafka's tools see the groups too.
    let list = std::process::Command::new("kcat").args(["-b", &server.bootstrap, "-L"]).output().unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).contains("__consumer_offsets"));
}

#[test]
fn librdkafka_and_headwater_share_a_cooperative_sticky_group() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let output = run_python("cooperative.py", &[&server.bootstrap, env!("CARGO_BIN_EXE_headwater")]);
    assert!(output.contains("mixed cooperative group consumed 6000"), "{output}");
}
