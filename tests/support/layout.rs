//! The installed layout of the packages, unprivileged, for the `broker.toml` tests
//! (`tests/broker_apply.rs`, `tests/broker_listener.rs`): the package's files (those `Cargo.toml`'s
//! deb assets install: `/etc/rsyslog.d/10-qumulo-audit-broker.conf`,
//! `/usr/share/qumulo-audit-broker/rsyslog/qumulo-audit-broker.conf`, the shipped
//! `/etc/qumulo-audit-broker/rsyslog.d/*`, `broker.toml`, the binary in `/usr/libexec/rsyslog/`)
//! copied under a temp root with their absolute paths prefixed by it (as tests/packaging.sh
//! relocates the unpacked .deb), and a main rsyslog.conf that already loads imtcp (so `apply`
//! must not load it again) and writes rsyslog's own messages, each with its severity, to
//! `work/internal.log` ([`Layout::rsyslog_warnings`]).
//!
//! [`Rsyslogd`] runs a real rsyslogd on that configuration (foreground, own pid file, stdout
//! and stderr in `work/rsyslogd.out`); [`Layout::run`] runs our binary's subcommands on it the
//! way the README tells an operator to.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::io::FromRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use super::sender;
use super::try_wait_for;

pub const BIN: &str = env!("CARGO_BIN_EXE_qumulo-audit-broker");
pub const TOP: &str = env!("CARGO_MANIFEST_DIR");

/// The package's absolute paths that get the root prefix (tests/packaging.sh `relocate`).
const PREFIXES: &[&str] = &[
    "/etc/qumulo-audit-broker/",
    "/usr/share/qumulo-audit-broker/",
    "/usr/libexec/rsyslog/",
    "/var/spool/qumulo-audit-broker",
    "/var/lib/qumulo-audit-broker/",
    "/var/log/qumulo-audit-broker",
];

pub struct Layout {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
}

