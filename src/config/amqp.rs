//! `type = "amqp"`: the `[destination]` table of a RabbitMQ (AMQP 0-9-1) destination, its
//! per-cluster overrides (`[destination.clusters.<name>]`), their validation (no I/O) and their
//! preflight (secret, CA, certificate and key files read as the sink reads them).
//!
//! Per-cluster overrides follow the shape Qumulo's own broker registration stores per cluster
//! (server, port, vhost, exchange, user, password, CA certificate): every key of an override is
//! optional and falls back to the top-level key. [`AmqpDestination::targets`] resolves them into
//! one [`AmqpTarget`] per connection, so `check`, start-up and the sink all see the same list.
//!
//! Kept in its own file (the other types live in `destination.rs`) so a destination type is
//! added with a few lines in the shared files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::destination::{Destination, DestinationTable};
use super::{warn_if_world_readable, ConfigError};
use crate::format::Format;
use crate::sink::route::RoutingKey;

/// `[destination] heartbeat_secs` (0 turns heartbeats off).
pub const HEARTBEAT_SECS: std::ops::RangeInclusive<u64> = 0..=3600;
/// `[destination] timeout_secs`: connect, and wait for the broker's confirms.
pub const TIMEOUT_SECS: std::ops::RangeInclusive<u64> = 1..=3600;
/// `[destination] max_returns`.
pub const MAX_RETURNS: std::ops::RangeInclusive<u32> = 1..=1000;
/// RabbitMQ's limit for exchange, queue and vhost names (AMQP short strings).
pub const NAME_MAX: usize = 255;

/// `type = "amqp"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpDestination {
    #[serde(rename = "type", default)]
    _type: IgnoredAny,
    #[serde(default = "default_format")]
    pub format: Format,
    /// Broker host name or address.
    pub server: String,
    /// Default 5672, or 5671 with `tls = true`.
    pub port: Option<u16>,
    #[serde(default = "default_vhost")]
    pub vhost: String,
    /// The exchange to publish to (must exist unless `declare_exchange = true`).
    pub exchange: String,
    #[serde(default = "default_routing_key")]
    pub routing_key: String,
    /// With `password_file`; both unset means RabbitMQ's `guest` account (loopback only).
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub tls: bool,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    #[serde(default = "default_heartbeat_secs")]
    pub heartbeat_secs: u64,
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Returns (unroutable) of one message before it is dead-lettered.
    #[serde(default = "default_max_returns")]
    pub max_returns: u32,
    /// Declare the exchange (durable) at each connect.
    #[serde(default)]
    pub declare_exchange: bool,
    #[serde(default = "default_exchange_type")]
    pub exchange_type: ExchangeType,
    /// Declare this durable queue at each connect and bind it to the exchange.
    pub queue: Option<String>,
    #[serde(default = "default_queue_type")]
    pub queue_type: QueueType,
    #[serde(default = "default_binding_key")]
    pub binding_key: String,
    /// Per-cluster connections, keyed by the event's `cluster`.
    #[serde(default)]
    pub clusters: BTreeMap<String, AmqpClusterOverride>,
    /// Receiver tier (docs/scaling.md): each message's body is the line as received (the
    /// envelope), not a rendered event; message id (the event id) and routing key as usual.
    #[serde(default)]
    pub pass_through: bool,
}

/// `[destination.clusters.<name>]`: every key falls back to the top-level one.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpClusterOverride {
    pub server: Option<String>,
    pub port: Option<u16>,
    pub vhost: Option<String>,
    pub exchange: Option<String>,
    pub routing_key: Option<String>,
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    pub tls: Option<bool>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// Exchange types for `declare_exchange`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExchangeType {
    Direct,
    Fanout,
    Topic,
    Headers,
}

/// Queue types for `queue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueueType {
    /// Replicated (Raft); RabbitMQ 3.8 and later.
    Quorum,
    Classic,
}

