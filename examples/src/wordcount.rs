//! Word count: lines in, `word -> count` (a decimal UTF-8 string) out.

use headwater_streams::serde::{I64Text, Unit, Utf8};
use headwater_streams::{Consumed, Grouped, Materialized, Produced, StreamsBuilder, StreamsError, Topology};

/// Splits lines on whitespace, lowercases, counts per word in the persistent store
/// `word-counts` (repartitioned through `<app-id>-words-repartition`).
///
/// # Errors
/// Never for these operators; kept for the signature of every topology builder.
pub fn topology(input: &str, output: &str) -> Result<Topology, StreamsError> {
    let builder = StreamsBuilder::new();
    builder
        .stream(input, Consumed::with(Unit, Utf8))
        .flat_map_values(|line: String| line.split_whitespace().map(str::to_lowercase).collect::<Vec<_>>())
        .group_by(|_, word: &String| word.clone(), Grouped::with(Utf8, Utf8).named("words"))
        .count(Materialized::as_store("word-counts").persistent())
        .to_stream()
        .to(output, Produced::with(Utf8, I64Text));
    builder.build()
}
