//! `qumulo-audit-broker status`: per destination, what its programs did and what waits.
//!
//! Sources, all read-only:
//! * the per-instance state files ([`crate::state`]): counters summed over every instance,
//!   running or exited, and the delivery health (last error, when, whether it cleared);
//! * the journals (`*.jnl` in the journal directory): lines accepted and not delivered yet
//!   (a journal's header holds the length of its undelivered lines; a delivered transaction
//!   sets it to zero, so an empty-but-present journal counts 0);
//! * rsyslog's impstats file (rendered by `apply`): the destination action queue's size and its
//!   disk part (`"qab-NAME queue"` and `"... queue[DA]"`), last record per object; and the
//!   queues of the broker's rulesets (every `core.queue` object named `qab_...`: the clusters'
//!   `qab_cluster_NAME` and `qab_port_PORT`, and hand-written ones named so), which sit in front
//!   of the destinations' queues.
//!
//! A destination is *failing* when a running instance's last attempt failed, or the latest
//! error of any instance is newer than every delivery; it is *stuck* when it is failing, or it
//! has a backlog and delivered nothing for [`STUCK_SECS`]; it is *losing* when rsyslog discarded
//! messages of its queue (impstats `discarded.full` and `discarded.nf` of the queue and its disk
//! part, counted since rsyslogd started: a full queue, docs/packaging.md). A ruleset queue that
//! discarded messages is *losing* too: those messages never reached any destination. Exit
//! status: 0 all clean, 1 something failing, stuck or losing, 2 the configuration cannot be read. `--prometheus FILE` writes the same
//! figures in the node_exporter textfile collector format (written to `FILE.tmp`, renamed).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::state::{is_live, read_dir, InstanceState};
use crate::stats::unix_now;

/// A backlog with no delivery for this long is stuck.
pub const STUCK_SECS: u64 = 300;

/// One destination to report on.
pub struct Target {
    pub name: String,
    pub config: Config,
}

/// What `status` found for one destination.
#[derive(Debug, Default, Clone)]
pub struct DestinationStatus {
    pub name: String,
    pub kind: String,
    pub totals: InstanceState,
    pub running: usize,
    pub exited: usize,
    pub journal_lines: u64,
    pub journal_files: usize,
    /// From impstats: (queue size, disk-assisted part); `None` without impstats data.
    pub queue: Option<(u64, u64)>,
    /// From impstats: messages rsyslog discarded from this destination's queue since it started.
    pub discarded: Option<u64>,
    pub failing: bool,
    pub stuck: bool,
}

impl DestinationStatus {
    pub fn backlog(&self) -> u64 {
        self.journal_lines + self.queue.map_or(0, |(q, d)| q + d)
    }

    /// rsyslog discarded messages meant for this destination.
    pub fn losing(&self) -> bool {
        self.discarded.is_some_and(|n| n > 0)
    }

    /// Something an operator must look at (exit status 1).
    pub fn is_bad(&self) -> bool {
        self.stuck || self.losing()
    }
}

/// A queue of one of the broker's rulesets (a cluster's), from impstats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesetQueue {
    /// The ruleset's name, which is the queue's name in impstats.
    pub name: String,
    pub size: u64,
    /// `discarded.full` + `discarded.nf` since rsyslogd started.
    pub discarded: u64,
}

impl RulesetQueue {
    pub fn losing(&self) -> bool {
        self.discarded > 0
    }
}

/// Everything `status` reports.
#[derive(Debug, Default, Clone)]
pub struct Status {
    pub destinations: Vec<DestinationStatus>,
    pub ruleset_queues: Vec<RulesetQueue>,
}

impl Status {
    /// Something an operator must look at (exit status 1).
    pub fn is_bad(&self) -> bool {
        self.destinations.iter().any(DestinationStatus::is_bad) || self.ruleset_queues.iter().any(RulesetQueue::losing)
    }
}

/// Gathers the status of `targets`; `impstats` is rsyslog's impstats file (if any).
pub fn gather(targets: &[Target], impstats: Option<&Path>) -> Vec<DestinationStatus> {
    let queues = impstats.map(read_impstats).unwrap_or_default();
    targets.iter().map(|t| one(t, &queues)).collect()
}

