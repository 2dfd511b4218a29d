//! Apply's program: make the cluster match a plan in one round trip,
//! whatever the number of jobs. Its phases, in order:
//!
//! 0. check that this apply still holds the stack lock;
//! 1. cancel what the plan replaces or removes (pending successors first)
//!    and wait, bounded, until that work has stopped;
//! 2. write the scripts of every unit that submits or updates, and the
//!    secrets files (mode 0600) of those that submit;
//! 3. submit every job *held*, in topological order, with the real job ids
//!    of this apply in `--dependency`;
//! 4. release them all at once;
//! 5. write the state atomically (the job ids filled in on the cluster) and
//!    drop the lock.
//!
//! The program runs in two stages. The first (phases 0-2) carries every
//! file's content and runs no process per file. It then writes the second
//! (the file moves of submitting units, phases 3-5) to a file and `exec`s
//! a fresh bash on it: bash forks slowly while it holds megabytes of
//! program text (tens of milliseconds per fork at a few megabytes, measured),
//! and the second stage forks once per job for `sbatch`, so it runs in a
//! process that reads its program from a file a command at a time.
//!
//! A failure while submitting cancels the jobs this apply submitted (they
//! are held, so none has started); a crash leaves held jobs that the next
//! plan sees as `held` and replaces, or released jobs that it adopts by
//! the ownership tags in their names.

use crate::jobid::JobId;
use std::collections::{BTreeMap, BTreeSet};

use crate::cluster::Cluster;
use crate::graph::Dep;
use crate::plan::{Action, Change, Observation, Plan, Unit};
use crate::render::{Rendered, Role};
use crate::shell::{Code, ShellWord};
use crate::state::{JOBS_INDENT, Observed, State, UnitState};

use super::encoding::{Snippet, ids, raw_var, snippet};
use super::{Program, Replies, Reply, layout, lock, protocol};
use crate::error::Error;

/// Secrets files of one apply: per job directory and group, `NAME=value` pairs.
pub type SecretValues = BTreeMap<(String, String), Vec<(String, String)>>;

/// Everything apply needs besides the cluster.
pub struct Inputs<'a> {
    pub plan: &'a Plan,
    pub rendered: &'a Rendered,
    pub units: &'a [Unit<'a>],
    pub observations: &'a BTreeMap<String, Observation>,
    pub state: &'a State,
    pub secrets: &'a SecretValues,
    pub lock_id: &'a str,
    pub now: u64,
    /// The cluster's `MaxArraySize`, when known: arrays of up to one less
    /// element (else [`MAX_ARRAY_ELEMENTS`]).
    pub max_array_size: Option<u64>,
}

/// What the apply program did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// (unit, role, job id) in submission order.
    pub submitted: Vec<(String, String, JobId)>,
    pub cancelled: Vec<JobId>,
    pub updated: Vec<String>,
    pub error: Option<String>,
    pub lock_lost: bool,
}

/// The apply program and what it submits.
pub struct ApplyProgram {
    /// What is sent: the first stage, which carries the second.
    pub program: Program,
    /// The second stage (in `program` as data), for review and tests.
    pub second: Program,
    /// Units whose jobs are submitted, in order (index = job slot number).
    pub submitting: Vec<String>,
}

/// Shell functions of the apply program: `evalctl_abort MESSAGE` (report,
/// cancel what this apply submitted, drop the lock, stop) and the two file
/// writers.
fn functions() -> Snippet {
    let mut s = Snippet::default();
    s.code(Code("evalctl_abort() {\n  "));
    s.push(protocol::error(&Code("\"$1\"")));
    s.code(Code("  if [ ${#SUBMITTED[@]} -gt 0 ]; then\n    scancel \"${SUBMITTED[@]}\" 2>/dev/null\n    "));
    s.push(protocol::cancelled_own(&Code("\"${SUBMITTED[@]}\"")));
    s.code(Code("  fi\n  rm -f \"$L\"\n  "));
    s.push(protocol::end());
    s.code(Code(
        r#"  exit 0
}
evalctl_write() { printf '%s' "$2" >"$1" || evalctl_abort "cannot write $1"; }
evalctl_write_atomic() { { printf '%s' "$2" >"$1.tmp.$$" && mv -f "$1.tmp.$$" "$1"; } || evalctl_abort "cannot write $1"; }
"#,
    ));
    s
}

/// The remote program of one apply.
pub fn program(inp: &Inputs<'_>) -> ApplyProgram {
    let plan = inp.plan;
    let units: BTreeMap<&str, &Unit<'_>> = inp.units.iter().map(|u| (u.id.as_str(), u)).collect();

    // The second stage: everything that runs a process per unit or job.
    let mut second = Program::new();
    second.push(layout::stack_vars(&plan.stack_dir));
    // Bash keeps reading the file it runs after it is unlinked.
    second.code(Code("rm -f -- \"$0\"\n"));
    second.push(snippet!("SERIAL={}\nSUBMITTED=()\n", plan.serial + 1));
    second.push(functions());
    second.push(moves_phase(inp, &units));
    let (submit, var_of) = submit_phase(inp, &units);
    second.push(submit);
    if !var_of.of.is_empty() {
        second.push(release_phase());
    }
    let submitting = submitting(plan);
    second.push(state_phase(inp, &submitting, &var_of));
    second.push(snippet!("evalctl_write_atomic {} \"$STATE\"\n", layout::STATE_PATH));
    second.push(protocol::state_written());
    second.push(prune_arrays(inp, &var_of));
    second.code(Code("rm -f \"$L\"\n"));
    second.push(protocol::end());

    let mut p = Program::new();
    p.push(layout::stack_vars(&plan.stack_dir));
    p.code(Code("SUBMITTED=()\n"));
    p.push(lock::check_held(inp.lock_id));
    p.push(functions());
    p.push(cancel_phase(plan));
    p.push(files_phase(inp, &units));
    p.push(raw_var(Code("EVALCTL_NEXT"), &second.full_text()));
    p.code(Code(
        "F=\"$D/.evalctl/apply.$$.sh\"\numask 022\nevalctl_write \"$F\" \"$EVALCTL_NEXT\"\nexec \"$BASH\" \"$F\"\n",
    ));
    ApplyProgram { program: p, second, submitting }
}

