//! Real processes for the connector tests: a `headwater serve` broker and
//! `headwater-connect` workers, plus waiting and reading helpers.

#![allow(dead_code)]

pub mod postgres;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The broker binary, built beside this test (or on demand when missing).
fn headwater_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let path = profile_dir.join("headwater");
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo).args(["build", "-p", "headwater-core", "--bin", "headwater"]).status();
        assert!(status.expect("cargo build").success(), "building headwater");
    }
    path
}

/// A child process killed when dropped.
pub struct Process {
    child: Child,
    /// Lines of its stdout, as they come.
    lines: mpsc::Receiver<String>,
}

impl Process {
    /// Starts `command` and waits for a stdout line starting with `ready`.
    pub fn spawn(mut command: Command, ready: &str) -> (Self, String) {
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut process = Self { child, lines };
        let line = process.wait_line(ready, Duration::from_secs(60));
        (process, line)
    }

    /// Waits for a stdout line starting with `prefix`.
    pub fn wait_line(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => {}
                Err(_) => panic!("no line starting with {prefix:?} within {timeout:?}"),
            }
        }
    }

    /// SIGTERM, and the exit status.
    pub fn sigterm(&mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().expect("wait")
    }

    /// SIGKILL: nothing flushed, nothing committed.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().expect("wait")
    }

    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A broker on a free port over `data_dir`, and its address.
pub fn start_broker(data_dir: &Path) -> (Process, String) {
    let mut command = Command::new(headwater_binary());
    command.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(data_dir).env("RUST_LOG", "warn");
    let (process, line) = Process::spawn(command, "headwater listening on ");
    let bootstrap = line["headwater listening on ".len()..].split(' ').next().expect("address").to_string();
    (process, bootstrap)
}

/// `headwater-connect run` with these configs, once it says its connectors run.
pub fn start_connect(bootstrap: &str, configs: &[&Path], extra: &[&str]) -> Process {
    start_connect_with_env(bootstrap, configs, extra, &[])
}

/// [`start_connect`] with extra environment variables (object store credentials).
pub fn start_connect_with_env(bootstrap: &str, configs: &[&Path], extra: &[&str], env: &[(&str, &str)]) -> Process {
    let mut command = Command::new(env!("CARGO_BIN_EXE_headwater-connect"));
    command.args(["run", "--bootstrap", bootstrap]).args(extra).args(configs).env("RUST_LOG", "warn");
    command.envs(env.iter().copied());
    Process::spawn(command, "headwater-connect running").0
}

/// Creates a topic with `partitions` partitions.
pub fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let admin = headwater_core::client::Admin::connect(bootstrap).await.expect("admin");
        admin.create_topic(topic, partitions, &std::collections::BTreeMap::new()).await.expect("create topic");
    });
}

/// A real S3-compatible server (s3s-fs, which scripts/test installs) on a free port,
/// keeping objects as files under `dir/<bucket>`.
pub struct S3Server {
    child: Child,
    pub endpoint: String,
}

pub const S3_ACCESS_KEY: &str = "headwater-test";
pub const S3_SECRET_KEY: &str = "headwater-test-secret";

impl S3Server {
    pub fn start(dir: &Path, bucket: &str) -> Self {
        std::fs::create_dir_all(dir.join(bucket)).expect("bucket dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
        let binary = std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".cargo/bin/s3s-fs"))
            .filter(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("s3s-fs"));
        let child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
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

    /// The AWS environment that points object_store at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY.to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".to_string()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `headwater-connect` with arguments, to completion: status, stdout, stderr.
pub fn connect_command(args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_headwater-connect")).args(args).output().expect("run");
    (output.status, String::from_utf8_lossy(&output.stdout).into(), String::from_utf8_lossy(&output.stderr).into())
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A file's lines (none if it does not exist).
pub fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).map(|t| t.lines().map(str::to_string).collect()).unwrap_or_default()
}

/// Every record of a topic's partitions, read from the start to the current end (none
/// while the topic does not exist).
pub fn read_topic(bootstrap: &str, topic: &str) -> Vec<headwater_core::client::ConsumerRecord> {
    read_topic_at(bootstrap, topic, headwater_core::client::IsolationLevel::ReadUncommitted)
}

/// As [`read_topic`], at `isolation`: under read_committed, up to the last stable offset
/// and without the records of aborted transactions.
pub fn read_topic_at(
    bootstrap: &str,
    topic: &str,
    isolation_level: headwater_core::client::IsolationLevel,
) -> Vec<headwater_core::client::ConsumerRecord> {
    use headwater_core::client::{Admin, Consumer, ConsumerConfig, OffsetReset};
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let admin = Admin::connect(bootstrap).await.expect("admin");
        let topics = match admin.topics(Some(&[topic.to_string()])).await {
            Ok(topics) => topics,
            Err(headwater_core::client::ClientError::UnknownTopic { .. }) => return Vec::new(),
            Err(error) => panic!("metadata for {topic}: {error}"),
        };
        let partitions: Vec<(String, i32)> =
            topics[0].partitions.iter().map(|p| (topic.to_string(), p.partition)).collect();
        let mut consumer = Consumer::connect(ConsumerConfig {
            bootstrap: bootstrap.to_string(),
            fetch_max_wait: Duration::from_millis(100),
            auto_offset_reset: OffsetReset::Earliest,
            isolation_level,
            ..ConsumerConfig::default()
        })
        .await
        .expect("consumer");
        let ends = consumer.list_offsets(partitions.clone(), -1).await.expect("ends");
        consumer.assign(partitions.clone());
        let mut records = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while partitions.iter().any(|(t, p)| consumer.position(t, *p).unwrap_or(0) < ends[&(t.clone(), *p)]) {
            assert!(Instant::now() < deadline, "reading {topic}");
            records.extend(consumer.poll().await.expect("poll"));
        }
        records
    })
}

/// Produces records (key, value) to a topic and waits until they are acknowledged.
pub fn produce(bootstrap: &str, topic: &str, records: &[(Option<&str>, Option<&str>)]) {
    use headwater_core::client::{Producer, ProducerConfig};
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let producer =
            Producer::connect(ProducerConfig { bootstrap: bootstrap.to_string(), ..ProducerConfig::default() })
                .await
                .expect("producer");
        let mut deliveries = Vec::new();
        for (key, value) in records {
            let key = key.map(|k| bytes::Bytes::copy_from_slice(k.as_bytes()));
            let value = value.map(|v| bytes::Bytes::copy_from_slice(v.as_bytes()));
            deliveries.push(producer.send(topic, key, value, Vec::new()).await.expect("send"));
        }
        producer.flush().await.expect("flush");
        for delivery in deliveries {
            delivery.await.expect("acknowledged");
        }
    });
}
