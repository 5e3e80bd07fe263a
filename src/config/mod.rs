//! The destination configuration: one TOML file per destination (see `docs/configuration.md`).
//!
//! Parsing is strict and typed: `[destination]` is read into the struct of its `type`
//! ([`destination`]), enums by name, every section with `deny_unknown_fields`, so an unknown
//! key, a key of another destination type or a bad value is an error naming the key and its
//! line. [`Config::parse`] then checks every value's bounds and syntax ([`validate`]); what
//! depends on the machine (secret files, CA files, directories that start-up creates) is
//! checked by [`preflight::check`], which changes nothing on disk. `check` and `omprog`
//! start-up both run all of it, so `check` never calls valid what `omprog` refuses, and
//! `omprog` never answers `OK` with a configuration that cannot work.

pub mod amqp;
pub mod destination;
pub mod kafka;
pub mod preflight;
pub mod source;
pub mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::IgnoredAny;
use serde::Deserialize;

pub use amqp::{AmqpClusterOverride, AmqpDestination, AmqpTarget, ExchangeType, QueueType};
pub use kafka::{Compression, KafkaDestination, SaslMechanism};
pub use source::{AmqpSource, KafkaSource, SourceConfig, SourceType};
pub use destination::{
    Destination, DestinationType, FileDestination, Framing, Header, HttpDestination, HttpPreset, Protocol,
    SyslogDestination,
};

use crate::format::Format;
use crate::input::{ClusterSource, ParserOptions, DEFAULT_MAX_LINE};
use crate::journal::DEFAULT_MAX_BYTES as DEFAULT_JOURNAL_MAX_BYTES;

/// A configuration error: one line naming the file, the line and the key where they are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file (set by [`Config::load`]).
    pub file: Option<PathBuf>,
    /// 1-based line of the key (or of the value) at fault.
    pub line: Option<usize>,
    /// The key at fault, `section.key` (`destination.url`, `batch.max_events`).
    pub key: Option<String>,
    /// What is wrong; already names the key (`[destination] url = "x": ...`).
    pub message: String,
}

impl ConfigError {
    pub fn new(message: impl Into<String>) -> ConfigError {
        // One line, whatever the source said (toml's messages can span several).
        let message: String = message.into();
        let message = message.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(": ");
        ConfigError { file: None, line: None, key: None, message }
    }

    pub fn with_key(mut self, key: impl Into<String>) -> ConfigError {
        self.key = Some(key.into());
        self
    }

    pub fn with_line(mut self, line: Option<usize>) -> ConfigError {
        self.line = self.line.or(line);
        self
    }

    pub fn with_file(mut self, file: &Path) -> ConfigError {
        if !file.as_os_str().is_empty() {
            self.file = Some(file.to_path_buf());
        }
        self
    }

    /// A toml error: its message with the line it points at and that line's text.
    pub(crate) fn from_toml(text: &str, e: &toml::de::Error) -> ConfigError {
        let mut err = ConfigError::new(e.message());
        if let Some(span) = e.span() {
            let line = line_at(text, span.start);
            let snippet = text.lines().nth(line - 1).unwrap_or("").trim();
            err.message = format!("{} (at `{snippet}`)", err.message);
            err.line = Some(line);
        }
        err
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}: ", file.display())?;
        }
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The 1-based line of byte `offset` of `text`.
pub(crate) fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// A whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub destination: Destination,
    pub batch: BatchConfig,
    pub retry: RetryConfig,
    pub filter: FilterConfig,
    pub cluster: ClusterConfig,
    pub dead_letter: DeadLetterConfig,
    pub journal: JournalConfig,
    pub stats: StatsConfig,
    pub input: InputConfig,
    /// `[source]`: read by `consume` mode only.
    pub source: Option<SourceConfig>,
    /// Where the config was read from (not a TOML key).
    pub source_path: PathBuf,
    /// The destination's name when it comes from a `broker.toml` section (not a TOML key of the
    /// destination: `[[destination]] name`); else the config file's stem names it.
    pub destination_name: Option<String>,
    /// `[broker] spool_dir` of a `broker.toml` (default [`DEFAULT_SPOOL_DIR`]): the default
    /// journal and state directories live under it.
    pub spool_dir: Option<PathBuf>,
    /// The line of each key present (`section.key`), for messages about values.
    key_lines: BTreeMap<String, usize>,
}

/// The document with the `[destination]` struct of one type and the `[source]` struct of one
/// kind (the second pass).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document<D, S> {
    destination: D,
    #[serde(default)]
    batch: BatchConfig,
    #[serde(default)]
    retry: RetryConfig,
    #[serde(default)]
    filter: FilterConfig,
    #[serde(default)]
    cluster: ClusterConfig,
    #[serde(default)]
    dead_letter: DeadLetterConfig,
    #[serde(default)]
    journal: JournalConfig,
    #[serde(default)]
    stats: StatsConfig,
    #[serde(default)]
    input: InputConfig,
    source: Option<S>,
}

