//! Kafka destination: each event is one record produced to `topic` by an idempotent producer
//! (`enable.idempotence = true`, `acks = all`).
//!
//! **Contract.** A record counts as delivered only when librdkafka's delivery report for it says
//! the partition leader wrote it with every in-sync replica's acknowledgement. [`KafkaSink::deliver`]
//! hands the records to the producer, then polls for their delivery reports; it returns when each
//! record has its report, or after `timeout_secs` (librdkafka's `message.timeout.ms`, after which
//! librdkafka itself fails the record) plus a grace of [`GRACE`], when whatever is still queued or
//! in flight is purged and retried. So one attempt never blocks longer than about
//! `timeout_secs + 5 s`, and the protocol thread's keep-alive dots keep rsyslog's
//! `confirmTimeout` from firing meanwhile. What a report says is classified by [`classify`]:
//!
//! * refused for good (too large for the broker or for `message_max_bytes`, an invalid record
//!   or topic, a policy violation): dead-lettered at once with the broker's reason;
//! * the topic or partition unknown to the cluster (auto-creation off, a typo, a topic not created
//!   yet): retried like a failure and counted as `unroutable=` in the stats line, and once the
//!   same record (by event id) met it `max_unknown_topic` times (default 3) and `timeout_secs`
//!   have passed since the first, dead-lettered; so a topic created a moment late loses nothing
//!   (a broker that restarts without its data answers "unknown topic" at once, three times within
//!   a second, until its topics are created again), and a wrong topic never blocks the queue
//!   forever;
//! * anything else (broker down, timed out, not leader, purged): retried with backoff by the
//!   delivery stage. A fatal producer error, or an error saying the cluster lost or refuses this
//!   producer's id and sequence state ([`needs_new_producer`]: a broker that restarted without its
//!   data answers `PRODUCER_FENCED`), drops the producer; the next attempt creates a new one.
//!
//! Delivery is at-least-once: a record whose acknowledgement was lost is produced again. The
//! idempotent producer drops the duplicates of its own retries within one producer session;
//! duplicates across sessions (a reconnect after a purge, our own restart, rsyslog re-sending
//! after a SIGKILL) carry the same `event-id` header, for consumers to drop.
//!
//! **Records.** Value: the rendered event (the configured format, no trailing newline). Key: the
//! `key` template (default `{cluster}`, so one cluster's events stay ordered within one
//! partition; rendered by [`super::route`], so bytes outside `[A-Za-z0-9_-]` become `_`).
//! Headers: `event-id` (the event id), `format` (`json`, `ecs`, `ocsf`, `cef` or `leef`),
//! `cluster`. Timestamp: the event's time (create time), else when it was rendered.
//! The batch bytes are [`super::record`]'s, shared with the `amqp` sink.
//!
//! **Client crate.** `rdkafka` 0.39 over librdkafka 2.12, built from source by `rdkafka-sys`
//! (vendored, statically linked; OpenSSL and zlib vendored too, zstd built in). Chosen because
//! librdkafka is the reference client outside the JVM: the idempotent producer, `acks=all`,
//! SASL PLAIN/SCRAM, TLS and compression are all there and maintained. The pure-Rust clients
//! were weighed and set aside: `kafka` (kafka-rust) has no idempotent producer, no SASL and
//! old protocol versions; `rskafka` has neither idempotence nor SCRAM; `samsa` is young.
//! Debian 12's librdkafka 2.0.2 (dynamic linking) cannot read the test broker's ApiVersions v3
//! reply, so the vendored build is also the only one that works here. Build: `rdkafka-sys`'s
//! default build (librdkafka's own `configure`, C only, no CMake, no C++ linked), which the static
//! musl package also uses (packaging/build.sh points it at `musl-gcc`; docs/packaging.md).
//! librdkafka's own threads do the I/O; this module stays a blocking call per batch
//! (`BaseProducer`, polled here), like every other sink.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig};
use rdkafka::ClientContext;

use super::record::{self, Record};
use super::route::RoutingKey;
use super::Attempt;
use crate::batch::Batch;
use crate::config::{ConfigError, KafkaDestination};
use crate::event::Event;
use crate::format::Format;

/// How long past `message.timeout.ms` a delivery waits for the last reports before purging.
pub const GRACE: Duration = Duration::from_secs(5);
/// Event ids whose unknown-topic attempts are counted; past this the counts start again.
const COUNTS_MAX: usize = 100_000;

