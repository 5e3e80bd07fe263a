//! The per-instance state file `status` reads: one small JSON object per omprog instance,
//! `<state_dir>/state-<start-unix-ms>-<pid>.json`, replaced atomically (written to a `.tmp`
//! file, then renamed) at start, within 2 s of any change of its counters or delivery health,
//! and at exit (`"exited": true`).
//!
//! Contract: counters are cumulative over the instance's life; an instance's file stays after it
//! exits, so `status` sums live and exited instances alike (rsyslog starts one or two instances
//! per destination and restarts them). The start time in the name keeps a reused pid from
//! overwriting an exited instance's file. Trade-off: files accumulate, one per program start
//! (about 600 bytes each); [`fold_exited`] merges exited instances' files into one
//! `state-exited.json` at each start, under the directory's lock, so the count stays small.
//! Writing never fails the program: an error is logged once and the instance goes on.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use crate::stats::{unix_now, Stats};

/// One instance's snapshot (or, in `state-exited.json`, the sum of exited instances).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct InstanceState {
    pub destination: String,
    pub pid: u32,
    pub started: u64,
    pub updated: u64,
    pub exited: bool,
    pub lines_in: u64,
    pub events: u64,
    pub delivered: u64,
    pub filtered: u64,
    pub parse_errors: u64,
    pub dead_lettered: u64,
    pub retries: u64,
    pub commits_failed: u64,
    pub journal_adopted: u64,
    pub last_error: Option<String>,
    pub last_error_at: Option<u64>,
    pub error_cleared_at: Option<u64>,
    pub last_delivery_at: Option<u64>,
}

impl InstanceState {
    pub fn of(destination: &str, started: u64, stats: &Stats, exited: bool) -> InstanceState {
        let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let h = stats.health();
        InstanceState {
            destination: destination.to_string(),
            pid: std::process::id(),
            started,
            updated: unix_now(),
            exited,
            lines_in: g(&stats.lines_in),
            events: g(&stats.events),
            delivered: g(&stats.delivered),
            filtered: g(&stats.filtered),
            parse_errors: g(&stats.parse_errors),
            dead_lettered: g(&stats.dead_lettered),
            retries: g(&stats.retries),
            commits_failed: g(&stats.commits_failed),
            journal_adopted: g(&stats.journal_adopted),
            last_error: h.last_error,
            last_error_at: h.last_error_at,
            error_cleared_at: h.cleared_at,
            last_delivery_at: h.last_delivery_at,
        }
    }

    /// Adds `o`'s counters to these (the error fields: the later one wins).
    pub fn add(&mut self, o: &InstanceState) {
        self.lines_in += o.lines_in;
        self.events += o.events;
        self.delivered += o.delivered;
        self.filtered += o.filtered;
        self.parse_errors += o.parse_errors;
        self.dead_lettered += o.dead_lettered;
        self.retries += o.retries;
        self.commits_failed += o.commits_failed;
        self.journal_adopted += o.journal_adopted;
        self.updated = self.updated.max(o.updated);
        if o.last_error_at > self.last_error_at {
            self.last_error = o.last_error.clone();
            self.last_error_at = o.last_error_at;
            self.error_cleared_at = o.error_cleared_at;
        }
        self.last_delivery_at = self.last_delivery_at.max(o.last_delivery_at);
    }
}

/// The state file of this instance.
pub struct StateFile {
    path: PathBuf,
    destination: String,
    started_ms: u128,
    warned: AtomicBool,
}

