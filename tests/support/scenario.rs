//! Building blocks of the zero-loss scenarios (`tests/reliability.rs`): the shipped rsyslog
//! omprog action around our binary, destination configs, a paced sender on one TCP connection,
//! the omprog children of a running rsyslogd (to SIGKILL them), program starts counted from the
//! omprog `output=` log, rsyslog's impstats queue figures, the dead-letter file, and the one
//! result line every scenario prints.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufWriter, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::config::ConfigToml;
use super::sender::Tally;

/// Our binary, as cargo built it for this test run.
pub const BROKER: &str = env!("CARGO_BIN_EXE_qumulo-audit-broker");

/// The envelope template as the package ships it (packaging/rsyslog/qumulo-audit-broker.conf:
/// `qab_envelope_v3`, version 3: tab-separated, the message raw, the event id from `%uuid%`).
pub fn envelope_template() -> String {
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/rsyslog/qumulo-audit-broker.conf")).unwrap();
    let start = shipped.find("template(name=\"qab_envelope_v3\"").expect("the shipped template");
    let end = start + shipped[start..].find(")\n").expect("its end") + 1;
    shipped[start..end].to_string()
}

/// The first statement of `qab_deliver` here: makes the message's uuid (the event id) once, in
/// the thread that hands it to the actions' queues, so that every destination and every retry
/// renders the same envelope line and so the same event id. The shipped files make it at the
/// top of each destination's ruleset, which runs in that same thread (rsyslog.d/20-dest-file.conf).
/// Made lazily by the action workers instead, two workers rendering one message at once could
/// read a half-written uuid buffer (rsyslog 8.2302): 4 to 5 % garbage in a measurement with two
/// omfile actions and 200,000 messages.
pub const UUID_ONCE: &str = "  if $uuid == \"\" then { set $.qab_no_uuid = \"1\"; } # made once, before the action queues\n";

/// One omprog action as the README ships it (transactions, confirmations, endless retries, its
/// own disk-assisted LinkedList queue with two workers), with the knobs the scenarios turn.
#[derive(Debug, Clone)]
pub struct Action {
    /// Action name; also the queue file name and `<name>.log` (the omprog `output=` file).
    pub name: String,
    /// The destination TOML passed to `--config`.
    pub config: PathBuf,
    /// Where omprog writes the program's stderr.
    pub output: PathBuf,
    pub confirm_timeout_ms: u64,
    pub resume_interval_s: u64,
    /// `queue.size` (1,000,000: a scenario's events stay in memory); the low watermark is a fifth.
    pub queue_size: u64,
    /// `queue.dequeueBatchSize`: the largest transaction.
    pub dequeue_batch: u64,
    /// `queue.highWatermark` (None: 80 % of `queue_size`).
    pub high_watermark: Option<u64>,
}

impl Action {
    /// `name` with config `config`, logging to `log_dir/<name>.log`; confirmTimeout 30 s and
    /// resumeInterval 1 s.
    pub fn new(name: &str, config: &Path, log_dir: &Path) -> Action {
        Action {
            name: name.to_string(),
            config: config.to_path_buf(),
            output: log_dir.join(format!("{name}.log")),
            confirm_timeout_ms: 30_000,
            resume_interval_s: 1,
            queue_size: 1_000_000,
            dequeue_batch: 1024,
            high_watermark: None,
        }
    }

    /// A smaller in-memory queue, which spills to disk past its high watermark (80 % of `n`
    /// unless [`Action::high_watermark`] says otherwise; docs/packaging.md, queue sizes).
    pub fn queue_size(mut self, n: u64) -> Action {
        self.queue_size = n;
        self
    }

    pub fn dequeue_batch(mut self, n: u64) -> Action {
        self.dequeue_batch = n;
        self
    }

    pub fn high_watermark(mut self, n: u64) -> Action {
        self.high_watermark = Some(n);
        self
    }

