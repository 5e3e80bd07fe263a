//! Tests of the test-support library itself (tests/support/): each helper does what it claims
//! against real peers (real rsyslogd, real sockets, real child processes).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::http::{ItemSelector, MockHttp, DEFAULT_HEC_TOKEN};
use support::omprog_driver::{OmprogDriver, Reply, Violation};
use support::rsyslog::{rsyslogd_check, Rsyslogd};
use support::sender::{self, Framing, Shape, Tally};
use support::syslog_rx::{RsyslogReceiver, RxFormat, RxFraming, SyslogTcpReceiver, SyslogUdpReceiver};

const T: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------- a tiny HTTP/1.1 client

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", self.body))
    }
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to mock");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn request(s: &mut TcpStream, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    read_response(s).expect("a response")
}

/// Reads one response (Content-Length framed); None on EOF before a status line.
fn read_response(s: &mut TcpStream) -> Option<Resp> {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(0) => return None,
            Ok(_) => buf.push(b[0]),
            Err(e) => panic!("reading response: {e}"),
        }
    }
    let head = String::from_utf8(buf).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())))
        .collect();
    let len: usize = headers.iter().find(|(k, _)| k == "content-length").map(|(_, v)| v.parse().unwrap()).unwrap();
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    Some(Resp { status, headers, body: String::from_utf8(body).unwrap() })
}

fn post(port: u16, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut s = connect(port);
    request(&mut s, "POST", path, headers, body)
}

fn hec_auth() -> String {
    format!("Splunk {DEFAULT_HEC_TOKEN}")
}

fn hec_event(n: u64) -> String {
    format!(
        r#"{{"time":1686063148.5,"host":"q-node-1","source":"qumulo","sourcetype":"qumulo:audit","index":"main","event":{{"path":"/share/file-{n}.txt"}}}}"#
    )
}

// ---------------------------------------------------------------- sender

