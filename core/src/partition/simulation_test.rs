//! A seeded simulation of one replicated partition: three brokers, the controller's
//! metadata state machine, the leader's replication state and the follower's truncation
//! rule, driven through random produces, fetches, clock ticks, crashes, restarts and
//! network partitions. Invariants are checked after every step; a failure names its seed.
//!
//! `HEADWATER_SIM_SEED=N` replays one seed; `HEADWATER_SIM_SEEDS=N` runs more of them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::follower::{Truncation, next_truncation};
use super::leader::{LeaderAction, LeaderState};
use crate::cluster::{BrokerId, MetadataCommand, MetadataImage, NO_LEADER};
use crate::log::leader_epoch::LeaderEpochCache;

const TOPIC: &str = "t";
const BROKERS: [BrokerId; 3] = [1, 2, 3];
const MIN_INSYNC: usize = 2;
const LAG_MAX: Duration = Duration::from_millis(1500);
const SESSION: Duration = Duration::from_millis(2000);
const STEPS: usize = 1500;

/// One record in a simulated log: the epoch of the leader that wrote it, and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    epoch: i32,
    value: u64,
}

#[derive(Debug)]
struct Broker {
    alive: bool,
    /// Offset = index. Survives a crash (a process kill keeps the page cache).
    log: Vec<Record>,
    epochs: LeaderEpochCache,
    high_watermark: i64,
    /// The metadata this broker last received.
    image: MetadataImage,
    leader: Option<LeaderState>,
    /// (leader, leader epoch) this broker follows, and whether it must truncate first.
    following: Option<(BrokerId, i32, bool)>,
    /// The controller fenced this incarnation; it registers again when it can.
    registered_epoch: Option<i64>,
}

impl Broker {
    fn log_end(&self) -> i64 {
        self.log.len() as i64
    }

    fn truncate(&mut self, offset: i64) {
        self.log.truncate(offset as usize);
        self.epochs.truncate_from_end(offset);
        self.high_watermark = self.high_watermark.min(offset);
    }

    fn append(&mut self, record: Record) {
        self.epochs.assign(record.epoch, self.log_end());
        self.log.push(record);
    }
}

struct Sim {
    seed: u64,
    rng: StdRng,
    now: Instant,
    brokers: BTreeMap<BrokerId, Broker>,
    /// The controller's image (the Raft log's state machine; the quorum itself is tested
    /// elsewhere) and when it last heard from each broker.
    image: MetadataImage,
    index: u64,
    last_heartbeat: BTreeMap<BrokerId, Instant>,
    /// Cut off from everything (other brokers, the controller, clients) until healed.
    isolated: Option<BrokerId>,
    /// One broker-to-broker link down, both ends still reaching the controller.
    cut: Option<(BrokerId, BrokerId)>,
    /// Produced and not yet acknowledged: (offset, value, leader, epoch).
    pending: Vec<(i64, u64, BrokerId, i32)>,
    /// Acknowledged to the producer: offset -> value. Must never be lost.
    acked: BTreeMap<i64, u64>,
    next_value: u64,
    /// The highest high watermark each (leader, epoch) reported, to check it never drops.
    reported: BTreeMap<(BrokerId, i32), i64>,
    stats: Stats,
}

/// What a run exercised, so a passing run is known to have tested something.
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    acked: usize,
    leader_changes: usize,
    /// Follower truncations that removed records (a stale or unacknowledged tail).
    truncations: usize,
    isr_changes: usize,
}

impl Sim {
    fn new(seed: u64) -> Self {
        let now = Instant::now();
        let mut sim = Self {
            seed,
            rng: StdRng::seed_from_u64(seed),
            now,
            brokers: BTreeMap::new(),
            image: MetadataImage::default(),
            index: 0,
            last_heartbeat: BTreeMap::new(),
            isolated: None,
            cut: None,
            pending: Vec::new(),
            acked: BTreeMap::new(),
            next_value: 1,
            reported: BTreeMap::new(),
            stats: Stats::default(),
        };
        for id in BROKERS {
            sim.brokers.insert(
                id,
                Broker {
                    alive: true,
                    log: Vec::new(),
                    epochs: LeaderEpochCache::default(),
                    high_watermark: 0,
                    image: MetadataImage::default(),
                    leader: None,
                    following: None,
                    registered_epoch: None,
                },
            );
            sim.register(id);
        }
        sim.control(MetadataCommand::CreateTopic {
            name: TOPIC.into(),
            id: uuid::Uuid::nil(),
            partitions: 1,
            replication_factor: 3,
            configs: BTreeMap::new(),
        });
        sim.publish();
        sim
    }

