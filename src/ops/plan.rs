//! `plan`: what apply would change, against the cluster (one refresh round
//! trip) or against the last recorded state (`--offline`, no cluster).

use super::{Reporter, Stack};
use crate::cluster::Cluster;
use crate::config::Loaded;
use crate::config::node::{Seg, Value};
use crate::diag::Diagnostic;
use crate::error::Result;
use crate::plan::causes::{self, Cause};
use crate::plan::{self, Planned, Seen, feasibility};
use crate::remote::{self, refresh::Refreshed};
use crate::state::{self, State};

/// Where a plan learns what the cluster has.
pub enum Observe<'a> {
    /// The state recorded by the last apply or plan (the local copy beside
    /// the config); no cluster is contacted.
    Recorded,
    /// A refresh of the cluster, one round trip.
    Cluster(&'a dyn Cluster),
}

/// Choices that change a plan.
#[derive(Clone, Debug, Default)]
pub struct PlanOptions {
    /// Units to run again whatever their state.
    pub replace: Vec<String>,
    /// GPU-hours the plan may use at most (its upper bound).
    pub max_gpu_hours: Option<f64>,
    /// The units the plan may change (`--only`, `--exclude`).
    pub targets: plan::Targets,
}

/// Plans a stack. Against a cluster, the refreshed state is also written
/// to the local copy beside the config, so that `plan --offline` and
/// `diff` later see what the cluster had.
pub fn plan<'a>(
    stack: &'a Stack,
    observe: Observe<'_>,
    opts: &PlanOptions,
    reporter: &dyn Reporter,
) -> Result<Planned<'a>> {
    check_options(stack, opts)?;
    match observe {
        Observe::Recorded => {
            let st = state::read_local(&stack.config, &stack.loaded.stack)
                .map_err(|e| vec![Diagnostic::error(None, e)])?
                .unwrap_or_else(|| State::new(&stack.loaded.stack));
            stack.check_owner(&st)?;
            let mut notes =
                if st.serial == 0 { vec!["no recorded state: every job is new".to_owned()] } else { vec![] };
            notes.push("feasibility not checked (offline)".to_owned());
            let obs = plan::observations_from_state(&st);
            let old = st.config_values.clone();
            let seen = Seen { observations: obs, state: st, target: "offline".into(), offline: true, notes };
            let mut planned = plan::make(&stack.rendered, stack.max_attempts(), &opts.replace, &opts.targets, seen);
            planned.plan.causes = stack_causes(stack, &old, &planned.plan);
            Ok(planned)
        }
        Observe::Cluster(cluster) => planned_from(stack, opts, &refresh(stack, cluster)?, cluster, reporter),
    }
}

/// The refresh of a plan against the cluster ([`Observe::Cluster`]): one
/// round trip, no reporter, so that the refreshes of several stacks can
/// run in parallel threads; [`plan_refreshed`] then makes each plan.
pub fn refresh(stack: &Stack, cluster: &dyn Cluster) -> Result<Refreshed> {
    let r = &stack.rendered;
    let probes = feasibility::probed(&feasibility::shapes(r));
    remote::refresh::refresh_probing(cluster, &r.stack_dir, &r.stack, stack.since(), &probes)
}

/// A plan from the stack's [`refresh`], as [`plan`] with
/// [`Observe::Cluster`] makes it (the refreshed state recorded locally).
pub fn plan_refreshed<'a>(
    stack: &'a Stack,
    opts: &PlanOptions,
    r: &Refreshed,
    cluster: &dyn Cluster,
    reporter: &dyn Reporter,
) -> Result<Planned<'a>> {
    check_options(stack, opts)?;
    planned_from(stack, opts, r, cluster, reporter)
}

fn planned_from<'a>(
    stack: &'a Stack,
    opts: &PlanOptions,
    r: &Refreshed,
    cluster: &dyn Cluster,
    reporter: &dyn Reporter,
) -> Result<Planned<'a>> {
    if let Some(st) = &r.state {
        stack.check_owner(st)?;
    }
    let planned = from_refresh(stack, opts, r, cluster)?;
    record_locally(stack, &planned, reporter);
    Ok(planned)
}

/// Why a plan is over `budget` GPU-hours.
pub fn over_budget(plan: &plan::Plan, budget: f64) -> String {
    match plan.cost.gpu_hours_max {
        Some(m) => format!("the plan may use {m:.1} GPU-hours, over the budget of {budget} (--max-gpu-hours)"),
        None => format!(
            "the plan's GPU-hours are unbounded ({} units have no max_walltime or max_resume_links), over the budget of {budget} (--max-gpu-hours)",
            plan.cost.units_unbounded
        ),
    }
}

/// Every unit `--replace` names must be a unit of the config, and every
/// name or glob of `--only`/`--exclude` must match one: a typo must not
/// silently plan nothing (or everything).
pub(crate) fn check_options(stack: &Stack, opts: &PlanOptions) -> Result<()> {
    if opts.replace.is_empty() && opts.targets.is_empty() {
        return Ok(());
    }
    let units = plan::units(&stack.rendered);
    let matches = |p: &String| units.iter().any(|u| crate::gate::glob(p, &u.id));
    let flags = [
        ("--replace", opts.replace.iter().filter(|r| !units.iter().any(|u| &u.id == *r)).collect::<Vec<_>>()),
        ("--only", opts.targets.only.iter().filter(|p| !matches(p)).collect()),
        ("--exclude", opts.targets.exclude.iter().filter(|p| !matches(p)).collect()),
    ];
    let known: Vec<&str> = units.iter().map(|u| u.id.as_str()).collect();
    let errors: Vec<Diagnostic> = flags
        .into_iter()
        .filter(|(_, unknown)| !unknown.is_empty())
        .map(|(flag, unknown)| {
            let names: Vec<String> = unknown.iter().map(|r| format!("`{r}`")).collect();
            Diagnostic::error(
                None,
                format!("{flag} names no unit of stack `{}`: {}", stack.rendered.stack, names.join(", ")),
            )
            .with_note(format!("units: {}", known.join(", ")))
        })
        .collect();
    if errors.is_empty() { Ok(()) } else { Err(errors.into()) }
}

