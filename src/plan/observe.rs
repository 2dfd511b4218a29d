//! Observation: what a refresh saw, turned into one [`Observation`] per
//! unit. Pure (no cluster), so every case is tested from reply text.

use std::collections::{BTreeMap, BTreeSet};

use super::{Observation, Unit};
use crate::remote::refresh::{Job, Refreshed, is_unfinished};
use crate::state::Observed;
use crate::state::State;

/// One observation per unit seen anywhere: jobs, status files, state.
pub fn observe(r: &Refreshed) -> BTreeMap<String, Observation> {
    let mut units: BTreeMap<String, Observation> = BTreeMap::new();
    let recorded: Vec<&String> = r.state.iter().flat_map(|s| s.units.keys()).collect();
    for u in recorded.iter().copied().chain(r.statuses.keys()).chain(r.jobs.iter().map(|j| &j.unit)) {
        units.entry(u.clone()).or_default();
    }
    // Each unit's jobs, in the order Slurm listed them.
    let mut jobs_of: BTreeMap<&str, Vec<&Job>> = BTreeMap::new();
    for j in &r.jobs {
        jobs_of.entry(j.unit.as_str()).or_default().push(j);
    }
    for (unit, o) in units.iter_mut() {
        let all: &[&Job] = jobs_of.get(unit.as_str()).map(Vec::as_slice).unwrap_or_default();
        let mut live: Vec<&Job> = all.iter().copied().filter(|j| is_unfinished(&j.state)).collect();
        // Pending successors first, so cancelling never wakes one up.
        live.sort_by_key(|j| (j.role != crate::render::Role::Resume.as_str(), std::cmp::Reverse(j.id)));
        o.live_jobs = live.iter().map(|j| j.id).collect();
        if let Some(j) = live.iter().chain(all.iter()).find(|j| j.script_hash.is_some()) {
            o.tag_script_hash = j.script_hash.clone();
            o.tag_result_hash = j.result_hash.clone();
        }
        o.status = r.statuses.get(unit).cloned();
        o.elapsed_s = r.elapsed.get(unit).copied();
        let status_word = o.status.as_deref().and_then(|s| s.split(' ').next()).unwrap_or("");
        let held = !live.is_empty()
            && live.iter().all(|j| j.reason.contains("JobHeldUser") || j.reason.contains("JobHeldAdmin"));
        let running = live.iter().any(|j| j.state != "PENDING");
        let recorded_here = r.state.as_ref().is_some_and(|s| s.units.contains_key(unit));
        o.observed = if held {
            Observed::Held
        } else if running {
            Observed::Running
        } else if !live.is_empty() && !matches!(status_word, "completed" | "failed" | "stopped") {
            Observed::Pending
        } else {
            match status_word {
                "completed" => Observed::Completed,
                "failed" | "stopped" | "interrupted" | "running" => Observed::Failed,
                // Submitted once, never started, nothing live: cancelled or refused at launch.
                _ if recorded_here || !all.is_empty() => Observed::Failed,
                _ => Observed::Absent,
            }
        };
    }
    units
}

