//! plan → apply → status → cancel in-process, in milliseconds: the
//! operations layer (`evalctl::ops`) against the real local backend
//! (`cluster::local::Local`, which runs every program with bash), with a
//! small stateful stand-in for Slurm's command line (`tests/stub_slurm/`)
//! first in the programs' `PATH`.
//!
//! Each test has its own temporary directory: the config (and its local
//! state copy), the stack's `output_dir` (the "cluster's" shared disk) and
//! the stub's job table. Nothing of the process environment is changed:
//! the stub's directories reach the programs through a few `export` lines
//! put in front of each of them ([`StubCluster`]).
//!
//! Assertions are on data (actions, job ids, states, exit statuses), not
//! on wording. The reconciliation rows exercised here are DESIGN §5's;
//! saved plans and locking are §6's.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use evalctl::cluster::local::Local;
use evalctl::cluster::{Cluster, ClusterError, Output, Target};
use evalctl::diag::Sources;
use evalctl::error::{Error, ExitStatus};
use evalctl::ops::{self, Applied, ApplyOptions, ApplyReport, Observe, PlanFile, PlanOptions, Silent, Stack};
use evalctl::plan::{Action, Plan, output};
use evalctl::state::{Observed, State};
use evalctl::stats::Method;
use evalctl::status::UnitStatus;

/// The stand-ins, by the name they are installed under.
const STUBS: &[(&str, &str)] = &[
    ("sbatch", include_str!("stub_slurm/sbatch")),
    ("scontrol", include_str!("stub_slurm/scontrol")),
    ("squeue", include_str!("stub_slurm/squeue")),
    ("sacct", include_str!("stub_slurm/sacct")),
    ("scancel", include_str!("stub_slurm/scancel")),
];

/// The stack every test applies (each in its own `output_dir`).
const STACK: &str = "opsstack";

// ------------------------------------------------------------------ cluster

/// The local backend, with the stub's `bin/` first in `PATH` and its job
/// table in `STUB_STATE` for every program.
struct StubCluster {
    inner: Local,
    prelude: String,
}

impl Cluster for StubCluster {
    fn run(&self, program: &[u8]) -> Result<Output, ClusterError> {
        let mut full = self.prelude.clone().into_bytes();
        full.extend_from_slice(program);
        self.inner.run(&full)
    }

    fn round_trips(&self) -> usize {
        self.inner.round_trips()
    }

    fn target(&self) -> &Target {
        self.inner.target()
    }
}

/// Single quotes for bash.
fn sq(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

// ------------------------------------------------------------------ fixture

/// A job as the stub keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct StubJob {
    id: u64,
    name: String,
    comment: String,
    dependency: String,
    state: String,
    reason: String,
}

/// One test's config, cluster disk and stub Slurm, removed when the test
/// passes (kept for a post-mortem when it fails).
struct Fixture {
    root: PathBuf,
    config: PathBuf,
    output_dir: PathBuf,
    slurm: PathBuf,
    cluster: StubCluster,
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

impl Fixture {
    /// A fixture whose config has `tasks`.
    fn new(test: &str, tasks: &[&str]) -> Fixture {
        let root = std::env::temp_dir().join(format!(
            "evalctl-ops-{}-{}-{test}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        let (cfg_dir, output_dir, slurm, bin) =
            (root.join("config"), root.join("cluster"), root.join("slurm"), root.join("bin"));
        for d in [&cfg_dir, &output_dir, &slurm.join("jobs"), &bin] {
            std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("cannot create {}: {e}", d.display()));
        }
        for (name, text) in STUBS {
            let p = bin.join(name);
            std::fs::write(&p, text).expect("write a stub");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod a stub");
        }
        std::fs::write(slurm.join("calls.log"), "").expect("calls.log");
        let prelude = format!("export PATH={}:\"$PATH\"\nexport STUB_STATE={}\n", sq(&bin), sq(&slurm));
        let f = Fixture {
            config: cfg_dir.join("evals.yaml"),
            root,
            output_dir,
            slurm,
            cluster: StubCluster { inner: Local::new(Target::local()), prelude },
        };
        f.write_config(tasks);
        f
    }

    /// (Re)writes the config: a stack of `tasks` against an existing
    /// endpoint (no deployment), on this machine.
    fn write_config(&self, tasks: &[&str]) {
        let mut yaml = format!(
            "defaults: [{{execution: slurm/default}}, {{deployment: none}}, _self_]\n\
             name: {STACK}\n\
             execution:\n  hostname: localhost\n  account: research\n  partition: cpu\n  output_dir: {out}\n  \
             walltime: \"01:00:00\"\n\
             target: {{api_endpoint: {{url: \"http://127.0.0.1:9/v1/chat/completions\", model_id: m}}}}\n\
             evaluation:\n  tasks:\n",
            out = self.output_dir.display(),
        );
        for t in tasks {
            yaml.push_str(&format!("    - {{name: {t}, container: \"evaluator:latest\"}}\n"));
        }
        std::fs::write(&self.config, yaml).expect("write the config");
    }

    fn open(&self, overrides: &[&str]) -> Stack {
        let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        Stack::open(&self.config, &o, &Sources::new(), &Silent)
            .unwrap_or_else(|e| panic!("the config does not compile: {:?}", e.diagnostics()))
    }

    fn plan(&self, stack: &Stack) -> Plan {
        ops::plan(stack, Observe::Cluster(&self.cluster), &PlanOptions::default(), &Silent)
            .unwrap_or_else(|e| panic!("plan failed: {:?}", e.diagnostics()))
            .plan
    }

    fn offline_plan(&self, stack: &Stack) -> Plan {
        ops::plan(stack, Observe::Recorded, &PlanOptions::default(), &Silent)
            .unwrap_or_else(|e| panic!("offline plan failed: {:?}", e.diagnostics()))
            .plan
    }

    fn try_apply(&self, stack: &Stack, saved: Option<&PlanFile>) -> Result<Applied, Error> {
        let opts = ApplyOptions { command: "evalctl apply (tests/ops.rs)".into(), ..ApplyOptions::default() };
        ops::apply(stack, &self.cluster, saved, &opts, &Silent)
    }

    /// Applies and expects every change to be made.
    fn apply_done(&self, stack: &Stack) -> ApplyReport {
        match self.try_apply(stack, None) {
            Ok(Applied::Done(r)) => r,
            other => panic!("expected the apply to be done, got {}", brief(&other)),
        }
    }

    fn stack_dir(&self) -> PathBuf {
        self.output_dir.join(STACK)
    }

    fn unit_dir(&self, unit: &str) -> PathBuf {
        self.stack_dir().join(unit)
    }

    fn lock_file(&self) -> PathBuf {
        self.stack_dir().join(".evalctl/lock")
    }

    /// The state file the apply program wrote on the "cluster".
    fn remote_state(&self) -> State {
        let p = self.stack_dir().join(".evalctl/state.json");
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
        State::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// Every command the stub ran, oldest first.
    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.slurm.join("calls.log")).expect("calls.log").lines().map(str::to_owned).collect()
    }

    fn calls_of(&self, command: &str) -> Vec<String> {
        let prefix = format!("{command} ");
        self.calls().into_iter().filter(|l| l.starts_with(&prefix)).collect()
    }

    fn job(&self, id: u64) -> StubJob {
        let dir = self.slurm.join("jobs").join(id.to_string());
        let field = |f: &str| {
            std::fs::read_to_string(dir.join(f))
                .unwrap_or_else(|e| panic!("job {id} has no {f}: {e}"))
                .trim_end_matches('\n')
                .to_owned()
        };
        StubJob {
            id,
            name: field("name"),
            comment: field("comment"),
            dependency: field("dependency"),
            state: field("state"),
            reason: field("reason"),
        }
    }

    /// Every job the stub knows, by id.
    fn jobs(&self) -> BTreeMap<u64, StubJob> {
        std::fs::read_dir(self.slurm.join("jobs"))
            .expect("the job table")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
            .map(|id| (id, self.job(id)))
            .collect()
    }

