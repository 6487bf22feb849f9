//! A connector's config: Kafka Connect's flat map of string settings (`name`,
//! `connector.class`, `tasks.max`, `topics`, `errors.tolerance`, ...), read from a TOML,
//! JSON or Java `.properties` file.
//!
//! ```text
//!  file-source.toml            name = "lines"  connector.class = "file-source"  [errors] tolerance = "all"
//!  pg-sink.json                {"name": "pg", "config": {"connector.class": "postgres-sink", ...}}
//!  connect-file-source.properties   name=local-file-source / connector.class=FileStreamSource
//! ```
//!
//! TOML tables flatten into dotted names (`[errors] tolerance` is `errors.tolerance`); a
//! setting whose name also starts others' (`value.converter` beside
//! `value.converter.schemas.enable`) is written as one quoted key for the longer names, since
//! TOML cannot make one key both a value and a table. JSON may be Kafka Connect's REST shape (`name` + `config`) or one flat object. Values of
//! any scalar type become strings, as Kafka Connect keeps them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why a config was refused; the message names the file and the setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read connector config {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid connector config {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("connector config {}: unknown file type (use .toml, .json or .properties)", path.display())]
    UnknownFormat { path: PathBuf },
    #[error("connector {connector}: missing required setting {name}")]
    Missing { connector: String, name: String },
    #[error("connector {connector}: invalid value {value:?} for {name}: {reason}")]
    Invalid { connector: String, name: String, value: String, reason: String },
}

/// One connector's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorConfig {
    /// `name`: unique among a worker's connectors.
    pub name: String,
    /// `connector.class`, resolved to a built-in's short name (`file-source`, ...).
    pub class: String,
    /// `tasks.max` (default 1).
    pub tasks_max: u32,
    /// Every setting as given, `name` and `connector.class` included.
    pub settings: BTreeMap<String, String>,
}

/// Kafka Connect's class names for the connectors built in here.
const CLASS_ALIASES: &[(&str, &str)] = &[
    ("FileStreamSource", "file-source"),
    ("FileStreamSourceConnector", "file-source"),
    ("org.apache.kafka.connect.file.FileStreamSourceConnector", "file-source"),
    ("FileStreamSink", "file-sink"),
    ("FileStreamSinkConnector", "file-sink"),
    ("org.apache.kafka.connect.file.FileStreamSinkConnector", "file-sink"),
    ("JdbcSinkConnector", "postgres-sink"),
    ("io.confluent.connect.jdbc.JdbcSinkConnector", "postgres-sink"),
    ("JdbcSourceConnector", "postgres-source"),
    ("io.confluent.connect.jdbc.JdbcSourceConnector", "postgres-source"),
    ("MirrorSourceConnector", "mirror-source"),
    ("org.apache.kafka.connect.mirror.MirrorSourceConnector", "mirror-source"),
];

impl ConnectorConfig {
    /// Reads a config file, by its extension.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file: unreadable, malformed, or without `name` and
    /// `connector.class`.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let parse = |message: String| ConfigError::Parse { path: path.to_path_buf(), message };
        let settings = match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => flatten_toml(&text).map_err(parse)?,
            Some("json") => flatten_json(&text).map_err(parse)?,
            Some("properties") => parse_properties(&text),
            _ => return Err(ConfigError::UnknownFormat { path: path.to_path_buf() }),
        };
        Self::from_settings(settings)
    }

    /// A config from its flat settings.
    ///
    /// # Errors
    /// [`ConfigError::Missing`] without `name` or `connector.class`,
    /// [`ConfigError::Invalid`] for a bad `tasks.max`.
    pub fn from_settings(settings: BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let name = settings
            .get("name")
            .filter(|n| !n.trim().is_empty())
            .cloned()
            .ok_or_else(|| ConfigError::Missing { connector: "(unnamed)".into(), name: "name".into() })?;
        let class = settings
            .get("connector.class")
            .ok_or_else(|| ConfigError::Missing { connector: name.clone(), name: "connector.class".into() })?;
        let class = CLASS_ALIASES.iter().find(|(alias, _)| alias == class).map_or(class.as_str(), |(_, c)| c);
        let mut config = Self { class: class.to_string(), name, tasks_max: 1, settings };
        config.tasks_max = config.parse_or("tasks.max", 1u32)?;
        if config.tasks_max == 0 {
            return Err(config.invalid("tasks.max", "must be at least 1"));
        }
        Ok(config)
    }

    /// A setting, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.settings.get(name).map(String::as_str)
    }

    /// A setting that must be given.
    ///
    /// # Errors
    /// [`ConfigError::Missing`].
    pub fn required(&self, name: &str) -> Result<&str, ConfigError> {
        self.get(name).ok_or_else(|| ConfigError::Missing { connector: self.name.clone(), name: name.into() })
    }

    /// A setting parsed as `T`, or `default` when absent.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when it does not parse.
    pub fn parse_or<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(value) => value.trim().parse().map_err(|_| self.invalid(name, "not a valid value")),
        }
    }

    /// A comma-separated list setting (`topics`), empty entries dropped.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.get(name)
            .map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// The error for a setting whose value is wrong.
    pub fn invalid(&self, name: &str, reason: &str) -> ConfigError {
        ConfigError::Invalid {
            connector: self.name.clone(),
            name: name.to_string(),
            value: self.get(name).unwrap_or_default().to_string(),
            reason: reason.to_string(),
        }
    }
}

