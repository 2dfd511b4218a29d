//! The SSH backend: programs reach a remote login node through the system's
//! OpenSSH client, so everything users already configured for `ssh` (the
//! `~/.ssh/config` aliases, ports, ProxyJump, keys, agents, known hosts)
//! works unchanged.
//!
//! One [`Ssh`] value owns one ControlMaster connection (through the `openssh`
//! crate, process-mux flavour), opened by [`Ssh::connect`] and reused by
//! every [`Cluster::run`]: a run costs one multiplexed channel, not a new
//! login. The master is closed when the value is dropped. The API is
//! synchronous; a single-threaded tokio runtime inside the value drives the
//! crate's async I/O.
//!
//! Decisions worth knowing:
//! * **Host keys**: the ssh config decides, as it does for a plain `ssh`
//!   with `BatchMode=yes`. evalctl reads the effective
//!   `StrictHostKeyChecking` with `ssh -G` and passes it on: unset (`ask`)
//!   or `yes` → strict (an unknown host is refused), `accept-new` → new
//!   hosts are added, `no` → anything is accepted. `UserKnownHostsFile`
//!   comes from the config too.
//! * **MFA / password logins**: evalctl never prompts. Open a master
//!   yourself (`ssh -f -N -o ControlMaster=yes -o ControlPath=SOCK HOST`)
//!   and set `EVALCTL_SSH_CONTROL_PATH=SOCK`: runs then go through that
//!   master, which evalctl never closes.
//! * **No leaked masters**: a master evalctl opens exits by itself after
//!   [`CONTROL_PERSIST_SECS`] without runs (so a killed evalctl leaves no
//!   `ssh` behind for long); a value idle for almost that long opens a fresh
//!   master before its next run.
//! * **Broken connections**: ssh's multiplexing reports a lost connection
//!   as exit status 255, like a program that exits 255. After a 255 the
//!   master is asked whether it is still alive: if not, the run fails with
//!   [`ClusterError::Lost`] (and the next run opens a new master); if so,
//!   255 is the program's status.
//! * Keep-alives and connect timeout: the config's values, or 30 s when it
//!   sets none, so a dead network fails a run instead of hanging it.
//! * The control socket lives in a fresh private directory under
//!   `$XDG_STATE_HOME` or `~/.local/state` (the `openssh` crate's default).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Cluster, ClusterError, Output, Target, exit_code};

/// The remote command: a login shell runs it, it reads the program on stdin.
pub const REMOTE_COMMAND: &str = "env LC_ALL=C bash -c 'eval \"$(cat)\"'";

/// Environment variable naming an ssh config file used when
/// [`Target::ssh_config`] is `None`.
pub const CONFIG_ENV: &str = "EVALCTL_SSH_CONFIG";

/// Environment variable naming the control socket of a master the user
/// opened; when set, [`Ssh::connect`] attaches to it instead of logging in.
pub const CONTROL_PATH_ENV: &str = "EVALCTL_SSH_CONTROL_PATH";

/// Seconds an idle master opened by evalctl stays up (`ControlPersist`).
pub const CONTROL_PERSIST_SECS: u64 = 300;

/// Idle time after which a run opens a fresh master rather than risk
/// racing the old one's `ControlPersist` exit.
const REOPEN_AFTER: Duration = Duration::from_secs(CONTROL_PERSIST_SECS - 60);

/// ConnectTimeout and ServerAliveInterval when the ssh config sets none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs programs on a remote login node over one SSH ControlMaster.
///
/// Runs from several threads at once share the master: each is one
/// multiplexed channel (sshd's `MaxSessions`, 10 by default, bounds how
/// many are open at a time).
#[derive(Debug)]
pub struct Ssh {
    target: Target,
    /// How messages name the cluster: `alias (user@host:port)`.
    label: String,
    how: How,
    runtime: tokio::runtime::Runtime,
    conn: Mutex<Conn>,
    round_trips: AtomicUsize,
}

/// How the connection is made.
#[derive(Debug)]
enum How {
    /// evalctl logs in itself with these options.
    Own { builder: Box<SessionBuilder>, destination: String },
    /// Through a master the user opened, at this control socket.
    Attached { control_path: PathBuf },
}

#[derive(Debug)]
struct Conn {
    /// `None` after a lost connection or a failed reopen: the next run opens
    /// one. Shared with the runs in flight, which keep it open until they end.
    session: Option<Arc<Session>>,
    last_used: Instant,
}