impl Layout {
    pub fn new() -> Layout {
        let dir = tempfile::Builder::new().prefix("qab-layout-").tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let l = Layout { _dir: dir, root };
        l.install("packaging/rsyslog/10-qumulo-audit-broker.conf", "etc/rsyslog.d/10-qumulo-audit-broker.conf");
        l.install("packaging/rsyslog/qumulo-audit-broker.conf", "usr/share/qumulo-audit-broker/rsyslog/qumulo-audit-broker.conf");
        l.install("packaging/etc/broker.toml", "etc/qumulo-audit-broker/broker.toml");
        for e in std::fs::read_dir(Path::new(TOP).join("rsyslog.d")).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            l.install(&format!("rsyslog.d/{name}"), &format!("etc/qumulo-audit-broker/rsyslog.d/{name}"));
        }
        let bin = l.path("usr/libexec/rsyslog/qumulo-audit-broker");
        std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
        std::fs::copy(BIN, &bin).unwrap();
        // What the package's setup-dirs creates.
        for d in ["var/spool/qumulo-audit-broker/queue", "var/spool/qumulo-audit-broker/journal", "var/lib/qumulo-audit-broker/dead-letter", "var/log/qumulo-audit-broker", "work"] {
            std::fs::create_dir_all(l.path(d)).unwrap();
        }
        // The host's rsyslog.conf: loads imtcp itself, includes /etc/rsyslog.d; rsyslog's own
        // messages, with their severity, in work/internal.log.
        let r = l.root.display();
        std::fs::write(
            l.path("etc/rsyslog.conf"),
            format!(
                "global(workDirectory=\"{r}/work\" processInternalMessages=\"on\")\nmodule(load=\"imtcp\")\n\
                 template(name=\"qab_test_internal\" type=\"string\" string=\"%syslogseverity-text% %msg%\\n\")\n\
                 if $inputname == \"rsyslogd\" then {{\n  action(type=\"omfile\" file=\"{r}/work/internal.log\" template=\"qab_test_internal\")\n  stop\n}}\n\
                 include(file=\"{r}/etc/rsyslog.d/*.conf\")\n"
            ),
        )
        .unwrap();
        l
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Copies a shipped file into the layout, its package paths relocated.
    pub fn install(&self, from: &str, to: &str) {
        let mut text = std::fs::read_to_string(Path::new(TOP).join(from)).unwrap();
        for p in PREFIXES {
            text = text.replace(p, &format!("{}{p}", self.root.display()));
        }
        let to = self.path(to);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, text).unwrap();
    }

    pub fn broker_toml(&self) -> PathBuf {
        self.path("etc/qumulo-audit-broker/broker.toml")
    }

    pub fn rsyslog_dir(&self) -> PathBuf {
        self.path("etc/qumulo-audit-broker/rsyslog.d")
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(BIN);
        // status and test-event read what runs, the applied copy (their default in the
        // installed layout), apply and check the edited file.
        let config = match args[0] {
            "status" | "test-event" => self.rsyslog_dir().join("applied-broker.toml"),
            _ => self.broker_toml(),
        };
        cmd.args(args).arg("--config").arg(config).env("QAB_LOG", "warn");
        if args[0] == "apply" {
            cmd.arg("--rsyslog-dir").arg(self.rsyslog_dir());
            cmd.arg("--rsyslog-conf").arg(self.path("etc/rsyslog.conf"));
            cmd.arg("--template-conf").arg(self.path("usr/share/qumulo-audit-broker/rsyslog/qumulo-audit-broker.conf"));
        }
        cmd.output().unwrap()
    }

    pub fn apply(&self, extra: &[&str]) -> (i32, String) {
        let mut args = vec!["apply"];
        args.extend_from_slice(extra);
        let out = self.run(&args);
        (out.status.code().unwrap_or(-1), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }

    pub fn status(&self) -> Status {
        let prom = self.path("work/qab.prom");
        let out = self.run(&["status", "--prometheus", prom.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        Status { code: out.status.code().unwrap_or(-1), prom: parse_prom(&std::fs::read_to_string(&prom).unwrap_or_default()), text }
    }

    pub fn drop_ins(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        for e in std::fs::read_dir(self.rsyslog_dir()).unwrap().flatten() {
            m.insert(e.file_name().to_string_lossy().into_owned(), std::fs::read_to_string(e.path()).unwrap());
        }
        m
    }

    /// rsyslog's own messages of severity warning or worse so far (`work/internal.log`, each
    /// line "severity message"), and anything rsyslogd wrote to stdout or stderr.
    pub fn rsyslog_warnings(&self) -> Vec<String> {
        let internal = std::fs::read_to_string(self.path("work/internal.log")).unwrap_or_default();
        let stdio = std::fs::read_to_string(self.path("work/rsyslogd.out")).unwrap_or_default();
        let bad = |l: &&str| !matches!(l.split(' ').next(), Some("info" | "notice" | "debug"));
        internal.lines().filter(bad).chain(stdio.lines().filter(|l| !l.trim().is_empty())).map(str::to_string).collect()
    }

    pub fn diagnostics(&self) -> String {
        let mut s = String::new();
        for f in ["work/internal.log", "work/rsyslogd.out", "var/log/qumulo-audit-broker/splunk.log", "var/log/qumulo-audit-broker/local.log"] {
            s.push_str(&format!("---- {f}\n{}\n", std::fs::read_to_string(self.path(f)).unwrap_or_default()));
        }
        s
    }
}

pub struct Status {
    pub code: i32,
    pub text: String,
    /// `metric{destination="x"}` -> value, from the Prometheus textfile.
    pub prom: BTreeMap<String, u64>,
}

impl Status {
    pub fn metric(&self, name: &str, dest: &str) -> Option<u64> {
        self.prom.get(&format!("{name}{{destination=\"{dest}\"}}")).copied()
    }
    /// `metric{queue="x"}`: a broker ruleset queue's figure (a cluster's queue).
    pub fn queue_metric(&self, name: &str, queue: &str) -> Option<u64> {
        self.prom.get(&format!("{name}{{queue=\"{queue}\"}}")).copied()
    }
    pub fn state_of(&self, dest: &str) -> String {
        let prefix = format!("destination {dest} (");
        self.text.lines().find(|l| l.starts_with(&prefix)).and_then(|l| l.split_once("): ")).map(|(_, s)| s.to_string()).unwrap_or_default()
    }
}

pub fn parse_prom(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(k, v)| Some((k.to_string(), v.parse().ok()?))))
        .collect()
}

