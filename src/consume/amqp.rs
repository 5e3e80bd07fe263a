//! `consume` from a RabbitMQ queue (`[source] type = "amqp"`): any number of processes consume
//! the same queue as competing consumers; the broker hands each message to one of them and takes
//! it back from a consumer whose connection closes before acknowledging it. The parts shared
//! with the Kafka source are in [`super`].
//!
//! **Contract: a message is acknowledged only once the destination has it.** Manual
//! acknowledgement (`no_ack = false`) with a bounded prefetch (`basic.qos`, `[source] prefetch`,
//! default twice `[batch] max_events`): the broker pushes at most that many unacknowledged
//! messages to this process, which bounds its memory while the destination is slow or down (the
//! backlog stays in the queue). One thread takes messages into a batch until it is full
//! (`[batch]`, or `prefetch` messages) or its first message waited `linger_ms`, delivers it with
//! [`super::deliver`] (retrying, taking nothing new meanwhile), then sends one `basic.ack` with
//! `multiple = true` up to the batch's last delivery tag. Lines that are not events are
//! dead-lettered by the renderer and acknowledged with their batch. So:
//!
//! * SIGKILL, a host lost, a connection cut: the broker requeues every unacknowledged message
//!   (the batch being filled or delivered, and what was prefetched) and gives it to a consumer
//!   again, flagged `redelivered`; a batch already delivered whose ack was lost is delivered
//!   twice, every copy with the event id fixed at the receiver (the message id; derived again
//!   here from the envelope line). Duplicates are bounded by one process's prefetch.
//! * Connection lost (broker restart, network): the batch being filled is dropped (the broker
//!   redelivers it) and the connection is opened again with backoff ([`RECONNECT_FIRST`] doubling
//!   to [`RECONNECT_MAX`], back to the first only after a batch was acknowledged, so a broker that
//!   drops every session at once is not retried in a tight loop); an ack that fails means the delivered batch comes back (duplicates).
//!   Delivery tags belong to a channel, so a batch never mixes messages of two connections.
//! * SIGTERM: a batch being delivered finishes its current attempt and is acknowledged if it
//!   was delivered; the channel and connection are closed politely, so whatever was not
//!   acknowledged (the batch being filled, the prefetched messages) goes back to the queue at
//!   once for the other consumers, without duplicates.
//! * The queue missing (receivers not started yet), refused credentials: logged, retried with
//!   the same backoff; `check --connect` says it at install time.
//!
//! **Trade-offs.** Competing consumers on one queue do not keep per-cluster order across
//! processes (docs/scaling.md); events carry their own time. RabbitMQ closes a channel whose
//! oldest unacknowledged message waited longer than its `consumer_timeout` (30 min by default):
//! a destination down that long makes the batch come back (no loss, duplicates). With
//! RabbitMQ 4's quorum-queue `delivery-limit` (20 by default), a message redelivered that many
//! times is dropped or dead-lettered by the broker; docs/scaling.md says how to lift it.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};

use super::{deliver, Filling};
use crate::config::{AmqpSource, ConfigError};
use crate::omprog::pipeline::Renderer;
use crate::omprog::Shared;
use crate::sink::amqp::link::{within, Endpoint};
use crate::sink::Sink;

/// The first pause before reconnecting; it doubles up to [`RECONNECT_MAX`].
pub const RECONNECT_FIRST: Duration = Duration::from_millis(200);
pub const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// How long one wait for the next message lasts (the shutdown flag and linger are checked between).
const POLL: Duration = Duration::from_millis(100);

/// What this process did, for its last log line (and the tests).
#[derive(Default)]
struct Tally {
    messages: u64,
    /// Messages the broker flagged `redelivered` (given to a consumer before, not acknowledged).
    redelivered: u64,
    batches: u64,
    acks: u64,
    ack_failures: u64,
    connects: u64,
    /// Messages of a batch being filled when the connection was lost (the broker redelivers them).
    dropped_at_reconnect: u64,
    abandoned_at_exit: u64,
}

