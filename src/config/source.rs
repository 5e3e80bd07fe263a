//! `[source]`: where `consume` mode reads envelopes from (docs/scaling.md). Only `consume` reads
//! this section; `omprog` mode ignores it, so one file can serve both with the same destination.
//!
//! The keys mirror the `kafka` destination's (`bootstrap_servers`, TLS, SASL) so a receiver's
//! and a processor's files read alike; the consumer group and its memory bound are its own.

use std::path::PathBuf;

use serde::Deserialize;

use super::kafka::SaslMechanism;
use super::ConfigError;

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Only `kafka` for now.
    #[serde(rename = "type", default = "default_type")]
    pub kind: String,
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

fn default_type() -> String {
    "kafka".into()
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

impl SourceConfig {
    pub fn security_protocol(&self) -> &'static str {
        match (self.tls, self.sasl_mechanism.is_some()) {
            (false, false) => "plaintext",
            (true, false) => "ssl",
            (false, true) => "sasl_plaintext",
            (true, true) => "sasl_ssl",
        }
    }

    /// Values only (no I/O).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |k: &str, m: String| Err(ConfigError::new(format!("[source] {k}: {m}")).with_key(format!("source.{k}")));
        if self.kind != "kafka" {
            return err("type", format!("{:?}: only \"kafka\" is supported", self.kind));
        }
        if self.bootstrap_servers.is_empty() {
            return err("bootstrap_servers", "needs at least one \"host:port\"".into());
        }
        for s in &self.bootstrap_servers {
            if let Err(e) = super::validate::check_host_port(s, true) {
                return err("bootstrap_servers", format!("{s:?}: {e}"));
            }
        }
        if self.topic.is_empty() {
            return err("topic", "must not be empty".into());
        }
        if self.group_id.is_empty() {
            return err("group_id", "must not be empty".into());
        }
        if !(1..=2_097_151).contains(&self.max_buffer_kbytes) {
            return err("max_buffer_kbytes", "must be 1 to 2097151".into());
        }
        if !(1..=60_000).contains(&self.linger_ms) {
            return err("linger_ms", "must be 1 to 60000".into());
        }
        if !(1..=86_400).contains(&self.max_stall_secs) {
            return err("max_stall_secs", "must be 1 to 86400".into());
        }
        if !(1..=3_600).contains(&self.session_timeout_secs) {
            return err("session_timeout_secs", "must be 1 to 3600".into());
        }
        if self.sasl_mechanism.is_some() != (self.user.is_some() && self.password_file.is_some()) {
            return err("sasl_mechanism", "sasl_mechanism, user and password_file go together".into());
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            return err("cert_file", "cert_file and key_file go together".into());
        }
        Ok(())
    }
}
