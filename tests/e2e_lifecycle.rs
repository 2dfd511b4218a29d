//! End-to-end lifecycle tests: evalctl's job chains run to their end on the
//! real Slurm test cluster of `tests/cluster` (slurmctld, three slurmd,
//! accounting, sshd; the stand-ins `evalctl-model-server` and
//! `nemo-evaluator` of `tests/cluster/fixtures` on the nodes' PATH), through
//! the SSH backend.
//!
//! Scenarios (DESIGN §4 "Auto-resume" and §7 lifecycle commands):
//! 1. per_task, three tasks: every chain COMPLETED, results written, the
//!    servers stopped and no job of the stack left;
//! 2. shared topology: one deployment job serves the three tasks and ends by
//!    itself (COMPLETED) after the last of them;
//! 3. an evaluation longer than the 1-minute walltime: the first link ends
//!    TIMEOUT, the resume link continues from the harness's cache, the chain
//!    completes; `status` is right all along (`running` / `resuming`) and
//!    shows every link; `logs --follow` follows the chain to its end; with a
//!    subproject and a JSON `sbatch_comment` (quotes, spaces, `'`, `$`, `#`,
//!    `\`): every link, the ones apply submits and the one the runtime
//!    queues, has the comment verbatim and its ownership tag in its name;
//! 4. the node of a running link is set DOWN: NODE_FAIL, the resume link runs
//!    on the other node, COMPLETED;
//! 5. a job of the `urgent` partition preempts the running link: PREEMPTED,
//!    resumed, COMPLETED;
//! 6. an evaluator that exits 1: FAILED and not resumed; `apply` retries it up
//!    to `max_attempts` and then says it does not;
//! 7. `cancel` during a run: no live job right after, and no successor runs
//!    later;
//! 8. `max_walltime` reached: the chain stops, `status` says `stopped`
//!    (max_walltime);
//! 9. no accounting: `sacct` fails inside the jobs (a failing `sacct` first in
//!    PATH through `sbatch_extra_flags.export`); a timed-out link is still
//!    resumed and the chain completes, every link having decided without
//!    accounting;
//! 10. (9 again) with `sacct` failing everywhere, evalctl's own refresh
//!     included (local backend, the failing `sacct` first in evalctl's PATH).
//! 11. a server listening on 127.0.0.1 only: reached on the loopback
//!     address of its node, the link completes at once.
//! 12. (11) in shared topology: the deployment fails at once
//!     (`endpoint-unreachable`) instead of publishing an unreachable endpoint.
//! 13. a judge (auxiliary deployment) inside the task's job, as in the
//!     launcher: one two-node job, the model on the first node, the judge on
//!     the second; the harness reaches both and is told where the judge is.
//! 14. results in the loop: two stacks that differ only in their model
//!     complete via `apply --wait`; `results` shows every score; `compare`
//!     pairs the 40 per-sample outcomes (McNemar), also with the base given
//!     as a git ref; a gate fails the designed regression (exit 5), passes
//!     (0) and cannot decide (6); a task that differs in more than the model
//!     is refused, naming the key; `report` of both stacks renders in
//!     headless Chromium; `export` puts both in a real MLflow server, and a
//!     second export changes nothing.
//! 15. packed, 40 tasks of 10 per job under the account `limited`
//!     (`MaxSubmitJobs=50`, which 80 per-task jobs exceed): `plan` shows 4
//!     packs, `apply --wait` completes all 40 units, each pack job started
//!     its model server once, and every task's status, chain and results
//!     are its own;
//! 16. packed, a task longer than the 1-minute walltime in the middle of a
//!     pack: the first link runs the first task and is cut short in the
//!     second; the resume link skips the first, continues the second from
//!     the harness's cache and runs the third; one server start per link.
//! 17. `max_concurrent: 2`: six task chains on a partition with room for
//!     four at once never run more than two at a time (`squeue` polled
//!     every half second), two do run together, and all six complete.
//! 18. `job_arrays` with `max_concurrent: 2`: six first links go in one
//!     array (one `sbatch`, ids `<array>_<index>` in the state and in
//!     `status`), never more than two run at once, five complete; the one
//!     that failed is retried by the next apply alone, in a new array.
//!
//! Every scenario has its own stack (`lc<pid>-<scenario>`, in the ownership
//! tag of its job names) and output directory, so the tests run in parallel: cargo's
//! default number of test threads is the number of CPUs (two on the 2-core CI
//! machine: about 9 minutes for all); `--test-threads=10` runs them all at
//! once (about 5 minutes). Per-task configs keep the default
//! `exclusive: true` (the stub servers of one node would share a port), so
//! one link runs per node: scenarios 1, 3, 4, 5, 9, 10, 11 and 13 use the
//! `cpu` partition (n1, n2; 13 takes both), 2, 6, 7, 8 and 12 the `gpu`
//! partition (g1, no GPUs asked).
//! Scenarios 4 and 5 disturb a node (the one their own exclusive link runs
//! on): they take the `DISRUPT` lock so that only one of them does at a time,
//! and a guard resumes the node / cancels the urgent job whatever happens.
//! Every test cancels its own live jobs (by the tag in their names) when it ends, and
//! removes its directories unless it failed or `E2E_KEEP=1` (the paths are
//! printed).
//!
//! Needs the cluster up and root (the cluster's ssh key is root's; Slurm is
//! queried with the local `squeue`/`sacct`/`scontrol`, `/proc` is read to
//! find model servers): `sudo bash tests/cluster/up.sh`, then
//! `cargo test --test e2e_lifecycle -- --nocapture` (each test prints its
//! duration). Each scenario takes 0.5–3 minutes when the cluster is free.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use evalctl::remote::layout::{self, Tag};
use serde_json::Value;

mod browser;
mod common;
mod mlflow;
#[path = "pyvenv/mod.rs"]
mod pyvenv;
use common::{ClusterInfo, Out, Proc, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_evalctl");
/// Longest wait for a whole chain (links queue behind other tests' jobs).
const CHAIN_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Longest wait for one evalctl command that does not wait for jobs.
const CMD_TIMEOUT: Duration = Duration::from_secs(180);
/// Slurm job states in which a job has not ended yet.
const UNFINISHED: &[&str] = &["", "PENDING", "RUNNING", "REQUEUED", "RESIZING", "SUSPENDED", "COMPLETING"];
/// Units' states that do not change any more without an apply.
const TERMINAL: &[&str] = &["completed", "failed", "cancelled", "stopped", "not submitted"];

/// Scenarios 4 and 5 take a node away (down, or preempted by an urgent job):
/// one at a time.
static DISRUPT: Mutex<()> = Mutex::new(());

fn disrupt_lock() -> MutexGuard<'static, ()> {
    DISRUPT.lock().unwrap_or_else(|p| p.into_inner())
}

// ------------------------------------------------------------------ cluster

/// The running test cluster, with the partitions these tests use.
fn cluster() -> &'static ClusterInfo {
    common::cluster_checked(common::SSH_VARS, |_| {
        let sinfo =
            Command::new("sinfo").args(["-h", "-o", "%R"]).output().map_err(|e| format!("cannot run sinfo: {e}"))?;
        let partitions: BTreeSet<String> =
            String::from_utf8_lossy(&sinfo.stdout).split_whitespace().map(str::to_owned).collect();
        for p in ["cpu", "gpu", "urgent"] {
            if !partitions.contains(p) {
                return Err(format!("the cluster has no partition `{p}` (sinfo shows {partitions:?})"));
            }
        }
        Ok(())
    })
}

// ------------------------------------------------------------------ processes

/// Runs a program to its end (no timeout: Slurm's client commands return).
fn sh(program: &str, args: &[&str]) -> std::process::Output {
    use std::os::unix::process::ExitStatusExt;
    Command::new(program).args(args).stdin(Stdio::null()).output().unwrap_or_else(|e| std::process::Output {
        status: std::process::ExitStatus::from_raw(127 << 8),
        stdout: vec![],
        stderr: format!("cannot run {program}: {e}").into_bytes(),
    })
}

/// The output of a Slurm command that must succeed.
fn slurm(program: &str, args: &[&str]) -> String {
    let out = sh(program, args);
    assert!(
        out.status.success(),
        "`{program} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ------------------------------------------------------------------ Slurm

/// One job as accounting has it.
#[derive(Clone, Debug)]
struct Acct {
    id: u64,
    name: String,
    /// First word only (`CANCELLED by 1001` -> `CANCELLED`).
    state: String,
    node: String,
    start: String,
    end: String,
}

impl Acct {
    fn started(&self) -> bool {
        !matches!(self.start.as_str(), "" | "None" | "Unknown")
    }
    fn finished(&self) -> bool {
        !UNFINISHED.contains(&self.state.as_str())
    }
}

fn sacct(extra: &[&str]) -> Vec<Acct> {
    let mut args = vec!["-X", "-n", "-P", "-o", "JobID,JobName,State,NodeList,Start,End"];
    args.extend_from_slice(extra);
    slurm("sacct", &args)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            let [id, name, state, node, start, end] = f.as_slice() else { return None };
            Some(Acct {
                id: id.parse().ok()?,
                name: name.to_string(),
                state: state.split_whitespace().next().unwrap_or("").to_owned(),
                node: node.to_string(),
                start: start.to_string(),
                end: end.to_string(),
            })
        })
        .collect()
}

fn acct(id: u64) -> Option<Acct> {
    sacct(&["-j", &id.to_string()]).into_iter().find(|a| a.id == id)
}

/// The job's accounting record once it has ended (sacct lags slurmctld by a few seconds).
fn acct_final(id: u64, timeout: Duration) -> Acct {
    wait_for(&format!("accounting to show job {id} ended"), timeout, Duration::from_secs(2), || {
        acct(id).filter(Acct::finished)
    })
}

/// One job Slurm still has in its queue (pending, running, completing).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Live {
    id: u64,
    name: String,
    state: String,
    node: String,
}

fn squeue() -> Vec<Live> {
    slurm("squeue", &["-h", "-a", "-o", "%i|%j|%T|%N"])
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            let [id, name, state, node] = f.as_slice() else { return None };
            Some(Live {
                id: id.trim().parse().ok()?,
                name: name.to_string(),
                state: state.to_string(),
                node: node.to_string(),
            })
        })
        .collect()
}

fn node_state(node: &str) -> String {
    slurm("sinfo", &["-h", "-n", node, "-o", "%T"]).lines().next().unwrap_or("").trim().to_owned()
}

/// A node this test set DOWN; resumed when dropped, whatever happened.
struct NodeDown {
    node: String,
    restored: bool,
}