    pub fn confirm_timeout_ms(mut self, ms: u64) -> Action {
        self.confirm_timeout_ms = ms;
        self
    }

    /// The RainerScript `action(...)` statement.
    pub fn render(&self) -> String {
        format!(
            r#"action(type="omprog" name="{name}"
       binary="{bin} omprog --config {config}"
       template="qab_envelope_v3" output="{output}"
       confirmMessages="on" useTransactions="on" confirmTimeout="{ct}"
       signalOnClose="on" closeTimeout="10000" hup.signal="HUP"
       action.resumeRetryCount="-1" action.resumeInterval="{ri}"
       queue.type="LinkedList" queue.filename="{name}" queue.saveOnShutdown="on"
       queue.size="{qs}" queue.highWatermark="{high}" queue.lowWatermark="{low}"
       queue.maxDiskSpace="1g" queue.dequeueBatchSize="{batch}"
       queue.workerThreads="2" queue.workerThreadMinimumMessages="1000")"#,
            name = self.name,
            bin = BROKER,
            config = self.config.display(),
            output = self.output.display(),
            ct = self.confirm_timeout_ms,
            ri = self.resume_interval_s,
            qs = self.queue_size,
            batch = self.dequeue_batch,
            high = self.high_watermark.unwrap_or(self.queue_size * 4 / 5),
            low = self.queue_size / 5,
        )
    }
}

/// The rsyslog body for [`super::rsyslog::Rsyslogd::builder`]: omprog, the envelope template,
/// one ruleset per `(ruleset, cluster)` that sets `$.cluster` and calls `qab_deliver`, and
/// `qab_deliver` holding `actions`. `extra` is appended (e.g. [`impstats`], more inputs).
pub fn rsyslog_body(clusters: &[(&str, &str)], actions: &[Action], extra: &str) -> String {
    let mut b = String::new();
    b.push_str("module(load=\"omprog\")\n");
    b.push_str(&envelope_template());
    b.push('\n');
    for (ruleset, cluster) in clusters {
        b.push_str(&format!("ruleset(name=\"{ruleset}\") {{ set $.cluster = \"{cluster}\"; call qab_deliver }}\n"));
    }
    b.push_str("ruleset(name=\"qab_deliver\") {\n");
    b.push_str(UUID_ONCE);
    for a in actions {
        b.push_str("  ");
        b.push_str(&a.render());
        b.push('\n');
    }
    b.push_str("}\n");
    b.push_str(extra);
    b
}

/// Bytes of the queue files of action `name` in rsyslogd's work directory (its disk part).
pub fn queue_bytes_on_disk(work_dir: &Path, name: &str) -> u64 {
    fs::read_dir(work_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(name))
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// impstats every second, JSON, into `path` (queue sizes: see [`queue_stat`]).
pub fn impstats(path: &Path) -> String {
    format!(
        "module(load=\"impstats\" interval=\"1\" format=\"json\" log.syslog=\"off\" log.file=\"{}\" resetCounters=\"off\")\n",
        path.display()
    )
}

/// The last value of `field` impstats reported for the object called `name` (an action queue
/// is `"<action name> queue"`).
pub fn queue_stat(path: &Path, name: &str, field: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    let mut last = None;
    for line in text.lines() {
        let Some(start) = line.find('{') else { continue };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line[start..]) else { continue };
        if v.get("name").and_then(|n| n.as_str()) == Some(name) {
            if let Some(x) = v.get(field).and_then(|x| x.as_u64()) {
                last = Some(x);
            }
        }
    }
    last
}

/// Writes a destination config (`text` is the whole TOML) with mode 0600 and returns its path.
pub fn write_config(path: &Path, text: &str) -> PathBuf {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    f.write_all(text.as_bytes()).expect("write config");
    path.to_path_buf()
}

