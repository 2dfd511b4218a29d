//! End-to-end tests of the feasibility check of `evalctl plan` (issue 14)
//! against the real Slurm test cluster of `tests/cluster`, over SSH: for an
//! unknown partition, an unknown account, a time over a partition's limit
//! and a GRES no node has, `plan` (and `apply`, which plans first) exits 1
//! with an error at the config file's line and column of the key that set
//! the value, and nothing reaches the queue; a feasible plan shows when the
//! scheduler expects to start the jobs.
//!
//! And of the scheduler limits (issue 15): the cluster's account `limited`
//! allows the test user 50 queued jobs (`MaxSubmitJobs=50`) and its QOS
//! `small` 30 per user. A 40-task stack (80 jobs) is refused by `plan` and
//! `apply` naming the limit, at the account's line, with nothing
//! submitted; 40 jobs in `small` are refused naming the QOS's limit; a
//! stack that fits shows the room left in text, markdown and JSON.
//!
//! The partitions of the test cluster have no time limit, so the time test
//! creates a partition of its own with `MaxTime=00:10:00` on `n1`
//! (`scontrol create`, named after the test process and the test, never
//! used by a job)
//! and deletes it when it ends, also when it fails.
//!
//! Needs the cluster up and root (the cluster's ssh key is root's):
//! `sudo bash tests/cluster/up.sh`. Timings: `cargo test --test
//! e2e_feasibility -- --nocapture`.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::{ClusterInfo, Out, Proc};

const BIN: &str = env!("CARGO_BIN_EXE_evalctl");

fn cluster() -> &'static ClusterInfo {
    common::cluster_checked(common::SSH_VARS, |_| Ok(()))
}

/// One test's config directory and stack; removed when dropped.
struct Case {
    name: String,
    dir: PathBuf,
    config: PathBuf,
    started: Instant,
}

/// The execution keys a test sets (the rest as in `e2e_apply.rs`).
struct Exec<'a> {
    account: &'a str,
    partition: &'a str,
    walltime: &'a str,
    gres: &'a str,
    /// `execution.qos` (none: empty).
    qos: &'a str,
    /// Tasks beyond the two every case has (`t0`, `t1`, ...).
    more_tasks: usize,
}

const OK: Exec<'static> =
    Exec { account: "research", partition: "cpu", walltime: "\"00:10:00\"", gres: "null", qos: "", more_tasks: 0 };

