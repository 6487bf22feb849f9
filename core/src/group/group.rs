//! One consumer group under Kafka's classic protocol, as a state machine with no I/O:
//! events in (join, sync, heartbeat, leave, tick with the current time), replies out.
//! The coordinator delivers replies to the members waiting on them.
//!
//! ```text
//!            join                         all joined / timeout         leader's sync
//!  Empty ─────────> PreparingRebalance ───────────────────> CompletingRebalance ─────> Stable
//!    ^                    ^   member joins/leaves/expires        │                      │
//!    └── last member ─────┴──────────────────────────────────────┴──────────────────────┘
//! ```
//!
//! A new group waits `group.initial.rebalance.delay.ms` for more members before its first
//! generation; later rebalances complete as soon as every member has rejoined, or at the
//! rebalance timeout, when members that did not rejoin are removed.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

/// Kafka's bounds on a member's session timeout (`group.min/max.session.timeout.ms`).
pub const SESSION_TIMEOUT_MIN_MS: i32 = 6_000;
pub const SESSION_TIMEOUT_MAX_MS: i32 = 1_800_000;
/// Kafka's `group.initial.rebalance.delay.ms`: how long a new group waits for members.
pub const INITIAL_REBALANCE_DELAY_MS: i64 = 3_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    /// The name Kafka's DescribeGroups and ListGroups use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Stable => "Stable",
        }
    }
}

/// A group member.
#[derive(Debug, Clone)]
pub struct Member {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    /// The protocols it supports, in its order of preference, with their metadata.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    /// Order of arrival: the first member to join leads, and breaks protocol ties.
    join_order: u64,
    last_heartbeat_ms: i64,
    awaiting_join: bool,
    awaiting_sync: bool,
}

/// A JoinGroup request, as the group needs it.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// From JoinGroup v4, a new member first gets its id with MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
}

/// The answer to a JoinGroup.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JoinResult {
    pub error_code: i16,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Every member with its metadata for the chosen protocol; only the leader gets them.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

/// The answer to a SyncGroup.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncResult {
    pub error_code: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

/// A reply owed to a member whose JoinGroup or SyncGroup is waiting.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Join(String, JoinResult),
    Sync(String, SyncResult),
}

/// What happened to a request: answered now, or waiting for the group.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<T> {
    Now(T),
    Wait { member_id: String },
}

fn error<T: Default + WithError>(error: ResponseError) -> T {
    T::default().with_error(error.code())
}

pub trait WithError {
    fn with_error(self, code: i16) -> Self;
}
impl WithError for JoinResult {
    fn with_error(mut self, code: i16) -> Self {
        self.error_code = code;
        self
    }
}
impl WithError for SyncResult {
    fn with_error(mut self, code: i16) -> Self {
        self.error_code = code;
        self
    }
}

/// One consumer group.
#[derive(Debug, Clone)]
pub struct Group {
    pub group_id: String,
    pub state: GroupState,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    rebalance_deadline_ms: i64,
    initial_delay_until_ms: Option<i64>,
    next_member: u64,
}

impl Group {
    pub fn new(group_id: &str) -> Self {
        Self {
            group_id: group_id.to_string(),
            state: GroupState::Empty,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            rebalance_deadline_ms: 0,
            initial_delay_until_ms: None,
            next_member: 0,
        }
    }

    fn new_member_id(client_id: &str) -> String {
        format!("{client_id}-{}", uuid::Uuid::new_v4())
    }

