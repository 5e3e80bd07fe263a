//! `qumulo-audit-broker apply`: `broker.toml` -> the rsyslog drop-ins, validated, swapped in.
//!
//! Order, and what each step guarantees (a broken `broker.toml` never replaces a working
//! configuration):
//! 1. parse `broker.toml` ([`BrokerFile::load`]), check the listener TLS files and driver
//!    ([`super::tls::preflight`]) and run every destination through the same
//!    [`preflight::check`] as `check` and omprog start-up: an error stops here (exit 2);
//! 2. render ([`super::render`]), knowing which modules the rest of rsyslog's configuration
//!    loads (the main `rsyslog.conf` and what it includes, our own directory excluded);
//! 3. stage the new directory next to the live one (`<dir>.new`), with the applied copy of
//!    `broker.toml` the programs read (an edit reaches them only through `apply`), the live directory's
//!    non-`.conf` files (the `.example`s); a `.conf` file the rendering does not produce
//!    becomes an inert placeholder of the same name (so a package upgrade cannot re-create the
//!    shipped hand-written file beside the generated ones); the hand-written files replaced are
//!    listed (they stay in `<dir>.prev`);
//! 4. `rsyslogd -N1` on the staged directory alone (the package's template file including it,
//!    plus the modules loaded elsewhere): an error stops here (exit 1), nothing changed;
//! 5. swap the staged and live directories in one `renameat2(RENAME_EXCHANGE)`, keep the old one
//!    as `<dir>.prev`; then `rsyslogd -N1` on the whole configuration (`--rsyslog-conf`) and, if
//!    that fails, swap back (exit 1).
//!
//! rsyslog reads its configuration only at start: the running rsyslogd keeps the previous one
//! until it is restarted (`--restart` runs `systemctl restart rsyslog`). `--dry-run` stops
//! after step 4 and prints the diff. Every path is an option (tests, other layouts).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::render::{self, Rendering, MARKER};
use super::BrokerFile;
use crate::config::preflight;

/// Where things are.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub broker_toml: PathBuf,
    /// The directory `apply` owns (included by the package's template file).
    pub rsyslog_dir: PathBuf,
    /// rsyslog's main configuration (for the modules it loads and the final `-N1`).
    pub rsyslog_conf: PathBuf,
    /// The package's template file (`qab_envelope`), which includes `rsyslog_dir`.
    pub template_conf: PathBuf,
    pub rsyslogd: String,
    pub dry_run: bool,
    pub restart: bool,
}

/// Exit codes.
pub const EXIT_INVALID_TOML: i32 = 2;
pub const EXIT_RSYSLOG_REFUSED: i32 = 1;

pub fn run(o: &ApplyOptions) -> i32 {
    match apply(o) {
        Ok(msg) => {
            print!("{msg}");
            0
        }
        Err((code, msg)) => {
            eprintln!("{msg}");
            eprintln!("apply: nothing changed; the running configuration stays as it is");
            code
        }
    }
}

