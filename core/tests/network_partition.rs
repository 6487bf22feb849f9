//! A network partition that cuts a partition's leader off from the rest of the cluster,
//! made with network namespaces: each node runs in its own namespace on a bridge, and the
//! cut is a pair of blackhole routes between the leader and every other node, while the
//! test's clients (in the host namespace) still reach all three.
//!
//! The isolated leader must not acknowledge an acks=all write; the majority must elect a
//! new leader and acknowledge through it; after healing, no acknowledged write is lost and
//! the replicas' logs agree. Needs root (as CI runs) for `ip netns`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::read_all;
use headwater_core::client::{Admin, PartitionInfo};
use headwater_core::log::{LogManager, LogManagerOptions};

const TOPIC: &str = "cut";
const KAFKA_PORT: u16 = 9092;
const CONTROLLER_PORT: u16 = 9093;

/// Runs `ip ARGS` (or `ip netns exec NS ip ARGS`), failing the test if it fails.
fn ip(netns: Option<&str>, args: &[&str]) {
    let mut command = Command::new("ip");
    if let Some(ns) = netns {
        command.args(["netns", "exec", ns, "ip"]);
    }
    let output = command.args(args).output().expect("run ip");
    assert!(output.status.success(), "ip {args:?} in {netns:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// Three namespaces on a bridge, torn down on drop.
struct Network {
    prefix: String,
    subnet: String,
    bridge: String,
}

impl Network {
    fn new() -> Self {
        // Distinct per test process, so parallel or leftover runs do not collide.
        let id = std::process::id() % 200 + 20;
        let network = Self { prefix: format!("hw{id}"), subnet: format!("10.213.{id}"), bridge: format!("hwbr{id}") };
        network.teardown();
        ip(None, &["link", "add", &network.bridge, "type", "bridge"]);
        ip(None, &["addr", "add", &format!("{}.254/24", network.subnet), "dev", &network.bridge]);
        ip(None, &["link", "set", &network.bridge, "up"]);
        for node in 1..=3 {
            let ns = network.ns(node);
            let host_side = format!("{}h{node}", network.prefix);
            ip(None, &["netns", "add", &ns]);
            ip(None, &["link", "add", &host_side, "type", "veth", "peer", "name", "eth0", "netns", &ns]);
            ip(None, &["link", "set", &host_side, "master", &network.bridge, "up"]);
            ip(Some(&ns), &["addr", "add", &format!("{}/24", network.addr(node)), "dev", "eth0"]);
            ip(Some(&ns), &["link", "set", "eth0", "up"]);
            ip(Some(&ns), &["link", "set", "lo", "up"]);
        }
        network
    }

    fn ns(&self, node: i32) -> String {
        format!("{}n{node}", self.prefix)
    }

    fn addr(&self, node: i32) -> String {
        format!("{}.{node}", self.subnet)
    }

    /// Cuts `node` off from the other nodes (not from the host, where the clients run).
    fn isolate(&self, node: i32, cut: bool) {
        let verb = if cut { "add" } else { "del" };
        for other in (1..=3).filter(|o| *o != node) {
            ip(Some(&self.ns(node)), &["route", verb, "blackhole", &format!("{}/32", self.addr(other))]);
            ip(Some(&self.ns(other)), &["route", verb, "blackhole", &format!("{}/32", self.addr(node))]);
        }
    }

    fn teardown(&self) {
        for node in 1..=3 {
            let _ = Command::new("ip").args(["netns", "del", &self.ns(node)]).output();
        }
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).output();
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// A node running in its namespace.
struct Node {
    child: Child,
}

impl Node {
    fn start(network: &Network, node: i32, data_dir: &std::path::Path) -> Self {
        let voters =
            (1..=3).map(|n| format!("{n}@{}:{CONTROLLER_PORT}", network.addr(n))).collect::<Vec<_>>().join(",");
        let mut child = Command::new("ip")
            .args(["netns", "exec", &network.ns(node), env!("CARGO_BIN_EXE_headwater"), "serve"])
            .args(["--node-id", &node.to_string(), "--voters", &voters])
            .args(["--listen", &format!("{}:{KAFKA_PORT}", network.addr(node))])
            .arg("--data-dir")
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start headwater serve in its namespace");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines.next().expect("server exited before listening").unwrap();
        assert!(line.starts_with("headwater listening on"), "{line}");
        std::thread::spawn(move || for _ in lines {});
        Self { child }
    }

    fn stop(mut self) {
        common::server::sigterm(&self.child);
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn describe(runtime: &tokio::runtime::Runtime, bootstrap: &str) -> Option<PartitionInfo> {
    runtime.block_on(async {
        let admin = tokio::time::timeout(Duration::from_secs(2), Admin::connect(bootstrap)).await.ok()?.ok()?;
        let topics =
            tokio::time::timeout(Duration::from_secs(2), admin.topics(Some(&[TOPIC.to_string()]))).await.ok()?.ok()?;
        topics.into_iter().next()?.partitions.into_iter().next()
    })
}

fn wait_for(
    runtime: &tokio::runtime::Runtime,
    bootstrap: &str,
    what: &str,
    check: impl Fn(&PartitionInfo) -> bool,
) -> PartitionInfo {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(p) = describe(runtime, bootstrap)
            && check(&p)
        {
            return p;
        }
        assert!(Instant::now() < deadline, "{what}: {:?}", describe(runtime, bootstrap));
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs the acks=all producer script against `bootstrap` for `seconds`; returns how many
/// records it sent and the acknowledged `(partition, offset, value)` records.
fn produce(
    bootstrap: &str,
    out: &std::path::Path,
    seconds: &str,
    message_timeout_ms: &str,
) -> (u64, Vec<(i32, i64, String)>) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/acked_producer.py");
    let output = Command::new("python3")
        .arg(script)
        .args([bootstrap, TOPIC, out.to_str().unwrap(), seconds, "3", "2"])
        .env("MESSAGE_TIMEOUT_MS", message_timeout_ms)
        .output()
        .expect("run python3");
    assert!(output.status.success(), "producer failed: {}", String::from_utf8_lossy(&output.stderr));
    // "produced N acked M unflushed K"
    let stdout = String::from_utf8_lossy(&output.stdout);
    let sent = stdout.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("the producer's summary");
    (sent, common::parse_acknowledged(&std::fs::read_to_string(out).unwrap()))
}

#[test]
fn an_isolated_leader_acknowledges_nothing_and_the_majority_carries_on_without_loss() {
    if !Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0")) {
        panic!("this test needs root for network namespaces (CI runs as root)");
    }
    let dir = tempfile::tempdir().unwrap();
    let network = Network::new();
    let mut nodes: Vec<Option<Node>> =
        (1..=3).map(|n| Some(Node::start(&network, n, &dir.path().join(format!("node-{n}"))))).collect();
    let all = (1..=3).map(|n| format!("{}:{KAFKA_PORT}", network.addr(n))).collect::<Vec<_>>().join(",");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

    // A topic of one partition on all three nodes; some acknowledged writes first.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let created = runtime.block_on(async {
            let admin = Admin::connect(&all).await?;
            let configs = [("min.insync.replicas".to_string(), "2".to_string())].into();
            admin.create_replicated_topic(TOPIC, 1, 3, &configs).await
        });
        if created.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "cannot create the topic: {created:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let whole = wait_for(&runtime, &all, "ISR of three", |p| p.isr.len() == 3);
    let (_, before) = produce(&all, &dir.path().join("before.txt"), "2", "30000");
    assert!(!before.is_empty(), "nothing acknowledged before the cut");

    // Cut the leader off. A producer that can only reach it gets no acknowledgement.
    let isolated = whole.leader;
    let isolated_addr = format!("{}:{KAFKA_PORT}", network.addr(isolated));
    network.isolate(isolated, true);
    let (sent, cut_off) = produce(&isolated_addr, &dir.path().join("isolated.txt"), "3", "5000");
    assert!(sent > 0, "nothing was sent to the isolated leader");
    assert!(cut_off.is_empty(), "the isolated leader acknowledged {} of {sent} acks=all writes", cut_off.len());

    // The majority elects a new leader and acknowledges through it.
    let majority = (1..=3)
        .filter(|n| *n != isolated)
        .map(|n| format!("{}:{KAFKA_PORT}", network.addr(n)))
        .collect::<Vec<_>>()
        .join(",");
    let moved = wait_for(&runtime, &majority, "a new leader", |p| p.leader >= 0 && p.leader != isolated);
    assert!(!moved.isr.contains(&isolated), "the isolated broker left the ISR: {moved:?}");
    let (_, during) = produce(&majority, &dir.path().join("during.txt"), "3", "30000");
    assert!(!during.is_empty(), "the majority acknowledged nothing");

    // Heal: the old leader truncates what it took alone and rejoins the ISR.
    network.isolate(isolated, false);
    wait_for(&runtime, &all, "the old leader back in the ISR", |p| p.isr.len() == 3);
    let (_, after) = produce(&all, &dir.path().join("after.txt"), "2", "30000");

    let consumed = common::consume_all(&all, TOPIC);
    let acknowledged: Vec<_> = before.iter().chain(&during).chain(&after).cloned().collect();
    common::assert_all_consumed(&acknowledged, &consumed);

    for node in nodes.iter_mut() {
        node.take().unwrap().stop();
    }
    let logs: Vec<Vec<_>> = (1..=3)
        .map(|n| {
            let manager =
                LogManager::open(&dir.path().join(format!("node-{n}")), LogManagerOptions::default()).unwrap();
            read_all(&manager.get(TOPIC, 0).unwrap())
        })
        .collect();
    let shortest = logs.iter().map(Vec::len).min().unwrap();
    for log in &logs[1..] {
        assert_eq!(log[..shortest], logs[0][..shortest], "the replicas' logs diverge after healing");
    }
    println!(
        "isolated leader {isolated}: 0 of {sent} writes acknowledged; {} before, {} during, {} after the cut, all read back",
        before.len(),
        during.len(),
        after.len()
    );
}
