//! `apply`: make the cluster match a stack's config. Takes the stack lock
//! and refreshes in one round trip, plans, asks (through the reporter) when
//! asked to, resolves the secrets of the jobs it submits, runs the apply
//! program in one more round trip and records the state it wrote.
//!
//! The lock is released on every way out except a successful apply, whose
//! program drops it itself after writing the state.

use crate::jobid::JobId;
use std::time::Duration;

use super::plan::{from_refresh, record_locally, write_local};
use super::secrets;
use super::{PlanFile, PlanOptions, Reporter, Stack};
use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::plan::{Action, Plan};
use crate::remote::{self, LockInfo, submit::Inputs};
use crate::state::State;

/// How to apply.
#[derive(Clone, Debug, Default)]
pub struct ApplyOptions {
    pub plan: PlanOptions,
    /// Wait this long for another holder's lock (none: fail at once).
    pub lock_timeout: Option<Duration>,
    /// Ask the reporter before changing anything.
    pub confirm: bool,
    /// The command line, recorded in the lock for whoever finds it held.
    pub command: String,
}

/// How an apply ended.
#[derive(Debug)]
pub enum Applied {
    /// The cluster already matches.
    NoChanges(Plan),
    /// The reporter said no.
    Declined(Plan),
    /// Every change was made and the state recorded.
    Done(ApplyReport),
    /// The cluster program stopped midway; the jobs this apply submitted
    /// (held, never started) were cancelled.
    FailedOnCluster(ApplyReport),
}

/// What an apply did.
#[derive(Clone, Debug)]
pub struct ApplyReport {
    pub plan: Plan,
    /// Jobs cancelled because their units were replaced or removed.
    pub cancelled: Vec<JobId>,
    /// (unit, role, job id) in submission order.
    pub submitted: Vec<(String, String, JobId)>,
    /// Why the cluster program stopped, when it did.
    pub error: Option<String>,
}

/// Applies a stack; `saved` is a plan from `plan --out` that must still
/// hold (checked against the config before and the cluster after locking).
pub fn apply(
    stack: &Stack,
    cluster: &dyn Cluster,
    saved: Option<&PlanFile>,
    opts: &ApplyOptions,
    reporter: &dyn Reporter,
) -> Result<Applied> {
    if let Some(s) = saved {
        s.check_config(&stack.rendered)?;
    }
    super::plan::check_options(stack, &opts.plan)?;
    let lock = LockInfo::mine(&opts.command);
    let r = &stack.rendered;
    let on_break = |h: &LockInfo| reporter.info(&super::breaking(h));
    let probes = crate::plan::feasibility::probed(&crate::plan::feasibility::shapes(r));
    let refreshed = remote::lock::acquire(
        cluster,
        &r.stack_dir,
        &r.stack,
        stack.since(),
        &lock,
        opts.lock_timeout,
        &on_break,
        &probes,
    )?;
    let result = locked(stack, cluster, saved, opts, reporter, &refreshed, &lock);
    if !matches!(result, Ok(Applied::Done(_)))
        && let Err(e) = remote::lock::release(cluster, &r.stack_dir, &lock.id)
    {
        reporter.warnings(&e.diagnostics());
    }
    result
}

fn locked(
    stack: &Stack,
    cluster: &dyn Cluster,
    saved: Option<&PlanFile>,
    opts: &ApplyOptions,
    reporter: &dyn Reporter,
    refreshed: &remote::refresh::Refreshed,
    lock: &LockInfo,
) -> Result<Applied> {
    if let Some(st) = &refreshed.state {
        stack.check_owner(st)?;
    }
    let planned = from_refresh(stack, &opts.plan, refreshed, cluster)?;
    if let Some(s) = saved {
        s.check_cluster(&planned.plan)?;
    }
    reporter.plan(&planned.plan);
    if let Some(budget) = opts.plan.max_gpu_hours
        && planned.plan.cost.over(budget)
    {
        return Err(Error::OverBudget(super::plan::over_budget(&planned.plan, budget)));
    }
    if !planned.plan.has_changes() {
        record_locally(stack, &planned, reporter);
        return Ok(Applied::NoChanges(planned.plan));
    }
    if opts.confirm && !reporter.confirm(&planned.plan) {
        return Ok(Applied::Declined(planned.plan));
    }
    let submitting: Vec<String> =
        planned.plan.changes.iter().filter(|c| c.action.submits()).map(|c| c.unit.clone()).collect();
    let secret_values =
        secrets::resolve(&stack.loaded, &stack.rendered, Some(&submitting), &crate::config::process_env)?;
    // The state records which config manages the stack from now on.
    // and the values it applies (for the causes of later plans).
    let owned = State {
        config: stack.id.name.clone(),
        // With units left out, those keep the old values' causes.
        config_values: if opts.plan.targets.is_empty() {
            crate::plan::causes::recorded(stack.config_values())
        } else {
            planned.state.config_values.clone()
        },
        ..planned.state.clone()
    };
    let inputs = Inputs {
        plan: &planned.plan,
        rendered: &stack.rendered,
        units: &planned.units,
        observations: &planned.observations,
        state: &owned,
        secrets: &secret_values,
        lock_id: &lock.id,
        now: super::now(),
        max_array_size: refreshed.max_array_size,
    };
    let (outcome, recorded) = remote::submit::execute(cluster, &inputs)?;
    let report = ApplyReport {
        plan: planned.plan.clone(),
        cancelled: outcome.cancelled,
        submitted: outcome.submitted,
        error: outcome.error,
    };
    if report.error.is_some() {
        return Ok(Applied::FailedOnCluster(report));
    }
    if let Some(st) = recorded {
        write_local(stack, &st, reporter);
    }
    Ok(Applied::Done(report))
}

impl ApplyReport {
    /// One line per changed unit: what was done and the jobs it submitted.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![];
        if !self.cancelled.is_empty() {
            out.push(format!("cancelled jobs {}", join(&self.cancelled)));
        }
        for c in self.plan.changes.iter().filter(|c| c.action != Action::None) {
            let ids: Vec<String> = self
                .submitted
                .iter()
                .filter(|(u, _, _)| u == &c.unit)
                .map(|(_, role, id)| format!("{id} ({role})"))
                .collect();
            if !ids.is_empty() {
                out.push(format!(
                    "{} {}: {} -> submitted {}",
                    c.action.symbol(),
                    c.unit,
                    c.action.word(),
                    ids.join(", ")
                ));
            } else if self.error.is_none() {
                out.push(format!("{} {}: {}", c.action.symbol(), c.unit, c.action.word()));
            }
        }
        out
    }

    /// The error of an apply the cluster program stopped midway.
    pub fn failure(&self) -> crate::error::Error {
        let why = self.error.clone().unwrap_or_default();
        crate::diag::Diagnostic::error(None, format!("apply failed on the cluster: {why}"))
            .with_note("the jobs this apply had submitted (held, never started) were cancelled; run apply again")
            .into()
    }

    /// `Apply complete: ...` with counts by action.
    pub fn summary_line(&self) -> String {
        let s = self.plan.summary();
        format!(
            "Apply complete: {} created, {} replaced, {} rerun, {} retried, {} updated, {} cancelled.",
            s.create, s.replace, s.rerun, s.retry, s.update, s.cancel
        )
    }
}

fn join(ids: &[JobId]) -> String {
    ids.iter().map(JobId::to_string).collect::<Vec<_>>().join(", ")
}
