//! The operator's path of issue 12, on the installed layout, unprivileged: the package's files
//! (the files `Cargo.toml`'s deb assets install: `/etc/rsyslog.d/10-qumulo-audit-broker.conf`,
//! `/usr/share/qumulo-audit-broker/rsyslog/qumulo-audit-broker.conf`, the shipped
//! `/etc/qumulo-audit-broker/rsyslog.d/*`, `broker.toml`, the binary in `/usr/libexec/rsyslog/`)
//! copied under a temp root with their absolute paths prefixed by it (as tests/packaging.sh
//! relocates the unpacked .deb), a main rsyslog.conf that already loads imtcp (so `apply` must not
//! load it again), and a real rsyslogd on loopback ports (`tests/support/layout.rs`).
//!
//! Then only broker.toml is edited: two clusters (one on its own port, one on a shared port
//! chosen by the sending address 127.0.0.2) and two destinations (an ECS file and Splunk HEC
//! against a real HTTP receiver checking the token). `apply --dry-run` changes nothing, `apply`
//! swaps the drop-ins in, events are sent, and `status` (text and Prometheus file, read here
//! independently) must count them; the HEC receiver stops: status reports FAILING, a backlog
//! and the error, exit 1; it comes back: the backlog drains, every event arrives, status is
//! clean (exit 0). Finally a broken broker.toml, and one whose `queue_size` leaves no room to
//! spill, are refused by `apply` (exit 2, line named), the
//! drop-ins stay byte-identical, and rsyslogd restarted on them keeps delivering.

mod support;

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use support::free_port;
use support::http::MockHttp;
use support::layout::{file_events, send_from, until, Layout, Rsyslogd, BIN};
use support::sender::{self, Shape, Tally};

