//! The parse/render stage of omprog mode: lines from the protocol thread in, batches of encoded
//! records out. Parses, classifies, filters and encodes each line ([`Renderer`], also used to
//! re-read adopted journals); a line that is not an event is dead-lettered here with its reason,
//! counted, and never blocks the rest. A batch closes when full (`[batch] max_events` /
//! `max_bytes`) or at a COMMIT.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use super::Shared;
use crate::batch::Batch;
use crate::config::Config;
use crate::deadletter::Kind;
use crate::event::Event;
use crate::filter::Filter;
use crate::input::{ClusterSource, Parsed, Parser, ParserOptions};
use crate::sink::Encoder;

/// Work for the parse/render stage.
pub(super) enum Work {
    /// Lines of transaction `tx`, each ending with `\n`.
    Lines { tx: u64, buf: Vec<u8> },
    /// Close the batch of `tx` and deliver it.
    Commit { tx: u64 },
    /// Forget the undelivered part of `tx`.
    Rollback { tx: u64 },
}

/// Fixed cluster name for dead-letter entries of lines that did not name one.
fn fallback_cluster(opts: &ParserOptions) -> &str {
    match &opts.cluster {
        ClusterSource::Fixed(n) => n,
        _ => "",
    }
}

pub(super) fn fallback_cluster_of(cfg: &Config) -> String {
    fallback_cluster(&cfg.parser_options()).to_string()
}

/// Parses lines into `batch`; dead-letters bad lines. Returns nothing: full batches are sent.
pub(crate) struct Renderer {
    parser: Parser,
    opts: ParserOptions,
    filter: Filter,
    encoder: Encoder,
    event: Event,
    rendered: Vec<u8>,
    /// A version 2 line without a unique stamp ([`UNSTAMPED`]), without a cluster
    /// ([`NO_CLUSTER`]) was warned about: once per instance each.
    warned_v2: [bool; 2],
}

impl Renderer {
    pub(crate) fn new(cfg: &Config, encoder: Encoder) -> Renderer {
        let opts = cfg.parser_options();
        Renderer {
            parser: Parser::new(opts.clone()),
            opts,
            filter: Filter::new(cfg.filter.clone()),
            encoder,
            event: Event::default(),
            rendered: Vec::with_capacity(4096),
            warned_v2: [false; 2],
        }
    }

    /// Warns (once per instance and kind) about a version 2 line that lacks what the event
    /// needs ([`crate::input::V2Gap`]).
    fn warn_v2_gap(&mut self, line: &[u8]) {
        use crate::input::V2Gap;
        let (i, text) = match crate::input::v2_line_gap(line) {
            Some(V2Gap::Stamp) => (0, UNSTAMPED),
            Some(V2Gap::Cluster) if self.event.cluster.is_empty() => (1, NO_CLUSTER),
            _ => return,
        };
        if !self.warned_v2[i] {
            self.warned_v2[i] = true;
            log::warn!("{text}");
        }
    }

