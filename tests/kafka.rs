//! The `kafka` destination against a real Kafka-protocol broker (`tansu`, tests/support/kafka.rs),
//! the program driven by `OmprogDriver` as rsyslog's omprog drives it. Records are read back by
//! an independent consumer (Python kafka-python) and checked one by one: each event once, key =
//! the cluster, headers `event-id` (= the envelope's uuid), `format` and `cluster`, timestamp =
//! the event's time, value = the rendered event (a strict JSON reader that refuses duplicate
//! keys), one cluster's events in one partition and in order; CEF with zstd compression; a record
//! too large for `message_max_bytes` and records for a topic the broker does not know end in the
//! dead-letter file and the stats line; `check --connect` reports the topic. Real rsyslogd and
//! faults: tests/kafka_reliability.rs.

mod strict;
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::kafka::{read_all, Rec, Tansu};
use support::brokers::{envelope, envelope_with, finish, start, stat, uuid, BIN, EVENT_TIME};
use support::omprog_driver::Reply;
use support::config::ConfigToml;
use support::scenario::{dead_letters, write_config};
use support::sender::event_number;

fn config(dir: &Path, name: &str, broker: &str, more: impl FnOnce(ConfigToml) -> ConfigToml) -> PathBuf {
    let cfg = more(ConfigToml::destination("kafka").dest("bootstrap_servers", toml::Value::Array(vec![broker.into()])))
        .journal_dir(&dir.join(format!("{name}-journal")))
        .dead_letter(&dir.join(format!("{name}-dead.ndjson")))
        .backoff_ms(50, 200);
    write_config(&dir.join(format!("{name}.toml")), &cfg.text())
}

fn by_number(recs: &[Rec]) -> BTreeMap<u64, Vec<&Rec>> {
    let mut m: BTreeMap<u64, Vec<&Rec>> = BTreeMap::new();
    for r in recs {
        let n = event_number(&r.value).unwrap_or_else(|| panic!("no event number in {r:?}"));
        m.entry(n).or_default().push(r);
    }
    m
}

