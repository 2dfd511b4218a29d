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

use std::collections::{BTreeMap, BTreeSet};

use crate::cluster::limits::{Associations, Limit};
use crate::config::node::Node;
use crate::diag::Diagnostic;
use crate::plan::Plan;
use crate::plan::feasibility::{Shape, config_path};
use crate::render::Rendered;
use serde::{Deserialize, Serialize};

/// The room one limit leaves for the jobs of the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Room {
    /// The account the jobs are charged to (as the scripts name it; empty:
    /// the user's default, or a QOS limit).
    pub account: String,
    /// Where the limit is set: `user` (the user's own association), an
    /// account name or `QOS <name>`.
    pub level: String,
    /// `MaxSubmitJobs`, `GrpSubmitJobs` or (QOS) `MaxSubmitJobsPerUser`.
    pub limit: String,
    pub max: u64,
    /// Jobs queued or running against it now.
    pub used: u64,
    /// Live jobs of this stack the plan cancels (room they give back).
    pub freed: u64,
    /// Jobs the plan submits against it.
    pub needed: u64,
    /// How many jobs the plan may submit against it: what is left, plus
    /// what the plan's cancellations give back (never above the limit).
    pub room: u64,
}

impl Room {
    fn new(account: &str, level: String, limit: &str, l: Limit, freed: u64, needed: u64) -> Room {
        let room = (l.max.saturating_sub(l.used) + freed).min(l.max);
        Room {
            account: account.to_owned(),
            level,
            limit: limit.to_owned(),
            max: l.max,
            used: l.used,
            freed,
            needed,
            room,
        }
    }

    /// Whether the jobs fit.
    pub fn fits(&self) -> bool {
        self.needed <= self.room
    }

    /// Where the limit is set, for people: `your association (account
    /// `a`)`, `account `b``, `QOS `q``.
    fn whose(&self) -> String {
        match self.level.as_str() {
            "user" if self.account.is_empty() => "your association (default account)".to_owned(),
            "user" => format!("your association (account `{}`)", self.account),
            level => match level.strip_prefix("QOS ") {
                Some(q) => format!("QOS `{q}`"),
                None => format!("account `{level}`"),
            },
        }
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
    // The same by QOS (jobs that name one).
    let mut needed_qos: BTreeMap<String, u64> = BTreeMap::new();
    let mut freed_qos: BTreeMap<String, u64> = BTreeMap::new();
    let mut qos_of: BTreeMap<&str, String> = BTreeMap::new();
    let submitting: BTreeSet<&str> =
        plan.changes.iter().filter(|c| c.action.submits() && !c.untargeted).map(|c| c.unit.as_str()).collect();
    for job in &rendered.jobs {
        let shape = Shape::of_script(job.script.before());
        let key = (shape.get("account").unwrap_or_default(), shape.get("partition").unwrap_or_default());
        let qos = shape.get("qos").unwrap_or_default();
        let units = job.units();
        for unit in &units {
            where_of.entry(unit).or_insert_with(|| key.clone());
            qos_of.entry(unit).or_insert_with(|| qos.clone());
        }
        // A pack's jobs count once, whichever of its tasks submit; with job
        // arrays, a task's resume link is queued only once its first runs.
        if rendered.apply_submits(job) && units.iter().any(|u| submitting.contains(u)) {
            *needed.entry(key).or_default() += 1;
            if !qos.is_empty() {
                *needed_qos.entry(qos).or_default() += 1;
            }
        }
    }
    // Each cancelled job once (the tasks of a pack cancel the same jobs).
    let mut counted: BTreeSet<crate::jobid::JobId> = BTreeSet::new();
    for c in &plan.changes {
        let jobs = c.cancel_jobs.iter().filter(|j| counted.insert(**j)).count() as u64;
        if let Some(key) = where_of.get(c.unit.as_str()) {
            *freed.entry(key.clone()).or_default() += jobs;
        }
        if let Some(qos) = qos_of.get(c.unit.as_str()).filter(|q| !q.is_empty()) {
            *freed_qos.entry(qos.clone()).or_default() += jobs;
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
                let room = Room::new(&account, level.clone(), limit, l, back, n);
                if !room.fits() {
                    errors.push(too_many(&room, tree));
                }
                rooms.push(room);
            }
        }
    }
    for (qos, n) in needed_qos {
        let Some(record) = assocs.qos.get(&qos) else { continue };
        let back = freed_qos.get(&qos).copied().unwrap_or(0);
        let limits =
            [("MaxSubmitJobsPerUser", record.max_submit_jobs_per_user), ("GrpSubmitJobs", record.grp_submit_jobs)];
        for (limit, l) in limits {
            let Some(l) = l else { continue };
            let room = Room::new("", format!("QOS {qos}"), limit, l, back, n);
            if !room.fits() {
                errors.push(too_many_in_qos(&room, &qos, tree));
            }
            rooms.push(room);
        }
    }
    (rooms, errors)
}

/// The error for jobs that do not fit in a QOS, at the key that set it.
fn too_many_in_qos(room: &Room, qos: &str, tree: &Node) -> Diagnostic {
    let span = Some(tree.value_span_of(&config_path("qos", tree)));
    let whose = if room.limit == "GrpSubmitJobs" { "everyone's jobs together" } else { "one user" };
    Diagnostic::error(
        span,
        format!(
            "the plan submits {} jobs in QOS `{qos}`, which allows {} queued jobs for {whose} ({}): room for {}",
            room.needed,
            room.max,
            room.describe(),
            room.room
        ),
    )
    .with_note("nothing was submitted: apply submits a stack's jobs whole or not at all")
    .with_note("plan and apply fewer units at a time (`--only`), use another QOS, or wait for queued jobs to end")
}

/// One line per limit the plan's jobs meet, for people: `MaxSubmitJobs=50
/// (12 in use) on your association (account `a`): 40 jobs to submit, room
/// for 38`.
pub fn lines(rooms: &[Room]) -> Vec<String> {
    rooms
        .iter()
        .filter(|r| r.needed > 0)
        .map(|r| {
            let back = if r.freed > 0 { format!(" ({} given back by cancelled jobs)", r.freed) } else { String::new() };
            let verdict = if r.fits() { "" } else { ": DOES NOT FIT" };
            format!(
                "{} on {}: {} jobs to submit, room for {}{back}{verdict}",
                r.describe(),
                r.whose(),
                r.needed,
                r.room
            )
        })
        .collect()
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
            room.room
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
        Room::new("a", "user".into(), "MaxSubmitJobs", Limit { max, used }, freed, needed)
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
