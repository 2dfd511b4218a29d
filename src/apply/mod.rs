//! Apply: make the cluster match a plan, in a constant number of round
//! trips whatever the number of jobs: take the stack lock with the plan's
//! refresh (`crate::remote::lock`), then run one program that cancels,
//! writes, submits held, releases and records (`crate::remote::submit`).
//!
//! What stays here: resolving secrets for the submission ([`secrets`]),
//! the names the command layer uses today ([`driver`] and the re-exports
//! below), and small helpers for messages.

pub mod driver;
pub mod secrets;

use crate::plan::Observation;
use crate::render::{Rendered, RenderedJob};

// shim: removed when the command layer calls remote directly
pub use crate::remote::lock::{LockInfo, UNKNOWN_HOLDER, local_hostname};
// shim: removed when the command layer calls remote directly
pub use crate::remote::submit::{Inputs, Outcome, SecretValues};

/// The cancel program's text.
// shim: removed when the command layer calls remote directly
pub fn cancel_program(stack_dir: &str, units: &[(&String, &Observation)], lock_id: &str) -> String {
    crate::remote::cancel::program(stack_dir, units, lock_id).text().to_owned()
}

/// Short form of a hash for messages.
pub fn short_hash(h: &str) -> &str {
    crate::remote::layout::short(h)
}

/// Jobs of a rendered unit, for messages.
pub fn jobs_of<'a>(rendered: &'a Rendered, unit: &str) -> Vec<&'a RenderedJob> {
    rendered.jobs.iter().filter(|j| j.unit == unit).collect()
}