/// One open consumer: its connection, its channel and the stream of deliveries.
struct Session {
    conn: Connection,
    ch: Channel,
    consumer: Consumer,
}

/// Connects, sets the prefetch and starts consuming (manual acknowledgement).
fn open(ep: &Endpoint, source: &AmqpSource, prefetch: u16, n: u64) -> Result<Session, String> {
    let (conn, ch) = ep.open("consume ", &source.describe())?;
    let queue = source.queue.clone();
    let tag = format!("qumulo-audit-broker-{}-{n}", std::process::id());
    let started = within(ep.timeout, "consume", async {
        ch.basic_qos(prefetch, BasicQosOptions { global: false }).await.map_err(|e| format!("basic.qos: {e}"))?;
        ch.basic_consume(&queue, &tag, BasicConsumeOptions::default(), FieldTable::default())
            .await
            .map_err(|e| format!("cannot consume queue {queue:?}: {e}"))
    });
    match started {
        Ok(consumer) => Ok(Session { conn, ch, consumer }),
        Err(e) => {
            close(conn, ch);
            Err(format!("{}: {e}", source.describe()))
        }
    }
}

/// Closes politely, briefly (a dead broker must not hold us up): unacknowledged messages go back
/// to the queue.
fn close(conn: Connection, ch: Channel) {
    let _ = within(Duration::from_secs(2), "close", async move {
        let _ = ch.close(200, "bye").await;
        conn.close(200, "bye").await.map_err(|e| e.to_string())
    });
}

/// What waiting for the next message gave.
enum Next {
    Message(Box<Delivery>),
    /// Nothing within [`POLL`].
    Idle,
    /// The consumer's stream failed or ended, or the connection is gone.
    Lost(String),
}

impl Session {
    fn next(&mut self) -> Next {
        // A delivery already buffered is taken without a timer; waiting is cancel-safe (a
        // message is removed from lapin's buffer only when the future completes).
        let ready = async_io::block_on(futures_lite::future::poll_once(self.consumer.next()));
        let got = match ready {
            Some(got) => got,
            None => match within(POLL, "next", async { Ok(self.consumer.next().await) }) {
                Ok(got) => got,
                Err(_) if self.conn.status().connected() && self.ch.status().connected() => return Next::Idle,
                Err(_) => return Next::Lost(format!("connection {:?}, channel {:?}", self.conn.status().state(), self.ch.status().state())),
            },
        };
        match got {
            Some(Ok(d)) => Next::Message(Box::new(d)),
            Some(Err(e)) => Next::Lost(e.to_string()),
            None => Next::Lost("the broker cancelled the consumer (queue deleted?)".into()),
        }
    }

    /// `basic.ack`, `multiple = true`: every delivery of this channel up to `tag`.
    fn ack_up_to(&self, tag: u64, timeout: Duration) -> Result<(), String> {
        within(timeout, "basic.ack", async { self.ch.basic_ack(tag, BasicAckOptions { multiple: true }).await.map_err(|e| e.to_string()) })
    }
}

