//! The windowed_clicks topology through the test driver: late clicks within grace count,
//! later ones do not, and each window and session is written once, when it closes.

use headwater_examples::windowed_clicks::{Click, PageMinute, Session, topology};
use headwater_streams::serde::{Json, Unit, Utf8};
use headwater_streams::test_driver::TopologyTestDriver;

const MINUTE: i64 = 60_000;

fn click(user: &str, page: &str, ts: i64) -> Click {
    Click { user: user.into(), page: page.into(), ts }
}

#[test]
fn final_page_minutes_and_sessions() {
    let mut driver = TopologyTestDriver::new(topology("clicks", "pages", "sessions").unwrap()).unwrap();
    let clicks = driver.input_topic("clicks", Unit, Json::<Click>::new());
    let pages = driver.output_topic("pages", Utf8, Json::<PageMinute>::new());
    let sessions = driver.output_topic("sessions", Utf8, Json::<Session>::new());
    let t0 = 1_700_000_040_000; // the start of a minute
    // The record timestamp is ignored: event time is the click's own `ts`.
    for c in [click("ann", "/home", t0), click("bob", "/home", t0 + 5_000), click("ann", "/cart", t0 + 30_000)] {
        driver.pipe(&clicks, (), c, 0).unwrap();
    }
    driver.pipe(&clicks, (), click("ann", "/home", t0 + MINUTE + 5_000), 0).unwrap();
    // Late, but within the 10 s grace of the first minute: still counted.
    driver.pipe(&clicks, (), click("bob", "/home", t0 + 59_000), 0).unwrap();
    assert!(driver.read_all(&pages).unwrap().is_empty(), "the first minute is still open");
    // Stream time passes the first minute's end plus grace: it is final.
    driver.pipe(&clicks, (), click("cy", "/about", t0 + MINUTE + 11_000), 0).unwrap();
    // Too late for its minute now (dropped there), but not for bob's session, which is
    // still open and grows back to it.
    driver.pipe(&clicks, (), click("bob", "/home", t0 + 1_000), 0).unwrap();
    let minutes: Vec<PageMinute> = driver.read_all(&pages).unwrap().into_iter().map(|r| r.value).collect();
    let home = PageMinute { page: "/home".into(), window_start: t0, window_end: t0 + MINUTE, clicks: 3 };
    let cart = PageMinute { page: "/cart".into(), window_start: t0, window_end: t0 + MINUTE, clicks: 1 };
    assert_eq!(minutes, vec![cart, home]);
    // Sessions close 5 min + 30 s after their last click.
    assert!(driver.read_all(&sessions).unwrap().is_empty());
    driver.pipe(&clicks, (), click("dee", "/home", t0 + 20 * MINUTE), 0).unwrap();
    let mut closed: Vec<Session> = driver.read_all(&sessions).unwrap().into_iter().map(|r| r.value).collect();
    closed.sort_by(|a, b| a.user.cmp(&b.user));
    assert_eq!(
        closed,
        vec![
            Session { user: "ann".into(), start: t0, end: t0 + MINUTE + 5_000, clicks: 3 },
            Session { user: "bob".into(), start: t0 + 1_000, end: t0 + 59_000, clicks: 3 },
            Session { user: "cy".into(), start: t0 + MINUTE + 11_000, end: t0 + MINUTE + 11_000, clicks: 1 },
        ]
    );
    assert_eq!(driver.counters().dropped_late, 1, "the last bob click, for its minute");
}

#[test]
fn a_record_that_is_not_a_click_stops_the_job_with_its_offset() {
    let mut driver = TopologyTestDriver::new(topology("clicks", "pages", "sessions").unwrap()).unwrap();
    driver.pipe_raw("clicks", None, Some(bytes::Bytes::from_static(b"not json")), 5, Vec::new()).unwrap_err();
}
