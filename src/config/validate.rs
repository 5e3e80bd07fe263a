//! The bounds and syntax of every value, checked once the document is parsed (no I/O).
//!
//! Each error names its key (`ConfigError::key`, so [`super::Config::locate`] can add the
//! line) and says what is accepted. Bounds are the constants below; `docs/configuration.md`
//! lists them. They keep every duration added to `Instant::now()` (timeouts, backoff,
//! keep-alive) far from overflowing, and every size small enough to allocate.

use std::fmt::Display;
use std::ops::RangeInclusive;

use super::destination::{Destination, HttpDestination, HttpPreset, SyslogDestination};
use super::{ClusterSourceKind, Config, ConfigError};

/// `[destination] timeout_secs` (http).
pub const TIMEOUT_SECS: RangeInclusive<u64> = 1..=3600;
/// `[destination] facility` (syslog).
pub const FACILITY: RangeInclusive<u8> = 0..=23;
/// `[destination] app_name` (syslog): RFC 5424 APP-NAME length.
pub const APP_NAME_LEN: RangeInclusive<usize> = 1..=48;
pub const BATCH_MAX_EVENTS: RangeInclusive<usize> = 1..=1_000_000;
pub const BATCH_MAX_BYTES: RangeInclusive<usize> = 1024..=1 << 30;
pub const INITIAL_BACKOFF_MS: RangeInclusive<u64> = 1..=3_600_000;
pub const MAX_BACKOFF_MS: RangeInclusive<u64> = 0..=3_600_000;
pub const MAX_ELAPSED_SECS: RangeInclusive<u64> = 0..=86_400;
pub const KEEPALIVE_MS: RangeInclusive<u64> = 1..=600_000;
pub const STATS_INTERVAL_SECS: RangeInclusive<u64> = 0..=86_400;
/// `[input] max_line`, and `convert --max-line`.
pub const MAX_LINE: RangeInclusive<usize> = 256..=16 * 1024 * 1024;
pub const TYPE_CACHE_ENTRIES: RangeInclusive<usize> = 0..=1 << 26;
/// Upper bound of `[journal] max_bytes` (the lower bound is `[input] max_line` + 2).
pub const JOURNAL_MAX_BYTES_LIMIT: u64 = 1 << 36;

/// An error about `[section] key`.
fn err(section: &str, key: &str, message: impl Display) -> ConfigError {
    ConfigError::new(message.to_string()).with_key(format!("{section}.{key}"))
}

/// `value` must lie in `range` (also used by the broker kinds' own files).
pub(super) fn within<T: PartialOrd + Display>(section: &str, key: &str, value: T, range: &RangeInclusive<T>) -> Result<(), ConfigError> {
    if range.contains(&value) {
        return Ok(());
    }
    Err(err(section, key, format!("[{section}] {key} = {value}: must be between {} and {}", range.start(), range.end())))
}

/// Checks every value of a parsed config.
pub(super) fn validate(cfg: &Config) -> Result<(), ConfigError> {
    match &cfg.destination {
        Destination::File(d) => {
            if d.path.as_os_str().is_empty() {
                return Err(err("destination", "path", "[destination] path is empty"));
            }
        }
        Destination::Http(d) => validate_http(d)?,
        Destination::Syslog(d) => validate_syslog(d)?,
        Destination::Amqp(d) => super::amqp::validate(d)?,
        Destination::Kafka(d) => super::kafka::validate(d)?,
    }
    let b = &cfg.batch;
    within("batch", "max_events", b.max_events, &BATCH_MAX_EVENTS)?;
    within("batch", "max_bytes", b.max_bytes, &BATCH_MAX_BYTES)?;
    let r = &cfg.retry;
    within("retry", "initial_backoff_ms", r.initial_backoff_ms, &INITIAL_BACKOFF_MS)?;
    within("retry", "max_backoff_ms", r.max_backoff_ms, &MAX_BACKOFF_MS)?;
    within("retry", "max_elapsed_secs", r.max_elapsed_secs, &MAX_ELAPSED_SECS)?;
    within("retry", "keepalive_ms", r.keepalive_ms, &KEEPALIVE_MS)?;
    within("stats", "interval_secs", cfg.stats.interval_secs, &STATS_INTERVAL_SECS)?;
    if cfg.cluster.source == ClusterSourceKind::Fixed && cfg.cluster.name.is_none() {
        return Err(err("cluster", "source", "[cluster] source = \"fixed\" needs `name`"));
    }
    if cfg.cluster.name.as_deref() == Some("") {
        return Err(err("cluster", "name", "[cluster] name is empty"));
    }
    within("input", "max_line", cfg.input.max_line, &MAX_LINE)?;
    within("input", "type_cache_entries", cfg.input.type_cache_entries, &TYPE_CACHE_ENTRIES)?;
    let j = &cfg.journal;
    // One line (at most max_line + 1 bytes and its newline) must always fit an empty journal,
    // or that line could never be accepted.
    let least = cfg.input.max_line as u64 + 2;
    if j.max_bytes < least {
        return Err(err("journal", "max_bytes", format!("[journal] max_bytes must be at least [input] max_line + 2 ({least}), not {}", j.max_bytes)));
    }
    within("journal", "max_bytes", j.max_bytes, &(least..=JOURNAL_MAX_BYTES_LIMIT))?;
    if j.dir.as_ref().is_some_and(|d| d.as_os_str().is_empty()) {
        return Err(err("journal", "dir", "[journal] dir is empty"));
    }
    if cfg.dead_letter.path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
        return Err(err("dead_letter", "path", "[dead_letter] path is empty"));
    }
    Ok(())
}

