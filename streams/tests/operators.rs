//! Every DSL operator through the test driver.

use std::time::Duration;

use headwater_streams::serde::{I64, Json, Nullable, Unit, Utf8};
use headwater_streams::test_driver::TopologyTestDriver;
use headwater_streams::{
    Consumed, Grouped, JoinWindows, Materialized, Produced, Repartitioned, StreamJoined, StreamsBuilder, StreamsError,
};

fn s(v: &str) -> String {
    v.to_string()
}

#[test]
fn stateless_operators_keep_timestamps_and_order() {
    let builder = StreamsBuilder::new();
    let input = builder.stream("in", Consumed::with(Utf8, Utf8));
    input
        .filter(|_, v| !v.is_empty())
        .filter_not(|_, v| v.starts_with('#'))
        .map_values(|v: String| v.to_uppercase())
        .map(|k: String, v: String| (v, k))
        .select_key(|k: &String, _| format!("<{k}>"))
        .peek(|_, _| {})
        .to("mapped", Produced::with(Utf8, Utf8));
    input
        .flat_map_values(|v: String| v.split(' ').map(str::to_string).collect::<Vec<_>>())
        .to("words", Produced::with(Utf8, Utf8));
    input
        .flat_map(|k: String, v: String| vec![(k.clone(), v.len() as i64), (k, 0)])
        .to("lengths", Produced::with(Utf8, I64));
    let mut driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    let inp = driver.input_topic("in", Utf8, Utf8);
    let mapped = driver.output_topic("mapped", Utf8, Utf8);
    let words = driver.output_topic("words", Utf8, Utf8);
    let lengths = driver.output_topic("lengths", Utf8, I64);
    driver.pipe(&inp, s("a"), s("x y"), 5).unwrap();
    driver.pipe(&inp, s("b"), s(""), 6).unwrap();
    driver.pipe(&inp, s("c"), s("#no"), 7).unwrap();
    let out = driver.read_all(&mapped).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].key.as_str(), out[0].value.as_str(), out[0].timestamp), ("<X Y>", "a", 5));
    assert_eq!(
        driver.read_key_values(&words).unwrap(),
        vec![(s("a"), s("x")), (s("a"), s("y")), (s("b"), s("")), (s("c"), s("#no"))]
    );
    assert_eq!(
        driver.read_key_values(&lengths).unwrap(),
        vec![(s("a"), 3), (s("a"), 0), (s("b"), 0), (s("b"), 0), (s("c"), 3), (s("c"), 0)]
    );
    assert_eq!(driver.counters().processed, 3);
}

#[test]
fn split_sends_each_record_to_the_first_matching_branch_and_merge_rejoins() {
    let builder = StreamsBuilder::new();
    let branches = builder
        .stream("in", Consumed::with(Unit, I64))
        .split(vec![Box::new(|_, v: &i64| *v < 0), Box::new(|_, v: &i64| *v % 2 == 0)]);
    assert_eq!(branches.len(), 3);
    branches[0].to("negative", Produced::with(Unit, I64));
    branches[1].to("even", Produced::with(Unit, I64));
    branches[2].to("other", Produced::with(Unit, I64));
    branches[0].merge(&branches[1]).map_values(|v| v * 10).to("merged", Produced::with(Unit, I64));
    let mut driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    let inp = driver.input_topic("in", Unit, I64);
    for v in [-2, 4, 3, -1, 6] {
        driver.pipe(&inp, (), v, 0).unwrap();
    }
    let values = |d: &mut TopologyTestDriver, t: &str| -> Vec<i64> {
        let topic = d.output_topic(t, Unit, I64);
        d.read_key_values(&topic).unwrap().into_iter().map(|(_, v)| v).collect()
    };
    assert_eq!(values(&mut driver, "negative"), vec![-2, -1]);
    assert_eq!(values(&mut driver, "even"), vec![4, 6]);
    assert_eq!(values(&mut driver, "other"), vec![3]);
    assert_eq!(values(&mut driver, "merged"), vec![-20, 40, -10, 60]);
}

