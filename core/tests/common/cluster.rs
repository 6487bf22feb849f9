//! A cluster of real `headwater serve` processes on 127.0.0.1: each node a combined
//! broker and controller, on ports fixed at the start so that a killed node comes back
//! at the same addresses with the same data dir.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use headwater_core::client::{Admin, PartitionInfo};

use super::server::ServerProcess;

pub struct Node {
    pub id: i32,
    pub listen: String,
    pub controller: String,
    pub data_dir: PathBuf,
    pub process: Option<ServerProcess>,
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    voters: String,
    /// `serve` flags every node gets besides its own.
    extra_args: Vec<String>,
    runtime: tokio::runtime::Runtime,
}

/// A loopback port free right now (the kernel hands it out again only after a while).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Cluster {
    /// Starts `size` nodes, ids 1..=size, all voters, under `root`.
    pub fn start(root: &Path, size: i32) -> Self {
        Self::start_with_args(root, size, &[])
    }

    /// [`Self::start`] with extra `serve` flags for every node.
    pub fn start_with_args(root: &Path, size: i32, extra_args: &[&str]) -> Self {
        let extra_args: Vec<String> = extra_args.iter().map(|a| a.to_string()).collect();
        let mut nodes: Vec<Node> = (1..=size)
            .map(|id| Node {
                id,
                listen: format!("127.0.0.1:{}", free_port()),
                controller: format!("127.0.0.1:{}", free_port()),
                data_dir: root.join(format!("node-{id}")),
                process: None,
            })
            .collect();
        let voters = nodes.iter().map(|n| format!("{}@{}", n.id, n.controller)).collect::<Vec<_>>().join(",");
        for node in &mut nodes {
            node.process = Some(spawn(node, &voters, &extra_args));
        }
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        Self { nodes, voters, extra_args, runtime }
    }

    /// Every node's Kafka address, for a client's bootstrap list.
    pub fn bootstrap(&self) -> String {
        self.nodes.iter().map(|n| n.listen.clone()).collect::<Vec<_>>().join(",")
    }

    fn node(&mut self, id: i32) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.id == id).expect("a node of this cluster")
    }

    /// Starts a broker that is not a voter: it joins the running cluster as a learner of
    /// the metadata log.
    pub fn add_broker(&mut self, id: i32) {
        let root = self.nodes[0].data_dir.parent().expect("data dirs under one root").to_path_buf();
        let mut node = Node {
            id,
            listen: format!("127.0.0.1:{}", free_port()),
            controller: format!("127.0.0.1:{}", free_port()),
            data_dir: root.join(format!("node-{id}")),
            process: None,
        };
        node.process = Some(spawn(&node, &self.voters, &self.extra_args));
        self.nodes.push(node);
    }

    /// SIGKILL node `id`.
    pub fn kill(&mut self, id: i32) {
        self.node(id).process.take().expect("node running").kill();
    }

    /// Starts node `id` again on its addresses and data.
    pub fn restart(&mut self, id: i32) {
        let voters = self.voters.clone();
        let extra_args = self.extra_args.clone();
        let node = self.node(id);
        assert!(node.process.is_none(), "node {id} is running");
        node.process = Some(spawn(node, &voters, &extra_args));
    }

    /// SIGTERM every running node; each must exit cleanly.
    pub fn stop_all(&mut self) {
        for node in &mut self.nodes {
            if let Some(process) = node.process.take() {
                let status = process.stop();
                assert!(status.success(), "node {} did not stop cleanly: {status}", node.id);
            }
        }
    }

    /// A topic's partitions as a running node reports them, if one answers.
    pub fn describe(&self, topic: &str) -> Option<Vec<PartitionInfo>> {
        for node in self.nodes.iter().filter(|n| n.process.is_some()) {
            let answer = self.runtime.block_on(async {
                let admin = Admin::connect(&node.listen).await.ok()?;
                let topics = admin.topics(Some(&[topic.to_string()])).await.ok()?;
                topics.into_iter().find(|t| t.name == topic).map(|t| t.partitions)
            });
            if answer.as_ref().is_some_and(|p| !p.is_empty()) {
                return answer;
            }
        }
        None
    }

    /// Creates a topic once enough brokers are up for its replication factor (brokers are
    /// fenced until they have caught up with the metadata), trying for up to 30 s.
    pub fn create_topic(&self, topic: &str, partitions: i32, replication_factor: i16, configs: &[(&str, &str)]) {
        let configs = configs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let created = self.runtime.block_on(async {
                let admin = Admin::connect(&self.nodes[0].listen).await?;
                admin.create_replicated_topic(topic, partitions, replication_factor, &configs).await
            });
            match created {
                Ok(()) => return,
                Err(error) => assert!(Instant::now() < deadline, "cannot create {topic}: {error}"),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits (up to `timeout`) until `check` holds for the topic's partitions.
    pub fn wait_for(
        &self,
        topic: &str,
        timeout: Duration,
        check: impl Fn(&[PartitionInfo]) -> bool,
    ) -> Vec<PartitionInfo> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(partitions) = self.describe(topic)
                && check(&partitions)
            {
                return partitions;
            }
            assert!(
                Instant::now() < deadline,
                "topic {topic} did not reach the expected state: {:?}",
                self.describe(topic)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn spawn(node: &Node, voters: &str, extra_args: &[String]) -> ServerProcess {
    let id = node.id.to_string();
    let mut args =
        vec!["--node-id", &id, "--listen", &node.listen, "--controller-listen", &node.controller, "--voters", voters];
    args.extend(extra_args.iter().map(String::as_str));
    ServerProcess::spawn(&node.data_dir, &args)
}
