//! Parsing and validation of whole documents: messages, lines and keys.

use super::*;

#[test]
fn smallest_file_and_http_configs() {
    let c = Config::parse(
        "[destination]\ntype = \"file\"\npath = \"/var/log/qumulo-audit-broker/events.ndjson\"\nformat = \"json\"\n",
    )
    .unwrap();
    assert_eq!(c.kind(), DestinationType::File);
    let c = Config::parse(
        "[destination]\ntype = \"http\"\nurl = \"http://127.0.0.1:8080/ingest\"\npreset = \"ndjson\"\nformat = \"json\"\n",
    )
    .unwrap();
    let Destination::Http(h) = &c.destination else { panic!("{c:?}") };
    assert_eq!(h.preset, HttpPreset::Ndjson);
    assert_eq!(c.batch.max_events, 1000);
}

#[test]
fn unknown_keys_name_key_and_line() {
    let e = Config::parse("[destination]\ntype = \"file\"\npath = \"/x\"\ncolour = \"red\"\n").unwrap_err();
    assert!(e.to_string().contains("line 4"), "{e}");
    assert!(e.to_string().contains("colour"), "{e}");
    let e = Config::parse("[destination]\ntype = \"file\"\npath = \"/x\"\n[batch]\nmax_event = 5\n").unwrap_err();
    assert!(e.to_string().contains("line 5") && e.to_string().contains("max_event"), "{e}");
}

#[test]
fn keys_of_other_types_and_bad_values() {
    let cases = [
        ("[destination]\ntype = \"file\"\npath = \"/x\"\nurl = \"http://a\"\n", "`url` does not apply"),
        ("[destination]\ntype = \"ftp\"\n", "expected \"file\""),
        ("[destination]\ntype = \"file\"\n", "needs `path`"),
        ("[destination]\ntype = \"file\"\npath = \"/x\"\nformat = \"xml\"\n", "format"),
        ("[destination]\ntype = \"http\"\nurl = \"ftp://x\"\n", "http://"),
        ("[destination]\ntype = \"http\"\nurl = \"http://x\"\npreset = \"kafka\"\n", "preset"),
        ("[destination]\ntype = \"http\"\nurl = \"http://x\"\npreset = \"elasticsearch-bulk\"\nformat = \"cef\"\n", "JSON format"),
        ("[destination]\ntype = \"syslog\"\naddress = \"nohostport\"\n", "host:port"),
        ("[destination]\ntype = \"syslog\"\naddress = \"h:514\"\nprotocol = \"sctp\"\n", "protocol"),
        ("[destination]\ntype = \"file\"\npath = \"/x\"\n[cluster]\nsource = \"fixed\"\n", "needs `name`"),
        ("[destination]\ntype = \"file\"\npath = \"/x\"\n[batch]\nmax_events = 0\n", "max_events"),
        ("[destination]\ntype = \"file\"\npath = \"/x\"\n[journal]\nmax_bytes = 1000\n", "[journal] max_bytes must be at least"),
    ];
    for (text, want) in cases {
        let e = Config::parse(text).unwrap_err();
        assert!(e.to_string().contains(want), "{text:?}: {e}");
    }
}

const FILE: &str = "[destination]\ntype = \"file\"\npath = \"/x\"\n";

