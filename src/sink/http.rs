//! HTTP destination via `ureq`, with three presets:
//!
//! * `ndjson`: POST one JSON (or text) record per line;
//! * `splunk-hec`: POST `/services/collector/event` with concatenated HEC event objects
//!   (`time`, `host`, `source`, `sourcetype`, `index`, `event`), `Authorization: Splunk <token>`;
//! * `elasticsearch-bulk`: POST `_bulk` NDJSON with `create` actions whose `_id` is our stable
//!   event id, so a retried batch never indexes an event twice (409 conflicts count as
//!   delivered); per-item results are read: 429/5xx items are retried, other 4xx items are
//!   dead-lettered.
//!
//! Any HTTP 400 for a multi-record request is narrowed down by sending the records one by one,
//! so one bad record is dead-lettered and the rest delivered. A HEC 400 that names the bad event
//! (`invalid-event-number`) is narrowed down without re-sending the events before it, which
//! Splunk has already indexed (it does not de-duplicate). 401/403/404 and other statuses are
//! treated as retryable: a configuration problem must never throw audit data away.
//! TLS is verified by default against the system's roots plus an optional `ca_file`.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use super::Attempt;
use crate::batch::Batch;
use crate::config::{read_secret, ConfigError, HttpDestination, HttpPreset};
use crate::event::Event;
use crate::format::jsonw::{write_str, JsonObj};
use crate::format::Format;

/// Frames events for a preset (HEC event objects, bulk action + source pairs, NDJSON lines).
#[derive(Clone)]
pub struct HttpEncoder {
    format: Format,
    preset: HttpPreset,
    index: String,
    sourcetype: String,
    source: Option<String>,
}

pub struct HttpSink {
    agent: ureq::Agent,
    url: String,
    preset: HttpPreset,
    /// The destination's `index` (for `check --connect`'s Elasticsearch rights check).
    index: String,
    auth: Option<String>,
    gzip: bool,
    scratch: Vec<u8>,
    gz: Vec<u8>,
}

/// The URL to POST to for a preset: HEC and bulk paths are added when the configured URL is a
/// bare base (`https://splunk:8088`, `http://es:9200`).
fn endpoint(url: &str, preset: HttpPreset) -> String {
    let trimmed = url.trim_end_matches('/');
    let has_path = trimmed.splitn(4, '/').nth(3).is_some_and(|p| !p.is_empty());
    match preset {
        HttpPreset::SplunkHec if !has_path => format!("{trimmed}/services/collector/event"),
        HttpPreset::ElasticsearchBulk if !has_path => format!("{trimmed}/_bulk"),
        _ => url.to_string(),
    }
}

/// True when the sink will load `ca_file` (an `https://` URL with certificate checks on).
pub fn uses_ca_file(d: &HttpDestination) -> bool {
    d.url.starts_with("https://") && d.tls_verify
}

/// The PEM certificates of a `ca_file` (at least one).
pub fn load_ca_file(ca: &std::path::Path) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, ConfigError> {
    let pem = std::fs::read(ca).map_err(|e| ConfigError::new(format!("cannot read ca_file {}: {e}", ca.display())))?;
    let certs = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConfigError::new(format!("ca_file {}: {e}", ca.display())))?;
    if certs.is_empty() {
        return Err(ConfigError::new(format!("ca_file {} holds no PEM certificate", ca.display())));
    }
    Ok(certs)
}

fn tls_config(d: &HttpDestination) -> Result<Arc<rustls::ClientConfig>, ConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new(format!("TLS setup: {e}")))?;
    if !d.tls_verify {
        log::warn!("[destination] tls_verify = false: the server's certificate is NOT checked; anyone on the path can read and forge deliveries");
        let verifier = Arc::new(NoVerify(provider));
        return Ok(Arc::new(builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth()));
    }
    let mut roots = rustls::RootCertStore::empty();
    match rustls_native_certs::load_native_certs() {
        Ok(certs) => {
            let (_added, _ignored) = roots.add_parsable_certificates(certs);
        }
        Err(e) => log::warn!("cannot load the system's root certificates: {e}"),
    }
    if let Some(ca) = &d.ca_file {
        for cert in load_ca_file(ca).map_err(|e| ConfigError::new(format!("[destination] {e}")).with_key("destination.ca_file"))? {
            roots.add(cert).map_err(|e| ConfigError::new(format!("[destination] ca_file {}: {e}", ca.display())))?;
        }
    }
    Ok(Arc::new(builder.with_root_certificates(roots).with_no_client_auth()))
}

