//! `cancel`: stop whole resume chains (all units, or the ones named),
//! pending successors first, under the stack lock; results stay on disk.

use std::time::Duration;

use super::{Reporter, Stack};
use crate::cluster::Cluster;
use crate::diag::Diagnostic;
use crate::error::{Error, Result};
use crate::plan::{self, Observation};
use crate::remote::{self, LockInfo, refresh::Refreshed};

/// Cancels the live chains of `names` (every unit when empty; a task of a
/// pack: the whole pack); returns the units it cancelled. Names that are neither in the config nor on the
/// cluster are an error and nothing is cancelled.
pub fn cancel(
    stack: &Stack,
    cluster: &dyn Cluster,
    names: &[String],
    lock_timeout: Option<Duration>,
    command: &str,
    reporter: &dyn Reporter,
) -> Result<Vec<String>> {
    let r = &stack.rendered;
    let lock = LockInfo::mine(command);
    let on_break = |h: &LockInfo| reporter.info(&super::breaking(h));
    let refreshed =
        remote::lock::acquire(cluster, &r.stack_dir, &r.stack, stack.since(), &lock, lock_timeout, &on_break, &[])?;
    let result = locked(stack, cluster, names, &refreshed, &lock);
    let unlocked = remote::lock::release(cluster, &r.stack_dir, &lock.id);
    let cancelled = result?;
    unlocked?;
    Ok(cancelled)
}

fn locked(
    stack: &Stack,
    cluster: &dyn Cluster,
    names: &[String],
    refreshed: &Refreshed,
    lock: &LockInfo,
) -> Result<Vec<String>> {
    if let Some(st) = &refreshed.state {
        stack.check_owner(st)?;
    }
    let r = &stack.rendered;
    let units = plan::units(r);
    let obs = plan::observe::with_packs(plan::observe::observe(refreshed), &units, refreshed.state.as_ref());
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
    // The tasks of a pack share its jobs: naming one (or the pack) cancels
    // the pack and marks each of its tasks.
    let named_packs: std::collections::BTreeSet<&String> =
        units.iter().filter_map(|u| u.pack.as_ref().filter(|p| names.contains(&u.id) || names.contains(p))).collect();
    let mut names = names.to_vec();
    for u in &units {
        if let Some(pack) = u.pack.as_ref().filter(|p| named_packs.contains(p)) {
            for id in [&u.id, pack] {
                if !names.contains(id) {
                    names.push(id.clone());
                }
            }
        }
    }
    let chosen: Vec<(&String, &Observation)> =
        obs.iter().filter(|(u, o)| (names.is_empty() || names.contains(u)) && o.observed.is_live()).collect();
    remote::cancel::run(cluster, &r.stack_dir, &chosen, &lock.id)
}