    /// Adds one line's record to `batch` (or dead-letters / filters it).
    pub(crate) fn add(&mut self, line: &[u8], batch: &mut Batch, shared: &Shared) {
        let stats = &shared.stats;
        match self.parser.parse(line, &mut self.event) {
            Ok(Parsed::Event) => {
                stats.events.fetch_add(1, Ordering::Relaxed);
                if self.warned_v2 != [true, true] {
                    self.warn_v2_gap(line);
                }
                if !self.filter.passes(&self.event) {
                    stats.filtered.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                if self.encoder.passes_lines_through() && !is_envelope(line) {
                    // The receiver tier forwards envelopes only: the envelope fixes the cluster
                    // and the event id for every processor downstream. A bare body would be
                    // parsed again there with the processor's own cluster settings.
                    stats.parse_errors.fetch_add(1, Ordering::Relaxed);
                    shared.dead.write(Kind::ParseError, &self.event.cluster, NOT_AN_ENVELOPE, line);
                    return;
                }
                let start = batch.begin_record();
                self.encoder.encode_from(&self.event, line, &mut self.rendered, &mut batch.buf);
                batch.end_record(start);
            }
            Ok(Parsed::Skip) => {}
            Err(e) => {
                stats.parse_errors.fetch_add(1, Ordering::Relaxed);
                let cluster = if self.event.cluster.is_empty() { fallback_cluster(&self.opts) } else { &self.event.cluster };
                shared.dead.write(Kind::ParseError, cluster, &e.reason, line);
            }
        }
    }
}

/// Said once per instance on the first version 2 envelope line without a cluster (none named
/// by the destination's config either).
const NO_CLUSTER: &str = "envelope version 2 without a cluster: this destination's file is of an earlier version (template=\"qab_envelope\") and the cluster's ruleset no longer sets $.cluster (version 3 names the cluster by the listener, qab-<cluster>, which version 2 does not carry): give its action template=\"qab_envelope_v3\" and the uuid filter before it, as the shipped 20-dest-file.conf (docs/packaging.md, Upgrading)";

/// Said once per instance on the first version 2 envelope line without a unique stamp.
const UNSTAMPED: &str = "envelope version 2 without mmsequence's number or a uuid: identical audit lines received together get one event id (a destination that de-duplicates by id keeps one of them). This destination's file is of an earlier version (template=\"qab_envelope\") and qab_deliver no longer numbers messages: give its action template=\"qab_envelope_v3\" and the uuid filter before it, as the shipped 20-dest-file.conf (docs/packaging.md, Upgrading)";

/// Why a pass-through destination refuses a line that parsed but is not an envelope.
const NOT_AN_ENVELOPE: &str = "pass_through forwards only envelope lines (rsyslog's qab_envelope_v3 template: QAB3, or versions 2 and 1); this line is a bare body: give the receiver's omprog action template=\"qab_envelope_v3\"";

/// An envelope as rsyslog renders it: version 3 or 2 (`QAB3` / `QAB2` and a tab) or version 1
/// (the JSON object the old template wrote, `{"v":1,` first; its journals are still forwarded
/// after an upgrade).
fn is_envelope(line: &[u8]) -> bool {
    line.starts_with(b"QAB3\t") || line.starts_with(b"QAB2\t") || line.starts_with(b"{\"v\":1,")
}

pub(super) fn parse_stage(work_rx: Receiver<Work>, batch_tx: Sender<Batch>, pool_rx: Receiver<Batch>, encoder: Encoder, shared: Arc<Shared>) {
    let cfg = &shared.cfg;
    let (max_events, max_bytes) = (cfg.batch.max_events, cfg.batch.max_bytes);
    let mut renderer = Renderer::new(cfg, encoder);
    let fresh = |pool: &Receiver<Batch>| {
        let mut b = pool.try_recv().unwrap_or_default();
        b.clear();
        b
    };
    let mut batch = fresh(&pool_rx);
    for work in work_rx.iter() {
        if shared.shutdown.load(Ordering::SeqCst) {
            return; // nothing will be acknowledged any more; the journal keeps the lines
        }
        match work {
            Work::Lines { tx, buf } => {
                // Lines end with '\n' (the protocol thread adds it); memchr finds them a word at a
                // time, where a bytewise split cost about 1,000 instructions per line.
                let mut start = 0;
                for end in memchr::memchr_iter(b'\n', &buf) {
                    let line = &buf[start..end];
                    start = end + 1;
                    if line.is_empty() {
                        continue;
                    }
                    renderer.add(line, &mut batch, &shared);
                    if batch.is_full(max_events, max_bytes) {
                        if shared.shutdown.load(Ordering::SeqCst) {
                            return;
                        }
                        batch.tx = tx;
                        if batch_tx.send(std::mem::replace(&mut batch, fresh(&pool_rx))).is_err() {
                            return;
                        }
                    }
                }
            }
            Work::Commit { tx } => {
                batch.tx = tx;
                batch.commits = true;
                if batch_tx.send(std::mem::replace(&mut batch, fresh(&pool_rx))).is_err() {
                    return;
                }
            }
            Work::Rollback { tx } => {
                log::debug!("rolling back transaction {tx}");
                batch.clear();
            }
        }
    }
}
