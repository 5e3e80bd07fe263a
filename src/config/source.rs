//! `[source]`: where `consume` mode reads envelopes from (docs/scaling.md). Only `consume` reads
//! this section; `omprog` mode ignores it, so one file can serve both with the same destination.
//!
//! Two kinds, chosen by `type` (default `"kafka"`), each a strict table of its own, parsed in two
//! passes as `[destination]` is ([`source_type`] first, then the kind's struct inside the whole
//! document), so an unknown key or a bad value is an error at its line:
//!
//! * [`KafkaSource`]: a topic read in a consumer group. Its keys mirror the `kafka`
//!   destination's (`bootstrap_servers`, TLS, SASL) so a receiver's and a processor's files read
//!   alike; the consumer group and its memory bound are its own.
//! * [`AmqpSource`]: a RabbitMQ queue read by competing consumers. Its connection keys are the
//!   `amqp` destination's (`server`, `port`, `vhost`, credentials, TLS, heartbeat, timeout) and
//!   resolve into the same [`AmqpTarget`], so the connection code is the sink's
//!   (`crate::sink::amqp::link::Endpoint`); `prefetch` (`basic.qos`) is its memory bound.
//!
//! Validation here is values only (no I/O); the files a source reads (password, CA, client
//! certificate) are read by [`super::preflight::check`], as the destination's are.

use std::path::PathBuf;

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::amqp::{host_ok, name_ok_at, AmqpTarget, HEARTBEAT_SECS, NAME_MAX, TIMEOUT_SECS};
use super::kafka::SaslMechanism;
use super::ConfigError;

/// `[source]` of either kind.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    Kafka(KafkaSource),
    Amqp(AmqpSource),
}

/// `[source] type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceType {
    /// A Kafka topic, in a consumer group.
    Kafka,
    /// A RabbitMQ (AMQP 0-9-1) queue, competing consumers.
    Amqp,
}

/// First pass: the `type` of `[source]` (kafka when the key or the section is absent).
pub(super) fn source_type(text: &str) -> Result<SourceType, ConfigError> {
    #[derive(Deserialize)]
    struct TypeOnly {
        #[serde(rename = "type")]
        kind: Option<SourceType>,
    }
    #[derive(Deserialize)]
    struct Doc {
        source: Option<TypeOnly>,
    }
    // Syntax errors were reported by the destination's first pass: what fails here is the type.
    let doc: Doc = toml::from_str(text).map_err(|e| ConfigError::from_toml(text, &e).with_key("source.type"))?;
    Ok(doc.source.and_then(|s| s.kind).unwrap_or(SourceType::Kafka))
}

impl From<KafkaSource> for SourceConfig {
    fn from(s: KafkaSource) -> SourceConfig {
        SourceConfig::Kafka(s)
    }
}

impl From<AmqpSource> for SourceConfig {
    fn from(s: AmqpSource) -> SourceConfig {
        SourceConfig::Amqp(s)
    }
}

impl SourceConfig {
    /// `kafka` or `amqp`.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::Kafka(_) => "kafka",
            SourceConfig::Amqp(_) => "amqp",
        }
    }

    /// A batch is delivered once it is full (`[batch]`) or its first message waited this long.
    pub fn linger_ms(&self) -> u64 {
        match self {
            SourceConfig::Kafka(s) => s.linger_ms,
            SourceConfig::Amqp(s) => s.linger_ms,
        }
    }

    /// `kafka://brokers/topic group G` or `amqp[s]://user@server:port vhost V queue Q` (no secrets).
    pub fn describe(&self) -> String {
        match self {
            SourceConfig::Kafka(s) => format!("kafka://{}/{} group {:?}", s.bootstrap_servers.join(","), s.topic, s.group_id),
            SourceConfig::Amqp(s) => s.describe(),
        }
    }

    /// Values only (no I/O).
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self {
            SourceConfig::Kafka(s) => s.validate(),
            SourceConfig::Amqp(s) => s.validate(),
        }
    }

    /// The password, CA and client certificate files, for preflight: (password, ca, cert and key).
    #[allow(clippy::type_complexity)]
    pub fn files(&self) -> (Option<&std::path::Path>, Option<&std::path::Path>, Option<(&std::path::Path, &std::path::Path)>) {
        let (pw, ca, cert, key) = match self {
            SourceConfig::Kafka(s) => (&s.password_file, &s.ca_file, &s.cert_file, &s.key_file),
            SourceConfig::Amqp(s) => (&s.password_file, &s.ca_file, &s.cert_file, &s.key_file),
        };
        (pw.as_deref(), ca.as_deref(), cert.as_deref().zip(key.as_deref()))
    }
}

