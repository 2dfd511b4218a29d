//! What the tests on the real test cluster of `tests/cluster` share: its
//! connection info (`$EVALCTL_CLUSTER_STATE/cluster.env`), the check that it
//! is up, and child processes whose output is collected while they run.
//!
//! Each test binary uses part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

// ------------------------------------------------------------------ cluster

/// The test cluster's connection info (`cluster.env`).
pub struct ClusterInfo {
    vars: BTreeMap<String, String>,
}

impl ClusterInfo {
    pub fn get(&self, key: &str) -> &str {
        self.vars.get(key).map(String::as_str).unwrap_or_else(|| panic!("cluster.env has no {key}"))
    }
    pub fn shared(&self) -> PathBuf {
        PathBuf::from(self.get("EVALCTL_CLUSTER_SHARED"))
    }
    pub fn ssh_config(&self) -> PathBuf {
        PathBuf::from(self.get("EVALCTL_CLUSTER_SSH_CONFIG"))
    }
    pub fn alias(&self) -> &str {
        self.get("EVALCTL_CLUSTER_SSH_ALIAS")
    }
    /// `host:port` of the cluster's sshd.
    pub fn sshd(&self) -> String {
        format!("{}:{}", self.get("EVALCTL_CLUSTER_HOST"), self.get("EVALCTL_CLUSTER_PORT"))
    }
}

pub fn state_dir() -> PathBuf {
    std::env::var_os("EVALCTL_CLUSTER_STATE")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/evalctl-cluster"))
}

/// Reads `cluster.env` (which must name `required`, besides the sshd's host
/// and port) and checks that the sshd answers, slurmctld is up, the ssh key
/// (when named) is readable and the shared dir (when named) exists; then
/// runs the test binary's own `extra` checks.
fn probe(required: &[&str], extra: fn(&ClusterInfo) -> Result<(), String>) -> Result<ClusterInfo, String> {
    let env_file = state_dir().join("cluster.env");
    let text = std::fs::read_to_string(&env_file).map_err(|e| format!("cannot read {}: {e}", env_file.display()))?;
    let vars: BTreeMap<String, String> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    for key in ["EVALCTL_CLUSTER_HOST", "EVALCTL_CLUSTER_PORT"].iter().chain(required) {
        if !vars.contains_key(*key) {
            return Err(format!("{} has no {key}", env_file.display()));
        }
    }
    let info = ClusterInfo { vars };
    let addr = info.sshd();
    let socket = addr
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| format!("bad sshd address {addr} in {}", env_file.display()))?;
    TcpStream::connect_timeout(&socket, Duration::from_secs(3))
        .map_err(|e| format!("the cluster's sshd does not answer on {addr}: {e}"))?;
    let ping = Command::new("scontrol").arg("ping").output().map_err(|e| format!("cannot run scontrol: {e}"))?;
    let said = String::from_utf8_lossy(&ping.stdout).into_owned();
    if !ping.status.success() || !said.contains("UP") {
        return Err(format!("slurmctld is not up: `scontrol ping` said {}", said.trim()));
    }
    if let Some(identity) = info.vars.get("EVALCTL_CLUSTER_IDENTITY") {
        std::fs::File::open(identity)
            .map_err(|e| format!("cannot read the cluster's ssh key {identity} ({e}): run the tests as root"))?;
    }
    if info.vars.contains_key("EVALCTL_CLUSTER_SHARED") && !info.shared().is_dir() {
        return Err(format!("the shared dir {} does not exist", info.shared().display()));
    }
    extra(&info)?;
    Ok(info)
}

/// What a test needs to reach the cluster over ssh and share its disk.
pub const SSH_VARS: &[&str] = &[
    "EVALCTL_CLUSTER_USER",
    "EVALCTL_CLUSTER_IDENTITY",
    "EVALCTL_CLUSTER_SSH_CONFIG",
    "EVALCTL_CLUSTER_SSH_ALIAS",
    "EVALCTL_CLUSTER_SHARED",
];

/// The running test cluster, probed once per test binary (see [`probe`]);
/// fails the test with what to do when it is not up.
pub fn cluster_checked(required: &[&str], extra: fn(&ClusterInfo) -> Result<(), String>) -> &'static ClusterInfo {
    static INFO: OnceLock<Result<ClusterInfo, String>> = OnceLock::new();
    match INFO.get_or_init(|| probe(required, extra)) {
        Ok(info) => info,
        Err(why) => panic!(
            "the Slurm test cluster is not usable: {why}\n\
             start it with `sudo bash tests/cluster/up.sh` (state dir {}), then run the tests again as root",
            state_dir().display()
        ),
    }
}

// ------------------------------------------------------------------ processes

