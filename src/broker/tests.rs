use std::path::Path;

use super::render::{modules_loaded_by, render, Rendering};
use super::*;

const GOOD: &str = r#"# broker.toml
[broker]
listen_address = "127.0.0.1"

[[cluster]]
name = "prod"
port = 10514

[[cluster]]
name = "archive"
port = 10600
nodes = ["192.0.2.11", "192.0.2.12"]

[[cluster]]
name = "lab"
port = 10600
nodes = ["192.0.2.21"]

[[destination]]
name = "file"
type = "file"
path = "/tmp/x/events.ndjson"

[destination.journal]
dir = "/tmp/x/journal"

[[destination]]
name = "splunk-hec"
type = "http"
preset = "splunk-hec"
format = "json"
url = "http://127.0.0.1:8088/services/collector/event"

[destination.retry]
max_elapsed_secs = 7

[destination.batch]
max_events = 55
"#;

fn parse(text: &str) -> Result<BrokerFile, ConfigError> {
    BrokerFile::parse(text, Path::new("/etc/qab/broker.toml"))
}

#[test]
fn sections_mean_what_a_per_destination_toml_means() {
    let b = parse(GOOD).unwrap();
    assert_eq!(b.clusters.len(), 3);
    let names: Vec<&str> = b.destinations.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["file", "splunk-hec"]);
    let file = &b.destination("file").unwrap().config;
    assert_eq!(file.journal_dir(), Path::new("/tmp/x/journal"));
    assert_eq!(file.name(), "file");
    let hec = &b.destination("splunk-hec").unwrap().config;
    assert_eq!(hec.retry.max_elapsed_secs, 7);
    assert_eq!(hec.batch.max_events, 55);
    assert_eq!(hec.retry.initial_backoff_ms, 200, "defaults as in a per-destination TOML");
    assert_eq!(hec.journal_dir(), Path::new("/var/spool/qumulo-audit-broker/journal/splunk-hec"));
    // The same section as a standalone per-destination TOML gives the same config.
    let alone = crate::config::Config::parse(
        "[destination]\ntype = \"http\"\npreset = \"splunk-hec\"\nformat = \"json\"\nurl = \"http://127.0.0.1:8088/services/collector/event\"\n[retry]\nmax_elapsed_secs = 7\n[batch]\nmax_events = 55\n",
    )
    .unwrap();
    assert_eq!(format!("{:?}", alone.destination), format!("{:?}", hec.destination));
    assert_eq!(format!("{:?}{:?}", alone.retry, alone.batch), format!("{:?}{:?}", hec.retry, hec.batch));
    let e = b.destination("nope").unwrap_err().to_string();
    assert!(e.contains("\"nope\"") && e.contains("file, splunk-hec"), "{e}");
}