/// [`gather`], and the broker's ruleset queues from the same impstats file.
pub fn collect(targets: &[Target], impstats: Option<&Path>) -> Status {
    let records = impstats.map(read_impstats).unwrap_or_default();
    Status { destinations: targets.iter().map(|t| one(t, &records)).collect(), ruleset_queues: ruleset_queues(&records) }
}

/// The `core.queue` objects named `qab_...`: the broker's ruleset queues. (A destination's
/// action queue is `qab-NAME queue`, with a hyphen, and a ruleset without a queue of its own has
/// no record.)
fn ruleset_queues(records: &BTreeMap<String, serde_json::Value>) -> Vec<RulesetQueue> {
    let num = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
    records
        .iter()
        .filter(|(name, v)| name.starts_with("qab_") && v.get("origin").and_then(|o| o.as_str()) == Some("core.queue"))
        .map(|(name, v)| RulesetQueue { name: name.clone(), size: num(v, "size"), discarded: num(v, "discarded.full") + num(v, "discarded.nf") })
        .collect()
}

fn one(t: &Target, queues: &BTreeMap<String, serde_json::Value>) -> DestinationStatus {
    let mut s = DestinationStatus { name: t.name.clone(), kind: t.config.kind().to_string(), ..Default::default() };
    let mut live_failing = false;
    let mut latest_error: Option<(u64, bool)> = None; // (time, cleared by that instance)
    if let Some(dir) = t.config.state_dir() {
        for (_, st) in read_dir(&dir) {
            if is_live(&st) {
                s.running += 1;
                live_failing |= st.last_error_at.is_some() && st.error_cleared_at.is_none();
            } else {
                s.exited += 1;
            }
            if let Some(at) = st.last_error_at {
                if latest_error.map_or(true, |(t, _)| at >= t) {
                    latest_error = Some((at, st.error_cleared_at.is_some()));
                }
            }
            s.totals.add(&st);
        }
    }
    s.totals.destination = t.name.clone();
    let last_delivery = s.totals.last_delivery_at.unwrap_or(0);
    let dead_failing = latest_error.is_some_and(|(at, cleared)| !cleared && at > last_delivery);
    s.failing = live_failing || dead_failing;
    if t.config.journal.enabled {
        let (lines, files) = journal_backlog(&t.config.journal_dir());
        s.journal_lines = lines;
        s.journal_files = files;
    }
    let action = crate::broker::render::action_of(&t.name);
    let size = |name: String| queues.get(&name).and_then(|v| v.get("size")).and_then(|x| x.as_u64());
    if let Some(q) = size(format!("{action} queue")) {
        s.queue = Some((q, size(format!("{action} queue[DA]")).unwrap_or(0)));
        let counter = |name: &str, field: &str| queues.get(name).and_then(|v| v.get(field)).and_then(|x| x.as_u64()).unwrap_or(0);
        let discarded = [format!("{action} queue"), format!("{action} queue[DA]")]
            .iter()
            .map(|n| counter(n, "discarded.full") + counter(n, "discarded.nf"))
            .sum();
        s.discarded = Some(discarded);
    }
    let quiet = unix_now().saturating_sub(s.totals.last_delivery_at.unwrap_or(s.totals.updated));
    s.stuck = s.failing || (s.backlog() > 0 && quiet > STUCK_SECS);
    s
}

/// Undelivered lines in the journals of a directory, and the number of journal files.
pub fn journal_backlog(dir: &Path) -> (u64, usize) {
    let mut lines = 0;
    let mut files = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.path().extension().and_then(|x| x.to_str()) == Some("jnl") {
                files += 1;
                if let Ok(data) = std::fs::read(e.path()) {
                    lines += crate::journal::journal_lines(data).iter().filter(|&&b| b == b'\n').count() as u64;
                }
            }
        }
    }
    (lines, files)
}

/// The last impstats record of each object (by `name`), from the file's last 1 MiB.
fn read_impstats(path: &Path) -> BTreeMap<String, serde_json::Value> {
    use std::io::{Read, Seek, SeekFrom};
    let mut out = BTreeMap::new();
    let Ok(mut f) = std::fs::File::open(path) else { return out };
    let len = f.metadata().map_or(0, |m| m.len());
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(1 << 20)));
    let mut text = String::new();
    let _ = f.take(1 << 20).read_to_string(&mut text);
    for line in text.lines() {
        let Some(start) = line.find('{') else { continue };
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line[start..]) {
            if let Some(name) = v.get("name").and_then(|n| n.as_str()) {
                out.insert(name.to_string(), v);
            }
        }
    }
    out
}

