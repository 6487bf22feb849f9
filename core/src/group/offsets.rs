//! Committed offsets, kept in memory and persisted as records of the compacted internal
//! topic `__consumer_offsets`, so they survive restarts (and, with replication, fail over).
//!
//! Records use Kafka's own layout, so tools that read Kafka's offsets topic read ours:
//!
//! ```text
//! key   (v1): version i16 = 1 | group string | topic string | partition i32
//! value (v3): version i16 = 3 | offset i64 | leader_epoch i32 | metadata string | commit_timestamp i64
//! ```
//! (strings are an i16 length and UTF-8). A null value deletes the key (a tombstone). A
//! group's records go to partition `abs(java_hash(group)) % partitions`, as in Kafka.
//!
//! A transactional producer's offsets (TxnOffsetCommit) are written as a transactional
//! batch of its producer id and stay pending, invisible to OffsetFetch, until the
//! transaction's marker lands in the same partition: a commit marker applies them, an
//! abort marker drops them. Loading replays markers the same way.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bytes::{Buf, BufMut};

use crate::log::{AppendOrigin, Log, LogError, LogManager};
use crate::partition::{InternalLog, ReplicaError, ReplicaManager};
use crate::record::{BatchBuilder, BatchIter, Compression, NewRecord};

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Kafka's `offsets.topic.num.partitions`.
pub const OFFSETS_PARTITIONS: i32 = 50;

/// One committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_timestamp: i64,
}

type Offsets = BTreeMap<(String, i32), CommittedOffset>;
/// Offsets written in open transactions: group -> producer id -> offsets.
type Pending = HashMap<String, HashMap<i64, Offsets>>;

/// Committed offsets of every group this broker coordinates.
#[derive(Debug)]
pub struct OffsetStore {
    destination: InternalLog,
    committed: Mutex<HashMap<String, Offsets>>,
    pending: Mutex<Pending>,
}

/// Java's `String.hashCode`, which Kafka uses to place a group.
fn java_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// The `__consumer_offsets` partition that holds `group`'s offsets; its leader coordinates
/// the group.
pub fn partition_for(group: &str) -> i32 {
    (java_hash(group).unsigned_abs() % OFFSETS_PARTITIONS as u32) as i32
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.put_i16(s.len() as i16);
    out.put_slice(s.as_bytes());
}

fn get_string(buf: &mut &[u8]) -> Option<String> {
    if buf.remaining() < 2 {
        return None;
    }
    let len = buf.get_i16();
    if len < 0 {
        return Some(String::new());
    }
    let len = len as usize;
    if buf.remaining() < len {
        return None;
    }
    let s = String::from_utf8(buf[..len].to_vec()).ok()?;
    buf.advance(len);
    Some(s)
}

fn encode_key(group: &str, topic: &str, partition: i32) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + group.len() + topic.len());
    key.put_i16(1);
    put_string(&mut key, group);
    put_string(&mut key, topic);
    key.put_i32(partition);
    key
}

fn encode_value(committed: &CommittedOffset) -> Vec<u8> {
    let mut value = Vec::with_capacity(32);
    value.put_i16(3);
    value.put_i64(committed.offset);
    value.put_i32(committed.leader_epoch);
    put_string(&mut value, committed.metadata.as_deref().unwrap_or(""));
    value.put_i64(committed.commit_timestamp);
    value
}

/// `(group, topic, partition)` of an offset key; `None` for other record kinds (Kafka
/// also stores group metadata, key version 2) or damaged keys.
fn decode_key(mut key: &[u8]) -> Option<(String, String, i32)> {
    if key.remaining() < 2 || !matches!(key.get_i16(), 0 | 1) {
        return None;
    }
    let group = get_string(&mut key)?;
    let topic = get_string(&mut key)?;
    (key.remaining() >= 4).then(|| (group, topic, key.get_i32()))
}

fn decode_value(mut value: &[u8]) -> Option<CommittedOffset> {
    if value.remaining() < 2 {
        return None;
    }
    let version = value.get_i16();
    if value.remaining() < 8 {
        return None;
    }
    let offset = value.get_i64();
    let leader_epoch = if version >= 3 && value.remaining() >= 4 { value.get_i32() } else { -1 };
    let metadata = get_string(&mut value)?;
    let commit_timestamp = if value.remaining() >= 8 { value.get_i64() } else { -1 };
    Some(CommittedOffset { offset, leader_epoch, metadata: Some(metadata), commit_timestamp })
}

