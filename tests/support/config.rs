//! Destination configs for tests, built in one place instead of `format!` strings in every test
//! file: values are written by the `toml` crate (quoting, escaping, paths), keys in the order
//! they were set, so a test can say which line a key lands on ([`ConfigToml::line_of`]).

use std::path::{Path, PathBuf};

/// A config file under construction: `[destination]` first, then the other sections.
#[derive(Clone, Debug)]
pub struct ConfigToml {
    sections: Vec<(String, Vec<(String, toml::Value)>)>,
}

/// A path as a TOML string value.
pub fn path_value(p: &Path) -> toml::Value {
    toml::Value::String(p.display().to_string())
}

impl ConfigToml {
    /// `[destination]` of `type` with no other key.
    pub fn destination(kind: &str) -> ConfigToml {
        ConfigToml { sections: vec![("destination".into(), vec![("type".into(), kind.into())])] }
    }

    pub fn file(path: &Path) -> ConfigToml {
        ConfigToml::destination("file").dest("path", path_value(path))
    }

    pub fn http(url: &str) -> ConfigToml {
        ConfigToml::destination("http").dest("url", url)
    }

    pub fn syslog(address: impl std::fmt::Display) -> ConfigToml {
        ConfigToml::destination("syslog").dest("address", address.to_string())
    }

    /// `http` with `preset = "splunk-hec"` and its `token_file`.
    pub fn hec(url: &str, token_file: &Path) -> ConfigToml {
        ConfigToml::http(url).dest("preset", "splunk-hec").dest("token_file", path_value(token_file))
    }

    /// `http` with `preset = "elasticsearch-bulk"`.
    pub fn bulk(url: &str) -> ConfigToml {
        ConfigToml::http(url).dest("preset", "elasticsearch-bulk")
    }

    /// `amqp` to `server:port` (the other keys set with [`dest`](Self::dest)).
    pub fn amqp(server: &str, port: u16) -> ConfigToml {
        ConfigToml::destination("amqp").dest("server", server).dest("port", i64::from(port))
    }

    /// Sets (or replaces) a key of `[destination.clusters.<cluster>]` (a per-cluster override).
    pub fn cluster(self, cluster: &str, key: &str, value: impl Into<toml::Value>) -> ConfigToml {
        self.set(&format!("destination.clusters.{cluster}"), key, value)
    }

    /// `[destination] format`.
    pub fn format(self, format: &str) -> ConfigToml {
        self.dest("format", format)
    }

    /// Sets (or replaces) a `[retry]` key.
    pub fn retry(self, key: &str, value: impl Into<toml::Value>) -> ConfigToml {
        self.set("retry", key, value)
    }

    /// `[retry] initial_backoff_ms` and `max_backoff_ms`.
    pub fn backoff_ms(self, initial: i64, max: i64) -> ConfigToml {
        self.retry("initial_backoff_ms", initial).retry("max_backoff_ms", max)
    }

    /// `[batch] max_events`.
    pub fn max_events(self, n: i64) -> ConfigToml {
        self.set("batch", "max_events", n)
    }

    /// `[dead_letter] path`.
    pub fn dead_letter(self, path: &Path) -> ConfigToml {
        self.set("dead_letter", "path", path_value(path))
    }

    /// `[journal] dir`.
    pub fn journal_dir(self, dir: &Path) -> ConfigToml {
        self.set("journal", "dir", path_value(dir))
    }

    /// `[journal] enabled`.
    pub fn journal_enabled(self, enabled: bool) -> ConfigToml {
        self.set("journal", "enabled", enabled)
    }

    /// `[stats] interval_secs`.
    pub fn stats_secs(self, secs: i64) -> ConfigToml {
        self.set("stats", "interval_secs", secs)
    }

    /// Dead-letter file and journal inside `dir`, stats every second: what most tests want.
    pub fn spool_in(self, dir: &Path) -> ConfigToml {
        self.dead_letter(&dir.join("dead.ndjson")).journal_dir(&dir.join("journal")).stats_secs(1)
    }

    /// Sets (or replaces) a `[destination]` key.
    pub fn dest(self, key: &str, value: impl Into<toml::Value>) -> ConfigToml {
        self.set("destination", key, value)
    }

    /// Sets (or replaces) `[section] key`.
    pub fn set(mut self, section: &str, key: &str, value: impl Into<toml::Value>) -> ConfigToml {
        let value = value.into();
        let idx = match self.sections.iter().position(|(s, _)| s == section) {
            Some(i) => i,
            None => {
                self.sections.push((section.into(), Vec::new()));
                self.sections.len() - 1
            }
        };
        let keys = &mut self.sections[idx].1;
        match keys.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => keys.push((key.into(), value)),
        }
        self
    }

    /// Removes `[section] key`.
    pub fn unset(mut self, section: &str, key: &str) -> ConfigToml {
        for (s, keys) in &mut self.sections {
            if s == section {
                keys.retain(|(k, _)| k != key);
            }
        }
        self
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        for (section, keys) in &self.sections {
            out.push_str(&format!("[{section}]\n"));
            for (k, v) in keys {
                out.push_str(&format!("{k} = {v}\n"));
            }
        }
        out
    }

    /// The 1-based line `[section] key` is written on.
    pub fn line_of(&self, section: &str, key: &str) -> usize {
        let text = self.text();
        let header = text.lines().position(|l| l == format!("[{section}]")).expect("section present");
        let offset = text.lines().skip(header).position(|l| l.starts_with(&format!("{key} = "))).expect("key present");
        header + offset + 1
    }

    /// Writes the config to `path` and returns it.
    pub fn write(&self, path: impl Into<PathBuf>) -> PathBuf {
        let path = path.into();
        std::fs::write(&path, self.text()).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }
}