fn validate_http(d: &HttpDestination) -> Result<(), ConfigError> {
    check_url(&d.url).map_err(|m| err("destination", "url", format!("[destination] url = {:?}: {m}", d.url)))?;
    if d.preset == HttpPreset::ElasticsearchBulk && !d.format.is_json() {
        return Err(err(
            "destination",
            "format",
            format!("[destination] preset = \"elasticsearch-bulk\" needs a JSON format (json, ecs, ocsf), not {:?}", d.format.name()),
        ));
    }
    if d.username.is_some() != d.password_file.is_some() {
        let key = if d.username.is_some() { "username" } else { "password_file" };
        return Err(err("destination", key, "[destination] `username` and `password_file` go together"));
    }
    if d.token_file.is_some() && d.username.is_some() {
        return Err(err("destination", "token_file", "[destination] use either `token_file` or `username`/`password_file`, not both"));
    }
    if d.username.as_deref().is_some_and(|u| u.is_empty() || u.contains(':')) {
        return Err(err("destination", "username", "[destination] username must not be empty or contain `:` (basic auth)"));
    }
    within("destination", "timeout_secs", d.timeout_secs, &TIMEOUT_SECS)
}

fn validate_syslog(d: &SyslogDestination) -> Result<(), ConfigError> {
    check_host_port(&d.address, true)
        .map_err(|m| err("destination", "address", format!("[destination] address = {:?}: {m}", d.address)))?;
    check_app_name(&d.app_name).map_err(|m| err("destination", "app_name", format!("[destination] app_name = {:?}: {m}", d.app_name)))?;
    if !FACILITY.contains(&d.facility) {
        return Err(err("destination", "facility", format!("[destination] facility = {}: must be 0..=23", d.facility)));
    }
    Ok(())
}

/// An `http://` or `https://` URL with a host and, if given, a port in 1..=65535.
pub fn check_url(url: &str) -> Result<(), String> {
    let Some(rest) = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")) else {
        return Err("must start with http:// or https://".into());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    check_host_port(host_port, false).map_err(|e| format!("{e} (expected http[s]://host[:port][/path])"))
}

/// `host:port` (`[v6addr]:port`): a host name or address, and a port in 1..=65535 (optional
/// unless `port_required`).
pub fn check_host_port(s: &str, port_required: bool) -> Result<(), String> {
    let (host, port) = if let Some(inner) = s.strip_prefix('[') {
        let Some((v6, after)) = inner.split_once(']') else { return Err("unclosed `[` in the host".into()) };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{v6:?} is not an IPv6 address"));
        }
        match after {
            "" => (v6, None),
            p if p.starts_with(':') => (v6, Some(&p[1..])),
            _ => return Err("expected `:port` after `]`".into()),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => return Err("an IPv6 address goes in brackets: [addr]:port".into()),
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    if !host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':')) {
        return Err(format!("{host:?} is not a host name or address"));
    }
    match port {
        None if port_required => Err("expected host:port".into()),
        None => Ok(()),
        Some(p) => match p.parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) && !p.starts_with('+') => Ok(()),
            _ => Err(format!("port {p:?} is not in 1..=65535")),
        },
    }
}

/// RFC 5424 APP-NAME: 1 to 48 printable US-ASCII characters (33..=126), so no spaces.
pub fn check_app_name(s: &str) -> Result<(), String> {
    if !APP_NAME_LEN.contains(&s.len()) || !s.bytes().all(|b| (33..=126).contains(&b)) {
        return Err("must be 1 to 48 printable ASCII characters without spaces (RFC 5424 APP-NAME)".into());
    }
    Ok(())
}

/// `convert --max-line`: the same bounds as `[input] max_line`.
pub fn parse_max_line(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("{s:?} is not a number of bytes: {e}"))?;
    if !MAX_LINE.contains(&n) {
        return Err(format!("must be between {} and {} bytes", MAX_LINE.start(), MAX_LINE.end()));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ports() {
        for ok in ["h:514", "10.0.0.1:1", "[::1]:65535", "siem.example.com:514", "a_b-c:6514"] {
            assert_eq!(check_host_port(ok, true), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("h", "host:port"),
            ("h:0", "1..=65535"),
            ("h:70000", "1..=65535"),
            ("h:", "1..=65535"),
            (":514", "no host"),
            ("::1:514", "brackets"),
            ("[::1:514", "unclosed"),
            ("[nope]:514", "IPv6"),
            ("my host:514", "not a host"),
            ("h:+514", "1..=65535"),
        ] {
            let e = check_host_port(bad, true).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn urls() {
        for ok in ["http://h", "https://h:8088/services/collector", "http://u:p@h:9200/_bulk", "http://[::1]:80/x?y"] {
            assert_eq!(check_url(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("localhost:8088", "http://"),
            ("ftp://h", "http://"),
            ("http://", "no host"),
            ("http://:80/x", "no host"),
            ("https://h:0", "1..=65535"),
            ("https://h:99999/x", "1..=65535"),
        ] {
            let e = check_url(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn app_names() {
        assert!(check_app_name("qumulo-audit").is_ok());
        assert!(check_app_name(&"a".repeat(48)).is_ok());
        for bad in ["", "my app", &"a".repeat(49), "tab\tbed", "é"] {
            assert!(check_app_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn max_line_option() {
        assert_eq!(parse_max_line("65536"), Ok(65536));
        assert!(parse_max_line("0").unwrap_err().contains("between 256 and 16777216"));
        assert!(parse_max_line("99999999999999999999").unwrap_err().contains("not a number"));
    }
}