#[test]
fn kafka_destination_against_a_real_broker() {
    support::kafka::available().unwrap_or_else(|e| panic!("{e}"));
    let tansu = Tansu::start(&[("qab", 3), ("qab-cef", 1), ("qab-big", 1)]);
    let broker = tansu.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // 1. Every event once, with key, headers, timestamp; clusters alpha and east, two transactions.
    let cfg = config(d, "props", &broker, |c| c.dest("topic", "qab"));
    let mut p = start(&cfg);
    let mut lines: Vec<String> = (0..100).map(|n| envelope("alpha", n)).collect();
    lines.extend((100..160).map(|n| envelope("east", n)));
    assert_eq!(p.transaction(&lines), Reply::Ok, "{}", p.diagnostics());
    let mixed: Vec<String> = (160..200).map(|n| envelope(if n % 2 == 0 { "alpha" } else { "east" }, n)).collect();
    assert_eq!(p.transaction(&mixed), Reply::Ok, "{}", p.diagnostics());
    let stderr = finish(p);
    assert_eq!(stat(&stderr, "delivered"), 200, "{stderr}");
    assert_eq!((stat(&stderr, "unroutable"), stat(&stderr, "dead_lettered")), (0, 0), "{stderr}");

    let got = read_all(&broker, "qab");
    assert_eq!(got.len(), 200, "200 records in the topic");
    let recs = by_number(&got);
    assert_eq!(recs.keys().copied().collect::<Vec<_>>(), (0..200).collect::<Vec<_>>());
    let mut partition_of: BTreeMap<String, i32> = BTreeMap::new();
    for (n, rs) in &recs {
        assert_eq!(rs.len(), 1, "event {n} arrived {} times", rs.len());
        let r = rs[0];
        let body = strict::json::parse(&r.value).unwrap_or_else(|e| panic!("event {n}: not strict JSON ({e}): {}", r.value));
        let cluster = body.str_at("cluster").unwrap().to_string();
        let want_cluster = if *n < 100 || (*n >= 160 && n % 2 == 0) { "alpha" } else { "east" };
        assert_eq!(cluster, want_cluster, "event {n}");
        assert_eq!(r.key.as_deref(), Some(want_cluster), "event {n}: key = cluster");
        assert_eq!(r.header("event-id"), Some(uuid(*n).as_str()), "event {n}: {r:?}");
        assert_eq!(body.str_at("id"), Some(uuid(*n).as_str()), "the value's id is the event-id header");
        assert_eq!((r.header("format"), r.header("cluster")), (Some("json"), Some(want_cluster)), "event {n}: {r:?}");
        assert_eq!(r.headers.len(), 3, "{r:?}");
        assert_eq!(r.timestamp, EVENT_TIME as i64 * 1000, "event {n}: the event's time");
        assert!(!r.value.ends_with('\n'), "the value is the record alone");
        let p = *partition_of.entry(cluster.clone()).or_insert(r.partition);
        assert_eq!(p, r.partition, "event {n}: every {cluster} record in one partition");
    }
    // Within a cluster's partition, offsets follow the events' order.
    for cluster in ["alpha", "east"] {
        let mut of: Vec<(i64, u64)> = got.iter().filter(|r| r.key.as_deref() == Some(cluster)).map(|r| (r.offset, event_number(&r.value).unwrap())).collect();
        of.sort();
        assert!(of.windows(2).all(|w| w[0].1 < w[1].1), "{cluster}: offsets in event order: {of:?}");
    }

    // 2. CEF with zstd: the value is the CEF line, the format header says so.
    let cfg = config(d, "cef", &broker, |c| c.dest("topic", "qab-cef").dest("format", "cef").dest("compression", "zstd").dest("key", "{cluster}.{protocol}"));
    let mut p = start(&cfg);
    assert_eq!(p.transaction((0..10).map(|n| envelope("alpha", n))), Reply::Ok, "{}", p.diagnostics());
    finish(p);
    let got = read_all(&broker, "qab-cef");
    assert_eq!(by_number(&got).keys().copied().collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
    for r in &got {
        assert!(r.value.starts_with("CEF:0|"), "{r:?}");
        assert_eq!((r.header("format"), r.key.as_deref()), (Some("cef"), Some("alpha.smb2")), "{r:?}");
    }

    // 3. A record too large for message_max_bytes: dead-lettered with the reason; the rest of
    // the transaction delivered; the COMMIT succeeds.
    let cfg = config(d, "big", &broker, |c| c.dest("topic", "qab-big").dest("message_max_bytes", 4000));
    let mut p = start(&cfg);
    let long = format!("10.0.0.1,\"AD\\alice\",smb2,fs_write_data,ok,7,\"/share/{}/file-7.txt\",\"\"", "d".repeat(6000));
    let lines = vec![envelope("alpha", 6), envelope_with("alpha", 7, &long), envelope("alpha", 8)];
    assert_eq!(p.transaction(&lines), Reply::Ok, "{}", p.diagnostics());
    let stderr = finish(p);
    assert_eq!((stat(&stderr, "delivered"), stat(&stderr, "dead_lettered")), (2, 1), "{stderr}");
    let got = read_all(&broker, "qab-big");
    assert_eq!(by_number(&got).keys().copied().collect::<Vec<_>>(), [6, 8]);
    let dead = dead_letters(&d.join("big-dead.ndjson"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!((dead[0]["kind"].as_str(), dead[0]["cluster"].as_str()), (Some("rejected"), Some("alpha")));
    assert!(dead[0]["reason"].as_str().unwrap().contains("too large"), "{}", dead[0]);
    assert_eq!(event_number(dead[0]["record"].as_str().unwrap()), Some(7));
    assert!(dead[0]["record"].as_str().unwrap().starts_with('{'), "the record, without our header");

    // 4. A topic the broker does not know: each record is retried, counted as unroutable, and
    // dead-lettered from its 2nd attempt once timeout_secs (3) have passed since its first (the
    // client answers "unknown topic" at once after its first wait: without the time, a broker
    // restarting without its data would send records to the dead-letter file within a second);
    // the COMMIT succeeds.
    let cfg = config(d, "unknown", &broker, |c| c.dest("topic", "no-such-topic").dest("max_unknown_topic", 2).dest("timeout_secs", 3));
    let mut p = start(&cfg);
    assert_eq!(p.transaction((0..5).map(|n| envelope("alpha", n))), Reply::Ok, "{}", p.diagnostics());
    let stderr = finish(p);
    let unroutable = stat(&stderr, "unroutable");
    assert_eq!((stat(&stderr, "delivered"), stat(&stderr, "dead_lettered")), (0, 5), "{stderr}");
    assert!(unroutable >= 10 && unroutable % 5 == 0, "every record met the unknown topic at least twice: {stderr}");
    let dead = dead_letters(&d.join("unknown-dead.ndjson"));
    let mut numbers: Vec<u64> = dead.iter().map(|e| event_number(e["record"].as_str().unwrap()).unwrap()).collect();
    numbers.sort();
    assert_eq!(numbers, [0, 1, 2, 3, 4]);
    for e in &dead {
        let reason = e["reason"].as_str().unwrap();
        assert!(reason.contains("unroutable") && reason.contains("no-such-topic") && reason.contains(&format!("{} attempts over", unroutable / 5)), "{reason}");
        let secs: u64 = reason.split(" attempts over ").nth(1).and_then(|r| r.split(' ').next()).and_then(|s| s.parse().ok()).unwrap();
        assert!(secs >= 3, "not before timeout_secs since the first: {reason}");
    }

    // 5. check --connect: the topic exists / is missing / nothing listens.
    let check = |cfg: &Path| {
        let out = Command::new(BIN).args(["check", "--connect", "--config"]).arg(cfg).output().unwrap();
        (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let (ok, out) = check(&config(d, "c-ok", &broker, |c| c.dest("topic", "qab")));
    assert!(ok && out.contains("topic \"qab\" has 3 partitions"), "{out}");
    let (ok, out) = check(&config(d, "c-missing", &broker, |c| c.dest("topic", "no-such-topic")));
    assert!(!ok && out.contains("UnknownTopicOrPartition"), "{out}");
    let closed = format!("127.0.0.1:{}", support::free_port());
    let (ok, out) = check(&config(d, "c-closed", &closed, |c| c.dest("topic", "qab").dest("timeout_secs", 3)));
    assert!(!ok && out.contains("no metadata"), "{out}");
    drop(tansu);
}
