//! `status`: where every unit of a stack stands, from one refresh with the
//! units' chain files: its state, every job id of its resume chain, time
//! used, attempts, the harness's progress and where results are.
//!
//! Resumed, preempted and timed-out chains are told apart from plain
//! pending work: a chain whose last link was cut short and whose next link
//! waits is `resuming`, not `pending`.

use crate::jobid::JobId;
use std::collections::BTreeMap;

use serde::Serialize;

use crate::plan::Observation;
use crate::remote::refresh::Refreshed;
use crate::state::{Observed, UnitKind};

/// One unit's status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnitStatus {
    pub unit: String,
    pub kind: UnitKind,
    /// pending, running, resuming, completed, failed, cancelled, stopped, held, not submitted.
    pub state: String,
    /// Why, when the state needs it (exit code, limit reached, ...).
    pub detail: String,
    /// Every job id of the chain, oldest first.
    pub jobs: Vec<JobId>,
    /// Links that started.
    pub links: usize,
    pub attempts: u32,
    /// Seconds of run time used by the chain's links.
    pub elapsed: u64,
    /// `done/total` from the harness's progress file.
    pub progress: Option<String>,
    /// Results directory, once results exist.
    pub results: Option<String>,
    /// The job of the latest link that started (else the latest job).
    pub current_job: Option<JobId>,
    /// That job's batch log.
    pub log: Option<String>,
}

impl UnitStatus {
    /// Whether the unit will not change any more without an apply.
    pub fn is_terminal(&self) -> bool {
        matches!(self.state.as_str(), "completed" | "failed" | "cancelled" | "stopped" | "not submitted")
    }
}

/// Builds the status of every unit of the config (`units`, in order, each
/// with the folder of its jobs' batch logs when that is not its own: a
/// pack's) and of units seen on the cluster that the config no longer has.
pub fn build(
    units: &[(String, UnitKind, Option<String>)],
    refreshed: &Refreshed,
    observations: &BTreeMap<String, Observation>,
    stack_dir: &str,
    walltime_s: u64,
    now: u64,
) -> Vec<UnitStatus> {
    let mut ids: Vec<(String, UnitKind, Option<String>)> = units.to_vec();
    for u in observations.keys() {
        if !ids.iter().any(|(i, _, _)| i == u) {
            let kind = refreshed.state.as_ref().and_then(|s| s.units.get(u)).map_or(UnitKind::Task, |s| s.kind);
            ids.push((u.clone(), kind, None));
        }
    }
    ids.into_iter()
        .map(|(unit, kind, batch_dir)| {
            let empty = Observation::default();
            let o = observations.get(&unit).unwrap_or(&empty);
            let chain = refreshed.chains.get(&unit).map(Vec::as_slice).unwrap_or(&[]);
            let (jobs, links, elapsed, open_since) = chain_facts(chain, walltime_s);
            let mut all_jobs = jobs;
            for j in &o.live_jobs {
                if !all_jobs.contains(j) {
                    all_jobs.push(*j);
                }
            }
            all_jobs.sort_unstable();
            let status_line = o.status.clone().unwrap_or_default();
            let mut words = status_line.split(' ');
            let word = words.next().unwrap_or("");
            let rest: Vec<&str> = words.skip(1).collect();
            let detail_of_status = rest.join(" ");
            let accounting =
                all_jobs.iter().rev().find_map(|j| refreshed.accounting.get(j)).cloned().unwrap_or_default();
            let (state, detail) = match o.observed {
                Observed::Held => ("held", "submitted by an apply that did not finish; apply replaces it".to_owned()),
                Observed::Running => ("running", String::new()),
                Observed::Pending if word == "interrupted" => {
                    ("resuming", format!("previous link {}", interrupt_reason(&detail_of_status)))
                }
                Observed::Pending => ("pending", String::new()),
                Observed::Completed => ("completed", String::new()),
                Observed::Failed => match word {
                    "stopped" if detail_of_status == "cancelled" => {
                        ("cancelled", "cancelled with evalctl cancel".into())
                    }
                    "stopped" => ("stopped", format!("{} reached", detail_of_status)),
                    "failed" => ("failed", detail_of_status.clone()),
                    "" if accounting.starts_with("CANCELLED") => ("cancelled", "cancelled before it ran".into()),
                    "" => (
                        "failed",
                        format!(
                            "never ran{}",
                            if accounting.is_empty() { String::new() } else { format!(" ({accounting})") }
                        ),
                    ),
                    _ => (
                        "failed",
                        format!(
                            "the chain ended without a successor{}",
                            if accounting.is_empty() { String::new() } else { format!(" (last job {accounting})") }
                        ),
                    ),
                },
                Observed::Absent => ("not submitted", String::new()),
            };
            let attempts = refreshed.state.as_ref().and_then(|s| s.units.get(&unit)).map_or(0, |u| u.attempts);
            let dir = format!("{stack_dir}/{unit}");
            let started = chain.iter().rev().find_map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                (f.get(1) == Some(&"start")).then(|| f.first().and_then(|x| x.parse::<JobId>().ok())).flatten()
            });
            let latest = started.or_else(|| all_jobs.last().copied());
            UnitStatus {
                unit: unit.clone(),
                kind,
                state: state.into(),
                detail,
                jobs: all_jobs,
                links,
                attempts,
                elapsed: elapsed + open_since.map_or(0, |s| now.saturating_sub(s).min(walltime_s)),
                progress: refreshed.progress.get(&unit).and_then(|p| progress_text(p)),
                results: refreshed.results.contains(&unit).then(|| format!("{dir}/artifacts")),
                current_job: latest,
                log: latest.map(|j| {
                    let batch = batch_dir.as_ref().map_or(dir.clone(), |b| format!("{stack_dir}/{b}"));
                    format!("{batch}/logs/slurm-{j}.out")
                }),
            }
        })
        .collect()
}