fn parse_document<D: destination::DestinationTable>(text: &str) -> Result<Config, ConfigError> {
    match source::source_type(text)? {
        SourceType::Kafka => parse_sections::<D, KafkaSource>(text),
        SourceType::Amqp => parse_sections::<D, AmqpSource>(text),
    }
}

fn parse_sections<D: destination::DestinationTable, S: Into<SourceConfig> + serde::de::DeserializeOwned>(text: &str) -> Result<Config, ConfigError> {
    let doc: Document<D, S> = toml::from_str(text).map_err(|e| ConfigError::from_toml(text, &e))?;
    Ok(Config {
        destination: doc.destination.into(),
        batch: doc.batch,
        retry: doc.retry,
        filter: doc.filter,
        cluster: doc.cluster,
        dead_letter: doc.dead_letter,
        journal: doc.journal,
        stats: doc.stats,
        input: doc.input,
        source: doc.source.map(Into::into),
        source_path: PathBuf::new(),
        destination_name: None,
        spool_dir: None,
        key_lines: key_lines(text),
    })
}

/// The line of every `section.key` of a document whose top-level entries are all tables, nested
/// tables included (`destination.clusters.east.user`: an override's keys).
pub(crate) fn key_lines(text: &str) -> BTreeMap<String, usize> {
    #[derive(Deserialize)]
    struct Doc(BTreeMap<String, Node>);
    fn walk(prefix: &str, node: &Node, text: &str, lines: &mut BTreeMap<String, usize>) {
        if let Node::Table(keys) = node {
            for (key, value) in keys {
                let path = format!("{prefix}.{}", key.get_ref());
                lines.insert(path.clone(), line_at(text, key.span().start));
                walk(&path, value, text, lines);
            }
        }
    }
    let Ok(Doc(doc)) = toml::from_str::<Doc>(text) else { return BTreeMap::new() };
    let mut lines = BTreeMap::new();
    for (section, node) in &doc {
        walk(section, node, text, &mut lines);
    }
    lines
}

/// A TOML value as far as [`key_lines`] needs it: tables with their keys' spans, anything else
/// skipped.
enum Node {
    Table(BTreeMap<toml::Spanned<String>, Node>),
    Other,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any TOML value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut keys = BTreeMap::new();
                while let Some((k, v)) = map.next_entry::<toml::Spanned<String>, Node>()? {
                    keys.insert(k, v);
                }
                Ok(Node::Table(keys))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Node::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Other)
            }
            fn visit_str<E>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Other)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// A batch is sent once it holds this many events (also at every COMMIT).
    pub max_events: usize,
    /// ... or this many bytes of encoded records.
    pub max_bytes: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig { max_events: 1000, max_bytes: 4 * 1024 * 1024 }
    }
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    pub initial_backoff_ms: u64,
    /// Longest wait; a value below `initial_backoff_ms` means `initial_backoff_ms`.
    pub max_backoff_ms: u64,
    /// How long one COMMIT keeps retrying (with keep-alives to rsyslog) before it answers an
    /// error; rsyslog then suspends the action and re-sends the batch later.
    pub max_elapsed_secs: u64,
    /// Interval of the keep-alive dots written to rsyslog while a delivery is in progress;
    /// keep it well below the action's `confirmTimeout`.
    pub keepalive_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig { initial_backoff_ms: 200, max_backoff_ms: 30_000, max_elapsed_secs: 60, keepalive_ms: 1000 }
    }
}

#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    pub include_protocols: Vec<String>,
    pub exclude_protocols: Vec<String>,
    pub include_operations: Vec<String>,
    pub exclude_operations: Vec<String>,
    pub include_path_prefixes: Vec<String>,
    pub exclude_path_prefixes: Vec<String>,
}

/// `[cluster] source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ClusterSourceKind {
    /// The envelope's cluster, else `name` if set.
    #[default]
    Envelope,
    /// Always `name` unless the envelope names one.
    Fixed,
    /// `<cluster>-<node>` from the sending node's hostname.
    Hostname,
}

#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    pub source: ClusterSourceKind,
    pub name: Option<String>,
}

#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DeadLetterConfig {
    pub path: Option<PathBuf>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    /// Directory of the per-process journals (default: the package's spool directory).
    pub dir: Option<PathBuf>,
    /// Largest journal of one process (one open transaction), bytes.
    pub max_bytes: u64,
    /// fsync the journal before answering COMMIT's deliveries (protects against power loss
    /// too, not only a crash of this program).
    pub fsync: bool,
    /// Turn the journal off (rsyslog issue #2420 is then open: see README "Reliability").
    pub enabled: bool,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig { dir: None, max_bytes: DEFAULT_JOURNAL_MAX_BYTES, fsync: false, enabled: true }
    }
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct StatsConfig {
    /// Seconds between stats lines on stderr (0 = only at exit).
    pub interval_secs: u64,
    /// Directory of the per-instance state files `status` reads (written with each stats
    /// line, at delivery errors and recoveries, and at exit); default `<journal dir>.state`.
    pub state_dir: Option<PathBuf>,
    /// Write no state file (`status` then knows nothing of this destination's counters).
    pub state: bool,
}