impl DestinationTable for AmqpDestination {
    const REQUIRED: &'static [(&'static str, &'static str)] = &[("server", " (the broker's host)"), ("exchange", "")];
}

impl From<AmqpDestination> for Destination {
    fn from(d: AmqpDestination) -> Destination {
        Destination::Amqp(d)
    }
}

fn default_format() -> Format {
    Format::Json
}
fn default_vhost() -> String {
    "/".into()
}
fn default_routing_key() -> String {
    "qumulo.{cluster}.{protocol}".into()
}
fn default_heartbeat_secs() -> u64 {
    30
}
fn default_timeout_secs() -> u64 {
    30
}
fn default_max_returns() -> u32 {
    3
}
fn default_exchange_type() -> ExchangeType {
    ExchangeType::Topic
}
fn default_queue_type() -> QueueType {
    QueueType::Quorum
}
fn default_binding_key() -> String {
    "#".into()
}

/// One broker connection, with every setting resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpTarget {
    /// The cluster whose events use it (`None`: the top-level connection, for every other cluster).
    pub cluster: Option<String>,
    /// The config section (`destination` or `destination.clusters.<name>`), for messages.
    pub section: String,
    pub server: String,
    pub port: u16,
    pub vhost: String,
    pub exchange: String,
    pub routing_key: String,
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    pub tls: bool,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl AmqpTarget {
    /// `amqp[s]://user@server:port/vhost` (no password), for logs and `check --connect`.
    pub fn describe(&self) -> String {
        let scheme = if self.tls { "amqps" } else { "amqp" };
        let user = self.user.as_deref().unwrap_or("guest");
        format!("{scheme}://{user}@{}:{} vhost {:?} exchange {:?}", self.server, self.port, self.vhost, self.exchange)
    }
}

impl AmqpDestination {
    /// The top-level connection first, then one per `[destination.clusters.<name>]`.
    pub fn targets(&self) -> Vec<AmqpTarget> {
        let top = AmqpClusterOverride::default();
        let mut out = vec![self.resolve(None, &top)];
        for (name, o) in &self.clusters {
            out.push(self.resolve(Some(name), o));
        }
        out
    }

    fn resolve(&self, cluster: Option<&String>, o: &AmqpClusterOverride) -> AmqpTarget {
        let tls = o.tls.unwrap_or(self.tls);
        // Credentials come as a pair: an override naming a user brings its own password file.
        let (user, password_file) = if o.user.is_some() || o.password_file.is_some() {
            (o.user.clone(), o.password_file.clone())
        } else {
            (self.user.clone(), self.password_file.clone())
        };
        let pick = |a: &Option<PathBuf>, b: &Option<PathBuf>| a.clone().or_else(|| b.clone());
        AmqpTarget {
            cluster: cluster.cloned(),
            section: cluster.map_or_else(|| "destination".to_string(), |c| format!("destination.clusters.{c}")),
            server: o.server.clone().unwrap_or_else(|| self.server.clone()),
            port: o.port.or(self.port).unwrap_or(if tls { 5671 } else { 5672 }),
            vhost: o.vhost.clone().unwrap_or_else(|| self.vhost.clone()),
            exchange: o.exchange.clone().unwrap_or_else(|| self.exchange.clone()),
            routing_key: o.routing_key.clone().unwrap_or_else(|| self.routing_key.clone()),
            user,
            password_file,
            tls,
            ca_file: pick(&o.ca_file, &self.ca_file),
            cert_file: pick(&o.cert_file, &self.cert_file),
            key_file: pick(&o.key_file, &self.key_file),
        }
    }
}

/// An error about `[section] key` (the key path lets [`super::Config::locate`] add its line).
fn err(section: &str, key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::new(format!("[{section}] {}", message.into())).with_key(format!("{section}.{key}"))
}