fn err(k: &str, m: String) -> ConfigError {
    ConfigError::new(format!("[source] {k}: {m}")).with_key(format!("source.{k}"))
}

/// `type = "kafka"` (the default).
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct KafkaSource {
    #[serde(rename = "type", default)]
    _type: IgnoredAny,
    pub bootstrap_servers: Vec<String>,
    pub topic: String,
    /// The consumer group: every `consume` process of one group shares the topic's partitions.
    pub group_id: String,
    #[serde(default)]
    pub tls: bool,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub sasl_mechanism: Option<SaslMechanism>,
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    /// The most librdkafka fetches ahead of what was delivered, KiB (its
    /// `queued.max.messages.kbytes`): with the batch being delivered, the memory bound.
    #[serde(default = "default_max_buffer_kbytes")]
    pub max_buffer_kbytes: u64,
    /// A batch is delivered once it is full (`[batch]`) or its first message waited this long.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
    /// How long one batch may keep retrying a down destination before the group considers this
    /// consumer dead and gives its partitions to another (librdkafka's `max.poll.interval.ms`).
    #[serde(default = "default_max_stall_secs")]
    pub max_stall_secs: u64,
    #[serde(default = "default_session_timeout_secs")]
    pub session_timeout_secs: u64,
}

fn default_max_buffer_kbytes() -> u64 {
    16 * 1024
}
fn default_linger_ms() -> u64 {
    200
}
fn default_max_stall_secs() -> u64 {
    600
}
fn default_session_timeout_secs() -> u64 {
    10
}
fn default_vhost() -> String {
    "/".into()
}
fn default_secs() -> u64 {
    30
}

impl KafkaSource {
    pub fn security_protocol(&self) -> &'static str {
        match (self.tls, self.sasl_mechanism.is_some()) {
            (false, false) => "plaintext",
            (true, false) => "ssl",
            (false, true) => "sasl_plaintext",
            (true, true) => "sasl_ssl",
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.bootstrap_servers.is_empty() {
            return Err(err("bootstrap_servers", "needs at least one \"host:port\"".into()));
        }
        for s in &self.bootstrap_servers {
            if let Err(e) = super::validate::check_host_port(s, true) {
                return Err(err("bootstrap_servers", format!("{s:?}: {e}")));
            }
        }
        if self.topic.is_empty() {
            return Err(err("topic", "must not be empty".into()));
        }
        if self.group_id.is_empty() {
            return Err(err("group_id", "must not be empty".into()));
        }
        if !(1..=2_097_151).contains(&self.max_buffer_kbytes) {
            return Err(err("max_buffer_kbytes", "must be 1 to 2097151".into()));
        }
        if !(1..=60_000).contains(&self.linger_ms) {
            return Err(err("linger_ms", "must be 1 to 60000".into()));
        }
        if !(1..=86_400).contains(&self.max_stall_secs) {
            return Err(err("max_stall_secs", "must be 1 to 86400".into()));
        }
        if !(1..=3_600).contains(&self.session_timeout_secs) {
            return Err(err("session_timeout_secs", "must be 1 to 3600".into()));
        }
        if self.sasl_mechanism.is_some() != (self.user.is_some() && self.password_file.is_some()) {
            return Err(err("sasl_mechanism", "sasl_mechanism, user and password_file go together".into()));
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(err("cert_file", "cert_file and key_file go together".into()));
        }
        Ok(())
    }
}