/// What a command printed and how it ended (`code` None: killed after its timeout).
pub struct Out {
    pub what: String,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// The last `n` bytes of `s` (or a little less, on a character boundary).
pub fn tail(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut at = s.len() - n;
    while !s.is_char_boundary(at) {
        at += 1;
    }
    &s[at..]
}

impl Out {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
    pub fn both(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
    /// For assertion messages (long outputs are cut to their ends).
    pub fn show(&self) -> String {
        format!(
            "`{}` exited {:?}\n----- stdout (end)\n{}\n----- stderr (end)\n{}\n-----",
            self.what,
            self.code,
            tail(&self.stdout, 4000),
            tail(&self.stderr, 4000)
        )
    }
}

fn collect(mut from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => into.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(&buf[..n]),
            }
        }
    })
}

fn text(b: &Arc<Mutex<Vec<u8>>>) -> String {
    String::from_utf8_lossy(&b.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}

/// A child process whose output is collected while it runs; killed if still
/// running when dropped.
pub struct Proc {
    what: String,
    child: Child,
    stdin: Option<ChildStdin>,
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
}

impl Proc {
    pub fn spawn(what: String, mut cmd: Command, keep_stdin: bool) -> Proc {
        cmd.stdin(if keep_stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start `{what}`: {e}"));
        let out = Arc::new(Mutex::new(vec![]));
        let err = Arc::new(Mutex::new(vec![]));
        let readers = vec![
            collect(child.stdout.take().expect("stdout"), out.clone()),
            collect(child.stderr.take().expect("stderr"), err.clone()),
        ];
        let stdin = child.stdin.take();
        Proc { what, child, stdin, out, err, readers }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn stdout_so_far(&self) -> String {
        text(&self.out)
    }

    pub fn write_stdin(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin was not kept");
        stdin.write_all(text.as_bytes()).and_then(|()| stdin.flush()).expect("write to stdin");
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
    }

    /// Waits for the end; kills the process after `timeout` (then `code` is None).
    pub fn finish(&mut self, timeout: Duration) -> Out {
        self.end(timeout).0
    }

    /// Waits for the end; a process still running after `timeout` is killed
    /// and fails the test.
    pub fn wait(&mut self, timeout: Duration) -> Out {
        let (out, timed_out) = self.end(timeout);
        assert!(!timed_out, "`{}` did not end within {timeout:?}; output so far:\n{}", out.what, out.stdout);
        out
    }

    /// The output once the process ended, and whether it had to be killed
    /// after `timeout`.
    fn end(&mut self, timeout: Duration) -> (Out, bool) {
        let start = Instant::now();
        let (code, timed_out) = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break (status.code(), false),
                Ok(None) if start.elapsed() < timeout => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    self.kill();
                    let _ = self.child.wait();
                    break (None, true);
                }
            }
        };
        drop(self.stdin.take());
        for r in std::mem::take(&mut self.readers) {
            let _ = r.join();
        }
        (Out { what: self.what.clone(), code, stdout: text(&self.out), stderr: text(&self.err) }, timed_out)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `f` every `every` until it gives a value; fails the test after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(every);
    }
}

// ------------------------------------------------------------------ stand-ins

/// Stand-ins for the Slurm commands a remote program calls, as bash
/// bodies: `sbatch` hands out ids from 101 (and logs its arguments to
/// `$EVALCTL_FAKE/sbatch.calls`), `scontrol` and `scancel` log theirs to
/// `$EVALCTL_FAKE/calls`, `squeue` shows nothing.
pub const FAKE_SLURM: &[(&str, &str)] = &[
    (
        "sbatch",
        r#"exec 9>>"$EVALCTL_FAKE/lock"; flock 9; n=$(( $(cat "$EVALCTL_FAKE/next" 2>/dev/null || echo 100) + 1 )); echo "$n" >"$EVALCTL_FAKE/next"; echo "sbatch $*" >>"$EVALCTL_FAKE/sbatch.calls"; echo "$n;cluster""#,
    ),
    ("scontrol", r#"echo "scontrol $*" >>"$EVALCTL_FAKE/calls""#),
    ("scancel", r#"echo "scancel $*" >>"$EVALCTL_FAKE/calls""#),
    ("squeue", ":"),
];

/// Runs `program` with bash, the commands `fakes` (name, bash body) first
/// on its PATH as executables in `fake/bin` (the apply program's second
/// stage is a new bash: stand-ins must be commands, not functions).
pub fn run_with_fakes(program: &str, fake: &std::path::Path, fakes: &[(&str, &str)]) -> std::process::Output {
    use std::os::unix::fs::PermissionsExt;
    let bin = fake.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for (name, body) in fakes {
        let file = bin.join(name);
        std::fs::write(&file, format!("#!/bin/bash\n{body}\n")).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    // From a file: a program of thousands of jobs is past the argument limit.
    let file = fake.join("program.sh");
    std::fs::write(&file, program).unwrap();
    Command::new("bash").arg(&file).env("EVALCTL_FAKE", fake).env("PATH", path).output().unwrap()
}
