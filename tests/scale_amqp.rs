//! Scaling past one host on RabbitMQ (docs/scaling.md), with real processes only: a real
//! rsyslogd (the shipped omprog action shape) whose `amqp` destination runs in pass-through mode
//! (the receiver tier: declares a durable topic exchange and a durable quorum queue bound to it)
//! into a real RabbitMQ node (`tests/support/rabbitmq.rs`, its own temp data dir), and
//! `qumulo-audit-broker consume` processes (the processing tier, competing consumers of the
//! queue) delivering to a local NDJSON HTTP server (`tests/support/http.rs`).
//!
//! Checked by independent readers: what the receiver published, through a second (classic,
//! durable) queue the test binds to the same exchange and drains at the end with lapin's
//! `basic_get` (each envelope with its message id = the event id, persistent, `text/plain`);
//! what the destination got, by the HTTP server's JSON parser, each record's `id` compared by
//! serde_json with the receiver's message id. Every event must arrive (the wait panics naming
//! the missing ones); an event that arrives twice carries the same id. Each scenario prints
//! `reliability: scenario=... sent= delivered= duplicates= lost=0 ...`.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lapin::ExchangeKind;
use support::config::ConfigToml;
use support::consume::{check_ids, field, Consumer};
use support::http::MockHttp;
use support::rabbitmq::{RabbitMq, Reader};
use support::rsyslog::Rsyslogd;
use support::scenario::{wait_all, with_common, write_config, Action, Feeder, Outcome, Pace};
use support::sender::{event_number, qumulo_line, Shape, Tally};

const EXCHANGE: &str = "qab-envelopes";
/// The consumers' queue, declared by the receiver (quorum).
const QUEUE: &str = "qab-envelopes";
/// The test's own copy of everything the receiver published.
const TAP: &str = "qab-envelopes-tap";
const CLUSTER: &str = "cl0";
/// `[batch] max_events` of the consumers; their prefetch is twice that (the default).
const BATCH: u64 = 200;
const PREFETCH: u64 = 2 * BATCH;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A RabbitMQ node with the exchange and the test's tap queue, an HTTP destination and the
/// receiver tier in front of them.
struct Rig {
    dir: tempfile::TempDir,
    rabbit: RabbitMq,
    mock: MockHttp,
    rsyslogd: Rsyslogd,
    action: Action,
}

