//! Security behaviour of the real binary: TLS certificates are verified by default (a
//! self-signed server is refused, trusted through `ca_file`, accepted with `tls_verify = false`
//! only), tokens come from files and never appear in the log, and a token file readable by
//! everyone is warned about.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

// Only the config builder of tests/support (the rest is not needed here).
#[allow(dead_code)]
#[path = "support/config.rs"]
mod config;

use config::{path_value, ConfigToml};

const BIN: &str = env!("CARGO_BIN_EXE_qumulo-audit-broker");
const TOKEN: &str = "s3cr3t-hec-token-0123456789";

/// A TLS HTTP/1.1 server with a self-signed certificate for 127.0.0.1 that answers every
/// request with HEC success and counts the requests it fully received.
struct TlsServer {
    port: u16,
    ca_pem: String,
    requests: Arc<AtomicUsize>,
}

fn start_tls_server() -> TlsServer {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let ca_pem = ck.cert.pem();
    let cert = rustls::pki_types::CertificateDer::from(ck.cert.der().to_vec());
    let key = rustls::pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let config = config.clone();
            let counter = counter.clone();
            thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, stream);
                loop {
                    let mut reader = BufReader::new(&mut tls);
                    let mut len = 0usize;
                    let mut line = String::new();
                    let mut first = true;
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return; // closed, or the client refused our certificate
                        }
                        if first && line.trim().is_empty() {
                            continue;
                        }
                        first = false;
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0u8; len];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    let resp = b"{\"text\":\"Success\",\"code\":0}";
                    let head = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", resp.len());
                    if tls.write_all(head.as_bytes()).and_then(|_| tls.write_all(resp)).and_then(|_| tls.flush()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    TlsServer { port, ca_pem, requests }
}

/// The HEC destination at the TLS server on `port`, `more` adding `[destination]` keys.
fn write_config(dir: &Path, port: u16, more: impl FnOnce(ConfigToml) -> ConfigToml) -> PathBuf {
    let token = dir.join("hec.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o640)).unwrap();
    let cfg = more(ConfigToml::hec(&format!("https://127.0.0.1:{port}"), &token))
        .retry("max_elapsed_secs", 1)
        .retry("initial_backoff_ms", 50)
        .retry("keepalive_ms", 100)
        .journal_dir(&dir.join("journal"))
        .dead_letter(&dir.join("dead.ndjson"))
        .write(dir.join("hec.toml"));
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o640)).unwrap();
    cfg
}

/// Runs one transaction through `omprog`; returns (the COMMIT reply, stderr).
fn one_transaction(cfg: &Path) -> (String, String) {
    let mut child = Command::new(BIN)
        .args(["omprog", "--config"])
        .arg(cfg)
        .env("QAB_LOG", "debug")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let line = "<134>Jun  6 14:52:28 q-node-1 qumulo 10.0.0.1,\"AD\\alice\",smb2,fs_write_data,ok,7,\"/share/file-7.txt\",\"\"";
    // Like rsyslog, keep stdin open until the COMMIT is answered (a closed stdin means shut down).
    let mut stdin = child.stdin.take().unwrap();
    write!(stdin, "BEGIN TRANSACTION\n{line}\nCOMMIT TRANSACTION\n").unwrap();
    stdin.flush().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut replies = Vec::new();
    for _ in 0..4 {
        let mut reply = String::new();
        stdout.read_line(&mut reply).unwrap();
        replies.push(reply.trim_end_matches('\n').trim_start_matches('.').to_string());
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(&replies[..3], &["OK", "OK", "DEFER_COMMIT"], "replies: {replies:?}");
    assert!(out.stdout.is_empty(), "nothing but replies on stdout");
    (replies[3].to_string(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn self_signed_certificate_is_refused_by_default() {
    let server = start_tls_server();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), server.port, |c| c);
    let (commit, stderr) = one_transaction(&cfg);
    assert!(commit.starts_with("ERROR destination unavailable"), "COMMIT reply {commit:?}");
    assert!(stderr.to_lowercase().contains("certificate"), "stderr names the certificate problem:\n{stderr}");
    assert_eq!(server.requests.load(Ordering::SeqCst), 0, "no request may reach an unverified server");
    // `check --connect` says so too.
    let check = Command::new(BIN).args(["check", "--connect", "--config"]).arg(&cfg).output().unwrap();
    assert!(!check.status.success());
    assert!(String::from_utf8_lossy(&check.stderr).to_lowercase().contains("certificate"));
    assert!(!stderr.contains(TOKEN), "the token leaked into the log");
}

#[test]
fn ca_file_makes_the_server_trusted() {
    let server = start_tls_server();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &server.ca_pem).unwrap();
    let cfg = write_config(dir.path(), server.port, |c| c.dest("ca_file", path_value(&ca)));
    let (commit, stderr) = one_transaction(&cfg);
    assert_eq!(commit, "OK", "stderr:\n{stderr}");
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
    assert!(!stderr.contains(TOKEN), "the token leaked into the log:\n{stderr}");
    assert!(!stderr.contains("readable by every user"), "no warning for mode 0640");
}

#[test]
fn tls_verify_false_is_accepted_with_a_warning() {
    let server = start_tls_server();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), server.port, |c| c.dest("tls_verify", false));
    let (commit, stderr) = one_transaction(&cfg);
    assert_eq!(commit, "OK", "stderr:\n{stderr}");
    assert!(stderr.contains("tls_verify = false"), "a warning names the setting:\n{stderr}");
}

#[test]
fn world_readable_token_file_is_warned_about_and_never_logged() {
    let server = start_tls_server();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &server.ca_pem).unwrap();
    let cfg = write_config(dir.path(), server.port, |c| c.dest("ca_file", path_value(&ca)));
    std::fs::set_permissions(dir.path().join("hec.token"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let (commit, stderr) = one_transaction(&cfg);
    assert_eq!(commit, "OK", "stderr:\n{stderr}");
    assert!(stderr.contains("readable by every user"), "stderr:\n{stderr}");
    assert!(stderr.contains("hec.token"), "the warning names the file:\n{stderr}");
    assert!(!stderr.contains(TOKEN), "the token leaked into the log:\n{stderr}");
}
