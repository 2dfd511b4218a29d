//! The crate's one error type and its one mapping to exit statuses.
//!
//! Problems about a place in a config are [`Diagnostic`]s (file:line:col);
//! everything else that stops an operation is a variant of [`Error`] with
//! typed fields. [`Error::exit_status`] is the only place an error becomes
//! an exit status, and [`Error::diagnostics`] the only place it becomes
//! text, so every command reports the same way.

use crate::cluster::ClusterError;
use crate::diag::Diagnostic;
use crate::remote::LockInfo;

/// How an `evalctl` process ends. The numbers are part of the interface
/// (CI pipelines branch on them) and never change meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum ExitStatus {
    /// The command did what was asked (`plan`: no changes, or changes without `--detailed-exitcode`).
    Success = 0,
    /// An error: bad config or arguments, the cluster failed, not every unit completed, apply declined.
    Failure = 1,
    /// `plan --detailed-exitcode`: the plan has changes.
    Changes = 2,
    /// Another apply holds the stack's lock (`--lock-timeout` to wait; `state unlock` if it is dead).
    Locked = 3,
    /// A saved plan no longer matches the config or the cluster; nothing was applied.
    StalePlan = 4,
    /// `compare --gate`: the gate failed (a score below its bound, or a regression beyond its allowance).
    GateFailed = 5,
    /// `compare --gate`: the gate cannot decide (a rule matches no score, or a regression is not significant).
    GateInconclusive = 6,
    /// `plan`/`apply --max-gpu-hours`: the plan may use more GPU-hours than the budget; nothing was applied.
    OverBudget = 7,
}

impl ExitStatus {
    /// Every status, for documentation and tests.
    pub const ALL: [ExitStatus; 8] = [
        ExitStatus::Success,
        ExitStatus::Failure,
        ExitStatus::Changes,
        ExitStatus::Locked,
        ExitStatus::StalePlan,
        ExitStatus::GateFailed,
        ExitStatus::GateInconclusive,
        ExitStatus::OverBudget,
    ];

    pub fn code(self) -> u8 {
        self as u8
    }

    /// One line on what the status means (the README's table is checked against these).
    pub fn meaning(self) -> &'static str {
        match self {
            ExitStatus::Success => "success (plan: no changes, or changes without `--detailed-exitcode`)",
            ExitStatus::Failure => "error: bad config or arguments, a cluster failure, a unit that did not complete",
            ExitStatus::Changes => "`plan --detailed-exitcode`: the plan has changes",
            ExitStatus::Locked => "another apply holds the stack's lock",
            ExitStatus::StalePlan => "the saved plan is stale: the config or the cluster changed; nothing applied",
            ExitStatus::GateFailed => "`compare --gate`: the gate failed",
            ExitStatus::GateInconclusive => "`compare --gate`: the gate cannot decide",
            ExitStatus::OverBudget => "`--max-gpu-hours`: the plan is over budget; nothing applied",
        }
    }
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(s: ExitStatus) -> std::process::ExitCode {
        std::process::ExitCode::from(s.code())
    }
}

/// Why an operation stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Problems to report, most with a source location.
    #[error("{}", first_message(.0))]
    Diagnostics(Vec<Diagnostic>),
    /// The stack is locked by someone else.
    #[error("the stack is locked: {}", .0.describe())]
    Locked(LockInfo),
    /// A saved plan no longer matches the config or the cluster.
    #[error("the saved plan is stale: {0}; nothing was applied")]
    Stale(String),
    /// The plan may use more GPU-hours than `--max-gpu-hours`.
    #[error("{0}; nothing was applied")]
    OverBudget(String),
}

fn first_message(d: &[Diagnostic]) -> String {
    d.first().map(|d| d.message.clone()).unwrap_or_else(|| "failed".into())
}

impl Error {
    /// A located or unlocated error message.
    pub fn msg(message: impl Into<String>) -> Error {
        Error::Diagnostics(vec![Diagnostic::error(None, message)])
    }

    pub fn exit_status(&self) -> ExitStatus {
        match self {
            Error::Diagnostics(_) => ExitStatus::Failure,
            Error::Locked(_) => ExitStatus::Locked,
            Error::Stale(_) => ExitStatus::StalePlan,
            Error::OverBudget(_) => ExitStatus::OverBudget,
        }
    }

    /// What to print: the error as diagnostics, with advice as notes.
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        match self {
            Error::Diagnostics(d) => d.clone(),
            Error::Locked(holder) => vec![Diagnostic::error(None, self.to_string()).with_note(format!(
                "wait with --lock-timeout SECS, or if that apply is dead: evalctl state unlock {}",
                holder.id
            ))],
            Error::Stale(_) => vec![
                Diagnostic::error(None, self.to_string())
                    .with_note("run `evalctl plan --out FILE` again and review it"),
            ],
            Error::OverBudget(_) => vec![Diagnostic::error(None, self.to_string()).with_note(
                "lower the walltime, max_walltime or max_resume_links, plan fewer units (--replace), or raise --max-gpu-hours",
            )],
        }
    }
}

impl From<Vec<Diagnostic>> for Error {
    fn from(d: Vec<Diagnostic>) -> Error {
        Error::Diagnostics(d)
    }
}

impl From<Diagnostic> for Error {
    fn from(d: Diagnostic) -> Error {
        Error::Diagnostics(vec![d])
    }
}

impl From<ClusterError> for Error {
    fn from(e: ClusterError) -> Error {
        Error::msg(e.to_string())
    }
}

impl From<String> for Error {
    fn from(e: String) -> Error {
        Error::msg(e)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's exit code table lists exactly these statuses.
    #[test]
    fn the_readme_documents_every_status() {
        let readme = include_str!("../README.md");
        let table = readme.split("| exit code | meaning |").nth(1).expect("README has the exit code table");
        let codes: Vec<u8> = table
            .lines()
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .filter_map(|l| l.trim_matches('|').split('|').next()?.trim().parse().ok())
            .collect();
        let ours: Vec<u8> = ExitStatus::ALL.iter().map(|s| s.code()).collect();
        assert_eq!(codes, ours, "README exit code table vs ExitStatus");
    }

    #[test]
    fn statuses_are_stable() {
        let codes: Vec<u8> = ExitStatus::ALL.iter().map(|s| s.code()).collect();
        assert_eq!(codes, [0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(Error::msg("x").exit_status(), ExitStatus::Failure);
        assert_eq!(Error::Stale("the config changed".into()).exit_status(), ExitStatus::StalePlan);
        let lock = LockInfo {
            id: "abc".into(),
            who: "u".into(),
            host: "h".into(),
            pid: 1,
            when: 0,
            command: "evalctl apply".into(),
        };
        let e = Error::Locked(lock);
        assert_eq!(e.exit_status(), ExitStatus::Locked);
        let d = e.diagnostics();
        assert!(d[0].message.starts_with("the stack is locked: lock abc held by u@h"), "{d:?}");
        assert!(d[0].notes[0].contains("evalctl state unlock abc"), "{d:?}");
    }
}