    fn fail(&self, message: String) -> ! {
        panic!("seed {} (replay with HEADWATER_SIM_SEED={}): {message}", self.seed, self.seed);
    }

    fn control(&mut self, command: MetadataCommand) -> bool {
        self.index += 1;
        self.image.apply(self.index, &command).is_ok()
    }

    fn reaches_controller(&self, id: BrokerId) -> bool {
        self.brokers[&id].alive && self.isolated != Some(id)
    }

    fn linked(&self, a: BrokerId, b: BrokerId) -> bool {
        self.brokers[&a].alive
            && self.brokers[&b].alive
            && self.isolated != Some(a)
            && self.isolated != Some(b)
            && self.cut != Some((a, b))
            && self.cut != Some((b, a))
    }

    fn register(&mut self, id: BrokerId) {
        self.control(MetadataCommand::RegisterBroker {
            id,
            incarnation: uuid::Uuid::nil(),
            host: "sim".into(),
            port: 0,
        });
        let epoch = self.image.brokers[&id].epoch;
        self.control(MetadataCommand::UnfenceBroker { id, epoch });
        self.brokers.get_mut(&id).expect("broker").registered_epoch = Some(epoch);
        self.last_heartbeat.insert(id, self.now);
    }

    /// The controller's image reaches every broker that can hear it, which reacts.
    fn publish(&mut self) {
        let mut follow_up = Vec::new();
        for id in BROKERS {
            if !self.reaches_controller(id) {
                continue;
            }
            let image = self.image.clone();
            let now = self.now;
            let broker = self.brokers.get_mut(&id).expect("broker");
            broker.image = image;
            let Some(p) = broker.image.partition(TOPIC, 0).cloned() else { continue };
            if p.leader == id {
                let keep = broker.leader.as_mut().and_then(|l| l.on_registration(p.clone()));
                if let Some(actions) = keep {
                    follow_up.push((id, actions));
                } else {
                    // Kafka records the new epoch at the log end as the leader takes over, so
                    // followers asking about it get an answer before its first append.
                    let end = broker.log_end();
                    broker.epochs.assign(p.leader_epoch, end);
                    let state = LeaderState::new(id, p.clone(), end, broker.high_watermark, LAG_MAX, now);
                    self.stats.leader_changes += 1;
                    broker.leader = Some(state);
                    broker.following = None;
                }
            } else {
                broker.leader = None;
                if p.leader != NO_LEADER && p.replicas.contains(&id) {
                    let same = broker.following.is_some_and(|(l, e, _)| l == p.leader && e == p.leader_epoch);
                    if !same {
                        broker.following = Some((p.leader, p.leader_epoch, true));
                    }
                } else {
                    broker.following = None;
                }
            }
        }
        for (id, actions) in follow_up {
            self.carry_out(id, actions);
        }
    }

    fn step(&mut self) {
        match self.rng.random_range(0..100) {
            0..=29 => self.produce(),
            30..=69 => {
                let follower = BROKERS[self.rng.random_range(0..3)];
                self.fetch(follower);
            }
            70..=89 => self.tick(),
            90..=92 => self.crash(),
            93..=94 => self.restart(),
            95..=96 => self.partition_or_heal(),
            97 => self.cut_or_mend(),
            _ => {
                // Leadership moves back to the preferred replica when it is in sync.
                self.control(MetadataCommand::ElectPreferredLeader { topic: TOPIC.into(), partition: 0 });
                self.publish();
            }
        }
        self.check();
    }

