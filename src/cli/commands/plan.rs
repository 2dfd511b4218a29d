//! `plan` and `diff`: show what would change, in the format asked for.

use std::path::PathBuf;

use super::super::args::{ColorArgs, ConfigArgs, PlanFormat, StackFlags};
use super::super::printer::Printer;
use crate::error::{ExitStatus, Result};
use crate::ops::{self, Observe, PlanFile, PlanOptions};
use crate::plan::{Plan, output};

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

fn print(plan: &Plan, format: PlanFormat, p: &Printer) -> Result<()> {
    p.out(&match format {
        PlanFormat::Text => output::text(plan, p.color_out()),
        PlanFormat::Markdown => output::markdown(plan, output::COMMENT_LIMIT),
        PlanFormat::Json => output::json(plan),
    })
}

pub fn plan(a: &PlanArgs, p: &Printer) -> Result<ExitStatus> {
    p.no_color(a.stack.color.no_color);
    if a.out.is_some() {
        PlanFile::check_overrides(&a.args.o.overrides)?;
    }
    let stack = ops::Stack::open(&a.args.config, &a.args.o.overrides, &p.sources, p)?;
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
        PlanFile::new(&a.args.config, &a.args.o.overrides, &opts, &planned.plan)?.write(path)?;
        p.note(&format!("Plan saved to {}; apply it with `evalctl apply {}`.", path.display(), path.display()));
    }
    if let Some(budget) = opts.max_gpu_hours
        && planned.plan.cost.over(budget)
    {
        p.err(&format!("evalctl: {}\n", ops::plan::over_budget(&planned.plan, budget)));
        return Ok(ExitStatus::OverBudget);
    }
    Ok(if a.detailed_exitcode && planned.plan.has_changes() { ExitStatus::Changes } else { ExitStatus::Success })
}

pub fn diff(a: &DiffArgs, p: &Printer) -> Result<ExitStatus> {
    p.no_color(a.color.no_color);
    let plan = ops::diff(&a.old, &a.new, &a.overrides, &p.sources, p)?;
    print(&plan, a.format, p)?;
    Ok(ExitStatus::Success)
}
