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

/// How a topic's record values are encoded, for tiering's typed columns and SQL
/// (`value.format`, not a Kafka name: Kafka leaves values opaque to the broker).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ValueFormat {
    /// Opaque bytes: tiered files and SQL carry only the `value` column.
    #[default]
    Bytes,
    /// JSON objects: their top-level fields also become typed columns.
    Json,
}

/// A retention limit that is "the same as the total" when unset (KIP-405's -2).
pub const LOCAL_RETENTION_SAME_AS_TOTAL: i64 = -2;

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
    /// `remote.storage.enable` (KIP-405): closed segments are copied to object storage as
    /// Parquet and may then leave local disk. Not allowed on compacted topics, as in Kafka.
    pub remote_storage_enable: bool,
    /// `local.retention.ms`: with remote storage, how long an uploaded segment stays on
    /// local disk; -2 means `retention.ms`, -1 forever.
    pub local_retention_ms: i64,
    /// `local.retention.bytes`: with remote storage, how much uploaded data stays on local
    /// disk; -2 means `retention.bytes`, -1 unbounded.
    pub local_retention_bytes: i64,
    /// `value.format`: `bytes` (opaque) or `json` (typed columns in tiered files and SQL).
    pub value_format: ValueFormat,
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
            remote_storage_enable: false,
            local_retention_ms: LOCAL_RETENTION_SAME_AS_TOTAL,
            local_retention_bytes: LOCAL_RETENTION_SAME_AS_TOTAL,
            value_format: ValueFormat::Bytes,
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
    "local.retention.bytes",
    "local.retention.ms",
    "max.message.bytes",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "min.insync.replicas",
    "remote.storage.enable",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.index.bytes",
    "segment.ms",
    "unclean.leader.election.enable",
    "value.format",
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
        config.validate()?;
        Ok(config)
    }

    /// A topic's effective config: broker-wide `defaults` under the topic's `overrides`.
    /// A broker-wide `remote.storage.enable` skips compacted topics (their internal ones
    /// among them), which keep working locally; a topic's own setting is checked as given.
    ///
    /// # Errors
    /// As [`Self::from_overrides`].
    pub fn merged(defaults: &BTreeMap<String, String>, overrides: &BTreeMap<String, String>) -> Result<Self, LogError> {
        let mut merged = defaults.clone();
        merged.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
        if !overrides.contains_key("remote.storage.enable")
            && merged.get("cleanup.policy").is_some_and(|p| p.contains("compact"))
        {
            merged.remove("remote.storage.enable");
        }
        Self::from_overrides(&merged)
    }

    /// The checks that involve more than one config.
    ///
    /// # Errors
    /// [`LogError::InvalidConfig`] naming the config that conflicts.
    pub fn validate(&self) -> Result<(), LogError> {
        let invalid = |name: &str, value: String, reason: &str| {
            Err(LogError::InvalidConfig { name: name.to_string(), value, reason: reason.to_string() })
        };
        // Kafka refuses tiering for compacted topics: compaction rewrites old segments,
        // which remote storage keeps as they were uploaded.
        if self.remote_storage_enable && self.cleanup_policy.compact {
            return invalid(
                "remote.storage.enable",
                "true".into(),
                "remote storage is not supported for topics with cleanup.policy=compact",
            );
        }
        let limit = |local: i64, total: i64| local < 0 || total < 0 || local <= total;
        if !limit(self.local_retention_ms, self.retention_ms) {
            return invalid(
                "local.retention.ms",
                self.local_retention_ms.to_string(),
                "must not be larger than retention.ms",
            );
        }
        if !limit(self.local_retention_bytes, self.retention_bytes) {
            return invalid(
                "local.retention.bytes",
                self.local_retention_bytes.to_string(),
                "must not be larger than retention.bytes",
            );
        }
        Ok(())
    }

    /// `local.retention.ms` with -2 resolved to `retention.ms`.
    pub fn effective_local_retention_ms(&self) -> i64 {
        if self.local_retention_ms == LOCAL_RETENTION_SAME_AS_TOTAL {
            self.retention_ms
        } else {
            self.local_retention_ms
        }
    }

    /// `local.retention.bytes` with -2 resolved to `retention.bytes`.
    pub fn effective_local_retention_bytes(&self) -> i64 {
        if self.local_retention_bytes == LOCAL_RETENTION_SAME_AS_TOTAL {
            self.retention_bytes
        } else {
            self.local_retention_bytes
        }
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
        let boolean = || match value.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(invalid("must be true or false")),
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
            "unclean.leader.election.enable" => self.unclean_leader_election = boolean()?,
            "remote.storage.enable" => self.remote_storage_enable = boolean()?,
            "local.retention.ms" => self.local_retention_ms = int(-2, i64::MAX)?,
            "local.retention.bytes" => self.local_retention_bytes = int(-2, i64::MAX)?,
            "value.format" => {
                self.value_format = match value.trim().to_ascii_lowercase().as_str() {
                    "bytes" => ValueFormat::Bytes,
                    "json" => ValueFormat::Json,
                    _ => return Err(invalid("must be bytes or json")),
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
            "remote.storage.enable" => self.remote_storage_enable.to_string(),
            "local.retention.ms" => self.local_retention_ms.to_string(),
            "local.retention.bytes" => self.local_retention_bytes.to_string(),
            "value.format" => match self.value_format {
                ValueFormat::Bytes => "bytes".to_string(),
                ValueFormat::Json => "json".to_string(),
            },
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

    #[test]
    fn tiering_configs_are_checked_together() {
        let overrides = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let compacted = overrides(&[("remote.storage.enable", "true"), ("cleanup.policy", "compact")]);
        let error = LogConfig::from_overrides(&compacted).unwrap_err().to_string();
        assert!(error.contains("remote.storage.enable") && error.contains("compact"), "{error}");
        let longer = overrides(&[("retention.ms", "1000"), ("local.retention.ms", "2000")]);
        assert!(LogConfig::from_overrides(&longer).unwrap_err().to_string().contains("local.retention.ms"));
        let tiered = overrides(&[("remote.storage.enable", "true"), ("retention.bytes", "100")]);
        let config = LogConfig::from_overrides(&tiered).unwrap();
        assert!(config.remote_storage_enable);
        assert_eq!(config.effective_local_retention_bytes(), 100);
        assert_eq!(config.effective_local_retention_ms(), config.retention_ms);
        assert!(LogConfig::from_overrides(&overrides(&[("value.format", "avro")])).is_err());
    }
}