#[test]
fn word_count_repartitions_after_a_key_change_and_counts_exactly() {
    let builder = StreamsBuilder::new();
    builder
        .stream("lines", Consumed::with(Unit, Utf8))
        .flat_map_values(|line: String| line.split_whitespace().map(str::to_lowercase).collect::<Vec<_>>())
        .group_by(|_, word: &String| word.clone(), Grouped::with(Utf8, Utf8))
        .count(Materialized::as_store("counts"))
        .to_stream()
        .to("counts", Produced::with(Utf8, I64));
    let topology = builder.build().unwrap();
    let description = topology.to_string();
    assert!(description.contains("Sub-topology: 1"), "the repartition splits the topology:\n{description}");
    assert!(description.contains("<application.id>-counts-repartition"), "{description}");
    let mut driver = TopologyTestDriver::new(topology).unwrap();
    let lines = driver.input_topic("lines", Unit, Utf8);
    let counts = driver.output_topic("counts", Utf8, I64);
    driver.pipe(&lines, (), s("the Quick the"), 1).unwrap();
    driver.pipe(&lines, (), s("THE end"), 2).unwrap();
    assert_eq!(
        driver.read_key_values(&counts).unwrap(),
        vec![(s("the"), 1), (s("quick"), 1), (s("the"), 2), (s("the"), 3), (s("end"), 1)]
    );
    assert_eq!(driver.store_get("counts", &s("the"), &Utf8, &I64).unwrap(), Some(3));
    assert_eq!(driver.store_all("counts", &Utf8, &I64).unwrap(), vec![(s("end"), 1), (s("quick"), 1), (s("the"), 3)]);
    // The changelog has the last value of each key per batch: one record per pipe here.
    assert_eq!(driver.changelog_len("counts"), 4);
}

#[test]
fn reduce_and_aggregate_fold_per_key() {
    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Stats {
        count: i64,
        sum: i64,
    }
    let builder = StreamsBuilder::new();
    let grouped = builder.stream("in", Consumed::with(Utf8, I64)).group_by_key(Grouped::with(Utf8, I64));
    grouped.reduce(|a, b| a.max(b), Materialized::as_store("max")).to_stream().to("max", Produced::with(Utf8, I64));
    grouped
        .aggregate(
            || Stats { count: 0, sum: 0 },
            |_, v, s| Stats { count: s.count + 1, sum: s.sum + v },
            Materialized::as_store("stats").with_value_serde(Json::<Stats>::new()),
        )
        .to_stream()
        .to("stats", Produced::with(Utf8, Json::<Stats>::new()));
    let mut driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    let inp = driver.input_topic("in", Utf8, I64);
    for (k, v) in [("a", 3), ("b", 1), ("a", 7), ("a", 5)] {
        driver.pipe(&inp, s(k), v, 0).unwrap();
    }
    let max = driver.output_topic("max", Utf8, I64);
    assert_eq!(driver.read_key_values(&max).unwrap(), vec![(s("a"), 3), (s("b"), 1), (s("a"), 7), (s("a"), 7)]);
    let stats = driver.output_topic("stats", Utf8, Json::<Stats>::new());
    assert_eq!(driver.read_key_values(&stats).unwrap().last().unwrap(), &(s("a"), Stats { count: 3, sum: 15 }));
}

#[test]
fn tables_filter_map_and_write_tombstones() {
    let builder = StreamsBuilder::new();
    let table = builder.table("users", Consumed::with(Utf8, I64), Materialized::as_store("users"));
    table.filter(|_, age| *age >= 18).map_values(|age| age * 12).to("adult-months", Produced::with(Utf8, I64));
    table.to_stream().to("updates", Produced::with(Utf8, I64));
    let mut driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    let users = driver.input_topic("users", Utf8, I64);
    driver.pipe(&users, s("ann"), 20, 1).unwrap();
    driver.pipe(&users, s("bob"), 10, 2).unwrap();
    driver.pipe(&users, s("ann"), 17, 3).unwrap();
    driver.pipe_tombstone(&users, s("bob"), 4).unwrap();
    let adults = driver.output_topic("adult-months", Utf8, Nullable(I64));
    // Ann becomes a minor: her row leaves the filtered table as a tombstone. Bob was
    // never in it, so his deletion writes nothing.
    assert_eq!(driver.read_key_values(&adults).unwrap(), vec![(s("ann"), Some(240)), (s("ann"), None)]);
    let updates = driver.output_topic("updates", Utf8, I64);
    assert_eq!(driver.read_key_values(&updates).unwrap(), vec![(s("ann"), 20), (s("bob"), 10), (s("ann"), 17)]);
    assert_eq!(driver.store_all("users", &Utf8, &I64).unwrap(), vec![(s("ann"), 17)]);
}

