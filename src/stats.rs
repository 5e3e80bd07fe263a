//! Counters of one program instance, printed as one stderr line every `[stats] interval_secs`
//! and at exit: lines in, events delivered, parse errors, dead-lettered, retries, batches and
//! delivery latency. Also the delivery health `status` reports: the last delivery error, when
//! it happened and when deliveries succeeded again ([`Health`]); the transitions are logged
//! once each ("delivery failing", "delivery recovered"), not per retry. The per-instance state
//! file (`crate::state`) is a snapshot of all of it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Delivery health: the last error and whether it cleared (unix seconds).
#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub last_error: Option<String>,
    pub last_error_at: Option<u64>,
    /// Set when a delivery succeeded after `last_error_at`; `None` while the error lasts.
    pub cleared_at: Option<u64>,
    pub last_delivery_at: Option<u64>,
    /// Failed attempts since the last success.
    pub failing_attempts: u64,
}

impl Health {
    pub fn failing(&self) -> bool {
        self.last_error_at.is_some() && self.cleared_at.is_none()
    }
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[derive(Default, Debug)]
pub struct Stats {
    pub lines_in: AtomicU64,
    pub events: AtomicU64,
    pub delivered: AtomicU64,
    pub filtered: AtomicU64,
    pub parse_errors: AtomicU64,
    /// Lines cut at EOF (no newline): ignored, never answered (rsyslog re-sends them).
    pub cut_lines: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub retries: AtomicU64,
    pub batches: AtomicU64,
    pub commits_failed: AtomicU64,
    pub journal_adopted: AtomicU64,
    pub latency_ms_total: AtomicU64,
    pub latency_ms_max: AtomicU64,
    /// Messages the destination returned as unroutable (AMQP), each return counted.
    pub unroutable: AtomicU64,
    /// Lines in this instance's journal now (answered DEFER_COMMIT, not yet delivered).
    pub journaled: AtomicU64,
    pub health: Mutex<Health>,
}

impl Stats {
    pub fn record_batch(&self, events: u64, latency_ms: u64) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.delivered.fetch_add(events, Ordering::Relaxed);
        self.latency_ms_total.fetch_add(latency_ms, Ordering::Relaxed);
        self.latency_ms_max.fetch_max(latency_ms, Ordering::Relaxed);
    }

    /// A delivery attempt failed; logs "delivery failing" at the first failure after a success.
    pub fn note_failure(&self, error: &str) {
        let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        if !h.failing() {
            log::warn!("delivery failing: {error} (retrying; \"delivery recovered\" follows when it works again)");
        }
        h.last_error = Some(error.to_string());
        h.last_error_at = Some(unix_now());
        h.cleared_at = None;
        h.failing_attempts += 1;
    }

    /// A delivery succeeded; logs "delivery recovered" when it ends a failure.
    pub fn note_success(&self) {
        let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        let now = unix_now();
        if h.failing() {
            log::info!(
                "delivery recovered after {} failed attempts ({} s); last error was: {}",
                h.failing_attempts,
                now.saturating_sub(h.last_error_at.unwrap_or(now)),
                h.last_error.as_deref().unwrap_or("")
            );
            h.cleared_at = Some(now);
        }
        h.failing_attempts = 0;
        h.last_delivery_at = Some(now);
    }

    pub fn health(&self) -> Health {
        self.health.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// One line: `stats: lines_in=... delivered=... ...`.
    pub fn line(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let batches = g(&self.batches);
        let avg = if batches > 0 { g(&self.latency_ms_total) as f64 / batches as f64 } else { 0.0 };
        format!(
            "stats: lines_in={} events={} delivered={} filtered={} parse_errors={} cut_lines={} dead_lettered={} retries={} batches={} commits_failed={} journal_adopted={} latency_ms_avg={:.1} latency_ms_max={} unroutable={}",
            g(&self.lines_in),
            g(&self.events),
            g(&self.delivered),
            g(&self.filtered),
            g(&self.parse_errors),
            g(&self.cut_lines),
            g(&self.dead_lettered),
            g(&self.retries),
            batches,
            g(&self.commits_failed),
            g(&self.journal_adopted),
            avg,
            g(&self.latency_ms_max),
            g(&self.unroutable),
        )
    }
}
