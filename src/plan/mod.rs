//! What `apply` would change: the rendered jobs of a config, grouped into
//! units (a task's chain, or a deployment), reconciled against what the
//! cluster and the recorded state show.
//!
//! The reconciliation table (DESIGN §5) is [`decide`], a pure function of
//! the desired hashes, the observed state and the recorded state, so every
//! row of the table is tested without a cluster. Refreshing (one remote
//! program) lives in `crate::remote::refresh`, turning what it saw into
//! observations in [`observe`], output formats in [`output`].

pub mod causes;
pub mod cost;
pub mod feasibility;
pub mod hunks;
pub mod limits;
pub mod observe;
pub mod output;

use crate::jobid::JobId;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::render::{Elided, Rendered, RenderedJob, Role};
use crate::state::{Observed, State, UnitKind, UnitState};

/// Version of the plan document (`--format json`, `--out`).
pub const PLAN_VERSION: u32 = 2;

/// What will happen to a unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Nothing to do.
    None,
    /// Submit: the cluster has nothing for it.
    Create,
    /// Cancel the live chain and submit the new one.
    Replace,
    /// Run again: it completed, but what determines its result changed (old artifacts kept).
    Rerun,
    /// Run again after a failure, within the attempt limit.
    Retry,
    /// Upload the new scripts only: the running chain's next link uses them.
    Update,
    /// Cancel the chain of a unit no longer in the config (results kept).
    Cancel,
}

impl Action {
    /// Whether apply submits jobs for this action.
    pub fn submits(self) -> bool {
        matches!(self, Action::Create | Action::Replace | Action::Rerun | Action::Retry)
    }

    pub fn word(self) -> &'static str {
        match self {
            Action::None => "no change",
            Action::Create => "create",
            Action::Replace => "replace",
            Action::Rerun => "rerun",
            Action::Retry => "retry",
            Action::Update => "update",
            Action::Cancel => "cancel",
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Action::None => " ",
            Action::Create => "+",
            Action::Replace => "-/+",
            Action::Rerun | Action::Retry | Action::Update => "~",
            Action::Cancel => "-",
        }
    }
}

/// A unit of the config: the jobs that share an identity and a fate.
#[derive(Clone, Debug)]
pub struct Unit<'a> {
    pub id: String,
    pub kind: UnitKind,
    /// Its jobs: its own, or its pack's (shared with the pack's other tasks).
    pub jobs: Vec<&'a RenderedJob>,
    pub script_hash: String,
    pub result_hash: String,
    /// Its folder on the cluster (status, chain, artifacts, logs).
    pub dir: String,
    /// The pack job that runs it (the `packed` topology).
    pub pack: Option<String>,
    /// Whether its scripts are its own to show and record: a pack's are
    /// its first task's (the others' would repeat them).
    pub carries_scripts: bool,
}

impl Unit<'_> {
    /// The scripts, runtime elided, by file name (what state keeps for diffs).
    pub fn scripts(&self) -> BTreeMap<String, Arc<str>> {
        let jobs = self.jobs.iter().filter(|_| self.carries_scripts);
        jobs.map(|j| (j.script_name.to_owned(), j.script.elided())).collect()
    }

    /// The scripts, runtime elided, by file name, as the shared pieces
    /// they are kept in (what plans hold).
    pub fn shared_scripts(&self) -> Scripts {
        let jobs = self.jobs.iter().filter(|_| self.carries_scripts);
        jobs.map(|j| (j.script_name.to_owned(), j.script.shared())).collect()
    }
}

/// A unit's scripts by file name (runtime elided), in name order: a unit
/// has one to a few, so a sorted list (a plan of thousands of units holds
/// one per unit, twice).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scripts(Vec<(String, Elided)>);