#[test]
fn stream_table_joins_see_the_table_as_of_each_record() {
    let builder = StreamsBuilder::new();
    let prices = builder.table("prices", Consumed::with(Utf8, I64), Materialized::as_store("prices"));
    let orders = builder.stream("orders", Consumed::with(Utf8, I64));
    orders.join(&prices, |qty, price| qty * price).to("totals", Produced::with(Utf8, I64));
    orders.left_join(&prices, |qty, price| price.map_or(-1, |p| qty * p)).to("left", Produced::with(Utf8, I64));
    let mut driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    let (p, o) = (driver.input_topic("prices", Utf8, I64), driver.input_topic("orders", Utf8, I64));
    driver.pipe(&o, s("apple"), 2, 1).unwrap();
    driver.pipe(&p, s("apple"), 10, 2).unwrap();
    driver.pipe(&o, s("apple"), 3, 3).unwrap();
    driver.pipe(&p, s("apple"), 20, 4).unwrap();
    driver.pipe(&o, s("apple"), 1, 5).unwrap();
    let totals = driver.output_topic("totals", Utf8, I64);
    assert_eq!(driver.read_key_values(&totals).unwrap(), vec![(s("apple"), 30), (s("apple"), 20)]);
    let left = driver.output_topic("left", Utf8, I64);
    assert_eq!(driver.read_key_values(&left).unwrap(), vec![(s("apple"), -1), (s("apple"), 30), (s("apple"), 20)]);
}

#[test]
fn table_table_joins_update_on_either_side() {
    let builder = StreamsBuilder::new();
    let a = builder.table("a", Consumed::with(Utf8, I64), Materialized::as_store("a"));
    let b = builder.table("b", Consumed::with(Utf8, I64), Materialized::as_store("b"));
    a.join(&b, |x, y| x + y).to("inner", Produced::with(Utf8, I64));
    a.left_join(&b, |x, y| x + y.copied().unwrap_or(0)).to("left", Produced::with(Utf8, I64));
    a.outer_join(&b, |x, y| x.copied().unwrap_or(0) * 100 + y.copied().unwrap_or(0))
        .to("outer", Produced::with(Utf8, I64));
    let mut driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    let (ta, tb) = (driver.input_topic("a", Utf8, I64), driver.input_topic("b", Utf8, I64));
    driver.pipe(&ta, s("k"), 1, 1).unwrap();
    driver.pipe(&tb, s("k"), 2, 2).unwrap();
    driver.pipe(&ta, s("k"), 3, 3).unwrap();
    driver.pipe_tombstone(&tb, s("k"), 4).unwrap();
    let read = |d: &mut TopologyTestDriver, t: &str| {
        let topic = d.output_topic(t, Utf8, Nullable(I64));
        d.read_key_values(&topic).unwrap().into_iter().map(|(_, v)| v).collect::<Vec<_>>()
    };
    assert_eq!(read(&mut driver, "inner"), vec![Some(3), Some(5), None]);
    assert_eq!(read(&mut driver, "left"), vec![Some(1), Some(3), Some(5), Some(3)]);
    assert_eq!(read(&mut driver, "outer"), vec![Some(100), Some(102), Some(302), Some(300)]);
}