/// Units that submit, in plan order.
fn submitting(plan: &Plan) -> Vec<String> {
    plan.changes.iter().filter(|c| c.action.submits()).map(|c| c.unit.clone()).collect()
}

/// Phase 1. Cancel what is replaced or removed: pending successors come first in each list.
fn cancel_phase(plan: &Plan) -> Snippet {
    let mut cancel: Vec<JobId> = vec![];
    for c in &plan.changes {
        if matches!(c.action, Action::Cancel | Action::Replace | Action::Rerun | Action::Retry) {
            cancel.extend(&c.cancel_jobs);
        }
    }
    let mut s = Snippet::default();
    if cancel.is_empty() {
        return s;
    }
    s.push(super::encoding::scancel(&cancel, true));
    s.push(protocol::cancelled(&ids(&cancel, Code(" "))));
    // Cancelled work may still be writing; wait (bounded) until it is gone.
    s.push(snippet!(
        "for _ in $(seq 1 60); do [ -z \"$(squeue -h -j {} -t running,completing,configuring 2>/dev/null)\" ] && break; sleep 1; done\n",
        ids(&cancel, Code(","))
    ));
    s
}

/// Phase 2. Files: scripts of every unit that submits or updates, secrets of
/// submitting ones. Written with shell builtins (no process per file); the
/// runtime every script carries is sent once. Scripts a running job may
/// read (an update) are written beside their place and moved in by the
/// second stage, at once.
fn files_phase(inp: &Inputs<'_>, units: &BTreeMap<&str, &Unit<'_>>) -> Snippet {
    let mut s = Snippet::default();
    let changing: Vec<(&Change, &str, &Unit<'_>)> = inp
        .plan
        .changes
        .iter()
        .filter(|c| c.action.submits() || c.action == Action::Update)
        .filter_map(|c| {
            let u = *units.get(c.unit.as_str())?;
            Some((c, u.jobs.first()?.dir.as_str(), u))
        })
        .collect();
    if changing.is_empty() {
        return s;
    }
    // The tasks of a pack share its folder's scripts and secrets: written
    // once (by the first of them that submits, else the first that updates).
    let mut writing: Vec<(&Change, &str, &Unit<'_>)> = vec![];
    for (c, dir, u) in &changing {
        match writing.iter_mut().find(|(_, d, _)| d == dir) {
            Some(w) if c.action.submits() && !w.0.action.submits() => *w = (c, dir, u),
            Some(_) => {}
            None => writing.push((c, dir, u)),
        }
    }
    s.push(raw_var(Code("EVALCTL_RUNTIME"), crate::render::RUNTIME));
    s.code(Code("umask 022\n"));
    let mut dirs: Vec<ShellWord> = writing.iter().map(|(_, dir, _)| ShellWord::from(*dir)).collect();
    dirs.extend(changing.iter().filter(|(_, dir, u)| u.dir != *dir).map(|(_, _, u)| ShellWord::from(&u.dir)));
    s.push(batched(&dirs, "mkdir -p", &["/logs", "/artifacts"], "cannot create the job directories"));
    let secret_dirs: Vec<ShellWord> = writing
        .iter()
        .filter(|(c, dir, _)| c.action.submits() && secrets_of(inp.secrets, dir).next().is_some())
        .map(|(_, dir, _)| ShellWord::from(*dir))
        .collect();
    // The directory is closed before any secret is written into it.
    s.code(Code("umask 077\n"));
    s.push(batched(&secret_dirs, "mkdir -p", &["/secrets"], "cannot create a secrets directory"));
    s.push(batched(&secret_dirs, "chmod 0700", &["/secrets"], "cannot create a secrets directory"));
    s.code(Code("umask 022\n"));
    let mut secret_files: Vec<ShellWord> = vec![];
    for (c, dir, u) in &writing {
        s.push(snippet!("U={}\n", ShellWord::from(*dir)));
        let suffix = if c.action == Action::Update { NEW_SUFFIX } else { "" };
        // The links of a task share what follows their heads: sent once.
        let mut sent_tail = None;
        for j in &u.jobs {
            let (head, tail) = j.script.parts();
            s.push(raw_var(Code("H"), head));
            if sent_tail != Some(tail) {
                s.push(raw_var(Code("T"), tail));
                sent_tail = Some(tail);
            }
            let name = ShellWord::from(format!("{}{suffix}", j.script_name));
            s.push(snippet!("evalctl_write \"$U\"/{} \"$H$EVALCTL_RUNTIME$T\"\n", name));
        }
        if c.action.submits() {
            for ((_, group), values) in secrets_of(inp.secrets, dir) {
                let file = format!("{dir}/secrets/{group}.env");
                s.push(raw_var(Code("S"), &crate::render::secrets_file(values)));
                s.push(snippet!("umask 077\nevalctl_write {} \"$S\"\nS=\numask 022\n", ShellWord::from(&file)));
                secret_files.push(ShellWord::from(file));
            }
        }
    }
    s.push(batched(&secret_files, "chmod 0600", &[""], "cannot write a secrets file"));
    s
}

/// The secrets files of the job directory `dir`: (directory, group) and values.
fn secrets_of<'a>(
    secrets: &'a SecretValues,
    dir: &'a str,
) -> impl Iterator<Item = (&'a (String, String), &'a Vec<(String, String)>)> {
    secrets.iter().filter(move |((d, _), _)| d == dir)
}

/// What an update's script is written as until the second stage moves it in.
const NEW_SUFFIX: &str = ".evalctl-new";

/// `COMMAND` over every path (each followed by each suffix), 128 paths per
/// process; the program stops with `error` when one fails.
fn batched(paths: &[ShellWord], command: &'static str, suffixes: &[&'static str], error: &'static str) -> Snippet {
    let mut s = Snippet::default();
    for chunk in paths.chunks(128) {
        let mut words = Snippet::default();
        for p in chunk {
            for suffix in suffixes {
                words.push(snippet!(" {}{}", p, Code(suffix)));
            }
        }
        s.push(snippet!("{}{} || evalctl_abort {}\n", Code(command), words, ShellWord::from(error)));
    }
    s
}