impl NodeDown {
    fn take(node: &str, why: &str) -> NodeDown {
        slurm("scontrol", &["update", &format!("nodename={node}"), "state=down", &format!("reason={why}")]);
        NodeDown { node: node.to_owned(), restored: false }
    }
    fn restore(&mut self) {
        if !self.restored {
            self.restored = true;
            let out = sh("scontrol", &["update", &format!("nodename={}", self.node), "state=resume"]);
            if !out.status.success() {
                eprintln!(
                    "[lifecycle] WARNING: could not resume node {}: {}",
                    self.node,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
    }
}

impl Drop for NodeDown {
    fn drop(&mut self) {
        self.restore();
    }
}

/// A job of this test outside evalctl (the urgent job); cancelled when dropped.
struct OwnJob(u64);

impl Drop for OwnJob {
    fn drop(&mut self) {
        let _ = sh("scancel", &[&self.0.to_string()]);
    }
}

/// Model server processes (`evalctl-model-server`) that belong to one of `jobs`.
fn model_servers_of(jobs: &BTreeSet<u64>) -> Vec<String> {
    let mut found = vec![];
    let Ok(dir) = std::fs::read_dir("/proc") else { return found };
    for entry in dir.flatten() {
        let path = entry.path();
        if !entry.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let cmdline = std::fs::read(path.join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if !cmdline.contains("evalctl-model-server") {
            continue;
        }
        let environ = std::fs::read(path.join("environ")).unwrap_or_default();
        let job = environ
            .split(|b| *b == 0)
            .find_map(|v| v.strip_prefix(b"SLURM_JOB_ID="))
            .and_then(|v| String::from_utf8_lossy(v).parse::<u64>().ok());
        if let Some(job) = job.filter(|j| jobs.contains(j)) {
            found.push(format!("pid {} (job {job}): {}", entry.file_name().to_string_lossy(), cmdline.trim()));
        }
    }
    found
}

// ------------------------------------------------------------------ stacks

/// What a scenario's config says beyond the common part.
struct Spec<'a> {
    /// `execution.account`.
    account: &'a str,
    partition: &'a str,
    tasks: &'a [&'a str],
    /// The harness stand-in's settings, a YAML flow mapping.
    stub: &'a str,
    /// More `execution` keys, YAML flow-mapping entries (may be empty).
    execution: &'a str,
    /// The local backend (`hostname: localhost`: Slurm commands run here, as
    /// root) instead of SSH.
    local: bool,
    /// The deployment's `port` and `command`, YAML flow-mapping entries.
    server: &'a str,
    /// More top-level YAML (may be empty).
    more: &'a str,
}

/// The common part of the specs.
const BASE: Spec<'static> = Spec {
    account: "research",
    partition: "cpu",
    tasks: &["gsm8k"],
    stub: "{}",
    execution: "",
    local: false,
    server: "command: \"evalctl-model-server --port 8000 --startup-delay 2\"",
    more: "",
};

/// A line of a unit's `chain` file: "<job id> <event> <epoch> [detail]".
#[derive(Clone, Debug)]
struct Event {
    job: u64,
    event: String,
    detail: String,
}

/// One scenario's stack: config, output directory, jobs; cleans up when dropped.
struct Stack {
    name: String,
    cfg_dir: PathBuf,
    config: PathBuf,
    out_dir: PathBuf,
    stack_dir: PathBuf,
    /// More directories to remove at the end.
    extra_dirs: Vec<PathBuf>,
    /// PATH for evalctl (local backend: also the jobs' PATH).
    path: Option<String>,
    started: Instant,
}

impl Stack {
    fn new(scenario: &str, spec: &Spec) -> Stack {
        let info = cluster();
        let name = format!("lc{}-{scenario}", std::process::id());
        let out_dir = info.shared().join(&name);
        let cfg_dir = std::env::temp_dir().join(format!("evalctl-e2e-lifecycle-{name}"));
        let _ = std::fs::remove_dir_all(&out_dir);
        let _ = std::fs::remove_dir_all(&cfg_dir);
        std::fs::create_dir_all(&cfg_dir).expect("create the config dir");
        let tasks: Vec<String> = spec.tasks.iter().map(|t| format!("{{name: {t}}}")).collect();
        let extra = if spec.execution.is_empty() { String::new() } else { format!(", {}", spec.execution) };
        let yaml = format!(
            "defaults: [{{execution: slurm/default}}, {{deployment: generic}}, _self_]\n\
             name: {name}\n\
             execution: {{{target}, account: {account}, partition: {partition}, \
             output_dir: {out}, gres: null, walltime: \"00:01:00\", mounts: {{mount_home: false}}{extra}}}\n\
             deployment: {{image: stub-server:latest, served_model_name: stub, {server}}}\n\
             evaluation:\n  \
               nemo_evaluator_config: {{config: {{params: {{extra: {{stub: {stub}}}}}}}}}\n  \
               tasks: [{tasks}]\n{more}",
            target = if spec.local {
                "hostname: localhost".to_owned()
            } else {
                format!(
                    "hostname: {}, username: {}",
                    info.get("EVALCTL_CLUSTER_SSH_ALIAS"),
                    info.get("EVALCTL_CLUSTER_USER")
                )
            },
            account = spec.account,
            partition = spec.partition,
            out = out_dir.display(),
            stub = spec.stub,
            tasks = tasks.join(", "),
            server = spec.server,
            more = spec.more,
        );
        let config = cfg_dir.join(format!("{name}.yaml"));
        std::fs::write(&config, yaml).expect("write the config");
        let stack_dir = out_dir.join(&name);
        let s = Stack {
            name,
            cfg_dir,
            config,
            out_dir,
            stack_dir,
            extra_dirs: vec![],
            path: None,
            started: Instant::now(),
        };
        s.log(&format!("config {}", s.config.display()));
        s
    }

    fn log(&self, msg: &str) {
        eprintln!("[lifecycle {} +{:.0}s] {msg}", self.name, self.started.elapsed().as_secs_f64());
    }

    fn command(&self, sub: &str, extra: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg(sub)
            .arg(&self.config)
            .args(extra)
            .current_dir(&self.cfg_dir)
            .env("EVALCTL_SSH_CONFIG", cluster().get("EVALCTL_CLUSTER_SSH_CONFIG"))
            .env("NO_COLOR", "1");
        if let Some(path) = &self.path {
            cmd.env("PATH", path);
        }
        cmd
    }

    fn what(&self, sub: &str, extra: &[&str]) -> String {
        format!("evalctl {sub} {} {}", self.config.display(), extra.join(" "))
    }

    fn evalctl(&self, sub: &str, extra: &[&str], timeout: Duration) -> Out {
        Proc::spawn(self.what(sub, extra), self.command(sub, extra), false).finish(timeout)
    }

    fn background(&self, sub: &str, extra: &[&str]) -> Proc {
        Proc::spawn(self.what(sub, extra), self.command(sub, extra), false)
    }

    /// `apply --auto-approve`, which must succeed.
    fn apply(&self) -> Out {
        let out = self.evalctl("apply", &["--auto-approve"], CMD_TIMEOUT);
        assert!(out.ok(), "apply failed\n{}", out.show());
        self.log("applied");
        out
    }

    /// `apply --auto-approve --wait` (exit code left to the caller).
    fn apply_wait(&self) -> Out {
        let out = self.evalctl("apply", &["--auto-approve", "--wait"], CHAIN_TIMEOUT);
        assert!(out.code.is_some(), "apply --wait did not end within {CHAIN_TIMEOUT:?}\n{}", out.show());
        self.log(&format!("apply --wait exited {:?}", out.code));
        out
    }

    /// `status --json`.
    fn status(&self) -> Vec<Value> {
        let out = self.evalctl("status", &["--json"], CMD_TIMEOUT);
        assert!(out.ok(), "status failed\n{}", out.show());
        match serde_json::from_str::<Value>(&out.stdout) {
            Ok(Value::Array(rows)) => rows,
            _ => panic!("status --json did not print a JSON array\n{}", out.show()),
        }
    }

    fn unit(&self, unit: &str) -> Value {
        let rows = self.status();
        rows.iter()
            .find(|r| r["unit"] == unit)
            .cloned()
            .unwrap_or_else(|| panic!("status has no unit `{unit}`: {}", Value::Array(rows.clone())))
    }

    /// Polls `status` until `unit` is terminal.
    fn wait_terminal(&self, unit: &str) -> Value {
        let row = wait_for(&format!("unit `{unit}` to end"), CHAIN_TIMEOUT, Duration::from_secs(5), || {
            let row = self.unit(unit);
            TERMINAL.contains(&row["state"].as_str().unwrap_or("")).then_some(row)
        });
        self.log(&format!("{unit} ended {}", row["state"]));
        row
    }

    fn dir(&self, unit: &str) -> PathBuf {
        self.stack_dir.join(unit)
    }

    /// A file of the unit's directory ("" when absent).
    fn file(&self, unit: &str, rel: &str) -> String {
        std::fs::read_to_string(self.dir(unit).join(rel)).unwrap_or_default()
    }

    fn batch_log(&self, unit: &str, job: u64) -> String {
        self.file(unit, &format!("logs/slurm-{job}.out"))
    }

    fn chain(&self, unit: &str) -> Vec<Event> {
        self.file(unit, "chain")
            .lines()
            .filter_map(|l| {
                let mut f = l.splitn(4, ' ');
                let job = f.next()?.parse().ok()?;
                let event = f.next()?.to_owned();
                let _at = f.next()?;
                Some(Event { job, event, detail: f.next().unwrap_or("").trim().to_owned() })
            })
            .collect()
    }

    fn has_event(&self, unit: &str, job: u64, event: &str) -> bool {
        self.chain(unit).iter().any(|e| e.job == job && e.event == event)
    }

    /// The first link and the resume link the last apply submitted for `unit`.
    /// The first and resume link apply submitted, once apply has released
    /// them (it records its state after the release): before that, the
    /// unit is rightly `held`.
    fn applied_jobs(&self, unit: &str) -> (u64, u64) {
        let what = format!("the chain file of `{unit}` to name its jobs and apply to record them");
        wait_for(&what, CMD_TIMEOUT, Duration::from_secs(1), || {
            let ids: Vec<u64> =
                self.chain(unit).iter().filter(|e| e.event == "submit" && e.detail == "apply").map(|e| e.job).collect();
            let state: Value =
                serde_json::from_str(&std::fs::read_to_string(self.stack_dir.join(".evalctl/state.json")).ok()?)
                    .ok()?;
            let recorded = state["units"][unit]["jobs"]
                .as_array()
                .is_some_and(|j| ids.first().is_some_and(|f| j.contains(&Value::from(*f))));
            (ids.len() >= 2 && recorded).then(|| (ids[0], ids[1]))
        })
    }

    /// Links that started, in order.
    fn started_links(&self, unit: &str) -> Vec<u64> {
        self.chain(unit).iter().filter(|e| e.event == "start").map(|e| e.job).collect()
    }

    /// Lines of the harness's `requests.log`: (job id, requests sent by that run).
    fn requests(&self, unit: &str) -> Vec<(u64, u64)> {
        self.file(unit, "artifacts/requests.log")
            .lines()
            .filter_map(|l| {
                let (j, n) = l.split_once(' ')?;
                Some((j.parse().ok()?, n.trim().parse().ok()?))
            })
            .collect()
    }

    /// Distinct answers in the harness's response cache.
    fn cached(&self, unit: &str) -> BTreeSet<u64> {
        self.file(unit, "artifacts/cache.jsonl")
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok()?.get("i")?.as_u64())
            .collect()
    }

    fn progress_done(&self, unit: &str) -> u64 {
        serde_json::from_str::<Value>(&self.file(unit, "artifacts/progress.json"))
            .ok()
            .and_then(|v| v.get("done")?.as_u64())
            .unwrap_or(0)
    }

    /// How many cached answers the harness found when job `job` started it
    /// ("nemo-evaluator: task T: K of N cached").
    fn cached_at_start(&self, unit: &str, job: u64) -> Option<u64> {
        let log = self.file(unit, &format!("logs/client-{job}.log"));
        let line = log.lines().find(|l| l.contains(" cached"))?;
        line.split(": ").nth(2)?.split(' ').next()?.parse().ok()
    }

    fn results(&self, unit: &str) -> Option<Value> {
        serde_json::from_str(&self.file(unit, "artifacts/results.json")).ok()
    }

    /// The ownership tag of a job name of this stack's.
    fn tag(&self, job_name: &str) -> Option<Tag> {
        layout::parse_name(job_name).filter(|t| t.stack == self.name)
    }

    fn is_mine(&self, job_name: &str) -> bool {
        self.tag(job_name).is_some()
    }

    /// The stack's jobs still in Slurm's queue.
    fn live(&self) -> Vec<Live> {
        squeue().into_iter().filter(|j| self.is_mine(&j.name)).collect()
    }

    /// The unit's jobs still in Slurm's queue (its first link and resume links).
    fn live_of(&self, unit: &str) -> Vec<Live> {
        squeue().into_iter().filter(|j| self.tag(&j.name).is_some_and(|t| t.unit == unit)).collect()
    }