#[test]
fn errors_keep_their_line_in_broker_toml() {
    // A bad value in the second destination: the line of the key in broker.toml.
    let bad = GOOD.replace("max_elapsed_secs = 7", "max_elapsed_secs = \"x\"");
    let e = parse(&bad).unwrap_err();
    let want = GOOD.lines().position(|l| l.starts_with("max_elapsed_secs")).unwrap() + 1;
    assert_eq!(e.line, Some(want), "{e}");
    // A key of another destination type.
    let bad = GOOD.replace("path = \"/tmp/x/events.ndjson\"", "path = \"/tmp/x/events.ndjson\"\nurl = \"http://h\"");
    let e = parse(&bad).unwrap_err();
    assert_eq!(e.line, Some(bad.lines().position(|l| l.starts_with("url = \"http://h\"")).unwrap() + 1), "{e}");
    assert!(e.to_string().contains("does not apply to type = \"file\""), "{e}");
    // A missing name, duplicate names, ports shared without nodes.
    let e = parse(&GOOD.replace("name = \"file\"\n", "")).unwrap_err();
    assert!(e.to_string().contains("needs `name`"), "{e}");
    assert_eq!(e.line, Some(GOOD.lines().position(|l| l == "[[destination]]").unwrap() + 1));
    let e = parse(&GOOD.replace("name = \"archive\"", "name = \"prod\"")).unwrap_err();
    assert!(e.to_string().contains("defined twice"), "{e}");
    assert_eq!(e.line, Some(GOOD.lines().position(|l| l == "name = \"archive\"").unwrap() + 1));
    let e = parse(&GOOD.replace("port = 10514", "port = 10600")).unwrap_err();
    assert!(e.to_string().contains("shared"), "{e}");
    let e = parse(&GOOD.replace("[broker]", "[broker]\nqueue_sise = 5")).unwrap_err();
    assert!(e.to_string().contains("queue_sise") && e.line == Some(3), "{e}");
    // Values checked after parsing name their key's line too (not a look-alike key in another
    // table, nor the same key in a comment's place).
    for (key, value, says) in [
        ("queue_size", "5", "100 to 2147483647"),
        ("impstats_interval_secs", "0", "1 to 3600"),
        ("queue_max_disk_space", "\"ten gigs\"", "a number with an optional k, m, g or t"),
        ("listen_address", "\"\"", "an IP address or host name"),
    ] {
        let written = format!("# {key} = 1\n\n  {key}  = {value}");
        let bad = if key == "listen_address" {
            GOOD.replace("listen_address = \"127.0.0.1\"", &written)
        } else {
            GOOD.replace("[broker]", &format!("[broker]\n{written}"))
        };
        let e = parse(&bad).unwrap_err();
        assert!(e.to_string().contains(says), "{key}: {e}");
        assert_eq!(e.line, Some(5), "{key}: {e}");
    }
    assert_eq!(broker_key_line("[[cluster]]\nqueue_size = 1\n[broker.tls]\nqueue_size = 2\n", "queue_size"), None);
    // Too small for the file destination's transactions: the queue could not spill (render.rs,
    // high_watermark). parse accepts it (the programs load the file); apply's check refuses it,
    // naming the smallest size for every destination; that size passes, one less does not.
    let min = super::render::min_queue_size(4096);
    assert_eq!((min, super::render::min_queue_size(1024)), (27168, 6675));
    let small = parse(&GOOD.replace("[broker]\n", &format!("[broker]\nqueue_size = {}\n", min - 1))).unwrap();
    let e = super::render::check_queue_size(&small).expect("refused");
    assert!(e.contains("too small for destination \"file\"") && e.ends_with("at least 27168"), "{e}");
    let fits = parse(&GOOD.replace("[broker]\n", &format!("[broker]\nqueue_size = {min}\n"))).unwrap();
    assert_eq!(super::render::check_queue_size(&fits), None);
    // Never below 60 % (rsyslog warns at start below that), never overflowing.
    for size in [min, 50_000, 100_000, 1 << 40, u64::MAX] {
        let high = super::render::high_watermark(size, 4096).unwrap();
        let size = size.min(super::render::MAX_QUEUE_SIZE);
        assert!(high >= size / 100 * 60 && high <= size * 4 / 5 && size - high >= 2 * 4096 + size / 10, "{size}: {high}");
    }
    assert!(parse(&GOOD.replace("[broker]\n", "[broker]\nqueue_size = 2147483648\n")).unwrap_err().to_string().contains("100 to 2147483647"));
    assert_eq!(super::render::high_watermark(100_000, 4096), Some(80_000));
    let e = parse(&GOOD.replace("\"192.0.2.21\"", "\"node-21\"")).unwrap_err();
    assert!(e.to_string().contains("not an IP address"), "{e}");
    let e = parse(&GOOD.replace("name = \"splunk-hec\"", "name = \"file\"")).unwrap_err();
    assert!(e.to_string().contains("clashes"), "{e}");
    // A per-cluster override of an amqp destination: its key's line in broker.toml.
    let amqp = format!("{GOOD}\n[[destination]]\nname = \"mq\"\ntype = \"amqp\"\nserver = \"rabbit\"\nexchange = \"x\"\n\n[destination.clusters.prod]\nuser = \"u\"\n");
    let e = parse(&amqp).unwrap_err();
    assert_eq!(e.line, Some(amqp.lines().count()), "{e}");
    assert!(e.to_string().starts_with(&format!("/etc/qab/broker.toml: line {}: [destination.clusters.prod] `user` and `password_file` go together", amqp.lines().count())), "{e}");
}

