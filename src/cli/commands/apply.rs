//! `apply`: a config or a saved plan, with confirmation on a terminal and
//! optionally `--wait` until every unit has ended.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::super::args::StackFlags;
use super::super::printer::Printer;
use crate::error::{Error, ExitStatus, Result};
use crate::ops::{self, Applied, ApplyOptions, PlanFile, PlanOptions};

#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    /// A config file, or a plan saved with `plan --out`; or several config
    /// files and folders (each stack applied under its own lock).
    #[arg(value_name = "PATH", default_value = "evalctl.yaml")]
    pub targets: Vec<PathBuf>,
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
    match a.targets.as_slice() {
        [target] if !target.is_dir() => apply_one(a, target, p),
        _ => apply_many(a, p),
    }
}

fn apply_one(a: &ApplyArgs, target: &Path, p: &Printer) -> Result<ExitStatus> {
    let saved = PlanFile::read(target)?;
    let flags = crate::plan::Targets { only: a.stack.only.clone(), exclude: a.stack.exclude.clone() };
    let (config, overrides, replace, targets) = match &saved {
        Some(s) => (s.config.clone(), s.overrides.clone(), s.replace.clone(), s.targets.clone()),
        None => (target.to_path_buf(), a.overrides.clone(), a.stack.replace.clone(), flags),
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

/// `apply PATH...` with several stacks: plans them all (one connection
/// per host, refreshes in parallel), shows the combined plan, asks once
/// (unless --auto-approve), then applies each stack that changes under its
/// own lock, one after the other. A stack whose plan failed is not applied;
/// the others are. Exit 0 when every stack is applied (or unchanged); else
/// the status of the failures when they agree (3 locked, 4 stale, 7 over
/// budget), 1 otherwise.
fn apply_many(a: &ApplyArgs, p: &Printer) -> Result<ExitStatus> {
    if a.wait {
        return Err(Error::msg("--wait follows one stack: name one config (or run `evalctl wait` per stack)"));
    }
    super::plan::one_stack_flags(&a.stack)?;
    let configs = ops::stacks::discover(&a.targets)?;
    for c in &configs {
        if PlanFile::read(c)?.is_some() {
            return Err(Error::msg(format!("`{}` is a saved plan: apply it alone", c.display())));
        }
    }
    let confirm = !a.auto_approve;
    if confirm && !std::io::stdin().is_terminal() {
        return Err(Error::msg("apply asks for confirmation on a terminal; pass --auto-approve to apply without one"));
    }
    let opened = super::plan::open(&a.targets, &a.overrides, None, p)?;
    let plan_opts = PlanOptions { max_gpu_hours: a.stack.max_gpu_hours, ..PlanOptions::default() };
    let (rows, hosts) = super::plan::plan_opened(&opened, false, &plan_opts, &a.stack.cluster, p);
    let Some(hosts) = hosts else { return Err(Error::msg("no connection to the clusters")) };
    if !p.quiet || confirm {
        p.err(&crate::stacks::text(&rows, p.color_err()));
    }
    let mut failures: Vec<ExitStatus> =
        rows.iter().filter(|r| r.plan().is_none()).map(|_| ExitStatus::Failure).collect();
    // The stacks to apply: planned, with changes; by index into `opened`.
    let todo: Vec<usize> =
        (0..rows.len()).filter(|&i| rows[i].plan().is_some_and(crate::plan::Plan::has_changes)).collect();
    if todo.is_empty() {
        p.note("No changes.");
        return Ok(failures.first().copied().unwrap_or(ExitStatus::Success));
    }
    if confirm {
        let names: Vec<String> = todo.iter().map(|&i| format!("`{}`", rows[i].name)).collect();
        if !p.confirm_stacks(&names) {
            p.err("Apply cancelled.\n");
            return Ok(ExitStatus::Failure);
        }
    }
    // The Ok stacks of `opened`, in order: the index of each in `hosts`.
    let host_index: Vec<Option<usize>> = opened
        .iter()
        .scan(0, |k, o| {
            Some(o.stack.is_ok().then(|| {
                *k += 1;
                *k - 1
            }))
        })
        .collect();
    p.show_plan.set(false);
    for i in todo {
        let (Ok(stack), Some(h), Some(plan)) = (&opened[i].stack, host_index[i], rows[i].plan()) else { continue };
        p.out(&format!("=== {} ({}) ===\n", rows[i].name, rows[i].config))?;
        let result = hosts.get(h).and_then(|cluster| {
            let opts = ApplyOptions {
                plan: plan_opts.clone(),
                lock_timeout: a.lock_timeout.map(Duration::from_secs),
                confirm: false,
                command: super::super::args::command_line(),
            };
            // What was approved must still hold under the lock.
            let approved =
                if confirm { Some(PlanFile::new(&opened[i].config, &a.overrides, &plan_opts, plan)?) } else { None };
            ops::apply(stack, cluster, approved.as_ref(), &opts, p)
        });
        match result {
            Ok(Applied::Done(report)) => p.out(&(lines(&report.lines()) + &report.summary_line() + "\n"))?,
            Ok(Applied::NoChanges(_)) => p.out("No changes.\n")?,
            Ok(Applied::Declined(_)) => failures.push(ExitStatus::Failure),
            Ok(Applied::FailedOnCluster(report)) => {
                p.out(&lines(&report.lines()))?;
                failures.push(p.fail(&report.failure()));
            }
            Err(e) => failures.push(p.fail(&e)),
        }
    }
    Ok(aggregate(&failures))
}

/// The exit status of several stacks' failures: none → 0; the one status
/// they share; else 1.
fn aggregate(failures: &[ExitStatus]) -> ExitStatus {
    match failures.split_first() {
        None => ExitStatus::Success,
        Some((first, rest)) if rest.iter().all(|s| s == first) => *first,
        Some(_) => ExitStatus::Failure,
    }
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