/// What `ssh -G` says about a destination.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Resolved {
    user: String,
    hostname: String,
    port: String,
    strict_host_key_checking: String,
    server_alive_interval: String,
    connect_timeout: String,
}

impl Ssh {
    /// Opens a connection to `target`: attaches to the master at
    /// `$EVALCTL_SSH_CONTROL_PATH` when that is set, else logs in (with
    /// `target.ssh_config`, or `$EVALCTL_SSH_CONFIG`, as the ssh config).
    pub fn connect(target: &Target) -> Result<Ssh, ClusterError> {
        match std::env::var_os(CONTROL_PATH_ENV).filter(|p| !p.is_empty()) {
            Some(path) => Ssh::attach(target, Path::new(&path)),
            None => Ssh::login(target, config_file(target).as_deref()),
        }
    }

    /// Logs in to `target` with its own ControlMaster, using `config` as the
    /// ssh config file when given (else `~/.ssh/config`).
    pub fn login(target: &Target, config: Option<&Path>) -> Result<Ssh, ClusterError> {
        let host = hostname(target)?;
        let builder = base_builder(target, config);
        let (builder, destination) = builder.resolve(host);
        let mut builder = builder.into_owned();
        let destination = destination.to_string();
        let resolved = resolve(&builder, config, &destination)
            .map_err(|reason| ClusterError::Connect { target: fallback_label(target), reason })?;
        let label = label(&destination, &resolved);
        builder
            .known_hosts_check(known_hosts(&resolved.strict_host_key_checking))
            .control_persist(ControlPersist::IdleFor(persist_secs()));
        if matches!(resolved.connect_timeout.as_str(), "" | "none" | "0") {
            builder.connect_timeout(DEFAULT_TIMEOUT);
        }
        if matches!(resolved.server_alive_interval.as_str(), "" | "0") {
            builder.server_alive_interval(DEFAULT_TIMEOUT);
        }
        Ssh::open_with(target, label, How::Own { builder: Box::new(builder), destination })
    }

    /// Runs programs through a master the user opened at `control_path`
    /// (for clusters whose login needs a password or MFA). The master is
    /// used as is and left running; `target` only names it in messages.
    pub fn attach(target: &Target, control_path: &Path) -> Result<Ssh, ClusterError> {
        let config = config_file(target);
        let builder = base_builder(target, config.as_deref());
        let label = match hostname(target) {
            Ok(host) => {
                let (builder, destination) = builder.resolve(host);
                match resolve(&builder, config.as_deref(), destination) {
                    Ok(resolved) => label(destination, &resolved),
                    Err(_) => fallback_label(target),
                }
            }
            Err(_) => fallback_label(target),
        };
        let label = format!("{label} via {}", control_path.display());
        Ssh::open_with(target, label, How::Attached { control_path: control_path.to_path_buf() })
    }