/// The observations of the tasks of packs (the `packed` topology): a
/// task's status file says how it ended; while it has not ended, it is
/// where its pack's jobs are (held, pending, running). A task's live jobs
/// are its pack's, and any other live job its state records (a pack it was
/// in before the packing changed), so that work is cancelled rather than
/// run twice. The packs' own observations stay in the map.
pub fn with_packs(
    mut obs: BTreeMap<String, Observation>,
    units: &[Unit<'_>],
    state: Option<&State>,
) -> BTreeMap<String, Observation> {
    if units.iter().all(|u| u.pack.is_none()) {
        return obs;
    }
    let live: BTreeSet<crate::jobid::JobId> = obs.values().flat_map(|o| o.live_jobs.iter().copied()).collect();
    let empty = Observation::default();
    for u in units {
        let Some(pack) = &u.pack else { continue };
        let p = obs.get(pack).unwrap_or(&empty).clone();
        let o = obs.entry(u.id.clone()).or_default();
        let word = o.status.as_deref().and_then(|s| s.split(' ').next()).unwrap_or("");
        let recorded = state.and_then(|s| s.units.get(&u.id)).map(|r| r.jobs.as_slice()).unwrap_or_default();
        let mut jobs = p.live_jobs.clone();
        jobs.extend(recorded.iter().filter(|j| live.contains(j) && !p.live_jobs.contains(j)));
        o.live_jobs = jobs;
        o.tag_script_hash = p.tag_script_hash.clone();
        // The pack's tag carries the pack's result hash, not the task's.
        o.tag_result_hash = None;
        o.observed = match word {
            "completed" => Observed::Completed,
            "failed" | "stopped" => Observed::Failed,
            _ if p.observed.is_live() => p.observed,
            _ if !o.live_jobs.is_empty() => Observed::Running,
            _ => o.observed,
        };
    }
    obs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobid::JobId;
    use crate::remote::Replies;
    use crate::remote::refresh::read;

    #[test]
    fn parses_jobs_and_observes_units() {
        let out = "EVALCTL user u\n\
            EVALCTL status a completed%2011%20\n\
            EVALCTL status b interrupted%2020%20USR1\n\
            EVALCTL job 12|PENDING|Dependency|evalctl:st/a/resume\n\
            EVALCTL job 21|RUNNING|None|evalctl:st/b/resume@0123456789abcdef:fedcba9876543210\n\
            EVALCTL job 22|PENDING|Dependency|evalctl:st/b/resume\n\
            EVALCTL job 30|PENDING|JobHeldUser|evalctl:st/c/first@1111111111111111:2222222222222222\n\
            EVALCTL job 31|PENDING|JobHeldUser|evalctl:st/c/resume@1111111111111111:2222222222222222\n\
            EVALCTL job 50|RUNNING|None|evalctl:other/f/first\n\
            EVALCTL job 51|RUNNING|None|evalctl:st/g/first evalctl:other/g/first\n\
            EVALCTL job 52|RUNNING|None|st.g\n\
            EVALCTL job 53|RUNNING|None|x|y.evalctl:st/g/first\n\
            EVALCTL job 54|RUNNING|None|evalctl:st.evalctl:other/g/first\n\
            EVALCTL job 40|PENDING|Priority|proj.evalctl:st/d/first\n\
            EVALCTL job 9|COMPLETED|None|evalctl:st/e/first\n\
            EVALCTL acct 9|evalctl:st/e/first|COMPLETED\n\
            EVALCTL acct 50|evalctl:other/f/first|FAILED\n\
            EVALCTL acct 52|st.g|FAILED\n\
            EVALCTL acct 53|x|y.evalctl:st/g/first|FAILED\n\
            EVALCTL acct 55|evalctl:st/g/first@0123456789abcdef:fedcba98765432|TIMEOUT\n\
            EVALCTL acct 56|proj.evalctl:st/h/resume@0123456789abcdef:fedcba9876543210|CANCELLED by 0\n\
            EVALCTL sacct ok\nEVALCTL end\n";
        let r = read(&Replies::from_stdout(out.to_owned()), "st").unwrap();
        // Jobs of another stack, jobs whose names are not a well-formed
        // tag (a look-alike, an older name, a name cut by accounting) are
        // not this stack's, in squeue's list as in accounting.
        let ids: Vec<JobId> = r.jobs.iter().map(|j| j.id).collect();
        assert_eq!(ids, vec![12, 21, 22, 30, 31, 40, 9], "{:?}", r.jobs);
        let acct: Vec<(JobId, &str)> = r.accounting.iter().map(|(i, s)| (*i, s.as_str())).collect();
        assert_eq!(acct, vec![(JobId::job(9), "COMPLETED"), (JobId::job(56), "CANCELLED")]);
        assert!(r.sacct_available);
        let o = observe(&r);
        assert_eq!(o["a"].observed, Observed::Completed, "a pending successor of a completed link is not live work");
        assert_eq!(o["b"].observed, Observed::Running);
        assert_eq!(o["b"].live_jobs, vec![22, 21], "pending successor first");
        assert_eq!(o["b"].tag_script_hash.as_deref(), Some("0123456789abcdef"));
        assert_eq!(o["c"].observed, Observed::Held);
        assert_eq!(o["d"].observed, Observed::Pending);
        assert_eq!(o["e"].observed, Observed::Failed, "ended without a status: never ran");
        assert!(
            read(&Replies::from_stdout("EVALCTL user u\n".to_owned()), "st").is_err(),
            "a cut-off refresh is an error"
        );
    }
}
