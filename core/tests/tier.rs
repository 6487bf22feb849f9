//! Tiered storage in process: a log manager and a tier manager over a local-folder object
//! store (the default), driven pass by pass, with a manual clock for retention.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use headwater_core::log::{LogManager, LogManagerOptions, TopicPartition};
use headwater_core::record::{BatchBuilder, BatchIter, Compression, NewRecord};
use headwater_core::tier::{TierManager, TierOptions, TierStore, store};

/// Records as a consumer sees them: offset, timestamp, key, value, headers.
type Seen = (i64, i64, Option<Vec<u8>>, Option<Vec<u8>>, Vec<(Vec<u8>, Option<Vec<u8>>)>);

fn seen(bytes: &[u8], from: i64) -> Vec<Seen> {
    let mut out = Vec::new();
    for batch in BatchIter::new(bytes) {
        let batch = batch.unwrap();
        batch.validate().unwrap();
        for r in batch.records(1 << 26).unwrap().iter() {
            let r = r.unwrap();
            if r.offset >= from {
                let headers = r.headers.iter().map(|h| (h.key.to_vec(), h.value.map(<[u8]>::to_vec))).collect();
                out.push((r.offset, r.timestamp, r.key.map(<[u8]>::to_vec), r.value.map(<[u8]>::to_vec), headers));
            }
        }
    }
    out
}