    /// Every job of the stack that Slurm knows: those that became eligible
    /// (sacct's time window), those in the queue, and every job named in a
    /// chain file (a job cancelled while it waited for its dependency shows in
    /// sacct only when asked for by id).
    fn jobs(&self) -> Vec<Acct> {
        let mut all: BTreeMap<u64, Acct> = BTreeMap::new();
        let window = sacct(&["-a", "-S", "now-3hours"]);
        all.extend(window.into_iter().filter(|a| self.is_mine(&a.name)).map(|a| (a.id, a)));
        let mut ids: BTreeSet<u64> = self.live().iter().map(|j| j.id).collect();
        for unit in std::fs::read_dir(&self.stack_dir).into_iter().flatten().flatten() {
            for file in std::fs::read_dir(unit.path()).into_iter().flatten().flatten() {
                if file.file_name().to_string_lossy().starts_with("chain") {
                    let text = std::fs::read_to_string(file.path()).unwrap_or_default();
                    for l in text.lines() {
                        let f: Vec<&str> = l.split(' ').collect();
                        ids.extend(f.first().and_then(|j| j.parse::<u64>().ok()).filter(|j| *j > 0));
                        if f.get(1) == Some(&"submit") {
                            ids.extend(f.get(3).and_then(|j| j.parse::<u64>().ok()));
                        }
                    }
                }
            }
        }
        ids.retain(|id| !all.contains_key(id));
        if !ids.is_empty() {
            let list: Vec<String> = ids.iter().map(u64::to_string).collect();
            all.extend(
                sacct(&["-j", &list.join(",")]).into_iter().filter(|a| self.is_mine(&a.name)).map(|a| (a.id, a)),
            );
        }
        all.into_values().collect()
    }

    fn wait_no_live(&self) {
        wait_for(
            &format!("no live job of stack {}", self.name),
            Duration::from_secs(90),
            Duration::from_secs(2),
            || self.live().is_empty().then_some(()),
        );
    }

    /// Waits until job `job` runs; its node.
    fn wait_running(&self, job: u64, timeout: Duration) -> String {
        wait_for(&format!("job {job} to run"), timeout, Duration::from_secs(1), || {
            if let Some(j) = squeue().into_iter().find(|j| j.id == job) {
                return (j.state == "RUNNING").then_some(j.node);
            }
            let a = acct(job)?;
            assert!(!a.finished() || a.started(), "job {job} ended {} without running", a.state);
            a.started().then_some(a.node)
        })
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        let live: Vec<String> = self.live().iter().map(|j| j.id.to_string()).collect();
        if !live.is_empty() {
            let _ = Command::new("scancel").args(&live).stdin(Stdio::null()).output();
        }
        // Job arrays (named for the stack, not a unit; their elements have
        // ids `<array>_<index>`) by name.
        let _ =
            Command::new("scancel").args(["-n", &format!("evalctl:{}/array", self.name)]).stdin(Stdio::null()).output();
        let keep = failed || std::env::var_os("E2E_KEEP").is_some_and(|v| !v.is_empty());
        if keep {
            eprintln!("[lifecycle {}] kept {} and {}", self.name, self.cfg_dir.display(), self.out_dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.out_dir);
            let _ = std::fs::remove_dir_all(&self.cfg_dir);
            for d in &self.extra_dirs {
                let _ = std::fs::remove_dir_all(d);
            }
        }
        eprintln!(
            "[lifecycle {}] {} after {:.1} s",
            self.name,
            if failed { "FAILED" } else { "passed" },
            self.started.elapsed().as_secs_f64()
        );
    }
}

fn str_of<'a>(row: &'a Value, key: &str) -> &'a str {
    row[key].as_str().unwrap_or("")
}

fn jobs_of(row: &Value) -> Vec<u64> {
    row["jobs"].as_array().map(|a| a.iter().filter_map(Value::as_u64).collect()).unwrap_or_default()
}

/// Checks what every resumed chain must show once it completed: the first
/// link cut short (`cut` in sacct), a later link that resumed it from the
/// harness's cache and completed, `status` naming every link. Returns the
/// completing link.
fn check_resumed(s: &Stack, unit: &str, first: u64, resume: u64, requests: u64, cut: &str) -> u64 {
    let a1 = acct_final(first, Duration::from_secs(60));
    assert_eq!(a1.state, cut, "the first link {first} must end {cut}: {a1:?}");
    let row = s.unit(unit);
    assert_eq!(str_of(&row, "state"), "completed", "the chain must complete: {row}");
    let status = s.file(unit, "status");
    let last: u64 = status
        .strip_prefix("completed ")
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("status file of {unit} should be `completed <job>`, is {status:?}"));
    assert_ne!(last, first, "the first link was cut short, a later one must have completed");
    let al = acct_final(last, Duration::from_secs(60));
    assert_eq!(
        al.state,
        "COMPLETED",
        "the completing link {last} recorded `end completed` but Slurm ended it {}: its pending successor will \
         resume a completed chain: {al:?}\nchain: {:?}",
        al.state,
        s.chain(unit)
    );
    let links = s.started_links(unit);
    assert!(links.len() >= 2 && links[0] == first && links[1] == resume, "links started: {links:?}");
    assert!(s.has_event(unit, resume, "submit"), "the resume link {resume} queues the next link: {:?}", s.chain(unit));
    let log2 = s.batch_log(unit, resume);
    assert!(
        log2.contains(&format!("job {first} ended {cut}: resuming"))
            || log2.contains(&format!("no record of job {first} in Slurm")),
        "the resume link's log should say why it resumes:\n{log2}"
    );
    let jobs = jobs_of(&row);
    assert!(jobs.len() >= 2 && jobs.contains(&first) && jobs.contains(&resume), "status shows every link: {row}");
    assert!(row["links"].as_u64().unwrap_or(0) >= 2, "status counts the links: {row}");
    assert_eq!(str_of(&row, "progress"), format!("{requests}/{requests}"), "{row}");
    assert_eq!(str_of(&row, "results"), s.dir(unit).join("artifacts").display().to_string(), "{row}");
    // The harness resumed from its cache: the completing run sent fewer than all.
    let req = s.requests(unit);
    assert!(!req.iter().any(|(j, _)| *j == first), "the cut-short first link cannot have finished: {req:?}");
    let (rj, sent) = *req.last().unwrap_or_else(|| panic!("no requests.log line for {unit}"));
    assert_eq!(rj, last, "requests.log's last line is the completing link's: {req:?}");
    assert!(
        sent > 0 && sent < requests,
        "the completing link sent {sent} of {requests}: it must continue, not restart"
    );
    let cached = s.cached_at_start(unit, last).unwrap_or(0);
    assert!(
        cached > 0,
        "the completing link found no cached answers:\n{}",
        s.file(unit, &format!("logs/client-{last}.log"))
    );
    assert_eq!(s.cached(unit).len() as u64, requests, "every request answered once in the cache");
    let results = s.results(unit).unwrap_or_else(|| panic!("no results.json for {unit}"));
    assert_eq!(results["samples"], requests, "{results}");
    assert!(results["sent_this_run"].as_u64().unwrap_or(requests) < requests, "{results}");
    s.wait_no_live();
    last
}

// ------------------------------------------------------------------ scenarios

const THREE_TASKS: &[&str] = &["gsm8k", "hellaswag", "winogrande"];

/// Work that outlasts a 1-minute walltime: 32 requests of 3 s. A first link
/// (killed 60–90 s after its start, ~6 s of it the server's startup) cannot
/// finish it and does at least 18; the second then needs at most 14 (42 s),
/// well within its own minute.
const TIMEOUT_REQUESTS: u64 = 32;
const TIMEOUT_WORK: &str = "{requests: 32, delay: 3}";

/// 1. per_task, three tasks: all COMPLETED, results present, servers stopped,
///    nothing of the stack left in the queue.
#[test]
fn per_task_chains_complete_and_stop_their_servers() {
    let s = Stack::new(
        "pertask",
        &Spec { partition: "cpu", tasks: THREE_TASKS, stub: "{requests: 5, delay: 0.5}", ..BASE },
    );
    let out = s.apply_wait();
    assert!(out.ok(), "apply --wait exits 0 when every unit completed\n{}", out.show());
    assert!(out.stdout.contains("3 created"), "{}", out.show());
    let rows = s.status();
    assert_eq!(rows.len(), 3, "one unit per task: {rows:?}");
    let mut all_jobs = BTreeSet::new();
    for task in THREE_TASKS {
        let row = rows.iter().find(|r| r["unit"] == *task).unwrap_or_else(|| panic!("no unit {task}: {rows:?}"));
        assert_eq!(str_of(row, "state"), "completed", "{row}");
        assert_eq!(str_of(row, "kind"), "task", "{row}");
        assert_eq!(str_of(row, "progress"), "5/5", "{row}");
        assert_eq!(str_of(row, "results"), s.dir(task).join("artifacts").display().to_string(), "{row}");
        let (first, resume) = s.applied_jobs(task);
        all_jobs.extend([first, resume]);
        assert_eq!(s.file(task, "status").trim(), format!("completed {first}"), "{task}'s status file");
        assert!(s.has_event(task, first, "end"), "{task}: the first link records its end: {:?}", s.chain(task));
        assert_eq!(acct_final(first, Duration::from_secs(60)).state, "COMPLETED", "{task}'s first link");
        let results = s.results(task).unwrap_or_else(|| panic!("{task}: no results.json"));
        assert_eq!((results["task"].as_str(), results["samples"].as_u64()), (Some(*task), Some(5)), "{results}");
        assert_eq!(s.requests(task), vec![(first, 5)], "{task}: one run, every request sent once");
        let server_log = s.file(task, &format!("logs/server-{first}-0.log"));
        assert!(server_log.contains("model-server: pid"), "{task}: the link started its own server:\n{server_log}");
        let batch = s.batch_log(task, first);
        assert!(batch.contains("is healthy"), "{task}: the link waited for its server:\n{batch}");
    }
    // The successors of completed links do not linger, and never ran.
    s.wait_no_live();
    for task in THREE_TASKS {
        let (_, resume) = s.applied_jobs(task);
        let a = acct_final(resume, Duration::from_secs(60));
        assert!(a.state == "CANCELLED" && !a.started(), "{task}'s resume link must be dropped unrun: {a:?}");
    }
    // No model server outlives its job.
    let leftover = wait_for("the model servers to be gone", Duration::from_secs(30), Duration::from_secs(2), || {
        let left = model_servers_of(&all_jobs);
        left.is_empty().then_some(left)
    });
    assert!(leftover.is_empty());
    // `logs` shows the batch, server and client logs of the latest link.
    let (first, _) = s.applied_jobs("gsm8k");
    let logs = s.evalctl("logs", &["gsm8k"], CMD_TIMEOUT);
    assert!(logs.ok(), "{}", logs.show());
    for needle in [format!("slurm-{first}.out"), format!("server-{first}-0.log"), "nemo-evaluator: done".into()] {
        assert!(logs.stdout.contains(&needle), "`logs` should show {needle}\n{}", logs.show());
    }
    // `results`: every task's score, read from the harness's results.yml,
    // with its chain's jobs and fingerprint; the same in every format.
    let out = s.evalctl("results", &["--format", "json"], CMD_TIMEOUT);
    assert!(out.ok(), "{}", out.show());
    let report: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{}", out.show()));
    assert_eq!(report["version"], 1, "{report}");
    assert_eq!(report["missing"], serde_json::json!([]), "{report}");
    let rows = report["rows"].as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 3, "one score per task: {report}");
    for task in THREE_TASKS {
        let row = rows.iter().find(|r| r["unit"] == *task).unwrap_or_else(|| panic!("no score of {task}: {report}"));
        let run_config: Value = serde_json::from_str(&s.file(task, "artifacts/run_config.yml")).unwrap();
        let harness_task = run_config["config"]["type"].as_str().unwrap_or_default().to_owned();
        // The stand-in's score: the share of samples whose hash of model,
        // task and index starts below 160.
        let correct = (0..5)
            .filter(|i| {
                use sha2::Digest;
                sha2::Sha256::digest(format!("stub|{harness_task}|{i}").as_bytes())[0] < 160
            })
            .count();
        assert_eq!(row["task"], harness_task.as_str(), "{row}");
        assert_eq!((row["metric"].as_str(), row["count"].as_u64()), (Some("accuracy"), Some(5)), "{row}");
        assert!((row["value"].as_f64().unwrap_or(-1.0) - correct as f64 / 5.0).abs() < 1e-9, "{task}: {row}");
        let (first, _) = s.applied_jobs(task);
        assert!(jobs_of(row).contains(&first) && row["state"] == "completed", "{row}");
        assert_eq!(row["fingerprint"].as_str().map(str::len), Some(16), "{row}");
    }
    for format in ["table", "csv", "markdown"] {
        let out = s.evalctl("results", &["--format", format], CMD_TIMEOUT);
        assert!(out.ok() && THREE_TASKS.iter().all(|t| out.stdout.contains(t)), "{format}\n{}", out.show());
    }
}