#[test]
fn sender_lines_are_numbered_and_parse_with_the_project_parser() {
    use qumulo_audit_broker::event::Event;
    use qumulo_audit_broker::input::{Parser, ParserOptions};
    let mut p = Parser::new(ParserOptions::default());
    for shape in [Shape::Csv, Shape::Json, Shape::JsonLoneBackslash] {
        for n in [0u64, 7, 123456] {
            let line = sender::qumulo_line(shape, n);
            assert!(line.starts_with("<134>Jun  6 14:52:28 q-node-1 qumulo "), "{line}");
            assert_eq!(sender::event_number(&line), Some(n), "{line}");
            let mut ev = Event::default();
            p.parse(line.as_bytes(), &mut ev).unwrap_or_else(|e| panic!("{shape:?} line does not parse: {e:?}\n{line}"));
            assert_eq!(ev.path, format!("/share/file-{n}.txt"), "{shape:?}");
            assert_eq!(ev.file_id, n.to_string(), "{shape:?}");
        }
    }
    assert_eq!(sender::csv_body(5), r#"10.0.0.1,"AD\alice",smb2,fs_write_data,ok,5,"/share/file-5.txt","""#);
    assert!(serde_json::from_str::<Value>(&sender::json_body(5)).is_ok());
    assert!(serde_json::from_str::<Value>(&sender::body(Shape::JsonLoneBackslash, 5)).is_err());
    // event_number skips look-alikes and finds the number inside JSON or CEF text.
    assert_eq!(sender::event_number(r#"{"p":"/x/file-.txt","q":"/share/file-42.txt"}"#), Some(42));
    assert_eq!(sender::event_number("fname=file-9.txtx"), Some(9));
    assert_eq!(sender::event_number("file-12.tx"), None);
}

#[test]
fn tally_reports_missing_duplicates_and_unexpected() {
    let recs = ["file-1.txt", "file-2.txt", "file-2.txt", "file-9.txt", "nothing"];
    let t = Tally::of(recs);
    assert_eq!(t.missing(0..4), vec![0, 3]);
    assert_eq!(t.duplicates(), vec![(2, 2)]);
    assert_eq!(t.unexpected(0..4), vec![9]);
    assert_eq!(t.unnumbered, vec!["nothing".to_string()]);
    let ok = Tally::of((0..50).map(|n| format!("x file-{n}.txt")));
    ok.assert_exactly_once(0..50);
    let r = std::panic::catch_unwind(|| t.assert_exactly_once(0..4));
    assert!(r.is_err());
}

// ---------------------------------------------------------------- MockHttp: HEC

#[test]
fn hec_accepts_concatenated_events_and_checks_the_token() {
    let m = MockHttp::start();
    let body = format!("{}{}\n{}", hec_event(1), hec_event(2), hec_event(3));
    let r = post(m.port(), "/services/collector/event", &[("Authorization", &hec_auth())], body.as_bytes());
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), serde_json::json!({"text":"Success","code":0}));
    let evs = m.hec_events();
    assert_eq!(evs.len(), 3);
    assert_eq!(evs[1]["event"]["path"], "/share/file-2.txt");
    assert_eq!(evs[0]["sourcetype"], "qumulo:audit");

    let r = post(m.port(), "/services/collector/event", &[("Authorization", "Splunk wrong")], hec_event(4).as_bytes());
    assert_eq!((r.status, r.json()), (403, serde_json::json!({"text":"Invalid token","code":4})));
    let r = post(m.port(), "/services/collector/event", &[], hec_event(4).as_bytes());
    assert_eq!((r.status, r.json()["code"].clone()), (401, Value::from(2)));
    let r = post(m.port(), "/services/collector/event", &[("Authorization", DEFAULT_HEC_TOKEN)], hec_event(4).as_bytes());
    assert_eq!((r.status, r.json()["code"].clone()), (401, Value::from(3)));
    assert_eq!(m.hec_events().len(), 3, "rejected requests store nothing");

    // Invalid JSON at event #1 (0-based): 400 code 6, event #0 kept as Splunk does.
    let body = format!("{}{{\"event\": oops}}{}", hec_event(10), hec_event(11));
    let r = post(m.port(), "/services/collector/event", &[("Authorization", &hec_auth())], body.as_bytes());
    assert_eq!(r.status, 400);
    assert_eq!(r.json(), serde_json::json!({"text":"Invalid data format","code":6,"invalid-event-number":1}));
    let t = Tally::of(m.accepted_records());
    assert_eq!(t.counts.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3, 10]);

    // Missing and blank event fields.
    let r = post(m.port(), "/services/collector/event", &[("Authorization", &hec_auth())], br#"{"time":1}"#);
    assert_eq!((r.status, r.json()["code"].clone()), (400, Value::from(12)));
    let r = post(m.port(), "/services/collector/event", &[("Authorization", &hec_auth())], br#"{"event":""}"#);
    assert_eq!((r.status, r.json()["code"].clone()), (400, Value::from(13)));
    let r = post(m.port(), "/services/collector/event", &[("Authorization", &hec_auth())], b"");
    assert_eq!((r.status, r.json()["code"].clone()), (400, Value::from(5)));
}

#[test]
fn hec_decodes_gzip_and_keeps_connections_alive() {
    let m = MockHttp::start();
    let mut s = connect(m.port());
    for n in 0..5u64 {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(hec_event(n).as_bytes()).unwrap();
        let body = gz.finish().unwrap();
        let auth = hec_auth();
        let r = request(
            &mut s,
            "POST",
            "/services/collector/event",
            &[("Authorization", &auth), ("Content-Encoding", "gzip")],
            &body,
        );
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(!r.headers.iter().any(|(k, v)| k == "connection" && v == "close"));
    }
    assert_eq!(m.connections_accepted(), 1, "five requests on one keep-alive connection");
    let reqs = m.requests();
    assert_eq!(reqs.len(), 5);
    assert!(reqs.iter().all(|r| r.gzip && r.wire_len > 0 && r.body_str().starts_with("{\"time\"")));
    Tally::of(m.accepted_records()).assert_exactly_once(0..5);
    // Connection: close is honoured.
    let r = request(&mut s, "GET", "/services/collector/health", &[("Connection", "close")], b"");
    assert_eq!(r.json()["code"], 17);
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).unwrap(), 0, "server closes after Connection: close");
}

