//! A worker's membership in its group: Kafka's group protocol with protocol type
//! `connect`, as Kafka Connect's workers use it. The leader (the coordinator picks it)
//! deals every connector's tasks to the members; each member learns its share from
//! SyncGroup. Membership is eager: a worker stops its tasks before it rejoins, so a task
//! never runs on two workers at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use headwater_core::client::{ClientError, ClusterView, Connection, find_coordinator};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest};
use kafka_protocol::protocol::StrBytes;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// The protocol name inside the `connect` protocol type.
const PROTOCOL: &str = "headwater-eager-v1";

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// What a member tells the leader about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberMetadata {
    /// Its REST URL, also its worker id in statuses.
    pub url: String,
    /// How far it has read the config topic.
    pub config_offset: i64,
}

/// What the leader gives a member: the tasks it runs, and the config topic position they
/// were dealt at (the member reads that far before starting them).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Assignment {
    pub leader_url: String,
    pub config_offset: i64,
    pub tasks: Vec<(String, u32)>,
}

/// The outcome of JoinGroup.
#[derive(Debug)]
pub struct Joined {
    pub generation: i32,
    /// The members and what they said, when this worker leads.
    pub members: Option<Vec<(String, MemberMetadata)>>,
}

pub struct Member {
    cluster: ClusterView,
    coordinator: Arc<Connection>,
    group: String,
    member_id: String,
    generation: i32,
    session_timeout: Duration,
    heartbeat_interval: Duration,
    /// Set by the heartbeat when the group wants this member to rejoin.
    rejoin: Arc<AtomicBool>,
    wake: Arc<Notify>,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member").field("group", &self.group).field("member_id", &self.member_id).finish()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(heartbeat) = self.heartbeat.take() {
            heartbeat.abort();
        }
    }
}

impl Member {
    /// # Errors
    /// No coordinator for the group.
    pub async fn new(bootstrap: &str, group: &str, session_timeout: Duration) -> Result<Self, ClientError> {
        let cluster = ClusterView::new(bootstrap, "headwater-connect-worker");
        let coordinator = find_coordinator(&cluster, group).await?;
        Ok(Self {
            cluster,
            coordinator,
            group: group.to_string(),
            member_id: String::new(),
            generation: -1,
            session_timeout,
            heartbeat_interval: (session_timeout / 10).max(Duration::from_millis(200)),
            rejoin: Arc::new(AtomicBool::new(true)),
            wake: Arc::new(Notify::new()),
            heartbeat: None,
        })
    }

    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// Waits until the group wants this member to rejoin.
    pub async fn rejoin_wanted(&self) {
        while !self.rejoin.load(Ordering::Acquire) {
            self.wake.notified().await;
        }
    }

