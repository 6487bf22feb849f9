//! Exactly-once source connectors (Kafka's KIP-618): a source task's records and the
//! source offsets they reach are written in one transaction, so a crash neither loses nor
//! repeats a record. The worker turns it on (`--exactly-once-source-support enabled`,
//! Kafka's `exactly.once.source.support`); each connector may insist on it.
//!
//! | Setting | Default | Meaning |
//! | --- | --- | --- |
//! | `exactly.once.support` | `requested` | `required`: refuse to start unless the worker and the connector can deliver exactly once |
//! | `transaction.boundary` | `poll` | `poll`: a transaction per poll that returned records; `interval`: one per `transaction.boundary.interval.ms` |
//! | `transaction.boundary.interval.ms` | `offset.flush.interval.ms` | the interval for `interval` |
//!
//! A connector can deliver exactly once when its task resumes exactly from a committed
//! source offset ([`crate::SourceConnector::exactly_once`]); one that cannot (a push
//! endpoint whose caller has gone) runs at least once on an exactly-once worker, as the
//! log says, unless it asked for `required`, which is refused. Kafka's third boundary,
//! `connector`, needs a connector that draws its own boundaries; no built-in does, so it
//! is refused too.

use std::time::Duration;

use crate::config::{ConfigError, ConnectorConfig};

/// `exactly.once.support`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    Requested,
    Required,
}

/// `transaction.boundary`: when a source task's transaction commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boundary {
    /// After every poll that returned records.
    Poll,
    /// Every interval (`None`: the worker's `offset.flush.interval.ms`).
    Interval(Option<Duration>),
}

/// A source connector's exactly-once settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExactlyOnce {
    pub support: Support,
    pub boundary: Boundary,
}

impl ExactlyOnce {
    /// The settings of a connector config.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for a value Kafka would not take, or the `connector`
    /// boundary, which no built-in connector defines.
    pub fn from_config(config: &ConnectorConfig) -> Result<Self, ConfigError> {
        let support = match config.get("exactly.once.support").map(str::trim) {
            None | Some("requested") => Support::Requested,
            Some("required") => Support::Required,
            Some(_) => return Err(config.invalid("exactly.once.support", "must be requested or required")),
        };
        let interval: Option<u64> = match config.get("transaction.boundary.interval.ms") {
            None => None,
            Some(_) => Some(config.parse_or("transaction.boundary.interval.ms", 0u64)?),
        };
        let boundary = match config.get("transaction.boundary").map(str::trim) {
            None | Some("poll") => Boundary::Poll,
            Some("interval") => Boundary::Interval(interval.map(|ms| Duration::from_millis(ms.max(1)))),
            Some("connector") => {
                return Err(config.invalid(
                    "transaction.boundary",
                    "connector needs a connector that defines its own transaction boundaries; no built-in does",
                ));
            }
            Some(_) => return Err(config.invalid("transaction.boundary", "must be poll, interval or connector")),
        };
        if interval.is_some() && boundary == Boundary::Poll {
            return Err(config.invalid("transaction.boundary.interval.ms", "needs transaction.boundary=interval"));
        }
        Ok(Self { support, boundary })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<ExactlyOnce, String> {
        ExactlyOnce::from_config(&crate::config::test_config("file-source", pairs)).map_err(|e| e.to_string())
    }

    #[test]
    fn settings_take_kafka_names_and_values() {
        assert_eq!(parse(&[]).unwrap(), ExactlyOnce { support: Support::Requested, boundary: Boundary::Poll });
        let interval = parse(&[
            ("exactly.once.support", "required"),
            ("transaction.boundary", "interval"),
            ("transaction.boundary.interval.ms", "250"),
        ])
        .unwrap();
        assert_eq!(interval.support, Support::Required);
        assert_eq!(interval.boundary, Boundary::Interval(Some(Duration::from_millis(250))));
        assert!(parse(&[("exactly.once.support", "maybe")]).unwrap_err().contains("exactly.once.support"));
        assert!(parse(&[("transaction.boundary", "connector")]).unwrap_err().contains("no built-in"));
        assert!(parse(&[("transaction.boundary.interval.ms", "5")]).unwrap_err().contains("interval"));
    }
}