/// Every refused value: the error names the key and its line, says what is accepted, and is
/// one line.
#[test]
fn refused_values_name_key_and_line() {
    let http = |extra: &str| format!("[destination]\ntype = \"http\"\nurl = \"http://h:8088\"\n{extra}");
    let syslog = |extra: &str| format!("[destination]\ntype = \"syslog\"\naddress = \"h:514\"\n{extra}");
    let cases: Vec<(String, &str, usize, &str)> = vec![
        (format!("{FILE}colour = 1\n"), "", 4, "unknown field `colour`"),
        ("[destination]\ntype = \"http\"\nurl = \"localhost:8088\"\n".into(), "destination.url", 3, "http://"),
        ("[destination]\ntype = \"http\"\nurl = \"http://\"\n".into(), "destination.url", 3, "no host"),
        ("[destination]\ntype = \"http\"\nurl = \"https://h:0/x\"\n".into(), "destination.url", 3, "1..=65535"),
        (http("timeout_secs = 0\n"), "destination.timeout_secs", 4, "between 1 and 3600"),
        (http("timeout_secs = 9223372036854775807\n"), "destination.timeout_secs", 4, "between 1 and 3600"),
        (http("username = \"u\"\n"), "destination.username", 4, "go together"),
        (http("tls_verify = \"no\"\n"), "", 4, "expected a boolean"),
        ("[destination]\ntype = \"syslog\"\naddress = \"h:0\"\n".into(), "destination.address", 3, "1..=65535"),
        ("[destination]\ntype = \"syslog\"\naddress = \"h:70000\"\n".into(), "destination.address", 3, "1..=65535"),
        (syslog("app_name = \"my app\"\n"), "destination.app_name", 4, "RFC 5424 APP-NAME"),
        (syslog(&format!("app_name = \"{}\"\n", "a".repeat(60))), "destination.app_name", 4, "RFC 5424 APP-NAME"),
        (syslog("facility = 24\n"), "destination.facility", 4, "0..=23"),
        (syslog("framing = \"lf\"\n"), "", 4, "expected \"octet-counting\" or \"newline\""),
        (syslog("header = \"5424\"\n"), "", 4, "expected \"rfc5424\" or \"rfc3164\""),
        (format!("{FILE}[batch]\nmax_events = 0\n"), "batch.max_events", 5, "between 1 and 1000000"),
        (format!("{FILE}[batch]\nmax_bytes = 9223372036854775807\n"), "batch.max_bytes", 5, "between 1024 and"),
        (format!("{FILE}[retry]\ninitial_backoff_ms = 0\n"), "retry.initial_backoff_ms", 5, "between 1 and"),
        (format!("{FILE}[retry]\nmax_backoff_ms = 9223372036854775807\n"), "retry.max_backoff_ms", 5, "between 0 and 3600000"),
        (format!("{FILE}[retry]\nmax_elapsed_secs = 9223372036854775807\n"), "retry.max_elapsed_secs", 5, "between 0 and 86400"),
        (format!("{FILE}[retry]\nkeepalive_ms = 9223372036854775807\n"), "retry.keepalive_ms", 5, "between 1 and 600000"),
        (format!("{FILE}[stats]\ninterval_secs = 9223372036854775807\n"), "stats.interval_secs", 5, "between 0 and 86400"),
        (format!("{FILE}[input]\nmax_line = 100\n"), "input.max_line", 5, "between 256 and"),
        (format!("{FILE}[input]\ntype_cache_entries = 9223372036854775807\n"), "input.type_cache_entries", 5, "between 0 and"),
        (format!("{FILE}[journal]\nmax_bytes = 9223372036854775807\n"), "journal.max_bytes", 5, "between 65538 and"),
        (format!("{FILE}[cluster]\nsource = \"node\"\n"), "", 5, "expected \"envelope\", \"fixed\" or \"hostname\""),
        (format!("{FILE}url = \"http://h\"\n"), "destination.url", 4, "does not apply to type = \"file\""),
        (format!("{FILE}format = \"xml\"\n"), "", 4, "expected \"json\", \"ecs\", \"ocsf\", \"cef\" or \"leef\""),
        ("[destination]\ntype = \"ftp\"\n".into(), "", 2, "expected \"file\", \"http\", \"syslog\""),
        ("# a comment\n[destination]\ntype = \"syslog\"\n".into(), "destination.address", 3, "needs `address` (host:port)"),
    ];
    for (text, key, line, want) in cases {
        let e = Config::parse(&text).unwrap_err();
        let shown = e.to_string();
        assert!(shown.contains(want), "{text:?}: {shown}");
        assert_eq!(e.line, Some(line), "{text:?}: {shown}");
        assert!(shown.starts_with(&format!("line {line}: ")), "{shown}");
        if !key.is_empty() {
            assert_eq!(e.key.as_deref(), Some(key), "{text:?}: {shown}");
            let bare = key.split('.').nth(1).unwrap();
            assert!(shown.contains(bare), "names the key: {shown}");
        }
        assert_eq!(shown.lines().count(), 1, "{shown}");
    }
}

#[test]
fn load_names_the_file_and_toml_errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("dup.toml");
    std::fs::write(&p, format!("{FILE}[batch]\n[batch]\n")).unwrap();
    let e = Config::load(&p).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{}: line 5: ", p.display())), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
}

