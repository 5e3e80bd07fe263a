//! Zero loss with the `kafka` destination through a real rsyslogd (the shipped omprog action
//! shape, its disk-assisted queue, the envelope template) in front of a real Kafka-protocol
//! broker (`tansu`, memory storage). Each scenario sends N = 5,000 numbered events on one TCP
//! connection, injects a fault, reads the topic back with an independent consumer (Python
//! kafka-python) and prints the same result line as `tests/reliability.rs`:
//!
//! `reliability: scenario=<name> sent=N delivered=N duplicates=N dead_lettered=N lost=0 [facts]`
//!
//! (a) the broker stopped for 20 s mid-stream and started again, (b) our binary SIGKILLed
//! mid-transaction (the journal; rsyslog resends), (c) records too large for `message_max_bytes`
//! among good ones: seen in the stats line and the dead-letter file, the rest delivered.
//!
//! **What "nothing lost" means with a broker that forgets.** tansu's memory storage does not
//! survive a restart, so (a) counts an event as delivered when it was in the topic of either
//! broker run: before the stop, every program instance is frozen (SIGSTOP; rsyslog keeps
//! queueing), the broker is given a second to finish the requests already sent, the whole topic
//! is read, and only then is the broker stopped and the instances let go (SIGCONT). So every
//! record a broker acknowledged before the stop is in the first read, and every event not in
//! it must arrive in the second run. An acknowledgement lost with the stopped broker makes a
//! duplicate, never a gap. The restarted broker no longer knows the producer's id (it answers
//! `PRODUCER_FENCED`): the program replaces its producer and retries (`producers_replaced=`).

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::kafka::{read_all, try_read_all, Tansu};
use support::rsyslog::Rsyslogd;
use support::scenario::{
    adopted_lines, broker_children, dead_letters, find_streaming, good_lines, log_lines_with, logged_pids,
    sigkill, wait_all, with_common, write_config, Action, Feeder, Outcome, Pace,
};
use support::config::ConfigToml;
use support::brokers::{wait_sent, wait_stat_of_all_instances};
use support::sender::{event_number, syslog_line, Tally};

const N: u64 = 5_000;
const TOPIC: &str = "qab";

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn kafka_config(dir: &Path, tansu: &Tansu, more: impl FnOnce(ConfigToml) -> ConfigToml) -> PathBuf {
    let cfg = ConfigToml::destination("kafka")
        .dest("bootstrap_servers", toml::Value::Array(vec![tansu.bootstrap().into()]))
        .dest("topic", TOPIC)
        .dest("timeout_secs", 10);
    write_config(&dir.join("kafka.toml"), &with_common(more(cfg), dir, true).text())
}

fn start_rsyslogd(action: &Action) -> Rsyslogd {
    let body = support::scenario::rsyslog_body(&[("cluster_alpha", "alpha")], std::slice::from_ref(action), "");
    Rsyslogd::builder(&body).tcp_ruleset("cluster_alpha").stop_timeout(Duration::from_secs(30)).start()
}

fn values(tansu: &Tansu) -> Vec<String> {
    // A read can fail while the broker restarts: that poll sees nothing new.
    try_read_all(&tansu.bootstrap(), TOPIC).map(|r| r.into_iter().map(|r| r.value).collect()).unwrap_or_default()
}

fn context(r: &Rsyslogd, tansu: &Tansu, log: &Path) -> String {
    format!("{}\n---- {}:\n{}\n{}", r.diagnostics(), log.display(), support::file_text_for_panic(log), tansu.diagnostics())
}

fn finish(out: Outcome) {
    out.print();
    assert_eq!(out.lost(), 0, "{}", out.line());
}

fn signal(pids: &[u32], sig: i32) {
    for &p in pids {
        // SAFETY: kill(2) on pids just found among rsyslogd's children.
        unsafe { libc::kill(p as libc::pid_t, sig) };
    }
}

