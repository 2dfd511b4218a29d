//! The statistics `compare` rests on: the confidence interval of a
//! difference between two scores and a test of whether it is real.
//!
//! Three cases, from strongest to weakest evidence:
//! - per-sample outcomes on both sides, all 0 or 1: McNemar's exact test on
//!   the discordant pairs (samples one side got right and the other wrong);
//! - per-sample scores on both sides, any numbers: a paired bootstrap of the
//!   mean difference (resampling samples, with a fixed seed, so the same
//!   inputs always give the same interval and p-value);
//! - only each side's standard error: a two-sided z-test of the difference
//!   of two independent means.
//!
//! Pure functions over numbers; no I/O.

use serde::Serialize;

/// z of a two-sided 95% interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// Resamples of the paired bootstrap.
pub const BOOTSTRAP_RESAMPLES: usize = 2_000;

/// The test that produced a p-value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// McNemar's exact test on paired binary outcomes.
    Mcnemar,
    /// Paired bootstrap of the mean difference.
    PairedBootstrap,
    /// z-test of two independent means from their standard errors.
    UnpairedZ,
}

/// A difference `candidate - base` with its 95% confidence interval and a
/// two-sided p-value for "no difference".
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Difference {
    pub method: Method,
    pub delta: f64,
    pub ci95: [f64; 2],
    pub p_value: f64,
    /// Pairs the paired tests used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pairs: Option<usize>,
    /// McNemar: pairs the base got right and the candidate wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_only: Option<u64>,
    /// McNemar: pairs the candidate got right and the base wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate_only: Option<u64>,
}

/// Paired outcomes, `(base, candidate)` per sample. Binary (every value 0
/// or 1): McNemar; otherwise the paired bootstrap. `None` without pairs.
pub fn paired(pairs: &[(f64, f64)]) -> Option<Difference> {
    if pairs.is_empty() {
        return None;
    }
    let n = pairs.len();
    let diffs: Vec<f64> = pairs.iter().map(|(b, c)| c - b).collect();
    let delta = mean(&diffs);
    let binary = pairs.iter().all(|(b, c)| is_bit(*b) && is_bit(*c));
    if binary {
        let base_only = pairs.iter().filter(|(b, c)| *b == 1.0 && *c == 0.0).count() as u64;
        let cand_only = pairs.iter().filter(|(b, c)| *b == 0.0 && *c == 1.0).count() as u64;
        // Wald interval of the paired difference of proportions.
        let se = (variance(&diffs, delta) / n as f64).sqrt();
        Some(Difference {
            method: Method::Mcnemar,
            delta,
            ci95: [delta - Z95 * se, delta + Z95 * se],
            p_value: mcnemar_exact(base_only, cand_only),
            pairs: Some(n),
            base_only: Some(base_only),
            candidate_only: Some(cand_only),
        })
    } else {
        let (ci95, p_value) = bootstrap(&diffs, BOOTSTRAP_RESAMPLES);
        Some(Difference {
            method: Method::PairedBootstrap,
            delta,
            ci95,
            p_value,
            pairs: Some(n),
            base_only: None,
            candidate_only: None,
        })
    }
}

/// Two independent means with their standard errors.
pub fn unpaired(base: f64, base_se: f64, cand: f64, cand_se: f64) -> Difference {
    let delta = cand - base;
    let se = (base_se * base_se + cand_se * cand_se).sqrt();
    let p_value = if se > 0.0 {
        erfc((delta / se).abs() / std::f64::consts::SQRT_2)
    } else if delta == 0.0 {
        1.0
    } else {
        0.0
    };
    Difference {
        method: Method::UnpairedZ,
        delta,
        ci95: [delta - Z95 * se, delta + Z95 * se],
        p_value: p_value.clamp(0.0, 1.0),
        pairs: None,
        base_only: None,
        candidate_only: None,
    }
}

fn is_bit(x: f64) -> bool {
    x == 0.0 || x == 1.0
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

/// Sample variance (n - 1); 0 for one value.
fn variance(x: &[f64], mean: f64) -> f64 {
    if x.len() < 2 {
        return 0.0;
    }
    x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (x.len() - 1) as f64
}

/// Two-sided exact McNemar p-value: under "no difference" each of the
/// `b + c` discordant pairs falls either way with probability 1/2.
pub fn mcnemar_exact(b: u64, c: u64) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    // Sum of C(n, i) / 2^n for i <= k, in log space (n may be large).
    let ln2n = n as f64 * std::f64::consts::LN_2;
    let mut ln_c = 0.0f64;
    let mut tail = (-ln2n).exp();
    for i in 1..=k {
        ln_c += ((n - i + 1) as f64).ln() - (i as f64).ln();
        tail += (ln_c - ln2n).exp();
    }
    (2.0 * tail).min(1.0)
}