/// `cfg` with the common sections of every scenario's destination config: journal (on or off),
/// dead-letter file, quick retries (so a recovered destination is noticed within a second),
/// stats every second.
pub fn with_common(cfg: ConfigToml, dir: &Path, journal: bool) -> ConfigToml {
    cfg.journal_dir(&dir.join("journal"))
        .journal_enabled(journal)
        .dead_letter(&dir.join("dead-letter.ndjson"))
        .backoff_ms(100, 1000)
        .stats_secs(1)
}

/// How fast a [`Feeder`] sends.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// As fast as the receiver takes them.
    Full,
    /// About this many lines per second, in slices every 50 ms.
    PerSecond(u32),
}

/// Sends lines (arbitrary bytes, no `\n` inside) on ONE TCP connection from a background
/// thread, each followed by `\n`.
pub struct Feeder {
    sent: Arc<AtomicUsize>,
    handle: Option<JoinHandle<usize>>,
    total: usize,
}

impl Feeder {
    pub fn start(addr: SocketAddr, lines: Vec<Vec<u8>>, pace: Pace) -> Feeder {
        let sent = Arc::new(AtomicUsize::new(0));
        let total = lines.len();
        let s2 = sent.clone();
        let handle = std::thread::Builder::new()
            .name("feeder".into())
            .spawn(move || {
                let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
                    .unwrap_or_else(|e| panic!("feeder: cannot connect to {addr}: {e}"));
                stream.set_write_timeout(Some(Duration::from_secs(60))).expect("set write timeout");
                let mut w = BufWriter::with_capacity(256 * 1024, &stream);
                let slice = match pace {
                    Pace::Full => usize::MAX,
                    Pace::PerSecond(r) => ((r as usize) / 20).max(1),
                };
                let start = Instant::now();
                let mut n = 0usize;
                for chunk in lines.chunks(slice.min(lines.len().max(1))) {
                    for l in chunk {
                        w.write_all(l).and_then(|_| w.write_all(b"\n")).unwrap_or_else(|e| panic!("feeder: write to {addr} failed after {n} lines: {e}"));
                        n += 1;
                    }
                    w.flush().unwrap_or_else(|e| panic!("feeder: flush to {addr} failed after {n} lines: {e}"));
                    s2.store(n, Ordering::SeqCst);
                    if let Pace::PerSecond(r) = pace {
                        let due = start + Duration::from_secs_f64(n as f64 / r as f64);
                        let now = Instant::now();
                        if due > now {
                            std::thread::sleep(due - now);
                        }
                    }
                }
                w.flush().expect("feeder flush");
                drop(w);
                let _ = stream.shutdown(std::net::Shutdown::Write);
                n
            })
            .expect("spawn feeder");
        Feeder { sent, handle: Some(handle), total }
    }

    /// Lines written so far.
    pub fn sent(&self) -> usize {
        self.sent.load(Ordering::SeqCst)
    }

    pub fn total(&self) -> usize {
        self.total
    }

    pub fn is_done(&self) -> bool {
        !self.handle.as_ref().is_some_and(|h| !h.is_finished())
    }

    /// Waits for the last line to be written; returns the count.
    pub fn join(mut self) -> usize {
        match self.handle.take().expect("joined once").join() {
            Ok(n) => n,
            Err(e) => std::panic::resume_unwind(e),
        }
    }
}

/// Numbered good lines `range` as bytes (CSV and JSON bodies alternating).
pub fn good_lines(range: std::ops::Range<u64>) -> Vec<Vec<u8>> {
    use super::sender::{qumulo_line, Shape};
    range.map(|n| qumulo_line(if n % 2 == 0 { Shape::Csv } else { Shape::Json }, n).into_bytes()).collect()
}

// ---------------------------------------------------------------- processes

