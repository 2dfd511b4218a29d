//! Both cluster backends against the real test cluster of `tests/cluster`
//! (Slurm and sshd on this machine): the local one runs Slurm commands as
//! the current user right here, the SSH one logs in as the cluster's test
//! user through its ssh config.
//!
//! The cluster must be up (`sudo bash tests/cluster/up.sh`) and the tests
//! must run as root (the cluster's ssh key is root's); otherwise every test
//! fails saying so. Connection info comes from
//! `$EVALCTL_CLUSTER_STATE/cluster.env` (default `/tmp/evalctl-cluster`).
//!
//! Run with `--nocapture` to see the measured timings.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use evalctl::cluster::local::Local;
use evalctl::cluster::ssh::{self, Ssh};
use evalctl::cluster::{self, Cluster, ClusterError, Output, Target};

mod common;
use common::ClusterInfo;

/// The running test cluster; fails the test when it is not up.
fn cluster_info() -> &'static ClusterInfo {
    common::cluster_checked(&["EVALCTL_CLUSTER_SSH_CONFIG", "EVALCTL_CLUSTER_SSH_ALIAS"], |_| Ok(()))
}

fn ssh_target() -> Target {
    let info = cluster_info();
    Target { hostname: Some(info.alias().to_string()), username: None, ssh_config: Some(info.ssh_config()) }
}

fn local() -> Local {
    cluster_info();
    Local::new(Target::local())
}

fn ssh() -> Ssh {
    let target = ssh_target();
    // `login`, not `connect`: a developer's EVALCTL_SSH_CONTROL_PATH must not change what is tested.
    Ssh::login(&target, target.ssh_config.as_deref()).unwrap_or_else(|e| panic!("ssh login failed: {e}"))
}

/// Runs a check against both backends.
fn for_both(check: impl Fn(&str, &dyn Cluster)) {
    check("local", &local());
    check("ssh", &ssh());
}

fn run(cluster: &dyn Cluster, program: &str) -> Output {
    cluster.run(program.as_bytes()).unwrap_or_else(|e| panic!("run failed: {e}\nprogram:\n{program}"))
}

/// A directory of its own under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("evalctl-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The cluster's ssh config with `extra` options added for its alias
/// (ssh takes the first value it reads for an option).
fn config_with(dir: &Path, extra: &str) -> PathBuf {
    let original = std::fs::read_to_string(cluster_info().ssh_config()).expect("read cluster ssh config");
    let host_line = format!("Host {}", cluster_info().alias());
    let text = original.replacen(&host_line, &format!("{host_line}\n{extra}"), 1);
    assert_ne!(text, original, "no `{host_line}` in the cluster's ssh config");
    let path = dir.join("config");
    std::fs::write(&path, text).expect("write ssh config");
    path
}

fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{name}-{}-{nanos}", std::process::id())
}

#[test]
fn echo_exit_status_and_stderr() {
    for_both(|name, c| {
        let out = run(c, "echo hello; echo \"locale=$LC_ALL\"; echo oops >&2; exit 3");
        assert_eq!(out.status, 3, "{name}");
        assert_eq!(out.stdout_text(), "hello\nlocale=C\n", "{name}");
        assert_eq!(out.stderr_text(), "oops\n", "{name}");

        let out = run(c, "true");
        assert!(out.success(), "{name}");
        assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{name}: {out:?}");

        // 127 and 255 are statuses like any other, not errors.
        let out = run(c, "no-such-command-evalctl");
        assert_eq!(out.status, 127, "{name}: {}", out.stderr_text());
        let out = run(c, "exit 255");
        assert_eq!(out.status, 255, "{name}");

        // Home directory as working directory, as an ssh login has.
        let out = run(c, "pwd; echo ~");
        let lines: Vec<&str> = std::str::from_utf8(&out.stdout).expect("utf-8").lines().collect();
        assert_eq!(lines.len(), 2, "{name}: {lines:?}");
        assert_eq!(lines[0], lines[1], "{name}");
    });
}