/// Second stage, before submission: the previous run's files of submitting
/// units move aside (chain; artifacts of a rerun) or go (status, endpoint),
/// and updated scripts move into place.
fn moves_phase(inp: &Inputs<'_>, units: &BTreeMap<&str, &Unit<'_>>) -> Snippet {
    let mut s = Snippet::default();
    let mut stale = false;
    // A pack's folder (its jobs' chain and status), besides its tasks':
    // once per pack submitted; its updated scripts are moved in once.
    let mut packs_submitted: BTreeSet<&str> = BTreeSet::new();
    let mut packs_updated: BTreeSet<&str> = BTreeSet::new();
    let submitting_packs: BTreeSet<&str> = inp
        .plan
        .changes
        .iter()
        .filter(|c| c.action.submits())
        .filter_map(|c| units.get(c.unit.as_str())?.pack.as_deref())
        .collect();
    for c in &inp.plan.changes {
        let Some(u) = units.get(c.unit.as_str()) else { continue };
        if let Some(pack) = u.pack.as_deref() {
            // A task the plan does not run again, in a pack it submits: the
            // pack's script skips it only when its status says it ended.
            let word = inp.observations.get(&c.unit).and_then(|o| o.status.as_deref()).unwrap_or("");
            let ended = matches!(word.split(' ').next(), Some("completed" | "failed" | "stopped"));
            if !c.action.submits() && !ended && submitting_packs.contains(pack) {
                let dir = ShellWord::from(&u.dir);
                s.push(snippet!(
                    "{{ mkdir -p {} && printf 'failed 0 not-run-again\\n' >{}/status; }} || evalctl_abort {}\n",
                    dir.clone(),
                    dir,
                    ShellWord::from(format!("cannot write {}/status", u.dir))
                ));
            }
            let first = match c.action {
                a if a.submits() => packs_submitted.insert(pack),
                Action::Update => packs_updated.insert(pack),
                _ => false,
            };
            if c.action.submits()
                && first
                && let Some(job) = u.jobs.first()
            {
                s.push(snippet!("U={}\n", ShellWord::from(&job.dir)));
                s.code(Code(MOVE_CHAIN_ASIDE));
            }
            if c.action == Action::Update && !first {
                continue;
            }
        }
        let dir = ShellWord::from(&u.dir);
        if c.action.submits() {
            s.push(snippet!("U={}\n", dir));
            if c.action == Action::Rerun {
                // Old results are kept beside the new ones.
                s.code(Code("A=(\"$U\"/artifacts/*)\nif [ ${#A[@]} -gt 0 ]; then mv \"$U/artifacts\" \"$U/artifacts.$SERIAL\" && mkdir -p \"$U/artifacts\"; fi\n"));
            }
            s.code(Code(MOVE_CHAIN_ASIDE));
            stale = true;
        } else if c.action == Action::Update {
            for j in &u.jobs {
                let dir = ShellWord::from(&j.dir);
                let name = ShellWord::from(j.script_name);
                let new = ShellWord::from(format!("{}{NEW_SUFFIX}", j.script_name));
                s.push(snippet!(
                    "mv -f {}/{} {}/{} || evalctl_abort {}\n",
                    dir,
                    new,
                    dir,
                    name,
                    ShellWord::from(format!("cannot write {}/{}", j.dir, j.script_name))
                ));
            }
            s.push(protocol::updated(&ShellWord::from(&c.unit)));
        }
    }
    if stale {
        let mut head = snippet!("shopt -s nullglob dotglob\nSTALE=()\n");
        head.push(s);
        s = head;
        s.code(Code("if [ ${#STALE[@]} -gt 0 ]; then rm -f -- \"${STALE[@]}\"; fi\nshopt -u nullglob dotglob\n"));
    }
    s
}

/// In the folder `$U`: the chain file moves aside (`chain.<serial>`), and
/// the status, endpoint and lane files are marked stale (removed together).
const MOVE_CHAIN_ASIDE: &str = "if [ -f \"$U/chain\" ]; then mv -f \"$U/chain\" \"$U/chain.$SERIAL\"; fi\nfor f in \"$U/status\" \"$U/endpoint\" \"$U/lane-next\"; do if [ -e \"$f\" ]; then STALE+=(\"$f\"); fi; done\n";

/// What a first link waits for in its lane (`execution.max_concurrent`):
/// the chain before it in the lane, as jobs of this apply (rendered ids:
/// a first link and its resume link) or live jobs of earlier applies, and
/// the folders whose chains tell the runtime about later links
/// (`lane-next`).
#[derive(Clone, Default)]
struct LaneWait {
    rendered: Vec<String>,
    live: Vec<JobId>,
    dirs: Vec<String>,
}

