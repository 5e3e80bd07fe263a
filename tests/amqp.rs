//! The `amqp` destination against a real RabbitMQ node (`tests/support/rabbitmq.rs`), the
//! program driven by `OmprogDriver` as rsyslog's omprog drives it. Messages are read back with
//! an independent client and checked one by one: each event once, message id = the envelope's
//! uuid, routing key from the template, persistent, content type, timestamp; events of a
//! cluster with an override go to its own vhost and exchange; unroutable messages end in the
//! dead-letter file after `max_returns` returns and are counted in the stats line;
//! `check --connect` reports the exchange. One node serves every step (it boots in seconds,
//! but two cores are shared).

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use lapin::ExchangeKind;
use support::brokers::{envelope, finish, start, stat, uuid, BIN, EVENT_TIME};
use support::config::ConfigToml;
use support::omprog_driver::Reply;
use support::rabbitmq::{Msg, RabbitMq, Reader};
use support::scenario::{dead_letters, write_config};
use support::sender::event_number;

/// The `amqp` destination at `rabbit`, `more` adding its keys (and per-cluster tables); the
/// journal and dead-letter file `<name>-…` in `dir`, quick retries.
fn amqp_config(dir: &Path, name: &str, rabbit: &RabbitMq, more: impl FnOnce(ConfigToml) -> ConfigToml) -> ConfigToml {
    more(ConfigToml::amqp("127.0.0.1", rabbit.port))
        .journal_dir(&dir.join(format!("{name}-journal")))
        .dead_letter(&dir.join(format!("{name}-dead.ndjson")))
        .backoff_ms(50, 200)
}

/// [`amqp_config`] written to `<name>.toml` in `dir`.
fn config(dir: &Path, name: &str, rabbit: &RabbitMq, more: impl FnOnce(ConfigToml) -> ConfigToml) -> PathBuf {
    write_config(&dir.join(format!("{name}.toml")), &amqp_config(dir, name, rabbit, more).text())
}

fn by_number(msgs: &[Msg]) -> BTreeMap<u64, Vec<&Msg>> {
    let mut m: BTreeMap<u64, Vec<&Msg>> = BTreeMap::new();
    for msg in msgs {
        let n = event_number(&msg.body).unwrap_or_else(|| panic!("no event number in {msg:?}"));
        m.entry(n).or_default().push(msg);
    }
    m
}