impl Case {
    fn new(test: &str, exec: &Exec) -> Case {
        let info = cluster();
        let name = format!("feas{}-{test}", std::process::id());
        let dir = std::env::temp_dir().join(format!("evalctl-e2e-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the config dir");
        let yaml = format!(
            "# evalctl e2e feasibility test `{test}`\n\
             defaults: [{{execution: slurm/default}}, {{deployment: none}}, _self_]\n\
             name: {name}\n\
             execution:\n  hostname: {host}\n  username: {user}\n  account: {account}\n  partition: {partition}\n  \
             output_dir: {out}\n  gres: {gres}\n{walltime}{qos}  \
             sbatch_extra_flags: {{exclusive: false, begin: \"now+600\"}}\n  mounts: {{mount_home: false}}\n\
             target: {{api_endpoint: {{url: \"http://127.0.0.1:9/v1/chat/completions\", model_id: m}}}}\n\
             evaluation:\n  tasks:\n    - {{name: gsm8k, container: \"evaluator:latest\"}}\n    \
             - {{name: simple_evals.mmlu, container: \"evaluator:latest\"}}\n{more}",
            host = info.alias(),
            user = info.get("EVALCTL_CLUSTER_USER"),
            account = exec.account,
            partition = exec.partition,
            gres = exec.gres,
            walltime =
                if exec.walltime.is_empty() { String::new() } else { format!("  walltime: {}\n", exec.walltime) },
            out = info.shared().join(format!("e2e-{name}")).display(),
            qos = if exec.qos.is_empty() { String::new() } else { format!("  qos: {}\n", exec.qos) },
            more = (0..exec.more_tasks)
                .map(|i| format!("    - {{name: t{i}, container: \"evaluator:latest\"}}\n"))
                .collect::<String>(),
        );
        let config = dir.join("evalctl.yaml");
        std::fs::write(&config, yaml).expect("write the config");
        Case { name, dir, config, started: Instant::now() }
    }

    fn run(&self, args: &[&str]) -> Out {
        self.run_with(args, &[])
    }

    /// `evalctl ARGS CONFIG EXTRA`.
    fn run_with(&self, args: &[&str], extra: &[&str]) -> Out {
        let mut cmd = Command::new(BIN);
        let config = self.config.to_str().expect("utf-8 path");
        cmd.args(args)
            .arg(config)
            .args(extra)
            .current_dir(&self.dir)
            .env_remove("EVALCTL_SSH_CONTROL_PATH")
            .env("EVALCTL_SSH_CONFIG", cluster().ssh_config())
            .env("NO_COLOR", "1");
        Proc::spawn(format!("evalctl {} {config}", args.join(" ")), cmd, false).wait(Duration::from_secs(120))
    }

    /// `evalctl.yaml:LINE:COL` of the value of the `execution` key `key`.
    fn location(&self, key: &str) -> String {
        let text = std::fs::read_to_string(&self.config).expect("read the config");
        let prefix = format!("  {key}: ");
        let (n, _) = text
            .lines()
            .enumerate()
            .find(|(_, l)| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no `{key}` in the config"));
        format!("evalctl.yaml:{}:{}", n + 1, prefix.len() + 1)
    }

    /// `plan` (then `apply`) refuses the config with an error at `key`'s
    /// value naming `words`, and nothing of the stack reaches the queue.
    fn refused_at(&self, key: &str, words: &[&str]) {
        self.refused_with(&[], &self.location(key), key, words);
    }

    /// As [`Self::refused_at`], with `extra` arguments and the error at `at`.
    fn refused_with(&self, extra: &[&str], at: &str, key: &str, words: &[&str]) {
        for args in [&["plan"][..], &["apply", "--auto-approve"]] {
            let out = self.run_with(args, extra);
            assert_eq!(out.code, Some(1), "{}", out.show());
            let headline = format!("{at}: error: `execution.{key}`");
            assert!(out.stderr.contains(&headline), "expected `{headline}`\n{}", out.show());
            for w in words {
                assert!(out.stderr.contains(w), "expected `{w}` in the error\n{}", out.show());
            }
            assert!(out.stderr.contains("nothing was submitted"), "{}", out.show());
        }
        self.assert_nothing_queued();
    }

    fn assert_nothing_queued(&self) {
        let q = Command::new("squeue").args(["-h", "-t", "all", "-o", "%i %j"]).output().expect("run squeue");
        assert!(q.status.success(), "squeue failed: {}", String::from_utf8_lossy(&q.stderr));
        let tag = format!("evalctl:{}/", self.name);
        let mine: Vec<String> =
            String::from_utf8_lossy(&q.stdout).lines().filter(|l| l.contains(&tag)).map(str::to_owned).collect();
        assert!(mine.is_empty(), "jobs of the stack were submitted: {mine:?}");
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        eprintln!("{}: {:.1}s", self.name, self.started.elapsed().as_secs_f64());
        if std::env::var_os("E2E_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A partition of this test process's, deleted when dropped.
struct Partition(String);

impl Partition {
    /// `feas<pid><tag>`: each test its own (the tests run in parallel).
    fn create(tag: &str, max_time: &str) -> Partition {
        let name = format!("feas{}{tag}", std::process::id());
        let out = Command::new("scontrol")
            .args(["create", &format!("PartitionName={name}"), "Nodes=n1", &format!("MaxTime={max_time}"), "State=UP"])
            .output()
            .expect("run scontrol");
        assert!(out.status.success(), "cannot create partition {name}: {}", String::from_utf8_lossy(&out.stderr));
        Partition(name)
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        let _ = Command::new("scontrol").args(["delete", &format!("PartitionName={}", self.0)]).status();
    }
}

#[test]
fn an_unknown_partition_is_an_error_at_its_line() {
    let c = Case::new("partition", &Exec { partition: "nope", ..OK });
    c.refused_at("partition", &["--partition=nope", "invalid partition specified: nope"]);
}

#[test]
fn an_unknown_account_is_an_error_at_its_line() {
    let c = Case::new("account", &Exec { account: "nope", ..OK });
    c.refused_at("account", &["--account=nope", "Invalid account or account/partition combination specified"]);
}

#[test]
fn a_time_over_the_partitions_limit_is_an_error_at_its_line() {
    let p = Partition::create("t", "00:10:00");
    let c = Case::new("time", &Exec { partition: &p.0, walltime: "\"01:00:00\"", ..OK });
    c.refused_at("walltime", &["--time=01:00:00", "Requested time limit is invalid"]);
}

#[test]
fn a_gres_no_node_has_is_an_error_at_its_line() {
    let c = Case::new("gres", &Exec { partition: "gpu", gres: "\"gpu:16\"", ..OK });
    c.refused_at("gres", &["--gres=gpu:16", "Requested node configuration is not available"]);
}

#[test]
fn values_from_an_override_or_a_defaults_group_are_errors_there() {
    let c = Case::new("override", &OK);
    c.refused_with(
        &["-o", "execution.partition=nope"],
        "<-o #1>:1:21",
        "partition",
        &["--partition=nope", "invalid partition specified: nope"],
    );
    // No walltime in the config: the defaults group's `01:00:00` is refused.
    let p = Partition::create("g", "00:10:00");
    let c = Case::new("group", &Exec { partition: &p.0, walltime: "", ..OK });
    let group = "src/config/groups/execution/slurm/default.yaml";
    let text = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(group)).expect("the group");
    let line = text.lines().position(|l| l.starts_with("walltime: ")).expect("a walltime in the group") + 1;
    let at = format!("<builtin>/execution/slurm/default.yaml:{line}:11");
    c.refused_with(&[], &at, "walltime", &["--time=01:00:00", "Requested time limit is invalid"]);
}

#[test]
fn a_feasible_plan_shows_the_expected_start() {
    let c = Case::new("feasible", &OK);
    let out = c.run(&["plan"]);
    assert!(out.ok(), "{}", out.show());
    let line = out
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("expected start "))
        .unwrap_or_else(|| panic!("no expected start\n{}", out.show()));
    assert!(line.contains("partition=cpu") && line.contains("gsm8k"), "{line}");
    let json = c.run(&["plan", "--format", "json"]);
    assert!(json.ok(), "{}", json.show());
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("plan JSON");
    let f = v["feasibility"].as_array().expect("a feasibility list");
    assert_eq!(f.len(), 1, "one shape for both tasks' links: {f:?}");
    assert_eq!(f[0]["ok"], serde_json::Value::Bool(true), "{f:?}");
    let start = f[0]["expected_start"].as_str().expect("an expected start");
    assert!(start.len() >= 19 && start.as_bytes()[10] == b'T', "a Slurm timestamp: {start}");
    assert_eq!(f[0]["shape"]["partition"], "cpu");
    assert_eq!(f[0]["units"].as_array().map(Vec::len), Some(2));
    let md = c.run(&["plan", "--format", "markdown"]);
    assert!(md.ok() && md.stdout.contains("**Feasibility**"), "{}", md.show());
    let offline = c.run(&["plan", "--offline"]);
    assert!(offline.ok(), "{}", offline.show());
    assert!(offline.stdout.contains("feasibility not checked (offline)"), "{}", offline.show());
    assert!(!offline.stdout.contains("expected start"), "{}", offline.show());
    c.assert_nothing_queued();
}

/// The account whose association limits queued jobs (see `tests/cluster/up.sh`).
fn limited() -> String {
    cluster().get("EVALCTL_CLUSTER_LIMITED_ACCOUNT").to_owned()
}

#[test]
fn a_stack_over_the_queued_job_limit_is_refused_naming_the_limit() {
    let account = limited();
    // 40 tasks: 80 jobs (a first link and a resume link each) against 50.
    let c = Case::new("maxsubmit", &Exec { account: &account, more_tasks: 38, ..OK });
    let at = c.location("account");
    for args in [&["plan"][..], &["apply", "--auto-approve"]] {
        let out = c.run(args);
        assert_eq!(out.code, Some(1), "{}", out.show());
        let headline = format!("{at}: error: the plan submits 80 jobs under account `{account}`");
        assert!(out.stderr.contains(&headline), "expected `{headline}`\n{}", out.show());
        assert!(out.stderr.contains("MaxSubmitJobs=50"), "{}", out.show());
        assert!(out.stderr.contains("nothing was submitted"), "{}", out.show());
    }
    c.assert_nothing_queued();
}

#[test]
fn jobs_over_a_qos_per_user_limit_are_refused_at_the_qos() {
    let account = limited();
    // 20 tasks: 40 jobs, within the association's 50 but not the QOS's 30.
    let c = Case::new("qos", &Exec { account: &account, qos: "small", more_tasks: 18, ..OK });
    let out = c.run(&["plan"]);
    assert_eq!(out.code, Some(1), "{}", out.show());
    let headline = format!("{}: error: the plan submits 40 jobs in QOS `small`", c.location("qos"));
    assert!(out.stderr.contains(&headline), "expected `{headline}`\n{}", out.show());
    assert!(out.stderr.contains("MaxSubmitJobsPerUser=30"), "{}", out.show());
    assert!(!out.stderr.contains("MaxSubmitJobs=50"), "the association's limit is not exceeded\n{}", out.show());
    c.assert_nothing_queued();
}

#[test]
fn a_stack_within_the_limits_shows_the_room_left() {
    let account = limited();
    let c = Case::new("room", &Exec { account: &account, more_tasks: 8, ..OK });
    let out = c.run(&["plan"]);
    assert!(out.ok(), "{}", out.show());
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("MaxSubmitJobs=50"))
        .unwrap_or_else(|| panic!("no limit line\n{}", out.show()));
    assert!(line.contains("20 jobs to submit") && line.contains(&format!("account `{account}`")), "{line}");
    let json = c.run(&["plan", "--format", "json"]);
    assert!(json.ok(), "{}", json.show());
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("plan JSON");
    let limits = v["limits"].as_array().expect("a limits list");
    let own = limits.iter().find(|l| l["limit"] == "MaxSubmitJobs").expect("the association's limit");
    assert_eq!(
        (own["max"].as_u64(), own["needed"].as_u64(), own["level"].as_str()),
        (Some(50), Some(20), Some("user"))
    );
    assert_eq!(own["room"].as_u64(), own["max"].as_u64().zip(own["used"].as_u64()).map(|(m, u)| m - u));
    let md = c.run(&["plan", "--format", "markdown"]);
    assert!(md.ok() && md.stdout.contains("**Scheduler limits**"), "{}", md.show());
    c.assert_nothing_queued();
}
