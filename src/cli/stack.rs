//! The commands that work on a stack: plan, apply, diff, state.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigArgs, compile, print_out, warn};
use crate::apply::driver::{self, Stop};
use crate::apply::{Inputs, LockInfo, secrets};
use crate::cluster::{self, Cluster};
use crate::diag::{Diagnostic, Sources};
use crate::plan::{self, Action, Planned, output};
use crate::render::Rendered;
use crate::state::{self, State};

type Result<T> = std::result::Result<T, Vec<Diagnostic>>;

/// Output formats of `plan`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanFormat {
    /// For people; coloured on a terminal (NO_COLOR and --no-color turn it off).
    Text,
    /// A pull-request comment: summary, actions, diffs in a collapsed block.
    Markdown,
    /// A versioned JSON document.
    Json,
}

/// Flags of the commands that plan a stack against its cluster.
#[derive(clap::Args, Debug)]
pub struct StackFlags {
    /// Run this unit again whatever its state (repeatable).
    #[arg(long, value_name = "NODE")]
    pub replace: Vec<String>,
    /// ssh config file to use (default: ~/.ssh/config; env EVALCTL_SSH_CONFIG).
    #[arg(long, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
    /// No colours.
    #[arg(long)]
    pub no_color: bool,
}

#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    pub args: ConfigArgs,
    /// Plan against the last recorded state (`.evalctl/<stack>.state.json`
    /// beside the config) without contacting the cluster.
    #[arg(long)]
    pub offline: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: PlanFormat,
    /// Exit 0 when there are no changes, 2 when there are, 1 on errors.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Save the plan for `evalctl apply FILE`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub stack: StackFlags,
}

#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    /// A config file, or a plan saved with `plan --out`.
    #[arg(default_value = "evalctl.yaml")]
    pub target: PathBuf,
    /// Override a value (configs only; a saved plan keeps its overrides).
    #[arg(short = 'o', long = "override", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Apply without asking.
    #[arg(long)]
    pub auto_approve: bool,
    /// Wait up to this many seconds for another apply's lock.
    #[arg(long, value_name = "SECS")]
    pub lock_timeout: Option<u64>,
    /// Then wait until every unit has ended (progress on a terminal); exit 0
    /// only if all completed.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub stack: StackFlags,
}

#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    /// The config before.
    pub old: PathBuf,
    /// The config after.
    pub new: PathBuf,
    /// Override a value in both configs.
    #[arg(short = 'o', long = "override", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: PlanFormat,
    /// No colours.
    #[arg(long)]
    pub no_color: bool,
}

#[derive(clap::Subcommand, Debug)]
pub enum StateCommand {
    /// Remove a stack's lock, by the id its holder printed.
    ///
    /// Example: evalctl state unlock 0001a2b3c4d5e6f7 evals/llama.yaml
    Unlock {
        /// Lock id (from the "locked by" message).
        id: String,
        #[command(flatten)]
        args: ConfigArgs,
        /// ssh config file to use.
        #[arg(long, value_name = "FILE")]
        ssh_config: Option<PathBuf>,
    },
    /// Print the recorded state of a stack (from the cluster, or the local copy with --offline).
    ///
    /// Example: evalctl state show evals/llama.yaml --offline
    Show {
        #[command(flatten)]
        args: ConfigArgs,
        /// Read the local copy instead of the cluster's.
        #[arg(long)]
        offline: bool,
        /// ssh config file to use.
        #[arg(long, value_name = "FILE")]
        ssh_config: Option<PathBuf>,
    },
}

/// A plan saved with `--out`: the plan document plus how to rebuild it.
#[derive(Serialize, Deserialize)]
struct SavedPlan {
    kind: String,
    config: PathBuf,
    overrides: Vec<String>,
    replace: Vec<String>,
    plan: serde_json::Value,
}

const SAVED_KIND: &str = "evalctl-plan";

fn color(no_color: bool) -> bool {
    !no_color && std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal()
}

fn stop_to(stop: Stop) -> Result<i32> {
    match stop {
        Stop::Diagnostics(d) => Err(d),
        Stop::Locked(holder) => {
            eprintln!("evalctl: error: the stack is locked: {}", holder.describe());
            eprintln!(
                "  = note: wait with --lock-timeout SECS, or if that apply is dead: evalctl state unlock {}",
                holder.id
            );
            Ok(3)
        }
        Stop::Stale(why) => {
            eprintln!("evalctl: error: the saved plan is stale: {why}; nothing was applied");
            eprintln!("  = note: run `evalctl plan --out FILE` again and review it");
            Ok(4)
        }
    }
}