pub struct Rsyslogd {
    child: Child,
}

impl Rsyslogd {
    pub fn start(l: &Layout, ports: &[u16]) -> Rsyslogd {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(l.path("work/rsyslogd.out")).unwrap();
        let child = Command::new(std::env::var("RSYSLOGD").unwrap_or_else(|_| "rsyslogd".into()))
            .args(["-n", "-C", "-f"])
            .arg(l.path("etc/rsyslog.conf"))
            .arg("-i")
            .arg(l.path("work/rsyslogd.pid"))
            .current_dir(l.path("work"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .env_remove("NOTIFY_SOCKET")
            .spawn()
            .expect("run rsyslogd");
        let r = Rsyslogd { child };
        for &p in ports {
            until(Duration::from_secs(15), &format!("rsyslogd listening on port {p}"), || l.diagnostics(), || TcpStream::connect(("127.0.0.1", p)).ok().map(|_| ()));
        }
        r
    }

    pub fn stop(mut self) {
        // SAFETY: kill(2) on our child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let done = try_wait_for(Duration::from_secs(30), || self.child.try_wait().unwrap());
        assert!(done.is_some(), "rsyslogd stops on SIGTERM");
    }
}

impl Drop for Rsyslogd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `cond` every 250 ms until it gives `Some`; panics after `timeout` with `context()`.
pub fn until<T>(timeout: Duration, what: &str, context: impl FnOnce() -> String, mut cond: impl FnMut() -> Option<T>) -> T {
    match try_wait_for(timeout, || {
        let v = cond();
        if v.is_none() {
            std::thread::sleep(Duration::from_millis(250));
        }
        v
    }) {
        Some(v) => v,
        None => panic!("timed out after {timeout:?} waiting for {what}\n{}", context()),
    }
}

/// Sends framed Qumulo lines to `port` from source address `from` (a 127.x address).
pub fn send_from(from: Ipv4Addr, port: u16, lines: &[String]) {
    // SAFETY: plain socket/bind calls on a fresh fd; ownership goes to TcpStream.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    assert!(fd >= 0);
    let addr = libc::sockaddr_in { sin_family: libc::AF_INET as u16, sin_port: 0, sin_addr: libc::in_addr { s_addr: u32::from(from).to_be() }, sin_zero: [0; 8] };
    let rc = unsafe { libc::bind(fd, &addr as *const _ as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_in>() as u32) };
    assert_eq!(rc, 0, "bind {from}: {}", std::io::Error::last_os_error());
    let to = libc::sockaddr_in { sin_family: libc::AF_INET as u16, sin_port: port.to_be(), sin_addr: libc::in_addr { s_addr: u32::from(Ipv4Addr::LOCALHOST).to_be() }, sin_zero: [0; 8] };
    let rc = unsafe { libc::connect(fd, &to as *const _ as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_in>() as u32) };
    assert_eq!(rc, 0, "connect to {port}: {}", std::io::Error::last_os_error());
    let mut s = unsafe { TcpStream::from_raw_fd(fd) };
    for l in lines {
        s.write_all(format!("{l}\n").as_bytes()).unwrap();
    }
    s.flush().unwrap();
}

/// (event number, cluster) of every record in an ECS or JSON file destination, read
/// independently (test events left out).
pub fn file_events(path: &Path) -> Vec<(u64, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.contains("/qumulo-audit-broker/test-event-"))
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            let n = sender::event_number(l).unwrap_or_else(|| panic!("no event number: {l}"));
            (n, v["qumulo"]["cluster"].as_str().or(v["observer"]["name"].as_str()).unwrap_or("").to_string())
        })
        .collect()
}
