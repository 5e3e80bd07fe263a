//! `broker.toml`: the one file an operator edits (clusters, destinations, a few globals), and
//! the commands built on it (`apply` in [`apply`], its rsyslog rendering in [`render`]).
//!
//! ```toml
//! [broker]                        # optional; every key has a default
//! listen_address = "0.0.0.0"
//! [broker.tls]                    # optional: the listeners speak TLS (rsyslog's gtls driver)
//! cert_file = "/etc/qumulo-audit-broker/tls/listener.pem"
//! key_file = "/etc/qumulo-audit-broker/tls/listener.key"
//!
//! [[cluster]]                     # own port: the port names the cluster
//! name = "prod"
//! port = 10514
//!
//! [[cluster]]                     # shared port: the sending node's address names the cluster
//! name = "archive"
//! port = 10600
//! nodes = ["192.0.2.11", "192.0.2.12"]
//!
//! [[destination]]                 # exactly a per-destination TOML's [destination], plus `name`
//! name = "splunk"
//! type = "http"
//! preset = "splunk-hec"
//! url = "https://splunk:8088/services/collector/event"
//! token_file = "/etc/qumulo-audit-broker/hec.token"
//! [destination.retry]             # = [retry] of a per-destination TOML (also batch, filter,
//! max_elapsed_secs = 30           #   cluster, dead_letter, journal, stats, input)
//! ```
//!
//! Contract: a destination section means exactly what a per-destination TOML means. It is not
//! re-modelled: [`BrokerFile::destination`] cuts the section out of the text (every other line
//! blanked, `[[destination]]` read as `[destination]`, `[destination.retry]` as `[retry]`) and
//! hands it to [`Config::parse`], so the typed per-kind structs, their defaults, validation and
//! line-numbered errors are the same code, and a new destination kind (a new `DestinationType`)
//! needs nothing here. Trade-off: a section must be written with `[destination.<section>]`
//! tables (not dotted keys such as `batch.max_events = 1` inside `[[destination]]`); the cut
//! finds table headers by a line scan that skips multi-line strings, and the whole file is
//! parsed by `toml` first, so a header it could misread is already a syntax error.

pub mod apply;
pub mod render;
pub mod migrate;
pub mod test_event;
pub mod tls;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::config::{line_at, Config, ConfigError};

/// The default `broker.toml`.
pub const DEFAULT_BROKER_TOML: &str = "/etc/qumulo-audit-broker/broker.toml";

/// The per-destination sections a `[destination.<section>]` table stands for.
pub(crate) const SECTIONS: &[&str] = &["batch", "retry", "filter", "cluster", "dead_letter", "journal", "stats", "input"];

/// `[broker]`: the global choices.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Globals {
    /// Address the cluster listeners bind (imtcp `address`).
    pub listen_address: String,
    /// imtcp `maxSessions`: concurrent connections over all listeners (one or more per node).
    pub max_sessions: u32,
    /// Spool: rsyslog's disk queues (`<spool>/queue`) and the default journals.
    pub spool_dir: PathBuf,
    /// Each destination's program log (omprog `output=`) and rsyslog's impstats file.
    pub log_dir: PathBuf,
    /// The omprog program.
    pub binary: PathBuf,
    /// Per destination queue (rsyslog `queue.size`, messages in memory before spilling).
    pub queue_size: u64,
    /// Per destination disk limit (rsyslog `queue.maxDiskSpace`, e.g. "10g").
    pub queue_max_disk_space: String,
    /// Per cluster listener queue (in memory; full means TCP back-pressure on the cluster).
    pub cluster_queue_size: u64,
    /// Seconds between rsyslog impstats records (queue depth for `status`).
    pub impstats_interval_secs: u32,
    /// `[broker.tls]`: the listeners speak TLS ([`tls`]).
    pub tls: Option<tls::ListenerTls>,
}

