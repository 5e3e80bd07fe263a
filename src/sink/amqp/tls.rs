//! TLS for AMQP connections: rustls (the same `ring` provider as the HTTP destination, no
//! OpenSSL, so the static musl build is unchanged). The server's certificate is checked against
//! the system's roots plus `ca_file`; `cert_file`/`key_file` add a client certificate (RabbitMQ
//! `ssl_options.verify = verify_peer` / `fail_if_no_peer_cert`).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{AmqpTarget, ConfigError};
use crate::sink::http::load_ca_file;

/// The client certificate chain and its private key (PEM files).
pub fn load_client_identity(cert: &Path, key: &Path) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), ConfigError> {
    let pem = std::fs::read(cert).map_err(|e| ConfigError::new(format!("cannot read cert_file {}: {e}", cert.display())))?;
    let certs = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConfigError::new(format!("cert_file {}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(ConfigError::new(format!("cert_file {} holds no PEM certificate", cert.display())));
    }
    let pem = std::fs::read(key).map_err(|e| ConfigError::new(format!("cannot read key_file {}: {e}", key.display())))?;
    let key_der = rustls_pemfile::private_key(&mut &pem[..])
        .map_err(|e| ConfigError::new(format!("key_file {}: {e}", key.display())))?
        .ok_or_else(|| ConfigError::new(format!("key_file {} holds no PEM private key", key.display())))?;
    Ok((certs, key_der))
}

/// The rustls configuration of one connection.
pub fn client_config(t: &AmqpTarget) -> Result<Arc<rustls::ClientConfig>, ConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new(format!("TLS setup: {e}")))?;
    let mut roots = rustls::RootCertStore::empty();
    match rustls_native_certs::load_native_certs() {
        Ok(certs) => {
            let (_added, _ignored) = roots.add_parsable_certificates(certs);
        }
        Err(e) => log::warn!("cannot load the system's root certificates: {e}"),
    }
    if let Some(ca) = &t.ca_file {
        for cert in load_ca_file(ca)? {
            roots.add(cert).map_err(|e| ConfigError::new(format!("ca_file {}: {e}", ca.display())))?;
        }
    }
    let builder = builder.with_root_certificates(roots);
    let config = match (&t.cert_file, &t.key_file) {
        (Some(cert), Some(key)) => {
            let (chain, key) = load_client_identity(cert, key)?;
            builder.with_client_auth_cert(chain, key).map_err(|e| ConfigError::new(format!("cert_file/key_file: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
