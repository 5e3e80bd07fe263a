//! Test-support library shared by the integration tests (`mod support;` in a file under tests/).
//!
//! Every helper waits with a timeout and panics with context (what it waited for, what it saw,
//! the relevant logs) instead of hanging. Modules:
//! - [`brokers`]: what the amqp and kafka destination tests share (envelopes, stats lines).
//! - [`config`]: `ConfigToml`, the one builder of destination config files.
//! - [`consume`]: `consume` processes (start, SIGTERM, SIGKILL) and the event-id check of the
//!   processing-tier tests.
//! - [`layout`]: the packages' installed layout under a temp root, its rsyslogd and our subcommands
//!   on it (the `broker.toml` tests).
//! - [`rsyslog`]: a real, unprivileged `rsyslogd` in a temp work dir, with imtcp on a free port.
//! - [`sender`]: numbered Qumulo audit lines (CSV and JSON bodies, RFC 3164 framed) and a TCP sender.
//! - [`http`]: `MockHttp`, a local HTTP/1.1 server speaking Splunk HEC, Elasticsearch bulk and
//!   NDJSON, with failure injection.
//! - [`syslog_rx`]: syslog receivers (TCP with octet-counted or newline framing, UDP) and a real
//!   rsyslogd receiver writing to a file.
//! - [`omprog_driver`]: drives a program exactly as rsyslog's omprog does and checks its replies.
//! - [`rabbitmq`]: a real RabbitMQ node in a temp dir, and an independent AMQP reader.
//! - [`kafka`]: a real Kafka-protocol broker (`tansu`) on a loopback port, and an independent
//!   reader (Python `kafka-python`).
//! - [`scenario`]: building blocks of the zero-loss scenarios (shipped omprog action, paced
//!   sender, omprog children to SIGKILL, program starts, impstats queue figures, result lines).
#![allow(dead_code)]

pub mod brokers;
pub mod config;
pub mod consume;
pub mod http;
pub mod kafka;
pub mod layout;
pub mod omprog_driver;
pub mod rabbitmq;
pub mod rsyslog;
pub mod scenario;
pub mod sender;
pub mod syslog_rx;

use std::time::{Duration, Instant};

/// Polls `cond` every few milliseconds until it returns `Some`, or panics after `timeout` with
/// `what` and the text `context()` gives at that moment (a log dump, the state seen so far).
pub fn wait_for<T>(
    timeout: Duration,
    what: &str,
    mut cond: impl FnMut() -> Option<T>,
    context: impl FnOnce() -> String,
) -> T {
    let start = Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        if let Some(v) = cond() {
            return v;
        }
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for {what}\n{}", context());
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Like [`wait_for`] but returns `None` on timeout instead of panicking.
pub fn try_wait_for<T>(timeout: Duration, mut cond: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        if let Some(v) = cond() {
            return Some(v);
        }
        if start.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Reads a file as lossy UTF-8 lines (without their `\n`); a missing file reads as no lines.
/// A last line without `\n` (still being written) is left out.
pub fn read_complete_lines(path: &std::path::Path) -> Vec<String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("cannot read {}: {e}", path.display()),
    };
    let end = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    String::from_utf8_lossy(&bytes[..end]).lines().map(str::to_owned).collect()
}

/// The file's text (lossy UTF-8), or a note that it could not be read; for panic messages.
pub fn file_text_for_panic(path: &std::path::Path) -> String {
    match std::fs::read(path) {
        Ok(b) => {
            let s = String::from_utf8_lossy(&b);
            const MAX: usize = 16 * 1024;
            if s.len() > MAX {
                let mut cut = s.len() - MAX;
                while !s.is_char_boundary(cut) {
                    cut += 1;
                }
                format!("[... {} bytes cut ...]\n{}", cut, &s[cut..])
            } else {
                s.into_owned()
            }
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// A loopback TCP port that was free a moment ago (bound to port 0, then released). For configs
/// that must name a port before its listener exists; prefer binding port 0 directly otherwise.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind 127.0.0.1:0").port()
}
