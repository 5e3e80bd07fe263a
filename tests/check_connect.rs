//! `check --connect` against Elasticsearch proves the credentials and the right to write to the
//! index, writing nothing: a small server here answers `_security/_authenticate` (200 for user
//! `qab` with password `right`, else 401) and `_security/user/_has_privileges` (`create_doc`
//! granted on index `qumulo-audit` only), as Elasticsearch with security enabled does.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::{Arc, Mutex};

#[path = "support/config.rs"]
#[allow(dead_code)]
mod config;
use config::{path_value, ConfigToml};

const BIN: &str = env!("CARGO_BIN_EXE_qumulo-audit-broker");

/// Starts the fake Elasticsearch; returns its port and the request lines it saw.
fn fake_es() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut first = String::new();
            if r.read_line(&mut first).is_err() {
                continue;
            }
            let (mut auth, mut len) = (String::new(), 0usize);
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
                let (k, v) = h.split_once(':').unwrap_or(("", ""));
                match k.to_ascii_lowercase().as_str() {
                    "authorization" => auth = v.trim().to_string(),
                    "content-length" => len = v.trim().parse().unwrap_or(0),
                    _ => {}
                }
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            let body = String::from_utf8_lossy(&body).into_owned();
            log.lock().unwrap().push(first.trim().to_string());
            let ok_user = auth == "Basic cWFiOnJpZ2h0";
            let (status, reply) = if !ok_user {
                (401, r#"{"error":"unable to authenticate user [qab]"}"#.to_string())
            } else if first.starts_with("GET /_security/_authenticate") {
                (200, r#"{"username":"qab"}"#.to_string())
            } else if first.starts_with("POST /_security/user/_has_privileges") {
                let granted = body.contains(r#""names":["qumulo-audit"]"#) && body.contains("create_doc");
                (200, format!(r#"{{"username":"qab","has_all_requested":{granted}}}"#))
            } else {
                (404, "{}".to_string())
            };
            let mut w = conn;
            let _ = write!(w, "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}", reply.len());
        }
    });
    (port, seen)
}

#[test]
fn elasticsearch_credentials_and_index_rights_are_proven() {
    let (port, seen) = fake_es();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let check = |password: &str, index: &str| {
        std::fs::write(d.join("es.password"), password).unwrap();
        std::fs::set_permissions(d.join("es.password"), std::fs::Permissions::from_mode(0o640)).unwrap();
        let cfg = d.join("es.toml");
        let toml = ConfigToml::destination("http")
            .dest("preset", "elasticsearch-bulk")
            .format("ecs")
            .dest("url", format!("http://127.0.0.1:{port}"))
            .dest("username", "qab")
            .dest("password_file", path_value(&d.join("es.password")))
            .dest("index", index)
            .journal_dir(&d.join("journal"));
        std::fs::write(&cfg, toml.text()).unwrap();
        std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o640)).unwrap();
        let out = Command::new(BIN).args(["check", "--connect", "--config"]).arg(&cfg).env("QAB_LOG", "warn").output().unwrap();
        (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let (code, out) = check("right\n", "qumulo-audit");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("user \"qab\" authenticated and may write (create_doc) to index \"qumulo-audit\""), "{out}");
    assert!(out.contains("WARNING: the secret") && out.contains("plain http"), "{out}");
    let (code, out) = check("wrong\n", "qumulo-audit");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("refused the credentials (HTTP 401"), "{out}");
    let (code, out) = check("right\n", "other-index");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("may NOT write (create_doc) to index \"other-index\""), "{out}");
    let seen = seen.lock().unwrap();
    assert!(seen.iter().all(|l| !l.contains("_bulk")), "nothing was written: {seen:?}");
}
