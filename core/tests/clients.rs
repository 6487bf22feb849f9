//! Real Kafka clients (confluent-kafka / librdkafka, kafka-python, kcat) against a real
//! `headwater serve` process. `scripts/test` installs the clients.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::server::{ServerProcess, run_python};
use headwater_core::record::{BatchIter, Compression};

#[test]
fn librdkafka_and_kafka_python_round_trip_every_codec() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let output = run_python("produce_consume.py", &[&server.bootstrap]);
    assert_eq!(output.lines().filter(|l| l.ends_with("records round-tripped")).count(), 11, "{output}");
    let status = server.stop();
    assert!(status.success(), "clean shutdown: {status}");
    // The producers' compression reached the disk as they sent it. (A client sends a batch
    // uncompressed when compressing would make it larger, so not every batch is.)
    for (topic, codec) in [
        ("rd-gzip-plain", Compression::Gzip),
        ("rd-lz4-plain", Compression::Lz4),
        ("rd-snappy-plain", Compression::Snappy),
        ("rd-zstd-idem", Compression::Zstd),
        ("kp-gzip", Compression::Gzip),
        ("kp-lz4", Compression::Lz4),
    ] {
        let segment = dir.path().join(format!("{topic}-0")).join(format!("{:020}.log", 0));
        let bytes = std::fs::read(&segment).unwrap();
        let codecs: Vec<Compression> = BatchIter::new(&bytes).map(|b| b.unwrap().compression().unwrap()).collect();
        assert!(codecs.contains(&codec), "{topic}: no {codec:?} batch in {codecs:?}");
        assert!(codecs.iter().all(|c| *c == codec || *c == Compression::None), "{topic}: {codecs:?}");
    }
}

#[test]
fn kcat_lists_metadata_and_round_trips_keyed_records() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let mut producer = Command::new("kcat")
        .args(["-b", &server.bootstrap, "-P", "-t", "kc", "-K:", "-z", "snappy"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("kcat is installed by scripts/test");
    producer.stdin.take().unwrap().write_all(b"a:first\nb:second\nc:third\n").unwrap();
    assert!(producer.wait().unwrap().success());

    let list = Command::new("kcat").args(["-b", &server.bootstrap, "-L", "-t", "kc"]).output().unwrap();
    let listing = String::from_utf8_lossy(&list.stdout);
    assert!(listing.contains("topic \"kc\" with 1 partitions"), "{listing}");
    assert!(listing.contains("partition 0, leader 0, replicas: 0, isrs: 0"), "{listing}");

    let consume = Command::new("kcat")
        .args(["-b", &server.bootstrap, "-C", "-t", "kc", "-o", "beginning", "-e", "-f", "%k=%s@%o\n"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&consume.stdout), "a=first@0\nb=second@1\nc=third@2\n");
}

#[test]
fn confluent_admin_client_manages_topics_configs_records_and_groups() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let output = run_python("admin.py", &[&server.bootstrap]);
    assert!(output.contains("admin operations all behaved like Kafka"), "{output}");
}
