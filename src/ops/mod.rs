//! Operations: every workflow of evalctl as a function over plain inputs
//! that returns plain data. No argument parsing and no printing happen
//! here: the command line (or a test, or another tool) chooses the inputs,
//! calls one operation and decides how to show its result. Messages and
//! questions that come up while an operation runs go through [`Reporter`].
//!
//! The pipeline each operation drives: `config` → `graph` → `render` →
//! `plan` (refresh, reconcile) → `apply` (lock, upload, submit, record),
//! with `cluster` as the only way to the login node.

pub mod apply;
pub mod cancel;
pub mod compare;
pub mod compile;
pub mod diff;
pub mod export;
pub mod logs;
pub mod plan;
pub mod planfile;
pub mod results;
pub mod secrets;
pub mod stacks;
pub mod state;
pub mod status;

pub use apply::{Applied, ApplyOptions, ApplyReport, apply};
pub use cancel::cancel;
pub use compile::{Compiled, ConfigId, Stack, compile};
pub use diff::diff;
pub use logs::LogFollower;
pub use plan::{Observe, PlanOptions, plan};
pub use planfile::PlanFile;
pub use status::{status, wait};

use crate::diag::Diagnostic;
use crate::plan::Plan;
use crate::status::UnitStatus;

/// How an operation talks to whoever runs it while it runs.
pub trait Reporter {
    /// Warnings that do not stop the operation (config lints, a local state
    /// copy that could not be written).
    fn warnings(&self, diags: &[Diagnostic]);
    /// A one-line message on what is happening.
    fn info(&self, message: &str);
    /// The plan `apply` is about to carry out.
    fn plan(&self, plan: &Plan);
    /// Whether to go ahead with `plan` (asked only when apply confirms).
    fn confirm(&self, plan: &Plan) -> bool;
    /// One polling round of `wait`: where every unit stands.
    fn waiting(&self, rows: &[UnitStatus]);
}

/// A reporter that shows nothing and never confirms (tests, batch use).
pub struct Silent;

impl Reporter for Silent {
    fn warnings(&self, _: &[Diagnostic]) {}
    fn info(&self, _: &str) {}
    fn plan(&self, _: &Plan) {}
    fn confirm(&self, _: &Plan) -> bool {
        false
    }
    fn waiting(&self, _: &[UnitStatus]) {}
}

/// What is said when a lock of a dead process is broken.
fn breaking(holder: &crate::remote::LockInfo) -> String {
    format!("breaking the lock of a process that is gone: {}", holder.describe())
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