#[test]
fn renders_the_shipped_wiring() {
    let b = parse(GOOD).unwrap();
    let r = Rendering {
        loaded_modules: ["imtcp".to_string()].into(),
        broker_toml: "/etc/qab/broker.toml".into(),
        omprog_config: "/etc/qab/rsyslog.d/applied-broker.toml".into(),
    };
    let files = render(&b, &r);
    let all: String = files.values().cloned().collect();
    let modules = modules_loaded_by(&all);
    assert_eq!(modules, ["impstats", "omprog"].map(String::from).into(), "imtcp is loaded elsewhere");
    let dests = &files["20-destinations.conf"];
    assert!(dests.contains("binary=\"/usr/libexec/rsyslog/qumulo-audit-broker omprog --config /etc/qab/rsyslog.d/applied-broker.toml --destination splunk-hec\""));
    assert_eq!(dests.matches("action(type=\"omprog\"").count(), 2);
    assert!(dests.contains("queue.filename=\"qab-file\"") && dests.contains("queue.dequeueBatchSize=\"4096\""));
    assert!(dests.contains("queue.filename=\"qab-splunk-hec\"") && dests.contains("queue.dequeueBatchSize=\"1024\""));
    // The second instance starts at 10 % of queue.size: the lowest value rsyslog takes without a
    // warning at start (tests/broker_listener.rs starts one).
    assert_eq!(dests.matches("queue.workerThreads=\"2\" queue.workerThreadMinimumMessages=\"10000\"").count(), 2, "{dests}");
    // The defaults are the shipped hand-written files' queue sizes (docs/packaging.md says why).
    let shipped = include_str!("../../rsyslog.d/20-dest-file.conf");
    for line in ["queue.size=\"100000\" queue.highWatermark=\"80000\" queue.lowWatermark=\"20000\"", "queue.workerThreadMinimumMessages=\"10000\""] {
        assert!(shipped.contains(line) && dests.matches(line).count() == 2, "{line}");
    }
    assert!(include_str!("../../rsyslog.d/30-clusters.conf.example").contains("queue.size=\"50000\"") && files["30-clusters.conf"].contains("queue.size=\"50000\""));
    // A smaller queue: 80 % where that leaves room for both instances' open transactions and a
    // tenth to spare (splunk-hec, 1024 per transaction), lower where not (file, 4096).
    let small = parse(&GOOD.replace("[broker]\n", "[broker]\nqueue_size = 34321\n")).unwrap();
    let dests = &render(&small, &r)["20-destinations.conf"];
    assert!(dests.contains("queue.size=\"34321\" queue.highWatermark=\"27456\" queue.lowWatermark=\"6864\""), "{dests}");
    assert!(dests.contains("queue.size=\"34321\" queue.highWatermark=\"22697\" queue.lowWatermark=\"6864\""), "{dests}");
    assert_eq!(super::render::second_worker_threshold(34321), 3430);
    let clusters = &files["30-clusters.conf"];
    assert_eq!(clusters.matches("input(type=\"imtcp\"").count(), 2, "one own port, one shared port:\n{clusters}");
    // The own port's input names its cluster; only the shared port's ruleset sets $.cluster.
    assert!(clusters.contains("input(type=\"imtcp\" name=\"qab-prod\"") && !clusters.contains("set $.cluster = \"prod\""), "{clusters}");
    assert!(clusters.contains("$fromhost-ip == \"192.0.2.11\" or $fromhost-ip == \"192.0.2.12\""));
    assert!(clusters.contains("set $.cluster = \"unmapped\""));
    let deliver = &files["50-deliver.conf"];
    assert!(deliver.contains("call qab_dest_file\n    call qab_dest_splunk_hec\n"));
    assert!(!deliver.contains("mmsequence") && !deliver.contains("$."), "no $. variable: {deliver}");
    assert_eq!(dests.matches("if $uuid == \"\" then {").count(), 2, "each destination makes the uuid before its queue");
    assert_eq!(dests.matches("template=\"qab_envelope_v3\"").count(), 2);
    assert_eq!(files[super::render::SNAPSHOT], GOOD, "the programs read the applied copy");
    assert_eq!(render(&b, &r), files, "rendering is deterministic");
}

#[test]
fn module_loads_are_found_in_both_syntaxes() {
    let m = modules_loaded_by("$ModLoad imuxsock\nmodule(load=\"imtcp\" maxSessions=\"5\")\n#module(load=\"imudp\")\n  module ( load = \"omprog\" )\n");
    assert!(m.contains("imuxsock") && m.contains("imtcp") && !m.contains("imudp"), "{m:?}");
}

