//! `consume` from a Kafka topic (`[source] type = "kafka"`) in a consumer group; the parts it
//! shares with the AMQP source are in [`super`].
//!
//! **Contract: offsets are committed only for delivered messages.** One thread polls messages
//! into a batch until it is full (`[batch]`) or its first message waited `[source] linger_ms`,
//! delivers it (retrying while the destination is down), and only then commits, synchronously,
//! the next offset of every partition the batch held. A message that is not an event is
//! dead-lettered and counts as done, as in omprog mode. So:
//!
//! * a crash (SIGKILL) loses nothing: the uncommitted messages go to the next owner of the
//!   partition and are delivered again; each copy has the same event id (fixed at the receiver,
//!   [`crate::sink::kafka::KafkaEncoder::encode_line`]), so duplicates are recognisable;
//! * a slow or down destination stops the polling; librdkafka fetches ahead only up to
//!   `[source] max_buffer_kbytes`, so memory stays bounded and the backlog stays in Kafka;
//! * a rebalance (eager assignment: every partition is revoked, then assigned again, and fetching
//!   resumes from the committed offsets) happens only inside `poll`, between deliveries; what was
//!   delivered is already committed, the batch being filled is dropped and fetched again;
//! * a commit never jumps over an offset that was not delivered: each partition's messages are
//!   taken only in sequence from its committed offset ([`Expected`]); a gap is refused and the
//!   partition sought back. Without this check a run of `tests/scale.rs` lost 177 events: the
//!   test broker (tansu 0.6.0) answers a fetch from an offset inside a stored record batch with
//!   the *next* batch, so a consumer resuming from a commit made mid-batch skipped the rest of it
//!   and committed past them. With the check, such a partition stalls (logged) instead of losing;
//!   Apache Kafka returns the batch that holds the offset, and the check never fires;
//! * SIGTERM stops polling; a batch being delivered finishes its current attempt, a batch not
//!   delivered is abandoned (uncommitted, so redelivered to the group), and the consumer leaves
//!   the group cleanly.
//!
//! **Trade-offs.** Per-partition order holds (one thread, batches in poll order). A commit that
//! fails (the group rebalanced while a long delivery blocked `poll` past `max_stall_secs`) means
//! the batch is delivered again by the next owner: at-least-once, never loss. Commits are
//! synchronous, once per batch: a round trip per batch, negligible at the default 1,000 events.
//! There is no journal: Kafka keeps what was not committed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::{deliver, Filling};
use crate::config::{ConfigError, KafkaSource};
use crate::omprog::pipeline::Renderer;
use crate::omprog::Shared;
use crate::sink::kafka::Security;
use crate::sink::Sink;

/// Counts rebalances (revocations and assignments) so the main loop knows its partial batch and
/// its expected offsets are stale.
#[derive(Default)]
struct Ctx {
    rebalances: AtomicU64,
}

impl ClientContext for Ctx {}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, _c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        match r {
            Rebalance::Revoke(tpl) => {
                self.rebalances.fetch_add(1, Ordering::SeqCst);
                log::info!("consume: partitions revoked: {}", parts(tpl));
            }
            Rebalance::Assign(tpl) => {
                self.rebalances.fetch_add(1, Ordering::SeqCst);
                log::info!("consume: partitions assigned: {}", parts(tpl));
            }
            Rebalance::Error(e) => log::warn!("consume: rebalance error: {e}"),
        }
    }
}

fn parts(tpl: &TopicPartitionList) -> String {
    let v: Vec<String> = tpl.elements().iter().map(|e| e.partition().to_string()).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(",")
    }
}

