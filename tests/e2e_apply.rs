//! End-to-end tests of `evalctl plan` / `evalctl apply` against the real
//! Slurm test cluster of `tests/cluster` (slurmctld, three slurmd, accounting
//! and an sshd, all on this machine), through both backends:
//!
//! * SSH: `execution.hostname: evalctl-cluster` with the cluster's ssh config
//!   (jobs belong to `slurmuser`);
//! * local: `execution.hostname: localhost` (Slurm commands run right here, as
//!   root; a counting `sbatch` stand-in, `tests/e2e/sbatch-counter.sh`, is put
//!   first in PATH).
//!
//! Scenarios (DESIGN §5, §6 and the reliability targets of §8):
//! 1. apply on an empty stack creates the jobs; a second apply is a no-op with
//!    zero sbatch calls and an unchanged state serial;
//! 2. a changed pending unit is replaced; a removed task's chain is cancelled
//!    and its files stay on disk;
//! 3. SIGKILL of apply after k of 2N submissions: the next apply ends with
//!    exactly one first link and one resume link per task, none held;
//! 4. two applies at once: exactly one submits, the other fails with the lock
//!    holder's details (exit 3) or waits (`--lock-timeout`) and finds nothing
//!    to do;
//! 5. a saved plan is refused (exit 4) once the cluster or the config changed,
//!    and submits nothing;
//! 6. a canary secret appears only in the `secrets/*.env` files (mode 0600);
//! 7. the SSH connection dies mid-apply (the sshd session killed, or the
//!    network cut until evalctl gave up): clear error, no job released, and the
//!    next apply completes the stack.
//!
//! Every test has its own stack (name and output dir carry the test's name and
//! the process id) and its own config directory, keeps its jobs PENDING
//! (`--begin=now+600`) unless it needs them to run, and cancels its jobs and
//! removes its directories when it ends, also when it fails (`E2E_KEEP=1`
//! keeps the directories for a post-mortem). The tests run in parallel.
//!
//! Needs the cluster up and root (the cluster's ssh key is root's), and
//! `script` (util-linux) and `ss` (iproute2) on this machine:
//! `sudo bash tests/cluster/up.sh`. Timings: `cargo test --test e2e_apply -- --nocapture`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod common;
use common::{ClusterInfo, Out, Proc, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_evalctl");
const SBATCH_WRAPPER: &str = include_str!("e2e/sbatch-counter.sh");
/// `$USER` given to evalctl: lock holders are named `e2e-tester@HOST`.
const WHO: &str = "e2e-tester";
/// Job states in which a job still exists for Slurm (squeue's non-final states).
const LIVE_STATES: &[&str] = &[
    "PENDING",
    "RUNNING",
    "CONFIGURING",
    "COMPLETING",
    "SUSPENDED",
    "REQUEUED",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
    "RESIZING",
    "STOPPED",
    "SIGNALING",
    "STAGE_OUT",
];

// ------------------------------------------------------------------ cluster

/// The running test cluster, with `script` and `ss` on this machine.
fn cluster() -> &'static ClusterInfo {
    common::cluster_checked(
        &[
            "EVALCTL_CLUSTER_USER",
            "EVALCTL_CLUSTER_IDENTITY",
            "EVALCTL_CLUSTER_KNOWN_HOSTS",
            "EVALCTL_CLUSTER_SSH_CONFIG",
            "EVALCTL_CLUSTER_SSH_ALIAS",
            "EVALCTL_CLUSTER_SHARED",
        ],
        |_| real_sbatch().map(drop),
    )
}

fn in_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(program)).find(|p| p.is_file())
}

/// The cluster's own `sbatch`, which the counting wrapper calls.
fn real_sbatch() -> Result<PathBuf, String> {
    in_path("sbatch").ok_or_else(|| "sbatch is not in PATH (slurm-client missing?)".to_owned())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_owned()).unwrap_or_default()
}

/// Fails the test when `!ok`, except while a failed test is cleaning up (a
/// second panic would abort the whole run); returns `ok`.
fn require(ok: bool, what: impl FnOnce() -> String) -> bool {
    if !ok && !std::thread::panicking() {
        panic!("{}", what());
    }
    ok
}

fn sh(program: &str, args: &[&str]) -> std::process::Output {
    use std::os::unix::process::ExitStatusExt;
    match Command::new(program).args(args).stdin(Stdio::null()).output() {
        Ok(out) => out,
        Err(e) => {
            require(false, || format!("cannot run {program}: {e}"));
            std::process::Output {
                status: std::process::ExitStatus::from_raw(127 << 8),
                stdout: vec![],
                stderr: vec![],
            }
        }
    }
}

/// Sends a signal to a process by id (only processes these tests started, or
/// the sshd sessions serving their own connections).
fn signal(pid: u32, sig: &str) {
    let _ = sh("kill", &["-s", sig, &pid.to_string()]);
}

// ------------------------------------------------------------------ jobs

/// One job of a stack as squeue shows it (to root: every user's jobs).
#[derive(Clone, Debug)]
struct Job {
    id: u64,
    state: String,
    reason: String,
    user: String,
    dependency: String,
    name: String,
    /// `--comment`, as Slurm has it.
    comment: String,
    /// From the ownership tag in the name, `evalctl:<stack>/<unit>/<role>@<hashes>`.
    unit: String,
    role: String,
    hashes: String,
}

impl Job {
    fn is_live(&self) -> bool {
        LIVE_STATES.contains(&self.state.as_str())
    }
    fn is_held(&self) -> bool {
        self.reason.starts_with("JobHeld")
    }
}

/// Every stack's `execution.sbatch_comment`: JSON for a site's idle-GPU
/// reaper, with what `#SBATCH` lines and shells stumble on.
const COMMENT: &str =
    r#"{"OccupiedIdleGPUsJobReaper":{"exemptIdleTimeMins":"600","reason":"data loading"}} it's $HOME #1 \x"#;

