//! What the serving core counts: requests, tokens, slots, the prefix cache and latency
//! histograms. Shared between the engine's thread (which counts) and the front end (which
//! reports: `tide serve`'s /health and /metrics).
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A latency histogram with fixed bucket bounds in seconds (Prometheus' cumulative shape is
/// made when it is read).
pub struct Histogram {
    pub bounds: &'static [f64],
    /// Observations at or below each bound and above the one before; the last counts the rest.
    counts: Vec<AtomicU64>,
    sum_ns: AtomicU64,
}

/// Time to first token: from a request's arrival to its first generated token.
pub const TTFT_BOUNDS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Between two tokens of one request.
pub const ITL_BOUNDS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, seconds: f64) {
        let i = self.bounds.partition_point(|&b| b < seconds);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        let ns = (seconds.max(0.0) * 1e9).min(u64::MAX as f64) as u64;
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Cumulative counts per bound (the last is +Inf: every observation), and the sum in
    /// seconds.
    pub fn read(&self) -> (Vec<u64>, f64) {
        let mut total = 0;
        let cum = (self.counts.iter())
            .map(|c| {
                total += c.load(Ordering::Relaxed);
                total
            })
            .collect();
        (cum, self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9)
    }
}

pub struct Counters {
    /// Waiting in the queue (the front end adds, the engine's thread takes away).
    pub queued: AtomicU64,
    pub running: AtomicU64,
    pub completed: AtomicU64,
    /// Runs ended because their client left, and how many tokens the last one had made.
    pub cancelled: AtomicU64,
    pub last_cancelled_tokens: AtomicU64,
    /// GPU devices lost and replaced.
    pub device_resets: AtomicU64,
    /// Decode steps run, and those that several requests shared (continuous batching).
    pub steps: AtomicU64,
    pub shared_steps: AtomicU64,
    /// Prompt tokens of the requests that ran, and of those the prefix cache gave.
    pub prompt_tokens: AtomicU64,
    pub cached_tokens: AtomicU64,
    /// Requests that reused a slot's prefix (at least one token).
    pub prefix_hits: AtomicU64,
    pub generated_tokens: AtomicU64,
    pub ttft: Histogram,
    pub inter_token: Histogram,
    /// Responses by HTTP status (the front end records them).
    statuses: Mutex<BTreeMap<u16, u64>>,
}

impl Default for Counters {
    fn default() -> Self {
        let z = || AtomicU64::new(0);
        Counters {
            queued: z(),
            running: z(),
            completed: z(),
            cancelled: z(),
            last_cancelled_tokens: z(),
            device_resets: z(),
            steps: z(),
            shared_steps: z(),
            prompt_tokens: z(),
            cached_tokens: z(),
            prefix_hits: z(),
            generated_tokens: z(),
            ttft: Histogram::new(TTFT_BOUNDS),
            inter_token: Histogram::new(ITL_BOUNDS),
            statuses: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Counters {
    pub fn get(a: &AtomicU64) -> u64 {
        a.load(Ordering::Relaxed)
    }

    pub fn add(a: &AtomicU64, n: u64) {
        a.fetch_add(n, Ordering::Relaxed);
    }

    /// One less (never below 0: a gauge the front end and the engine thread both move).
    pub fn sub_one(a: &AtomicU64) {
        let _ = a.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| {
            Some(q.saturating_sub(1))
        });
    }

    pub fn record_status(&self, status: u16) {
        let mut m = self.statuses.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(status).or_default() += 1;
    }

    pub fn statuses(&self) -> BTreeMap<u16, u64> {
        self.statuses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_bounds_inclusive() {
        let h = Histogram::new(&[0.1, 1.0]);
        for s in [0.05, 0.1, 0.5, 2.0] {
            h.observe(s);
        }
        let (cum, sum) = h.read();
        assert_eq!(cum, vec![2, 3, 4]);
        assert!((sum - 2.65).abs() < 1e-9);
    }
}
