//! The replica manager: makes this broker's logs and roles follow the metadata image.
//!
//! It watches the image the controller quorum applies on this node and, for every
//! partition this broker is a replica of, keeps a local log and a [`Replica`] in the role
//! the image gives it. It runs one replica fetcher per leader this broker follows, ticks
//! the leaders (ISR shrink), and carries leaders' AlterPartition requests to the controller.
//!
//! ```text
//!  Controller ──image watch──> ReplicaManager::reconcile ──> LogManager (topics, configs)
//!                                   │                    └──> Replica::apply_registration
//!                                   ├──> fetcher per leader broker ──Fetch──> leader
//!                                   └──> AlterPartition ──> Controller::propose
//! ```
//!
//! Nothing is reconciled before this incarnation's own registration is in the local image:
//! until then the image may be older than the log (a restarted node replaying its
//! snapshot), and a topic missing from it may only be missing from the replay so far.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::fetcher;
use super::leader::LeaderAction;
use super::replica::Replica;
use crate::cluster::quorum::Controller;
use crate::cluster::{BrokerId, MetadataCommand, MetadataError, MetadataImage};
use crate::log::{LogError, LogManager, TopicPartition};

/// How often leaders check their followers' lag.
const TICK: Duration = Duration::from_millis(250);
/// How long one AlterPartition proposal may take before it is sent again.
const ALTER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a refused ISR change blocks the next one.
const REFUSED_BACKOFF: Duration = Duration::from_secs(1);

/// This broker's replicas, kept in step with the metadata image.
pub struct ReplicaManager {
    broker: BrokerId,
    logs: Arc<LogManager>,
    controller: Arc<Controller>,
    lag_max: Duration,
    replicas: RwLock<HashMap<TopicPartition, Arc<Replica>>>,
    fetchers: Mutex<BTreeMap<BrokerId, JoinHandle<()>>>,
    /// This incarnation's broker epoch, once registered.
    registered: watch::Receiver<Option<i64>>,
    /// True once the image that holds this incarnation's registration has been applied:
    /// the broker may then be unfenced.
    ready: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for ReplicaManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaManager").field("broker", &self.broker).finish_non_exhaustive()
    }
}

impl ReplicaManager {
    /// Starts following the image; `registered` carries this incarnation's broker epoch
    /// (from [`Controller::run_broker`]) and `ready` is set once it may be unfenced.
    pub fn start(
        broker: BrokerId,
        logs: Arc<LogManager>,
        controller: Arc<Controller>,
        lag_max: Duration,
        registered: watch::Receiver<Option<i64>>,
        ready: watch::Sender<bool>,
    ) -> Arc<Self> {
        let manager = Arc::new(Self {
            broker,
            logs,
            controller,
            lag_max,
            replicas: RwLock::new(HashMap::new()),
            fetchers: Mutex::new(BTreeMap::new()),
            registered,
            ready,
            tasks: Mutex::new(Vec::new()),
        });
        let follow = tokio::spawn(Arc::clone(&manager).follow_image());
        let tick = tokio::spawn(Arc::clone(&manager).tick_leaders());
        manager.tasks.lock().expect("tasks lock").extend([follow, tick]);
        manager
    }

    pub fn broker_id(&self) -> BrokerId {
        self.broker
    }

    pub fn controller(&self) -> &Arc<Controller> {
        &self.controller
    }