/// Bounds and syntax (no I/O): run by [`super::validate`].
pub(super) fn validate(d: &AmqpDestination) -> Result<(), ConfigError> {
    let within = |key: &str, v: u64, r: std::ops::RangeInclusive<u64>| {
        if r.contains(&v) {
            Ok(())
        } else {
            Err(err("destination", key, format!("{key} = {v}: must be between {} and {}", r.start(), r.end())))
        }
    };
    within("heartbeat_secs", d.heartbeat_secs, HEARTBEAT_SECS)?;
    within("timeout_secs", d.timeout_secs, TIMEOUT_SECS)?;
    within("max_returns", d.max_returns.into(), (*MAX_RETURNS.start()).into()..=(*MAX_RETURNS.end()).into())?;
    if let Some(q) = &d.queue {
        name_ok("destination", "queue", q)?;
    }
    if d.binding_key.len() > NAME_MAX {
        return Err(err("destination", "binding_key", format!("binding_key is longer than {NAME_MAX} bytes")));
    }
    for (name, o) in &d.clusters {
        if name.is_empty() {
            return Err(err("destination", "clusters", "clusters: a cluster name is empty"));
        }
        let section = format!("destination.clusters.{name}");
        if o.user.is_some() != o.password_file.is_some() {
            let key = if o.user.is_some() { "user" } else { "password_file" };
            return Err(err(&section, key, "`user` and `password_file` go together (an override brings its own credentials)"));
        }
    }
    if d.user.is_some() != d.password_file.is_some() {
        let key = if d.user.is_some() { "user" } else { "password_file" };
        return Err(err("destination", key, "`user` and `password_file` go together (neither: RabbitMQ's guest account)"));
    }
    for t in d.targets() {
        validate_target(&t, d)?;
    }
    Ok(())
}

fn validate_target(t: &AmqpTarget, d: &AmqpDestination) -> Result<(), ConfigError> {
    // The section the value came from: the override's when it set the key, else the top level.
    let at = |key: &str, set: fn(&AmqpClusterOverride) -> bool, msg: String| {
        let overridden = t.cluster.as_ref().and_then(|c| d.clusters.get(c)).is_some_and(set);
        err(if overridden { t.section.as_str() } else { "destination" }, key, msg)
    };
    host_ok(&t.server).map_err(|m| at("server", |o| o.server.is_some(), format!("server = {:?}: {m}", t.server)))?;
    if t.port == 0 {
        return Err(at("port", |o| o.port.is_some(), "port = 0: must be between 1 and 65535".into()));
    }
    if t.vhost.is_empty() || t.vhost.len() > NAME_MAX {
        return Err(at("vhost", |o| o.vhost.is_some(), format!("vhost = {:?}: must be 1 to {NAME_MAX} bytes (\"/\" is the default vhost)", t.vhost)));
    }
    if t.exchange.is_empty() {
        return Err(at("exchange", |o| o.exchange.is_some(), "exchange is empty: name an exchange (the default exchange cannot be checked or bound)".into()));
    }
    name_ok_at(&t.exchange).map_err(|m| at("exchange", |o| o.exchange.is_some(), format!("exchange = {:?}: {m}", t.exchange)))?;
    RoutingKey::parse(&t.routing_key)
        .map_err(|m| at("routing_key", |o| o.routing_key.is_some(), format!("routing_key = {:?}: {m}", t.routing_key)))?;
    if t.user.as_deref().is_some_and(str::is_empty) {
        return Err(at("user", |o| o.user.is_some(), "user is empty".into()));
    }
    if !t.tls {
        for (key, v, set) in [
            ("ca_file", &t.ca_file, (|o: &AmqpClusterOverride| o.ca_file.is_some()) as fn(&AmqpClusterOverride) -> bool),
            ("cert_file", &t.cert_file, |o| o.cert_file.is_some()),
            ("key_file", &t.key_file, |o| o.key_file.is_some()),
        ] {
            if v.is_some() {
                return Err(at(key, set, format!("{key} needs tls = true")));
            }
        }
    }
    if t.cert_file.is_some() != t.key_file.is_some() {
        let (key, set): (&str, fn(&AmqpClusterOverride) -> bool) =
            if t.cert_file.is_some() { ("cert_file", |o| o.cert_file.is_some()) } else { ("key_file", |o| o.key_file.is_some()) };
        return Err(at(key, set, "`cert_file` and `key_file` go together (the client certificate and its key)".into()));
    }
    Ok(())
}