fn apply(o: &ApplyOptions) -> Result<String, (i32, String)> {
    let invalid = |e: String| (EXIT_INVALID_TOML, e);
    let broker = BrokerFile::load(&o.broker_toml).map_err(|e| invalid(e.to_string()))?;
    broker.check_queue_size().map_err(|e| invalid(e.to_string()))?;
    if !broker.clusters.is_empty() && broker.destinations.is_empty() {
        return Err(invalid(format!("{}: clusters are defined but no [[destination]]: their events would go nowhere", o.broker_toml.display())));
    }
    let mut out = String::new();
    if let Some(t) = &broker.globals.tls {
        super::tls::preflight(&broker.text, &broker.path, t).map_err(|e| invalid(e.to_string()))?;
    }
    for d in &broker.destinations {
        let pf = preflight::check(&d.config).map_err(|e| invalid(format!("destination {:?}: {e}", d.name)))?;
        for (key, dir) in pf.will_create {
            out.push_str(&format!("destination {:?}: start-up will create {} ({key})\n", d.name, dir.display()));
        }
    }
    let loaded = modules_elsewhere(&o.rsyslog_conf, &o.rsyslog_dir);
    let rendering = Rendering {
        loaded_modules: loaded.clone(),
        broker_toml: absolute(&o.broker_toml),
        omprog_config: absolute(&o.rsyslog_dir).join(render::SNAPSHOT),
    };
    let mut files = render::render(&broker, &rendering);
    let live = current_files(&o.rsyslog_dir);
    // Every `.conf` name in the live directory stays, as an inert placeholder if nothing is
    // rendered under it: a package upgrade re-creates a missing shipped file (rpm does, for
    // %config files), which would load omprog twice and define qab_dest_file again.
    for name in live.keys().filter(|n| n.ends_with(".conf")) {
        files.entry(name.clone()).or_insert_with(|| render::placeholder(name, &rendering.broker_toml));
    }
    let (diff, hand_written) = diff(&live, &files);
    if diff.is_empty() {
        return Ok(format!("{out}apply: {} is up to date with {} (nothing to change)\n", o.rsyslog_dir.display(), o.broker_toml.display()));
    }
    let stage = sibling(&o.rsyslog_dir, "new");
    let _ = std::fs::remove_dir_all(&stage);
    write_stage(&stage, &o.rsyslog_dir, &o.broker_toml, &files).map_err(|e| (EXIT_RSYSLOG_REFUSED, format!("apply: cannot write {}: {e}", stage.display())))?;
    let checked = check_isolated(o, &stage, &loaded, &files);
    if let Err(e) = checked {
        let _ = std::fs::remove_dir_all(&stage);
        return Err((EXIT_RSYSLOG_REFUSED, e));
    }
    out.push_str(&diff);
    if o.dry_run {
        let _ = std::fs::remove_dir_all(&stage);
        out.push_str(&format!("apply --dry-run: rsyslogd -N1 accepts the new configuration; nothing changed in {}\n", o.rsyslog_dir.display()));
        return Ok(out);
    }
    swap(&stage, &o.rsyslog_dir).map_err(|e| (EXIT_RSYSLOG_REFUSED, format!("apply: cannot swap {} in: {e}", stage.display())))?;
    if o.rsyslog_conf.exists() {
        if let Err(e) = rsyslogd_n1(&o.rsyslogd, &o.rsyslog_conf) {
            let back = swap(&stage, &o.rsyslog_dir);
            let _ = std::fs::remove_dir_all(&stage);
            return Err((EXIT_RSYSLOG_REFUSED, format!("apply: rsyslogd -N1 -f {} refused the whole configuration with the new drop-ins ({}):\n{e}", o.rsyslog_conf.display(), if back.is_ok() { "swapped back" } else { "SWAP BACK FAILED" })));
        }
    }
    let prev = sibling(&o.rsyslog_dir, "prev");
    let _ = std::fs::remove_dir_all(&prev);
    let _ = std::fs::rename(&stage, &prev);
    if !hand_written.is_empty() {
        out.push_str(&format!("apply: hand-written drop-ins no longer active (kept in {}): {}\n", prev.display(), hand_written.join(", ")));
    }
    out.push_str(&format!("apply: {} now matches {} (previous files in {})\n", o.rsyslog_dir.display(), o.broker_toml.display(), prev.display()));
    if o.restart {
        match Command::new("systemctl").args(["restart", "rsyslog.service"]).status() {
            Ok(s) if s.success() => out.push_str("apply: rsyslog restarted\n"),
            other => return Err((EXIT_RSYSLOG_REFUSED, format!("{out}apply: the configuration is in place but `systemctl restart rsyslog` failed ({other:?})"))),
        }
    } else {
        out.push_str("apply: rsyslog reads it at its next start: systemctl restart rsyslog\n");
    }
    Ok(out)
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_path_buf())
    }
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut s = dir.as_os_str().to_owned();
    s.push(format!(".{suffix}"));
    PathBuf::from(s)
}