#[test]
fn mock_answers_411_without_content_length() {
    let m = MockHttp::start();
    let mut s = connect(m.port());
    s.write_all(b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 411);
}

// ---------------------------------------------------------------- MockHttp: Elasticsearch bulk

fn bulk_body(items: &[(&str, Option<&str>, u64)]) -> String {
    let mut b = String::new();
    for (action, id, n) in items {
        match id {
            Some(id) => b.push_str(&format!("{{\"{action}\":{{\"_index\":\"qumulo\",\"_id\":\"{id}\"}}}}\n")),
            None => b.push_str(&format!("{{\"{action}\":{{}}}}\n")),
        }
        b.push_str(&format!("{{\"file\":{{\"path\":\"/share/file-{n}.txt\"}}}}\n"));
    }
    b
}

const ND: (&str, &str) = ("Content-Type", "application/x-ndjson");

#[test]
fn bulk_create_index_conflicts_and_item_faults() {
    let m = MockHttp::start();
    let r = post(m.port(), "/_bulk", &[ND], bulk_body(&[("create", Some("a"), 1), ("create", Some("b"), 2)]).as_bytes());
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["errors"], false);
    assert_eq!(j["items"][0]["create"]["status"], 201);
    assert_eq!(j["items"][0]["create"]["_id"], "a");
    assert_eq!(j["items"][0]["create"]["_index"], "qumulo");
    assert!(j["took"].is_u64());

    // Duplicate create -> 409 like ES; index overwrites.
    let r = post(m.port(), "/_bulk", &[ND], bulk_body(&[("create", Some("a"), 1), ("index", Some("b"), 2), ("create", Some("c"), 3)]).as_bytes());
    let j = r.json();
    assert_eq!(j["errors"], true);
    assert_eq!(j["items"][0]["create"]["status"], 409);
    assert_eq!(j["items"][0]["create"]["error"]["type"], "version_conflict_engine_exception");
    assert_eq!(j["items"][1]["index"]["status"], 200);
    assert_eq!(j["items"][1]["index"]["_version"], 2);
    assert_eq!(j["items"][2]["create"]["status"], 201);
    assert_eq!(m.es_unique_ids(), 3);
    assert_eq!(m.es_conflicts(), 1);
    let docs = m.es_docs();
    assert_eq!(docs.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), vec!["a", "b", "c"]);
    assert_eq!(docs[1].version, 2);

    // Index from the path, auto ids, 429 on selected items, 400 on a marker.
    m.bulk_item_429(ItemSelector::Containing("file-5.txt".into()));
    m.reject_marker("file-6.txt");
    let r = post(m.port(), "/logs/_bulk", &[("Content-Type", "application/json")], bulk_body(&[("create", None, 4), ("create", None, 5), ("create", None, 6)]).as_bytes());
    let j = r.json();
    assert_eq!(j["items"][0]["create"]["status"], 201);
    assert_eq!(j["items"][0]["create"]["_index"], "logs");
    assert_eq!(j["items"][1]["create"]["status"], 429);
    assert_eq!(j["items"][1]["create"]["error"]["type"], "es_rejected_execution_exception");
    assert_eq!(j["items"][2]["create"]["status"], 400);
    assert_eq!(j["items"][2]["create"]["error"]["type"], "mapper_parsing_exception");
    m.clear_faults();
    m.bulk_item_429(ItemSelector::NextN(1));
    let j = post(m.port(), "/_bulk", &[ND], bulk_body(&[("create", Some("x"), 7), ("create", Some("y"), 8)]).as_bytes()).json();
    assert_eq!((j["items"][0]["create"]["status"].clone(), j["items"][1]["create"]["status"].clone()), (Value::from(429), Value::from(201)));
    let t = Tally::of(m.accepted_records());
    assert_eq!(t.counts.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3, 4, 8]);

    // Request-level errors.
    let r = post(m.port(), "/_bulk", &[], bulk_body(&[("create", Some("z"), 9)]).as_bytes());
    assert_eq!(r.status, 406);
    let body = bulk_body(&[("create", Some("z"), 9)]);
    let r = post(m.port(), "/_bulk", &[ND], body.trim_end().as_bytes());
    assert_eq!(r.status, 400);
    assert!(r.body.contains("terminated by a newline"), "{}", r.body);
    let r = post(m.port(), "/_bulk", &[ND], b"{\"create\":{\"_id\":\"q\"}}\n{}\n");
    assert_eq!(r.status, 400, "no index anywhere: {}", r.body);
    let r = post(m.port(), "/_bulk", &[ND], b"{\"delete\":{\"_index\":\"a\",\"_id\":\"q\"}}\n");
    assert_eq!(r.status, 400);
}

