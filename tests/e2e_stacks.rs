//! End-to-end test of `evalctl plan DIR` / `apply DIR` with several stacks
//! on the real Slurm test cluster of `tests/cluster`, over SSH:
//!
//! * `plan DIR` with two stacks on one host logs in ONCE (counted by the
//!   ssh config's `LocalCommand`, which ssh runs for each new connection,
//!   never for a channel multiplexed over an existing master) and refreshes
//!   both stacks (two round trips over that connection);
//! * `apply --auto-approve DIR` applies each stack under its own lock: with
//!   stack `b`'s lock held by someone else, `a` is submitted and `b` fails
//!   with exit 3 (the lock holder named); once the lock is gone, a second
//!   apply finds `a` unchanged and submits `b`.
//!
//! Jobs stay PENDING (`--begin=now+600`) and are cancelled when the test
//! ends, also when it fails. Needs the cluster up and root:
//! `sudo bash tests/cluster/up.sh`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;
use common::{ClusterInfo, Out, Proc};

const BIN: &str = env!("CARGO_BIN_EXE_evalctl");

fn cluster() -> &'static ClusterInfo {
    common::cluster_checked(common::SSH_VARS, |_| Ok(()))
}

/// The test's folder of configs and its output dir on the shared disk;
/// its jobs cancelled and both removed when dropped.
struct Fixture {
    dir: PathBuf,
    output_dir: PathBuf,
    prefix: String,
    ssh_config: PathBuf,
    connections: PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let out = Command::new("squeue").args(["-h", "-o", "%i %j"]).stdin(Stdio::null()).output();
        if let Ok(out) = out {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains(&format!("evalctl:{}", self.prefix)))
                .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
                .collect();
            if !ids.is_empty() {
                let _ = Command::new("scancel").args(&ids).stdin(Stdio::null()).output();
            }
        }
        if std::env::var_os("E2E_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
            let _ = std::fs::remove_dir_all(&self.output_dir);
        }
    }
}

