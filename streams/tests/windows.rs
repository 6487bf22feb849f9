//! Golden tests of window semantics: boundaries, grace, late records, emit-final,
//! session merging, sliding windows.

use std::time::Duration;

use headwater_streams::serde::{I64, Nullable, Utf8};
use headwater_streams::test_driver::TopologyTestDriver;
use headwater_streams::{
    Consumed, EmitStrategy, Grouped, Materialized, Produced, SessionWindows, SlidingWindows, StreamsBuilder,
    TimeWindows, Window, Windowed,
};

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

type Out = Vec<(String, Window, Option<i64>)>;

fn windowed_counts(driver: &mut TopologyTestDriver) -> Out {
    let out = driver.output_topic("out", headwater_streams::WindowedSerde(Utf8), Nullable(I64));
    driver
        .read_key_values(&out)
        .unwrap()
        .into_iter()
        .map(|(k, v): (Windowed<String>, Option<i64>)| (k.key, k.window, v))
        .collect()
}

fn w(start: i64, end: i64) -> Window {
    Window { start, end }
}

fn k(v: &str) -> String {
    v.to_string()
}

fn tumbling(emit: EmitStrategy, grace: u64) -> TopologyTestDriver {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(Utf8, Utf8))
        .group_by_key(Grouped::with(Utf8, Utf8))
        .windowed_by(TimeWindows::of(ms(10)).grace(ms(grace)))
        .emit(emit)
        .count(Materialized::as_store("counts"))
        .to("out", Produced::with(headwater_streams::WindowedSerde(Utf8), I64));
    TopologyTestDriver::new(builder.build().unwrap()).unwrap()
}

#[test]
fn tumbling_windows_emit_each_update_and_drop_records_after_grace() {
    let mut driver = tumbling(EmitStrategy::OnWindowUpdate, 5);
    let inp = driver.input_topic("in", Utf8, Utf8);
    driver.pipe(&inp, k("a"), k("x"), 0).unwrap();
    driver.pipe(&inp, k("a"), k("x"), 9).unwrap(); // still [0, 10)
    driver.pipe(&inp, k("a"), k("x"), 10).unwrap(); // [10, 20)
    driver.pipe(&inp, k("a"), k("x"), 14).unwrap(); // stream time 14: [0,10) open until 9 + 5
    driver.pipe(&inp, k("a"), k("x"), 3).unwrap(); // late but within grace
    driver.pipe(&inp, k("a"), k("x"), 15).unwrap(); // stream time 15 closes [0, 10)
    driver.pipe(&inp, k("a"), k("x"), 4).unwrap(); // too late: dropped
    assert_eq!(
        windowed_counts(&mut driver),
        vec![
            (k("a"), w(0, 10), Some(1)),
            (k("a"), w(0, 10), Some(2)),
            (k("a"), w(10, 20), Some(1)),
            (k("a"), w(10, 20), Some(2)),
            (k("a"), w(0, 10), Some(3)),
            (k("a"), w(10, 20), Some(3)),
        ]
    );
    assert_eq!(driver.counters().dropped_late, 1);
    // The closed window has left the store; the open one is there.
    assert_eq!(driver.window_fetch("counts", &k("a"), 0, 100, &Utf8, &I64).unwrap(), vec![(10, 3)]);
}

#[test]
fn emit_final_writes_one_result_per_window_when_it_closes() {
    let mut driver = tumbling(EmitStrategy::OnWindowClose, 2);
    let inp = driver.input_topic("in", Utf8, Utf8);
    for (key, t) in [("a", 1), ("b", 2), ("a", 8), ("a", 11), ("a", 5)] {
        driver.pipe(&inp, k(key), k("x"), t).unwrap();
    }
    assert!(windowed_counts(&mut driver).is_empty(), "nothing closed yet: [0,10) is open until 9 + 2");
    driver.pipe(&inp, k("b"), k("x"), 12).unwrap(); // stream time 12 closes [0, 10)
    assert_eq!(windowed_counts(&mut driver), vec![(k("a"), w(0, 10), Some(3)), (k("b"), w(0, 10), Some(1))]);
    driver.pipe(&inp, k("a"), k("x"), 7).unwrap(); // late: dropped, nothing re-emitted
    assert!(windowed_counts(&mut driver).is_empty());
    driver.advance_stream_time(22).unwrap();
    assert_eq!(windowed_counts(&mut driver), vec![(k("a"), w(10, 20), Some(1)), (k("b"), w(10, 20), Some(1))]);
    assert_eq!(driver.counters().dropped_late, 1);
}

