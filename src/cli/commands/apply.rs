//! `apply`: a config or a saved plan, with confirmation on a terminal and
//! optionally `--wait` until every unit has ended.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use super::super::args::StackFlags;
use super::super::printer::Printer;
use crate::error::{Error, ExitStatus, Result};
use crate::ops::{self, Applied, ApplyOptions, PlanFile, PlanOptions};

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
    /// only if all completed. With `execution.auto_export`, each task is
    /// exported as it completes.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub stack: StackFlags,
}

pub fn apply(a: &ApplyArgs, p: &Printer) -> Result<ExitStatus> {
    p.no_color(a.stack.color.no_color);
    let saved = PlanFile::read(&a.target)?;
    let flags = crate::plan::Targets { only: a.stack.only.clone(), exclude: a.stack.exclude.clone() };
    let (config, overrides, replace, targets) = match &saved {
        Some(s) => (s.config.clone(), s.overrides.clone(), s.replace.clone(), s.targets.clone()),
        None => (a.target.clone(), a.overrides.clone(), a.stack.replace.clone(), flags),
    };
    let stack = ops::Stack::open(&config, &overrides, &p.sources, p)?;
    if let Some(s) = &saved {
        s.check_config(&stack.rendered)?;
    }
    let confirm = saved.is_none() && !a.auto_approve;
    if confirm && !std::io::stdin().is_terminal() {
        return Err(Error::msg("apply asks for confirmation on a terminal; pass --auto-approve to apply without one"));
    }
    p.show_plan.set(!p.quiet || confirm);
    // auto_export: the MLflow target is resolved before anything is
    // submitted, so a missing tracking URI fails at once.
    let auto_export = if ops::export::auto_destinations(&stack).iter().any(|d| d == "mlflow") {
        let target = ops::export::MlflowTarget::of(&stack, None, None, &crate::config::process_env)?;
        Some(ops::export::AutoExport::new(target))
    } else {
        None
    };
    let cluster = p.connect(&stack, &a.stack.cluster)?;
    let since = stack.since();
    let opts = ApplyOptions {
        plan: PlanOptions { replace, max_gpu_hours: a.stack.max_gpu_hours, targets },
        lock_timeout: a.lock_timeout.map(Duration::from_secs),
        confirm,
        command: super::super::args::command_line(),
    };
    match ops::apply(&stack, cluster.as_ref(), saved.as_ref(), &opts, p)? {
        Applied::Declined(_) => {
            p.err("Apply cancelled.\n");
            return Ok(ExitStatus::Failure);
        }
        Applied::FailedOnCluster(report) => {
            p.out(&lines(&report.lines()))?;
            return Err(report.failure());
        }
        Applied::Done(report) => p.out(&(lines(&report.lines()) + &report.summary_line() + "\n"))?,
        Applied::NoChanges(_) => {}
    }
    if !a.wait {
        if auto_export.is_some() {
            p.note(&format!(
                "Results are exported to MLflow (`execution.auto_export`) by `apply --wait`, or later by: evalctl export {}",
                config.display()
            ));
        }
        return Ok(ExitStatus::Success);
    }
    let Some(mut exporter) = auto_export else {
        return finish_wait(ops::wait(&stack, cluster.as_ref(), since, p)?, true, p);
    };
    let rows = ops::status::wait_with(&stack, cluster.as_ref(), since, p, &mut |rows| {
        for line in exporter.round(&stack, cluster.as_ref(), since, rows) {
            p.note(&format!("export: {line}"));
        }
    })?;
    if !exporter.ok() {
        p.err(&format!(
            "evalctl: the export of some tasks failed; run `evalctl export {}` to try again\n",
            config.display()
        ));
    }
    finish_wait(rows, exporter.ok(), p)
}

/// The end of `--wait`: the final table; success only if every unit
/// completed (and, with auto_export, every export went through).
fn finish_wait(rows: Vec<crate::status::UnitStatus>, exported: bool, p: &Printer) -> Result<ExitStatus> {
    if !p.quiet {
        p.err(&crate::status::table(&rows));
    }
    if rows.iter().all(|r| r.state == "completed") && exported {
        Ok(ExitStatus::Success)
    } else {
        if !rows.iter().all(|r| r.state == "completed") {
            p.err("evalctl: not every unit completed\n");
        }
        Ok(ExitStatus::Failure)
    }
}

fn lines(l: &[String]) -> String {
    l.iter().map(|l| format!("{l}\n")).collect()
}