    fn open_with(target: &Target, label: String, how: How) -> Result<Ssh, ClusterError> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|source| {
            ClusterError::Io { target: label.clone(), action: "cannot start the async runtime".into(), source }
        })?;
        let mut ssh = Ssh {
            target: target.clone(),
            label,
            how,
            runtime,
            conn: Mutex::new(Conn { session: None, last_used: Instant::now() }),
            round_trips: AtomicUsize::new(0),
        };
        let session = ssh.open()?;
        ssh.conn.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner()).session = Some(Arc::new(session));
        Ok(ssh)
    }

    /// How messages name this cluster, e.g.
    /// `evalctl-cluster (slurmuser@127.0.0.1:2222)`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The control socket runs go through.
    pub fn control_path(&self) -> Option<PathBuf> {
        self.lock().session.as_ref().map(|s| s.control_socket().to_path_buf())
    }

    /// True when this value runs through a master the user opened.
    pub fn is_attached(&self) -> bool {
        matches!(self.how, How::Attached { .. })
    }

    fn lock(&self) -> MutexGuard<'_, Conn> {
        // A panic while holding the lock leaves nothing half-updated that
        // matters: at worst a session that the next run finds dead.
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Opens a master, or checks the user's.
    fn open(&self) -> Result<Session, ClusterError> {
        match &self.how {
            How::Own { builder, destination } => {
                self.runtime.block_on(builder.connect(destination)).map_err(|e| self.connect_error(&e))
            }
            How::Attached { control_path } => {
                let hint = format!(
                    "open it with `ssh -f -N -o ControlMaster=yes -o ControlPath={} {}`, or unset {CONTROL_PATH_ENV}",
                    control_path.display(),
                    self.target.hostname.as_deref().unwrap_or("HOST"),
                );
                if !control_path.exists() {
                    return Err(ClusterError::Connect {
                        target: self.label.clone(),
                        reason: format!("no ssh control master is listening there ({CONTROL_PATH_ENV}); {hint}"),
                    });
                }
                let session = Session::resume(control_path.clone().into_boxed_path(), None);
                match self.runtime.block_on(session.check()) {
                    Ok(()) => Ok(session),
                    Err(e) => Err(ClusterError::Connect {
                        target: self.label.clone(),
                        reason: format!(
                            "the ssh control master ({CONTROL_PATH_ENV}) does not answer: {}; {hint}",
                            reason(&e)
                        ),
                    }),
                }
            }
        }
    }

    fn connect_error(&self, e: &openssh::Error) -> ClusterError {
        let mut reason = reason(e);
        if reason.contains("Host key verification failed") {
            reason.push_str(
                " (the host's key is not in known_hosts, or has changed: check it and accept it with a plain `ssh` \
                 to the host, or set `StrictHostKeyChecking accept-new` for it in the ssh config)",
            );
        } else if reason.contains("Permission denied") {
            reason.push_str(&format!(
                " (evalctl logs in non-interactively: use a key or an ssh agent, or, for password or MFA logins, \
                 open a control master yourself and set {CONTROL_PATH_ENV} to its socket)"
            ));
        }
        ClusterError::Connect { target: self.label.clone(), reason }
    }

    fn io_error(&self, action: &str, source: std::io::Error) -> ClusterError {
        ClusterError::Io { target: self.label.clone(), action: action.to_string(), source }
    }

    fn lost(&self, reason: String) -> ClusterError {
        ClusterError::Lost { target: self.label.clone(), reason }
    }

    /// After ssh said 255: the program's status if the master is alive,
    /// else the connection is gone.
    fn status_255(&self, session: &Session) -> Result<(), ClusterError> {
        match self.runtime.block_on(session.check()) {
            Ok(()) => Ok(()),
            Err(openssh::Error::Disconnected) => {
                Err(self.lost("the ssh connection closed during the run (the program may have run in part)".into()))
            }
            Err(e) => Err(self.lost(format!("{} (the program may have run in part)", reason(&e)))),
        }
    }

    /// One run over `session`; `Err` when the connection is gone.
    fn run_on(&self, session: &Session, program: &[u8]) -> Result<Output, ClusterError> {
        let exchange = self.runtime.block_on(exchange(session, program));
        let (status, stdout, stderr, written) = match exchange {
            Ok(parts) => parts,
            Err(openssh::Error::Ssh(e)) => return Err(self.io_error("cannot start ssh", e)),
            Err(e) => return Err(self.lost(reason(&e))),
        };
        let stdout = stdout.map_err(|e| self.io_error("cannot read the program's stdout from ssh", e));
        let stderr = stderr.map_err(|e| self.io_error("cannot read the program's stderr from ssh", e));
        let status = match status {
            Ok(status) => exit_code(status),
            Err(openssh::Error::RemoteProcessTerminated) | Err(openssh::Error::Disconnected) => {
                self.status_255(session)?;
                255
            }
            // openssh's reading of 127: the program's last command was not found.
            Err(openssh::Error::Remote(e)) if e.kind() == std::io::ErrorKind::NotFound => 127,
            Err(openssh::Error::Remote(e)) => return Err(self.io_error("cannot wait for ssh", e)),
            Err(e) => return Err(self.lost(reason(&e))),
        };
        let (stdout, stderr) = (stdout?, stderr?);
        written.map_err(|e| self.io_error("cannot send the program to ssh", e))?;
        Ok(Output { status, stdout, stderr })
    }
}

impl Cluster for Ssh {
    fn run(&self, program: &[u8]) -> Result<Output, ClusterError> {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        // The lock is held only to pick (or open) the session, not for the
        // run: runs from other threads go through the same master at once.
        let session = {
            let mut conn = self.lock();
            let own = matches!(self.how, How::Own { .. });
            if own && conn.last_used.elapsed() >= REOPEN_AFTER {
                // Close the old master (if still there, and once no run uses
                // it) before its ControlPersist timer can close it under a run.
                conn.session = None;
            }
            let session = match &conn.session {
                Some(session) => Arc::clone(session),
                None => {
                    let session = Arc::new(self.open()?);
                    conn.session = Some(Arc::clone(&session));
                    session
                }
            };
            conn.last_used = Instant::now();
            session
        };
        let result = self.run_on(&session, program);
        let mut conn = self.lock();
        conn.last_used = Instant::now();
        if matches!(result, Err(ClusterError::Lost { .. }))
            && conn.session.as_ref().is_some_and(|s| Arc::ptr_eq(s, &session))
        {
            conn.session = None;
        }
        result
    }

