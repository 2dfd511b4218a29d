//! `export`: a stack's results sent on from the machine evalctl runs on.
//! The scores and each task's `results.yml` come from one round trip
//! (`results`); to MLflow, every task unit with scores becomes one run
//! (see `export::mlflow` for what a run holds and when it is created,
//! updated or left alone). `auto_export` is the same export, driven by
//! `apply --wait` as each task completes ([`AutoExport`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::Stack;
use super::results::Report;
use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::export::http::{Server, redact};
use crate::export::mlflow::{self, Outcome, Settings, UnitResults};
use crate::state::UnitKind;
use crate::status::UnitStatus;

/// The version of the JSON document of `export --to mlflow --json`.
pub const EXPORT_VERSION: u32 = 1;

/// Where MLflow exports go: the server, the experiment and the settings.
#[derive(Clone, Debug)]
pub struct MlflowTarget {
    pub tracking_uri: String,
    pub experiment: String,
    pub settings: Settings,
}

impl MlflowTarget {
    /// The target of a stack: the tracking URI from `tracking_uri`, else
    /// `export.mlflow.tracking_uri` (a URL, or the name of an environment
    /// variable holding one), else `MLFLOW_TRACKING_URI`; the experiment
    /// from `experiment`, else `export.mlflow.experiment_name`, else the
    /// stack's name.
    pub fn of(
        stack: &Stack,
        tracking_uri: Option<&str>,
        experiment: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<MlflowTarget> {
        let settings = settings(stack);
        let uri = match (tracking_uri, &settings.tracking_uri) {
            (Some(u), _) => u.to_owned(),
            (None, Some(u)) if u.contains("://") => u.clone(),
            (None, Some(var)) => env(var).filter(|v| !v.is_empty()).ok_or_else(|| {
                Error::msg(format!(
                    "`export.mlflow.tracking_uri` (`{var}`) is neither a URL nor a set environment variable"
                ))
            })?,
            (None, None) => env("MLFLOW_TRACKING_URI").filter(|v| !v.is_empty()).ok_or_else(|| {
                Error::msg(
                    "no MLflow tracking URI: pass --tracking-uri, set `export.mlflow.tracking_uri` in the config, or set MLFLOW_TRACKING_URI",
                )
            })?,
        };
        // A URI no server can be reached at fails here, before any round trip.
        Server::new(&uri, env).map_err(Error::msg)?;
        let experiment = experiment
            .map(str::to_owned)
            .or_else(|| settings.experiment_name.clone())
            .unwrap_or_else(|| stack.loaded.stack.clone());
        Ok(MlflowTarget { tracking_uri: uri, experiment, settings })
    }
}

/// The stack's `export.mlflow` settings (validation reported their issues).
pub fn settings(stack: &Stack) -> Settings {
    let open = stack.loaded.config.export.as_ref().and_then(|e| e.get("mlflow")).and_then(|m| m.as_object());
    mlflow::settings(open).0
}

/// The destinations of `execution.auto_export`.
pub fn auto_destinations(stack: &Stack) -> Vec<String> {
    stack.loaded.config.execution.auto_export.as_ref().map(|a| a.destinations().to_vec()).unwrap_or_default()
}

/// What happened to one unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnitOutcome {
    Created,
    Updated,
    Unchanged,
    /// No scores: nothing to export.
    Skipped,
    /// The export of this unit failed (`notes` say why).
    Failed,
}

impl From<Outcome> for UnitOutcome {
    fn from(o: Outcome) -> UnitOutcome {
        match o {
            Outcome::Created => UnitOutcome::Created,
            Outcome::Updated => UnitOutcome::Updated,
            Outcome::Unchanged => UnitOutcome::Unchanged,
        }
    }
}

/// One unit's export.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UnitExport {
    pub unit: String,
    pub outcome: UnitOutcome,
    pub run_id: Option<String>,
    /// Metrics sent this time (0 when unchanged).
    pub metrics_logged: usize,
    pub notes: Vec<String>,
}

