//! `type = "kafka"`: the `[destination]` table of a Kafka destination, its validation (no I/O)
//! and its preflight (secret, CA, certificate and key files read before the producer starts).
//!
//! What is fixed, not configurable, because the delivery contract depends on it: the producer
//! is idempotent (`enable.idempotence = true`) and waits for every in-sync replica
//! (`acks = all`). What the operator chooses: brokers, topic, record key template, compression,
//! TLS and SASL (PLAIN, SCRAM-SHA-256/512), and the timeout that bounds one delivery attempt.
//!
//! Kept in its own file like `amqp.rs`, so the kind is added with a few lines in shared files.

use std::path::{Path, PathBuf};

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::destination::{Destination, DestinationTable};
use super::validate::{check_host_port, within};
use super::{warn_if_world_readable, ConfigError};
use crate::format::Format;
use crate::sink::route::RoutingKey;

/// `[destination] timeout_secs`: librdkafka's `message.timeout.ms`, the bound of one attempt.
pub const TIMEOUT_SECS: std::ops::RangeInclusive<u64> = 1..=300;
/// `[destination] linger_ms`.
pub const LINGER_MS: std::ops::RangeInclusive<u64> = 0..=1000;
/// `[destination] batch_records` (librdkafka's `batch.num.messages` bounds).
pub const BATCH_RECORDS: std::ops::RangeInclusive<u64> = 1..=1_000_000;
/// `[destination] message_max_bytes` (librdkafka's own bounds).
pub const MESSAGE_MAX_BYTES: std::ops::RangeInclusive<u64> = 1000..=1_000_000_000;
/// `[destination] max_unknown_topic`.
pub const MAX_UNKNOWN_TOPIC: std::ops::RangeInclusive<u32> = 1..=1000;
/// Kafka's limit for topic names.
pub const TOPIC_MAX: usize = 249;

/// `type = "kafka"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaDestination {
    #[serde(rename = "type", default)]
    _type: IgnoredAny,
    #[serde(default = "default_format")]
    pub format: Format,
    /// `host:port` of one or more brokers (the rest of the cluster is discovered).
    pub bootstrap_servers: Vec<String>,
    pub topic: String,
    /// Record key template (fields as in an AMQP routing key); the cluster name by default, so
    /// one cluster's events keep their order within one partition.
    #[serde(default = "default_key")]
    pub key: String,
    #[serde(default = "default_compression")]
    pub compression: Compression,
    #[serde(default)]
    pub tls: bool,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// SASL mechanism; with `user` and `password_file`.
    pub sasl_mechanism: Option<SaslMechanism>,
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
    /// Most records in one produce batch of a partition (librdkafka's `batch.num.messages`).
    #[serde(default = "default_batch_records")]
    pub batch_records: u64,
    #[serde(default = "default_message_max_bytes")]
    pub message_max_bytes: u64,
    /// Attempts at a record whose topic or partition the cluster does not know, before the
    /// record is dead-lettered.
    #[serde(default = "default_max_unknown_topic")]
    pub max_unknown_topic: u32,
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// Receiver tier (docs/scaling.md): each record's value is the line as received (the
    /// envelope), not a rendered event; headers and key as usual, `format` header `envelope`.
    #[serde(default)]
    pub pass_through: bool,
}

/// `compression` (librdkafka's `compression.codec`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

/// `sasl_mechanism`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SaslMechanism {
    Plain,
    #[value(name = "scram-sha-256")]
    ScramSha256,
    #[value(name = "scram-sha-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// librdkafka's `sasl.mechanism` value.
    pub fn librdkafka_name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl Compression {
    /// librdkafka's `compression.codec` value.
    pub fn librdkafka_name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl DestinationTable for KafkaDestination {
    const REQUIRED: &'static [(&'static str, &'static str)] =
        &[("bootstrap_servers", " (a list of \"host:port\")"), ("topic", "")];
}

impl From<KafkaDestination> for Destination {
    fn from(d: KafkaDestination) -> Destination {
        Destination::Kafka(d)
    }
}

fn default_format() -> Format {
    Format::Json
}
fn default_key() -> String {
    "{cluster}".into()
}
fn default_compression() -> Compression {
    Compression::Lz4
}
fn default_timeout_secs() -> u64 {
    30
}
fn default_batch_records() -> u64 {
    10_000
}
fn default_linger_ms() -> u64 {
    5
}
fn default_message_max_bytes() -> u64 {
    1_000_000
}
fn default_max_unknown_topic() -> u32 {
    3
}
fn default_client_id() -> String {
    "qumulo-audit-broker".into()
}

impl KafkaDestination {
    /// `kafka[+tls]://broker,broker/topic` (no secrets), for logs and `check --connect`.
    pub fn describe(&self) -> String {
        let scheme = match (self.tls, self.sasl_mechanism) {
            (false, None) => "kafka",
            (true, None) => "kafka+tls",
            (false, Some(_)) => "kafka+sasl",
            (true, Some(_)) => "kafka+sasl+tls",
        };
        format!("{scheme}://{}/{}", self.bootstrap_servers.join(","), self.topic)
    }

    /// librdkafka's `security.protocol`.
    pub fn security_protocol(&self) -> &'static str {
        match (self.tls, self.sasl_mechanism.is_some()) {
            (false, false) => "plaintext",
            (true, false) => "ssl",
            (false, true) => "sasl_plaintext",
            (true, true) => "sasl_ssl",
        }
    }
}