    fn produce(&mut self) {
        // The producer reaches any broker that believes it leads, even one cut off from
        // the rest (a stale leader on its side of a partition).
        let leaders: Vec<BrokerId> =
            BROKERS.into_iter().filter(|b| self.brokers[b].alive && self.brokers[b].leader.is_some()).collect();
        if leaders.is_empty() {
            return;
        }
        let leader = leaders[self.rng.random_range(0..leaders.len())];
        let value = self.next_value;
        let broker = self.brokers.get_mut(&leader).expect("broker");
        let Some(state) = broker.leader.as_mut() else { return };
        if !state.accepts_acks_all(MIN_INSYNC) {
            return;
        }
        let epoch = state.leader_epoch();
        self.next_value += 1;
        let offset = broker.log_end();
        broker.append(Record { epoch, value });
        let actions = broker.leader.as_mut().expect("leader").on_append(offset + 1);
        self.pending.push((offset, value, leader, epoch));
        self.carry_out(leader, actions);
    }

    fn fetch(&mut self, follower: BrokerId) {
        let Some((leader, epoch, must_truncate)) = self.brokers[&follower].following else { return };
        if !self.linked(follower, leader) {
            return;
        }
        let leads = self.brokers[&leader].leader.as_ref().is_some_and(|l| l.leader_epoch() == epoch);
        if !leads {
            return;
        }
        if must_truncate {
            // OffsetForLeaderEpoch rounds until the logs agree (KIP-279).
            loop {
                let asked = self.brokers[&follower].epochs.latest_epoch();
                let l = &self.brokers[&leader];
                let answer = asked.and_then(|e| l.epochs.end_offset_for(e, l.log_end()));
                let f = &self.brokers[&follower];
                let step = next_truncation(&f.epochs, f.log_end(), f.high_watermark, asked, answer);
                let (Truncation::Done(to) | Truncation::AskAgain(to)) = step;
                let f = self.brokers.get_mut(&follower).expect("broker");
                if to < f.log_end() {
                    self.stats.truncations += 1;
                }
                f.truncate(to);
                if matches!(step, Truncation::Done(_)) {
                    break;
                }
            }
            self.brokers.get_mut(&follower).expect("broker").following = Some((leader, epoch, false));
        }
        let offset = self.brokers[&follower].log_end();
        let now = self.now;
        let actions = self
            .brokers
            .get_mut(&leader)
            .expect("broker")
            .leader
            .as_mut()
            .expect("leads")
            .on_fetch(follower, offset, now);
        let count = self.rng.random_range(1..=5usize);
        let hw_arrives = self.rng.random_bool(0.3);
        let l = &self.brokers[&leader];
        if offset > l.log_end() {
            self.fail(format!("follower {follower} at {offset} is past leader {leader}'s end {}", l.log_end()));
        }
        let records: Vec<Record> = l.log[offset as usize..].iter().take(count).copied().collect();
        let leader_hw = l.leader.as_ref().expect("leads").high_watermark();
        let f = self.brokers.get_mut(&follower).expect("broker");
        for record in records {
            f.append(record);
        }
        // A follower's high watermark may lag the leader's by any amount (it is only ever a
        // lower bound), and a stale one is what a new leader starts from: so it is updated
        // only some of the time.
        if hw_arrives {
            f.high_watermark = f.high_watermark.max(leader_hw.min(f.log_end()));
        }
        self.carry_out(leader, actions);
    }

    fn tick(&mut self) {
        self.now += Duration::from_millis(self.rng.random_range(10..400));
        let now = self.now;
        for id in BROKERS {
            if self.reaches_controller(id) && self.brokers[&id].registered_epoch.is_some() {
                self.last_heartbeat.insert(id, now);
            }
        }
        // The controller fences brokers it has not heard from within a session.
        for id in BROKERS {
            let silent = now.duration_since(self.last_heartbeat[&id]) > SESSION;
            if silent && self.image.brokers.get(&id).is_some_and(|b| !b.fenced) {
                let epoch = self.image.brokers[&id].epoch;
                self.control(MetadataCommand::FenceBroker { id, epoch });
                self.brokers.get_mut(&id).expect("broker").registered_epoch = None;
            }
        }
        // Brokers that were fenced (or restarted) register again when they can.
        for id in BROKERS {
            if self.reaches_controller(id) && self.brokers[&id].registered_epoch.is_none() {
                self.register(id);
            }
        }
        // Metadata reaches every broker that can hear the controller (a reconnected broker
        // catches up with what it missed), changed or not.
        self.publish();
        for id in BROKERS {
            if !self.brokers[&id].alive {
                continue;
            }
            let Some(state) = self.brokers.get_mut(&id).expect("broker").leader.as_mut() else { continue };
            let actions = state.on_tick(now);
            self.carry_out(id, actions);
        }
    }