/// `2026-12-02T15:01:02Z`.
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let (y, m, d) = crate::time::civil_from_days(days);
    let r = secs % 86_400;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", r / 3600, r / 60 % 60, r % 60)
}

/// The human report.
pub fn report(st: &Status, impstats: Option<&Path>) -> String {
    let all = &st.destinations;
    let mut o = String::new();
    for s in all {
        let state = if s.losing() {
            "LOSING"
        } else if s.failing {
            "FAILING"
        } else if s.stuck {
            "STUCK"
        } else if s.backlog() > 0 {
            "delivering (backlog)"
        } else {
            "ok"
        };
        let t = &s.totals;
        let _ = writeln!(o, "destination {} ({}): {state}", s.name, s.kind);
        let _ = writeln!(
            o,
            "  events: in {}, delivered {}, dead-lettered {}, retried {}, parse errors {}, filtered {} ({} instances: {} running, {} exited)",
            t.lines_in, t.delivered, t.dead_lettered, t.retries, t.parse_errors, t.filtered, s.running + s.exited, s.running, s.exited
        );
        let queue = match s.queue {
            Some((q, d)) => format!("rsyslog queue {q} (on disk {d})"),
            None => "rsyslog queue unknown (no impstats record)".into(),
        };
        let _ = writeln!(o, "  backlog: {}: {queue}, journals {} undelivered lines in {} files", s.backlog(), s.journal_lines, s.journal_files);
        if let Some(n) = s.discarded.filter(|&n| n > 0) {
            let _ = writeln!(
                o,
                "  rsyslog discarded {n} messages of this destination's queue since it started (a full queue: queue.maxDiskSpace reached, or queue.size without room to spill; docs/packaging.md, queue sizes)"
            );
        }
        match (&t.last_error, t.last_error_at) {
            (Some(e), Some(at)) => {
                let cleared = if s.failing {
                    "not cleared".to_string()
                } else {
                    format!("cleared by {}", utc(t.error_cleared_at.or(t.last_delivery_at).unwrap_or(at)))
                };
                let _ = writeln!(o, "  last error: {} at {}, {cleared}", e, utc(at));
            }
            _ => {
                let _ = writeln!(o, "  last error: none");
            }
        }
        if let Some(at) = t.last_delivery_at {
            let _ = writeln!(o, "  last delivery: {}", utc(at));
        }
    }
    for q in &st.ruleset_queues {
        if q.losing() {
            let _ = writeln!(
                o,
                "ruleset queue {}: LOSING: {} waiting; rsyslog discarded {} messages of it since it started, before any destination saw them (full for longer than queue.timeoutEnqueue: the destinations' queues took nothing; docs/packaging.md, queue sizes)",
                q.name, q.size, q.discarded
            );
        } else {
            let _ = writeln!(o, "ruleset queue {}: {} waiting, none discarded", q.name, q.size);
        }
    }
    if let Some(p) = impstats {
        match std::fs::metadata(p).and_then(|m| m.modified()) {
            Ok(m) => {
                let age = m.elapsed().map_or(0, |d| d.as_secs());
                let _ = writeln!(o, "rsyslog impstats: {} (last written {age} s ago)", p.display());
            }
            Err(_) => {
                let _ = writeln!(o, "rsyslog impstats: {} not found (is rsyslog running the applied configuration?)", p.display());
            }
        }
    }
    let bad: Vec<&str> = all.iter().filter(|s| s.is_bad()).map(|s| s.name.as_str()).collect();
    if bad.is_empty() {
        let _ = writeln!(o, "status: ok ({} destinations)", all.len());
    } else {
        let _ = writeln!(o, "status: {} of {} destinations failing, stuck or losing: {}", bad.len(), all.len(), bad.join(", "));
    }
    let losing: Vec<&str> = st.ruleset_queues.iter().filter(|q| q.losing()).map(|q| q.name.as_str()).collect();
    if !losing.is_empty() {
        let _ = writeln!(o, "status: {} ruleset queue(s) losing: {}", losing.len(), losing.join(", "));
    }
    o
}