/// Dependency lanes for `execution.max_concurrent` = M: the first links
/// this apply submits, in order, go round M lanes; each waits (`afterany`)
/// for the chain before it in its lane to end. Chains that already run (or
/// wait) are the lanes' first occupants, so a later apply keeps the limit.
/// A chain's runtime moves its lane successor's wait to each resume link
/// it queues (`lane-next` in its folder), so no more than M chains run at
/// once, whatever their links. By rendered id of the first link.
fn lanes<'a>(inp: &'a Inputs<'_>, submit_set: &BTreeSet<&str>) -> BTreeMap<&'a str, LaneWait> {
    let mut out = BTreeMap::new();
    // With job arrays, `max_concurrent` is each array's throttle instead.
    let Some(m) = inp.rendered.max_concurrent.filter(|m| *m > 0 && !inp.rendered.job_arrays) else { return out };
    let mut lanes: Vec<LaneWait> = vec![LaneWait::default(); m];
    let mut seen: BTreeSet<JobId> = BTreeSet::new();
    let mut heads = 0;
    for u in inp.units.iter().filter(|u| u.kind == crate::state::UnitKind::Task && !submit_set.contains(u.id.as_str()))
    {
        let Some(o) = inp.observations.get(&u.id).filter(|o| o.observed.is_live()) else { continue };
        // A pack's tasks share its jobs: one chain.
        if o.live_jobs.is_empty() || !o.live_jobs.iter().all(|j| seen.insert(*j)) {
            continue;
        }
        let lane = &mut lanes[heads % m];
        lane.live.extend(&o.live_jobs);
        lane.dirs.extend(u.jobs.first().map(|j| j.dir.clone()));
        heads += 1;
    }
    let firsts = inp
        .rendered
        .jobs
        .iter()
        .filter(|j| j.role == crate::render::Role::First && j.units().iter().any(|u| submit_set.contains(u)));
    for (k, job) in firsts.enumerate() {
        let lane = &mut lanes[k % m];
        if !lane.rendered.is_empty() || !lane.live.is_empty() {
            out.insert(job.id.as_str(), std::mem::take(lane));
        }
        *lane = LaneWait {
            rendered: vec![job.id.clone(), format!("{}.resume", job.id)],
            live: vec![],
            dirs: vec![job.dir.clone()],
        };
    }
    out
}

/// `"$J<n>"`: the id of the n-th rendered job, once submitted.
fn job_var(n: usize) -> Snippet {
    snippet!("\"$J{}\"", n)
}

/// How many `sbatch` run at once. Submission is bound by each call's round
/// trip to the controller, which serves several clients at a time: on the
/// test cluster two or four parallel loops submit 1.5x as fast as one.
const SUBMITTERS: usize = 4;

/// One job to submit: its `sbatch` line (run in a submitter), and what the
/// program does once its id is known.
struct Submission {
    n: usize,
    level: usize,
    sbatch: Snippet,
    after: Snippet,
}