impl Rig {
    fn start() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let rabbit = RabbitMq::start();
        let reader = Reader::connect(&rabbit.url("/"));
        reader.exchange(EXCHANGE, ExchangeKind::Topic);
        reader.queue(TAP, EXCHANGE, "#");
        reader.close();
        let receiver = ConfigToml::amqp("127.0.0.1", rabbit.port)
            .dest("exchange", EXCHANGE)
            .dest("pass_through", true)
            .dest("routing_key", "qumulo.{cluster}")
            .dest("declare_exchange", true)
            .dest("queue", QUEUE)
            .dest("queue_type", "quorum")
            .dest("heartbeat_secs", 5)
            .dest("timeout_secs", 10);
        let cfg = write_config(&dir.path().join("receiver.toml"), &with_common(receiver, &dir.path().join("receiver"), true).text());
        let action = Action::new("qab_receiver", &cfg, dir.path());
        let body = support::scenario::rsyslog_body(&[("cluster_cl0", CLUSTER)], std::slice::from_ref(&action), "");
        let rsyslogd = Rsyslogd::builder(&body).tcp_ruleset("cluster_cl0").stop_timeout(Duration::from_secs(30)).start();
        Rig { dir, rabbit, mock: MockHttp::start(), rsyslogd, action }
    }

    fn d(&self) -> &Path {
        self.dir.path()
    }

    /// Sends events 0..n (even CSV, odd JSON bodies) at about `per_second`.
    fn feed(&self, n: u64, per_second: u32) -> Feeder {
        let lines: Vec<Vec<u8>> = (0..n).map(|k| qumulo_line(if k % 2 == 0 { Shape::Csv } else { Shape::Json }, k).into_bytes()).collect();
        Feeder::start(self.rsyslogd.addr(), lines, Pace::PerSecond(per_second))
    }

    /// A `consume` process of the queue, delivering to the HTTP server.
    fn consumer(&self, name: &str) -> Consumer {
        let cfg = ConfigToml::http(&format!("{}/ingest", self.mock.url()))
            .dest("preset", "ndjson")
            .max_events(BATCH as i64)
            .set("source", "type", "amqp")
            .set("source", "server", "127.0.0.1")
            .set("source", "port", i64::from(self.rabbit.port))
            .set("source", "queue", QUEUE)
            .set("source", "heartbeat_secs", 5)
            .set("source", "timeout_secs", 5)
            .set("source", "linger_ms", 100);
        Consumer::start(self.d(), name, cfg)
    }

    /// Every event delivered (panics after 90 s naming what is missing).
    fn settle(&self, n: u64, consumers: &[&Consumer]) -> Tally {
        wait_all(Duration::from_secs(90), 0..n, || self.mock.accepted_records(), || self.context(consumers))
    }

    /// What the receiver published, from the tap: event number -> message id (the event id).
    /// Checks each message: body = the envelope as received, persistent, text/plain, routed by
    /// cluster; a message published twice (a confirm lost in a broker restart) has the same id.
    fn receiver_ids(&self, n: u64) -> (BTreeMap<u64, String>, u64) {
        let reader = Reader::connect(&self.rabbit.url("/"));
        let msgs = reader.drain(TAP);
        reader.close();
        let mut ids = BTreeMap::new();
        let mut republished = 0;
        for m in &msgs {
            assert!(m.body.starts_with("QAB3\t"), "the body is the envelope: {m:?}");
            assert_eq!(m.body.split('\t').nth(4), Some(CLUSTER), "{m:?}");
            assert_eq!((m.delivery_mode, m.content_type.as_deref(), m.routing_key.as_str()), (Some(2), Some("text/plain"), "qumulo.cl0"), "{m:?}");
            let k = event_number(&m.body).unwrap_or_else(|| panic!("no number: {m:?}"));
            let id = m.message_id.clone().unwrap_or_else(|| panic!("no message id: {m:?}"));
            if let Some(prev) = ids.insert(k, id.clone()) {
                assert_eq!(prev, id, "event {k} published twice with different ids");
                republished += 1;
            }
        }
        assert_eq!(ids.len() as u64, n, "every event published once at least");
        (ids, republished)
    }

    /// `messages_ready messages_unacknowledged` of the consumers' queue (`rabbitmqctl`; the broker
    /// refreshes these figures every few seconds, so they lag).
    fn queue_counts(&self) -> (u64, u64) {
        let out = self.rabbit.ctl(&["list_queues", "-q", "--no-table-headers", "name", "messages_ready", "messages_unacknowledged"]);
        out.lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 3 && f[0] == QUEUE).then(|| (f[1].parse().unwrap_or(0), f[2].parse().unwrap_or(0)))
            })
            .unwrap_or_else(|| panic!("no row for {QUEUE} in rabbitmqctl list_queues:\n{out}"))
    }

    fn context(&self, consumers: &[&Consumer]) -> String {
        let mut s = format!("{}\n---- receiver:\n{}\n", self.rsyslogd.diagnostics(), support::file_text_for_panic(&self.action.output));
        for c in consumers {
            s.push_str(&format!("---- {}:\n{}\n", c.log.display(), c.log_text()));
        }
        s + &self.rabbit.diagnostics()
    }
}

/// Waits until the HTTP server holds `n` records.
fn wait_records(mock: &MockHttp, n: usize) {
    mock.wait_for_records(n, Duration::from_secs(60));
}

/// Two consumers; one is SIGKILLed while it holds a batch it parsed and did not deliver (the
/// destination slowed so batches are in flight); a replacement starts. The broker redelivers
/// what the victim had not acknowledged: every event arrives, duplicates are bounded by the
/// victim's prefetch and carry the receiver's id.
#[test]
fn consumer_sigkilled_mid_batch_loses_nothing() {
    let _s = serial();
    let rig = Rig::start();
    const N: u64 = 6_000;
    let mut group = vec![rig.consumer("c1"), rig.consumer("c2")];
    let feeder = rig.feed(N, 2_000);
    wait_records(&rig.mock, 1_000);
    rig.mock.set_delay(Duration::from_millis(400));
    std::thread::sleep(Duration::from_millis(1_500));
    let t0 = Instant::now();
    let victim_at = loop {
        if let Some(i) = (0..group.len()).find(|&i| group[i].in_flight() > 0) {
            break i;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "no consumer with a batch in flight\n{}", rig.context(&group.iter().collect::<Vec<_>>()));
        std::thread::sleep(Duration::from_millis(100));
    };
    let victim = group.remove(victim_at);
    let survivor = group.remove(0);
    let undelivered_at_kill = victim.in_flight();
    let before = rig.mock.accepted_records().len();
    let victim_log = victim.log.clone();
    victim.kill();
    rig.mock.set_delay(Duration::ZERO);
    // A supervisor (systemd Restart=always) starts a replacement.
    let replacement = rig.consumer("c3");
    feeder.join();
    let tally = rig.settle(N, &[&survivor, &replacement]);
    let (ids, republished) = rig.receiver_ids(N);
    let dups = check_ids(&rig.mock.accepted_records(), &ids);
    let (m2, d2, log2) = survivor.terminate();
    let (m3, d3, log3) = replacement.terminate();
    let redelivered = field(&log2, "consume: exiting:", "redelivered") + field(&log3, "consume: exiting:", "redelivered");
    let out = Outcome::new("scale-amqp-consumer-sigkill", N, &tally, 0..N)
        .with("delivered_before_kill", before)
        .with("victim_parsed_not_delivered_at_kill", undelivered_at_kill)
        .with("survivor_messages", m2)
        .with("replacement_messages", m3)
        .with("survivor_delivered", d2)
        .with("replacement_delivered", d3)
        .with("redelivered_by_broker", redelivered)
        .with("republished_by_receiver", republished)
        .with("extra_copies_same_id", dups);
    out.print();
    assert_eq!(out.lost(), 0, "{}", out.line());
    assert!(undelivered_at_kill > 0 && redelivered > 0, "the victim held unacknowledged messages and the broker redelivered them: {}\n{}", out.line(), std::fs::read_to_string(&victim_log).unwrap_or_default());
    assert!(dups <= PREFETCH, "duplicates bounded by the victim's prefetch: {}", out.line());
    assert_eq!(rig.queue_counts(), (0, 0), "the queue is empty and nothing is left unacknowledged");
}

