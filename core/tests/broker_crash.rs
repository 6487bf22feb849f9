//! The broker SIGKILLed while acks=all producers run, restarted on the same port, several
//! times: every acknowledged record must be in the log, byte for byte, at its offset.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use common::read_all;
use common::server::ServerProcess;
use headwater_core::log::{LogManager, LogManagerOptions};

#[test]
fn every_record_acknowledged_with_acks_all_survives_broker_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let acked_path = dir.path().join("acked.txt");
    let mut server = ServerProcess::start(&data);
    let bootstrap = server.bootstrap.clone();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/acked_producer.py");
    let producer = Command::new("python3")
        .arg(script)
        .args([bootstrap.as_str(), "crashy", acked_path.to_str().unwrap(), "6"])
        .output();
    // The producer runs in its own thread of control: spawn it, then kill the broker under it.
    let producer = std::thread::spawn(move || producer);
    for round in 0..3 {
        std::thread::sleep(Duration::from_millis(1200 + 300 * round));
        server.kill();
        server = ServerProcess::start_on(&data, &bootstrap);
    }
    let output = producer.join().unwrap().expect("run python3");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "producer failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let status = server.stop();
    assert!(status.success(), "clean shutdown after the last round: {status}");

    let acked = common::parse_acknowledged(&std::fs::read_to_string(&acked_path).unwrap());
    assert!(acked.len() > 1000, "only {} records acknowledged: {stdout}", acked.len());

    let logs = LogManager::open(&data, LogManagerOptions::default()).unwrap();
    let mut stored = HashMap::new();
    for partition in 0..3 {
        for (offset, _, value) in read_all(&logs.get("crashy", partition).unwrap()) {
            stored.insert((partition, offset), value.unwrap());
        }
    }
    for (partition, offset, value) in &acked {
        assert_eq!(
            stored.get(&(*partition, *offset)),
            Some(value),
            "acknowledged record {partition}/{offset} lost or changed"
        );
    }
    // Idempotence: nothing was written twice by the producer's retries.
    let mut values: Vec<&String> = stored.values().collect();
    let total = values.len();
    values.sort();
    values.dedup();
    assert_eq!(values.len(), total, "a retried record was stored twice");
    println!("{stdout}; {} acknowledged records verified across 3 broker kills", acked.len());
}