/// Why a link was cut short, from its status detail: the signal it got, or
/// its job's state when its evaluation ended.
fn interrupt_reason(detail: &str) -> &'static str {
    match detail.split(' ').next().unwrap_or("") {
        "USR1" | "TIMEOUT" => "reached its time limit",
        "PREEMPTED" => "was preempted",
        "NODE_FAIL" => "lost its node",
        "TERM" => "was stopped (time limit, preemption or node failure)",
        _ => "was cut short",
    }
}

/// Job ids, links started, seconds used by links that ended, and the start
/// of the last link when it has no end record (running, or cut short).
///
/// A link cut short (time limit, preemption, node failure) leaves a `start`
/// without an `end`: it used the time until the next link started, at most
/// one walltime, as the jobs' own resume gate counts it.
fn chain_facts(lines: &[String], walltime_s: u64) -> (Vec<JobId>, usize, u64, Option<u64>) {
    let mut jobs: Vec<JobId> = vec![];
    let mut links = 0;
    let mut used = 0;
    let mut open: Option<(JobId, u64)> = None;
    for l in lines {
        let f: Vec<&str> = l.split(' ').collect();
        let (Some(id), Some(event), Some(at)) =
            (f.first().and_then(|x| x.parse::<JobId>().ok()), f.get(1), f.get(2).and_then(|x| x.parse::<u64>().ok()))
        else {
            continue;
        };
        if !jobs.contains(&id) {
            jobs.push(id);
        }
        match *event {
            "start" => {
                if let Some((_, s)) = open {
                    used += at.saturating_sub(s).min(walltime_s);
                }
                links += 1;
                open = Some((id, at));
            }
            "end" => {
                if let Some((oid, s)) = open
                    && oid == id
                {
                    used += at.saturating_sub(s);
                    open = None;
                }
            }
            "submit" => {
                if let Some(next) = f.get(3).and_then(|x| x.parse::<JobId>().ok())
                    && !jobs.contains(&next)
                {
                    jobs.push(next);
                }
            }
            _ => {}
        }
    }
    (jobs, links, used, open.map(|(_, s)| s))
}

fn progress_text(json: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    Some(format!("{}/{}", v.get("done")?, v.get("total")?))
}

/// How many units are in each group of states (what `apply --wait` shows).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub completed: usize,
    pub running: usize,
    /// Pending or held.
    pub pending: usize,
    pub resuming: usize,
    /// Failed, cancelled or stopped.
    pub failed: usize,
    /// Units that will not change without an apply.
    pub ended: usize,
    pub total: usize,
}