    /// Handles a JoinGroup; `replies` are owed to other waiting members.
    pub fn join(&mut self, now_ms: i64, request: JoinRequest, replies: &mut Vec<Reply>) -> Outcome<JoinResult> {
        if !(SESSION_TIMEOUT_MIN_MS..=SESSION_TIMEOUT_MAX_MS).contains(&request.session_timeout_ms) {
            return Outcome::Now(error(ResponseError::InvalidSessionTimeout));
        }
        if request.protocols.is_empty()
            || (!self.members.is_empty() && self.protocol_type.as_deref() != Some(request.protocol_type.as_str()))
            || (!self.members.is_empty() && !self.supports_any(&request.protocols, &request.member_id))
        {
            return Outcome::Now(error(ResponseError::InconsistentGroupProtocol));
        }
        let member_id = if request.member_id.is_empty() {
            // A static member coming back takes over its old identity.
            let known = request.group_instance_id.as_ref().and_then(|instance| {
                self.members
                    .values()
                    .find(|m| m.group_instance_id.as_ref() == Some(instance))
                    .map(|m| m.member_id.clone())
            });
            let new_id = Self::new_member_id(&request.client_id);
            if let Some(old_id) = known {
                let mut member = self.members.remove(&old_id).expect("known member");
                let unchanged = member.protocols == request.protocols;
                member.member_id = new_id.clone();
                member.last_heartbeat_ms = now_ms;
                if self.leader.as_deref() == Some(old_id.as_str()) {
                    self.leader = Some(new_id.clone());
                }
                let is_leader = self.leader.as_deref() == Some(new_id.as_str());
                self.members.insert(new_id.clone(), member);
                // Same metadata, not the leader, group stable: no rebalance (KIP-345).
                if unchanged && !is_leader && self.state == GroupState::Stable {
                    return Outcome::Now(JoinResult {
                        error_code: 0,
                        generation_id: self.generation_id,
                        protocol_type: self.protocol_type.clone(),
                        protocol_name: self.protocol_name.clone(),
                        leader: self.leader.clone().unwrap_or_default(),
                        member_id: new_id,
                        members: Vec::new(),
                    });
                }
                new_id
            } else if request.require_known_member_id && request.group_instance_id.is_none() {
                // KIP-394: hand out the id first; the member joins again with it.
                return Outcome::Now(JoinResult { member_id: new_id, ..error(ResponseError::MemberIdRequired) });
            } else {
                new_id
            }
        } else if self.members.contains_key(&request.member_id) {
            request.member_id.clone()
        } else if request.require_known_member_id {
            // An id we handed out with MEMBER_ID_REQUIRED, now joining for real.
            request.member_id.clone()
        } else {
            return Outcome::Now(error(ResponseError::UnknownMemberId));
        };

        let join_order = self.next_member;
        let member = self.members.entry(member_id.clone()).or_insert_with(|| Member {
            member_id: member_id.clone(),
            group_instance_id: request.group_instance_id.clone(),
            client_id: request.client_id.clone(),
            client_host: request.client_host.clone(),
            session_timeout_ms: request.session_timeout_ms,
            rebalance_timeout_ms: request.rebalance_timeout_ms,
            protocols: Vec::new(),
            assignment: Bytes::new(),
            join_order,
            last_heartbeat_ms: now_ms,
            awaiting_join: false,
            awaiting_sync: false,
        });
        if member.join_order == join_order {
            self.next_member += 1;
        }
        member.protocols = request.protocols;
        member.session_timeout_ms = request.session_timeout_ms;
        member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        member.last_heartbeat_ms = now_ms;
        member.awaiting_join = true;
        self.protocol_type = Some(request.protocol_type);

        match self.state {
            GroupState::Empty => {
                self.prepare_rebalance(now_ms, replies);
                self.initial_delay_until_ms = Some(now_ms + INITIAL_REBALANCE_DELAY_MS);
            }
            GroupState::Stable | GroupState::CompletingRebalance => self.prepare_rebalance(now_ms, replies),
            GroupState::PreparingRebalance => {}
        }
        self.try_complete_join(now_ms, replies);
        // The join may have completed right here, answering this member among others.
        if let Some(i) = replies.iter().position(|r| matches!(r, Reply::Join(m, _) if *m == member_id))
            && let Reply::Join(_, result) = replies.remove(i)
        {
            return Outcome::Now(result);
        }
        Outcome::Wait { member_id }
    }

    fn supports_any(&self, protocols: &[(String, Bytes)], joining: &str) -> bool {
        let others: Vec<&Member> = self.members.values().filter(|m| m.member_id != joining).collect();
        others.is_empty()
            || protocols.iter().any(|(name, _)| others.iter().all(|m| m.protocols.iter().any(|(n, _)| n == name)))
    }

    /// Starts a rebalance: everyone must rejoin; syncs in flight are told to rejoin.
    fn prepare_rebalance(&mut self, now_ms: i64, replies: &mut Vec<Reply>) {
        if self.state == GroupState::CompletingRebalance {
            for member in self.members.values_mut().filter(|m| m.awaiting_sync) {
                member.awaiting_sync = false;
                replies.push(Reply::Sync(member.member_id.clone(), error(ResponseError::RebalanceInProgress)));
            }
        }
        let timeout = self.members.values().map(|m| m.rebalance_timeout_ms).max().unwrap_or(0);
        self.rebalance_deadline_ms = now_ms + i64::from(timeout);
        self.state = GroupState::PreparingRebalance;
    }