/// What an MLflow export did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Exported {
    pub version: u32,
    pub stack: String,
    /// The server, credentials hidden.
    pub tracking_uri: String,
    pub experiment: String,
    pub experiment_id: String,
    pub units: Vec<UnitExport>,
}

impl Exported {
    /// Whether some unit failed.
    pub fn failed(&self) -> bool {
        self.units.iter().any(|u| u.outcome == UnitOutcome::Failed)
    }

    /// One line per unit, for people.
    pub fn lines(&self) -> Vec<String> {
        self.units
            .iter()
            .map(|u| {
                let what = match (u.outcome, &u.run_id) {
                    (UnitOutcome::Skipped, _) => "skipped".to_owned(),
                    (UnitOutcome::Failed, _) => "failed".to_owned(),
                    (o, Some(id)) => format!("{} run {id} ({} metrics logged)", name(o), u.metrics_logged),
                    (o, None) => name(o).to_owned(),
                };
                let notes = if u.notes.is_empty() { String::new() } else { format!(": {}", u.notes.join("; ")) };
                format!("{}: {what}{notes}", u.unit)
            })
            .collect()
    }
}

fn name(o: UnitOutcome) -> &'static str {
    match o {
        UnitOutcome::Created => "created",
        UnitOutcome::Updated => "updated",
        UnitOutcome::Unchanged => "unchanged",
        UnitOutcome::Skipped => "skipped",
        UnitOutcome::Failed => "failed",
    }
}

/// The report's scores grouped by unit, in report order, with each
/// unit's results file.
pub fn unit_results(report: &Report, files: &BTreeMap<String, String>) -> Vec<UnitResults> {
    let mut out: Vec<UnitResults> = vec![];
    for r in &report.rows {
        if out.last().is_none_or(|u| u.unit != r.unit) {
            out.push(UnitResults {
                stack: report.stack.clone(),
                unit: r.unit.clone(),
                fingerprint: r.fingerprint.clone(),
                state: r.state.clone(),
                jobs: r.jobs.clone(),
                elapsed_s: r.elapsed_s,
                gpu_hours: r.gpu_hours,
                scores: vec![],
                results_file: files.get(&r.unit).filter(|t| !t.is_empty()).cloned(),
            });
        }
        let u = out.last_mut().expect("pushed above");
        u.scores.push(mlflow::Score {
            task: r.task.clone(),
            metric: r.metric.clone(),
            score: r.score.clone(),
            value: r.value,
            stderr: r.stderr,
            count: r.count,
        });
    }
    out
}

