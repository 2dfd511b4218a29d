//! `status` and `wait`: where every unit of a stack stands, from one
//! refresh with the units' chain files; `wait` repeats it with backoff
//! until every unit has ended.

use std::time::Duration;

use super::{Reporter, Stack};
use crate::cluster::Cluster;
use crate::error::Result;
use crate::plan;
use crate::remote;
use crate::remote::refresh::Refreshed;
use crate::state::UnitKind;
use crate::status::UnitStatus;

/// One refresh with chain details: every unit's status, config order first.
pub fn status(stack: &Stack, cluster: &dyn Cluster, since: u64) -> Result<Vec<UnitStatus>> {
    let r = &stack.rendered;
    let refreshed =
        remote::refresh::refresh_detail(cluster, &r.stack_dir, &r.stack, since, remote::refresh::Detail::Status)?;
    Ok(statuses(stack, &refreshed))
}

/// Every unit's status from a detailed refresh.
pub(super) fn statuses(stack: &Stack, refreshed: &Refreshed) -> Vec<UnitStatus> {
    let r = &stack.rendered;
    let all = plan::units(r);
    let mut obs = plan::observe::with_packs(plan::observe::observe(refreshed), &all, refreshed.state.as_ref());
    // The config's packs are no units: their tasks are.
    for pack in all.iter().filter_map(|u| u.pack.as_ref()) {
        obs.remove(pack);
    }
    let units: Vec<(String, UnitKind, Option<String>)> =
        all.iter().map(|u| (u.id.clone(), u.kind, u.pack.clone())).collect();
    crate::status::build(&units, refreshed, &obs, &r.stack_dir, r.walltime_s, super::now())
}

/// Polls until every unit is terminal (one refresh per round, 2 s doubling
/// to 30 s); each round goes to the reporter. Returns the final statuses.
pub fn wait(stack: &Stack, cluster: &dyn Cluster, since: u64, reporter: &dyn Reporter) -> Result<Vec<UnitStatus>> {
    wait_with(stack, cluster, since, reporter, &mut |_| {})
}

/// [`wait`], calling `each_round` with every round's statuses after the
/// reporter (`apply --wait` exports the tasks that completed).
pub fn wait_with(
    stack: &Stack,
    cluster: &dyn Cluster,
    since: u64,
    reporter: &dyn Reporter,
    each_round: &mut dyn FnMut(&[UnitStatus]),
) -> Result<Vec<UnitStatus>> {
    let mut delay = 2u64;
    loop {
        let rows = status(stack, cluster, since)?;
        reporter.waiting(&rows);
        each_round(&rows);
        if rows.iter().all(UnitStatus::is_terminal) {
            return Ok(rows);
        }
        std::thread::sleep(Duration::from_secs(delay));
        delay = (delay * 2).min(30);
    }
}