    /// Moves a job to another state, as slurmctld would.
    fn set_job(&self, id: u64, state: &str, reason: &str) {
        let dir = self.slurm.join("jobs").join(id.to_string());
        assert!(dir.is_dir(), "no stub job {id}");
        std::fs::write(dir.join("state"), format!("{state}\n")).unwrap();
        std::fs::write(dir.join("reason"), format!("{reason}\n")).unwrap();
    }

    /// Writes a unit's status file as the job runtime does (`<state> <job id> [detail]`).
    fn write_status(&self, unit: &str, line: &str) {
        let d = self.unit_dir(unit);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("status"), format!("{line}\n")).unwrap();
    }

    /// Appends to a unit's chain file (`<job id> <event> <epoch> [detail]`).
    fn chain(&self, unit: &str, line: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.unit_dir(unit).join("chain"))
            .expect("open the chain file");
        writeln!(f, "{line}").unwrap();
    }

    // The job runtime's side of a unit's life (first link `f`, resume link `r`).

    /// The first link starts.
    fn run_unit(&self, unit: &str, (f, _r): (u64, u64)) {
        self.set_job(f, "RUNNING", "None");
        self.chain(unit, &format!("{f} start {} first", now() - 60));
        self.write_status(unit, &format!("running {f} "));
    }

    /// The first link's evaluation succeeds; the resume link, whose
    /// `afternotok` can no longer be met, is killed (`--kill-on-invalid-dep`).
    fn complete_unit(&self, unit: &str, (f, r): (u64, u64)) {
        self.set_job(f, "COMPLETED", "None");
        self.set_job(r, "CANCELLED", "DependencyNeverSatisfied");
        self.chain(unit, &format!("{f} end {} completed", now()));
        self.write_status(unit, &format!("completed {f} "));
    }

    /// The first link's evaluation fails; the resume link starts, sees the
    /// chain ended and stops at once.
    fn fail_unit(&self, unit: &str, (f, r): (u64, u64)) {
        self.set_job(f, "FAILED", "NonZeroExitCode");
        self.chain(unit, &format!("{f} end {} failed 1", now()));
        self.write_status(unit, &format!("failed {f} exit 1"));
        self.set_job(r, "COMPLETED", "None");
        self.chain(unit, &format!("{r} stop {} failed", now()));
    }

    /// The first link reaches its time limit; the resume link is released
    /// by its dependency and waits for resources.
    fn time_out_unit(&self, unit: &str, (f, r): (u64, u64)) {
        self.set_job(f, "TIMEOUT", "TimeLimit");
        self.write_status(unit, &format!("interrupted {f} USR1"));
        self.set_job(r, "PENDING", "Priority");
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("tests/ops.rs: kept {} for a post-mortem", self.root.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

// ------------------------------------------------------------------ plans and reports

/// Each unit's action.
fn actions(plan: &Plan) -> BTreeMap<String, Action> {
    plan.changes.iter().map(|c| (c.unit.clone(), c.action)).collect()
}

fn change<'a>(plan: &'a Plan, unit: &str) -> &'a evalctl::plan::Change {
    plan.changes.iter().find(|c| c.unit == unit).unwrap_or_else(|| panic!("no change for {unit} in {plan:?}"))
}

fn expect(pairs: &[(&str, Action)]) -> BTreeMap<String, Action> {
    pairs.iter().map(|(u, a)| (u.to_string(), *a)).collect()
}

/// An apply's outcome in a line: how it ended and each unit's action.
fn brief(r: &Result<Applied, Error>) -> String {
    match r {
        Ok(Applied::NoChanges(p)) => format!("NoChanges {:?}", actions(p)),
        Ok(Applied::Declined(p)) => format!("Declined {:?}", actions(p)),
        Ok(Applied::Done(r)) => format!("Done {:?} submitted {:?}", actions(&r.plan), r.submitted),
        Ok(Applied::FailedOnCluster(r)) => format!("FailedOnCluster {:?} ({:?})", actions(&r.plan), r.error),
        Err(e) => format!("error (exit {}): {:?}", e.exit_status().code(), e.diagnostics()),
    }
}

/// The (first, resume) job ids an apply submitted for a unit.
fn chain_ids(report: &ApplyReport, unit: &str) -> (u64, u64) {
    let id = |role: &str| {
        report
            .submitted
            .iter()
            .find(|(u, r, _)| u == unit && r == role)
            .map(|(_, _, id)| id.id)
            .unwrap_or_else(|| panic!("no {role} job of {unit} in {:?}", report.submitted))
    };
    (id("first"), id("resume"))
}

fn ids_of(report: &ApplyReport, unit: &str) -> Vec<u64> {
    report.submitted.iter().filter(|(u, _, _)| u == unit).map(|(_, _, id)| id.id).collect()
}

fn statuses(rows: &[UnitStatus]) -> BTreeMap<String, String> {
    rows.iter().map(|r| (r.unit.clone(), r.state.clone())).collect()
}

fn states(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(u, s)| (u.to_string(), s.to_string())).collect()
}

fn status(f: &Fixture, stack: &Stack) -> Vec<UnitStatus> {
    ops::status(stack, &f.cluster, 0).unwrap_or_else(|e| panic!("status failed: {:?}", e.diagnostics()))
}

// ------------------------------------------------------------------ scenarios

#[test]
fn a_fresh_stack_is_created_held_then_released_and_a_second_apply_is_a_no_op() {
    let f = Fixture::new("fresh", &["alpha", "beta"]);
    let stack = f.open(&[]);
    assert!(stack.target(None).expect("a target").is_local(), "the config picks the local backend");

    let plan = f.plan(&stack);
    assert_eq!(actions(&plan), expect(&[("alpha", Action::Create), ("beta", Action::Create)]));
    assert!(!plan.offline);
    assert_eq!(plan.target, "local");
    let doc: serde_json::Value = serde_json::from_str(&output::json(&plan)).expect("the plan document is JSON");
    assert_eq!(doc["format_version"], 2);
    assert_eq!(doc["has_changes"], true);
    assert_eq!(doc["summary"]["create"], 2);
    let doc_actions: Vec<&str> =
        doc["changes"].as_array().unwrap().iter().map(|c| c["action"].as_str().unwrap()).collect();
    assert_eq!(doc_actions, ["create", "create"]);
    assert!(f.calls_of("sbatch").is_empty(), "plan submits nothing");

    // Asked first and told no: nothing changes, and the lock is dropped.
    let ask = ApplyOptions { confirm: true, command: "evalctl apply".into(), ..ApplyOptions::default() };
    match ops::apply(&stack, &f.cluster, None, &ask, &Silent) {
        Ok(Applied::Declined(p)) => assert_eq!(actions(&p), actions(&plan)),
        other => panic!("expected the apply to be declined, got {}", brief(&other)),
    }
    assert!(f.calls_of("sbatch").is_empty(), "a declined apply submits nothing");
    assert!(!f.lock_file().exists(), "a declined apply drops its lock");

    let trips = f.cluster.round_trips();
    let report = f.apply_done(&stack);
    assert_eq!(f.cluster.round_trips() - trips, 2, "lock+refresh, then one apply program");
    assert!(report.cancelled.is_empty());
    assert_eq!(report.submitted.len(), 4, "a first and a resume link per task: {:?}", report.submitted);

    // Every job was submitted held, then released.
    let sbatch = f.calls_of("sbatch");
    assert_eq!(sbatch.len(), 4);
    assert!(sbatch.iter().all(|l| l.contains(" --parsable ") && l.contains(" --hold ")), "{sbatch:#?}");
    let jobs = f.jobs();
    let submitted: BTreeSet<u64> = report.submitted.iter().map(|(_, _, id)| id.id).collect();
    assert_eq!(jobs.keys().copied().collect::<BTreeSet<_>>(), submitted);
    let releases = f.calls_of("scontrol release");
    assert_eq!(releases.len(), 1, "one release for the whole apply: {releases:?}");
    let released: BTreeSet<u64> =
        releases[0].trim_start_matches("scontrol release ").split(',').map(|s| s.parse().unwrap()).collect();
    assert_eq!(released, submitted);
    for j in jobs.values() {
        assert_eq!(j.state, "PENDING", "{j:?}");
        assert_ne!(j.reason, "JobHeldUser", "{j:?}");
    }
    for unit in ["alpha", "beta"] {
        let (first, resume) = chain_ids(&report, unit);
        let (fj, rj) = (&jobs[&first], &jobs[&resume]);
        // The ownership tag is in the name; no comment is configured: none is given.
        assert!(fj.name.starts_with(&format!("evalctl:{STACK}/{unit}/first@")), "{fj:?}");
        assert!(rj.name.starts_with(&format!("evalctl:{STACK}/{unit}/resume@")), "{rj:?}");
        assert_eq!((fj.comment.as_str(), rj.comment.as_str()), ("", ""));
        assert_eq!(fj.dependency, "");
        assert_eq!(rj.dependency, format!("afternotok:{first}"), "the resume link waits for the first one");
        assert!(f.unit_dir(unit).join("task.sbatch").is_file());
    }

    // The state on the cluster lists the ids the stub handed out; the lock is gone.
    let st = f.remote_state();
    assert_eq!(st.serial, 1);
    assert_eq!(st.units.keys().map(String::as_str).collect::<Vec<_>>(), ["alpha", "beta"]);
    for unit in ["alpha", "beta"] {
        assert_eq!(st.units[unit].jobs, ids_of(&report, unit), "{unit}");
        assert_eq!(st.units[unit].attempts, 1);
    }
    assert!(!f.lock_file().exists(), "apply drops its lock");

    // Again: nothing to do, nothing submitted, state untouched.
    let again = f.plan(&stack);
    assert!(!again.has_changes(), "{:?}", actions(&again));
    assert!(again.changes.iter().all(|c| c.observed == Observed::Pending));
    match f.try_apply(&stack, None) {
        Ok(Applied::NoChanges(p)) => assert!(!p.has_changes()),
        other => panic!("expected no changes, got {}", brief(&other)),
    }
    assert_eq!(f.calls_of("sbatch").len(), 4, "apply twice submits once");
    assert_eq!(f.remote_state().serial, 1);
    assert!(!f.lock_file().exists(), "a no-op apply drops its lock too");
}