fn batch(first: i64, count: i64, timestamp: i64, codec: Compression) -> Vec<u8> {
    let mut builder = BatchBuilder::new(codec);
    for i in first..first + count {
        let key = format!("key-{i}");
        let value = format!(r#"{{"id": {i}, "name": "n{}", "price": {}.25}}"#, i % 7, i % 100);
        builder.append(NewRecord {
            timestamp: timestamp + i,
            key: Some(key.as_bytes()),
            value: Some(value.as_bytes()),
            headers: &[(b"source", Some(b"test")), (b"none", None)],
        });
    }
    builder.build().unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    clock: headwater_core::log::ManualClock,
    logs: Arc<LogManager>,
    tier: Arc<TierManager>,
    tier_dir: std::path::PathBuf,
}

fn fixture(config: &[(&str, &str)], tier_store: Option<TierStore>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (clock, shared) = common::manual_clock(2_000_000);
    let logs = LogManager::open(dir.path(), LogManagerOptions { clock: shared, defaults: BTreeMap::new() }).unwrap();
    let config: BTreeMap<String, String> = config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    logs.create_topic("orders", 1, config).unwrap();
    let tier_dir = dir.path().join("tier");
    let tier_store = tier_store.unwrap_or_else(|| store::open(tier_dir.to_str().unwrap()).unwrap());
    let mut options = TierOptions::new(dir.path().join("tier-staging"));
    options.max_backoff = Duration::from_millis(1);
    let tier = TierManager::single_node(tier_store, Arc::clone(&logs), options);
    Fixture { _dir: dir, clock, logs, tier, tier_dir }
}

fn tp() -> TopicPartition {
    TopicPartition::new("orders", 0)
}

/// Appends 10 batches of 20 records, one segment each.
fn fill(logs: &LogManager) -> Vec<Seen> {
    let log = logs.get("orders", 0).unwrap();
    let mut all = Vec::new();
    for b in 0..10 {
        let codec = [Compression::None, Compression::Zstd, Compression::Lz4][b % 3];
        let bytes = batch(b as i64 * 20, 20, 1_000_000, codec);
        log.append(&bytes, 0).unwrap();
        all.extend(seen(&bytes, 0).into_iter().map(|mut r| {
            r.0 += b as i64 * 20;
            r
        }));
        log.force_roll().unwrap();
    }
    all
}

/// Everything from `offset` on, as a consumer reads it: remote history, then the local log.
async fn read_all(f: &Fixture, mut offset: i64) -> Vec<Seen> {
    let log = f.logs.get("orders", 0).unwrap();
    let mut out = Vec::new();
    loop {
        let bytes = if offset < log.log_start() {
            f.tier.read(&tp(), offset, 1000).await.unwrap().expect("remote history below the local start")
        } else {
            log.read(offset, None, 1000).unwrap().records
        };
        if bytes.is_empty() {
            return out;
        }
        let records = seen(&bytes, offset);
        offset = records.last().map_or(offset, |r| r.0 + 1);
        out.extend(records);
    }
}

#[tokio::test]
async fn closed_segments_move_to_parquet_and_read_back_identically() {
    let f =
        fixture(&[("remote.storage.enable", "true"), ("local.retention.bytes", "0"), ("value.format", "json")], None);
    let written = fill(&f.logs);
    let log = f.logs.get("orders", 0).unwrap();
    assert_eq!(log.log_start(), 0);

    f.tier.run_pass().await;
    let manifest = f.tier.manifest(&tp()).expect("a manifest");
    assert_eq!(manifest.files.len(), 10, "{manifest:?}");
    assert_eq!(manifest.end(), Some(200));
    assert_eq!(manifest.files.iter().map(|f| f.records).sum::<u64>(), 200);
    // Uploaded, so local retention (0 bytes) dropped every sealed segment.
    assert_eq!(log.log_start(), 200);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(f.tier.log_start(&tp(), log.log_start()), 0, "the true start is remote");
    // The files are plain Parquet in the folder.
    let parquet: Vec<_> =
        walk(&f.tier_dir).into_iter().filter(|p| p.extension().is_some_and(|e| e == "parquet")).collect();
    assert_eq!(parquet.len(), 10);

    // A consumer from offset 0 reads the same records across the boundary, from any offset.
    log.append(&batch(200, 5, 1_000_000, Compression::None), 0).unwrap();
    let mut expected = written.clone();
    expected.extend(seen(&batch(200, 5, 1_000_000, Compression::None), 0).into_iter().map(|mut r| {
        r.0 += 200;
        r
    }));
    assert_eq!(read_all(&f, 0).await, expected);
    assert_eq!(read_all(&f, 57).await, expected[57..]);

    // ListOffsets by time over remote history.
    assert_eq!(f.tier.offset_for_timestamp(&tp(), 1_000_050).await.unwrap(), Some((50, 1_000_050)));
    assert_eq!(f.tier.offset_for_timestamp(&tp(), 1_000_500).await.unwrap(), None);
    assert_eq!(f.tier.max_timestamp(&tp()), Some(1_000_199));

    // A restarted manager finds the manifest again.
    let again = TierManager::single_node(
        store::open(f.tier_dir.to_str().unwrap()).unwrap(),
        Arc::clone(&f.logs),
        TierOptions::new(f._dir.path().join("tier-staging")),
    );
    again.load().await.unwrap();
    assert_eq!(again.manifest(&tp()).unwrap().files.len(), 10);
    assert_eq!(seen(&again.read(&tp(), 0, 1).await.unwrap().unwrap(), 0), expected[..20]);
}

#[tokio::test]
async fn retention_and_delete_records_remove_remote_files() {
    let f =
        fixture(&[("remote.storage.enable", "true"), ("local.retention.ms", "0"), ("retention.ms", "3600000")], None);
    fill(&f.logs);
    f.tier.run_pass().await;
    let log = f.logs.get("orders", 0).unwrap();
    assert_eq!(f.tier.manifest(&tp()).unwrap().files.len(), 10);
    // local.retention.ms=0: the uploaded segments went at once.
    assert_eq!(log.log_start(), 200);

    // DeleteRecords into remote history: the start moves, whole files below it go.
    assert_eq!(f.tier.advance_log_start(&tp(), 45).await.unwrap(), Some(45));
    assert_eq!(f.tier.log_start(&tp(), log.log_start()), 45);
    assert!(f.tier.read(&tp(), 10, 1000).await.unwrap().is_none(), "below the start");
    f.tier.run_pass().await;
    let manifest = f.tier.manifest(&tp()).unwrap();
    assert_eq!(manifest.files.first().map(|f| f.base_offset), Some(40));
    assert_eq!(manifest.start(), Some(45));
    assert_eq!(count_parquet(&f.tier_dir), 8);

    // retention.ms: every file's newest record is now older than an hour.
    f.clock.advance_ms(3_600_001);
    f.tier.run_pass().await;
    assert!(f.tier.manifest(&tp()).unwrap().files.is_empty());
    assert_eq!(count_parquet(&f.tier_dir), 0);
    assert_eq!(f.tier.log_start(&tp(), log.log_start()), 200);
}

#[tokio::test]
async fn a_deleted_topic_loses_its_remote_data_and_a_recreated_one_starts_empty() {
    let f = fixture(&[("remote.storage.enable", "true")], None);
    fill(&f.logs);
    f.tier.run_pass().await;
    assert_eq!(count_parquet(&f.tier_dir), 10);
    f.logs.delete_topic("orders").unwrap();
    let config = BTreeMap::from([("remote.storage.enable".to_string(), "true".to_string())]);
    f.logs.create_topic("orders", 1, config).unwrap();
    f.tier.run_pass().await;
    assert_eq!(count_parquet(&f.tier_dir), 0, "the old topic's files went with it");
    assert!(f.tier.manifest(&tp()).is_some_and(|m| m.files.is_empty()));
    assert!(f.tier.read(&tp(), 0, 100).await.unwrap().is_none());
}

#[tokio::test]
async fn an_unreachable_store_keeps_every_local_segment() {
    // An S3 endpoint where nothing listens, with no retries inside the client.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let s3 = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name("nowhere")
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id("key")
        .with_secret_access_key("secret")
        .with_retry(object_store::RetryConfig { max_retries: 0, ..Default::default() })
        .build()
        .unwrap();
    let unreachable = TierStore { store: Arc::new(s3), root: "tier".into(), url: "s3://nowhere/tier".into() };
    let f = fixture(&[("remote.storage.enable", "true"), ("local.retention.bytes", "0")], Some(unreachable));
    let written = fill(&f.logs);
    let log = f.logs.get("orders", 0).unwrap();
    for _ in 0..3 {
        f.tier.run_pass().await;
        std::thread::sleep(Duration::from_millis(5));
    }
    log.apply_retention().unwrap();
    assert_eq!(log.log_start(), 0, "nothing was uploaded, so nothing left local disk");
    assert_eq!(log.segment_count(), 11);
    assert!(f.tier.manifest(&tp()).is_none());
    // Appends go on meanwhile.
    log.append(&batch(200, 1, 1_000_000, Compression::None), 0).unwrap();
    assert_eq!(read_all(&f, 0).await[..200], written[..]);
}

#[test]
fn compacted_topics_refuse_remote_storage_and_skip_a_broker_default() {
    let dir = tempfile::tempdir().unwrap();
    let defaults = BTreeMap::from([("remote.storage.enable".to_string(), "true".to_string())]);
    let logs = LogManager::open(dir.path(), LogManagerOptions { defaults, ..Default::default() }).unwrap();
    let compact = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
    logs.create_topic("changelog", 1, compact.clone()).unwrap();
    assert!(!logs.topic_config("changelog").unwrap().remote_storage_enable);
    logs.create_topic("events", 1, BTreeMap::new()).unwrap();
    assert!(logs.topic_config("events").unwrap().remote_storage_enable);
    let mut explicit = compact;
    explicit.insert("remote.storage.enable".into(), "true".into());
    let error = logs.create_topic("both", 1, explicit).unwrap_err().to_string();
    assert!(error.contains("compact"), "{error}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn count_parquet(dir: &std::path::Path) -> usize {
    walk(dir).iter().filter(|p| p.extension().is_some_and(|e| e == "parquet")).count()
}
