//! Advisory whole-file locks (`flock(2)`, through rustix), shared by their three users: the
//! journal (an exclusive lock held for the life of the process, which tells adopters a journal
//! is alive) and the two appenders that several instances write at once, file destinations and
//! the dead-letter file (a lock held per write, so records from different instances never
//! interleave).

use std::fs::File;
use std::io;

use rustix::fs::{flock, FlockOperation};

/// Holds an exclusive `flock` on a file until dropped.
pub struct FlockGuard<'a>(&'a File);

impl<'a> FlockGuard<'a> {
    /// Waits for the exclusive lock (retrying on EINTR).
    pub fn lock(file: &'a File) -> io::Result<FlockGuard<'a>> {
        loop {
            match flock(file, FlockOperation::LockExclusive) {
                Ok(()) => return Ok(FlockGuard(file)),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Drop for FlockGuard<'_> {
    fn drop(&mut self) {
        let _ = flock(self.0, FlockOperation::Unlock);
    }
}

/// Takes the exclusive lock without waiting: `Ok(false)` when another process holds it. Held
/// until the file is closed (the journal's lock lives as long as its process).
pub fn try_lock(file: &File) -> io::Result<bool> {
    match flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_locks_exclude_other_open_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let a = File::create(&path).unwrap();
        let b = File::open(&path).unwrap();
        {
            let _held = FlockGuard::lock(&a).unwrap();
            assert!(!try_lock(&b).unwrap(), "a second open file description cannot take it");
        }
        assert!(try_lock(&b).unwrap(), "released when the guard is dropped");
        assert!(!try_lock(&a).unwrap());
        drop(b);
        assert!(try_lock(&a).unwrap(), "released when the holder is closed");
    }
}
