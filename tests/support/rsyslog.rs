//! A real `rsyslogd`, run unprivileged the way rsyslog's own testbench runs it.
//!
//! [`Rsyslogd`] writes a configuration into a fresh temp dir (also rsyslog's `workDirectory`),
//! starts `rsyslogd -n -C -f CONF -i PIDFILE` with its stdout/stderr captured in
//! `rsyslogd.stdio.log` there, and (unless disabled) loads imtcp on `127.0.0.1` port 0 with
//! `listenPortFileName`, so rsyslog picks a free port and tells us which. It waits until that port
//! accepts connections before returning.
//!
//! Flags (rsyslogd(8), tests/diag.sh): `-n` stays in the foreground (we own the process), `-C`
//! does not chdir to `/` (testbench flag), `-f` our config only (not /etc/rsyslog.conf), `-i` a pid
//! file in the temp dir (the default /run/rsyslogd.pid would clash with a system instance). No root
//! is needed as long as no privileged port, no imuxsock (/dev/log) and no imklog are configured;
//! the preamble loads none of them. `NOTIFY_SOCKET`/`LISTEN_*` are removed from the environment
//! so a systemd-enabled build neither notifies nor adopts sockets.
//!
//! The caller's config body may say `{WORKDIR}`; it is replaced with the temp dir's path. The
//! preamble sends rsyslog's own messages (`$inputname == "rsyslogd"`) to `rsyslogd-internal.log`
//! in the work dir and stops them there, so they never reach the caller's rules; both logs are
//! dumped in every panic message ([`Rsyslogd::diagnostics`]).
//!
//! Set `TESTKIT_KEEP=1` to keep the work dir after the test (its path is printed).

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{file_text_for_panic, read_complete_lines, try_wait_for};

/// The rsyslogd binary; `RSYSLOGD` in the environment overrides it.
pub fn rsyslogd_binary() -> String {
    std::env::var("RSYSLOGD").unwrap_or_else(|_| "rsyslogd".to_string())
}