/// 2. shared topology: one deployment job, every task completed against it,
///    and the deployment ended by itself after the last task.
#[test]
fn shared_server_serves_every_task_and_ends_by_itself() {
    let s = Stack::new(
        "shared",
        &Spec {
            partition: "gpu",
            tasks: THREE_TASKS,
            stub: "{requests: 5, delay: 0.5}",
            // One node: the server and the (server-less) task jobs share it.
            execution: "topology: shared, sbatch_extra_flags: {exclusive: false}",
            ..BASE
        },
    );
    let out = s.apply_wait();
    assert!(out.ok(), "apply --wait exits 0 when every unit completed\n{}", out.show());
    let rows = s.status();
    assert_eq!(rows.len(), 4, "a server unit and three tasks: {rows:?}");
    let server = rows.iter().find(|r| r["unit"] == "server").unwrap_or_else(|| panic!("no server unit: {rows:?}"));
    assert_eq!((str_of(server, "kind"), str_of(server, "state")), ("deployment", "completed"), "{server}");
    let deployments: Vec<Acct> = s
        .jobs()
        .into_iter()
        .filter(|a| s.tag(&a.name).is_some_and(|t| t.unit == "server" && t.role == "server"))
        .collect();
    assert_eq!(deployments.len(), 1, "exactly one deployment job: {deployments:?}");
    // Its resume link never ran: the deployment ended by itself.
    let resumes: Vec<Acct> = s
        .jobs()
        .into_iter()
        .filter(|a| s.tag(&a.name).is_some_and(|t| t.unit == "server" && t.role == "resume"))
        .collect();
    assert_eq!(resumes.len(), 1, "one resume link: {resumes:?}");
    assert!(!s.has_event("server", resumes[0].id, "start"), "the resume link did no work: {:?}", s.chain("server"));
    let server_job = deployments[0].id;
    let server_acct = acct_final(server_job, Duration::from_secs(60));
    assert_eq!(server_acct.state, "COMPLETED", "the deployment ends by itself, not at its time limit: {server_acct:?}");
    assert!(s.has_event("server", server_job, "end"), "{:?}", s.chain("server"));
    assert!(s.file("server", "endpoint").is_empty(), "the endpoint is withdrawn when the server ends");
    let mut last_task_end = String::new();
    for task in THREE_TASKS {
        let row = rows.iter().find(|r| r["unit"] == *task).unwrap_or_else(|| panic!("no unit {task}: {rows:?}"));
        assert_eq!(str_of(row, "state"), "completed", "{row}");
        let (first, _) = s.applied_jobs(task);
        let a = acct_final(first, Duration::from_secs(60));
        assert_eq!(a.state, "COMPLETED", "{task}: {a:?}");
        last_task_end = last_task_end.max(a.end.clone());
        assert_eq!(s.requests(task), vec![(first, 5)], "{task}");
        assert!(s.results(task).is_some(), "{task}: no results.json");
        let run_config = s.file(task, "artifacts/run_config.yml");
        assert!(
            run_config.contains(&format!("http://{}:8000", server_acct.node)),
            "{task} used the shared server on {}: {run_config}",
            server_acct.node
        );
        let logs = std::fs::read_dir(s.dir(task).join("logs")).map(|d| d.flatten().count()).unwrap_or(0);
        let own_servers = std::fs::read_dir(s.dir(task).join("logs"))
            .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("server-")).count())
            .unwrap_or(0);
        assert!(logs > 0 && own_servers == 0, "{task} starts no server of its own");
    }
    assert!(
        server_acct.end >= last_task_end,
        "the deployment ended ({}) before the last task ({last_task_end})",
        server_acct.end
    );
    s.wait_no_live();
    assert!(model_servers_of(&BTreeSet::from([server_job])).is_empty(), "the shared server process is gone");
}

/// A comment for a site's idle-GPU reaper, and what makes `#SBATCH` lines
/// and shells stumble.
const REAPER_COMMENT: &str =
    r#"{"OccupiedIdleGPUsJobReaper":{"exemptIdleTimeMins":"600","reason":"data loading"}} it's $HOME #1 \x"#;

/// What Slurm has of a job: (name, comment), from the queue or accounting.
fn name_and_comment(job: u64) -> (String, String) {
    wait_for(&format!("job {job}'s name and comment"), Duration::from_secs(60), Duration::from_secs(2), || {
        let out = sh("scontrol", &["show", "job", &job.to_string()]);
        if out.status.success() {
            // `scontrol show job -o`-free parsing: one `JobName=` and one
            // `Comment=` line; the comment runs to the end of its line.
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let name = text.split_whitespace().find_map(|w| w.strip_prefix("JobName="))?.to_owned();
            let comment = text.lines().find_map(|l| l.trim_start().strip_prefix("Comment="))?;
            return Some((name, comment.trim_end_matches(' ').to_owned()));
        }
        let name = slurm("sacct", &["-n", "-X", "-P", "-j", &job.to_string(), "-o", "JobName"]);
        let comment = slurm("sacct", &["-n", "-X", "-P", "-j", &job.to_string(), "-o", "Comment"]);
        let (name, comment) = (name.lines().next()?.to_owned(), comment.lines().next()?.to_owned());
        Some((name, comment))
    })
}

/// 3. an evaluation longer than the walltime: TIMEOUT, resumed from the
///    cache, COMPLETED; `status` right while it runs; `logs --follow`; the
///    user's comment on every link, verbatim.
#[test]
fn timed_out_link_resumes_from_the_cache() {
    const UNIT: &str = "gsm8k";
    let comment = REAPER_COMMENT.replace('\'', "''");
    let execution = format!("subproject: nightly, sbatch_comment: '{comment}'");
    let spec = Spec { partition: "cpu", tasks: &[UNIT], stub: TIMEOUT_WORK, execution: &execution, ..BASE };
    let s = Stack::new("timeout", &spec);
    let mut wait = s.background("apply", &["--auto-approve", "--wait"]);
    let (first, resume) = s.applied_jobs(UNIT);
    s.log(&format!("first link {first}, resume link {resume}"));
    let mut follow = s.background("logs", &[UNIT, "--follow"]);
    // The resume link waits a while after the first link ended (as behind
    // other jobs on a busy cluster), so that `resuming` can be seen.
    slurm("scontrol", &["update", &format!("jobid={resume}"), "StartTime=now+900"]);
    let (mut released, mut resuming_checked, mut first_ended) = (false, false, None::<Instant>);
    // Status against the queue, sampled while nothing changes.
    let mut seen: Vec<String> = vec![];
    let start = Instant::now();
    loop {
        let before = (s.live_of(UNIT), s.file(UNIT, "status"));
        let row = s.unit(UNIT);
        let after = (s.live_of(UNIT), s.file(UNIT, "status"));
        let state = str_of(&row, "state").to_owned();
        assert!(
            ["pending", "running", "resuming", "completed"].contains(&state.as_str()),
            "unexpected state while the chain works: {row}\nqueue {:?}\nstatus file {:?}\nchain {:?}\nlog of the \
             current link:\n{}",
            after.0,
            after.1,
            s.chain(UNIT),
            s.batch_log(UNIT, row["current_job"].as_u64().unwrap_or(0))
        );
        if before == after {
            let (live, file) = &before;
            let word = file.split(' ').next().unwrap_or("");
            let expect = if live.iter().any(|j| j.state != "PENDING") {
                Some("running")
            } else if !live.is_empty() && word == "interrupted" {
                Some("resuming")
            } else if !live.is_empty() && file.is_empty() {
                Some("pending")
            } else if live.is_empty() && word == "completed" {
                Some("completed")
            } else {
                None
            };
            if let Some(expect) = expect {
                assert_eq!(state, expect, "queue {live:?}, status file {file:?}, but status says {row}");
                resuming_checked |= expect == "resuming";
            }
            if state == "resuming" {
                assert!(str_of(&row, "detail").starts_with("previous link"), "{row}");
            }
        }
        if seen.last() != Some(&state) {
            s.log(&format!("status: {state} {} jobs {:?}", str_of(&row, "detail"), jobs_of(&row)));
            seen.push(state.clone());
        }
        if TERMINAL.contains(&state.as_str()) || !wait.running() {
            break;
        }
        if !released {
            if first_ended.is_none() && acct(first).is_some_and(|a| a.finished()) {
                first_ended = Some(Instant::now());
            }
            if resuming_checked || first_ended.is_some_and(|t| t.elapsed() > Duration::from_secs(60)) {
                slurm("scontrol", &["update", &format!("jobid={resume}"), "StartTime=now"]);
                released = true;
                s.log(&format!("resume link {resume} released"));
            }
        }
        assert!(start.elapsed() < CHAIN_TIMEOUT, "the chain did not end within {CHAIN_TIMEOUT:?}; states {seen:?}");
        std::thread::sleep(Duration::from_secs(3));
    }
    let out = wait.finish(Duration::from_secs(120));
    assert!(out.ok(), "apply --wait exits 0 once the resumed chain completed\n{}", out.show());
    assert!(seen.iter().any(|s| s == "running"), "status never said running: {seen:?}");
    assert!(resuming_checked, "status never said resuming while the resume link waited: {seen:?}");
    let last = check_resumed(&s, UNIT, first, resume, TIMEOUT_REQUESTS, "TIMEOUT");
    s.log(&format!("completed by link {last}; states seen {seen:?}; requests {:?}", s.requests(UNIT)));
    // Every link has the comment verbatim and the tag in its name: the two
    // apply submitted with their hashes, the one the resume link queued
    // (its runtime's sbatch) as rendered.
    let queued: Vec<u64> = s
        .chain(UNIT)
        .iter()
        .filter(|e| e.job == resume && e.event == "submit")
        .filter_map(|e| e.detail.parse().ok())
        .collect();
    assert_eq!(queued.len(), 1, "the resume link queued one next link: {:?}", s.chain(UNIT));
    for (job, role, hashed) in [(first, "first", true), (resume, "resume", true), (queued[0], "resume", false)] {
        let (name, got) = name_and_comment(job);
        assert_eq!(got, REAPER_COMMENT, "job {job}'s comment must be the config's, verbatim");
        let tag = s.tag(&name).unwrap_or_else(|| panic!("job {job}'s name {name:?} is no tag of {}", s.name));
        assert_eq!((tag.unit.as_str(), tag.role.as_str(), tag.subproject.as_deref()), (UNIT, role, Some("nightly")));
        assert_eq!(tag.script_hash.is_some(), hashed, "job {job}: {name}");
    }
    // Refresh still finds the stack's jobs by their names: nothing to do.
    let plan = s.evalctl("plan", &["--detailed-exitcode"], CMD_TIMEOUT);
    assert_eq!(plan.code, Some(0), "plan after the chain completed: no changes\n{}", plan.show());
    let followed = follow.finish(Duration::from_secs(120));
    assert!(followed.ok(), "logs --follow ends with the chain\n{}", followed.show());
    for needle in [format!("job {first} ended TIMEOUT: resuming"), "nemo-evaluator: done".into()] {
        assert!(followed.stdout.contains(&needle), "logs --follow should have shown {needle:?}\n{}", followed.show());
    }
    // Run time used counts every link, also the one cut short at its time limit.
    let row = s.unit(UNIT);
    assert!(
        row["elapsed"].as_u64().unwrap_or(0) >= 60,
        "status elapsed must include the first link's full minute (it ran until its time limit): {row}"
    );
}

/// Waits until the first link runs and has done some work; its node.
fn wait_working(s: &Stack, unit: &str, first: u64) -> String {
    let node = s.wait_running(first, CHAIN_TIMEOUT);
    wait_for(&format!("job {first} to make progress"), Duration::from_secs(120), Duration::from_millis(500), || {
        (s.progress_done(unit) >= 2).then_some(())
    });
    let still = squeue().into_iter().find(|j| j.id == first);
    assert!(
        still.as_ref().is_some_and(|j| j.state == "RUNNING" && j.node == node),
        "job {first} should still run on {node}: {still:?}"
    );
    node
}

