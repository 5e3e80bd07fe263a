//! The `kafka` destination over TLS, for real: librdkafka (our producer, `tls = true`,
//! `ca_file`) does a TLS handshake, verifies the server certificate against a CA made here, and
//! delivers; the records are read back over TLS by the independent reader (kafka-python,
//! `security_protocol = "SSL"`). A wrong CA: no delivery, and `check --connect` says why.
//!
//! tansu 0.6 cannot serve TLS itself: its `--cert` and `--key` are in one clap group, so giving
//! both is refused ("the argument '--cert <CERT>' cannot be used with '--key <KEY>'"), and its
//! broker builds a `TlsAcceptor` it never uses (`let _acceptor = ...` in tansu-broker 0.6.0
//! `broker.rs`). So TLS is terminated by `socat` (OpenSSL) in front of tansu, which advertises
//! the terminator's port in its metadata: every connection of every client goes through TLS,
//! and the broker's own plain-text port is in no configuration (and a plain-text client of the
//! TLS port is refused, checked below).
//!
//! SASL is not tested against tansu 0.6: with `--authentication` it offers SCRAM only (PLAIN
//! fails with `NoSharedMechanism`), and SCRAM users are created with `tansu user create`
//! through the broker, which refuses that unauthenticated request (`NotAuthenticated`); its
//! storage is memory only (no user survives a restart without `--authentication`).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::brokers::{envelope, finish, start, stat, uuid, BIN};
use support::config::{path_value, ConfigToml};
use support::kafka::{try_read_all_with, Rec, Tansu};
use support::omprog_driver::Reply;
use support::scenario::write_config;
use support::sender::event_number;

/// A CA (certificate PEM) and a server certificate it signed for 127.0.0.1 (certificate PEM,
/// key PEM).
fn ca_and_server(ca_name: &str) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, ca_name);
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    let cert_pem = params.signed_by(&key, &issuer).unwrap().pem();
    (ca_pem, cert_pem, key.serialize_pem())
}

/// `socat` terminating TLS on a loopback port and forwarding each connection to `backend`.
struct TlsTerminator {
    port: u16,
    child: Child,
    log: PathBuf,
}