/// Deterministic bytes that do not compress.
fn noise(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn base64_lines(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len() * 4 / 3 + data.len() / 57 + 4);
    for line in data.chunks(57) {
        for chunk in line.chunks(3) {
            let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out.push('\n');
    }
    out
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn five_megabyte_program_round_trips_intact() {
    let payload = noise(4_000_000);
    let program = format!(
        "set -e\nf=$(mktemp)\nbase64 -d > \"$f\" <<'EOF'\n{}EOF\nsha256sum < \"$f\" | cut -d' ' -f1 >&2\ncat \"$f\"\nrm -f \"$f\"\n",
        base64_lines(&payload)
    );
    assert!(program.len() > 5_000_000, "program is {} bytes", program.len());
    let expected = sha256_hex(&payload);
    for_both(|name, c| {
        let start = Instant::now();
        let out = run(c, &program);
        let elapsed = start.elapsed();
        assert_eq!(out.status, 0, "{name}: {}", out.stderr_text());
        assert_eq!(out.stderr_text().trim(), expected, "{name}: remote sha256 of the payload");
        assert!(out.stdout == payload, "{name}: {} bytes came back, not the payload", out.stdout.len());
        eprintln!(
            "{name}: {:.1} MB program in, {:.1} MB out in {:.2} s",
            program.len() as f64 / 1e6,
            out.stdout.len() as f64 / 1e6,
            elapsed.as_secs_f64()
        );
    });
}

/// Cancels a job when dropped, so a failing test leaves no held job behind.
struct Job<'a> {
    cluster: &'a dyn Cluster,
    id: String,
}

impl Drop for Job<'_> {
    fn drop(&mut self) {
        let _ = self.cluster.run(format!("scancel {}", self.id).as_bytes());
    }
}

#[test]
fn held_job_is_pending_until_cancelled() {
    for_both(|name, c| {
        let out = run(c, "sbatch --parsable --hold --job-name=evalctl-backend-test --output=/dev/null --wrap=true");
        assert_eq!(out.status, 0, "{name}: sbatch: {}", out.stderr_text());
        let id = out.stdout_text().trim().split(';').next().unwrap_or_default().to_string();
        assert!(!id.is_empty() && id.chars().all(|ch| ch.is_ascii_digit()), "{name}: job id {id:?}");
        let job = Job { cluster: c, id: id.clone() };

        let out = run(c, &format!("squeue -h -j {id} -o %T"));
        assert_eq!(out.stdout_text().trim(), "PENDING", "{name}: {}", out.stderr_text());

        let out = run(c, &format!("scancel {id} && squeue -h -t all -j {id} -o %T"));
        assert_eq!(out.status, 0, "{name}: scancel: {}", out.stderr_text());
        assert_eq!(out.stdout_text().trim(), "CANCELLED", "{name}");
        drop(job);
    });
}

#[test]
fn round_trips_count_every_run() {
    for_both(|name, c| {
        assert_eq!(c.round_trips(), 0, "{name}");
        run(c, "true");
        run(c, "exit 1");
        run(c, "echo x >&2");
        assert_eq!(c.round_trips(), 3, "{name}");
    });
}

#[test]
fn connect_picks_the_backend() {
    let c = cluster::connect(&Target::local()).expect("local backend");
    assert!(c.target().is_local());
    assert_eq!(run(c.as_ref(), "echo $LC_ALL").stdout_text(), "C\n");

    let target = ssh_target();
    let c = cluster::connect(&target).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.target(), &target);
    assert_eq!(c.target().describe(), format!("ssh {}", cluster_info().alias()));
    assert_eq!(run(c.as_ref(), "id -un").stdout_text().trim(), cluster_info().get("EVALCTL_CLUSTER_USER"));
}

#[test]
fn wrong_port_is_a_connect_error_naming_the_host() {
    let dir = TempDir::new("wrong-port");
    // Port 1 (tcpmux): nothing listens there.
    let config = config_with(&dir.0, "  Port 1");
    let target = Target { ssh_config: Some(config), ..ssh_target() };
    let start = Instant::now();
    let err = match cluster::connect(&target) {
        Ok(_) => panic!("connected through port 1"),
        Err(e) => e,
    };
    assert!(start.elapsed() < Duration::from_secs(10), "took {:?}", start.elapsed());
    let message = err.to_string();
    assert!(matches!(err, ClusterError::Connect { .. }), "{err:?}");
    let user = cluster_info().get("EVALCTL_CLUSTER_USER");
    let host = cluster_info().get("EVALCTL_CLUSTER_HOST");
    assert!(message.starts_with("cannot connect to "), "{message}");
    assert!(message.contains(&format!("{user}@{host}:1")), "{message}");
    assert!(message.contains(cluster_info().alias()), "{message}");
    assert!(message.contains("Connection refused"), "{message}");
    eprintln!("ssh: {message}");

    // The ssh:// form carries the port itself.
    let target = Target { hostname: Some(format!("ssh://{user}@{host}:1")), ..ssh_target() };
    let message = cluster::connect(&target).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.starts_with(&format!("cannot connect to {user}@{host}:1: ")), "{message}");
}