#[test]
fn a_pending_unit_whose_script_changed_is_replaced() {
    let f = Fixture::new("replace", &["alpha", "beta"]);
    let first = f.apply_done(&f.open(&[]));
    let old: BTreeSet<u64> = first.submitted.iter().map(|(_, _, id)| id.id).collect();

    let stack = f.open(&["execution.walltime=02:00:00"]);
    let plan = f.plan(&stack);
    assert_eq!(actions(&plan), expect(&[("alpha", Action::Replace), ("beta", Action::Replace)]));
    for unit in ["alpha", "beta"] {
        let c = change(&plan, unit);
        let (fst, res) = chain_ids(&first, unit);
        assert_eq!(c.cancel_jobs, [res, fst], "pending successor first");
        assert!(!c.interrupts_running);
    }

    let report = f.apply_done(&stack);
    assert_eq!(report.cancelled.iter().map(|j| j.id).collect::<BTreeSet<_>>(), old);
    let jobs = f.jobs();
    for id in &old {
        assert_eq!(jobs[id].state, "CANCELLED", "old job {id}");
    }
    let new: BTreeSet<u64> = report.submitted.iter().map(|(_, _, id)| id.id).collect();
    assert_eq!(new.len(), 4);
    assert!(new.is_disjoint(&old));
    for id in &new {
        assert_eq!(jobs[id].state, "PENDING");
        assert_ne!(jobs[id].reason, "JobHeldUser");
    }
    let st = f.remote_state();
    assert_eq!(st.serial, 2);
    assert_eq!(st.units["alpha"].jobs, ids_of(&report, "alpha"));
    assert!(!f.plan(&stack).has_changes(), "the replacement holds");
}

#[test]
fn a_unit_removed_from_the_config_is_cancelled_and_its_files_kept() {
    let f = Fixture::new("remove", &["alpha", "beta"]);
    let first = f.apply_done(&f.open(&[]));

    f.write_config(&["alpha"]);
    let stack = f.open(&[]);
    let plan = f.plan(&stack);
    assert_eq!(actions(&plan), expect(&[("alpha", Action::None), ("beta", Action::Cancel)]));
    let (bf, br) = chain_ids(&first, "beta");
    assert_eq!(change(&plan, "beta").cancel_jobs, [br, bf]);

    let report = f.apply_done(&stack);
    assert!(report.submitted.is_empty(), "{:?}", report.submitted);
    assert_eq!(report.cancelled, [br, bf]);
    let jobs = f.jobs();
    assert_eq!((jobs[&bf].state.as_str(), jobs[&br].state.as_str()), ("CANCELLED", "CANCELLED"));
    let (af, ar) = chain_ids(&first, "alpha");
    assert_eq!((jobs[&af].state.as_str(), jobs[&ar].state.as_str()), ("PENDING", "PENDING"));
    assert!(f.unit_dir("beta").join("task.sbatch").is_file(), "files stay on disk");
    let st = f.remote_state();
    assert_eq!(st.units.keys().map(String::as_str).collect::<Vec<_>>(), ["alpha"]);
    assert!(!f.plan(&stack).has_changes());
}

#[test]
fn a_completed_unit_reruns_only_when_its_result_would_change() {
    let f = Fixture::new("rerun", &["alpha", "beta"]);
    let first = f.apply_done(&f.open(&[]));
    let alpha = chain_ids(&first, "alpha");
    f.run_unit("alpha", alpha);
    f.complete_unit("alpha", alpha);
    std::fs::write(f.unit_dir("alpha").join("artifacts/results.yml"), "{}").unwrap();

    // A scheduling-only change: nothing for the completed unit, a
    // replacement for the pending one.
    let stack = f.open(&["execution.walltime=02:00:00"]);
    let plan = f.plan(&stack);
    assert_eq!(actions(&plan), expect(&[("alpha", Action::None), ("beta", Action::Replace)]));
    assert_eq!(change(&plan, "alpha").observed, Observed::Completed);

    // A result-relevant change: run again, keeping the old results.
    let limit = "evaluation.tasks.alpha.nemo_evaluator_config.config.params.limit_samples=10";
    let stack = f.open(&[limit]);
    let plan = f.plan(&stack);
    assert_eq!(actions(&plan), expect(&[("alpha", Action::Rerun), ("beta", Action::None)]));
    assert!(change(&plan, "alpha").cancel_jobs.is_empty(), "nothing of it is live");
    let sbatch_before = f.calls_of("sbatch").len();
    let report = f.apply_done(&stack);
    assert_eq!(f.calls_of("sbatch").len() - sbatch_before, 2, "only alpha is submitted");
    assert_eq!(report.submitted.iter().filter(|(u, _, _)| u == "alpha").count(), 2);
    assert!(report.cancelled.is_empty());
    assert_eq!(f.job(alpha.0).state, "COMPLETED", "the old job is left alone");
    let st = f.remote_state();
    let kept = f.unit_dir("alpha").join(format!("artifacts.{}/results.yml", st.serial));
    assert!(kept.is_file(), "old results are kept aside: {}", kept.display());
    assert!(!f.unit_dir("alpha").join("artifacts/results.yml").exists(), "the rerun starts afresh");
    assert_eq!(st.units["alpha"].jobs, ids_of(&report, "alpha"));
    assert_eq!(st.units["alpha"].attempts, 1);
}