#[test]
fn hopping_windows_count_a_record_in_every_window_holding_it() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(Utf8, Utf8))
        .group_by_key(Grouped::with(Utf8, Utf8))
        .windowed_by(TimeWindows::of(ms(10)).advance_by(ms(5)).grace(ms(100)))
        .count(Materialized::new())
        .to("out", Produced::with(headwater_streams::WindowedSerde(Utf8), I64));
    let mut driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    let inp = driver.input_topic("in", Utf8, Utf8);
    driver.pipe(&inp, k("a"), k("x"), 7).unwrap();
    driver.pipe(&inp, k("a"), k("x"), 12).unwrap();
    assert_eq!(
        windowed_counts(&mut driver),
        vec![
            (k("a"), w(0, 10), Some(1)),
            (k("a"), w(5, 15), Some(1)),
            (k("a"), w(5, 15), Some(2)),
            (k("a"), w(10, 20), Some(1)),
        ]
    );
}

fn sessions(emit: EmitStrategy) -> TopologyTestDriver {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(Utf8, Utf8))
        .group_by_key(Grouped::with(Utf8, Utf8))
        .windowed_by_session(SessionWindows::with_inactivity_gap(ms(10)).grace(ms(20)))
        .emit(emit)
        .count(Materialized::as_store("sessions"))
        .to("out", Produced::with(headwater_streams::WindowedSerde(Utf8), I64));
    TopologyTestDriver::new(builder.build().unwrap()).unwrap()
}

#[test]
fn sessions_grow_merge_and_retract_what_they_replace() {
    let mut driver = sessions(EmitStrategy::OnWindowUpdate);
    let inp = driver.input_topic("in", Utf8, Utf8);
    driver.pipe(&inp, k("u"), k("x"), 0).unwrap();
    driver.pipe(&inp, k("u"), k("x"), 5).unwrap(); // extends [0,0] to [0,5]
    driver.pipe(&inp, k("u"), k("x"), 24).unwrap(); // a new session
    driver.pipe(&inp, k("u"), k("x"), 15).unwrap(); // within 10 of both: merges them
    assert_eq!(
        windowed_counts(&mut driver),
        vec![
            (k("u"), w(0, 0), Some(1)),
            (k("u"), w(0, 0), None),
            (k("u"), w(0, 5), Some(2)),
            (k("u"), w(24, 24), Some(1)),
            (k("u"), w(0, 5), None),
            (k("u"), w(24, 24), None),
            (k("u"), w(0, 24), Some(4)),
        ]
    );
    assert_eq!(driver.sessions("sessions", &k("u"), &Utf8, &I64).unwrap(), vec![(w(0, 24), 4)]);
    // Stream time 60: [0,24] is final (24 + 10 + 20 < 60) and leaves the store; a record
    // that would extend it is too late.
    driver.pipe(&inp, k("v"), k("x"), 60).unwrap();
    driver.pipe(&inp, k("u"), k("x"), 35).unwrap();
    assert_eq!(windowed_counts(&mut driver), vec![(k("v"), w(60, 60), Some(1))]);
    assert_eq!(driver.counters().dropped_late, 1);
    assert!(driver.sessions("sessions", &k("u"), &Utf8, &I64).unwrap().is_empty());
}

#[test]
fn final_sessions_are_written_once() {
    let mut driver = sessions(EmitStrategy::OnWindowClose);
    let inp = driver.input_topic("in", Utf8, Utf8);
    for t in [0, 5, 24, 15] {
        driver.pipe(&inp, k("u"), k("x"), t).unwrap();
    }
    assert!(windowed_counts(&mut driver).is_empty());
    driver.advance_stream_time(54).unwrap(); // 24 + 10 + 20 is not before 54
    assert!(windowed_counts(&mut driver).is_empty());
    driver.advance_stream_time(55).unwrap();
    assert_eq!(windowed_counts(&mut driver), vec![(k("u"), w(0, 24), Some(4))]);
}