/// Runs `rsyslogd -N1 -f CONF` (config check, level 1). `Ok(output)` when it exits 0,
/// `Err(output)` otherwise; output is stdout and stderr together. Panics only if rsyslogd cannot
/// be run or does not finish within 30 s.
pub fn rsyslogd_check(conf_path: &Path) -> Result<String, String> {
    let out_path = std::env::temp_dir().join(format!(
        "testkit-rsyslogd-check-{}-{}.out",
        std::process::id(),
        unique_suffix()
    ));
    let out = fs::File::create(&out_path).unwrap_or_else(|e| panic!("create {}: {e}", out_path.display()));
    let err = out.try_clone().expect("clone output file handle");
    let mut child = Command::new(rsyslogd_binary())
        .arg("-N1")
        .arg("-f")
        .arg(conf_path)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .env_remove("NOTIFY_SOCKET")
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{} -N1 -f {}`: {e}", rsyslogd_binary(), conf_path.display()));
    let status = wait_child(&mut child, Duration::from_secs(30)).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "`rsyslogd -N1 -f {}` did not finish within 30 s; output:\n{}",
            conf_path.display(),
            file_text_for_panic(&out_path)
        )
    });
    let text = fs::read_to_string(&out_path).unwrap_or_default();
    let _ = fs::remove_file(&out_path);
    if status.success() {
        Ok(text)
    } else {
        Err(format!("{status}\n{text}"))
    }
}

fn unique_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Waits for `child` to exit, polling; `None` if it is still running after `timeout`.
fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    try_wait_for(timeout, || child.try_wait().expect("waitpid on child"))
}

fn send_signal(pid: u32, sig: libc::c_int) {
    // SAFETY: plain kill(2) on a pid we spawned and have not reaped yet.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// How a stop ended.
#[derive(Debug, Clone, Copy)]
pub struct Exit {
    /// The exit status rsyslogd returned.
    pub status: ExitStatus,
    /// True if SIGTERM did not end it within the stop timeout and SIGKILL was sent.
    pub killed: bool,
    /// From the first signal to reaping.
    pub elapsed: Duration,
}

/// Builds an [`Rsyslogd`]: the caller's config body plus options for the generated preamble.
#[derive(Debug, Clone)]
pub struct RsyslogdBuilder {
    body: String,
    tcp_input: bool,
    tcp_ruleset: Option<String>,
    imtcp_module_params: String,
    imtcp_input_params: String,
    internal_log: bool,
    strict: bool,
    startup_timeout: Duration,
    stop_timeout: Duration,
    env: Vec<(String, String)>,
}

impl RsyslogdBuilder {
    /// A builder for `body`, the caller's config (modules, templates, rulesets, actions), placed
    /// after the generated preamble. `{WORKDIR}` in it becomes the work dir's path.
    pub fn new(body: impl Into<String>) -> Self {
        RsyslogdBuilder {
            body: body.into(),
            tcp_input: true,
            tcp_ruleset: None,
            imtcp_module_params: String::new(),
            imtcp_input_params: String::new(),
            internal_log: true,
            strict: true,
            startup_timeout: Duration::from_secs(15),
            stop_timeout: Duration::from_secs(30),
            env: Vec::new(),
        }
    }
    /// Binds the generated imtcp input to this ruleset (default: the default ruleset).
    pub fn tcp_ruleset(mut self, name: &str) -> Self {
        self.tcp_ruleset = Some(name.to_string());
        self
    }
    /// Generate no imtcp module and input (the caller's body has its own inputs or none).
    /// Startup then waits for the pid file instead of the port.
    pub fn no_tcp_input(mut self) -> Self {
        self.tcp_input = false;
        self
    }
    /// Extra parameters for `module(load="imtcp" ...)`, e.g. `maxSessions="10"`.
    pub fn imtcp_module_params(mut self, params: &str) -> Self {
        self.imtcp_module_params = params.to_string();
        self
    }
    /// Extra parameters for the generated `input(type="imtcp" ...)`.
    pub fn imtcp_input_params(mut self, params: &str) -> Self {
        self.imtcp_input_params = params.to_string();
        self
    }
    /// Whether rsyslog's own messages are diverted to `rsyslogd-internal.log` (default true).
    /// With false they go through the caller's default ruleset like any message.
    pub fn internal_log(mut self, on: bool) -> Self {
        self.internal_log = on;
        self
    }
    /// By default startup panics if rsyslogd printed anything on stdout/stderr (config errors
    /// are printed there, and rsyslogd then runs on without the broken statement) or logged an
    /// internal message containing "error" before it was ready. This allows both.
    pub fn allow_startup_errors(mut self) -> Self {
        self.strict = false;
        self
    }
    /// How long startup may take before it panics (default 15 s).
    pub fn startup_timeout(mut self, d: Duration) -> Self {
        self.startup_timeout = d;
        self
    }
    /// How long `stop()` waits after SIGTERM before SIGKILL (default 30 s).
    pub fn stop_timeout(mut self, d: Duration) -> Self {
        self.stop_timeout = d;
        self
    }
    /// An environment variable for rsyslogd (and so for omprog children, which inherit it).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }
    /// Writes the config, starts rsyslogd and waits until it is ready (see [`Rsyslogd::start`]).
    pub fn start(self) -> Rsyslogd {
        let dir = tempfile::Builder::new()
            .prefix("testkit-rsyslogd-")
            .tempdir()
            .expect("create temp work dir for rsyslogd");
        let mut r = Rsyslogd {
            dir_path: dir.path().to_path_buf(),
            dir: Some(dir),
            spec: self,
            child: None,
            port: None,
            starts: 0,
            log_offsets: (0, 0),
        };
        r.launch(None);
        r
    }
}

/// A running (or stopped) rsyslogd with its own temp work dir. Dropping it kills rsyslogd
/// (SIGTERM, then SIGKILL after 5 s) and removes the work dir unless `TESTKIT_KEEP=1`.
pub struct Rsyslogd {
    dir: Option<tempfile::TempDir>,
    dir_path: PathBuf,
    spec: RsyslogdBuilder,
    child: Option<Child>,
    port: Option<u16>,
    starts: u32,
    /// Lengths of the stdio and internal logs when the current run was started.
    log_offsets: (u64, u64),
}

impl Rsyslogd {
    /// Starts rsyslogd with imtcp (default ruleset) and `body`; see [`RsyslogdBuilder`].
    pub fn start(body: &str) -> Rsyslogd {
        RsyslogdBuilder::new(body).start()
    }

    /// A builder for more options.
    pub fn builder(body: &str) -> RsyslogdBuilder {
        RsyslogdBuilder::new(body)
    }

    /// The work dir (rsyslog's `workDirectory`, config, pid, logs).
    pub fn work_dir(&self) -> &Path {
        &self.dir_path
    }

    /// `work_dir/name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir_path.join(name)
    }

    /// The generated config file.
    pub fn conf_path(&self) -> PathBuf {
        self.path("rsyslog.conf")
    }

    /// The file holding rsyslogd's stdout and stderr (appended across restarts).
    pub fn stdio_log_path(&self) -> PathBuf {
        self.path("rsyslogd.stdio.log")
    }

    /// The file rsyslog's own messages go to (when the internal log is on).
    pub fn internal_log_path(&self) -> PathBuf {
        self.path("rsyslogd-internal.log")
    }

    /// The imtcp port of the current (or last) run. Panics if there is no tcp input.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or_else(|| panic!("this rsyslogd has no imtcp input\n{}", self.diagnostics()))
    }

    /// The port of an extra imtcp input the caller's body declares with `port="0"
    /// listenPortFileName="{WORKDIR}/<file>"` (e.g. a second input bound to another ruleset).
    /// Waits until that port accepts connections; panics with diagnostics after `timeout`.
    pub fn listen_port(&self, file: &str, timeout: Duration) -> u16 {
        let path = self.path(file);
        try_wait_for(timeout, || {
            let p = fs::read_to_string(&path).ok()?.trim().parse::<u16>().ok()?;
            let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, p));
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok().map(|_| p)
        })
        .unwrap_or_else(|| panic!("no listening port in {} after {timeout:?}\n{}", path.display(), self.diagnostics()))
    }

    /// `127.0.0.1:port()`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port()))
    }

    /// The pid of the running rsyslogd, if any.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// How many times rsyslogd was started (1 after `start`, 2 after one `restart`, ...).
    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// True while the process runs (reaps it if it has exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(c) => c.try_wait().expect("waitpid rsyslogd").is_none(),
        }
    }

    /// Panics with diagnostics unless rsyslogd is still running.
    pub fn assert_running(&mut self) {
        if !self.is_running() {
            let st = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            panic!("rsyslogd is not running (exit: {st:?})\n{}", self.diagnostics());
        }
    }

    /// Sends SIGHUP (rsyslog closes and reopens its files; omprog forwards it if configured).
    pub fn hup(&self) {
        let pid = self.pid().unwrap_or_else(|| panic!("hup: rsyslogd is not running\n{}", self.diagnostics()));
        send_signal(pid, libc::SIGHUP);
    }

    /// SIGTERM, wait up to the stop timeout for exit, then SIGKILL. Panics if it was not running.
    pub fn stop(&mut self) -> Exit {
        let timeout = self.spec.stop_timeout;
        self.stop_within(timeout)
    }

    /// [`stop`](Self::stop) with an explicit timeout before SIGKILL.
    pub fn stop_within(&mut self, timeout: Duration) -> Exit {
        let mut child = self
            .child
            .take()
            .unwrap_or_else(|| panic!("stop: rsyslogd is not running\n{}", self.diagnostics()));
        let start = Instant::now();
        if let Some(status) = child.try_wait().expect("waitpid rsyslogd") {
            panic!("stop: rsyslogd had already exited ({status})\n{}", self.diagnostics());
        }
        send_signal(child.id(), libc::SIGTERM);
        if let Some(status) = wait_child(&mut child, timeout) {
            return Exit { status, killed: false, elapsed: start.elapsed() };
        }
        eprintln!("testkit: rsyslogd (pid {}) ignored SIGTERM for {timeout:?}; sending SIGKILL", child.id());
        let _ = child.kill();
        let status = wait_child(&mut child, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("rsyslogd survived SIGKILL for 10 s\n{}", self.diagnostics()));
        Exit { status, killed: true, elapsed: start.elapsed() }
    }

    /// SIGKILL now (a crash: no queue is saved, omprog children see EOF). Panics if not running.
    pub fn kill(&mut self) -> ExitStatus {
        let mut child = self
            .child
            .take()
            .unwrap_or_else(|| panic!("kill: rsyslogd is not running\n{}", self.diagnostics()));
        let _ = child.kill();
        wait_child(&mut child, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("rsyslogd survived SIGKILL for 10 s\n{}", self.diagnostics()))
    }

    /// Stops rsyslogd if it runs (gracefully, as [`stop`](Self::stop)) and starts it again with
    /// the same work dir and config. It tries to keep the same imtcp port (so senders can
    /// reconnect to the address they know); if that port cannot be had, it falls back to a new
    /// free port: read [`port`](Self::port) again after a restart.
    pub fn restart(&mut self) {
        if self.is_running() {
            self.stop();
        } else if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        let old = self.port;
        if let Some(p) = old {
            // Cheap pre-check: if we cannot bind it, neither can rsyslog.
            if TcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_ok() && self.try_launch(Some(p), Duration::from_secs(5)) {
                self.check_startup();
                return;
            }
            if self.is_running() {
                self.kill();
            }
            eprintln!("testkit: rsyslogd could not get port {p} back; restarting on a new port");
        }
        self.launch(None);
    }

    /// rsyslogd's captured stdout and stderr.
    pub fn stdio_log(&self) -> String {
        fs::read_to_string(self.stdio_log_path()).unwrap_or_default()
    }

    /// rsyslog's own messages (when the internal log is on).
    pub fn internal_log(&self) -> String {
        fs::read_to_string(self.internal_log_path()).unwrap_or_default()
    }

    /// Config, stdio and internal log, for panic messages.
    pub fn diagnostics(&self) -> String {
        format!(
            "---- rsyslogd work dir: {}\n---- config:\n{}\n---- rsyslogd stdout/stderr:\n{}\n---- rsyslogd internal messages:\n{}\n----",
            self.dir_path.display(),
            file_text_for_panic(&self.conf_path()),
            file_text_for_panic(&self.stdio_log_path()),
            file_text_for_panic(&self.internal_log_path()),
        )
    }

    /// Waits until `file` (absolute, or relative to the work dir) has at least `n` complete lines,
    /// and returns them all. Panics with diagnostics after `timeout`; also panics at once if
    /// rsyslogd exits meanwhile.
    pub fn wait_for_lines(&mut self, file: impl AsRef<Path>, n: usize, timeout: Duration) -> Vec<String> {
        let path = self.dir_path.join(file.as_ref());
        let mut last = 0;
        let mut exited = None;
        let got = try_wait_for(timeout, || {
            let lines = read_complete_lines(&path);
            last = lines.len();
            if lines.len() >= n {
                return Some(Some(lines));
            }
            if let Some(c) = self.child.as_mut() {
                if let Some(st) = c.try_wait().expect("waitpid rsyslogd") {
                    exited = Some(st);
                    return Some(None);
                }
            }
            None
        });
        match got {
            Some(Some(lines)) => lines,
            Some(None) => panic!(
                "rsyslogd exited ({:?}) while waiting for {n} lines in {} (had {last})\n{}",
                exited,
                path.display(),
                self.diagnostics()
            ),
            None => panic!(
                "timed out after {timeout:?} waiting for {n} lines in {} (have {last})\n{}",
                path.display(),
                self.diagnostics()
            ),
        }
    }

    fn render_config(&self, port: u16) -> String {
        let dir = self.dir_path.display().to_string();
        let s = &self.spec;
        let mut c = String::new();
        c.push_str("# generated by tests/support/rsyslog.rs\n");
        // processInternalMessages="on": rsyslog's own messages (omprog errors, queue state, ...)
        // are processed here; the default hands them to syslog(3), i.e. /dev/log, where they
        // are lost or land in the host's log.
        c.push_str(&format!("global(workDirectory=\"{dir}\" processInternalMessages=\"on\")\n"));
        if s.internal_log {
            c.push_str(&format!(
                "if $inputname == \"rsyslogd\" then {{\n  action(type=\"omfile\" file=\"{dir}/rsyslogd-internal.log\")\n  stop\n}}\n"
            ));
        }
        if s.tcp_input {
            c.push_str(&format!("module(load=\"imtcp\" {})\n", s.imtcp_module_params));
            let rs = s.tcp_ruleset.as_ref().map(|r| format!(" ruleset=\"{r}\"")).unwrap_or_default();
            c.push_str(&format!(
                "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" listenPortFileName=\"{dir}/imtcp.port\"{rs} {})\n",
                s.imtcp_input_params
            ));
        }
        c.push_str("# ---- caller's config ----\n");
        c.push_str(&s.body.replace("{WORKDIR}", &dir));
        c.push('\n');
        c
    }

    fn spawn(&mut self, port: u16) {
        let conf = self.render_config(port);
        fs::write(self.conf_path(), conf).expect("write rsyslog.conf");
        let _ = fs::remove_file(self.path("imtcp.port"));
        let _ = fs::remove_file(self.path("rsyslogd.pid"));
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stdio_log_path())
            .expect("open rsyslogd.stdio.log");
        use std::io::Write;
        let mut marker = log.try_clone().expect("clone log handle");
        let _ = writeln!(marker, "==== testkit: start #{} ====", self.starts + 1);
        let len = |p: PathBuf| fs::metadata(p).map_or(0, |m| m.len());
        self.log_offsets = (len(self.stdio_log_path()), len(self.internal_log_path()));
        let mut cmd = Command::new(rsyslogd_binary());
        cmd.arg("-n")
            .arg("-C")
            .arg("-f")
            .arg(self.conf_path())
            .arg("-i")
            .arg(self.path("rsyslogd.pid"))
            .current_dir(&self.dir_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDNAMES");
        for (k, v) in &self.spec.env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}\n{}", rsyslogd_binary(), self.diagnostics()));
        self.child = Some(child);
        self.starts += 1;
    }

    /// Starts and waits for readiness; panics with diagnostics on failure.
    fn launch(&mut self, port: Option<u16>) {
        let timeout = self.spec.startup_timeout;
        if !self.try_launch(port, timeout) {
            let exited = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if exited.is_none() && self.child.is_some() {
                self.kill();
            }
            panic!(
                "rsyslogd did not become ready within {timeout:?} (exit status: {exited:?})\n{}",
                self.diagnostics()
            );
        }
        self.check_startup();
    }

    fn check_startup(&mut self) {
        if self.spec.strict {
            if let Some(problem) = self.startup_problems() {
                self.kill();
                panic!(
                    "rsyslogd reported problems at startup (use allow_startup_errors() if expected):\n{problem}\n{}",
                    self.diagnostics()
                );
            }
        }
    }

    /// What rsyslogd printed on stdout/stderr, or logged internally with "error", since the
    /// current run started; `None` if nothing.
    pub fn startup_problems(&self) -> Option<String> {
        let tail = |p: PathBuf, off: u64| {
            let b = fs::read(p).unwrap_or_default();
            String::from_utf8_lossy(&b[(off as usize).min(b.len())..]).into_owned()
        };
        let stdio = tail(self.stdio_log_path(), self.log_offsets.0);
        let mut problems: Vec<String> =
            stdio.lines().filter(|l| !l.trim().is_empty() && !l.starts_with("==== testkit:")).map(str::to_owned).collect();
        let internal = tail(self.internal_log_path(), self.log_offsets.1);
        problems.extend(internal.lines().filter(|l| l.to_ascii_lowercase().contains("error")).map(str::to_owned));
        (!problems.is_empty()).then(|| problems.join("\n"))
    }

    /// Starts rsyslogd; true once ready (imtcp accepting, or pid file written without imtcp),
    /// false if it exited or was not ready within `timeout` (the process is left as it is).
    fn try_launch(&mut self, port: Option<u16>, timeout: Duration) -> bool {
        self.spawn(port.unwrap_or(0));
        let port_file = self.path("imtcp.port");
        let pid_file = self.path("rsyslogd.pid");
        let tcp = self.spec.tcp_input;
        let child = self.child.as_mut().expect("just spawned");
        let ready = try_wait_for(timeout, || {
            if let Ok(Some(_)) = child.try_wait() {
                return Some(None);
            }
            if !tcp {
                return fs::metadata(&pid_file).ok().filter(|m| m.len() > 0).map(|_| Some(0));
            }
            // Port 0: rsyslog writes the port it got (before listen(), so also try a connect).
            let p = match port {
                Some(p) => p,
                None => fs::read_to_string(&port_file).ok()?.trim().parse::<u16>().ok()?,
            };
            let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, p));
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok().map(|_| Some(p))
        });
        match ready {
            Some(Some(p)) => {
                if tcp {
                    self.port = Some(p);
                }
                true
            }
            _ => false,
        }
    }
}

impl Drop for Rsyslogd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if std::thread::panicking() {
                let _ = c.kill();
            } else {
                send_signal(c.id(), libc::SIGTERM);
                if wait_child(&mut c, Duration::from_secs(5)).is_none() {
                    let _ = c.kill();
                }
            }
            let _ = c.wait();
        }
        if std::env::var("TESTKIT_KEEP").is_ok_and(|v| v == "1") {
            if let Some(d) = self.dir.take() {
                let p = d.keep();
                eprintln!("testkit: kept rsyslogd work dir {}", p.display());
            }
        }
    }
}