#[test]
fn kafka_broker_stopped_for_20s_loses_nothing() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut tansu = Tansu::start(&[(TOPIC, 3)]);
    let action = Action::new("qab_kafka", &kafka_config(dir.path(), &tansu, |c| c), dir.path());
    let mut r = start_rsyslogd(&action);
    let rpid = r.pid().expect("rsyslogd runs");
    let feeder = Feeder::start(r.addr(), good_lines(0..N), Pace::PerSecond(500));
    wait_sent(&feeder, 1_000);
    // Freeze every instance, and every instance rsyslog starts later (a second worker starts
    // once 1,000 lines wait), until the broker is down: nothing is produced while the topic is
    // read, so what the read sees is all the first broker run will ever hold.
    let frozen: Arc<Mutex<Vec<u32>>> = Arc::default();
    let thaw = Arc::new(AtomicBool::new(false));
    let freezer = {
        let (frozen, thaw) = (frozen.clone(), thaw.clone());
        std::thread::spawn(move || {
            while !thaw.load(Ordering::SeqCst) {
                let mut f = frozen.lock().unwrap();
                let new: Vec<u32> = broker_children(rpid).into_iter().filter(|p| !f.contains(p)).collect();
                signal(&new, libc::SIGSTOP);
                f.extend(new);
                drop(f);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    while frozen.lock().unwrap().is_empty() {
        std::thread::sleep(Duration::from_millis(50));
    }
    // The broker finishes what was sent before the freeze (under load it may still be storing
    // a produce request whose acknowledgement our frozen producer will read after the thaw):
    // read until two reads a second apart agree.
    let mut before = read_all(&tansu.bootstrap(), TOPIC);
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(1000));
        let again = read_all(&tansu.bootstrap(), TOPIC);
        let stable = again.len() == before.len();
        before = again;
        if stable {
            break;
        }
    }
    let before_stop: Vec<String> = before.into_iter().map(|r| r.value).collect();
    tansu.stop();
    thaw.store(true, Ordering::SeqCst);
    freezer.join().unwrap();
    let frozen = frozen.lock().unwrap().clone();
    signal(&frozen, libc::SIGCONT);
    let down_at = feeder.sent();
    std::thread::sleep(Duration::from_secs(20));
    let sent_while_down = feeder.sent() - down_at;
    tansu.start_again();
    feeder.join();
    let tally = wait_all(
        Duration::from_secs(180),
        0..N,
        || {
            let mut all = before_stop.clone();
            all.extend(values(&tansu));
            all
        },
        || context(&r, &tansu, &action.output),
    );
    r.assert_running();
    let first_run = Tally::of(&before_stop).distinct();
    assert!(first_run > 0 && (first_run as u64) < N, "the stop fell mid-stream ({first_run} events before it)");
    finish(
        Outcome::new("kafka-broker-down-20s", N, &tally, 0..N)
            .with("in_first_broker_run", first_run)
            .with("sent_while_down", sent_while_down)
            .with("instances_frozen", frozen.len())
            .with("retries_logged", log_lines_with(&action.output, "retrying in").len())
            .with("producers_replaced", log_lines_with(&action.output, "a new producer takes over").len()),
    );
}

#[test]
fn kafka_sigkill_mid_transaction_loses_nothing_with_the_journal() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let tansu = Tansu::start(&[(TOPIC, 3)]);
    let action = Action::new("qab_kafka", &kafka_config(dir.path(), &tansu, |c| c), dir.path());
    let mut r = start_rsyslogd(&action);
    let rpid = r.pid().expect("rsyslogd runs");
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
    let tally = wait_all(Duration::from_secs(120), 0..N, || values(&tansu), || context(&r, &tansu, &action.output));
    r.assert_running();
    assert!(kills >= 3, "at least 3 kills, got {kills}");
    finish(
        Outcome::new("kafka-sigkill-journal", N, &tally, 0..N)
            .with("kills", kills)
            .with("kills_while_streaming", streaming_kills)
            .with("program_starts", logged_pids(&action.output).len())
            .with("journal_lines_adopted", adopted_lines(&action.output)),
    );
}

#[test]
fn kafka_records_too_large_are_dead_lettered_and_counted() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let tansu = Tansu::start(&[(TOPIC, 3)]);
    let action = Action::new("qab_kafka", &kafka_config(dir.path(), &tansu, |c| c.dest("message_max_bytes", 4000)), dir.path());
    let mut r = start_rsyslogd(&action);
    // Every 10th event (n % 10 == 3) has a 6,000-byte path: too large for message_max_bytes.
    let big = |n: u64| n % 10 == 3;
    let mut lines = good_lines(0..N);
    for n in (0..N).filter(|&n| big(n)) {
        let body = format!("10.0.0.1,\"AD\\alice\",smb2,fs_write_data,ok,{n},\"/share/{}/file-{n}.txt\",\"\"", "d".repeat(6000));
        lines[n as usize] = syslog_line(&body).into_bytes();
    }
    let feeder = Feeder::start(r.addr(), lines, Pace::PerSecond(2_000));
    feeder.join();
    let dead_path = dir.path().join("dead-letter.ndjson");
    let small: Vec<u64> = (0..N).filter(|&n| !big(n)).collect();
    let t0 = Instant::now();
    let (tally, dead) = loop {
        let tally = Tally::of(values(&tansu));
        let dead = dead_letters(&dead_path);
        if small.iter().all(|n| tally.counts.contains_key(n)) && dead.len() as u64 >= N / 10 {
            break (tally, dead);
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "{} delivered, {} dead-lettered\n{}", tally.distinct(), dead.len(), context(&r, &tansu, &action.output));
        std::thread::sleep(Duration::from_millis(300));
    };
    r.assert_running();
    let mut dead_numbers: Vec<u64> = dead.iter().filter_map(|e| event_number(e["record"].as_str()?)).collect();
    dead_numbers.sort();
    dead_numbers.dedup();
    assert_eq!(dead_numbers, (0..N).filter(|&n| big(n)).collect::<Vec<_>>(), "every oversized event is in the dead-letter file");
    assert!(dead.iter().all(|e| e["reason"].as_str().is_some_and(|r| r.contains("too large")) && e["kind"] == "rejected"), "{:?}", dead.first());
    assert!(tally.counts.keys().all(|&n| !big(n)), "no oversized event reached the topic");
    // The last stats line of each instance (by pid), summed, counts every dead-lettered record.
    let counted = wait_stat_of_all_instances(&action.output, "dead_lettered", N / 10);
    let mut out = Outcome::new("kafka-record-too-large", N, &tally, 0..N);
    out.dead_lettered = dead_numbers.len() as u64;
    let out = out.with("dead_lettered_in_stats", counted).with("message_max_bytes", 4000);
    assert!(counted >= N / 10, "stats count every dead-lettered record ({counted})");
    finish(out);
}
