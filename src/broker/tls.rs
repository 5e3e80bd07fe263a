//! `[broker.tls]`: the cluster listeners speak TLS, through rsyslog's GnuTLS stream driver
//! (`lmnsd_gtls.so`, package `rsyslog-gnutls` on Debian/Ubuntu and RHEL/Fedora).
//!
//! ```toml
//! [broker.tls]
//! cert_file = "/etc/qumulo-audit-broker/tls/listener.pem"  # PEM: the listener's certificate (chain)
//! key_file = "/etc/qumulo-audit-broker/tls/listener.key"   # PEM: its private key (0640)
//! ca_file = "/etc/qumulo-audit-broker/tls/ca.pem"          # PEM: the CA of the nodes' certificates
//! auth_mode = "x509/name"            # anon (default) | x509/certvalid | x509/name
//! permitted_peers = ["*.nodes.example.com"]   # x509/name only
//! ```
//!
//! Contract:
//! * Rendering ([`input_params`]): every cluster input gets the driver as `input()` parameters
//!   (`streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode=...
//!   streamDriver.CAFile/CertFile/KeyFile`, `permittedPeer=[...]`), which rsyslog 8.2302's imtcp
//!   takes per input. Not as `module(load="imtcp" streamDriver...)` nor as
//!   `global(defaultNetstreamDriver...)`: imtcp may be loaded by the host's rsyslog.conf (whose
//!   parameters `apply` does not own) and the global defaults would reach every other TLS user
//!   of the daemon. With `[broker.tls]` no listener of ours speaks plain TCP: a plain client's
//!   bytes are a failed handshake, never an event.
//! * `anon`: the listener proves itself with its certificate and the stream is encrypted; any
//!   client may send. `x509/certvalid`: a client must present a certificate chaining to
//!   `ca_file`. `x509/name`: and one of its names (subjectAltName dNSName, else CN) must match
//!   `permitted_peers` (rsyslog's syntax: exact, or `*.example.com`).
//! * `anon` without `ca_file`: rsyslog warns at every start "CA certificate is not set" although
//!   anon mode verifies no client; the rendering then names `cert_file` as the CA file (read,
//!   never used), so rsyslog starts without a warning.
//! * [`validate`] checks values (no I/O, at parse); [`preflight`] what the machine must offer
//!   (files readable, certificate and key PEM and matching, CA PEM, the driver installed: the
//!   error names the package). `apply` and `check` run both; errors name file and line.
//! * [`send_line`] is `test-event`'s client: it trusts exactly the listener's own certificate
//!   (it tests this broker, whatever name the certificate carries) and, in the x509 modes,
//!   presents the listener's certificate as its own unless given a node's certificate.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use serde::Deserialize;
use toml::Spanned;

use crate::config::{line_at, warn_if_world_readable, ConfigError};

/// The driver's shared object and the package that ships it.
pub const DRIVER_MODULE: &str = "lmnsd_gtls.so";
pub const DRIVER_PACKAGE: &str = "rsyslog-gnutls";

/// `auth_mode`: rsyslog's `streamDriver.authMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum AuthMode {
    #[default]
    #[serde(rename = "anon")]
    Anon,
    #[serde(rename = "x509/certvalid")]
    CertValid,
    #[serde(rename = "x509/name")]
    Name,
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Anon => "anon",
            AuthMode::CertValid => "x509/certvalid",
            AuthMode::Name => "x509/name",
        }
    }
}

/// `[broker.tls]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    pub cert_file: Spanned<PathBuf>,
    pub key_file: Spanned<PathBuf>,
    #[serde(default)]
    pub ca_file: Option<Spanned<PathBuf>>,
    #[serde(default)]
    pub auth_mode: Option<Spanned<AuthMode>>,
    #[serde(default)]
    pub permitted_peers: Option<Spanned<Vec<String>>>,
}

impl ListenerTls {
    pub fn mode(&self) -> AuthMode {
        self.auth_mode.as_ref().map_or(AuthMode::Anon, |m| *m.get_ref())
    }

