//! Scaling past one host (docs/scaling.md), with real processes only: a real rsyslogd (the
//! shipped omprog action shape) whose `kafka` destination runs in pass-through mode (the
//! receiver tier) into a real Kafka-protocol broker (`tansu`, memory storage, a 4-partition
//! topic), and `qumulo-audit-broker consume` processes (the processing tier, one consumer
//! group) delivering to a local NDJSON HTTP server (`tests/support/http.rs`). Four clusters on
//! four rsyslog inputs; their names are chosen so their keys hash to four different partitions.
//!
//! Checked by independent readers: the topic by Python kafka-python (each envelope once, key =
//! cluster, `event-id` header, value = the envelope line), the destination by the HTTP server's
//! JSON parser. Every event must arrive; an event that arrives twice must carry the same `id`
//! each time, and that id must be the `event-id` the receiver fixed. Each scenario prints
//! `reliability: scenario=... sent= delivered= duplicates= lost=0 ...`.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use support::http::MockHttp;
use support::kafka::{read_all, Tansu};
use support::rsyslog::Rsyslogd;
use support::config::ConfigToml;
use support::consume::{check_ids, field, Consumer};
use support::scenario::{wait_all, with_common, write_config, Action, Feeder, Outcome, Pace};
use support::sender::{event_number, qumulo_line, Shape, Tally};

const TOPIC: &str = "qab-envelopes";
/// crc32(name) % 4 = 0, 1, 2, 3: librdkafka's default partitioner puts them on four partitions.
const CLUSTERS: [&str; 4] = ["cl0", "cl4", "cl1", "cl5"];

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Receiver tier: rsyslogd with one input per cluster, the kafka destination in pass-through mode.
/// `batch_records = 1`: tansu 0.6.0 answers a fetch from an offset inside a stored record batch
/// with the next batch (records skipped; Apache Kafka returns the batch holding the offset), so
/// the tests give it one record per batch and every committed offset is a batch boundary. The
/// consumer's own check (src/consume.rs `Expected`) refuses such a gap either way.
struct Receiver {
    rsyslogd: Rsyslogd,
    action: Action,
    ports: Vec<u16>,
}

impl Receiver {
    fn start(dir: &Path, tansu: &Tansu) -> Receiver {
        let receiver = ConfigToml::destination("kafka")
            .dest("bootstrap_servers", toml::Value::Array(vec![tansu.bootstrap().into()]))
            .dest("topic", TOPIC)
            .dest("pass_through", true)
            .dest("timeout_secs", 10)
            .dest("batch_records", 1);
        let cfg = write_config(&dir.join("receiver.toml"), &with_common(receiver, &dir.join("receiver"), true).text());
        let action = Action::new("qab_receiver", &cfg, dir);
        let rulesets: Vec<(String, &str)> = CLUSTERS.iter().map(|c| (format!("cluster_{c}"), *c)).collect();
        let pairs: Vec<(&str, &str)> = rulesets.iter().map(|(r, c)| (r.as_str(), *c)).collect();
        let mut extra = String::new();
        for c in &CLUSTERS[1..] {
            extra.push_str(&format!(
                "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"0\" listenPortFileName=\"{{WORKDIR}}/{c}.port\" ruleset=\"cluster_{c}\")\n"
            ));
        }
        let body = support::scenario::rsyslog_body(&pairs, std::slice::from_ref(&action), &extra);
        let rsyslogd = Rsyslogd::builder(&body).tcp_ruleset(&format!("cluster_{}", CLUSTERS[0])).stop_timeout(Duration::from_secs(30)).start();
        let mut ports = vec![rsyslogd.port()];
        for c in &CLUSTERS[1..] {
            ports.push(rsyslogd.listen_port(&format!("{c}.port"), Duration::from_secs(10)));
        }
        Receiver { rsyslogd, action, ports }
    }

