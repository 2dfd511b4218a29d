//! Scheduler limits in the plan: do the jobs a plan submits fit in what
//! the user's associations still allow?
//!
//! Exists because a limit on queued jobs (`MaxSubmitJobs` on the user's
//! association, `GrpSubmitJobs` on it or on any account above it) refuses
//! the job that goes over it at `sbatch` time: halfway through an apply,
//! every time it is run again. The refresh reads the limits and what is
//! in use (`crate::cluster::limits`); this module counts the jobs the plan
//! submits under each account, adds back the jobs it cancels, and turns a
//! shortfall into an error at the config key that chose the account,
//! before anything is submitted. Pure: no cluster needed.

use std::collections::BTreeMap;

use crate::cluster::limits::{Associations, Limit};
use crate::config::node::Node;
use crate::diag::Diagnostic;
use crate::plan::Plan;
use crate::plan::feasibility::{Shape, config_path};
use crate::render::Rendered;

/// The room one limit leaves for the jobs of the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Room {
    /// The account the jobs are charged to (as the scripts name it; empty:
    /// the user's default).
    pub account: String,
    /// Where the limit is set: `user` (the user's own association) or an
    /// account name.
    pub level: String,
    /// `MaxSubmitJobs` or `GrpSubmitJobs`.
    pub limit: &'static str,
    pub max: u64,
    /// Jobs queued or running against it now.
    pub used: u64,
    /// Live jobs of this stack the plan cancels (room they give back).
    pub freed: u64,
    /// Jobs the plan submits under the account.
    pub needed: u64,
}

impl Room {
    /// How many jobs the plan may submit against it: what is left, plus
    /// what the plan's cancellations give back (never above the limit).
    pub fn left(&self) -> u64 {
        (self.max.saturating_sub(self.used) + self.freed).min(self.max)
    }

    /// Whether the jobs fit.
    pub fn fits(&self) -> bool {
        self.needed <= self.left()
    }

    /// `MaxSubmitJobs=50 (12 in use)`.
    pub fn describe(&self) -> String {
        format!("{}={} ({} in use)", self.limit, self.max, self.used)
    }
}

/// The rooms of every submit limit the plan's jobs meet, and an error per
/// account whose jobs do not fit (at the key that set `--account`).
pub fn assess(
    assocs: &Associations,
    user: &str,
    rendered: &Rendered,
    plan: &Plan,
    tree: &Node,
) -> (Vec<Room>, Vec<Diagnostic>) {
    // Jobs submitted and live jobs cancelled, by (account, partition).
    let mut needed: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut freed: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut where_of: BTreeMap<&str, (String, String)> = BTreeMap::new();
    for job in &rendered.jobs {
        let shape = Shape::of_script(job.script.before());
        let key = (shape.get("account").unwrap_or_default(), shape.get("partition").unwrap_or_default());
        where_of.entry(job.unit.as_str()).or_insert_with(|| key.clone());
        if plan.changes.iter().any(|c| c.unit == job.unit && c.action.submits() && !c.untargeted) {
            *needed.entry(key).or_default() += 1;
        }
    }
    for c in &plan.changes {
        if let Some(key) = where_of.get(c.unit.as_str()) {
            *freed.entry(key.clone()).or_default() += c.cancel_jobs.len() as u64;
        }
    }
    let mut rooms = vec![];
    let mut errors = vec![];
    for ((account, partition), n) in needed {
        let back = freed.get(&(account.clone(), partition.clone())).copied().unwrap_or(0);
        let chain = assocs.chain(user, &account, &partition);
        for (i, record) in chain.iter().enumerate() {
            let level = if i == 0 { "user".to_owned() } else { record.account.clone() };
            // `MaxSubmitJobs` counts per user: it binds on the user's own
            // association; `GrpSubmitJobs` binds at every level.
            let mut limits: Vec<(&'static str, Option<Limit>)> = vec![("GrpSubmitJobs", record.grp_submit_jobs)];
            if i == 0 {
                limits.insert(0, ("MaxSubmitJobs", record.max_submit_jobs));
            }
            for (limit, l) in limits {
                let Some(l) = l else { continue };
                let room = Room {
                    account: account.clone(),
                    level: level.clone(),
                    limit,
                    max: l.max,
                    used: l.used,
                    freed: back,
                    needed: n,
                };
                if !room.fits() {
                    errors.push(too_many(&room, tree));
                }
                rooms.push(room);
            }
        }
    }
    (rooms, errors)
}

/// The error for jobs that do not fit, at the key that set the account.
fn too_many(room: &Room, tree: &Node) -> Diagnostic {
    let path = config_path("account", tree);
    let span = (!room.account.is_empty()).then(|| tree.value_span_of(&path));
    let whose = if room.level == "user" { "your association".to_owned() } else { format!("account `{}`", room.level) };
    let account =
        if room.account.is_empty() { "your default account".to_owned() } else { format!("`{}`", room.account) };
    Diagnostic::error(
        span,
        format!(
            "the plan submits {} jobs under account {account}, but {whose} allows {} queued jobs ({}): room for {}",
            room.needed,
            room.max,
            room.describe(),
            room.left()
        ),
    )
    .with_note("nothing was submitted: apply submits a stack's jobs whole or not at all")
    .with_note(
        "plan and apply fewer units at a time (`--only`), wait for queued jobs to end, or ask for a higher limit",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(max: u64, used: u64, freed: u64, needed: u64) -> Room {
        Room { account: "a".into(), level: "user".into(), limit: "MaxSubmitJobs", max, used, freed, needed }
    }

    #[test]
    fn jobs_fit_in_what_is_left_plus_what_the_plan_cancels() {
        assert!(room(50, 0, 0, 50).fits());
        assert!(!room(50, 0, 0, 51).fits());
        assert!(!room(50, 12, 0, 40).fits());
        assert!(room(50, 12, 2, 40).fits(), "cancelled jobs give their room back");
        assert!(!room(50, 60, 0, 1).fits(), "over the limit already");
        assert_eq!(room(50, 12, 0, 1).describe(), "MaxSubmitJobs=50 (12 in use)");
    }
}