impl Scripts {
    /// Adds or replaces the script `name`.
    pub fn insert(&mut self, name: String, text: Elided) {
        match self.0.binary_search_by(|(n, _)| n.as_str().cmp(&name)) {
            Ok(i) => self.0[i].1 = text,
            Err(i) => self.0.insert(i, (name, text)),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Elided> {
        self.0.binary_search_by(|(n, _)| n.as_str().cmp(name)).ok().map(|i| &self.0[i].1)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The names, in order.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(n, _)| n)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Elided)> {
        self.0.iter().map(|(n, t)| (n, t))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<(String, Elided)> for Scripts {
    fn from_iter<I: IntoIterator<Item = (String, Elided)>>(iter: I) -> Scripts {
        let mut out = Scripts(Vec::with_capacity(2));
        for (name, text) in iter {
            out.insert(name, text);
        }
        out
    }
}

pub use crate::render::RUNTIME_ELIDED;

fn sha(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    crate::render::hex(&h.finalize())
}

/// Groups rendered jobs into units, in submission order of their first
/// job. The tasks of a pack are units of their own, in the pack's order,
/// each with the pack's jobs and script hash and its own result hash.
pub fn units(rendered: &Rendered) -> Vec<Unit<'_>> {
    let mut order: Vec<String> = vec![];
    let mut by_id: BTreeMap<String, Vec<&RenderedJob>> = BTreeMap::new();
    for j in &rendered.jobs {
        if !by_id.contains_key(&j.unit) {
            order.push(j.unit.clone());
        }
        by_id.entry(j.unit.clone()).or_default().push(j);
    }
    let mut out = Vec::with_capacity(order.len());
    for id in order {
        let jobs = by_id.remove(&id).unwrap_or_default();
        let kind = if jobs.iter().any(|j| j.role == Role::Server) { UnitKind::Deployment } else { UnitKind::Task };
        let script_hash = sha(&jobs.iter().map(|j| j.script_hash.as_str()).collect::<Vec<_>>());
        let dir = jobs.first().map(|j| j.dir.clone()).unwrap_or_default();
        match jobs.iter().find(|j| !j.members.is_empty()) {
            Some(pack) => out.extend(pack.members.iter().enumerate().map(|(i, m)| Unit {
                id: m.id.clone(),
                kind: UnitKind::Task,
                jobs: jobs.clone(),
                script_hash: script_hash.clone(),
                result_hash: m.result_hash().to_owned(),
                dir: m.dir.clone(),
                pack: Some(id.clone()),
                carries_scripts: i == 0,
            })),
            None => {
                let result_hash = jobs.first().map(|j| j.result_hash().to_owned()).unwrap_or_default();
                out.push(Unit { id, kind, jobs, script_hash, result_hash, dir, pack: None, carries_scripts: true });
            }
        }
    }
    out
}

/// Which units a plan may change (`--only`, `--exclude`): names or globs
/// (`*` matches any text). Empty `only`: every unit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Targets {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub only: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

impl Targets {
    pub fn is_empty(&self) -> bool {
        self.only.is_empty() && self.exclude.is_empty()
    }

    /// Whether the plan may change `unit`.
    pub fn includes(&self, unit: &str) -> bool {
        let any = |patterns: &[String]| patterns.iter().any(|p| crate::gate::glob(p, unit));
        (self.only.is_empty() || any(&self.only)) && !any(&self.exclude)
    }
}

/// What refresh learned about one unit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub observed: Observed,
    /// Live jobs (pending, running, held), pending successors first.
    pub live_jobs: Vec<JobId>,
    /// Hashes carried by the live jobs' ownership tags, when they have them.
    pub tag_script_hash: Option<String>,
    pub tag_result_hash: Option<String>,
    /// The unit's status line (`completed 123`, `failed 123 exit 1`, ...).
    pub status: Option<String>,
    /// Seconds of run time its chain file records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_s: Option<u64>,
}

/// One line of the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub unit: String,
    pub kind: UnitKind,
    pub action: Action,
    /// Why, in a few words.
    pub reason: String,
    pub observed: Observed,
    /// Cancels work that is running (shown loudly).
    pub interrupts_running: bool,
    /// Jobs apply cancels first.
    pub cancel_jobs: Vec<JobId>,
    /// Scripts before (from state; runtime elided) and after. Not in
    /// documents: their hunks are (see [`output::PlanDocument`]).
    #[serde(skip)]
    pub before: Scripts,
    #[serde(skip)]
    pub after: Scripts,
    pub script_hash: String,
    pub result_hash: String,
    /// Submissions of the current result after this apply.
    pub attempts: u32,
    /// The pack job that runs the task (the `packed` topology): its
    /// scripts are shown with the pack's first task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pack: Option<String>,
    /// Left out by `--only`/`--exclude`: nothing happens to it, and the
    /// state keeps what it recorded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub untargeted: bool,
}