impl Default for Globals {
    fn default() -> Self {
        Globals {
            listen_address: "0.0.0.0".into(),
            max_sessions: 500,
            spool_dir: PathBuf::from(crate::config::DEFAULT_SPOOL_DIR),
            log_dir: PathBuf::from("/var/log/qumulo-audit-broker"),
            binary: PathBuf::from("/usr/libexec/rsyslog/qumulo-audit-broker"),
            queue_size: 100_000,
            queue_max_disk_space: "10g".into(),
            cluster_queue_size: 50_000,
            impstats_interval_secs: 10,
            tls: None,
        }
    }
}

/// `[[cluster]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    pub name: Spanned<String>,
    pub port: Spanned<u16>,
    /// The nodes' addresses when the port is shared; empty: the port is this cluster's own.
    #[serde(default)]
    pub nodes: Vec<String>,
}

/// One `[[destination]]`: its name and the per-destination configuration it stands for.
#[derive(Debug, Clone)]
pub struct DestinationEntry {
    pub name: String,
    pub line: usize,
    pub config: Config,
}

/// A parsed, validated `broker.toml`.
#[derive(Debug, Clone)]
pub struct BrokerFile {
    pub path: PathBuf,
    /// The file's text (`apply` installs it as the applied copy).
    pub text: String,
    pub globals: Globals,
    pub clusters: Vec<Cluster>,
    pub destinations: Vec<DestinationEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    #[serde(default)]
    broker: Globals,
    #[serde(default)]
    cluster: Vec<Cluster>,
    #[serde(default)]
    destination: Vec<NameOnly>,
}

#[derive(Deserialize)]
struct NameOnly {
    name: Option<Spanned<String>>,
}

/// A name usable in rsyslog object names, file names and `$.cluster`.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && s.as_bytes()[0].is_ascii_alphanumeric()
}

/// The line of `key` in the `[broker]` table, for the errors its values get after parsing (the
/// keys are plain values, without spans): read with the config's own key-line map, so comments,
/// multi-line strings and dotted keys are TOML's business, not a line scan's.
fn broker_key_line(text: &str, key: &str) -> Option<usize> {
    crate::config::key_lines(text).get(&format!("broker.{key}")).copied()
}

fn at(text: &str, offset: usize, message: String) -> ConfigError {
    ConfigError::new(message).with_line(Some(line_at(text, offset)))
}