/// 4. the node of the running link goes DOWN: NODE_FAIL, resumed on the
///    other node, COMPLETED.
#[test]
fn link_on_failed_node_resumes_elsewhere() {
    const UNIT: &str = "gsm8k";
    let s =
        Stack::new("nodefail", &Spec { partition: "cpu", tasks: &[UNIT], stub: "{requests: 12, delay: 2}", ..BASE });
    let serial = disrupt_lock();
    s.apply();
    let (first, resume) = s.applied_jobs(UNIT);
    let node = wait_working(&s, UNIT, first);
    s.log(&format!("job {first} runs on {node}: setting it DOWN"));
    let mut down = NodeDown::take(&node, &format!("evalctl-e2e-{}", s.name));
    let a1 = acct_final(first, Duration::from_secs(90));
    assert_eq!(a1.state, "NODE_FAIL", "the link on the downed node: {a1:?}");
    // First in line for the other node, so that this one is back soon.
    let _ = sh("scontrol", &["update", &format!("jobid={resume}"), "priority=4294967000"]);
    // Kept down until the resume link has a node, so that it cannot be this
    // one (at most 5 minutes: the other node may be busy with other jobs).
    let node2 = s.wait_running(resume, Duration::from_secs(300));
    down.restore();
    drop(serial);
    s.log(&format!("resume link {resume} runs on {node2}; {node} resumed ({})", node_state(&node)));
    assert_ne!(node2, node, "the resume link must run on another node");
    let row = s.wait_terminal(UNIT);
    assert_eq!(str_of(&row, "state"), "completed", "{row}");
    check_resumed(&s, UNIT, first, resume, 12, "NODE_FAIL");
}

/// 5. an urgent job preempts the running link: PREEMPTED, resumed, COMPLETED.
#[test]
fn preempted_link_resumes() {
    const UNIT: &str = "gsm8k";
    let s = Stack::new("preempt", &Spec { partition: "cpu", tasks: &[UNIT], stub: "{requests: 12, delay: 2}", ..BASE });
    let serial = disrupt_lock();
    s.apply();
    let (first, resume) = s.applied_jobs(UNIT);
    let node = wait_working(&s, UNIT, first);
    s.log(&format!("job {first} runs on {node}: submitting an urgent job there"));
    let urgent_out = slurm(
        "sbatch",
        &[
            "--parsable",
            "--partition=urgent",
            &format!("--nodelist={node}"),
            "--exclusive",
            "--account=research",
            "--time=00:01:00",
            &format!("--job-name={}-urgent", s.name),
            "--output=/dev/null",
            "--wrap=sleep 15",
        ],
    );
    let urgent = OwnJob(urgent_out.trim().split(';').next().unwrap_or("").parse().expect("urgent job id"));
    let a1 = acct_final(first, Duration::from_secs(90));
    assert_eq!(a1.state, "PREEMPTED", "the link preempted by the urgent job: {a1:?}");
    let au = wait_for("the urgent job to run", Duration::from_secs(120), Duration::from_secs(1), || {
        acct(urgent.0).filter(Acct::started)
    });
    assert_eq!(au.node, node, "the urgent job took the link's node");
    let node2 = s.wait_running(resume, CHAIN_TIMEOUT);
    drop(urgent);
    drop(serial);
    s.log(&format!("resume link {resume} runs on {node2}"));
    let row = s.wait_terminal(UNIT);
    assert_eq!(str_of(&row, "state"), "completed", "{row}");
    check_resumed(&s, UNIT, first, resume, 12, "PREEMPTED");
}

/// 6. the evaluator exits 1: FAILED, not resumed, `status` names the log;
///    `apply` retries up to `max_attempts`, then says it does not.
#[test]
fn failed_evaluation_is_retried_up_to_max_attempts() {
    const UNIT: &str = "gsm8k";
    let s = Stack::new(
        "failed",
        &Spec {
            partition: "gpu",
            tasks: &[UNIT],
            stub: "{requests: 3, delay: 0.2, exit_code: 1}",
            execution: "max_attempts: 2",
            ..BASE
        },
    );
    let out = s.apply_wait();
    assert_eq!(out.code, Some(1), "apply --wait fails when a unit failed\n{}", out.show());
    assert!(out.stderr.contains("not every unit completed"), "{}", out.show());
    let (j1, j2) = s.applied_jobs(UNIT);
    assert_eq!(acct_final(j1, Duration::from_secs(60)).state, "FAILED", "the failing link {j1}");
    s.wait_no_live();
    // The resume link woke up, saw that the link recorded its failure, and
    // did no work.
    let a2 = acct_final(j2, Duration::from_secs(60));
    assert!(!s.has_event(UNIT, j2, "start"), "the resume link must not start work: {:?}", s.chain(UNIT));
    if a2.started() {
        assert!(
            s.chain(UNIT).iter().any(|e| e.job == j2 && e.event == "stop" && e.detail == "failed"),
            "the resume link records why it stopped: {:?}",
            s.chain(UNIT)
        );
        let log2 = s.batch_log(UNIT, j2);
        assert!(
            log2.contains(&format!("the chain already ended: 'failed {j1} exit 1': not resuming")),
            "the resume link's log says why it stops:\n{log2}"
        );
    }
    assert_eq!(s.requests(UNIT), vec![(j1, 3)], "only the failing link ran the harness");
    let row = s.unit(UNIT);
    let log = s.dir(UNIT).join(format!("logs/slurm-{j1}.out")).display().to_string();
    assert_eq!(str_of(&row, "state"), "failed", "{row}");
    assert!(str_of(&row, "detail").contains("exit 1"), "{row}");
    assert_eq!(str_of(&row, "log"), log, "status names the failed link's log: {row}");
    assert!(Path::new(&log).is_file(), "{log} exists");
    assert_eq!(row["attempts"], 1, "{row}");
    let table = s.evalctl("status", &[], CMD_TIMEOUT);
    assert!(table.ok() && table.stdout.contains(&format!("(log: {log})")), "{}", table.show());

    // Second attempt.
    let plan = s.evalctl("plan", &[], CMD_TIMEOUT);
    assert!(plan.ok(), "{}", plan.show());
    assert!(plan.both().contains("retry") && plan.both().contains("attempt 2 of 2"), "{}", plan.show());
    let out = s.apply_wait();
    assert_eq!(out.code, Some(1), "the retry fails again\n{}", out.show());
    assert!(out.stdout.contains("1 retried"), "{}", out.show());
    let (j3, _) = s.applied_jobs(UNIT);
    assert!(j3 > j2, "the retry submitted a new chain ({j3})");
    assert_eq!(acct_final(j3, Duration::from_secs(60)).state, "FAILED", "the retried link {j3}");
    assert_eq!(s.requests(UNIT).len(), 2, "two runs of the harness in all: {:?}", s.requests(UNIT));
    // As after the first attempt: the retry's resume link is still live
    // (it wakes, sees the failure and stops), and the unit shows as
    // running until it has ended.
    s.wait_no_live();
    let row = s.unit(UNIT);
    assert_eq!((str_of(&row, "state"), row["attempts"].as_u64()), ("failed", Some(2)), "{row}");

    // No third attempt, and the plan says why.
    let jobs_before: BTreeSet<u64> = s.jobs().iter().map(|a| a.id).collect();
    let plan = s.evalctl("plan", &["--format", "json"], CMD_TIMEOUT);
    assert!(plan.ok(), "{}", plan.show());
    let doc: Value = serde_json::from_str(&plan.stdout).unwrap_or_else(|e| panic!("plan JSON: {e}\n{}", plan.show()));
    let change = doc["changes"].as_array().and_then(|c| c.iter().find(|c| c["unit"] == UNIT)).cloned();
    let change = change.unwrap_or_else(|| panic!("the plan has no entry for {UNIT}: {doc}"));
    assert_eq!(change["action"], "none", "not retried after max_attempts: {change}");
    let reason = str_of(&change, "reason");
    assert!(reason.contains("not retried") && reason.contains("max_attempts"), "{change}");
    let out = s.evalctl("apply", &["--auto-approve"], CMD_TIMEOUT);
    assert!(out.ok(), "{}", out.show());
    assert!(!out.stdout.contains("submitted"), "no third attempt\n{}", out.show());
    std::thread::sleep(Duration::from_secs(3));
    let jobs_after: BTreeSet<u64> = s.jobs().iter().map(|a| a.id).collect();
    assert_eq!(jobs_after, jobs_before, "no job submitted after max_attempts");
    // What people read says it too (not just "No changes.").
    let plan = s.evalctl("plan", &["--detailed-exitcode"], CMD_TIMEOUT);
    assert_eq!(plan.code, Some(0), "nothing to do after max_attempts\n{}", plan.show());
    for (what, text) in [("plan", plan.both()), ("apply", out.both())] {
        assert!(
            text.contains(UNIT) && text.contains("not retried") && text.contains("max_attempts"),
            "`{what}` should say that {UNIT} is not retried (max_attempts reached)\n{}",
            if what == "plan" { plan.show() } else { out.show() }
        );
    }
}

/// 7. `cancel` during a run: nothing live at once, and no successor ever runs.
#[test]
fn cancel_ends_the_chain_for_good() {
    const UNIT: &str = "gsm8k";
    let s = Stack::new("cancel", &Spec { partition: "gpu", tasks: &[UNIT], stub: "{requests: 30, delay: 1}", ..BASE });
    s.apply();
    let (first, resume) = s.applied_jobs(UNIT);
    wait_working(&s, UNIT, first);
    let out = s.evalctl("cancel", &[], CMD_TIMEOUT);
    assert!(out.ok(), "{}", out.show());
    assert!(out.stdout.contains(&format!("Cancelled: {UNIT}")), "{}", out.show());
    let live = s.live();
    assert!(live.is_empty(), "cancel returns once the chain is gone: {live:?}");
    let requests = s.file(UNIT, "artifacts/requests.log");
    let cached = s.cached(UNIT);
    let a1 = acct_final(first, Duration::from_secs(60));
    let a2 = acct_final(resume, Duration::from_secs(60));
    assert_eq!(a1.state, "CANCELLED", "{a1:?}");
    assert!(a2.state == "CANCELLED" && !a2.started(), "the pending successor is cancelled unrun: {a2:?}");
    let row = s.unit(UNIT);
    assert_eq!(str_of(&row, "state"), "cancelled", "{row}");
    // Long after a successor would have started (a few seconds), still nothing ran.
    s.log("cancelled; waiting 30 s for a successor that must not come");
    std::thread::sleep(Duration::from_secs(30));
    let ids: BTreeSet<u64> = s.jobs().iter().map(|a| a.id).collect();
    assert_eq!(ids, BTreeSet::from([first, resume]), "no job of the unit after the cancel");
    let a2 = acct(resume).expect("the resume link in accounting");
    assert!(a2.state == "CANCELLED" && !a2.started(), "{a2:?}");
    assert!(s.live().is_empty());
    assert!(!s.has_event(UNIT, resume, "start") && !s.has_event(UNIT, resume, "stop"), "{:?}", s.chain(UNIT));
    assert_eq!(s.file(UNIT, "artifacts/requests.log"), requests, "requests.log unchanged");
    assert_eq!(s.cached(UNIT), cached, "no request sent after the cancel");
    assert!(s.results(UNIT).is_none(), "the cancelled run wrote no results");
    assert_eq!(str_of(&s.unit(UNIT), "state"), "cancelled");
}