#[test]
fn amqp_destination_against_a_real_broker() {
    let mut rabbit = RabbitMq::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    rabbit.add_vhost("east");
    let main = Reader::connect(&rabbit.url("/"));
    main.exchange("qab", ExchangeKind::Topic);
    main.queue("qab-all", "qab", "#");
    let east = Reader::connect(&rabbit.url("east"));
    east.exchange("qab-east", ExchangeKind::Topic);
    east.queue("east-all", "qab-east", "#");

    // 1. Every event once, with its properties; cluster "east" through its own vhost/exchange.
    let cfg = config(d, "props", &rabbit, |c| {
        c.dest("exchange", "qab")
            .cluster("east", "vhost", "east")
            .cluster("east", "exchange", "qab-east")
            .cluster("east", "routing_key", "east.{source_format}.{action}")
    });
    let mut p = start(&cfg);
    let mut lines: Vec<String> = (0..100).map(|n| envelope("alpha", n)).collect();
    lines.extend((100..160).map(|n| envelope("east", n)));
    assert_eq!(p.transaction(&lines), Reply::Ok, "{}", p.diagnostics());
    // A batch spanning both connections, in one transaction, again.
    let mixed: Vec<String> = (160..200).map(|n| envelope(if n % 2 == 0 { "alpha" } else { "east" }, n)).collect();
    assert_eq!(p.transaction(&mixed), Reply::Ok, "{}", p.diagnostics());
    let stderr = finish(p);
    assert_eq!(stat(&stderr, "delivered"), 200, "{stderr}");
    assert_eq!(stat(&stderr, "unroutable"), 0, "{stderr}");

    let got = main.drain("qab-all");
    let got_east = east.drain("east-all");
    let alpha = by_number(&got);
    let eastm = by_number(&got_east);
    let want_alpha: Vec<u64> = (0..100).chain((160..200).filter(|n| n % 2 == 0)).collect();
    let want_east: Vec<u64> = (100..160).chain((160..200).filter(|n| n % 2 == 1)).collect();
    assert_eq!(alpha.keys().copied().collect::<Vec<_>>(), want_alpha, "alpha: {} messages", got.len());
    assert_eq!(eastm.keys().copied().collect::<Vec<_>>(), want_east, "east: {} messages", got_east.len());
    for (n, msgs) in alpha.iter().chain(eastm.iter()) {
        assert_eq!(msgs.len(), 1, "event {n} arrived {} times", msgs.len());
        let m = msgs[0];
        let body: serde_json::Value = serde_json::from_str(&m.body).unwrap_or_else(|e| panic!("{e}: {}", m.body));
        let cluster = body["cluster"].as_str().unwrap();
        let fmt = if n % 2 == 0 { "csv" } else { "json" };
        let key = if cluster == "east" { format!("east.{fmt}.write") } else { "qumulo.alpha.smb2".to_string() };
        assert_eq!(m.routing_key, key, "event {n}: {m:?}");
        assert_eq!(m.exchange, if cluster == "east" { "qab-east" } else { "qab" });
        assert_eq!(m.message_id.as_deref(), Some(uuid(*n).as_str()), "message id = event id");
        assert_eq!(body["id"].as_str(), Some(uuid(*n).as_str()), "the body's id is the message id");
        assert_eq!(m.delivery_mode, Some(2), "persistent");
        assert_eq!(m.content_type.as_deref(), Some("application/json"));
        assert_eq!(m.timestamp, Some(EVENT_TIME), "event {n}: the event's time");
        assert_eq!(m.app_id.as_deref(), Some("qumulo-audit-broker"));
        assert!(!m.body.ends_with('\n'), "the body is the record alone");
    }

    // 2. CEF: text/plain bodies.
    let cfg = config(d, "cef", &rabbit, |c| c.dest("exchange", "qab").format("cef").dest("routing_key", "cef"));
    let mut p = start(&cfg);
    assert_eq!(p.transaction([envelope("alpha", 7)]), Reply::Ok, "{}", p.diagnostics());
    finish(p);
    let got = main.drain("qab-all");
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].body.starts_with("CEF:0|"), "{:?}", got[0]);
    assert_eq!((got[0].content_type.as_deref(), got[0].routing_key.as_str()), (Some("text/plain"), "cef"));

    // 3. Unroutable: only CSV-bodied events have a binding; JSON ones come back (mandatory),
    // are retried, and are dead-lettered at their 2nd return. The COMMIT still succeeds.
    main.exchange("qab-sparse", ExchangeKind::Topic);
    main.queue("sparse-csv", "qab-sparse", "qumulo.alpha.csv");
    let cfg = config(d, "unroutable", &rabbit, |c| {
        c.dest("exchange", "qab-sparse").dest("routing_key", "qumulo.{cluster}.{source_format}").dest("max_returns", 2)
    });
    let mut p = start(&cfg);
    let lines: Vec<String> = (0..20).map(|n| envelope("alpha", n)).collect();
    assert_eq!(p.transaction(&lines), Reply::Ok, "{}", p.diagnostics());
    let stderr = finish(p);
    let sparse = main.drain("sparse-csv");
    let got = by_number(&sparse);
    assert_eq!(got.keys().copied().collect::<Vec<_>>(), (0..20).filter(|n| n % 2 == 0).collect::<Vec<_>>());
    let dead = dead_letters(&d.join("unroutable-dead.ndjson"));
    let mut dead_numbers: Vec<u64> = dead.iter().map(|e| event_number(e["record"].as_str().unwrap()).unwrap()).collect();
    dead_numbers.sort();
    assert_eq!(dead_numbers, (0..20).filter(|n| n % 2 == 1).collect::<Vec<_>>(), "{dead:?}");
    for e in &dead {
        let reason = e["reason"].as_str().unwrap();
        assert!(reason.contains("unroutable") && reason.contains("NO_ROUTE") && reason.contains("qumulo.alpha.json"), "{reason}");
        assert!(reason.contains("returned 2 times"), "{reason}");
        assert_eq!(e["kind"], "rejected");
        assert_eq!(e["cluster"], "alpha");
        assert!(e["record"].as_str().unwrap().starts_with('{'), "the record, without our header: {e}");
    }
    assert_eq!(stat(&stderr, "unroutable"), 20, "10 messages returned twice each: {stderr}");
    assert_eq!(stat(&stderr, "dead_lettered"), 10, "{stderr}");
    assert_eq!(stat(&stderr, "delivered"), 10, "{stderr}");

    // 4. check --connect: the exchange exists / is missing / nothing listens.
    let check = |cfg: &Path| {
        let out = Command::new(BIN).args(["check", "--connect", "--config"]).arg(cfg).output().unwrap();
        (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let c_ok = amqp_config(d, "c-ok", &rabbit, |c| c.dest("exchange", "qab").cluster("east", "vhost", "east").cluster("east", "exchange", "qab-east"));
    let (ok, out) = check(&write_config(&d.join("c-ok.toml"), &c_ok.text()));
    assert!(ok && out.matches("the exchange exists").count() == 2, "{out}");
    let (ok, out) = check(&config(d, "c-missing", &rabbit, |c| c.dest("exchange", "no-such-exchange")));
    assert!(!ok && out.contains("NOT_FOUND"), "{out}");
    let (ok, out) = check(&config(d, "c-declare", &rabbit, |c| c.dest("exchange", "no-such-exchange").dest("declare_exchange", true)));
    assert!(ok && out.contains("declare_exchange = true creates it"), "{out}");
    let (ok, out) = check(&config(d, "c-vhost", &rabbit, |c| c.dest("exchange", "qab").dest("vhost", "no-such-vhost")));
    assert!(!ok, "{out}");
    let closed = support::free_port();
    // c-ok with the port closed.
    let (ok, out) = check(&write_config(&d.join("c-closed.toml"), &c_ok.dest("port", i64::from(closed)).text()));
    assert!(!ok && out.contains("Connection refused"), "{out}");

    // 5. declare_exchange and queue: both declared at connect, the queue gets the events.
    let cfg = config(d, "declare", &rabbit, |c| {
        c.dest("exchange", "qab-declared").dest("declare_exchange", true).dest("queue", "qab-declared-q").dest("queue_type", "quorum")
    });
    let mut p = start(&cfg);
    assert_eq!(p.transaction((0..5).map(|n| envelope("alpha", n))), Reply::Ok, "{}", p.diagnostics());
    finish(p);
    let got = main.drain("qab-declared-q");
    assert_eq!(by_number(&got).keys().copied().collect::<Vec<_>>(), (0..5).collect::<Vec<_>>());
    let queues = rabbit.ctl(&["list_queues", "-q", "--no-table-headers", "name", "type", "durable"]);
    assert!(queues.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["qab-declared-q", "quorum", "true"]), "{queues}");

    // 6. The declared queue deleted while the program runs (an operator, a policy's `expires`):
    // the first return makes the next attempt reconnect and declare it again, so the events
    // reach it instead of being returned until the dead-letter file takes them.
    let cfg = config(d, "redeclare", &rabbit, |c| {
        c.dest("exchange", "qab-redeclare").dest("declare_exchange", true).dest("queue", "qab-redeclare-q").dest("max_returns", 2)
    });
    let mut p = start(&cfg);
    assert_eq!(p.transaction((0..5).map(|n| envelope("alpha", n))), Reply::Ok, "{}", p.diagnostics());
    assert_eq!(by_number(&main.drain("qab-redeclare-q")).len(), 5);
    rabbit.ctl(&["delete_queue", "qab-redeclare-q"]);
    assert_eq!(rabbit.queue_depth("qab-redeclare-q", "/"), None, "the queue is gone");
    assert_eq!(p.transaction((5..10).map(|n| envelope("alpha", n))), Reply::Ok, "{}", p.diagnostics());
    let stderr = finish(p);
    let got = main.drain("qab-redeclare-q");
    assert_eq!(by_number(&got).keys().copied().collect::<Vec<_>>(), (5..10).collect::<Vec<_>>(), "{stderr}");
    assert_eq!(stat(&stderr, "dead_lettered"), 0, "{stderr}");
    assert!(dead_letters(&d.join("redeclare-dead.ndjson")).is_empty());

    main.close();
    east.close();
    rabbit.stop();
}
