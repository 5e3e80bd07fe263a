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
//! Durability: the journal is a shared memory mapping of the file (`MAP_SHARED`), so a line is
//! in the kernel's page cache as soon as it is copied there, and survives the death of this
//! process like a `write(2)` would, without a system call per line (a `write(2)` to ext4 cost
//! about 3.5 µs per message in `bench/run.sh`, as much as the rest of the program's work on
//! it). The file starts with a 16-byte header, [`MAGIC`] and the length of the lines that
//! follow; a line counts once the length covering it is stored, which happens after its bytes
//! are copied and before `DEFER_COMMIT` is answered. The file is allocated ahead
//! (`posix_fallocate`), so a full disk is an error from `append`, never a SIGBUS on a page
//! fault. Clearing the journal only stores a zero length. `fsync = true` also `msync`s before
//! each delivery, which covers power loss at the price of one sync per transaction.
//! Journals of earlier versions (plain lines, no header) are still read by adopters.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;

use crate::flock::try_lock;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// First 8 bytes of a journal file; the next 8 are the length of the lines (u64, little endian).
pub const MAGIC: &[u8; 8] = b"QABJNL2\n";
const HEADER: usize = 16;
/// The file (and mapping) starts at this size and grows by doubling.
const INITIAL_MAP: usize = 1 << 20;

pub struct Journal {
    path: PathBuf,
    file: File,
    map: Mapping,
    size: u64,
    max_bytes: u64,
    fsync: bool,
}

/// A shared, writable mapping of the whole journal file.
struct Mapping(memmap2::MmapMut);

impl Mapping {
    fn new(file: &File, len: usize) -> io::Result<Mapping> {
        // SAFETY: a shared mapping of a file this process created, allocated first (`allocate`)
        // and locked (`flock`): no other process writes or truncates it while it is mapped.
        // Adopters read it only once its lock can be taken, that is after we are gone.
        unsafe { memmap2::MmapOptions::new().len(len).map_mut(file) }.map(Mapping)
    }