/// The live directory's `.conf` files.
fn current_files(dir: &Path) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".conf") || name == render::SNAPSHOT {
                m.insert(name, std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
    }
    m
}

/// A readable diff of the `.conf` files (empty: no change), and the hand-written files that stop
/// being active.
fn diff(live: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut hand = Vec::new();
    let names: BTreeSet<&String> = live.keys().chain(new.keys()).collect();
    for name in names {
        match (live.get(name), new.get(name)) {
            (Some(a), Some(b)) if a == b => {}
            (a, b) => {
                if a.is_some_and(|t| !t.contains(MARKER)) && b.map_or(true, |t| t.contains(render::PLACEHOLDER)) {
                    hand.push(name.clone());
                }
                let what = match (a, b) {
                    (None, _) => "added",
                    (_, None) => "removed",
                    _ => "changed",
                };
                out.push_str(&format!("--- {name} ({what})\n"));
                out.push_str(&line_diff(a.map_or("", String::as_str), b.map_or("", String::as_str)));
            }
        }
    }
    (out, hand)
}

/// `-`/`+` lines of a longest-common-subsequence diff (the files are small).
pub fn line_diff(a: &str, b: &str) -> String {
    let a: Vec<&str> = a.lines().collect();
    let b: Vec<&str> = b.lines().collect();
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push_str(&format!("+{}\n", b[j]));
            j += 1;
        } else {
            out.push_str(&format!("-{}\n", a[i]));
            i += 1;
        }
    }
    out
}

fn write_stage(stage: &Path, live: &Path, source: &Path, files: &BTreeMap<String, String>) -> std::io::Result<()> {
    std::fs::create_dir_all(stage)?;
    if let Ok(rd) = std::fs::read_dir(live) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".conf") && name != render::SNAPSHOT && e.file_type().is_ok_and(|t| t.is_file()) {
                std::fs::copy(e.path(), stage.join(&name))?;
            }
        }
    }
    for (name, text) in files {
        std::fs::write(stage.join(name), text)?;
    }
    // The applied broker.toml names secret files: it gets broker.toml's mode and owner.
    if let Ok(meta) = std::fs::metadata(source) {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let snap = stage.join(render::SNAPSHOT);
        std::fs::set_permissions(&snap, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        let _ = std::os::unix::fs::chown(&snap, Some(meta.uid()), Some(meta.gid()));
    }
    let f = std::fs::File::open(stage)?;
    f.sync_all()?;
    for name in files.keys() {
        std::fs::File::open(stage.join(name))?.sync_all()?;
    }
    Ok(())
}

