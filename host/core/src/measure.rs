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
    /// The point estimate: the median, or for [`log_t_interval`] the geometric mean.
    pub median: f64,
    /// Lower bound of its 95% interval (a bootstrap's, or [`log_t_interval`]'s).
    pub low: f64,
    /// Upper bound of that interval.
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
    name: &str, rounds: usize, baseline: impl FnMut(), optimized: impl FnMut(),
) -> Comparison {
    compare_with_reset(name, rounds, baseline, optimized, || {})
}

/// Like [`compare`], with `reset` run after every run of either side, untimed (for
/// workloads that change state, such as a block written to a store and rolled back).
pub fn compare_with_reset(
    name: &str, rounds: usize, mut baseline: impl FnMut(), mut optimized: impl FnMut(),
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
pub fn round_ratios(baseline_s: &[f64], optimized_s: &[f64]) -> Vec<f64> {
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

/// The geometric mean of `ratios` with a 95% Student-t interval on their logarithms: the
/// interval for a handful of paired whole-node runs. A percentile bootstrap of the median
/// only spans so few samples (of 3 ratios it gives their minimum and maximum, which hold
/// the median with 75% confidence, not 95%); the t interval widens with few runs as it
/// should, assuming roughly log-normal ratios. One ratio has no interval: `low` and `high`
/// are the ratio itself, and [`has_interval`] says so.
pub fn log_t_interval(ratios: &[f64]) -> Estimate {
    assert!(!ratios.is_empty(), "no ratios");
    let logs: Vec<f64> = ratios.iter().map(|r| r.max(1e-300).ln()).collect();
    let n = logs.len() as f64;
    let mean = logs.iter().sum::<f64>() / n;
    if logs.len() < 2 {
        let r = mean.exp();
        return Estimate {
            median: r,
            low: r,
            high: r,
        };
    }
    let var = logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let half = t_975(logs.len() - 1) * (var / n).sqrt();
    Estimate {
        median: mean.exp(),
        low: (mean - half).exp(),
        high: (mean + half).exp(),
    }
}

/// What an interval from `rounds` interleaved rounds is worth, when it is not the 95% it is
/// labelled: below 5 rounds the percentile bootstrap of the median spans the smallest and
/// largest round, which holds the median with `1 - 2^(1-n)` confidence (from 5 on it holds
/// it about 93-94% of the time in simulation, as from 20).
pub fn few_rounds_note(rounds: usize) -> Option<String> {
    (rounds < 5).then(|| {
        let confidence = 100.0 * (1.0 - 0.5_f64.powi(rounds as i32 - 1));
        format!(
            "with {rounds} rounds each interval is the smallest and largest round's ratio, which holds the median with {confidence:.1}% confidence, not 95%: give --rounds 5 or more for figures to quote"
        )
    })
}

/// What a per-case table's figures mean, with where its rounds were interleaved.
macro_rules! case_table_note {
    ($place:literal) => {
        concat!("Each ratio (speed-up) is the median of the per-round ratios (baseline time / plugin time) over interleaved rounds ", $place, ", with a percentile-bootstrap 95% interval; a goal or promise is met (yes) only when the whole interval is at or above it, so a median above it whose interval reaches below it is NO")
    };
}

/// What a per-case table's figures mean, said under each one (`bench`'s and `run`'s).
pub const CASE_TABLE_NOTE: &str = case_table_note!("in one process");

/// [`CASE_TABLE_NOTE`] for a table whose rounds were pooled from `processes` processes
/// (`bench --processes`; 1: this one).
pub fn case_table_note(processes: usize) -> &'static str {
    if processes > 1 {
        case_table_note!("in each process")
    } else {
        CASE_TABLE_NOTE
    }
}

/// Whether an estimate from `samples` samples has an interval at all (two or more).
pub fn has_interval(samples: usize) -> bool {
    samples >= 2
}

/// The 97.5th percentile of Student's t with `df` degrees of freedom (a two-sided 95%
/// interval): exact to three decimals from a table up to 30, then the Cornish-Fisher
/// expansion around the normal's 1.96.
pub fn t_975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::INFINITY,
        1..=30 => TABLE[df - 1],
        _ => {
            let (z, d) = (1.959_964_f64, df as f64);
            z + (z.powi(3) + z) / (4.0 * d)
                + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * d * d)
        }
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

    /// Three tight runs give a tight interval; three that disagree one that contains 1
    /// (where the bootstrap of the median gave [min, max], which excluded it); one run none.
    #[test]
    fn a_t_interval_on_few_runs_widens_with_their_disagreement() {
        let tight = log_t_interval(&[2.14, 2.15, 2.17]);
        assert!(
            tight.low > 2.05 && tight.high < 2.25 && tight.low < tight.median,
            "{tight:?}"
        );
        let spread = [1.3, 2.9, 3.0];
        let b = bootstrap_median(&spread, 2_000, 1);
        assert!(b.low > 1.0, "the bootstrap only spans the runs: {b:?}");
        let t = log_t_interval(&spread);
        assert!(t.low < 1.0 && t.high > 3.0, "{t:?}");
        let one = log_t_interval(&[1.7]);
        assert_eq!((one.low, one.median, one.high), (1.7, 1.7, 1.7));
        assert!(!has_interval(1) && has_interval(2));
        assert!(few_rounds_note(3).unwrap().contains("75.0% confidence"));
        assert!(few_rounds_note(5).is_none());
        assert!((t_975(31) - 2.040).abs() < 0.002 && (t_975(1000) - 1.962).abs() < 0.002);
    }

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
