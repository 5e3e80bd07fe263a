//! The delivery stage of omprog mode: batches in, one outcome per transaction out. Retries a
//! batch with exponential backoff and jitter for up to `[retry] max_elapsed_secs`, dead-letters
//! the records a destination refuses for good, and adopts the journals of dead instances (at
//! start, after every delivered COMMIT and after each second without a batch), so what rsyslog
//! forgot (issue #2420) is delivered even when no line comes after the death.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::pipeline::Renderer;
use super::Shared;
use crate::batch::Batch;
use crate::deadletter::Kind;
use crate::journal::find_orphans;
use crate::sink::{Encoder, Sink};

/// How long the delivery stage waits for a batch before it looks for dead instances' journals
/// on its own (it also looks at start and after every delivered COMMIT). A scan is one
/// `readdir` plus one `flock` attempt per journal.
const IDLE_ADOPTION: Duration = Duration::from_secs(1);

/// The delivery stage's answer for one transaction.
pub(super) struct Done {
    pub tx: u64,
    pub result: Result<(), String>,
}

/// What the delivery stage works with, besides its channels.
pub(super) struct DeliveryStage {
    pub sink: Sink,
    /// Renders adopted journals' lines (its own parser: the parse stage runs on).
    pub encoder: Encoder,
    /// The journal directory to adopt from (none when the journal is off), and our own journal
    /// there, which is never adopted.
    pub journal_dir: Option<PathBuf>,
    pub own_journal: Option<PathBuf>,
    pub shared: Arc<Shared>,
}

/// Delivers `batch` with retries; dead-letters records the destination refuses for good.
pub(crate) fn deliver_with_retry(sink: &mut Sink, batch: &Batch, shared: &Shared) -> Result<(), String> {
    let retry = &shared.cfg.retry;
    let started = Instant::now();
    let mut pending: Vec<usize> = (0..batch.len()).collect();
    // Accepted over every attempt: a retry sends only what the previous attempt did not place.
    let mut delivered = 0;
    let mut backoff = Duration::from_millis(retry.initial_backoff_ms);
    let max_backoff = Duration::from_millis(retry.max_backoff_ms.max(retry.initial_backoff_ms));
    let max_elapsed = Duration::from_secs(retry.max_elapsed_secs);
    loop {
        if shared.hup.swap(false, Ordering::SeqCst) {
            sink.reopen(); // the dead-letter file reopens itself at its next write
        }
        if shared.shutdown.load(Ordering::SeqCst) {
            return Err("shutting down".into());
        }
        let attempt = {
            // Held only where exiting mid-write would tear a record (file, TCP stream); an HTTP
            // request cut short is simply not accepted, so SIGTERM need not wait for it.
            let _writing = sink.tears_when_cut().then(|| shared.delivering.lock().unwrap_or_else(|e| e.into_inner()));
            sink.deliver(batch, &pending)
        };
        for (i, reason) in &attempt.rejected {
            let (cluster, record) = sink.dead_letter_view(batch.record(*i));
            shared.dead.write(Kind::Rejected, cluster, reason, record);
        }
        shared.stats.unroutable.fetch_add(attempt.unroutable, Ordering::Relaxed);
        delivered += pending.len().saturating_sub(attempt.rejected.len() + attempt.retry.len());
        if attempt.retry.is_empty() {
            shared.stats.record_batch(delivered as u64, started.elapsed().as_millis() as u64);
            shared.stats.note_success();
            return Ok(());
        }
        let error = attempt.error.unwrap_or_else(|| "destination did not accept the batch".into());
        shared.stats.retries.fetch_add(1, Ordering::Relaxed);
        shared.stats.note_failure(&error);
        if started.elapsed() >= max_elapsed || shared.shutdown.load(Ordering::SeqCst) {
            return Err(error);
        }
        log::warn!("delivery of {} records failed, retrying in {:?}: {error}", attempt.retry.len(), backoff);
        let remaining = max_elapsed.saturating_sub(started.elapsed());
        sleep_unless_shutdown(jitter(backoff).min(remaining), shared);
        backoff = (backoff * 2).min(max_backoff);
        pending = attempt.retry;
    }
}

/// Backoff with +-25 % jitter, so instances that failed together do not retry together.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    let seed = (nanos ^ std::process::id().rotate_left(16)) % 1000;
    let factor = 0.75 + (seed as f64 / 1000.0) * 0.5;
    d.mul_f64(factor)
}

fn sleep_unless_shutdown(d: Duration, shared: &Shared) {
    let until = Instant::now() + d;
    while Instant::now() < until && !shared.shutdown.load(Ordering::SeqCst) {
        thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
    }
}

