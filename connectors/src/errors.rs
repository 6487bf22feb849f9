//! What a connector does with a record that fails: Kafka Connect's error-handling
//! settings.
//!
//! | Setting | Default | Meaning |
//! | --- | --- | --- |
//! | `errors.tolerance` | `none` | `none`: a failed record stops the task; `all`: it is skipped (and sent to the dead-letter topic when one is named) |
//! | `errors.deadletterqueue.topic.name` | none | where skipped records go, as they were read, with the failure in headers (sinks) |
//! | `errors.deadletterqueue.context.headers.enable` | false | add the `__connect.errors.*` headers |
//! | `errors.retry.timeout` | 0 | how long a failing operation (a delivery, a conversion) is retried, in ms; -1 forever |
//! | `errors.retry.delay.max.ms` | 60000 | the longest wait between retries (the waits double from 100 ms) |
//! | `errors.log.enable` | false | log each skipped record |

use std::time::Duration;

use crate::config::{ConfigError, ConnectorConfig};

/// Whether a failed record stops the task or is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tolerance {
    None,
    All,
}

/// A connector's error handling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorPolicy {
    pub tolerance: Tolerance,
    pub dead_letter_topic: Option<String>,
    pub context_headers: bool,
    /// `None`: retry forever.
    pub retry_timeout: Option<Duration>,
    pub retry_delay_max: Duration,
    pub log: bool,
}

/// The first wait between retries.
const FIRST_DELAY: Duration = Duration::from_millis(100);

impl ErrorPolicy {
    /// The policy a connector's `errors.*` settings describe.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for a value out of range, or a dead-letter topic without
    /// `errors.tolerance=all` (Kafka refuses that too: nothing would ever reach it).
    pub fn from_config(config: &ConnectorConfig) -> Result<Self, ConfigError> {
        let tolerance = match config.get("errors.tolerance").map(str::trim) {
            None | Some("none") => Tolerance::None,
            Some("all") => Tolerance::All,
            Some(_) => return Err(config.invalid("errors.tolerance", "must be none or all")),
        };
        let dead_letter_topic = config
            .get("errors.deadletterqueue.topic.name")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if dead_letter_topic.is_some() && tolerance == Tolerance::None {
            return Err(config.invalid("errors.deadletterqueue.topic.name", "needs errors.tolerance=all"));
        }
        let timeout: i64 = config.parse_or("errors.retry.timeout", 0)?;
        let retry_timeout = match timeout {
            -1 => None,
            ms if ms >= 0 => Some(Duration::from_millis(ms as u64)),
            _ => return Err(config.invalid("errors.retry.timeout", "must be -1 or at least 0")),
        };
        let delay_max: u64 = config.parse_or("errors.retry.delay.max.ms", 60_000)?;
        Ok(Self {
            tolerance,
            dead_letter_topic,
            context_headers: config.parse_or("errors.deadletterqueue.context.headers.enable", false)?,
            retry_timeout,
            retry_delay_max: Duration::from_millis(delay_max),
            log: config.parse_or("errors.log.enable", false)?,
        })
    }

    /// The wait before retry number `attempt` (1 for the first retry), or `None` once
    /// `elapsed` has used up `errors.retry.timeout`.
    pub fn retry_delay(&self, attempt: u32, elapsed: Duration) -> Option<Duration> {
        if self.retry_timeout.is_some_and(|timeout| elapsed >= timeout) {
            return None;
        }
        let doubled = FIRST_DELAY.saturating_mul(1 << attempt.saturating_sub(1).min(20));
        let delay = doubled.min(self.retry_delay_max);
        // Never wait past the timeout.
        Some(match self.retry_timeout {
            Some(timeout) => delay.min(timeout - elapsed),
            None => delay,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> ConnectorConfig {
        crate::config::test_config("file-sink", pairs)
    }

    #[test]
    fn kafka_connect_defaults_and_settings() {
        let defaults = ErrorPolicy::from_config(&config(&[])).unwrap();
        assert_eq!(defaults.tolerance, Tolerance::None);
        assert_eq!(defaults.retry_timeout, Some(Duration::ZERO));
        assert_eq!(defaults.retry_delay(1, Duration::ZERO), None, "no retries by default");
        let policy = ErrorPolicy::from_config(&config(&[
            ("errors.tolerance", "all"),
            ("errors.deadletterqueue.topic.name", "dlq"),
            ("errors.deadletterqueue.context.headers.enable", "true"),
            ("errors.retry.timeout", "1000"),
            ("errors.retry.delay.max.ms", "300"),
        ]))
        .unwrap();
        assert_eq!(policy.dead_letter_topic.as_deref(), Some("dlq"));
        assert!(policy.context_headers);
        assert_eq!(policy.retry_delay(1, Duration::ZERO), Some(Duration::from_millis(100)));
        assert_eq!(policy.retry_delay(2, Duration::ZERO), Some(Duration::from_millis(200)));
        assert_eq!(policy.retry_delay(5, Duration::ZERO), Some(Duration::from_millis(300)), "capped");
        assert_eq!(policy.retry_delay(5, Duration::from_millis(950)), Some(Duration::from_millis(50)));
        assert_eq!(policy.retry_delay(6, Duration::from_millis(1000)), None, "timed out");
        let forever = ErrorPolicy::from_config(&config(&[("errors.retry.timeout", "-1")])).unwrap();
        assert_eq!(forever.retry_delay(100, Duration::from_secs(3600)), Some(Duration::from_secs(60)));
    }

    #[test]
    fn contradictions_are_refused() {
        let error = |pairs: &[(&str, &str)]| ErrorPolicy::from_config(&config(pairs)).unwrap_err().to_string();
        assert!(error(&[("errors.tolerance", "some")]).contains("errors.tolerance"));
        assert!(error(&[("errors.deadletterqueue.topic.name", "dlq")]).contains("needs errors.tolerance=all"));
        assert!(error(&[("errors.retry.timeout", "-5")]).contains("errors.retry.timeout"));
        assert!(error(&[("errors.log.enable", "maybe")]).contains("errors.log.enable"));
    }
}
