//! Click analytics in event time: clicks per page per minute (tumbling windows) and
//! clicks per user session (session windows), each written once, when its window closes.

use std::time::Duration;

use headwater_streams::serde::{Json, Unit, Utf8};
use headwater_streams::{
    Consumed, EmitStrategy, Grouped, Materialized, Produced, SessionWindows, StreamsBuilder, StreamsError, TimeWindows,
    Topology,
};
use serde::{Deserialize, Serialize};

/// A click event, as JSON: `{"user": "u1", "page": "/home", "ts": 1700000000000}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Click {
    pub user: String,
    pub page: String,
    /// Event time, milliseconds since the epoch.
    pub ts: i64,
}

/// One page's clicks in one minute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageMinute {
    pub page: String,
    pub window_start: i64,
    pub window_end: i64,
    pub clicks: i64,
}

/// One user session: clicks no more than the gap apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub user: String,
    pub start: i64,
    pub end: i64,
    pub clicks: i64,
}

pub const WINDOW: Duration = Duration::from_secs(60);
pub const WINDOW_GRACE: Duration = Duration::from_secs(10);
pub const SESSION_GAP: Duration = Duration::from_secs(300);
pub const SESSION_GRACE: Duration = Duration::from_secs(30);

/// Reads JSON clicks from `input` (event time from their `ts` field) and writes final
/// per-page-minute counts to `pages` and final per-session counts to `sessions`.
///
/// # Errors
/// Never for these operators.
pub fn topology(input: &str, pages: &str, sessions: &str) -> Result<Topology, StreamsError> {
    let builder = StreamsBuilder::new();
    let clicks = builder.stream(
        input,
        Consumed::with(Unit, Json::<Click>::new()).with_timestamp_extractor(|record| {
            // The click's own time. (A value that is not a click never gets here: its
            // deserialization stops the job first, with the record's offset.)
            record.value.as_ref().and_then(|v| serde_json::from_slice::<Click>(v).ok()).map_or(-1, |click| click.ts)
        }),
    );
    clicks
        .group_by(|_, click: &Click| click.page.clone(), Grouped::with(Utf8, Json::<Click>::new()).named("by-page"))
        .windowed_by(TimeWindows::of(WINDOW).grace(WINDOW_GRACE))
        .emit(EmitStrategy::OnWindowClose)
        .count(Materialized::as_store("page-minutes"))
        .to_stream()
        .map(|key, clicks| {
            let minute = PageMinute {
                page: key.key.clone(),
                window_start: key.window.start,
                window_end: key.window.end,
                clicks,
            };
            (key.key, minute)
        })
        .to(pages, Produced::with(Utf8, Json::<PageMinute>::new()));
    clicks
        .group_by(|_, click: &Click| click.user.clone(), Grouped::with(Utf8, Json::<Click>::new()).named("by-user"))
        .windowed_by_session(SessionWindows::with_inactivity_gap(SESSION_GAP).grace(SESSION_GRACE))
        .emit(EmitStrategy::OnWindowClose)
        .count(Materialized::as_store("user-sessions"))
        .to_stream()
        .map(|key, clicks| {
            let session = Session { user: key.key.clone(), start: key.window.start, end: key.window.end, clicks };
            (key.key, session)
        })
        .to(sessions, Produced::with(Utf8, Json::<Session>::new()));
    builder.build()
}