    fn round_trips(&self) -> usize {
        self.round_trips.load(Ordering::Relaxed)
    }

    fn target(&self) -> &Target {
        &self.target
    }
}

impl Drop for Ssh {
    fn drop(&mut self) {
        // Dropping an own session sends `ssh -O exit` to its master; an
        // attached one is left alone. Done here, explicitly, so the master
        // goes before the runtime.
        let conn = self.conn.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner());
        drop(conn.session.take());
    }
}

type Exchanged = (
    Result<std::process::ExitStatus, openssh::Error>,
    std::io::Result<Vec<u8>>,
    std::io::Result<Vec<u8>>,
    std::io::Result<()>,
);

/// Starts [`REMOTE_COMMAND`], writes `program` to its stdin while reading its
/// stdout and stderr (so no pipe can fill up and stall the others), then
/// waits for it. `Err` when it could not be started.
async fn exchange(session: &Session, program: &[u8]) -> Result<Exchanged, openssh::Error> {
    let mut child = session
        .raw_command(REMOTE_COMMAND)
        .stdin(openssh::Stdio::piped())
        .stdout(openssh::Stdio::piped())
        .stderr(openssh::Stdio::piped())
        .spawn()
        .await?;
    let stdin = child.stdin().take();
    let stdout = child.stdout().take();
    let stderr = child.stderr().take();
    let write = async move {
        if let Some(mut stdin) = stdin {
            match stdin.write_all(program).await {
                // The program exited before reading all of itself (`exit`).
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                other => other?,
            }
            // Dropping the pipe is what sends EOF to bash.
            drop(stdin);
        }
        Ok(())
    };
    let read_out = async move {
        let mut buf = Vec::new();
        if let Some(mut stdout) = stdout {
            stdout.read_to_end(&mut buf).await?;
        }
        Ok(buf)
    };
    let read_err = async move {
        let mut buf = Vec::new();
        if let Some(mut stderr) = stderr {
            stderr.read_to_end(&mut buf).await?;
        }
        Ok(buf)
    };
    let (written, stdout, stderr) = tokio::join!(write, read_out, read_err);
    Ok((child.wait().await, stdout, stderr, written))
}

/// The hostname of an SSH target.
fn hostname(target: &Target) -> Result<&str, ClusterError> {
    match target.hostname.as_deref().map(str::trim) {
        Some(host) if !host.is_empty() => Ok(host),
        _ => Err(ClusterError::Connect {
            target: target.describe(),
            reason: "no hostname given (set execution.hostname)".to_string(),
        }),
    }
}

/// Session options from the target: user and ssh config file.
fn base_builder(target: &Target, config: Option<&Path>) -> SessionBuilder {
    let mut builder = SessionBuilder::default();
    if let Some(user) = &target.username {
        builder.user(user.clone());
    }
    if let Some(config) = config {
        builder.config_file(config);
    }
    builder
}

/// The ssh config file: the target's, else `$EVALCTL_SSH_CONFIG`.
pub fn config_file(target: &Target) -> Option<PathBuf> {
    target.ssh_config.clone().or_else(|| std::env::var_os(CONFIG_ENV).filter(|p| !p.is_empty()).map(PathBuf::from))
}

fn persist_secs() -> std::num::NonZeroUsize {
    std::num::NonZeroUsize::new(CONTROL_PERSIST_SECS as usize).unwrap_or(std::num::NonZeroUsize::MIN)
}

/// The host key policy a plain `ssh` in batch mode would apply.
fn known_hosts(strict_host_key_checking: &str) -> KnownHosts {
    match strict_host_key_checking.to_ascii_lowercase().as_str() {
        "accept-new" => KnownHosts::Add,
        "false" | "no" | "off" => KnownHosts::Accept,
        // "true"/"yes", and "ask", which cannot ask in batch mode and so refuses.
        _ => KnownHosts::Strict,
    }
}