#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl HttpSink {
    /// Builds the sink (reads the secret files and `ca_file`; the world-readable warnings are
    /// [`crate::config::preflight::check`]'s).
    pub fn new(d: &HttpDestination) -> Result<HttpSink, ConfigError> {
        let preset = d.preset;
        let url = endpoint(&d.url, preset);
        let timeout = Duration::from_secs(d.timeout_secs);
        let mut builder = ureq::AgentBuilder::new()
            .timeout_connect(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            .max_idle_connections_per_host(4);
        if url.starts_with("https://") {
            builder = builder.tls_config(tls_config(d)?);
        }
        let auth = if let Some(tf) = &d.token_file {
            let token = read_secret(tf).map_err(|e| ConfigError::new(format!("[destination] token_file: {e}")))?;
            Some(match preset {
                HttpPreset::SplunkHec => format!("Splunk {token}"),
                _ => format!("Bearer {token}"),
            })
        } else if let (Some(user), Some(pf)) = (&d.username, &d.password_file) {
            let password = read_secret(pf).map_err(|e| ConfigError::new(format!("[destination] password_file: {e}")))?;
            Some(format!("Basic {}", base64_encode(format!("{user}:{password}").as_bytes())))
        } else {
            None
        };
        Ok(HttpSink {
            agent: builder.build(),
            index: d.index.clone(),
            url,
            preset,
            auth,
            gzip: d.gzip,
            scratch: Vec::new(),
            gz: Vec::new(),
        })
    }

}

impl HttpEncoder {
    pub fn new(d: &HttpDestination) -> HttpEncoder {
        HttpEncoder {
            format: d.format,
            preset: d.preset,
            index: d.index.clone(),
            sourcetype: d.sourcetype.clone(),
            source: d.source.clone(),
        }
    }

    pub fn encode(&self, ev: &Event, rendered: &mut Vec<u8>, out: &mut Vec<u8>) {
        let format = self.format;
        match self.preset {
            HttpPreset::Ndjson => {
                format.render(ev, out);
                out.push(b'\n');
            }
            HttpPreset::ElasticsearchBulk => {
                let mut action = JsonObj::begin(out);
                {
                    let mut create = action.obj("create");
                    create.str("_index", &self.index).str("_id", &ev.id);
                    create.end();
                }
                action.end();
                out.push(b'\n');
                format.render(ev, out);
                out.push(b'\n');
            }
            HttpPreset::SplunkHec => {
                rendered.clear();
                format.render(ev, rendered);
                let mut o = JsonObj::begin(out);
                let t = ev.time.unwrap_or_else(crate::time::Timestamp::now);
                let _ = write!(o.raw_key("time"), "{}.{:03}", t.secs, t.nanos / 1_000_000);
                let host = if ev.node.is_empty() { ev.cluster.as_str() } else { ev.node.as_str() };
                o.opt_str("host", host);
                match &self.source {
                    Some(s) => o.str("source", s),
                    None if !ev.cluster.is_empty() => {
                        let mut src = String::with_capacity(7 + ev.cluster.len());
                        src.push_str("qumulo:");
                        src.push_str(&ev.cluster);
                        o.str("source", &src)
                    }
                    None => o.str("source", "qumulo"),
                };
                o.str("sourcetype", &self.sourcetype).str("index", &self.index);
                if format.is_json() {
                    o.raw("event", std::str::from_utf8(rendered).unwrap_or("null"));
                } else {
                    write_str(o.raw_key("event"), &String::from_utf8_lossy(rendered));
                }
                o.end();
                out.push(b'\n');
            }
        }
    }
}