/// librdkafka's consumer settings for `s` (the password read from its file).
pub fn client_config(s: &KafkaSource) -> Result<ClientConfig, ConfigError> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", s.bootstrap_servers.join(","))
        .set("group.id", &s.group_id)
        .set("client.id", "qumulo-audit-broker-consume")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // Eager assignment: a rebalance revokes everything, so no partial batch survives one.
        .set("partition.assignment.strategy", "range,roundrobin")
        .set("queued.max.messages.kbytes", s.max_buffer_kbytes.to_string())
        .set("max.poll.interval.ms", (s.max_stall_secs * 1000).to_string())
        .set("session.timeout.ms", (s.session_timeout_secs * 1000).to_string())
        .set("heartbeat.interval.ms", (s.session_timeout_secs * 1000 / 3).max(100).to_string())
        .set("reconnect.backoff.max.ms", "2000")
        .set("security.protocol", s.security_protocol())
        .set("log.connection.close", "false");
    Security {
        section: "source",
        tls: s.tls,
        ca_file: s.ca_file.as_deref(),
        cert_file: s.cert_file.as_deref(),
        key_file: s.key_file.as_deref(),
        sasl: s.sasl_mechanism.zip(s.user.as_deref()).zip(s.password_file.as_deref()).map(|((m, u), p)| (m, u, p)),
    }
    .apply(&mut c)?;
    Ok(c)
}

/// `check --connect`: the brokers answer and describe the topic (the group is not joined).
pub(super) fn check(source: &KafkaSource) -> Result<String, String> {
    let consumer: BaseConsumer<Ctx> = client_config(source)
        .map_err(|e| e.message)?
        .create_with_context(Ctx::default())
        .map_err(|e| format!("librdkafka refused the settings: {e}"))?;
    let describe = format!("kafka://{}/{}", source.bootstrap_servers.join(","), source.topic);
    let md = consumer.fetch_metadata(Some(&source.topic), Duration::from_secs(10)).map_err(|e| format!("{describe}: no metadata: {e}"))?;
    let t = md.topics().iter().find(|t| t.name() == source.topic).ok_or_else(|| format!("{describe}: the cluster did not describe the topic"))?;
    if let Some(e) = t.error() {
        return Err(format!("{describe}: connected to {} broker(s), but the topic cannot be read: {:?}", md.brokers().len(), rdkafka::types::RDKafkaErrorCode::from(e)));
    }
    Ok(format!("{describe}: connected to {} broker(s); the topic has {} partitions (group {:?})", md.brokers().len(), t.partitions().len(), source.group_id))
}

/// What this process did, for its last log line (and the tests).
#[derive(Default)]
struct Tally {
    messages: u64,
    batches: u64,
    commits: u64,
    commit_failures: u64,
    dropped_at_rebalance: u64,
    abandoned_at_exit: u64,
    /// Messages refused by [`Expected::admit`]: not of the assignment, or not the next offset.
    out_of_sequence: u64,
}

/// The next offset this consumer may take from each assigned partition: the committed offset
/// after an assignment, then one past each message taken. The contract's invariant lives here:
/// a batch's commit covers only offsets that follow each other from the committed one, so no
/// commit can jump over a message that was not delivered. A message that is not the next one
/// (a broker that skipped records, a partition no longer ours) is refused;
/// past a gap, the partition is sought back to the expected offset. (The topic is written by an
/// idempotent, non-transactional producer and not compacted, so its offsets have no holes.)
#[derive(Default)]
struct Expected {
    next: BTreeMap<i32, Option<i64>>,
}

impl Expected {
    /// After a rebalance: the assignment and its committed offsets (none yet: the first message
    /// a partition gives, from `auto.offset.reset = earliest`, starts it).
    fn reset(&mut self, consumer: &BaseConsumer<Ctx>) {
        self.next.clear();
        match consumer.committed(Duration::from_secs(10)) {
            Ok(tpl) => {
                for e in tpl.elements() {
                    let at = match e.offset() {
                        Offset::Offset(n) => Some(n),
                        _ => None,
                    };
                    self.next.insert(e.partition(), at);
                }
            }
            Err(e) => {
                log::warn!("consume: cannot read the committed offsets ({e}); taking the assignment from the first offsets fetched");
                if let Ok(tpl) = consumer.assignment() {
                    for e in tpl.elements() {
                        self.next.insert(e.partition(), None);
                    }
                }
            }
        }
    }