/// Direct children of `pid` (all its threads' children).
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { return out };
    for t in tasks.flatten() {
        if let Ok(text) = fs::read_to_string(t.path().join("children")) {
            out.extend(text.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The running `qumulo-audit-broker omprog` children of rsyslogd `pid` (zombies excluded).
pub fn broker_children(pid: u32) -> Vec<u32> {
    children_of(pid)
        .into_iter()
        .filter(|c| {
            let cmd = fs::read(format!("/proc/{c}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            cmd.contains("qumulo-audit-broker") && cmd.contains("omprog") && is_alive(*c)
        })
        .collect()
}

/// True if `pid` exists and is not a zombie.
pub fn is_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

pub fn sigkill(pid: u32) {
    // SAFETY: kill(2) on a pid we just found among rsyslogd's children.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
}

/// Read syscalls made so far by the main thread of `pid` (the protocol thread: it reads only
/// stdin), from `/proc/<pid>/task/<pid>/io`.
pub fn main_thread_reads(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/task/{pid}/io")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("syscr:")).and_then(|v| v.trim().parse().ok())
}

/// Where the main thread of `pid` sleeps in the kernel (`/proc/<pid>/task/<pid>/wchan`), e.g.
/// `anon_pipe_read` (or `pipe_read`) while it waits for its next line on stdin, `futex_...`
/// while it waits for the delivery stage.
pub fn main_thread_wchan(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/wchan")).unwrap_or_default()
}

/// Watches `pids` for up to `within`; returns the first one caught in the middle of a
/// transaction as seen from outside: its protocol thread read at least 8 lines in the last
/// 3 ms (rsyslog is streaming a transaction's messages into it; a COMMIT and the next BEGIN are
/// only 2) and is now waiting on stdin for the next one (not on the delivery stage, as in
/// COMMIT). `None` if no such moment came.
pub fn find_streaming(pids: &[u32], within: Duration) -> Option<u32> {
    let until = Instant::now() + within;
    let mut last: BTreeMap<u32, u64> = pids.iter().filter_map(|&p| main_thread_reads(p).map(|r| (p, r))).collect();
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(3));
        for &p in pids {
            let Some(now) = main_thread_reads(p) else { continue };
            if let Some(before) = last.insert(p, now) {
                if now >= before + 8 && main_thread_wchan(p).contains("pipe_read") {
                    return Some(p);
                }
            }
        }
    }
    None
}

/// Distinct program pids seen in an omprog `output=` log (`qumulo-audit-broker[<pid>]`), in
/// order of first appearance. Every start logs a `started:` line, so this counts starts.
pub fn logged_pids(log: &Path) -> Vec<u32> {
    let text = String::from_utf8_lossy(&fs::read(log).unwrap_or_default()).into_owned();
    let mut seen = BTreeSet::new();
    let mut order = Vec::new();
    for line in text.lines() {
        if let Some(i) = line.find("qumulo-audit-broker[") {
            let rest = &line[i + "qumulo-audit-broker[".len()..];
            if let Some(pid) = rest.split(']').next().and_then(|p| p.parse::<u32>().ok()) {
                if seen.insert(pid) {
                    order.push(pid);
                }
            }
        }
    }
    order
}

/// Lines of `log` containing `needle`.
pub fn log_lines_with(log: &Path, needle: &str) -> Vec<String> {
    String::from_utf8_lossy(&fs::read(log).unwrap_or_default()).lines().filter(|l| l.contains(needle)).map(str::to_owned).collect()
}

/// Lines the instances logging to `log` delivered from dead instances' journals.
pub fn adopted_lines(log: &Path) -> u64 {
    log_lines_with(log, "from the journal of a dead instance")
        .iter()
        .filter_map(|l| l.split("delivered ").nth(1)?.split(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// rsyslog's messages about restarting an omprog program (confirmTimeout expired, program died,
/// garbled reply) in its internal log.
pub fn rsyslog_restart_messages(internal_log: &str) -> Vec<String> {
    internal_log
        .lines()
        .filter(|l| l.contains("omprog") && (l.contains("will be restarted") || l.contains("did not respond") || l.contains("did not terminate")))
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------- results

/// The dead-letter file's entries.
pub fn dead_letters(path: &Path) -> Vec<serde_json::Value> {
    super::read_complete_lines(path)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("dead-letter entry is not JSON ({e}): {l}")))
        .collect()
}

/// Polls `records` until every number in `expected` arrived; panics after `timeout` with what
/// is missing and `context()`.
pub fn wait_all(
    timeout: Duration,
    expected: std::ops::Range<u64>,
    mut records: impl FnMut() -> Vec<String>,
    context: impl FnOnce() -> String,
) -> Tally {
    let start = Instant::now();
    loop {
        let t = Tally::of(records());
        if t.missing(expected.clone()).is_empty() {
            return t;
        }
        if start.elapsed() > timeout {
            let m = t.missing(expected.clone());
            panic!(
                "timed out after {timeout:?}: {} of {} events arrived, {} missing (first {:?})\n{}",
                t.distinct(),
                expected.end - expected.start,
                m.len(),
                &m[..m.len().min(20)],
                context()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Polls `records` until every number in `expected` arrived, or nothing new arrived for
/// `quiet` (then returns what is there), or `timeout` passed.
pub fn wait_settled(timeout: Duration, quiet: Duration, expected: std::ops::Range<u64>, mut records: impl FnMut() -> Vec<String>) -> Tally {
    let start = Instant::now();
    let mut last_len = usize::MAX;
    let mut since = Instant::now();
    loop {
        let r = records();
        let t = Tally::of(&r);
        if t.missing(expected.clone()).is_empty() || start.elapsed() > timeout {
            return t;
        }
        if r.len() != last_len {
            last_len = r.len();
            since = Instant::now();
        } else if since.elapsed() > quiet {
            return t;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The figures of one scenario.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub scenario: String,
    /// Lines sent (good events plus any malformed lines).
    pub sent: u64,
    /// Distinct good events that arrived.
    pub delivered: u64,
    /// Arrivals beyond the first of an event (re-deliveries; for Elasticsearch the `create`s
    /// answered 409 because the document was already there).
    pub duplicates: u64,
    /// Distinct malformed lines found in the dead-letter file.
    pub dead_lettered: u64,
    /// Extra `key=value` facts appended after the required fields.
    pub extra: Vec<(String, String)>,
}

impl Outcome {
    pub fn new(scenario: &str, sent: u64, tally: &Tally, expected: std::ops::Range<u64>) -> Outcome {
        let delivered = expected.clone().filter(|n| tally.counts.contains_key(n)).count() as u64;
        let duplicates = tally.counts.values().map(|&c| c as u64 - 1).sum();
        Outcome { scenario: scenario.to_string(), sent, delivered, duplicates, dead_lettered: 0, extra: Vec::new() }
    }

    pub fn lost(&self) -> u64 {
        self.sent.saturating_sub(self.delivered + self.dead_lettered)
    }

    pub fn with(mut self, key: &str, value: impl std::fmt::Display) -> Outcome {
        self.extra.push((key.to_string(), value.to_string()));
        self
    }

    /// `reliability: scenario=<name> sent=N delivered=N duplicates=N dead_lettered=N lost=N`
    /// followed by the extra facts.
    pub fn line(&self) -> String {
        let mut s = format!(
            "reliability: scenario={} sent={} delivered={} duplicates={} dead_lettered={} lost={}",
            self.scenario,
            self.sent,
            self.delivered,
            self.duplicates,
            self.dead_lettered,
            self.lost()
        );
        for (k, v) in &self.extra {
            s.push_str(&format!(" {k}={v}"));
        }
        s
    }

    /// Prints the line (on stdout, so `--nocapture` shows it; libtest captures it otherwise).
    pub fn print(&self) {
        println!("{}", self.line());
    }
}

/// A flag a background thread can be told to stop by.
#[derive(Clone, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
