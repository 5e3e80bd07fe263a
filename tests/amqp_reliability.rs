//! Zero loss with the `amqp` destination through a real rsyslogd (the shipped omprog action,
//! its disk-assisted queue, the envelope template) in front of a real RabbitMQ node. Each
//! scenario sends N = 5,000 numbered events on one TCP connection, injects a fault, reads the
//! queue back with an independent client and prints the same result line as
//! `tests/reliability.rs`:
//!
//! `reliability: scenario=<name> sent=N delivered=N duplicates=N dead_lettered=N lost=0 [facts]`
//!
//! (a) the broker stopped for 20 s mid-stream, (b) every connection closed by the broker twice,
//! (c) our binary SIGKILLed mid-transaction (the journal), (d) unroutable messages (mandatory,
//! no binding for half the events): seen in the stats line and the dead-letter file.
//! Scenarios run one at a time, each with its own broker node.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lapin::ExchangeKind;
use support::config::ConfigToml;
use support::rabbitmq::{RabbitMq, Reader};
use support::rsyslog::Rsyslogd;
use support::scenario::{
    adopted_lines, broker_children, dead_letters, find_streaming, good_lines, log_lines_with, logged_pids, rsyslog_body,
    sigkill, wait_all, with_common, write_config, Action, Feeder, Outcome, Pace,
};
use support::brokers::{wait_sent, wait_stat_of_all_instances};
use support::sender::{event_number, Tally};

const N: u64 = 5_000;
const EXCHANGE: &str = "qab";
const QUEUE: &str = "qab-events";

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A broker with a durable topic exchange and a durable queue bound with `binding`.
fn broker(binding: &str) -> RabbitMq {
    let rabbit = RabbitMq::start();
    let r = Reader::connect(&rabbit.url("/"));
    r.exchange(EXCHANGE, ExchangeKind::Topic);
    r.queue(QUEUE, EXCHANGE, binding);
    r.close();
    rabbit
}

/// `more` adds `[destination]` keys.
fn amqp_config(dir: &Path, rabbit: &RabbitMq, journal: bool, more: impl FnOnce(ConfigToml) -> ConfigToml) -> PathBuf {
    let cfg = ConfigToml::amqp("127.0.0.1", rabbit.port).dest("exchange", EXCHANGE).dest("heartbeat_secs", 5).dest("timeout_secs", 10);
    write_config(&dir.join("amqp.toml"), &with_common(more(cfg), dir, journal).text())
}

fn start_rsyslogd(action: &Action) -> Rsyslogd {
    let body = rsyslog_body(&[("cluster_alpha", "alpha")], std::slice::from_ref(action), "");
    Rsyslogd::builder(&body).tcp_ruleset("cluster_alpha").stop_timeout(Duration::from_secs(30)).start()
}

/// Bodies read so far; a reader that lost its connection is replaced at the next poll.
struct Collected {
    url: String,
    reader: Option<Reader>,
    bodies: Vec<String>,
}

impl Collected {
    fn new(rabbit: &RabbitMq) -> Collected {
        Collected { url: rabbit.url("/"), reader: None, bodies: Vec::new() }
    }
    fn poll(&mut self) -> Vec<String> {
        let reader = self.reader.get_or_insert_with(|| Reader::connect(&self.url));
        let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reader.drain(QUEUE)));
        match got {
            Ok(msgs) => self.bodies.extend(msgs.into_iter().map(|m| m.body)),
            Err(_) => self.reader = None,
        }
        self.bodies.clone()
    }
}

fn context(r: &Rsyslogd, rabbit: &RabbitMq, log: &Path) -> String {
    format!("{}\n---- {}:\n{}\n{}", r.diagnostics(), log.display(), support::file_text_for_panic(log), rabbit.diagnostics())
}

fn finish(out: Outcome) {
    out.print();
    assert_eq!(out.lost(), 0, "{}", out.line());
}

#[test]
fn amqp_broker_stopped_for_20s_loses_nothing() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut rabbit = broker("#");
    let action = Action::new("qab_amqp", &amqp_config(dir.path(), &rabbit, true, |c| c), dir.path());
    let mut r = start_rsyslogd(&action);
    let mut got = Collected::new(&rabbit);
    let feeder = Feeder::start(r.addr(), good_lines(0..N), Pace::PerSecond(500));
    wait_sent(&feeder, 1_000);
    got.poll();
    got.reader = None;
    rabbit.stop();
    let down_at = feeder.sent();
    std::thread::sleep(Duration::from_secs(20));
    let sent_while_down = feeder.sent() - down_at;
    rabbit.start_again();
    feeder.join();
    let tally = wait_all(Duration::from_secs(120), 0..N, || got.poll(), || context(&r, &rabbit, &action.output));
    r.assert_running();
    let reconnects = log_lines_with(&action.output, "connected to").len();
    finish(Outcome::new("amqp-broker-down-20s", N, &tally, 0..N).with("sent_while_down", sent_while_down).with("connects", reconnects));
}