/// An error about `[destination] key` (the key path lets [`super::Config::locate`] add its line).
fn err(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::new(format!("[destination] {}", message.into())).with_key(format!("destination.{key}"))
}

/// Bounds and syntax (no I/O): run by [`super::validate`].
pub(super) fn validate(d: &KafkaDestination) -> Result<(), ConfigError> {
    within("destination", "timeout_secs", d.timeout_secs, &TIMEOUT_SECS)?;
    within("destination", "linger_ms", d.linger_ms, &LINGER_MS)?;
    within("destination", "batch_records", d.batch_records, &BATCH_RECORDS)?;
    within("destination", "message_max_bytes", d.message_max_bytes, &MESSAGE_MAX_BYTES)?;
    within("destination", "max_unknown_topic", d.max_unknown_topic, &MAX_UNKNOWN_TOPIC)?;
    if d.bootstrap_servers.is_empty() {
        return Err(err("bootstrap_servers", "bootstrap_servers is empty: name at least one \"host:port\""));
    }
    for s in &d.bootstrap_servers {
        check_host_port(s, true).map_err(|m| err("bootstrap_servers", format!("bootstrap_servers: {s:?}: {m}")))?;
    }
    topic_ok(&d.topic).map_err(|m| err("topic", format!("topic = {:?}: {m}", d.topic)))?;
    RoutingKey::parse(&d.key).map_err(|m| err("key", format!("key = {:?}: {m}", d.key)))?;
    if d.client_id.is_empty() || d.client_id.len() > 255 || d.client_id.chars().any(|c| c.is_control()) {
        return Err(err("client_id", "client_id must be 1 to 255 bytes without control characters"));
    }
    match (d.sasl_mechanism.is_some(), d.user.is_some(), d.password_file.is_some()) {
        (true, true, true) | (false, false, false) => {}
        (true, _, _) => {
            let key = if d.user.is_none() { "user" } else { "password_file" };
            return Err(err("sasl_mechanism", format!("sasl_mechanism needs `user` and `password_file` (`{key}` is missing)")));
        }
        (false, user, _) => {
            let key = if user { "user" } else { "password_file" };
            return Err(err(key, format!("{key} needs sasl_mechanism (\"plain\", \"scram-sha-256\" or \"scram-sha-512\")")));
        }
    }
    if d.user.as_deref().is_some_and(str::is_empty) {
        return Err(err("user", "user is empty"));
    }
    if !d.tls {
        for (key, v) in [("ca_file", &d.ca_file), ("cert_file", &d.cert_file), ("key_file", &d.key_file)] {
            if v.is_some() {
                return Err(err(key, format!("{key} needs tls = true")));
            }
        }
    }
    if d.cert_file.is_some() != d.key_file.is_some() {
        let key = if d.cert_file.is_some() { "cert_file" } else { "key_file" };
        return Err(err(key, "`cert_file` and `key_file` go together (the client certificate and its key)"));
    }
    Ok(())
}

/// Kafka's own rule: 1 to 249 of `[A-Za-z0-9._-]`, not `.` or `..`.
fn topic_ok(t: &str) -> Result<(), String> {
    if t.is_empty() || t.len() > TOPIC_MAX || t == "." || t == ".." {
        return Err(format!("must be 1 to {TOPIC_MAX} bytes, not \".\" or \"..\""));
    }
    if let Some(c) = t.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))) {
        return Err(format!("{c:?} is not allowed (letters, digits, `-`, `_`, `.`)"));
    }
    Ok(())
}

