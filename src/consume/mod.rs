//! `qumulo-audit-broker consume --config X.toml`: the processing tier (docs/scaling.md). Reads
//! envelopes from the `[source]` (a Kafka topic in a consumer group: [`kafka`]; a RabbitMQ queue
//! with competing consumers: [`amqp`]) and delivers them to the `[destination]` with omprog
//! mode's own parts: the parse/render stage's [`Renderer`] (parser, classifier, filter, format,
//! encoder), [`deliver_with_retry`] (backoff, dead-letter file), the stats line and its counters.
//! Nothing of them is forked here.
//!
//! **Contract, both sources: the source is told a message is done (Kafka: offset committed;
//! AMQP: `basic.ack`) only after the destination has it.** One thread fills a batch until it is
//! full (`[batch]`) or its first message waited `[source] linger_ms`, delivers it ([`deliver`]:
//! retrying while the destination is down, never taking more meanwhile), and only then
//! acknowledges the batch to the source. A message that is not an event is dead-lettered and
//! counts as done, as in omprog mode. What is not acknowledged is redelivered by the source (to
//! this or another process) after a crash, a lost connection or a rebalance; every copy carries
//! the event id fixed at the receiver, so duplicates are recognisable. SIGTERM: the attempt in
//! progress finishes; what was delivered is acknowledged; the rest is left to the source.
//!
//! This file holds what both sources share: start-up (signals, stats, state file), the batch
//! being filled ([`Filling`]) and [`deliver`]; each source's file holds its loop and its own
//! acknowledgement rules.

pub mod amqp;
pub mod kafka;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::batch::Batch;
use crate::config::{Config, ConfigError, SourceConfig};
use crate::omprog::delivery::deliver_with_retry;
use crate::omprog::pipeline::Renderer;
use crate::omprog::{build, spawn_stats, Shared};
use crate::sink::Sink;

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
                log::info!("consume: SIGTERM: taking no more; what is delivered is acknowledged, the rest is left to the source");
            }
            shared.shutdown.store(true, Ordering::SeqCst);
        });
    }
    log::info!("consume: started: {} -> destination {}", source.describe(), shared.cfg.name());
    shared.write_state(false); // `status` counts consume instances as it counts omprog's
    let stats_thread = spawn_stats(shared.clone());
    let renderer = Renderer::new(&shared.cfg, encoder);
    let outcome = match &source {
        SourceConfig::Kafka(s) => kafka::serve(s, sink, renderer, &shared),
        SourceConfig::Amqp(s) => amqp::serve(s, sink, renderer, &shared),
    };
    shared.shutdown.store(true, Ordering::SeqCst);
    if let Some(t) = stats_thread {
        let _ = t.join();
    }
    let code = match outcome {
        Ok(summary) => {
            log::info!("consume: exiting: {summary}");
            0
        }
        Err(e) => {
            log::error!("{}", shared.cfg.locate(e));
            2
        }
    };
    log::info!("{}", shared.stats.line());
    shared.write_state(true);
    code
}

/// `check --connect` of a `[source]`: connect as `consume` would and check the topic or queue
/// exists; the line to print, or why not.
pub fn check_source(source: &SourceConfig) -> Result<String, String> {
    match source {
        SourceConfig::Kafka(s) => kafka::check(s),
        SourceConfig::Amqp(s) => amqp::check(s),
    }
}

/// The batch being filled: its records, how many source messages they came from (dead-lettered
/// and filtered ones included) and when the first arrived.
pub(crate) struct Filling {
    pub batch: Batch,
    pub messages: u64,
    pub since: Option<Instant>,
}

impl Filling {
    pub fn new() -> Filling {
        Filling { batch: Batch::default(), messages: 0, since: None }
    }

    /// Parses one message into the batch (a line that is not an event is dead-lettered there).
    pub fn add(&mut self, payload: &[u8], renderer: &mut Renderer, shared: &Shared) {
        self.messages += 1;
        self.since.get_or_insert_with(Instant::now);
        renderer.add(payload, &mut self.batch, shared);
    }

    /// Full (`[batch]` max_events or max_bytes, or `max_messages` source messages), or lingered.
    pub fn due(&self, shared: &Shared, max_messages: u64, linger: Duration) -> bool {
        self.messages > 0
            && (self.batch.len() >= shared.cfg.batch.max_events
                || self.batch.bytes() >= shared.cfg.batch.max_bytes
                || self.messages >= max_messages
                || self.since.is_some_and(|t| t.elapsed() >= linger))
    }

    pub fn clear(&mut self) {
        self.batch.clear();
        self.messages = 0;
        self.since = None;
    }
}

/// Delivers `batch` until it is delivered (true) or SIGTERM came (false). An empty batch (every
/// message dead-lettered or filtered) is delivered at once.
pub(crate) fn deliver(sink: &mut Sink, batch: &mut Batch, shared: &Shared) -> bool {
    if !batch.is_empty() {
        batch.commits = true; // a file destination syncs (with `fsync`) before the source is told
        loop {
            match deliver_with_retry(sink, batch, shared) {
                Ok(()) => break,
                Err(_) if shared.shutdown.load(Ordering::SeqCst) => return false,
                Err(e) => log::warn!("consume: batch of {} records not delivered yet ({e}); retrying, taking nothing new meanwhile", batch.len()),
            }
        }
    }
    // What this batch dead-lettered reaches the disk before the source is told (when the
    // configuration promises power-loss safety; else this does nothing).
    loop {
        match shared.dead.sync() {
            Ok(()) => return true,
            Err(_) if shared.shutdown.load(Ordering::SeqCst) => return false,
            Err(e) => {
                log::warn!("consume: cannot sync the dead-letter file ({e}); retrying before the source is told");
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
        }
    }
}