#[test]
fn a_failed_unit_is_retried_up_to_max_attempts_then_left_alone() {
    let f = Fixture::new("retry", &["alpha", "beta"]);
    // This cluster has no accounting: states come from squeue and the status files.
    std::fs::write(f.slurm.join("no_sacct"), "").unwrap();
    let stack = f.open(&["execution.max_attempts=2"]);
    let first = f.apply_done(&stack);
    f.fail_unit("alpha", chain_ids(&first, "alpha"));

    let plan = f.plan(&stack);
    assert!(!plan.notes.is_empty(), "the missing accounting is noted");
    assert_eq!(actions(&plan), expect(&[("alpha", Action::Retry), ("beta", Action::None)]));
    assert_eq!(change(&plan, "alpha").attempts, 2);
    let second = f.apply_done(&stack);
    assert_eq!(ids_of(&second, "alpha").len(), 2);
    assert_eq!(ids_of(&second, "beta").len(), 0);
    assert_eq!(f.remote_state().units["alpha"].attempts, 2);

    f.fail_unit("alpha", chain_ids(&second, "alpha"));
    let plan = f.plan(&stack);
    assert_eq!(actions(&plan), expect(&[("alpha", Action::None), ("beta", Action::None)]));
    let alpha = change(&plan, "alpha");
    assert_eq!(alpha.observed, Observed::Failed);
    assert!(alpha.reason.contains("not retried"), "{}", alpha.reason);
    let doc: serde_json::Value = serde_json::from_str(&output::json(&plan)).unwrap();
    assert_eq!(doc["has_changes"], false);
    assert_eq!(doc["changes"][0]["action"], "none");
    let sbatch_before = f.calls_of("sbatch").len();
    assert!(matches!(f.try_apply(&stack, None), Ok(Applied::NoChanges(_))));
    assert_eq!(f.calls_of("sbatch").len(), sbatch_before);

    // --replace forces it.
    let opts = PlanOptions { replace: vec!["alpha".into()], ..PlanOptions::default() };
    let forced = ops::plan(&stack, Observe::Cluster(&f.cluster), &opts, &Silent).unwrap().plan;
    assert_eq!(change(&forced, "alpha").action, Action::Rerun);
}

#[test]
fn a_saved_plan_is_stale_once_the_cluster_or_the_config_changed() {
    let f = Fixture::new("stale", &["alpha", "beta"]);
    let stack = f.open(&[]);
    let saved_path = f.root.join("plan.json");
    PlanFile::new(&f.config, &[], &PlanOptions::default(), &f.plan(&stack)).unwrap().write(&saved_path).unwrap();
    let saved = PlanFile::read(&saved_path).unwrap().expect("a saved plan");

    // The cluster changed: someone else applied in between.
    f.apply_done(&stack);
    let sbatch = f.calls_of("sbatch").len();
    let err = f.try_apply(&stack, Some(&saved)).expect_err("a stale plan is refused");
    assert!(matches!(err, Error::Stale(_)), "{err:?}");
    assert_eq!(err.exit_status(), ExitStatus::StalePlan);
    assert_eq!(err.exit_status().code(), 4);
    assert_eq!(f.calls_of("sbatch").len(), sbatch, "nothing submitted");
    assert!(!f.lock_file().exists(), "the lock is released");

    // A plan saved now still holds...
    let current = PlanFile::new(&f.config, &[], &PlanOptions::default(), &f.plan(&stack)).unwrap();
    match f.try_apply(&stack, Some(&current)) {
        Ok(Applied::NoChanges(_)) => {}
        other => panic!("a current saved plan applies, got {}", brief(&other)),
    }
    // ...until the config changes, which is found before the cluster is asked.
    let changed = f.open(&["execution.walltime=02:00:00"]);
    let trips = f.cluster.round_trips();
    let err = f.try_apply(&changed, Some(&current)).expect_err("a stale plan is refused");
    assert!(matches!(err, Error::Stale(_)), "{err:?}");
    assert_eq!(err.exit_status(), ExitStatus::StalePlan);
    assert_eq!(f.cluster.round_trips(), trips, "no round trip");
    assert_eq!(f.calls_of("sbatch").len(), sbatch, "nothing submitted");
    assert!(f.jobs().values().all(|j| j.state == "PENDING"), "nothing cancelled");
}

#[test]
fn a_lock_held_by_another_apply_stops_apply_and_cancel() {
    let f = Fixture::new("lock", &["alpha"]);
    let stack = f.open(&[]);
    f.apply_done(&stack);
    // Another apply, on another machine, holds the lock (the lock file as the lock program writes it).
    let holder = serde_json::json!({
        "id": "f00dfeed00c0ffee",
        "who": "alice",
        "host": "another-login-node",
        "pid": 4242,
        "when": 1_700_000_000u64,
        "command": "evalctl apply evals.yaml",
    });
    let text = holder.to_string();
    std::fs::write(f.lock_file(), &text).unwrap();

    let changed = f.open(&["execution.walltime=02:00:00"]);
    let err = f.try_apply(&changed, None).expect_err("the stack is locked");
    match &err {
        Error::Locked(h) => assert_eq!((h.id.as_str(), h.who.as_str(), h.pid), ("f00dfeed00c0ffee", "alice", 4242)),
        other => panic!("expected Locked, got {other:?}"),
    }
    assert_eq!(err.exit_status(), ExitStatus::Locked);
    assert_eq!(err.exit_status().code(), 3);
    let err =
        ops::cancel(&stack, &f.cluster, &[], None, "evalctl cancel", &ops::Silent).expect_err("the stack is locked");
    assert_eq!(err.exit_status(), ExitStatus::Locked);
    assert_eq!(f.calls_of("sbatch").len(), 2, "nothing submitted");
    assert!(f.calls_of("scancel").is_empty(), "nothing cancelled");
    assert_eq!(std::fs::read_to_string(f.lock_file()).unwrap(), text, "another's lock is left alone");

    // Its holder is gone for good: unlock by id, then apply goes ahead.
    assert!(ops::state::unlock(&stack, &f.cluster, "not-the-holder").is_err());
    ops::state::unlock(&stack, &f.cluster, "f00dfeed00c0ffee").expect("unlock");
    assert!(!f.lock_file().exists());
    let report = f.apply_done(&changed);
    assert_eq!(report.submitted.len(), 2);
}

#[test]
fn cancel_stops_live_chains_and_names_their_units() {
    let f = Fixture::new("cancel", &["alpha", "beta", "gamma"]);
    let stack = f.open(&[]);
    let report = f.apply_done(&stack);
    let (alpha, beta, gamma) = (chain_ids(&report, "alpha"), chain_ids(&report, "beta"), chain_ids(&report, "gamma"));
    f.run_unit("alpha", alpha);
    f.run_unit("gamma", gamma);
    f.complete_unit("gamma", gamma);

    // Unknown names: an error, and nothing is cancelled.
    let err = ops::cancel(&stack, &f.cluster, &["nope".into()], None, "evalctl cancel nope", &ops::Silent).unwrap_err();
    assert_eq!(err.exit_status(), ExitStatus::Failure);
    assert!(f.calls_of("scancel").is_empty());
    assert!(!f.lock_file().exists());

    let cancelled =
        ops::cancel(&stack, &f.cluster, &["beta".into()], None, "evalctl cancel beta", &ops::Silent).unwrap();
    assert_eq!(cancelled, ["beta"]);
    assert_eq!((f.job(beta.0).state.as_str(), f.job(beta.1).state.as_str()), ("CANCELLED", "CANCELLED"));
    assert_eq!(f.job(alpha.0).state, "RUNNING", "other units untouched");

    // Everything: only live chains (gamma completed).
    let cancelled = ops::cancel(&stack, &f.cluster, &[], None, "evalctl cancel", &ops::Silent).unwrap();
    assert_eq!(cancelled, ["alpha"]);
    let scancels = f.calls_of("scancel");
    assert_eq!(scancels.last().unwrap(), &format!("scancel {}", alpha.0), "the running link last: {scancels:?}");
    assert_eq!(scancels[scancels.len() - 2], format!("scancel {}", alpha.1), "its pending successor first");
    assert!(f.jobs().values().all(|j| j.state != "PENDING" && j.state != "RUNNING"), "{:?}", f.jobs());
    assert!(!f.lock_file().exists(), "cancel drops its lock");
    let rows = status(&f, &stack);
    assert_eq!(statuses(&rows), states(&[("alpha", "cancelled"), ("beta", "cancelled"), ("gamma", "completed")]));
}