/// The decision for one unit present in the config (the DESIGN table).
pub fn decide(
    desired_script: &str,
    desired_result: &str,
    obs: &Observation,
    recorded: Option<&UnitState>,
    max_attempts: u32,
    forced: bool,
) -> (Action, String, u32) {
    let script = recorded.map(|r| r.script_hash.as_str()).or(obs.tag_script_hash.as_deref());
    let result = recorded.map(|r| r.result_hash.as_str()).or(obs.tag_result_hash.as_deref());
    let attempts = recorded.map_or(0, |r| r.attempts);
    // Ownership tags carry shortened hashes (`remote::layout::short`).
    let same = |seen: Option<&str>, desired: &str| {
        seen.is_some_and(|s| s == desired || (recorded.is_none() && s == crate::remote::layout::short(desired)))
    };
    let same_script = same(script, desired_script);
    let same_result = same(result, desired_result);
    if forced {
        return (Action::Rerun, "forced with --replace".into(), 1);
    }
    match obs.observed {
        Observed::Absent => (Action::Create, "not on the cluster".into(), 1),
        Observed::Held => (Action::Replace, "held by an interrupted apply".into(), 1),
        Observed::Pending if same_script => (Action::None, "pending".into(), attempts),
        Observed::Pending => (Action::Replace, "pending; script changed".into(), attempts.max(1)),
        Observed::Running if same_script => (Action::None, "running".into(), attempts),
        Observed::Running if same_result => {
            (Action::Update, "running; the next resume link uses the new script".into(), attempts)
        }
        Observed::Running => (Action::Replace, "running; result-relevant settings changed".into(), 1),
        Observed::Completed if same_script || same_result => (Action::None, "completed".into(), attempts),
        Observed::Completed => (Action::Rerun, "completed; result-relevant settings changed".into(), 1),
        Observed::Failed if !same_result && result.is_some() => {
            (Action::Rerun, "failed; result-relevant settings changed".into(), 1)
        }
        Observed::Failed if attempts < max_attempts => {
            (Action::Retry, format!("failed; attempt {} of {max_attempts}", attempts + 1), attempts + 1)
        }
        Observed::Failed => (
            Action::None,
            format!("failed {attempts} times: not retried (max_attempts = {max_attempts}; use --replace to force)"),
            attempts,
        ),
    }
}

/// The whole plan.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: u32,
    pub stack: String,
    pub stack_dir: String,
    /// Where the cluster is (`local`, `ssh user@host`), or `offline`.
    pub target: String,
    pub offline: bool,
    /// Serial of the state the plan was made against.
    pub serial: u64,
    /// Hash of every rendered script and result (the config as compiled).
    pub render_hash: String,
    /// Hash of the serial and every unit's action: a saved plan is stale
    /// when the same config planned now gives a different fingerprint.
    pub fingerprint: String,
    /// Whether the shared runtime differs from the one recorded.
    pub runtime_changed: bool,
    pub changes: Vec<Change>,
    /// The config keys that changed since the last apply, with the units
    /// each touches (empty without a recorded config).
    #[serde(default)]
    pub causes: Vec<causes::Cause>,
    /// The GPU-hours the units it submits may use.
    #[serde(default)]
    pub cost: cost::Cost,
    /// Whether the scheduler would run each distinct job shape
    /// (`sbatch --test-only`); empty when not checked (offline, diff).
    #[serde(default)]
    pub feasibility: Vec<feasibility::Feasibility>,
    /// The room each scheduler limit leaves for the jobs the plan submits
    /// (empty when not read: offline, diff, no accounting).
    #[serde(default)]
    pub limits: Vec<limits::Room>,
    /// How the tasks are packed into jobs (the `packed` topology).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packing: Option<Packing>,
    /// Most task (or pack) chains running at once (`execution.max_concurrent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<usize>,
    /// First links go in job arrays (`execution.job_arrays`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub job_arrays: bool,
    /// Refresh notes (e.g. "no accounting: sacct unavailable").
    pub notes: Vec<String>,
}

/// The `packed` topology in numbers: what the plan submits, and the model
/// loads it saves against one job per task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Packing {
    pub tasks_per_job: usize,
    /// Tasks and pack jobs (first links) of the config.
    pub tasks: usize,
    pub packs: usize,
    /// Tasks this plan runs, the packs it submits for them and their jobs
    /// (a first link and a resume link each; the first only with job arrays,
    /// whose elements queue their resume links as they start).
    pub tasks_submitted: usize,
    pub packs_submitted: usize,
    #[serde(default)]
    pub jobs_submitted: usize,
    /// Model servers not started: tasks submitted minus packs submitted
    /// (0 when the jobs start no model server).
    pub model_loads_saved: usize,
}