/// `alias (user@host:port)`, or `user@host:port` when the alias is the host.
fn label(destination: &str, resolved: &Resolved) -> String {
    let address = format!("{}@{}:{}", resolved.user, resolved.hostname, resolved.port);
    if destination == resolved.hostname { address } else { format!("{destination} ({address})") }
}

/// A name for messages when `ssh -G` could not tell more.
fn fallback_label(target: &Target) -> String {
    let host = target.hostname.as_deref().unwrap_or("localhost");
    match &target.username {
        Some(user) => format!("{user}@{host}"),
        None => host.to_string(),
    }
}

/// Asks `ssh -G` what the config makes of `destination` (no network).
fn resolve(builder: &SessionBuilder, config: Option<&Path>, destination: &str) -> Result<Resolved, String> {
    let mut command = Command::new("ssh");
    command.arg("-G").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(config) = config {
        command.arg("-F").arg(config);
    }
    if let Some(user) = builder.get_user() {
        command.arg("-l").arg(user);
    }
    if let Some(port) = builder.get_port() {
        command.arg("-p").arg(port);
    }
    command.arg("--").arg(destination);
    let output = command.output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "the `ssh` program was not found (install the OpenSSH client)".to_string(),
        _ => format!("cannot run `ssh -G`: {e}"),
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("Pseudo-terminal will not be allocated"))
            .collect();
        let why = if lines.is_empty() { format!("`ssh -G` failed ({})", output.status) } else { lines.join("; ") };
        return Err(match config {
            Some(config) => format!("bad ssh config {}: {why}", config.display()),
            None => format!("bad ssh config: {why}"),
        });
    }
    Ok(parse_ssh_g(&String::from_utf8_lossy(&output.stdout)))
}

/// Picks the options evalctl needs from `ssh -G` output (`key value` lines).
fn parse_ssh_g(text: &str) -> Resolved {
    let mut resolved = Resolved::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(' ') else { continue };
        let slot = match key {
            "user" => &mut resolved.user,
            "hostname" => &mut resolved.hostname,
            "port" => &mut resolved.port,
            "stricthostkeychecking" => &mut resolved.strict_host_key_checking,
            "serveraliveinterval" => &mut resolved.server_alive_interval,
            "connecttimeout" => &mut resolved.connect_timeout,
            _ => continue,
        };
        *slot = value.trim().to_string();
    }
    resolved
}

/// The most telling text of an openssh error: ssh's own message when there
/// is one.
fn reason(e: &openssh::Error) -> String {
    let text = match std::error::Error::source(e) {
        Some(source) => source.to_string(),
        None => e.to_string(),
    };
    let lines: Vec<&str> =
        text.lines().map(|l| l.trim().trim_end_matches('.').trim_end()).filter(|l| !l.is_empty()).collect();
    if lines.is_empty() { e.to_string() } else { lines.join("; ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_g_output_is_parsed() {
        let r = parse_ssh_g(
            "user slurmuser\nhostname 127.0.0.1\nport 2222\nstricthostkeychecking true\n\
             serveraliveinterval 300\nconnecttimeout none\nidentityfile ~/.ssh/id_rsa\n",
        );
        assert_eq!(r.user, "slurmuser");
        assert_eq!(r.hostname, "127.0.0.1");
        assert_eq!(r.port, "2222");
        assert_eq!(r.strict_host_key_checking, "true");
        assert_eq!(r.server_alive_interval, "300");
        assert_eq!(r.connect_timeout, "none");
        assert_eq!(label("evalctl-cluster", &r), "evalctl-cluster (slurmuser@127.0.0.1:2222)");
        assert_eq!(label("127.0.0.1", &r), "slurmuser@127.0.0.1:2222");
    }

    #[test]
    fn host_key_policy_follows_the_config() {
        assert!(matches!(known_hosts("true"), KnownHosts::Strict));
        assert!(matches!(known_hosts("ask"), KnownHosts::Strict));
        assert!(matches!(known_hosts(""), KnownHosts::Strict));
        assert!(matches!(known_hosts("accept-new"), KnownHosts::Add));
        assert!(matches!(known_hosts("false"), KnownHosts::Accept));
    }

    #[test]
    fn missing_hostname_is_a_connect_error() {
        let err = Ssh::login(&Target { hostname: Some(" ".into()), ..Target::default() }, None);
        assert!(matches!(err, Err(ClusterError::Connect { .. })));
    }
}
