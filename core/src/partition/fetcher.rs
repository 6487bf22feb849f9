//! A replica fetcher: copies the partitions this broker follows from one leader broker,
//! with the same Kafka Fetch a consumer sends (with this broker's id as `replica_id`).
//!
//! Each partition first finds where its log agrees with the leader's (OffsetForLeaderEpoch
//! with its latest epoch, truncating as [`follower::next_truncation`] says, in as many
//! rounds as it takes), then fetches from its log end. The set of partitions is read from
//! the replica manager at every round, so a change of leader is picked up without messages:
//! a partition followed at a new epoch starts again with truncation.
//!
//! ```text
//!  round: OffsetForLeaderEpoch (partitions truncating) ─> truncate
//!         Fetch (partitions fetching, long poll) ─> Replica::append_as_follower
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
use kafka_protocol::messages::{BrokerId as WireBrokerId, FetchRequest, OffsetForLeaderEpochRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::follower::{Truncation, next_truncation};
use super::replica::Replica;
use super::replica_manager::ReplicaManager;
use crate::client::{ClientError, Connection};
use crate::cluster::BrokerId;
use crate::log::TopicPartition;

/// `replica.fetch.wait.max.ms` (Kafka's default 500 ms): how long the leader may hold a
/// fetch with nothing new. Partitions added meanwhile wait at most this long.
const FETCH_WAIT_MS: i32 = 500;
/// `replica.fetch.max.bytes` per partition (Kafka's 1 MiB) and
/// `replica.fetch.response.max.bytes` for the whole response (Kafka's 10 MiB).
const PARTITION_MAX_BYTES: i32 = 1 << 20;
const RESPONSE_MAX_BYTES: i32 = 10 << 20;
/// `replica.fetch.backoff.ms`: the pause after an error before trying again.
const BACKOFF: Duration = Duration::from_millis(100);
/// How long a connection or an answer may take beyond the long poll before the leader is
/// taken for unreachable (a network cut leaves TCP connections open and silent).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Where one followed partition is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Asking the leader where the logs agree.
    Truncating,
    Fetching,
}

/// Fetches from `leader` until aborted by the replica manager.
pub(super) async fn run(manager: Arc<ReplicaManager>, leader: BrokerId) {
    let client_id = format!("headwater-replica-{}", manager.broker_id());
    let mut phases: HashMap<(TopicPartition, i32), Phase> = HashMap::new();
    loop {
        let Some(addr) = manager.broker_address(leader) else {
            tokio::time::sleep(BACKOFF).await;
            continue;
        };
        let connected = tokio::time::timeout(REQUEST_TIMEOUT, Connection::connect(&addr, &client_id)).await;
        let connection = match connected.unwrap_or(Err(ClientError::Timeout { ms: REQUEST_TIMEOUT.as_millis() as u64 }))
        {
            Ok(connection) => connection,
            Err(error) => {
                tracing::debug!(leader, %error, "cannot reach the leader; retrying");
                tokio::time::sleep(BACKOFF).await;
                continue;
            }
        };
        loop {
            let followed = manager.followed_from(leader);
            if followed.is_empty() {
                tokio::time::sleep(BACKOFF).await;
                continue;
            }
            phases.retain(|(tp, epoch), _| followed.iter().any(|(r, e)| r.tp == *tp && e == epoch));
            for (replica, epoch) in &followed {
                phases.entry((replica.tp.clone(), *epoch)).or_insert(Phase::Truncating);
            }
            let round = Round { manager: &manager, connection: &connection, phases: &mut phases };
            if let Err(error) = round.run(&followed).await {
                tracing::debug!(leader, %error, "replica fetch failed; reconnecting");
                tokio::time::sleep(BACKOFF).await;
                break;
            }
        }
    }
}

struct Round<'a> {
    manager: &'a ReplicaManager,
    connection: &'a Connection,
    phases: &'a mut HashMap<(TopicPartition, i32), Phase>,
}

