//! AMQP 0-9-1 destination (RabbitMQ): each event is one persistent message published to an
//! exchange, with `mandatory` set and publisher confirms on.
//!
//! **Contract.** A record counts as delivered only when the broker confirmed it (`basic.ack`).
//! A `basic.nack`, a closed channel or connection, or no confirm within `timeout_secs` means
//! retry (the connection is dropped and reopened at the next delivery, after the delivery
//! stage's backoff). A message the broker *returns* (`basic.return`: mandatory, and no queue
//! is bound for its routing key) is acked too, but it is not delivered: it is retried like a
//! failure, and once the same message (by message id) has been returned `max_returns` times
//! (default 3) it is dead-lettered with the broker's reason. Returns are counted in the stats
//! line (`unroutable=`); nothing unroutable is ever silently dropped. Delivery is
//! at-least-once: a message whose confirm was lost is published again, with the same message id
//! (the event id), so consumers can drop duplicates.
//!
//! **Messages.** Body: the rendered record (the configured format, no trailing newline).
//! Properties: `delivery_mode` 2 (persistent), `content_type` `application/json` for JSON
//! formats and `text/plain` for CEF and LEEF, `message_id` the event id, `timestamp` the
//! event's time (else the time it was rendered), `app_id` `qumulo-audit-broker`. Routing key:
//! a template of event fields ([`route`]). With `pass_through = true` (the receiver tier,
//! docs/scaling.md) the body is the envelope line as received (`text/plain`) and the message
//! id the event id fixed here; `consume` reads such messages from a queue ([`crate::consume`]).
//!
//! **Per-cluster connections.** `[destination.clusters.<name>]` gives the events of cluster
//! `<name>` their own broker connection (server, port, vhost, exchange, routing key,
//! credentials, TLS); every other event uses the top-level settings. A batch that spans
//! clusters is published on each connection and is delivered when each has confirmed its part
//! (parts that failed are retried alone).
//!
//! **Client crate.** `lapin` 2.5: pure Rust, complete AMQP 0-9-1 with publisher confirms and
//! returned messages (`Confirmation::Ack(Some(returned))`), TLS through rustls with the `ring`
//! provider we already use (no OpenSSL: the static musl package builds as before). lapin 3 and
//! 4 need Rust 1.88 (this crate declares 1.75); `amiquip` is unmaintained and uses OpenSSL for
//! TLS; `amqprs` has no support for returned messages tied to confirms. lapin is async: the
//! async part stays in [`link`], which blocks on each call with a deadline, so the delivery
//! stage keeps its plain blocking `deliver` contract.
//!
//! Files: [`link`] (one connection: connect, declare, publish and confirm), [`tls`]; shared with
//! the `kafka` sink: [`super::record`] (the per-record header carrying routing key, message id,
//! timestamp and cluster from the parse stage to this one), [`super::route`] (key templates).

pub mod link;
pub mod tls;

use std::collections::HashMap;

use super::Attempt;
use crate::batch::Batch;
use crate::config::{AmqpDestination, ConfigError};
use crate::event::Event;
use crate::format::Format;
use self::link::{Link, Outcome};
use super::record;
use super::route::RoutingKey;

/// Message ids whose returns are counted; past this the counts start again (memory bound).
const RETURN_COUNTS_MAX: usize = 100_000;

/// Frames events as AMQP records: the [`record`] header, then the rendered event.
#[derive(Clone)]
pub struct AmqpEncoder {
    format: Format,
    default_key: RoutingKey,
    cluster_keys: HashMap<String, RoutingKey>,
    /// `pass_through = true`: the body is the input line itself ([`record::encode_line`]).
    pub pass_through: bool,
}

impl AmqpEncoder {
    /// The templates were validated at config load; one that still fails to parse (it cannot)
    /// routes by the default template rather than dropping events.
    pub fn new(d: &AmqpDestination) -> AmqpEncoder {
        let mut default_key = RoutingKey::fallback();
        let mut cluster_keys = HashMap::new();
        for t in d.targets() {
            let key = RoutingKey::parse(&t.routing_key).unwrap_or_else(|_| RoutingKey::fallback());
            match t.cluster {
                Some(c) => {
                    cluster_keys.insert(c, key);
                }
                None => default_key = key,
            }
        }
        AmqpEncoder { format: d.format, default_key, cluster_keys, pass_through: d.pass_through }
    }

    fn key_of(&self, ev: &Event) -> &RoutingKey {
        self.cluster_keys.get(&ev.cluster).unwrap_or(&self.default_key)
    }

