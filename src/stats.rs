//! Counters of one program instance, printed as one stderr line every `[stats] interval_secs`
//! and at exit: lines in, events delivered, parse errors, dead-lettered, retries, batches and
//! delivery latency.

use std::sync::atomic::{AtomicU64, Ordering};

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
}

impl Stats {
    pub fn record_batch(&self, events: u64, latency_ms: u64) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.delivered.fetch_add(events, Ordering::Relaxed);
        self.latency_ms_total.fetch_add(latency_ms, Ordering::Relaxed);
        self.latency_ms_max.fetch_max(latency_ms, Ordering::Relaxed);
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