// ---------------------------------------------------------------- MockHttp: NDJSON

#[test]
fn ndjson_stores_lines_all_or_nothing() {
    let m = MockHttp::start();
    let r = post(m.port(), "/ingest", &[], b"{\"path\":\"/share/file-1.txt\"}\n{\"path\":\"/share/file-2.txt\"}\n");
    assert_eq!(r.status, 200);
    let r = post(m.port(), "/ingest", &[], b"{\"path\":\"/share/file-3.txt\"}\nnot json\n");
    assert_eq!(r.status, 400);
    m.reject_marker("POISON");
    let r = post(m.port(), "/other", &[], b"{\"path\":\"/share/file-4.txt\"}\n{\"x\":\"POISON\"}\n");
    assert_eq!(r.status, 400);
    let recs = m.ndjson_records();
    assert_eq!(recs.len(), 2);
    assert!(recs.iter().all(|(p, _)| p == "/ingest"));
    Tally::of(m.accepted_records()).assert_exactly_once(1..3);
}

// ---------------------------------------------------------------- MockHttp: failure injection

#[test]
fn refuse_connections_then_listen_again_on_the_same_port() {
    let m = MockHttp::start();
    let port = m.port();
    let mut alive = connect(port);
    assert_eq!(request(&mut alive, "POST", "/a", &[], b"{\"n\":1}\n").status, 200);

    m.refuse_connections();
    assert!(!m.is_listening());
    let e = TcpStream::connect(("127.0.0.1", port)).expect_err("connection must be refused");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    // The open keep-alive connection was closed too.
    let mut rest = Vec::new();
    let n = alive.read_to_end(&mut rest).unwrap_or(0);
    assert_eq!(n, 0);

    m.listen_again();
    assert_eq!(m.port(), port);
    assert_eq!(post(port, "/a", &[], b"{\"n\":2}\n").status, 200);
    assert_eq!(m.ndjson_records().len(), 2);
}

#[test]
fn fail_next_fail_for_drop_and_delay() {
    let m = MockHttp::start();
    let auth = hec_auth();
    m.fail_next(2, 503);
    let mut s = connect(m.port());
    let statuses: Vec<u16> = (0..3)
        .map(|n| request(&mut s, "POST", "/services/collector/event", &[("Authorization", &auth)], hec_event(n).as_bytes()))
        .map(|r| {
            if r.status == 503 {
                assert_eq!(r.json()["code"], 9, "HEC-shaped busy answer");
            }
            r.status
        })
        .collect();
    assert_eq!(statuses, vec![503, 503, 200]);
    assert_eq!(m.hec_events().len(), 1, "failed requests store nothing");
    assert_eq!(m.count_status(503), 2);

    m.fail_for(Duration::from_millis(300), 429);
    assert_eq!(post(m.port(), "/_bulk", &[ND], bulk_body(&[("create", Some("a"), 1)]).as_bytes()).status, 429);
    std::thread::sleep(Duration::from_millis(350));
    assert_eq!(post(m.port(), "/_bulk", &[ND], bulk_body(&[("create", Some("a"), 1)]).as_bytes()).status, 200);

    m.drop_next(1);
    let mut s = connect(m.port());
    s.write_all(b"POST /x HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}").unwrap();
    assert!(read_response(&mut s).is_none(), "dropped request gets no answer");
    assert_eq!(m.requests().last().unwrap().status, 0);

    m.set_delay(Duration::from_millis(300));
    let t0 = Instant::now();
    assert_eq!(post(m.port(), "/x", &[], b"{}\n").status, 200);
    assert!(t0.elapsed() >= Duration::from_millis(300));
    m.clear_faults();
    let t0 = Instant::now();
    assert_eq!(post(m.port(), "/x", &[], b"{}\n").status, 200);
    assert!(t0.elapsed() < Duration::from_millis(300));
}

