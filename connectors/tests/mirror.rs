//! `mirror-source` between two real broker processes: topics matching the patterns are
//! copied record for record (key, value, headers, timestamp, partition), new topics are
//! found while it runs, consumer groups' offsets arrive translated, and a graceful restart
//! copies nothing twice.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{create_topic, produce, read_topic, start_broker, start_connect, wait_for};
use headwater_core::client::{Admin, ConsumerRecord, Producer, ProducerConfig, ProducerRecord};

fn produce_with_headers(bootstrap: &str, topic: &str, range: std::ops::Range<usize>) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let producer =
            Producer::connect(ProducerConfig { bootstrap: bootstrap.to_string(), ..Default::default() }).await.unwrap();
        let mut deliveries = Vec::new();
        for i in range {
            let record = ProducerRecord {
                topic,
                partition: None,
                timestamp: Some(1_700_000_000_000 + i as i64),
                key: Some(format!("customer-{}", i % 17).into()),
                value: Some(format!("order {i}").into()),
                headers: vec![("trace".into(), Some(format!("t{i}").into()))],
            };
            deliveries.push(producer.send_record(record).await.unwrap());
        }
        producer.flush().await.unwrap();
        for delivery in deliveries {
            delivery.await.unwrap();
        }
    });
}

/// What a copy must keep of a record: key, value, headers, timestamp.
type Kept = (Option<bytes::Bytes>, Option<bytes::Bytes>, Vec<(String, Option<bytes::Bytes>)>, i64);

/// The records of each partition, in offset order.
fn by_partition(records: &[ConsumerRecord]) -> BTreeMap<i32, Vec<Kept>> {
    let mut out: BTreeMap<i32, Vec<_>> = BTreeMap::new();
    let mut sorted: Vec<&ConsumerRecord> = records.iter().collect();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    for r in sorted {
        out.entry(r.partition).or_default().push((r.key.clone(), r.value.clone(), r.headers.clone(), r.timestamp));
    }
    out
}

#[test]
fn topics_and_group_offsets_cross_clusters() {
    let dir = tempfile::tempdir().unwrap();
    let (_east, east) = start_broker(&dir.path().join("east"));
    let (_west, west) = start_broker(&dir.path().join("west"));
    create_topic(&east, "orders", 3);
    produce_with_headers(&east, "orders", 0..300);
    produce(&east, "audit", &[(None, Some("not mirrored"))]);
    // A consumer group in the east that has read half of each partition.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let half: Vec<(i32, i64)> = runtime.block_on(async {
        let mut consumer = headwater_core::client::Consumer::connect(headwater_core::client::ConsumerConfig {
            bootstrap: east.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
        let ends = consumer.list_offsets((0..3).map(|p| ("orders".to_string(), p)).collect(), -1).await.unwrap();
        let half: Vec<(i32, i64)> = ends.iter().map(|((_, p), end)| (*p, end / 2)).collect();
        Admin::connect(&east).await.unwrap().reset_offsets("billing", "orders", &half).await.unwrap();
        half
    });

    let config = dir.path().join("mirror.properties");
    std::fs::write(
        &config,
        format!(
            "name=east-to-west\nconnector.class=org.apache.kafka.connect.mirror.MirrorSourceConnector\n\
             source.cluster.alias=east\nsource.cluster.bootstrap.servers={east}\ntopics=orders,pay.*\n\
             refresh.topics.interval.seconds=1\nsync.group.offsets.enabled=true\nsync.group.offsets.interval.seconds=1\n\
             tasks.max=2\n"
        ),
    )
    .unwrap();
    let mut connect = start_connect(&west, &[&config], &["--offset-flush-interval-ms", "500"]);
    wait_for("east.orders copied", Duration::from_secs(60), || {
        (read_topic(&west, "east.orders").len() == 300).then_some(())
    });
    let source = read_topic(&east, "orders");
    let copied = read_topic(&west, "east.orders");
    assert_eq!(by_partition(&copied), by_partition(&source), "the same records in the same partitions, in order");

    // A topic created while it runs is found.
    create_topic(&east, "payments", 2);
    produce(&east, "payments", &[(Some("a"), Some("1")), (Some("b"), Some("2"))]);
    wait_for("east.payments copied", Duration::from_secs(60), || {
        (read_topic(&west, "east.payments").len() == 2).then_some(())
    });

    // The group's offsets arrive, translated, for consumers that move west.
    let translated = wait_for("billing's offsets in the west", Duration::from_secs(60), || {
        let got = runtime
            .block_on(async {
                Admin::connect(&west).await.unwrap().committed_offsets("billing", "east.orders", 3).await
            })
            .ok()?;
        let mut got: Vec<(i32, i64)> = got.into_iter().filter(|(_, o)| *o >= 0).collect();
        got.sort();
        (got.len() == 3).then_some(got)
    });
    let mut expected = half.clone();
    expected.sort();
    assert_eq!(translated, expected, "offsets copied 1:1 translate exactly");
    assert!(connect.sigterm().success());

    // A graceful restart copies only what came since.
    produce_with_headers(&east, "orders", 300..400);
    let mut connect = start_connect(&west, &[&config], &[]);
    wait_for("the new records", Duration::from_secs(60), || {
        (read_topic(&west, "east.orders").len() >= 400).then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    assert!(connect.sigterm().success());
    let copied = read_topic(&west, "east.orders");
    assert_eq!(copied.len(), 400, "nothing copied twice");
    assert_eq!(by_partition(&copied), by_partition(&read_topic(&east, "orders")));
    let topics: Vec<String> = runtime.block_on(async {
        Admin::connect(&west).await.unwrap().topics(None).await.unwrap().into_iter().map(|t| t.name).collect()
    });
    assert!(!topics.iter().any(|t| t.contains("audit")), "{topics:?}");
    assert!(topics.contains(&"mm2-offset-syncs.east.internal".to_string()), "{topics:?}");
}