    /// Sends events 0..n, event k to cluster k % 4, at `per_second` in all.
    fn feed(&self, n: u64, per_second: u64) -> Vec<Feeder> {
        (0..4)
            .map(|i| {
                let lines: Vec<Vec<u8>> = (0..n).filter(|k| k % 4 == i).map(|k| qumulo_line(if k % 2 == 0 { Shape::Csv } else { Shape::Json }, k).into_bytes()).collect();
                let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.ports[i as usize]));
                Feeder::start(addr, lines, Pace::PerSecond((per_second / 4).max(1) as u32))
            })
            .collect()
    }
}

/// One `consume` process of the group, delivering to the HTTP server.
fn consumer(dir: &Path, name: &str, tansu: &Tansu, mock: &MockHttp) -> Consumer {
    let cfg = ConfigToml::http(&format!("{}/ingest", mock.url()))
        .dest("preset", "ndjson")
        .max_events(200)
        .set("source", "bootstrap_servers", toml::Value::Array(vec![tansu.bootstrap().into()]))
        .set("source", "topic", TOPIC)
        .set("source", "group_id", "processors")
        .set("source", "session_timeout_secs", 6)
        .set("source", "linger_ms", 100);
    Consumer::start(dir, name, cfg)
}

/// The receiver tier's output, read by kafka-python: event number -> event-id header. Checks
/// each record: the value is the envelope as received, key = header `cluster` = the cluster.
fn receiver_ids(tansu: &Tansu, n: u64) -> (BTreeMap<u64, String>, BTreeMap<String, i32>) {
    let recs = read_all(&tansu.bootstrap(), TOPIC);
    let mut ids = BTreeMap::new();
    let mut partition_of = BTreeMap::new();
    for r in &recs {
        assert!(r.value.starts_with("QAB3\t"), "the value is the envelope: {r:?}");
        let k = event_number(&r.value).unwrap_or_else(|| panic!("no number: {r:?}"));
        let cluster = CLUSTERS[(k % 4) as usize];
        assert_eq!((r.key.as_deref(), r.header("cluster"), r.header("format")), (Some(cluster), Some(cluster), Some("envelope")), "{r:?}");
        assert_eq!(r.value.split('\t').nth(4), Some(cluster), "{r:?}");
        let id = r.header("event-id").unwrap_or_else(|| panic!("no event-id: {r:?}")).to_string();
        if let Some(prev) = ids.insert(k, id.clone()) {
            assert_eq!(prev, id, "event {k} in the topic twice with different ids");
        }
        let p = *partition_of.entry(cluster.to_string()).or_insert(r.partition);
        assert_eq!(p, r.partition, "one cluster, one partition");
    }
    assert_eq!(ids.len() as u64, n, "every event in the topic");
    (ids, partition_of)
}

fn settle(mock: &MockHttp, n: u64, ctx: impl FnOnce() -> String) -> Tally {
    wait_all(Duration::from_secs(60), 0..n, || mock.accepted_records(), ctx)
}

fn context(r: &Receiver, consumers: &[&Consumer], tansu: &Tansu) -> String {
    let topic = support::kafka::try_read_all(&tansu.bootstrap(), TOPIC).unwrap_or_default();
    let mut in_topic: Vec<(u64, i32, i64)> = topic.iter().filter_map(|x| Some((event_number(&x.value)?, x.partition, x.offset))).collect();
    in_topic.sort();
    let mut s = format!("---- the topic holds {} records; (event, partition, offset) of the first 3000..3010: {:?}\n", topic.len(), in_topic.get(2750..2820));
    s += &format!("{}\n---- receiver:\n{}\n", r.rsyslogd.diagnostics(), support::file_text_for_panic(&r.action.output));
    for c in consumers {
        s.push_str(&format!("---- {}:\n{}\n", c.log.display(), c.log_text()));
    }
    s + &tansu.diagnostics()
}

