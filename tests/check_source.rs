//! `check` on a consume configuration validates its `[source]` (either kind: errors name the key
//! and its line, exit 2; its password file is read, as start-up reads it) and, with `--connect`,
//! reaches it: for `type = "amqp"` a real RabbitMQ node (`tests/support/rabbitmq.rs`) must have
//! the queue (a passive declare; exit 1 naming the queue until it exists, then 0 with its depth);
//! for `type = "kafka"` a broker that does not answer is exit 1.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use lapin::ExchangeKind;
use support::config::{path_value, ConfigToml};
use support::rabbitmq::{RabbitMq, Reader};
use support::scenario::BROKER;

fn check(cfg: &Path, connect: bool) -> (i32, String) {
    let mut cmd = Command::new(BROKER);
    cmd.args(["check", "--config"]).arg(cfg);
    if connect {
        cmd.arg("--connect");
    }
    let Output { status, stdout, stderr } = cmd.output().unwrap();
    (status.code().unwrap_or(-1), format!("{}{}", String::from_utf8_lossy(&stdout), String::from_utf8_lossy(&stderr)))
}

fn file_destination(dir: &Path) -> ConfigToml {
    ConfigToml::file(&dir.join("out.ndjson")).dead_letter(&dir.join("dead.ndjson")).journal_enabled(false)
}

fn amqp_source(cfg: ConfigToml, port: u16, queue: &str) -> ConfigToml {
    cfg.set("source", "type", "amqp").set("source", "server", "127.0.0.1").set("source", "port", i64::from(port)).set("source", "queue", queue).set("source", "timeout_secs", 5)
}

/// Without a broker: each bad value is exit 2 with its key and line; a missing password file
/// is exit 2 too (read as `consume` start-up reads it).
#[test]
fn source_errors_name_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = amqp_source(file_destination(d), 5672, "q");
    for (key, value, needle) in [
        ("queue", toml::Value::from("a b"), "not allowed"),
        ("prefetch", toml::Value::from(0), "must be 1 to 65535"),
        ("bogus", toml::Value::from(1), "bogus"),
    ] {
        let cfg = base.clone().set("source", key, value);
        let line = cfg.line_of("source", key);
        let (code, out) = check(&cfg.write(d.join("c.toml")), false);
        assert_eq!(code, 2, "{key}: {out}");
        assert!(out.contains(needle) && out.contains(&format!("line {line}")), "{key}: line {line}, {needle:?}: {out}");
    }
    let kafka = file_destination(d)
        .set("source", "bootstrap_servers", toml::Value::Array(vec!["kafka:0".into()]))
        .set("source", "topic", "t")
        .set("source", "group_id", "g");
    let (code, out) = check(&kafka.clone().write(d.join("k.toml")), false);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("source.bootstrap_servers") || out.contains("[source] bootstrap_servers"), "{out}");
    assert!(out.contains(&format!("line {}", kafka.line_of("source", "bootstrap_servers"))), "{out}");
    let missing = base.clone().set("source", "user", "u").set("source", "password_file", path_value(&d.join("nope")));
    let (code, out) = check(&missing.write(d.join("pw.toml")), false);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("[source] password_file") && out.contains("nope"), "{out}");
    let (code, out) = check(&base.write(d.join("ok.toml")), false);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("[source] is valid (type = amqp"), "{out}");
}

/// `--connect`: the queue must exist (exit 1 naming it), then exit 0 with what it holds; a
/// Kafka source whose broker does not answer is exit 1.
#[test]
fn connect_proves_the_queue_or_topic() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rabbit = RabbitMq::start();
    let cfg = amqp_source(file_destination(d), rabbit.port, "qab-envelopes").write(d.join("consume.toml"));
    let (code, out) = check(&cfg, true);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("[source] unreachable") && out.contains("qab-envelopes") && out.contains("NOT_FOUND"), "{out}");
    let reader = Reader::connect(&rabbit.url("/"));
    reader.exchange("qab-x", ExchangeKind::Topic);
    reader.queue("qab-envelopes", "qab-x", "#");
    reader.close();
    let (code, out) = check(&cfg, true);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("the queue exists (0 messages ready, 0 consumers)"), "{out}");
    let closed = support::free_port();
    let wrong_port = amqp_source(file_destination(d), closed, "qab-envelopes").write(d.join("closed.toml"));
    let (code, out) = check(&wrong_port, true);
    assert_eq!(code, 1, "{out}");
    let kafka = file_destination(d)
        .set("source", "bootstrap_servers", toml::Value::Array(vec![format!("127.0.0.1:{closed}").into()]))
        .set("source", "topic", "t")
        .set("source", "group_id", "g")
        .write(d.join("kafka.toml"));
    let (code, out) = check(&kafka, true);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("[source] unreachable") && out.contains("no metadata"), "{out}");
}