/// Every job Slurm knows (pending, running and recently ended), each user's.
fn squeue() -> Vec<String> {
    let out = sh("squeue", &["-h", "-a", "-t", "all", "-o", "%i|%T|%r|%u|%E|%j|%k"]);
    if !require(out.status.success(), || format!("squeue failed: {}", String::from_utf8_lossy(&out.stderr))) {
        return vec![];
    }
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

fn parse_job(line: &str, stack: &str) -> Option<Job> {
    let f: Vec<&str> = line.splitn(7, '|').collect();
    let [id, state, reason, user, dependency, name, comment] = f.as_slice() else { return None };
    let tag = evalctl::remote::layout::parse_name(name).filter(|t| t.stack == stack)?;
    let hashes = match (&tag.script_hash, &tag.result_hash) {
        (Some(s), Some(r)) => format!("{s}:{r}"),
        _ => String::new(),
    };
    Some(Job {
        id: id.trim().parse().ok()?,
        state: state.to_string(),
        reason: reason.to_string(),
        user: user.to_string(),
        dependency: dependency.to_string(),
        name: name.to_string(),
        comment: comment.to_string(),
        unit: tag.unit,
        role: tag.role,
        hashes,
    })
}

fn ids(jobs: &[Job]) -> BTreeSet<u64> {
    jobs.iter().map(|j| j.id).collect()
}

fn show_jobs(jobs: &[Job]) -> String {
    let mut s = String::new();
    for j in jobs {
        s.push_str(&format!(
            "\n    {} {} {}/{} {} reason={} dep={} user={} tag@{}",
            j.id, j.name, j.unit, j.role, j.state, j.reason, j.dependency, j.user, j.hashes
        ));
    }
    if s.is_empty() { " (none)".into() } else { s }
}

// ------------------------------------------------------------------ processes

/// Whether an apply submitted anything.
fn submitted(out: &Out) -> bool {
    out.stdout.contains("-> submitted")
}

// ------------------------------------------------------------------ sockets

/// A TCP socket: local address, peer address, the processes (name, pid) holding it.
type Socket = (String, String, Vec<(String, u32)>);

/// Every TCP socket of this machine (`ss -tnp`).
fn tcp_sockets() -> Vec<Socket> {
    let out = sh("ss", &["-tnpH"]);
    let failed = || format!("ss -tnpH failed (iproute2 missing?): {}", String::from_utf8_lossy(&out.stderr));
    if !require(out.status.success(), failed) {
        return vec![];
    }
    let mut all = vec![];
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 {
            continue;
        }
        let users = f[5..].join(" ");
        let mut procs = vec![];
        for part in users.split("(\"").skip(1) {
            let Some((name, rest)) = part.split_once('"') else { continue };
            let Some(pid) = rest.split("pid=").nth(1) else { continue };
            let pid: String = pid.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(pid) = pid.parse() {
                procs.push((name.to_owned(), pid));
            }
        }
        all.push((f[3].to_owned(), f[4].to_owned(), procs));
    }
    all
}

/// Pids of `process` with a socket for which `pred(local, peer)` holds.
fn socket_pids(process: &str, pred: impl Fn(&str, &str) -> bool) -> BTreeSet<u32> {
    tcp_sockets()
        .into_iter()
        .filter(|(l, p, _)| pred(l, p))
        .flat_map(|(_, _, procs)| procs)
        .filter(|(name, _)| name == process)
        .map(|(_, pid)| pid)
        .collect()
}

/// A TCP relay to the cluster's sshd that the test can cut (every connection
/// dropped, new ones closed at once, as if sshd were gone) and restore.
struct Relay {
    port: u16,
    down: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Write);
    });
}

impl Relay {
    fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let port = listener.local_addr().expect("relay address").port();
        let relay = Relay {
            port,
            down: Arc::new(AtomicBool::new(false)),
            stop: Arc::new(AtomicBool::new(false)),
            conns: Arc::new(Mutex::new(vec![])),
        };
        let (down, stop, conns) = (relay.down.clone(), relay.stop.clone(), relay.conns.clone());
        std::thread::spawn(move || {
            for incoming in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = incoming else { continue };
                if down.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(upstream) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) =
                    (client.try_clone(), server.try_clone(), client.try_clone(), server.try_clone())
                else {
                    continue;
                };
                conns.lock().unwrap_or_else(|p| p.into_inner()).extend([c3, s3]);
                pump(client, s2);
                pump(server, c2);
            }
        });
        relay
    }

    /// Drops every connection and refuses new ones.
    fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        for s in self.conns.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut();
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

// ------------------------------------------------------------------ stacks

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Ssh,
    Local,
}

/// How an SSH stack reaches sshd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Net {
    /// The cluster's own ssh config.
    Plain,
    /// From a loopback address of its own (`BindAddress`), so the test can
    /// find the sshd session serving it and evalctl's leftover ssh master.
    Bind(u8),
    /// Also through a [`Relay`] the test can cut.
    Relay(u8),
}

/// The config of a stack.
#[derive(Clone, Debug)]
struct Spec {
    tasks: Vec<String>,
    walltime: String,
    /// `--begin=now+600`: jobs stay PENDING (reason BeginTime) and never run.
    begin: bool,
    pre_cmd: String,
}

impl Spec {
    fn pending(tasks: &[&str]) -> Spec {
        Spec {
            tasks: tasks.iter().map(|t| (*t).to_owned()).collect(),
            walltime: "00:01:00".into(),
            begin: true,
            pre_cmd: "sleep 30".into(),
        }
    }
    fn pending_n(n: usize) -> Spec {
        let names: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
        Spec::pending(&names.iter().map(String::as_str).collect::<Vec<_>>())
    }
}

/// One test's stack: its config directory, output dir and jobs; cleaned up
/// (jobs cancelled, directories removed) when dropped, also after a failure.
struct Stack {
    test: String,
    name: String,
    backend: Backend,
    dir: PathBuf,
    output_dir: PathBuf,
    config: PathBuf,
    ssh_config: PathBuf,
    bind: Option<String>,
    relay: Option<Relay>,
    token: String,
    started: Instant,
}