/// 8. `max_walltime` reached: the chain stops, `status` says stopped.
#[test]
fn chain_stops_at_max_walltime() {
    const UNIT: &str = "gsm8k";
    let s = Stack::new(
        "maxwall",
        &Spec {
            partition: "gpu",
            tasks: &[UNIT],
            stub: "{requests: 60, delay: 3}",
            execution: "max_walltime: \"00:01:30\"",
            ..BASE
        },
    );
    let out = s.apply_wait();
    assert_eq!(out.code, Some(1), "a stopped chain is not a completed one\n{}", out.show());
    let (first, resume) = s.applied_jobs(UNIT);
    let row = s.unit(UNIT);
    assert_eq!(str_of(&row, "state"), "stopped", "{row}");
    assert!(str_of(&row, "detail").contains("max_walltime"), "{row}");
    let status = s.file(UNIT, "status");
    assert!(status.starts_with("stopped ") && status.trim_end().ends_with(" max_walltime"), "status file {status:?}");
    let chain = s.chain(UNIT);
    let stop = chain
        .iter()
        .find(|e| e.event == "stop" && e.detail == "max_walltime")
        .unwrap_or_else(|| panic!("no max_walltime stop in the chain: {chain:?}"));
    // 60 s + 60 s of links passed 90 s: two links ran, the third stopped at its gate.
    assert_eq!(s.started_links(UNIT), vec![first, resume], "{chain:?}");
    assert!(!s.has_event(UNIT, stop.job, "start") && !s.has_event(UNIT, stop.job, "submit"), "{chain:?}");
    assert_eq!(acct_final(first, Duration::from_secs(60)).state, "TIMEOUT");
    assert_eq!(acct_final(resume, Duration::from_secs(60)).state, "TIMEOUT");
    assert_eq!(acct_final(stop.job, Duration::from_secs(60)).state, "COMPLETED", "the stopping link exits 0");
    assert!(s.results(UNIT).is_none(), "the work was not finished");
    s.wait_no_live();
    let ids: BTreeSet<u64> = s.jobs().iter().map(|a| a.id).collect();
    assert_eq!(ids, BTreeSet::from([first, resume, stop.job]), "nothing after the stop");
}

/// A directory with an `sacct` that fails (as on a cluster without
/// accounting) and records who called it in `calls.log`: "<job id or ?> <args>".
fn failing_sacct(s: &mut Stack) -> (PathBuf, PathBuf) {
    let bin = cluster().shared().join(format!("{}-bin", s.name));
    let _ = std::fs::remove_dir_all(&bin);
    std::fs::create_dir_all(&bin).expect("create the sacct dir");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let calls = bin.join("calls.log");
    std::fs::write(&calls, "").expect("calls.log");
    std::fs::set_permissions(&calls, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let script = format!(
        "#!/bin/sh\necho \"${{SLURM_JOB_ID:-?}} $*\" >>{}\n\
         echo 'sacct: error: Slurm accounting storage is disabled' >&2\nexit 1\n",
        calls.display()
    );
    std::fs::write(bin.join("sacct"), script).expect("write sacct");
    std::fs::set_permissions(bin.join("sacct"), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    s.extra_dirs.push(bin.clone());
    (bin, calls)
}

/// Checks that every link after the first decided whether to resume without
/// accounting (it called the failing `sacct`).
fn check_decided_without_sacct(s: &Stack, unit: &str, first: u64, calls: &Path, how: &str) {
    let calls = std::fs::read_to_string(calls).unwrap_or_default();
    s.log(&format!("failing sacct called by: {:?}", calls.lines().collect::<Vec<_>>()));
    let deciders: BTreeSet<u64> = s
        .chain(unit)
        .iter()
        .filter(|e| e.job != first && e.job != 0 && ["start", "stop"].contains(&e.event.as_str()))
        .map(|e| e.job)
        .collect();
    assert!(!deciders.is_empty(), "no link decided anything: {:?}", s.chain(unit));
    for job in deciders {
        assert!(
            calls.lines().any(|l| l.starts_with(&format!("{job} "))),
            "link {job} decided whether to resume with a working sacct: it did not get {how} \
             (calls of the failing sacct: {calls:?}); its log:\n{}",
            s.batch_log(unit, job)
        );
    }
}

/// 9. no accounting inside the jobs (a failing `sacct` first in PATH, given
///    to the jobs by `sbatch_extra_flags.export`): a timed-out link is still
///    resumed and the chain completes.
#[test]
fn resume_works_without_accounting() {
    const UNIT: &str = "gsm8k";
    let name = format!("lc{}-nosacct", std::process::id());
    let path = cluster().shared().join(format!("{name}-bin"));
    let execution =
        format!("sbatch_extra_flags: {{export: \"ALL,PATH={}:/usr/local/bin:/usr/bin:/bin\"}}", path.display());
    let mut s = Stack::new("nosacct", &Spec { partition: "cpu", stub: TIMEOUT_WORK, execution: &execution, ..BASE });
    let (bin, calls) = failing_sacct(&mut s);
    assert_eq!(bin, path);
    let out = s.apply_wait();
    let (first, resume) = s.applied_jobs(UNIT);
    assert!(out.ok(), "apply --wait exits 0 once the resumed chain completed\n{}", out.show());
    let last = check_resumed(&s, UNIT, first, resume, TIMEOUT_REQUESTS, "TIMEOUT");
    s.log(&format!("completed by {last}"));
    check_decided_without_sacct(&s, UNIT, first, &calls, "the PATH of sbatch_extra_flags.export");
}

/// 10. scenario 9 on a cluster where `sacct` fails everywhere, evalctl's own
///     refresh included: the local backend (`hostname: localhost`, jobs of
///     root) with the failing `sacct` first in evalctl's PATH, which sbatch
///     passes on to every link.
#[test]
fn resume_works_without_accounting_anywhere() {
    const UNIT: &str = "gsm8k";
    let mut s = Stack::new("nosacctall", &Spec { partition: "cpu", stub: TIMEOUT_WORK, local: true, ..BASE });
    let (bin, calls) = failing_sacct(&mut s);
    s.path = Some(format!("{}:/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin", bin.display()));
    let out = s.apply_wait();
    let (first, resume) = s.applied_jobs(UNIT);
    assert!(out.ok(), "apply --wait exits 0 once the resumed chain completed\n{}", out.show());
    let last = check_resumed(&s, UNIT, first, resume, TIMEOUT_REQUESTS, "TIMEOUT");
    s.log(&format!("completed by {last}"));
    check_decided_without_sacct(&s, UNIT, first, &calls, "the failing sacct");
    let plan = s.evalctl("plan", &[], CMD_TIMEOUT);
    assert!(plan.ok(), "{}", plan.show());
    assert!(plan.both().contains("accounting (sacct) is not available"), "the plan notes it\n{}", plan.show());
}

/// 11. per_task with a server that listens on 127.0.0.1 only (SGLang's
///     default): the link reaches it on the loopback address (the client runs
///     on the server's node) and completes within seconds, not after the
///     readiness timeout. (Port 8091: every node of the test cluster is this
///     one machine, whose loopback address they share; no other scenario
///     listens there.)
#[test]
fn loopback_only_server_is_reached_on_its_node() {
    const UNIT: &str = "gsm8k";
    let s = Stack::new(
        "loopback",
        &Spec {
            stub: "{requests: 5, delay: 0.5}",
            // The readiness timeout (default: the walltime) must not be what ends the wait.
            execution: "endpoint_readiness_timeout: 45",
            server: "port: 8091, command: \"evalctl-model-server --host 127.0.0.1 --port 8091 --startup-delay 2\"",
            ..BASE
        },
    );
    let out = s.apply_wait();
    assert!(out.ok(), "apply --wait exits 0 when the unit completed\n{}", out.show());
    let row = s.unit(UNIT);
    assert_eq!((str_of(&row, "state"), str_of(&row, "progress")), ("completed", "5/5"), "{row}");
    let (first, _) = s.applied_jobs(UNIT);
    assert_eq!(acct_final(first, Duration::from_secs(60)).state, "COMPLETED", "the first link");
    let server_log = s.file(UNIT, &format!("logs/server-{first}-0.log"));
    assert!(server_log.contains("on 127.0.0.1:8091"), "the server listens on loopback only:\n{server_log}");
    let batch = s.batch_log(UNIT, first);
    assert!(batch.contains("http://127.0.0.1:8091/health is healthy"), "healthy on the loopback address:\n{batch}");
    let run_config = s.file(UNIT, "artifacts/run_config.yml");
    assert!(run_config.contains("\"http://127.0.0.1:8091/v1/"), "the client used the loopback address: {run_config}");
    // Start to end of the link, from its chain file: seconds (2 s startup,
    // one 5 s poll, 5 requests of 0.5 s), not the 45 s readiness timeout.
    let at = |event: &str| -> u64 {
        let line = s.file(UNIT, "chain");
        line.lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                (f.first() == Some(&first.to_string().as_str()) && f.get(1) == Some(&event))
                    .then(|| f.get(2)?.parse().ok())
                    .flatten()
            })
            .unwrap_or_else(|| panic!("no `{event}` of job {first} in the chain file:\n{line}"))
    };
    let took = at("end") - at("start");
    s.log(&format!("link {first} ran {took} s"));
    assert!(took < 30, "the link took {took} s: it waited for the readiness timeout\n{batch}");
    s.wait_no_live();
}

/// 12. shared topology with a server that listens on 127.0.0.1 only: the
///     task jobs, elsewhere, could never reach it, so the deployment fails at
///     once (`endpoint-unreachable`, saying why) instead of publishing an
///     endpoint nobody answers on; its tasks fail without one.
#[test]
fn loopback_only_shared_server_is_not_published() {
    let s = Stack::new(
        "loopshared",
        &Spec {
            partition: "gpu",
            stub: "{requests: 2, delay: 0.5}",
            execution: "topology: shared, sbatch_extra_flags: {exclusive: false}, endpoint_readiness_timeout: 20",
            server: "port: 8092, command: \"evalctl-model-server --host 127.0.0.1 --port 8092 --startup-delay 2\"",
            ..BASE
        },
    );
    let out = s.apply_wait();
    assert!(!out.ok(), "apply --wait fails when units failed\n{}", out.show());
    let status = s.file("server", "status");
    let job: u64 = status
        .strip_prefix("failed ")
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("the server's status should be `failed <job> endpoint-unreachable`: {status:?}"));
    assert!(status.trim_end().ends_with(" endpoint-unreachable"), "{status:?}");
    let batch = s.batch_log("server", job);
    assert!(batch.contains("http://127.0.0.1:8092/health is healthy"), "healthy on loopback first:\n{batch}");
    assert!(batch.contains("must listen on all interfaces"), "the log says why:\n{batch}");
    assert!(s.file("server", "endpoint").is_empty(), "no endpoint published");
    assert_eq!(str_of(&s.unit("gsm8k"), "state"), "failed", "the task has no endpoint");
    s.wait_no_live();
}

/// 13. a judge inside the task's job (the launcher's layout): one job of two
///     nodes, no judge job of its own; the model serves on the first node,
///     the judge on the second; the harness reaches the judge at the URL
///     that replaced `auxiliary_deployments.judge.chat_url` in its settings
///     and is given `JUDGE_CHAT_URL` and `JUDGE_MODEL_ID`.
#[test]
fn judge_runs_inside_the_task_job() {
    const UNIT: &str = "gsm8k";
    let s = Stack::new(
        "judge",
        &Spec {
            partition: "cpu",
            stub: "{requests: 3, judge_url: auxiliary_deployments.judge.chat_url}",
            server: "port: 8093, command: \"evalctl-model-server --port 8093 --startup-delay 2\"",
            more: "auxiliary_deployments:\n  judge:\n    type: generic\n    image: stub-server:latest\n    \
                   served_model_name: stub-judge\n    port: 8094\n    \
                   command: \"evalctl-model-server --port 8094 --served-model-name stub-judge --startup-delay 1\"\n    \
                   endpoints: {chat: /v1/chat/completions, health: /health}\n",
            ..BASE
        },
    );
    let out = s.apply_wait();
    assert!(out.ok(), "apply --wait exits 0 once the task completed\n{}", out.show());
    assert_eq!(str_of(&s.unit(UNIT), "state"), "completed");
    assert!(!s.jobs().iter().any(|a| a.name.contains("server")), "no judge job of its own: {:?}", s.jobs());
    let (first, _) = s.applied_jobs(UNIT);
    let acct = acct_final(first, Duration::from_secs(60));
    assert_eq!(acct.state, "COMPLETED", "{acct:?}");
    let nodes = node_names(&acct.node);
    assert_eq!(nodes.len(), 2, "the model's node and the judge's: {acct:?}");
    let model_log = s.file(UNIT, &format!("logs/server-{first}-0.log"));
    let judge_log = s.file(UNIT, &format!("logs/server-{first}-aux-judge-0.log"));
    assert!(model_log.contains(":8093"), "{model_log}");
    assert!(judge_log.contains(":8094"), "{judge_log}");
    let results = s.results(UNIT).expect("results.json");
    let judge = &results["judge"];
    assert_eq!(judge["model"], "stub-judge", "the judge answered: {results}");
    let url = str_of(judge, "url");
    assert_eq!(url, format!("http://{}:8094/v1/chat/completions", nodes[1]), "the judge on the job's second node");
    assert_eq!(str_of(judge, "env_url"), url, "JUDGE_CHAT_URL: {results}");
    assert_eq!(str_of(judge, "env_model"), "stub-judge", "JUDGE_MODEL_ID: {results}");
    assert_eq!(s.requests(UNIT), vec![(first, 3)]);
    s.wait_no_live();
}

