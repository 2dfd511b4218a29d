//! `state`: read a stack's recorded state, or remove its lock.

use super::Stack;
use crate::cluster::Cluster;
use crate::diag::Diagnostic;
use crate::error::{Error, Result};
use crate::remote;
use crate::state::{self, State};

/// Removes the lock if `id` holds it; an error when it does not.
pub fn unlock(stack: &Stack, cluster: &dyn Cluster, id: &str) -> Result<()> {
    if remote::lock::release(cluster, &stack.rendered.stack_dir, id)? {
        Ok(())
    } else {
        Err(Error::msg(format!("stack `{}` is not locked by {id}", stack.rendered.stack)))
    }
}

/// The recorded state, from the cluster or (with no cluster) the local
/// copy; `None` when there is none.
pub fn read(stack: &Stack, cluster: Option<&dyn Cluster>) -> Result<Option<State>> {
    match cluster {
        None => {
            Ok(state::read_local(&stack.config, &stack.loaded.stack).map_err(|e| vec![Diagnostic::error(None, e)])?)
        }
        Some(c) => Ok(remote::refresh::refresh(c, &stack.rendered.stack_dir, &stack.rendered.stack, 0)?.state),
    }
}

/// A state without the scripts it keeps for diffs (long, and in the job
/// directories anyway): what `state show` prints.
pub fn summary(state: &State) -> State {
    let mut s = state.clone();
    for u in s.units.values_mut() {
        u.scripts.clear();
    }
    s
}
