//! Side-by-side measurement of a baseline and an optimization: interleaved rounds in one
//! process, and the ratio with a bootstrap confidence interval.
//!
//! On a shared 2-core machine absolute times drift with whatever else runs; what runs
//! interleaved (A B B A A B ...) drifts together, so the per-round ratio is the robust
//! figure. The order within a round alternates to cancel warm-cache advantages.

use std::time::Instant;

use serde::{Deserialize, Serialize};

/// A point estimate with its confidence interval.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Estimate {
    pub median: f64,
    /// Lower bound of the 95% bootstrap interval of the median.
    pub low: f64,
    /// Upper bound of the 95% bootstrap interval of the median.
    pub high: f64,
}

/// Baseline against optimization on one workload.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// What was compared (a slot id or a case name).
    pub name: String,
    /// Interleaved rounds, each one run of either side.
    pub rounds: usize,
    /// Seconds per run of the baseline, one per round.
    pub baseline_s: Vec<f64>,
    /// Seconds per run of the optimization, one per round.
    pub optimized_s: Vec<f64>,
    /// baseline time / optimized time.
    pub ratio: Estimate,
}

impl Comparison {
    /// The ratio of each round: baseline time / optimized time.
    pub fn round_ratios(&self) -> Vec<f64> {
        round_ratios(&self.baseline_s, &self.optimized_s)
    }

    /// Whether the whole interval is at or above `goal`.
    pub fn meets(&self, goal: f64) -> bool {
        self.ratio.low >= goal
    }
}

/// Runs `baseline` and `optimized` alternately for `rounds` rounds (after one warm-up run
/// of each) and estimates the ratio of their times.
pub fn compare(
    name: &str,
    rounds: usize,
    baseline: impl FnMut(),
    optimized: impl FnMut(),
) -> Comparison {
    compare_with_reset(name, rounds, baseline, optimized, || {})
}

/// Like [`compare`], with `reset` run after every run of either side, untimed (for
/// workloads that change state, such as a block written to a store and rolled back).
pub fn compare_with_reset(
    name: &str,
    rounds: usize,
    mut baseline: impl FnMut(),
    mut optimized: impl FnMut(),
    mut reset: impl FnMut(),
) -> Comparison {
    baseline();
    reset();
    optimized();
    reset();
    let mut time = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        let s = t.elapsed().as_secs_f64();
        reset();
        s
    };
    let (mut b, mut o) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for round in 0..rounds.max(2) {
        if round % 2 == 0 {
            b.push(time(&mut baseline));
            o.push(time(&mut optimized));
        } else {
            o.push(time(&mut optimized));
            b.push(time(&mut baseline));
        }
    }
    let ratios = round_ratios(&b, &o);
    Comparison {
        name: name.to_owned(),
        rounds: ratios.len(),
        ratio: bootstrap_median(&ratios, 2_000, 0x5eed),
        baseline_s: b,
        optimized_s: o,
    }
}

/// Baseline time / optimized time, round by round (a zero time counts as a picosecond).
fn round_ratios(baseline_s: &[f64], optimized_s: &[f64]) -> Vec<f64> {
    baseline_s
        .iter()
        .zip(optimized_s)
        .map(|(b, o)| b / o.max(1e-12))
        .collect()
}

/// The median of `samples` with a 95% percentile-bootstrap interval (`resamples` draws,
/// deterministic for a given `seed`).
pub fn bootstrap_median(samples: &[f64], resamples: usize, seed: u64) -> Estimate {
    assert!(!samples.is_empty(), "no samples");
    let mut next = resampler(seed);
    let n = samples.len();
    let mut medians: Vec<f64> = (0..resamples)
        .map(|_| {
            let mut draw: Vec<f64> = (0..n)
                .map(|_| samples[(next() % n as u64) as usize])
                .collect();
            median(&mut draw)
        })
        .collect();
    medians.sort_by(f64::total_cmp);
    let at = |q: f64| medians[((q * (resamples - 1) as f64).round() as usize).min(resamples - 1)];
    Estimate {
        median: median(&mut samples.to_vec()),
        low: at(0.025),
        high: at(0.975),
    }
}

