//! The destination configuration: one TOML file per destination (see `docs/configuration.md`).
//!
//! Parsing is strict: an unknown key is an error naming the key and its line, and a key that
//! does not apply to the destination's type is an error too. [`Config::load`] also checks what
//! can be checked without the network (formats, presets, URLs, readable secret files) so that
//! `omprog` refuses to start, and never answers `OK`, with a broken configuration.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::format::Format;
use crate::input::{ClusterSource, ParserOptions, DEFAULT_MAX_LINE};

#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn cfg_err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub destination: DestinationConfig,
    #[serde(default)]
    pub batch: BatchConfig,
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default)]
    pub filter: FilterConfig,
    #[serde(default)]
    pub cluster: ClusterConfig,
    #[serde(default)]
    pub dead_letter: DeadLetterConfig,
    #[serde(default)]
    pub journal: JournalConfig,
    #[serde(default)]
    pub stats: StatsConfig,
    #[serde(default)]
    pub input: InputConfig,
    /// Where the config was read from (not a TOML key).
    #[serde(skip)]
    pub source_path: PathBuf,
}

/// `[destination]`: every key of every type; [`Config::validate`] rejects keys of other types.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default = "default_format")]
    pub format: String,
    // file
    pub path: Option<PathBuf>,
    pub fsync: Option<bool>,
    // http
    pub url: Option<String>,
    pub preset: Option<String>,
    pub token_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub index: Option<String>,
    pub sourcetype: Option<String>,
    pub source: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub tls_verify: Option<bool>,
    pub gzip: Option<bool>,
    pub timeout_secs: Option<u64>,
    // syslog
    pub address: Option<String>,
    pub protocol: Option<String>,
    pub framing: Option<String>,
    pub header: Option<String>,
    pub app_name: Option<String>,
    pub facility: Option<u8>,
}