impl Packing {
    /// `Packed 10 tasks per job: 40 tasks in 4 jobs. Submits 4 packs (8 jobs) for 40 tasks: 36 model loads saved.`
    pub fn line(&self) -> String {
        let mut s =
            format!("Packed {} tasks per job: {} tasks in {} jobs.", self.tasks_per_job, self.tasks, self.packs);
        if self.packs_submitted > 0 {
            s.push_str(&format!(
                " Submits {} packs ({} jobs) for {} tasks: {} model loads saved.",
                self.packs_submitted, self.jobs_submitted, self.tasks_submitted, self.model_loads_saved
            ));
        }
        s
    }

    /// The packing of a plan's units, `None` when nothing is packed.
    fn of(rendered: &Rendered, units: &[Unit<'_>], changes: &[Change]) -> Option<Packing> {
        let packs: std::collections::BTreeSet<&str> = units.iter().filter_map(|u| u.pack.as_deref()).collect();
        if packs.is_empty() {
            return None;
        }
        let submitted: Vec<&Change> = changes.iter().filter(|c| c.action.submits() && c.pack.is_some()).collect();
        let packs_submitted =
            submitted.iter().filter_map(|c| c.pack.as_deref()).collect::<std::collections::BTreeSet<_>>().len();
        Some(Packing {
            tasks_per_job: rendered.tasks_per_job,
            tasks: units.iter().filter(|u| u.pack.is_some()).count(),
            packs: packs.len(),
            tasks_submitted: submitted.len(),
            packs_submitted,
            jobs_submitted: packs_submitted * if rendered.job_arrays { 1 } else { 2 },
            model_loads_saved: if rendered.own_model { submitted.len() - packs_submitted } else { 0 },
        })
    }
}

/// Counts by action.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub create: usize,
    pub replace: usize,
    pub rerun: usize,
    pub retry: usize,
    pub update: usize,
    pub cancel: usize,
    pub unchanged: usize,
}

impl Summary {
    /// Adds another summary's counts (several stacks together).
    pub fn add(&mut self, o: &Summary) {
        self.create += o.create;
        self.replace += o.replace;
        self.rerun += o.rerun;
        self.retry += o.retry;
        self.update += o.update;
        self.cancel += o.cancel;
        self.unchanged += o.unchanged;
    }

    /// The count of each action that changes something, in plan order.
    pub fn changing(&self) -> [(usize, Action); 6] {
        [
            (self.create, Action::Create),
            (self.replace, Action::Replace),
            (self.rerun, Action::Rerun),
            (self.retry, Action::Retry),
            (self.update, Action::Update),
            (self.cancel, Action::Cancel),
        ]
    }
}

impl Plan {
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for c in &self.changes {
            match c.action {
                Action::None => s.unchanged += 1,
                Action::Create => s.create += 1,
                Action::Replace => s.replace += 1,
                Action::Rerun => s.rerun += 1,
                Action::Retry => s.retry += 1,
                Action::Update => s.update += 1,
                Action::Cancel => s.cancel += 1,
            }
        }
        s
    }

    pub fn has_changes(&self) -> bool {
        self.changes.iter().any(|c| c.action != Action::None)
    }

    /// `Plan: 2 to create, 1 to replace, 0 to rerun, 1 to cancel.` or `No changes.`
    pub fn summary_line(&self) -> String {
        if !self.has_changes() {
            return "No changes.".into();
        }
        let s = self.summary();
        let mut parts = vec![
            format!("{} to create", s.create),
            format!("{} to replace", s.replace),
            format!("{} to rerun", s.rerun),
        ];
        if s.retry > 0 {
            parts.push(format!("{} to retry", s.retry));
        }
        if s.update > 0 {
            parts.push(format!("{} to update", s.update));
        }
        parts.push(format!("{} to cancel", s.cancel));
        format!("Plan: {}.", parts.join(", "))
    }
}