/// Receiver + 1 consumer, then receiver + 2 consumers (same group, a second batch of events):
/// every event once, the work shared, SIGTERM exits cleanly and commits what it delivered.
#[test]
fn receiver_and_one_then_two_consumers_deliver_every_event() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tansu = Tansu::start(&[(TOPIC, 4)]);
    let mock = MockHttp::start();
    let r = Receiver::start(d, &tansu);
    const N: u64 = 4_000;
    let c1 = consumer(d, "c1", &tansu, &mock);
    for f in r.feed(N, 4_000) {
        f.join();
    }
    let tally = settle(&mock, N, || context(&r, &[&c1], &tansu));
    let (ids, partitions) = receiver_ids(&tansu, N);
    let dups = check_ids(&mock.accepted_records(), &ids);
    let (m1, d1, _) = c1.terminate();
    Outcome::new("scale-receiver-1-consumer", N, &tally, 0..N).with("consumer_messages", m1).with("consumer_delivered", d1).with("partitions", format!("{partitions:?}")).print();
    assert_eq!(tally.distinct() as u64, N, "one consumer: every event");
    assert_eq!(dups, 0, "one consumer, no fault: no duplicate");
    assert_eq!(d1, N);

    // Two consumers of the same group: a second run of events 0..N would look like the first,
    // so the topic is fed N more (numbers N..2N) and the group resumes from its commits.
    let c1 = consumer(d, "c1b", &tansu, &mock);
    let c2 = consumer(d, "c2", &tansu, &mock);
    std::thread::sleep(Duration::from_secs(3)); // both joined
    let r2: Vec<Feeder> = (0..4)
        .map(|i| {
            let lines: Vec<Vec<u8>> = (N..2 * N).filter(|k| k % 4 == i).map(|k| qumulo_line(Shape::Csv, k).into_bytes()).collect();
            Feeder::start(std::net::SocketAddr::from(([127, 0, 0, 1], r.ports[i as usize])), lines, Pace::PerSecond(1_000))
        })
        .collect();
    for f in r2 {
        f.join();
    }
    let tally = settle(&mock, 2 * N, || context(&r, &[&c1, &c2], &tansu));
    let (ids, _) = receiver_ids(&tansu, 2 * N);
    let dups = check_ids(&mock.accepted_records(), &ids);
    let (m1, d1, _) = c1.terminate();
    let (m2, d2, _) = c2.terminate();
    Outcome::new("scale-receiver-2-consumers", N, &Tally::of(mock.accepted_records().iter().filter(|x| event_number(x).is_some_and(|k| k >= N))), N..2 * N)
        .with("consumer1_delivered", d1)
        .with("consumer2_delivered", d2)
        .with("consumer1_messages", m1)
        .with("consumer2_messages", m2)
        .with("extra_copies_same_id", dups)
        .print();
    assert_eq!(tally.distinct() as u64, 2 * N);
    assert!(d1 > 0 && d2 > 0, "both consumers delivered: {d1} and {d2}");
    assert_eq!(d1 + d2, N + dups, "the second N, once each (plus duplicates with the same id)");
}