impl Default for StatsConfig {
    fn default() -> Self {
        StatsConfig { interval_secs: 60, state_dir: None, state: true }
    }
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct InputConfig {
    pub max_line: usize,
    pub type_cache_entries: usize,
}

impl Default for InputConfig {
    fn default() -> Self {
        InputConfig { max_line: DEFAULT_MAX_LINE, type_cache_entries: crate::classify::DEFAULT_TYPE_CACHE_ENTRIES }
    }
}

pub const DEFAULT_SPOOL_DIR: &str = "/var/spool/qumulo-audit-broker";

impl Config {
    /// Reads, parses and validates a config file (not the machine: see [`preflight::check`]).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(format!("cannot read config {}: {e}", path.display())))?;
        let mut cfg = Config::parse(&text).map_err(|e| e.with_file(path))?;
        cfg.source_path = path.to_path_buf();
        Ok(cfg)
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        if let Ok(table) = text.parse::<toml::Table>() {
            if matches!(table.get("destination"), Some(toml::Value::Array(_))) {
                return Err(ConfigError::new(
                    "this file has [[destination]] sections (a broker.toml): name the one to use with --destination NAME",
                ));
            }
        }
        let kind = destination::destination_type(text)?;
        destination::check_keys(text, kind)?;
        let cfg = kind.parse_document(text)?;
        validate::validate(&cfg).map_err(|e| cfg.locate(e))?;
        if let Some(s) = &cfg.source {
            s.validate().map_err(|e| cfg.locate(e))?;
        }
        Ok(cfg)
    }

    /// Adds the file and the key's line to an error about this config.
    pub fn locate(&self, e: ConfigError) -> ConfigError {
        let line = e.key.as_ref().and_then(|k| self.key_lines.get(k).copied());
        e.with_line(line).with_file(&self.source_path)
    }

    pub fn kind(&self) -> DestinationType {
        self.destination.kind()
    }

    pub fn format(&self) -> Format {
        self.destination.format()
    }

    /// True when the configuration promises that what is acknowledged survives a power cut (a
    /// file destination with `fsync`, or `[journal] fsync`): the dead-letter file is then
    /// synced before an acknowledgement that follows new entries.
    pub fn power_loss_safe(&self) -> bool {
        self.journal.fsync || matches!(&self.destination, Destination::File(f) if f.fsync)
    }

    /// A short name for this destination: the config file's stem (`/etc/.../hec.toml` -> `hec`).
    pub fn name(&self) -> String {
        if let Some(name) = &self.destination_name {
            return name.clone();
        }
        self.source_path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "default".into())
    }

    pub fn parser_options(&self) -> ParserOptions {
        let cluster = match (self.cluster.source, &self.cluster.name) {
            (ClusterSourceKind::Hostname, _) => ClusterSource::FromHostname,
            (_, Some(name)) => ClusterSource::Fixed(name.clone()),
            _ => ClusterSource::None,
        };
        ParserOptions { max_line: self.input.max_line, cluster, type_cache_entries: self.input.type_cache_entries }
    }

    pub fn journal_dir(&self) -> PathBuf {
        self.journal.dir.clone().unwrap_or_else(|| self.spool_dir().join("journal").join(self.name()))
    }

    /// The spool directory: `[broker] spool_dir`, else [`DEFAULT_SPOOL_DIR`].
    pub fn spool_dir(&self) -> PathBuf {
        self.spool_dir.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_SPOOL_DIR))
    }

    /// Where each instance keeps its counters for `status` (`state-*.json`): `[stats]
    /// state_dir`, else beside the journal directory (`<journal dir>.state`: the journal's
    /// parent is the program's, and the journal directory itself holds journals only); none
    /// when `[stats] state = false`, or when the journal is off and no `state_dir` is set.
    pub fn state_dir(&self) -> Option<PathBuf> {
        if !self.stats.state {
            return None;
        }
        match &self.stats.state_dir {
            Some(d) => Some(d.clone()),
            None if self.journal.enabled => {
                let mut d = self.journal_dir().into_os_string();
                d.push(".state");
                Some(PathBuf::from(d))
            }
            None => None,
        }
    }
}

/// Reads a secret (token, password) from a file: trimmed, must not be empty. The secret itself
/// is never logged. ([`preflight::check`] warns about secret files other users can read.)
pub fn read_secret(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(format!("cannot read secret file {}: {e}", path.display())))?;
    let secret = text.trim().to_string();
    if secret.is_empty() {
        return Err(ConfigError::new(format!("secret file {} is empty", path.display())));
    }
    Ok(secret)
}

/// Logs a warning when `path` is readable by users other than its owner and group.
pub fn warn_if_world_readable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o004 != 0 {
            log::warn!(
                "{} holds a secret and is readable by every user (mode {:o}); run: chmod 0640 {}",
                path.display(),
                meta.permissions().mode() & 0o777,
                path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests;
