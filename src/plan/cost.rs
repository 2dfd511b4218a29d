//! Cost: the GPU-hours a plan asks for, stated in every plan so that a
//! reviewer sees the price of a change next to the change.
//!
//! For each unit the plan submits: its GPUs (nodes × GPUs per node) times
//! the time its chain may run is the upper bound. A chain runs at most its
//! links allowed (`max_links`) at the full `walltime`, and starts no link
//! once `max_walltime` is used, so its last link may end up to one
//! walltime after that; a chain with neither limit is unbounded. Where the unit's
//! earlier chain ran with the same result hash (a retry, a forced rerun),
//! its recorded run time gives an expected figure. Pure: the run times come
//! from the refresh (`plan::Observation::elapsed_s`).

use serde::{Deserialize, Serialize};

/// The cost of one submitted unit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UnitCost {
    pub unit: String,
    pub gpus: u32,
    /// Every allowed link at full walltime; none when unbounded.
    pub gpu_hours_max: Option<f64>,
    /// From the run time of an earlier chain with the same result hash.
    pub gpu_hours_expected: Option<f64>,
}

/// The cost of a plan: what the units it submits may use.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// Upper bound of the GPU-hours requested; none when some unit's chain
    /// is unbounded (no `max_walltime`).
    pub gpu_hours_max: Option<f64>,
    /// One full-walltime link of every submitted unit.
    pub gpu_hours_first_link: f64,
    /// Expected GPU-hours of the units that ran before with the same
    /// result hash (`units_expected` of them); none when no unit did.
    pub gpu_hours_expected: Option<f64>,
    pub units_expected: usize,
    /// Submitted units whose chains have no limit.
    pub units_unbounded: usize,
    pub units: Vec<UnitCost>,
}

/// What one submitted unit needs to be priced.
pub struct Priced<'a> {
    pub unit: &'a str,
    pub gpus: u32,
    /// The unit's earlier run time, when it ran with the same result hash.
    pub earlier_elapsed_s: Option<u64>,
}

/// The most run time a chain may use (none: unbounded): `max_links` links
/// of `walltime_s` (0: unlimited), and at most one link started before
/// `max_walltime_s` (0: none) is used up.
pub fn chain_limit_s(walltime_s: u64, max_links: u32, max_walltime_s: u64) -> Option<u64> {
    let by_links = (max_links > 0).then(|| walltime_s.saturating_mul(u64::from(max_links)));
    let by_time = (max_walltime_s > 0).then(|| max_walltime_s.saturating_add(walltime_s));
    match (by_links, by_time) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The cost of submitting `units`, each link up to `walltime_s`, each
/// chain up to `limit_s` of run time (none: unbounded).
pub fn cost(units: &[Priced], walltime_s: u64, limit_s: Option<u64>) -> Cost {
    let hours = |gpus: u32, seconds: u64| f64::from(gpus) * seconds as f64 / 3600.0;
    let mut c = Cost::default();
    let mut max_total = Some(0.0);
    let mut expected_total: Option<f64> = None;
    for u in units {
        let max = limit_s.map(|s| hours(u.gpus, s));
        // No GPUs, no GPU-hours, whatever the time.
        let max = if u.gpus == 0 { Some(0.0) } else { max };
        let expected = u.earlier_elapsed_s.map(|s| hours(u.gpus, s));
        c.gpu_hours_first_link += hours(u.gpus, walltime_s);
        match max {
            Some(m) => max_total = max_total.map(|t| t + m),
            None => {
                c.units_unbounded += 1;
                max_total = None;
            }
        }
        if let Some(e) = expected {
            expected_total = Some(expected_total.unwrap_or(0.0) + e);
            c.units_expected += 1;
        }
        c.units.push(UnitCost {
            unit: u.unit.to_owned(),
            gpus: u.gpus,
            gpu_hours_max: max,
            gpu_hours_expected: expected,
        });
    }
    c.gpu_hours_max = max_total;
    c.gpu_hours_expected = expected_total;
    c
}

impl Cost {
    /// `GPU-h ≤ 64.0 (8.0 per first link; expected 12.5 for 2 units)`.
    pub fn line(&self) -> String {
        let max = match self.gpu_hours_max {
            Some(m) => format!("GPU-h ≤ {m:.1}"),
            None => {
                format!("GPU-h unbounded ({} units have no max_walltime or max_resume_links)", self.units_unbounded)
            }
        };
        let expected = match self.gpu_hours_expected {
            Some(e) if self.units_expected == 1 => format!("; expected {e:.1} for the unit that ran before"),
            Some(e) => format!("; expected {e:.1} for the {} units that ran before", self.units_expected),
            None => String::new(),
        };
        format!("{max} ({:.1} for every unit's first link{expected})", self.gpu_hours_first_link)
    }

    /// Whether the plan may use more than `budget` GPU-hours (an unbounded
    /// plan always may).
    pub fn over(&self, budget: f64) -> bool {
        self.gpu_hours_max.is_none_or(|m| m > budget)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_expectations_and_unbounded_chains() {
        let units = [
            Priced { unit: "a", gpus: 8, earlier_elapsed_s: None },
            Priced { unit: "b", gpus: 8, earlier_elapsed_s: Some(1800) },
            Priced { unit: "c", gpus: 0, earlier_elapsed_s: None },
        ];
        // 2 h links, at most 3: 8 GPUs × 6 h each.
        assert_eq!(chain_limit_s(7200, 3, 0), Some(21_600));
        assert_eq!(chain_limit_s(7200, 80, 432_000), Some(439_200), "max_walltime plus the link started last");
        assert_eq!(chain_limit_s(7200, 0, 0), None);
        let c = cost(&units, 7200, chain_limit_s(7200, 3, 0));
        assert_eq!(c.gpu_hours_max, Some(96.0));
        assert_eq!(c.gpu_hours_first_link, 32.0);
        assert_eq!((c.gpu_hours_expected, c.units_expected), (Some(4.0), 1));
        assert_eq!(c.units[1].gpu_hours_max, Some(48.0));
        assert_eq!(
            c.line(),
            "GPU-h ≤ 96.0 (32.0 for every unit's first link; expected 4.0 for the unit that ran before)"
        );
        assert!(c.over(95.0) && !c.over(96.0));
        // No link limit: unbounded, and over any budget.
        let c = cost(&units, 7200, None);
        assert_eq!((c.gpu_hours_max, c.units_unbounded), (None, 2));
        assert!(c.over(1e9));
        assert!(c.line().starts_with("GPU-h unbounded (2 units have no max_walltime or max_resume_links)"));
        assert_eq!(cost(&[], 7200, None).gpu_hours_max, Some(0.0));
    }
}