/// `type = "amqp"`: a queue (normally a durable quorum queue the receivers' `amqp` destination
/// declares and binds) read by any number of `consume` processes, each a competing consumer.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct AmqpSource {
    #[serde(rename = "type", default)]
    _type: IgnoredAny,
    /// Broker host name or address.
    pub server: String,
    /// Default 5672, or 5671 with `tls = true`.
    pub port: Option<u16>,
    #[serde(default = "default_vhost")]
    pub vhost: String,
    /// The queue to consume (it must exist: the receivers declare it, `check --connect` checks it).
    pub queue: String,
    /// With `password_file`; both unset means RabbitMQ's `guest` account (loopback only).
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub tls: bool,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    #[serde(default = "default_secs")]
    pub heartbeat_secs: u64,
    /// Connecting, and each call to the broker (qos, consume, ack), must finish within this.
    #[serde(default = "default_secs")]
    pub timeout_secs: u64,
    /// Messages the broker may push ahead of acknowledgement (`basic.qos` prefetch count): the
    /// memory bound. Default: twice `[batch] max_events` (the next batch arrives while one is
    /// delivered), at most 65535. A batch is delivered when it holds this many messages too.
    pub prefetch: Option<u32>,
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
}

/// `[source] prefetch` bounds (AMQP's `prefetch-count` is a 16-bit field).
pub const PREFETCH: std::ops::RangeInclusive<u32> = 1..=65_535;

impl AmqpSource {
    /// The connection settings as the `amqp` destination's connection code takes them.
    pub fn target(&self) -> AmqpTarget {
        AmqpTarget {
            cluster: None,
            section: "source".into(),
            server: self.server.clone(),
            port: self.port.unwrap_or(if self.tls { 5671 } else { 5672 }),
            vhost: self.vhost.clone(),
            exchange: String::new(),
            routing_key: String::new(),
            user: self.user.clone(),
            password_file: self.password_file.clone(),
            tls: self.tls,
            ca_file: self.ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
        }
    }

    /// The prefetch count: `prefetch`, else twice `max_events` (within [`PREFETCH`]).
    pub fn prefetch_for(&self, max_events: usize) -> u16 {
        let n = self.prefetch.unwrap_or_else(|| max_events.saturating_mul(2).min(u32::MAX as usize) as u32);
        n.clamp(*PREFETCH.start(), *PREFETCH.end()) as u16
    }

    pub fn describe(&self) -> String {
        let t = self.target();
        let scheme = if t.tls { "amqps" } else { "amqp" };
        format!("{scheme}://{}@{}:{} vhost {:?} queue {:?}", t.user.as_deref().unwrap_or("guest"), t.server, t.port, t.vhost, self.queue)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        host_ok(&self.server).map_err(|m| err("server", format!("{:?}: {m}", self.server)))?;
        if self.port == Some(0) {
            return Err(err("port", "must be 1 to 65535".into()));
        }
        if self.vhost.is_empty() || self.vhost.len() > NAME_MAX {
            return Err(err("vhost", format!("{:?}: must be 1 to {NAME_MAX} bytes (\"/\" is the default vhost)", self.vhost)));
        }
        name_ok_at(&self.queue).map_err(|m| err("queue", format!("{:?}: {m}", self.queue)))?;
        if self.user.is_some() != self.password_file.is_some() {
            let key = if self.user.is_some() { "user" } else { "password_file" };
            return Err(err(key, "`user` and `password_file` go together (neither: RabbitMQ's guest account)".into()));
        }
        if self.user.as_deref().is_some_and(str::is_empty) {
            return Err(err("user", "is empty".into()));
        }
        if !self.tls {
            for (key, v) in [("ca_file", &self.ca_file), ("cert_file", &self.cert_file), ("key_file", &self.key_file)] {
                if v.is_some() {
                    return Err(err(key, "needs tls = true".into()));
                }
            }
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            let key = if self.cert_file.is_some() { "cert_file" } else { "key_file" };
            return Err(err(key, "`cert_file` and `key_file` go together (the client certificate and its key)".into()));
        }
        if !HEARTBEAT_SECS.contains(&self.heartbeat_secs) {
            return Err(err("heartbeat_secs", format!("must be {} to {}", HEARTBEAT_SECS.start(), HEARTBEAT_SECS.end())));
        }
        if !TIMEOUT_SECS.contains(&self.timeout_secs) {
            return Err(err("timeout_secs", format!("must be {} to {}", TIMEOUT_SECS.start(), TIMEOUT_SECS.end())));
        }
        if let Some(p) = self.prefetch {
            if !PREFETCH.contains(&p) {
                return Err(err("prefetch", format!("{p}: must be {} to {}", PREFETCH.start(), PREFETCH.end())));
            }
        }
        if !(1..=60_000).contains(&self.linger_ms) {
            return Err(err("linger_ms", "must be 1 to 60000".into()));
        }
        Ok(())
    }
}
