//! Tiered storage against real processes: `headwater serve`, confluent-kafka, kcat, pyarrow,
//! and for the S3 path a real S3-compatible server (`s3s-fs`, which `scripts/test`
//! installs). A tiered topic's closed segments leave local disk; consumers from offset 0
//! still read every record, identically, before and after a restart; pyarrow reads every
//! row of the files.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::server::{ServerProcess, run_python};

const TOPIC: &str = "tiered";
const COUNT: usize = 4000;

fn config_file(dir: &Path) -> PathBuf {
    let path = dir.join("server.toml");
    std::fs::write(&path, "\"remote.log.manager.task.interval.ms\" = 200\n\"log.retention.check.interval.ms\" = 200\n")
        .unwrap();
    path
}

/// Waits until every partition's sealed segments are remote and gone from local disk:
/// one local segment left, and remote files listed in the manifest.
fn wait_until_tiered(data_dir: &Path, manifests: impl Fn() -> Vec<serde_json::Value>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let local: Vec<usize> = (0..2)
            .map(|p| {
                std::fs::read_dir(data_dir.join(format!("{TOPIC}-{p}")))
                    .map(|d| d.filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "log")).count())
                    .unwrap_or(0)
            })
            .collect();
        let manifests = manifests();
        let remote_files: Vec<usize> = manifests.iter().map(|m| m["files"].as_array().map_or(0, Vec::len)).collect();
        if local.iter().all(|n| *n == 1) && remote_files.len() == 2 && remote_files.iter().all(|n| *n > 2) {
            return;
        }
        assert!(Instant::now() < deadline, "not tiered: local segments {local:?}, remote files {remote_files:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn local_manifests(tier_dir: &Path) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let Ok(ids) = std::fs::read_dir(tier_dir.join("topics").join(TOPIC)) else { return out };
    for id in ids {
        for partition in std::fs::read_dir(id.unwrap().path()).unwrap() {
            if let Ok(text) = std::fs::read_to_string(partition.unwrap().path().join("manifest.json")) {
                out.push(serde_json::from_str(&text).unwrap());
            }
        }
    }
    out
}

/// Each partition's remote end offset, "END0,END1".
fn remote_ends(manifests: &[serde_json::Value]) -> String {
    let mut ends: Vec<(i64, i64)> = manifests
        .iter()
        .map(|m| {
            let end = m["files"].as_array().and_then(|f| f.last()).map_or(0, |f| f["next_offset"].as_i64().unwrap());
            (m["partition"].as_i64().unwrap(), end)
        })
        .collect();
    ends.sort();
    ends.iter().map(|(_, end)| end.to_string()).collect::<Vec<_>>().join(",")
}

fn kcat_count(bootstrap: &str) -> usize {
    let output = Command::new("kcat")
        .args(["-b", bootstrap, "-C", "-t", TOPIC, "-o", "beginning", "-e", "-q", "-f", "%p:%o\n"])
        .output()
        .expect("kcat is installed by scripts/test");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).lines().count()
}

#[test]
fn a_consumer_from_offset_zero_reads_across_the_tier_boundary_and_pyarrow_reads_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = config_file(dir.path());
    let server = ServerProcess::start_with_config(&data, &config);
    let count = COUNT.to_string();
    run_python("tiered.py", &["produce", &server.bootstrap, TOPIC, &count]);
    let tier_dir = data.join("tier");
    wait_until_tiered(&data, || local_manifests(&tier_dir));

    run_python("tiered.py", &["consume", &server.bootstrap, TOPIC, &count]);
    assert_eq!(kcat_count(&server.bootstrap), COUNT, "kcat (librdkafka 2.0) reads remote history too");
    let ends = remote_ends(&local_manifests(&tier_dir));
    run_python("tiered.py", &["parquet", TOPIC, &ends, tier_dir.to_str().unwrap()]);

    // After a restart the manifest is read again and history is still served.
    assert!(server.stop().success());
    let server = ServerProcess::start_with_config(&data, &config);
    run_python("tiered.py", &["consume", &server.bootstrap, TOPIC, &count]);
    assert!(server.stop().success());
}