fn connect(loaded: &crate::config::Loaded, ssh_config: Option<PathBuf>) -> std::result::Result<Box<dyn Cluster>, Stop> {
    let target = driver::target(loaded, &crate::config::process_env, ssh_config)?;
    Ok(cluster::connect(&target)?)
}

fn render_all(loaded: &crate::config::Loaded, graph: &crate::graph::JobGraph) -> Result<Rendered> {
    crate::render::render(loaded, graph)
}

/// Observations and notes from a refresh.
fn observed(r: &plan::refresh::Refreshed) -> (std::collections::BTreeMap<String, plan::Observation>, Vec<String>) {
    let mut notes = vec![];
    if let Some(e) = &r.squeue_error {
        notes.push(format!("squeue failed ({e}): live jobs are unknown"));
    }
    if !r.sacct_available {
        notes.push("accounting (sacct) is not available: states come from slurmctld and the jobs' status files".into());
    }
    (plan::refresh::observe(r), notes)
}

/// The state a refresh saw, with each unit's observation (the local copy).
fn mirror(state: &State, planned: &Planned<'_>) -> State {
    let mut s = state.clone();
    for (id, u) in s.units.iter_mut() {
        if let Some(o) = planned.observations.get(id) {
            u.observed = o.observed;
        }
    }
    s
}

fn print_plan(plan: &plan::Plan, format: PlanFormat, no_color: bool) -> std::result::Result<(), Vec<Diagnostic>> {
    let text = match format {
        PlanFormat::Text => output::text(plan, color(no_color)),
        PlanFormat::Markdown => output::markdown(plan, output::COMMENT_LIMIT),
        PlanFormat::Json => serde_json::to_string_pretty(&output::json(plan)).unwrap_or_default() + "\n",
    };
    print_out(&text)
}

pub fn plan(a: &PlanArgs, quiet: bool, sources: &Sources) -> Result<i32> {
    let (loaded, graph) = compile(&a.args, quiet, sources)?;
    let rendered = render_all(&loaded, &graph)?;
    let max = loaded.config.execution.max_attempts;
    let planned = if a.offline {
        let st = state::read_local(&a.args.config, &loaded.stack)
            .map_err(|e| vec![Diagnostic::error(None, e)])?
            .unwrap_or_else(|| State::new(&loaded.stack));
        let notes = if st.serial == 0 { vec!["no recorded state: every job is new".to_owned()] } else { vec![] };
        let obs = plan::observations_from_state(&st);
        plan::make(&rendered, max, &a.stack.replace, obs, st, "offline".into(), true, notes)
    } else {
        let result = (|| -> std::result::Result<Planned<'_>, Stop> {
            let cluster = connect(&loaded, a.stack.ssh_config.clone())?;
            let since = state::read_local(&a.args.config, &loaded.stack).ok().flatten().map_or(0, |s| s.created);
            let r = driver::refresh(cluster.as_ref(), &rendered.stack_dir, &rendered.stack, since)?;
            let (obs, notes) = observed(&r);
            let st = r.state.clone().unwrap_or_else(|| State::new(&loaded.stack));
            let planned =
                plan::make(&rendered, max, &a.stack.replace, obs, st, cluster.target().describe(), false, notes);
            let _ = state::write_local(&a.args.config, &mirror(&planned.state, &planned));
            Ok(planned)
        })();
        match result {
            Ok(p) => p,
            Err(stop) => return stop_to(stop),
        }
    };
    print_plan(&planned.plan, a.format, a.stack.no_color)?;
    if let Some(path) = &a.out {
        let saved = SavedPlan {
            kind: SAVED_KIND.into(),
            config: std::fs::canonicalize(&a.args.config).unwrap_or_else(|_| a.args.config.clone()),
            overrides: a.args.overrides.clone(),
            replace: a.stack.replace.clone(),
            plan: output::json(&planned.plan),
        };
        let text = serde_json::to_string_pretty(&saved).unwrap_or_default() + "\n";
        std::fs::write(path, text)
            .map_err(|e| vec![Diagnostic::error(None, format!("cannot write {}: {e}", path.display()))])?;
        if !quiet {
            eprintln!("Plan saved to {}; apply it with `evalctl apply {}`.", path.display(), path.display());
        }
    }
    Ok(if a.detailed_exitcode && planned.plan.has_changes() { 2 } else { 0 })
}