    pub fn encode(&self, ev: &Event, rendered: &mut Vec<u8>, out: &mut Vec<u8>) {
        record::encode(ev, self.key_of(ev), self.format, rendered, out);
    }

    /// Pass-through (the receiver tier): [`record::encode_line`]; the body is the envelope.
    pub fn encode_line(&self, ev: &Event, line: &[u8], out: &mut Vec<u8>) {
        record::encode_line(ev, self.key_of(ev), line, out);
    }
}

pub struct AmqpSink {
    /// The top-level connection first, then one per cluster override.
    links: Vec<Link>,
    by_cluster: HashMap<String, usize>,
    max_returns: u32,
    /// Returns so far, by message id, of messages not yet delivered or dead-lettered.
    returns: HashMap<String, u32>,
}

impl AmqpSink {
    /// Reads the secret files and TLS material; connects nothing (the first delivery does, so
    /// a broker that is down at start-up delays deliveries instead of failing the start).
    pub fn new(d: &AmqpDestination) -> Result<AmqpSink, ConfigError> {
        // Pass-through bodies are envelope lines (tab-separated text, docs/event-schema.md).
        let content_type = if d.format.is_json() && !d.pass_through { "application/json" } else { "text/plain" };
        let mut links = Vec::new();
        let mut by_cluster = HashMap::new();
        for t in d.targets() {
            if let Some(c) = &t.cluster {
                by_cluster.insert(c.clone(), links.len());
            }
            links.push(Link::new(d, t, content_type)?);
        }
        Ok(AmqpSink { links, by_cluster, max_returns: d.max_returns, returns: HashMap::new() })
    }

    pub fn deliver(&mut self, batch: &Batch, which: &[usize]) -> Attempt {
        let mut attempt = Attempt::ok();
        // Records per connection, in batch order.
        let mut groups: Vec<Vec<(usize, record::Record<'_>)>> = (0..self.links.len()).map(|_| Vec::new()).collect();
        for &i in which {
            match record::split(batch.record(i)) {
                Some(r) => {
                    let link = self.by_cluster.get(r.cluster).copied().unwrap_or(0);
                    groups[link].push((i, r));
                }
                None => attempt.rejected.push((i, "internal error: malformed AMQP record".into())),
            }
        }
        for (link, group) in self.links.iter_mut().zip(groups) {
            if group.is_empty() {
                continue;
            }
            let records: Vec<record::Record<'_>> = group.iter().map(|(_, r)| *r).collect();
            let (outcomes, returned) = link.publish(&records);
            let mut returned_ids: HashMap<&str, &str> = HashMap::new();
            for r in &returned {
                returned_ids.insert(r.message_id.as_str(), r.reason.as_str());
            }
            if returned.len() > returned_ids.len() || returned.iter().any(|r| !group.iter().any(|(_, g)| g.message_id == r.message_id)) {
                log::warn!("{}: the broker returned messages this batch did not publish now; ignored", link.target.describe());
            }
            for ((i, r), outcome) in group.iter().zip(outcomes) {
                if let Some(reason) = returned_ids.get(r.message_id) {
                    attempt.unroutable += 1;
                    let n = self.returns.entry(r.message_id.to_string()).or_insert(0);
                    *n += 1;
                    if *n >= self.max_returns {
                        let reason = format!("{reason}; returned {n} times (max_returns = {})", self.max_returns);
                        self.returns.remove(r.message_id);
                        attempt.rejected.push((*i, reason));
                    } else {
                        attempt.retry.push(*i);
                        attempt.error = Some(format!("{reason} (return {n} of {} before the dead-letter file)", self.max_returns));
                    }
                    continue;
                }
                match outcome {
                    Outcome::Acked => {
                        if !self.returns.is_empty() {
                            self.returns.remove(r.message_id);
                        }
                    }
                    Outcome::Failed(e) => {
                        attempt.retry.push(*i);
                        attempt.error = Some(format!("destination unavailable: {e}"));
                    }
                }
            }
        }
        if self.returns.len() > RETURN_COUNTS_MAX {
            self.returns.clear();
        }
        attempt
    }

    /// Every connection: connect, open a channel, check the exchange.
    pub fn check(&mut self) -> Result<String, String> {
        let mut lines = Vec::new();
        for link in &mut self.links {
            lines.push(link.check()?);
        }
        Ok(lines.join("; "))
    }

    /// Closes every connection (SIGHUP); the next delivery reconnects.
    pub fn disconnect(&mut self) {
        for link in &mut self.links {
            link.disconnect();
        }
    }
}

