//! `plan` and `diff`: show what would change, in the format asked for.

use std::path::PathBuf;

use super::super::args::ClusterArgs;
use super::super::args::{ColorArgs, OverrideArgs, PlanFormat, StackFlags};
use super::super::printer::Printer;
use crate::error::{Error, ExitStatus, Result};
use crate::ops::Reporter;
use crate::ops::{self, Observe, PlanFile, PlanOptions};
use crate::plan::{Plan, output};
use crate::stacks::{self, Outcome, StackPlan};

#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    /// Config files and folders (a folder: every config directly in it).
    /// Several stacks, a folder or --changed-since give one combined plan.
    #[arg(value_name = "PATH", default_value = "evalctl.yaml")]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub o: OverrideArgs,
    /// Plan only the stacks a file changed since this git revision affects:
    /// their config, or a group file they are composed from (`git diff
    /// --name-only REV` and untracked files).
    #[arg(long, value_name = "GIT_REF")]
    pub changed_since: Option<String>,
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
    #[command(flatten)]
    pub color: ColorArgs,
}

/// Writes a plan as it is produced (text and JSON can be large).
fn print(plan: &Plan, format: PlanFormat, p: &Printer) -> Result<()> {
    match format {
        PlanFormat::Text => {
            let color = p.color_out();
            p.out_with(color, |w| output::write_text(plan, color, w))
        }
        PlanFormat::Markdown => p.out(&output::markdown(plan, output::COMMENT_LIMIT)),
        PlanFormat::Json => p.out_with(false, |w| output::write_json(plan, w)),
    }
}

pub fn plan(a: &PlanArgs, p: &Printer) -> Result<ExitStatus> {
    p.no_color(a.stack.color.no_color);
    match a.paths.as_slice() {
        [config] if !config.is_dir() && a.changed_since.is_none() => plan_one(a, config, p),
        _ => plan_many(a, p),
    }
}

fn plan_one(a: &PlanArgs, config: &std::path::Path, p: &Printer) -> Result<ExitStatus> {
    if a.out.is_some() {
        PlanFile::check_overrides(&a.o.overrides)?;
    }
    let stack = ops::Stack::open(config, &a.o.overrides, &p.sources, p)?;
    let targets = crate::plan::Targets { only: a.stack.only.clone(), exclude: a.stack.exclude.clone() };
    let opts = PlanOptions { replace: a.stack.replace.clone(), max_gpu_hours: a.stack.max_gpu_hours, targets };
    let planned = if a.offline {
        ops::plan(&stack, Observe::Recorded, &opts, p)?
    } else {
        let cluster = p.connect(&stack, &a.stack.cluster)?;
        ops::plan(&stack, Observe::Cluster(cluster.as_ref()), &opts, p)?
    };
    print(&planned.plan, a.format, p)?;
    if let Some(path) = &a.out {
        PlanFile::new(config, &a.o.overrides, &opts, &planned.plan)?.write(path)?;
        p.note(&format!("Plan saved to {}; apply it with `evalctl apply {}`.", path.display(), path.display()));
    }
    if let Some(budget) = opts.max_gpu_hours
        && planned.plan.cost.over(budget)
    {
        p.err(&format!("evalctl: {}\n", ops::plan::over_budget(&planned.plan, budget)));
        return Ok(ExitStatus::OverBudget);
    }
    let status =
        if a.detailed_exitcode && planned.plan.has_changes() { ExitStatus::Changes } else { ExitStatus::Success };
    super::super::leak(planned);
    super::super::leak(stack);
    Ok(status)
}

/// `plan PATH...` with several stacks: one combined document.
fn plan_many(a: &PlanArgs, p: &Printer) -> Result<ExitStatus> {
    if a.out.is_some() {
        return Err(Error::msg("--out saves the plan of one stack: name one config file"));
    }
    one_stack_flags(&a.stack)?;
    let opts = PlanOptions { max_gpu_hours: a.stack.max_gpu_hours, ..PlanOptions::default() };
    let opened = open(&a.paths, &a.o.overrides, a.changed_since.as_deref(), p)?;
    let (stacks, _) = plan_opened(&opened, a.offline, &opts, &a.stack.cluster, p);
    p.out(&match a.format {
        PlanFormat::Text => stacks::text(&stacks, p.color_out()),
        PlanFormat::Markdown => stacks::markdown(&stacks, stacks::COMMENT_LIMIT),
        PlanFormat::Json => stacks::json(&stacks),
    })?;
    for s in &stacks {
        if let Some(budget) = opts.max_gpu_hours
            && let Some(plan) = s.plan()
            && plan.cost.over(budget)
        {
            p.err(&format!("evalctl: {}: {}\n", s.name, ops::plan::over_budget(plan, budget)));
        }
    }
    Ok(stacks::exit_status(&stacks, a.detailed_exitcode, opts.max_gpu_hours))
}