fn read_saved(path: &Path) -> Option<SavedPlan> {
    let text = std::fs::read_to_string(path).ok()?;
    if !text.trim_start().starts_with('{') {
        return None;
    }
    serde_json::from_str::<SavedPlan>(&text).ok().filter(|s| s.kind == SAVED_KIND)
}

pub fn apply(a: &ApplyArgs, quiet: bool, sources: &Sources) -> Result<i32> {
    let saved = read_saved(&a.target);
    let (config_path, overrides, replace) = match &saved {
        Some(s) => (s.config.clone(), s.overrides.clone(), s.replace.clone()),
        None => (a.target.clone(), a.overrides.clone(), a.stack.replace.clone()),
    };
    let args = ConfigArgs { config: config_path.clone(), overrides };
    let (loaded, graph) = compile(&args, quiet, sources)?;
    let rendered = render_all(&loaded, &graph)?;
    if let Some(s) = &saved
        && s.plan.get("render_hash").and_then(|v| v.as_str()) != Some(plan::render_hash(&rendered).as_str())
    {
        return stop_to(Stop::Stale("the config changed since the plan was made".into()));
    }
    let interactive = saved.is_none() && !a.auto_approve;
    if interactive && !std::io::stdin().is_terminal() {
        return Err(vec![Diagnostic::error(
            None,
            "apply asks for confirmation on a terminal; pass --auto-approve to apply without one",
        )]);
    }
    let cluster = match connect(&loaded, a.stack.ssh_config.clone()) {
        Ok(c) => c,
        Err(s) => return stop_to(s),
    };
    let command: Vec<String> = std::env::args().collect();
    let lock = LockInfo::mine(&command.join(" "));
    let since = state::read_local(&config_path, &loaded.stack).ok().flatten().map_or(0, |s| s.created);
    let refreshed = match driver::lock_and_refresh(
        cluster.as_ref(),
        &rendered.stack_dir,
        &rendered.stack,
        since,
        &lock,
        a.lock_timeout.map(Duration::from_secs),
    ) {
        Ok(r) => r,
        Err(s) => return stop_to(s),
    };
    // From here on the lock is ours: every way out releases it.
    let result = apply_locked(
        a,
        quiet,
        &loaded,
        &rendered,
        &replace,
        &refreshed,
        cluster.as_ref(),
        &lock,
        saved.as_ref(),
        interactive,
        &config_path,
    );
    if !matches!(result, Ok(Applied::Done)) {
        let _ = driver::unlock(cluster.as_ref(), &rendered.stack_dir, &lock.id);
    }
    match result {
        Ok(Applied::Done) | Ok(Applied::NoChanges) if a.wait => {
            match wait_for(cluster.as_ref(), &rendered, since, quiet) {
                Ok(true) => Ok(0),
                Ok(false) => {
                    eprintln!("evalctl: not every unit completed");
                    Ok(1)
                }
                Err(s) => stop_to(s),
            }
        }
        Ok(Applied::Done) | Ok(Applied::NoChanges) => Ok(0),
        Ok(Applied::Declined) => {
            eprintln!("Apply cancelled.");
            Ok(1)
        }
        Ok(Applied::Failed) => Ok(1),
        Err(stop) => stop_to(stop),
    }
}

enum Applied {
    Done,
    NoChanges,
    Declined,
    Failed,
}