#[test]
fn mock_works_with_ureq() {
    let m = MockHttp::start();
    let r = ureq::post(&m.hec_url())
        .set("Authorization", &hec_auth())
        .send_string(&format!("{}{}", hec_event(1), hec_event(2)))
        .expect("ureq post");
    assert_eq!(r.status(), 200);
    let err = ureq::post(&format!("{}/_bulk", m.url())).send_string("x");
    match err {
        Err(ureq::Error::Status(406, _)) => {}
        other => panic!("expected 406, got {other:?}"),
    }
    Tally::of(m.wait_for_records(2, T)).assert_exactly_once(1..3);
}

// ---------------------------------------------------------------- syslog receivers

#[test]
fn tcp_receiver_decodes_both_framings() {
    let rx = SyslogTcpReceiver::start();
    sender::send_framed(rx.addr(), ["<134>one", "<134>two with\nnewline inside"], Framing::OctetCounted);
    sender::send_lines(rx.addr(), ["<134>three", "<134>four"]);
    // Mixed on one connection, split at awkward places, last frame unterminated.
    let mut s = TcpStream::connect(rx.addr()).unwrap();
    for part in ["9 <134>fi", "ve<134>six\n<13", "4>seven"] {
        s.write_all(part.as_bytes()).unwrap();
        s.flush().unwrap();
        std::thread::sleep(Duration::from_millis(30));
    }
    drop(s);
    let msgs = rx.wait_for(7, T);
    let mut got: Vec<(String, RxFraming)> = msgs.iter().map(|m| (m.text(), m.framing)).collect();
    got.sort_by_key(|(_, f)| *f as u8); // connections finish in any order; compare as sets
    let expect = [
        ("<134>one", RxFraming::OctetCounted),
        ("<134>two with\nnewline inside", RxFraming::OctetCounted),
        ("<134>five", RxFraming::OctetCounted),
        ("<134>three", RxFraming::Newline),
        ("<134>four", RxFraming::Newline),
        ("<134>six", RxFraming::Newline),
        ("<134>seven", RxFraming::Unterminated),
    ];
    for (t, f) in expect {
        assert!(got.iter().any(|(gt, gf)| gt == t && *gf == f), "missing {t:?} {f:?} in {got:?}");
    }
    assert_eq!(got.len(), 7);
    assert_eq!(rx.connections(), 3);
    assert!(rx.errors().is_empty());
}

#[test]
fn udp_receiver_records_datagrams() {
    let rx = SyslogUdpReceiver::start();
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for n in 0..3 {
        s.send_to(sender::qumulo_line(Shape::Csv, n).as_bytes(), rx.addr()).unwrap();
    }
    s.send_to(b"<134>with newline\n", rx.addr()).unwrap();
    let msgs = rx.wait_for(4, T);
    assert!(msgs.iter().all(|m| m.framing == RxFraming::Datagram));
    assert!(rx.texts().contains(&"<134>with newline".to_string()));
    Tally::of(rx.texts().into_iter().take(3)).assert_exactly_once(0..3);
}

// ---------------------------------------------------------------- omprog driver

