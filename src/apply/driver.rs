//! Where the cluster is ([`target`]), and the entry points the command
//! layer calls today, each delegating to `crate::remote`.

use std::time::Duration;

use super::{Inputs, LockInfo, Outcome};
use crate::cluster::{Cluster, Target};
use crate::config::Loaded;
use crate::config::node::Value;
use crate::diag::Diagnostic;
use crate::remote::refresh::Refreshed;
use crate::remote::{self, Program};
use crate::state::State;

// shim: removed when the command layer calls remote directly
pub use crate::remote::Stop;

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

// shim: removed when the command layer calls remote directly
pub use crate::remote::set_verbose;

/// Runs a program given as text; returns its output.
// shim: removed when the command layer calls remote directly
pub fn run_program(cluster: &dyn Cluster, program: &str) -> Result<String, Stop> {
    Ok(remote::run(cluster, &Program::from_text(program))?.stdout)
}

/// Refreshes with a program given as text (refresh with extra detail).
// shim: removed when the command layer calls remote directly
pub fn refresh_with(cluster: &dyn Cluster, program: &str) -> Result<Refreshed, Stop> {
    let replies = remote::run(cluster, &Program::from_text(program))?;
    Ok(remote::refresh::read(&replies)?)
}

/// Refreshes without locking (plan).
// shim: removed when the command layer calls remote directly
pub fn refresh(cluster: &dyn Cluster, stack_dir: &str, stack: &str, since: u64) -> Result<Refreshed, Stop> {
    remote::refresh::refresh(cluster, stack_dir, stack, since)
}

/// Takes the stack lock and refreshes: `remote::lock::acquire`.
// shim: removed when the command layer calls remote directly
pub fn lock_and_refresh(
    cluster: &dyn Cluster,
    stack_dir: &str,
    stack: &str,
    since: u64,
    lock: &LockInfo,
    timeout: Option<Duration>,
) -> Result<Refreshed, Stop> {
    remote::lock::acquire(cluster, stack_dir, stack, since, lock, timeout)
}

/// Drops the lock if `id` holds it; true when it did.
// shim: removed when the command layer calls remote directly
pub fn unlock(cluster: &dyn Cluster, stack_dir: &str, id: &str) -> Result<bool, Stop> {
    remote::lock::release(cluster, stack_dir, id)
}

/// Runs the apply program; returns what it did and the state it recorded.
// shim: removed when the command layer calls remote directly
pub fn execute(cluster: &dyn Cluster, inputs: &Inputs<'_>) -> Result<(Outcome, Option<State>), Stop> {
    remote::submit::execute(cluster, inputs)
}
