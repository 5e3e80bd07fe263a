//! `qumulo-audit-broker consume --config X.toml`: the processing tier (docs/scaling.md). Reads
//! envelopes from a Kafka topic (`[source]`) in a consumer group and delivers them to the
//! `[destination]` with omprog mode's own parts: the parse/render stage's [`Renderer`] (parser,
//! classifier, filter, format, encoder), [`deliver_with_retry`] (backoff, dead-letter file), the
//! stats line and its counters. Nothing of them is forked here.
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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::batch::Batch;
use crate::config::{Config, ConfigError, SourceConfig};
use crate::omprog::delivery::deliver_with_retry;
use crate::omprog::pipeline::Renderer;
use crate::omprog::{build, spawn_stats, Shared};
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
pub fn client_config(s: &SourceConfig) -> Result<ClientConfig, ConfigError> {
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

/// The batch being filled: its records and, per partition, the last offset it holds.
struct Pending {
    batch: Batch,
    last: BTreeMap<i32, i64>,
    messages: u64,
    since: Option<Instant>,
}

impl Pending {
    fn clear(&mut self) {
        self.batch.clear();
        self.last.clear();
        self.messages = 0;
        self.since = None;
    }
}

/// Runs consume mode; returns the exit code.
pub fn run(cfg: Config) -> i32 {
    let Some(source) = cfg.source.clone() else {
        log::error!("{}", cfg.locate(ConfigError::new("consume needs a [source] section (docs/scaling.md)")));
        return 2;
    };
    let (sink, encoder, shared) = match build(cfg) {
        Ok(b) => b,
        Err(e) => {
            log::error!("{e}");
            return 2;
        }
    };
    let consumer: BaseConsumer<Ctx> = match client_config(&source).and_then(|c| {
        c.create_with_context(Ctx::default()).map_err(|e| ConfigError::new(format!("[source] librdkafka refused the settings: {e}")))
    }) {
        Ok(c) => c,
        Err(e) => {
            log::error!("{}", shared.cfg.locate(e));
            return 2;
        }
    };
    if let Err(e) = consumer.subscribe(&[&source.topic]) {
        log::error!("[source] cannot subscribe to {:?}: {e}", source.topic);
        return 2;
    }
    let _ = signal_hook::flag::register(signal_hook::consts::SIGHUP, shared.hup.clone());
    let _ = signal_hook::flag::register(signal_hook::consts::SIGHUP, shared.dead.reopen_flag());
    let term = Arc::new(AtomicBool::new(false));
    let _ = signal_hook::flag::register(signal_hook::consts::SIGTERM, term.clone());
    let _ = signal_hook::flag::register(signal_hook::consts::SIGINT, term.clone());
    {
        // SIGTERM becomes the shutdown flag the delivery code already watches.
        let shared = shared.clone();
        std::thread::spawn(move || {
            while !term.load(Ordering::SeqCst) && !shared.shutdown.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
            if term.load(Ordering::SeqCst) {
                log::info!("consume: SIGTERM: no more polling; what is delivered is committed, the rest is left to the group");
            }
            shared.shutdown.store(true, Ordering::SeqCst);
        });
    }
    log::info!(
        "consume: started: topic {:?} group {:?} on {}, destination {}",
        source.topic,
        source.group_id,
        source.bootstrap_servers.join(","),
        shared.cfg.name()
    );
    shared.write_state(false); // `status` counts consume instances as it counts omprog's
    let stats_thread = spawn_stats(shared.clone());
    let tally = serve(&consumer, &source, sink, Renderer::new(&shared.cfg, encoder), &shared);
    shared.shutdown.store(true, Ordering::SeqCst);
    drop(consumer); // leaves the group: its partitions go to the others at once
    if let Some(t) = stats_thread {
        let _ = t.join();
    }
    log::info!(
        "consume: exiting: messages={} batches={} commits={} commit_failures={} dropped_at_rebalance={} abandoned_at_exit={} out_of_sequence={}",
        tally.messages,
        tally.batches,
        tally.commits,
        tally.commit_failures,
        tally.dropped_at_rebalance,
        tally.abandoned_at_exit,
        tally.out_of_sequence
    );
    log::info!("{}", shared.stats.line());
    shared.write_state(true);
    0
}

fn serve(consumer: &BaseConsumer<Ctx>, source: &SourceConfig, mut sink: Sink, mut renderer: Renderer, shared: &Shared) -> Tally {
    let (max_events, max_bytes) = (shared.cfg.batch.max_events, shared.cfg.batch.max_bytes);
    let linger = Duration::from_millis(source.linger_ms);
    let mut tally = Tally::default();
    let mut p = Pending { batch: Batch::default(), last: BTreeMap::new(), messages: 0, since: None };
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
            expected.reset(consumer);
        }
        match msg {
            Some(Ok(m)) if !expected.admit(consumer, &source.topic, m.partition(), m.offset()) => tally.out_of_sequence += 1,
            Some(Ok(m)) => {
                tally.messages += 1;
                p.messages += 1;
                p.since.get_or_insert_with(Instant::now);
                p.last.insert(m.partition(), m.offset());
                renderer.add(m.payload().unwrap_or_default(), &mut p.batch, shared);
            }
            Some(Err(e)) if last_error.elapsed() >= Duration::from_secs(10) => {
                log::warn!("consume: {e}");
                last_error = Instant::now();
            }
            Some(Err(_)) | None => {}
        }
        let due = p.batch.len() >= max_events || p.batch.bytes() >= max_bytes || p.since.is_some_and(|t| t.elapsed() >= linger);
        if p.messages == 0 || !due {
            continue;
        }
        p.batch.commits = true; // a file destination syncs (with `fsync`) before we commit
        if !deliver(&mut sink, &p.batch, shared) {
            tally.abandoned_at_exit += p.messages;
            break;
        }
        tally.batches += 1;
        let mut tpl = TopicPartitionList::new();
        for (&partition, &offset) in &p.last {
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
    }
    tally.abandoned_at_exit += p.messages;
    tally
}

/// Delivers `batch` until it is delivered (true) or SIGTERM came (false). An empty batch (every
/// message dead-lettered or filtered) is delivered at once.
fn deliver(sink: &mut Sink, batch: &Batch, shared: &Shared) -> bool {
    if batch.is_empty() {
        return true;
    }
    loop {
        match deliver_with_retry(sink, batch, shared) {
            Ok(()) => return true,
            Err(_) if shared.shutdown.load(Ordering::SeqCst) => return false,
            Err(e) => log::warn!("consume: batch of {} records not delivered yet ({e}); retrying, not polling meanwhile", batch.len()),
        }
    }
}
