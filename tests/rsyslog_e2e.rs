//! A real rsyslogd drives the binary through omprog, configured as README's actions: the
//! envelope template of docs/event-schema.md (read from the doc itself), one imtcp input per
//! cluster with a ruleset setting `$.cluster`, and per destination one omprog action with
//! `confirmMessages="on" useTransactions="on"` and its own disk-assisted LinkedList queue.
//! Numbered Qumulo lines go in over TCP (support::sender); a Tally of what reached each
//! destination checks that every event arrived. Scenarios: (a) file destination, two clusters,
//! and logrotate via rsyslog's HUP; (b) Splunk HEC and Elasticsearch bulk fan-out; (c) syslog
//! CEF into a second real rsyslogd; (d) the HTTP destination refusing connections, then
//! answering 503, during a 5,000-event send; (e) the program killed repeatedly while the
//! destination fails (rsyslog issue #2420, closed by the journal). Each prints one line per
//! destination: `scenario=<name> sent=N delivered=N duplicates=N dead_lettered=N lost=0`
//! (duplicates are counted, not failed on, where failures make rsyslog re-send).

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::config::ConfigToml;
use support::http::{MockHttp, DEFAULT_HEC_TOKEN};
use support::rsyslog::{rsyslogd_check, Rsyslogd};
use support::sender::{self, Shape, Tally};
use support::syslog_rx::{RsyslogReceiver, RxFormat};
use support::{file_text_for_panic, read_complete_lines, try_wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_qumulo-audit-broker");
/// How long a scenario may wait for its events.
const DELIVERY: Duration = Duration::from_secs(30);

/// The envelope template, exactly as docs/event-schema.md shows it.
fn envelope_template() -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/event-schema.md")).unwrap();
    let line = doc.lines().find(|l| l.starts_with("template(name=\"qab_envelope_v3\"")).expect("the template in the doc");
    line.to_string()
}

/// The doc shows the template the package ships (the same words, whatever the line breaks).
#[test]
fn the_documented_envelope_template_is_the_shipped_one() {
    let shipped = support::scenario::envelope_template();
    let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(words(&envelope_template()), words(&shipped));
}

/// The broker side of a pipeline: configs, outputs, dead-letter files and journals in a temp dir.
struct Broker {
    dir: tempfile::TempDir,
}