/// The shipped configs load, with the values they spell out.
#[test]
fn packaged_configs_load() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/etc");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.ends_with(".toml") || name.ends_with(".toml.example")) || name == "broker.toml" {
            continue; // broker.toml: crate::broker's tests
        }
        let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.batch.max_events, 1000);
        n += 1;
        if name.starts_with("consume") {
            // The processing tier: a [source] beside a Splunk HEC destination.
            match c.source.as_ref().expect("consume examples have [source]") {
                SourceConfig::Kafka(s) => {
                    assert_eq!((s.topic.as_str(), s.group_id.as_str(), s.tls), ("qumulo-audit-envelopes", "qumulo-audit-processors", true));
                }
                SourceConfig::Amqp(s) => {
                    assert_eq!((s.queue.as_str(), s.tls, s.port, s.prefetch), ("qumulo-audit-envelopes", true, Some(5671), Some(2000)));
                    assert!(name.contains("amqp") && s.password_file.is_some());
                }
            }
            assert!(matches!(&c.destination, Destination::Http(h) if h.preset == HttpPreset::SplunkHec) && !c.journal.enabled);
            continue;
        }
        assert!(c.source.is_none(), "{name}: [source] only in the consume examples");
        match &c.destination {
            Destination::Kafka(k) if k.pass_through => {
                assert_eq!((k.key.as_str(), k.tls, k.topic.as_str()), ("{cluster}", true, "qumulo-audit-envelopes"));
            }
            Destination::Amqp(a) if a.pass_through => {
                assert_eq!((a.queue.as_deref(), a.queue_type, a.declare_exchange, a.tls), (Some("qumulo-audit-envelopes"), QueueType::Quorum, true, true));
            }
            Destination::Http(h) if name.starts_with("splunk") => {
                assert_eq!((h.preset, h.format, h.gzip, h.timeout_secs), (HttpPreset::SplunkHec, Format::Json, true, 30));
                assert!(h.token_file.is_some() && h.tls_verify);
            }
            Destination::Http(h) => assert_eq!((h.preset, h.format), (HttpPreset::ElasticsearchBulk, Format::Ecs)),
            Destination::Syslog(s) if name.contains("leef") => {
                assert_eq!((s.framing, s.header, s.format), (Framing::Newline, Header::Rfc3164, Format::Leef))
            }
            Destination::Syslog(s) => {
                assert_eq!((s.protocol, s.framing, s.header, s.format), (Protocol::Tcp, Framing::OctetCounting, Header::Rfc5424, Format::Cef));
                assert_eq!((s.app_name.as_str(), s.facility), ("qumulo-audit", 13));
            }
            Destination::File(f) => assert!(f.fsync && f.format == Format::Json),
            Destination::Amqp(a) => {
                assert_eq!((a.port, a.tls, a.max_returns, a.routing_key.as_str()), (Some(5671), true, 3, "qumulo.{cluster}.{protocol}"));
                assert!(a.password_file.is_some() && a.clusters.is_empty());
            }
            Destination::Kafka(k) => {
                assert_eq!((k.key.as_str(), k.tls, k.timeout_secs, k.topic.as_str()), ("{cluster}", true, 30, "qumulo-audit"));
                assert!(k.password_file.is_some() && k.sasl_mechanism.is_some());
            }
        }
    }
    assert_eq!(n, 11);
}

#[test]
fn defaults() {
    let c = Config::parse(FILE).unwrap();
    assert_eq!(c.journal.max_bytes, crate::journal::DEFAULT_MAX_BYTES);
    assert!(c.journal.enabled && !c.journal.fsync);
    assert_eq!((c.retry.initial_backoff_ms, c.retry.max_backoff_ms, c.retry.max_elapsed_secs, c.retry.keepalive_ms), (200, 30_000, 60, 1000));
    assert_eq!(c.cluster.source, ClusterSourceKind::Envelope);
    assert_eq!(c.format(), Format::Json);
}

/// A broker.toml given where a destination TOML is expected says what to do.
#[test]
fn a_broker_toml_needs_a_destination_name() {
    let e = Config::parse("[[destination]]\nname = \"x\"\ntype = \"file\"\npath = \"/tmp/x\"\n").unwrap_err();
    assert!(e.to_string().contains("--destination NAME"), "{e}");
}