impl Fixture {
    fn new(test: &str) -> Fixture {
        let info = cluster();
        let pid = std::process::id();
        let prefix = format!("e2es{pid}");
        let dir = std::env::temp_dir().join(format!("evalctl-e2e-stacks-{test}-{pid}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("evals")).unwrap();
        let output_dir = info.shared().join(format!("e2e-stacks-{pid}-{test}"));
        let _ = std::fs::remove_dir_all(&output_dir);
        // The cluster's ssh config ends with its one Host block: these lines
        // join it. LocalCommand runs once per new connection.
        let connections = dir.join("connections");
        let mut config = std::fs::read_to_string(info.ssh_config()).unwrap();
        config.push_str(&format!(
            "\n  PermitLocalCommand yes\n  LocalCommand echo connected >> {}\n",
            connections.display()
        ));
        let ssh_config = dir.join("ssh_config");
        std::fs::write(&ssh_config, config).unwrap();
        let f = Fixture { dir, output_dir, prefix, ssh_config, connections };
        for s in ["a", "b"] {
            f.write(s);
        }
        std::fs::write(f.dir.join("evals/gate.yaml"), "rules: []\n").unwrap();
        f
    }

    fn stack(&self, s: &str) -> String {
        format!("{}-{s}", self.prefix)
    }

    fn write(&self, s: &str) {
        let info = cluster();
        let yaml = format!(
            "defaults: [{{execution: slurm/default}}, {{deployment: none}}, _self_]\n\
             name: {name}\n\
             execution:\n  hostname: {host}\n  username: {user}\n  account: research\n  partition: cpu\n  \
             output_dir: {out}\n  gres: null\n  walltime: \"00:01:00\"\n  \
             sbatch_extra_flags: {{exclusive: false, begin: \"now+600\"}}\n  mounts: {{mount_home: false}}\n\
             target: {{api_endpoint: {{url: \"http://127.0.0.1:9/v1/chat/completions\", model_id: m}}}}\n\
             evaluation:\n  tasks:\n    - {{name: gsm8k, container: \"evaluator:latest\"}}\n",
            name = self.stack(s),
            host = info.alias(),
            user = info.get("EVALCTL_CLUSTER_USER"),
            out = self.output_dir.display(),
        );
        std::fs::write(self.dir.join(format!("evals/{s}.yaml")), yaml).unwrap();
    }

    fn run(&self, args: &[&str]) -> Out {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(&self.dir)
            .env_remove("EVALCTL_SSH_CONTROL_PATH")
            .env("EVALCTL_SSH_CONFIG", &self.ssh_config)
            .env("NO_COLOR", "1")
            .env("USER", "e2e-tester");
        Proc::spawn(format!("evalctl {}", args.join(" ")), cmd, false).wait(Duration::from_secs(240))
    }

    fn connections(&self) -> usize {
        std::fs::read_to_string(&self.connections).map_or(0, |t| t.lines().count())
    }

    fn stack_dir(&self, s: &str) -> PathBuf {
        self.output_dir.join(self.stack(s))
    }

    /// The live jobs of stack `s`, by name.
    fn jobs(&self, s: &str) -> Vec<String> {
        let out = Command::new("squeue").args(["-h", "-o", "%j"]).stdin(Stdio::null()).output().expect("squeue");
        let tag = format!("evalctl:{}/", self.stack(s));
        String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains(&tag)).map(str::to_owned).collect()
    }
}

fn hold_lock(stack_dir: &Path) {
    let dir = stack_dir.join(".evalctl");
    std::fs::create_dir_all(&dir).unwrap();
    let lock = r#"{"id":"e2e-someone-else","who":"alice","host":"elsewhere.example","pid":4242,"when":1,"command":"evalctl apply"}"#;
    std::fs::write(dir.join("lock"), lock).unwrap();
    // The folders made here (as root) must stay writable for the cluster's user.
    let _ = Command::new("chmod").args(["-R", "a+rwX"]).arg(stack_dir).status();
    if let Some(output_dir) = stack_dir.parent() {
        let _ = Command::new("chmod").arg("1777").arg(output_dir).status();
    }
}

#[test]
fn two_stacks_plan_over_one_connection_and_apply_under_their_own_locks() {
    let f = Fixture::new("two");
    let (a, b) = (f.stack("a"), f.stack("b"));

    let plan = f.run(&["plan", "--verbose", "--detailed-exitcode", "evals"]);
    assert_eq!(plan.code, Some(2), "both stacks have changes\n{}", plan.show());
    assert_eq!(f.connections(), 1, "one ssh login for two stacks on one host\n{}", plan.show());
    assert!(plan.stderr.contains("planning 2 stacks over 1 connection"), "{}", plan.show());
    let trips = plan.stderr.lines().filter(|l| l.contains("round trip") && l.contains("to ssh")).count();
    assert_eq!(trips, 2, "one refresh per stack\n{}", plan.show());
    assert!(plan.stdout.starts_with("2 stacks: 2 with changes."), "{}", plan.show());
    for s in [&a, &b] {
        assert!(plan.stdout.contains(&format!("Stack `{s}` (ssh ")), "{s} refreshed on the cluster\n{}", plan.show());
    }
    assert!(plan.stdout.contains("Feasibility"), "the scheduler was asked\n{}", plan.show());

    // b's lock is held by another apply: a is applied, b is not (exit 3).
    hold_lock(&f.stack_dir("b"));
    let apply = f.run(&["apply", "--auto-approve", "evals"]);
    assert_eq!(apply.code, Some(3), "the one failure is b's lock\n{}", apply.show());
    assert!(apply.stderr.contains("held by alice@elsewhere.example"), "{}", apply.show());
    assert!(apply.stdout.contains(&format!("=== {a} (evals/a.yaml) ===")), "{}", apply.show());
    assert!(apply.stdout.contains("Apply complete: 1 created"), "{}", apply.show());
    assert_eq!(f.jobs("a").len(), 2, "a's first and resume links\n{}", apply.show());
    assert!(f.jobs("b").is_empty(), "nothing of b submitted\n{}", apply.show());
    assert!(f.stack_dir("a").join(".evalctl/state.json").is_file());
    assert!(!f.stack_dir("a").join(".evalctl/lock").exists(), "a's lock released");
    assert_eq!(f.connections(), 2, "one login per run\n{}", apply.show());

    std::fs::remove_file(f.stack_dir("b").join(".evalctl/lock")).unwrap();
    let apply = f.run(&["apply", "--auto-approve", "evals"]);
    assert_eq!(apply.code, Some(0), "{}", apply.show());
    assert!(!apply.stdout.contains(&format!("=== {a} ")), "a has no changes: not applied again\n{}", apply.show());
    assert!(apply.stdout.contains(&format!("=== {b} (evals/b.yaml) ===")), "{}", apply.show());
    assert_eq!(f.jobs("a").len(), 2, "{}", apply.show());
    assert_eq!(f.jobs("b").len(), 2, "{}", apply.show());
    assert!(f.stack_dir("b").join(".evalctl/state.json").is_file());
    assert!(!f.stack_dir("b").join(".evalctl/lock").exists(), "b's lock released");

    let plan = f.run(&["plan", "--detailed-exitcode", "evals"]);
    assert_eq!(plan.code, Some(0), "nothing left to do\n{}", plan.show());
}
