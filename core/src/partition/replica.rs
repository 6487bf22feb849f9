//! This broker's replica of one partition: its log, whether it leads or follows, and the
//! high watermark it serves consumers up to.
//!
//! Every change of role and every leader-side event goes through one lock (STYLE: one
//! owner per partition), held only for the in-memory step and the append itself. What a
//! change means for others is published on a watch ([`ReplicaStatus`]): waiting acks=all
//! producers and long-polling consumers wake on it.
//!
//! ```text
//!  produce ──append_as_leader──> Log::append ──> LeaderState::on_append ──┐
//!  follower Fetch ──on_follower_fetch──> LeaderState::on_fetch ───────────┼─> status watch (HW)
//!  fetcher ──append_as_follower──> Log::append_as_follower, HW from leader ┘
//! ```

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use tokio::sync::watch;

use super::leader::{LeaderAction, LeaderState};
use crate::cluster::{BrokerId, PartitionRegistration};
use crate::log::{AppendInfo, AppendOrigin, Log, LogError, TopicPartition};

/// Why a replica refused a request. Each is one of Kafka's error codes.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("this broker is not the leader of {0}")]
    NotLeader(TopicPartition),
    #[error("leader epoch {given} of {tp} is older than the current {current}")]
    FencedLeaderEpoch { tp: TopicPartition, given: i32, current: i32 },
    #[error("leader epoch {given} of {tp} is newer than this broker knows ({current})")]
    UnknownLeaderEpoch { tp: TopicPartition, given: i32, current: i32 },
    #[error("{tp} has {isr} in-sync replica(s), fewer than min.insync.replicas {min}")]
    NotEnoughReplicas { tp: TopicPartition, isr: usize, min: u32 },
    #[error("{tp} lost in-sync replicas after the append; fewer than min.insync.replicas {min}")]
    NotEnoughReplicasAfterAppend { tp: TopicPartition, min: u32 },
    #[error("the in-sync replicas of {0} did not acknowledge in time")]
    Timeout(TopicPartition),
    #[error(transparent)]
    Log(#[from] LogError),
}

impl ReplicaError {
    /// Kafka's error code.
    pub fn code(&self) -> i16 {
        match self {
            Self::NotLeader(_) => ResponseError::NotLeaderOrFollower.code(),
            Self::FencedLeaderEpoch { .. } => ResponseError::FencedLeaderEpoch.code(),
            Self::UnknownLeaderEpoch { .. } => ResponseError::UnknownLeaderEpoch.code(),
            Self::NotEnoughReplicas { .. } => ResponseError::NotEnoughReplicas.code(),
            Self::NotEnoughReplicasAfterAppend { .. } => ResponseError::NotEnoughReplicasAfterAppend.code(),
            Self::Timeout(_) => ResponseError::RequestTimedOut.code(),
            Self::Log(error) => crate::broker::error_code(error),
        }
    }
}

/// What waiters watch: the role, its epoch and the high watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub leader_epoch: i32,
    pub leading: bool,
    pub high_watermark: i64,
}

/// The role this broker plays for the partition.
#[derive(Debug)]
enum Role {
    Leader(Box<LeaderState>),
    /// Follows `leader`; `high_watermark` is the leader's, capped at this log's end.
    Follower {
        leader: BrokerId,
        high_watermark: i64,
    },
    /// No leader anywhere (offline), or this broker was dropped from the replicas.
    Offline {
        high_watermark: i64,
    },
}

#[derive(Debug)]
struct State {
    role: Role,
    registration: PartitionRegistration,
}

/// This broker's replica of a partition.
#[derive(Debug)]
pub struct Replica {
    pub tp: TopicPartition,
    pub log: Arc<Log>,
    broker: BrokerId,
    lag_max: Duration,
    state: Mutex<State>,
    status: watch::Sender<ReplicaStatus>,
}

impl Replica {
    /// A replica that neither leads nor follows yet; [`Self::apply_registration`] gives it
    /// its role. Its high watermark starts at the log start (there is no checkpoint of it
    /// yet) and moves up as the leader learns what the ISR has.
    pub fn new(
        tp: TopicPartition,
        log: Arc<Log>,
        broker: BrokerId,
        registration: PartitionRegistration,
        lag_max: Duration,
    ) -> Self {
        let high_watermark = log.log_start();
        let status = watch::Sender::new(ReplicaStatus { leader_epoch: -1, leading: false, high_watermark });
        let registration = PartitionRegistration { leader_epoch: -1, ..registration };
        let state = State { role: Role::Offline { high_watermark }, registration };
        Self { tp, log, broker, lag_max, state: Mutex::new(state), status }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("replica lock")
    }