fn scalar_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Datetime(d) => Some(d.to_string()),
        toml::Value::Array(items) => {
            let parts: Option<Vec<String>> = items.iter().map(scalar_text).collect();
            parts.map(|p| p.join(","))
        }
        toml::Value::Table(_) => None,
    }
}

fn flatten_toml(text: &str) -> Result<BTreeMap<String, String>, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        let mut message = e.message().to_string();
        if let Some(span) = e.span() {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            message = format!("line {line}: {message}");
        }
        if message.contains("dotted key") || message.contains("duplicate key") {
            // Kafka's names make one setting the prefix of others (`value.converter` and
            // `value.converter.schemas.enable`), which TOML's dotted keys cannot express.
            message.push_str(
                " (a setting whose name is also the start of others is written as one quoted key: \
                 \"value.converter.schemas.enable\" = false)",
            );
        }
        message
    })?;
    let mut out = BTreeMap::new();
    fn walk(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, String>) -> Result<(), String> {
        for (key, value) in table {
            let name = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
            match value {
                toml::Value::Table(inner) => walk(&name, inner, out)?,
                other => {
                    let text = scalar_text(other).ok_or_else(|| format!("{name}: an array may hold only scalars"))?;
                    out.insert(name, text);
                }
            }
        }
        Ok(())
    }
    walk("", &table, &mut out)?;
    Ok(out)
}

fn flatten_json(text: &str) -> Result<BTreeMap<String, String>, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let serde_json::Value::Object(mut object) = value else { return Err("the top level must be an object".into()) };
    // Kafka Connect's REST shape: {"name": ..., "config": {...}}.
    if let Some(serde_json::Value::Object(config)) = object.remove("config") {
        let name = object.remove("name");
        object = config;
        if let Some(name) = name {
            object.entry("name").or_insert(name);
        }
    }
    let mut out = BTreeMap::new();
    fn walk(prefix: &str, object: &serde_json::Map<String, serde_json::Value>, out: &mut BTreeMap<String, String>) {
        for (key, value) in object {
            let name = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
            match value {
                serde_json::Value::Object(inner) => walk(&name, inner, out),
                serde_json::Value::String(s) => {
                    out.insert(name, s.clone());
                }
                serde_json::Value::Null => {}
                serde_json::Value::Array(items) => {
                    let parts: Vec<String> =
                        items.iter().map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string)).collect();
                    out.insert(name, parts.join(","));
                }
                other => {
                    out.insert(name, other.to_string());
                }
            }
        }
    }
    walk("", &object, &mut out);
    Ok(out)
}

/// Java's `.properties` format: `key=value`, `key: value` or `key value`; `#` and `!`
/// comments; a trailing backslash continues the line; `\t`, `\n`, `\uXXXX` and escaped
/// separators in keys and values.
pub fn parse_properties(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut logical = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let line = line.trim_start();
        if logical.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with('!')) {
            continue;
        }
        let trailing_backslashes = line.chars().rev().take_while(|c| *c == '\\').count();
        if trailing_backslashes % 2 == 1 {
            logical.push_str(&line[..line.len() - 1]);
            if lines.peek().is_some() {
                continue;
            }
        } else {
            logical.push_str(line);
        }
        let (key, value) = split_property(&logical);
        out.insert(key, value);
        logical.clear();
    }
    out
}