fn script(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

const ACK: &str = "#!/bin/sh\necho OK\nwhile read l; do echo OK; done\n";

#[test]
fn omprog_driver_talks_to_a_shell_acknowledger() {
    let dir = tempfile::tempdir().unwrap();
    let p = script(dir.path(), "ack.sh", ACK);
    let mut d = OmprogDriver::start(&p, &[] as &[&str]);
    for n in 0..20 {
        assert_eq!(d.send(&sender::qumulo_line(Shape::Csv, n)), Reply::Ok);
    }
    assert_eq!(d.begin(), Reply::Ok);
    assert_eq!(d.commit(), Reply::Ok);
    d.close_stdin();
    assert!(d.wait_exit(T).success());
    assert!(d.stdout_rest(T).is_empty(), "nothing after the last reply");
    assert_eq!(d.transcript().iter().filter(|l| l.starts_with("< ")).count(), 23);
}

#[test]
fn omprog_driver_transactions_and_error_replies() {
    let dir = tempfile::tempdir().unwrap();
    let p = script(
        dir.path(),
        "tx.sh",
        r#"#!/bin/sh
echo OK
while read l; do
  case "$l" in
    "BEGIN TRANSACTION") echo OK ;;
    "COMMIT TRANSACTION") echo OK ;;
    *fail*) echo "ERROR: sink down" ;;
    *cr*) printf 'OK\r\n' ;;
    *space*) echo "OK " ;;
    *) echo DEFER_COMMIT ;;
  esac
done
"#,
    );
    let mut d = OmprogDriver::start(&p, &[] as &[&str]);
    assert_eq!(d.transaction(["a", "b", "c"]), Reply::Ok);
    assert_eq!(d.send("please fail"), Reply::Error("ERROR: sink down".into()));
    assert_eq!(d.send("cr"), Reply::Error("OK\r".into()));
    assert_eq!(d.send("space"), Reply::Error("OK ".into()));
    d.sigterm();
    let st = d.wait_exit(T);
    assert_eq!(OmprogDriver::exit_signal(st), Some(libc::SIGTERM));
}

#[test]
fn omprog_driver_detects_a_bad_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let banner = script(dir.path(), "banner.sh", "#!/bin/sh\necho 'starting up'\necho OK\nwhile read l; do echo OK; done\n");
    let mut d = OmprogDriver::spawn(&banner, &[] as &[&str]);
    // A banner before OK: either read as the reply "starting up" or as two lines in one read.
    let e = d.try_handshake().expect_err("a banner breaks the handshake");
    assert!(e.contains("starting up"), "{e}");

    let silent = script(dir.path(), "silent.sh", "#!/bin/sh\nsleep 5\n");
    let mut d = OmprogDriver::spawn(&silent, &[] as &[&str]);
    d.set_confirm_timeout(Duration::from_millis(300));
    let t0 = Instant::now();
    assert!(matches!(d.try_read_reply(), Err(Violation::Timeout { .. })));
    assert!(t0.elapsed() < Duration::from_secs(3));

    let dies = script(dir.path(), "dies.sh", "#!/bin/sh\nexit 3\n");
    let mut d = OmprogDriver::spawn(&dies, &[] as &[&str]);
    assert!(matches!(d.try_read_reply(), Err(Violation::Eof { .. })));
    assert_eq!(d.wait_exit(T).code(), Some(3));

    let r = std::panic::catch_unwind(|| {
        let mut d = OmprogDriver::spawn(&dies, &[] as &[&str]);
        d.handshake();
    });
    assert!(r.is_err(), "handshake() panics on a bad handshake");
}

#[test]
fn omprog_driver_keepalive_dots_reset_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // Each gap (0.3 s) is under the timeout (0.6 s); the whole reply (1.2 s) is not.
    let p = script(
        dir.path(),
        "slow.sh",
        "#!/bin/sh\necho OK\nwhile read l; do for i in 1 2 3 4; do printf .; sleep 0.3; done; echo OK; done\n",
    );
    let mut d = OmprogDriver::start(&p, &[] as &[&str]);
    d.set_confirm_timeout(Duration::from_millis(600));
    assert_eq!(d.send("x"), Reply::Ok);
    assert_eq!(d.last_dots(), 4);
    assert_eq!(d.total_dots(), 4);

    // Without dots the same delay is a timeout.
    let p2 = script(dir.path(), "slow2.sh", "#!/bin/sh\necho OK\nwhile read l; do sleep 1.2; echo OK; done\n");
    let mut d = OmprogDriver::start(&p2, &[] as &[&str]);
    d.set_confirm_timeout(Duration::from_millis(600));
    assert!(matches!(d.try_send("x"), Err(Violation::Timeout { .. })));
}

