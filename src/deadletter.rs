//! The dead-letter file: every line that could not be parsed and every record the destination
//! refused for good, one JSON object per line with the time, destination, cluster, reason and
//! the original line (or rendered record), so nothing is silently dropped and an operator can
//! replay it after a fix (`jq -r .line dead.ndjson | qumulo-audit-broker convert`).
//!
//! Several program instances may share the file: writes are `O_APPEND` under `flock`.
//! Without a configured path, entries are logged in full on stderr instead.
//!
//! Durability: an entry is written (to the page cache) before the line it stands for is
//! acknowledged, so it survives the death of the process. Where the configuration promises
//! more (a file destination with `fsync`, or `[journal] fsync`), the acknowledgement also waits
//! for [`DeadLetter::sync`]: one `fdatasync` per transaction that wrote entries, none otherwise,
//! so a power cut cannot keep the acknowledgement and lose the entry.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::format::jsonw::JsonObj;
use crate::flock::FlockGuard;
use crate::stats::Stats;
use crate::time::Timestamp;

pub struct DeadLetter {
    destination: String,
    path: Option<PathBuf>,
    file: Mutex<Option<File>>,
    stats: Arc<Stats>,
    /// Set by SIGHUP: the next write reopens the file first (after logrotate moved it).
    reopen_flag: Arc<AtomicBool>,
    /// Entries must be on disk before what they stand for is acknowledged ([`DeadLetter::sync`]).
    durable: bool,
    /// An entry was written since the last sync.
    unsynced: AtomicBool,
}

/// What went to the dead-letter file.
pub enum Kind {
    /// An input line that is not a Qumulo audit record.
    ParseError,
    /// A rendered record the destination refused.
    Rejected,
}

impl DeadLetter {
    /// `durable`: [`DeadLetter::sync`] makes the entries written so far reach the disk (else it
    /// does nothing).
    pub fn new(destination: &str, path: Option<PathBuf>, stats: Arc<Stats>, durable: bool) -> std::io::Result<DeadLetter> {
        let file = match &path {
            Some(p) => Some(open(p)?),
            None => None,
        };
        Ok(DeadLetter {
            destination: destination.to_string(),
            path,
            file: Mutex::new(file),
            stats,
            reopen_flag: Arc::new(AtomicBool::new(false)),
            durable,
            unsynced: AtomicBool::new(false),
        })
    }

    /// Call before acknowledging lines some of which were dead-lettered: when the entries must
    /// be durable, `fdatasync`s the file if an entry was written since the last call. Cheap
    /// when nothing was written. An error means the entries may not survive a power cut: the
    /// caller must not acknowledge (the next call tries again).
    pub fn sync(&self) -> std::io::Result<()> {
        if !self.durable || !self.unsynced.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        let guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
        // An entry that fell back to stderr (the file failed) cannot be synced here; the file
        // that failed is gone from `guard`, and its error was logged with the entry.
        let result = guard.as_ref().map_or(Ok(()), |f| f.sync_data());
        if result.is_err() {
            self.unsynced.store(true, Ordering::SeqCst);
        }
        result
    }

    /// The flag that makes the next write reopen the file (register it for SIGHUP). The file is
    /// reopened by whichever thread writes next, so an entry written after logrotate and HUP
    /// never lands in the rotated file, even when no delivery happened in between.
    pub fn reopen_flag(&self) -> Arc<AtomicBool> {
        self.reopen_flag.clone()
    }

    pub fn reopen(&self) {
        let mut guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
        self.reopen_locked(&mut guard);
    }

    fn reopen_locked(&self, guard: &mut Option<File>) {
        // Entries not yet synced are in the file being let go (rotated away): sync it first.
        if self.durable && self.unsynced.load(Ordering::SeqCst) {
            if let Some(Err(e)) = guard.as_ref().map(|f| f.sync_data()) {
                log::error!("cannot sync the dead-letter file before reopening it: {e}");
            }
        }
        if let Some(p) = &self.path {
            match open(p) {
                Ok(f) => *guard = Some(f),
                Err(e) => log::error!("cannot reopen dead-letter file {}: {e}", p.display()),
            }
        }
    }

    /// Records one entry. Never fails: if the file cannot be written, the entry goes to stderr.
    pub fn write(&self, kind: Kind, cluster: &str, reason: &str, data: &[u8]) {
        self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
        let mut out = Vec::with_capacity(data.len() + reason.len() + 128);
        {
            let mut o = JsonObj::begin(&mut out);
            o.time("time", &Timestamp::now())
                .str("destination", &self.destination)
                .str("kind", match kind {
                    Kind::ParseError => "parse_error",
                    Kind::Rejected => "rejected",
                })
                .opt_str("cluster", cluster)
                .str("reason", reason);
            let text = String::from_utf8_lossy(data);
            let text = text.trim_end_matches(['\n', '\r']);
            o.str(if matches!(kind, Kind::ParseError) { "line" } else { "record" }, text);
            if std::str::from_utf8(data).is_err() {
                o.bool("invalid_utf8", true);
            }
            o.end();
        }
        out.push(b'\n');
        let mut guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if self.reopen_flag.swap(false, Ordering::SeqCst) {
            self.reopen_locked(&mut guard);
        }
        if let Some(f) = guard.as_ref() {
            let result = FlockGuard::lock(f).and_then(|_lock| {
                let mut w: &File = f;
                w.write_all(&out)
            });
            match result {
                Ok(()) => {
                    self.unsynced.store(true, Ordering::SeqCst);
                    return;
                }
                Err(e) => {
                    log::error!("cannot write dead-letter file: {e}");
                    *guard = None;
                }
            }
        }
        log::error!("dead letter: {}", String::from_utf8_lossy(&out).trim_end());
    }
}

fn open(p: &PathBuf) -> std::io::Result<File> {
    if let Some(dir) = p.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    // Audit data: owner and group only.
    std::os::unix::fs::OpenOptionsExt::mode(OpenOptions::new().create(true).append(true), 0o640).open(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopen_flag_moves_the_next_entry_to_the_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.ndjson");
        let dl = DeadLetter::new("d", Some(path.clone()), Arc::new(Stats::default()), false).unwrap();
        dl.write(Kind::ParseError, "c", "bad", b"one");
        let rotated = dir.path().join("dead.ndjson.1");
        std::fs::rename(&path, &rotated).unwrap();
        dl.reopen_flag().store(true, Ordering::SeqCst); // what SIGHUP does
        dl.write(Kind::ParseError, "", "bad", b"two\xff");
        let old = std::fs::read_to_string(&rotated).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert_eq!(old.lines().count(), 1);
        assert!(old.contains("\"line\":\"one\"") && old.contains("\"cluster\":\"c\""), "{old}");
        assert_eq!(new.lines().count(), 1);
        assert!(new.contains("\"kind\":\"parse_error\"") && new.contains("\"invalid_utf8\":true"), "{new}");
        assert!(!new.contains("\"cluster\""), "an empty cluster is left out: {new}");
    }
}