impl StateFile {
    pub fn new(dir: &Path, destination: &str) -> StateFile {
        let started_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        let path = dir.join(format!("state-{started_ms}-{}.json", std::process::id()));
        StateFile { path, destination: destination.to_string(), started_ms, warned: AtomicBool::new(false) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the file with a snapshot of `stats`.
    pub fn write(&self, stats: &Stats, exited: bool) {
        let state = InstanceState::of(&self.destination, (self.started_ms / 1000) as u64, stats, exited);
        if let Err(e) = write_atomic(&self.path, &state) {
            if !self.warned.swap(true, Ordering::Relaxed) {
                log::warn!("cannot write the state file {} for `status`: {e}", self.path.display());
            }
        }
    }
}

fn write_atomic(path: &Path, state: &InstanceState) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o640).open(&tmp)?;
    f.write_all(&serde_json::to_vec(state).map_err(std::io::Error::other)?)?;
    f.write_all(b"\n")?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// The state files of a directory: `(path, state)`, `state-exited.json` included.
pub fn read_dir(dir: &Path) -> Vec<(PathBuf, InstanceState)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("state-") && name.ends_with(".json") {
            if let Some(s) = std::fs::read(e.path()).ok().and_then(|b| serde_json::from_slice::<InstanceState>(&b).ok()) {
                out.push((e.path(), s));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Is the instance of a state file still running? (`exited` unset and the pid alive.)
pub fn is_live(s: &InstanceState) -> bool {
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    !s.exited && s.pid != 0 && unsafe { libc::kill(s.pid as libc::pid_t, 0) } == 0
}

/// Merges the files of exited instances into `state-exited.json` (under the directory's lock
/// file, so two starting instances do not fold the same file twice).
pub fn fold_exited(dir: &Path) {
    let Ok(lock) = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.join("state.lock")) else { return };
    if !matches!(crate::flock::try_lock(&lock), Ok(true)) {
        return;
    }
    let exited_path = dir.join("state-exited.json");
    let mut total = std::fs::read(&exited_path).ok().and_then(|b| serde_json::from_slice::<InstanceState>(&b).ok()).unwrap_or_default();
    let mut folded = Vec::new();
    for (path, s) in read_dir(dir) {
        if path != exited_path && !is_live(&s) {
            total.destination = s.destination.clone();
            total.add(&s);
            folded.push(path);
        }
    }
    if folded.is_empty() {
        return;
    }
    total.exited = true;
    total.pid = 0;
    if write_atomic(&exited_path, &total).is_ok() {
        for p in folded {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(pid: u32, exited: bool, delivered: u64) -> InstanceState {
        InstanceState { destination: "d".into(), pid, exited, delivered, lines_in: delivered, ..Default::default() }
    }

    #[test]
    fn exited_instances_fold_into_one_file_and_sums_stay() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write_atomic(&d.join("state-1-111.json"), &state(111, true, 5)).unwrap();
        write_atomic(&d.join("state-2-222.json"), &state(222, true, 7)).unwrap();
        let me = std::process::id();
        write_atomic(&d.join(format!("state-3-{me}.json")), &state(me, false, 11)).unwrap();
        let sum = |d: &Path| read_dir(d).iter().map(|(_, s)| s.delivered).sum::<u64>();
        assert_eq!(sum(d), 23);
        fold_exited(d);
        let files: Vec<String> = read_dir(d).iter().map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(files, ["state-3-".to_string() + &me.to_string() + ".json", "state-exited.json".into()], "the live one stays");
        assert_eq!(sum(d), 23, "folding keeps the sum");
        write_atomic(&d.join("state-4-444.json"), &state(444, true, 1)).unwrap();
        fold_exited(d);
        assert_eq!(sum(d), 24);
        assert_eq!(read_dir(d).len(), 2);
    }

    #[test]
    fn a_journal_counts_its_undelivered_lines_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = crate::journal::Journal::open(dir.path(), 1 << 20, false).unwrap();
        assert_eq!(crate::status::journal_backlog(dir.path()), (0, 1));
        j.append(b"one\n").unwrap();
        j.append(b"two\n").unwrap();
        assert_eq!(crate::status::journal_backlog(dir.path()), (2, 1), "read while its owner holds it");
        j.clear().unwrap();
        assert_eq!(crate::status::journal_backlog(dir.path()), (0, 1), "delivered: the file stays, its lines do not count");
    }
}