fn default_format() -> String {
    "json".into()
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

#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// `envelope` (default: the envelope's cluster, else `name` if set), `fixed` (always `name`
    /// unless the envelope names one), `hostname` (`<cluster>-<node>` from the sending node).
    pub source: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DeadLetterConfig {
    pub path: Option<PathBuf>,
}

#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    /// Directory of the per-process journals (default: the package's spool directory).
    pub dir: Option<PathBuf>,
    /// Largest journal of one process (one open transaction), bytes.
    pub max_bytes: Option<u64>,
    /// fsync the journal before answering COMMIT's deliveries (protects against power loss
    /// too, not only a crash of this program).
    pub fsync: Option<bool>,
    /// Turn the journal off (rsyslog issue #2420 is then open: see README "Reliability").
    pub enabled: Option<bool>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct StatsConfig {
    /// Seconds between stats lines on stderr (0 = only at exit).
    pub interval_secs: u64,
}

impl Default for StatsConfig {
    fn default() -> Self {
        StatsConfig { interval_secs: 60 }
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

/// The destination kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestinationKind {
    File,
    Http,
    Syslog,
}

/// HTTP presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpPreset {
    Ndjson,
    SplunkHec,
    ElasticsearchBulk,
}

pub const DEFAULT_SPOOL_DIR: &str = "/var/spool/qumulo-audit-broker";

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read config {}: {e}", path.display())))?;
        let mut cfg = Config::parse(&text).map_err(|e| ConfigError(format!("{}: {}", path.display(), e.0)))?;
        cfg.source_path = path.to_path_buf();
        Ok(cfg)
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError(describe_toml_error(text, &e)))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn kind(&self) -> DestinationKind {
        match self.destination.kind.as_str() {
            "file" => DestinationKind::File,
            "http" => DestinationKind::Http,
            _ => DestinationKind::Syslog,
        }
    }

    pub fn format(&self) -> Format {
        Format::parse(&self.destination.format).unwrap_or(Format::Json)
    }

    pub fn http_preset(&self) -> HttpPreset {
        match self.destination.preset.as_deref() {
            Some("splunk-hec") => HttpPreset::SplunkHec,
            Some("elasticsearch-bulk") => HttpPreset::ElasticsearchBulk,
            _ => HttpPreset::Ndjson,
        }
    }

    /// A short name for this destination: the config file's stem (`/etc/.../hec.toml` -> `hec`).
    pub fn name(&self) -> String {
        self.source_path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "default".into())
    }

    pub fn parser_options(&self) -> ParserOptions {
        let cluster = match (self.cluster.source.as_deref(), &self.cluster.name) {
            (Some("hostname"), _) => ClusterSource::FromHostname,
            (_, Some(name)) => ClusterSource::Fixed(name.clone()),
            _ => ClusterSource::None,
        };
        ParserOptions { max_line: self.input.max_line, cluster, type_cache_entries: self.input.type_cache_entries }
    }

    pub fn journal_dir(&self) -> PathBuf {
        self.journal.dir.clone().unwrap_or_else(|| Path::new(DEFAULT_SPOOL_DIR).join("journal").join(self.name()))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let d = &self.destination;
        if Format::parse(&d.format).is_none() {
            return cfg_err(format!("[destination] format = {:?}: expected one of {}", d.format, Format::NAMES));
        }
        let set = |name: &'static str, present: bool| if present { Some(name) } else { None };
        let file_keys = [set("path", d.path.is_some()), set("fsync", d.fsync.is_some())];
        let http_keys = [
            set("url", d.url.is_some()),
            set("preset", d.preset.is_some()),
            set("token_file", d.token_file.is_some()),
            set("username", d.username.is_some()),
            set("password_file", d.password_file.is_some()),
            set("index", d.index.is_some()),
            set("sourcetype", d.sourcetype.is_some()),
            set("source", d.source.is_some()),
            set("ca_file", d.ca_file.is_some()),
            set("tls_verify", d.tls_verify.is_some()),
            set("gzip", d.gzip.is_some()),
            set("timeout_secs", d.timeout_secs.is_some()),
        ];
        let syslog_keys = [
            set("address", d.address.is_some()),
            set("protocol", d.protocol.is_some()),
            set("framing", d.framing.is_some()),
            set("header", d.header.is_some()),
            set("app_name", d.app_name.is_some()),
            set("facility", d.facility.is_some()),
        ];
        let (own, foreign): (&[Option<&str>], Vec<Option<&str>>) = match d.kind.as_str() {
            "file" => (&file_keys, http_keys.iter().chain(syslog_keys.iter()).copied().collect()),
            "http" => (&http_keys, file_keys.iter().chain(syslog_keys.iter()).copied().collect()),
            "syslog" => (&syslog_keys, file_keys.iter().chain(http_keys.iter()).copied().collect()),
            other => return cfg_err(format!("[destination] type = {other:?}: expected \"file\", \"http\" or \"syslog\"")),
        };
        let _ = own;
        if let Some(key) = foreign.into_iter().flatten().next() {
            return cfg_err(format!("[destination] key `{key}` does not apply to type = {:?}", d.kind));
        }
        match d.kind.as_str() {
            "file" => {
                if d.path.is_none() {
                    return cfg_err("[destination] type = \"file\" needs `path`");
                }
            }
            "http" => {
                let Some(url) = &d.url else {
                    return cfg_err("[destination] type = \"http\" needs `url`");
                };
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return cfg_err(format!("[destination] url = {url:?}: must start with http:// or https://"));
                }
                let preset = d.preset.as_deref().unwrap_or("ndjson");
                if !matches!(preset, "ndjson" | "splunk-hec" | "elasticsearch-bulk") {
                    return cfg_err(format!(
                        "[destination] preset = {preset:?}: expected \"ndjson\", \"splunk-hec\" or \"elasticsearch-bulk\""
                    ));
                }
                if preset == "elasticsearch-bulk" && !self.format().is_json() {
                    return cfg_err(format!(
                        "[destination] preset = \"elasticsearch-bulk\" needs a JSON format (json, ecs, ocsf), not {:?}",
                        d.format
                    ));
                }
                if d.username.is_some() != d.password_file.is_some() {
                    return cfg_err("[destination] `username` and `password_file` go together");
                }
                if d.token_file.is_some() && d.username.is_some() {
                    return cfg_err("[destination] use either `token_file` or `username`/`password_file`, not both");
                }
                if d.timeout_secs == Some(0) {
                    return cfg_err("[destination] timeout_secs must be at least 1");
                }
            }
            _ => {
                let Some(addr) = &d.address else {
                    return cfg_err("[destination] type = \"syslog\" needs `address` (host:port)");
                };
                if !addr.contains(':') {
                    return cfg_err(format!("[destination] address = {addr:?}: expected host:port"));
                }
                if let Some(p) = &d.protocol {
                    if !matches!(p.as_str(), "tcp" | "udp") {
                        return cfg_err(format!("[destination] protocol = {p:?}: expected \"tcp\" or \"udp\""));
                    }
                }
                if let Some(f) = &d.framing {
                    if !matches!(f.as_str(), "octet-counting" | "newline") {
                        return cfg_err(format!("[destination] framing = {f:?}: expected \"octet-counting\" or \"newline\""));
                    }
                }
                if let Some(h) = &d.header {
                    if !matches!(h.as_str(), "rfc5424" | "rfc3164") {
                        return cfg_err(format!("[destination] header = {h:?}: expected \"rfc5424\" or \"rfc3164\""));
                    }
                }
                if d.facility.is_some_and(|f| f > 23) {
                    return cfg_err("[destination] facility must be 0..=23");
                }
            }
        }
        if self.batch.max_events == 0 || self.batch.max_bytes < 1024 {
            return cfg_err("[batch] max_events must be >= 1 and max_bytes >= 1024");
        }
        if self.retry.keepalive_ms == 0 || self.retry.initial_backoff_ms == 0 {
            return cfg_err("[retry] keepalive_ms and initial_backoff_ms must be >= 1");
        }
        match self.cluster.source.as_deref() {
            None | Some("envelope") | Some("hostname") => {}
            Some("fixed") if self.cluster.name.is_some() => {}
            Some("fixed") => return cfg_err("[cluster] source = \"fixed\" needs `name`"),
            Some(other) => {
                return cfg_err(format!("[cluster] source = {other:?}: expected \"envelope\", \"fixed\" or \"hostname\""))
            }
        }
        if self.input.max_line < 256 {
            return cfg_err("[input] max_line must be at least 256");
        }
        if self.journal.max_bytes.is_some_and(|m| m < self.input.max_line as u64 + 2) {
            // One line (at most max_line + 1 bytes and its newline) must always fit an empty
            // journal, or that line could never be accepted.
            return cfg_err(format!("[journal] max_bytes must be at least [input] max_line + 2 ({})", self.input.max_line + 2));
        }
        Ok(())
    }
}

