//! Per-topic log configuration, with Kafka's names and defaults, so operators' habits and
//! clients' DescribeConfigs / AlterConfigs carry over unchanged.

use std::collections::BTreeMap;

use super::LogError;

/// What happens to old data: deleted by retention, compacted by key, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupPolicy {
    pub delete: bool,
    pub compact: bool,
}

/// One topic's log settings. Every field is a Kafka topic config of the same name.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment past this size.
    pub segment_bytes: u32,
    /// `segment.ms`: roll the active segment once it is this old.
    pub segment_ms: i64,
    /// `segment.index.bytes`: roll when the offset index would grow past this.
    pub segment_index_bytes: u32,
    /// `index.interval.bytes`: bytes of log between two offset index entries.
    pub index_interval_bytes: u32,
    /// `retention.ms`: delete segments whose newest record is older; -1 keeps forever.
    pub retention_ms: i64,
    /// `retention.bytes`: delete the oldest segments while the log is larger; -1 is unbounded.
    pub retention_bytes: i64,
    /// `cleanup.policy`: `delete`, `compact`, or `compact,delete`.
    pub cleanup_policy: CleanupPolicy,
    /// `delete.retention.ms`: how long a compacted topic keeps tombstones.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: records younger than this are not compacted.
    pub min_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`: compact once this share of the log is uncompacted.
    pub min_cleanable_dirty_ratio: f64,
    /// `max.message.bytes`: the largest batch a producer may append.
    pub max_message_bytes: u32,
    /// `flush.messages`: once this many offsets are unflushed, an acks=all produce waits
    /// for the fsync before it is acknowledged. 1, the default here, fsyncs every
    /// acknowledged acks=all write; Kafka's default (unbounded) never does
    /// (`docs/design/0003-acks-and-visibility.md`).
    pub flush_messages: i64,
    /// `flush.ms`: unflushed data older than this is fsynced in the background, whatever
    /// the acks; unbounded by default, as in Kafka.
    pub flush_ms: i64,
    /// `min.insync.replicas`: an acks=all produce needs this many in-sync replicas, or it
    /// is refused with NOT_ENOUGH_REPLICAS (cluster mode; one broker is always enough).
    pub min_insync_replicas: u32,
    /// `unclean.leader.election.enable`: whether a replica outside the ISR may lead when no
    /// in-sync one is left, at the price of losing what only the ISR had. Read by the
    /// controller from the topic's overrides; kept here so it validates and describes.
    pub unclean_leader_election: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3_600_000,
            segment_index_bytes: 10 << 20,
            index_interval_bytes: 4096,
            retention_ms: 7 * 24 * 3_600_000,
            retention_bytes: -1,
            cleanup_policy: CleanupPolicy { delete: true, compact: false },
            delete_retention_ms: 24 * 3_600_000,
            min_compaction_lag_ms: 0,
            min_cleanable_dirty_ratio: 0.5,
            max_message_bytes: 1_048_588,
            flush_messages: 1,
            flush_ms: i64::MAX,
            min_insync_replicas: 1,
            unclean_leader_election: false,
        }
    }
}

/// The names this log understands, in the order DescribeConfigs lists them.
pub const LOG_CONFIG_NAMES: &[&str] = &[
    "cleanup.policy",
    "delete.retention.ms",
    "flush.messages",
    "flush.ms",
    "index.interval.bytes",
    "max.message.bytes",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "min.insync.replicas",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.index.bytes",
    "segment.ms",
    "unclean.leader.election.enable",
];

impl LogConfig {
    /// The defaults with `overrides` (Kafka names and string values) applied.
    ///
    /// # Errors
    /// [`LogError::InvalidConfig`] for an unknown name or a value out of range.
    pub fn from_overrides(overrides: &BTreeMap<String, String>) -> Result<Self, LogError> {
        let mut config = Self::default();
        for (name, value) in overrides {
            config.set(name, value)?;
        }
        Ok(config)
    }

    /// Sets one config by its Kafka name.
    ///
    /// # Errors
    /// [`LogError::InvalidConfig`] for an unknown name or a value out of range.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), LogError> {
        let invalid = |reason: &str| LogError::InvalidConfig {
            name: name.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
        };
        let int = |min: i64, max: i64| -> Result<i64, LogError> {
            let parsed: i64 = value.trim().parse().map_err(|_| invalid("not an integer"))?;
            if parsed < min || parsed > max {
                return Err(invalid(&format!("must be between {min} and {max}")));
            }
            Ok(parsed)
        };
        match name {
            // A segment must hold at least one batch header, and its positions fit in 31 bits
            // (the offset index stores them as u32; Kafka caps at i32::MAX too).
            "segment.bytes" => self.segment_bytes = int(14, i32::MAX as i64)? as u32,
            "segment.ms" => self.segment_ms = int(1, i64::MAX)?,
            "segment.index.bytes" => self.segment_index_bytes = int(8, i32::MAX as i64)? as u32,
            "index.interval.bytes" => self.index_interval_bytes = int(0, i32::MAX as i64)? as u32,
            "retention.ms" => self.retention_ms = int(-1, i64::MAX)?,
            "retention.bytes" => self.retention_bytes = int(-1, i64::MAX)?,
            "delete.retention.ms" => self.delete_retention_ms = int(0, i64::MAX)?,
            "min.compaction.lag.ms" => self.min_compaction_lag_ms = int(0, i64::MAX)?,
            "max.message.bytes" => self.max_message_bytes = int(0, i32::MAX as i64)? as u32,
            "flush.messages" => self.flush_messages = int(1, i64::MAX)?,
            "flush.ms" => self.flush_ms = int(0, i64::MAX)?,
            "min.insync.replicas" => self.min_insync_replicas = int(1, i32::MAX as i64)? as u32,
            "unclean.leader.election.enable" => {
                self.unclean_leader_election = match value.trim().to_ascii_lowercase().as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(invalid("must be true or false")),
                }
            }
            "min.cleanable.dirty.ratio" => {
                let ratio: f64 = value.trim().parse().map_err(|_| invalid("not a number"))?;
                if !(0.0..=1.0).contains(&ratio) {
                    return Err(invalid("must be between 0 and 1"));
                }
                self.min_cleanable_dirty_ratio = ratio;
            }
            "cleanup.policy" => {
                let mut policy = CleanupPolicy { delete: false, compact: false };
                for part in value.split(',').map(str::trim) {
                    match part {
                        "delete" => policy.delete = true,
                        "compact" => policy.compact = true,
                        _ => return Err(invalid("must be delete, compact, or compact,delete")),
                    }
                }
                self.cleanup_policy = policy;
            }
            _ => return Err(invalid("unknown topic config")),
        }
        Ok(())
    }

    /// One config's value as Kafka prints it.
    pub fn get(&self, name: &str) -> Option<String> {
        Some(match name {
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.ms" => self.segment_ms.to_string(),
            "segment.index.bytes" => self.segment_index_bytes.to_string(),
            "index.interval.bytes" => self.index_interval_bytes.to_string(),
            "retention.ms" => self.retention_ms.to_string(),
            "retention.bytes" => self.retention_bytes.to_string(),
            "delete.retention.ms" => self.delete_retention_ms.to_string(),
            "min.compaction.lag.ms" => self.min_compaction_lag_ms.to_string(),
            "max.message.bytes" => self.max_message_bytes.to_string(),
            "flush.messages" => self.flush_messages.to_string(),
            "flush.ms" => self.flush_ms.to_string(),
            "min.insync.replicas" => self.min_insync_replicas.to_string(),
            "unclean.leader.election.enable" => self.unclean_leader_election.to_string(),
            "min.cleanable.dirty.ratio" => self.min_cleanable_dirty_ratio.to_string(),
            "cleanup.policy" => match (self.cleanup_policy.compact, self.cleanup_policy.delete) {
                (true, true) => "compact,delete".to_string(),
                (true, false) => "compact".to_string(),
                _ => "delete".to_string(),
            },
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips_through_set_and_get() {
        let defaults = LogConfig::default();
        for name in LOG_CONFIG_NAMES {
            let value = defaults.get(name).unwrap();
            let mut config = LogConfig::default();
            config.set(name, &value).unwrap();
            assert_eq!(config, defaults, "{name}");
        }
    }

    #[test]
    fn bad_values_are_named_in_the_error() {
        let mut config = LogConfig::default();
        let error = config.set("retention.ms", "soon").unwrap_err().to_string();
        assert!(error.contains("retention.ms") && error.contains("soon"), "{error}");
        assert!(config.set("segment.bytes", "0").is_err());
        assert!(config.set("cleanup.policy", "shred").is_err());
        assert!(config.set("no.such.config", "1").is_err());
        config.set("cleanup.policy", "compact, delete").unwrap();
        assert_eq!(config.cleanup_policy, CleanupPolicy { delete: true, compact: true });
    }
}
