//! A three-node cluster of real processes: acks=all producers (librdkafka) while partition
//! leaders are SIGKILLed and restarted. Every acknowledged record must be readable
//! afterwards at its offset, restarted nodes must rejoin the ISR, and the replicas' logs
//! must agree.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::server::spawn_python;
use common::{assert_all_consumed, consume_all, parse_acknowledged, read_all};
use headwater_core::log::{LogManager, LogManagerOptions};

const TOPIC: &str = "replicated";

#[test]
fn acknowledged_writes_survive_sigkill_of_the_leader_and_restarted_nodes_rejoin_the_isr() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3);
    let bootstrap = cluster.bootstrap();
    cluster.create_topic(TOPIC, 3, 3, &[("min.insync.replicas", "2")]);
    let acked_path = dir.path().join("acked.txt");
    let path = acked_path.display().to_string();
    let producer =
        spawn_python("acked_producer.py", [&bootstrap, TOPIC, &path, "25", "3", "2"].map(String::from).to_vec());
    cluster.wait_for(TOPIC, Duration::from_secs(30), |ps| ps.len() == 3 && ps.iter().all(|p| p.isr.len() == 3));

    let mut failovers = Vec::new();
    for _round in 0..3 {
        std::thread::sleep(Duration::from_millis(1500));
        let before = cluster.describe(TOPIC).expect("topic described");
        let victim = before[0].leader;
        cluster.kill(victim);
        let killed = Instant::now();
        let after = cluster.wait_for(TOPIC, Duration::from_secs(15), |ps| ps[0].leader >= 0 && ps[0].leader != victim);
        failovers.push(killed.elapsed());
        assert!(after[0].isr.contains(&after[0].leader), "the new leader comes from the ISR: {after:?}");
        assert!(!after[0].isr.contains(&victim), "the dead broker left the ISR: {after:?}");
        std::thread::sleep(Duration::from_millis(1000));
        cluster.restart(victim);
        cluster.wait_for(TOPIC, Duration::from_secs(30), |ps| ps.iter().all(|p| p.isr.len() == 3));
    }

    let output = producer.join().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "producer failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let acked = parse_acknowledged(&std::fs::read_to_string(&acked_path).unwrap());
    assert!(acked.len() > 1000, "only {} records acknowledged: {stdout}", acked.len());

    // Every acknowledged record, read back through the cluster by a real consumer.
    let consumed = consume_all(&bootstrap, TOPIC);
    assert_all_consumed(&acked, &consumed);
    let mut values: Vec<&String> = consumed.values().collect();
    let total = values.len();
    values.sort();
    values.dedup();
    assert_eq!(values.len(), total, "a retried record was stored twice");

    // Every replica has every acknowledged record, and the replicas agree where they overlap.
    cluster.stop_all();
    for partition in 0..3 {
        let logs: Vec<Vec<_>> = cluster
            .nodes
            .iter()
            .map(|node| {
                let manager = LogManager::open(&node.data_dir, LogManagerOptions::default()).unwrap();
                read_all(&manager.get(TOPIC, partition).unwrap())
            })
            .collect();
        let shortest = logs.iter().map(Vec::len).min().unwrap();
        for log in &logs[1..] {
            assert_eq!(log[..shortest], logs[0][..shortest], "replicas of partition {partition} diverge");
        }
        for log in &logs {
            let stored: HashMap<i64, &str> =
                log.iter().map(|(o, _, v)| (*o, v.as_deref().unwrap_or_default())).collect();
            for (_, offset, value) in acked.iter().filter(|(p, _, _)| *p == partition) {
                assert_eq!(stored.get(offset).copied(), Some(value.as_str()), "a replica lacks {partition}/{offset}");
            }
        }
    }
    println!("{stdout}; {} acknowledged records verified; leader failovers took {failovers:?}", acked.len());
}