    /// JoinGroup until admitted (stopping the heartbeat first).
    ///
    /// # Errors
    /// The coordinator unreachable or refusing the member.
    pub async fn join(&mut self, metadata: &MemberMetadata) -> Result<Joined, ClientError> {
        if let Some(heartbeat) = self.heartbeat.take() {
            heartbeat.abort();
        }
        self.rejoin.store(false, Ordering::Release);
        let metadata = Bytes::from(serde_json::to_vec(metadata).expect("metadata serializes"));
        loop {
            let request = JoinGroupRequest::default()
                .with_group_id(GroupId(str_bytes(&self.group)))
                .with_session_timeout_ms(self.session_timeout.as_millis() as i32)
                .with_rebalance_timeout_ms(60_000)
                .with_member_id(str_bytes(&self.member_id))
                .with_protocol_type(str_bytes("connect"))
                .with_protocols(vec![
                    JoinGroupRequestProtocol::default().with_name(str_bytes(PROTOCOL)).with_metadata(metadata.clone()),
                ]);
            let response = match self.coordinator.send(request).await {
                Ok(response) => response,
                Err(error) => {
                    self.coordinator = find_coordinator(&self.cluster, &self.group).await?;
                    tracing::debug!("JoinGroup: {error}; trying the coordinator again");
                    continue;
                }
            };
            let code = response.error_code;
            if code == ResponseError::MemberIdRequired.code() {
                self.member_id = response.member_id.to_string();
                continue;
            }
            if code == ResponseError::UnknownMemberId.code() {
                self.member_id.clear();
                continue;
            }
            if [
                ResponseError::NotCoordinator.code(),
                ResponseError::CoordinatorNotAvailable.code(),
                ResponseError::CoordinatorLoadInProgress.code(),
            ]
            .contains(&code)
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
                self.coordinator = find_coordinator(&self.cluster, &self.group).await?;
                continue;
            }
            if code != 0 {
                return Err(ClientError::Broker { api: "JoinGroup", code });
            }
            self.member_id = response.member_id.to_string();
            self.generation = response.generation_id;
            let members = (response.leader == response.member_id).then(|| {
                response
                    .members
                    .iter()
                    .filter_map(|m| {
                        let meta: MemberMetadata = serde_json::from_slice(&m.metadata).ok()?;
                        Some((m.member_id.to_string(), meta))
                    })
                    .collect()
            });
            return Ok(Joined { generation: self.generation, members });
        }
    }

    /// SyncGroup: hands out the leader's assignments and returns this member's, or `None`
    /// when the group began another rebalance meanwhile. Starts heartbeating.
    ///
    /// # Errors
    /// The coordinator unreachable or refusing the member.
    pub async fn sync(&mut self, assignments: Vec<(String, Assignment)>) -> Result<Option<Assignment>, ClientError> {
        let request = SyncGroupRequest::default()
            .with_group_id(GroupId(str_bytes(&self.group)))
            .with_generation_id(self.generation)
            .with_member_id(str_bytes(&self.member_id))
            .with_protocol_type(Some(str_bytes("connect")))
            .with_protocol_name(Some(str_bytes(PROTOCOL)))
            .with_assignments(
                assignments
                    .into_iter()
                    .map(|(member, assignment)| {
                        SyncGroupRequestAssignment::default().with_member_id(str_bytes(&member)).with_assignment(
                            Bytes::from(serde_json::to_vec(&assignment).expect("assignment serializes")),
                        )
                    })
                    .collect(),
            );
        let response = self.coordinator.send(request).await?;
        if response.error_code == ResponseError::RebalanceInProgress.code() {
            self.request_rejoin();
            return Ok(None);
        }
        if response.error_code != 0 {
            self.request_rejoin();
            return Err(ClientError::Broker { api: "SyncGroup", code: response.error_code });
        }
        let assignment: Assignment = serde_json::from_slice(&response.assignment)
            .map_err(|e| ClientError::Decode { api: "SyncGroup", message: e.to_string() })?;
        self.start_heartbeat();
        Ok(Some(assignment))
    }

    /// Asks for a rebalance (the configs changed): the next loop rejoins.
    pub fn request_rejoin(&self) {
        self.rejoin.store(true, Ordering::Release);
        self.wake.notify_waiters();
    }

    fn start_heartbeat(&mut self) {
        let coordinator = Arc::clone(&self.coordinator);
        let rejoin = Arc::clone(&self.rejoin);
        let wake = Arc::clone(&self.wake);
        let request = HeartbeatRequest::default()
            .with_group_id(GroupId(str_bytes(&self.group)))
            .with_generation_id(self.generation)
            .with_member_id(str_bytes(&self.member_id));
        let interval = self.heartbeat_interval;
        self.heartbeat = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let code = match coordinator.send(request.clone()).await {
                    Ok(response) => response.error_code,
                    Err(_) => ResponseError::CoordinatorNotAvailable.code(),
                };
                if code != 0 {
                    rejoin.store(true, Ordering::Release);
                    wake.notify_waiters();
                    return;
                }
            }
        }));
    }

    /// Leaves the group, so the others take this worker's tasks at once.
    pub async fn leave(mut self) {
        if let Some(heartbeat) = self.heartbeat.take() {
            heartbeat.abort();
        }
        if self.member_id.is_empty() {
            return;
        }
        let request = LeaveGroupRequest::default()
            .with_group_id(GroupId(str_bytes(&self.group)))
            .with_members(vec![MemberIdentity::default().with_member_id(str_bytes(&self.member_id))]);
        if let Err(error) = self.coordinator.send(request).await {
            tracing::debug!("LeaveGroup: {error}");
        }
    }
}