#[test]
fn sliding_windows_hold_records_at_most_the_time_difference_apart() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(Utf8, I64))
        .group_by_key(Grouped::with(Utf8, I64))
        .windowed_by_sliding(SlidingWindows::with_time_difference_and_grace(ms(10), ms(100)))
        .aggregate(|| 0, |_, v, sum| sum + v, Materialized::as_store("sums").with_value_serde(I64))
        .to("out", Produced::with(headwater_streams::WindowedSerde(Utf8), I64));
    let mut driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    let inp = driver.input_topic("in", Utf8, I64);
    driver.pipe(&inp, k("a"), 1, 10).unwrap();
    assert_eq!(windowed_counts(&mut driver), vec![(k("a"), w(0, 10), Some(1))]);
    driver.pipe(&inp, k("a"), 2, 15).unwrap();
    // Its left window [5,15] holds both; the first record's right window [11,21] is new.
    assert_eq!(windowed_counts(&mut driver), vec![(k("a"), w(5, 15), Some(3)), (k("a"), w(11, 21), Some(2))]);
    driver.pipe(&inp, k("a"), 4, 12).unwrap(); // out of order
    let out = windowed_counts(&mut driver);
    assert_eq!(
        out,
        vec![
            (k("a"), w(2, 12), Some(5)),  // its left window: 10 and 12
            (k("a"), w(5, 15), Some(7)),  // the window ending at 15 now holds 12 too
            (k("a"), w(11, 21), Some(6)), // so does the right window of 10
            (k("a"), w(13, 23), Some(2)), // its own right window: 15 only
        ]
    );
}

#[test]
fn sliding_windows_emit_final_writes_each_window_once_at_close() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(Utf8, I64))
        .group_by_key(Grouped::with(Utf8, I64))
        .windowed_by_sliding(SlidingWindows::with_time_difference_and_grace(ms(10), ms(100)))
        .emit(EmitStrategy::OnWindowClose)
        .aggregate(|| 0, |_, v, sum| sum + v, Materialized::as_store("sums").with_value_serde(I64))
        .to("out", Produced::with(headwater_streams::WindowedSerde(Utf8), I64));
    let mut driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    let inp = driver.input_topic("in", Utf8, I64);
    for (v, t) in [(1, 10), (2, 15), (4, 12)] {
        driver.pipe(&inp, k("a"), v, t).unwrap();
    }
    assert!(windowed_counts(&mut driver).is_empty());
    // Stream time 121: windows ending by 20 are closed (20 + 100 < 121), not [11,21].
    driver.advance_stream_time(121).unwrap();
    assert_eq!(
        windowed_counts(&mut driver),
        vec![(k("a"), w(0, 10), Some(1)), (k("a"), w(2, 12), Some(5)), (k("a"), w(5, 15), Some(7))]
    );
    driver.advance_stream_time(10_000).unwrap();
    assert_eq!(windowed_counts(&mut driver), vec![(k("a"), w(11, 21), Some(6)), (k("a"), w(13, 23), Some(2))]);
    driver.advance_stream_time(20_000).unwrap();
    assert!(windowed_counts(&mut driver).is_empty(), "each window once");
}

#[test]
fn sliding_windows_keep_records_fanned_out_from_one_input_and_accept_records_open_windows_need() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(Utf8, I64))
        .flat_map_values(|v: i64| vec![v, v])
        .group_by_key(Grouped::with(Utf8, I64))
        .windowed_by_sliding(SlidingWindows::with_time_difference_and_grace(ms(10), ms(0)))
        .count(Materialized::as_store("counts"))
        .to("out", Produced::with(headwater_streams::WindowedSerde(Utf8), I64));
    let mut driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    let inp = driver.input_topic("in", Utf8, I64);
    driver.pipe(&inp, k("a"), 1, 20).unwrap();
    // Both copies of the record are buffered: the second sees the first.
    assert_eq!(windowed_counts(&mut driver), vec![(k("a"), w(10, 20), Some(1)), (k("a"), w(10, 20), Some(2))]);
    // 15 is before stream time minus grace, but [10, 20] is still open: it counts.
    driver.pipe(&inp, k("a"), 1, 15).unwrap();
    let out = windowed_counts(&mut driver);
    assert_eq!(out.last(), Some(&(k("a"), w(10, 20), Some(4))), "{out:?}");
    assert_eq!(driver.counters().dropped_late, 0);
}