/// The node names of a Slurm node list (`n[1-2]`, `n1,n2`).
fn node_names(list: &str) -> Vec<String> {
    let out = Command::new("scontrol").args(["show", "hostnames", list]).output().expect("scontrol");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

/// `evalctl ARGS` in `dir`, against the test cluster.
fn run_in(dir: &Path, args: &[&str]) -> Out {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(dir);
    cmd.env("EVALCTL_SSH_CONFIG", cluster().get("EVALCTL_CLUSTER_SSH_CONFIG")).env("NO_COLOR", "1");
    Proc::spawn(format!("evalctl {}", args.join(" ")), cmd, false).finish(CMD_TIMEOUT)
}

/// The stand-in harness's outcome of sample `i` of `task` for `model`.
fn stub_correct(model: &str, task: &str, i: u64) -> bool {
    use sha2::Digest;
    sha2::Sha256::digest(format!("{model}|{task}|{i}").as_bytes())[0] < 160
}

/// 14. Two stacks that differ only in the model: results, compare, gates.
#[test]
fn results_compare_and_gate_two_models() {
    const N: u64 = 40;
    let score = |m: &str| (0..N).filter(|i| stub_correct(m, "gsm8k", *i)).count();
    // The base the better model, the candidate the worse: a designed regression.
    let mut names: Vec<String> = (0..8).map(|i| format!("stub-{i}")).collect();
    names.sort_by_key(|m| std::cmp::Reverse(score(m)));
    let (good, bad) = (names[0].clone(), names[names.len() - 1].clone());
    assert!(score(&good) > score(&bad));
    let stub = format!("{{requests: {N}}}");
    let spec = Spec { stub: &stub, ..BASE };
    let (a, b) = (Stack::new("cmp-a", &spec), Stack::new("cmp-b", &spec));
    for (s, model) in [(&a, &good), (&b, &bad)] {
        let text = std::fs::read_to_string(&s.config).unwrap();
        std::fs::write(&s.config, text.replace("served_model_name: stub,", &format!("served_model_name: {model},")))
            .unwrap();
    }
    let runs = [&a, &b].map(|s| s.background("apply", &["--auto-approve", "--wait"]));
    for (s, mut run) in [&a, &b].into_iter().zip(runs) {
        let out = run.finish(CHAIN_TIMEOUT);
        assert!(out.ok(), "apply --wait of {}\n{}", s.name, out.show());
    }
    for (s, model) in [(&a, &good), (&b, &bad)] {
        let run_config: Value = serde_json::from_str(&s.file("gsm8k", "artifacts/run_config.yml")).unwrap();
        assert_eq!(run_config["config"]["type"], "gsm8k");
        let out = s.evalctl("results", &["--format", "json"], CMD_TIMEOUT);
        assert!(out.ok(), "{}", out.show());
        let report: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{}", out.show()));
        let row = &report["rows"][0];
        assert_eq!(row["value"].as_f64(), Some(score(model) as f64 / N as f64), "{report}");
        assert_eq!((row["count"].as_u64(), &row["current"]), (Some(N), &Value::Bool(true)), "{report}");
    }
    let cfg = |s: &Stack| s.config.display().to_string();
    let compare = |base: &str, cand: &str, extra: &[&str]| {
        let mut args = vec!["compare", base, cand, "--format", "json"];
        args.extend_from_slice(extra);
        run_in(&a.cfg_dir, &args)
    };
    let expected = |out: &Out| {
        let doc: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{}", out.show()));
        assert_eq!(doc["version"], 1, "{doc}");
        assert_eq!((doc["base"]["model"].as_str(), doc["candidate"]["model"].as_str()), (Some(&*good), Some(&*bad)));
        let d = &doc["rows"][0]["difference"];
        let lost = (0..N).filter(|i| stub_correct(&good, "gsm8k", *i) && !stub_correct(&bad, "gsm8k", *i)).count();
        let won = (0..N).filter(|i| !stub_correct(&good, "gsm8k", *i) && stub_correct(&bad, "gsm8k", *i)).count();
        assert_eq!(d["method"], "mcnemar", "{doc}");
        assert_eq!(
            (d["pairs"].as_u64(), d["base_only"].as_u64(), d["candidate_only"].as_u64()),
            (Some(N), Some(lost as u64), Some(won as u64)),
            "{doc}"
        );
        let delta = (score(&bad) as f64 - score(&good) as f64) / N as f64;
        assert!((d["delta"].as_f64().unwrap_or(9.0) - delta).abs() < 1e-9, "{doc}");
        doc
    };
    let out = compare(&cfg(&a), &cfg(&b), &[]);
    assert!(out.ok(), "{}", out.show());
    expected(&out);

    // Gates: the regression fails one (5), a bound it meets passes (0), a
    // rule that matches nothing cannot decide (6).
    let gate = |name: &str, rules: &str| {
        let p = a.cfg_dir.join(name);
        std::fs::write(&p, format!("version: 1\nrules:\n{rules}")).unwrap();
        p.display().to_string()
    };
    let fail = gate("fail.yaml", "  - task: gsm8k\n    max_regression: 0.0\n");
    let pass = gate("pass.yaml", "  - task: gsm8k\n    min: 0.0\n");
    let none = gate("none.yaml", "  - task: gsm8k\n    min: 0.0\n  - task: mmlu\n    min: 0.5\n");
    for (policy, code, outcome) in [(&fail, 5, "fail"), (&pass, 0, "pass"), (&none, 6, "inconclusive")] {
        let out = compare(&cfg(&a), &cfg(&b), &["--gate", policy]);
        assert_eq!(out.code, Some(code), "{policy}\n{}", out.show());
        let doc = expected(&out);
        assert_eq!(doc["gate"]["outcome"], outcome, "{doc}");
    }
    let md = run_in(&a.cfg_dir, &["compare", &cfg(&a), &cfg(&b), "--gate", &fail, "--format", "markdown"]);
    assert!(md.stdout.contains("#### Gate: **FAIL**") && md.stdout.contains("<details>"), "{}", md.show());

    // The base as a git ref: the same config text committed, then changed
    // to the candidate's in the working tree.
    let repo = a.cfg_dir.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let git = |args: &[&str]| {
        let out = Command::new("git").arg("-C").arg(&repo).args(args).output().expect("git");
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    git(&["init", "-q"]);
    std::fs::write(repo.join("evals.yaml"), std::fs::read_to_string(&a.config).unwrap()).unwrap();
    git(&["add", "evals.yaml"]);
    git(&["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"]);
    std::fs::write(repo.join("evals.yaml"), std::fs::read_to_string(&b.config).unwrap()).unwrap();
    let out = run_in(&repo, &["compare", "HEAD:evals.yaml", "evals.yaml", "--format", "json"]);
    assert!(out.ok(), "{}", out.show());
    let doc = expected(&out);
    assert_eq!(doc["base"]["label"], "HEAD:evals.yaml", "{doc}");

    // The report of both stacks, as headless Chromium parses it: the chart
    // and one table row per score, both stacks' values in it.
    let page = a.cfg_dir.join("report.html");
    let out = run_in(&a.cfg_dir, &["report", &cfg(&a), &cfg(&b), "--out", &page.display().to_string()]);
    assert!(out.ok(), "{}", out.show());
    let dom = browser::chromium(&a.cfg_dir, &page, &["--dump-dom".into()]);
    assert!(dom.contains("<svg") && dom.contains(&a.name) && dom.contains(&b.name), "{dom}");
    for model in [&good, &bad] {
        let value = format!("{:.4}", score(model) as f64 / N as f64);
        assert!(dom.contains(&value), "{value} in the report: {dom}");
    }

    // Both stacks to a real MLflow server: one run per stack's task with its
    // score, as MLflow's own client reads it; exporting again changes nothing.
    let server = mlflow::MlflowServer::start("e2e-export", true);
    let export = |s: &Stack| {
        let args =
            ["export", &cfg(s), "--to", "mlflow", "--tracking-uri", &server.url, "--experiment", "e2e", "--json"];
        let out = run_in(&s.cfg_dir, &args);
        assert!(out.ok(), "{}", out.show());
        let doc: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{}", out.show()));
        doc["units"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|u| u["outcome"].as_str().unwrap_or("").to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!((export(&a), export(&b)), (vec!["created".to_owned()], vec!["created".to_owned()]));
    assert_eq!((export(&a), export(&b)), (vec!["unchanged".to_owned()], vec!["unchanged".to_owned()]));
    let runs = mlflow::oracle(&server, "e2e");
    assert_eq!(runs.len(), 2, "one run per stack's task: {runs:?}");
    for (s, model) in [(&a, &good), (&b, &bad)] {
        let run =
            runs.iter().find(|r| r["tags"]["evalctl.stack"] == s.name.as_str()).unwrap_or_else(|| panic!("{runs:?}"));
        let metric = &run["metrics"]["gsm8k.accuracy.accuracy"];
        assert_eq!(metric.as_f64(), Some(score(model) as f64 / N as f64), "{run}");
        assert_eq!(run["history"]["gsm8k.accuracy.accuracy"], 1, "no duplicate history: {run}");
        assert!(run["results"].as_str().is_some_and(|t| t.contains("\"results\"")), "results.yml uploaded: {run}");
    }
    drop(server);

    // A candidate that differs in more than the model is refused, by key.
    let text = std::fs::read_to_string(&b.config).unwrap();
    let other = b.cfg_dir.join("other.yaml");
    std::fs::write(&other, text.replace("params: {extra:", "params: {limit_samples: 10, extra:")).unwrap();
    let out = compare(&cfg(&a), &other.display().to_string(), &[]);
    assert_eq!(out.code, Some(1), "{}", out.show());
    assert!(out.stderr.contains("`run_config.config.params.limit_samples`: (unset) → 10"), "{}", out.show());
    a.wait_no_live();
    b.wait_no_live();
}

/// The model server starts in a pack's folder: (job id, starts) per server
/// log (`server-<job>-<instance>.log`, one "model-server: pid" line per start).
fn server_starts(s: &Stack, pack: &str) -> BTreeMap<u64, usize> {
    let mut starts = BTreeMap::new();
    for f in std::fs::read_dir(s.dir(pack).join("logs")).into_iter().flatten().flatten() {
        let name = f.file_name().to_string_lossy().into_owned();
        let Some(job) = name.strip_prefix("server-").and_then(|r| r.split('-').next()?.parse::<u64>().ok()) else {
            continue;
        };
        let text = std::fs::read_to_string(f.path()).unwrap_or_default();
        *starts.entry(job).or_default() += text.matches("model-server: pid").count();
    }
    starts
}

/// 15. packed: 40 tasks, 10 per job, fit an account that allows 50 queued
///     jobs (80 per-task jobs do not: `e2e_feasibility`); every unit
///     completes with its own status, chain and results, and each pack job
///     starts the model once.
#[test]
fn packed_tasks_complete_with_one_model_load_per_job() {
    let ids: Vec<String> = (0..40).map(|i| format!("gsm8k, id: t{i}")).collect();
    let tasks: Vec<&str> = ids.iter().map(String::as_str).collect();
    let account = cluster().get("EVALCTL_CLUSTER_LIMITED_ACCOUNT").to_owned();
    let s = Stack::new(
        "packed",
        &Spec {
            account: &account,
            tasks: &tasks,
            stub: "{requests: 2}",
            execution: "topology: packed, tasks_per_job: 10",
            ..BASE
        },
    );
    let plan = s.evalctl("plan", &[], CMD_TIMEOUT);
    assert_eq!(plan.code, Some(0), "{}", plan.show());
    assert!(plan.stdout.contains("Plan: 40 to create"), "one unit per task\n{}", plan.show());
    assert!(
        plan.stdout.contains(
            "Packed 10 tasks per job: 40 tasks in 4 jobs. Submits 4 packs (8 jobs) for 40 tasks: 36 model loads saved."
        ),
        "{}",
        plan.show()
    );
    assert!(plan.stdout.contains("+ t13 in pack.t10 (create"), "{}", plan.show());
    let out = s.apply_wait();
    assert!(out.ok(), "apply --wait exits 0 when every unit completed\n{}", out.show());
    let rows = s.status();
    assert_eq!(rows.len(), 40, "one unit per task: {rows:?}");
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(s.stack_dir.join(".evalctl/state.json")).unwrap()).unwrap();
    for (k, pack) in ["t0", "t10", "t20", "t30"].iter().enumerate() {
        let pack = format!("pack.{pack}");
        let links = s.started_links(&pack);
        assert_eq!(links.len(), 1, "{pack}: one link ran: {:?}", s.chain(&pack));
        let job = links[0];
        // The pack's job records its own end just after its last task's,
        // which is when `apply --wait` may have returned.
        let want = format!("completed {job}");
        let status =
            wait_for(&format!("{pack}'s status to say it completed"), CMD_TIMEOUT, Duration::from_millis(200), || {
                let st = s.file(&pack, "status").trim().to_owned();
                (st == want || !st.starts_with("running")).then_some(st)
            });
        assert_eq!(status, want, "{pack}'s status");
        assert_eq!(server_starts(&s, &pack), BTreeMap::from([(job, 1)]), "{pack}: one model load for its 10 tasks");
        for i in k * 10..k * 10 + 10 {
            let task = format!("t{i}");
            let row = rows.iter().find(|r| r["unit"] == task.as_str()).unwrap_or_else(|| panic!("no {task}"));
            assert_eq!(str_of(row, "state"), "completed", "{row}");
            assert_eq!(s.file(&task, "status").trim(), format!("completed {job}"), "{task}'s own status");
            assert_eq!(s.started_links(&task), vec![job], "{task} ran once, in {pack}'s job");
            assert_eq!(s.requests(&task), vec![(job, 2)], "{task}: its own harness run");
            let results = s.results(&task).unwrap_or_else(|| panic!("{task}: no results.json"));
            assert_eq!(results["samples"].as_u64(), Some(2), "{results}");
            let recorded = state["units"][&task]["jobs"].as_array().cloned().unwrap_or_default();
            assert!(recorded.contains(&Value::from(job)), "{task} records its pack's jobs: {recorded:?}");
        }
    }
    s.wait_no_live();
    // Nothing left to do: every task completed.
    let again = s.evalctl("plan", &["--detailed-exitcode"], CMD_TIMEOUT);
    assert_eq!(again.code, Some(0), "{}", again.show());
    assert!(again.stdout.contains("No changes."), "{}", again.show());
}

/// 16. packed: a pack's link cut short by its time limit in its second
///     task; the resume link skips the first task, continues the second
///     from the harness's cache and runs the third.
#[test]
fn packed_job_cut_short_resumes_only_unfinished_tasks() {
    let long =
        format!("gsm8k, id: long, nemo_evaluator_config: {{config: {{params: {{extra: {{stub: {TIMEOUT_WORK}}}}}}}}}");
    let tasks = ["gsm8k, id: early", long.as_str(), "gsm8k, id: late"];
    let s = Stack::new(
        "packresume",
        &Spec { tasks: &tasks, stub: "{requests: 2}", execution: "topology: packed, tasks_per_job: 3", ..BASE },
    );
    let out = s.apply_wait();
    assert!(out.ok(), "apply --wait exits 0 when every unit completed\n{}", out.show());
    let pack = "pack.early";
    let links = s.started_links(pack);
    assert_eq!(links.len(), 2, "the pack's first link and one resume link: {:?}", s.chain(pack));
    let (first, second) = (links[0], links[1]);
    assert_eq!(acct_final(first, Duration::from_secs(60)).state, "TIMEOUT", "the first link was cut short");
    for unit in ["early", "long", "late"] {
        assert_eq!(str_of(&s.unit(unit), "state"), "completed", "{unit}");
    }
    assert_eq!(s.started_links("early"), vec![first], "the first task ran once, in the first link");
    assert_eq!(s.requests("early"), vec![(first, 2)]);
    assert_eq!(s.started_links("long"), vec![first, second], "the long task ran in both links");
    let cached = s.cached_at_start("long", second).unwrap_or(0);
    assert!(
        cached > 0,
        "the resumed run continued from the cache:\n{}",
        s.file("long", &format!("logs/client-{second}.log"))
    );
    assert_eq!(s.started_links("late"), vec![second], "the last task ran once, in the resume link");
    assert_eq!(s.requests("late"), vec![(second, 2)]);
    assert!(
        s.batch_log(pack, second).contains("task early already ended (completed): skipped"),
        "{}",
        s.batch_log(pack, second)
    );
    assert_eq!(server_starts(&s, pack), BTreeMap::from([(first, 1), (second, 1)]), "one model load per link");
}

/// 17. max_concurrent: never more than two chains of the stack run at
///     once, on a partition where four fit.
#[test]
fn max_concurrent_keeps_running_chains_within_the_limit() {
    // No model server (two on one node would share a port): each task
    // sleeps in its container, then the harness sends no request.
    let ids: Vec<String> = (0..6).map(|i| format!("gsm8k, id: c{i}, pre_cmd: \"sleep 12\"")).collect();
    let tasks: Vec<&str> = ids.iter().map(String::as_str).collect();
    let s = Stack::new(
        "lanes",
        &Spec {
            tasks: &tasks,
            stub: "{requests: 0}",
            execution: "max_concurrent: 2, sbatch_extra_flags: {exclusive: false}",
            server: "type: none, command: unused",
            more: "target: {api_endpoint: {url: \"http://127.0.0.1:9/v1/chat/completions\", model_id: m}}\n",
            ..BASE
        },
    );
    let plan = s.evalctl("plan", &[], CMD_TIMEOUT);
    assert!(plan.stdout.contains("At most 2 task chains run at once (max_concurrent)."), "{}", plan.show());
    let mut apply = s.background("apply", &["--auto-approve", "--wait"]);
    let mut most = 0;
    let started = Instant::now();
    while apply.running() && started.elapsed() < CHAIN_TIMEOUT {
        let running = s.live().iter().filter(|j| j.state == "RUNNING").count();
        most = most.max(running);
        assert!(running <= 2, "{running} chains run at once: {:?}", s.live());
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = apply.finish(CMD_TIMEOUT);
    assert!(out.ok(), "apply --wait exits 0 when every unit completed\n{}", out.show());
    assert_eq!(most, 2, "two chains ran together");
    for i in 0..6 {
        assert_eq!(str_of(&s.unit(&format!("c{i}")), "state"), "completed", "c{i}");
    }
    // The lanes: c2 started once c0's chain had ended, c4 after c2's, and
    // so on (sacct's times, ISO 8601: ordered as text).
    let link = |u: &str| acct_final(s.started_links(u)[0], Duration::from_secs(60));
    for (before, after) in [("c0", "c2"), ("c1", "c3"), ("c2", "c4"), ("c3", "c5")] {
        let (a, b) = (link(before), link(after));
        assert!(a.started() && b.started() && b.start >= a.end, "{after} started before {before} ended: {a:?} {b:?}");
    }
}

/// The stack's jobs Slurm runs now, array elements included (`squeue -r`):
/// (id, name).
fn running_of(stack: &str) -> Vec<(String, String)> {
    slurm("squeue", &["-h", "-r", "-t", "running", "-o", "%i|%j"])
        .lines()
        .filter_map(|l| l.split_once('|'))
        .filter(|(_, name)| name.starts_with(&format!("evalctl:{stack}/")))
        .map(|(id, name)| (id.trim().to_owned(), name.to_owned()))
        .collect()
}

/// 18. job_arrays: one sbatch for six first links, throttled to two at
///     once; the failed element alone is submitted again.
#[test]
fn job_arrays_submit_once_throttle_and_retry_only_the_failed() {
    let gate = cluster().shared().join(format!("lc{}-arrays-gate", std::process::id()));
    let _ = std::fs::remove_file(&gate);
    let ids: Vec<String> = (0..6)
        .map(|i| match i {
            // c3 fails until the file exists.
            3 => format!("gsm8k, id: c{i}, pre_cmd: \"sleep 6; test -e {}\"", gate.display()),
            _ => format!("gsm8k, id: c{i}, pre_cmd: \"sleep 6\""),
        })
        .collect();
    let tasks: Vec<&str> = ids.iter().map(String::as_str).collect();
    let s = Stack::new(
        "arrays",
        &Spec {
            tasks: &tasks,
            stub: "{requests: 0}",
            execution: "job_arrays: true, max_concurrent: 2, max_attempts: 3, sbatch_extra_flags: {exclusive: false}",
            server: "type: none, command: unused",
            more: "target: {api_endpoint: {url: \"http://127.0.0.1:9/v1/chat/completions\", model_id: m}}\n",
            ..BASE
        },
    );
    let plan = s.evalctl("plan", &[], CMD_TIMEOUT);
    assert!(
        plan.stdout.contains("First links go in job arrays (one sbatch per shared header), at most 2 running in each"),
        "{}",
        plan.show()
    );
    let mut apply = s.background("apply", &["--auto-approve", "--wait"]);
    let mut most = 0;
    let started = Instant::now();
    while apply.running() && started.elapsed() < CHAIN_TIMEOUT {
        let running = running_of(&s.name);
        most = most.max(running.len());
        assert!(running.len() <= 2, "{} jobs run at once: {running:?}", running.len());
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = apply.finish(CMD_TIMEOUT);
    assert!(!out.ok(), "apply --wait fails when a unit failed\n{}", out.show());
    assert_eq!(most, 2, "two elements ran together");
    // One array: every task's first link is an element of it.
    let state = |unit: &str| -> Vec<String> {
        let st: Value =
            serde_json::from_str(&std::fs::read_to_string(s.stack_dir.join(".evalctl/state.json")).unwrap()).unwrap();
        st["units"][unit]["jobs"].as_array().unwrap().iter().map(|v| v.as_str().unwrap_or("").to_owned()).collect()
    };
    let first = state("c0");
    assert_eq!(first.len(), 1, "one job recorded per task: {first:?}");
    let array = first[0].split_once('_').expect("an array element's id").0.to_owned();
    for i in 0..6 {
        assert_eq!(state(&format!("c{i}")), vec![format!("{array}_{i}")], "c{i}");
        let row = s.unit(&format!("c{i}"));
        assert_eq!(row["jobs"][0], format!("{array}_{i}"), "status names the element: {row}");
        let want = if i == 3 { "failed" } else { "completed" };
        assert_eq!(str_of(&row, "state"), want, "c{i}: {row}");
    }
    // Each element's batch log is in its task's folder.
    assert!(s.file("c0", &format!("logs/slurm-{array}_0.out")).contains("evaluation"), "c0's batch log");
    // The failed task alone goes again, as a new array of one.
    std::fs::write(&gate, "").unwrap();
    let plan = s.evalctl("plan", &[], CMD_TIMEOUT);
    assert!(plan.stdout.contains("c3"), "{}", plan.show());
    let out = s.evalctl("apply", &["--auto-approve", "--wait"], CHAIN_TIMEOUT);
    assert!(out.ok(), "the retry completes\n{}", out.show());
    let again = state("c3");
    assert_eq!(again.len(), 1, "{again:?}");
    let (new_array, index) = again[0].split_once('_').expect("an array element's id");
    assert_ne!(new_array, array, "a new array");
    assert_eq!(index, "0", "an array of one");
    for i in [0, 1, 2, 4, 5] {
        assert_eq!(state(&format!("c{i}")), vec![format!("{array}_{i}")], "c{i} was not submitted again");
    }
    assert_eq!(str_of(&s.unit("c3"), "state"), "completed");
    let _ = std::fs::remove_file(&gate);
    let plan = s.evalctl("plan", &[], CMD_TIMEOUT);
    assert!(plan.stdout.contains("No changes."), "{}", plan.show());
}
