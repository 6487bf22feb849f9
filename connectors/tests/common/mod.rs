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
    fn spawn(mut command: Command, ready: &str) -> (Self, String) {
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
    let mut command = Command::new(env!("CARGO_BIN_EXE_headwater-connect"));
    command.args(["run", "--bootstrap", bootstrap]).args(extra).args(configs).env("RUST_LOG", "warn");
    Process::spawn(command, "headwater-connect running").0
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