/// Four consumers (as many as the topic has partitions); one is SIGKILLed while it delivers (its
/// destination slowed so a batch is in flight); the others take its partitions and redeliver
/// what was not committed, and a replacement joins.
#[test]
fn consumer_sigkilled_mid_batch_loses_nothing() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tansu = Tansu::start(&[(TOPIC, 4)]);
    let mock = MockHttp::start();
    let r = Receiver::start(d, &tansu);
    const N: u64 = 6_000;
    let mut group: Vec<Consumer> = (1..=4).map(|i| consumer(d, &format!("c{i}"), &tansu, &mock)).collect();
    let feeders = r.feed(N, 3_000);
    // Wait until deliveries are under way, slow the destination so batches are in flight.
    mock.wait_for_records(1_000, Duration::from_secs(60));
    mock.set_delay(Duration::from_millis(400));
    std::thread::sleep(Duration::from_millis(1_500));
    // The victim: a consumer that holds partitions and has a batch parsed but not delivered
    // (its last stats line: events > delivered).
    let in_flight = |c: &Consumer| {
        let t = c.log_text();
        let holds = t.lines().rev().find(|l| l.contains("partitions assigned")).is_some_and(|l| !l.ends_with("none"));
        let events = field(&t, "stats:", "events");
        let delivered = field(&t, "stats:", "delivered");
        (holds, events.saturating_sub(delivered))
    };
    let t0 = Instant::now();
    let victim_at = loop {
        if let Some(i) = (0..group.len()).find(|&i| matches!(in_flight(&group[i]), (true, n) if n > 0)) {
            break i;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "no consumer with a batch in flight");
        std::thread::sleep(Duration::from_millis(100));
    };
    let c1 = group.remove(victim_at);
    let survivors = group;
    let (_, undelivered_at_kill) = in_flight(&c1);
    let before = mock.accepted_records().len();
    let victim = c1.pid();
    let victim_path = c1.log.clone();
    c1.kill();
    mock.set_delay(Duration::ZERO);
    // A supervisor (systemd Restart=always) starts a replacement.
    let c5 = consumer(d, "c5", &tansu, &mock);
    for f in feeders {
        f.join();
    }
    let tally = settle(&mock, N, || {
        let mut all: Vec<&Consumer> = survivors.iter().collect();
        all.push(&c5);
        format!("---- victim:\n{}\n{}", std::fs::read_to_string(&victim_path).unwrap_or_default(), context(&r, &all, &tansu))
    });
    let (ids, _) = receiver_ids(&tansu, N);
    let dups = check_ids(&mock.accepted_records(), &ids);
    let mut survivor_delivered = Vec::new();
    let mut survivor_rebalances = 0;
    for c in survivors {
        let (_, delivered, log) = c.terminate();
        survivor_delivered.push(delivered);
        survivor_rebalances += log.matches("partitions revoked").count();
    }
    let (_, d5, _) = c5.terminate();
    let out = Outcome::new("scale-consumer-sigkill", N, &tally, 0..N)
        .with("killed_pid", victim)
        .with("delivered_before_kill", before)
        .with("victim_parsed_not_delivered_at_kill", undelivered_at_kill)
        .with("survivors_delivered", format!("{survivor_delivered:?}"))
        .with("replacement_delivered", d5)
        .with("survivor_rebalances", survivor_rebalances)
        .with("extra_copies_same_id", dups);
    out.print();
    assert_eq!(out.lost(), 0, "{}", out.line());
}

/// The destination refuses connections for 30 s mid-stream: the consumers stop polling, retry,
/// and deliver everything once it is back; nothing is committed before it is delivered.
#[test]
fn destination_down_30s_loses_nothing() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tansu = Tansu::start(&[(TOPIC, 4)]);
    let mock = MockHttp::start();
    let r = Receiver::start(d, &tansu);
    const N: u64 = 6_000;
    let c1 = consumer(d, "c1", &tansu, &mock);
    let c2 = consumer(d, "c2", &tansu, &mock);
    let feeders = r.feed(N, 1_000);
    mock.wait_for_records(500, Duration::from_secs(60));
    let before_stop = mock.accepted_records().len();
    mock.refuse_connections();
    // A request the server was already processing may still complete (and its client, cut off
    // from the answer, retries it: a duplicate with the same id); from then on nothing gets in.
    std::thread::sleep(Duration::from_secs(1));
    let at_stop = mock.accepted_records().len();
    std::thread::sleep(Duration::from_secs(29));
    let during = mock.accepted_records().len();
    mock.listen_again();
    for f in feeders {
        f.join();
    }
    let tally = settle(&mock, N, || context(&r, &[&c1, &c2], &tansu));
    let (ids, _) = receiver_ids(&tansu, N);
    let dups = check_ids(&mock.accepted_records(), &ids);
    let (_, d1, log1) = c1.terminate();
    let (_, d2, log2) = c2.terminate();
    let out = Outcome::new("scale-destination-down-30s", N, &tally, 0..N)
        .with("accepted_before_stop", before_stop)
        .with("completed_in_flight_at_stop", at_stop - before_stop)
        .with("accepted_while_down", during - at_stop)
        .with("consumer1_delivered", d1)
        .with("consumer2_delivered", d2)
        .with("retries_logged", log1.matches("retrying in").count() + log2.matches("retrying in").count())
        .with("extra_copies_same_id", dups);
    out.print();
    assert_eq!(during, at_stop, "nothing accepted while down");
    assert_eq!(out.lost(), 0, "{}", out.line());
}