    fn carry_out(&mut self, leader: BrokerId, actions: Vec<LeaderAction>) {
        for action in actions {
            match action {
                LeaderAction::HighWatermark(hw) => {
                    let epoch = self.brokers[&leader].leader.as_ref().expect("leads").leader_epoch();
                    let seen = self.reported.entry((leader, epoch)).or_insert(hw);
                    if hw < *seen {
                        self.fail(format!("leader {leader} epoch {epoch} moved its high watermark back to {hw}"));
                    }
                    *seen = hw;
                    self.brokers.get_mut(&leader).expect("broker").high_watermark = hw;
                    let log = self.brokers[&leader].log.clone();
                    let (done, waiting): (Vec<_>, Vec<_>) =
                        self.pending.drain(..).partition(|(o, _, l, e)| *l == leader && *e == epoch && *o < hw);
                    self.pending = waiting;
                    let enough =
                        self.brokers[&leader].leader.as_ref().expect("leads").enough_replicas_after_append(MIN_INSYNC);
                    if !enough {
                        // Answered NOT_ENOUGH_REPLICAS_AFTER_APPEND: not acknowledged.
                        continue;
                    }
                    for (offset, value, _, _) in done {
                        if log.get(offset as usize).map(|r| r.value) != Some(value) {
                            self.fail(format!("acknowledging offset {offset}, but leader {leader} no longer has it"));
                        }
                        let copies = self
                            .brokers
                            .values()
                            .filter(|b| b.log.get(offset as usize).map(|r| r.value) == Some(value));
                        if copies.count() < MIN_INSYNC {
                            self.fail(format!("acknowledging offset {offset} with fewer than {MIN_INSYNC} copies"));
                        }
                        if let Some(previous) = self.acked.insert(offset, value) {
                            self.fail(format!("offset {offset} acknowledged twice: {previous} then {value}"));
                        }
                    }
                }
                LeaderAction::AlterIsr { isr, leader_epoch, partition_epoch } => {
                    let accepted = self.reaches_controller(leader)
                        && self.control(MetadataCommand::AlterPartition {
                            topic: TOPIC.into(),
                            partition: 0,
                            leader,
                            leader_epoch,
                            partition_epoch,
                            isr: isr.clone(),
                        });
                    if accepted {
                        self.stats.isr_changes += 1;
                        self.publish();
                    } else if let Some(state) = self.brokers.get_mut(&leader).expect("broker").leader.as_mut() {
                        state.on_alter_refused(&isr, partition_epoch);
                    }
                }
            }
        }
    }

    fn crash(&mut self) {
        let alive: Vec<BrokerId> = BROKERS.into_iter().filter(|b| self.brokers[b].alive).collect();
        if alive.len() <= 1 {
            return;
        }
        let victim = alive[self.rng.random_range(0..alive.len())];
        let broker = self.brokers.get_mut(&victim).expect("broker");
        broker.alive = false;
        broker.leader = None;
        broker.following = None;
        broker.registered_epoch = None;
        // Its unacknowledged produces will never be answered.
        self.pending.retain(|(_, _, l, _)| *l != victim);
    }

    fn restart(&mut self) {
        let dead: Vec<BrokerId> = BROKERS.into_iter().filter(|b| !self.brokers[b].alive).collect();
        if let Some(&id) = dead.first() {
            self.brokers.get_mut(&id).expect("broker").alive = true;
        }
    }

    fn partition_or_heal(&mut self) {
        if self.isolated.is_some() {
            self.isolated = None;
            self.publish();
        } else {
            let victim = BROKERS[self.rng.random_range(0..3)];
            self.isolated = Some(victim);
            self.pending.retain(|(_, _, l, _)| *l != victim);
        }
    }

