//! A partition leader's replication state: where each follower is, the high watermark, and
//! when the ISR should change.
//!
//! Pure: events come in with the time, and what the broker must do comes out. The leader
//! never changes the ISR itself; it asks the controller (AlterPartition) and applies the
//! answer when the metadata image brings it back. While a change is pending, the high
//! watermark is computed over the union of the current and the proposed ISR, so it is
//! never ahead of what either ISR has (Kafka's "maximal ISR").

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::cluster::{BrokerId, PartitionRegistration};

/// Where one follower is, as its fetches tell the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Follower {
    /// The follower's log end offset: the offset it last fetched from.
    log_end: i64,
    /// The last time the follower was known to have everything the leader had.
    caught_up_at: Instant,
    /// The leader's log end when the previous fetch arrived, and that fetch's time.
    previous_fetch: Option<(i64, Instant)>,
}

/// What the broker must do after an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaderAction {
    /// The high watermark moved forward: answer waiting acks=all producers, wake consumers.
    HighWatermark(i64),
    /// Ask the controller to change the ISR (AlterPartition at these epochs).
    AlterIsr { isr: Vec<BrokerId>, leader_epoch: i32, partition_epoch: i32 },
}

/// A leader's view of its partition's replicas.
#[derive(Debug, Clone)]
pub struct LeaderState {
    broker: BrokerId,
    registration: PartitionRegistration,
    followers: BTreeMap<BrokerId, Follower>,
    log_end: i64,
    high_watermark: i64,
    /// An AlterPartition sent and not yet answered through the metadata image: the ISR
    /// asked for, and the partition epoch it was asked at. Until an image with a newer
    /// partition epoch arrives the request may still commit, so it keeps counting.
    pending_isr: Option<(Vec<BrokerId>, i32)>,
    /// Where this leadership began in the log. A replica joins the ISR only once it has
    /// reached it: a new leader's high watermark can lag what its predecessor acknowledged
    /// (KAFKA-7128), so the high watermark alone is not proof of having every
    /// acknowledged record.
    epoch_start_offset: i64,
    lag_max: Duration,
}