/// Exports a report to MLflow: every unit with scores (or, with `only`,
/// those of them named) becomes or updates one run; units without scores
/// are listed as skipped. A unit that fails is listed with why and the
/// others go on; the server not answering, or refusing the experiment or
/// the search, is an error.
pub fn to_mlflow(
    report: &Report,
    files: &BTreeMap<String, String>,
    target: &MlflowTarget,
    only: Option<&BTreeSet<String>>,
    now_ms: u64,
) -> Result<Exported> {
    let server = Server::new(&target.tracking_uri, &crate::config::process_env).map_err(Error::msg)?;
    let wanted = |unit: &str| only.is_none_or(|o| o.contains(unit));
    let experiment = server.experiment(&target.experiment).map_err(|e| Error::msg(e.to_string()))?;
    let runs = server.runs(&experiment, &report.stack).map_err(|e| Error::msg(e.to_string()))?;
    let mut units = vec![];
    for u in unit_results(report, files).iter().filter(|u| wanted(&u.unit)) {
        let mut notes = vec![];
        if u.results_file.is_none() && target.settings.log_artifacts {
            notes.push(format!("no {} to upload", mlflow::ARTIFACT));
        }
        let desired = match mlflow::desired(u, &target.settings) {
            Ok(d) => d,
            Err(e) => {
                notes.push(e);
                units.push(UnitExport {
                    unit: u.unit.clone(),
                    outcome: UnitOutcome::Failed,
                    run_id: None,
                    metrics_logged: 0,
                    notes,
                });
                continue;
            }
        };
        notes.extend(desired.notes.iter().cloned());
        let mine: Vec<mlflow::Run> =
            runs.iter().filter(|r| r.tags.get(mlflow::TAG_UNIT) == Some(&u.unit)).cloned().collect();
        let decision = mlflow::decide(&desired, &mine);
        let outcome = decision.outcome();
        let sent = if outcome == Outcome::Unchanged {
            Ok(decision.run_id.clone().unwrap_or_default())
        } else {
            server.carry_out(&experiment, &u.unit, &decision, desired.artifact.as_deref(), now_ms)
        };
        units.push(match sent {
            Ok(run_id) => UnitExport {
                unit: u.unit.clone(),
                outcome: outcome.into(),
                run_id: Some(run_id),
                metrics_logged: decision.metrics.len(),
                notes,
            },
            Err(e) => {
                notes.push(e.to_string());
                UnitExport {
                    unit: u.unit.clone(),
                    outcome: UnitOutcome::Failed,
                    run_id: decision.run_id,
                    metrics_logged: 0,
                    notes,
                }
            }
        });
    }
    for m in report.missing.iter().filter(|m| wanted(&m.unit)) {
        units.push(UnitExport {
            unit: m.unit.clone(),
            outcome: UnitOutcome::Skipped,
            run_id: None,
            metrics_logged: 0,
            notes: vec![format!("no scores ({}): {}", m.state, m.why)],
        });
    }
    Ok(Exported {
        version: EXPORT_VERSION,
        stack: report.stack.clone(),
        tracking_uri: redact(&target.tracking_uri),
        experiment: experiment.name,
        experiment_id: experiment.id,
        units,
    })
}

/// Gathers a stack's results (one round trip) and exports them to MLflow.
pub fn export_mlflow(
    stack: &Stack,
    cluster: &dyn Cluster,
    since: u64,
    target: &MlflowTarget,
    only: Option<&BTreeSet<String>>,
) -> Result<Exported> {
    let (report, files) = super::results::results_and_files(stack, cluster, since)?;
    to_mlflow(&report, &files, target, only, now_ms())
}

/// Milliseconds since the Unix epoch (MLflow's timestamps).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// `auto_export` during `apply --wait`: each polling round, the task units
/// that completed since the last round are exported (one more round trip
/// for their results). A failed export is reported and not tried again in
/// this wait; `evalctl export` retries it.
pub struct AutoExport {
    pub target: MlflowTarget,
    done: BTreeSet<String>,
    /// Every unit exported, in order.
    pub exported: Vec<UnitExport>,
    /// Errors of whole rounds (the server unreachable, ...).
    pub errors: Vec<String>,
}

impl AutoExport {
    pub fn new(target: MlflowTarget) -> AutoExport {
        AutoExport { target, done: BTreeSet::new(), exported: vec![], errors: vec![] }
    }

    /// Exports the units of `rows` that completed since the last round;
    /// returns what was exported this round.
    pub fn round(&mut self, stack: &Stack, cluster: &dyn Cluster, since: u64, rows: &[UnitStatus]) -> Vec<String> {
        let new: BTreeSet<String> = rows
            .iter()
            .filter(|r| r.kind == UnitKind::Task && r.state == "completed" && !self.done.contains(&r.unit))
            .map(|r| r.unit.clone())
            .collect();
        if new.is_empty() {
            return vec![];
        }
        self.done.extend(new.iter().cloned());
        match export_mlflow(stack, cluster, since, &self.target, Some(&new)) {
            Ok(e) => {
                let lines = e.lines();
                self.exported.extend(e.units);
                lines
            }
            Err(e) => {
                let units = new.into_iter().collect::<Vec<_>>().join(", ");
                let msg = format!("exporting {units} to MLflow failed: {}", e);
                self.errors.push(msg.clone());
                vec![msg]
            }
        }
    }

    /// Whether every export of the wait went through.
    pub fn ok(&self) -> bool {
        self.errors.is_empty() && self.exported.iter().all(|u| u.outcome != UnitOutcome::Failed)
    }
}