/// The Prometheus text exposition (node_exporter textfile collector).
pub fn prometheus(st: &Status) -> String {
    let all = &st.destinations;
    type Get = fn(&DestinationStatus) -> Option<u64>;
    let metrics: &[(&str, &str, &str, Get)] = &[
        ("qab_lines_in_total", "counter", "Lines received by the destination's programs", |s| Some(s.totals.lines_in)),
        ("qab_events_delivered_total", "counter", "Events the destination accepted", |s| Some(s.totals.delivered)),
        ("qab_events_dead_lettered_total", "counter", "Events written to the dead-letter file", |s| Some(s.totals.dead_lettered)),
        ("qab_delivery_retries_total", "counter", "Failed delivery attempts that were retried", |s| Some(s.totals.retries)),
        ("qab_parse_errors_total", "counter", "Lines that were not Qumulo audit events", |s| Some(s.totals.parse_errors)),
        ("qab_events_filtered_total", "counter", "Events dropped by [filter]", |s| Some(s.totals.filtered)),
        ("qab_journal_undelivered_lines", "gauge", "Accepted lines not yet delivered, in the journals", |s| Some(s.journal_lines)),
        ("qab_rsyslog_queue_size", "gauge", "Messages in the destination's rsyslog action queue", |s| s.queue.map(|q| q.0)),
        ("qab_rsyslog_queue_disk_size", "gauge", "Messages in the disk part of that queue", |s| s.queue.map(|q| q.1)),
        ("qab_rsyslog_queue_discarded_total", "counter", "Messages rsyslog discarded from that queue since rsyslogd started", |s| s.discarded),
        ("qab_destination_failing", "gauge", "1 while deliveries fail", |s| Some(s.failing as u64)),
        ("qab_destination_stuck", "gauge", "1 when failing or a backlog has not moved for 300 s", |s| Some(s.stuck as u64)),
        ("qab_instances_running", "gauge", "Running programs of the destination", |s| Some(s.running as u64)),
        ("qab_last_error_timestamp_seconds", "gauge", "Time of the last delivery error", |s| s.totals.last_error_at),
        ("qab_last_delivery_timestamp_seconds", "gauge", "Time of the last delivery", |s| s.totals.last_delivery_at),
    ];
    let mut o = String::new();
    for (name, kind, help, get) in metrics {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for s in all {
            if let Some(v) = get(s) {
                let _ = writeln!(o, "{name}{{destination=\"{}\"}} {v}", s.name);
            }
        }
    }
    type GetQ = fn(&RulesetQueue) -> u64;
    let queue_metrics: &[(&str, &str, &str, GetQ)] = &[
        ("qab_rsyslog_ruleset_queue_size", "gauge", "Messages in a broker ruleset's rsyslog queue (a cluster's)", |q| q.size),
        ("qab_rsyslog_ruleset_queue_discarded_total", "counter", "Messages rsyslog discarded from that queue since rsyslogd started", |q| q.discarded),
    ];
    for (name, kind, help, get) in queue_metrics {
        if st.ruleset_queues.is_empty() {
            break;
        }
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for q in &st.ruleset_queues {
            let _ = writeln!(o, "{name}{{queue=\"{}\"}} {}", q.name, get(q));
        }
    }
    o
}