    pub fn peers(&self) -> &[String] {
        self.permitted_peers.as_ref().map_or(&[], |p| p.get_ref())
    }
}

fn at<T>(text: &str, v: &Spanned<T>, message: String) -> ConfigError {
    ConfigError::new(message).with_line(Some(line_at(text, v.span().start)))
}

/// Values only: absolute paths, `ca_file` for the x509 modes, `permitted_peers` exactly with
/// `x509/name`.
pub fn validate(text: &str, t: &ListenerTls) -> Result<(), ConfigError> {
    for (key, p) in [("cert_file", Some(&t.cert_file)), ("key_file", Some(&t.key_file)), ("ca_file", t.ca_file.as_ref())] {
        if let Some(p) = p {
            if !p.get_ref().is_absolute() {
                return Err(at(text, p, format!("[broker.tls] {key} = {:?}: an absolute path (rsyslogd reads it, from its own directory)", p.get_ref().display().to_string())));
            }
        }
    }
    let mode = t.mode();
    if mode != AuthMode::Anon && t.ca_file.is_none() {
        let m = t.auth_mode.as_ref().expect("a non-default mode was written");
        return Err(at(text, m, format!("[broker.tls] auth_mode = {:?} needs ca_file: the CA the nodes' certificates must chain to", mode.as_str())));
    }
    match (&t.permitted_peers, mode) {
        (None, AuthMode::Name) => {
            let m = t.auth_mode.as_ref().expect("x509/name was written");
            return Err(at(text, m, "[broker.tls] auth_mode = \"x509/name\" needs permitted_peers: the names a node's certificate may carry".into()));
        }
        (Some(p), m) if m != AuthMode::Name => {
            return Err(at(text, p, format!("[broker.tls] permitted_peers: only with auth_mode = \"x509/name\" (auth_mode is {:?}; rsyslog would ignore the list)", m.as_str())));
        }
        (Some(p), _) => {
            if p.get_ref().is_empty() {
                return Err(at(text, p, "[broker.tls] permitted_peers = []: no node could send; list their certificate names".into()));
            }
            if let Some(bad) = p.get_ref().iter().find(|n| n.is_empty() || n.chars().any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\\')) {
                return Err(at(text, p, format!("[broker.tls] permitted_peers: {bad:?} is not a certificate name (\"host.example.com\" or \"*.example.com\")")));
            }
        }
        _ => {}
    }
    Ok(())
}

/// Where rsyslog loads modules from: `RSYSLOG_MODDIR` (rsyslogd honours it too), else the
/// first distribution directory holding `imtcp.so`. `None`: no rsyslog modules found.
pub fn rsyslog_module_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("RSYSLOG_MODDIR") {
        return Some(PathBuf::from(d));
    }
    let multiarch = format!("/usr/lib/{}-linux-gnu/rsyslog", std::env::consts::ARCH);
    [multiarch.as_str(), "/usr/lib64/rsyslog", "/usr/lib/rsyslog", "/usr/local/lib/rsyslog"]
        .iter()
        .map(PathBuf::from)
        .find(|d| d.join("imtcp.so").exists())
}

