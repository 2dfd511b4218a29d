//! Exporting a stack's results elsewhere: to a file (the `results` report
//! as JSON or CSV) or to an MLflow tracking server. evalctl exports from
//! the machine it runs on, after the results were gathered from the
//! cluster in one round trip; nothing is exported from the cluster itself
//! (unlike the launcher, which runs its exporters as jobs there).
//!
//! [`mlflow`] holds the protocol: the `export.mlflow` settings, what a
//! task unit's run should hold, and the pure decision of what to send
//! given what the server already has; [`http`] is the thin edge that
//! sends it. The orchestration (gather, decide, send, report) is
//! `ops::export`.

pub mod http;
pub mod mlflow;

/// Where `evalctl export` sends results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Destination {
    /// An MLflow tracking server (REST API): one run per task unit.
    Mlflow,
    /// The results report as JSON (as `results --format json`).
    Json,
    /// The results report as CSV (as `results --format csv`).
    Csv,
}

/// Destinations `execution.auto_export` may name: the ones evalctl sends
/// to a server. Others the launcher knows are refused with a reason.
pub const AUTO_DESTINATIONS: &[&str] = &["mlflow"];

/// Why evalctl cannot export to a destination the launcher knows.
pub fn unsupported(destination: &str) -> String {
    match destination {
        "wandb" | "gsheets" => format!(
            "evalctl does not export to `{destination}` (only `mlflow`): it cannot be tested without that service"
        ),
        "local" => "evalctl does not export to `local`: results already stay in each task's `artifacts/` folder; `evalctl export --to json|csv` writes a summary".into(),
        other => format!("`{other}` is not an exporter evalctl knows (only `mlflow`)"),
    }
}