/// Consumes the queue until SIGTERM; returns the exit line's counters.
pub(super) fn serve(source: &AmqpSource, mut sink: Sink, mut renderer: Renderer, shared: &Shared) -> Result<String, ConfigError> {
    let ep = Endpoint::new(source.target(), source.heartbeat_secs, source.timeout_secs)?;
    let prefetch = source.prefetch_for(shared.cfg.batch.max_events);
    let linger = Duration::from_millis(source.linger_ms);
    let mut tally = Tally::default();
    let mut p = Filling::new();
    let mut backoff = RECONNECT_FIRST;
    while !shared.shutdown.load(Ordering::SeqCst) {
        let mut s = match open(&ep, source, prefetch, tally.connects) {
            Ok(s) => s,
            Err(e) => {
                log::warn!("consume: {e}; connecting again in {backoff:?}");
                sleep_unless_shutdown(backoff, shared);
                backoff = (backoff * 2).min(RECONNECT_MAX);
                continue;
            }
        };
        // The pause is reset only once a batch was acknowledged on this session: a broker that
        // accepts the session and drops it at once (a node draining, a queue that cannot be
        // consumed) is not retried in a tight loop.
        tally.connects += 1;
        log::info!("consume: consuming {} (prefetch {prefetch})", source.describe());
        let mut last_tag = 0;
        let lost = loop {
            if shared.shutdown.load(Ordering::SeqCst) {
                break None;
            }
            match s.next() {
                Next::Message(d) => {
                    tally.messages += 1;
                    tally.redelivered += u64::from(d.redelivered);
                    last_tag = d.delivery_tag;
                    p.add(&d.data, &mut renderer, shared);
                }
                Next::Idle => {}
                Next::Lost(why) => break Some(why),
            }
            if !p.due(shared, u64::from(prefetch), linger) {
                continue;
            }
            if !deliver(&mut sink, &mut p.batch, shared) {
                break None; // SIGTERM while the destination was failing: left to the broker
            }
            tally.batches += 1;
            // A due batch holds at least one message of this session (`Filling::due`), so the tag
            // is that of a delivery on this channel: `multiple` with tag 0 would acknowledge every
            // outstanding delivery, including prefetched ones not yet delivered.
            assert!(last_tag > 0, "a due batch without a delivery tag");
            let acked = s.ack_up_to(last_tag, ep.timeout);
            let messages = p.messages;
            p.clear();
            match acked {
                Ok(()) => {
                    tally.acks += 1;
                    backoff = RECONNECT_FIRST;
                }
                Err(e) => {
                    tally.ack_failures += 1;
                    log::warn!("consume: delivered {messages} messages but the ack failed ({e}); the broker delivers them again (same ids)");
                    break Some(e);
                }
            }
        };
        match lost {
            Some(why) => {
                tally.dropped_at_reconnect += p.messages;
                log::warn!(
                    "consume: {}: connection lost ({why}); {} messages of the batch being filled go back to the queue; connecting again",
                    source.describe(),
                    p.messages
                );
                p.clear();
                drop(s.consumer);
                close(s.conn, s.ch);
                sleep_unless_shutdown(backoff, shared);
                backoff = (backoff * 2).min(RECONNECT_MAX);
            }
            None => {
                tally.abandoned_at_exit += p.messages;
                p.clear();
                drop(s.consumer);
                close(s.conn, s.ch);
            }
        }
    }
    Ok(format!(
        "messages={} redelivered={} batches={} acks={} ack_failures={} connects={} dropped_at_reconnect={} abandoned_at_exit={}",
        tally.messages, tally.redelivered, tally.batches, tally.acks, tally.ack_failures, tally.connects, tally.dropped_at_reconnect, tally.abandoned_at_exit
    ))
}

/// `check --connect`: connect with the source's credentials and TLS, and check the queue exists
/// (a passive declare, which also says how many messages wait and how many consumers read it).
pub(super) fn check(source: &AmqpSource) -> Result<String, String> {
    let ep = Endpoint::new(source.target(), source.heartbeat_secs, source.timeout_secs).map_err(|e| e.message)?;
    let (conn, ch) = ep.open("check ", &source.describe())?;
    let queue = source.queue.clone();
    let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
    let found = within(ep.timeout, "queue check", async { ch.queue_declare(&queue, passive, FieldTable::default()).await.map_err(|e| e.to_string()) });
    close(conn, ch);
    match found {
        Ok(q) => Ok(format!("{}: connected; the queue exists ({} messages ready, {} consumers)", source.describe(), q.message_count(), q.consumer_count())),
        Err(e) => Err(format!("{}: connected, but the queue cannot be consumed: {e} (the receivers' amqp destination declares it with `queue`)", source.describe())),
    }
}

fn sleep_unless_shutdown(d: Duration, shared: &Shared) {
    let until = Instant::now() + d;
    while Instant::now() < until && !shared.shutdown.load(Ordering::SeqCst) {
        std::thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
    }
}