impl BrokerFile {
    /// Reads and validates `path` (every destination section too); errors name file and line.
    pub fn load(path: &Path) -> Result<BrokerFile, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(format!("cannot read {}: {e}", path.display())))?;
        BrokerFile::parse(&text, path).map_err(|e| e.with_file(path))
    }

    pub fn parse(text: &str, path: &Path) -> Result<BrokerFile, ConfigError> {
        let doc: Doc = toml::from_str(text).map_err(|e| ConfigError::from_toml(text, &e))?;
        let g = &doc.broker;
        let global = |key: &str, message: String| ConfigError::new(message).with_line(broker_key_line(text, key));
        if !(100..=render::MAX_QUEUE_SIZE).contains(&g.queue_size) {
            return Err(global("queue_size", format!("[broker] queue_size = {}: 100 to {}", g.queue_size, render::MAX_QUEUE_SIZE)));
        }
        if !(1..=3600).contains(&g.impstats_interval_secs) {
            return Err(global("impstats_interval_secs", "[broker] impstats_interval_secs: 1 to 3600".to_string()));
        }
        let disk = &g.queue_max_disk_space;
        if disk.is_empty() || !disk.trim_end_matches(['k', 'm', 'g', 't']).bytes().all(|b| b.is_ascii_digit()) {
            return Err(global("queue_max_disk_space", format!("[broker] queue_max_disk_space = {disk:?}: a number with an optional k, m, g or t")));
        }
        if g.listen_address.is_empty() || g.listen_address.contains(['"', '\\', ' ']) {
            return Err(global("listen_address", format!("[broker] listen_address = {:?}: an IP address or host name", g.listen_address)));
        }
        if let Some(t) = &g.tls {
            tls::validate(text, t)?;
        }
        check_clusters(text, &doc.cluster)?;
        let headers = headers(text);
        let mut destinations = Vec::new();
        let mut rulesets = BTreeMap::new();
        for (i, entry) in doc.destination.iter().enumerate() {
            let header_line = headers.iter().filter(|h| h.name == "destination" && h.array).nth(i).map_or(1, |h| h.line);
            let Some(name) = &entry.name else {
                return Err(ConfigError::new("[[destination]] needs `name` (used in rsyslog and in `status`)".to_string())
                    .with_line(Some(header_line)));
            };
            if !valid_name(name.get_ref()) {
                return Err(at(text, name.span().start, format!("[[destination]] name = {:?}: lowercase letters, digits, '-' and '_', at most 64", name.get_ref())));
            }
            let ruleset = name.get_ref().replace('-', "_");
            if let Some(other) = rulesets.insert(ruleset, name.get_ref().clone()) {
                return Err(at(text, name.span().start, format!("[[destination]] name = {:?}: clashes with {other:?} (names are compared with '-' read as '_')", name.get_ref())));
            }
            let mut config = Config::parse(&section_text(text, &headers, i)).map_err(|e| e.with_file(path))?;
            config.source_path = path.to_path_buf();
            config.destination_name = Some(name.get_ref().clone());
            config.spool_dir = Some(g.spool_dir.clone());
            destinations.push(DestinationEntry { name: name.get_ref().clone(), line: line_at(text, name.span().start), config });
        }
        Ok(BrokerFile { path: path.to_path_buf(), text: text.to_string(), globals: doc.broker, clusters: doc.cluster, destinations })
    }

    /// `apply`'s and `check`'s refusal of a `queue_size` too small to spill with some
    /// destination's transactions ([`render::check_queue_size`]), at the key's line. Not part of
    /// [`BrokerFile::parse`]: the programs load the same file, and one that an earlier version
    /// applied must not keep them from starting.
    pub fn check_queue_size(&self) -> Result<(), ConfigError> {
        match render::check_queue_size(self) {
            None => Ok(()),
            Some(e) => Err(ConfigError::new(e).with_line(broker_key_line(&self.text, "queue_size")).with_file(&self.path)),
        }
    }

    /// The configuration of destination `name`, as `omprog --destination NAME` runs it.
    pub fn destination(&self, name: &str) -> Result<&DestinationEntry, ConfigError> {
        self.destinations.iter().find(|d| d.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.destinations.iter().map(|d| d.name.as_str()).collect();
            ConfigError::new(format!("no [[destination]] named {name:?} (defined: {})", if names.is_empty() { "none".into() } else { names.join(", ") }))
                .with_file(&self.path)
        })
    }
}

/// Loads one destination: from `broker.toml` when `destination` names one, else `config` is a
/// per-destination TOML (today's layout).
pub fn load_config(config: &Path, destination: Option<&str>) -> Result<Config, ConfigError> {
    match destination {
        Some(name) => Ok(BrokerFile::load(config)?.destination(name)?.config.clone()),
        None => Config::load(config),
    }
}

/// Names and ports: unique names; a port is one cluster's own, or shared by clusters that all
/// list their nodes, each node in one cluster only.
fn check_clusters(text: &str, clusters: &[Cluster]) -> Result<(), ConfigError> {
    let mut names = BTreeSet::new();
    let mut by_port: BTreeMap<u16, Vec<&Cluster>> = BTreeMap::new();
    for c in clusters {
        if !valid_name(c.name.get_ref()) {
            return Err(at(text, c.name.span().start, format!("[[cluster]] name = {:?}: lowercase letters, digits, '-' and '_', at most 64", c.name.get_ref())));
        }
        if !names.insert(c.name.get_ref().as_str()) {
            return Err(at(text, c.name.span().start, format!("[[cluster]] name = {:?} is defined twice", c.name.get_ref())));
        }
        if *c.port.get_ref() == 0 {
            return Err(at(text, c.port.span().start, "[[cluster]] port = 0: 1 to 65535".into()));
        }
        for n in &c.nodes {
            if n.parse::<std::net::IpAddr>().is_err() {
                return Err(at(text, c.name.span().start, format!("[[cluster]] {:?}: nodes: {n:?} is not an IP address (rsyslog compares $fromhost-ip)", c.name.get_ref())));
            }
        }
        by_port.entry(*c.port.get_ref()).or_default().push(c);
    }
    for (port, cs) in &by_port {
        if cs.len() > 1 {
            if let Some(own) = cs.iter().find(|c| c.nodes.is_empty()) {
                return Err(at(text, own.port.span().start, format!(
                    "[[cluster]] {:?}: port {port} is shared with {}; every cluster on a shared port lists its `nodes`",
                    own.name.get_ref(),
                    cs.iter().filter(|c| c.name.get_ref() != own.name.get_ref()).map(|c| format!("{:?}", c.name.get_ref())).collect::<Vec<_>>().join(", ")
                )));
            }
            let mut seen = BTreeMap::new();
            for c in cs {
                for n in &c.nodes {
                    if let Some(other) = seen.insert(n.clone(), c.name.get_ref().clone()) {
                        return Err(at(text, c.name.span().start, format!("[[cluster]] {:?}: node {n} is also listed by {other:?} on port {port}", c.name.get_ref())));
                    }
                }
            }
        }
    }
    Ok(())
}