#[allow(clippy::too_many_arguments)]
fn apply_locked(
    a: &ApplyArgs,
    quiet: bool,
    loaded: &crate::config::Loaded,
    rendered: &Rendered,
    replace: &[String],
    refreshed: &plan::refresh::Refreshed,
    cluster: &dyn Cluster,
    lock: &LockInfo,
    saved: Option<&SavedPlan>,
    interactive: bool,
    config_path: &Path,
) -> std::result::Result<Applied, Stop> {
    let (obs, notes) = observed(refreshed);
    let st = refreshed.state.clone().unwrap_or_else(|| State::new(&loaded.stack));
    let planned = plan::make(
        rendered,
        loaded.config.execution.max_attempts,
        replace,
        obs,
        st,
        cluster.target().describe(),
        false,
        notes,
    );
    if let Some(s) = saved
        && s.plan.get("fingerprint").and_then(|v| v.as_str()) != Some(planned.plan.fingerprint.as_str())
    {
        return Err(Stop::Stale("the cluster changed since the plan was made".into()));
    }
    if !quiet || interactive {
        let text = output::text(&planned.plan, color(a.stack.no_color));
        eprint!("{text}");
    }
    if !planned.plan.has_changes() {
        let _ = state::write_local(config_path, &mirror(&planned.state, &planned));
        return Ok(Applied::NoChanges);
    }
    if interactive {
        eprint!("\nApply these changes to stack `{}`? Only 'yes' applies: ", planned.plan.stack);
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        if answer.trim() != "yes" {
            return Ok(Applied::Declined);
        }
    }
    let submitting: Vec<String> =
        planned.plan.changes.iter().filter(|c| c.action.submits()).map(|c| c.unit.clone()).collect();
    let secret_values = secrets::resolve(loaded, rendered, Some(&submitting), &crate::config::process_env)
        .map_err(Stop::Diagnostics)?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let inputs = Inputs {
        plan: &planned.plan,
        rendered,
        units: &planned.units,
        observations: &planned.observations,
        state: &planned.state,
        secrets: &secret_values,
        lock_id: &lock.id,
        now,
    };
    let (outcome, recorded) = driver::execute(cluster, &inputs)?;
    let mut report = String::new();
    if !outcome.cancelled.is_empty() {
        report.push_str(&format!("cancelled jobs {}\n", join(&outcome.cancelled)));
    }
    for c in planned.plan.changes.iter().filter(|c| c.action != Action::None) {
        let ids: Vec<String> = outcome
            .submitted
            .iter()
            .filter(|(u, _, _)| u == &c.unit)
            .map(|(_, role, id)| format!("{id} ({role})"))
            .collect();
        if !ids.is_empty() {
            report.push_str(&format!(
                "{} {}: {} -> submitted {}\n",
                c.action.symbol(),
                c.unit,
                c.action.word(),
                ids.join(", ")
            ));
        } else if outcome.error.is_none() {
            report.push_str(&format!("{} {}: {}\n", c.action.symbol(), c.unit, c.action.word()));
        }
    }
    print_out(&report).map_err(Stop::Diagnostics)?;
    if let Some(err) = &outcome.error {
        eprintln!("evalctl: error: apply failed on the cluster: {err}");
        eprintln!("  = note: the jobs this apply had submitted (held, never started) were cancelled; run apply again");
        return Ok(Applied::Failed);
    }
    if let Some(st) = recorded {
        let _ = state::write_local(config_path, &st);
    }
    let s = planned.plan.summary();
    print_out(&format!(
        "Apply complete: {} created, {} replaced, {} rerun, {} retried, {} updated, {} cancelled.\n",
        s.create, s.replace, s.rerun, s.retry, s.update, s.cancel
    ))
    .map_err(Stop::Diagnostics)?;
    Ok(Applied::Done)
}

fn join(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
}

pub fn diff(a: &DiffArgs, quiet: bool, sources: &Sources) -> Result<i32> {
    let old_args = ConfigArgs { config: a.old.clone(), overrides: a.overrides.clone() };
    let new_args = ConfigArgs { config: a.new.clone(), overrides: a.overrides.clone() };
    let (new_loaded, new_graph) = compile(&new_args, quiet, sources)?;
    let (mut old_loaded, mut old_graph) = compile(&old_args, quiet, sources)?;
    // Two versions of one file compare as one stack, whatever their file names.
    if old_loaded.config.name.is_none() && new_loaded.config.name.is_none() && old_loaded.stack != new_loaded.stack {
        let mut overrides = a.overrides.clone();
        overrides.push(format!("+name={}", new_loaded.stack));
        (old_loaded, old_graph) = compile(&ConfigArgs { config: a.old.clone(), overrides }, true, sources)?;
    }
    let old = render_all(&old_loaded, &old_graph)?;
    let new = render_all(&new_loaded, &new_graph)?;
    // The old config as if it had been applied and were still pending.
    let mut st = State::new(&new.stack);
    let mut obs = std::collections::BTreeMap::new();
    for u in plan::units(&old) {
        st.units.insert(
            u.id.clone(),
            state::UnitState {
                kind: u.kind,
                script_hash: u.script_hash.clone(),
                result_hash: u.result_hash.clone(),
                scripts: u.scripts(),
                attempts: 1,
                observed: state::Observed::Pending,
                ..Default::default()
            },
        );
        obs.insert(u.id.clone(), plan::Observation { observed: state::Observed::Pending, ..Default::default() });
    }
    let planned = plan::make(&new, new_loaded.config.execution.max_attempts, &[], obs, st, "diff".into(), true, vec![]);
    print_plan(&planned.plan, a.format, a.no_color)?;
    Ok(0)
}