    fn bytes(&mut self) -> &mut [u8] {
        &mut self.0
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    /// Stores the committed length after the lines it covers are in place.
    fn set_len(&mut self, n: u64) {
        std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
        self.bytes()[8..16].copy_from_slice(&n.to_le_bytes());
    }

    fn sync(&self, upto: usize) -> io::Result<()> {
        self.0.flush_range(0, upto.min(self.0.len()))
    }
}

/// Gives `file` `len` bytes of allocated blocks (no holes: writing to the mapping can then
/// never fail for lack of space). glibc's `posix_fallocate`, not the raw `fallocate(2)` that
/// rustix wraps: on a file system without `fallocate` (some NFS and FUSE ones) glibc falls back
/// to writing the blocks, where the raw call fails with EOPNOTSUPP.
fn allocate(file: &File, len: usize) -> io::Result<()> {
    // SAFETY: posix_fallocate on a valid descriptor; it returns the error number.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len as libc::off_t) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
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
        // Audit data: owner and group only.
        let file = std::os::unix::fs::OpenOptionsExt::mode(OpenOptions::new().create_new(true).write(true).read(true), 0o640).open(&creating)?;
        if !try_lock(&file)? {
            let _ = fs::remove_file(&creating);
            return Err(io::Error::other(format!("cannot lock new journal {}", creating.display())));
        }
        // Allocated, mapped and given its header before it is named: an adopter never finds a
        // `.jnl` without a header.
        let len = INITIAL_MAP.min(HEADER + max_bytes as usize).max(HEADER);
        let map = allocate(&file, len).and_then(|_| Mapping::new(&file, len));
        let mut map = match map {
            Ok(m) => m,
            Err(e) => {
                let _ = fs::remove_file(&creating);
                return Err(e);
            }
        };
        map.bytes()[..8].copy_from_slice(MAGIC);
        map.set_len(0);
        if let Err(e) = fs::rename(&creating, &path) {
            let _ = fs::remove_file(&creating);
            return Err(e);
        }
        Ok(Journal { path, file, map, size: 0, max_bytes, fsync })
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

    /// Appends one line (which must end with `\n`): copied into the mapping, then counted.
    pub fn append(&mut self, line: &[u8]) -> Result<(), AppendError> {
        if self.size + line.len() as u64 > self.max_bytes {
            return Err(AppendError::Full { max_bytes: self.max_bytes });
        }
        let start = HEADER + self.size as usize;
        let end = start + line.len();
        if end > self.map.len() {
            self.grow(end).map_err(AppendError::Io)?;
        }
        self.map.bytes()[start..end].copy_from_slice(line);
        self.size += line.len() as u64;
        self.map.set_len(self.size);
        Ok(())
    }

    /// Makes the file (and mapping) at least `needed` bytes long.
    fn grow(&mut self, needed: usize) -> io::Result<()> {
        let mut len = self.map.len().max(INITIAL_MAP);
        while len < needed {
            len *= 2;
        }
        allocate(&self.file, len)?;
        self.map = Mapping::new(&self.file, len)?;
        Ok(())
    }

    /// Makes the journal durable before a delivery when `fsync` is configured.
    pub fn sync_if_configured(&self) -> io::Result<()> {
        if self.fsync && self.size > 0 {
            self.map.sync(HEADER + self.size as usize)?;
        }
        Ok(())
    }

    /// Forgets the journaled lines (delivered, or to be re-sent by rsyslog). A journal grown
    /// past four times its initial size by a large transaction is shrunk back.
    pub fn clear(&mut self) -> io::Result<()> {
        if self.size > 0 {
            self.map.set_len(0);
            self.size = 0;
            if self.map.len() > 4 * INITIAL_MAP {
                let len = INITIAL_MAP;
                self.map = Mapping::new(&self.file, len)?;
                self.file.set_len(len as u64)?;
            }
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
        Ok(journal_lines(data))
    }

    /// Deletes it (still under our lock).
    pub fn remove(self) -> io::Result<()> {
        fs::remove_file(&self.path)
    }
}

/// The lines in a journal file's bytes: those the header counts, or the whole file for a
/// journal of an earlier version (plain lines, no header).
pub fn journal_lines(mut data: Vec<u8>) -> Vec<u8> {
    if data.len() < HEADER || &data[..8] != MAGIC {
        return data;
    }
    let n = u64::from_le_bytes(data[8..16].try_into().expect("8 bytes")) as usize;
    let end = HEADER.saturating_add(n).min(data.len());
    data.truncate(end);
    data.drain(..HEADER);
    data
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
            // (it holds no accepted line then: lines are journaled only once it is named). Its
            // creator locks it right after creating it, so only an old, unlocked one is stale:
            // a young one may be between create and lock.
            let stale_age = std::time::Duration::from_secs(60);
            if let Ok(file) = OpenOptions::new().read(true).open(&path) {
                let old = file.metadata().is_ok_and(|m| {
                    m.modified().ok().and_then(|t| t.elapsed().ok()).is_some_and(|age| age > stale_age)
                });
                if old && matches!(try_lock(&file), Ok(true)) {
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
        assert_eq!(journal_lines(fs::read(j.path()).unwrap()), b"abcd\n");
        j.clear().unwrap();
        assert!(j.is_empty());
        j.append(b"xy\n").unwrap();
        j.clear().unwrap();
        let p = j.path().to_path_buf();
        j.close();
        assert!(!p.exists());
    }

    /// What a dead instance leaves (its process gone, its mapping's pages in the page cache) is
    /// read back exactly: lines counted by the header, across growth of the file, after a clear.
    #[test]
    fn a_dead_instances_lines_are_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), 64 << 20, false).unwrap();
        j.append(b"old\n").unwrap();
        j.clear().unwrap();
        let mut expected = Vec::new();
        for i in 0..40_000 {
            let line = format!("line {i} {}\n", "x".repeat(i % 97));
            j.append(line.as_bytes()).unwrap();
            expected.extend_from_slice(line.as_bytes());
        }
        assert!(expected.len() > INITIAL_MAP, "the test must grow the file");
        let path = j.path().to_path_buf();
        // Dying: no close, the lock goes with the descriptor.
        drop(j);
        let mut orphans = find_orphans(dir.path(), None);
        assert_eq!(orphans.len(), 1);
        assert_eq!(orphans[0].path, path);
        assert_eq!(orphans[0].contents().unwrap(), expected);
    }

    #[test]
    fn clear_forgets_and_shrinks_a_grown_journal() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), 64 << 20, false).unwrap();
        let big = vec![b'x'; 6 * INITIAL_MAP];
        j.append(&big).unwrap();
        j.clear().unwrap();
        assert_eq!(fs::metadata(j.path()).unwrap().len(), INITIAL_MAP as u64);
        j.append(b"after\n").unwrap();
        assert_eq!(journal_lines(fs::read(j.path()).unwrap()), b"after\n");
        j.clear().unwrap();
        assert_eq!(journal_lines(fs::read(j.path()).unwrap()), b"");
    }

    #[test]
    fn fsync_mode_syncs_without_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), 1 << 20, true).unwrap();
        j.append(b"a\n").unwrap();
        j.sync_if_configured().unwrap();
        assert_eq!(journal_lines(fs::read(j.path()).unwrap()), b"a\n");
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