impl Tally {
    pub fn of(rows: &[UnitStatus]) -> Tally {
        let count = |s: &[&str]| rows.iter().filter(|r| s.contains(&r.state.as_str())).count();
        Tally {
            completed: count(&["completed"]),
            running: count(&["running"]),
            pending: count(&["pending", "held"]),
            resuming: count(&["resuming"]),
            failed: count(&["failed", "cancelled", "stopped"]),
            ended: rows.iter().filter(|r| r.is_terminal()).count(),
            total: rows.len(),
        }
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} completed, {} running, {} pending, {} resuming, {} failed",
            self.completed, self.running, self.pending, self.resuming, self.failed
        )
    }
}

/// A table for people.
pub fn table(rows: &[UnitStatus]) -> String {
    let header = ["UNIT", "STATE", "JOBS", "ELAPSED", "ATTEMPTS", "PROGRESS", "DETAIL"];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.unit.clone(),
                r.state.clone(),
                r.jobs.iter().map(JobId::to_string).collect::<Vec<_>>().join(","),
                format!("{}:{:02}:{:02}", r.elapsed / 3600, r.elapsed / 60 % 60, r.elapsed % 60),
                r.attempts.to_string(),
                r.progress.clone().unwrap_or_else(|| "-".into()),
                match (&r.results, r.detail.is_empty()) {
                    (Some(p), true) => format!("results: {p}"),
                    (_, false) if r.state == "failed" => {
                        format!("{} (log: {})", r.detail, r.log.clone().unwrap_or_default())
                    }
                    _ => r.detail.clone(),
                },
            ]
        })
        .collect();
    crate::table::table(header, &cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_facts_count_links_time_and_jobs() {
        let lines: Vec<String> = [
            "10 submit 0 apply",
            "11 submit 0 apply",
            "10 start 100 first",
            "10 end 160 x",
            "11 start 200 resume",
            "11 submit 201 12",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (jobs, links, used, open) = chain_facts(&lines, 3600);
        assert_eq!(jobs, vec![10, 11, 12]);
        assert_eq!((links, used, open), (2, 60, Some(200)));
    }

    #[test]
    fn a_link_cut_short_counts_until_the_next_start_at_most_a_walltime() {
        let lines: Vec<String> =
            ["10 start 100 first", "11 start 190 resume", "11 submit 191 12", "12 start 400 resume"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        // 10 ran until 11 started (90 s); 11 was cut short and 12 only
        // started 210 s later: 11 used at most its walltime.
        let (jobs, links, used, open) = chain_facts(&lines, 120);
        assert_eq!(jobs, vec![10, 11, 12]);
        assert_eq!((links, used, open), (3, 90 + 120, Some(400)));
    }

    /// The shared table of chain-time cases (tests/runtime.rs checks the
    /// jobs' own rule, in lib.sh, against the same table).
    #[test]
    fn chain_time_follows_the_shared_table() {
        let table = include_str!("../tests/fixtures/chain_time.tsv");
        let mut cases = 0;
        for row in table.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let f: Vec<&str> = row.split('\t').collect();
            let [name, wall, now, want_used, want_links, want_jobs, _check, chain] = f[..] else {
                panic!("malformed row: {row:?}");
            };
            let num = |s: &str| s.parse::<u64>().unwrap_or_else(|_| panic!("{name}: `{s}` is not a number"));
            let (wall, now) = (num(wall), num(now));
            let lines: Vec<String> = chain.split(" | ").filter(|l| !l.is_empty()).map(str::to_owned).collect();
            let (jobs, links, used, open) = chain_facts(&lines, wall);
            // As `status` reports it: the open link counts until now, at most a walltime.
            let used = used + open.map_or(0, |s| now.saturating_sub(s).min(wall));
            let jobs: Vec<String> = jobs.iter().map(ToString::to_string).collect();
            assert_eq!(used, num(want_used), "{name}: used seconds");
            assert_eq!(links as u64, num(want_links), "{name}: links");
            assert_eq!(jobs.join(","), want_jobs, "{name}: jobs");
            cases += 1;
        }
        assert!(cases >= 10, "{cases} cases");
    }

    #[test]
    fn interruptions_say_why() {
        for (detail, why) in [
            ("USR1", "reached its time limit"),
            ("TIMEOUT exit 1", "reached its time limit"),
            ("PREEMPTED exit 0", "was preempted"),
            ("NODE_FAIL exit 0", "lost its node"),
            ("TERM", "was stopped (time limit, preemption or node failure)"),
            ("COMPLETING exit 0", "was cut short"),
            ("exit 143", "was cut short"),
        ] {
            assert_eq!(interrupt_reason(detail), why, "{detail}");
        }
    }
}