#[test]
fn status_follows_units_through_their_states() {
    let f = Fixture::new("status", &["alpha", "beta", "gamma", "delta"]);
    let stack = f.open(&[]);
    assert_eq!(
        statuses(&status(&f, &stack)),
        states(&[
            ("alpha", "not submitted"),
            ("beta", "not submitted"),
            ("gamma", "not submitted"),
            ("delta", "not submitted")
        ])
    );
    let report = f.apply_done(&stack);
    let rows = status(&f, &stack);
    assert!(rows.iter().all(|r| r.state == "pending" && r.attempts == 1), "{rows:#?}");
    let alpha = rows.iter().find(|r| r.unit == "alpha").unwrap();
    assert_eq!(alpha.jobs, ids_of(&report, "alpha"));

    let ids = |u| chain_ids(&report, u);
    f.run_unit("alpha", ids("alpha"));
    f.run_unit("beta", ids("beta"));
    f.time_out_unit("beta", ids("beta"));
    f.run_unit("gamma", ids("gamma"));
    f.complete_unit("gamma", ids("gamma"));
    std::fs::write(f.unit_dir("gamma").join("artifacts/results.yml"), GAMMA_RESULTS).unwrap();
    f.run_unit("delta", ids("delta"));
    f.fail_unit("delta", ids("delta"));

    let rows = status(&f, &stack);
    assert_eq!(
        statuses(&rows),
        states(&[("alpha", "running"), ("beta", "resuming"), ("gamma", "completed"), ("delta", "failed")])
    );
    let row = |u: &str| rows.iter().find(|r| r.unit == u).unwrap();
    assert_eq!(row("alpha").current_job, Some(evalctl::jobid::JobId::job(ids("alpha").0)));
    assert_eq!(row("alpha").links, 1);
    assert!(row("gamma").results.is_some());
    assert!(row("alpha").results.is_none());
    assert!(row("delta").is_terminal() && row("gamma").is_terminal() && !row("beta").is_terminal());

    // The plan agrees: nothing to do but retry the failed unit.
    let plan = f.plan(&stack);
    assert_eq!(
        actions(&plan),
        expect(&[("alpha", Action::None), ("beta", Action::None), ("gamma", Action::None), ("delta", Action::Retry)])
    );
}

/// A results file as the harness writes it (block YAML), one task score.
const GAMMA_RESULTS: &str = "results:\n  groups: {}\n  tasks:\n    gamma:\n      metrics:\n        acc:\n          scores:\n            acc:\n              stats:\n                count: 40\n                stderr: 0.05\n              value: 0.625\n";

#[test]
fn results_reads_every_score_in_one_round_trip_and_says_what_is_missing() {
    let f = Fixture::new("results", &["alpha", "gamma", "delta"]);
    let stack = f.open(&[]);
    let report = f.apply_done(&stack);
    let ids = |u| chain_ids(&report, u);
    f.run_unit("alpha", ids("alpha"));
    f.run_unit("gamma", ids("gamma"));
    f.complete_unit("gamma", ids("gamma"));
    std::fs::write(f.unit_dir("gamma").join("artifacts/results.yml"), GAMMA_RESULTS).unwrap();
    f.run_unit("delta", ids("delta"));
    f.complete_unit("delta", ids("delta"));
    std::fs::write(f.unit_dir("delta").join("artifacts/results.yml"), "results: [").unwrap();
    let trips = f.cluster.round_trips();
    let r = ops::results::results(&stack, &f.cluster, 0).unwrap_or_else(|e| panic!("{:?}", e.diagnostics()));
    assert_eq!(f.cluster.round_trips() - trips, 1, "one round trip");
    assert_eq!(r.rows.len(), 1, "{r:?}");
    let row = &r.rows[0];
    assert_eq!((row.unit.as_str(), row.task.as_str(), row.metric.as_str()), ("gamma", "gamma", "acc"));
    assert_eq!((row.value, row.stderr, row.count), (0.625, Some(0.05), Some(40)));
    assert_eq!(row.state, "completed");
    assert_eq!(row.jobs, [ids("gamma").0, ids("gamma").1]);
    let unit = evalctl::plan::units(&stack.rendered).into_iter().find(|u| u.id == "gamma").unwrap();
    assert_eq!(row.fingerprint, unit.result_hash[..16]);
    assert!(row.current);
    // Once the config changes what the task would produce, the score is
    // still the one the cluster holds, tied to what produced it.
    let changed = f.open(&["evaluation.tasks.gamma.nemo_evaluator_config.config.params.limit_samples=10"]);
    let later = ops::results::results(&changed, &f.cluster, 0).unwrap_or_else(|e| panic!("{:?}", e.diagnostics()));
    assert_eq!((later.rows[0].value, later.rows[0].current), (0.625, false));
    assert_eq!(later.rows[0].fingerprint, row.fingerprint, "the hash of what produced it");
    // GPU-hours: the chain's run time on the job's GPUs.
    let gpus = unit.jobs[0].gpus;
    assert_eq!(row.gpu_hours, (gpus > 0).then(|| row.elapsed_s as f64 * f64::from(gpus) / 3600.0), "{gpus} GPUs");
    let missing: Vec<(&str, &str)> = r.missing.iter().map(|m| (m.unit.as_str(), m.state.as_str())).collect();
    assert_eq!(missing, [("alpha", "running"), ("delta", "completed")]);
    assert_eq!(r.missing[0].why, "no results.yml yet");
    assert!(r.missing[1].why.contains("not YAML"), "{:?}", r.missing[1]);
}

#[test]
fn an_offline_plan_sees_what_the_last_apply_recorded() {
    let f = Fixture::new("offline", &["alpha", "beta"]);
    let stack = f.open(&[]);
    let before = f.offline_plan(&stack);
    assert!(before.offline);
    assert_eq!(actions(&before), expect(&[("alpha", Action::Create), ("beta", Action::Create)]));

    let report = f.apply_done(&stack);
    let trips = f.cluster.round_trips();
    let plan = f.offline_plan(&stack);
    assert_eq!(f.cluster.round_trips(), trips, "no round trip");
    assert_eq!(plan.serial, 1, "the state the apply recorded");
    assert!(!plan.has_changes(), "{:?}", actions(&plan));
    assert!(plan.changes.iter().all(|c| c.observed == Observed::Pending));

    // An online plan records what it saw; offline plans see it.
    let alpha = chain_ids(&report, "alpha");
    f.complete_unit("alpha", alpha);
    f.plan(&stack);
    let changed = f.open(&["execution.walltime=02:00:00"]);
    let plan = f.offline_plan(&changed);
    assert_eq!(actions(&plan), expect(&[("alpha", Action::None), ("beta", Action::Replace)]));
    assert_eq!(change(&plan, "alpha").observed, Observed::Completed);
    let mut beta = ids_of(&report, "beta");
    beta.sort_unstable();
    let mut cancel = change(&plan, "beta").cancel_jobs.clone();
    cancel.sort_unstable();
    assert_eq!(cancel, beta, "the recorded jobs of beta");
    assert_eq!(f.cluster.round_trips(), trips + 1, "only the online plan went to the cluster");
}

#[test]
fn a_failed_submission_cancels_what_this_apply_submitted() {
    let f = Fixture::new("sbatch-fails", &["alpha", "beta"]);
    // The third sbatch call fails: the first links (submitted together,
    // the first level of the graph) are in, held; the other resume link,
    // submitted beside the failing call, may be in too.
    std::fs::write(f.slurm.join("sbatch_fail_at"), "3\n").unwrap();
    let stack = f.open(&[]);
    let report = match f.try_apply(&stack, None) {
        Ok(Applied::FailedOnCluster(r)) => r,
        other => panic!("expected a failure on the cluster, got {}", brief(&other)),
    };
    assert!(report.error.is_some());
    assert_eq!(report.submitted.len(), 2, "{:?}", report.submitted);
    assert!(report.submitted.iter().all(|(_, role, _)| role == "first"), "{:?}", report.submitted);
    let jobs = f.jobs();
    assert!((2..=3).contains(&jobs.len()), "{jobs:?}");
    assert!(jobs.values().all(|j| j.state == "CANCELLED"), "held jobs are cancelled: {jobs:?}");
    assert!(f.calls_of("scontrol release").is_empty(), "nothing released");
    assert!(!f.stack_dir().join(".evalctl/state.json").exists(), "no state recorded");
    assert!(!f.lock_file().exists(), "the lock is released");

    // The next apply completes the stack.
    std::fs::remove_file(f.slurm.join("sbatch_fail_at")).unwrap();
    let plan = f.plan(&stack);
    assert!(plan.changes.iter().all(|c| c.action.submits()), "{:?}", actions(&plan));
    let report = f.apply_done(&stack);
    assert_eq!(report.submitted.len(), 4);
    assert!(!f.plan(&stack).has_changes());
}