    /// True when `offset` is the next message of `partition`.
    fn admit(&mut self, consumer: &BaseConsumer<Ctx>, topic: &str, partition: i32, offset: i64) -> bool {
        let Some(next) = self.next.get_mut(&partition) else {
            log::warn!("consume: ignoring offset {offset} of partition {partition}, not assigned here");
            return false;
        };
        match *next {
            Some(n) if offset < n => false, // already taken
            Some(n) if offset > n => {
                log::warn!("consume: partition {partition}: offset {offset} where {n} was expected; seeking back to {n}");
                if let Err(e) = consumer.seek(topic, partition, Offset::Offset(n), Duration::from_secs(10)) {
                    log::warn!("consume: seek failed ({e}); the partition stays at {n} for this consumer");
                }
                false
            }
            _ => {
                *next = Some(offset + 1);
                true
            }
        }
    }
}

/// Reads the topic until SIGTERM; returns the exit line's counters.
pub(super) fn serve(source: &KafkaSource, sink: Sink, renderer: Renderer, shared: &Shared) -> Result<String, ConfigError> {
    let consumer: BaseConsumer<Ctx> = client_config(source)?
        .create_with_context(Ctx::default())
        .map_err(|e| ConfigError::new(format!("[source] librdkafka refused the settings: {e}")))?;
    consumer.subscribe(&[&source.topic]).map_err(|e| ConfigError::new(format!("[source] cannot subscribe to {:?}: {e}", source.topic)))?;
    let tally = poll_loop(&consumer, source, sink, renderer, shared);
    drop(consumer); // leaves the group: its partitions go to the others at once
    Ok(format!(
        "messages={} batches={} commits={} commit_failures={} dropped_at_rebalance={} abandoned_at_exit={} out_of_sequence={}",
        tally.messages,
        tally.batches,
        tally.commits,
        tally.commit_failures,
        tally.dropped_at_rebalance,
        tally.abandoned_at_exit,
        tally.out_of_sequence
    ))
}

fn poll_loop(consumer: &BaseConsumer<Ctx>, source: &KafkaSource, mut sink: Sink, mut renderer: Renderer, shared: &Shared) -> Tally {
    let linger = Duration::from_millis(source.linger_ms);
    let mut tally = Tally::default();
    let mut p = Filling::new();
    // Per partition, the last offset the batch holds.
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    let mut seen_rebalances = 0;
    let mut expected = Expected::default();
    let mut last_error = Instant::now() - Duration::from_secs(60);
    while !shared.shutdown.load(Ordering::SeqCst) {
        let msg = consumer.poll(Duration::from_millis(100));
        let rebalances = consumer.context().rebalances.load(Ordering::SeqCst);
        if rebalances != seen_rebalances {
            // Fetched before the rebalance: fetched again from the committed offsets.
            seen_rebalances = rebalances;
            tally.dropped_at_rebalance += p.messages;
            p.clear();
            last.clear();
            expected.reset(consumer);
        }
        match msg {
            Some(Ok(m)) if !expected.admit(consumer, &source.topic, m.partition(), m.offset()) => tally.out_of_sequence += 1,
            Some(Ok(m)) => {
                tally.messages += 1;
                last.insert(m.partition(), m.offset());
                p.add(m.payload().unwrap_or_default(), &mut renderer, shared);
            }
            Some(Err(e)) if last_error.elapsed() >= Duration::from_secs(10) => {
                log::warn!("consume: {e}");
                last_error = Instant::now();
            }
            Some(Err(_)) | None => {}
        }
        if !p.due(shared, u64::MAX, linger) {
            continue;
        }
        if !deliver(&mut sink, &mut p.batch, shared) {
            break; // counted as abandoned below
        }
        tally.batches += 1;
        let mut tpl = TopicPartitionList::new();
        for (&partition, &offset) in &last {
            let _ = tpl.add_partition_offset(&source.topic, partition, Offset::Offset(offset + 1));
        }
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => tally.commits += 1,
            Err(e) => {
                tally.commit_failures += 1;
                log::warn!("consume: delivered {} messages but the commit failed ({e}); the group delivers them again", p.messages);
            }
        }
        p.clear();
        last.clear();
    }
    tally.abandoned_at_exit += p.messages;
    tally
}
