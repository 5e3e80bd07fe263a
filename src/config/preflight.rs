//! What a configuration needs from the machine, checked without changing anything on disk:
//! secret and CA files readable and well-formed, and the destination file, the dead-letter
//! file and the journal directory creatable (the nearest existing ancestor of each is a
//! writable directory; an existing file or directory is writable).
//!
//! [`check`] is the one validation `qumulo-audit-broker check` and `omprog` start-up both run
//! after [`super::Config::load`]; start-up then creates what [`Preflight::will_create`] lists.
//! Every error is one line naming the file, the key (and its line) and the path at fault.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::destination::{Destination, HttpDestination};
use super::{read_secret, warn_if_world_readable, Config, ConfigError};

/// What start-up will create.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Preflight {
    /// Directories that do not exist yet, each with the key that names it.
    pub will_create: Vec<(String, PathBuf)>,
}

/// Checks what `cfg` needs from the machine; creates, writes and connects nothing.
pub fn check(cfg: &Config) -> Result<Preflight, ConfigError> {
    let mut pf = Preflight::default();
    let at = |key: &str, message: String| cfg.locate(ConfigError::new(message).with_key(key));
    match &cfg.destination {
        Destination::File(d) => {
            appendable(&d.path, "destination.path", &mut pf).map_err(|m| {
                at("destination.path", format!("[destination] path: cannot open {} for appending: {m}", d.path.display()))
            })?;
        }
        Destination::Http(d) => check_http(cfg, d).map_err(|(key, e)| at(key, e))?,
        Destination::Syslog(_) => {}
        Destination::Amqp(d) => super::amqp::preflight(&cfg.source_path, d).map_err(|(key, e)| at(&key, e))?,
        Destination::Kafka(d) => super::kafka::preflight(&cfg.source_path, d).map_err(|(key, e)| at(&key, e))?,
    }
    if let Some(s) = &cfg.source {
        let (password_file, ca_file, cert_and_key) = s.files();
        if broker_files("source", password_file, ca_file, cert_and_key).map_err(|(key, e)| at(&key, e))? {
            warn_if_world_readable(&cfg.source_path);
        }
    }
    if let Some(p) = &cfg.dead_letter.path {
        appendable(p, "dead_letter.path", &mut pf).map_err(|m| {
            at("dead_letter.path", format!("[dead_letter] path: cannot create the dead-letter file {}: {m}", p.display()))
        })?;
    }
    if cfg.journal.enabled {
        let dir = cfg.journal_dir();
        writable_dir(&dir, "journal.dir", &mut pf).map_err(|m| {
            at(
                "journal.dir",
                format!("[journal] dir: cannot create journal in {}: {m} (set [journal] dir to a writable directory)", dir.display()),
            )
        })?;
    }
    Ok(pf)
}

/// Secrets and CA certificates, read as the sink reads them.
fn check_http(cfg: &Config, d: &HttpDestination) -> Result<(), (&'static str, String)> {
    if let Some(tf) = &d.token_file {
        read_secret(tf).map_err(|e| ("destination.token_file", format!("[destination] token_file: {e}")))?;
        warn_if_world_readable(tf);
    }
    if let Some(pf) = &d.password_file {
        read_secret(pf).map_err(|e| ("destination.password_file", format!("[destination] password_file: {e}")))?;
        warn_if_world_readable(pf);
    }
    if d.token_file.is_some() || d.password_file.is_some() {
        warn_if_world_readable(&cfg.source_path);
    }
    if crate::sink::http::uses_ca_file(d) {
        if let Some(ca) = &d.ca_file {
            crate::sink::http::load_ca_file(ca).map_err(|e| ("destination.ca_file", format!("[destination] {e}")))?;
        }
    }
    Ok(())
}

/// A file that can be opened for appending: writable if it exists, else creatable.
/// The secret and TLS files of one broker connection (`amqp`, `kafka`), read as the sinks read
/// them: `[section] password_file`, `ca_file`, and `cert_file` with `key_file`. Errors are
/// `(key path, message)`; `Ok(true)` when a secret file was read (the caller then warns about a
/// world-readable config too).
pub(super) fn broker_files(
    section: &str,
    password_file: Option<&Path>,
    ca_file: Option<&Path>,
    cert_and_key: Option<(&Path, &Path)>,
) -> Result<bool, (String, String)> {
    let key = |k: &str| format!("{section}.{k}");
    if let Some(pf) = password_file {
        read_secret(pf).map_err(|e| (key("password_file"), format!("[{section}] password_file: {e}")))?;
        warn_if_world_readable(pf);
    }
    if let Some(ca) = ca_file {
        crate::sink::http::load_ca_file(ca).map_err(|e| (key("ca_file"), format!("[{section}] {e}")))?;
    }
    if let Some((cert, keyf)) = cert_and_key {
        crate::sink::amqp::tls::load_client_identity(cert, keyf).map_err(|e| (key("cert_file"), format!("[{section}] {e}")))?;
        warn_if_world_readable(keyf);
    }
    Ok(password_file.is_some())
}