pub fn state(cmd: &StateCommand, quiet: bool, sources: &Sources) -> Result<i32> {
    match cmd {
        StateCommand::Unlock { id, args, ssh_config } => {
            let (loaded, graph) = compile(args, quiet, sources)?;
            let rendered = render_all(&loaded, &graph)?;
            let cluster = match connect(&loaded, ssh_config.clone()) {
                Ok(c) => c,
                Err(s) => return stop_to(s),
            };
            match driver::unlock(cluster.as_ref(), &rendered.stack_dir, id) {
                Ok(true) => {
                    eprintln!("Lock {id} of stack `{}` removed.", rendered.stack);
                    Ok(0)
                }
                Ok(false) => {
                    Err(vec![Diagnostic::error(None, format!("stack `{}` is not locked by {id}", rendered.stack))])
                }
                Err(s) => stop_to(s),
            }
        }
        StateCommand::Show { args, offline, ssh_config } => {
            let (loaded, graph) = compile(args, quiet, sources)?;
            let st = if *offline {
                state::read_local(&args.config, &loaded.stack).map_err(|e| vec![Diagnostic::error(None, e)])?
            } else {
                let rendered = render_all(&loaded, &graph)?;
                let cluster = match connect(&loaded, ssh_config.clone()) {
                    Ok(c) => c,
                    Err(s) => return stop_to(s),
                };
                match driver::refresh(cluster.as_ref(), &rendered.stack_dir, &rendered.stack, 0) {
                    Ok(r) => r.state,
                    Err(s) => return stop_to(s),
                }
            };
            match st {
                Some(s) => {
                    let mut v = serde_json::to_value(&s).unwrap_or_default();
                    // Scripts are long and in the job directories; keep the summary readable.
                    if let Some(units) = v["units"].as_object_mut() {
                        for u in units.values_mut() {
                            if let Some(o) = u.as_object_mut() {
                                o.remove("scripts");
                            }
                        }
                    }
                    print_out(&(serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"))?;
                    Ok(0)
                }
                None => {
                    warn(
                        &[Diagnostic::warning(None, format!("stack `{}` has no recorded state", loaded.stack))],
                        sources,
                        false,
                    );
                    Ok(1)
                }
            }
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub args: ConfigArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// ssh config file to use.
    #[arg(long, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    /// `[CONFIG] NODE`: the config (default evalctl.yaml) and the unit.
    #[arg(num_args = 1..=2, value_name = "[CONFIG] NODE", required = true)]
    pub args: Vec<String>,
    /// Override a value.
    #[arg(short = 'o', long = "override", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Keep printing new output until the job ends.
    #[arg(short, long)]
    pub follow: bool,
    /// ssh config file to use.
    #[arg(long, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct CancelArgs {
    /// `[CONFIG] [NODE...]`: the config (default evalctl.yaml) and units (default: all).
    #[arg(value_name = "[CONFIG] [NODE]")]
    pub args: Vec<String>,
    /// Override a value.
    #[arg(short = 'o', long = "override", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Wait up to this many seconds for another apply's lock.
    #[arg(long, value_name = "SECS")]
    pub lock_timeout: Option<u64>,
    /// ssh config file to use.
    #[arg(long, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
}

/// Splits `[CONFIG] [NAMES...]`: the first word is the config when it names a
/// YAML file.
fn config_and_names(words: &[String], overrides: &[String]) -> (ConfigArgs, Vec<String>) {
    let is_config = |w: &String| w.ends_with(".yaml") || w.ends_with(".yml") || Path::new(w).is_file();
    match words.split_first() {
        Some((first, rest)) if is_config(first) => {
            (ConfigArgs { config: PathBuf::from(first), overrides: overrides.to_vec() }, rest.to_vec())
        }
        _ => (ConfigArgs { config: PathBuf::from("evalctl.yaml"), overrides: overrides.to_vec() }, words.to_vec()),
    }
}

/// Refresh with chain details: observations and unit statuses.
fn stack_status(
    cluster: &dyn Cluster,
    rendered: &Rendered,
    since: u64,
) -> std::result::Result<Vec<crate::status::UnitStatus>, Stop> {
    let prog = plan::refresh::detail_program(&rendered.stack_dir)
        + &plan::refresh::program(&rendered.stack_dir, &rendered.stack, since);
    let r = driver::refresh_with(cluster, &prog)?;
    let obs = plan::refresh::observe(&r);
    let units: Vec<(String, state::UnitKind)> = plan::units(rendered).iter().map(|u| (u.id.clone(), u.kind)).collect();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Ok(crate::status::build(&units, &r, &obs, &rendered.stack_dir, rendered.walltime_s, now))
}

pub fn status(a: &StatusArgs, quiet: bool, sources: &Sources) -> Result<i32> {
    let (loaded, graph) = compile(&a.args, quiet, sources)?;
    let rendered = render_all(&loaded, &graph)?;
    let since = state::read_local(&a.args.config, &loaded.stack).ok().flatten().map_or(0, |s| s.created);
    let rows = match connect(&loaded, a.ssh_config.clone()).and_then(|c| stack_status(c.as_ref(), &rendered, since)) {
        Ok(r) => r,
        Err(s) => return stop_to(s),
    };
    if a.json {
        print_out(&(serde_json::to_string_pretty(&rows).unwrap_or_default() + "\n"))?;
    } else {
        print_out(&crate::status::table(&rows))?;
    }
    Ok(0)
}

/// Waits until every unit is terminal, polling with backoff; one refresh
/// per round. Returns whether every unit completed.
fn wait_for(cluster: &dyn Cluster, rendered: &Rendered, since: u64, quiet: bool) -> std::result::Result<bool, Stop> {
    let tty = std::io::stderr().is_terminal() && !quiet;
    let total = plan::units(rendered).len() as u64;
    let bar = tty.then(|| {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} done {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let mut delay = 2u64;
    let mut last = String::new();
    loop {
        let rows = stack_status(cluster, rendered, since)?;
        let count = |s: &str| rows.iter().filter(|r| r.state == s).count();
        let done = rows.iter().filter(|r| r.is_terminal()).count() as u64;
        let summary = format!(
            "{} completed, {} running, {} pending, {} resuming, {} failed",
            count("completed"),
            count("running"),
            count("pending") + count("held"),
            count("resuming"),
            count("failed") + count("cancelled") + count("stopped")
        );
        match &bar {
            Some(b) => {
                b.set_position(done.min(total));
                b.set_message(summary.clone());
            }
            None if summary != last && !quiet => eprintln!("evalctl: {summary}"),
            None => {}
        }
        last = summary;
        if rows.iter().all(|r| r.is_terminal()) {
            if let Some(b) = bar {
                b.finish();
            }
            let ok = rows.iter().all(|r| r.state == "completed");
            if !quiet {
                eprint!("{}", crate::status::table(&rows));
            }
            return Ok(ok);
        }
        std::thread::sleep(Duration::from_secs(delay));
        delay = (delay * 2).min(30);
    }
}

pub fn logs(a: &LogsArgs, quiet: bool, sources: &Sources) -> Result<i32> {
    let (args, names) = config_and_names(&a.args, &a.overrides);
    let Some(node) = names.first() else {
        return Err(vec![Diagnostic::error(None, "name the unit whose logs to show: evalctl logs [CONFIG] NODE")]);
    };
    let (loaded, graph) = compile(&args, quiet, sources)?;
    let rendered = render_all(&loaded, &graph)?;
    let cluster = match connect(&loaded, a.ssh_config.clone()) {
        Ok(c) => c,
        Err(s) => return stop_to(s),
    };
    let since = state::read_local(&args.config, &loaded.stack).ok().flatten().map_or(0, |s| s.created);
    let mut offsets: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    loop {
        let rows = match stack_status(cluster.as_ref(), &rendered, since) {
            Ok(r) => r,
            Err(s) => return stop_to(s),
        };
        let Some(row) = rows.iter().find(|r| &r.unit == node) else {
            let known: Vec<&str> = rows.iter().map(|r| r.unit.as_str()).collect();
            return Err(vec![
                Diagnostic::error(None, format!("no unit `{node}` in stack `{}`", rendered.stack))
                    .with_note(format!("units: {}", known.join(", "))),
            ]);
        };
        let Some(job) = row.current_job else {
            return Err(vec![Diagnostic::error(None, format!("`{node}` has no job yet"))]);
        };
        let dir = format!("{}/{node}/logs", rendered.stack_dir);
        let files = [format!("slurm-{job}.out"), format!("server-{job}-*.log"), format!("client-{job}.log")];
        let mut prog =
            format!("cd {} 2>/dev/null || {{ echo 'EVALCTL end'; exit 0; }}\n", crate::render::shell::quote(&dir));
        for pattern in &files {
            prog.push_str(&format!(
                "for f in {pattern}; do [ -f \"$f\" ] || continue; printf 'EVALCTL file %s %s\\n' \"$f\" \"$(wc -c <\"$f\")\"; done\n"
            ));
        }
        prog.push_str("echo 'EVALCTL end'\n");
        let listing = match driver::run_program(cluster.as_ref(), &prog) {
            Ok(o) => o,
            Err(s) => return stop_to(s),
        };
        let mut fetch = String::new();
        for line in listing.lines().filter_map(|l| l.strip_prefix("EVALCTL file ")) {
            let Some((name, size)) = line.rsplit_once(' ') else { continue };
            let size: u64 = size.trim().parse().unwrap_or(0);
            let from = offsets.get(name).copied().unwrap_or(0);
            if size > from {
                fetch.push_str(&format!(
                    "printf '\\n==> %s <==\\n' {q}; tail -c +{} {dir}/{q}\n",
                    from + 1,
                    q = crate::render::shell::quote(name),
                    dir = crate::render::shell::quote(&dir)
                ));
                offsets.insert(name.to_owned(), size);
            }
        }
        if !fetch.is_empty() {
            let out = cluster.run(fetch.as_bytes()).map_err(|e| vec![Diagnostic::error(None, e.to_string())])?;
            print_out(&out.stdout_text())?;
        }
        if !a.follow || row.is_terminal() {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

pub fn cancel(a: &CancelArgs, quiet: bool, sources: &Sources) -> Result<i32> {
    let (args, names) = config_and_names(&a.args, &a.overrides);
    let (loaded, graph) = compile(&args, quiet, sources)?;
    let rendered = render_all(&loaded, &graph)?;
    let cluster = match connect(&loaded, a.ssh_config.clone()) {
        Ok(c) => c,
        Err(s) => return stop_to(s),
    };
    let lock = LockInfo::mine(&std::env::args().collect::<Vec<_>>().join(" "));
    let since = state::read_local(&args.config, &loaded.stack).ok().flatten().map_or(0, |s| s.created);
    let r = match driver::lock_and_refresh(
        cluster.as_ref(),
        &rendered.stack_dir,
        &rendered.stack,
        since,
        &lock,
        a.lock_timeout.map(Duration::from_secs),
    ) {
        Ok(r) => r,
        Err(s) => return stop_to(s),
    };
    let obs = plan::refresh::observe(&r);
    let unknown: Vec<&String> =
        names.iter().filter(|n| !obs.contains_key(*n) && !plan::units(&rendered).iter().any(|u| &&u.id == n)).collect();
    if !unknown.is_empty() {
        let _ = driver::unlock(cluster.as_ref(), &rendered.stack_dir, &lock.id);
        return Err(vec![Diagnostic::error(
            None,
            format!(
                "no unit {} in stack `{}`",
                unknown.iter().map(|u| format!("`{u}`")).collect::<Vec<_>>().join(", "),
                rendered.stack
            ),
        )]);
    }
    let chosen: Vec<(&String, &plan::Observation)> =
        obs.iter().filter(|(u, o)| (names.is_empty() || names.contains(u)) && o.observed.is_live()).collect();
    let result =
        driver::run_program(cluster.as_ref(), &crate::apply::cancel_program(&rendered.stack_dir, &chosen, &lock.id));
    let _ = driver::unlock(cluster.as_ref(), &rendered.stack_dir, &lock.id);
    match result {
        Ok(out) => {
            let cancelled: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("EVALCTL cancelled-unit ")).collect();
            if cancelled.is_empty() {
                print_out("Nothing to cancel: no live job.\n")?;
            } else {
                print_out(&format!("Cancelled: {}\n", cancelled.join(", ")))?;
            }
            Ok(0)
        }
        Err(s) => stop_to(s),
    }
}
