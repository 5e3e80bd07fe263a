//! `OmprogDriver`: runs a program the way rsyslog's omprog does and checks every byte it answers.
//!
//! The child gets stdin and stdout pipes, stderr goes to a file (omprog's `output=`), SIGINT is
//! ignored and the signal mask is empty (as omprog's `execBinary` leaves them). Replies are read
//! with omprog's own algorithm (`readStatus` in plugins/omprog/omprog.c): `poll` with the confirm
//! timeout (default 10 s, reset by every read, so leading `.` keep-alives extend it), `read` into a
//! 4096-byte buffer until a read ends with `\n`, then the leading dots are stripped and the rest is
//! compared exactly with `OK`, `DEFER_COMMIT`, `PREVIOUS_COMMITTED`; anything else (`OK\r`, `OK `,
//! `ERROR: ...`) is [`Reply::Error`], a recoverable error in rsyslog.
//!
//! What makes rsyslog kill and restart the program is a [`Violation`]: no reply within the
//! timeout, EOF on stdout, a broken pipe on stdin, a reply of 4095+ bytes, or more than one line
//! in one read. The driver is stricter than omprog in one case: a read holding two complete lines
//! (`OK\nOK\n`), which omprog would take as one garbled error reply, is also a violation here.
//!
//! [`OmprogDriver::send`] and friends panic on a violation with the transcript and the child's
//! stderr; the `try_` variants return it for tests that expect one.

use std::fs;
use std::io::{self, Write};
use std::os::unix::io::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{file_text_for_panic, try_wait_for};

/// omprog's reply buffer: a reply line (with its `\n`) must fit in 4095 bytes.
pub const RESPONSE_LINE_BUFFER_SIZE: usize = 4096;

/// A well-formed reply line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `OK`
    Ok,
    /// `DEFER_COMMIT`
    DeferCommit,
    /// `PREVIOUS_COMMITTED`
    PreviousCommitted,
    /// Any other single line (leading dots removed): rsyslog suspends the action and retries.
    Error(String),
}

impl Reply {
    fn from_line(line: &str) -> Reply {
        match line {
            "OK" => Reply::Ok,
            "DEFER_COMMIT" => Reply::DeferCommit,
            "PREVIOUS_COMMITTED" => Reply::PreviousCommitted,
            other => Reply::Error(other.to_string()),
        }
    }
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }
}

/// Something that makes rsyslog kill and restart the program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// No complete reply within the confirm timeout; `partial` is what had arrived.
    Timeout { waited: Duration, partial: Vec<u8> },
    /// stdout reached EOF (the program exited or closed it).
    Eof { partial: Vec<u8> },
    /// More than one line in one read. `rsyslog_restarts` is false when the read ended with `\n`
    /// (omprog then compares the whole text and sees an error reply instead).
    Multiline { bytes: Vec<u8>, rsyslog_restarts: bool },
    /// 4095 bytes without a newline.
    TooLong { bytes: Vec<u8> },
    /// Writing to the program's stdin failed (EPIPE: it is gone) or stalled past the timeout.
    Write(String),
    /// A read or poll error.
    Io(String),
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = |b: &[u8]| format!("{:?}", String::from_utf8_lossy(b));
        match self {
            Violation::Timeout { waited, partial } => {
                write!(f, "no complete reply within {waited:?} (partial: {})", t(partial))
            }
            Violation::Eof { partial } => write!(f, "EOF on the program's stdout (partial: {})", t(partial)),
            Violation::Multiline { bytes, rsyslog_restarts } => write!(
                f,
                "more than one line in one read: {} ({})",
                t(bytes),
                if *rsyslog_restarts { "rsyslog restarts the program" } else { "rsyslog sees a garbled error reply" }
            ),
            Violation::TooLong { bytes } => write!(f, "reply of {} bytes without a newline", bytes.len()),
            Violation::Write(e) => write!(f, "writing to the program's stdin: {e}"),
            Violation::Io(e) => write!(f, "reading the program's stdout: {e}"),
        }
    }
}

