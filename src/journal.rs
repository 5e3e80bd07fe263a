//! The per-process journal that closes rsyslog's own loss window (rsyslog issue #2420).
//!
//! With transactions, rsyslog forgets the messages a program answered `DEFER_COMMIT` to if the
//! program dies before `COMMIT`: after the restart it re-sends only the message it was writing
//! and the ones after it. So before answering `DEFER_COMMIT` each line is appended to this
//! process's journal file (`<dir>/journal-<pid>-<nanos>.jnl`, created as `.new` and renamed once
//! locked, so an adopter never mistakes it for a dead one's; held under an exclusive `flock`
//! for the life of the process). On COMMIT the batch is delivered and the journal truncated;
//! when a COMMIT is answered with an error it is truncated too, because rsyslog then re-sends
//! every message of the batch itself. A `BEGIN` without `COMMIT` (after an error reply to one
//! message) keeps it: rsyslog re-sends only that message and the ones after it. A transaction
//! that outgrows `max_bytes` is delivered early and the journal truncated; if that delivery
//! fails the program exits and leaves the journal to be adopted.
//!
//! A journal whose lock can be taken belongs to a dead instance: at start and at every COMMIT
//! the living instances adopt such journals, deliver their lines and delete them (while still
//! holding the lock, and only after checking the path still names the locked file, so two
//! adopters never deliver one journal twice).
//!
//! Durability: lines are written with one `write(2)` each, which survives the death of this
//! process (the page cache belongs to the kernel). `fsync = true` also syncs before each
//! delivery, which covers power loss at the price of one fsync per transaction.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;

pub struct Journal {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    fsync: bool,
}

#[derive(Debug)]
pub enum AppendError {
    /// The journal would grow past `max_bytes` (a transaction larger than the journal allows).
    Full { max_bytes: u64 },
    Io(io::Error),
}

impl std::fmt::Display for AppendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppendError::Full { max_bytes } => write!(f, "journal full ({max_bytes} bytes): lower queue.dequeueBatchSize or raise [journal] max_bytes"),
            AppendError::Io(e) => write!(f, "journal write failed: {e}"),
        }
    }
}

fn try_lock(file: &File) -> io::Result<bool> {
    // SAFETY: flock on a valid descriptor.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(err)
    }
}

impl Journal {
    /// Creates this process's journal in `dir` (created if missing).
    pub fn open(dir: &Path, max_bytes: u64, fsync: bool) -> io::Result<Journal> {
        fs::create_dir_all(dir)?;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let name = format!("journal-{}-{}", std::process::id(), nanos);
        // Created and locked under a name adopters ignore, then renamed (the lock belongs to the
        // open file, not the name): a `.jnl` file that can be locked is always an orphan. Created
        // directly as `.jnl`, another instance's adopter could lock it between our create and our
        // lock, then delete it as a dead instance's journal.
        let creating = dir.join(format!("{name}.new"));
        let path = dir.join(format!("{name}.jnl"));
        let file = OpenOptions::new().create_new(true).append(true).read(true).open(&creating)?;
        if !try_lock(&file)? {
            let _ = fs::remove_file(&creating);
            return Err(io::Error::other(format!("cannot lock new journal {}", creating.display())));
        }
        if let Err(e) = fs::rename(&creating, &path) {
            let _ = fs::remove_file(&creating);
            return Err(e);
        }
        Ok(Journal { path, file, size: 0, max_bytes, fsync })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Appends one line (which must end with `\n`) with a single write.
    pub fn append(&mut self, line: &[u8]) -> Result<(), AppendError> {
        if self.size + line.len() as u64 > self.max_bytes {
            return Err(AppendError::Full { max_bytes: self.max_bytes });
        }
        self.file.write_all(line).map_err(AppendError::Io)?;
        self.size += line.len() as u64;
        Ok(())
    }

    /// Makes the journal durable before a delivery when `fsync` is configured.
    pub fn sync_if_configured(&self) -> io::Result<()> {
        if self.fsync && self.size > 0 {
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// Forgets the journaled lines (delivered, or to be re-sent by rsyslog).
    pub fn clear(&mut self) -> io::Result<()> {
        if self.size > 0 {
            self.file.set_len(0)?;
            self.size = 0;
        }
        Ok(())
    }

    /// Removes the journal at a clean exit. An unacknowledged transaction keeps it (for adoption).
    pub fn close(self) {
        if self.size == 0 {
            let _ = fs::remove_file(&self.path);
        } else {
            log::warn!("{} keeps {} bytes of unacknowledged lines for the next instance", self.path.display(), self.size);
        }
    }
}

/// A dead instance's journal, locked by us.
pub struct Orphan {
    pub path: PathBuf,
    file: File,
}

impl Orphan {
    /// All its lines, as written.
    pub fn contents(&mut self) -> io::Result<Vec<u8>> {
        let mut data = Vec::new();
        (&self.file).read_to_end(&mut data)?;
        Ok(data)
    }

    /// Deletes it (still under our lock).
    pub fn remove(self) -> io::Result<()> {
        fs::remove_file(&self.path)
    }
}

/// Journals in `dir` whose owners are gone, locked for us. `own` is skipped.
pub fn find_orphans(dir: &Path, own: Option<&Path>) -> Vec<Orphan> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let ext = path.extension().and_then(|e| e.to_str());
        if ext == Some("new") {
            // A journal being created, or left by an instance that died before it was named
            // (it holds nothing then). Its creator locks it right after creating it, so only an
            // old, empty, unlocked one is stale: a young one may be between create and lock.
            let stale_age = std::time::Duration::from_secs(60);
            if let Ok(file) = OpenOptions::new().read(true).open(&path) {
                let old_and_empty = file.metadata().is_ok_and(|m| {
                    m.len() == 0 && m.modified().ok().and_then(|t| t.elapsed().ok()).is_some_and(|age| age > stale_age)
                });
                if old_and_empty && matches!(try_lock(&file), Ok(true)) {
                    let _ = fs::remove_file(&path);
                }
            }
            continue;
        }
        if Some(path.as_path()) == own || ext != Some("jnl") {
            continue;
        }
        let Ok(file) = OpenOptions::new().read(true).open(&path) else {
            continue;
        };
        match try_lock(&file) {
            Ok(true) => {}
            _ => continue, // alive (or being adopted by another instance)
        }
        // The path must still name the file we locked: another adopter may have removed it
        // between our open and our lock.
        let same = match (file.metadata(), fs::metadata(&path)) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        if same {
            found.push(Orphan { path, file });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_clear_full_and_close() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), 10, false).unwrap();
        j.append(b"abcd\n").unwrap();
        assert!(matches!(j.append(b"efghij\n"), Err(AppendError::Full { .. })));
        assert_eq!(fs::read(j.path()).unwrap(), b"abcd\n");
        j.clear().unwrap();
        assert!(j.is_empty());
        j.append(b"xy\n").unwrap();
        j.clear().unwrap();
        let p = j.path().to_path_buf();
        j.close();
        assert!(!p.exists());
    }