    fn cut_or_mend(&mut self) {
        if self.cut.is_some() {
            self.cut = None;
        } else {
            let a = BROKERS[self.rng.random_range(0..3)];
            let b = BROKERS[(BROKERS.iter().position(|x| *x == a).expect("listed") + 1) % 3];
            self.cut = Some((a, b));
        }
    }

    fn check(&self) {
        let p = self.image.partition(TOPIC, 0).expect("topic");
        if p.leader != NO_LEADER && !p.isr.contains(&p.leader) {
            self.fail(format!("leader {} is not in the ISR {:?} (unclean election is off)", p.leader, p.isr));
        }
        // Every acknowledged record is in every in-sync replica's log, at its offset.
        for (&offset, &value) in &self.acked {
            for id in &p.isr {
                let has = self.brokers[id].log.get(offset as usize).map(|r| r.value);
                if has != Some(value) {
                    self.fail(format!(
                        "acknowledged offset {offset} ({value}) missing from in-sync replica {id}: {has:?}"
                    ));
                }
            }
        }
        // Replicas agree below their high watermarks.
        for a in BROKERS {
            for b in BROKERS {
                let (x, y) = (&self.brokers[&a], &self.brokers[&b]);
                let common = x.high_watermark.min(y.high_watermark) as usize;
                if x.log[..common] != y.log[..common] {
                    self.fail(format!("brokers {a} and {b} disagree below their high watermarks ({common})"));
                }
            }
        }
    }

    /// Heals everything and lets replication settle.
    fn settle(&mut self) {
        self.isolated = None;
        self.cut = None;
        for id in BROKERS {
            self.brokers.get_mut(&id).expect("broker").alive = true;
        }
        for _ in 0..400 {
            self.tick();
            for id in BROKERS {
                self.fetch(id);
            }
            self.check();
        }
    }
}

fn run(seed: u64) -> Stats {
    let mut sim = Sim::new(seed);
    for _ in 0..STEPS {
        sim.step();
    }
    sim.settle();
    let leader = sim.image.partition(TOPIC, 0).expect("topic").leader;
    if leader == NO_LEADER {
        sim.fail("no leader after healing".into());
    }
    let end = sim.brokers[&leader].log_end();
    for id in BROKERS {
        if sim.brokers[&id].log_end() != end {
            let state: Vec<String> = BROKERS
                .iter()
                .map(|b| {
                    let x = &sim.brokers[b];
                    format!(
                        "{b}: alive {} end {} hw {} following {:?} leads {:?} epochs {:?}",
                        x.alive,
                        x.log_end(),
                        x.high_watermark,
                        x.following,
                        x.leader.as_ref().map(LeaderState::leader_epoch),
                        x.epochs.entries()
                    )
                })
                .collect();
            sim.fail(format!(
                "broker {id} did not catch up with leader {leader} after healing; {:?}; {state:#?}",
                sim.image.partition(TOPIC, 0)
            ));
        }
    }
    Stats { acked: sim.acked.len(), ..sim.stats }
}

#[test]
fn replication_keeps_every_acknowledged_record_through_crashes_and_partitions() {
    let seeds: Vec<u64> = match std::env::var("HEADWATER_SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("a number")],
        Err(_) => {
            let count = std::env::var("HEADWATER_SIM_SEEDS").ok().and_then(|n| n.parse().ok()).unwrap_or(100);
            (0..count).collect()
        }
    };
    let mut total = Stats::default();
    for seed in &seeds {
        let stats = run(*seed);
        total.acked += stats.acked;
        total.leader_changes += stats.leader_changes;
        total.truncations += stats.truncations;
        total.isr_changes += stats.isr_changes;
    }
    eprintln!("{} seeds: {total:?}", seeds.len());
    // The runs must have exercised what they claim to test, or they prove nothing.
    let n = seeds.len();
    assert!(total.acked > n * 20, "only {} records acknowledged", total.acked);
    assert!(total.leader_changes > n * 2, "only {} leader changes", total.leader_changes);
    assert!(total.isr_changes > n, "only {} ISR changes", total.isr_changes);
    assert!(total.truncations > 0, "no follower ever truncated a diverged tail");
}