    /// The image as this node has applied it.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.controller.image().borrow().clone()
    }

    /// This broker's replica of `topic`-`partition`, if it is one.
    pub fn replica(&self, topic: &str, partition: i32) -> Option<Arc<Replica>> {
        self.replicas.read().expect("replicas lock").get(&TopicPartition::new(topic, partition)).cloned()
    }

    /// The replicas that follow `leader`, with the leader epoch each follows at.
    pub(super) fn followed_from(&self, leader: BrokerId) -> Vec<(Arc<Replica>, i32)> {
        self.replicas
            .read()
            .expect("replicas lock")
            .values()
            .filter_map(|r| r.following().filter(|(l, _)| *l == leader).map(|(_, epoch)| (Arc::clone(r), epoch)))
            .collect()
    }

    /// Where Kafka clients (and fetchers) reach `broker`.
    pub fn broker_address(&self, broker: BrokerId) -> Option<String> {
        let image = self.image();
        image.brokers.get(&broker).map(|b| format!("{}:{}", b.host, b.port))
    }

    /// Stops the manager's tasks and fetchers.
    pub fn shutdown(&self) {
        for task in self.tasks.lock().expect("tasks lock").drain(..) {
            task.abort();
        }
        for (_, fetcher) in std::mem::take(&mut *self.fetchers.lock().expect("fetchers lock")) {
            fetcher.abort();
        }
    }

    async fn follow_image(self: Arc<Self>) {
        let mut image = self.controller.image();
        let mut registered = self.registered.clone();
        loop {
            let current = image.borrow_and_update().clone();
            let epoch = *registered.borrow_and_update();
            let mine = epoch.is_some_and(|e| current.brokers.get(&self.broker).is_some_and(|b| b.epoch >= e));
            if mine {
                let manager = Arc::clone(&self);
                let applied = tokio::task::spawn_blocking(move || manager.reconcile(&current)).await;
                match applied {
                    Ok(Ok(())) => {
                        self.ready.send_if_modified(|ready| !std::mem::replace(ready, true));
                    }
                    Ok(Err(error)) => {
                        tracing::error!(%error, "cannot apply the metadata image to the local logs; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                    Err(error) => tracing::error!(%error, "metadata reconciliation panicked"),
                }
            }
            tokio::select! {
                changed = image.changed() => if changed.is_err() { return },
                changed = registered.changed() => if changed.is_err() { return },
            }
        }
    }

    /// Brings local topics, partitions, configs and roles in line with `image`.
    fn reconcile(self: &Arc<Self>, image: &MetadataImage) -> Result<(), LogError> {
        let now = Instant::now();
        // Topics gone from the image (deleted, or recreated under a new id) go locally too.
        for (name, local) in self.logs.topics() {
            let current = image.topics.get(&name);
            if current.is_none_or(|t| t.id != local.topic_id) {
                tracing::info!(topic = %name, "deleting the local log of a topic the cluster no longer has");
                self.replicas.write().expect("replicas lock").retain(|tp, _| tp.topic != name);
                self.logs.delete_topic(&name)?;
            }
        }
        let mut wanted = HashMap::new();
        for (name, topic) in &image.topics {
            let hosts_any = topic.partitions.iter().any(|p| p.replicas.contains(&self.broker));
            if !hosts_any {
                continue;
            }
            let count = topic.partitions.len() as i32;
            match self.logs.topic(name) {
                None => self.logs.create_topic_with_id(name, topic.id, count, topic.configs.clone())?,
                Some(local) => {
                    if local.partitions < count {
                        self.logs.create_partitions(name, count)?;
                    }
                    if local.config != topic.configs {
                        self.logs.alter_topic_config(name, topic.configs.clone())?;
                    }
                }
            }
            for (index, registration) in topic.partitions.iter().enumerate() {
                if !registration.replicas.contains(&self.broker) {
                    continue;
                }
                let tp = TopicPartition::new(name.clone(), index as i32);
                let existing = self.replicas.read().expect("replicas lock").get(&tp).cloned();
                let replica = match existing {
                    Some(replica) => replica,
                    None => {
                        let log = self.logs.get(name, index as i32)?;
                        Arc::new(Replica::new(tp.clone(), log, self.broker, registration.clone(), self.lag_max))
                    }
                };
                let actions = replica.apply_registration(registration, now)?;
                self.act(&replica, actions);
                wanted.insert(tp, replica);
            }
        }
        *self.replicas.write().expect("replicas lock") = wanted;
        self.update_fetchers();
        Ok(())
    }

    /// One fetcher per leader that some replica here follows.
    fn update_fetchers(self: &Arc<Self>) {
        let leaders: std::collections::BTreeSet<BrokerId> = self
            .replicas
            .read()
            .expect("replicas lock")
            .values()
            .filter_map(|r| r.following().map(|(leader, _)| leader))
            .collect();
        let mut fetchers = self.fetchers.lock().expect("fetchers lock");
        fetchers.retain(|leader, task| {
            let keep = leaders.contains(leader) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for leader in leaders {
            fetchers.entry(leader).or_insert_with(|| tokio::spawn(fetcher::run(Arc::clone(self), leader)));
        }
    }

    async fn tick_leaders(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let now = Instant::now();
            let replicas: Vec<Arc<Replica>> = self.replicas.read().expect("replicas lock").values().cloned().collect();
            for replica in replicas {
                let actions = replica.tick(now);
                self.act(&replica, actions);
            }
        }
    }

    /// Carries out what a leader asked for. The high watermark is already published by the
    /// replica; an ISR change goes to the controller.
    pub fn act(self: &Arc<Self>, replica: &Arc<Replica>, actions: Vec<LeaderAction>) {
        for action in actions {
            if let LeaderAction::AlterIsr { isr, leader_epoch, partition_epoch } = action {
                let manager = Arc::clone(self);
                let replica = Arc::clone(replica);
                tokio::spawn(async move { manager.alter_partition(replica, isr, leader_epoch, partition_epoch).await });
            }
        }
    }

    /// Proposes an ISR change until the controller decides it: applied (the image brings
    /// it back), refused (the leader may ask again), or overtaken by a newer registration.
    async fn alter_partition(
        &self,
        replica: Arc<Replica>,
        isr: Vec<BrokerId>,
        leader_epoch: i32,
        partition_epoch: i32,
    ) {
        tracing::info!(partition = %replica.tp, ?isr, "asking the controller to change the ISR");
        let command = MetadataCommand::AlterPartition {
            topic: replica.tp.topic.clone(),
            partition: replica.tp.partition as u32,
            leader: self.broker,
            leader_epoch,
            partition_epoch,
            isr: isr.clone(),
        };
        loop {
            match self.controller.propose(command.clone(), ALTER_TIMEOUT).await {
                Ok(Ok(_)) => return,
                // Stale epochs: a newer image is on its way (or this leadership is over) and
                // settles the pending change when it arrives.
                Ok(Err(MetadataError::InvalidUpdateVersion { .. } | MetadataError::FencedLeaderEpoch { .. })) => {
                    return;
                }
                Ok(Err(error)) => {
                    tracing::info!(partition = %replica.tp, %error, "ISR change refused");
                    // Kept pending a while before another may be asked: a replica refused
                    // now (a fenced broker still fetching) would be proposed again at its
                    // very next fetch, a metadata record per fetch.
                    tokio::time::sleep(REFUSED_BACKOFF).await;
                    replica.on_alter_refused(leader_epoch, partition_epoch, &isr);
                    return;
                }
                // Undecided: it may still commit, so it keeps counting until the image moves
                // past it (the fenced epochs make a repeat harmless).
                Err(error) => tracing::warn!(partition = %replica.tp, %error, "ISR change undecided; asking again"),
            }
            if !replica.alter_pending(leader_epoch, partition_epoch) {
                return;
            }
        }
    }
}

impl Drop for ReplicaManager {
    fn drop(&mut self) {
        self.shutdown();
    }
}