/// Frames events as Kafka records: the [`record`] header (with the rendered key), then the event.
#[derive(Clone)]
pub struct KafkaEncoder {
    format: Format,
    key: RoutingKey,
    /// `pass_through = true`: the value is the input line itself (see [`KafkaEncoder::encode_line`]).
    pub pass_through: bool,
}

impl KafkaEncoder {
    /// The template was validated at config load; one that still fails routes by the default.
    pub fn new(d: &KafkaDestination) -> KafkaEncoder {
        KafkaEncoder { format: d.format, key: RoutingKey::parse(&d.key).unwrap_or_else(|_| RoutingKey::fallback()), pass_through: d.pass_through }
    }

    /// Pass-through (the receiver tier): [`record::encode_line`]; the value is the envelope.
    pub fn encode_line(&self, ev: &Event, line: &[u8], out: &mut Vec<u8>) {
        record::encode_line(ev, &self.key, line, out);
    }

    pub fn encode(&self, ev: &Event, rendered: &mut Vec<u8>, out: &mut Vec<u8>) {
        record::encode(ev, &self.key, self.format, rendered, out);
    }
}

/// What a delivery report (or a refused `send`) means for the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Never acceptable as it is: dead-letter.
    Refused,
    /// The cluster does not know the topic or partition: retry, count, dead-letter at the limit.
    UnknownTopic,
    /// Retry.
    Transient,
}

pub fn classify(e: &KafkaError) -> Class {
    use RDKafkaErrorCode as C;
    match e.rdkafka_error_code() {
        Some(C::MessageSizeTooLarge | C::InvalidMessageSize | C::InvalidMessage | C::InvalidRecord | C::InvalidTopic | C::PolicyViolation) => {
            Class::Refused
        }
        Some(C::UnknownTopicOrPartition | C::UnknownTopic | C::UnknownPartition) => Class::UnknownTopic,
        _ => Class::Transient,
    }
}

/// Errors that mean the cluster lost (or refuses) this producer's id and sequence state, e.g. a
/// broker restarted without its data: the records are retried by a new producer (new id).
pub fn needs_new_producer(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(C::ProducerFenced | C::InvalidProducerEpoch | C::UnknownProducerId | C::OutOfOrderSequenceNumber | C::InvalidProducerIdMapping | C::Fatal)
    )
}

/// Delivery reports of the current attempt, filled by librdkafka's callback during `poll`.
#[derive(Default)]
struct Reports {
    /// Attempt number: reports of an earlier attempt (purged late) are ignored.
    attempt: usize,
    outcomes: Vec<Option<Result<(), KafkaError>>>,
    pending: usize,
}

#[derive(Default)]
pub struct Context {
    reports: Mutex<Reports>,
    /// The last client-level error librdkafka reported (e.g. a TLS handshake that failed), for
    /// `check --connect`, whose metadata error alone says only "BrokerTransportFailure".
    last_error: Mutex<Option<String>>,
}

impl ClientContext for Context {
    fn error(&self, error: KafkaError, reason: &str) {
        log::error!("librdkafka: {error}: {reason}");
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.to_string());
    }
}

impl ProducerContext for Context {
    /// `attempt << 32 | position in the attempt`.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        let mut r = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        let (attempt, pos) = (opaque >> 32, opaque & 0xffff_ffff);
        if attempt != r.attempt {
            return;
        }
        if let Some(slot @ None) = r.outcomes.get_mut(pos) {
            *slot = Some(result.as_ref().map(|_| ()).map_err(|(e, _)| e.clone()));
            r.pending -= 1;
        }
    }
}

impl Context {
    fn begin(&self, attempt: usize, n: usize) {
        let mut r = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        *r = Reports { attempt, outcomes: (0..n).map(|_| None).collect(), pending: n };
    }

    /// A record that never reached the producer (refused by `send`) has its outcome at once.
    fn settle(&self, pos: usize, outcome: Result<(), KafkaError>) {
        let mut r = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot @ None) = r.outcomes.get_mut(pos) {
            *slot = Some(outcome);
            r.pending -= 1;
        }
    }

    fn pending(&self) -> usize {
        self.reports.lock().unwrap_or_else(|e| e.into_inner()).pending
    }

    fn take(&self) -> Vec<Option<Result<(), KafkaError>>> {
        let mut r = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        r.attempt = usize::MAX;
        std::mem::take(&mut r.outcomes)
    }
}

