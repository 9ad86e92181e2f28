//! [`Latency`]: the durations of a sample of a provider's calls, in fixed buckets, for the
//! monitor's call-duration histograms.
//!
//! Timing every call would cost two clock reads (about 40 ns) on calls that take 25 ns, so
//! each thread times one call in [`SAMPLE_EVERY`]: a thread-local countdown, a plain
//! increment, decides. Recording is a handful of relaxed atomic adds, on one call in 64.

use std::{
    cell::Cell,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Duration,
};

/// One call in this many is timed, per thread.
pub const SAMPLE_EVERY: u32 = 64;

/// Upper bounds of the buckets, in seconds (a last, unbounded bucket follows): from 100 ns
/// (a cache hit) to 1 s (a block's execution).
pub const BUCKETS: [f64; 14] = [
    1e-7, 2.5e-7, 1e-6, 2.5e-6, 1e-5, 2.5e-5, 1e-4, 2.5e-4, 1e-3, 2.5e-3, 1e-2, 2.5e-2, 0.1, 1.0,
];

thread_local! {
    static COUNTDOWN: Cell<u32> = const { Cell::new(0) };
}

/// Whether the calling thread times its current call.
#[inline]
pub fn sample() -> bool {
    COUNTDOWN.with(|c| {
        let n = c.get();
        c.set(if n == 0 { SAMPLE_EVERY - 1 } else { n - 1 });
        n == 0
    })
}

/// A histogram of durations over fixed bucket bounds ([`BUCKETS`] unless made
/// [`Latency::with_bounds`]).
pub struct Latency {
    bounds: &'static [f64],
    /// Per bucket (the last is unbounded), calls whose duration fell in it (not cumulative).
    counts: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

impl Default for Latency {
    fn default() -> Self {
        Latency::with_bounds(&BUCKETS)
    }
}

/// What a [`Latency`] holds: cumulative counts per bucket bound, as Prometheus wants them.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct LatencySnapshot {
    /// `(upper bound in seconds, calls at or under it)`, for each bound.
    pub cumulative: Vec<(f64, u64)>,
    /// Calls timed.
    pub count: u64,
    pub sum_seconds: f64,
}

impl LatencySnapshot {
    /// The upper bound of the bucket holding the `q` quantile (`None` without samples, or
    /// past the last bound).
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        let rank = (q * self.count as f64).ceil().max(1.0) as u64;
        (self.count > 0)
            .then(|| {
                self.cumulative
                    .iter()
                    .find(|(_, c)| *c >= rank)
                    .map(|(b, _)| *b)
            })
            .flatten()
    }
}

impl Latency {
    /// A histogram over `bounds` (seconds, ascending; an unbounded bucket follows).
    pub fn with_bounds(bounds: &'static [f64]) -> Latency {
        Latency {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn record(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_nanos
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Relaxed);
    }

    pub fn snapshot(&self) -> LatencySnapshot {
        let mut running = 0;
        let mut cumulative = Vec::with_capacity(self.bounds.len());
        for (bound, count) in self.bounds.iter().zip(self.counts.iter()) {
            running += count.load(Relaxed);
            cumulative.push((*bound, running));
        }
        LatencySnapshot {
            count: running + self.counts[self.bounds.len()].load(Relaxed),
            cumulative,
            sum_seconds: self.sum_nanos.load(Relaxed) as f64 / 1e9,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_call_in_sample_every_is_timed() {
        let timed = (0..SAMPLE_EVERY * 10).filter(|_| sample()).count();
        assert_eq!(timed, 10);
    }

    #[test]
    fn durations_land_in_their_buckets_cumulatively() {
        let l = Latency::default();
        l.record(Duration::from_nanos(50));
        l.record(Duration::from_micros(3));
        l.record(Duration::from_secs(2));
        let s = l.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.cumulative[0], (1e-7, 1));
        // 3 us is over 2.5 us and under 10 us.
        assert_eq!(s.cumulative[3], (2.5e-6, 1));
        assert_eq!(s.cumulative[4], (1e-5, 2));
        // 2 s is past the last bound: counted, in no bounded bucket.
        assert_eq!(s.cumulative.last().unwrap().1, 2);
        assert!((s.sum_seconds - 2.000003050).abs() < 1e-9);
        assert_eq!(s.quantile_bound(0.5), Some(1e-5));
        assert_eq!(s.quantile_bound(1.0), None);
    }
}