    pub fn status(&self) -> ReplicaStatus {
        *self.status.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<ReplicaStatus> {
        self.status.subscribe()
    }

    pub fn high_watermark(&self) -> i64 {
        self.status().high_watermark
    }

    /// The leader this replica follows, and at which epoch; `None` unless it follows.
    pub fn following(&self) -> Option<(BrokerId, i32)> {
        let state = self.lock();
        match state.role {
            Role::Follower { leader, .. } => Some((leader, state.registration.leader_epoch)),
            _ => None,
        }
    }

    /// Takes the role the controller's registration gives this broker: leader, follower
    /// of someone, or neither. Returns the actions a new or continuing leadership asks for.
    ///
    /// # Errors
    /// [`LogError`] if a new leader epoch cannot be recorded in the log.
    pub fn apply_registration(
        &self,
        registration: &PartitionRegistration,
        now: Instant,
    ) -> Result<Vec<LeaderAction>, LogError> {
        let mut state = self.lock();
        let same_epoch = registration.leader_epoch == state.registration.leader_epoch;
        let hw = self.current_high_watermark(&state);
        let mut actions = Vec::new();
        if registration.leader == self.broker && registration.replicas.contains(&self.broker) {
            match &mut state.role {
                Role::Leader(leader) if same_epoch => {
                    if let Some(more) = leader.on_registration(registration.clone()) {
                        actions = more;
                    }
                }
                _ => {
                    // A new leadership: record its epoch before any append, so followers
                    // asking where the previous epoch ends get an answer at once.
                    self.log.assign_epoch(registration.leader_epoch)?;
                    let mut leader =
                        LeaderState::new(self.broker, registration.clone(), self.log.log_end(), hw, self.lag_max, now);
                    actions = leader.on_append(self.log.log_end());
                    tracing::info!(partition = %self.tp, epoch = registration.leader_epoch, "leading");
                    state.role = Role::Leader(Box::new(leader));
                }
            }
        } else if registration.has_leader() && registration.replicas.contains(&self.broker) {
            let keep =
                matches!(state.role, Role::Follower { leader, .. } if leader == registration.leader && same_epoch);
            if !keep {
                tracing::info!(partition = %self.tp, leader = registration.leader, epoch = registration.leader_epoch, "following");
                state.role = Role::Follower { leader: registration.leader, high_watermark: hw };
            }
        } else {
            state.role = Role::Offline { high_watermark: hw };
        }
        state.registration = registration.clone();
        self.publish(&state);
        Ok(actions)
    }

    /// Appends a producer's batches as the leader, at the current leader epoch. An acks=all
    /// produce is refused up front when the ISR is smaller than `min_insync_replicas`.
    ///
    /// # Errors
    /// [`ReplicaError::NotLeader`], [`ReplicaError::NotEnoughReplicas`], or the log's error.
    pub fn append_as_leader(
        &self,
        batches: &[u8],
        acks_all: bool,
        min_insync_replicas: u32,
    ) -> Result<(AppendInfo, i32, Vec<LeaderAction>), ReplicaError> {
        self.append_as_leader_from(batches, acks_all, min_insync_replicas, AppendOrigin::Client)
    }

    /// As [`Self::append_as_leader`], for batches from `origin` (the transaction
    /// coordinator's markers).
    ///
    /// # Errors
    /// As [`Self::append_as_leader`].
    pub fn append_as_leader_from(
        &self,
        batches: &[u8],
        acks_all: bool,
        min_insync_replicas: u32,
        origin: AppendOrigin,
    ) -> Result<(AppendInfo, i32, Vec<LeaderAction>), ReplicaError> {
        let mut state = self.lock();
        let epoch = state.registration.leader_epoch;
        let Role::Leader(leader) = &mut state.role else { return Err(ReplicaError::NotLeader(self.tp.clone())) };
        if acks_all && !leader.accepts_acks_all(min_insync_replicas as usize) {
            return Err(ReplicaError::NotEnoughReplicas {
                tp: self.tp.clone(),
                isr: leader.isr().len(),
                min: min_insync_replicas,
            });
        }
        let info = self.log.append_with(batches, epoch, origin)?;
        let actions = leader.on_append(self.log.log_end());
        self.publish(&state);
        Ok((info, epoch, actions))
    }

    /// Waits until the high watermark reaches `offset` (every in-sync replica has the
    /// records before it) under the leadership at `leader_epoch`, then checks that the ISR
    /// still satisfies `min_insync_replicas`.
    ///
    /// # Errors
    /// [`ReplicaError::NotLeader`] if the leadership ended first (the records may be lost
    /// or kept; the producer retries), [`ReplicaError::Timeout`],
    /// [`ReplicaError::NotEnoughReplicasAfterAppend`].
    ///
    /// # Cancel safety
    /// Safe: it only watches.
    pub async fn wait_replicated(
        &self,
        offset: i64,
        leader_epoch: i32,
        min_insync_replicas: u32,
        timeout: Duration,
    ) -> Result<(), ReplicaError> {
        let mut status = self.subscribe();
        let reached = tokio::time::timeout(
            timeout,
            status.wait_for(|s| !s.leading || s.leader_epoch != leader_epoch || s.high_watermark >= offset),
        )
        .await;
        let status = match reached {
            Err(_) => return Err(ReplicaError::Timeout(self.tp.clone())),
            Ok(Err(_)) => return Err(ReplicaError::NotLeader(self.tp.clone())),
            Ok(Ok(status)) => *status,
        };
        if !status.leading || status.leader_epoch != leader_epoch {
            return Err(ReplicaError::NotLeader(self.tp.clone()));
        }
        let state = self.lock();
        match &state.role {
            Role::Leader(leader) if leader.enough_replicas_after_append(min_insync_replicas as usize) => Ok(()),
            Role::Leader(_) => {
                Err(ReplicaError::NotEnoughReplicasAfterAppend { tp: self.tp.clone(), min: min_insync_replicas })
            }
            _ => Err(ReplicaError::NotLeader(self.tp.clone())),
        }
    }

    /// Checks that this broker leads at `current_leader_epoch` (-1: the client does not
    /// say), as consumers' fetches and ListOffsets require.
    ///
    /// # Errors
    /// [`ReplicaError::NotLeader`], [`ReplicaError::FencedLeaderEpoch`],
    /// [`ReplicaError::UnknownLeaderEpoch`].
    pub fn check_leader(&self, current_leader_epoch: i32) -> Result<ReplicaStatus, ReplicaError> {
        let status = self.status();
        if current_leader_epoch >= 0 && current_leader_epoch < status.leader_epoch {
            return Err(ReplicaError::FencedLeaderEpoch {
                tp: self.tp.clone(),
                given: current_leader_epoch,
                current: status.leader_epoch,
            });
        }
        if current_leader_epoch > status.leader_epoch {
            return Err(ReplicaError::UnknownLeaderEpoch {
                tp: self.tp.clone(),
                given: current_leader_epoch,
                current: status.leader_epoch,
            });
        }
        if !status.leading {
            return Err(ReplicaError::NotLeader(self.tp.clone()));
        }
        Ok(status)
    }

    /// A follower's fetch from `offset` arrived: it has everything before it. Returns the
    /// high watermark to send it and what the leader must do.
    ///
    /// # Errors
    /// As [`Self::check_leader`].
    pub fn on_follower_fetch(
        &self,
        follower: BrokerId,
        offset: i64,
        current_leader_epoch: i32,
        now: Instant,
    ) -> Result<(i64, Vec<LeaderAction>), ReplicaError> {
        self.check_leader(current_leader_epoch)?;
        let mut state = self.lock();
        let Role::Leader(leader) = &mut state.role else { return Err(ReplicaError::NotLeader(self.tp.clone())) };
        let actions = leader.on_fetch(follower, offset, now);
        let hw = leader.high_watermark();
        self.publish(&state);
        Ok((hw, actions))
    }

    /// Time passed: lagging followers may leave the ISR.
    pub fn tick(&self, now: Instant) -> Vec<LeaderAction> {
        let mut state = self.lock();
        let Role::Leader(leader) = &mut state.role else { return Vec::new() };
        leader.on_tick(now)
    }

    /// The controller refused the AlterPartition for `isr` asked at these epochs, for good:
    /// the leader may ask again (see [`LeaderState::on_alter_refused`]).
    pub fn on_alter_refused(&self, leader_epoch: i32, partition_epoch: i32, isr: &[BrokerId]) {
        let mut state = self.lock();
        if state.registration.leader_epoch != leader_epoch {
            return;
        }
        if let Role::Leader(leader) = &mut state.role {
            leader.on_alter_refused(isr, partition_epoch);
        }
    }

    /// Whether an AlterPartition asked at `partition_epoch` under `leader_epoch` is still
    /// undecided: the registration has not moved past it.
    pub fn alter_pending(&self, leader_epoch: i32, partition_epoch: i32) -> bool {
        let state = self.lock();
        matches!(state.role, Role::Leader(_))
            && state.registration.leader_epoch == leader_epoch
            && state.registration.partition_epoch == partition_epoch
    }

    /// Appends batches fetched from the leader followed at `leader_epoch`, and takes the
    /// leader's high watermark (capped at this log's end) and log start. Nothing happens if the role
    /// changed since the fetch was sent.
    ///
    /// # Errors
    /// [`ReplicaError::NotLeader`] when this replica no longer follows at that epoch, or
    /// the log's error.
    pub fn append_as_follower(
        &self,
        leader_epoch: i32,
        batches: &[u8],
        leader_high_watermark: i64,
        leader_log_start: i64,
    ) -> Result<(), ReplicaError> {
        let mut state = self.lock();
        if state.registration.leader_epoch != leader_epoch {
            return Err(ReplicaError::NotLeader(self.tp.clone()));
        }
        let Role::Follower { high_watermark, .. } = &mut state.role else {
            return Err(ReplicaError::NotLeader(self.tp.clone()));
        };
        if !batches.is_empty() {
            self.log.append_as_follower(batches)?;
        }
        // The leader's log start moved (DeleteRecords, retention): so does this copy's, so
        // a new leader never serves what was deleted.
        if leader_log_start > self.log.log_start() && leader_log_start <= self.log.log_end() {
            self.log.advance_log_start(leader_log_start)?;
        }
        let capped = leader_high_watermark.min(self.log.log_end());
        // A follower's high watermark only moves forward, like the leader's.
        *high_watermark = (*high_watermark).max(capped);
        self.publish(&state);
        Ok(())
    }

    /// Truncates the log to `offset` as a follower at `leader_epoch` (after asking the
    /// leader where the logs agree). Returns the new log end.
    ///
    /// # Errors
    /// [`ReplicaError::NotLeader`] when the role changed, or the log's error.
    pub fn truncate_as_follower(&self, leader_epoch: i32, offset: i64) -> Result<i64, ReplicaError> {
        let mut state = self.lock();
        if state.registration.leader_epoch != leader_epoch || !matches!(state.role, Role::Follower { .. }) {
            return Err(ReplicaError::NotLeader(self.tp.clone()));
        }
        let end = if offset < self.log.log_end() {
            self.log.truncate_to(offset.max(self.log.log_start()))?
        } else {
            self.log.log_end()
        };
        if let Role::Follower { high_watermark, .. } = &mut state.role {
            *high_watermark = (*high_watermark).min(end);
        }
        self.publish(&state);
        Ok(end)
    }

    /// Empties the log to start again at the leader's log start, as a follower at
    /// `leader_epoch` whose whole log lies below it (see [`Log::truncate_fully_and_start_at`]).
    ///
    /// # Errors
    /// [`ReplicaError::NotLeader`] when the role changed, or the log's error.
    pub fn start_at_leader_log_start(&self, leader_epoch: i32, leader_log_start: i64) -> Result<(), ReplicaError> {
        let mut state = self.lock();
        if state.registration.leader_epoch != leader_epoch || !matches!(state.role, Role::Follower { .. }) {
            return Err(ReplicaError::NotLeader(self.tp.clone()));
        }
        self.log.truncate_fully_and_start_at(leader_log_start)?;
        if let Role::Follower { high_watermark, .. } = &mut state.role {
            *high_watermark = leader_log_start;
        }
        self.publish(&state);
        Ok(())
    }

    fn current_high_watermark(&self, state: &State) -> i64 {
        match &state.role {
            Role::Leader(leader) => leader.high_watermark(),
            Role::Follower { high_watermark, .. } | Role::Offline { high_watermark } => *high_watermark,
        }
    }

    fn publish(&self, state: &State) {
        let status = ReplicaStatus {
            leader_epoch: state.registration.leader_epoch,
            leading: matches!(state.role, Role::Leader(_)),
            high_watermark: self.current_high_watermark(state).min(self.log.log_end()),
        };
        self.status.send_if_modified(|current| {
            let changed = *current != status;
            *current = status;
            changed
        });
    }
}