impl DeliveryStage {
    /// Runs until `batch_rx` closes or shutdown; returns used batches to `pool_tx` for reuse.
    pub(super) fn run(self, batch_rx: Receiver<Batch>, pool_tx: Sender<Batch>, done_tx: Sender<Done>) {
    let DeliveryStage { mut sink, encoder, journal_dir, own_journal, shared } = self;
    let mut adopter = journal_dir.map(|dir| Adopter { dir, own: own_journal, renderer: Renderer::new(&shared.cfg, encoder) });
    if let Some(a) = adopter.as_mut() {
        a.adopt(&mut sink, &shared);
    }
    let mut failed: Option<(u64, String)> = None;
    loop {
        let batch = match batch_rx.recv_timeout(IDLE_ADOPTION) {
            Ok(batch) => batch,
            Err(RecvTimeoutError::Timeout) => {
                // Idle: a journal left by an instance that died after our last COMMIT would
                // otherwise wait for the next COMMIT, which may never come once a burst is over
                // (seen: an instance that outlived its rsyslogd, stuck in a delivery, died after
                // the next instances had started and adopted).
                if let Some(a) = adopter.as_mut() {
                    if !shared.shutdown.load(Ordering::SeqCst) {
                        a.adopt(&mut sink, &shared);
                    }
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        if shared.shutdown.load(Ordering::SeqCst) {
            return; // nothing will be acknowledged any more; the journal keeps the lines
        }
        let already_failed = failed.as_ref().is_some_and(|(tx, _)| *tx == batch.tx);
        if !batch.is_empty() && !already_failed {
            if let Err(e) = deliver_with_retry(&mut sink, &batch, &shared) {
                failed = Some((batch.tx, e));
            }
        } else if batch.commits && !already_failed {
            // An empty last batch (the transaction filled its earlier batches exactly).
            if let Err(e) = sink.sync_pending() {
                failed = Some((batch.tx, e));
            }
        }
        if batch.commits {
            let result = match failed.take() {
                Some((tx, e)) if tx == batch.tx => Err(e),
                // The transaction's dead-letter entries reach the disk before its OK (when the
                // configuration promises power-loss safety; else this does nothing).
                _ => shared.dead.sync().map_err(|e| format!("dead-letter file fsync failed: {e}")),
            };
            let ok = result.is_ok();
            if done_tx.send(Done { tx: batch.tx, result }).is_err() {
                return;
            }
            if ok {
                if let Some(a) = adopter.as_mut() {
                    a.adopt(&mut sink, &shared);
                }
            }
        }
        let _ = pool_tx.try_send(batch);
    }
}
}

/// Delivers the journals of dead instances.
struct Adopter {
    dir: PathBuf,
    own: Option<PathBuf>,
    renderer: Renderer,
}

impl Adopter {
    fn adopt(&mut self, sink: &mut Sink, shared: &Shared) {
        for mut orphan in find_orphans(&self.dir, self.own.as_deref()) {
            let data = match orphan.contents() {
                Ok(d) => d,
                Err(e) => {
                    log::error!("cannot read orphaned journal {}: {e}", orphan.path.display());
                    continue;
                }
            };
            // One unit: delivered whole (and synced, with `fsync`) before the journal is removed.
            let mut batch = Batch { commits: true, ..Batch::default() };
            let mut lines = 0;
            for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                lines += 1;
                self.renderer.add(line, &mut batch, shared);
            }
            if !batch.is_empty() {
                if let Err(e) = deliver_with_retry(sink, &batch, shared) {
                    log::warn!("orphaned journal {} not delivered yet ({e}); will retry", orphan.path.display());
                    return;
                }
            }
            if let Err(e) = shared.dead.sync() {
                log::warn!("orphaned journal {} delivered but the dead-letter file could not be synced ({e}); will retry", orphan.path.display());
                return;
            }
            shared.stats.journal_adopted.fetch_add(lines, Ordering::Relaxed);
            if lines > 0 {
                log::info!("delivered {lines} lines from the journal of a dead instance ({})", orphan.path.display());
            } else {
                // A stopped instance's journal with nothing undelivered: nothing to report.
                log::debug!("removed the empty journal of a stopped instance ({})", orphan.path.display());
            }
            let path = orphan.path.clone();
            if let Err(e) = orphan.remove() {
                log::error!("cannot remove adopted journal {}: {e}", path.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_a_quarter() {
        for _ in 0..100 {
            let j = jitter(Duration::from_millis(1000));
            assert!(j >= Duration::from_millis(750) && j <= Duration::from_millis(1250), "{j:?}");
        }
    }
}