/// Phase 3. Submit held, in topological order, with real ids in --dependency.
/// Jobs are submitted level by level (a job's level is one more than that
/// of the latest job of this apply it waits for); each level's jobs are
/// split among [`SUBMITTERS`] background submitters that write `N ID`
/// lines, or `E MESSAGE` and stop every submitter, into the work directory
/// `$W`. Returns the program and, by rendered job id, the number of the
/// shell variable `J<n>` that holds its Slurm id.
fn submit_phase(inp: &Inputs<'_>, units: &BTreeMap<&str, &Unit<'_>>) -> (Snippet, Vars) {
    let submitting = submitting(inp.plan);
    let submit_set: BTreeSet<&str> = submitting.iter().map(String::as_str).collect();
    let mut var_of: BTreeMap<String, usize> = BTreeMap::new();
    let mut level_of: BTreeMap<&str, usize> = BTreeMap::new();
    let mut chains: BTreeMap<&str, usize> = BTreeMap::new();
    let mut jobs: Vec<Submission> = vec![];
    let lane_of = lanes(inp, &submit_set);
    let mut arrays: BTreeMap<ArrayKey, ArrayGroup> = BTreeMap::new();
    let unit_of_job: BTreeMap<&str, &str> =
        inp.rendered.jobs.iter().map(|j| (j.id.as_str(), j.unit.as_str())).collect();
    for (n, job) in inp.rendered.jobs.iter().enumerate() {
        // A pack's jobs are submitted when any of its tasks is.
        let Some(unit) = job.units().into_iter().filter(|u| submit_set.contains(u)).find_map(|u| units.get(u)) else {
            continue;
        };
        // An array element queues its own resume link.
        if !inp.rendered.apply_submits(job) {
            continue;
        }
        let mut deps = Snippet::default();
        let mut level = 0;
        // A resume link finds the job it resumes in the chain file (never in
        // its environment: `--export` on the command line would override the
        // user's `sbatch_extra_flags.export`).
        let mut predecessor = None;
        for (dep_id, how) in &job.deps {
            let id = match var_of.get(dep_id) {
                Some(v) => {
                    level = level.max(level_of.get(dep_id.as_str()).map_or(0, |l| l + 1));
                    job_var(*v)
                }
                None => match live_job_of(inp, &unit_of_job, dep_id) {
                    Some(id) => snippet!("{}", id),
                    // A dependency that neither runs nor is submitted now: no wait.
                    None => continue,
                },
            };
            deps.push(snippet!("{}{}:{}", Code(if deps.is_empty() { "" } else { "," }), Code(how.slurm()), id));
            if *how == Dep::AfterNotOk {
                predecessor = Some(id);
            }
        }
        // Its lane: afterany on the chain before it; that chain's folders
        // name this job and its own dependencies for the runtime.
        let mut lane_next = Snippet::default();
        if let Some(wait) = lane_of.get(job.id.as_str()) {
            let base = if deps.is_empty() { snippet!("''") } else { deps.clone() };
            let mut ids = Snippet::default();
            for pred in &wait.rendered {
                if let Some(v) = var_of.get(pred) {
                    level = level.max(level_of.get(pred.as_str()).map_or(0, |l| l + 1));
                    ids.push(snippet!(":{}", job_var(*v)));
                }
            }
            for id in &wait.live {
                ids.push(snippet!(":{}", id));
            }
            if !ids.is_empty() {
                deps.push(snippet!("{}afterany{}", Code(if deps.is_empty() { "" } else { "," }), ids));
                for dir in &wait.dirs {
                    lane_next.push(snippet!(
                        "printf '%s %s\\n' {} {} >{}/lane-next || evalctl_abort {}\n",
                        job_var(n),
                        base.clone(),
                        ShellWord::from(dir),
                        ShellWord::from(format!("cannot write {dir}/lane-next"))
                    ));
                }
            }
        }
        let dep = if deps.is_empty() { Snippet::default() } else { snippet!(" --dependency={}", deps) };
        let tag = layout::submit_name(&job.job_name, &unit.script_hash, job.result_hash());
        // Chain records are gathered per unit and written once each, before
        // the release (no job reads its chain before it starts).
        let var = job_var(n);
        let next = chains.len();
        let c = *chains.entry(job.dir.as_str()).or_insert(next);
        let mut after =
            snippet!("printf -v R '%s submit %s apply\\n' {} \"${{EPOCHSECONDS:-$NOW}}\"\nC{}+=$R\n", var, c);
        if let Some(prev) = &predecessor {
            after.push(snippet!(
                "printf -v R '%s submit %s %s\\n' {} \"${{EPOCHSECONDS:-$NOW}}\" {}\nC{}+=$R\n",
                prev,
                var,
                c
            ));
        }
        after.push(protocol::submitted(&ShellWord::from(&job.unit), &ShellWord::from(job.role.as_str()), &var));
        after.push(lane_next);
        var_of.insert(job.id.clone(), n);
        level_of.insert(job.id.as_str(), level);
        // A first link with job arrays: submitted with its group, below.
        if inp.rendered.job_arrays && job.role == Role::First {
            let key = ArrayKey {
                level,
                header: array_header(job.script.before()),
                dep,
                comment: job.comment.clone(),
                script: job.script_name,
            };
            let group =
                arrays.entry(key).or_insert_with(|| ArrayGroup { name: array_name(&job.job_name), members: vec![] });
            group.members.push(ArrayMember { n, dir: job.dir.clone(), tag, after });
            continue;
        }
        // The ownership tag is in the name, the user's comment goes verbatim
        // (both as shell words on the command line, where sbatch takes them
        // as they are and they win over the script's `#SBATCH` lines).
        let comment = match &job.comment {
            Some(c) => snippet!(" --comment={}", ShellWord::from(c)),
            None => Snippet::default(),
        };
        let kill = Code(if predecessor.is_some() { " --kill-on-invalid-dep=yes" } else { "" });
        let failed = ShellWord::from(format!("sbatch of {} failed: ", job.id));
        let sbatch = snippet!(
            "[ -e \"$W/stop\" ] && exit 0\nif J=$(cd {} && sbatch --parsable --hold --job-name={}{}{}{} {} 2>&1) && J=${{J%%;*}} && [[ $J =~ ^[0-9]+$ ]]; then echo {} \"$J\"; else : >\"$W/stop\"; echo E {}\"${{J//$'\\n'/ }}\"; exit 0; fi\n",
            ShellWord::from(&job.dir),
            ShellWord::from(&tag),
            comment,
            dep,
            kill,
            ShellWord::from(job.script_name),
            n,
            failed
        );
        jobs.push(Submission { n, level, sbatch, after });
    }
    let mut vars = Vars { of: var_of, ..Default::default() };
    let first_var = inp.rendered.jobs.len();
    for (key, group) in arrays {
        // Slurm refuses arrays past `MaxArraySize` (1,001 indexes by default).
        let mut members = group.members.into_iter().peekable();
        while members.peek().is_some() {
            let part: Vec<ArrayMember> = members.by_ref().take(array_cap(inp.max_array_size)).collect();
            let n = first_var + vars.arrays.len();
            vars.elements.extend(part.iter().map(|m| m.n));
            vars.arrays.push(n);
            jobs.push(array_submission(inp, n, &key, &group.name, part));
        }
    }
    let mut s = Snippet::default();
    if jobs.is_empty() {
        return (s, vars);
    }
    s.code(Code(SUBMIT_FUNCTIONS));
    if !vars.elements.is_empty() {
        s.push(snippet!(
            "mkdir -p {} || evalctl_abort 'cannot create the job arrays folder'\n",
            ShellWord::from(arrays_dir(&inp.plan.stack_dir))
        ));
    }
    jobs.sort_by_key(|j| (j.level, j.n));
    for level in jobs.chunk_by(|a, b| a.level == b.level) {
        let per = level.len().div_ceil(SUBMITTERS);
        for (k, slice) in level.chunks(per).enumerate() {
            let mut body = Snippet::default();
            for j in slice {
                body.push(j.sbatch.clone());
            }
            s.push(snippet!("(\n{}) >\"$W/{}.{}\" &\n", body, level[0].level, k));
        }
        s.push(snippet!("wait\nevalctl_collect {} {}\n", level[0].level, level.len()));
        for j in level {
            s.push(j.after.clone());
        }
    }
    for (dir, c) in chains {
        s.push(snippet!(
            "printf '%s' \"$C{}\" >>{}/chain || evalctl_abort {}\n",
            c,
            ShellWord::from(dir),
            ShellWord::from(format!("cannot write {dir}/chain"))
        ));
    }
    (s, vars)
}

/// The shell variables of submitted jobs: `J<n>` by rendered job id, and
/// which of them hold an element of a job array (`<array>_<index>`).
#[derive(Default)]
struct Vars {
    of: BTreeMap<String, usize>,
    elements: BTreeSet<usize>,
    /// `J<n>` of each array submitted.
    arrays: Vec<usize>,
}

/// The element maps (and Slurm's output) of job arrays no unit refers to
/// any more go: kept are the arrays of this apply, those the state records
/// and those with live elements (a map lost would make its elements
/// nobody's, and their tasks submitted again).
fn prune_arrays(inp: &Inputs<'_>, vars: &Vars) -> Snippet {
    let recorded = inp.state.units.values().flat_map(|u| u.jobs.iter());
    let live = inp.observations.values().flat_map(|o| o.live_jobs.iter());
    let keep: BTreeSet<u64> = recorded.chain(live).filter(|j| j.index.is_some()).map(|j| j.id).collect();
    if keep.is_empty() && vars.arrays.is_empty() {
        return Snippet::default();
    }
    let mut list = Snippet::default();
    for id in &keep {
        list.push(snippet!("{} ", id));
    }
    for n in &vars.arrays {
        list.push(snippet!("$J{} ", n));
    }
    snippet!(
        "KEEP=\" {}\"\nshopt -s nullglob\nfor f in {}/*.map; do a=${{f##*/}}; a=${{a%.map}}; case $KEEP in *\" $a \"*) ;; *) rm -f -- \"$f\" \"${{f%/*}}/slurm-${{a}}_\"*.out ;; esac; done\nshopt -u nullglob\n",
        list,
        ShellWord::from(arrays_dir(&inp.plan.stack_dir))
    )
}

