//! The enrich_orders topology: through the test driver, and on an embedded log.

use std::collections::BTreeMap;
use std::time::Duration;

use headwater_examples::enrich_orders::{Customer, EnrichedOrder, Order, topology};
use headwater_streams::serde::{Json, Utf8};
use headwater_streams::test_driver::TopologyTestDriver;
use headwater_streams::{EmbeddedLog, KafkaStreams, StreamsConfig};

fn order(id: &str, customer: &str, amount_cents: i64) -> Order {
    Order { order_id: id.into(), customer_id: customer.into(), amount_cents }
}

fn enriched(id: &str, customer: &str, amount_cents: i64, who: Option<(&str, &str)>) -> EnrichedOrder {
    EnrichedOrder {
        order_id: id.into(),
        customer_id: customer.into(),
        amount_cents,
        customer_name: who.map(|w| w.0.into()),
        tier: who.map(|w| w.1.into()),
    }
}

#[test]
fn orders_meet_the_customer_as_it_was_when_they_arrived() {
    let mut driver = TopologyTestDriver::new(topology("orders", "customers", "enriched").unwrap()).unwrap();
    let orders = driver.input_topic("orders", Utf8, Json::<Order>::new());
    let customers = driver.input_topic("customers", Utf8, Json::<Customer>::new());
    let out = driver.output_topic("enriched", Utf8, Json::<EnrichedOrder>::new());
    driver.pipe(&orders, "o1".into(), order("o1", "c1", 100), 1).unwrap();
    driver.pipe(&customers, "c1".into(), Customer { name: "Ada".into(), tier: "gold".into() }, 2).unwrap();
    driver.pipe(&orders, "o2".into(), order("o2", "c1", 250), 3).unwrap();
    driver.pipe(&customers, "c1".into(), Customer { name: "Ada".into(), tier: "platinum".into() }, 4).unwrap();
    driver.pipe(&orders, "o3".into(), order("o3", "c1", 75), 5).unwrap();
    driver.pipe_tombstone(&customers, "c1".into(), 6).unwrap();
    driver.pipe(&orders, "o4".into(), order("o4", "c1", 10), 7).unwrap();
    let records = driver.read_all(&out).unwrap();
    let got: Vec<(String, EnrichedOrder)> = records.into_iter().map(|r| (r.key, r.value)).collect();
    assert_eq!(
        got,
        vec![
            ("o1".into(), enriched("o1", "c1", 100, None)),
            ("o2".into(), enriched("o2", "c1", 250, Some(("Ada", "gold")))),
            ("o3".into(), enriched("o3", "c1", 75, Some(("Ada", "platinum")))),
            ("o4".into(), enriched("o4", "c1", 10, None)),
        ]
    );
}

#[test]
fn on_an_embedded_log_the_join_is_co_partitioned_through_the_repartition_topic() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path()).unwrap();
    let compacted = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
    log.create_topic("customers", 3, compacted).unwrap();
    log.create_topic("orders", 2, BTreeMap::new()).unwrap();
    log.create_topic("enriched", 2, BTreeMap::new()).unwrap();
    for (i, id) in ["c0", "c1", "c2", "c3", "c4", "c5"].iter().enumerate() {
        let customer = Customer { name: format!("name-{i}"), tier: "gold".into() };
        let partition = headwater_core::client::partitioner::partition_for_key(id.as_bytes(), 3);
        log.append("customers", partition, &[(Some(id.as_bytes()), Some(json(&customer).as_bytes()), 1)]).unwrap();
    }
    let streams = KafkaStreams::start(
        topology("orders", "customers", "enriched").unwrap(),
        StreamsConfig::embedded("enrich", log.clone()).state_dir(state.path()),
    )
    .unwrap();
    // Orders only after the table is loaded (its tasks start from the beginning).
    assert!(
        streams
            .wait_until(Duration::from_secs(20), |tasks| tasks.iter().map(|t| t.records_processed).sum::<u64>() >= 6)
    );
    for n in 0..20 {
        let o = order(&format!("o{n}"), &format!("c{}", n % 6), n);
        log.append("orders", (n % 2) as i32, &[(Some(o.order_id.as_bytes()), Some(json(&o).as_bytes()), 10)]).unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut seen = BTreeMap::new();
    while seen.len() < 20 {
        assert!(std::time::Instant::now() < deadline, "only {} enriched orders", seen.len());
        seen.clear();
        for p in 0..2 {
            for r in log.read("enriched", p, 0).unwrap() {
                let e: EnrichedOrder = serde_json::from_slice(&r.value.unwrap()).unwrap();
                seen.insert(e.order_id.clone(), e);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    streams.close().unwrap();
    for (id, e) in seen {
        let n: usize = id[1..].parse().unwrap();
        assert_eq!(e.customer_name, Some(format!("name-{}", n % 6)), "{id} met its customer");
    }
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap()
}