pub struct KafkaSink {
    config: ClientConfig,
    producer: Option<BaseProducer<Context>>,
    topic: String,
    describe: String,
    format: String,
    timeout: Duration,
    attempts: usize,
    max_unknown_topic: u32,
    /// Unknown-topic outcomes so far, by event id, of records not yet delivered or dead-lettered.
    unknown: HashMap<String, (u32, Instant)>,
}

/// librdkafka's producer settings for `d` (the password read from its file).
pub fn client_config(d: &KafkaDestination) -> Result<ClientConfig, ConfigError> {
    let timeout_ms = d.timeout_secs * 1000;
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", d.bootstrap_servers.join(","))
        .set("client.id", &d.client_id)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.codec", d.compression.librdkafka_name())
        .set("linger.ms", d.linger_ms.to_string())
        .set("batch.num.messages", d.batch_records.to_string())
        .set("message.max.bytes", d.message_max_bytes.to_string())
        .set("message.timeout.ms", timeout_ms.to_string())
        .set("request.timeout.ms", timeout_ms.min(30_000).to_string())
        .set("socket.connection.setup.timeout.ms", timeout_ms.min(30_000).to_string())
        // A topic missing from the metadata fails its records after this (then max_unknown_topic).
        .set("topic.metadata.propagation.max.ms", timeout_ms.min(10_000).to_string())
        // A broker back after an outage is found within 2 s (librdkafka's default is 10 s).
        .set("reconnect.backoff.max.ms", "2000")
        .set("security.protocol", d.security_protocol())
        .set("log.connection.close", "false");
    Security {
        section: "destination",
        tls: d.tls,
        ca_file: d.ca_file.as_deref(),
        cert_file: d.cert_file.as_deref(),
        key_file: d.key_file.as_deref(),
        sasl: d.sasl_mechanism.zip(d.user.as_deref()).zip(d.password_file.as_deref()).map(|((m, u), p)| (m, u, p)),
    }
    .apply(&mut c)?;
    Ok(c)
}

/// The TLS and SASL settings of a Kafka client: the `kafka` destination's producer and
/// `consume`'s `[source]` consumer set them the same way (one place, so they cannot drift).
pub(crate) struct Security<'a> {
    /// The config section, for errors (`destination`, `source`).
    pub section: &'static str,
    pub tls: bool,
    pub ca_file: Option<&'a std::path::Path>,
    pub cert_file: Option<&'a std::path::Path>,
    pub key_file: Option<&'a std::path::Path>,
    /// Mechanism, user and password file, when all three are set.
    pub sasl: Option<(crate::config::SaslMechanism, &'a str, &'a std::path::Path)>,
}

impl Security<'_> {
    pub(crate) fn apply(&self, c: &mut ClientConfig) -> Result<(), ConfigError> {
        if self.tls {
            // Without ca_file, the system's CA store (the vendored OpenSSL has no default path of its own).
            let ca = self.ca_file.map_or_else(|| "probe".to_string(), |p| p.display().to_string());
            c.set("ssl.ca.location", ca);
            if let (Some(cert), Some(key)) = (self.cert_file, self.key_file) {
                c.set("ssl.certificate.location", cert.display().to_string()).set("ssl.key.location", key.display().to_string());
            }
        }
        if let Some((m, user, pf)) = self.sasl {
            let section = self.section;
            let password = crate::config::read_secret(pf).map_err(|e| {
                ConfigError::new(format!("[{section}] password_file: {}", e.message)).with_key(format!("{section}.password_file"))
            })?;
            c.set("sasl.mechanism", m.librdkafka_name()).set("sasl.username", user).set("sasl.password", password);
        }
        Ok(())
    }
}

impl KafkaSink {
    /// Reads the password file and checks librdkafka accepts the settings (a producer is created
    /// and dropped: it connects in the background only); the first delivery creates the one used.
    pub fn new(d: &KafkaDestination) -> Result<KafkaSink, ConfigError> {
        let config = client_config(d)?;
        let sink = KafkaSink {
            config,
            producer: None,
            topic: d.topic.clone(),
            describe: d.describe(),
            format: if d.pass_through { "envelope".into() } else { crate::config::destination::name_of(&d.format) },
            timeout: Duration::from_secs(d.timeout_secs),
            attempts: 0,
            max_unknown_topic: d.max_unknown_topic,
            unknown: HashMap::new(),
        };
        sink.config
            .create_with_context::<_, BaseProducer<Context>>(Context::default())
            .map_err(|e| ConfigError::new(format!("[destination] librdkafka refused the settings: {e}")))?;
        Ok(sink)
    }