#[test]
fn line_diff_shows_changes() {
    let d = super::apply::line_diff("a\nb\nc\n", "a\nc\nd\n");
    assert_eq!(d, "-b\n+d\n");
}

/// The shipped hand-written layout (file destination, the two-cluster example, the HEC example)
/// becomes a broker.toml whose destinations mean what the TOML files meant.
#[test]
fn migrate_translates_the_hand_written_layout() {
    let top = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let etc = d.join("etc");
    let rs = etc.join("rsyslog.d");
    std::fs::create_dir_all(&rs).unwrap();
    let relocate = |t: String| t.replace("/etc/qumulo-audit-broker/", &format!("{}/", etc.display()));
    for (from, to) in [
        ("rsyslog.d/10-modules.conf", "rsyslog.d/10-modules.conf"),
        ("rsyslog.d/20-dest-file.conf", "rsyslog.d/20-dest-file.conf"),
        ("rsyslog.d/21-dest-splunk-hec.conf.example", "rsyslog.d/21-dest-splunk-hec.conf"),
        ("rsyslog.d/30-clusters.conf.example", "rsyslog.d/30-clusters.conf"),
        ("rsyslog.d/31-shared-port.conf.example", "rsyslog.d/31-shared-port.conf"),
        ("rsyslog.d/50-deliver.conf", "rsyslog.d/50-deliver.conf"),
        ("packaging/etc/file.toml", "file.toml"),
        ("packaging/etc/splunk-hec.toml.example", "splunk-hec.toml"),
    ] {
        std::fs::write(etc.join(to), relocate(std::fs::read_to_string(top.join(from)).unwrap())).unwrap();
    }
    // An earlier layout's cluster: its ruleset sets $.cluster (which wins over the input's name).
    std::fs::write(
        rs.join("32-earlier.conf"),
        "ruleset(name=\"qab_cluster_old\") {\n    set $.cluster = \"old\";\n    call qab_deliver\n}\ninput(type=\"imtcp\" name=\"qab-other\" port=\"10516\" ruleset=\"qab_cluster_old\")\n",
    )
    .unwrap();
    let (text, notes) = super::migrate::migrate(&rs).unwrap();
    // The shared port takes its clusters from a lookup table: reported, not made a cluster of
    // (its listener's name is not qab-<cluster>, and a lookup is no fixed cluster either).
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(notes[0].contains("lookup table") && notes[1].contains("listener on port 514"), "{notes:?}");
    let b = BrokerFile::parse(&text, Path::new("broker.toml")).unwrap();
    let clusters: Vec<(String, u16)> = b.clusters.iter().map(|c| (c.name.get_ref().clone(), *c.port.get_ref())).collect();
    assert_eq!(clusters, [("prod".to_string(), 10514), ("archive".to_string(), 10515), ("old".to_string(), 10516)], "named by the input (shipped), by $.cluster (earlier)");
    for name in ["file", "splunk-hec"] {
        let old = crate::config::Config::load(&etc.join(format!("{name}.toml"))).unwrap();
        let new = &b.destination(name).unwrap().config;
        assert_eq!(format!("{:?}", old.destination), format!("{:?}", new.destination), "{name}");
        assert_eq!(format!("{:?}{:?}{:?}", old.dead_letter, old.journal, old.retry), format!("{:?}{:?}{:?}", new.dead_letter, new.journal, new.retry), "{name}");
        assert_eq!(old.journal_dir(), new.journal_dir(), "{name}: same journal, so nothing is stranded");
    }
}

#[test]
fn the_shipped_broker_toml_is_the_safe_default() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/etc/broker.toml");
    let b = BrokerFile::load(&path).unwrap();
    assert!(b.clusters.is_empty(), "nothing listens");
    assert_eq!(b.destinations.len(), 1);
    let old = crate::config::Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/etc/file.toml")).unwrap();
    let new = &b.destination("file").unwrap().config;
    assert_eq!(format!("{:?}", old.destination), format!("{:?}", new.destination), "the same destination as file.toml");
    assert_eq!(old.journal_dir(), new.journal_dir());
    assert_eq!(format!("{:?}", old.dead_letter), format!("{:?}", new.dead_letter));
}