/// Drives one program instance. Dropping it kills the program if it still runs.
pub struct OmprogDriver {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    _dir: tempfile::TempDir,
    stderr_path: PathBuf,
    program: String,
    confirm_timeout: Duration,
    begin_mark: String,
    commit_mark: String,
    transcript: Vec<String>,
    last_dots: usize,
    total_dots: usize,
    exit: Option<ExitStatus>,
}

impl OmprogDriver {
    /// Spawns `program args...` and reads its `OK` handshake (panics if it is anything else).
    pub fn start<S: AsRef<std::ffi::OsStr>>(program: impl AsRef<Path>, args: &[S]) -> OmprogDriver {
        let mut d = OmprogDriver::spawn(program, args);
        d.handshake();
        d
    }

    /// Spawns `program args...` without reading the handshake.
    pub fn spawn<S: AsRef<std::ffi::OsStr>>(program: impl AsRef<Path>, args: &[S]) -> OmprogDriver {
        let mut cmd = Command::new(program.as_ref());
        cmd.args(args);
        OmprogDriver::spawn_command(cmd)
    }

    /// Spawns a prepared command (env, cwd, args set by the caller); stdio is set here.
    pub fn spawn_command(mut cmd: Command) -> OmprogDriver {
        let dir = tempfile::Builder::new().prefix("testkit-omprog-").tempdir().expect("temp dir for omprog stderr");
        let stderr_path = dir.path().join("stderr.log");
        let err = fs::File::create(&stderr_path).expect("create stderr file");
        let program = format!("{:?}", cmd);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(err);
        // SAFETY: only async-signal-safe calls (sigaction, sigprocmask) between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                let mut act: libc::sigaction = std::mem::zeroed();
                act.sa_sigaction = libc::SIG_IGN;
                libc::sigemptyset(&mut act.sa_mask);
                libc::sigaction(libc::SIGINT, &act, std::ptr::null_mut());
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
                Ok(())
            });
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("omprog driver: cannot spawn {program}: {e}"));
        let stdin = child.stdin.take().expect("stdin pipe");
        let stdout = child.stdout.take().expect("stdout pipe");
        // Non-blocking stdin so a program that stops reading cannot hang the test.
        // SAFETY: fcntl on a fd we own.
        unsafe {
            let fd = stdin.as_raw_fd();
            let fl = libc::fcntl(fd, libc::F_GETFL);
            libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
        OmprogDriver {
            child,
            stdin: Some(stdin),
            stdout,
            _dir: dir,
            stderr_path,
            program,
            confirm_timeout: Duration::from_secs(10),
            begin_mark: "BEGIN TRANSACTION".to_string(),
            commit_mark: "COMMIT TRANSACTION".to_string(),
            transcript: Vec::new(),
            last_dots: 0,
            total_dots: 0,
            exit: None,
        }
    }

    /// Sets the confirm timeout (omprog's `confirmTimeout`, default 10 s).
    pub fn set_confirm_timeout(&mut self, d: Duration) {
        self.confirm_timeout = d;
    }

    /// Sets the transaction marks (omprog's `beginTransactionMark` / `commitTransactionMark`).
    pub fn set_transaction_marks(&mut self, begin: &str, commit: &str) {
        self.begin_mark = begin.to_string();
        self.commit_mark = commit.to_string();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The file holding the program's stderr.
    pub fn stderr_path(&self) -> &Path {
        &self.stderr_path
    }

    /// The program's stderr so far.
    pub fn stderr_text(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Keep-alive dots before the last reply.
    pub fn last_dots(&self) -> usize {
        self.last_dots
    }

    /// Keep-alive dots seen in all replies so far.
    pub fn total_dots(&self) -> usize {
        self.total_dots
    }

    /// What was sent (`> `) and answered (`< `) so far.
    pub fn transcript(&self) -> &[String] {
        &self.transcript
    }

    /// Transcript tail and stderr, for panic messages.
    pub fn diagnostics(&self) -> String {
        let skip = self.transcript.len().saturating_sub(30);
        format!(
            "---- program: {}\n---- transcript (last {}):\n{}\n---- stderr:\n{}\n----",
            self.program,
            self.transcript.len() - skip,
            self.transcript[skip..].join("\n"),
            file_text_for_panic(&self.stderr_path)
        )
    }

    /// Reads the handshake; panics unless it is exactly `OK` (dots allowed) within the timeout.
    pub fn handshake(&mut self) {
        match self.try_handshake() {
            Ok(()) => {}
            Err(e) => panic!("omprog handshake failed: {e}\n{}", self.diagnostics()),
        }
    }

    /// Reads the handshake: `Ok(())` for `OK`, else a description (a reply other than `OK`, or a
    /// violation), as omprog would then kill the program.
    pub fn try_handshake(&mut self) -> Result<(), String> {
        match self.try_read_reply() {
            Ok(Reply::Ok) => Ok(()),
            Ok(other) => Err(format!("handshake reply was {other:?}, not OK")),
            Err(v) => Err(format!("handshake: {v}")),
        }
    }

    /// Sends `line` (plus `\n` unless it ends with one) and returns the reply; panics on a violation.
    pub fn send(&mut self, line: &str) -> Reply {
        match self.try_send(line) {
            Ok(r) => r,
            Err(v) => panic!("omprog protocol violation after sending {line:?}: {v}\n{}", self.diagnostics()),
        }
    }

    /// Sends `line` and reads the reply, returning a violation instead of panicking.
    pub fn try_send(&mut self, line: &str) -> Result<Reply, Violation> {
        self.try_write_line(line)?;
        self.try_read_reply()
    }

    /// Sends raw bytes (a line that need not be UTF-8: invalid bytes, NUL) plus `\n` unless they
    /// end with one, and returns the reply; panics on a violation.
    pub fn send_bytes(&mut self, line: &[u8]) -> Reply {
        match self.try_send_bytes(line) {
            Ok(r) => r,
            Err(v) => panic!(
                "omprog protocol violation after sending {:?}: {v}\n{}",
                String::from_utf8_lossy(line),
                self.diagnostics()
            ),
        }
    }

    /// [`send_bytes`](Self::send_bytes), returning a violation instead of panicking.
    pub fn try_send_bytes(&mut self, line: &[u8]) -> Result<Reply, Violation> {
        let shown: String = String::from_utf8_lossy(line).chars().take(200).collect();
        self.transcript.push(format!("> (raw, {} bytes) {shown:?}", line.len()));
        let mut b = line.to_vec();
        if b.last() != Some(&b'\n') {
            b.push(b'\n');
        }
        self.write_raw(&b)?;
        self.try_read_reply()
    }

    /// Sends `BEGIN TRANSACTION`.
    pub fn begin(&mut self) -> Reply {
        let m = self.begin_mark.clone();
        self.send(&m)
    }

    /// Sends `COMMIT TRANSACTION`.
    pub fn commit(&mut self) -> Reply {
        let m = self.commit_mark.clone();
        self.send(&m)
    }

    /// Sends `COMMIT TRANSACTION`, returning a violation instead of panicking.
    pub fn try_commit(&mut self) -> Result<Reply, Violation> {
        let m = self.commit_mark.clone();
        self.try_send(&m)
    }

    /// `begin`, every line (each must be answered `DEFER_COMMIT`, or `OK` which rsyslog also
    /// accepts), then `commit`; returns the commit reply. Panics on any other reply.
    pub fn transaction<S: AsRef<str>>(&mut self, lines: impl IntoIterator<Item = S>) -> Reply {
        let b = self.begin();
        if b != Reply::Ok {
            panic!("BEGIN TRANSACTION answered {b:?}, expected Ok\n{}", self.diagnostics());
        }
        for l in lines {
            let r = self.send(l.as_ref());
            if r != Reply::DeferCommit && r != Reply::Ok && r != Reply::PreviousCommitted {
                panic!("message {:?} in a transaction answered {r:?}\n{}", l.as_ref(), self.diagnostics());
            }
        }
        self.commit()
    }

    /// Writes a line (plus `\n` unless it ends with one) without reading a reply.
    pub fn write_line(&mut self, line: &str) {
        if let Err(v) = self.try_write_line(line) {
            panic!("omprog driver: cannot write {line:?}: {v}\n{}", self.diagnostics());
        }
    }

    /// Writes raw bytes (nothing added) without reading a reply.
    pub fn write_raw(&mut self, bytes: &[u8]) -> Result<(), Violation> {
        let timeout = self.confirm_timeout;
        let stdin = self.stdin.as_mut().ok_or_else(|| Violation::Write("stdin already closed".into()))?;
        let mut off = 0;
        let start = Instant::now();
        while off < bytes.len() {
            match stdin.write(&bytes[off..]) {
                Ok(n) => off += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let left = timeout.saturating_sub(start.elapsed());
                    if left.is_zero() {
                        return Err(Violation::Write(format!(
                            "stdin not drained for {timeout:?} ({off} of {} bytes written)",
                            bytes.len()
                        )));
                    }
                    let _ = poll_fd(stdin.as_raw_fd(), libc::POLLOUT, left.min(Duration::from_millis(100)));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Violation::Write(format!("{e} ({off} of {} bytes written)", bytes.len()))),
            }
        }
        Ok(())
    }

    fn try_write_line(&mut self, line: &str) -> Result<(), Violation> {
        self.transcript.push(format!("> {line:?}"));
        let mut b = line.as_bytes().to_vec();
        if !line.ends_with('\n') {
            b.push(b'\n');
        }
        self.write_raw(&b)
    }

    /// Reads one reply; panics on a violation.
    pub fn read_reply(&mut self) -> Reply {
        match self.try_read_reply() {
            Ok(r) => r,
            Err(v) => panic!("omprog protocol violation while reading a reply: {v}\n{}", self.diagnostics()),
        }
    }

    /// Reads one reply exactly as omprog's `readStatus` does (see the module doc).
    pub fn try_read_reply(&mut self) -> Result<Reply, Violation> {
        let r = self.read_status();
        match &r {
            Ok(rep) => self.transcript.push(format!("< {rep:?} (dots: {})", self.last_dots)),
            Err(v) => self.transcript.push(format!("< VIOLATION: {v}")),
        }
        r
    }

    fn read_status(&mut self) -> Result<Reply, Violation> {
        let fd = self.stdout.as_raw_fd();
        let mut buf: Vec<u8> = Vec::with_capacity(RESPONSE_LINE_BUFFER_SIZE);
        let mut chunk = [0u8; RESPONSE_LINE_BUFFER_SIZE];
        loop {
            let wait_start = Instant::now();
            // omprog: poll(fd, confirmTimeout) before every read; any bytes re-arm it.
            let ready = loop {
                match poll_fd(fd, libc::POLLIN, self.confirm_timeout) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Violation::Io(format!("poll: {e}"))),
                }
            };
            if ready == 0 {
                return Err(Violation::Timeout { waited: wait_start.elapsed(), partial: buf });
            }
            let room = RESPONSE_LINE_BUFFER_SIZE - 1 - buf.len();
            // SAFETY: reading into a stack buffer of at least `room` bytes.
            let n = unsafe { libc::read(fd, chunk.as_mut_ptr().cast(), room) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(Violation::Io(format!("read: {e}")));
            }
            if n == 0 {
                return Err(Violation::Eof { partial: buf });
            }
            let new = &chunk[..n as usize];
            buf.extend_from_slice(new);
            let ended = buf.last() == Some(&b'\n');
            if !ended && new.contains(&b'\n') {
                return Err(Violation::Multiline { bytes: buf, rsyslog_restarts: true });
            }
            if ended {
                break;
            }
            if buf.len() >= RESPONSE_LINE_BUFFER_SIZE - 1 {
                return Err(Violation::TooLong { bytes: buf });
            }
        }
        buf.pop(); // the newline
        if buf.contains(&b'\n') {
            buf.push(b'\n');
            return Err(Violation::Multiline { bytes: buf, rsyslog_restarts: false });
        }
        let dots = buf.iter().take_while(|&&b| b == b'.').count();
        self.last_dots = dots;
        self.total_dots += dots;
        let line = String::from_utf8_lossy(&buf[dots..]).into_owned();
        Ok(Reply::from_line(&line))
    }

    /// Closes the program's stdin (omprog's shutdown signal: EOF).
    pub fn close_stdin(&mut self) {
        self.transcript.push("> <EOF>".into());
        self.stdin = None;
    }

    /// Sends SIGTERM (omprog with `signalOnClose="on"`).
    pub fn sigterm(&mut self) {
        self.signal(libc::SIGTERM);
    }

    /// Sends any signal (SIGHUP for `hup.signal`, SIGKILL, ...).
    pub fn signal(&mut self, sig: libc::c_int) {
        self.transcript.push(format!("> <signal {sig}>"));
        // SAFETY: kill(2) on our own unreaped child.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, sig);
        }
    }

    /// Waits for the program to exit; `None` if it still runs after `timeout`.
    pub fn try_wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(s) = self.exit {
            return Some(s);
        }
        let child = &mut self.child;
        let s = try_wait_for(timeout, || child.try_wait().expect("waitpid"))?;
        self.exit = Some(s);
        Some(s)
    }

    /// Waits for the program to exit; after `timeout` kills it and panics with diagnostics.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        match self.try_wait_exit(timeout) {
            Some(s) => s,
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("program did not exit within {timeout:?} (killed now)\n{}", self.diagnostics())
            }
        }
    }

    /// Everything left on stdout until EOF (call after the program exited or closed stdout);
    /// panics if EOF does not come within `timeout`. Use it to assert nothing else was written.
    pub fn stdout_rest(&mut self, timeout: Duration) -> Vec<u8> {
        let fd = self.stdout.as_raw_fd();
        let mut out = Vec::new();
        let start = Instant::now();
        let mut chunk = [0u8; 4096];
        loop {
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() || poll_fd(fd, libc::POLLIN, left).unwrap_or(0) == 0 {
                panic!(
                    "stdout did not reach EOF within {timeout:?} (read so far: {:?})\n{}",
                    String::from_utf8_lossy(&out),
                    self.diagnostics()
                );
            }
            // SAFETY: reading into a stack buffer.
            let n = unsafe { libc::read(fd, chunk.as_mut_ptr().cast(), chunk.len()) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                panic!("read stdout: {e}\n{}", self.diagnostics());
            }
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&chunk[..n as usize]);
        }
    }

    /// Exit status as a signal number, if it was killed by one.
    pub fn exit_signal(status: ExitStatus) -> Option<i32> {
        status.signal()
    }
}

impl Drop for OmprogDriver {
    fn drop(&mut self) {
        self.stdin = None;
        if self.exit.is_none() {
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
            }
            let _ = self.child.wait();
        }
    }
}

/// poll(2) on one fd; Ok(0) on timeout.
fn poll_fd(fd: i32, events: libc::c_short, timeout: Duration) -> io::Result<i32> {
    let mut pfd = libc::pollfd { fd, events, revents: 0 };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd.
    let r = unsafe { libc::poll(&mut pfd, 1, ms) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}
