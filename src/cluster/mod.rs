//! Cluster access: the one way evalctl runs anything on a cluster's login
//! node, whether that is this machine or one reached over SSH.
//!
//! Everything evalctl does on a cluster (refresh, submit, cancel, read logs)
//! is a bash program sent to the login node in one round trip, so the rest of
//! the crate only needs [`Cluster::run`]. The program travels on bash's stdin,
//! never in argv, so the secrets it may carry do not show up in `ps` or in
//! shell history or logs on either side.
//!
//! Two backends: [`local::Local`] runs bash directly (evalctl running on
//! the login node itself, `hostname` omitted or `localhost`), and
//! [`ssh::Ssh`] runs it through one OpenSSH ControlMaster connection per
//! value, opened once and reused for every run. [`connect`] picks one.
//! [`limits`] reads the scheduler's association limits from its answers.

pub mod limits;
pub mod local;
pub mod ssh;

use std::path::PathBuf;

/// What a remote program printed and how it ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// Exit status of bash (128 + N when it was killed by signal N).
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    /// True when the program exited with status 0.
    pub fn success(&self) -> bool {
        self.status == 0
    }

    /// Stdout as text (invalid UTF-8 replaced).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Stderr as text (invalid UTF-8 replaced).
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Why a program could not be run on the cluster. A program that ran and
/// failed is not an error: its status is in [`Output::status`].
///
/// Every message names the cluster it is about (`target`): the SSH
/// destination as ssh resolves it (`slurmuser@127.0.0.1:2222`, with the host
/// alias the user wrote when it differs), or `local`.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No connection could be opened (or an existing control master could
    /// not be used). Nothing was run.
    #[error("cannot connect to {target}: {reason}")]
    Connect { target: String, reason: String },
    /// The connection broke while a program was running: it may or may not
    /// have run, in whole or in part.
    #[error("lost the connection to {target}: {reason}")]
    Lost { target: String, reason: String },
    /// A local operation failed: starting `bash` or `ssh`, or talking to it
    /// through its pipes.
    #[error("{target}: {action}: {source}")]
    Io {
        target: String,
        action: String,
        #[source]
        source: std::io::Error,
    },
}

/// Where the cluster is: from `execution.hostname` / `execution.username` and the environment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Target {
    /// The login node: a host name, an alias of the ssh config, or
    /// `ssh://[user@]host[:port]`. `None` or `localhost` means this machine.
    pub hostname: Option<String>,
    /// The SSH user; `None` lets the ssh config (or the local user name) decide.
    pub username: Option<String>,
    /// An ssh config file to use instead of `~/.ssh/config` (`ssh -F`); when
    /// `None`, `$EVALCTL_SSH_CONFIG` if set.
    pub ssh_config: Option<PathBuf>,
}

impl Target {
    /// This machine.
    pub fn local() -> Target {
        Target::default()
    }

    /// An SSH destination, with the user and ssh config left to the defaults.
    pub fn ssh(hostname: impl Into<String>) -> Target {
        Target { hostname: Some(hostname.into()), ..Target::default() }
    }

    /// Local when hostname is `None` or `localhost`. Any other name,
    /// `127.0.0.1` included, is an SSH target (the test cluster's sshd listens
    /// there, and a different user or port may be meant).
    pub fn is_local(&self) -> bool {
        match self.hostname.as_deref() {
            None => true,
            Some(host) => host.eq_ignore_ascii_case("localhost"),
        }
    }

    /// `local` or `ssh user@host` (`ssh host` when no user is given).
    pub fn describe(&self) -> String {
        match (&self.hostname, &self.username) {
            (Some(host), Some(user)) if !self.is_local() => format!("ssh {user}@{host}"),
            (Some(host), None) if !self.is_local() => format!("ssh {host}"),
            _ => "local".to_string(),
        }
    }
}

/// One way to run programs on the cluster's login node.
///
/// `Send + Sync`: the refreshes of several stacks on one host run in
/// parallel threads over one shared value (one connection per host).
pub trait Cluster: Send + Sync {
    /// Runs `program` (bash source text) with bash on the login node (read whole from stdin, then run), feeding it on stdin (so it never appears in
    /// argv, `ps` or logs; programs carry secrets this way). One call = one round trip. Exit status of bash returned,
    /// not an error; an error only when the program could not be run or the connection broke.
    ///
    /// The program runs with `LC_ALL=C`, in the user's home directory, with
    /// stdin being the rest of the program itself: a command that reads stdin
    /// must be given `</dev/null` (or a heredoc) or it eats the program.
    fn run(&self, program: &[u8]) -> Result<Output, ClusterError>;
    /// Number of `run` calls made so far (for benchmarks and tests that assert a constant number of round trips).
    fn round_trips(&self) -> usize;
    /// Where this backend runs programs.
    fn target(&self) -> &Target;
}

/// Opens a backend: `local::Local` when target.is_local(), else `ssh::Ssh`.
pub fn connect(target: &Target) -> Result<Box<dyn Cluster>, ClusterError> {
    if target.is_local() {
        Ok(Box::new(local::Local::new(target.clone())))
    } else {
        Ok(Box::new(ssh::Ssh::connect(target)?))
    }
}

/// Exit status as bash reports it: the code, or 128 + signal number.
pub(crate) fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => -1,
    }
}

/// A cluster that reports every round trip (`--verbose`): its number, the
/// target, the bytes sent and how long it took, through `trace`.
pub struct Traced<'a> {
    pub inner: Box<dyn Cluster>,
    pub trace: Box<dyn Fn(&str) + Send + Sync + 'a>,
}

impl Cluster for Traced<'_> {
    fn run(&self, program: &[u8]) -> Result<Output, ClusterError> {
        let started = std::time::Instant::now();
        let out = self.inner.run(program);
        (self.trace)(&format!(
            "round trip {} to {}: {} bytes sent, {} ms",
            self.inner.round_trips(),
            self.inner.target().describe(),
            program.len(),
            started.elapsed().as_millis()
        ));
        out
    }

    fn round_trips(&self) -> usize {
        self.inner.round_trips()
    }

    fn target(&self) -> &Target {
        self.inner.target()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_only_for_none_or_localhost() {
        assert!(Target::local().is_local());
        assert!(Target::ssh("localhost").is_local());
        assert!(Target::ssh("LocalHost").is_local());
        assert!(!Target::ssh("127.0.0.1").is_local());
        assert!(!Target::ssh("login.example.com").is_local());
    }

    #[test]
    fn describe_names_user_and_host() {
        assert_eq!(Target::local().describe(), "local");
        assert_eq!(Target::ssh("localhost").describe(), "local");
        assert_eq!(Target::ssh("login").describe(), "ssh login");
        let t = Target { username: Some("bob".into()), ..Target::ssh("login") };
        assert_eq!(t.describe(), "ssh bob@login");
    }

    #[test]
    fn errors_name_the_target() {
        let e =
            ClusterError::Connect { target: "slurmuser@127.0.0.1:2222".into(), reason: "Connection refused".into() };
        assert_eq!(e.to_string(), "cannot connect to slurmuser@127.0.0.1:2222: Connection refused");
        let e = ClusterError::Lost { target: "h".into(), reason: "closed by remote host".into() };
        assert_eq!(e.to_string(), "lost the connection to h: closed by remote host");
    }
}
