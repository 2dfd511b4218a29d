//! evalctl: declarative plan/apply for LLM evaluations on Slurm clusters.
//!
//! The crate is a compiler followed by a reconciler (ARCHITECTURE.md has
//! the map). The stages, in the order data flows:
//!
//! 1. [`config`]: load with spans → compose defaults → `-o` overrides →
//!    interpolate → validate ([`diag`] carries source locations throughout);
//! 2. [`catalog`]: task names → harness images;
//! 3. [`graph`]: the job DAG;
//! 4. [`render`]: job specs → sbatch scripts;
//! 5. [`plan`]: units, reconciliation against what a refresh saw, output
//!    formats; [`state`] is what apply recorded, [`status`] the unit view;
//! 6. `remote` (the programs run on a login node) over [`cluster`]
//!    (local or SSH).
//!
//! [`ops`] runs the workflows (compile, plan, apply, diff, status, wait,
//! logs, cancel, state) over those stages and is the library's entry
//! point; [`error`] holds the one error type and the exit statuses. The
//! library makes no semver promise: it exists for the `evalctl` binary and
//! its tests.

pub mod catalog;
pub mod cluster;
pub mod compare;
pub mod config;
pub mod diag;
pub mod error;
pub mod export;
pub mod gate;
pub mod graph;
pub mod jobid;
pub mod ops;
mod parallel;
pub mod plan;
pub mod render;
pub mod report;
pub mod results;
pub mod stacks;
pub mod state;
pub mod stats;
pub mod status;

mod cli;
#[doc(hidden)]
pub mod remote;
mod shell;
mod table;

pub use error::{Error, ExitStatus};

/// Runs the `evalctl` command line in this process and returns its exit status.
pub fn run_cli() -> ExitStatus {
    cli::main()
}