#[test]
fn stream_stream_joins_pair_records_within_the_window() {
    let builder = StreamsBuilder::new();
    let left = builder.stream("left", Consumed::with(Utf8, Utf8));
    let right = builder.stream("right", Consumed::with(Utf8, Utf8));
    let windows = JoinWindows::of(Duration::from_millis(10));
    let serdes = || StreamJoined::with(Utf8, Utf8, Utf8);
    left.join_stream(&right, |l, r| format!("{l}+{r}"), windows, serdes().named("inner"))
        .to("inner", Produced::with(Utf8, Utf8));
    left.left_join_stream(
        &right,
        |l, r| format!("{l}+{}", r.map_or("null", String::as_str)),
        windows,
        serdes().named("left"),
    )
    .to("left-out", Produced::with(Utf8, Utf8));
    left.outer_join_stream(
        &right,
        |l, r| format!("{}+{}", l.map_or("null", String::as_str), r.map_or("null", String::as_str)),
        windows,
        serdes().named("outer"),
    )
    .to("outer", Produced::with(Utf8, Utf8));
    let mut driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    let (l, r) = (driver.input_topic("left", Utf8, Utf8), driver.input_topic("right", Utf8, Utf8));
    driver.pipe(&l, s("k"), s("l1"), 100).unwrap();
    driver.pipe(&r, s("k"), s("r1"), 105).unwrap(); // meets l1
    driver.pipe(&r, s("k"), s("r2"), 120).unwrap(); // 20 after l1: no match
    driver.pipe(&l, s("k"), s("l2"), 125).unwrap(); // meets r2
    driver.pipe(&l, s("x"), s("lonely"), 126).unwrap();
    driver.pipe(&r, s("y"), s("alone"), 127).unwrap();
    // Stream time far enough that every window closed: unmatched records come out.
    driver.advance_stream_time(1_000).unwrap();
    let read = |d: &mut TopologyTestDriver, t: &str| {
        let topic = d.output_topic(t, Utf8, Utf8);
        d.read_all(&topic).unwrap().into_iter().map(|r| (r.key, r.value, r.timestamp)).collect::<Vec<_>>()
    };
    assert_eq!(read(&mut driver, "inner"), vec![(s("k"), s("l1+r1"), 105), (s("k"), s("l2+r2"), 125)]);
    assert_eq!(
        read(&mut driver, "left-out"),
        vec![(s("k"), s("l1+r1"), 105), (s("k"), s("l2+r2"), 125), (s("x"), s("lonely+null"), 126)]
    );
    let outer = read(&mut driver, "outer");
    assert_eq!(outer.len(), 4, "{outer:?}");
    assert!(outer.contains(&(s("x"), s("lonely+null"), 126)));
    assert!(outer.contains(&(s("y"), s("null+alone"), 127)));
}

#[test]
fn a_record_its_serdes_cannot_read_stops_the_task_with_its_position() {
    let builder = StreamsBuilder::new();
    builder.stream("in", Consumed::with(Utf8, I64)).to("out", Produced::with(Utf8, I64));
    let mut driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    let error = driver
        .pipe_raw("in", Some(bytes::Bytes::from_static(b"k")), Some(bytes::Bytes::from_static(b"abc")), 0, Vec::new())
        .unwrap_err();
    match error {
        StreamsError::Deserialize { part: "value", topic, partition: 0, offset: 0, .. } => assert_eq!(topic, "in"),
        other => panic!("unexpected error {other}"),
    }
}

#[test]
fn a_topology_that_cannot_run_is_refused_at_build() {
    let builder = StreamsBuilder::new();
    builder.stream("in", Consumed::with(Utf8, I64));
    builder.stream("in", Consumed::with(Utf8, I64));
    assert!(matches!(builder.build(), Err(StreamsError::Topology(_))));
    let builder = StreamsBuilder::new();
    let stream = builder.stream("in", Consumed::with(Utf8, I64)).map(|k, v| (v, k));
    let table = builder.table("t", Consumed::with(I64, Utf8), Materialized::new());
    stream.join(&table, |a, b| format!("{a}{b}"));
    let error = builder.build().unwrap_err().to_string();
    assert!(error.contains("repartition"), "{error}");
}

#[test]
fn an_explicit_repartition_reads_back_through_its_topic() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(Utf8, I64))
        .map(|k, v| (v, k))
        .repartition(Repartitioned::with(I64, Utf8).named("by-value").with_partitions(4))
        .to("out", Produced::with(I64, Utf8));
    let topology = builder.build().unwrap();
    assert!(topology.to_string().contains("by-value-repartition"));
    let mut driver = TopologyTestDriver::new(topology).unwrap();
    let inp = driver.input_topic("in", Utf8, I64);
    driver.pipe(&inp, s("a"), 1, 9).unwrap();
    let out = driver.output_topic("out", I64, Utf8);
    let records = driver.read_all(&out).unwrap();
    assert_eq!((records[0].key, records[0].value.as_str(), records[0].timestamp), (1, "a", 9));
}