/// Writes `text` to `path` atomically (the collector never reads half a file).
pub fn write_textfile(path: &Path, text: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An impstats record as rsyslog 8.2302 writes it (a time prefix, one JSON object per line).
    fn rec(name: &str, size: u64, full: u64) -> String {
        format!("Thu Dec  3 05:01:45 2026: {{ \"name\": \"{name}\", \"origin\": \"core.queue\", \"size\": {size}, \"enqueued\": 10030, \"full\": 30, \"discarded.full\": {full}, \"discarded.nf\": 0, \"maxqsize\": 10000 }}\n")
    }

    /// The last record of each object counts.
    fn impstats(dir: &Path, queue_discarded: u64, da_discarded: u64) -> PathBuf {
        let p = dir.join("impstats.json");
        let text = rec("qab-file queue", 0, 0) + &rec("qab-file queue[DA]", 0, 0) + &rec("qab-file queue", 10000, queue_discarded) + &rec("qab-file queue[DA]", 7, da_discarded);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn target(dir: &Path) -> Target {
        let toml = format!(
            "[destination]\ntype = \"file\"\npath = \"{0}/events.ndjson\"\n[dead_letter]\npath = \"{0}/dl.ndjson\"\n[journal]\ndir = \"{0}/journal\"\n",
            dir.display()
        );
        Target { name: "file".into(), config: Config::parse(&toml).unwrap() }
    }

    /// Messages rsyslog discarded from a destination's queue (both parts) make it LOSING, exit
    /// status 1 and a Prometheus counter; none discarded is no alarm.
    #[test]
    fn discarded_messages_are_reported_as_losing() {
        let dir = tempfile::tempdir().unwrap();
        let t = target(dir.path());
        let st = collect(std::slice::from_ref(&t), Some(&impstats(dir.path(), 29, 3)));
        let all = &st.destinations;
        assert_eq!((all[0].queue, all[0].discarded), (Some((10000, 7)), Some(32)));
        assert!(all[0].losing() && all[0].is_bad() && st.is_bad());
        let text = report(&st, None);
        assert!(text.contains("destination file (file): LOSING") && text.contains("rsyslog discarded 32 messages"), "{text}");
        assert!(text.contains("status: 1 of 1 destinations failing, stuck or losing: file"), "{text}");
        assert!(prometheus(&st).contains("qab_rsyslog_queue_discarded_total{destination=\"file\"} 32"));

        let st = collect(std::slice::from_ref(&t), Some(&impstats(dir.path(), 0, 0)));
        assert_eq!(st.destinations[0].discarded, Some(0));
        assert!(!st.destinations[0].losing());
        let text = report(&st, None);
        assert!(!text.contains("LOSING") && !text.contains("discarded"), "{text}");
    }

    /// A cluster's ruleset queue that discarded messages (they never reached a destination) is
    /// reported as LOSING with exit status 1 and its own Prometheus counter; the destination
    /// queues' records, rsyslog's main queue and other objects are not ruleset queues.
    #[test]
    fn discarding_cluster_queues_are_reported_as_losing() {
        let dir = tempfile::tempdir().unwrap();
        let t = target(dir.path());
        let p = dir.path().join("impstats.json");
        let other = "Thu Dec  3 05:01:45 2026: { \"name\": \"qab-prod(10514)\", \"origin\": \"imtcp\", \"submitted\": 9 }\n";
        let write = |prod: u64| {
            let text = rec("qab-file queue", 0, 0) + &rec("qab-file queue[DA]", 0, 0) + &rec("main Q", 0, 5) + other
                + &rec("qab_cluster_prod", 50000, 0) + &rec("qab_port_514", 3, 0) + &rec("qab_cluster_prod", 49990, prod);
            std::fs::write(&p, text).unwrap();
        };
        write(41);
        let st = collect(std::slice::from_ref(&t), Some(&p));
        assert_eq!(
            st.ruleset_queues,
            [("qab_cluster_prod", 49990, 41), ("qab_port_514", 3, 0)].map(|(n, size, discarded)| RulesetQueue { name: n.into(), size, discarded })
        );
        assert!(!st.destinations[0].is_bad() && st.is_bad(), "the destination is fine, the cluster's queue is not");
        let text = report(&st, None);
        assert!(text.contains("ruleset queue qab_cluster_prod: LOSING: 49990 waiting; rsyslog discarded 41 messages"), "{text}");
        assert!(text.contains("ruleset queue qab_port_514: 3 waiting, none discarded"), "{text}");
        assert!(text.contains("status: 1 ruleset queue(s) losing: qab_cluster_prod"), "{text}");
        let prom = prometheus(&st);
        assert!(prom.contains("qab_rsyslog_ruleset_queue_discarded_total{queue=\"qab_cluster_prod\"} 41"), "{prom}");
        assert!(prom.contains("qab_rsyslog_ruleset_queue_size{queue=\"qab_port_514\"} 3"), "{prom}");
        assert!(!prom.contains("main Q") && !text.contains("main Q"), "{text}");

        write(0);
        let st = collect(std::slice::from_ref(&t), Some(&p));
        assert!(!st.is_bad());
        assert!(!report(&st, None).contains("LOSING"));
    }
}