/// Most elements of one job array where the cluster's `MaxArraySize` is not
/// known: Slurm's default (1,001) allows indexes 0 to 1,000. A larger group
/// goes in several arrays.
pub const MAX_ARRAY_ELEMENTS: usize = 1000;

/// Most elements of one job array: indexes stay below `MaxArraySize`.
pub fn array_cap(max_array_size: Option<u64>) -> usize {
    match max_array_size {
        Some(m) => usize::try_from(m.saturating_sub(1)).unwrap_or(usize::MAX).max(1),
        None => MAX_ARRAY_ELEMENTS,
    }
}

/// Where a stack's job arrays keep their element maps and Slurm's own
/// output (`execution.job_arrays`).
pub fn arrays_dir(stack_dir: &str) -> String {
    format!("{stack_dir}/.evalctl/arrays")
}

/// What first links must share to go in one array: everything `sbatch`
/// reads but the name and output (given per array on the command line).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ArrayKey {
    level: usize,
    header: String,
    /// ` --dependency=...`.
    dep: Snippet,
    comment: Option<String>,
    script: &'static str,
}

struct ArrayGroup {
    /// The array's own name: the stack's tag without a unit, which no
    /// refresh takes for a job of the stack (elements are named by the map).
    name: String,
    members: Vec<ArrayMember>,
}

struct ArrayMember {
    /// The member's `J<n>`.
    n: usize,
    dir: String,
    /// Its ownership tag, as its own job would be named.
    tag: String,
    after: Snippet,
}

/// The `#SBATCH` lines of a script head that an array shares: all but the
/// job name and output.
fn array_header(head: &str) -> String {
    head.lines()
        .filter(|l| {
            l.starts_with("#SBATCH ") && !l.starts_with("#SBATCH --job-name=") && !l.starts_with("#SBATCH --output=")
        })
        .fold(String::new(), |mut s, l| {
            s.push_str(l);
            s.push('\n');
            s
        })
}

/// `[<subproject>.]evalctl:<stack>/array` from a job's rendered name.
fn array_name(job_name: &str) -> String {
    let mut parts = job_name.rsplitn(3, '/');
    let (_, _, prefix) = (parts.next(), parts.next(), parts.next().unwrap_or(job_name));
    format!("{prefix}/array")
}

/// One `sbatch --array` for a group of first links, into `J<n>`; then
/// each member's `J<m>` is `<array>_<index>`, the element map (index to
/// ownership tag, read by refresh) is written, and each member's own
/// follow-up runs. The array's script sets its element's folder and output
/// and runs the member's script there: its `#SBATCH` lines are the group's.
fn array_submission(inp: &Inputs<'_>, n: usize, key: &ArrayKey, name: &str, members: Vec<ArrayMember>) -> Submission {
    let dir = arrays_dir(&inp.plan.stack_dir);
    let mut script = format!(
        "#!/bin/bash\n{}# evalctl job array: element i runs the first link in the i-th folder below.\ncase ${{SLURM_ARRAY_TASK_ID:-}} in\n",
        key.header
    );
    for (i, m) in members.iter().enumerate() {
        script.push_str(&format!("{i}) d={} ;;\n", ShellWord::from(&m.dir)));
    }
    script.push_str(&format!(
        "*) echo \"evalctl: no job for array element ${{SLURM_ARRAY_TASK_ID:-}}\" >&2; exit 1 ;;\nesac\nexec >>\"$d/logs/slurm-${{SLURM_ARRAY_JOB_ID}}_$SLURM_ARRAY_TASK_ID.out\" 2>&1 || exit 1\ncd \"$d\" || exit 1\nexec bash ./{}\n",
        ShellWord::from(key.script)
    ));
    let throttle = inp.rendered.max_concurrent.map(|m| format!("%{m}")).unwrap_or_default();
    let comment = match &key.comment {
        Some(c) => snippet!(" --comment={}", ShellWord::from(c)),
        None => Snippet::default(),
    };
    let failed = ShellWord::from(format!("sbatch of a job array of {} jobs failed: ", members.len()));
    let mut sbatch = Snippet::default();
    sbatch.push(raw_var(Code("A"), &script));
    sbatch.push(snippet!(
        "[ -e \"$W/stop\" ] && exit 0\nprintf '%s' \"$A\" >\"$W/array.{}.sbatch\" || {{ : >\"$W/stop\"; echo E 'cannot write a job array script'; exit 0; }}\n",
        n
    ));
    // The element map is written at once (by the submitter, the array's id
    // reported first so that a failure cancels it): an array held without
    // its map would be nobody's.
    let mut map = Snippet::default();
    for (i, m) in members.iter().enumerate() {
        map.push(snippet!(" \"${{J}}_{}\" {}", i, ShellWord::from(&m.tag)));
    }
    sbatch.push(snippet!(
        "if J=$(cd {} && sbatch --parsable --hold --array={} --job-name={} --output={}{}{} \"$W/array.{}.sbatch\" 2>&1) && J=${{J%%;*}} && [[ $J =~ ^[0-9]+$ ]]; then\n  echo {} \"$J\"\n  printf '%s|%s\\n'{} >{}/\"$J\".map || {{ : >\"$W/stop\"; echo E {}; }}\nelse : >\"$W/stop\"; echo E {}\"${{J//$'\\n'/ }}\"; exit 0; fi\n",
        ShellWord::from(&dir),
        ShellWord::from(format!("0-{}{throttle}", members.len() - 1)),
        ShellWord::from(name),
        ShellWord::from(format!("{dir}/slurm-%A_%a.out")),
        comment,
        key.dep.clone(),
        n,
        n,
        map,
        ShellWord::from(&dir),
        ShellWord::from(format!("cannot write the element map of a job array in {dir}")),
        failed
    ));
    let mut after = Snippet::default();
    for (i, m) in members.iter().enumerate() {
        after.push(snippet!("J{}=\"${{J{}}}_{}\"\n", m.n, n, i));
    }
    for m in members {
        after.push(m.after);
    }
    Submission { n, level: key.level, sbatch, after }
}

