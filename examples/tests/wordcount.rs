//! The wordcount example as processes against a real broker process: counts stay exact
//! while a second instance joins and leaves, across a graceful restart, and when an
//! instance starts on an empty state directory and restores from the changelog; under
//! exactly_once_v2, exact across SIGKILLs too.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use headwater_core::client::{Admin, Consumer, ConsumerConfig, IsolationLevel, OffsetReset, Producer, ProducerConfig};

/// A binary of this workspace, built beside the test (`examples/` for examples); built
/// on demand when the test runs without it.
fn binary(name: &str, example: bool) -> PathBuf {
    let exe = std::env::current_exe().expect("test path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let path = if example { profile_dir.join("examples").join(name) } else { profile_dir.join(name) };
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.arg("build");
        if example {
            build.args(["-p", "headwater-examples", "--example", name]);
        } else {
            build.args(["-p", "headwater-core", "--bin", name]);
        }
        assert!(build.status().expect("cargo build").success(), "building {name}");
    }
    path
}

struct Process(Child);

impl Process {
    /// SIGKILL: no commit, no goodbye.
    fn kill(mut self) {
        self.0.kill().expect("kill");
        self.0.wait().expect("wait");
    }

    fn sigterm(mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        self.0.wait().expect("wait")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_broker(data_dir: &Path) -> (Process, String) {
    let mut child = Command::new(binary("headwater", false))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start headwater serve");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let bootstrap = loop {
        let line = lines.next().expect("broker exited").expect("stdout");
        if let Some(rest) = line.strip_prefix("headwater listening on ") {
            break rest.split(' ').next().expect("address").to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (Process(child), bootstrap)
}

fn start_wordcount(bootstrap: &str, state_dir: &Path) -> Process {
    start_wordcount_with(bootstrap, state_dir, &[])
}

fn start_wordcount_with(bootstrap: &str, state_dir: &Path, extra: &[&str]) -> Process {
    let child = Command::new(binary("wordcount", true))
        .args(["--bootstrap", bootstrap, "--input", "lines", "--output", "counts", "--app-id", "wc", "--state-dir"])
        .arg(state_dir)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start wordcount");
    Process(child)
}

/// Reproducible lines over a small vocabulary, so every word is counted many times.
fn lines(seed: u64, n: usize) -> Vec<String> {
    const WORDS: [&str; 12] =
        ["Alpha", "beta", "GAMMA", "delta", "eps", "zeta", "eta", "theta", "iota", "kappa", "la", "mu"];
    let mut state = seed;
    (0..n)
        .map(|_| {
            let mut line = Vec::new();
            for _ in 0..(1 + state % 6) {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                line.push(WORDS[(state >> 33) as usize % WORDS.len()]);
            }
            line.join(" ")
        })
        .collect()
}

struct Harness {
    runtime: tokio::runtime::Runtime,
    producer: Producer,
    output: Consumer,
    expected: BTreeMap<String, i64>,
    seen: BTreeMap<String, Vec<i64>>,
}

impl Harness {
    /// Creates `lines` and `counts` with `partitions` each, and a producer and a reader
    /// of every counts partition.
    fn new(bootstrap: &str, partitions: i32) -> Self {
        Self::with_isolation(bootstrap, partitions, IsolationLevel::ReadUncommitted)
    }

    /// As [`Self::new`], reading the counts at `isolation`.
    fn with_isolation(bootstrap: &str, partitions: i32, isolation_level: IsolationLevel) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (producer, output) = runtime.block_on(async {
            let admin = Admin::connect(bootstrap).await.unwrap();
            admin.create_topic("lines", partitions, &BTreeMap::new()).await.unwrap();
            admin.create_topic("counts", partitions, &BTreeMap::new()).await.unwrap();
            let producer =
                Producer::connect(ProducerConfig { bootstrap: bootstrap.to_string(), ..ProducerConfig::default() })
                    .await
                    .unwrap();
            let mut output = Consumer::connect(ConsumerConfig {
                bootstrap: bootstrap.to_string(),
                auto_offset_reset: OffsetReset::Earliest,
                fetch_max_wait: Duration::from_millis(100),
                isolation_level,
                ..ConsumerConfig::default()
            })
            .await
            .unwrap();
            output.assign((0..partitions).map(|p| ("counts".to_string(), p)));
            (producer, output)
        });
        Self { runtime, producer, output, expected: BTreeMap::new(), seen: BTreeMap::new() }
    }

    /// Reads the counts written since the last call.
    fn read_counts(&mut self) {
        let records = self.runtime.block_on(self.output.poll()).unwrap();
        for record in records {
            let word = String::from_utf8(record.key.unwrap().to_vec()).unwrap();
            let count: i64 = std::str::from_utf8(&record.value.unwrap()).unwrap().parse().unwrap();
            self.seen.entry(word).or_default().push(count);
        }
    }

    fn produce(&mut self, lines: &[String]) {
        self.runtime.block_on(async {
            let mut deliveries = Vec::new();
            for line in lines {
                deliveries
                    .push(self.producer.send("lines", None, Some(Bytes::from(line.clone())), vec![]).await.unwrap());
                for word in line.split_whitespace() {
                    *self.expected.entry(word.to_lowercase()).or_default() += 1;
                }
            }
            for delivery in deliveries {
                delivery.await.unwrap();
            }
        });
    }

    /// Reads counts until the last count of every word is at least what was produced:
    /// at-least-once after a crash may count a record again, never lose one.
    fn wait_at_least(&mut self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            self.read_counts();
            let short: Vec<(&String, i64, i64)> = self
                .expected
                .iter()
                .map(|(w, n)| (w, *n, self.seen.get(w).and_then(|c| c.last().copied()).unwrap_or(0)))
                .filter(|(_, want, got)| got < want)
                .collect();
            if short.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "{what}: words counted short: {short:?}");
        }
    }