impl Broker {
    fn new() -> Broker {
        Broker { dir: tempfile::Builder::new().prefix("qab-e2e-").tempdir().unwrap() }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn dead(&self, name: &str) -> PathBuf {
        self.path(&format!("{name}.dead.ndjson"))
    }
    /// Writes `<name>.toml` (mode 0640): `cfg` with the dead-letter file `<name>.dead.ndjson`,
    /// the journal `<name>.journal` and stats every second.
    fn config(&self, name: &str, cfg: ConfigToml) -> PathBuf {
        let p = cfg
            .dead_letter(&self.dead(name))
            .journal_dir(&self.path(&format!("{name}.journal")))
            .stats_secs(1)
            .write(self.path(&format!("{name}.toml")));
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        p
    }
    /// A secret file, mode 0600 (so the broker has nothing to warn about).
    fn secret(&self, name: &str, text: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.path(name);
        std::fs::write(&p, format!("{text}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    }
    fn dead_count(&self, name: &str) -> usize {
        read_complete_lines(&self.dead(name)).len()
    }
    fn journals(&self, name: &str) -> Vec<(PathBuf, u64)> {
        match std::fs::read_dir(self.path(&format!("{name}.journal"))) {
            // The length of the journaled lines (the file itself is allocated ahead).
            Ok(rd) => rd
                .map(|e| e.unwrap().path())
                .map(|p| {
                    let lines = qumulo_audit_broker::journal::journal_lines(std::fs::read(&p).unwrap());
                    (p, lines.len() as u64)
                })
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// One omprog action as README ships it (paths and intervals shortened for a test).
fn omprog_action(name: &str, cfg: &Path) -> String {
    format!(
        r#"  action(type="omprog" name="qab_{name}"
         binary="{BIN} omprog --config {cfg}"
         template="qab_envelope_v3" output="{{WORKDIR}}/broker-{name}.log"
         confirmMessages="on" useTransactions="on" confirmTimeout="30000"
         signalOnClose="on" closeTimeout="5000" hup.signal="HUP"
         action.resumeRetryCount="-1" action.resumeInterval="1"
         queue.type="LinkedList" queue.filename="qab_{name}" queue.saveOnShutdown="on"
         queue.size="1000000" queue.maxDiskSpace="1g" queue.dequeueBatchSize="1024"
         queue.workerThreads="2" queue.workerThreadMinimumMessages="1000")
"#,
        cfg = cfg.display()
    )
}

/// rsyslogd wired as the shipped files: imtcp per cluster, named `qab-<cluster>` (which names
/// the cluster; `alpha` on the generated input, `beta` on a second one), each cluster's ruleset
/// calling `qab_deliver`, which calls one ruleset per action: the uuid filter, then the action.
struct Pipeline {
    rsyslogd: Rsyslogd,
    beta_port: u16,
    names: Vec<String>,
}

impl Pipeline {
    fn start(actions: &[(&str, PathBuf)]) -> Pipeline {
        let mut body = String::new();
        body.push_str("module(load=\"omprog\")\n");
        body.push_str(&envelope_template());
        body.push('\n');
        body.push_str(
            "input(type=\"imtcp\" name=\"qab-beta\" address=\"127.0.0.1\" port=\"0\" listenPortFileName=\"{WORKDIR}/beta.port\" ruleset=\"cluster_beta\")\n\
             ruleset(name=\"cluster_alpha\") { call qab_deliver }\n\
             ruleset(name=\"cluster_beta\") { call qab_deliver }\n",
        );
        body.push_str("ruleset(name=\"qab_deliver\") {\n");
        for (name, _) in actions {
            body.push_str(&format!("  call qab_dest_{name}\n"));
        }
        body.push_str("}\n");
        for (name, cfg) in actions {
            body.push_str(&format!("ruleset(name=\"qab_dest_{name}\") {{\n  if $uuid == \"\" then {{ set $.qab_no_uuid = \"1\"; }}\n"));
            body.push_str(&omprog_action(name, cfg));
            body.push_str("}\n");
        }
        let rsyslogd = Rsyslogd::builder(&body).tcp_ruleset("cluster_alpha").imtcp_input_params("name=\"qab-alpha\"").start();
        // The same config passes rsyslog's own check.
        if let Err(e) = rsyslogd_check(&rsyslogd.conf_path()) {
            panic!("rsyslogd -N1 rejects the config: {e}\n{}", rsyslogd.diagnostics());
        }
        let beta_port = rsyslogd.listen_port("beta.port", Duration::from_secs(10));
        Pipeline { rsyslogd, beta_port, names: actions.iter().map(|(n, _)| n.to_string()).collect() }
    }
    fn alpha(&self) -> std::net::SocketAddr {
        self.rsyslogd.addr()
    }
    fn beta(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.beta_port))
    }
    fn broker_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.rsyslogd.path(&format!("broker-{name}.log"))).unwrap_or_default()
    }
    /// rsyslogd's diagnostics plus every broker's log.
    fn diagnostics(&self) -> String {
        let mut s = self.rsyslogd.diagnostics();
        for n in &self.names {
            s.push_str(&format!(
                "\n---- broker {n} log:\n{}",
                file_text_for_panic(&self.rsyslogd.path(&format!("broker-{n}.log")))
            ));
        }
        s
    }
    /// Stops rsyslogd gracefully and checks the brokers: no panic, no error logged (nor a
    /// warning, when `quiet`), stats lines written, no unacknowledged journal left.
    fn stop(mut self, broker: &Broker, quiet: bool) {
        let ex = self.rsyslogd.stop();
        assert!(ex.status.success() && !ex.killed, "rsyslogd stop: {ex:?}\n{}", self.diagnostics());
        for n in &self.names {
            let log = self.broker_log(n);
            assert!(!log.contains("panicked"), "broker {n} panicked:\n{log}");
            assert!(!log.contains(" ERROR: "), "broker {n} logged an error:\n{log}");
            assert!(!quiet || !log.contains(" WARN: "), "broker {n} logged a warning:\n{log}");
            assert!(log.contains("stats: "), "broker {n} wrote stats lines:\n{log}");
            for (p, len) in broker.journals(n) {
                assert_eq!(len, 0, "broker {n} left unacknowledged lines in {}", p.display());
            }
        }
    }
}

/// Waits until `records()` holds every event of `expected` (duplicates allowed), then a moment
/// longer so late duplicates are counted too; returns the final tally. Panics with diagnostics.
fn wait_all(expected: std::ops::Range<u64>, records: impl Fn() -> Vec<String>, diag: impl Fn() -> String) -> Tally {
    let t0 = Instant::now();
    let got = try_wait_for(DELIVERY, || {
        let t = Tally::of(records());
        t.missing(expected.clone()).is_empty().then_some(())
    });
    if got.is_none() {
        let t = Tally::of(records());
        let missing = t.missing(expected.clone());
        panic!(
            "after {:?}: {} of {} events missing (first {:?}); {} distinct arrived\n{}",
            t0.elapsed(),
            missing.len(),
            expected.end - expected.start,
            &missing[..missing.len().min(20)],
            t.distinct(),
            diag()
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    Tally::of(records())
}

/// Prints the scenario line and asserts nothing was lost and nothing unexpected arrived.
fn report(name: &str, expected: std::ops::Range<u64>, t: &Tally, dead_lettered: usize) {
    let sent = expected.end - expected.start;
    let lost = t.missing(expected.clone()).len();
    let duplicates: usize = t.duplicates().iter().map(|(_, c)| c - 1).sum();
    println!(
        "scenario={name} sent={sent} delivered={} duplicates={duplicates} dead_lettered={dead_lettered} lost={lost}",
        t.distinct()
    );
    assert_eq!(lost, 0);
    let unexpected = t.unexpected(expected);
    assert!(unexpected.is_empty(), "unexpected events: {:?}", &unexpected[..unexpected.len().min(20)]);
    assert!(t.unnumbered.is_empty(), "records without an event number: {:?}", t.unnumbered.first());
}

fn is_hex32(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Checks one delivered canonical event of number `n`: cluster, id, the fields from the envelope.
fn check_event(v: &Value, n: u64, cluster: &str, format: &str) {
    assert_eq!(v["cluster"], cluster, "event {n}: {v}");
    assert!(v["id"].as_str().is_some_and(is_hex32), "event {n}: id is 32 hex digits (hashed from the envelope line): {v}");
    assert_eq!(v["node"], "q-node-1", "{v}");
    assert_eq!(v["fromhost_ip"], "127.0.0.1", "{v}");
    assert_eq!(v["path"], format!("/share/file-{n}.txt"), "{v}");
    assert_eq!(v["file_id"], n.to_string(), "{v}");
    assert_eq!(v["operation"], "fs_write_data");
    assert_eq!(v["action"], "write");
    assert_eq!(v["user"]["name"], "AD\\alice");
    assert_eq!(v["source_format"], format, "{v}");
    assert!(v["time"].as_str().is_some_and(|t| t.ends_with("-06-06T14:52:28Z")), "{v}");
}

/// Sends alpha's events (CSV) and beta's (JSON) at once, on two connections.
fn send_two_clusters(p: &Pipeline, alpha: std::ops::Range<u64>, beta: std::ops::Range<u64>) {
    let (a, b) = (p.alpha(), p.beta());
    let ta = std::thread::spawn(move || sender::send_qumulo(a, Shape::Csv, alpha));
    let tb = std::thread::spawn(move || sender::send_qumulo(b, Shape::Json, beta));
    ta.join().unwrap();
    tb.join().unwrap();
}

/// Events `split..2*split` were sent as cluster beta (JSON), all others as alpha (CSV).
fn cluster_of(n: u64, split: u64) -> (&'static str, &'static str) {
    if n >= split && n < 2 * split {
        ("beta", "json")
    } else {
        ("alpha", "csv")
    }
}

// ---------------------------------------------------------------- (a) file, two clusters

#[test]
fn a_file_destination_two_clusters() {
    let broker = Broker::new();
    let out = broker.path("events.ndjson");
    let cfg = broker.config("file", ConfigToml::file(&out).format("json"));
    let p = Pipeline::start(&[("file", cfg)]);
    const N: u64 = 3000;
    send_two_clusters(&p, 0..N, N..2 * N);
    let t = wait_all(0..2 * N, || read_complete_lines(&out), || p.diagnostics());
    t.assert_exactly_once(0..2 * N);

    // logrotate: move the file away and HUP rsyslogd, which forwards it (hup.signal); the
    // broker reopens its file and the next events land in a new one.
    let rotated = broker.path("events.ndjson.1");
    std::fs::rename(&out, &rotated).unwrap();
    p.rsyslogd.hup();
    std::thread::sleep(Duration::from_millis(500));
    sender::send_qumulo(p.alpha(), Shape::Csv, 2 * N..2 * N + 1000);
    let all = || {
        let mut l = read_complete_lines(&rotated);
        l.extend(read_complete_lines(&out));
        l
    };
    let t = wait_all(0..2 * N + 1000, all, || p.diagnostics());
    report("a-file-two-clusters", 0..2 * N + 1000, &t, broker.dead_count("file"));
    t.assert_exactly_once(0..2 * N + 1000);
    Tally::of(read_complete_lines(&rotated)).assert_exactly_once(0..2 * N);
    Tally::of(read_complete_lines(&out)).assert_exactly_once(2 * N..2 * N + 1000);

    let mut ids = HashMap::new();
    for line in all() {
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let n = sender::event_number(&line).unwrap();
        let (cluster, format) = cluster_of(n, N);
        check_event(&v, n, cluster, format);
        if let Some(other) = ids.insert(v["id"].as_str().unwrap().to_string(), n) {
            panic!("events {other} and {n} share the id {}", v["id"]);
        }
    }
    assert_eq!(ids.len() as u64, 2 * N + 1000);
    assert_eq!(broker.dead_count("file"), 0);
    p.stop(&broker, true);
}

// ---------------------------------------------------------------- (b) HEC and ES bulk, fan-out

#[test]
fn b_hec_and_elasticsearch_fan_out() {
    let broker = Broker::new();
    let hec = MockHttp::start();
    let es = MockHttp::start();
    let token = broker.secret("hec.token", DEFAULT_HEC_TOKEN);
    let hec_cfg = broker.config("hec", ConfigToml::hec(&hec.url(), &token));
    let es_cfg = broker.config("es", ConfigToml::bulk(&es.url()).format("json"));
    let p = Pipeline::start(&[("hec", hec_cfg), ("es", es_cfg)]);
    const N: u64 = 2000;
    send_two_clusters(&p, 0..N, N..2 * N);
    let diag = || format!("{}\n---- HEC mock:\n{}\n---- ES mock:\n{}", p.diagnostics(), hec.summary(), es.summary());
    let th = wait_all(0..2 * N, || hec.hec_events().iter().map(Value::to_string).collect(), diag);
    let te = wait_all(0..2 * N, || es.es_docs().iter().map(|d| d.source.to_string()).collect(), diag);
    report("b-fan-out-hec", 0..2 * N, &th, broker.dead_count("hec"));
    report("b-fan-out-es", 0..2 * N, &te, broker.dead_count("es"));
    th.assert_exactly_once(0..2 * N);
    te.assert_exactly_once(0..2 * N);
    assert_eq!(es.es_conflicts(), 0, "no replays without failures");

    // HEC: the wrapper fields; the event is the canonical event.
    let mut hec_ids = HashMap::new();
    for ev in hec.hec_events() {
        let n = sender::event_number(&ev.to_string()).unwrap();
        let (cluster, format) = cluster_of(n, N);
        check_event(&ev["event"], n, cluster, format);
        assert_eq!(ev["source"], format!("qumulo:{cluster}"));
        assert_eq!(ev["host"], "q-node-1");
        assert_eq!(ev["sourcetype"], "qumulo:audit");
        assert_eq!(ev["index"], "qumulo-audit");
        assert!(ev["time"].as_f64().is_some_and(|t| t > 1.6e9), "{ev}");
        hec_ids.insert(n, ev["event"]["id"].as_str().unwrap().to_string());
    }
    assert!(hec.requests().iter().all(|r| r.header("authorization") == Some("Splunk test-token")));
    // ES: _id is the event id, and both destinations got the same id for the same event
    // (the uuid, made by the first destination's ruleset before any action queue, is the same
    // for both).
    for doc in es.es_docs() {
        let n = sender::event_number(&doc.source.to_string()).unwrap();
        let (cluster, format) = cluster_of(n, N);
        check_event(&doc.source, n, cluster, format);
        assert_eq!(doc.source["id"], doc.id);
        assert_eq!(doc.index, "qumulo-audit");
        assert_eq!(hec_ids[&n], doc.id, "event {n}: same id at both destinations");
    }
    assert_eq!(broker.dead_count("hec") + broker.dead_count("es"), 0);
    p.stop(&broker, true);
}

// ---------------------------------------------------------------- (c) syslog CEF into a second rsyslogd

#[test]
fn c_syslog_cef_into_a_second_rsyslogd() {
    let broker = Broker::new();
    // The receiver's rsyslog parses our RFC 5424 header: APP-NAME, MSGID and the CEF message.
    let mut rx = RsyslogReceiver::start(
        RxFormat::Template("%hostname%|%app-name%|%msgid%|%syslogseverity%|%rawmsg%\n".into()),
        "",
    );
    let cfg = broker.config("cef", ConfigToml::syslog(rx.addr()).dest("protocol", "tcp").format("cef"));
    let p = Pipeline::start(&[("cef", cfg)]);
    const N: u64 = 2000;
    send_two_clusters(&p, 0..N, N..2 * N);
    let t = wait_all(0..2 * N, || rx.lines(), || format!("{}\n---- receiver:\n{}", p.diagnostics(), rx.rsyslogd.diagnostics()));
    report("c-syslog-cef", 0..2 * N, &t, broker.dead_count("cef"));
    t.assert_exactly_once(0..2 * N);
    for line in rx.wait_for_lines(2 * N as usize, DELIVERY) {
        let n = sender::event_number(&line).unwrap();
        let (cluster, _) = cluster_of(n, N);
        let parts: Vec<&str> = line.splitn(5, '|').collect();
        assert_eq!(parts[..4], ["q-node-1", "qumulo-audit", "fs_write_data", "6"], "{line}");
        let raw = parts[4];
        assert!(raw.starts_with("<110>1 "), "RFC 5424, facility 13, severity 6: {raw}");
        let cef = raw.split_once(" - fs_write_data - ").map(|(_, c)| c).unwrap_or_else(|| panic!("{raw}"));
        assert!(cef.starts_with("CEF:0|Qumulo|Qumulo Core|"), "{cef}");
        assert!(cef.contains(&format!(" filePath=/share/file-{n}.txt ")), "{cef}");
        assert!(cef.contains(&format!(" cs1={cluster} ")), "{cef}");
        let ext = cef.split_once("externalId=").map(|(_, r)| &r[..32]).unwrap_or_else(|| panic!("{cef}"));
        assert!(is_hex32(ext), "{cef}");
    }
    assert_eq!(broker.dead_count("cef"), 0);
    p.stop(&broker, true);
}

// ---------------------------------------------------------------- (d) delivery failure and recovery

#[test]
fn d_destination_down_then_back_loses_nothing() {
    let broker = Broker::new();
    let hec = MockHttp::start();
    let token = broker.secret("hec.token", DEFAULT_HEC_TOKEN);
    // Short retries so that COMMITs fail during the outage and rsyslog's retry path is used too.
    let cfg = broker.config(
        "hec",
        ConfigToml::hec(&hec.url(), &token)
            .dest("timeout_secs", 5)
            .retry("max_elapsed_secs", 2)
            .backoff_ms(100, 500)
            .retry("keepalive_ms", 500)
            .max_events(200),
    );
    let p = Pipeline::start(&[("hec", cfg)]);
    const N: u64 = 5000;
    // Paced: about 3 s for the whole send, so the outage falls in the middle of it.
    let addr = p.alpha();
    let sending = std::thread::spawn(move || {
        sender::send_lines(
            addr,
            (0..N).map(|n| {
                if n % 250 == 0 {
                    std::thread::sleep(Duration::from_millis(150));
                }
                sender::qumulo_line(Shape::Csv, n)
            }),
        )
    });
    let diag = || format!("{}\n---- HEC mock:\n{}", p.diagnostics(), hec.summary());
    hec.wait_until(DELIVERY, "the first events", |m| (!m.hec_events().is_empty()).then_some(()));
    let at_outage = hec.hec_events().len();
    hec.refuse_connections();
    std::thread::sleep(Duration::from_millis(2500));
    hec.listen_again();
    hec.fail_for(Duration::from_millis(2500), 503);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(sending.join().unwrap(), N as usize);
    let t = wait_all(0..N, || hec.hec_events().iter().map(Value::to_string).collect(), diag);
    report("d-outage-hec", 0..N, &t, broker.dead_count("hec"));
    assert!(at_outage < N as usize, "the outage began before everything was delivered ({at_outage})");
    assert!(hec.count_status(503) > 0, "the 503 phase was hit: {}", hec.summary());
    let log = p.broker_log("hec");
    assert!(log.contains("retrying"), "the broker retried:\n{log}");
    assert!(log.contains("COMMIT of transaction"), "COMMITs failed and rsyslog re-sent them:\n{log}");
    assert_eq!(broker.dead_count("hec"), 0, "an unavailable destination never dead-letters");
    for ev in hec.hec_events() {
        let n = sender::event_number(&ev.to_string()).unwrap();
        check_event(&ev["event"], n, "alpha", "csv");
    }
    p.stop(&broker, false);
}

// ---------------------------------------------------------------- (e) program killed mid-transaction

/// Pids of the broker processes our rsyslogd runs with config `cfg` (its omprog children).
fn broker_pids(rsyslogd_pid: u32, cfg: &Path) -> Vec<u32> {
    let cfg = cfg.display().to_string();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let args: Vec<String> = cmd.split(|&b| b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        if args.first().map(String::as_str) != Some(BIN) || !args.iter().any(|a| a == &cfg) {
            continue;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // pid (comm) state ppid ...
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)).and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(rsyslogd_pid) {
            pids.push(pid);
        }
    }
    pids
}

/// The sum of one counter over the last stats line of every broker process in `log`.
fn stats_sum(log: &str, key: &str) -> u64 {
    let mut last: HashMap<String, u64> = HashMap::new();
    for line in log.lines().filter(|l| l.contains(" stats: ")) {
        let pid = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let v = line.split_whitespace().find_map(|f| f.strip_prefix(&format!("{key}="))).and_then(|v| v.parse().ok());
        if let Some(v) = v {
            last.insert(pid, v);
        }
    }
    last.values().sum()
}

#[test]
fn e_program_killed_while_the_destination_fails_loses_nothing() {
    // rsyslog issue #2420: messages a dead program had answered DEFER_COMMIT are never re-sent;
    // the journal must close that window.
    let broker = Broker::new();
    let hec = MockHttp::start();
    let token = broker.secret("hec.token", DEFAULT_HEC_TOKEN);
    let cfg = broker.config(
        "hec",
        ConfigToml::hec(&hec.url(), &token).dest("timeout_secs", 5).retry("max_elapsed_secs", 2).backoff_ms(100, 500).retry("keepalive_ms", 500),
    );
    let p = Pipeline::start(&[("hec", cfg.clone())]);
    let rsyslogd_pid = p.rsyslogd.pid().unwrap();
    const N: u64 = 5000;
    hec.fail_for(Duration::from_secs(3), 503);
    let addr = p.alpha();
    let sending = std::thread::spawn(move || {
        sender::send_lines(
            addr,
            (0..N).map(|n| {
                if n % 250 == 0 {
                    std::thread::sleep(Duration::from_millis(200));
                }
                sender::qumulo_line(Shape::Csv, n)
            }),
        )
    });
    // Kill every running instance every 400 ms for 4 s: while the destination fails (deaths
    // mostly during COMMIT) and after it recovered (deaths mostly mid-transaction).
    let mut killed = 0;
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(400));
        for pid in broker_pids(rsyslogd_pid, &cfg) {
            // SAFETY: kill(2) on a broker process our own rsyslogd started (checked by ppid).
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            killed += 1;
        }
    }
    assert_eq!(sending.join().unwrap(), N as usize);
    assert!(killed > 0, "no broker process was found to kill\n{}", p.diagnostics());
    let diag = || format!("{}\n---- HEC mock:\n{}", p.diagnostics(), hec.summary());
    let t = wait_all(0..N, || hec.hec_events().iter().map(Value::to_string).collect(), diag);
    report("e-killed-while-failing", 0..N, &t, broker.dead_count("hec"));
    let log = p.broker_log("hec");
    println!("  (e) broker instances killed: {killed}; journal lines adopted: {}", stats_sum(&log, "journal_adopted"));
    assert_eq!(broker.dead_count("hec"), 0);
    p.stop(&broker, false);
}