#[test]
fn amqp_connections_closed_by_the_broker_lose_nothing() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let rabbit = broker("#");
    let action = Action::new("qab_amqp", &amqp_config(dir.path(), &rabbit, true, |c| c), dir.path());
    let mut r = start_rsyslogd(&action);
    let mut got = Collected::new(&rabbit);
    let feeder = Feeder::start(r.addr(), good_lines(0..N), Pace::PerSecond(1_000));
    // Each cut must hit a live connection, or the scenario would test nothing: wait until the
    // program has connected since the last cut (on a loaded machine rsyslog may start it late,
    // and rabbitmqctl itself takes seconds).
    let connects = || log_lines_with(&action.output, "connected to").len();
    let mut cuts = 0;
    for at in [1_000, 2_500, 4_000] {
        wait_sent(&feeder, at);
        let t0 = Instant::now();
        while connects() <= cuts && t0.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(50));
        }
        if connects() > cuts {
            rabbit.close_all_connections();
            cuts += 1;
        }
    }
    assert!(cuts >= 2, "at least two cuts hit a live connection ({cuts})");
    feeder.join();
    let tally = wait_all(Duration::from_secs(120), 0..N, || got.poll(), || context(&r, &rabbit, &action.output));
    r.assert_running();
    let connects = connects();
    assert!(connects > 1, "the program reconnected after the cuts ({connects} connects)");
    finish(Outcome::new("amqp-connections-closed", N, &tally, 0..N).with("cuts", cuts).with("connects", connects));
}

#[test]
fn amqp_sigkill_mid_transaction_loses_nothing_with_the_journal() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let rabbit = broker("#");
    let action = Action::new("qab_amqp", &amqp_config(dir.path(), &rabbit, true, |c| c), dir.path());
    let mut r = start_rsyslogd(&action);
    let rpid = r.pid().expect("rsyslogd runs");
    let mut got = Collected::new(&rabbit);
    let feeder = Feeder::start(r.addr(), good_lines(0..N), Pace::PerSecond(1_000));
    wait_sent(&feeder, 500);
    let (mut kills, mut streaming_kills) = (0usize, 0usize);
    let deadline = Instant::now() + Duration::from_secs(30);
    while kills < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(700));
        let kids = broker_children(rpid);
        if kids.is_empty() {
            continue;
        }
        let streaming = find_streaming(&kids, Duration::from_millis(500));
        sigkill(streaming.unwrap_or(kids[0]));
        kills += 1;
        streaming_kills += streaming.is_some() as usize;
    }
    feeder.join();
    let tally = wait_all(Duration::from_secs(120), 0..N, || got.poll(), || context(&r, &rabbit, &action.output));
    r.assert_running();
    assert!(kills >= 3, "at least 3 kills, got {kills}");
    finish(
        Outcome::new("amqp-sigkill-journal", N, &tally, 0..N)
            .with("kills", kills)
            .with("kills_while_streaming", streaming_kills)
            .with("program_starts", logged_pids(&action.output).len())
            .with("journal_lines_adopted", adopted_lines(&action.output)),
    );
}

#[test]
fn amqp_unroutable_messages_are_dead_lettered_and_counted() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    // Only events with a CSV body are bound; the JSON half (odd numbers) is unroutable.
    let rabbit = broker("qumulo.alpha.csv");
    let more = |c: ConfigToml| c.dest("routing_key", "qumulo.{cluster}.{source_format}").dest("max_returns", 2);
    let action = Action::new("qab_amqp", &amqp_config(dir.path(), &rabbit, true, more), dir.path());
    let mut r = start_rsyslogd(&action);
    let mut got = Collected::new(&rabbit);
    let feeder = Feeder::start(r.addr(), good_lines(0..N), Pace::PerSecond(2_000));
    feeder.join();
    let dead_path = dir.path().join("dead-letter.ndjson");
    let evens: Vec<u64> = (0..N).filter(|n| n % 2 == 0).collect();
    let t0 = Instant::now();
    let (tally, dead) = loop {
        let tally = Tally::of(got.poll());
        let dead: Vec<serde_json::Value> = dead_letters(&dead_path);
        let delivered_all = evens.iter().all(|n| tally.counts.contains_key(n));
        if delivered_all && dead.len() as u64 >= N / 2 {
            break (tally, dead);
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "{} delivered, {} dead-lettered\n{}", tally.distinct(), dead.len(), context(&r, &rabbit, &action.output));
        std::thread::sleep(Duration::from_millis(300));
    };
    r.assert_running();
    let mut dead_numbers: Vec<u64> = dead.iter().filter_map(|e| event_number(e["record"].as_str()?)).collect();
    dead_numbers.sort();
    dead_numbers.dedup();
    assert_eq!(dead_numbers, (0..N).filter(|n| n % 2 == 1).collect::<Vec<_>>(), "every JSON-bodied event is in the dead-letter file");
    assert!(dead.iter().all(|e| e["reason"].as_str().is_some_and(|r| r.contains("NO_ROUTE") && r.contains("returned 2 times"))));
    assert!(tally.counts.keys().all(|n| n % 2 == 0), "no unroutable event reached the queue");
    // The stats lines (every second, per program instance) count the returns: the last figure
    // of each instance (its pid), summed, is at least 2 per dead-lettered message.
    // A stats line comes once a second: the last returns may not be in the log yet, so wait for
    // it (the counters themselves are what is checked).
    let unroutable = wait_stat_of_all_instances(&action.output, "unroutable", N);
    let mut out = Outcome::new("amqp-unroutable", N, &tally, 0..N);
    out.dead_lettered = dead_numbers.len() as u64;
    let out = out.with("unroutable_returns", unroutable).with("max_returns", 2);
    assert!(unroutable >= N, "stats count every return ({unroutable})");
    finish(out);
}