/// What the sink reads from disk, read the same way (run by [`super::preflight::check`]).
pub(super) fn preflight(cfg_path: &Path, d: &KafkaDestination) -> Result<(), (String, String)> {
    let cert_and_key = d.cert_file.as_deref().zip(d.key_file.as_deref());
    if super::preflight::broker_files("destination", d.password_file.as_deref(), d.ca_file.as_deref(), cert_and_key)? {
        warn_if_world_readable(cfg_path);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    const BASE: &str = "[destination]\ntype = \"kafka\"\nbootstrap_servers = [\"kafka-1.example.com:9092\", \"[::1]:9093\"]\ntopic = \"qumulo-audit\"\n";

    fn load(extra: &str) -> Result<Config, ConfigError> {
        Config::parse(&format!("{BASE}{extra}"))
    }

    fn kafka(cfg: &Config) -> &KafkaDestination {
        match &cfg.destination {
            Destination::Kafka(d) => d,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let cfg = load("").unwrap();
        let d = kafka(&cfg);
        assert_eq!((d.key.as_str(), d.compression, d.timeout_secs, d.linger_ms), ("{cluster}", Compression::Lz4, 30, 5));
        assert_eq!((d.security_protocol(), d.max_unknown_topic), ("plaintext", 3));
        assert_eq!(d.describe(), "kafka://kafka-1.example.com:9092,[::1]:9093/qumulo-audit");
    }

    #[test]
    fn sasl_and_tls() {
        let cfg = load("tls = true\nsasl_mechanism = \"scram-sha-512\"\nuser = \"u\"\npassword_file = \"/p\"\ncompression = \"zstd\"\n").unwrap();
        let d = kafka(&cfg);
        assert_eq!((d.security_protocol(), d.sasl_mechanism.unwrap().librdkafka_name()), ("sasl_ssl", "SCRAM-SHA-512"));
        assert_eq!(d.compression.librdkafka_name(), "zstd");
    }

    /// Each refused value names its key (the loader adds the key's line from it).
    #[test]
    fn refused_values_name_their_key() {
        for (extra, key, needle) in [
            ("timeout_secs = 0\n", "destination.timeout_secs", "between 1 and 300"),
            ("linger_ms = 5000\n", "destination.linger_ms", "between 0 and 1000"),
            ("sasl_mechanism = \"plain\"\n", "destination.sasl_mechanism", "needs `user` and `password_file`"),
            ("user = \"u\"\n", "destination.user", "user needs sasl_mechanism"),
            ("ca_file = \"/ca\"\n", "destination.ca_file", "ca_file needs tls = true"),
            ("tls = true\ncert_file = \"/c\"\n", "destination.cert_file", "go together"),
            ("key = \"{nope}\"\n", "destination.key", "unknown field {nope}"),
            ("compression = \"brotli\"\n", "", "\"none\", \"gzip\", \"snappy\", \"lz4\" or \"zstd\""),
            ("sasl_mechanism = \"scram\"\n", "", "\"scram-sha-256\""),
        ] {
            let e = load(extra).unwrap_err();
            assert!(e.message.contains(needle), "{extra:?}: {e}");
            if !key.is_empty() {
                assert_eq!(e.key.as_deref(), Some(key), "{extra:?}: {e}");
            }
        }
        let e = load("bogus = 1\n").unwrap_err();
        assert!(e.to_string().contains("bogus") && e.to_string().contains("line 5"), "unknown keys are errors at their line: {e}");
        let bad = |servers: &str, topic: &str| {
            Config::parse(&format!("[destination]\ntype = \"kafka\"\nbootstrap_servers = {servers}\ntopic = \"{topic}\"\n")).unwrap_err().to_string()
        };
        assert!(bad("[]", "t").contains("bootstrap_servers is empty"));
        assert!(bad("[\"kafka\"]", "t").contains("expected host:port"));
        assert!(bad("[\"kafka:0\"]", "t").contains("port \"0\""));
        assert!(bad("[\"k:9092\"]", "a/b").contains("'/' is not allowed"));
        assert!(bad("[\"k:9092\"]", "..").contains("not \".\""));
        let missing = Config::parse("[destination]\ntype = \"kafka\"\ntopic = \"t\"\n").unwrap_err();
        assert!(missing.to_string().contains("needs `bootstrap_servers`"), "{missing}");
    }

    #[test]
    fn preflight_reads_the_password_file() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        let cfg = load(&format!("sasl_mechanism = \"plain\"\nuser = \"u\"\npassword_file = {:?}\n", pw)).unwrap();
        let (key, e) = preflight(Path::new("/x.toml"), kafka(&cfg)).unwrap_err();
        assert_eq!(key, "destination.password_file");
        assert!(e.contains("cannot read secret file"), "{e}");
        std::fs::write(&pw, "secret\n").unwrap();
        assert_eq!(preflight(Path::new("/x.toml"), kafka(&cfg)), Ok(()));
    }
}