    /// Completes the join phase once every member has rejoined (and a new group's initial
    /// delay has passed).
    fn try_complete_join(&mut self, now_ms: i64, replies: &mut Vec<Reply>) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        if self.initial_delay_until_ms.is_some_and(|until| now_ms < until && now_ms < self.rebalance_deadline_ms) {
            return;
        }
        if self.members.values().any(|m| !m.awaiting_join) {
            return;
        }
        self.complete_join(replies);
    }

    fn complete_join(&mut self, replies: &mut Vec<Reply>) {
        self.initial_delay_until_ms = None;
        self.generation_id += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.leader = None;
            self.protocol_name = None;
            return;
        }
        // The protocol every member supports that members rank best, by votes.
        let first = self.members.values().min_by_key(|m| m.join_order).map(|m| m.member_id.clone());
        let candidates: Vec<String> = first
            .as_ref()
            .and_then(|id| self.members.get(id))
            .map(|m| m.protocols.iter().map(|(n, _)| n.clone()).collect())
            .unwrap_or_default();
        let supported: Vec<&String> = candidates
            .iter()
            .filter(|name| self.members.values().all(|m| m.protocols.iter().any(|(n, _)| n == *name)))
            .collect();
        let protocol = supported
            .iter()
            .max_by_key(|name| {
                let votes = self
                    .members
                    .values()
                    .filter(|m| {
                        m.protocols.iter().find(|(n, _)| supported.contains(&n)).is_some_and(|(n, _)| n == **name)
                    })
                    .count();
                (votes, std::cmp::Reverse(candidates.iter().position(|c| c == **name)))
            })
            .map(|name| (*name).clone());
        self.protocol_name = protocol.clone();
        if !self.leader.as_ref().is_some_and(|l| self.members.contains_key(l)) {
            self.leader = first;
        }
        let leader = self.leader.clone().unwrap_or_default();
        let protocol = protocol.unwrap_or_default();
        let all: Vec<(String, Option<String>, Bytes)> = self
            .members
            .values()
            .map(|m| {
                let metadata =
                    m.protocols.iter().find(|(n, _)| *n == protocol).map(|(_, md)| md.clone()).unwrap_or_default();
                (m.member_id.clone(), m.group_instance_id.clone(), metadata)
            })
            .collect();
        for member in self.members.values_mut() {
            member.awaiting_join = false;
            member.awaiting_sync = true;
            replies.push(Reply::Join(
                member.member_id.clone(),
                JoinResult {
                    error_code: 0,
                    generation_id: self.generation_id,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: Some(protocol.clone()),
                    leader: leader.clone(),
                    member_id: member.member_id.clone(),
                    members: if member.member_id == leader { all.clone() } else { Vec::new() },
                },
            ));
        }
        self.state = GroupState::CompletingRebalance;
    }

    /// Handles a SyncGroup.
    pub fn sync(
        &mut self,
        now_ms: i64,
        member_id: &str,
        generation_id: i32,
        assignments: Vec<(String, Bytes)>,
        replies: &mut Vec<Reply>,
    ) -> Outcome<SyncResult> {
        let Some(member) = self.members.get_mut(member_id) else {
            return Outcome::Now(error(ResponseError::UnknownMemberId));
        };
        member.last_heartbeat_ms = now_ms;
        if generation_id != self.generation_id {
            return Outcome::Now(error(ResponseError::IllegalGeneration));
        }
        match self.state {
            GroupState::Empty | GroupState::PreparingRebalance => {
                Outcome::Now(error(ResponseError::RebalanceInProgress))
            }
            GroupState::Stable => Outcome::Now(self.sync_result(member_id)),
            GroupState::CompletingRebalance => {
                if self.leader.as_deref() == Some(member_id) {
                    let mut assigned: BTreeMap<String, Bytes> = assignments.into_iter().collect();
                    let mut waiting = Vec::new();
                    for member in self.members.values_mut() {
                        member.assignment = assigned.remove(&member.member_id).unwrap_or_default();
                        if member.awaiting_sync && member.member_id != member_id {
                            waiting.push(member.member_id.clone());
                        }
                        member.awaiting_sync = false;
                    }
                    self.state = GroupState::Stable;
                    replies.extend(waiting.into_iter().map(|id| {
                        let result = self.sync_result(&id);
                        Reply::Sync(id, result)
                    }));
                    Outcome::Now(self.sync_result(member_id))
                } else {
                    Outcome::Wait { member_id: member_id.to_string() }
                }
            }
        }
    }

    fn sync_result(&self, member_id: &str) -> SyncResult {
        SyncResult {
            error_code: 0,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            assignment: self.members.get(member_id).map(|m| m.assignment.clone()).unwrap_or_default(),
        }
    }

    /// Handles a Heartbeat; returns Kafka's error code (0 when fine).
    pub fn heartbeat(&mut self, now_ms: i64, member_id: &str, generation_id: i32) -> i16 {
        let Some(member) = self.members.get_mut(member_id) else {
            return ResponseError::UnknownMemberId.code();
        };
        member.last_heartbeat_ms = now_ms;
        if generation_id != self.generation_id {
            return ResponseError::IllegalGeneration.code();
        }
        match self.state {
            GroupState::PreparingRebalance => ResponseError::RebalanceInProgress.code(),
            _ => 0,
        }
    }

    /// Removes members (LeaveGroup), by member id or by static instance id.
    pub fn leave(&mut self, now_ms: i64, leaving: &[(String, Option<String>)], replies: &mut Vec<Reply>) -> Vec<i16> {
        let codes = leaving
            .iter()
            .map(|(member_id, instance_id)| {
                let id = match instance_id {
                    Some(instance) => self
                        .members
                        .values()
                        .find(|m| m.group_instance_id.as_ref() == Some(instance))
                        .map(|m| m.member_id.clone()),
                    None => self.members.contains_key(member_id).then(|| member_id.clone()),
                };
                match id {
                    Some(id) => {
                        self.remove_member(&id, replies);
                        0
                    }
                    None => ResponseError::UnknownMemberId.code(),
                }
            })
            .collect();
        self.rebalance_after_removal(now_ms, replies);
        codes
    }

    fn remove_member(&mut self, member_id: &str, replies: &mut Vec<Reply>) {
        if let Some(member) = self.members.remove(member_id) {
            if member.awaiting_join {
                replies.push(Reply::Join(member_id.to_string(), error(ResponseError::UnknownMemberId)));
            }
            if member.awaiting_sync {
                replies.push(Reply::Sync(member_id.to_string(), error(ResponseError::UnknownMemberId)));
            }
        }
    }

    fn rebalance_after_removal(&mut self, now_ms: i64, replies: &mut Vec<Reply>) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                if self.members.is_empty() {
                    self.state = GroupState::Empty;
                    self.generation_id += 1;
                    self.leader = None;
                } else {
                    self.prepare_rebalance(now_ms, replies);
                }
            }
            GroupState::PreparingRebalance => self.try_complete_join(now_ms, replies),
            GroupState::Empty => {}
        }
    }

    /// Advances time: expires members whose session lapsed, ends a rebalance whose
    /// timeout passed (dropping members that did not rejoin), ends a new group's delay.
    pub fn tick(&mut self, now_ms: i64, replies: &mut Vec<Reply>) {
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.awaiting_join && now_ms - m.last_heartbeat_ms > i64::from(m.session_timeout_ms))
            .map(|m| m.member_id.clone())
            .collect();
        if !expired.is_empty() {
            for member_id in &expired {
                tracing::info!(group = %self.group_id, member = %member_id, "member session expired");
                self.remove_member(member_id, replies);
            }
            self.rebalance_after_removal(now_ms, replies);
        }
        if self.state == GroupState::PreparingRebalance {
            if now_ms >= self.rebalance_deadline_ms {
                let late: Vec<String> =
                    self.members.values().filter(|m| !m.awaiting_join).map(|m| m.member_id.clone()).collect();
                for member_id in &late {
                    self.remove_member(member_id, replies);
                }
                self.complete_join(replies);
            } else {
                self.try_complete_join(now_ms, replies);
            }
        }
    }

    /// Whether a member of this generation may commit offsets now (Kafka's checks).
    pub fn check_commit(&self, member_id: &str, generation_id: i32) -> i16 {
        if generation_id < 0 && member_id.is_empty() {
            // A commit from outside group management (e.g. assign()).
            return if self.members.is_empty() { 0 } else { ResponseError::IllegalGeneration.code() };
        }
        if !self.members.contains_key(member_id) {
            return ResponseError::UnknownMemberId.code();
        }
        if generation_id != self.generation_id {
            return ResponseError::IllegalGeneration.code();
        }
        // As in Kafka: members commit what they consumed while a rebalance is being
        // prepared (an eager consumer does so before it rejoins); only while the new
        // assignment is being handed out is committing refused.
        if self.state == GroupState::CompletingRebalance {
            return ResponseError::RebalanceInProgress.code();
        }
        0
    }
}

#[cfg(test)]
#[path = "group_test.rs"]
mod tests;