#[test]
fn operator_path_broker_toml_apply_status() {
    let l = Layout::new();
    let (own, shared) = (free_port(), free_port());
    let hec = MockHttp::start_with_hec_token("hec-secret-42");
    let r = l.root.display().to_string();
    std::fs::write(l.path("etc/qumulo-audit-broker/hec.token"), "hec-secret-42\n").unwrap();
    std::fs::set_permissions(l.path("etc/qumulo-audit-broker/hec.token"), std::fs::Permissions::from_mode(0o640)).unwrap();

    // Edit broker.toml only: the layout's own paths (already relocated, uncommented here), then
    // two clusters and two destinations.
    let shipped = std::fs::read_to_string(l.broker_toml()).unwrap();
    let mut toml = shipped
        .replace("# spool_dir = \"", "spool_dir = \"")
        .replace("# log_dir = \"", "log_dir = \"")
        .replace("# binary = \"", "binary = \"")
        .replace("# listen_address = \"0.0.0.0\"", "listen_address = \"127.0.0.1\"")
        .replace("# impstats_interval_secs = 10", "impstats_interval_secs = 1");
    toml.push_str(&format!(
        r#"
[[cluster]]
name = "prod"
port = {own}

[[cluster]]
name = "archive"
port = {shared}
nodes = ["127.0.0.2"]

[[destination]]
name = "local"
type = "file"
format = "ecs"
path = "{r}/var/log/qumulo-audit-broker/local.ndjson"

[[destination]]
name = "splunk"
type = "http"
preset = "splunk-hec"
url = "{url}"
token_file = "{r}/etc/qumulo-audit-broker/hec.token"

[destination.retry]
initial_backoff_ms = 100
max_elapsed_secs = 3
"#,
        url = hec.hec_url()
    ));
    std::fs::write(l.broker_toml(), &toml).unwrap();
    std::fs::set_permissions(l.broker_toml(), std::fs::Permissions::from_mode(0o640)).unwrap();

    // --dry-run: a diff, validated, nothing changed.
    let before = l.drop_ins();
    let (code, out) = l.apply(&["--dry-run"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("--- 20-destinations.conf (added)") && out.contains("+ruleset(name=\"qab_dest_splunk\")"), "{out}");
    assert!(out.contains("--- 20-dest-file.conf (changed)") && out.contains("+# Placeholder"), "the shipped hand-written default becomes a placeholder: {out}");
    assert_eq!(l.drop_ins(), before, "--dry-run changed nothing");

    let (code, out) = l.apply(&[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("hand-written drop-ins no longer active"), "{out}");
    let snapshot = l.rsyslog_dir().join("applied-broker.toml");
    assert_eq!(std::fs::read_to_string(&snapshot).unwrap(), toml, "the programs read the applied copy");
    assert_eq!(std::fs::metadata(&snapshot).unwrap().permissions().mode() & 0o777, 0o640, "it names secret files: broker.toml's mode");
    let files = l.drop_ins();
    assert!(files.contains_key("21-dest-splunk-hec.conf.example"), "examples are kept: {:?}", files.keys());
    let placeholder = &files["20-dest-file.conf"];
    assert!(placeholder.lines().all(|l| l.starts_with('#')), "kept as an inert placeholder (a package upgrade cannot re-create it): {placeholder}");
    let modules = &files["10-modules.conf"];
    assert!(modules.contains("# imtcp: already loaded") && !modules.contains("module(load=\"imtcp\""), "{modules}");
    let (code, out) = l.apply(&[]);
    assert_eq!(code, 0);
    assert!(out.contains("nothing to change"), "apply is idempotent: {out}");

    let rs = Rsyslogd::start(&l, &[own, shared]);
    let warnings = l.rsyslog_warnings();
    assert!(warnings.is_empty(), "rsyslogd started on the rendered drop-ins without an error or a warning:\n{}", warnings.join("\n"));

    // 40 events on the own port (cluster prod), 30 on the shared port from 127.0.0.2 (archive).
    sender::send_lines_to_port(own, sender::qumulo_lines(Shape::Csv, 0..40));
    send_from(Ipv4Addr::new(127, 0, 0, 2), shared, &sender::qumulo_lines(Shape::Json, 40..70));
    let local = l.path("var/log/qumulo-audit-broker/local.ndjson");
    let shipped_file = l.path("var/log/qumulo-audit-broker/events.ndjson");
    until(Duration::from_secs(30), "70 events in each destination", || format!("hec: {}\n{}", hec.summary(), l.diagnostics()), || {
        (file_events(&local).len() >= 70 && hec.hec_events().len() >= 70 && file_events(&shipped_file).len() >= 70).then_some(())
    });
    let got = file_events(&local);
    Tally::of(got.iter().map(|(n, _)| format!("file-{n}.txt"))).assert_exactly_once(0..70);
    for (n, cluster) in &got {
        assert_eq!(cluster, if *n < 40 { "prod" } else { "archive" }, "event {n}: the port / the sending address names the cluster");
    }
    let hec_records: Vec<String> = hec.hec_events().iter().map(|e| e.to_string()).collect();
    Tally::of(&hec_records).assert_exactly_once(0..70);

    let st = until(Duration::from_secs(20), "status counts 70 delivered for splunk and local", || l.diagnostics(), || {
        let s = l.status();
        (s.metric("qab_events_delivered_total", "splunk") == Some(70) && s.metric("qab_events_delivered_total", "local") == Some(70) && s.metric("qab_rsyslog_queue_size", "splunk") == Some(0)
            && s.metric("qab_rsyslog_queue_discarded_total", "splunk") == Some(0))
            .then_some(s)
    });
    assert_eq!(st.code, 0, "{}", st.text);
    assert_eq!(st.metric("qab_lines_in_total", "splunk"), Some(70), "{}", st.text);
    assert_eq!(st.metric("qab_events_delivered_total", "file"), Some(70), "{}", st.text);
    assert_eq!(st.metric("qab_destination_failing", "splunk"), Some(0));
    assert!(st.text.contains("delivered 70") && st.state_of("splunk") == "ok", "{}", st.text);
    // The clusters' ruleset queues, read from the real rsyslogd's impstats: both there, nothing
    // discarded.
    for q in ["qab_cluster_prod".to_string(), format!("qab_port_{shared}")] {
        assert_eq!(st.queue_metric("qab_rsyslog_ruleset_queue_discarded_total", &q), Some(0), "{q}: {}", st.text);
        assert!(st.text.contains(&format!("ruleset queue {q}: ")) && st.text.contains("none discarded"), "{q}: {}", st.text);
    }

    // The test event reaches both clusters' rulesets and every destination.
    let out = l.run(&["test-event", "prod", "--wait-secs", "20"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    for d in ["file", "local", "splunk"] {
        assert!(text.contains(&format!("destination {d}: delivered")), "{text}");
    }
    until(Duration::from_secs(10), "the test event in the HEC receiver", || hec.summary(), || {
        hec.hec_events().iter().any(|e| e["event"]["cluster"] == "prod" && e.to_string().contains("/qumulo-audit-broker/test-event-")).then_some(())
    });

    // The HEC receiver stops: status reports the error and a backlog, exit 1.
    hec.refuse_connections();
    sender::send_lines_to_port(own, sender::qumulo_lines(Shape::Csv, 70..100));
    let st = until(Duration::from_secs(30), "status: splunk FAILING with a backlog", || l.diagnostics(), || {
        let s = l.status();
        (s.state_of("splunk") == "FAILING" && s.metric("qab_rsyslog_queue_size", "splunk").unwrap_or(0) + s.metric("qab_journal_undelivered_lines", "splunk").unwrap_or(0) > 0).then_some(s)
    });
    assert_eq!(st.code, 1, "{}", st.text);
    assert!(st.text.contains("not cleared") && st.text.contains("127.0.0.1"), "the error names the destination: {}", st.text);
    assert_eq!(st.state_of("local"), "ok", "the other destination is not held back: {}", st.text);
    until(Duration::from_secs(20), "the file destination has all 100", || l.diagnostics(), || (file_events(&local).len() >= 100).then_some(()));

    // It comes back: the backlog drains, every event arrives, status turns clean.
    hec.listen_again();
    let st = until(Duration::from_secs(120), "status clean again", || format!("{}\n{}", l.status().text, l.diagnostics()), || {
        let s = l.status();
        (s.code == 0 && s.metric("qab_rsyslog_queue_size", "splunk") == Some(0) && s.metric("qab_journal_undelivered_lines", "splunk") == Some(0)).then_some(s)
    });
    assert!(st.text.contains("cleared by"), "{}", st.text);
    assert!(st.metric("qab_delivery_retries_total", "splunk").unwrap() > 0, "{}", st.text);
    let hec_records: Vec<String> = hec.hec_events().iter().map(|e| e.to_string()).collect();
    Tally::of(&hec_records).assert_at_least_once(0..100);
    let log = std::fs::read_to_string(l.path("var/log/qumulo-audit-broker/splunk.log")).unwrap();
    assert!(log.contains("delivery failing") && log.contains("delivery recovered"), "{log}");

    // A broken broker.toml is refused; the drop-ins stay; rsyslogd restarted on them delivers.
    let good = l.drop_ins();
    std::fs::write(l.broker_toml(), toml.replace("max_elapsed_secs = 3", "max_elapsed_secs = \"3\"")).unwrap();
    let (code, out) = l.apply(&[]);
    assert_eq!(code, 2, "{out}");
    let line = toml.lines().position(|x| x == "max_elapsed_secs = 3").unwrap() + 1;
    assert!(out.contains(&format!("line {line}:")) && out.contains("nothing changed"), "{out}");
    assert_eq!(l.drop_ins(), good, "a broken broker.toml changed nothing");
    // So is a queue_size too small to spill with the file destination's transactions of 4096
    // (broker::render::high_watermark): a full queue would discard messages during an outage.
    let small = toml.replace("# queue_size = 100000", "queue_size = 20000");
    std::fs::write(l.broker_toml(), &small).unwrap();
    let (code, out) = l.apply(&[]);
    let line = small.lines().position(|x| x.starts_with("queue_size = 20000")).unwrap() + 1;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains(&format!("line {line}: [broker] queue_size = 20000 is too small for destination")) && out.contains("at least 27168"), "{out}");
    assert_eq!(l.drop_ins(), good, "a refused queue_size changed nothing");
    std::fs::write(l.broker_toml(), toml.replace("max_elapsed_secs = 3", "max_elapsed_secs = \"3\"")).unwrap();
    // The programs read the applied copy: rsyslogd restarted (so every program is restarted and
    // reads its configuration again) delivers with the broken broker.toml in place.
    rs.stop();
    let _rs = Rsyslogd::start(&l, &[own, shared]);
    send_from(Ipv4Addr::new(127, 0, 0, 2), shared, &sender::qumulo_lines(Shape::Csv, 100..110));
    until(Duration::from_secs(60), "110 events in both destinations after the refused apply", || format!("{}\n{}", hec.summary(), l.diagnostics()), || {
        (file_events(&local).len() >= 110 && hec.hec_events().len() >= 110).then_some(())
    });
    let hec_records: Vec<String> = hec.hec_events().iter().map(|e| e.to_string()).collect();
    Tally::of(&hec_records).assert_at_least_once(0..110);
    // Counters summed over the exited instances (first rsyslogd) and the running ones: 110
    // events and the test event.
    // (A program writes its state file within 2 s of a change: status may lag the receiver.)
    let st = until(Duration::from_secs(20), "status: 111 delivered to local and file, at least 111 to splunk, over both runs", || l.status().text, || {
        let s = l.status();
        (s.metric("qab_events_delivered_total", "local") == Some(111)
            && s.metric("qab_events_delivered_total", "file") == Some(111)
            && s.metric("qab_events_delivered_total", "splunk").unwrap_or(0) >= 111)
            .then_some(s)
    });
    assert_eq!(st.metric("qab_lines_in_total", "local"), Some(111), "{}", st.text);
    assert!(st.text.contains("exited)") && !st.text.contains(" 0 exited)"), "exited instances are counted: {}", st.text);
    for d in ["local", "splunk", "file"] {
        let log = std::fs::read_to_string(l.path(&format!("var/log/qumulo-audit-broker/{d}.log"))).unwrap();
        eprintln!("---- {d}.log\n{log}");
        assert!(!log.contains("delivered 0 lines") && !log.contains("unacknowledged"), "a clean stop logs as clean: {log}");
    }
}

/// `check --connect` on broker.toml proves a Splunk token for real (a wrong one fails, though
/// HEC's health endpoint would accept it), indexes nothing, and warns about a secret over http.
#[test]
fn check_connect_proves_the_hec_token() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let hec = MockHttp::start_with_hec_token("right-token");
    let toml = d.join("broker.toml");
    std::fs::write(
        &toml,
        format!(
            "[[destination]]\nname = \"splunk\"\ntype = \"http\"\npreset = \"splunk-hec\"\nurl = \"{}\"\ntoken_file = \"{}\"\n[destination.journal]\ndir = \"{}\"\n",
            hec.hec_url(),
            d.join("hec.token").display(),
            d.join("journal").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&toml, std::fs::Permissions::from_mode(0o640)).unwrap();
    let check = |token: &str| {
        std::fs::write(d.join("hec.token"), token).unwrap();
        std::fs::set_permissions(d.join("hec.token"), std::fs::Permissions::from_mode(0o640)).unwrap();
        let out = Command::new(BIN).args(["check", "--connect", "--config"]).arg(&toml).env("QAB_LOG", "warn").output().unwrap();
        (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let (code, out) = check("right-token\n");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("accepted the token") && out.contains("WARNING: the secret") && out.contains("plain http"), "{out}");
    let (code, out) = check("wrong-token\n");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("refused the token (HTTP 403"), "{out}");
    assert!(hec.hec_events().is_empty(), "the probe indexed nothing");
    assert!(hec.requests().iter().all(|r| r.path.contains("/services/collector/event")), "the event endpoint was asked, not health");
}

/// `check` tells the two kinds of file apart: a destination TOML with a `[cluster]` table is not
/// a broker.toml; the shipped broker.toml is checked destination by destination, and refused
/// with a `queue_size` that `apply` would refuse.
#[test]
fn check_reads_both_layouts() {
    let l = Layout::new();
    l.install("packaging/etc/file.toml", "etc/qumulo-audit-broker/file.toml");
    let out = Command::new(BIN).args(["check", "--config"]).arg(l.path("etc/qumulo-audit-broker/file.toml")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("configuration is valid (type = file"), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(BIN).args(["check", "--config"]).arg(l.broker_toml()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("0 cluster(s), 1 destination(s)") && text.contains("destination \"file\": configuration is valid"), "{text}{}", String::from_utf8_lossy(&out.stderr));
    // check refuses what apply refuses: a queue_size too small for the file destination to spill.
    let shipped = std::fs::read_to_string(l.broker_toml()).unwrap();
    let small = shipped.replace("# queue_size = 100000", "queue_size = 20000");
    assert_ne!(small, shipped);
    std::fs::write(l.broker_toml(), &small).unwrap();
    let out = Command::new(BIN).args(["check", "--config"]).arg(l.broker_toml()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let line = small.lines().position(|x| x.starts_with("queue_size = 20000")).unwrap() + 1;
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("line {line}: [broker] queue_size = 20000 is too small for destination \"file\"")), "{err}");
}