impl HttpSink {
    fn post(&mut self, body_records: &[u8]) -> Result<(u16, String), String> {
        let mut req = self.agent.post(&self.url).set(
            "Content-Type",
            match self.preset {
                HttpPreset::SplunkHec => "application/json",
                _ => "application/x-ndjson",
            },
        );
        if let Some(a) = &self.auth {
            req = req.set("Authorization", a);
        }
        let body: &[u8] = if self.gzip {
            self.gz.clear();
            let mut enc = flate2::write::GzEncoder::new(&mut self.gz, flate2::Compression::fast());
            enc.write_all(body_records).and_then(|_| enc.finish().map(|_| ())).map_err(|e| format!("gzip: {e}"))?;
            req = req.set("Content-Encoding", "gzip");
            &self.gz
        } else {
            body_records
        };
        match req.send_bytes(body) {
            Ok(resp) => {
                let status = resp.status();
                Ok((status, resp.into_string().unwrap_or_default()))
            }
            Err(ureq::Error::Status(code, resp)) => Ok((code, resp.into_string().unwrap_or_default())),
            Err(ureq::Error::Transport(t)) => Err(format!("{}: {t}", self.url)),
        }
    }

    pub fn deliver(&mut self, batch: &Batch, which: &[usize]) -> Attempt {
        let mut scratch = std::mem::take(&mut self.scratch);
        let result = self.post(batch.body(which, &mut scratch));
        self.scratch = scratch;
        match result {
            Err(e) => Attempt::retry_all(which, format!("destination unavailable: {e}")),
            Ok((code, text)) => self.judge(batch, which, code, &text),
        }
    }

    fn judge(&mut self, batch: &Batch, which: &[usize], code: u16, text: &str) -> Attempt {
        let short = text.chars().take(300).collect::<String>();
        match code {
            200..=299 if self.preset == HttpPreset::ElasticsearchBulk => bulk_items(which, text),
            200..=299 => Attempt::ok(),
            400 if which.len() > 1 && self.preset == HttpPreset::SplunkHec && hec_invalid_event(text).is_some() => {
                self.hec_partial(batch, which, text)
            }
            400 | 413 if which.len() > 1 => self.one_by_one(batch, which),
            400 | 413 => Attempt {
                rejected: vec![(which[0], format!("HTTP {code}: {short}"))],
                ..Attempt::default()
            },
            _ => Attempt::retry_all(which, format!("destination unavailable: HTTP {code} from {}: {short}", self.url)),
        }
    }

    /// A HEC 400 naming the bad event (`invalid-event-number`): Splunk has indexed the events
    /// before it and dropped the rest, and it does not de-duplicate, so only the bad one is
    /// rejected and only the ones after it are sent again (at once; further 400s likewise).
    fn hec_partial(&mut self, batch: &Batch, which: &[usize], text: &str) -> Attempt {
        let mut total = Attempt::default();
        let mut rest: Vec<usize> = which.to_vec();
        let mut text = text.to_string();
        loop {
            let Some(k) = hec_invalid_event(&text).filter(|&k| k < rest.len()) else {
                let a = self.one_by_one(batch, &rest);
                total.merge(a);
                return total;
            };
            let short = text.chars().take(300).collect::<String>();
            total.rejected.push((rest[k], format!("HTTP 400: {short}")));
            rest.drain(..=k);
            if rest.is_empty() {
                return total;
            }
            let mut scratch = std::mem::take(&mut self.scratch);
            let result = self.post(batch.body(&rest, &mut scratch));
            self.scratch = scratch;
            match result {
                Err(e) => {
                    total.merge(Attempt::retry_all(&rest, format!("destination unavailable: {e}")));
                    return total;
                }
                Ok((400, t)) if rest.len() > 1 && hec_invalid_event(&t).is_some() => text = t,
                Ok((code, t)) => {
                    let a = self.judge(batch, &rest, code, &t);
                    total.merge(a);
                    return total;
                }
            }
        }
    }

    /// Sends each record alone, to find the ones the destination refuses.
    fn one_by_one(&mut self, batch: &Batch, which: &[usize]) -> Attempt {
        let mut total = Attempt::default();
        for &i in which {
            let a = match self.post(batch.record(i)) {
                Err(e) => Attempt::retry_all(&[i], format!("destination unavailable: {e}")),
                Ok((code, text)) => self.judge(batch, &[i], code, &text),
            };
            total.merge(a);
        }
        total
    }