impl TlsTerminator {
    fn start(port: u16, cert: &Path, key: &Path, backend: u16, log: PathBuf) -> TlsTerminator {
        let listen = format!("OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={},key={},verify=0", cert.display(), key.display());
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("socat")
            .args(["-d", "-d", &listen, &format!("TCP:127.0.0.1:{backend}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("socat (apt-get install socat; .ci/run does): {e}"));
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(10), "socat did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        TlsTerminator { port, child, log }
    }

    /// Connections socat accepted so far (its `-d -d` log has one "accepting connection" line each).
    fn accepted(&self) -> usize {
        std::fs::read_to_string(&self.log).unwrap_or_default().matches("accepting connection").count()
    }
}

impl Drop for TlsTerminator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(dir: &Path, name: &str, broker: &str, more: impl FnOnce(ConfigToml) -> ConfigToml) -> PathBuf {
    let cfg = more(ConfigToml::destination("kafka").dest("bootstrap_servers", toml::Value::Array(vec![broker.into()])))
        .journal_dir(&dir.join(format!("{name}-journal")))
        .dead_letter(&dir.join(format!("{name}-dead.ndjson")))
        .backoff_ms(50, 200);
    write_config(&dir.join(format!("{name}.toml")), &cfg.text())
}

/// TLS verified against `ca`, topic `qab-tls`.
fn tls_dest(ca: &Path, c: ConfigToml) -> ConfigToml {
    c.dest("topic", "qab-tls").dest("tls", true).dest("ca_file", path_value(ca)).dest("timeout_secs", 5)
}

fn check(cfg: &Path) -> (bool, String) {
    let out = Command::new(BIN).args(["check", "--connect", "--config"]).arg(cfg).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn kafka_destination_over_tls_against_a_real_broker() {
    support::kafka::available().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ca_pem, cert_pem, key_pem) = ca_and_server("qab kafka test CA");
    let (other_ca_pem, _, _) = ca_and_server("another CA");
    let ca = d.join("ca.pem");
    let other_ca = d.join("other-ca.pem");
    std::fs::write(&ca, &ca_pem).unwrap();
    std::fs::write(&other_ca, &other_ca_pem).unwrap();
    std::fs::write(d.join("server.pem"), &cert_pem).unwrap();
    write_config(&d.join("server.key"), &key_pem);

    let tls_port = support::free_port();
    let tansu = Tansu::start_behind(&[("qab-tls", 2)], Some(tls_port), false);
    assert_ne!(tansu.port, tls_port);
    let tls = TlsTerminator::start(tls_port, &d.join("server.pem"), &d.join("server.key"), tansu.port, d.join("socat.log"));
    let broker = format!("127.0.0.1:{}", tls.port);

    // 1. Delivered over TLS, verified against our CA; read back over TLS.
    let before = tls.accepted();
    let cfg = config(d, "tls", &broker, |c| tls_dest(&ca, c));
    let mut p = start(&cfg);
    assert_eq!(p.transaction((0..20).map(|n| envelope("alpha", n))), Reply::Ok, "{}", p.diagnostics());
    assert_eq!(p.transaction((20..30).map(|n| envelope("east", n))), Reply::Ok, "{}", p.diagnostics());
    let stderr = finish(p);
    assert_eq!((stat(&stderr, "delivered"), stat(&stderr, "dead_lettered")), (30, 0), "{stderr}");
    assert!(tls.accepted() > before, "the producer connected through the TLS terminator");
    let ssl = serde_json::json!({"security_protocol": "SSL", "ssl_cafile": ca, "ssl_check_hostname": true});
    let got: Vec<Rec> = try_read_all_with(&broker, "qab-tls", &ssl).unwrap_or_else(|e| panic!("{e}\n{}", tansu.diagnostics()));
    let mut numbers: Vec<u64> = got.iter().map(|r| event_number(&r.value).unwrap()).collect();
    numbers.sort();
    assert_eq!(numbers, (0..30).collect::<Vec<_>>(), "every event once");
    for r in &got {
        let n = event_number(&r.value).unwrap();
        assert_eq!(r.header("event-id"), Some(uuid(n).as_str()), "{r:?}");
        assert_eq!(r.key.as_deref(), Some(if n < 20 { "alpha" } else { "east" }), "{r:?}");
    }
    // The TLS port speaks TLS only: a plain-text reader of it gets nothing.
    let plain = try_read_all_with(&broker, "qab-tls", &serde_json::json!({"request_timeout_ms": 3000, "api_version_auto_timeout_ms": 3000}));
    assert!(plain.is_err(), "a plain-text client read the TLS port: {plain:?}");

    // 2. check --connect over TLS: the topic; a plain-text configuration of the TLS port: no metadata.
    let (ok, out) = check(&config(d, "c-tls", &broker, |c| tls_dest(&ca, c)));
    assert!(ok && out.contains("topic \"qab-tls\" has 2 partitions") && out.contains("kafka+tls://"), "{out}");
    let (ok, out) = check(&config(d, "c-plain", &broker, |c| c.dest("topic", "qab-tls").dest("timeout_secs", 3)));
    assert!(!ok && out.contains("no metadata"), "{out}");

    // 3. A CA that did not sign the server certificate: the handshake fails, nothing is
    // delivered, no OK; check --connect says the certificate was not verified.
    let cfg = config(d, "wrong-ca", &broker, |c| tls_dest(&other_ca, c).dest("timeout_secs", 3));
    let mut p = start(&cfg);
    let reply = p.transaction((100..105).map(|n| envelope("alpha", n)));
    assert!(reply.is_error(), "{reply:?}\n{}", p.diagnostics());
    let stderr = finish(p);
    assert_eq!(stat(&stderr, "delivered"), 0, "{stderr}");
    assert!(stderr.contains("certificate verify failed"), "the reason in the log:\n{stderr}");
    let (ok, out) = check(&cfg);
    assert!(!ok && out.contains("no metadata") && out.contains("(last error: ") && out.contains("certificate verify failed"), "{out}");
    let got = try_read_all_with(&broker, "qab-tls", &ssl).unwrap();
    assert_eq!(got.len(), 30, "nothing more in the topic");
    drop(tls);
    drop(tansu);
}