/// `[source]` (consume mode): read with its defaults, its values checked, unknown keys refused.
#[test]
fn source_section() {
    let base = "[destination]\ntype = \"file\"\npath = \"/tmp/x.ndjson\"\n";
    let src = "[source]\nbootstrap_servers = [\"k1:9092\"]\ntopic = \"t\"\ngroup_id = \"g\"\n";
    let c = Config::parse(&format!("{base}{src}")).unwrap();
    let Some(SourceConfig::Kafka(s)) = c.source else { panic!("type defaults to kafka") };
    assert_eq!((s.max_buffer_kbytes, s.linger_ms, s.max_stall_secs, s.session_timeout_secs), (16384, 200, 600, 10));
    assert_eq!(s.security_protocol(), "plaintext");
    assert!(Config::parse(base).unwrap().source.is_none());
    for (extra, key) in [
        ("group_id = \"\"\n", "group_id"),
        ("linger_ms = 0\n", "linger_ms"),
        ("sasl_mechanism = \"plain\"\n", "sasl_mechanism"),
        ("type = \"nats\"\n", "type"),
    ] {
        let text = format!("{base}{}", src.replace("group_id = \"g\"\n", "") + if key == "group_id" { "" } else { "group_id = \"g\"\n" } + extra);
        let e = Config::parse(&text).unwrap_err();
        assert_eq!(e.key.as_deref(), Some(format!("source.{key}").as_str()), "{extra}: {e}");
    }
    let e = Config::parse(&format!("{base}{src}bogus = 1\n")).unwrap_err();
    assert!(e.message.contains("bogus"), "{e}");
}

/// `[source] type = "amqp"`: defaults (port, vhost, prefetch tied to the batch size), bounds,
/// keys of the other kind refused, each error at its line.
#[test]
fn amqp_source_section() {
    let base = "[destination]\ntype = \"file\"\npath = \"/tmp/x.ndjson\"\n[batch]\nmax_events = 500\n";
    let src = "[source]\ntype = \"amqp\"\nserver = \"rabbit.example.com\"\nqueue = \"qumulo-audit-envelopes\"\n";
    let c = Config::parse(&format!("{base}{src}")).unwrap();
    let Some(SourceConfig::Amqp(s)) = &c.source else { panic!("amqp") };
    let t = s.target();
    assert_eq!((t.port, t.vhost.as_str(), t.user.as_deref(), t.section.as_str()), (5672, "/", None, "source"));
    assert_eq!((s.heartbeat_secs, s.timeout_secs, s.linger_ms, s.prefetch_for(c.batch.max_events)), (30, 30, 200, 1000));
    assert_eq!(s.prefetch_for(100_000), 65_535, "prefetch-count is 16 bits");
    let tls = Config::parse(&format!("{base}{src}tls = true\nprefetch = 50\n")).unwrap();
    let Some(SourceConfig::Amqp(s)) = &tls.source else { panic!("amqp") };
    assert_eq!((s.target().port, s.prefetch_for(500)), (5671, 50));
    assert_eq!(c.source.as_ref().unwrap().describe(), "amqp://guest@rabbit.example.com:5672 vhost \"/\" queue \"qumulo-audit-envelopes\"");
    for (extra, key, needle) in [
        ("queue = \"a b\"\n", "queue", "not allowed"),
        ("server = \"rabbit:5672\"\n", "server", "the port goes in `port`"),
        ("prefetch = 0\n", "prefetch", "must be 1 to 65535"),
        ("prefetch = 70000\n", "prefetch", "must be 1 to 65535"),
        ("user = \"u\"\n", "user", "go together"),
        ("ca_file = \"/ca\"\n", "ca_file", "needs tls = true"),
        ("timeout_secs = 0\n", "timeout_secs", "must be 1 to 3600"),
        ("linger_ms = 0\n", "linger_ms", "must be 1 to 60000"),
    ] {
        let k = extra.split(" = ").next().unwrap();
        let kept: String = src.lines().filter(|l| !l.starts_with(&format!("{k} ="))).map(|l| format!("{l}\n")).collect();
        let text = format!("{base}{kept}{extra}");
        let e = Config::parse(&text).unwrap_err();
        assert_eq!(e.key.as_deref(), Some(format!("source.{key}").as_str()), "{extra}: {e}");
        assert!(e.message.contains(needle), "{extra}: {e}");
        let line = text.lines().position(|l| l.starts_with(&format!("{key} ="))).unwrap() + 1;
        assert!(e.to_string().contains(&format!("line {line}")), "{extra}: the key's line {line}: {e}");
    }
    // A key of the Kafka source, and a missing queue: serde's errors, with the line.
    let e = Config::parse(&format!("{base}{src}group_id = \"g\"\n")).unwrap_err();
    assert!(e.to_string().contains("group_id") && e.to_string().contains("line 10"), "{e}");
    let e = Config::parse(&format!("{base}{}", src.replace("queue = \"qumulo-audit-envelopes\"\n", ""))).unwrap_err();
    assert!(e.to_string().contains("queue"), "{e}");
    let e = Config::parse(&format!("{base}[source]\ntype = \"nats\"\n")).unwrap_err();
    assert!(e.to_string().contains("line 7"), "{e}");
}