/// A table header line.
#[derive(Debug)]
struct Header {
    line: usize,
    /// The dotted name, spaces removed (`destination.retry`).
    name: String,
    array: bool,
}

/// The table headers of `text`, skipping multi-line strings.
fn headers(text: &str) -> Vec<Header> {
    let mut out = Vec::new();
    let mut in_string: Option<&str> = None;
    for (i, line) in text.lines().enumerate() {
        if let Some(delim) = in_string {
            if line.matches(delim).count() % 2 == 1 {
                in_string = None;
            }
            continue;
        }
        for delim in ["\"\"\"", "'''"] {
            if line.matches(delim).count() % 2 == 1 {
                in_string = Some(delim);
            }
        }
        let t = line.trim();
        let t = t.split_once('#').map_or(t, |(a, _)| a).trim();
        let (array, inner) = if let Some(x) = t.strip_prefix("[[").and_then(|x| x.strip_suffix("]]")) {
            (true, x)
        } else if let Some(x) = t.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
            (false, x)
        } else {
            continue;
        };
        let name: String = inner.chars().filter(|c| !c.is_whitespace()).collect();
        if !name.is_empty() && name.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')) {
            out.push(Header { line: i + 1, name, array });
        }
    }
    out
}

/// The text of destination `index` as a per-destination TOML, every line at its place: lines
/// outside its tables are blank, `[[destination]]` becomes `[destination]`, its `name` key is
/// dropped and `[destination.<section>]` becomes `[<section>]`.
fn section_text(text: &str, headers: &[Header], index: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut keep = vec![false; lines.len()];
    let mut rename: BTreeMap<usize, String> = BTreeMap::new();
    let mut seen = 0;
    let mut current = false;
    let mut in_head;
    for (k, h) in headers.iter().enumerate() {
        if h.name == "destination" && h.array {
            current = seen == index;
            seen += 1;
            in_head = current;
            if current {
                rename.insert(h.line, "[destination]".into());
            }
        } else if let Some(rest) = h.name.strip_prefix("destination.") {
            in_head = false;
            if current && !h.array {
                let first = rest.split('.').next().unwrap_or("");
                if SECTIONS.contains(&first) {
                    rename.insert(h.line, format!("[{rest}]"));
                }
            }
        } else {
            current = false;
            in_head = false;
        }
        if current {
            let end = headers.get(k + 1).map_or(lines.len(), |n| n.line - 1);
            for (j, keep) in keep.iter_mut().enumerate().take(end).skip(h.line - 1) {
                let l = lines[j].trim_start();
                let is_name = in_head && l.strip_prefix("name").is_some_and(|r| r.trim_start().starts_with('='));
                *keep = !is_name;
            }
        }
    }
    let mut out = String::with_capacity(text.len());
    for (j, l) in lines.iter().enumerate() {
        if let Some(r) = rename.get(&(j + 1)) {
            out.push_str(r);
        } else if keep[j] {
            out.push_str(l);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests;