/// Writes `values` to `topic` with kcat, acks=all, and fails the test if any is refused.
fn produce_values(bootstrap: &str, topic: &str, values: impl Iterator<Item = String>) {
    use std::io::Write;
    let mut kcat = Command::new("kcat")
        .args(["-b", bootstrap, "-P", "-t", topic, "-X", "acks=all", "-X", "message.timeout.ms=30000"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("run kcat");
    let mut stdin = kcat.stdin.take().unwrap();
    for value in values {
        writeln!(stdin, "{value}").unwrap();
    }
    drop(stdin);
    assert!(kcat.wait().unwrap().success(), "kcat could not produce every record");
}

#[test]
fn a_consumer_group_keeps_consuming_and_committing_when_its_coordinator_is_killed() {
    const GROUP: &str = "failover-group";
    const TOTAL: usize = 6000;
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3);
    cluster.create_topic("events", 3, 3, &[("min.insync.replicas", "2")]);
    cluster.wait_for("events", Duration::from_secs(30), |ps| ps.iter().all(|p| p.isr.len() == 3));
    let bootstrap = cluster.bootstrap();
    produce_values(&bootstrap, "events", (0..TOTAL / 2).map(|i| format!("value-{i}")));

    let out = dir.path().join("consumed.txt");
    let (path, total) = (out.display().to_string(), TOTAL.to_string());
    let consumer = spawn_python(
        "group_failover.py",
        [&bootstrap, "events", GROUP, &total, &path, "90"].map(String::from).to_vec(),
    );
    // The group's coordinator: the leader of its offsets partition, once the consumer's
    // FindCoordinator has created the offsets topic.
    let offsets_partition = headwater_core::group::partition_for(GROUP) as usize;
    let offsets = cluster.wait_for("__consumer_offsets", Duration::from_secs(30), |ps| {
        ps.get(offsets_partition).is_some_and(|p| p.leader >= 0)
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&out).map_or(0, |t| t.lines().count()) < TOTAL / 4 {
        assert!(Instant::now() < deadline, "the consumer made no progress");
        std::thread::sleep(Duration::from_millis(50));
    }
    let coordinator = offsets[offsets_partition].leader;
    cluster.kill(coordinator);
    produce_values(&cluster.bootstrap(), "events", (TOTAL / 2..TOTAL).map(|i| format!("value-{i}")));

    let output = consumer.join().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "consumer failed: {stdout}\n{stderr}");
    let consumed: std::collections::HashSet<String> =
        std::fs::read_to_string(&out).unwrap().lines().map(String::from).collect();
    for i in 0..TOTAL {
        assert!(consumed.contains(&format!("value-{i}")), "value-{i} never consumed");
    }
    // The new coordinator has the group's commits: together they cover every record. A
    // partition that got no record (kcat spreads keyless records over the partitions that
    // have a leader at the time, and one of them was just killed) has nothing committed
    // (-1001, Kafka's "no offset").
    let committed: i64 =
        stdout.lines().filter_map(|l| l.split(' ').nth(1)?.parse::<i64>().ok()).filter(|offset| *offset >= 0).sum();
    assert_eq!(committed, TOTAL as i64, "committed offsets after the fail-over: {stdout}");
    let after = cluster.wait_for("__consumer_offsets", Duration::from_secs(5), |ps| ps[offsets_partition].leader >= 0);
    assert_ne!(after[offsets_partition].leader, coordinator, "the coordinator moved");
    cluster.restart(coordinator);
    cluster.wait_for("events", Duration::from_secs(30), |ps| ps.iter().all(|p| p.isr.len() == 3));
    cluster.stop_all();
}

/// Runs `headwater ARGS...` and returns its stdout, failing the test if it fails.
fn headwater(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_headwater")).args(args).output().expect("run headwater");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "headwater {args:?} failed: {stdout}{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

#[test]
fn partitions_move_between_brokers_change_leaders_and_grow_while_a_producer_runs() {
    const MOVING: &str = "moving";
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3);
    cluster.create_topic(MOVING, 3, 2, &[]);
    let bootstrap = cluster.bootstrap();
    let acked_path = dir.path().join("acked.txt");
    let path = acked_path.display().to_string();
    let producer = spawn_python("acked_producer.py", [&bootstrap, MOVING, &path, "12", "2"].map(String::from).to_vec());
    let before = cluster.wait_for(MOVING, Duration::from_secs(30), |ps| ps.iter().all(|p| p.isr.len() == 2));
    std::thread::sleep(Duration::from_secs(2));

    // Reassign partition 0 to the broker that does not hold it, keeping one old replica
    // second: the newcomer catches up, joins the ISR, and the dropped replica leaves.
    let old = before[0].replicas.clone();
    let newcomer = (1..=3).find(|b| !old.contains(b)).unwrap();
    let target = [newcomer, old[0]];
    let first_bootstrap = cluster.nodes[0].listen.clone();
    let target_list = format!("{},{}", target[0], target[1]);
    headwater(&["partition", "reassign", MOVING, "0", "--replicas", &target_list, "--bootstrap", &first_bootstrap]);
    let moved =
        cluster.wait_for(MOVING, Duration::from_secs(30), |ps| ps[0].replicas == target && ps[0].isr.len() == 2);
    assert!(target.contains(&moved[0].leader), "the leader is one of the new replicas: {moved:?}");

    // Preferred leader election: the newcomer is first in the new assignment.
    headwater(&["partition", "elect-leaders", MOVING, "--bootstrap", &first_bootstrap]);
    cluster.wait_for(MOVING, Duration::from_secs(15), |ps| ps[0].leader == newcomer);

    // The topic grows while the producer runs; the new partition takes writes at once.
    headwater(&["topic", "alter", MOVING, "--partitions", "4", "--bootstrap", &first_bootstrap]);
    cluster.wait_for(MOVING, Duration::from_secs(15), |ps| ps.len() == 4 && ps[3].leader >= 0);
    let written = Command::new("sh")
        .arg("-c")
        .arg(format!("echo grown | kcat -b {bootstrap} -P -t {MOVING} -p 3 -X acks=all"))
        .status()
        .expect("run kcat");
    assert!(written.success(), "kcat could not write to the new partition");
    let read = Command::new("kcat")
        .args(["-b", &bootstrap, "-C", "-t", MOVING, "-p", "3", "-o", "beginning", "-e", "-q"])
        .output()
        .expect("run kcat");
    // The running producer may find the new partition too (librdkafka refreshes its
    // metadata on its own schedule), so other records can stand beside ours.
    let served = String::from_utf8_lossy(&read.stdout);
    assert!(served.lines().any(|line| line == "grown"), "the new partition serves its record: {:.200}", served);

    let output = producer.join().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "producer failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let acked = parse_acknowledged(&std::fs::read_to_string(&acked_path).unwrap());
    assert!(acked.len() > 1000, "only {} records acknowledged: {stdout}", acked.len());
    assert_all_consumed(&acked, &consume_all(&bootstrap, MOVING));
    cluster.stop_all();
    println!("{stdout}; {} acknowledged records verified across a reassignment", acked.len());
}

#[test]
fn a_new_broker_joins_a_running_cluster_and_takes_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3);
    cluster.create_topic("growing", 1, 3, &[("min.insync.replicas", "2")]);
    let bootstrap = cluster.bootstrap();
    produce_values(&bootstrap, "growing", (0..500).map(|i| format!("before-{i}")));

    cluster.add_broker(4);
    let first = cluster.nodes[0].listen.clone();
    // Broker 4 registers through the quorum it follows as a learner, and may be given
    // replicas once it is unfenced.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let output = Command::new(env!("CARGO_BIN_EXE_headwater"))
            .args(["partition", "reassign", "growing", "0", "--replicas", "4,1,2", "--bootstrap", &first])
            .output()
            .unwrap();
        if output.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "broker 4 never became available: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    cluster.wait_for("growing", Duration::from_secs(30), |ps| ps[0].replicas == [4, 1, 2] && ps[0].isr.len() == 3);
    headwater(&["partition", "elect-leaders", "growing", "--bootstrap", &first]);
    cluster.wait_for("growing", Duration::from_secs(15), |ps| ps[0].leader == 4);

    // The new broker leads the partition now, with everything written before it joined.
    let bootstrap = cluster.bootstrap();
    produce_values(&bootstrap, "growing", (0..500).map(|i| format!("after-{i}")));
    let read = Command::new("kcat")
        .args(["-b", &bootstrap, "-C", "-t", "growing", "-o", "beginning", "-e", "-q"])
        .output()
        .expect("run kcat");
    let values: Vec<String> = String::from_utf8_lossy(&read.stdout).lines().map(String::from).collect();
    let expected: Vec<String> =
        (0..500).map(|i| format!("before-{i}")).chain((0..500).map(|i| format!("after-{i}"))).collect();
    assert_eq!(values, expected, "the partition's records, in order, through the new leader");
    cluster.stop_all();
}