/// The median of samples gathered in clusters (each cluster the rounds of one fresh process,
/// which carries a bias of its own that more rounds do not remove), with a 95% interval from
/// a two-level bootstrap: clusters drawn with replacement, then rounds within each drawn
/// cluster. The interval is as wide as the processes disagree, not only as the rounds do.
pub fn bootstrap_clustered(clusters: &[Vec<f64>], resamples: usize, seed: u64) -> Estimate {
    let clusters: Vec<&Vec<f64>> = clusters.iter().filter(|c| !c.is_empty()).collect();
    assert!(!clusters.is_empty(), "no samples");
    let mut next = resampler(seed);
    let k = clusters.len() as u64;
    let mut medians: Vec<f64> = (0..resamples)
        .map(|_| {
            let mut draw = Vec::new();
            for _ in 0..k {
                let c = clusters[(next() % k) as usize];
                let n = c.len() as u64;
                draw.extend((0..n).map(|_| c[(next() % n) as usize]));
            }
            median(&mut draw)
        })
        .collect();
    medians.sort_by(f64::total_cmp);
    let at = |q: f64| medians[((q * (resamples - 1) as f64).round() as usize).min(resamples - 1)];
    let mut all: Vec<f64> = clusters.iter().flat_map(|c| c.iter().copied()).collect();
    Estimate {
        median: median(&mut all),
        low: at(0.025),
        high: at(0.975),
    }
}

/// A deterministic generator of resampling indices (xorshift64*: enough for bootstraps).
pub fn resampler(seed: u64) -> impl FnMut() -> u64 {
    let mut rng = seed | 1;
    move || {
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// The median of `v` (sorts it).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_interval_contains_the_median_and_is_reproducible() {
        let samples: Vec<f64> = (0..40).map(|i| 2.0 + f64::from(i % 7) * 0.01).collect();
        let e = bootstrap_median(&samples, 500, 1);
        assert!(e.low <= e.median && e.median <= e.high);
        assert_eq!(e, bootstrap_median(&samples, 500, 1));
        assert!(e.high - e.low < 0.1);
    }

    #[test]
    fn a_clustered_interval_widens_with_the_disagreement_between_clusters() {
        let tight: Vec<f64> = (0..21).map(|i| 1.0 + f64::from(i % 3) * 0.001).collect();
        let agreeing = vec![tight.clone(), tight.clone(), tight.clone()];
        let apart: Vec<Vec<f64>> = [0.8, 1.0, 1.2]
            .iter()
            .map(|b| tight.iter().map(|x| x * b).collect())
            .collect();
        let a = bootstrap_clustered(&agreeing, 500, 1);
        let d = bootstrap_clustered(&apart, 500, 1);
        assert!(a.low <= a.median && a.median <= a.high);
        assert!(d.low <= d.median && d.median <= d.high);
        assert!(a.high - a.low < 0.01, "{a:?}");
        // Rounds alone would give an interval as tight as the first; the clusters' spread
        // shows.
        assert!(d.high - d.low > 0.2, "{d:?}");
        assert_eq!(d, bootstrap_clustered(&apart, 500, 1));
    }

    #[test]
    fn compare_interleaves_the_sides_and_pairs_each_round() {
        // Order and bookkeeping, not time: no assertion here depends on how long anything
        // takes.
        let order = std::cell::RefCell::new(Vec::new());
        let c = compare(
            "x",
            6,
            || order.borrow_mut().push('B'),
            || order.borrow_mut().push('P'),
        );
        let order: String = order.into_inner().into_iter().collect();
        // One warm-up run each, then B P, P B, B P, ...
        assert_eq!(order, "BPBPPBBPPBBPPB");
        assert_eq!(c.rounds, 6);
        assert_eq!((c.baseline_s.len(), c.optimized_s.len()), (6, 6));
        assert_eq!(c.ratio.median, median(&mut c.round_ratios()));
        assert!(c.ratio.low <= c.ratio.median && c.ratio.median <= c.ratio.high);
    }
}