fn appendable(path: &Path, key: &str, pf: &mut Preflight) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Err("it is a directory".into()),
        Ok(_) => access_writable(path),
        Err(e) if missing(&e) => {
            let parent = parent_of(path);
            writable_dir(&parent, key, pf)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// A directory that is writable if it exists, else creatable: its nearest existing ancestor is
/// a writable directory. Records the directory in `pf` when it does not exist yet.
fn writable_dir(dir: &Path, key: &str, pf: &mut Preflight) -> Result<(), String> {
    let mut ancestor = dir.to_path_buf();
    loop {
        match std::fs::metadata(&ancestor) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => return Err(format!("{} is not a directory", ancestor.display())),
            Err(e) if missing(&e) => ancestor = parent_of(&ancestor),
            Err(e) => return Err(format!("{}: {e}", ancestor.display())),
        }
    }
    access_writable(&ancestor)?;
    if ancestor != dir {
        pf.will_create.push((key.to_string(), dir.to_path_buf()));
    }
    Ok(())
}

/// The path does not exist (or a component of it is not a directory: the walk up finds which).
fn missing(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

/// The directory holding `path` (`.` for a bare file name, `/` for `/`).
fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if p.as_os_str().is_empty() => PathBuf::from("."),
        Some(p) => p.to_path_buf(),
        None => PathBuf::from("/"),
    }
}

/// `access(2)` with the effective ids: may this process write there (and search, for a directory)?
fn access_writable(path: &Path) -> Result<(), String> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| "the path contains a NUL byte".to_string())?;
    let mode = if path.is_dir() { libc::W_OK | libc::X_OK } else { libc::W_OK };
    // SAFETY: a valid NUL-terminated path; faccessat reads it only.
    if unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), mode, libc::AT_EACCESS) } != 0 {
        return Err(format!("{} is not writable: {}", path.display(), std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &Path, dest: &Path, dead: &Path, journal: &Path) -> Config {
        let mut c = Config::parse(&format!(
            "[destination]\ntype = \"file\"\npath = {:?}\n[dead_letter]\npath = {:?}\n[journal]\ndir = {:?}\n",
            dest.display().to_string(),
            dead.display().to_string(),
            journal.display().to_string()
        ))
        .unwrap();
        c.source_path = dir.join("t.toml");
        c
    }

    #[test]
    fn lists_what_start_up_creates_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let c = cfg(d, &d.join("out/a/events"), &d.join("dead/x"), &d.join("j/k"));
        let pf = check(&c).unwrap();
        let keys: Vec<&str> = pf.will_create.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["destination.path", "dead_letter.path", "journal.dir"]);
        assert_eq!(pf.will_create[0].1, d.join("out/a"));
        assert_eq!(std::fs::read_dir(d).unwrap().count(), 0, "nothing was created");
        // Existing directories: nothing to create.
        let pf = check(&cfg(d, &d.join("events"), &d.join("dead"), d)).unwrap();
        assert!(pf.will_create.is_empty(), "{pf:?}");
    }

    #[test]
    fn a_file_in_the_way_names_key_line_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let blocker = d.join("blocker");
        std::fs::write(&blocker, "x").unwrap();
        let under = blocker.join("sub/f");
        for (c, key, line, want) in [
            (cfg(d, &under, &d.join("dead"), d), "destination.path", 3, "cannot open"),
            (cfg(d, &d.join("o"), &under, d), "dead_letter.path", 5, "dead-letter"),
            (cfg(d, &d.join("o"), &d.join("dead"), &under), "journal.dir", 7, "journal"),
        ] {
            let e = check(&c).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{e}");
            assert_eq!(e.line, Some(line), "{e}");
            let text = e.to_string();
            assert!(text.contains("t.toml") && text.contains(want) && text.contains("blocker is not a directory"), "{text}");
            assert_eq!(text.lines().count(), 1, "{text}");
        }
        // A directory where a file is expected.
        let e = check(&cfg(d, d, &d.join("dead"), d)).unwrap_err();
        assert!(e.to_string().contains("it is a directory"), "{e}");
    }
}
