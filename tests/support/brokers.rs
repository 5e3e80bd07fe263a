//! What the broker destinations' tests (`tests/amqp*.rs`, `tests/kafka*.rs`) share: envelope
//! lines with known ids, the program driven as omprog drives it, the stats line read back, and
//! the stats summed over every instance rsyslog started.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use super::omprog_driver::OmprogDriver;
use super::scenario::{log_lines_with, Feeder};
use super::sender::{self, Shape};

pub const BIN: &str = env!("CARGO_BIN_EXE_qumulo-audit-broker");
/// How long a transaction or an exit may take.
pub const T: Duration = Duration::from_secs(60);
/// `2026-06-06T14:52:28Z`, the envelope's (and the CSV body's) time, in seconds.
pub const EVENT_TIME: u64 = 1_780_757_548;

/// The envelope uuid (our event id) of event `n`.
pub fn uuid(n: u64) -> String {
    format!("5eed{n:028x}")
}

/// Event `n` of `cluster` with `body`, as the envelope template (version 1) renders it.
pub fn envelope_with(cluster: &str, n: u64, body: &str) -> String {
    let msg = format!(" {body}");
    format!(
        r#"{{"v":1,"cluster":"{cluster}","fromhost_ip":"127.0.0.1","hostname":"q-node-1","time":"2026-06-06T14:52:28+00:00","uuid":"{}","msg":{}}}"#,
        uuid(n),
        serde_json::to_string(&msg).unwrap()
    )
}

/// Event `n` of `cluster`; even `n` a CSV body, odd `n` a JSON body.
pub fn envelope(cluster: &str, n: u64) -> String {
    let shape = if n % 2 == 0 { Shape::Csv } else { Shape::Json };
    envelope_with(cluster, n, &sender::body(shape, n))
}

/// `BIN omprog --config cfg`, handshake read, confirm timeout [`T`].
pub fn start(cfg: &Path) -> OmprogDriver {
    let mut p = OmprogDriver::start(BIN, &["omprog".as_ref(), "--config".as_ref(), cfg.as_os_str()]);
    p.set_confirm_timeout(T);
    p
}

/// Closes stdin, waits for the exit, returns stderr (the stats line is its last line).
pub fn finish(mut p: OmprogDriver) -> String {
    p.close_stdin();
    assert!(p.wait_exit(T).success(), "{}", p.diagnostics());
    p.stderr_text()
}

/// `key=` of the last stats line in `stderr`.
pub fn stat(stderr: &str, key: &str) -> u64 {
    let line = stderr.lines().rev().find(|l| l.contains("stats: ")).unwrap_or_else(|| panic!("no stats line:\n{stderr}"));
    let v = line.split_whitespace().find_map(|f| f.strip_prefix(&format!("{key}="))).unwrap_or_else(|| panic!("no {key} in {line}"));
    v.parse().unwrap_or_else(|e| panic!("{key}={v}: {e}"))
}

/// `key=` summed over every program instance in an omprog `output=` log: the last (largest)
/// figure of each pid's stats lines (they come once a second, so wait for the one you need).
pub fn stat_of_all_instances(log: &Path, key: &str) -> u64 {
    let mut per_pid = BTreeMap::<String, u64>::new();
    for l in log_lines_with(log, "stats: ") {
        let pid = l.split("qumulo-audit-broker[").nth(1).and_then(|p| p.split(']').next()).unwrap_or("").to_string();
        if let Some(v) = l.split_whitespace().find_map(|f| f.strip_prefix(&format!("{key}="))?.parse::<u64>().ok()) {
            let e = per_pid.entry(pid).or_default();
            *e = (*e).max(v);
        }
    }
    per_pid.values().sum()
}

/// Waits until [`stat_of_all_instances`] reaches `at_least` (or 20 s passed); returns it.
pub fn wait_stat_of_all_instances(log: &Path, key: &str, at_least: u64) -> u64 {
    let t0 = Instant::now();
    while stat_of_all_instances(log, key) < at_least && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(250));
    }
    stat_of_all_instances(log, key)
}

/// Waits until the feeder sent `n` lines (or finished).
pub fn wait_sent(f: &Feeder, n: usize) {
    let t0 = Instant::now();
    while f.sent() < n && !f.is_done() {
        assert!(t0.elapsed() < Duration::from_secs(60), "feeder stalled at {} lines", f.sent());
        std::thread::sleep(Duration::from_millis(10));
    }
}