#[test]
fn held_jobs_of_an_interrupted_apply_are_replaced() {
    let f = Fixture::new("held", &["alpha"]);
    let stack = f.open(&[]);
    let first = f.apply_done(&stack);
    let (a, b) = chain_ids(&first, "alpha");
    // As if the apply had died between submitting and releasing.
    f.set_job(a, "PENDING", "JobHeldUser");
    f.set_job(b, "PENDING", "JobHeldUser");

    let plan = f.plan(&stack);
    assert_eq!(actions(&plan), expect(&[("alpha", Action::Replace)]));
    assert_eq!(change(&plan, "alpha").observed, Observed::Held);
    assert_eq!(statuses(&status(&f, &stack)), states(&[("alpha", "held")]));
    let report = f.apply_done(&stack);
    assert_eq!(report.cancelled.iter().map(|j| j.id).collect::<BTreeSet<_>>(), BTreeSet::from([a, b]));
    assert_eq!((f.job(a).state.as_str(), f.job(b).state.as_str()), ("CANCELLED", "CANCELLED"));
    assert_eq!(report.submitted.len(), 2);
    assert!(!f.plan(&stack).has_changes());
}

#[test]
fn a_running_unit_takes_new_scripts_in_place_unless_its_result_would_change() {
    let f = Fixture::new("running", &["alpha", "beta"]);
    let first = f.apply_done(&f.open(&[]));
    let alpha = chain_ids(&first, "alpha");
    f.run_unit("alpha", alpha);

    // Same result: the running chain's next link picks up the new script.
    let stack = f.open(&["execution.walltime=02:00:00"]);
    let plan = f.plan(&stack);
    assert_eq!(actions(&plan), expect(&[("alpha", Action::Update), ("beta", Action::Replace)]));
    assert!(!change(&plan, "alpha").interrupts_running);
    let report = f.apply_done(&stack);
    assert!(ids_of(&report, "alpha").is_empty(), "an update submits nothing");
    assert_eq!(ids_of(&report, "beta").len(), 2);
    assert_eq!(f.job(alpha.0).state, "RUNNING", "the running link goes on");
    let resume = std::fs::read_to_string(f.unit_dir("alpha").join("resume.sbatch")).unwrap();
    assert!(resume.contains("#SBATCH --time=02:00:00"), "the new script is in place");
    assert_eq!(f.remote_state().units["alpha"].jobs, [alpha.0, alpha.1], "same jobs");
    assert!(!f.plan(&stack).has_changes());

    // Another result: the running work is cancelled, loudly.
    let limit = "evaluation.tasks.alpha.nemo_evaluator_config.config.params.limit_samples=10";
    let stack = f.open(&["execution.walltime=02:00:00", limit]);
    let plan = f.plan(&stack);
    assert_eq!(actions(&plan), expect(&[("alpha", Action::Replace), ("beta", Action::None)]));
    let c = change(&plan, "alpha");
    assert!(c.interrupts_running);
    assert_eq!(c.cancel_jobs, [alpha.1, alpha.0], "pending successor first");
    let report = f.apply_done(&stack);
    assert_eq!((f.job(alpha.0).state.as_str(), f.job(alpha.1).state.as_str()), ("CANCELLED", "CANCELLED"));
    assert_eq!(ids_of(&report, "alpha").len(), 2);
}

/// DESIGN §5: "losing [the state file] loses nothing": job tags carry the
/// hashes cut to 16 hex digits, and an adopted unit whose tags match the
/// config is left alone.
#[test]
fn a_lost_state_file_loses_nothing_jobs_are_adopted_by_their_tags() {
    let f = Fixture::new("adopt", &["alpha", "beta"]);
    let stack = f.open(&[]);
    let first = f.apply_done(&stack);
    std::fs::remove_file(f.stack_dir().join(".evalctl/state.json")).unwrap();
    std::fs::remove_dir_all(f.config.parent().unwrap().join(".evalctl")).unwrap();

    let plan = f.plan(&stack);
    assert_eq!(plan.serial, 0, "no recorded state");
    assert_eq!(actions(&plan), expect(&[("alpha", Action::None), ("beta", Action::None)]), "found by their tags");
    let changed = f.open(&["execution.walltime=02:00:00"]);
    let plan = f.plan(&changed);
    assert_eq!(actions(&plan), expect(&[("alpha", Action::Replace), ("beta", Action::Replace)]));
    let (af, ar) = chain_ids(&first, "alpha");
    assert_eq!(change(&plan, "alpha").cancel_jobs, [ar, af]);
    f.apply_done(&changed);
    assert_eq!((f.job(af).state.as_str(), f.job(ar).state.as_str()), ("CANCELLED", "CANCELLED"));
    assert_eq!(f.remote_state().units.len(), 2, "recorded again");
}

/// A job is the stack's only when its name is the stack's own, well-formed
/// tag: a job whose comment carries this stack's tag, or whose name is a
/// look-alike, another stack's tag or an older evalctl's name, is neither
/// adopted nor cancelled.
#[test]
fn a_forged_name_or_comment_does_not_make_a_job_ours() {
    let f = Fixture::new("forged", &["alpha"]);
    let stack = f.open(&[]);
    f.apply_done(&stack);
    let script = f.root.join("other.sbatch");
    std::fs::write(&script, "#!/bin/bash\ntrue\n").unwrap();
    let tag = format!("evalctl:{STACK}/ghost/first@0000000000000000:0000000000000000");
    let forged = [
        // (name, comment): this stack's tag in a comment only.
        ("other".to_owned(), tag.clone()),
        // Names shaped like a tag of this stack but malformed.
        (format!("note {tag}"), String::new()),
        (format!("{tag} evalctl:other/ghost/first"), String::new()),
        (format!("evalctl:{STACK}/ghost/boss"), String::new()),
        (format!("evalctl:{STACK}/ghost/first/x"), String::new()),
        (format!("x y.evalctl:{STACK}/ghost/first"), String::new()),
        (format!("evalctl:{STACK}/ghost/first@0000000000000000:00000000"), String::new()),
        // Another stack's, whose name starts like this stack's.
        (format!("evalctl:{STACK}x/ghost/first"), String::new()),
        (format!("{STACK}.ghost"), String::new()),
    ];
    let mut ids = vec![];
    for (name, comment) in &forged {
        let out = f
            .cluster
            .run(
                format!(
                    "sbatch --parsable --job-name={} --comment={} {}\n",
                    sq(Path::new(name)),
                    sq(Path::new(comment)),
                    sq(&script)
                )
                .as_bytes(),
            )
            .unwrap();
        ids.push(out.stdout_text().trim().parse::<u64>().expect("a job id"));
    }
    let plan = f.plan(&stack);
    assert_eq!(actions(&plan), expect(&[("alpha", Action::None)]), "no `ghost` unit to cancel");
    assert!(!plan.has_changes());
    f.write_config(&["beta"]);
    let report = f.apply_done(&f.open(&[]));
    assert!(!report.cancelled.iter().any(|id| ids.contains(&id.id)), "foreign jobs cancelled: {:?}", report.cancelled);
    for id in ids {
        assert_eq!(f.job(id).state, "PENDING", "job {id} is left alone");
    }
}