/// The submitters' work directory (removed when the program ends) and
/// `evalctl_collect LEVEL COUNT`: the ids the level's submitters wrote, into
/// `J<n>` and `SUBMITTED`; the program stops at the first error, or when
/// fewer than COUNT ids came back.
const SUBMIT_FUNCTIONS: &str = r#"W=$(mktemp -d "$D/.evalctl/submit.XXXXXX") || evalctl_abort 'cannot create a work directory'
trap 'rm -rf "$W"' EXIT
NOW=${EPOCHSECONDS:-$(date +%s)}
evalctl_collect() {
  local f n v got=0 err=
  for f in "$W/$1".*; do
    while IFS=' ' read -r n v; do
      if [ "$n" = E ]; then
        err=${err:-$v}
      elif [[ $n =~ ^[0-9]+$ && $v =~ ^[0-9]+$ ]]; then
        printf -v "J$n" '%s' "$v"
        SUBMITTED+=("$v")
        got=$((got + 1))
      fi
    done <"$f"
  done
  [ -z "$err" ] || evalctl_abort "$err"
  [ "$got" -eq "$2" ] || evalctl_abort "sbatch answered for $got of $2 jobs"
}
"#;

/// The first live job of a unit (a deployment other jobs wait for).
fn live_job_of(inp: &Inputs<'_>, unit_of_job: &BTreeMap<&str, &str>, job_id: &str) -> Option<JobId> {
    let unit = *unit_of_job.get(job_id)?;
    let obs = inp.observations.get(unit)?;
    if !obs.observed.is_live() {
        return None;
    }
    obs.live_jobs.iter().copied().min()
}

/// Phase 4. Release the held jobs together.
fn release_phase() -> Snippet {
    let mut s = snippet!(
        "if ! out=$(scontrol release \"$(IFS=,; echo \"${{SUBMITTED[*]}}\")\" 2>&1); then evalctl_abort \"release failed: $out\"; fi\n"
    );
    s.push(protocol::released());
    s
}

/// Phase 5. `STATE`: the new state with this apply's job ids, filled into the
/// slots the serializer left (laid out as `State::to_text` lays out a list).
/// The text is sent in pieces between slots and joined with the ids: linear
/// in the size of the state (a pattern substitution per unit is quadratic,
/// seconds at a few hundred units).
fn state_phase(inp: &Inputs<'_>, submitting: &[String], vars: &Vars) -> Snippet {
    let slots: BTreeMap<String, usize> = submitting.iter().enumerate().map(|(n, u)| (u.clone(), n)).collect();
    let text = next_state(inp).to_text_with_job_slots(&slots);
    // The jobs that serve each unit (a task's own, or its pack's), in order.
    let mut jobs_of: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, j) in inp.rendered.jobs.iter().enumerate() {
        let own = (!j.members.is_empty()).then_some(j.unit.as_str());
        for unit in j.units().into_iter().chain(own) {
            jobs_of.entry(unit).or_default().push(i);
        }
    }
    let mut s = snippet!("NL=$'\\n'\nSTATE=\n");
    let mut rest = text.as_str();
    while let Some((piece, n, after)) = next_slot(rest, submitting.len()) {
        s.push(raw_var(Code("P"), piece));
        let unit = &submitting[n];
        let ns: Vec<usize> = jobs_of
            .get(unit.as_str())
            .into_iter()
            .flatten()
            .filter_map(|j| vars.of.get(&inp.rendered.jobs[*j].id).copied())
            .collect();
        let mut list = Snippet::default();
        for (i, v) in ns.iter().enumerate() {
            // An array element's id is a JSON string (`"12_3"`).
            let quote = Code(if vars.elements.contains(v) { "\\\"" } else { "" });
            list.push(snippet!("{}{}{}${{J{}}}{}", Code(if i > 0 { "," } else { "" }), LIST_ITEM, quote, v, quote));
        }
        if ns.is_empty() {
            s.code(Code("STATE+=\"${P}[]\"\n"));
        } else {
            s.push(snippet!("STATE+=\"${{P}}[{}{}\"\n", list, LIST_END));
        }
        rest = after;
    }
    s.push(raw_var(Code("P"), rest));
    s.code(Code("STATE+=$P\nP=\n"));
    s
}

/// The text before the first job slot of `text` (a JSON string
/// [`job_slot`](crate::state::job_slot)) numbered below `slots`, the
/// slot's number and the text after it; `None` when no slot is left. A
/// config value that merely looks like a slot of a higher number stays text.
fn next_slot(text: &str, slots: usize) -> Option<(&str, usize, &str)> {
    let mut from = 0;
    while let Some(i) = text[from..].find("\"@@J").map(|i| i + from) {
        let digits = &text[i + 4..];
        let len = digits.bytes().take_while(u8::is_ascii_digit).count();
        if len > 0
            && digits[len..].starts_with("@@\"")
            && let Ok(n) = digits[..len].parse::<usize>()
            && n < slots
        {
            return Some((&text[..i], n, &digits[len + 3..]));
        }
        from = i + 1;
    }
    None
}

/// How `State::to_text` lays out a unit's job list (inside double quotes).
const LIST_ITEM: Code = Code("${NL}        ");
const LIST_END: Code = Code("${NL}      ]");
const _: () = assert!(JOBS_INDENT == 6, "LIST_ITEM and LIST_END follow the state's layout");

