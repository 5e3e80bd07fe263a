//! `check` and `omprog` start-up run the same validation: every config `check` refuses,
//! start-up refuses too, without answering `OK`, each with one error line naming the file and
//! the key; a config `check` accepts starts; and `check` (without `--connect`) creates nothing.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::config::{path_value, ConfigToml};
use support::omprog_driver::{OmprogDriver, Reply};

const BIN: &str = env!("CARGO_BIN_EXE_qumulo-audit-broker");
const T: Duration = Duration::from_secs(20);

fn run_check(cfg: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).arg("check").arg("--config").arg(cfg).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Starts omprog with `cfg`; asserts no `OK`, a failed exit, nothing on stdout, and exactly one
/// stderr line, which is returned.
fn omprog_refuses(cfg: &Path) -> String {
    let mut d = OmprogDriver::spawn(BIN, &["omprog".as_ref(), "--config".as_ref(), cfg.as_os_str()]);
    assert!(d.try_handshake().is_err(), "omprog answered OK to a config check refuses\n{}", d.diagnostics());
    let st = d.wait_exit(T);
    assert!(!st.success(), "exit status {st}\n{}", d.diagnostics());
    assert!(d.stdout_rest(T).is_empty(), "nothing on stdout\n{}", d.diagnostics());
    let stderr = d.stderr_text();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one error line, got:\n{stderr}");
    lines[0].to_string()
}

/// `check` and omprog both refuse `cfg`, naming the file, `[section] key`, its line and `want`.
fn both_refuse(dir: &Path, name: &str, cfg: &ConfigToml, section: &str, key: &str, want: &str) {
    let path = cfg.write(dir.join(format!("{name}.toml")));
    let line = format!("line {}:", cfg.line_of(section, key));
    let (code, out, err) = run_check(&path, &[]);
    assert_eq!(code, 2, "{name}: check must refuse\n{out}{err}");
    assert!(out.is_empty(), "{name}: {out}");
    assert_eq!(err.lines().count(), 1, "{name}: one line: {err}");
    for part in [path.display().to_string().as_str(), key, want, line.as_str()] {
        assert!(err.contains(part), "{name}: check's error lacks {part:?}: {err}");
    }
    let e = omprog_refuses(&path);
    for part in [path.display().to_string().as_str(), key, want, line.as_str()] {
        assert!(e.contains(part), "{name}: omprog's error lacks {part:?}: {e}");
    }
}

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::Builder::new().prefix("qab-config-").tempdir().unwrap())
    }
    fn join(&self, p: &str) -> PathBuf {
        self.0.path().join(p)
    }
    fn file(&self) -> ConfigToml {
        ConfigToml::file(&self.join("out.ndjson")).spool_in(self.0.path())
    }
}

#[test]
fn values_check_accepted_before_and_start_up_could_not_use() {
    let d = Dir::new();
    let syslog = |addr: &str| ConfigToml::syslog(addr).spool_in(d.0.path());
    let http = |url: &str| ConfigToml::http(url).spool_in(d.0.path());
    let huge = i64::MAX;
    let cases: Vec<(&str, ConfigToml, &str, &str, &str)> = vec![
        ("port0", syslog("127.0.0.1:0"), "destination", "address", "1..=65535"),
        ("port70000", syslog("127.0.0.1:70000"), "destination", "address", "1..=65535"),
        ("v6bare", syslog("::1:514"), "destination", "address", "brackets"),
        ("noscheme", http("localhost:8088"), "destination", "url", "http://"),
        ("nohost", http("http://"), "destination", "url", "no host"),
        ("urlport", http("https://h:99999/x"), "destination", "url", "1..=65535"),
        ("appspace", syslog("h:514").dest("app_name", "my app"), "destination", "app_name", "RFC 5424"),
        ("applong", syslog("h:514").dest("app_name", "a".repeat(60)), "destination", "app_name", "RFC 5424"),
        ("timeout", http("http://h").dest("timeout_secs", huge), "destination", "timeout_secs", "between 1 and 3600"),
        ("backoff", d.file().set("retry", "max_backoff_ms", huge), "retry", "max_backoff_ms", "between"),
        ("elapsed", d.file().set("retry", "max_elapsed_secs", huge), "retry", "max_elapsed_secs", "between"),
        ("keepalive", d.file().set("retry", "keepalive_ms", huge), "retry", "keepalive_ms", "between"),
        ("events0", d.file().set("batch", "max_events", 0), "batch", "max_events", "between 1 and"),
        ("bytes", d.file().set("batch", "max_bytes", huge), "batch", "max_bytes", "between"),
        ("stats", d.file().set("stats", "interval_secs", huge), "stats", "interval_secs", "between"),
        ("maxline", d.file().set("input", "max_line", huge), "input", "max_line", "between"),
        ("journalmax", d.file().set("journal", "max_bytes", huge), "journal", "max_bytes", "between"),
    ];
    for (name, cfg, section, key, want) in cases {
        both_refuse(d.0.path(), name, &cfg, section, key, want);
    }
    assert!(!d.join("out.ndjson").exists() && !d.join("journal").exists(), "nothing was created");
}

