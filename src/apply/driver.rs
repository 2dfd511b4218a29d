//! The I/O around plan and apply: connecting, refreshing (one round trip),
//! locking, running the apply program (one round trip), unlocking.

use std::time::{Duration, Instant};

use super::{
    Inputs, LockInfo, Outcome, lock_holder, lock_program, parse_outcome, program, recorded_state, unlock_program,
};
use crate::cluster::{Cluster, ClusterError, Target};
use crate::config::Loaded;
use crate::config::node::Value;
use crate::diag::Diagnostic;
use crate::plan::refresh::{self, Refreshed};
use crate::state::State;

/// Why a plan or apply stopped.
#[derive(Debug)]
pub enum Stop {
    /// Problems to report (exit 1).
    Diagnostics(Vec<Diagnostic>),
    /// The stack is locked by someone else (exit 3).
    Locked(LockInfo),
    /// A saved plan no longer matches the config or the cluster (exit 4).
    Stale(String),
}

impl From<ClusterError> for Stop {
    fn from(e: ClusterError) -> Stop {
        Stop::Diagnostics(vec![Diagnostic::error(None, e.to_string())])
    }
}

impl From<String> for Stop {
    fn from(e: String) -> Stop {
        Stop::Diagnostics(vec![Diagnostic::error(None, e)])
    }
}

/// Where the config's cluster is: `execution.hostname` and `username`,
/// whose `${oc.env:...}` parts are resolved now.
pub fn target(
    loaded: &Loaded,
    env: &dyn Fn(&str) -> Option<String>,
    ssh_config: Option<std::path::PathBuf>,
) -> Result<Target, Stop> {
    let field = |key: &str| -> Result<Option<String>, Stop> {
        let path = [crate::config::node::Seg::Key("execution".into()), crate::config::node::Seg::Key(key.into())];
        let Some(node) = loaded.tree.get(&path) else { return Ok(None) };
        match &node.value {
            Value::Null => Ok(None),
            Value::Str(s) => Ok(Some(s.clone())),
            Value::Deferred(text) => match super::secrets::resolve_text(text, env) {
                Ok(v) => Ok(Some(v)),
                Err(var) => Err(Stop::Diagnostics(vec![
                    Diagnostic::error(
                        loaded.tree.value_span_of(&path),
                        format!("`execution.{key}` needs the environment variable `{var}`, which is not set"),
                    )
                    .with_note(format!("export {var}=..., or set execution.{key} in the config or with -o")),
                ])),
            },
            _ => Ok(None),
        }
    };
    let hostname = field("hostname")?;
    let mut t = Target { hostname, username: None, ssh_config };
    if !t.is_local() {
        // Unset (e.g. `${oc.env:USER}` without USER): ssh picks the user,
        // from ~/.ssh/config or the local login, as it does on its own.
        t.username = field("username").unwrap_or(None);
    }
    Ok(t)
}

static VERBOSE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Print every round trip (`--verbose`, or `EVALCTL_TRACE=1`).
pub fn set_verbose(on: bool) {
    VERBOSE.store(on, std::sync::atomic::Ordering::Relaxed);
}

fn verbose() -> bool {
    VERBOSE.load(std::sync::atomic::Ordering::Relaxed) || std::env::var_os("EVALCTL_TRACE").is_some()
}

fn run(cluster: &dyn Cluster, program: &str) -> Result<String, Stop> {
    let mut full = String::from("set -u\n");
    full.push_str(program);
    let started = Instant::now();
    let out = cluster.run(full.as_bytes())?;
    if verbose() {
        eprintln!(
            "evalctl: round trip {} to {}: {} bytes sent, {} ms",
            cluster.round_trips(),
            cluster.target().describe(),
            full.len(),
            started.elapsed().as_millis()
        );
    }
    let stdout = out.stdout_text();
    if !stdout.contains("EVALCTL end") {
        let err = out.stderr_text();
        return Err(Stop::from(format!(
            "the program run on {} stopped early (exit {}): {}",
            cluster.target().describe(),
            out.status,
            err.lines().last().unwrap_or("no output")
        )));
    }
    Ok(stdout)
}

/// Runs a program that ends with `EVALCTL end`; returns its output.
pub fn run_program(cluster: &dyn Cluster, program: &str) -> Result<String, Stop> {
    run(cluster, program)
}

/// Refreshes with a given program (refresh with extra detail).
pub fn refresh_with(cluster: &dyn Cluster, program: &str) -> Result<Refreshed, Stop> {
    let out = run(cluster, program)?;
    Ok(refresh::parse(&out)?)
}

/// Refreshes without locking (plan).
pub fn refresh(cluster: &dyn Cluster, stack_dir: &str, stack: &str, since: u64) -> Result<Refreshed, Stop> {
    let out = run(cluster, &refresh::program(stack_dir, stack, since))?;
    Ok(refresh::parse(&out)?)
}

/// Takes the stack lock and refreshes, in one round trip per attempt.
/// Waits up to `timeout` for a lock held by a live holder; breaks a lock
/// whose holder is provably gone (a dead process of this machine).
pub fn lock_and_refresh(
    cluster: &dyn Cluster,
    stack_dir: &str,
    stack: &str,
    since: u64,
    lock: &LockInfo,
    timeout: Option<Duration>,
) -> Result<Refreshed, Stop> {
    let start = Instant::now();
    let mut break_id: Option<String> = None;
    loop {
        let prog = lock_program(stack_dir, lock, break_id.as_deref()) + &refresh::program(stack_dir, stack, since);
        let out = run(cluster, &prog)?;
        match lock_holder(&out) {
            None => return Ok(refresh::parse(&out)?),
            Some(holder) => {
                if holder.holder_is_gone() && break_id.as_deref() != Some(holder.id.as_str()) {
                    eprintln!("evalctl: breaking the lock of a process that is gone: {}", holder.describe());
                    break_id = Some(holder.id.clone());
                    continue;
                }
                match timeout {
                    Some(t) if start.elapsed() < t => std::thread::sleep(Duration::from_secs(2)),
                    _ => return Err(Stop::Locked(holder)),
                }
            }
        }
    }
}

/// Drops the lock if `id` holds it; true when it did.
pub fn unlock(cluster: &dyn Cluster, stack_dir: &str, id: &str) -> Result<bool, Stop> {
    let out = run(cluster, &unlock_program(stack_dir, id))?;
    Ok(out.contains("EVALCTL unlocked"))
}

/// Runs the apply program; returns what it did and the state it recorded.
pub fn execute(cluster: &dyn Cluster, inputs: &Inputs<'_>) -> Result<(Outcome, Option<State>), Stop> {
    let prog = program(inputs);
    let out = run(cluster, &prog.text).map_err(|stop| match stop {
        Stop::Diagnostics(mut d) => {
            for diag in &mut d {
                diag.notes.push(
                    "jobs this apply had submitted are held and never start; run apply again: it replaces them".into(),
                );
            }
            Stop::Diagnostics(d)
        }
        other => other,
    })?;
    let outcome = parse_outcome(&out);
    if outcome.lock_lost {
        return Err(Stop::from(
            "the stack lock was taken away during apply (evalctl state unlock?); nothing was submitted".to_owned(),
        ));
    }
    if outcome.error.is_some() {
        return Ok((outcome, None));
    }
    let state = recorded_state(inputs, &prog.submitting, &outcome)?;
    Ok((outcome, Some(state)))
}