/// What the machine must offer: the files readable, the certificate and key PEM and matching
/// (as TLS would use them), the CA file PEM, and rsyslog's GnuTLS driver installed. `text` and
/// `path` locate errors. Warns (log) when the key file is readable by every user.
pub fn preflight(text: &str, path: &Path, t: &ListenerTls) -> Result<(), ConfigError> {
    let located = |v: &Spanned<PathBuf>, m: String| at(text, v, m).with_file(path);
    let (chain, key) = load_identity(t.cert_file.get_ref(), t.key_file.get_ref()).map_err(|(on_key, m)| {
        located(if on_key { &t.key_file } else { &t.cert_file }, format!("[broker.tls] {m}"))
    })?;
    provider()
        .key_provider
        .load_private_key(key.clone_key())
        .and_then(|k| rustls::sign::CertifiedKey::new(chain.clone(), k).keys_match())
        .or_else(|e| if matches!(e, rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) { Ok(()) } else { Err(e) })
        .map_err(|e| {
            located(&t.key_file, format!("[broker.tls] key_file {} does not go with cert_file {}: {e}", t.key_file.get_ref().display(), t.cert_file.get_ref().display()))
        })?;
    warn_if_world_readable(t.key_file.get_ref());
    if let Some(ca) = &t.ca_file {
        crate::sink::http::load_ca_file(ca.get_ref()).map_err(|e| located(ca, format!("[broker.tls] {e}")))?;
    }
    match rsyslog_module_dir() {
        Some(dir) if dir.join(DRIVER_MODULE).exists() => Ok(()),
        Some(dir) => Err(located(
            &t.cert_file,
            format!("[broker.tls]: rsyslog's GnuTLS stream driver is not installed ({} not found): install the package {DRIVER_PACKAGE}", dir.join(DRIVER_MODULE).display()),
        )),
        None => Err(located(&t.cert_file, format!("[broker.tls]: rsyslog's modules are nowhere to be found (no imtcp.so; set RSYSLOG_MODDIR): install rsyslog and {DRIVER_PACKAGE}"))),
    }
}

/// The certificate chain and key, PEM. Error: (is the key file at fault, message).
fn load_identity(cert: &Path, key: &Path) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), (bool, String)> {
    let pem = std::fs::read(cert).map_err(|e| (false, format!("cannot read cert_file {}: {e}", cert.display())))?;
    let chain = rustls_pemfile::certs(&mut &pem[..]).collect::<Result<Vec<_>, _>>().map_err(|e| (false, format!("cert_file {}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err((false, format!("cert_file {} holds no PEM certificate", cert.display())));
    }
    let pem = std::fs::read(key).map_err(|e| (true, format!("cannot read key_file {}: {e}", key.display())))?;
    let key_der = rustls_pemfile::private_key(&mut &pem[..])
        .map_err(|e| (true, format!("key_file {}: {e}", key.display())))?
        .ok_or_else(|| (true, format!("key_file {} holds no PEM private key", key.display())))?;
    Ok((chain, key_der))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn q(p: &Path) -> String {
    p.display().to_string().replace('\\', "\\\\").replace('"', "\\\"")
}

/// The imtcp `input()` parameters (leading space, one line).
pub fn input_params(t: &ListenerTls) -> String {
    let ca = t.ca_file.as_ref().map_or(t.cert_file.get_ref(), |c| c.get_ref());
    let mut s = format!(
        " streamDriver.name=\"gtls\" streamDriver.mode=\"1\" streamDriver.authMode=\"{}\" streamDriver.CAFile=\"{}\" streamDriver.CertFile=\"{}\" streamDriver.KeyFile=\"{}\"",
        t.mode().as_str(),
        q(ca),
        q(t.cert_file.get_ref()),
        q(t.key_file.get_ref())
    );
    if t.mode() == AuthMode::Name {
        let peers: Vec<String> = t.peers().iter().map(|p| format!("\"{p}\"")).collect();
        s.push_str(&format!(" permittedPeer=[{}]", peers.join(", ")));
    }
    s
}

/// Trusts exactly one certificate: the listener's own (`cert_file`'s first).
#[derive(Debug)]
struct Pinned {
    cert: CertificateDer<'static>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("the listener presented another certificate than [broker.tls] cert_file (another program on that port?)".into()))
        }
    }
    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &rustls::DigitallySignedStruct) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }
    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &rustls::DigitallySignedStruct) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Sends `line` (and a newline) over TLS to `host:port`, then closes the session cleanly.