    #[test]
    fn a_new_journal_is_never_adopted_while_it_is_being_created() {
        // Another instance's adopter scans the directory all the time; a journal must be locked
        // before its name can be found, or the adopter takes (and deletes) it first and the new
        // instance fails to start ("cannot lock new journal").
        let dir = tempfile::tempdir().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let adopter = {
            let (dir, stop) = (dir.path().to_path_buf(), stop.clone());
            std::thread::spawn(move || {
                let mut adopted = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    for o in find_orphans(&dir, None) {
                        adopted += 1;
                        let _ = o.remove();
                    }
                }
                adopted
            })
        };
        let mut open = Vec::new();
        for _ in 0..3000 {
            let j = Journal::open(dir.path(), 1 << 20, false).expect("open while an adopter scans");
            open.push(j);
            if open.len() > 50 {
                open.remove(0).close();
            }
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(adopter.join().unwrap(), 0, "a living instance's journal was adopted");
        assert!(open.iter().all(|j| j.path().exists()));
    }

    #[test]
    fn living_journals_are_not_adopted_dead_ones_are_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut live = Journal::open(dir.path(), 1 << 20, false).unwrap();
        live.append(b"live\n").unwrap();
        // A journal left by a dead process: a plain file nobody holds a lock on.
        fs::write(dir.path().join("journal-1-1.jnl"), b"l1\nl2\n").unwrap();
        fs::write(dir.path().join("unrelated.txt"), b"x").unwrap();
        let mut orphans = find_orphans(dir.path(), Some(live.path()));
        assert_eq!(orphans.len(), 1);
        assert_eq!(orphans[0].contents().unwrap(), b"l1\nl2\n");
        // While we hold it, nobody else can adopt it.
        assert!(find_orphans(dir.path(), Some(live.path())).is_empty());
        orphans.pop().unwrap().remove().unwrap();
        assert!(find_orphans(dir.path(), None).is_empty(), "the live journal is locked by its owner");
    }

    #[test]
    fn journals_are_named_only_once_locked_and_stale_new_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), 1 << 20, false).unwrap();
        assert_eq!(j.path().extension().unwrap(), "jnl");
        let names: Vec<String> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
        // A `.new` file left long ago by an instance that died while creating its journal.
        let stale = fs::File::create(dir.path().join("journal-7-7.new")).unwrap();
        stale.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600)).unwrap();
        drop(stale);
        // A young one whose creator has not locked it yet must stay.
        fs::write(dir.path().join("journal-9-9.new"), b"").unwrap();
        assert!(find_orphans(dir.path(), None).is_empty(), "neither the live journal nor a .new file is adopted");
        assert!(!dir.path().join("journal-7-7.new").exists(), "the stale .new file is removed");
        assert!(dir.path().join("journal-9-9.new").exists(), "a young .new file is left to its creator");
        // One being created right now (locked by its creator) stays.
        let creating = fs::File::create(dir.path().join("journal-8-8.new")).unwrap();
        assert!(try_lock(&creating).unwrap());
        find_orphans(dir.path(), None);
        assert!(dir.path().join("journal-8-8.new").exists());
    }
}