#[test]
fn two_configs_cannot_share_a_stack_but_a_moved_config_takes_it_over() {
    let f = Fixture::new("owner", &["gsm8k"]);
    let first = f.open(&[]);
    f.apply_done(&first);
    assert_eq!(f.remote_state().config, f.config.canonicalize().unwrap().to_string_lossy(), "recorded owner");
    // A second config (a copy, same `name:`) beside the first.
    let copy = f.config.with_file_name("copy.yaml");
    std::fs::copy(&f.config, &copy).unwrap();
    let second = Stack::open(&copy, &[], &Sources::new(), &Silent).unwrap();
    let submitted = f.calls_of("sbatch").len();
    let refused = |r: Result<(), Error>, what: &str| {
        let e = r.expect_err(what);
        assert_eq!(e.exit_status(), ExitStatus::Failure, "{what}");
        let d = e.diagnostics();
        let msg = &d[0].message;
        assert!(
            msg.contains(&format!("stack `{STACK}` is managed by `")) && msg.contains("evals.yaml"),
            "{what}: {msg}"
        );
        assert!(msg.contains("copy.yaml` maps to the same stack name"), "{what}: {msg}");
        assert_eq!(d[0].span.map(|s| (s.line, s.col)), Some((2, 7)), "{what}: at `name:`");
    };
    refused(ops::plan(&second, Observe::Cluster(&f.cluster), &PlanOptions::default(), &Silent).map(|_| ()), "plan");
    refused(ops::plan(&second, Observe::Recorded, &PlanOptions::default(), &Silent).map(|_| ()), "offline plan");
    refused(f.try_apply(&second, None).map(|_| ()), "apply");
    refused(ops::cancel(&second, &f.cluster, &[], None, "evalctl cancel", &Silent).map(|_| ()), "cancel");
    assert_eq!(f.calls_of("sbatch").len(), submitted, "nothing submitted");
    assert!(!f.lock_file().exists(), "the lock is released");
    // The first config renamed: the copy now manages the stack.
    std::fs::remove_file(&f.config).unwrap();
    let moved = Stack::open(&copy, &[], &Sources::new(), &Silent).unwrap();
    assert_eq!(actions(&f.plan(&moved)), expect(&[("gsm8k", Action::None)]));
}

/// A finished `gamma` with its results and per-sample records: sample `i`
/// right where `right[i]` is 1.
fn finish_gamma(f: &Fixture, stack: &Stack, right: &[u8]) {
    let report = f.apply_done(stack);
    let ids = chain_ids(&report, "gamma");
    f.run_unit("gamma", ids);
    f.complete_unit("gamma", ids);
    let n = right.len();
    let mean = right.iter().map(|&r| f64::from(r)).sum::<f64>() / n as f64;
    let results = format!(
        "results:\n  tasks:\n    gamma:\n      metrics:\n        acc:\n          scores:\n            acc:\n              stats: {{count: {n}, stderr: 0.05}}\n              value: {mean}\n"
    );
    let artifacts = f.unit_dir("gamma").join("artifacts");
    std::fs::write(artifacts.join("results.yml"), results).unwrap();
    let samples = artifacts.join(evalctl::remote::refresh::SAMPLES_DIR);
    std::fs::create_dir_all(&samples).unwrap();
    let records: String =
        right.iter().enumerate().map(|(i, r)| format!("{{\"id\": \"q{i}\", \"score\": {r}}}\n")).collect();
    std::fs::write(samples.join("gamma.jsonl"), records).unwrap();
}

#[test]
fn compare_pairs_per_sample_outcomes_and_refuses_what_differs_beyond_the_model() {
    let (fb, fc) = (Fixture::new("compare-base", &["gamma"]), Fixture::new("compare-cand", &["gamma"]));
    let base = fb.open(&["target.api_endpoint.model_id=m1"]);
    let cand = fc.open(&["target.api_endpoint.model_id=m2"]);
    // 40 samples: the candidate loses 12 the base had and gains 2.
    let b: Vec<u8> = (0..40).map(|i| u8::from(i < 30)).collect();
    let c: Vec<u8> = (0..40).map(|i| u8::from(!(18..38).contains(&i))).collect();
    finish_gamma(&fb, &base, &b);
    finish_gamma(&fc, &cand, &c);
    let (tb, tc) = (fb.cluster.round_trips(), fc.cluster.round_trips());
    let cmp = ops::compare::compare(("base.yaml", &base, &fb.cluster), ("cand.yaml", &cand, &fc.cluster))
        .unwrap_or_else(|e| panic!("{:?}", e.diagnostics()));
    assert_eq!((fb.cluster.round_trips() - tb, fc.cluster.round_trips() - tc), (1, 1), "one round trip a side");
    assert_eq!((cmp.base.model.as_deref(), cmp.candidate.model.as_deref()), (Some("m1"), Some("m2")));
    assert_eq!(cmp.rows.len(), 1);
    let d = cmp.rows[0].difference.as_ref().expect("a test");
    assert_eq!((d.method, d.base_only, d.candidate_only, d.pairs), (Method::Mcnemar, Some(12), Some(2), Some(40)));
    assert!((d.delta - (-0.25)).abs() < 1e-12 && d.p_value < 0.05, "{d:?}");

    // Another sample limit on one side: refused, naming the key.
    let other = fc.open(&[
        "target.api_endpoint.model_id=m2",
        "evaluation.tasks.gamma.nemo_evaluator_config.config.params.limit_samples=10",
    ]);
    let err = ops::compare::compare(("base.yaml", &base, &fb.cluster), ("cand.yaml", &other, &fc.cluster))
        .expect_err("refused");
    let msgs: Vec<String> = err.diagnostics().iter().map(|d| d.message.clone()).collect();
    assert!(msgs.iter().any(|m| m.contains("the results of cand.yaml were produced by another version")), "{msgs:?}");
    assert!(msgs.iter().any(|m| m.contains("`run_config.config.params.limit_samples`: (unset) → 10")), "{msgs:?}");
}

/// After an apply, a plan names the config keys that changed since, with
/// where the new value is written and the units each touches.
#[test]
fn a_plan_names_the_keys_that_changed_since_the_apply() {
    let f = Fixture::new("causes", &["alpha", "beta"]);
    f.apply_done(&f.open(&[]));
    assert!(!f.remote_state().config_values.is_empty(), "apply records the config's values");
    assert!(f.plan(&f.open(&[])).causes.is_empty(), "nothing changed");
    let stack = f.open(&["execution.walltime=03:00:00", "evaluation.tasks.alpha.container=evaluator:2"]);
    let plan = f.plan(&stack);
    type Row<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Vec<String>);
    let causes: Vec<Row> =
        plan.causes.iter().map(|c| (c.key.as_str(), c.old.as_deref(), c.new.as_deref(), c.units.clone())).collect();
    assert_eq!(
        causes,
        [
            (
                "evaluation.tasks[alpha].container",
                Some("\"evaluator:latest\""),
                Some("\"evaluator:2\""),
                vec!["alpha".to_owned()]
            ),
            (
                "execution.walltime",
                Some("\"01:00:00\""),
                Some("\"03:00:00\""),
                vec!["alpha".to_owned(), "beta".to_owned()]
            ),
        ]
    );
    assert_eq!(plan.causes[1].at.as_deref(), Some("<-o #1>:1:20"));
    let text = output::text(&plan, false);
    assert!(text.contains("Config changes:\n  evaluation.tasks[alpha].container:"), "{text}");
}

/// `apply --max-gpu-hours`: a plan over budget submits nothing.
#[test]
fn apply_over_its_gpu_hour_budget_submits_nothing() {
    let f = Fixture::new("budget", &["alpha", "beta"]);
    let stack = f.open(&["execution.gpus_per_node=2", "execution.max_walltime=04:00:00"]);
    let plan = f.plan(&stack);
    // 2 GPUs, 1 h links, a chain ends at most one link after 4 h: 10 GPU-h each.
    assert_eq!(plan.cost.gpu_hours_max, Some(20.0), "{:?}", plan.cost);
    let opts = ApplyOptions {
        command: "evalctl apply (tests/ops.rs)".into(),
        plan: PlanOptions { max_gpu_hours: Some(19.5), ..PlanOptions::default() },
        ..ApplyOptions::default()
    };
    let err = ops::apply(&stack, &f.cluster, None, &opts, &Silent).expect_err("over budget");
    assert_eq!(err.exit_status(), ExitStatus::OverBudget);
    assert!(err.to_string().contains("may use 20.0 GPU-hours, over the budget of 19.5"), "{err}");
    assert!(f.calls_of("sbatch").is_empty(), "nothing submitted");
    let opts = ApplyOptions { plan: PlanOptions { max_gpu_hours: Some(20.0), ..PlanOptions::default() }, ..opts };
    assert!(matches!(ops::apply(&stack, &f.cluster, None, &opts, &Silent), Ok(Applied::Done(_))));
}