/// `client`: the certificate and key to present; in the x509 modes the listener's own are
/// presented when `None`. Errors are one line, for the operator.
pub fn send_line(t: &ListenerTls, host: &str, port: u16, line: &str, client: Option<(&Path, &Path)>) -> Result<(), String> {
    let (own, _) = load_identity(t.cert_file.get_ref(), t.key_file.get_ref()).map_err(|(_, m)| format!("[broker.tls] {m}"))?;
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned { cert: own[0].clone(), provider }));
    let identity = match (client, t.mode()) {
        (Some((c, k)), _) => Some((c.to_path_buf(), k.to_path_buf())),
        (None, AuthMode::Anon) => None,
        (None, _) => Some((t.cert_file.get_ref().clone(), t.key_file.get_ref().clone())),
    };
    let config = match identity {
        Some((c, k)) => {
            let (chain, key) = load_identity(&c, &k).map_err(|(_, m)| format!("client certificate: {m}"))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| format!("client certificate {}: {e}", c.display()))?
        }
        None => builder.with_no_client_auth(),
    };
    let name = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => ServerName::try_from(host.to_string()).map_err(|e| format!("{host}: {e}"))?,
    };
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| format!("TLS setup: {e}"))?;
    let mut sock = TcpStream::connect((host, port)).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    let handshake = |e: std::io::Error| format!("TLS session refused: {e}");
    tls.write_all(line.as_bytes()).map_err(handshake)?;
    tls.write_all(b"\n").map_err(handshake)?;
    tls.flush().map_err(handshake)?;
    // The listener may still refuse the client's certificate (TLS 1.3 tells after the client
    // finished): read until its close; an alert is the refusal.
    tls.conn.send_close_notify();
    tls.flush().map_err(handshake)?;
    let mut buf = [0u8; 512];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof || e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(()),
            Err(e) => return Err(handshake(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<ListenerTls, ConfigError> {
        let text = format!("# line 1\n{body}");
        let t: ListenerTls = toml::from_str(&text).map_err(|e| ConfigError::new(e.to_string()))?;
        validate(&text, &t).map(|_| t)
    }

    #[test]
    fn values_are_checked_with_their_line() {
        let ok = parse("cert_file = \"/c.pem\"\nkey_file = \"/k.pem\"\n").unwrap();
        assert_eq!(ok.mode(), AuthMode::Anon);
        assert_eq!(
            input_params(&ok),
            " streamDriver.name=\"gtls\" streamDriver.mode=\"1\" streamDriver.authMode=\"anon\" streamDriver.CAFile=\"/c.pem\" streamDriver.CertFile=\"/c.pem\" streamDriver.KeyFile=\"/k.pem\"",
            "anon without ca_file names the certificate as CA file (rsyslog warns without one)"
        );
        let named = parse("cert_file = \"/c.pem\"\nkey_file = \"/k.pem\"\nca_file = \"/ca.pem\"\nauth_mode = \"x509/name\"\npermitted_peers = [\"*.nodes.example\", \"n1\"]\n").unwrap();
        let p = input_params(&named);
        assert!(p.contains(" streamDriver.authMode=\"x509/name\" streamDriver.CAFile=\"/ca.pem\" ") && p.ends_with(" permittedPeer=[\"*.nodes.example\", \"n1\"]"), "{p}");
        for (body, line, want) in [
            ("cert_file = \"c.pem\"\nkey_file = \"/k.pem\"\n", 2, "absolute path"),
            ("cert_file = \"/c.pem\"\nkey_file = \"/k.pem\"\nauth_mode = \"x509/certvalid\"\n", 4, "needs ca_file"),
            ("cert_file = \"/c.pem\"\nkey_file = \"/k.pem\"\nca_file = \"/a\"\nauth_mode = \"x509/name\"\n", 5, "needs permitted_peers"),
            ("cert_file = \"/c.pem\"\nkey_file = \"/k.pem\"\npermitted_peers = [\"a\"]\n", 4, "only with auth_mode = \"x509/name\""),
            ("cert_file = \"/c.pem\"\nkey_file = \"/k.pem\"\nca_file = \"/a\"\nauth_mode = \"x509/name\"\npermitted_peers = [\"a b\"]\n", 6, "not a certificate name"),
        ] {
            let e = parse(body).unwrap_err();
            assert_eq!(e.line, Some(line), "{body}: {e}");
            assert!(e.message.contains(want), "{body}: {e}");
        }
        assert!(parse("cert_file = \"/c\"\nkey_file = \"/k\"\nauth_mode = \"x509\"\n").unwrap_err().message.contains("unknown variant"));
    }
}
