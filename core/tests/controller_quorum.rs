//! The controller quorum across three in-process nodes on loopback: real TCP between them,
//! real redb files, openraft's real timers.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use headwater_core::cluster::quorum::{Controller, ControllerConfig};
use headwater_core::cluster::{BrokerId, MetadataCommand, MetadataImage, MetadataOutcome};

const TIMEOUT: Duration = Duration::from_secs(20);

struct Node {
    config: ControllerConfig,
    controller: Option<Arc<Controller>>,
}

async fn start(config: &ControllerConfig) -> Arc<Controller> {
    // The port was free when the quorum was laid out; a restarted node takes it again.
    let listener = tokio::net::TcpListener::bind(&config.advertised).await.expect("bind controller port");
    Arc::new(Controller::start(config.clone(), listener).await.expect("controller starts"))
}

/// Three voters with fast timers, each with its own data dir under `root`.
async fn three_nodes(root: &Path, snapshot_after_entries: u64) -> Vec<Node> {
    // Logs only with RUST_LOG set, shown for failing tests.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    }
    let voters: BTreeMap<u64, String> =
        listeners.iter().enumerate().map(|(i, l)| (i as u64 + 1, l.local_addr().unwrap().to_string())).collect();
    drop(listeners);
    let mut nodes = Vec::new();
    for (id, addr) in &voters {
        let mut config = ControllerConfig::new(*id, addr.clone(), voters.clone(), root.join(format!("node-{id}")));
        config.heartbeat_interval = Duration::from_millis(100);
        config.election_timeout_min = Duration::from_millis(400);
        config.election_timeout_max = Duration::from_millis(800);
        config.snapshot_after_entries = snapshot_after_entries;
        let controller = start(&config).await;
        nodes.push(Node { config, controller: Some(controller) });
    }
    nodes
}

fn register(id: i32) -> MetadataCommand {
    MetadataCommand::RegisterBroker { id, incarnation: uuid::Uuid::new_v4(), host: "127.0.0.1".into(), port: 9092 }
}

/// Waits until `controller`'s image satisfies `ready`.
async fn image_where(controller: &Controller, ready: impl Fn(&MetadataImage) -> bool) -> std::sync::Arc<MetadataImage> {
    let mut image = controller.image();
    let found = tokio::time::timeout(TIMEOUT, image.wait_for(|i| ready(i))).await;
    found.expect("image reached the expected state in time").expect("state machine alive").clone()
}