/// Percentile interval of the mean of `diffs` over `resamples` bootstrap
/// resamples, and the two-sided p-value of "the mean is 0" (the share of
/// resampled means on the far side of 0, doubled).
fn bootstrap(diffs: &[f64], resamples: usize) -> ([f64; 2], f64) {
    let n = diffs.len();
    let mut rng = SplitMix64(0x5eed_e7a1_c0de_0001);
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| {
            let mut sum = 0.0;
            for _ in 0..n {
                sum += diffs[rng.below(n)];
            }
            sum / n as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * (resamples - 1) as f64).round() as usize).min(resamples - 1)];
    let below = means.iter().filter(|m| **m <= 0.0).count();
    let above = means.iter().filter(|m| **m >= 0.0).count();
    let p = (2.0 * (below.min(above) as f64 + 1.0) / (resamples as f64 + 1.0)).min(1.0);
    ([at(0.025), at(0.975)], p)
}

/// A small, fixed-seed generator: the bootstrap's results are a function
/// of its inputs.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), without modulo bias worth noting for
    /// sample counts far below 2^64.
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }
}

/// The complementary error function (W. J. Cody's rational approximation
/// via `erfc(x) = exp(-x^2) * t * poly(t)`, Numerical Recipes' `erfcc`,
/// relative error below 1.2e-7).
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn erfc_matches_known_values() {
        // erfc(0) = 1, erfc(1) = 0.157299..., erfc(1.959964/sqrt2) = 0.05.
        assert!(close(erfc(0.0), 1.0, 1e-7));
        assert!(close(erfc(1.0), 0.157_299_207, 1e-7));
        assert!(close(erfc(Z95 / std::f64::consts::SQRT_2), 0.05, 1e-6));
        assert!(close(erfc(-1.0), 2.0 - 0.157_299_207, 1e-7));
    }

    #[test]
    fn mcnemar_exact_matches_the_binomial_tail() {
        // b=1, c=9: 2 * (C(10,0) + C(10,1)) / 1024 = 22/1024.
        assert!(close(mcnemar_exact(1, 9), 22.0 / 1024.0, 1e-12));
        assert!(close(mcnemar_exact(9, 1), 22.0 / 1024.0, 1e-12));
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        assert_eq!(mcnemar_exact(5, 5), 1.0);
        // Large counts stay finite: b=400, c=600 is clearly significant.
        let p = mcnemar_exact(400, 600);
        assert!(p > 0.0 && p < 1e-9, "{p}");
    }

    #[test]
    fn binary_pairs_use_mcnemar_with_the_discordant_counts() {
        // 10 samples: base right on 0..8, candidate right on 0..4 and 8,9.
        let pairs: Vec<(f64, f64)> =
            (0..10).map(|i| (f64::from(u8::from(i < 8)), f64::from(u8::from(!(4..8).contains(&i))))).collect();
        let d = paired(&pairs).unwrap();
        assert_eq!(d.method, Method::Mcnemar);
        assert_eq!((d.base_only, d.candidate_only, d.pairs), (Some(4), Some(2), Some(10)));
        assert!(close(d.delta, -0.2, 1e-12));
        assert!(close(d.p_value, mcnemar_exact(4, 2), 1e-12));
        assert!(d.ci95[0] < -0.2 && d.ci95[1] > -0.2);
    }

    #[test]
    fn the_bootstrap_is_deterministic_and_finds_a_real_shift() {
        // Scores in [0, 1], the candidate 0.1 higher on every sample.
        let pairs: Vec<(f64, f64)> =
            (0..200).map(|i| (f64::from(i % 7) / 10.0, f64::from(i % 7) / 10.0 + 0.1)).collect();
        let d = paired(&pairs).unwrap();
        assert_eq!(d.method, Method::PairedBootstrap);
        assert!(close(d.delta, 0.1, 1e-12));
        assert!(d.p_value < 0.001, "{d:?}");
        assert_eq!(paired(&pairs), Some(d), "same inputs, same result");
        // No shift: a wide interval around 0 and a large p-value.
        let noise: Vec<(f64, f64)> = (0..200).map(|i| (0.5, if i % 2 == 0 { 0.4 } else { 0.6 })).collect();
        let d = paired(&noise).unwrap();
        assert!(d.ci95[0] < 0.0 && d.ci95[1] > 0.0 && d.p_value > 0.5, "{d:?}");
        assert_eq!(paired(&[]), None);
    }

    #[test]
    fn unpaired_z_test_from_standard_errors() {
        let d = unpaired(0.70, 0.01, 0.75, 0.01);
        assert!(close(d.delta, 0.05, 1e-12));
        let se = 0.02f64.sqrt() / 10.0;
        assert!(close(d.ci95[0], 0.05 - Z95 * se, 1e-12));
        // z = 0.05 / 0.014142 = 3.5355: two-sided p = 0.000407.
        assert!(close(d.p_value, 0.000_407, 2e-6), "{}", d.p_value);
        assert_eq!(unpaired(0.5, 0.0, 0.5, 0.0).p_value, 1.0);
    }
}