/// The config overrides of `__consumer_offsets`, as Kafka sets them.
pub fn offsets_topic_configs() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("cleanup.policy".to_string(), "compact".to_string()),
        // Kafka's offsets.topic.segment.bytes: small segments compact sooner.
        ("segment.bytes".to_string(), "104857600".to_string()),
    ])
}

impl OffsetStore {
    /// Creates `__consumer_offsets` if needed and loads every committed offset from it.
    ///
    /// # Errors
    /// [`LogError`] if the topic cannot be created or read.
    pub fn open(logs: Arc<LogManager>) -> Result<Self, LogError> {
        if logs.topic(OFFSETS_TOPIC).is_none() {
            match logs.create_topic(OFFSETS_TOPIC, OFFSETS_PARTITIONS, offsets_topic_configs()) {
                Ok(()) | Err(LogError::TopicAlreadyExists { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        let mut committed: HashMap<String, Offsets> = HashMap::new();
        let mut pending = Pending::new();
        let partitions = logs.topic(OFFSETS_TOPIC).map_or(0, |t| t.partitions);
        for partition in 0..partitions {
            read_partition(&*logs.get(OFFSETS_TOPIC, partition)?, &mut committed, &mut pending)?;
        }
        committed.retain(|_, offsets| !offsets.is_empty());
        Ok(Self {
            destination: InternalLog::Local(logs),
            committed: Mutex::new(committed),
            pending: Mutex::new(pending),
        })
    }

    /// A store for a cluster broker: empty until [`Self::load_partition`] loads the
    /// offsets partitions this broker comes to lead.
    pub fn replicated(replicas: Arc<ReplicaManager>) -> Self {
        Self {
            destination: InternalLog::Replicated(replicas),
            committed: Mutex::new(HashMap::new()),
            pending: Mutex::new(Pending::new()),
        }
    }

    /// Takes over the groups of offsets partition `partition` from its log (this broker
    /// now leads it): whatever was kept for them before is replaced.
    ///
    /// # Errors
    /// [`LogError`] if the log cannot be read.
    pub fn load_partition(&self, partition: i32, log: &Log) -> Result<(), LogError> {
        let mut loaded = HashMap::new();
        let mut loaded_pending = Pending::new();
        read_partition(log, &mut loaded, &mut loaded_pending)?;
        loaded.retain(|_, offsets| !offsets.is_empty());
        let mut committed = self.committed.lock().expect("offsets lock");
        committed.retain(|group, _| partition_for(group) != partition);
        committed.extend(loaded);
        let mut pending = self.pending.lock().expect("offsets lock");
        pending.retain(|group, _| partition_for(group) != partition);
        pending.extend(loaded_pending);
        Ok(())
    }

    /// Forgets the groups of offsets partition `partition` (another broker leads it now).
    pub fn unload_partition(&self, partition: i32) {
        self.committed.lock().expect("offsets lock").retain(|group, _| partition_for(group) != partition);
        self.pending.lock().expect("offsets lock").retain(|group, _| partition_for(group) != partition);
    }

    /// TxnOffsetCommit: writes offsets in `producer_id`'s transaction; they stay pending
    /// until its marker.
    ///
    /// # Errors
    /// As [`Self::write`]; `InvalidProducerEpoch` for a fenced producer.
    pub async fn write_transactional(
        &self,
        group: &str,
        producer_id: i64,
        producer_epoch: i16,
        entries: Vec<((String, i32), CommittedOffset)>,
    ) -> Result<(), ReplicaError> {
        if entries.is_empty() {
            return Ok(());
        }
        let timestamp = entries.iter().map(|(_, c)| c.commit_timestamp).max().unwrap_or(0);
        let encoded: Vec<(Vec<u8>, Vec<u8>)> =
            entries.iter().map(|((t, p), c)| (encode_key(group, t, *p), encode_value(c))).collect();
        // No sequence: the coordinator's epoch check is what fences a zombie here.
        let mut builder =
            BatchBuilder::new(Compression::None).producer(producer_id, producer_epoch, -1).transactional(true);
        for (key, value) in &encoded {
            builder.append(NewRecord { timestamp, key: Some(key), value: Some(value), headers: &[] });
        }
        let batch = builder.build().map_err(|source| LogError::InvalidRecords { source })?;
        self.destination.append(OFFSETS_TOPIC, partition_for(group), &batch, AppendOrigin::Client).await?;
        let mut pending = self.pending.lock().expect("offsets lock");
        pending.entry(group.to_string()).or_default().entry(producer_id).or_default().extend(entries);
        Ok(())
    }

    /// A transaction's marker was written to offsets partition `partition`: its pending
    /// offsets there are applied (commit) or dropped (abort).
    pub fn complete_transaction(&self, partition: i32, producer_id: i64, commit: bool) {
        let mut pending = self.pending.lock().expect("offsets lock");
        let mut committed = self.committed.lock().expect("offsets lock");
        complete(&mut pending, &mut committed, |group| partition_for(group) == partition, producer_id, commit);
    }

    /// Whether a transaction has offsets for this partition not yet decided (OffsetFetch's
    /// `require_stable` answers UNSTABLE_OFFSET_COMMIT then).
    pub fn has_pending(&self, group: &str, topic: &str, partition: i32) -> bool {
        let key = (topic.to_string(), partition);
        self.pending.lock().expect("offsets lock").get(group).is_some_and(|p| p.values().any(|o| o.contains_key(&key)))
    }

    /// Writes offsets (a `None` deletes one) and waits until they are on disk; only then
    /// are they visible to fetches.
    ///
    /// # Errors
    /// The append, flush or replication failed (in a cluster, [`ReplicaError::NotLeader`]
    /// when this broker no longer leads the group's partition); nothing is changed then.
    pub async fn write(
        &self,
        group: &str,
        entries: Vec<((String, i32), Option<CommittedOffset>)>,
    ) -> Result<(), ReplicaError> {
        if entries.is_empty() {
            return Ok(());
        }
        let timestamp = entries.iter().filter_map(|(_, c)| c.as_ref().map(|c| c.commit_timestamp)).max().unwrap_or(0);
        let encoded: Vec<(Vec<u8>, Option<Vec<u8>>)> = entries
            .iter()
            .map(|((topic, partition), committed)| {
                (encode_key(group, topic, *partition), committed.as_ref().map(encode_value))
            })
            .collect();
        let mut builder = BatchBuilder::new(Compression::None);
        for (key, value) in &encoded {
            builder.append(NewRecord { timestamp, key: Some(key), value: value.as_deref(), headers: &[] });
        }
        let batch = builder.build().map_err(|source| LogError::InvalidRecords { source })?;
        self.destination.append(OFFSETS_TOPIC, partition_for(group), &batch, AppendOrigin::Client).await?;
        let mut committed = self.committed.lock().expect("offsets lock");
        let offsets = committed.entry(group.to_string()).or_default();
        for (key, value) in entries {
            match value {
                Some(value) => {
                    offsets.insert(key, value);
                }
                None => {
                    offsets.remove(&key);
                }
            }
        }
        if offsets.is_empty() {
            committed.remove(group);
        }
        Ok(())
    }

    /// The committed offset of one partition.
    pub fn get(&self, group: &str, topic: &str, partition: i32) -> Option<CommittedOffset> {
        self.committed.lock().expect("offsets lock").get(group)?.get(&(topic.to_string(), partition)).cloned()
    }

    /// Every committed offset of a group.
    pub fn all(&self, group: &str) -> Vec<((String, i32), CommittedOffset)> {
        self.committed
            .lock()
            .expect("offsets lock")
            .get(group)
            .map(|offsets| offsets.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    /// Groups that have committed offsets.
    pub fn groups(&self) -> Vec<String> {
        self.committed.lock().expect("offsets lock").keys().cloned().collect()
    }
}

/// Moves `producer_id`'s pending offsets of the groups `here` selects into `committed`
/// (a commit) or drops them (an abort).
fn complete(
    pending: &mut Pending,
    committed: &mut HashMap<String, Offsets>,
    here: impl Fn(&str) -> bool,
    producer_id: i64,
    commit: bool,
) {
    for (group, producers) in pending.iter_mut().filter(|(g, _)| here(g)) {
        let Some(offsets) = producers.remove(&producer_id) else { continue };
        if commit {
            committed.entry(group.clone()).or_default().extend(offsets);
        }
    }
    pending.retain(|_, producers| !producers.is_empty());
}

/// Reads every committed offset in one offsets partition's log into `committed`, and the
/// offsets of transactions still open into `pending`.
fn read_partition(log: &Log, committed: &mut HashMap<String, Offsets>, pending: &mut Pending) -> Result<(), LogError> {
    let mut offset = log.log_start();
    while offset < log.log_end() {
        let read = log.read(offset, None, 1 << 20)?;
        if read.records.is_empty() {
            break;
        }
        for batch in BatchIter::new(&read.records) {
            let batch = batch.map_err(|source| LogError::InvalidRecords { source })?;
            offset = batch.next_offset();
            if batch.is_control() {
                if let Some(marker) = crate::log::producer_state::TxnMarker::decode(&batch) {
                    complete(pending, committed, |_| true, batch.producer_id(), marker.commit);
                }
                continue;
            }
            let transactional = batch.is_transactional().then(|| batch.producer_id());
            let records = batch.records(1 << 26).map_err(|source| LogError::InvalidRecords { source })?;
            for record in records.iter() {
                let record = record.map_err(|source| LogError::InvalidRecords { source })?;
                let Some((group, topic, partition)) = record.key.and_then(decode_key) else { continue };
                match record.value.and_then(decode_value) {
                    Some(value) => match transactional {
                        Some(producer_id) => {
                            let offsets = pending.entry(group).or_default().entry(producer_id).or_default();
                            offsets.insert((topic, partition), value);
                        }
                        None => {
                            committed.entry(group).or_default().insert((topic, partition), value);
                        }
                    },
                    None => {
                        if let Some(offsets) = committed.get_mut(&group) {
                            offsets.remove(&(topic, partition));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hash_matches_javas() {
        // Values computed by java.lang.String#hashCode.
        assert_eq!(java_hash(""), 0);
        assert_eq!(java_hash("a"), 97);
        assert_eq!(java_hash("my-group"), -1_906_497_762);
        assert!((0..OFFSETS_PARTITIONS).contains(&partition_for("any group")));
    }

    #[test]
    fn keys_and_values_round_trip_in_kafkas_layout() {
        let key = encode_key("g", "orders", 7);
        assert_eq!(&key[..2], &[0, 1], "key version 1");
        assert_eq!(decode_key(&key), Some(("g".into(), "orders".into(), 7)));
        let value = CommittedOffset { offset: 42, leader_epoch: 3, metadata: Some("m".into()), commit_timestamp: 99 };
        let encoded = encode_value(&value);
        assert_eq!(&encoded[..2], &[0, 3], "value version 3");
        assert_eq!(decode_value(&encoded), Some(value));
        assert_eq!(decode_key(&[0, 2, 0, 1]), None, "group metadata keys are skipped");
        assert_eq!(decode_value(&[0, 3, 1]), None);
    }

    #[tokio::test]
    async fn committed_offsets_survive_a_reopen_and_deletes_stick() {
        let dir = tempfile::tempdir().unwrap();
        let options = crate::log::LogManagerOptions::default();
        {
            let logs = LogManager::open(dir.path(), options.clone()).unwrap();
            let store = OffsetStore::open(Arc::clone(&logs)).unwrap();
            let offset = |o| Some(CommittedOffset { offset: o, leader_epoch: -1, metadata: None, commit_timestamp: 1 });
            store.write("g", vec![(("t".into(), 0), offset(10)), (("t".into(), 1), offset(20))]).await.unwrap();
            store.write("g", vec![(("t".into(), 0), offset(11))]).await.unwrap();
            store.write("h", vec![(("t".into(), 0), offset(5))]).await.unwrap();
            store.write("h", vec![(("t".into(), 0), None)]).await.unwrap();
            logs.close().unwrap();
        }
        let logs = LogManager::open(dir.path(), options).unwrap();
        let store = OffsetStore::open(logs).unwrap();
        assert_eq!(store.get("g", "t", 0).map(|c| c.offset), Some(11));
        assert_eq!(store.get("g", "t", 1).map(|c| c.offset), Some(20));
        assert_eq!(store.get("h", "t", 0), None);
        assert_eq!(store.groups(), vec!["g".to_string()]);
    }
}