impl Round<'_> {
    async fn run(self, followed: &[(Arc<Replica>, i32)]) -> Result<(), ClientError> {
        let phase = |r: &Arc<Replica>, e: i32| self.phases.get(&(r.tp.clone(), e)).copied();
        let truncating: Vec<_> = followed.iter().filter(|(r, e)| phase(r, *e) == Some(Phase::Truncating)).collect();
        let fetching: Vec<_> = followed.iter().filter(|(r, e)| phase(r, *e) == Some(Phase::Fetching)).collect();
        let me = self.manager.broker_id();
        if !truncating.is_empty() {
            let mut backoff = false;
            let request = OffsetForLeaderEpochRequest::default().with_replica_id(WireBrokerId(me)).with_topics(
                group_by_topic(&truncating, |replica, epoch| {
                    OffsetForLeaderPartition::default()
                        .with_partition(replica.tp.partition)
                        .with_current_leader_epoch(epoch)
                        .with_leader_epoch(replica.log.latest_epoch().unwrap_or(-1))
                }),
            );
            let requested: HashMap<TopicPartition, Option<i32>> =
                truncating.iter().map(|(r, _)| (r.tp.clone(), r.log.latest_epoch())).collect();
            let response = within(REQUEST_TIMEOUT, self.connection.send(request)).await?;
            for topic in response.topics {
                for answer in topic.partitions {
                    let tp = TopicPartition::new(topic.topic.to_string(), answer.partition);
                    let Some((replica, epoch)) = truncating.iter().find(|(r, _)| r.tp == tp) else { continue };
                    if answer.error_code != 0 {
                        // The leader has not caught up with the image yet, or moved on.
                        backoff = true;
                        continue;
                    }
                    let leader_answer = (answer.leader_epoch >= 0 && answer.end_offset >= 0)
                        .then_some((answer.leader_epoch, answer.end_offset));
                    let (cache, log_end) = replica.log.epoch_cache();
                    let hw = replica.high_watermark();
                    let asked = requested.get(&tp).copied().flatten();
                    let (offset, done) = match next_truncation(&cache, log_end, hw, asked, leader_answer) {
                        Truncation::Done(offset) => (offset, true),
                        Truncation::AskAgain(offset) => (offset, false),
                    };
                    match replica.truncate_as_follower(*epoch, offset) {
                        Ok(end) => {
                            if end < log_end {
                                tracing::info!(partition = %tp, from = log_end, to = end, "truncated to the leader's log");
                            }
                            if done {
                                self.phases.insert((tp, *epoch), Phase::Fetching);
                            }
                        }
                        Err(error) => {
                            tracing::warn!(partition = %tp, %error, "truncation failed");
                            backoff = true;
                        }
                    }
                }
            }
            if backoff && fetching.is_empty() {
                tokio::time::sleep(BACKOFF).await;
            }
            // Partitions already fetching go on in the same round: one partition that
            // cannot settle its truncation must not hold up the others from this leader.
        }
        if fetching.is_empty() {
            if truncating.is_empty() {
                tokio::time::sleep(BACKOFF).await;
            }
            return Ok(());
        }
        let request = FetchRequest::default()
            .with_replica_id(WireBrokerId(me))
            .with_max_wait_ms(FETCH_WAIT_MS)
            .with_min_bytes(1)
            .with_max_bytes(RESPONSE_MAX_BYTES)
            .with_session_epoch(-1)
            .with_topics(group_by_topic(&fetching, |replica, epoch| {
                FetchPartition::default()
                    .with_partition(replica.tp.partition)
                    .with_current_leader_epoch(epoch)
                    .with_fetch_offset(replica.log.log_end())
                    .with_last_fetched_epoch(-1)
                    .with_log_start_offset(replica.log.log_start())
                    .with_partition_max_bytes(PARTITION_MAX_BYTES)
            }));
        let wait = Duration::from_millis(FETCH_WAIT_MS as u64) + REQUEST_TIMEOUT;
        let response = within(wait, self.connection.send(request)).await?;
        let mut backoff = false;
        for topic in response.responses {
            for data in topic.partitions {
                let tp = TopicPartition::new(topic.topic.to_string(), data.partition_index);
                let Some((replica, epoch)) = fetching.iter().find(|(r, _)| r.tp == tp) else { continue };
                match data.error_code {
                    0 => {
                        let records = data.records.unwrap_or_default();
                        if let Err(error) =
                            replica.append_as_follower(*epoch, &records, data.high_watermark, data.log_start_offset)
                        {
                            tracing::warn!(partition = %tp, %error, "cannot append the leader's batches");
                            self.phases.insert((tp, *epoch), Phase::Truncating);
                            backoff = true;
                        }
                    }
                    code if code == ResponseError::OffsetOutOfRange.code()
                        && data.log_start_offset > replica.log.log_end() =>
                    {
                        // Everything this replica could fetch next is gone from the leader
                        // (retention, DeleteRecords): start again at the leader's log start.
                        tracing::info!(partition = %tp, leader_log_start = data.log_start_offset, "behind the leader's log start; starting again there");
                        if let Err(error) = replica.start_at_leader_log_start(*epoch, data.log_start_offset) {
                            tracing::warn!(partition = %tp, %error, "cannot start again at the leader's log start");
                            backoff = true;
                        }
                    }
                    code if code == ResponseError::OffsetOutOfRange.code() => {
                        // Our log end is past the leader's: find where they agree again.
                        tracing::info!(partition = %tp, "fetch offset out of range at the leader; truncating");
                        self.phases.insert((tp, *epoch), Phase::Truncating);
                        backoff = true;
                    }
                    _ => backoff = true,
                }
            }
        }
        if backoff {
            tokio::time::sleep(BACKOFF).await;
        }
        Ok(())
    }
}

/// `request`'s answer, or a timeout error after `limit`.
async fn within<T>(limit: Duration, request: impl Future<Output = Result<T, ClientError>>) -> Result<T, ClientError> {
    tokio::time::timeout(limit, request).await.unwrap_or(Err(ClientError::Timeout { ms: limit.as_millis() as u64 }))
}

/// Groups partitions by topic, as Kafka's requests want them.
fn group_by_topic<P, T>(replicas: &[&(Arc<Replica>, i32)], partition: impl Fn(&Replica, i32) -> P) -> Vec<T>
where
    T: TopicEntry<P>,
{
    let mut topics: Vec<(String, Vec<P>)> = Vec::new();
    for (replica, epoch) in replicas {
        let entry = partition(replica, *epoch);
        match topics.iter_mut().find(|(name, _)| *name == replica.tp.topic) {
            Some((_, partitions)) => partitions.push(entry),
            None => topics.push((replica.tp.topic.clone(), vec![entry])),
        }
    }
    topics.into_iter().map(|(name, partitions)| T::new(TopicName(StrBytes::from_string(name)), partitions)).collect()
}

/// The topic level of a request, built from its partitions.
trait TopicEntry<P> {
    fn new(name: TopicName, partitions: Vec<P>) -> Self;
}

impl TopicEntry<FetchPartition> for FetchTopic {
    fn new(name: TopicName, partitions: Vec<FetchPartition>) -> Self {
        FetchTopic::default().with_topic(name).with_partitions(partitions)
    }
}

impl TopicEntry<OffsetForLeaderPartition> for OffsetForLeaderTopic {
    fn new(name: TopicName, partitions: Vec<OffsetForLeaderPartition>) -> Self {
        OffsetForLeaderTopic::default().with_topic(name).with_partitions(partitions)
    }
}