    fn producer(&mut self) -> Result<&BaseProducer<Context>, String> {
        if self.producer.is_none() {
            let p = self.config.create_with_context(Context::default()).map_err(|e| format!("{}: cannot create the producer: {e}", self.describe))?;
            log::info!("connected to {} (producer created; librdkafka connects in the background)", self.describe);
            self.producer = Some(p);
        }
        Ok(self.producer.as_ref().expect("just set"))
    }

    pub fn deliver(&mut self, batch: &Batch, which: &[usize]) -> Attempt {
        self.attempts += 1;
        let attempt_no = self.attempts & 0xffff_ffff;
        let (topic, format, timeout) = (self.topic.clone(), self.format.clone(), self.timeout);
        let describe = self.describe.clone();
        let producer = match self.producer() {
            Ok(p) => p,
            Err(e) => return Attempt::retry_all(which, e),
        };
        let ctx = producer.context();
        ctx.begin(attempt_no, which.len());
        let deadline = Instant::now() + timeout + GRACE;
        let mut records: Vec<Option<Record<'_>>> = Vec::with_capacity(which.len());
        for (pos, &i) in which.iter().enumerate() {
            let Some(r) = record::split(batch.record(i)) else {
                records.push(None);
                ctx.settle(pos, Ok(()));
                continue;
            };
            records.push(Some(r));
            let headers = OwnedHeaders::new_with_capacity(3)
                .insert(Header { key: "event-id", value: Some(r.message_id) })
                .insert(Header { key: "format", value: Some(format.as_str()) })
                .insert(Header { key: "cluster", value: Some(r.cluster) });
            let mut rec = BaseRecord::with_opaque_to(&topic, (attempt_no << 32) | pos)
                .key(r.routing_key)
                .payload(r.body)
                .headers(headers)
                .timestamp((r.timestamp as i64).saturating_mul(1000));
            loop {
                match producer.send(rec) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) if Instant::now() < deadline => {
                        rec = back;
                        producer.poll(Duration::from_millis(50));
                    }
                    Err((e, _)) => {
                        ctx.settle(pos, Err(e));
                        break;
                    }
                }
            }
        }
        while ctx.pending() > 0 && Instant::now() < deadline {
            producer.poll(Duration::from_millis(50));
        }
        if ctx.pending() > 0 {
            log::warn!("{describe}: {} records without a delivery report after {:?}; purging them for a retry", ctx.pending(), timeout + GRACE);
            producer.purge(PurgeConfig::default().queue().inflight());
            let t0 = Instant::now();
            while ctx.pending() > 0 && t0.elapsed() < Duration::from_secs(2) {
                producer.poll(Duration::from_millis(50));
            }
        }
        let fatal = producer.client().fatal_error();
        let outcomes = ctx.take();
        if let Some((code, reason)) = fatal {
            log::warn!("{describe}: fatal producer error ({code:?}: {reason}); a new producer takes over");
            self.producer = None;
        } else if let Some(e) = outcomes.iter().flatten().filter_map(|o| o.as_ref().err()).find(|e| needs_new_producer(e)) {
            log::warn!("{describe}: the cluster no longer knows this producer's id ({e}); a new producer takes over");
            self.producer = None;
        }
        self.account(which, &records, outcomes)
    }

    /// Turns the reports of one attempt into an [`Attempt`].
    fn account(&mut self, which: &[usize], records: &[Option<Record<'_>>], outcomes: Vec<Option<Result<(), KafkaError>>>) -> Attempt {
        let mut attempt = Attempt::ok();
        for (pos, (&i, outcome)) in which.iter().zip(outcomes).enumerate() {
            let Some(r) = records[pos] else {
                attempt.rejected.push((i, "internal error: malformed Kafka record".into()));
                continue;
            };
            let e = match outcome {
                Some(Ok(())) => {
                    if !self.unknown.is_empty() {
                        self.unknown.remove(r.message_id);
                    }
                    continue;
                }
                Some(Err(e)) => e,
                None => KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut),
            };
            match classify(&e) {
                Class::Refused => attempt.rejected.push((i, format!("refused by Kafka (topic {:?}): {e}", self.topic))),
                Class::UnknownTopic => {
                    attempt.unroutable += 1;
                    let (n, first) = self.unknown.entry(r.message_id.to_string()).or_insert((0, Instant::now()));
                    *n += 1;
                    let n = *n;
                    if n >= self.max_unknown_topic && first.elapsed() >= self.timeout {
                        let secs = first.elapsed().as_secs();
                        let reason = format!("unroutable: {e} (topic {:?}); {n} attempts over {secs} s (max_unknown_topic = {})", self.topic, self.max_unknown_topic);
                        self.unknown.remove(r.message_id);
                        attempt.rejected.push((i, reason));
                    } else {
                        attempt.retry.push(i);
                        attempt.error = Some(format!(
                            "topic {:?}: {e} (attempt {n}; to the dead-letter file from attempt {} once {} s have passed since the first)",
                            self.topic,
                            self.max_unknown_topic,
                            self.timeout.as_secs()
                        ));
                    }
                }
                Class::Transient => {
                    attempt.retry.push(i);
                    attempt.error = Some(format!("destination unavailable: {}: {e}", self.describe));
                }
            }
        }
        if self.unknown.len() > COUNTS_MAX {
            self.unknown.clear();
        }
        attempt
    }

    /// `check --connect`: the cluster's metadata for the topic (brokers reached, partitions).
    pub fn check(&mut self) -> Result<String, String> {
        let (topic, timeout, describe) = (self.topic.clone(), self.timeout.min(Duration::from_secs(30)), self.describe.clone());
        let producer = self.producer()?;
        let md = producer.client().fetch_metadata(Some(&topic), timeout).map_err(|e| {
            producer.poll(Duration::from_millis(100)); // serves the error callbacks: the reason, if librdkafka gave one
            let why = producer.context().last_error.lock().unwrap_or_else(|e| e.into_inner()).take();
            format!("{describe}: no metadata: {e}{}", why.map(|w| format!(" (last error: {w})")).unwrap_or_default())
        });
        self.disconnect();
        let md = md?;
        let t = md.topics().iter().find(|t| t.name() == topic).ok_or_else(|| format!("{describe}: the cluster did not describe topic {topic:?}"))?;
        if let Some(e) = t.error() {
            return Err(format!("{describe}: connected to {} broker(s), but topic {topic:?} cannot be used: {:?}", md.brokers().len(), RDKafkaErrorCode::from(e)));
        }
        Ok(format!("{describe}: connected to {} broker(s); topic {topic:?} has {} partitions", md.brokers().len(), t.partitions().len()))
    }

    /// Drops the producer (SIGHUP); the next delivery creates a new one.
    pub fn disconnect(&mut self) {
        self.producer = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let p = |c| KafkaError::MessageProduction(c);
        assert_eq!(classify(&p(RDKafkaErrorCode::MessageSizeTooLarge)), Class::Refused);
        assert_eq!(classify(&p(RDKafkaErrorCode::InvalidRecord)), Class::Refused);
        assert_eq!(classify(&p(RDKafkaErrorCode::UnknownTopic)), Class::UnknownTopic);
        assert_eq!(classify(&p(RDKafkaErrorCode::UnknownTopicOrPartition)), Class::UnknownTopic);
        assert_eq!(classify(&p(RDKafkaErrorCode::MessageTimedOut)), Class::Transient);
        assert_eq!(classify(&p(RDKafkaErrorCode::PurgeInflight)), Class::Transient);
        assert_eq!(classify(&p(RDKafkaErrorCode::NotLeaderForPartition)), Class::Transient);
        assert_eq!(classify(&p(RDKafkaErrorCode::ProducerFenced)), Class::Transient);
        assert!(needs_new_producer(&p(RDKafkaErrorCode::ProducerFenced)) && needs_new_producer(&p(RDKafkaErrorCode::UnknownProducerId)));
        assert!(!needs_new_producer(&p(RDKafkaErrorCode::MessageTimedOut)));
    }

    /// Reports of an earlier attempt, and a second report for a record, change nothing.
    #[test]
    fn stale_reports_are_ignored() {
        let ctx = Context::default();
        ctx.begin(7, 2);
        ctx.settle(1, Ok(()));
        ctx.settle(1, Err(KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)));
        assert_eq!(ctx.pending(), 1);
        let out = ctx.take();
        assert!(out[0].is_none() && matches!(out[1], Some(Ok(()))));
    }
}