/// A plan from a refresh that already happened (apply takes the lock and
/// refreshes in one round trip). An error when the scheduler refuses the
/// shape of a job the plan submits (see [`feasibility`]).
pub(crate) fn from_refresh<'a>(
    stack: &'a Stack,
    opts: &PlanOptions,
    r: &Refreshed,
    cluster: &dyn Cluster,
) -> Result<Planned<'a>> {
    let mut notes = vec![];
    if let Some(e) = &r.squeue_error {
        notes.push(format!("squeue failed ({e}): live jobs are unknown"));
    }
    if !r.sacct_available {
        notes.push("accounting (sacct) is not available: states come from slurmctld and the jobs' status files".into());
    }
    let obs = plan::observe::observe(r);
    let st = r.state.clone().unwrap_or_else(|| State::new(&stack.loaded.stack));
    let old = st.config_values.clone();
    let seen = Seen { observations: obs, state: st, target: cluster.target().describe(), offline: false, notes };
    let mut planned = plan::make(&stack.rendered, stack.max_attempts(), &opts.replace, &opts.targets, seen);
    planned.plan.causes = stack_causes(stack, &old, &planned.plan);
    let changing: Vec<String> =
        planned.plan.changes.iter().filter(|c| c.action != plan::Action::None).map(|c| c.unit.clone()).collect();
    let uses = feasibility::shapes(&stack.rendered);
    let (entries, errors, notes) =
        feasibility::assess(&uses, &r.probes, r.probe_unavailable.as_deref(), &changing, &stack.loaded.tree);
    if !errors.is_empty() {
        return Err(errors.into());
    }
    planned.plan.feasibility = entries;
    planned.plan.notes.extend(notes);
    if let Some(assocs) = &r.limits {
        let (rooms, errors) = plan::limits::assess(assocs, &r.user, &stack.rendered, &planned.plan, &stack.loaded.tree);
        if !errors.is_empty() {
            return Err(errors.into());
        }
        planned.plan.limits = rooms.into_iter().filter(|room| room.needed > 0).collect();
    }
    Ok(planned)
}

/// [`config_causes`] of a stack's plan. The config's values (a key and a
/// place per value: tens of thousands for a large config) are gathered
/// only when there are recorded ones to compare them with.
fn stack_causes(stack: &Stack, old: &std::collections::BTreeMap<String, String>, plan: &plan::Plan) -> Vec<Cause> {
    if old.is_empty() {
        return vec![];
    }
    config_causes(&stack.loaded, stack.config_values(), old, plan)
}

/// The config keys that changed from `old` (the recorded values) to `new`
/// (the values of the config `loaded`), each with the units of the plan it
/// touches. None without recorded values.
pub(crate) fn config_causes(
    loaded: &Loaded,
    new: &std::collections::BTreeMap<String, causes::ConfigValue>,
    old: &std::collections::BTreeMap<String, String>,
    plan: &plan::Plan,
) -> Vec<Cause> {
    if old.is_empty() {
        return vec![];
    }
    // Keys under `evaluation.tasks[<label>]` belong to that task's unit.
    let path = [Seg::Key("evaluation".into()), Seg::Key("tasks".into())];
    let labels = match loaded.tree.get(&path).map(|n| &n.value) {
        Some(Value::Seq(items)) => causes::item_labels(items),
        _ => vec![],
    };
    let (ids, _) = crate::graph::task_ids(loaded);
    let unit_of: std::collections::BTreeMap<String, String> = labels.into_iter().zip(ids).collect();
    let task_unit = |key: &str| {
        let label = key.strip_prefix("evaluation.tasks[")?.split(']').next()?;
        unit_of.get(label).cloned()
    };
    let changed: Vec<String> =
        plan.changes.iter().filter(|c| c.action != plan::Action::None).map(|c| c.unit.clone()).collect();
    causes::causes(old, new, &task_unit, &changed)
}

/// Writes the state a refresh saw (each unit with its observation) to the
/// local copy; a failure is a warning, since the copy only speeds things up.
pub(crate) fn record_locally(stack: &Stack, planned: &Planned<'_>, reporter: &dyn Reporter) {
    let mut s = planned.state.clone();
    for (id, u) in s.units.iter_mut() {
        if let Some(o) = planned.observations.get(id) {
            u.observed = o.observed;
        }
    }
    write_local(stack, &s, reporter);
}

/// Writes a state to the local copy, warning when it cannot.
pub(crate) fn write_local(stack: &Stack, s: &State, reporter: &dyn Reporter) {
    if let Err(e) = state::write_local(&stack.config, s) {
        reporter.warnings(&[Diagnostic::warning(None, format!("the local state copy is not updated: {e}"))]);
    }
}