/// Hash of what the config compiles to.
pub fn render_hash(rendered: &Rendered) -> String {
    let parts: Vec<String> =
        rendered.jobs.iter().map(|j| format!("{} {} {}", j.id, j.script_hash, j.result_hash())).collect();
    sha(&parts.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Reconciles the units of a config with the observed cluster and state.
pub fn reconcile(
    units: &[Unit<'_>],
    observations: &BTreeMap<String, Observation>,
    state: &State,
    max_attempts: u32,
    replace: &[String],
    targets: &Targets,
) -> Vec<Change> {
    let empty = Observation::default();
    let mut changes: Vec<Change> = units
        .iter()
        .map(|u| {
            let obs = observations.get(&u.id).unwrap_or(&empty);
            let recorded = state.units.get(&u.id);
            let forced = replace.iter().any(|r| r == &u.id);
            let (action, reason, attempts) =
                decide(&u.script_hash, &u.result_hash, obs, recorded, max_attempts, forced);
            Change {
                unit: u.id.clone(),
                kind: u.kind,
                action,
                reason,
                observed: obs.observed,
                interrupts_running: (action == Action::Replace || forced) && obs.observed == Observed::Running,
                cancel_jobs: if matches!(action, Action::Replace | Action::Rerun | Action::Retry) {
                    obs.live_jobs.clone()
                } else {
                    vec![]
                },
                before: recorded.map(recorded_scripts).unwrap_or_default(),
                after: u.shared_scripts(),
                script_hash: u.script_hash.clone(),
                result_hash: u.result_hash.clone(),
                attempts,
                pack: u.pack.clone(),
                untargeted: false,
            }
        })
        .collect();
    packs_move_together(&mut changes, units, observations, state);
    deployments_follow_tasks(&mut changes, observations);
    pack_scripts_where_they_change(&mut changes);
    // Units gone from the config: cancel what still runs (a pack of the
    // config is no unit: its tasks are).
    let known: std::collections::BTreeSet<&str> =
        units.iter().flat_map(|u| std::iter::once(u.id.as_str()).chain(u.pack.as_deref())).collect();
    let mut gone: Vec<(&String, &Observation)> =
        observations.iter().filter(|(id, o)| !known.contains(id.as_str()) && o.observed.is_live()).collect();
    gone.sort_by_key(|(id, _)| id.as_str());
    for (id, o) in gone {
        let recorded = state.units.get(id);
        changes.push(Change {
            unit: id.clone(),
            kind: recorded.map_or(UnitKind::Task, |r| r.kind),
            action: Action::Cancel,
            reason: "removed from the config".into(),
            observed: o.observed,
            interrupts_running: o.observed == Observed::Running,
            cancel_jobs: o.live_jobs.clone(),
            before: recorded.map(recorded_scripts).unwrap_or_default(),
            after: Scripts::default(),
            script_hash: String::new(),
            result_hash: String::new(),
            attempts: 0,
            pack: None,
            untargeted: false,
        });
    }
    // Units `--only`/`--exclude` leave out: no action, no diff. The tasks
    // of a pack share its jobs: a pack is in when any of its tasks is.
    let pack_of: BTreeMap<&str, &str> =
        units.iter().filter_map(|u| Some((u.id.as_str(), u.pack.as_deref()?))).collect();
    let packs_in: std::collections::BTreeSet<&str> =
        pack_of.iter().filter(|(u, _)| targets.includes(u)).map(|(_, p)| *p).collect();
    let included = |unit: &str| targets.includes(unit) || pack_of.get(unit).is_some_and(|p| packs_in.contains(p));
    for c in changes.iter_mut().filter(|c| !included(&c.unit)) {
        if c.action != Action::None {
            c.reason = format!("left out by --only/--exclude (would {})", c.action.word());
        }
        c.action = Action::None;
        c.untargeted = true;
        c.interrupts_running = false;
        c.cancel_jobs.clear();
        c.after = c.before.clone();
    }
    changes
}

/// The scripts a state records for a unit, as a plan holds them.
fn recorded_scripts(r: &UnitState) -> Scripts {
    r.scripts.iter().map(|(name, text)| (name.clone(), Elided::from(text.clone()))).collect()
}

/// The tasks of a pack share its jobs, so they move together:
/// - a task whose live jobs are not its pack's (`tasks_per_job` or the
///   task order changed) is replaced, so its old pack's jobs are cancelled;
/// - when a pack's live jobs are cancelled, every task of it that has not
///   ended is replaced with it (submitted again in its new pack);
/// - a task to run again while its pack's jobs still run other tasks waits
///   until they end (submitting the pack again would run them twice).
///
/// Tasks that ended stay as they are: the pack's script skips them.
fn packs_move_together(
    changes: &mut [Change],
    units: &[Unit<'_>],
    observations: &BTreeMap<String, Observation>,
    state: &State,
) {
    let pack_of: BTreeMap<&str, &str> =
        units.iter().filter_map(|u| Some((u.id.as_str(), u.pack.as_deref()?))).collect();
    if pack_of.is_empty() {
        return;
    }
    let empty = Observation::default();
    let live_of = |unit: &str| observations.get(unit).unwrap_or(&empty);
    let replace = |c: &mut Change, reason: String| {
        c.action = Action::Replace;
        c.reason = reason;
        c.cancel_jobs = live_of(&c.unit).live_jobs.clone();
        c.interrupts_running = c.observed == Observed::Running;
        c.attempts = c.attempts.max(1);
    };
    for c in changes.iter_mut() {
        let Some(pack) = pack_of.get(c.unit.as_str()) else { continue };
        // A task that ended cancels nothing: its pack's jobs run the others.
        if !c.observed.is_live() {
            c.cancel_jobs.clear();
            c.interrupts_running = false;
        }
        let own = &live_of(pack).live_jobs;
        if live_of(&c.unit).live_jobs.iter().any(|j| !own.contains(j)) && c.action != Action::Cancel {
            replace(c, format!("{}; runs in another pack now ({pack})", c.observed.word()));
        }
    }
    loop {
        let cancelled: std::collections::BTreeSet<JobId> =
            changes.iter().flat_map(|c| c.cancel_jobs.iter().copied()).collect();
        let mut more = false;
        for c in changes.iter_mut() {
            let Some(pack) = pack_of.get(c.unit.as_str()) else { continue };
            if c.action.submits() || c.action == Action::Cancel || !c.observed.is_live() {
                continue;
            }
            if live_of(&c.unit).live_jobs.iter().any(|j| cancelled.contains(j)) {
                replace(c, format!("{}; its pack {pack} is submitted again", c.observed.word()));
                more = true;
            }
        }
        if !more {
            break;
        }
    }
    let cancelled: std::collections::BTreeSet<JobId> =
        changes.iter().flat_map(|c| c.cancel_jobs.iter().copied()).collect();
    for c in changes.iter_mut().filter(|c| c.action.submits()) {
        let Some(pack) = pack_of.get(c.unit.as_str()) else { continue };
        let p = live_of(pack);
        if p.observed.is_live() && p.live_jobs.iter().any(|j| !cancelled.contains(j)) {
            c.reason = format!("{}; waits until {pack} ends (its jobs run other tasks)", c.reason);
            c.action = Action::None;
            c.cancel_jobs.clear();
            c.attempts = state.units.get(&c.unit).map_or(0, |r| r.attempts);
        }
    }
}

/// A pack's scripts, which its first task carries, are shown with its
/// first task that changes (when that is another).
fn pack_scripts_where_they_change(changes: &mut [Change]) {
    let mut carrier: BTreeMap<String, usize> = BTreeMap::new();
    let mut moved: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for i in 0..changes.len() {
        let Some(pack) = changes[i].pack.clone() else { continue };
        let from = *carrier.entry(pack.clone()).or_insert(i);
        if from != i && changes[i].action != Action::None && changes[from].action == Action::None && moved.insert(pack)
        {
            let (before, after) = (std::mem::take(&mut changes[from].before), std::mem::take(&mut changes[from].after));
            changes[i].before = before;
            changes[i].after = after;
        }
    }
}

/// A deployment serving the stack's tasks is needed while any task runs or
/// is submitted; one that ended is started again when tasks are submitted.
fn deployments_follow_tasks(changes: &mut [Change], observations: &BTreeMap<String, Observation>) {
    let tasks_need_server = changes.iter().any(|c| {
        c.kind == UnitKind::Task
            && (c.action.submits() || observations.get(&c.unit).is_some_and(|o| o.observed.is_live()))
    });
    for c in changes.iter_mut().filter(|c| c.kind == UnitKind::Deployment) {
        let ended = matches!(c.observed, Observed::Completed | Observed::Failed);
        match c.action {
            Action::None if ended && tasks_need_server => {
                c.action = Action::Rerun;
                c.reason = "ended; tasks are submitted that need it".into();
                c.attempts = 1;
            }
            Action::Create | Action::Rerun | Action::Retry if !tasks_need_server => {
                c.action = Action::None;
                c.reason = "no task needs it".into();
            }
            _ => {}
        }
    }
}

/// Fingerprint of a plan's decisions.
pub fn fingerprint(serial: u64, changes: &[Change]) -> String {
    let parts: Vec<String> = changes
        .iter()
        .map(|c| format!("{} {} {:?} {:?}", c.unit, c.action.word(), c.cancel_jobs, c.observed))
        .collect();
    let serial = serial.to_string();
    let mut all = vec![serial.as_str()];
    all.extend(parts.iter().map(String::as_str));
    sha(&all)
}

/// Observations from the recorded state alone (`plan --offline`): each
/// unit as it was last seen.
pub fn observations_from_state(state: &State) -> BTreeMap<String, Observation> {
    state
        .units
        .iter()
        .map(|(id, u)| {
            let live = u.observed.is_live();
            (
                id.clone(),
                Observation {
                    observed: u.observed,
                    live_jobs: if live { u.jobs.clone() } else { vec![] },
                    ..Default::default()
                },
            )
        })
        .collect()
}

/// Everything a plan is made of, kept for apply.
pub struct Planned<'a> {
    pub plan: Plan,
    pub units: Vec<Unit<'a>>,
    pub observations: BTreeMap<String, Observation>,
    pub state: State,
}

/// What a plan is made against: the cluster as a refresh saw it, or a
/// recorded state.
pub struct Seen {
    pub observations: BTreeMap<String, Observation>,
    pub state: State,
    /// Where the cluster is (`local`, `ssh user@host`), or `offline` / `diff`.
    pub target: String,
    pub offline: bool,
    /// Notes on the refresh (e.g. no accounting).
    pub notes: Vec<String>,
}

/// Makes a plan: every unit of `rendered` reconciled against what was seen;
/// `replace` names units to run again whatever their state.
pub fn make<'a>(
    rendered: &'a Rendered,
    max_attempts: u32,
    replace: &[String],
    targets: &Targets,
    seen: Seen,
) -> Planned<'a> {
    let Seen { observations, state, target, offline, mut notes } = seen;
    let units = units(rendered);
    let observations = observe::with_packs(observations, &units, Some(&state));
    let changes = reconcile(&units, &observations, &state, max_attempts, replace, targets);
    let left_out: Vec<&str> =
        changes.iter().filter(|c| c.untargeted && c.reason.starts_with("left out")).map(|c| c.unit.as_str()).collect();
    if !left_out.is_empty() {
        notes.push(format!("left out by --only/--exclude, with changes: {}", left_out.join(", ")));
    }
    let runtime_digest = crate::render::runtime_digest();
    let runtime_changed = state.units.values().any(|u| !u.scripts.is_empty()) && state.runtime != runtime_digest;
    let by_id: std::collections::HashMap<&str, &Unit> = units.iter().map(|u| (u.id.as_str(), u)).collect();
    // A pack is priced once, as one chain: its tasks run in turn in its jobs.
    let mut priced: Vec<cost::Priced> = vec![];
    for c in changes.iter().filter(|c| c.action.submits()) {
        let Some(unit) = by_id.get(c.unit.as_str()) else { continue };
        let obs = observations.get(&c.unit);
        // An earlier chain of the same result that completed: its run time.
        let same = state.units.get(&c.unit).is_some_and(|r| r.result_hash == unit.result_hash);
        let earlier = obs.filter(|o| same && o.observed == Observed::Completed).and_then(|o| o.elapsed_s);
        let gpus = unit.jobs.iter().map(|j| j.gpus).max().unwrap_or(0);
        match &unit.pack {
            Some(pack) => match priced.iter_mut().find(|p| p.unit == pack) {
                Some(p) => p.earlier_elapsed_s = p.earlier_elapsed_s.zip(earlier).map(|(a, b)| a + b),
                None => priced.push(cost::Priced { unit: pack, gpus, earlier_elapsed_s: earlier }),
            },
            None => priced.push(cost::Priced { unit: &c.unit, gpus, earlier_elapsed_s: earlier }),
        }
    }
    let cost = cost::cost(
        &priced,
        rendered.walltime_s,
        cost::chain_limit_s(rendered.walltime_s, rendered.max_links, rendered.max_walltime_s),
    );
    let packing = Packing::of(rendered, &units, &changes);
    let plan = Plan {
        format_version: PLAN_VERSION,
        stack: rendered.stack.clone(),
        stack_dir: rendered.stack_dir.clone(),
        target,
        offline,
        serial: state.serial,
        render_hash: render_hash(rendered),
        fingerprint: fingerprint(state.serial, &changes),
        runtime_changed,
        changes,
        causes: vec![],
        cost,
        feasibility: vec![],
        limits: vec![],
        packing,
        max_concurrent: rendered.max_concurrent,
        job_arrays: rendered.job_arrays,
        notes,
    };
    Planned { plan, units, observations, state }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(o: Observed) -> Observation {
        Observation { observed: o, ..Default::default() }
    }

    fn rec(script: &str, result: &str, attempts: u32) -> UnitState {
        UnitState { script_hash: script.into(), result_hash: result.into(), attempts, ..Default::default() }
    }

    /// Every row of the reconciliation table.
    #[test]
    fn the_reconciliation_table() {
        use Action::*;
        use Observed::*;
        let r = rec("S", "R", 1);
        let d = |o: Observed, s: &str, res: &str, recd: Option<&UnitState>| decide(s, res, &obs(o), recd, 3, false).0;
        assert_eq!(d(Absent, "S", "R", Option::None), Create);
        for o in [Pending, Running, Completed] {
            assert_eq!(d(o, "S", "R", Some(&r)), None, "{o:?}, same script");
        }
        assert_eq!(d(Completed, "S2", "R", Some(&r)), None, "scheduling-only change");
        assert_eq!(d(Completed, "S2", "R2", Some(&r)), Rerun);
        assert_eq!(d(Pending, "S2", "R", Some(&r)), Replace);
        assert_eq!(d(Running, "S2", "R", Some(&r)), Update);
        assert_eq!(d(Running, "S2", "R2", Some(&r)), Replace);
        assert_eq!(d(Failed, "S", "R", Some(&r)), Retry);
        assert_eq!(d(Failed, "S", "R", Some(&rec("S", "R", 3))), None, "attempt limit");
        assert_eq!(d(Failed, "S2", "R2", Some(&rec("S", "R", 3))), Rerun, "new work after failures");
        assert_eq!(d(Held, "S", "R", Some(&r)), Replace);
        assert_eq!(decide("S", "R", &obs(Completed), Some(&r), 3, true).0, Rerun, "--replace");
        // Lost state: the job's tag carries the hashes.
        let tagged = Observation {
            observed: Running,
            tag_script_hash: Some("S".into()),
            tag_result_hash: Some("R".into()),
            ..Default::default()
        };
        assert_eq!(decide("S", "R", &tagged, Option::None, 3, false).0, None);
    }

    #[test]
    fn summary_lines() {
        let mut p = Plan {
            format_version: 1,
            stack: "s".into(),
            stack_dir: "/x/s".into(),
            target: "offline".into(),
            offline: true,
            serial: 0,
            render_hash: String::new(),
            fingerprint: String::new(),
            runtime_changed: false,
            changes: vec![],
            causes: vec![],
            cost: Default::default(),
            feasibility: vec![],
            limits: vec![],
            packing: None,
            max_concurrent: None,
            job_arrays: false,
            notes: vec![],
        };
        assert_eq!(p.summary_line(), "No changes.");
        let change = |a: Action| Change {
            unit: "u".into(),
            kind: UnitKind::Task,
            action: a,
            reason: String::new(),
            observed: Observed::Absent,
            interrupts_running: false,
            cancel_jobs: vec![],
            before: Scripts::default(),
            after: Scripts::default(),
            script_hash: String::new(),
            result_hash: String::new(),
            attempts: 0,
            pack: None,
            untargeted: false,
        };
        p.changes =
            vec![change(Action::Create), change(Action::Create), change(Action::Replace), change(Action::Cancel)];
        assert_eq!(p.summary_line(), "Plan: 2 to create, 1 to replace, 0 to rerun, 1 to cancel.");
        p.changes.push(change(Action::Retry));
        assert_eq!(p.summary_line(), "Plan: 2 to create, 1 to replace, 0 to rerun, 1 to retry, 1 to cancel.");
    }

    #[test]
    fn a_shared_server_follows_its_tasks() {
        let change = |unit: &str, kind: UnitKind, action: Action, observed: Observed| Change {
            unit: unit.into(),
            kind,
            action,
            reason: String::new(),
            observed,
            interrupts_running: false,
            cancel_jobs: vec![],
            before: Scripts::default(),
            after: Scripts::default(),
            script_hash: String::new(),
            result_hash: String::new(),
            attempts: 0,
            pack: None,
            untargeted: false,
        };
        let none = BTreeMap::new();
        // Every task completed: the ended server is left alone.
        let mut c = vec![
            change("server", UnitKind::Deployment, Action::None, Observed::Completed),
            change("t", UnitKind::Task, Action::None, Observed::Completed),
        ];
        deployments_follow_tasks(&mut c, &none);
        assert_eq!(c[0].action, Action::None);
        // A task is retried: the server must serve it again.
        c[1].action = Action::Retry;
        deployments_follow_tasks(&mut c, &none);
        assert_eq!(c[0].action, Action::Rerun);
        // Nothing needs a server that was never started.
        let mut c = vec![
            change("server", UnitKind::Deployment, Action::Create, Observed::Absent),
            change("t", UnitKind::Task, Action::None, Observed::Completed),
        ];
        deployments_follow_tasks(&mut c, &none);
        assert_eq!(c[0].action, Action::None);
    }
}