/// `--replace`, `--only` and `--exclude` name units of one stack.
pub(crate) fn one_stack_flags(f: &StackFlags) -> Result<()> {
    if f.replace.is_empty() && f.only.is_empty() && f.exclude.is_empty() {
        return Ok(());
    }
    Err(Error::msg("--replace, --only and --exclude name units of one stack: name one config file"))
}

/// The configs `paths` name, opened; with `changed_since`, only those a
/// changed file affects. Their warnings are shown, and the errors of those
/// that do not compile.
pub(crate) fn open(
    paths: &[PathBuf],
    overrides: &[String],
    changed_since: Option<&str>,
    p: &Printer,
) -> Result<Vec<ops::stacks::Opened>> {
    let configs = ops::stacks::discover(paths)?;
    if configs.is_empty() {
        let names: Vec<String> = paths.iter().map(|p| format!("`{}`", p.display())).collect();
        return Err(Error::msg(format!("no config in {}", names.join(", "))));
    }
    let mut opened = ops::stacks::open_all(&configs, overrides, &p.sources);
    if let Some(rev) = changed_since {
        let changed = ops::stacks::changed_files(paths, rev)?;
        let all = opened.len();
        opened.retain(|o| o.affected_by(&changed));
        let names: Vec<String> = opened.iter().map(|o| o.name()).collect();
        p.info(&format!(
            "{} of {all} stacks affected by changes since {rev}{}{}",
            opened.len(),
            if names.is_empty() { "" } else { ": " },
            names.join(", ")
        ));
    }
    for o in &opened {
        p.warnings(&o.warnings);
        if let Err(e) = &o.stack {
            p.fail(e);
        }
    }
    Ok(opened)
}

/// Plans the opened stacks (offline, or over one connection per host) into
/// the rows of the combined document; also returns the plans by stack.
pub(crate) fn plan_opened<'a>(
    opened: &'a [ops::stacks::Opened],
    offline: bool,
    opts: &PlanOptions,
    cluster: &ClusterArgs,
    p: &'a Printer,
) -> (Vec<StackPlan>, Option<ops::stacks::Hosts<'a>>) {
    let stacks: Vec<&ops::Stack> = opened.iter().filter_map(|o| o.stack.as_ref().ok()).collect();
    let hosts = (!offline).then(|| {
        let connect = |s: &ops::Stack| p.connect(s, cluster);
        ops::stacks::Hosts::connect(&stacks, cluster.ssh_config.clone(), &connect)
    });
    if let Some(h) = &hosts {
        p.info(&format!(
            "planning {} stacks over {} {}",
            stacks.len(),
            h.connections(),
            if h.connections() == 1 { "connection" } else { "connections" }
        ));
    }
    let mut planned = ops::stacks::plan_all(&stacks, hosts.as_ref(), opts, p).into_iter();
    let rows = opened
        .iter()
        .map(|o| {
            let config = o.config.display().to_string();
            let failed = |e: &Error| {
                let diags = e.diagnostics();
                Outcome::Failed(diags.iter().filter(|d| d.is_error()).map(|d| d.headline(&p.sources)).collect())
            };
            let outcome = match &o.stack {
                Err(e) => failed(e),
                Ok(_) => match planned.next() {
                    Some(Ok(pl)) => Outcome::Planned(Box::new(pl.plan)),
                    Some(Err(e)) => {
                        p.fail(&e);
                        failed(&e)
                    }
                    None => failed(&Error::msg("not planned")),
                },
            };
            let name = match &outcome {
                Outcome::Planned(plan) => plan.stack.clone(),
                Outcome::Failed(_) => o.name(),
            };
            StackPlan { name, config, outcome }
        })
        .collect();
    (rows, hosts)
}

pub fn diff(a: &DiffArgs, p: &Printer) -> Result<ExitStatus> {
    p.no_color(a.color.no_color);
    let plan = ops::diff(&a.old, &a.new, &a.overrides, &p.sources, p)?;
    print(&plan, a.format, p)?;
    Ok(ExitStatus::Success)
}