impl LeaderState {
    /// `broker` becomes leader of a partition whose log ends at `log_end` and whose high
    /// watermark was `high_watermark` (from its checkpoint or the previous leader).
    /// Followers start as caught up at `now`: a new leader gives each a full
    /// `replica.lag.time.max.ms` before it may leave the ISR.
    pub fn new(
        broker: BrokerId,
        registration: PartitionRegistration,
        log_end: i64,
        high_watermark: i64,
        lag_max: Duration,
        now: Instant,
    ) -> Self {
        debug_assert_eq!(registration.leader, broker, "only the registered leader leads");
        let followers = registration
            .replicas
            .iter()
            .filter(|r| **r != broker)
            .map(|r| (*r, Follower { log_end: -1, caught_up_at: now, previous_fetch: None }))
            .collect();
        Self {
            broker,
            registration,
            followers,
            log_end,
            high_watermark: high_watermark.min(log_end),
            pending_isr: None,
            epoch_start_offset: log_end,
            lag_max,
        }
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    pub fn leader_epoch(&self) -> i32 {
        self.registration.leader_epoch
    }

    /// The committed ISR (what `min.insync.replicas` is checked against).
    pub fn isr(&self) -> &[BrokerId] {
        &self.registration.isr
    }

    /// Whether an acks=all produce may be appended: Kafka refuses it up front
    /// (NOT_ENOUGH_REPLICAS) when the ISR is smaller than `min.insync.replicas`.
    pub fn accepts_acks_all(&self, min_insync_replicas: usize) -> bool {
        self.registration.isr.len() >= min_insync_replicas
    }

    /// Whether an acks=all produce whose records the high watermark has passed may be
    /// acknowledged: the ISR may have shrunk since it was appended, and then it is answered
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND instead (Kafka's `checkEnoughReplicasReachOffset`,
    /// over the maximal ISR: the committed one and any pending change).
    pub fn enough_replicas_after_append(&self, min_insync_replicas: usize) -> bool {
        let mut maximal: Vec<BrokerId> = self.registration.isr.clone();
        if let Some((pending, _)) = &self.pending_isr {
            maximal.extend(pending.iter().filter(|r| !self.registration.isr.contains(r)));
        }
        maximal.len() >= min_insync_replicas
    }

    /// The leader appended; its log now ends at `log_end`.
    pub fn on_append(&mut self, log_end: i64) -> Vec<LeaderAction> {
        self.log_end = log_end;
        self.advance_high_watermark().into_iter().collect()
    }

    /// A follower fetched from `offset`, so it has everything before it. An offset past
    /// this log's end is not a position this leader can vouch for (the follower must
    /// truncate first; the caller answers OFFSET_OUT_OF_RANGE) and changes nothing.
    pub fn on_fetch(&mut self, follower: BrokerId, offset: i64, now: Instant) -> Vec<LeaderAction> {
        let leader_end = self.log_end;
        if offset > leader_end {
            return Vec::new();
        }
        let Some(state) = self.followers.get_mut(&follower) else { return Vec::new() };
        state.log_end = offset;
        // Kafka's rule: caught up if it has reached the leader's end as of now, or as of
        // its previous fetch (then it was caught up at that fetch's time).
        if offset >= leader_end {
            state.caught_up_at = now;
        } else if let Some((previous_end, at)) = state.previous_fetch
            && offset >= previous_end
        {
            state.caught_up_at = state.caught_up_at.max(at);
        }
        state.previous_fetch = Some((leader_end, now));
        let mut actions: Vec<LeaderAction> = self.advance_high_watermark().into_iter().collect();
        actions.extend(self.maybe_expand(follower));
        actions
    }

    /// Time passes: followers that have not caught up for `replica.lag.time.max.ms` leave.
    pub fn on_tick(&mut self, now: Instant) -> Vec<LeaderAction> {
        if self.pending_isr.is_some() {
            return Vec::new();
        }
        let lagging: Vec<BrokerId> = self
            .registration
            .isr
            .iter()
            .copied()
            .filter(|r| *r != self.broker)
            .filter(|r| self.followers.get(r).is_some_and(|f| now.duration_since(f.caught_up_at) > self.lag_max))
            .collect();
        if lagging.is_empty() {
            return Vec::new();
        }
        let isr: Vec<BrokerId> = self.registration.isr.iter().copied().filter(|r| !lagging.contains(r)).collect();
        self.propose(isr).into_iter().collect()
    }

    /// The metadata image brought a new registration for this partition. Returns `None`
    /// when this broker no longer leads it (the caller drops this state), else the actions.
    pub fn on_registration(&mut self, registration: PartitionRegistration) -> Option<Vec<LeaderAction>> {
        if registration.leader != self.broker || registration.leader_epoch != self.registration.leader_epoch {
            return None;
        }
        for replica in &registration.replicas {
            if *replica != self.broker {
                let now = self.followers.values().map(|f| f.caught_up_at).max();
                self.followers.entry(*replica).or_insert_with(|| Follower {
                    log_end: -1,
                    caught_up_at: now.unwrap_or_else(Instant::now),
                    previous_fetch: None,
                });
            }
        }
        self.followers.retain(|r, _| registration.replicas.contains(r));
        if self.pending_isr.as_ref().is_some_and(|(_, asked_at)| registration.partition_epoch > *asked_at) {
            // The controller has decided (applied this change, or another one first).
            self.pending_isr = None;
        }
        self.registration = registration;
        Some(self.advance_high_watermark().into_iter().collect())
    }

    /// The controller refused the AlterPartition for `isr` asked at `partition_epoch`, for
    /// a reason that no newer image will settle (an ineligible replica): allow another.
    /// Only that very request is cleared: a late refusal of an older request must not clear
    /// a newer pending change, which the high watermark still counts on. A request that
    /// timed out, or was refused as stale, stays pending until the image moves past it.
    pub fn on_alter_refused(&mut self, isr: &[BrokerId], partition_epoch: i32) {
        if self.pending_isr.as_ref().is_some_and(|(pending, at)| pending == isr && *at == partition_epoch) {
            self.pending_isr = None;
        }
    }

    fn maybe_expand(&mut self, follower: BrokerId) -> Option<LeaderAction> {
        if self.pending_isr.is_some() || self.registration.isr.contains(&follower) {
            return None;
        }
        // A replica rejoins once it has everything the ISR has (the high watermark).
        let state = self.followers.get(&follower)?;
        if state.log_end < self.high_watermark || state.log_end < self.epoch_start_offset {
            return None;
        }
        let mut isr = self.registration.isr.clone();
        isr.push(follower);
        self.propose(isr)
    }

    fn propose(&mut self, isr: Vec<BrokerId>) -> Option<LeaderAction> {
        self.pending_isr = Some((isr.clone(), self.registration.partition_epoch));
        Some(LeaderAction::AlterIsr {
            isr,
            leader_epoch: self.registration.leader_epoch,
            partition_epoch: self.registration.partition_epoch,
        })
    }

    /// The high watermark: the lowest log end over the committed and any pending ISR.
    /// It only moves forward.
    fn advance_high_watermark(&mut self) -> Option<LeaderAction> {
        let members = self.registration.isr.iter().chain(self.pending_isr.iter().flat_map(|(isr, _)| isr));
        let lowest = members
            .map(|r| if *r == self.broker { self.log_end } else { self.followers.get(r).map_or(-1, |f| f.log_end) })
            .min()
            .unwrap_or(self.log_end);
        let candidate = lowest.min(self.log_end);
        if candidate > self.high_watermark {
            self.high_watermark = candidate;
            return Some(LeaderAction::HighWatermark(candidate));
        }
        None
    }
}