/// The RabbitMQ node is stopped (`rabbitmqctl stop`) while the receiver publishes and two
/// consumers deliver, with a backlog in the queue (the destination slowed), and started again
/// on the same data dir and port. The backlog survives (durable quorum queue, persistent
/// messages), the receiver's rsyslog queue holds what came in meanwhile, the consumers
/// reconnect: every event arrives.
#[test]
fn broker_restart_loses_nothing() {
    let _s = serial();
    let mut rig = Rig::start();
    const N: u64 = 6_000;
    let c1 = rig.consumer("c1");
    let c2 = rig.consumer("c2");
    let feeder = rig.feed(N, 500);
    wait_records(&rig.mock, 500);
    // Slow the destination (2 consumers x 200 records / 2 s < 500/s fed) so the queue holds a
    // backlog when the broker stops.
    rig.mock.set_delay(Duration::from_secs(2));
    let t0 = Instant::now();
    let (ready, unacked) = loop {
        let (r, u) = rig.queue_counts();
        if r >= 300 {
            break (r, u);
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "no backlog in the queue: ready {r}, unacked {u}\n{}", rig.context(&[&c1, &c2]));
        std::thread::sleep(Duration::from_millis(200));
    };
    let sent_at_stop = feeder.sent();
    let delivered_at_stop = rig.mock.accepted_records().len();
    let t_stop = Instant::now();
    rig.rabbit.stop();
    std::thread::sleep(Duration::from_secs(3));
    let sent_while_down = feeder.sent() - sent_at_stop;
    rig.rabbit.start_again();
    let down_secs = t_stop.elapsed().as_secs_f64();
    // For the record (the figures lag): what the queue holds again after the restart.
    let t1 = Instant::now();
    let ready_after_restart = loop {
        let (r, _) = rig.queue_counts();
        if r > 0 || t1.elapsed() > Duration::from_secs(10) {
            break r;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    rig.mock.set_delay(Duration::ZERO);
    feeder.join();
    let tally = rig.settle(N, &[&c1, &c2]);
    let (ids, republished) = rig.receiver_ids(N);
    let dups = check_ids(&rig.mock.accepted_records(), &ids);
    let (_, d1, log1) = c1.terminate();
    let (_, d2, log2) = c2.terminate();
    let reconnects = field(&log1, "consume: exiting:", "connects") + field(&log2, "consume: exiting:", "connects");
    let out = Outcome::new("scale-amqp-broker-restart", N, &tally, 0..N)
        .with("queue_ready_at_stop", ready)
        .with("queue_unacked_at_stop", unacked)
        .with("queue_ready_after_restart", ready_after_restart)
        .with("delivered_at_stop", delivered_at_stop)
        .with("sent_while_down", sent_while_down)
        .with("broker_down_secs", format!("{down_secs:.1}"))
        .with("consumer1_delivered", d1)
        .with("consumer2_delivered", d2)
        .with("consumer_connects", reconnects)
        .with("republished_by_receiver", republished)
        .with("extra_copies_same_id", dups);
    out.print();
    assert_eq!(out.lost(), 0, "{}", out.line());
    assert!(reconnects >= 4, "both consumers connected again after the restart: {}", out.line());
    assert!(dups <= 2 * PREFETCH, "duplicates bounded by what the consumers held unacknowledged: {}", out.line());
}

/// The destination refuses connections for 30 s mid-stream: the consumers retry, take nothing
/// new beyond their prefetch (the backlog waits in the queue), and deliver everything once it
/// is back; nothing is acknowledged before it is delivered.
#[test]
fn destination_down_30s_loses_nothing() {
    let _s = serial();
    let rig = Rig::start();
    const N: u64 = 6_000;
    let c1 = rig.consumer("c1");
    let c2 = rig.consumer("c2");
    let feeder = rig.feed(N, 1_000);
    wait_records(&rig.mock, 500);
    let before_stop = rig.mock.accepted_records().len();
    rig.mock.refuse_connections();
    // A request the server was already processing may still complete (and its client, cut off
    // from the answer, retries it: a duplicate with the same id); from then on nothing gets in.
    std::thread::sleep(Duration::from_secs(1));
    let at_stop = rig.mock.accepted_records().len();
    std::thread::sleep(Duration::from_secs(14));
    let (ready_mid, unacked_mid) = rig.queue_counts();
    std::thread::sleep(Duration::from_secs(15));
    let during = rig.mock.accepted_records().len();
    rig.mock.listen_again();
    feeder.join();
    let tally = rig.settle(N, &[&c1, &c2]);
    let (ids, _) = rig.receiver_ids(N);
    let dups = check_ids(&rig.mock.accepted_records(), &ids);
    let (_, d1, log1) = c1.terminate();
    let (_, d2, log2) = c2.terminate();
    let out = Outcome::new("scale-amqp-destination-down-30s", N, &tally, 0..N)
        .with("accepted_before_stop", before_stop)
        .with("completed_in_flight_at_stop", at_stop - before_stop)
        .with("accepted_while_down", during - at_stop)
        .with("queue_ready_while_down", ready_mid)
        .with("queue_unacked_while_down", unacked_mid)
        .with("consumer1_delivered", d1)
        .with("consumer2_delivered", d2)
        .with("retries_logged", log1.matches("retrying in").count() + log2.matches("retrying in").count())
        .with("extra_copies_same_id", dups);
    out.print();
    assert_eq!(during, at_stop, "nothing accepted while down");
    assert_eq!(out.lost(), 0, "{}", out.line());
    assert!(unacked_mid <= 2 * PREFETCH, "each consumer holds at most its prefetch unacknowledged: {}", out.line());
    assert!(ready_mid > 0, "the backlog waited in the queue: {}", out.line());
    assert!(d1 > 0 && d2 > 0, "both consumers delivered: {}", out.line());
}

/// SIGTERM while a batch is being delivered (destination slowed): the attempt finishes, the
/// batch is acknowledged, the process exits; what it had not delivered goes back to the queue
/// at once and a second consumer delivers it. Every event exactly once: a clean stop makes no
/// duplicate.
#[test]
fn consumer_sigterm_drains_cleanly() {
    let _s = serial();
    let rig = Rig::start();
    const N: u64 = 3_000;
    let c1 = rig.consumer("c1");
    let feeder = rig.feed(N, 3_000);
    wait_records(&rig.mock, 400);
    rig.mock.set_delay(Duration::from_millis(800));
    let t0 = Instant::now();
    while c1.in_flight() == 0 {
        assert!(t0.elapsed() < Duration::from_secs(20), "no batch in flight\n{}", rig.context(&[&c1]));
        std::thread::sleep(Duration::from_millis(100));
    }
    let in_flight = c1.in_flight();
    let t_term = Instant::now();
    let (m1, d1, log1) = c1.terminate();
    let exit_secs = t_term.elapsed().as_secs_f64();
    rig.mock.set_delay(Duration::ZERO);
    feeder.join();
    let c2 = rig.consumer("c2");
    let tally = rig.settle(N, &[&c2]);
    let (ids, _) = rig.receiver_ids(N);
    let dups = check_ids(&rig.mock.accepted_records(), &ids);
    let (m2, d2, log2) = c2.terminate();
    let out = Outcome::new("scale-amqp-consumer-sigterm", N, &tally, 0..N)
        .with("in_flight_at_sigterm", in_flight)
        .with("exit_secs", format!("{exit_secs:.1}"))
        .with("first_messages", m1)
        .with("first_delivered", d1)
        .with("first_acks", field(&log1, "consume: exiting:", "acks"))
        .with("first_abandoned_at_exit", field(&log1, "consume: exiting:", "abandoned_at_exit"))
        .with("second_messages", m2)
        .with("second_delivered", d2)
        .with("second_redelivered", field(&log2, "consume: exiting:", "redelivered"))
        .with("extra_copies_same_id", dups);
    out.print();
    assert_eq!(out.lost(), 0, "{}", out.line());
    assert_eq!(dups, 0, "what the first consumer delivered it acknowledged before exiting: {}", out.line());
    assert_eq!(d1 + d2, N, "{}", out.line());
}