#[test]
fn omprog_driver_detects_multiline_and_too_long_replies() {
    let dir = tempfile::tempdir().unwrap();
    let p = script(dir.path(), "two.sh", "#!/bin/sh\necho OK\nwhile read l; do printf 'OK\\nOK\\n'; done\n");
    let mut d = OmprogDriver::start(&p, &[] as &[&str]);
    match d.try_send("x") {
        Err(Violation::Multiline { bytes, .. }) => assert_eq!(bytes, b"OK\nOK\n"),
        other => panic!("expected Multiline, got {other:?}"),
    }
    let p = script(dir.path(), "long.sh", "#!/bin/sh\necho OK\nwhile read l; do head -c 5000 /dev/zero | tr '\\0' x; echo; done\n");
    let mut d = OmprogDriver::start(&p, &[] as &[&str]);
    assert!(matches!(d.try_send("x"), Err(Violation::TooLong { .. })));
}

#[test]
fn omprog_driver_never_hangs_on_a_program_that_stops_reading() {
    let dir = tempfile::tempdir().unwrap();
    let p = script(dir.path(), "deaf.sh", "#!/bin/sh\necho OK\nsleep 30\n");
    let mut d = OmprogDriver::start(&p, &[] as &[&str]);
    d.set_confirm_timeout(Duration::from_millis(500));
    let big = "x".repeat(1 << 20);
    let t0 = Instant::now();
    assert!(matches!(d.try_send(&big), Err(Violation::Write(_))));
    assert!(t0.elapsed() < Duration::from_secs(5));
}

// ---------------------------------------------------------------- real rsyslogd

const TO_FILE: &str = r#"
template(name="line" type="string" string="%msg%\n")
action(type="omfile" file="{WORKDIR}/out.log" template="line")
"#;

#[test]
fn rsyslogd_receives_writes_stops_and_restarts() {
    let mut r = Rsyslogd::start(TO_FILE);
    assert!(r.port() > 0);
    assert_eq!(sender::send_qumulo(r.addr(), Shape::Csv, 0..500), 500);
    let lines = r.wait_for_lines("out.log", 500, T);
    Tally::of(&lines).assert_exactly_once(0..500);
    assert!(lines[0].ends_with(&sender::csv_body(0)), "{:?}", lines[0]);

    let port = r.port();
    let ex = r.stop();
    assert!(ex.status.success() && !ex.killed, "{ex:?}\n{}", r.diagnostics());
    assert!(!r.is_running());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());

    r.restart();
    assert_eq!(r.starts(), 2);
    if r.port() != port {
        eprintln!("note: restart moved imtcp from port {port} to {}", r.port());
    }
    sender::send_qumulo(r.addr(), Shape::Json, 500..600);
    let lines = r.wait_for_lines("out.log", 600, T);
    Tally::of(&lines).assert_exactly_once(0..600);
    assert!(r.internal_log().contains("start"), "internal messages are captured:\n{}", r.diagnostics());

    // restart() while running stops first; kill() is immediate.
    r.restart();
    assert_eq!(r.starts(), 3);
    r.assert_running();
    r.kill();
    assert!(!r.is_running());
}

#[test]
fn rsyslogd_runs_an_omprog_program() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("prog.out");
    let p = script(
        dir.path(),
        "prog.sh",
        &format!("#!/bin/sh\necho OK\nwhile read l; do echo \"$l\" >> {}; echo OK; done\n", out.display()),
    );
    let body = format!(
        r#"
module(load="omprog")
template(name="m" type="string" string="%msg%\n")
ruleset(name="toprog" queue.type="LinkedList") {{
  action(type="omprog" binary="{}" template="m" confirmMessages="on" useTransactions="on"
         output="{{WORKDIR}}/prog.stderr" action.resumeRetryCount="-1")
}}
"#,
        p.display()
    );
    let mut r = Rsyslogd::builder(&body).tcp_ruleset("toprog").start();
    sender::send_qumulo(r.addr(), Shape::Csv, 0..200);
    let t0 = Instant::now();
    let lines = loop {
        let l = support::read_complete_lines(&out);
        let n = l.iter().filter(|x| sender::event_number(x).is_some()).count();
        if n >= 200 {
            break l;
        }
        assert!(t0.elapsed() < T, "omprog program got {n} of 200 lines\n{}", r.diagnostics());
        std::thread::sleep(Duration::from_millis(20));
    };
    // The acknowledger also sees the transaction marks; the events arrive exactly once.
    assert!(lines.iter().any(|l| l == "BEGIN TRANSACTION"));
    Tally::of(lines.iter().filter(|l| !l.ends_with("TRANSACTION"))).assert_exactly_once(0..200);
    let ex = r.stop();
    assert!(!ex.killed, "{}", r.diagnostics());
}

