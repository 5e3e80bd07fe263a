//! File destination: appends records (one per line) to a file, optionally fsyncing.
//!
//! With `fsync = true` the file is synced (`fdatasync`) once per transaction, with the batch that
//! completes it (`Batch::commits`): that covers the transaction's earlier batches in the same
//! file, and COMMIT is answered only after it. (Syncing every batch cost a second sync per
//! omprog transaction of 1,024 messages with batches of 1,000.) A file dropped with unsynced
//! batches (reopened after SIGHUP, or after a write error) is synced first.
//!
//! Several program instances may append to the same file (rsyslog runs one per action worker),
//! so the file is opened with `O_APPEND` and each batch is written under an exclusive `flock`,
//! which keeps batches from interleaving. An instance killed in the middle of a write (SIGKILL
//! can cut a `write(2)` to a regular file short) or a full disk can leave a partial last
//! record; the next batch then starts on a new line instead of gluing its first record to it
//! (the cut batch is delivered again whole, from rsyslog or the journal). SIGHUP reopens the
//! file (after logrotate moved it).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use super::Attempt;
use crate::flock::FlockGuard;
use crate::batch::Batch;
use crate::config::{ConfigError, FileDestination};

pub struct FileSink {
    path: PathBuf,
    fsync: bool,
    file: Option<File>,
    /// Batches were written to `file` since its last sync.
    unsynced: bool,
    scratch: Vec<u8>,
}

fn open_append(path: &PathBuf) -> std::io::Result<File> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::create_dir_all(dir)?;
        }
    }
    // Audit data: owner and group only (the umask may take more, never add).
    std::os::unix::fs::OpenOptionsExt::mode(OpenOptions::new().create(true).append(true).read(true), 0o640).open(path)
}

/// Under the lock: if the file does not end with a newline, ends the partial record there.
fn end_partial_record(file: &File) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.len() == 0 {
        return Ok(());
    }
    let mut last = [0u8; 1];
    file.read_exact_at(&mut last, meta.len() - 1)?;
    if last[0] != b'\n' {
        log::warn!("the destination file ends with a partial record (an earlier write was cut short); starting a new line");
        let mut f: &File = file;
        f.write_all(b"\n")?;
    }
    Ok(())
}

impl FileSink {
    pub fn new(d: &FileDestination) -> Result<FileSink, ConfigError> {
        let path = d.path.clone();
        let file = open_append(&path).map_err(|e| {
            ConfigError::new(format!("[destination] path: cannot open {} for appending: {e}", path.display())).with_key("destination.path")
        })?;
        Ok(FileSink { path, fsync: d.fsync, file: Some(file), unsynced: false, scratch: Vec::new() })
    }

    /// Closes the file, first syncing what was written since the last sync (best effort: the
    /// writes themselves succeeded; only a power loss could lose them).
    fn drop_file(&mut self) {
        if let Some(f) = self.file.take() {
            if self.unsynced {
                if let Err(e) = f.sync_data() {
                    log::error!("syncing {} before closing it: {e}", self.path.display());
                }
            }
        }
        self.unsynced = false;
    }

    /// Syncs what was written since the last sync (see [`super::Sink::sync_pending`]).
    pub fn sync_pending(&mut self) -> Result<(), String> {
        match &self.file {
            Some(f) if self.unsynced => {
                f.sync_data().map_err(|e| format!("syncing {}: {e}", self.path.display()))?;
                self.unsynced = false;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    pub fn reopen(&mut self) {
        self.drop_file();
        match open_append(&self.path) {
            Ok(f) => {
                log::info!("reopened {}", self.path.display());
                self.file = Some(f);
            }
            Err(e) => log::error!("cannot reopen {}: {e}", self.path.display()),
        }
    }

    pub fn deliver(&mut self, batch: &Batch, which: &[usize]) -> Attempt {
        if self.file.is_none() {
            self.reopen();
        }
        let Some(file) = &self.file else {
            return Attempt::retry_all(which, format!("cannot open {}", self.path.display()));
        };
        let body = batch.body(which, &mut self.scratch);
        let result = (|| {
            let _lock = FlockGuard::lock(file)?;
            end_partial_record(file)?;
            let mut f: &File = file;
            f.write_all(body)?;
            if self.fsync && batch.commits {
                file.sync_data()?;
            }
            Ok::<(), std::io::Error>(())
        })();
        match result {
            Ok(()) => {
                self.unsynced = self.fsync && !batch.commits;
                Attempt::ok()
            }
            Err(e) => {
                let msg = format!("writing {}: {e}", self.path.display());
                self.drop_file(); // reopen next time
                Attempt::retry_all(which, msg)
            }
        }
    }

    pub fn check(&mut self) -> Result<String, String> {
        open_append(&self.path)
            .map(|_| format!("{} is writable", self.path.display()))
            .map_err(|e| format!("cannot open {} for appending: {e}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Destination};

    fn batch(records: &[&str]) -> Batch {
        let mut b = Batch::default();
        for r in records {
            let st = b.begin_record();
            b.buf.extend_from_slice(r.as_bytes());
            b.end_record(st);
        }
        b
    }

    #[test]
    fn a_cut_record_is_ended_before_the_next_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.ndjson");
        let cfg = Config::parse(&format!("[destination]\ntype = \"file\"\npath = \"{}\"\nfsync = false\n", path.display())).unwrap();
        let Destination::File(d) = &cfg.destination else { panic!("{cfg:?}") };
        let mut sink = FileSink::new(d).unwrap();
        assert_eq!(sink.deliver(&batch(&["{\"a\":1}\n"]), &[0]), Attempt::ok());
        // Another instance was killed in the middle of its write.
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"b\":").unwrap();
        assert_eq!(sink.deliver(&batch(&["{\"c\":3}\n", "{\"d\":4}\n"]), &[0, 1]), Attempt::ok());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":1}\n{\"b\":\n{\"c\":3}\n{\"d\":4}\n");
    }

    /// With fsync, a transaction is synced once, with its last batch; the batches before it stay
    /// pending until then (or until the file is dropped), and an empty last batch syncs them.
    #[test]
    fn fsync_once_per_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.ndjson");
        let cfg = Config::parse(&format!("[destination]\ntype = \"file\"\npath = \"{}\"\nfsync = true\n", path.display())).unwrap();
        let Destination::File(d) = &cfg.destination else { panic!("{cfg:?}") };
        let mut sink = FileSink::new(d).unwrap();
        assert_eq!(sink.deliver(&batch(&["{\"a\":1}\n"]), &[0]), Attempt::ok());
        assert!(sink.unsynced, "a batch that does not end its transaction is not synced yet");
        let mut last = batch(&["{\"b\":2}\n"]);
        last.commits = true;
        assert_eq!(sink.deliver(&last, &[0]), Attempt::ok());
        assert!(!sink.unsynced, "the last batch syncs the transaction");
        assert_eq!(sink.deliver(&batch(&["{\"c\":3}\n"]), &[0]), Attempt::ok());
        assert_eq!(sink.sync_pending(), Ok(()));
        assert!(!sink.unsynced, "an empty last batch syncs what is pending");
        assert_eq!(sink.deliver(&batch(&["{\"d\":4}\n"]), &[0]), Attempt::ok());
        sink.reopen();
        assert!(!sink.unsynced, "a dropped file is synced first");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n{\"d\":4}\n");
    }
}