async fn leader_of(nodes: &[Node]) -> u64 {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        if let Some(leader) = nodes.iter().filter_map(|n| n.controller.as_ref()).find(|c| c.is_leader()) {
            return leader.node_id();
        }
        assert!(tokio::time::Instant::now() < deadline, "no leader elected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_controllers_elect_a_leader_and_apply_the_same_commands() {
    let root = tempfile::tempdir().unwrap();
    let nodes = three_nodes(root.path(), 10_000).await;
    let leader = leader_of(&nodes).await;
    // Propose through a follower: it forwards to the active controller.
    let follower = nodes.iter().find(|n| n.config.node_id != leader).unwrap().controller.as_ref().unwrap();
    for id in 1..=3 {
        let outcome = follower.propose(register(id), TIMEOUT).await.expect("committed");
        assert!(matches!(outcome, Ok(MetadataOutcome::BrokerEpoch(_))), "{outcome:?}");
    }
    let refused = follower.propose(MetadataCommand::DeleteTopic { name: "nope".into() }, TIMEOUT).await.unwrap();
    assert!(refused.is_err(), "a refused command comes back as the state machine's error");
    // The active controller has applied everything it acknowledged; the others follow.
    let leader_node = nodes.iter().find(|n| n.config.node_id == leader).unwrap().controller.as_ref().unwrap();
    let last = leader_node.image().borrow().applied_index;
    let images: Vec<_> = futures::future::join_all(
        nodes.iter().map(|n| image_where(n.controller.as_ref().unwrap(), |i| i.applied_index >= last)),
    )
    .await;
    assert_eq!(images[0].brokers.len(), 3);
    // Compared without the applied index: a node may have applied one more entry (the
    // refused command's, or a new leader's blank entry) by the time it is read.
    let state = |image: &MetadataImage| {
        let mut image = image.clone();
        image.applied_index = 0;
        image
    };
    assert_eq!(state(&images[0]), state(&images[1]));
    assert_eq!(state(&images[1]), state(&images[2]));
    for node in nodes {
        node.controller.unwrap().shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_controller_takes_over_and_the_old_one_catches_up_from_its_snapshot() {
    let root = tempfile::tempdir().unwrap();
    // Snapshots every 5 entries, so the restarted node recovers from one plus the log.
    let mut nodes = three_nodes(root.path(), 5).await;
    let first_leader = leader_of(&nodes).await;
    let any = nodes[0].controller.as_ref().unwrap();
    for id in 1..=12 {
        any.propose(register(id), TIMEOUT).await.unwrap().unwrap();
    }

    let stopped = nodes.iter_mut().find(|n| n.config.node_id == first_leader).unwrap();
    stopped.controller.take().unwrap().shutdown().await;
    let second_leader = leader_of(&nodes).await;
    assert_ne!(second_leader, first_leader);
    let survivor = nodes.iter().position(|n| n.controller.is_some()).unwrap();
    for id in 13..=20 {
        nodes[survivor].controller.as_ref().unwrap().propose(register(id), TIMEOUT).await.unwrap().unwrap();
    }

    let restarted = nodes.iter_mut().find(|n| n.config.node_id == first_leader).unwrap();
    restarted.controller = Some(start(&restarted.config).await);
    let caught_up = image_where(restarted.controller.as_ref().unwrap(), |i| i.brokers.len() == 20).await;
    let reference = image_where(nodes[survivor].controller.as_ref().unwrap(), |i| i.brokers.len() == 20).await;
    assert_eq!(caught_up.brokers, reference.brokers);
    for node in nodes {
        if let Some(controller) = node.controller {
            controller.shutdown().await;
        }
    }
}

fn create_topic(name: &str, partitions: u32, replication_factor: u16) -> MetadataCommand {
    MetadataCommand::CreateTopic {
        name: name.into(),
        id: uuid::Uuid::new_v4(),
        partitions,
        replication_factor,
        configs: BTreeMap::new(),
    }
}

/// Broker `victim` leads nothing, is in no ISR, and is fenced.
fn gone(image: &MetadataImage, victim: BrokerId) -> bool {
    image.brokers.get(&victim).is_some_and(|b| b.fenced)
        && image.topics.values().flat_map(|t| &t.partitions).all(|p| p.leader != victim && !p.isr.contains(&victim))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_stops_heartbeating_is_fenced_and_comes_back_when_it_restarts() {
    let root = tempfile::tempdir().unwrap();
    let nodes = three_nodes(root.path(), 10_000).await;
    let mut heartbeats: Vec<_> = nodes
        .iter()
        .map(|n| {
            let id = n.config.node_id as BrokerId;
            ready_broker(n.controller.as_ref().unwrap(), id)
        })
        .collect();
    let any = nodes[0].controller.as_ref().unwrap();
    image_where(any, |i| i.unfenced_brokers().len() == 3).await;
    any.propose(create_topic("t", 3, 3), TIMEOUT).await.unwrap().unwrap();
    let victim = image_where(any, |i| i.topics.contains_key("t")).await.partition("t", 0).unwrap().leader;

    heartbeats[(victim - 1) as usize].abort();
    let stopped = Instant::now();
    let fenced = image_where(any, |i| gone(i, victim)).await;
    let took = stopped.elapsed();
    // The session is 2 s from the last heartbeat, which was at most 500 ms before the stop.
    assert!(took >= Duration::from_millis(1400), "fenced after {took:?}: before its session ran out");
    assert!(took <= Duration::from_millis(3000), "fenced after {took:?}");
    assert!(fenced.topics["t"].partitions.iter().all(|p| p.leader != victim && p.isr.len() == 2));

    let controller = nodes[(victim - 1) as usize].controller.as_ref().unwrap();
    heartbeats[(victim - 1) as usize] = ready_broker(controller, victim);
    let back = image_where(any, |i| i.brokers.get(&victim).is_some_and(|b| !b.fenced)).await;
    assert!(back.brokers[&victim].epoch > fenced.brokers[&victim].epoch, "a new incarnation, a new epoch");
    for task in heartbeats {
        task.abort();
    }
    for node in nodes {
        node.controller.unwrap().shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_active_controller_dies_with_its_broker_the_new_one_fences_it() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = three_nodes(root.path(), 10_000).await;
    let heartbeats: Vec<_> = nodes
        .iter()
        .map(|n| {
            let id = n.config.node_id as BrokerId;
            ready_broker(n.controller.as_ref().unwrap(), id)
        })
        .collect();
    let leader = leader_of(&nodes).await;
    let any = nodes[0].controller.clone().unwrap();
    image_where(&any, |i| i.unfenced_brokers().len() == 3).await;
    any.propose(create_topic("t", 6, 3), TIMEOUT).await.unwrap().unwrap();

    let victim = leader as BrokerId;
    heartbeats[(victim - 1) as usize].abort();
    let dead = nodes[(victim - 1) as usize].controller.take().unwrap();
    dead.shutdown().await;
    let stopped = Instant::now();
    let survivor = nodes.iter().find_map(|n| n.controller.clone()).unwrap();
    let image = image_where(&survivor, |i| gone(i, victim)).await;
    let took = stopped.elapsed();
    // An election (400-800 ms here), then a full session for every broker (2 s).
    assert!(took <= Duration::from_secs(5), "fenced after {took:?}");
    assert!(image.topics["t"].partitions.iter().all(|p| p.leader != victim && p.isr.len() == 2));
    for task in heartbeats {
        task.abort();
    }
    for node in nodes {
        if let Some(controller) = node.controller {
            controller.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_controller_frames_are_dropped_and_the_quorum_carries_on() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let root = tempfile::tempdir().unwrap();
    let nodes = three_nodes(root.path(), 10_000).await;
    leader_of(&nodes).await;
    for node in &nodes {
        let addr = &node.config.advertised;
        // A frame claiming 4 GiB, a frame of garbage, and a frame of valid JSON that is no
        // request: each connection is closed, and nothing is allocated for the first.
        for frame in [vec![0xff, 0xff, 0xff, 0xff], [&5u32.to_be_bytes()[..], b"\x00\x01garbage"].concat(), {
            let body = br#"{"Nope":1}"#;
            [&(body.len() as u32).to_be_bytes()[..], body].concat()
        }] {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.write_all(&frame).await.unwrap();
            let mut buf = [0u8; 16];
            let read =
                tokio::time::timeout(TIMEOUT, stream.read(&mut buf)).await.expect("the node closes the connection");
            assert!(matches!(read, Ok(0) | Err(_)), "no answer to a bad frame: {read:?}");
        }
    }
    let any = nodes[1].controller.as_ref().unwrap();
    let outcome = any.propose(register(7), TIMEOUT).await.expect("the quorum still commits");
    assert!(matches!(outcome, Ok(MetadataOutcome::BrokerEpoch(_))));
    for node in nodes {
        node.controller.unwrap().shutdown().await;
    }
}

/// Runs broker `id`'s registration and heartbeats, ready to be unfenced at once.
fn ready_broker(controller: &Arc<Controller>, id: BrokerId) -> tokio::task::JoinHandle<()> {
    let (registered, _) = tokio::sync::watch::channel(None);
    let (_, ready) = tokio::sync::watch::channel(true);
    controller.run_broker(id, "127.0.0.1".into(), 9000 + id as u16, registered, ready)
}