fn unique_dir(path: &Path) {
    let _ = std::fs::remove_dir_all(path);
    std::fs::create_dir_all(path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
}

impl Stack {
    fn new(test: &str, backend: Backend) -> Stack {
        Stack::with_net(test, backend, Net::Plain)
    }

    fn with_net(test: &str, backend: Backend, net: Net) -> Stack {
        let info = cluster();
        let pid = std::process::id();
        let name = format!("e2e{pid}-{test}");
        let dir = std::env::temp_dir().join(format!("evalctl-e2e-{name}"));
        unique_dir(&dir);
        let output_dir = info.shared().join(format!("e2e-{pid}-{test}"));
        let _ = std::fs::remove_dir_all(&output_dir);
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).expect("bin dir");
        let wrapper = bin.join("sbatch");
        std::fs::write(&wrapper, SBATCH_WRAPPER).expect("write the sbatch wrapper");
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod the wrapper");
        std::fs::write(bin.join("real-sbatch"), real_sbatch().expect("sbatch").as_os_str().as_encoded_bytes())
            .expect("write real-sbatch");
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let mut stack = Stack {
            test: test.to_owned(),
            name,
            backend,
            config: dir.join("evalctl.yaml"),
            ssh_config: info.ssh_config(),
            output_dir,
            dir,
            bind: None,
            relay: None,
            token: format!("E2E-CANARY-{pid}-{nanos:x}"),
            started: Instant::now(),
        };
        let idx = match net {
            Net::Plain => return stack,
            Net::Bind(i) | Net::Relay(i) => i,
        };
        assert_eq!(backend, Backend::Ssh, "only SSH stacks have a network");
        // A loopback address of this test alone: 127.<100+idx>.<pid>.
        let bind = format!("127.{}.{}.{}", 100 + u32::from(idx), (pid / 253) % 256, pid % 253 + 1);
        let mut config = std::fs::read_to_string(info.ssh_config()).expect("read the cluster's ssh config");
        if let Net::Relay(_) = net {
            let sshd = info.sshd().to_socket_addrs().expect("sshd address").next().expect("sshd address");
            let relay = Relay::start(sshd);
            // The relay's port must find sshd's host key: a known_hosts of our own.
            let known = std::fs::read_to_string(info.get("EVALCTL_CLUSTER_KNOWN_HOSTS")).expect("known_hosts");
            let key = known
                .lines()
                .find_map(|l| l.split_once(' ').map(|(_, k)| k.to_owned()))
                .expect("a host key in the cluster's known_hosts");
            let known_hosts = stack.dir.join("known_hosts");
            std::fs::write(&known_hosts, format!("[127.0.0.1]:{} {key}\n", relay.port)).expect("write known_hosts");
            config = format!(
                "Host {alias}\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n  IdentityFile {id}\n  \
                 IdentitiesOnly yes\n  UserKnownHostsFile {kh}\n  StrictHostKeyChecking yes\n  BatchMode yes\n",
                alias = info.alias(),
                port = relay.port,
                user = info.get("EVALCTL_CLUSTER_USER"),
                id = info.get("EVALCTL_CLUSTER_IDENTITY"),
                kh = known_hosts.display(),
            );
            stack.relay = Some(relay);
        }
        // The cluster's config ends with its one Host block: this line joins it.
        config.push_str(&format!("\n  BindAddress {bind}\n"));
        stack.ssh_config = stack.dir.join("ssh_config");
        std::fs::write(&stack.ssh_config, config).expect("write the ssh config");
        stack.bind = Some(bind);
        stack
    }

    fn stack_dir(&self) -> PathBuf {
        self.output_dir.join(&self.name)
    }

    fn state_file(&self) -> PathBuf {
        self.stack_dir().join(".evalctl/state.json")
    }

    fn lock_dir(&self) -> PathBuf {
        self.stack_dir().join(".evalctl/lock")
    }

    fn counter(&self) -> PathBuf {
        self.dir.join("sbatch-calls")
    }

    fn write(&self, spec: &Spec) {
        // `execution.username` defaults to `${oc.env:USER}`, which would win
        // over the ssh config's `User`: name the cluster's user explicitly.
        let (host, user) = match self.backend {
            Backend::Ssh => (cluster().alias(), cluster().get("EVALCTL_CLUSTER_USER")),
            Backend::Local => ("localhost", "null"),
        };
        let begin = if spec.begin { ", begin: \"now+600\"" } else { "" };
        let mut yaml = format!(
            "# evalctl e2e test `{test}` ({backend:?} backend)\n\
             defaults: [{{execution: slurm/default}}, {{deployment: none}}, _self_]\n\
             name: {name}\n\
             execution:\n  hostname: {host}\n  username: {user}\n  account: research\n  partition: cpu\n  output_dir: {out}\n  \
             gres: null\n  walltime: \"{walltime}\"\n  sbatch_extra_flags: {{exclusive: false{begin}}}\n  \
             mounts: {{mount_home: false}}\n  sbatch_comment: '{comment}'\n\
             target: {{api_endpoint: {{url: \"http://127.0.0.1:9/v1/chat/completions\", model_id: m}}}}\n\
             evaluation:\n  env_vars: {{TOKEN: \"host:E2E_TOKEN\"}}\n  tasks:\n",
            test = self.test,
            backend = self.backend,
            name = self.name,
            out = self.output_dir.display(),
            walltime = spec.walltime,
            comment = COMMENT.replace('\'', "''"),
        );
        for t in &spec.tasks {
            yaml.push_str(&format!(
                "    - {{name: {t}, container: \"evaluator:latest\", pre_cmd: \"{}\"}}\n",
                spec.pre_cmd.replace('\\', "\\\\").replace('"', "\\\"")
            ));
        }
        std::fs::write(&self.config, yaml).expect("write the config");
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(&self.dir)
            .env_remove("EVALCTL_SSH_CONTROL_PATH")
            .env("EVALCTL_SSH_CONFIG", &self.ssh_config)
            .env("NO_COLOR", "1")
            .env("USER", WHO)
            .env("E2E_TOKEN", &self.token);
        if self.backend == Backend::Local {
            let path = std::env::var_os("PATH").unwrap_or_default();
            let mut dirs = vec![self.dir.join("bin")];
            dirs.extend(std::env::split_paths(&path));
            cmd.env("PATH", std::env::join_paths(dirs).expect("PATH"));
        }
        cmd
    }

    fn spawn(&self, args: &[&str]) -> Proc {
        Proc::spawn(format!("evalctl {}", args.join(" ")), self.command(args), false)
    }

    fn run(&self, args: &[&str]) -> Out {
        self.spawn(args).wait(Duration::from_secs(240))
    }

    fn config_arg(&self) -> &str {
        self.config.to_str().expect("utf-8 path")
    }

    fn apply(&self) -> Out {
        self.run(&["apply", self.config_arg(), "--auto-approve"])
    }

    fn apply_ok(&self) -> Out {
        let out = self.apply();
        assert!(out.ok(), "apply failed\n{}", out.show());
        out
    }

    fn plan(&self, extra: &[&str]) -> Out {
        let mut args = vec!["plan", self.config_arg()];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// The stack's jobs (every state squeue still shows).
    fn jobs(&self) -> Vec<Job> {
        squeue().iter().filter_map(|l| parse_job(l, &self.name)).collect()
    }

    fn live(&self) -> Vec<Job> {
        self.jobs().into_iter().filter(Job::is_live).collect()
    }

    /// The jobs once no new one has appeared for a while (after a kill).
    fn settled_jobs(&self) -> Vec<Job> {
        let mut last = ids(&self.jobs());
        let mut since = Instant::now();
        let start = Instant::now();
        while since.elapsed() < Duration::from_millis(2500) && start.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(250));
            let now = ids(&self.jobs());
            if now != last {
                last = now;
                since = Instant::now();
            }
        }
        self.jobs()
    }

    fn state_text(&self) -> Option<String> {
        std::fs::read_to_string(self.state_file()).ok()
    }

    fn serial(&self) -> u64 {
        let text = self.state_text().unwrap_or_else(|| panic!("no state file {}", self.state_file().display()));
        let v: serde_json::Value = serde_json::from_str(&text).expect("state.json is JSON");
        v["serial"].as_u64().expect("state.json has a serial")
    }

    fn local_state_copy(&self) -> PathBuf {
        self.dir.join(".evalctl").join(format!("{}.state.json", self.name))
    }

    /// Submissions: `sbatch --test-only` (plan's feasibility probe) submits nothing.
    fn sbatch_calls(&self) -> usize {
        std::fs::read_to_string(self.counter()).map_or(0, |s| s.lines().filter(|l| !l.contains("--test-only")).count())
    }

    /// The lock's `info` (who, host, pid, id) while some apply holds it.
    fn lock_info(&self) -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(self.lock_dir()).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Exactly one live first link and one live resume link per task, none
    /// held, each resume link waiting on its task's first link; returns them.
    fn assert_chains(&self, tasks: &[String], context: &str) -> Vec<Job> {
        let live = self.live();
        let all = show_jobs(&self.jobs());
        assert_eq!(
            live.len(),
            2 * tasks.len(),
            "{context}: expected {} live jobs (a first and a resume link per task), jobs of the stack:{all}",
            2 * tasks.len()
        );
        let mut by: BTreeMap<(&str, &str), Vec<&Job>> = BTreeMap::new();
        for j in &live {
            by.entry((j.unit.as_str(), j.role.as_str())).or_default().push(j);
        }
        for t in tasks {
            for role in ["first", "resume"] {
                let n = by.get(&(t.as_str(), role)).map_or(0, Vec::len);
                assert_eq!(n, 1, "{context}: task {t} has {n} live `{role}` jobs (want 1); jobs:{all}");
            }
            let first = by[&(t.as_str(), "first")][0];
            let resume = by[&(t.as_str(), "resume")][0];
            // The ownership tag with both hashes, and the comment verbatim.
            for (j, role) in [(first, "first"), (resume, "resume")] {
                let name = format!("evalctl:{}/{t}/{role}@{}", self.name, j.hashes);
                assert_eq!(j.name, name, "{context}: job name of {t} {role}");
                assert_eq!(j.hashes.len(), 33, "{context}: {t} {role} has both hashes: {}", j.name);
                assert_eq!(j.comment, COMMENT, "{context}: the comment of {t} {role} is the config's, verbatim");
            }
            assert!(
                resume.dependency.contains(&format!("afternotok:{}", first.id)),
                "{context}: {t}.resume must depend afternotok on {t} ({}); jobs:{all}",
                first.id
            );
        }
        let units: BTreeSet<&str> = live.iter().map(|j| j.unit.as_str()).collect();
        let want: BTreeSet<&str> = tasks.iter().map(String::as_str).collect();
        assert_eq!(units, want, "{context}: units with live jobs; jobs:{all}");
        let held: Vec<&Job> = live.iter().filter(|j| j.is_held()).collect();
        assert!(held.is_empty(), "{context}: jobs left held; jobs:{all}");
        let user = match self.backend {
            Backend::Ssh => cluster().get("EVALCTL_CLUSTER_USER").to_owned(),
            Backend::Local => "root".to_owned(),
        };
        assert!(live.iter().all(|j| j.user == user), "{context}: jobs must belong to {user}; jobs:{all}");
        live
    }

    /// Kills what evalctl left of its ssh connections (the ControlMaster of a
    /// SIGKILLed evalctl lingers for ControlPersist); only for `Net::Bind/Relay`.
    fn kill_ssh_masters(&self) {
        let Some(bind) = &self.bind else { return };
        let prefix = format!("{bind}:");
        for pid in socket_pids("ssh", |local, _| local.starts_with(&prefix)) {
            signal(pid, "TERM");
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        let live: Vec<String> = self.live().iter().map(|j| j.id.to_string()).collect();
        if !live.is_empty() {
            let _ = Command::new("scancel").args(&live).stdin(Stdio::null()).output();
        }
        self.kill_ssh_masters();
        let keep = std::env::var_os("E2E_KEEP").is_some_and(|v| !v.is_empty());
        if keep {
            eprintln!("[e2e] {}: kept {} and {}", self.test, self.dir.display(), self.stack_dir().display());
        } else {
            let _ = std::fs::remove_dir_all(&self.output_dir);
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        eprintln!(
            "[e2e] {} ({:?}): {:.1} s{}",
            self.test,
            self.backend,
            self.started.elapsed().as_secs_f64(),
            if failed { " FAILED" } else { "" }
        );
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

fn assert_no_changes(out: &Out, context: &str) {
    assert!(out.ok(), "{context}: apply failed\n{}", out.show());
    assert!(out.stderr.contains("No changes."), "{context}: the plan must say `No changes.` on stderr\n{}", out.show());
    assert!(!submitted(out) && !out.stdout.contains("Apply complete"), "{context}: nothing to do\n{}", out.show());
}

// ------------------------------------------------------------------ 1. apply twice

fn apply_twice_is_a_noop(backend: Backend) {
    let s = Stack::new(&format!("noop-{}", tag(backend)), backend);
    let tasks = strings(&["gsm8k", "hellaswag"]);
    s.write(&Spec::pending(&["gsm8k", "hellaswag"]));

    let first = s.apply_ok();
    assert!(first.stdout.contains("Apply complete: 2 created"), "first apply\n{}", first.show());
    let jobs = s.assert_chains(&tasks, "after the first apply");
    assert!(jobs.iter().all(|j| j.state == "PENDING"), "jobs must be pending:{}", show_jobs(&jobs));
    let before = ids(&s.jobs());
    let serial = s.serial();
    let state = s.state_text();
    assert_eq!(serial, 1, "the first apply's state serial");
    if backend == Backend::Local {
        assert_eq!(s.sbatch_calls(), 4, "the first apply runs sbatch once per job");
    }
    assert!(s.local_state_copy().is_file(), "the local copy of the state is written beside the config");

    let plan = s.plan(&["--detailed-exitcode"]);
    assert_eq!(plan.code, Some(0), "plan --detailed-exitcode of an applied stack\n{}", plan.show());
    assert!(plan.stdout.contains("No changes."), "{}", plan.show());

    let second = s.apply();
    assert_no_changes(&second, "second apply");
    if backend == Backend::Local {
        assert_eq!(s.sbatch_calls(), 4, "the second apply must not call sbatch");
    }
    assert_eq!(ids(&s.jobs()), before, "the second apply must not submit or remove jobs");
    assert_eq!(s.serial(), serial, "the second apply must not change the state serial");
    assert_eq!(s.state_text(), state, "the second apply must not rewrite the state");
    s.assert_chains(&tasks, "after the second apply");

    // A lost state (as after a crash between release and the state write):
    // the jobs are found again by the tags in their names and adopted, with
    // their hashes; nothing is submitted or cancelled.
    std::fs::remove_file(s.state_file()).expect("remove the state");
    std::fs::remove_file(s.local_state_copy()).expect("remove the local copy");
    let adopt = s.apply();
    assert!(adopt.ok(), "apply after the state was lost\n{}", adopt.show());
    assert!(!submitted(&adopt), "the stack's jobs are adopted, not submitted again\n{}", adopt.show());
    if backend == Backend::Local {
        assert_eq!(s.sbatch_calls(), 4, "adopting calls no sbatch");
    }
    assert_eq!(ids(&s.jobs()), before, "adopting must not submit or remove jobs");
    assert_no_changes(&s.apply(), "apply after the adoption");
    s.assert_chains(&tasks, "after the adoption");
}

fn tag(backend: Backend) -> &'static str {
    match backend {
        Backend::Ssh => "ssh",
        Backend::Local => "local",
    }
}

#[test]
fn apply_twice_is_a_noop_ssh() {
    apply_twice_is_a_noop(Backend::Ssh);
}

#[test]
fn apply_twice_is_a_noop_local() {
    apply_twice_is_a_noop(Backend::Local);
}

// ------------------------------------------------------------------ 2. replace and cancel

fn replace_pending_and_cancel_removed(backend: Backend) {
    let s = Stack::new(&format!("replace-{}", tag(backend)), backend);
    let tasks = strings(&["gsm8k", "hellaswag"]);
    let mut spec = Spec::pending(&["gsm8k", "hellaswag"]);
    s.write(&spec);
    s.apply_ok();
    let old = s.assert_chains(&tasks, "after the first apply");

    // A scheduling change of pending jobs: replace.
    spec.walltime = "00:00:30".into();
    s.write(&spec);
    let plan = s.plan(&["--detailed-exitcode"]);
    assert_eq!(plan.code, Some(2), "plan --detailed-exitcode with changes\n{}", plan.show());
    for t in &tasks {
        assert!(plan.stdout.contains(&format!("-/+ {t} (replace: pending")), "plan must replace {t}\n{}", plan.show());
    }
    assert!(plan.stdout.contains("Plan: 0 to create, 2 to replace, 0 to rerun, 0 to cancel."), "{}", plan.show());
    assert!(
        plan.stdout.contains("-#SBATCH --time=00:01:00") && plan.stdout.contains("+#SBATCH --time=00:00:30"),
        "the plan shows the script diff\n{}",
        plan.show()
    );
    let calls = s.sbatch_calls();
    let out = s.apply_ok();
    assert!(out.stdout.contains("Apply complete: 0 created, 2 replaced"), "{}", out.show());
    let old_ids = ids(&old);
    wait_for("the replaced jobs to leave the queue", Duration::from_secs(30), Duration::from_millis(100), || {
        s.live().iter().all(|j| !old_ids.contains(&j.id)).then_some(())
    });
    let new = s.assert_chains(&tasks, "after the replace");
    assert!(ids(&new).is_disjoint(&old_ids), "the replacement must be new jobs:{}", show_jobs(&s.jobs()));
    for j in &new {
        let before = old.iter().find(|o| o.unit == j.unit && o.role == j.role).expect("an old job");
        assert_ne!(j.hashes, before.hashes, "the new job of {}/{} carries the new script hash", j.unit, j.role);
    }
    if backend == Backend::Local {
        assert_eq!(s.sbatch_calls() - calls, 4, "a replace of two units submits four jobs");
    }
    let script = std::fs::read_to_string(s.stack_dir().join("gsm8k/task.sbatch")).expect("gsm8k's script");
    assert!(script.contains("#SBATCH --time=00:00:30"), "the new script was uploaded");

    // A task removed from the config: its chain is cancelled, its files stay.
    let kept = new.iter().filter(|j| j.unit == "gsm8k").map(|j| j.id).collect::<BTreeSet<_>>();
    let gone = new.iter().filter(|j| j.unit == "hellaswag").map(|j| j.id).collect::<BTreeSet<_>>();
    spec.tasks = strings(&["gsm8k"]);
    s.write(&spec);
    let plan = s.plan(&[]);
    assert!(plan.ok(), "{}", plan.show());
    assert!(plan.stdout.contains("- hellaswag (cancel: removed from the config)"), "{}", plan.show());
    assert!(plan.stdout.contains("Plan: 0 to create, 0 to replace, 0 to rerun, 1 to cancel."), "{}", plan.show());
    let calls = s.sbatch_calls();
    let out = s.apply_ok();
    assert!(out.stdout.contains("cancelled jobs"), "{}", out.show());
    wait_for("hellaswag's jobs to end", Duration::from_secs(30), Duration::from_millis(100), || {
        s.live().iter().all(|j| !gone.contains(&j.id)).then_some(())
    });
    let live = s.assert_chains(&strings(&["gsm8k"]), "after removing hellaswag");
    assert_eq!(ids(&live), kept, "gsm8k's jobs must be left alone");
    if backend == Backend::Local {
        assert_eq!(s.sbatch_calls(), calls, "cancelling submits nothing");
    }
    let unit_dir = s.stack_dir().join("hellaswag");
    for f in ["task.sbatch", "resume.sbatch", "chain"] {
        assert!(unit_dir.join(f).is_file(), "the removed task's {f} must stay on disk ({})", unit_dir.display());
    }
    assert!(unit_dir.join("artifacts").is_dir(), "the removed task's artifacts dir must stay");
    assert_no_changes(&s.apply(), "apply after the cancel");
}

#[test]
fn pending_change_is_replaced_and_removed_task_cancelled_ssh() {
    replace_pending_and_cancel_removed(Backend::Ssh);
}

#[test]
fn pending_change_is_replaced_and_removed_task_cancelled_local() {
    replace_pending_and_cancel_removed(Backend::Local);
}

// ------------------------------------------------------------------ 3. SIGKILL mid-apply

/// Starts `apply`, waits until the stack's first job is in squeue, then runs
/// `interrupt`; returns the apply's process and the jobs once they settled.
/// Tasks of the stacks whose apply is interrupted: enough jobs that the
/// interruption (sent once the first job is seen) lands while apply is
/// still submitting, with several `sbatch` running at once.
const INTERRUPTED_TASKS: usize = 40;

fn interrupt_apply(s: &Stack, interrupt: impl FnOnce(&mut Proc)) -> (Proc, Vec<Job>) {
    let mut p = s.spawn(&["apply", s.config_arg(), "--auto-approve"]);
    let start = Instant::now();
    loop {
        if !s.jobs().is_empty() {
            interrupt(&mut p);
            break;
        }
        if !p.running() {
            let out = p.wait(Duration::from_secs(5));
            panic!("apply ended before any job was seen\n{}", out.show());
        }
        assert!(start.elapsed() < Duration::from_secs(60), "no job appeared within 60 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    let jobs = s.settled_jobs();
    (p, jobs)
}

fn sigkill_mid_apply(backend: Backend) {
    let net = if backend == Backend::Ssh { Net::Bind(3) } else { Net::Plain };
    let s = Stack::with_net(&format!("sigkill-{}", tag(backend)), backend, net);
    let spec = Spec::pending_n(INTERRUPTED_TASKS);
    s.write(&spec);
    let (mut p, jobs) = interrupt_apply(&s, Proc::kill);
    let out = p.wait(Duration::from_secs(10));
    assert_eq!(out.code, None, "apply was killed by SIGKILL\n{}", out.show());
    s.kill_ssh_masters();
    let k = jobs.len();
    assert!(
        (1..2 * spec.tasks.len()).contains(&k),
        "test timing: the kill must land after 1 and before all {} submissions, but {k} jobs exist:{}",
        2 * spec.tasks.len(),
        show_jobs(&jobs)
    );
    let released: Vec<&Job> = jobs.iter().filter(|j| j.is_live() && !j.is_held()).collect();
    assert!(
        released.is_empty(),
        "a half-submitted apply must leave its jobs held (submitted held, released together):{}",
        show_jobs(&jobs)
    );
    eprintln!("[e2e] sigkill-{}: killed after {k} of {} submissions", tag(backend), 2 * spec.tasks.len());
    let left_locked = s.lock_dir().exists();

    let out = s.apply();
    assert!(out.ok(), "the apply after the crash must recover\n{}", out.show());
    if left_locked {
        let says = out.stderr.contains("breaking the lock of a process that is gone");
        assert!(says, "the dead apply's lock is broken, and said so\n{}", out.show());
    }
    s.assert_chains(&spec.tasks, "after recovering from SIGKILL");
    assert_no_changes(&s.apply(), "apply after the recovery");
}

#[test]
fn sigkill_mid_apply_is_recovered_ssh() {
    sigkill_mid_apply(Backend::Ssh);
}

#[test]
fn sigkill_mid_apply_is_recovered_local() {
    sigkill_mid_apply(Backend::Local);
}

// ------------------------------------------------------------------ 4. concurrent applies

/// Checks the message of an apply refused because of the lock (exit 3).
fn assert_names_holder(out: &Out, holder_pid: Option<u32>, lock_id: Option<&str>) {
    assert_eq!(out.code, Some(3), "an apply that meets a held lock exits 3\n{}", out.show());
    let e = &out.stderr;
    assert!(e.contains("the stack is locked"), "{}", out.show());
    assert!(e.contains(&format!("held by {WHO}@{}", hostname())), "the holder's user and host\n{}", out.show());
    if let Some(pid) = holder_pid {
        assert!(e.contains(&format!("(pid {pid})")), "the holder's pid {pid}\n{}", out.show());
    } else {
        assert!(e.contains("(pid "), "the holder's pid\n{}", out.show());
    }
    if let Some(id) = lock_id {
        assert!(e.contains(&format!("lock {id} ")), "the lock id {id}\n{}", out.show());
        assert!(e.contains(&format!("evalctl state unlock {id}")), "how to break it\n{}", out.show());
    }
    assert!(!submitted(out), "a refused apply submits nothing\n{}", out.show());
}

fn concurrent_applies(backend: Backend) {
    let s = Stack::new(&format!("concurrent-{}", tag(backend)), backend);
    let mut spec = Spec::pending_n(4);
    s.write(&spec);

    // Round 1: two applies started together, no waiting.
    let args = ["apply", s.config_arg(), "--auto-approve"];
    let mut a = s.spawn(&args);
    let mut b = s.spawn(&args);
    let pids = (a.pid(), b.pid());
    let (oa, ob) = (a.wait(Duration::from_secs(120)), b.wait(Duration::from_secs(120)));
    let outs = [(&oa, pids.0, pids.1), (&ob, pids.1, pids.0)];
    let winners: Vec<_> = outs.iter().filter(|(o, _, _)| submitted(o)).collect();
    assert_eq!(winners.len(), 1, "exactly one apply submits\n{}\n{}", oa.show(), ob.show());
    for (o, _, other) in outs {
        if submitted(o) {
            assert!(o.ok(), "the apply that submitted succeeds\n{}", o.show());
        } else if o.code == Some(3) {
            assert_names_holder(o, Some(other), None);
            eprintln!("[e2e] concurrent-{}: the second apply exited 3 naming the holder", tag(backend));
        } else {
            assert_no_changes(o, "the apply that did not get to submit");
            eprintln!("[e2e] concurrent-{}: the second apply ran after the first and found no changes", tag(backend));
        }
    }
    s.assert_chains(&spec.tasks, "after two applies at once");
    let calls = s.sbatch_calls();
    if backend == Backend::Local {
        assert_eq!(calls, 8, "sbatch calls of both applies together");
    }

    // Round 2, deterministic: an interactive apply holds the lock while it
    // waits for its `yes` (on a pty made by `script`); meanwhile one apply
    // fails at once naming it, another waits with --lock-timeout.
    spec.walltime = "00:00:30".into();
    s.write(&spec);
    let inner = format!("{BIN} apply {}", s.config_arg());
    let mut cmd = Command::new("script");
    cmd.args(["-qefc", &inner, "/dev/null"]);
    for (k, v) in s.command(&[]).get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.current_dir(&s.dir);
    let mut holder = Proc::spawn(format!("script -c '{inner}'"), cmd, true);
    wait_for(
        "the interactive apply to ask for confirmation",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            if !holder.running() {
                panic!("the interactive apply ended early:\n{}", holder.stdout_so_far());
            }
            holder.stdout_so_far().contains("Only 'yes' applies").then_some(())
        },
    );
    let info = s.lock_info().unwrap_or_else(|| panic!("no lock while an apply waits: {}", s.lock_dir().display()));
    let lock_id = info["id"].as_str().expect("lock id").to_owned();
    let holder_pid = u32::try_from(info["pid"].as_u64().expect("lock pid")).expect("pid");
    assert_eq!(info["who"], WHO, "the lock names the user: {info}");
    assert_eq!(info["host"].as_str(), Some(hostname().as_str()), "the lock names the host: {info}");
    let cmdline = std::fs::read(format!("/proc/{holder_pid}/cmdline")).unwrap_or_default();
    assert!(
        String::from_utf8_lossy(&cmdline).contains("evalctl"),
        "the lock's pid {holder_pid} is the waiting evalctl: {info}"
    );

    let refused = s.run(&["apply", s.config_arg(), "--auto-approve"]);
    assert_names_holder(&refused, Some(holder_pid), Some(&lock_id));
    let short_wait = s.run(&["apply", s.config_arg(), "--auto-approve", "--lock-timeout", "3"]);
    assert_names_holder(&short_wait, Some(holder_pid), Some(&lock_id));

    let mut waiter = s.spawn(&["apply", s.config_arg(), "--auto-approve", "--lock-timeout", "120"]);
    std::thread::sleep(Duration::from_secs(3));
    assert!(waiter.running(), "an apply with --lock-timeout waits for the lock");
    assert_eq!(s.sbatch_calls(), calls, "nobody submitted while the lock was held");
    holder.write_stdin("yes\n");
    let held = holder.wait(Duration::from_secs(120));
    assert!(held.ok() && submitted(&held), "the interactive apply, once approved\n{}", held.show());
    let waited = waiter.wait(Duration::from_secs(120));
    assert_no_changes(&waited, "the apply that waited for the lock");
    assert!(!s.lock_dir().exists(), "the lock is released at the end");
    s.assert_chains(&spec.tasks, "after the interactive apply and the waiting one");
    if backend == Backend::Local {
        assert_eq!(s.sbatch_calls(), calls + 8, "only the lock holder submitted");
    }
}

#[test]
fn concurrent_applies_ssh() {
    concurrent_applies(Backend::Ssh);
}

#[test]
fn concurrent_applies_local() {
    concurrent_applies(Backend::Local);
}

/// The moment between another apply's `mkdir` of the lock and its writing of
/// the lock's `info`: the lock is held all the same, so an apply must exit 3,
/// or wait with --lock-timeout and go on once the lock is released.
#[test]
fn lock_being_taken_is_respected_local() {
    let s = Stack::new("lockwindow-local", Backend::Local);
    let spec = Spec::pending(&["gsm8k", "hellaswag"]);
    s.write(&spec);
    std::fs::create_dir_all(s.lock_dir()).expect("create the lock dir");

    let out = s.apply();
    assert_eq!(out.code, Some(3), "a lock whose holder is still writing its info is held: exit 3\n{}", out.show());
    assert!(out.stderr.contains("locked") && !submitted(&out), "{}", out.show());

    let mut waiter = s.spawn(&["apply", s.config_arg(), "--auto-approve", "--lock-timeout", "60"]);
    std::thread::sleep(Duration::from_secs(3));
    if !waiter.running() {
        let out = waiter.wait(Duration::from_secs(5));
        panic!("an apply with --lock-timeout must wait for a lock being taken, not give up\n{}", out.show());
    }
    assert_eq!(s.sbatch_calls(), 0, "nothing submitted while the lock is held");
    std::fs::remove_dir_all(s.lock_dir()).expect("release the lock");
    let out = waiter.wait(Duration::from_secs(120));
    assert!(out.ok() && submitted(&out), "once the lock is released the waiting apply goes on\n{}", out.show());
    s.assert_chains(&spec.tasks, "after waiting for the lock");
}

// ------------------------------------------------------------------ 5. stale saved plans

fn assert_stale(s: &Stack, plan_file: &Path, why: &str) {
    let before = ids(&s.jobs());
    let calls = s.sbatch_calls();
    let out = s.run(&["apply", plan_file.to_str().expect("utf-8")]);
    assert_eq!(out.code, Some(4), "a stale saved plan ({why}) exits 4\n{}", out.show());
    assert!(out.stderr.contains("stale") && out.stderr.contains(why), "{}", out.show());
    assert!(!submitted(&out), "{}", out.show());
    assert_eq!(ids(&s.jobs()), before, "a stale plan must not submit or cancel anything");
    if s.backend == Backend::Local {
        assert_eq!(s.sbatch_calls(), calls, "a stale plan must not call sbatch");
    }
    assert!(!s.lock_dir().exists(), "a refused plan must release the lock");
}

fn stale_saved_plan(backend: Backend) {
    let s = Stack::new(&format!("stale-{}", tag(backend)), backend);
    let mut spec = Spec::pending(&["gsm8k", "hellaswag"]);
    s.write(&spec);
    s.apply_ok();
    let jobs = s.assert_chains(&spec.tasks, "after the first apply");

    // A plan saved, then a job of the stack cancelled behind its back.
    spec.tasks.push("arc_easy".into());
    s.write(&spec);
    let p1 = s.dir.join("p1.json");
    let out = s.plan(&["--out", p1.to_str().expect("utf-8")]);
    assert!(out.ok() && out.stdout.contains("Plan: 1 to create"), "{}", out.show());
    let hellaswag: Vec<String> = jobs.iter().filter(|j| j.unit == "hellaswag").map(|j| j.id.to_string()).collect();
    let cancel = sh("scancel", &hellaswag.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(cancel.status.success(), "scancel: {}", String::from_utf8_lossy(&cancel.stderr));
    wait_for("hellaswag's jobs to be cancelled", Duration::from_secs(30), Duration::from_millis(100), || {
        s.live().iter().all(|j| j.unit != "hellaswag").then_some(())
    });
    assert_stale(&s, &p1, "the cluster changed");

    // A plan saved, then the config edited.
    let p2 = s.dir.join("p2.json");
    assert!(s.plan(&["--out", p2.to_str().expect("utf-8")]).ok());
    let mut edited = spec.clone();
    edited.walltime = "00:00:30".into();
    s.write(&edited);
    assert_stale(&s, &p2, "the config changed");
    s.write(&spec);

    // A fresh plan applies (the control case).
    let p3 = s.dir.join("p3.json");
    let out = s.plan(&["--out", p3.to_str().expect("utf-8")]);
    assert!(out.ok() && out.stdout.contains("to create"), "{}", out.show());
    let out = s.run(&["apply", p3.to_str().expect("utf-8")]);
    assert!(out.ok() && submitted(&out), "a fresh saved plan applies\n{}", out.show());
    s.assert_chains(&spec.tasks, "after applying a fresh saved plan");

    // A plan saved, then another apply in between.
    let p4 = s.dir.join("p4.json");
    assert!(s.plan(&["--out", p4.to_str().expect("utf-8")]).ok());
    let out = s.run(&["apply", s.config_arg(), "--auto-approve", "--replace", "gsm8k"]);
    assert!(out.ok() && submitted(&out), "the apply in between\n{}", out.show());
    assert_stale(&s, &p4, "the cluster changed");
    s.assert_chains(&spec.tasks, "at the end");
}

#[test]
fn stale_saved_plan_is_refused_ssh() {
    stale_saved_plan(Backend::Ssh);
}

#[test]
fn stale_saved_plan_is_refused_local() {
    stale_saved_plan(Backend::Local);
}

// ------------------------------------------------------------------ 6. canary secret

/// Every regular file under `root` (symlinks not followed).
fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                todo.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

const ENV_MARKER: &str = "E2E-HOST-SECRET-IN-JOB-ENV";

fn secret_canary(backend: Backend) {
    let s = Stack::new(&format!("canary-{}", tag(backend)), backend);
    let canary = s.token.clone();
    let tasks = strings(&["gsm8k", "hellaswag"]);
    let spec = Spec {
        tasks: tasks.clone(),
        walltime: "00:01:00".into(),
        begin: false,
        // Reports (without the value) if the host variable itself reached the job.
        pre_cmd: format!("printenv E2E_TOKEN >/dev/null && echo {ENV_MARKER}; sleep 2"),
    };
    s.write(&spec);

    let mut outputs = vec![];
    for format in ["text", "markdown", "json"] {
        let out = s.plan(&["--format", format]);
        assert!(out.ok(), "{}", out.show());
        outputs.push(out);
    }
    let plan_file = s.dir.join("plan.json");
    outputs.push(s.plan(&["--out", plan_file.to_str().expect("utf-8")]));
    let applied = s.run(&["apply", plan_file.to_str().expect("utf-8")]);
    assert!(applied.ok() && submitted(&applied), "{}", applied.show());
    let submitted = s.jobs();
    assert_eq!(submitted.len(), 4, "four jobs:{}", show_jobs(&submitted));
    outputs.push(applied);
    for out in &outputs {
        assert!(!out.both().contains(&canary), "the secret value leaked into the output of `{}`", out.what);
    }

    // What slurmctld keeps of each job (script and environment), while it keeps it.
    let conf = String::from_utf8_lossy(&sh("scontrol", &["show", "config"]).stdout).into_owned();
    let spool = conf
        .lines()
        .find_map(|l| l.trim().strip_prefix("StateSaveLocation").map(|v| v.trim().trim_start_matches('=').trim()))
        .map(PathBuf::from);
    let mut spool_leaks = vec![];
    if let Some(spool) = &spool {
        for j in &submitted {
            let dir = spool.join(format!("hash.{}", j.id % 10)).join(format!("job.{}", j.id));
            for f in files_under(&dir) {
                if contains(&std::fs::read(&f).unwrap_or_default(), &canary) {
                    spool_leaks.push(f);
                }
            }
        }
    }

    // Let the jobs run: each first link fails after its pre_cmd (no harness), each resume link stops.
    let mut done = 0;
    wait_for("the stack's jobs to end", Duration::from_secs(300), Duration::from_millis(100), || {
        let live = s.live();
        done = s.jobs().len();
        live.is_empty().then_some(())
    });
    assert!(done >= 4, "the jobs ran");
    for t in &tasks {
        let status = s.stack_dir().join(t).join("status");
        wait_for("the status files", Duration::from_secs(30), Duration::from_millis(100), || {
            status.is_file().then_some(())
        });
        let logs = files_under(&s.stack_dir().join(t).join("logs"));
        assert!(logs.len() >= 2, "{t}: the jobs wrote their logs: {logs:?}");
    }
    // Plans of the stack now (failed units to retry, diffs from the recorded scripts).
    for format in ["text", "markdown", "json"] {
        let out = s.plan(&["--format", format]);
        assert!(out.ok(), "{}", out.show());
        assert!(!out.both().contains(&canary), "the secret value leaked into the output of `{}`", out.what);
    }
    for args in [vec!["state", "show", s.config_arg()], vec!["state", "show", s.config_arg(), "--offline"]] {
        let out = s.run(&args);
        assert!(out.ok(), "{}", out.show());
        assert!(!out.both().contains(&canary), "the secret value leaked into `{}`", out.what);
    }

    // On disk: the stack dir (scripts, logs, artifacts, state), the config dir
    // (local state copy, saved plan): only the secrets files have it.
    let mut leaks = vec![];
    let mut marker = vec![];
    for f in files_under(&s.stack_dir()).into_iter().chain(files_under(&s.dir)) {
        let bytes = std::fs::read(&f).unwrap_or_default();
        if contains(&bytes, &canary) || f.to_string_lossy().contains(&canary) {
            leaks.push(f.clone());
        }
        if contains(&bytes, ENV_MARKER) && f.parent().is_some_and(|d| d.ends_with("logs")) {
            marker.push(f);
        }
    }
    let expected: Vec<PathBuf> = tasks.iter().map(|t| s.stack_dir().join(t).join("secrets/evaluation.env")).collect();
    assert!(s.local_state_copy().is_file() && s.state_file().is_file() && plan_file.is_file(), "files were checked");
    for f in &expected {
        let mode = std::fs::metadata(f).unwrap_or_else(|e| panic!("{}: {e}", f.display())).permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{} must be mode 0600", f.display());
        let dir_mode = std::fs::metadata(f.parent().expect("dir")).expect("secrets dir").permissions().mode();
        assert_eq!(dir_mode & 0o077, 0, "{} must not be open to others", f.parent().expect("dir").display());
        let text = std::fs::read_to_string(f).expect("read secrets");
        assert!(text.contains(&canary), "{} holds the secret value", f.display());
    }
    let unexpected: Vec<&PathBuf> = leaks.iter().filter(|f| !expected.contains(f)).collect();
    assert!(unexpected.is_empty(), "the secret value leaked into {unexpected:?}");
    assert_eq!(leaks.len(), expected.len(), "every secrets file has the value: {leaks:?}");

    // Accounting keeps the batch scripts.
    let job_ids: Vec<String> = submitted.iter().map(|j| j.id.to_string()).collect();
    let acct = sh("sacct", &["-B", "-j", &job_ids.join(",")]);
    assert!(!contains(&acct.stdout, &canary), "the secret value is in the batch scripts accounting keeps");

    let mut problems = vec![];
    if !spool_leaks.is_empty() {
        problems.push(format!(
            "the secret value reached Slurm's stored copy of the jobs' submission environment: {spool_leaks:?}"
        ));
    }
    if !marker.is_empty() {
        problems.push(format!(
            "the host variable E2E_TOKEN itself (not just TOKEN from the secrets file) was in the running jobs' \
             environment: {ENV_MARKER} printed in {marker:?}"
        ));
    }
    assert!(
        problems.is_empty(),
        "{}\n(evalctl runs sbatch with its own environment, secrets included, and sbatch exports it to the job)",
        problems.join("\n")
    );
}

#[test]
fn secret_canary_ssh() {
    secret_canary(Backend::Ssh);
}

#[test]
fn secret_canary_local() {
    secret_canary(Backend::Local);
}

// ------------------------------------------------------------------ 7. connection lost mid-apply

/// The lines of an evalctl error report (without the plan printed before it).
fn error_lines(out: &Out) -> String {
    out.stderr.lines().filter(|l| l.starts_with("evalctl:") || l.starts_with("  = ")).collect::<Vec<_>>().join(" | ")
}

fn assert_clear_error(out: &Out) {
    assert!(!out.ok() && out.code.is_some(), "apply must exit non-zero on its own\n{}", out.show());
    assert!(
        !out.stderr.contains("panicked")
            && !out.stderr.contains("stack backtrace")
            && !out.stderr.contains("RUST_BACKTRACE"),
        "no panic\n{}",
        out.show()
    );
    assert!(out.stderr.contains("evalctl: error:"), "an evalctl error message\n{}", out.show());
    assert!(out.stderr.contains("connection") || out.stderr.contains("connect"), "it names the cause\n{}", out.show());
}

/// After a broken apply: every job of the stack held or gone, none ever released.
fn assert_nothing_released(jobs: &[Job], n: usize) {
    assert!(
        (1..2 * n).contains(&jobs.len()),
        "test timing: the connection must break after 1 and before all {} submissions:{}",
        2 * n,
        show_jobs(jobs)
    );
    let bad: Vec<&Job> = jobs.iter().filter(|j| !(j.is_held() && (j.is_live() || j.state == "CANCELLED"))).collect();
    assert!(bad.is_empty(), "every job of a broken apply must be held or gone:{}", show_jobs(jobs));
}

#[test]
fn ssh_session_killed_mid_apply() {
    let s = Stack::with_net("sshdkill", Backend::Ssh, Net::Bind(7));
    let spec = Spec::pending_n(INTERRUPTED_TASKS);
    s.write(&spec);
    let bind = s.bind.clone().expect("bind address");
    let sshd = cluster().sshd();
    let mut killed = BTreeSet::new();
    let (mut p, jobs) = interrupt_apply(&s, |_| {
        // The sshd processes serving this test's connection (and only it).
        killed = socket_pids("sshd", |local, peer| local == sshd && peer.starts_with(&format!("{bind}:")));
        for pid in &killed {
            signal(*pid, "KILL");
        }
    });
    assert!(!killed.is_empty(), "no sshd session served {bind}");
    let out = p.wait(Duration::from_secs(120));
    assert_clear_error(&out);
    assert!(out.stderr.contains("lost the connection"), "{}", out.show());
    eprintln!("[e2e] sshdkill: {} jobs submitted; evalctl said: {}", jobs.len(), error_lines(&out));
    assert_nothing_released(&jobs, spec.tasks.len());
    let after = s.jobs();
    assert!(after.iter().all(|j| !j.is_live() || j.is_held()), "still nothing released:{}", show_jobs(&after));
    assert!(!s.lock_dir().exists(), "the failed apply releases its lock (sshd still takes new connections)");

    let out = s.apply();
    assert!(out.ok(), "the next apply completes the stack\n{}", out.show());
    s.assert_chains(&spec.tasks, "after the apply that followed the broken one");
    assert_no_changes(&s.apply(), "apply after the recovery");
}

#[test]
fn ssh_network_cut_mid_apply() {
    let s = Stack::with_net("netcut", Backend::Ssh, Net::Relay(8));
    let spec = Spec::pending_n(INTERRUPTED_TASKS);
    s.write(&spec);
    let relay = s.relay.as_ref().expect("relay");
    let (mut p, jobs) = interrupt_apply(&s, |_| relay.cut());
    let out = p.wait(Duration::from_secs(120));
    assert_clear_error(&out);
    eprintln!("[e2e] netcut: {} jobs submitted; evalctl said: {}", jobs.len(), error_lines(&out));
    assert_nothing_released(&jobs, spec.tasks.len());
    assert!(s.lock_dir().exists(), "evalctl could not reach the cluster to release its lock");

    // "sshd" is back.
    relay.restore();
    let out = s.apply();
    assert!(out.ok(), "the next apply completes the stack\n{}", out.show());
    assert!(out.stderr.contains("breaking the lock of a process that is gone"), "{}", out.show());
    s.assert_chains(&spec.tasks, "after the apply that followed the broken one");
    assert!(!s.lock_dir().exists(), "the lock is released");
    assert_no_changes(&s.apply(), "apply after the recovery");
}