/// Turns a toml error into one line naming the key and its line number.
fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim().to_string();
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            let snippet = text.lines().nth(line - 1).unwrap_or("").trim();
            format!("line {line}: {msg} (at `{snippet}`)")
        }
        None => msg,
    }
}

/// Reads a secret (token, password) from a file: trimmed, must not be empty. Warns when the
/// file can be read by other users. The secret itself is never logged.
pub fn read_secret(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read secret file {}: {e}", path.display())))?;
    let secret = text.trim().to_string();
    if secret.is_empty() {
        return cfg_err(format!("secret file {} is empty", path.display()));
    }
    warn_if_world_readable(path);
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
mod tests {
    use super::*;

    #[test]
    fn smallest_file_and_http_configs() {
        let c = Config::parse(
            "[destination]\ntype = \"file\"\npath = \"/var/log/qumulo-audit-broker/events.ndjson\"\nformat = \"json\"\n",
        )
        .unwrap();
        assert_eq!(c.kind(), DestinationKind::File);
        let c = Config::parse(
            "[destination]\ntype = \"http\"\nurl = \"http://127.0.0.1:8080/ingest\"\npreset = \"ndjson\"\nformat = \"json\"\n",
        )
        .unwrap();
        assert_eq!(c.http_preset(), HttpPreset::Ndjson);
        assert_eq!(c.batch.max_events, 1000);
    }

    #[test]
    fn unknown_keys_name_key_and_line() {
        let e = Config::parse("[destination]\ntype = \"file\"\npath = \"/x\"\ncolour = \"red\"\n").unwrap_err();
        assert!(e.0.contains("line 4"), "{e}");
        assert!(e.0.contains("colour"), "{e}");
        let e = Config::parse("[destination]\ntype = \"file\"\npath = \"/x\"\n[batch]\nmax_event = 5\n").unwrap_err();
        assert!(e.0.contains("line 5") && e.0.contains("max_event"), "{e}");
    }

    #[test]
    fn keys_of_other_types_and_bad_values() {
        let cases = [
            ("[destination]\ntype = \"file\"\npath = \"/x\"\nurl = \"http://a\"\n", "`url` does not apply"),
            ("[destination]\ntype = \"ftp\"\n", "expected \"file\""),
            ("[destination]\ntype = \"file\"\n", "needs `path`"),
            ("[destination]\ntype = \"file\"\npath = \"/x\"\nformat = \"xml\"\n", "format"),
            ("[destination]\ntype = \"http\"\nurl = \"ftp://x\"\n", "http://"),
            ("[destination]\ntype = \"http\"\nurl = \"http://x\"\npreset = \"kafka\"\n", "preset"),
            ("[destination]\ntype = \"http\"\nurl = \"http://x\"\npreset = \"elasticsearch-bulk\"\nformat = \"cef\"\n", "JSON format"),
            ("[destination]\ntype = \"syslog\"\naddress = \"nohostport\"\n", "host:port"),
            ("[destination]\ntype = \"syslog\"\naddress = \"h:514\"\nprotocol = \"sctp\"\n", "protocol"),
            ("[destination]\ntype = \"file\"\npath = \"/x\"\n[cluster]\nsource = \"fixed\"\n", "needs `name`"),
            ("[destination]\ntype = \"file\"\npath = \"/x\"\n[batch]\nmax_events = 0\n", "max_events"),
            ("[destination]\ntype = \"file\"\npath = \"/x\"\n[journal]\nmax_bytes = 1000\n", "[journal] max_bytes must be at least"),
        ];
        for (text, want) in cases {
            let e = Config::parse(text).unwrap_err();
            assert!(e.0.contains(want), "{text:?}: {e}");
        }
    }
}