#[test]
fn paths_that_cannot_be_created() {
    let d = Dir::new();
    let blocker = d.join("a-regular-file");
    std::fs::write(&blocker, "x").unwrap();
    let under = path_value(&blocker.join("sub/f"));
    let cases = [
        ("badout", d.file().dest("path", under.clone()), "destination", "path", "a-regular-file is not a directory"),
        ("outdir", d.file().dest("path", path_value(d.0.path())), "destination", "path", "it is a directory"),
        ("baddead", d.file().set("dead_letter", "path", under.clone()), "dead_letter", "path", "dead-letter file"),
        ("badjournal", d.file().set("journal", "dir", under.clone()), "journal", "dir", "a-regular-file is not a directory"),
    ];
    for (name, cfg, section, key, want) in cases {
        both_refuse(d.0.path(), name, &cfg, section, key, want);
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        // A directory without write permission (root may write anywhere: checked as a user only).
        use std::os::unix::fs::PermissionsExt;
        let ro = d.join("read-only");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        let cfg = d.file().set("journal", "dir", path_value(&ro.join("j")));
        both_refuse(d.0.path(), "rojournal", &cfg, "journal", "dir", "not writable");
    }
    assert_eq!(std::fs::read_dir(d.0.path()).unwrap().filter(|e| e.as_ref().unwrap().path().is_dir()).count(), 0, "check created no directory");
}

#[test]
fn check_creates_nothing_says_what_start_up_creates_and_start_up_does() {
    let d = Dir::new();
    let cfg = ConfigToml::file(&d.join("out/events.ndjson"))
        .set("dead_letter", "path", path_value(&d.join("dead/dead.ndjson")))
        .set("journal", "dir", path_value(&d.join("spool/journal")))
        .set("stats", "interval_secs", 0)
        .write(d.join("f.toml"));
    let (code, out, err) = run_check(&cfg, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("configuration is valid (type = file, format = json)"), "{out}");
    for (dir, key) in [("out", "destination.path"), ("dead", "dead_letter.path"), ("spool/journal", "journal.dir")] {
        let want = format!("will create {} ({key})", d.join(dir).display());
        assert!(out.contains(&want), "{want}: {out}");
    }
    let entries: Vec<_> = std::fs::read_dir(d.0.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(entries, ["f.toml"], "check changed nothing on disk");

    let mut p = OmprogDriver::start(BIN, &["omprog".as_ref(), "--config".as_ref(), cfg.as_os_str()]);
    assert_eq!(p.begin(), Reply::Ok, "{}", p.diagnostics());
    assert!(d.join("out/events.ndjson").exists() && d.join("dead/dead.ndjson").exists() && d.join("spool/journal").is_dir());
    p.close_stdin();
    assert!(p.wait_exit(T).success(), "{}", p.diagnostics());
}

#[test]
fn max_line_option_is_bounded() {
    for bad in ["0", "255", "16777217", "99999999999999999999", "lots"] {
        let out = Command::new(BIN).args(["convert", "--max-line", bad]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains("--max-line") && (err.contains("between 256 and 16777216") || err.contains("not a number")), "{bad}: {err}");
    }
    let out = Command::new(BIN).args(["convert", "--max-line", "256"]).stdin(std::process::Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `--to`'s help lists every format with its description, from the format registry.
#[test]
fn help_lists_the_formats_from_the_registry() {
    let out = Command::new(BIN).args(["convert", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for f in qumulo_audit_broker::format::Format::all() {
        assert!(help.contains(&format!("- {}:", f.name())), "{f:?} in:\n{help}");
    }
}