    pub fn check(&mut self) -> Result<String, String> {
        let warning = if self.auth.is_some() && self.url.starts_with("http://") {
            "; WARNING: the secret (token or password) is sent over plain http: use https"
        } else {
            ""
        };
        if self.preset == HttpPreset::SplunkHec {
            return self.check_hec().map(|m| m + warning);
        }
        if self.preset == HttpPreset::ElasticsearchBulk {
            return self.check_es().map(|m| m + warning);
        }
        let probe = self.url.clone();
        let mut req = self.agent.get(&probe);
        if let Some(a) = &self.auth {
            req = req.set("Authorization", a);
        }
        match req.call() {
            Ok(r) => Ok(format!("{probe} answered HTTP {}{warning}", r.status())),
            Err(ureq::Error::Status(code @ (401 | 403), r)) if self.auth.is_some() => {
                Err(format!("{probe} refused the credentials (HTTP {code}: {})", r.into_string().unwrap_or_default().trim()))
            }
            Err(ureq::Error::Status(code, _)) => Ok(format!("{probe} is reachable (HTTP {code}){warning}")),
            Err(ureq::Error::Transport(t)) => Err(format!("{probe}: {t}")),
        }
    }

    /// Elasticsearch: the credentials (`_security/_authenticate`: 401 is a wrong user or
    /// password) and the right to write to the index (`_security/user/_has_privileges` for
    /// `create_doc`, what the bulk `create` actions need). Nothing is written. A cluster without
    /// security answers neither: then only reachability is proven, and said.
    fn check_es(&mut self) -> Result<String, String> {
        let base: String = self.url.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
        let with_auth = |req: ureq::Request| match &self.auth {
            Some(a) => req.set("Authorization", a),
            None => req,
        };
        let body = |r: ureq::Response| r.into_string().unwrap_or_default();
        let user = match with_auth(self.agent.get(&format!("{base}/_security/_authenticate"))).call() {
            Ok(r) => serde_json::from_str::<serde_json::Value>(&body(r)).ok().and_then(|v| v.get("username")?.as_str().map(str::to_string)),
            Err(ureq::Error::Status(401, r)) => return Err(format!("{base} refused the credentials (HTTP 401: {})", body(r).trim())),
            Err(ureq::Error::Status(code, _)) => {
                return Ok(format!("{base} is reachable (HTTP {code} to _security/_authenticate: security not enabled, credentials and index rights not checked)"))
            }
            Err(ureq::Error::Transport(t)) => return Err(format!("{base}: {t}")),
        };
        let user = user.unwrap_or_else(|| "?".into());
        let query = format!(r#"{{"index":[{{"names":[{}],"privileges":["create_doc"]}}]}}"#, serde_json::Value::String(self.index.clone()));
        let req = with_auth(self.agent.post(&format!("{base}/_security/user/_has_privileges"))).set("Content-Type", "application/json");
        match req.send_string(&query) {
            Ok(r) => {
                let v: serde_json::Value = serde_json::from_str(&body(r)).map_err(|e| format!("{base}: unreadable _has_privileges answer: {e}"))?;
                if v.get("has_all_requested").and_then(|b| b.as_bool()) == Some(true) {
                    Ok(format!("{base}: user {user:?} authenticated and may write (create_doc) to index {:?}", self.index))
                } else {
                    Err(format!("{base}: user {user:?} authenticated but may NOT write (create_doc) to index {:?}", self.index))
                }
            }
            Err(ureq::Error::Status(code, r)) => Err(format!("{base}: _has_privileges answered HTTP {code}: {}", body(r).trim())),
            Err(ureq::Error::Transport(t)) => Err(format!("{base}: {t}")),
        }
    }

    /// Splunk HEC: an authenticated POST of no event to the event endpoint. Splunk checks the
    /// token first (401/403 for a missing or wrong one), then answers "No data" (400, code 5):
    /// the token is proven and nothing is indexed. (The health endpoint accepts any token.)
    fn check_hec(&mut self) -> Result<String, String> {
        let mut req = self.agent.post(&self.url);
        if let Some(a) = &self.auth {
            req = req.set("Authorization", a);
        }
        match req.send_bytes(b"") {
            Ok(r) => Ok(format!("{} accepted the token (HTTP {})", self.url, r.status())),
            Err(ureq::Error::Status(400, r)) => {
                let body = r.into_string().unwrap_or_default();
                if hec_code(&body) == Some(5) {
                    Ok(format!("{} accepted the token (an empty request answered \"No data\", nothing indexed)", self.url))
                } else {
                    Err(format!("{} answered HTTP 400 to an empty request: {}", self.url, body.trim()))
                }
            }
            Err(ureq::Error::Status(code @ (401 | 403), r)) => {
                Err(format!("{} refused the token (HTTP {code}: {})", self.url, r.into_string().unwrap_or_default().trim()))
            }
            Err(ureq::Error::Status(code, r)) => Err(format!("{} answered HTTP {code}: {}", self.url, r.into_string().unwrap_or_default().trim())),
            Err(ureq::Error::Transport(t)) => Err(format!("{}: {t}", self.url)),
        }
    }
}

/// The `code` of a HEC answer (`{"text":"No data","code":5}`).
fn hec_code(text: &str) -> Option<u64> {
    serde_json::from_str::<serde_json::Value>(text).ok()?.get("code")?.as_u64()
}

/// The `invalid-event-number` of a HEC error answer (`{"text":"Invalid data format","code":6,
/// "invalid-event-number":3}`): the 0-based index of the first event Splunk refused.
fn hec_invalid_event(text: &str) -> Option<usize> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    v.get("invalid-event-number")?.as_u64().map(|k| k as usize)
}

