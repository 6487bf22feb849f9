//! The runtime on an embedded log: no server. Counts stay exact across a graceful
//! restart, with state restored from the changelog (in memory) or the store's checkpoint
//! (persistent).

use std::collections::BTreeMap;
use std::time::Duration;

use headwater_streams::serde::{I64Text, Unit, Utf8};
use headwater_streams::{
    Consumed, EmbeddedLog, Grouped, KafkaStreams, Materialized, Produced, StoreKind, StreamsBuilder, StreamsConfig,
    Topology,
};

fn wordcount(kind: StoreKind) -> Topology {
    let builder = StreamsBuilder::new();
    let store = match kind {
        StoreKind::InMemory => Materialized::as_store("counts").in_memory(),
        StoreKind::Persistent => Materialized::as_store("counts").persistent(),
    };
    builder
        .stream("lines", Consumed::with(Unit, Utf8))
        .flat_map_values(|line: String| line.split_whitespace().map(str::to_lowercase).collect::<Vec<_>>())
        .group_by(|_, w: &String| w.clone(), Grouped::with(Utf8, Utf8))
        .count(store)
        .to_stream()
        .to("counts", Produced::with(Utf8, I64Text));
    builder.build().unwrap()
}

/// The last count written for each word, and every count in order.
fn read_counts(log: &EmbeddedLog) -> (BTreeMap<String, i64>, BTreeMap<String, Vec<i64>>) {
    let mut last = BTreeMap::new();
    let mut all: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for partition in 0..2 {
        for record in log.read("counts", partition, 0).unwrap() {
            let word = String::from_utf8(record.key.unwrap().to_vec()).unwrap();
            let count: i64 = std::str::from_utf8(&record.value.unwrap()).unwrap().parse().unwrap();
            last.insert(word.clone(), count);
            all.entry(word).or_default().push(count);
        }
    }
    (last, all)
}

fn append_lines(log: &EmbeddedLog, lines: &[&str], expected: &mut BTreeMap<String, i64>) {
    for (i, line) in lines.iter().enumerate() {
        log.append("lines", (i % 3) as i32, &[(None, Some(line.as_bytes()), 1_000 + i as i64)]).unwrap();
        for word in line.split_whitespace() {
            *expected.entry(word.to_lowercase()).or_default() += 1;
        }
    }
}

fn run_until(log: &EmbeddedLog, config: StreamsConfig, kind: StoreKind, expected: &BTreeMap<String, i64>) {
    let streams = KafkaStreams::start(wordcount(kind), config).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while read_counts(log).0 != *expected {
        assert!(std::time::Instant::now() < deadline, "counts {:?} never reached {expected:?}", read_counts(log).0);
        assert!(streams.is_running(), "the application stopped: {:?}", streams.failure());
        std::thread::sleep(Duration::from_millis(20));
    }
    let metrics = streams.task_metrics();
    assert!(metrics.iter().map(|m| m.records_processed).sum::<u64>() > 0, "{metrics:?}");
    streams.close().unwrap();
}

fn restart_keeps_counts_exact(kind: StoreKind) {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path()).unwrap();
    log.create_topic("lines", 3, BTreeMap::new()).unwrap();
    log.create_topic("counts", 2, BTreeMap::new()).unwrap();
    let config = || StreamsConfig::embedded("wc", log.clone()).state_dir(state.path()).num_stream_threads(2);
    let mut expected = BTreeMap::new();
    append_lines(&log, &["the quick brown fox", "The lazy dog", "fox and dog"], &mut expected);
    run_until(&log, config(), kind, &expected);
    // A second run starts from the committed offsets, with the counts restored.
    append_lines(&log, &["the end", "FOX"], &mut expected);
    run_until(&log, config(), kind, &expected);
    let (last, all) = read_counts(&log);
    assert_eq!(last["the"], 3);
    assert_eq!(last["fox"], 3);
    for (word, counts) in all {
        let want: Vec<i64> = (1..=expected[&word]).collect();
        assert_eq!(counts, want, "{word}: every count once, in order");
    }
    assert_eq!(log.committed("wc", "lines", 0), Some(2), "committed offsets are in __consumer_offsets");
}

#[test]
fn in_memory_state_is_restored_from_the_changelog() {
    restart_keeps_counts_exact(StoreKind::InMemory);
}

#[test]
fn persistent_state_resumes_from_its_checkpoint() {
    restart_keeps_counts_exact(StoreKind::Persistent);
}

#[test]
fn a_missing_source_topic_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path()).unwrap();
    let streams = KafkaStreams::start(wordcount(StoreKind::InMemory), StreamsConfig::embedded("wc", log)).unwrap();
    let error = streams.close().unwrap_err().to_string();
    assert!(error.contains("lines") && error.contains("does not exist"), "{error}");
}

/// Closed windows stay closed across a restart: stream time is kept with the state, so a
/// late record after the restart is dropped rather than opening its window again.
#[test]
fn stream_time_survives_a_restart() {
    use headwater_streams::serde::I64;
    use headwater_streams::{EmitStrategy, TimeWindows, WindowedSerde};
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path()).unwrap();
    log.create_topic("clicks", 1, BTreeMap::new()).unwrap();
    log.create_topic("final", 1, BTreeMap::new()).unwrap();
    let topology = || {
        let builder = StreamsBuilder::new();
        builder
            .stream("clicks", Consumed::with(Utf8, Utf8))
            .group_by_key(Grouped::with(Utf8, Utf8))
            .windowed_by(TimeWindows::of(Duration::from_millis(10)))
            .emit(EmitStrategy::OnWindowClose)
            .count(Materialized::as_store("counts"))
            .to("final", Produced::with(WindowedSerde(Utf8), I64));
        builder.build().unwrap()
    };
    let click = |t: i64| log.append("clicks", 0, &[(Some(b"k".as_slice()), Some(b"x".as_slice()), t)]).unwrap();
    let results = || log.read("final", 0, 0).unwrap().len();
    let run = |want: usize| {
        let streams = KafkaStreams::start(topology(), StreamsConfig::embedded("st", log.clone())).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while results() < want {
            assert!(std::time::Instant::now() < deadline, "{} results, not {want}", results());
            std::thread::sleep(Duration::from_millis(20));
        }
        streams.close().unwrap();
    };
    click(1);
    click(5);
    click(25); // closes [0, 10)
    run(1);
    click(3); // late for [0, 10), which closed before the restart
    click(41); // closes [20, 30)
    run(2);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(results(), 2, "[0, 10) written once, [20, 30) once; the late click opened nothing");
}

#[test]
fn exactly_once_on_the_embedded_log_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path()).unwrap();
    let config = StreamsConfig::embedded("eos-embedded", log).exactly_once();
    let error = KafkaStreams::start(wordcount(StoreKind::InMemory), config).unwrap_err();
    assert!(error.to_string().contains("exactly_once_v2 needs a broker"), "{error}");
}
