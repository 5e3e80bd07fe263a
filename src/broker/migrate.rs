//! `qumulo-audit-broker migrate`: writes a `broker.toml` from the hand-written layout (active
//! rsyslog drop-ins and the per-destination TOML files they name), for `apply` to take over.
//!
//! What it reads: every active `*.conf` of the rsyslog directory; an omprog action's
//! `binary="... omprog --config FILE"` names a destination (its name: the file's stem, as the
//! program names it today), an `imtcp` input and the ruleset it is bound to make a cluster on
//! its port, named by the ruleset's `set $.cluster = "NAME"` (earlier layouts) or else by the
//! input's `name="qab-NAME"` (the envelope's rule, `docs/event-schema.md`). Each destination TOML is carried over as text
//! (comments kept): `[destination]` becomes `[[destination]]` with `name`, `[batch]` and the
//! other sections become `[destination.batch]`..., so the values mean what they meant.
//! Trade-off: a listener whose cluster comes from a lookup table or an `if` on `$fromhost-ip`
//! (31-shared-port.conf) is not translated, only reported, because its node list lives in
//! another file or in RainerScript; the result is parsed as a broker.toml before it is printed,
//! so what is written is valid.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::{Path, PathBuf};

use super::{BrokerFile, SECTIONS};

/// The `broker.toml` text, and notes for the operator (what was not translated).
pub fn migrate(rsyslog_dir: &Path) -> Result<(String, Vec<String>), String> {
    let mut confs: Vec<PathBuf> = std::fs::read_dir(rsyslog_dir)
        .map_err(|e| format!("{}: {e}", rsyslog_dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "conf"))
        .collect();
    confs.sort();
    let mut notes = Vec::new();
    let mut dest_files: Vec<PathBuf> = Vec::new();
    // Per ruleset, the values its `set $.cluster = "..."` lines give, and whether one takes the
    // cluster from elsewhere (a lookup table): a fixed cluster is one value and no lookup.
    let mut cluster_sets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut dynamic: BTreeSet<String> = BTreeSet::new();
    let mut inputs: Vec<(String, u16, String)> = Vec::new();
    for conf in &confs {
        let text = std::fs::read_to_string(conf).map_err(|e| format!("{}: {e}", conf.display()))?;
        if text.contains(super::render::MARKER) {
            return Err(format!("{} was written by `apply`: this layout already comes from a broker.toml", conf.display()));
        }
        let mut ruleset = String::new();
        for line in text.lines() {
            let line = line.split_once('#').map_or(line, |(a, _)| a).trim();
            if let Some(r) = value_of(line, "ruleset(name=") {
                ruleset = r;
            }
            if let Some(rest) = line.strip_prefix("set $.cluster = \"") {
                if let Some(name) = rest.split('"').next() {
                    cluster_sets.entry(ruleset.clone()).or_default().insert(name.to_string());
                }
            } else if line.starts_with("set $.cluster") {
                dynamic.insert(ruleset.clone());
            }
            if line.contains("lookup(") && line.contains("$.cluster") {
                notes.push(format!("{}: ruleset {ruleset:?} takes the cluster from a lookup table: add its clusters by hand ([[cluster]] with `nodes`)", conf.display()));
            }
            if let Some(b) = value_of(line, "binary=") {
                if let Some(cfg) = b.split_once("--config ").map(|(_, c)| c.split_whitespace().next().unwrap_or("")) {
                    dest_files.push(PathBuf::from(cfg));
                }
            }
            if line.contains("type=\"imtcp\"") {
                if let (Some(port), Some(rs)) = (value_of(line, "port="), value_of(line, "ruleset=")) {
                    if let Ok(p) = port.parse() {
                        inputs.push((rs, p, value_of(line, "name=").unwrap_or_default()));
                    }
                }
            }
        }
    }
    let mut out = String::from(
        "# broker.toml written by `qumulo-audit-broker migrate` from the hand-written layout.\n# Check with `qumulo-audit-broker apply --dry-run`, then `apply --restart`.\n\n[broker]\n",
    );
    for (rs, port, input) in &inputs {
        let sets = cluster_sets.get(rs);
        let fixed = match sets {
            _ if dynamic.contains(rs) => None,
            Some(values) if values.len() == 1 => values.first().map(String::as_str),
            Some(_) => None,
            None => input.strip_prefix("qab-"),
        };
        match fixed {
            Some(name) => {
                let _ = write!(out, "\n[[cluster]]\nname = {name:?}\nport = {port}\n");
            }
            None => notes.push(format!("listener on port {port} (ruleset {rs:?}) sets no fixed $.cluster (several, or from a lookup) and is not named qab-<cluster>: add its [[cluster]] entries by hand, with `nodes`")),
        }
    }
    for file in &dest_files {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let name = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let _ = write!(out, "\n# From {}\n{}", file.display(), section(&text, &name));
    }
    BrokerFile::parse(&out, Path::new("broker.toml")).map_err(|e| format!("the translation is not a valid broker.toml ({e}); please report this"))?;
    Ok((out, notes))
}

/// `key="value"` in a line.
fn value_of(line: &str, key: &str) -> Option<String> {
    let i = line.find(key)?;
    let rest = line[i + key.len()..].strip_prefix('"')?;
    rest.split('"').next().map(str::to_string)
}

/// A per-destination TOML as a `[[destination]]` section.
fn section(text: &str, name: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t == "[destination]" {
            let _ = writeln!(out, "[[destination]]\nname = {name:?}");
        } else if let Some(inner) = t.strip_prefix('[').and_then(|x| x.strip_suffix(']')).filter(|x| !x.starts_with('[')) {
            let first = inner.split('.').next().unwrap_or("").trim();
            if SECTIONS.contains(&first) {
                let _ = writeln!(out, "[destination.{}]", inner.trim());
            } else {
                let _ = writeln!(out, "{line}");
            }
        } else {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}