/// Reads an Elasticsearch bulk response; item `k` answers record `which[k]`.
fn bulk_items(which: &[usize], text: &str) -> Attempt {
    let v: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return Attempt::retry_all(which, format!("unreadable bulk response: {e}")),
    };
    if v.get("errors").and_then(|e| e.as_bool()) == Some(false) {
        return Attempt::ok();
    }
    let Some(items) = v.get("items").and_then(|i| i.as_array()) else {
        return Attempt::retry_all(which, "bulk response without items");
    };
    if items.len() != which.len() {
        return Attempt::retry_all(which, format!("bulk response has {} items for {} records", items.len(), which.len()));
    }
    let mut a = Attempt::default();
    for (k, item) in items.iter().enumerate() {
        let Some(result) = item.as_object().and_then(|o| o.values().next()) else {
            a.retry.push(which[k]);
            continue;
        };
        let status = result.get("status").and_then(|s| s.as_u64()).unwrap_or(0);
        match status {
            200..=299 | 409 => {}
            429 | 500..=599 | 0 => {
                a.retry.push(which[k]);
                a.error = Some(format!("bulk item status {status}"));
            }
            _ => {
                let reason = result.get("error").map(|e| e.to_string()).unwrap_or_default();
                a.rejected.push((which[k], format!("bulk item status {status}: {reason}")));
            }
        }
    }
    a
}

fn base64_encode(input: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(endpoint("https://s:8088", HttpPreset::SplunkHec), "https://s:8088/services/collector/event");
        assert_eq!(endpoint("https://s:8088/services/collector", HttpPreset::SplunkHec), "https://s:8088/services/collector");
        assert_eq!(endpoint("http://es:9200/", HttpPreset::ElasticsearchBulk), "http://es:9200/_bulk");
        assert_eq!(endpoint("http://es:9200/idx/_bulk", HttpPreset::ElasticsearchBulk), "http://es:9200/idx/_bulk");
        assert_eq!(endpoint("http://h/ingest", HttpPreset::Ndjson), "http://h/ingest");
    }

    #[test]
    fn basic_auth_base64() {
        assert_eq!(base64_encode(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64_encode(b"a"), "YQ==");
        assert_eq!(base64_encode(b"ab"), "YWI=");
    }

    #[test]
    fn bulk_item_results() {
        let resp = r#"{"took":1,"errors":true,"items":[{"create":{"status":201}},{"create":{"status":409}},{"create":{"status":429}},{"create":{"status":400,"error":{"type":"mapper_parsing_exception"}}},{"create":{"status":503}}]}"#;
        let a = bulk_items(&[10, 11, 12, 13, 14], resp);
        assert_eq!(a.retry, vec![12, 14]);
        assert_eq!(a.rejected.len(), 1);
        assert_eq!(a.rejected[0].0, 13);
        assert!(a.rejected[0].1.contains("mapper_parsing_exception"));
        assert_eq!(bulk_items(&[1], r#"{"errors":false,"items":[]}"#), Attempt::ok());
        assert_eq!(bulk_items(&[1, 2], "garbage").retry, vec![1, 2]);
    }

    #[test]
    fn hec_invalid_event_numbers() {
        assert_eq!(hec_invalid_event(r#"{"text":"Invalid data format","code":6,"invalid-event-number":3}"#), Some(3));
        assert_eq!(hec_invalid_event(r#"{"text":"Invalid data format","code":6}"#), None);
        assert_eq!(hec_invalid_event("Bad Request"), None);
    }
}