fn split_property(line: &str) -> (String, String) {
    let mut key = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    push_escaped(&mut key, next, &mut chars);
                }
            }
            '=' | ':' => break,
            c if c.is_whitespace() => {
                // Whitespace ends the key; one '=' or ':' after it is still the separator.
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                if chars.peek().is_some_and(|c| *c == '=' || *c == ':') {
                    chars.next();
                }
                break;
            }
            c => key.push(c),
        }
    }
    while chars.peek().is_some_and(|c| c.is_whitespace()) {
        chars.next();
    }
    let mut value = String::new();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                push_escaped(&mut value, next, &mut chars);
            }
        } else {
            value.push(c);
        }
    }
    (key, value)
}

fn push_escaped(out: &mut String, c: char, rest: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    match c {
        't' => out.push('\t'),
        'n' => out.push('\n'),
        'r' => out.push('\r'),
        'f' => out.push('\u{c}'),
        'u' => {
            let hex: String = (0..4).filter_map(|_| rest.next()).collect();
            match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                Some(decoded) => out.push(decoded),
                None => {
                    out.push('u');
                    out.push_str(&hex);
                }
            }
        }
        other => out.push(other),
    }
}

/// A config named `c` of class `class` with `pairs` as its other settings, for tests.
#[cfg(test)]
pub(crate) fn test_config(class: &str, pairs: &[(&str, &str)]) -> ConnectorConfig {
    let mut settings: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    settings.insert("name".into(), "c".into());
    settings.insert("connector.class".into(), class.into());
    ConnectorConfig::from_settings(settings).expect("a valid test config")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn toml_json_and_properties_give_the_same_settings() {
        let dir = tempfile::tempdir().unwrap();
        let toml = write(
            dir.path(),
            "a.toml",
            "name = \"lines\"\n\"connector.class\" = \"file-source\"\ntopic = \"lines\"\n\"tasks.max\" = 1\n[errors]\ntolerance = \"all\"\n",
        );
        let json = write(
            dir.path(),
            "a.json",
            r#"{"name": "lines", "config": {"connector.class": "file-source", "topic": "lines", "tasks.max": 1, "errors.tolerance": "all"}}"#,
        );
        let properties = write(
            dir.path(),
            "a.properties",
            "# Kafka's sample\nname=lines\nconnector.class=FileStreamSource\ntopic : lines\ntasks.max 1\nerrors.tolerance=all\n",
        );
        let configs: Vec<ConnectorConfig> =
            [toml, json, properties].iter().map(|p| ConnectorConfig::from_file(p).unwrap()).collect();
        for config in &configs {
            assert_eq!((config.name.as_str(), config.class.as_str(), config.tasks_max), ("lines", "file-source", 1));
            assert_eq!(config.get("errors.tolerance"), Some("all"));
            assert_eq!(config.get("topic"), Some("lines"));
        }
    }

    #[test]
    fn properties_follow_javas_rules() {
        let parsed = parse_properties(
            "! comment\n  path = /tmp/a\\\n    b.txt\nkey\\=with\\:seps = v\\u00e9\\tx\nempty=\nlast\\\n",
        );
        assert_eq!(parsed["path"], "/tmp/ab.txt");
        assert_eq!(parsed["key=with:seps"], "vé\tx");
        assert_eq!(parsed["empty"], "");
        assert_eq!(parsed["last"], "");
    }

    #[test]
    fn bad_configs_name_the_file_and_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let missing = write(dir.path(), "m.toml", "name = \"x\"\n");
        let error = ConnectorConfig::from_file(&missing).unwrap_err().to_string();
        assert!(error.contains("connector x") && error.contains("connector.class"), "{error}");
        let broken = write(dir.path(), "b.toml", "name = \n");
        assert!(ConnectorConfig::from_file(&broken).unwrap_err().to_string().contains("b.toml"));
        let tasks =
            write(dir.path(), "t.json", r#"{"name": "t", "connector.class": "file-sink", "tasks.max": "zero"}"#);
        let error = ConnectorConfig::from_file(&tasks).unwrap_err().to_string();
        assert!(error.contains("tasks.max") && error.contains("zero"), "{error}");
        let unknown = write(dir.path(), "u.yaml", "name: u\n");
        assert!(matches!(ConnectorConfig::from_file(&unknown), Err(ConfigError::UnknownFormat { .. })));
        let config = ConnectorConfig::from_file(&write(
            dir.path(),
            "l.toml",
            "name = \"l\"\n\"connector.class\" = \"file-sink\"\ntopics = [\"a\", \"b\"]\n",
        ))
        .unwrap();
        assert_eq!(config.list("topics"), ["a", "b"]);
        assert!(config.required("path").unwrap_err().to_string().contains("missing required setting path"));
    }
}
