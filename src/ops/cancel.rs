//! `cancel`: stop whole resume chains (all units, or the ones named),
//! pending successors first, under the stack lock; results stay on disk.

use std::time::Duration;

use super::Stack;
use crate::apply::{LockInfo, driver};
use crate::cluster::Cluster;
use crate::diag::Diagnostic;
use crate::error::{Error, Result};
use crate::plan::{self, Observation, refresh};

/// Cancels the live chains of `names` (every unit when empty); returns the
/// units it cancelled. Names that are neither in the config nor on the
/// cluster are an error and nothing is cancelled.
pub fn cancel(
    stack: &Stack,
    cluster: &dyn Cluster,
    names: &[String],
    lock_timeout: Option<Duration>,
    command: &str,
) -> Result<Vec<String>> {
    let r = &stack.rendered;
    let lock = LockInfo::mine(command);
    let refreshed = driver::lock_and_refresh(cluster, &r.stack_dir, &r.stack, stack.since(), &lock, lock_timeout)?;
    let result = locked(stack, cluster, names, &refreshed, &lock);
    let unlocked = driver::unlock(cluster, &r.stack_dir, &lock.id);
    let cancelled = result?;
    unlocked?;
    Ok(cancelled)
}

fn locked(
    stack: &Stack,
    cluster: &dyn Cluster,
    names: &[String],
    refreshed: &refresh::Refreshed,
    lock: &LockInfo,
) -> Result<Vec<String>> {
    let r = &stack.rendered;
    let obs = refresh::observe(refreshed);
    let units = plan::units(r);
    let unknown: Vec<String> = names
        .iter()
        .filter(|n| !obs.contains_key(*n) && !units.iter().any(|u| &&u.id == n))
        .map(|u| format!("`{u}`"))
        .collect();
    if !unknown.is_empty() {
        return Err(Error::from(Diagnostic::error(
            None,
            format!("no unit {} in stack `{}`", unknown.join(", "), r.stack),
        )));
    }
    let chosen: Vec<(&String, &Observation)> =
        obs.iter().filter(|(u, o)| (names.is_empty() || names.contains(u)) && o.observed.is_live()).collect();
    let out = driver::run_program(cluster, &crate::apply::cancel_program(&r.stack_dir, &chosen, &lock.id))?;
    Ok(out.lines().filter_map(|l| l.strip_prefix("EVALCTL cancelled-unit ")).map(str::to_owned).collect())
}