#[test]
fn rsyslogd_restart_keeps_a_saved_disk_queue() {
    // omfwd to a port nobody listens on yet; the action's disk-assisted queue is saved on
    // shutdown into the work dir and delivered after restart() once the receiver is up.
    let port = support::free_port();
    let body = format!(
        r#"
template(name="fwd" type="string" string="%rawmsg%\n")
action(type="omfwd" target="127.0.0.1" port="{port}" protocol="tcp" template="fwd"
       action.resumeRetryCount="-1" action.resumeInterval="1"
       queue.type="LinkedList" queue.filename="fwdq" queue.saveOnShutdown="on")
"#
    );
    let mut r = Rsyslogd::builder(&body).allow_startup_errors().start();
    sender::send_qumulo(r.addr(), Shape::Csv, 0..100);
    std::thread::sleep(Duration::from_millis(300));
    let ex = r.stop();
    assert!(!ex.killed, "{}", r.diagnostics());
    let saved: Vec<String> = std::fs::read_dir(r.work_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("fwdq"))
        .collect();
    assert!(saved.iter().any(|n| n.ends_with(".qi")), "queue saved on shutdown: {saved:?}\n{}", r.diagnostics());

    let rx = SyslogTcpReceiver::start_on(port);
    r.restart();
    let msgs = rx.wait_for(100, T);
    Tally::of(msgs.iter().map(|m| m.text())).assert_exactly_once(0..100);
}

#[test]
fn rsyslog_receiver_writes_msg_or_raw() {
    let mut rx = RsyslogReceiver::start(RxFormat::Raw, "");
    sender::send_qumulo(rx.addr(), Shape::Csv, 0..3);
    let lines = rx.wait_for_lines(3, T);
    assert_eq!(lines[0], sender::qumulo_line(Shape::Csv, 0));
    let mut rx = RsyslogReceiver::start(RxFormat::Msg, "");
    sender::send_framed(rx.addr(), [sender::qumulo_line(Shape::Json, 9)], Framing::OctetCounted);
    let lines = rx.wait_for_lines(1, T);
    assert_eq!(lines[0].trim_start(), sender::json_body(9));
}

#[test]
fn rsyslogd_check_accepts_good_and_rejects_bad_configs() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.conf");
    std::fs::write(&good, format!("global(workDirectory=\"{}\")\naction(type=\"omfile\" file=\"{}/x.log\")\n", dir.path().display(), dir.path().display())).unwrap();
    let out = rsyslogd_check(&good).expect("valid config");
    assert!(out.contains("End of config validation run"), "{out}");
    let bad = dir.path().join("bad.conf");
    std::fs::write(&bad, "action(type=\"omnosuchmodule\")\nthis is not rainerscript {\n").unwrap();
    let err = rsyslogd_check(&bad).expect_err("invalid config");
    assert!(err.contains("error"), "{err}");
}

#[test]
fn rsyslogd_start_failure_panics_with_diagnostics() {
    let r = std::panic::catch_unwind(|| {
        Rsyslogd::builder("action(type=\"omnosuchmodule\")\n").startup_timeout(Duration::from_secs(5)).start()
    });
    let msg = match r {
        Ok(_) => panic!("a broken config must not start"),
        Err(e) => e.downcast_ref::<String>().cloned().unwrap_or_default(),
    };
    assert!(msg.contains("omnosuchmodule"), "panic message shows the config and log:\n{msg}");
}