/// A host name or an IP address (IPv6 with or without brackets); the port is `port`.
pub(super) fn host_ok(host: &str) -> Result<(), String> {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    if host.is_empty() || host.len() > 253 {
        return Err("must be a host name or an address".into());
    }
    if host.contains(':') {
        return Err("a host name or address without the port (the port goes in `port`)".into());
    }
    if let Some(c) = host.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))) {
        return Err(format!("{c:?} is not allowed in a host name"));
    }
    Ok(())
}

fn name_ok(section: &str, key: &str, name: &str) -> Result<(), ConfigError> {
    name_ok_at(name).map_err(|m| err(section, key, format!("{key} = {name:?}: {m}")))
}

/// Exchange and queue names: 1..=255 bytes of letters, digits, `-`, `_`, `.`, `:` (RabbitMQ's
/// own rule, which refuses nothing else only for `amq.` names; we keep to the portable set).
pub(super) fn name_ok_at(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > NAME_MAX {
        return Err(format!("must be 1 to {NAME_MAX} bytes"));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))) {
        return Err(format!("{c:?} is not allowed (letters, digits, `-`, `_`, `.`, `:`)"));
    }
    Ok(())
}

/// What the sink reads from disk, read the same way (run by [`super::preflight::check`]).
pub(super) fn preflight(cfg_path: &Path, d: &AmqpDestination) -> Result<(), (String, String)> {
    let mut secrets = false;
    for t in d.targets() {
        let cert_and_key = t.cert_file.as_deref().zip(t.key_file.as_deref());
        secrets |= super::preflight::broker_files(&t.section, t.password_file.as_deref(), t.ca_file.as_deref(), cert_and_key)?;
    }
    if secrets {
        warn_if_world_readable(cfg_path);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    const BASE: &str = "[destination]\ntype = \"amqp\"\nserver = \"rabbit.example.com\"\nexchange = \"qumulo-audit\"\n";

    fn amqp(text: &str) -> AmqpDestination {
        match Config::parse(text).unwrap_or_else(|e| panic!("{text}: {e}")).destination {
            Destination::Amqp(d) => d,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_and_overrides_resolve() {
        let d = amqp(&format!(
            "{BASE}user = \"qab\"\npassword_file = \"/etc/p\"\n\
             [destination.clusters.east]\nserver = \"10.0.0.5\"\ntls = true\nca_file = \"/etc/ca.pem\"\n\
             [destination.clusters.west]\nvhost = \"audit\"\nuser = \"w\"\npassword_file = \"/etc/w\"\nport = 5673\n"
        ));
        assert_eq!((d.vhost.as_str(), d.heartbeat_secs, d.timeout_secs, d.max_returns), ("/", 30, 30, 3));
        assert_eq!(d.routing_key, "qumulo.{cluster}.{protocol}");
        let t = d.targets();
        assert_eq!(t.len(), 3);
        assert_eq!((t[0].cluster.as_deref(), t[0].port, t[0].tls), (None, 5672, false));
        let east = &t[1];
        assert_eq!((east.cluster.as_deref(), east.server.as_str(), east.port, east.tls), (Some("east"), "10.0.0.5", 5671, true));
        assert_eq!((east.user.as_deref(), east.exchange.as_str()), (Some("qab"), "qumulo-audit"), "inherited");
        let west = &t[2];
        assert_eq!((west.server.as_str(), west.port, west.vhost.as_str()), ("rabbit.example.com", 5673, "audit"));
        assert_eq!(west.password_file.as_deref(), Some(Path::new("/etc/w")));
        assert_eq!(west.section, "destination.clusters.west");
    }

    #[test]
    fn refused_values_name_their_key() {
        let cases = [
            ("port = 0\n", "destination.port", "port = 0"),
            ("port = 70000\n", "", "expected u16"),
            ("server = \"rabbit:5672\"\n", "destination.server", "the port goes in `port`"),
            ("vhost = \"\"\n", "destination.vhost", "vhost"),
            ("routing_key = \"q.{clustr}\"\n", "destination.routing_key", "unknown field {clustr}"),
            ("routing_key = \"q.#\"\n", "destination.routing_key", "not allowed"),
            ("user = \"u\"\n", "destination.user", "go together"),
            ("ca_file = \"/ca\"\n", "destination.ca_file", "needs tls = true"),
            ("tls = true\ncert_file = \"/c\"\n", "destination.cert_file", "go together"),
            ("heartbeat_secs = 4000\n", "destination.heartbeat_secs", "between 0 and 3600"),
            ("timeout_secs = 0\n", "destination.timeout_secs", "between 1 and 3600"),
            ("max_returns = 0\n", "destination.max_returns", "between 1 and 1000"),
            ("queue = \"a b\"\n", "destination.queue", "not allowed"),
            ("exchange_type = \"x\"\n", "", "\"direct\", \"fanout\", \"topic\" or \"headers\""),
            ("queue_type = \"stream\"\n", "", "\"quorum\" or \"classic\""),
            ("[destination.clusters.east]\nuser = \"u\"\n", "destination.clusters.east.user", "go together"),
            ("[destination.clusters.east]\nrouting_key = \"{nope}\"\n", "destination.clusters.east.routing_key", "unknown field"),
            ("[destination.clusters.east]\nexchange = \"\"\n", "destination.clusters.east.exchange", "exchange is empty"),
            ("[destination.clusters.east]\ncolour = 1\n", "", "colour"),
        ];
        for (extra, key, want) in cases {
            let text = if extra.starts_with('[') {
                format!("{BASE}{extra}")
            } else if extra.starts_with("server") {
                BASE.replace("server = \"rabbit.example.com\"\n", extra)
            } else {
                BASE.replace("exchange =", &format!("{extra}exchange ="))
            };
            let e = Config::parse(&text).unwrap_err();
            assert!(e.message.contains(want), "{extra:?}: {e}");
            if !key.is_empty() {
                assert_eq!(e.key.as_deref(), Some(key), "{extra:?}: {e}");
                if key.starts_with("destination.clusters.") {
                    // An override's key has its line too (it is appended last to BASE).
                    let leaf = key.rsplit('.').next().unwrap();
                    let line = text.lines().collect::<Vec<_>>().iter().rposition(|l| l.starts_with(&format!("{leaf} ="))).unwrap() + 1;
                    assert_eq!(e.line, Some(line), "{extra:?}: {e}");
                    assert!(e.to_string().starts_with(&format!("line {line}: [destination.clusters.east] ")), "{e}");
                }
            }
            assert!(!e.to_string().contains('\n'), "one line: {e}");
        }
        let e = Config::parse(&BASE.replace("exchange = \"qumulo-audit\"\n", "")).unwrap_err();
        assert!(e.message.contains("needs `exchange`"), "{e}");
    }

    #[test]
    fn preflight_reads_what_the_sink_reads() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        let d = amqp(&format!("{BASE}user = \"u\"\npassword_file = {:?}\n", pw));
        let (key, e) = preflight(Path::new("/x.toml"), &d).unwrap_err();
        assert_eq!(key, "destination.password_file");
        assert!(e.contains("cannot read secret file"), "{e}");
        std::fs::write(&pw, "secret\n").unwrap();
        assert_eq!(preflight(Path::new("/x.toml"), &d), Ok(()));
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate").unwrap();
        let d = amqp(&format!("{BASE}[destination.clusters.east]\ntls = true\nca_file = {:?}\n", ca));
        let (key, e) = preflight(Path::new("/x.toml"), &d).unwrap_err();
        assert_eq!(key, "destination.clusters.east.ca_file");
        assert!(e.contains("holds no PEM certificate"), "{e}");
    }
}