    /// Reads counts until the last count of every word is what was produced.
    fn wait_exact(&mut self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            self.read_counts();
            let last: BTreeMap<String, i64> =
                self.seen.iter().map(|(w, counts)| (w.clone(), *counts.last().unwrap())).collect();
            if last == self.expected {
                break;
            }
            assert!(Instant::now() < deadline, "{what}: counts {last:?} never reached {:?}", self.expected);
        }
        for (word, counts) in &self.seen {
            let want: Vec<i64> = (1..=*counts.last().unwrap()).collect();
            assert_eq!(counts, &want, "{what}: {word} was counted once per occurrence, nothing twice or skipped");
        }
    }
}

#[test]
fn counts_are_exact_while_instances_join_leave_and_restart() {
    let data = tempfile::tempdir().unwrap();
    let (state_a, state_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_broker, bootstrap) = start_broker(data.path());
    let mut h = Harness::new(&bootstrap, 4);

    let a = start_wordcount(&bootstrap, state_a.path());
    h.produce(&lines(1, 300));
    h.wait_exact("one instance");

    let b = start_wordcount(&bootstrap, state_b.path());
    h.produce(&lines(2, 300));
    std::thread::sleep(Duration::from_secs(2));
    h.produce(&lines(3, 300));
    h.wait_exact("a second instance joined");
    let members = h.runtime.block_on(async {
        let admin = Admin::connect(&bootstrap).await.unwrap();
        let group = admin.describe_group("wc").await.unwrap();
        group.members.into_iter().filter(|(_, _, assigned)| !assigned.is_empty()).count()
    });
    assert_eq!(members, 2, "both instances own tasks");

    assert!(b.sigterm().success(), "SIGTERM stops an instance cleanly");
    h.produce(&lines(4, 300));
    h.wait_exact("the second instance left");

    // A restart on the same state dir resumes from the store's checkpoint.
    assert!(a.sigterm().success());
    h.produce(&lines(5, 200));
    let a = start_wordcount(&bootstrap, state_a.path());
    h.produce(&lines(6, 200));
    h.wait_exact("after a graceful restart");

    // A restart on an empty state dir rebuilds the counts from the changelog.
    assert!(a.sigterm().success());
    let fresh = tempfile::tempdir().unwrap();
    let _a = start_wordcount(&bootstrap, fresh.path());
    h.produce(&lines(7, 200));
    h.wait_exact("restored from the changelog into an empty state dir");
}

#[test]
fn an_instance_killed_mid_stream_loses_no_word() {
    let data = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (_broker, bootstrap) = start_broker(data.path());
    let mut h = Harness::new(&bootstrap, 2);
    let a = start_wordcount(&bootstrap, state.path());
    h.produce(&lines(11, 300));
    h.wait_exact("before the crash");
    // Kill while a large batch is being processed: what was processed but not committed
    // is processed again after the restart.
    h.produce(&lines(12, 3000));
    std::thread::sleep(Duration::from_millis(300));
    a.kill();
    h.produce(&lines(13, 300));
    let _a = start_wordcount(&bootstrap, state.path());
    h.wait_at_least("after SIGKILL and a restart");
}

/// The test fails without `--exactly-once`: at-least-once counts the lines processed
/// after the last commit again after every SIGKILL.
#[test]
fn an_exactly_once_instance_killed_mid_stream_counts_every_word_exactly_once() {
    let data = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (_broker, bootstrap) = start_broker(data.path());
    let mut h = Harness::with_isolation(&bootstrap, 2, IsolationLevel::ReadCommitted);
    let mut instance = start_wordcount_with(&bootstrap, state.path(), &["--exactly-once"]);
    h.produce(&lines(21, 300));
    h.wait_exact("before the crashes");
    // Each SIGKILL lands while a large batch is being processed: its open transaction
    // (output, changelog, offsets) is aborted, and the restarted instance processes
    // those lines again from the last committed offsets and the committed changelog.
    for round in 0..3u64 {
        h.produce(&lines(22 + round, 3000));
        std::thread::sleep(Duration::from_millis(400 + 300 * round));
        instance.kill();
        h.produce(&lines(32 + round, 300));
        instance = start_wordcount_with(&bootstrap, state.path(), &["--exactly-once"]);
        // `wait_exact` also checks that every word's counts went 1, 2, 3, ...: no count
        // was written twice and none skipped, as a read_committed reader sees them.
        h.wait_exact(&format!("after SIGKILL {}", round + 1));
    }
    assert!(instance.sigterm().success(), "SIGTERM stops an exactly-once instance cleanly");
}