/// A real S3-compatible server on a free port, storing under `dir/<bucket>`.
struct S3Server {
    child: Child,
    endpoint: String,
}

const ACCESS_KEY: &str = "headwater-test";
const SECRET_KEY: &str = "headwater-test-secret";

impl S3Server {
    fn start(dir: &Path, bucket: &str) -> Self {
        std::fs::create_dir_all(dir.join(bucket)).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let binary = find_s3s_fs();
        let child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e} (scripts/test installs s3s-fs)", binary.display()));
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, endpoint: format!("http://127.0.0.1:{port}") }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_s3s_fs() -> PathBuf {
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|home| home.join("bin").join("s3s-fs"));
    cargo_bin.filter(|p| p.exists()).unwrap_or_else(|| PathBuf::from("s3s-fs"))
}

#[test]
fn the_s3_path_tiers_to_a_real_s3_compatible_server() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&dir.path().join("s3"), "warehouse");
    let data = dir.path().join("data");
    let config = config_file(dir.path());
    let env = [
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", s3.endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
    ];
    let args = ["--listen", "127.0.0.1:0", "--config", config.to_str().unwrap(), "--tier-url", "s3://warehouse/hw"];
    let server = ServerProcess::spawn_with_env(&data, &args, &env);
    let count = COUNT.to_string();
    run_python("tiered.py", &["produce", &server.bootstrap, TOPIC, &count]);
    // s3s-fs keeps objects as files: the manifests are readable from its folder.
    let bucket_dir = dir.path().join("s3").join("warehouse").join("hw");
    wait_until_tiered(&data, || local_manifests(&bucket_dir));
    assert!(!data.join("tier").join("topics").exists(), "nothing went to the local default");

    run_python("tiered.py", &["consume", &server.bootstrap, TOPIC, &count]);
    run_python(
        "tiered.py",
        &[
            "parquet-s3",
            TOPIC,
            &remote_ends(&local_manifests(&bucket_dir)),
            s3.endpoint.trim_start_matches("http://"),
            "warehouse",
            "hw",
            ACCESS_KEY,
            SECRET_KEY,
        ],
    );
    assert!(server.stop().success());
}

#[test]
fn a_new_leader_serves_the_remote_history_its_predecessor_uploaded() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path());
    // One store for the whole cluster: every broker's manifests and files in one place.
    let tier_dir = dir.path().join("shared-tier");
    let args = ["--config", config.to_str().unwrap(), "--tier-url", tier_dir.to_str().unwrap()];
    let mut cluster = common::cluster::Cluster::start_with_args(&dir.path().join("nodes"), 3, &args);
    let configs = [
        ("remote.storage.enable", "true"),
        ("local.retention.bytes", "0"),
        ("segment.bytes", "8192"),
        ("value.format", "json"),
        ("retention.ms", "-1"),
    ];
    cluster.create_topic(TOPIC, 2, 3, &configs);
    let bootstrap = cluster.bootstrap();
    let count = COUNT.to_string();
    run_python("tiered.py", &["produce", &bootstrap, TOPIC, &count, "3"]);
    // Leaders upload; followers learn the manifest and drop their copies too.
    let node_dirs: Vec<PathBuf> = cluster.nodes.iter().map(|n| n.data_dir.clone()).collect();
    for data in &node_dirs {
        wait_until_tiered(data, || local_manifests(&tier_dir));
    }
    let leader = cluster.describe(TOPIC).unwrap().iter().find(|p| p.partition == 0).unwrap().leader;
    cluster.kill(leader);
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.describe(TOPIC).is_none_or(|p| p.iter().any(|p| p.leader == leader || p.leader < 0)) {
        assert!(Instant::now() < deadline, "no new leader");
        std::thread::sleep(Duration::from_millis(200));
    }
    let live: Vec<String> = cluster.nodes.iter().filter(|n| n.process.is_some()).map(|n| n.listen.clone()).collect();
    run_python("tiered.py", &["consume", &live.join(","), TOPIC, &count]);
    cluster.stop_all();
}