/// The new state, the job ids of submitting units left empty.
pub fn next_state(inp: &Inputs<'_>) -> State {
    let mut state = inp.state.clone();
    state.stack = inp.plan.stack.clone();
    state.serial = inp.plan.serial + 1;
    if state.created == 0 {
        state.created = inp.now;
    }
    state.runtime = crate::render::runtime_digest();
    let by_id: BTreeMap<&str, &Unit<'_>> = inp.units.iter().map(|u| (u.id.as_str(), u)).collect();
    for c in &inp.plan.changes {
        match c.action {
            Action::Cancel => {
                state.units.remove(&c.unit);
            }
            // Left out by --only/--exclude: the state keeps what it had.
            _ if c.untargeted => {}
            _ => {
                let Some(u) = by_id.get(c.unit.as_str()) else { continue };
                let prev = state.units.get(&c.unit).cloned().unwrap_or_default();
                let submits = c.action.submits();
                let keep_old =
                    c.action == Action::None && prev.script_hash.is_empty() && c.observed != Observed::Absent;
                // An adopted unit (state lost) keeps what its tags said: the
                // desired hash where the tag's shortened one matches it.
                let obs = inp.observations.get(&c.unit);
                let adopted = |tag: Option<&String>, desired: &String| match tag {
                    Some(t) if t == layout::short(desired) => desired.clone(),
                    Some(t) => t.clone(),
                    None => String::new(),
                };
                let entry = UnitState {
                    kind: u.kind,
                    script_hash: if keep_old {
                        adopted(obs.and_then(|o| o.tag_script_hash.as_ref()), &u.script_hash)
                    } else {
                        u.script_hash.clone()
                    },
                    result_hash: if keep_old {
                        adopted(obs.and_then(|o| o.tag_result_hash.as_ref()), &u.result_hash)
                    } else {
                        u.result_hash.clone()
                    },
                    scripts: u.scripts(),
                    jobs: if submits { vec![] } else { prev.jobs.clone() },
                    attempts: c.attempts.max(if submits { 1 } else { 0 }),
                    observed: if submits { Observed::Pending } else { c.observed },
                    serial: if submits { state.serial } else { prev.serial },
                };
                state.units.insert(c.unit.clone(), entry);
            }
        }
    }
    state
}

/// Reads what the apply program replied.
pub fn outcome(replies: &Replies) -> Outcome {
    let mut o = Outcome::default();
    for r in replies.iter() {
        match r {
            Reply::Submitted { unit, role, id } => o.submitted.push((unit.clone(), role.clone(), *id)),
            Reply::Cancelled(ids) => o.cancelled.extend(ids),
            Reply::Updated(u) => o.updated.push(u.clone()),
            Reply::Error(e) => o.error = Some(e.clone()),
            Reply::LockLost => o.lock_lost = true,
            _ => {}
        }
    }
    o
}

/// The state as the program wrote it: [`next_state`] with the submitted ids.
pub fn recorded_state(inp: &Inputs<'_>, submitting: &[String], outcome: &Outcome) -> State {
    let mut state = next_state(inp);
    let packs: BTreeMap<&str, &String> =
        inp.units.iter().filter_map(|u| Some((u.id.as_str(), u.pack.as_ref()?))).collect();
    let mut ids: BTreeMap<&str, Vec<JobId>> = BTreeMap::new();
    for (unit, _, id) in &outcome.submitted {
        ids.entry(unit.as_str()).or_default().push(*id);
    }
    for unit in submitting {
        // A pack's tasks record the pack's jobs.
        let owner = packs.get(unit.as_str()).copied().unwrap_or(unit);
        if let Some(u) = state.units.get_mut(unit) {
            u.jobs = ids.get(owner.as_str()).cloned().unwrap_or_default();
        }
    }
    state
}

/// Runs the apply program (one round trip); returns what it did and the
/// state it recorded (none when it failed on the cluster).
pub fn execute(cluster: &dyn Cluster, inputs: &Inputs<'_>) -> Result<(Outcome, Option<State>), Error> {
    let prog = program(inputs);
    let replies = super::run(cluster, &prog.program).map_err(|stop| match stop {
        Error::Diagnostics(mut d) => {
            for diag in &mut d {
                diag.notes.push(
                    "jobs this apply had submitted are held and never start; run apply again: it replaces them".into(),
                );
            }
            Error::Diagnostics(d)
        }
        other => other,
    })?;
    let outcome = outcome(&replies);
    if outcome.lock_lost {
        return Err(Error::from(
            "the stack lock was taken away during apply (evalctl state unlock?); nothing was submitted".to_owned(),
        ));
    }
    if outcome.error.is_some() {
        return Ok((outcome, None));
    }
    let state = recorded_state(inputs, &prog.submitting, &outcome);
    Ok((outcome, Some(state)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::job_slot;

    #[test]
    fn arrays_share_what_sbatch_reads_but_name_and_output() {
        assert_eq!(array_name("evalctl:st/t0/first"), "evalctl:st/array");
        assert_eq!(array_name("proj.evalctl:st/pack.t0/first"), "proj.evalctl:st/array");
        // The array's name is nobody's unit.
        assert!(layout::parse_name(&array_name("evalctl:st/t0/first")).is_none());
        let a = "#!/bin/bash\n# job `a`\n#SBATCH --job-name=evalctl:st/a/first\n#SBATCH --time=01:00:00\n#SBATCH --output=/o/a/logs/slurm-%j.out\nset -uo pipefail\n";
        let b = "#!/bin/bash\n# job `b`\n#SBATCH --job-name=evalctl:st/b/first\n#SBATCH --time=01:00:00\n#SBATCH --output=/o/b/logs/slurm-%j.out\nset -uo pipefail\n";
        assert_eq!(array_header(a), "#SBATCH --time=01:00:00\n");
        assert_eq!(array_header(a), array_header(b));
        assert_ne!(array_header(a), array_header(&b.replace("01:00:00", "02:00:00")));
    }

    #[test]
    fn slots_are_found_in_order_of_the_text() {
        let text = format!("a \"@@J\" \"@@Jx@@\" \"{}\" b \"{}\" c", job_slot(12), job_slot(3));
        let (before, n, rest) = next_slot(&text, 13).unwrap();
        assert_eq!((before, n), ("a \"@@J\" \"@@Jx@@\" ", 12));
        let (between, m, tail) = next_slot(rest, 13).unwrap();
        assert_eq!((between, m, tail), (" b ", 3, " c"));
        assert_eq!(next_slot(tail, 13), None);
        // A value that looks like a slot past the last one is text.
        let (before, n, _) = next_slot(&text, 4).unwrap();
        assert_eq!((before.len(), n), (text.find(" b ").unwrap() + 3, 3));
    }
}