#[test]
fn host_keys_are_checked_as_the_ssh_config_says() {
    let dir = TempDir::new("known-hosts");
    let known_hosts = dir.0.join("known_hosts");
    // Strict: an empty known_hosts refuses the host.
    let config = config_with(&dir.0, &format!("  UserKnownHostsFile {}", known_hosts.display()));
    let target = Target { ssh_config: Some(config), ..ssh_target() };
    let err = Ssh::login(&target, target.ssh_config.as_deref()).expect_err("unknown host key refused");
    assert!(matches!(err, ClusterError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains("Host key verification failed"), "{err}");
    eprintln!("ssh: {err}");

    // accept-new: the key is learnt, and then checked.
    let config = config_with(
        &dir.0,
        &format!("  UserKnownHostsFile {}\n  StrictHostKeyChecking accept-new", known_hosts.display()),
    );
    let target = Target { ssh_config: Some(config), ..ssh_target() };
    let c = Ssh::login(&target, target.ssh_config.as_deref()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run(&c, "echo ok").stdout_text(), "ok\n");
    let learnt = std::fs::read_to_string(&known_hosts).unwrap_or_default();
    assert!(learnt.contains("ssh-"), "known_hosts: {learnt:?}");
}

#[test]
fn ssh_session_is_opened_once_and_reused() {
    let start = Instant::now();
    let c = ssh();
    let connect = start.elapsed();
    let start = Instant::now();
    let mut parents = Vec::new();
    for _ in 0..20 {
        // The remote shell's parent is the sshd of the connection.
        parents.push(run(&c, "echo $PPID").stdout_text());
    }
    let elapsed = start.elapsed();
    eprintln!(
        "ssh: connect {:.0} ms, 20 sequential runs {:.0} ms ({:.1} ms each)",
        connect.as_secs_f64() * 1e3,
        elapsed.as_secs_f64() * 1e3,
        elapsed.as_secs_f64() * 1e3 / 20.0
    );
    assert!(elapsed < Duration::from_secs(2), "20 runs took {elapsed:?}");
    parents.dedup();
    assert_eq!(parents.len(), 1, "runs went through several connections: {parents:?}");
    assert_eq!(c.round_trips(), 20);
}

fn ps_ef() -> String {
    let out = Command::new("ps").arg("-ef").output().expect("run ps -ef");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// While a program holding `secret` runs on `cluster`, `ps -ef` (on this
/// machine, which is also the cluster) must not show it.
fn secret_stays_out_of_ps<C: Cluster + Sync>(name: &str, cluster: &C) {
    let secret = unique("evalctl-canary-secret");
    let sleep = format!("2.{:03}", std::process::id() % 1000);
    let program = format!("token='{secret}'\nsleep {sleep}\necho \"${{#token}}\"\n");
    let (out, listings) = std::thread::scope(|scope| {
        let running = scope.spawn(|| cluster.run(program.as_bytes()));
        let mut listings = Vec::new();
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(1800) && !running.is_finished() {
            listings.push(ps_ef());
            std::thread::sleep(Duration::from_millis(100));
        }
        (running.join().expect("run thread"), listings)
    });
    let out = out.unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(out.stdout_text(), format!("{}\n", secret.len()), "{name}");
    assert!(
        listings.iter().any(|ps| ps.contains(&format!("sleep {sleep}"))),
        "{name}: the program was never seen running"
    );
    assert!(listings.iter().any(|ps| ps.contains("eval \"$(cat)\"")), "{name}: the remote bash was never seen");
    for ps in &listings {
        assert!(!ps.contains(&secret), "{name}: secret visible in ps -ef:\n{ps}");
    }
}

#[test]
fn secrets_never_appear_in_ps() {
    secret_stays_out_of_ps("local", &local());
    secret_stays_out_of_ps("ssh", &ssh());
}

#[test]
fn broken_connection_is_lost_and_the_next_run_reconnects() {
    let c = ssh();
    assert_eq!(run(&c, "echo up").stdout_text(), "up\n");
    // Kill the sshd process serving this connection (ours, so allowed):
    // the connection drops in the middle of the run.
    let program = "p=$PPID\n\
        while [ \"$p\" -gt 1 ] && [ \"$(cat /proc/$p/comm)\" != sshd ]; do p=$(cut -d' ' -f4 /proc/$p/stat); done\n\
        echo partial\n\
        kill -9 \"$p\"\n\
        sleep 10\n";
    let start = Instant::now();
    let err = match c.run(program.as_bytes()) {
        Ok(out) => panic!("run survived its connection: {out:?}"),
        Err(e) => e,
    };
    assert!(start.elapsed() < Duration::from_secs(8), "noticed only after {:?}", start.elapsed());
    assert!(matches!(err, ClusterError::Lost { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.starts_with("lost the connection to "), "{message}");
    assert!(message.contains(cluster_info().alias()), "{message}");
    eprintln!("ssh: {message}");
    // A later run logs in again.
    assert_eq!(run(&c, "echo back").stdout_text(), "back\n");
    assert_eq!(c.round_trips(), 3);
}

/// A ControlMaster opened with plain ssh, as a user of an MFA cluster would.
struct UserMaster {
    socket: PathBuf,
    _dir: TempDir,
}

impl UserMaster {
    fn open() -> UserMaster {
        let dir = TempDir::new("master");
        let socket = dir.0.join("m.sock");
        let status = Command::new("ssh")
            .arg("-F")
            .arg(cluster_info().ssh_config())
            .args(["-f", "-N", "-o", "ControlMaster=yes", "-o"])
            .arg(format!("ControlPath={}", socket.display()))
            .arg(cluster_info().alias())
            .status()
            .expect("run ssh");
        assert!(status.success(), "could not open a control master");
        UserMaster { socket, _dir: dir }
    }

    fn alive(&self) -> bool {
        Command::new("ssh")
            .arg("-S")
            .arg(&self.socket)
            .args(["-O", "check", "none"])
            .stderr(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }
}

impl Drop for UserMaster {
    fn drop(&mut self) {
        let _ = Command::new("ssh")
            .arg("-S")
            .arg(&self.socket)
            .args(["-O", "exit", "none"])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

#[test]
fn attaches_to_a_control_master_the_user_opened() {
    let master = UserMaster::open();
    {
        // The target only names the cluster: everything goes through the socket.
        let c = Ssh::attach(&Target::ssh("mfa-login.invalid"), &master.socket).unwrap_or_else(|e| panic!("{e}"));
        assert!(c.is_attached());
        assert_eq!(run(&c, "id -un").stdout_text().trim(), cluster_info().get("EVALCTL_CLUSTER_USER"));
        assert_eq!(run(&c, "exit 4").status, 4);
    }
    assert!(master.alive(), "dropping the backend closed the user's master");

    // Through the environment variable, as users set it: `evalctl plan` of a
    // config naming a host that does not resolve works only through the socket.
    let dir = std::env::temp_dir().join(unique("evalctl-attach"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("attach.yaml");
    std::fs::write(
        &config,
        "execution: {hostname: mfa-login.invalid, account: research, partition: cpu, gres: null, output_dir: /tmp/evalctl-attach-test}\n\
         target: {api_endpoint: {url: 'http://127.0.0.1:9/v1/chat/completions'}}\n\
         evaluation: {tasks: [{name: gsm8k}]}\n",
    )
    .expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_evalctl"))
        .args(["plan", "--no-color"])
        .arg(&config)
        .env(ssh::CONTROL_PATH_ENV, &master.socket)
        .output()
        .expect("run evalctl plan");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("(ssh ") && stdout.contains("Plan: 1 to create"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(master.alive());

    // A socket nobody listens on.
    let missing = master.socket.with_file_name("gone.sock");
    let err = Ssh::attach(&ssh_target(), &missing).expect_err("attach to a missing socket fails");
    assert!(matches!(err, ClusterError::Connect { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(ssh::CONTROL_PATH_ENV) && message.contains("gone.sock"), "{message}");
    assert!(message.contains(cluster_info().alias()), "{message}");
    eprintln!("ssh: {message}");
}
