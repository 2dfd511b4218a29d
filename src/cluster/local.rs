//! The local backend: evalctl runs on the login node itself, so programs go
//! straight to a local bash, with no SSH in between.
//!
//! It behaves like the SSH backend as far as a program can tell: `LC_ALL=C`,
//! the home directory as working directory (so `sbatch` without `--chdir`
//! gives jobs the same directory either way), the program on stdin.

use std::io::{ErrorKind, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Cluster, ClusterError, Output, Target, exit_code};

/// Reads the whole program from stdin, then runs it: much faster than
/// `bash -s` (which reads a pipe one byte at a time) and never runs half a
/// program whose transfer broke off.
pub const READ_THEN_RUN: &str = "eval \"$(cat)\"";

/// Variables a login session on the cluster would have; everything else of
/// evalctl's environment stays out of the programs (and so out of jobs).
const PASS_ENV: &[&str] = &["HOME", "USER", "LOGNAME", "PATH", "SHELL", "LANG", "TMPDIR", "TZ"];

/// Runs programs with a local bash, the program on stdin.
#[derive(Debug)]
pub struct Local {
    target: Target,
    round_trips: AtomicUsize,
}

impl Local {
    /// A local backend for `target` (whose hostname is `None` or `localhost`).
    pub fn new(target: Target) -> Local {
        Local { target, round_trips: AtomicUsize::new(0) }
    }

    fn io_error(&self, action: &str, source: std::io::Error) -> ClusterError {
        ClusterError::Io { target: "local".to_string(), action: action.to_string(), source }
    }
}

impl Default for Local {
    fn default() -> Local {
        Local::new(Target::local())
    }
}

/// The directory an SSH login would start in, when it exists.
fn home_dir() -> Option<PathBuf> {
    let home = PathBuf::from(std::env::var_os("HOME")?);
    home.is_dir().then_some(home)
}

impl Cluster for Local {
    fn run(&self, program: &[u8]) -> Result<Output, ClusterError> {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let mut command = Command::new("bash");
        // A login-like environment, as over SSH: evalctl's own environment
        // holds secrets (`host:` variables) that sbatch would otherwise copy
        // into every job (`--export=ALL` is its default).
        command.env_clear();
        for (k, v) in std::env::vars_os() {
            if PASS_ENV.iter().any(|p| k == *p) || k.to_str().is_some_and(|k| k.starts_with("SLURM_CONF")) {
                command.env(k, v);
            }
        }
        command
            .arg("-c")
            .arg(READ_THEN_RUN)
            .env("LC_ALL", "C")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(home) = home_dir() {
            command.current_dir(home);
        }
        let mut child = command.spawn().map_err(|e| self.io_error("cannot start bash", e))?;
        let stdin = child.stdin.take();
        // Feed stdin from a second thread while this one drains stdout and
        // stderr, so neither side can fill a pipe and wait for the other.
        let (written, output) = std::thread::scope(|scope| {
            let writer = scope.spawn(move || match stdin {
                Some(mut stdin) => match stdin.write_all(program) {
                    // bash exited before reading all of the program (`exit`).
                    Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
                    other => other,
                },
                None => Ok(()),
            });
            let output = child.wait_with_output();
            let written = writer.join().unwrap_or_else(|_| Err(std::io::Error::other("stdin writer panicked")));
            (written, output)
        });
        let output = output.map_err(|e| self.io_error("cannot read the output of bash", e))?;
        written.map_err(|e| self.io_error("cannot write the program to bash", e))?;
        Ok(Output { status: exit_code(output.status), stdout: output.stdout, stderr: output.stderr })
    }

    fn round_trips(&self) -> usize {
        self.round_trips.load(Ordering::Relaxed)
    }

    fn target(&self) -> &Target {
        &self.target
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_bash_with_c_locale() {
        let local = Local::default();
        let out = local.run(b"echo \"$LC_ALL\"; echo err >&2; exit 7").expect("bash runs");
        assert_eq!(out.status, 7);
        assert_eq!(out.stdout, b"C\n");
        assert_eq!(out.stderr, b"err\n");
        assert_eq!(local.round_trips(), 1);
    }

    #[test]
    fn early_exit_with_unread_program_is_not_an_error() {
        let mut program = b"exit 3\n".to_vec();
        program.extend(std::iter::repeat_n(b"# filler\n", 200_000).flatten());
        let out = Local::default().run(&program).expect("bash runs");
        assert_eq!(out.status, 3);
    }

    #[test]
    fn signal_death_is_128_plus_signal() {
        let out = Local::default().run(b"kill -9 $$").expect("bash runs");
        assert_eq!(out.status, 137);
    }
}
