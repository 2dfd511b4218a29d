//! `cancel`: stop the live chains of some units of a stack, under the stack
//! lock, and mark each unit stopped so nothing (a shared server, a plan)
//! waits for it. One round trip.

use crate::cluster::Cluster;
use crate::jobid::JobId;
use crate::plan::Observation;
use crate::shell::{Code, ShellWord};

use super::encoding::{ids, scancel, snippet};
use super::{Program, Reply, layout, lock, protocol};
use crate::error::Error;

/// The program that cancels the chains of `units` (pending successors
/// first, then the rest), waits until they are gone, and marks each unit
/// `stopped` (`cancelled-unit` for each).
pub fn program(stack_dir: &str, units: &[(&String, &Observation)], lock_id: &str) -> Program {
    let mut p = Program::new();
    p.push(snippet!("D={}\n", ShellWord::from(stack_dir)));
    p.push(lock::check_held(lock_id));
    if units.is_empty() {
        p.push(protocol::end());
        return p;
    }
    // live_jobs lists each unit's pending successors first.
    // Each job once: the tasks of a pack share its jobs.
    let mut first: Vec<JobId> = vec![];
    let mut rest: Vec<JobId> = vec![];
    let mut seen = std::collections::BTreeSet::new();
    for (_, o) in units {
        let (succ, others) = o.live_jobs.split_at(o.live_jobs.len().saturating_sub(1));
        first.extend(succ.iter().filter(|j| seen.insert(**j)));
        rest.extend(others.iter().filter(|j| seen.insert(**j)));
    }
    if !first.is_empty() {
        p.push(scancel(&first, false));
    }
    if !rest.is_empty() {
        p.push(scancel(&rest, false));
    }
    let all: Vec<JobId> = first.iter().chain(&rest).copied().collect();
    if !all.is_empty() {
        p.push(snippet!(
            "for _ in $(seq 1 60); do [ -z \"$(squeue -h -j {} 2>/dev/null)\" ] && break; sleep 1; done\n",
            ids(&all, Code(","))
        ));
    }
    p.code(layout::CANCEL_TIME);
    for (u, _) in units {
        let u = ShellWord::from(*u);
        p.push(layout::mark_cancelled(&u));
        p.push(protocol::cancelled_unit(&u));
    }
    p.push(protocol::end());
    p
}

/// Cancels the chains of `units` (the caller holds lock `lock_id`);
/// returns the units marked stopped.
pub fn run(
    cluster: &dyn Cluster,
    stack_dir: &str,
    units: &[(&String, &Observation)],
    lock_id: &str,
) -> Result<Vec<String>, Error> {
    let replies = super::run(cluster, &program(stack_dir, units, lock_id))?;
    if replies.contains(&Reply::LockLost) {
        return Err(Error::from("the stack lock was taken away before cancel ran; nothing was cancelled".to_owned()));
    }
    Ok(replies
        .iter()
        .filter_map(|r| match r {
            Reply::CancelledUnit(u) => Some(u.clone()),
            _ => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_kills_pending_successors_before_running_links() {
        let (a, b, c) = ("gsm8k".to_owned(), "mmlu".to_owned(), "done".to_owned());
        let running = Observation { live_jobs: crate::jobid::jobs([12, 11]), ..Default::default() };
        let pending_only = Observation { live_jobs: crate::jobid::jobs([21]), ..Default::default() };
        let ended = Observation::default();
        let p = program("/s", &[(&a, &running), (&b, &pending_only), (&c, &ended)], "L");
        let p = p.text();
        let lines: Vec<&str> = p.lines().filter(|l| l.starts_with("scancel")).collect();
        assert_eq!(lines, ["scancel 12", "scancel 11 21"], "{p}");
        assert!(p.contains("squeue -h -j 12,11,21"), "{p}");
        for u in ["gsm8k", "mmlu", "done"] {
            assert!(p.contains(&format!("evalctl_reply cancelled-unit {u}\n")), "{u} is marked: {p}");
        }
        // Many jobs: four `scancel` at once per group, successors first,
        // each id once.
        let many = Observation { live_jobs: crate::jobid::jobs(1000..1300), ..Default::default() };
        let p = program("/s", &[(&a, &many)], "L");
        let p = p.text();
        let lines: Vec<&str> = p.lines().filter(|l| l.starts_with("scancel")).collect();
        assert_eq!(lines.len(), 4 + 1, "{p}");
        assert!(lines[..4].iter().all(|l| l.ends_with(" &")), "{p}");
        let ids: Vec<u64> =
            lines[..4].iter().flat_map(|l| l.split(' ').filter_map(|w| w.parse::<u64>().ok())).collect();
        assert_eq!(ids, (1000..1299).collect::<Vec<_>>(), "the pending successors first");
        assert_eq!(lines[4], "scancel 1299", "then the running link: {p}");
        assert!(p.contains("wait \"$evalctl_sc0\" \"$evalctl_sc1\" \"$evalctl_sc2\" \"$evalctl_sc3\"\n"), "{p}");
        // Nothing live: no bare `scancel`, no wait.
        let p = program("/s", &[(&c, &ended)], "L");
        assert!(!p.text().contains("scancel") && !p.text().contains("squeue"), "{}", p.text());
    }
}
