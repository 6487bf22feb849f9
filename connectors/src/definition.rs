//! A connector's settings table, like Kafka's `ConfigDef`: each setting's name, type,
//! default and documentation. It validates configs (every problem at once, as Kafka
//! Connect's validate endpoint reports them) and describes the plugin to people.

use crate::config::{ConfigError, ConnectorConfig};

/// A setting's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Kind {
    String,
    Int,
    Long,
    Boolean,
    /// Comma-separated.
    List,
    /// Never shown back.
    Password,
}

/// One setting a connector takes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Setting {
    pub name: &'static str,
    #[serde(rename = "type")]
    pub kind: Kind,
    /// `None`: required.
    pub default: Option<&'static str>,
    #[serde(rename = "documentation")]
    pub doc: &'static str,
}

impl Setting {
    pub const fn required(name: &'static str, kind: Kind, doc: &'static str) -> Self {
        Self { name, kind, default: None, doc }
    }

    pub const fn optional(name: &'static str, kind: Kind, default: &'static str, doc: &'static str) -> Self {
        Self { name, kind, default: Some(default), doc }
    }
}

/// A connector's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ConfigDef {
    pub settings: Vec<Setting>,
}

impl ConfigDef {
    pub fn new(settings: impl IntoIterator<Item = Setting>) -> Self {
        Self { settings: settings.into_iter().collect() }
    }

    /// Every setting that is missing or does not parse as its type. A setting may have
    /// alternatives separated by `|` in its name (`path|file`): one of them suffices.
    pub fn validate(&self, config: &ConnectorConfig) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        for setting in &self.settings {
            let mut names = setting.name.split('|');
            let primary = names.next().unwrap_or(setting.name);
            let given = std::iter::once(primary).chain(names).find_map(|n| config.get(n).map(|v| (n, v)));
            let Some((name, value)) = given else {
                if setting.default.is_none() {
                    errors.push(ConfigError::Missing { connector: config.name.clone(), name: primary.to_string() });
                }
                continue;
            };
            let value = value.trim();
            let ok = match setting.kind {
                Kind::String | Kind::Password => !(setting.default.is_none() && value.is_empty()),
                Kind::Int => value.parse::<i32>().is_ok(),
                Kind::Long => value.parse::<i64>().is_ok(),
                Kind::Boolean => matches!(value, "true" | "false"),
                Kind::List => setting.default.is_some() || !config.list(name).is_empty(),
            };
            if !ok {
                let reason = match setting.kind {
                    Kind::Int => "not a 32-bit integer",
                    Kind::Long => "not an integer",
                    Kind::Boolean => "must be true or false",
                    _ => "must not be empty",
                };
                errors.push(config.invalid(name, reason));
            }
        }
        errors
    }

    /// A numeric setting (validated already), or `default` when neither it nor its
    /// table default parses.
    pub fn number<T: std::str::FromStr>(&self, config: &ConnectorConfig, name: &str, default: T) -> T {
        self.value(config, name).and_then(|v| v.trim().parse().ok()).unwrap_or(default)
    }

    /// Whether a boolean setting (or its default) is `true`.
    pub fn flag(&self, config: &ConnectorConfig, name: &str) -> bool {
        self.value(config, name).is_some_and(|v| v.trim() == "true")
    }

    /// The value of a setting (or its alternatives), or its default.
    pub fn value<'a>(&self, config: &'a ConnectorConfig, name: &str) -> Option<&'a str> {
        let setting = self.settings.iter().find(|s| s.name == name || s.name.split('|').any(|n| n == name));
        match setting {
            Some(setting) => setting.name.split('|').find_map(|n| config.get(n)).or(setting.default),
            None => config.get(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_reported_once() {
        let def = ConfigDef::new([
            Setting::required("path|file", Kind::String, "the file"),
            Setting::required("topic", Kind::String, "the topic"),
            Setting::optional("batch.size", Kind::Int, "2000", "lines per poll"),
            Setting::optional("tail", Kind::Boolean, "true", "keep reading"),
        ]);
        let config = crate::config::test_config("file-source", &[("file", "/tmp/x"), ("batch.size", "many")]);
        let errors: Vec<String> = def.validate(&config).iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("missing required setting topic"));
        assert!(errors[1].contains("batch.size") && errors[1].contains("32-bit"));
        assert_eq!(def.value(&config, "path"), Some("/tmp/x"), "the alternative name counts");
        assert_eq!(def.value(&config, "tail"), Some("true"), "the default");
    }
}
