//! `export`: a stack's results to a file (JSON, CSV) or an MLflow
//! tracking server, or to the config's `execution.auto_export`
//! destinations.

use std::path::PathBuf;

use super::super::args::{ClusterArgs, ConfigArgs};
use super::super::printer::Printer;
use crate::error::{Error, ExitStatus, Result};
use crate::export::Destination;
use crate::ops::{self, Stack};

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub args: ConfigArgs,
    /// Where to: an MLflow server, or the results report as JSON or CSV.
    /// Default: the config's `execution.auto_export.destinations`.
    #[arg(long, value_enum)]
    pub to: Option<Destination>,
    /// MLflow tracking server URL (default: `export.mlflow.tracking_uri`,
    /// then MLFLOW_TRACKING_URI).
    #[arg(long, value_name = "URL")]
    pub tracking_uri: Option<String>,
    /// MLflow experiment (default: `export.mlflow.experiment_name`, then
    /// the stack name); created when missing.
    #[arg(long, value_name = "NAME")]
    pub experiment: Option<String>,
    /// Write the JSON or CSV report to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// MLflow: print what was done as a JSON document instead of lines.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

pub fn export(a: &ExportArgs, p: &Printer) -> Result<ExitStatus> {
    let stack = Stack::open(&a.args.config, &a.args.o.overrides, &p.sources, p)?;
    let destination = match a.to {
        Some(d) => d,
        None => {
            // Validation refused every other destination at its line.
            if !ops::export::auto_destinations(&stack).iter().any(|d| d == "mlflow") {
                return Err(Error::msg(
                    "name where to export: --to mlflow|json|csv (the config's `execution.auto_export` names no destination)",
                ));
            }
            Destination::Mlflow
        }
    };
    let mlflow = destination == Destination::Mlflow;
    if !mlflow && (a.tracking_uri.is_some() || a.experiment.is_some() || a.json) {
        return Err(Error::msg("--tracking-uri, --experiment and --json are options of --to mlflow"));
    }
    if mlflow && a.out.is_some() {
        return Err(Error::msg("--out writes the JSON or CSV report; --to mlflow sends to the server"));
    }
    // Before the round trip: a missing tracking URI fails at once.
    let sink = match destination {
        Destination::Json => Sink::Report(ops::results::Format::Json),
        Destination::Csv => Sink::Report(ops::results::Format::Csv),
        Destination::Mlflow => Sink::Mlflow(ops::export::MlflowTarget::of(
            &stack,
            a.tracking_uri.as_deref(),
            a.experiment.as_deref(),
            &crate::config::process_env,
        )?),
    };
    let cluster = p.connect(&stack, &a.cluster)?;
    let (report, files) = ops::results::results_and_files(&stack, cluster.as_ref(), stack.since())?;
    match sink {
        Sink::Report(format) => {
            let text = ops::results::render(&report, format);
            match &a.out {
                Some(path) => {
                    std::fs::write(path, text)
                        .map_err(|e| Error::msg(format!("cannot write {}: {e}", path.display())))?;
                    p.note(&format!("Wrote the results of {} task(s) to {}", count_units(&report), path.display()));
                }
                None => p.out(&text)?,
            }
            Ok(ExitStatus::Success)
        }
        Sink::Mlflow(target) => {
            let done = ops::export::to_mlflow(&report, &files, &target, None, ops::export::now_ms())?;
            if a.json {
                p.out(&(serde_json::to_string_pretty(&done).expect("plain data serializes") + "\n"))?;
            } else {
                p.note(&format!(
                    "MLflow {} experiment `{}` ({}):",
                    done.tracking_uri, done.experiment, done.experiment_id
                ));
                p.out(&done.lines().iter().map(|l| format!("{l}\n")).collect::<String>())?;
            }
            if done.failed() {
                p.err("evalctl: the export of some units failed\n");
                return Ok(ExitStatus::Failure);
            }
            Ok(ExitStatus::Success)
        }
    }
}

/// Where the results go, resolved before the round trip.
enum Sink {
    Report(ops::results::Format),
    Mlflow(ops::export::MlflowTarget),
}

fn count_units(report: &ops::results::Report) -> usize {
    let mut units: Vec<&str> = report.rows.iter().map(|r| r.unit.as_str()).collect();
    units.dedup();
    units.len()
}
