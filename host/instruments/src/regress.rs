//! Regression detection between a saved run and a new one, decided statistically.
//!
//! For a series of timings (lower is better) the change is `median(new) / median(old)`,
//! with a 95% percentile-bootstrap interval obtained by resampling both sides
//! independently. A **regression** is declared only when the whole interval lies above
//! `1 + threshold` (default 5%): the data must show a slowdown beyond the threshold, not
//! merely allow one. An **improvement** is the mirror image. Everything else, including
//! noise that makes the interval wide, is "no change".
//!
//! Instruction counts (callgrind) are deterministic: there the change is the plain ratio.

use serde::{Deserialize, Serialize};

use dubchain_host::measure::{median, Estimate};

/// What a comparison concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Regression,
    Improvement,
    NoChange,
}

/// The change of one series between the saved run and this one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Change {
    /// The series, for example `micro.crypto_parallel_verification.sig_verify.plugin`.
    pub series: String,
    pub unit: String,
    pub old_median: f64,
    pub new_median: f64,
    /// new / old (above 1 is slower), with its interval.
    pub ratio: Estimate,
    pub verdict: Verdict,
}

/// `median(new) / median(old)` with a 95% bootstrap interval (`resamples` draws,
/// deterministic for a given `seed`).
pub fn change(old: &[f64], new: &[f64], resamples: usize, seed: u64) -> Estimate {
    assert!(!old.is_empty() && !new.is_empty(), "no samples");
    let mut next = dubchain_host::measure::resampler(seed);
    let mut draw = |v: &[f64]| -> f64 {
        let mut d: Vec<f64> = (0..v.len())
            .map(|_| v[(next() % v.len() as u64) as usize])
            .collect();
        median(&mut d)
    };
    let mut ratios: Vec<f64> = (0..resamples.max(1))
        .map(|_| draw(new) / draw(old).max(1e-300))
        .collect();
    ratios.sort_by(f64::total_cmp);
    let at = |q: f64| ratios[(q * (ratios.len() - 1) as f64).round() as usize];
    Estimate {
        median: median(&mut new.to_vec()) / median(&mut old.to_vec()).max(1e-300),
        low: at(0.025),
        high: at(0.975),
    }
}

/// The verdict on a change of a lower-is-better series.
pub fn decide(ratio: &Estimate, threshold: f64) -> Verdict {
    if ratio.low > 1.0 + threshold {
        Verdict::Regression
    } else if ratio.high < 1.0 / (1.0 + threshold) {
        Verdict::Improvement
    } else {
        Verdict::NoChange
    }
}

/// Compares one timing series of a saved run with this run's.
pub fn compare_series(
    series: &str, unit: &str, old: &[f64], new: &[f64], threshold: f64,
) -> Change {
    let ratio = change(old, new, 2_000, 0xb007_5742);
    Change {
        series: series.to_owned(),
        unit: unit.to_owned(),
        old_median: median(&mut old.to_vec()),
        new_median: median(&mut new.to_vec()),
        verdict: decide(&ratio, threshold),
        ratio,
    }
}

/// Compares two deterministic counts (instructions): the interval is the point.
pub fn compare_counts(series: &str, old: u64, new: u64, threshold: f64) -> Change {
    let r = new as f64 / (old as f64).max(1.0);
    let ratio = Estimate {
        median: r,
        low: r,
        high: r,
    };
    Change {
        series: series.to_owned(),
        unit: "instructions".to_owned(),
        old_median: old as f64,
        new_median: new as f64,
        verdict: decide(&ratio, threshold),
        ratio,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic noise: `n` samples of `level` times (1 + up to ±`spread`).
    fn noisy(level: f64, spread: f64, n: usize, seed: u64) -> Vec<f64> {
        let mut x = (seed + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let u = (x % 10_000) as f64 / 10_000.0; // 0..1
                level * (1.0 + spread * (2.0 * u - 1.0))
            })
            .collect()
    }

    #[test]
    fn a_clear_twenty_percent_slowdown_is_a_regression() {
        let old = noisy(1.0, 0.08, 30, 1);
        let new = noisy(1.2, 0.08, 30, 2);
        let c = compare_series("s", "s", &old, &new, 0.05);
        assert_eq!(c.verdict, Verdict::Regression, "{c:?}");
        assert!(c.ratio.low > 1.05 && c.ratio.median > 1.1, "{c:?}");
    }

    #[test]
    fn pure_noise_is_not_a_regression() {
        // The same distribution drawn twice, with much more spread than the threshold,
        // over many seeds: never called a regression or an improvement.
        for seed in 0..40 {
            let old = noisy(1.0, 0.15, 20, seed * 2 + 1);
            let new = noisy(1.0, 0.15, 20, seed * 2 + 2);
            let c = compare_series("s", "s", &old, &new, 0.05);
            assert_eq!(c.verdict, Verdict::NoChange, "seed {seed}: {c:?}");
        }
    }

    /// The verdict on 30 noisy runs around `old` against 30 around `new`, threshold 5%.
    fn verdict(old: f64, new: f64, spread: f64, seed: u64) -> Verdict {
        let (old, new) = (
            noisy(old, spread, 30, seed),
            noisy(new, spread, 30, seed + 1),
        );
        compare_series("s", "s", &old, &new, 0.05).verdict
    }

    #[test]
    fn a_slowdown_below_the_threshold_is_not_a_regression() {
        assert_eq!(verdict(1.0, 1.02, 0.01, 3), Verdict::NoChange);
    }

    #[test]
    fn a_clear_speedup_is_an_improvement() {
        assert_eq!(verdict(1.0, 0.7, 0.05, 5), Verdict::Improvement);
    }

    #[test]
    fn instruction_counts_compare_exactly() {
        assert_eq!(
            compare_counts("i", 1_000_000, 1_040_000, 0.05).verdict,
            Verdict::NoChange
        );
        assert_eq!(
            compare_counts("i", 1_000_000, 1_060_000, 0.05).verdict,
            Verdict::Regression
        );
    }
}