/// A unit that ran before with the same result (a forced rerun) has an
/// expected cost from its chain's recorded run time.
#[test]
fn a_rerun_of_the_same_result_has_an_expected_cost() {
    let f = Fixture::new("expected", &["alpha", "beta"]);
    let stack = f.open(&["execution.gpus_per_node=2"]);
    let report = f.apply_done(&stack);
    let ids = chain_ids(&report, "alpha");
    f.run_unit("alpha", ids);
    f.complete_unit("alpha", ids);
    let opts = PlanOptions { replace: vec!["alpha".into()], ..PlanOptions::default() };
    let plan = ops::plan(&stack, Observe::Cluster(&f.cluster), &opts, &Silent).unwrap().plan;
    let alpha = plan.cost.units.iter().find(|u| u.unit == "alpha").expect("alpha is submitted");
    // The fixture's link ran from a minute ago until now.
    let expected = alpha.gpu_hours_expected.expect("an expected figure");
    assert!((expected - 2.0 * 60.0 / 3600.0).abs() < 2.0 * 2.0 / 3600.0, "{expected}");
    assert_eq!(plan.cost.units_expected, 1);
    assert!(
        output::text(&plan, false).contains("expected 0.0 for the unit that ran before"),
        "{}",
        output::text(&plan, false)
    );
}

/// `--only`/`--exclude`: the plan changes only the units targeted; the
/// others keep their jobs and their recorded state, and a later plan still
/// has their changes; a name that matches no unit is an error.
#[test]
fn only_and_exclude_limit_what_a_plan_changes() {
    let f = Fixture::new("targets", &["alpha", "beta", "gamma"]);
    let targets = |only: &[&str], exclude: &[&str]| PlanOptions {
        targets: evalctl::plan::Targets {
            only: only.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
        },
        ..PlanOptions::default()
    };
    let apply = |stack: &Stack, opts: PlanOptions| {
        let o = ApplyOptions { command: "t".into(), plan: opts, ..ApplyOptions::default() };
        match ops::apply(stack, &f.cluster, None, &o, &Silent) {
            Ok(Applied::Done(r)) => r,
            other => panic!("{}", brief(&other)),
        }
    };
    let stack = f.open(&[]);
    let report = apply(&stack, targets(&["al*"], &[]));
    let units: BTreeSet<&str> = report.submitted.iter().map(|(u, _, _)| u.as_str()).collect();
    assert_eq!(units, BTreeSet::from(["alpha"]));
    let st = f.remote_state();
    assert!(st.units.contains_key("alpha") && !st.units.contains_key("beta"), "{:?}", st.units.keys());
    // Excluding: everything else is submitted.
    let report = apply(&stack, targets(&[], &["alpha", "gamma"]));
    let units: BTreeSet<&str> = report.submitted.iter().map(|(u, _, _)| u.as_str()).collect();
    assert_eq!(units, BTreeSet::from(["beta"]));
    let plan = f.plan(&stack);
    assert_eq!(actions(&plan), expect(&[("alpha", Action::None), ("beta", Action::None), ("gamma", Action::Create)]));
    let opts = targets(&["alpha"], &[]);
    let plan = ops::plan(&stack, Observe::Cluster(&f.cluster), &opts, &Silent).unwrap().plan;
    let gamma = change(&plan, "gamma");
    assert!(gamma.untargeted && gamma.action == Action::None, "{gamma:?}");
    assert_eq!(gamma.reason, "left out by --only/--exclude (would create)");
    let err = ops::plan(&stack, Observe::Cluster(&f.cluster), &targets(&["delta*"], &["x"]), &Silent).err().unwrap();
    let msgs: Vec<String> = err.diagnostics().iter().map(|d| d.message.clone()).collect();
    assert_eq!(
        msgs,
        ["--only names no unit of stack `opsstack`: `delta*`", "--exclude names no unit of stack `opsstack`: `x`"]
    );
}

/// `packed`: tasks are units, a pack's jobs are submitted once; a failed
/// task is retried in its pack (and only that pack is submitted); naming a
/// task to `cancel` cancels its pack and marks each of its tasks.
#[test]
fn packed_tasks_are_units_of_plan_apply_status_and_cancel() {
    let f = Fixture::new("packed", &["alpha", "beta", "gamma", "delta"]);
    let stack = f.open(&["execution.topology=packed", "execution.tasks_per_job=2"]);
    let report = f.apply_done(&stack);
    let units: BTreeSet<&str> = report.submitted.iter().map(|(u, _, _)| u.as_str()).collect();
    assert_eq!(units, BTreeSet::from(["pack.alpha", "pack.gamma"]), "{:?}", report.submitted);
    assert_eq!(f.calls_of("sbatch").len(), 4, "each pack's two links once");
    let (a, g) = (chain_ids(&report, "pack.alpha"), chain_ids(&report, "pack.gamma"));
    let rows = status(&f, &stack);
    assert_eq!(rows.len(), 4, "one row per task: {rows:#?}");
    assert!(rows.iter().all(|r| r.state == "pending" && (r.jobs == [a.0, a.1] || r.jobs == [g.0, g.1])), "{rows:#?}");

    // pack.alpha ran: alpha completed, beta failed; the pack ended.
    f.set_job(a.0, "FAILED", "NonZeroExitCode");
    f.set_job(a.1, "COMPLETED", "None");
    f.write_status("alpha", &format!("completed {} ", a.0));
    f.write_status("beta", &format!("failed {} exit 1", a.0));
    f.write_status("pack.alpha", &format!("failed {} tasks-failed", a.0));
    let plan = f.plan(&stack);
    let action = |u: &str| plan.changes.iter().find(|c| c.unit == u).map(|c| c.action);
    assert_eq!(
        [action("alpha"), action("beta"), action("gamma"), action("delta")],
        [Some(Action::None), Some(Action::Retry), Some(Action::None), Some(Action::None)],
        "{:#?}",
        plan.changes
    );
    assert!(plan.changes.iter().all(|c| !c.unit.starts_with("pack.")), "packs are no units");
    let again = f.apply_done(&stack);
    let units: BTreeSet<&str> = again.submitted.iter().map(|(u, _, _)| u.as_str()).collect();
    assert_eq!(units, BTreeSet::from(["pack.alpha"]), "only the failed task's pack: {:?}", again.submitted);
    assert_eq!(
        std::fs::read_to_string(f.unit_dir("alpha").join("status")).unwrap(),
        format!("completed {} \n", a.0),
        "the completed task keeps its status: the pack skips it"
    );
    assert!(!f.unit_dir("beta").join("status").exists(), "the retried task starts afresh");

    // Cancel one task of the pending pack.gamma: the pack and both its tasks.
    let cancelled =
        ops::cancel(&stack, &f.cluster, &["delta".into()], None, "evalctl cancel delta", &ops::Silent).unwrap();
    let cancelled: BTreeSet<&str> = cancelled.iter().map(String::as_str).collect();
    assert_eq!(cancelled, BTreeSet::from(["delta", "gamma", "pack.gamma"]));
    assert_eq!((f.job(g.0).state.as_str(), f.job(g.1).state.as_str()), ("CANCELLED", "CANCELLED"));
    let rows = status(&f, &stack);
    let state = |u: &str| rows.iter().find(|r| r.unit == u).map(|r| r.state.clone()).unwrap_or_default();
    assert_eq!((state("gamma"), state("delta")), ("cancelled".into(), "cancelled".into()), "{rows:#?}");
}