/// `rsyslogd -N1` on the staged files alone: the package's template file, its include pointed
/// at the stage, after the modules the rest of the configuration loads.
fn check_isolated(o: &ApplyOptions, stage: &Path, loaded: &BTreeSet<String>, files: &BTreeMap<String, String>) -> Result<(), String> {
    let template = std::fs::read_to_string(&o.template_conf)
        .map_err(|e| format!("apply: cannot read the package's rsyslog template file {}: {e} (--template-conf)", o.template_conf.display()))?;
    let live_glob = format!("{}/*.conf", o.rsyslog_dir.display());
    if !template.contains(&live_glob) {
        return Err(format!("apply: {} does not include {live_glob}: the rendered files would not be loaded (--rsyslog-dir)", o.template_conf.display()));
    }
    let rendered_loads: BTreeSet<String> = files.values().flat_map(|t| render::modules_loaded_by(t)).collect();
    let tmp = std::env::temp_dir().join(format!("qab-apply-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| format!("apply: {}: {e}", tmp.display()))?;
    let mut conf = format!("global(workDirectory=\"{}\")\n", tmp.display());
    // Only the modules the rendering relies on (the others are no concern of this check).
    for m in loaded.difference(&rendered_loads).filter(|m| ["omprog", "mmsequence", "imtcp", "impstats"].contains(&m.as_str())) {
        conf.push_str(&format!("module(load=\"{m}\")\n"));
    }
    conf.push_str(&template.replace(&live_glob, &format!("{}/*.conf", stage.display())));
    let path = tmp.join("validate.conf");
    let result = std::fs::write(&path, conf).map_err(|e| e.to_string()).and_then(|_| rsyslogd_n1(&o.rsyslogd, &path));
    let _ = std::fs::remove_dir_all(&tmp);
    result.map_err(|e| format!("apply: rsyslogd -N1 refused the rendered configuration:\n{e}"))
}

/// `rsyslogd -N1 -f conf`: Ok if it exits 0 and printed no error.
pub fn rsyslogd_n1(rsyslogd: &str, conf: &Path) -> Result<(), String> {
    let out = Command::new(rsyslogd)
        .arg("-N1")
        .arg("-f")
        .arg(conf)
        .env_remove("NOTIFY_SOCKET")
        .output()
        .map_err(|e| format!("cannot run {rsyslogd}: {e}"))?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() && !text.to_ascii_lowercase().contains("error") {
        Ok(())
    } else {
        Err(text.trim().to_string())
    }
}

/// Exchanges two directories atomically (or renames `stage` into place if `live` is missing).
fn swap(stage: &Path, live: &Path) -> std::io::Result<()> {
    if !live.exists() {
        return std::fs::rename(stage, live);
    }
    rustix::fs::renameat_with(rustix::fs::CWD, stage, rustix::fs::CWD, live, rustix::fs::RenameFlags::EXCHANGE).map_err(std::io::Error::from)
}

/// Modules loaded by the rsyslog configuration outside `own` (the main file and its includes,
/// three levels deep).
fn modules_elsewhere(main: &Path, own: &Path) -> BTreeSet<String> {
    let own = std::fs::canonicalize(own).unwrap_or_else(|_| own.to_path_buf());
    let mut found = BTreeSet::new();
    let mut todo = vec![(main.to_path_buf(), 0)];
    let mut seen = BTreeSet::new();
    while let Some((file, depth)) = todo.pop() {
        let canon = std::fs::canonicalize(&file).unwrap_or_else(|_| file.clone());
        if canon.starts_with(&own) || !seen.insert(canon) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        found.extend(render::modules_loaded_by(&text));
        if depth >= 3 {
            continue;
        }
        for pattern in includes(&text) {
            for f in glob(&pattern) {
                todo.push((f, depth + 1));
            }
        }
    }
    found
}

/// `$IncludeConfig X` and `include(file="X")` patterns.
fn includes(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split_once('#').map_or(line, |(a, _)| a).trim();
        if let Some(rest) = line.strip_prefix("$IncludeConfig") {
            out.push(rest.trim().to_string());
        } else if let Some(i) = line.find("include(") {
            if let Some(f) = line[i..].find("file=\"") {
                let v = &line[i + f + 6..];
                if let Some(end) = v.find('"') {
                    out.push(v[..end].to_string());
                }
            }
        }
    }
    out
}

/// Files matching `dir/pattern` where only the last component may hold `*`; a directory means
/// every file in it.
fn glob(pattern: &str) -> Vec<PathBuf> {
    let p = Path::new(pattern);
    if p.is_dir() {
        return std::fs::read_dir(p).map(|rd| rd.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    }
    let (Some(dir), Some(name)) = (p.parent(), p.file_name().and_then(|n| n.to_str())) else { return vec![] };
    if !name.contains('*') {
        return vec![p.to_path_buf()];
    }
    let parts: Vec<&str> = name.split('*').collect();
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    wildcard(&n, &parts)
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn wildcard(name: &str, parts: &[&str]) -> bool {
    let Some((first, rest)) = parts.split_first() else { return name.is_empty() };
    let Some(mut s) = name.strip_prefix(first) else { return false };
    for (i, part) in rest.iter().enumerate() {
        if i == rest.len() - 1 {
            return s.ends_with(part);
        }
        match s.find(part) {
            Some(k) => s = &s[k + part.len()..],
            None => return false,
        }
    }
    s.is_empty()
}
