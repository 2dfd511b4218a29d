//! `state`: read a stack's recorded state, or remove its lock.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Stack;
use crate::cluster::Cluster;
use crate::diag::Diagnostic;
use crate::error::{Error, Result};
use crate::remote;
use crate::state::{self, Observed, State, UnitKind};

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
#[derive(Debug, Serialize)]
pub struct StateSummary<'a> {
    pub version: u32,
    pub stack: &'a str,
    pub serial: u64,
    pub created: u64,
    pub runtime: &'a str,
    pub units: BTreeMap<&'a str, UnitSummary<'a>>,
}

/// One unit of a [`StateSummary`].
#[derive(Debug, Serialize)]
pub struct UnitSummary<'a> {
    pub kind: UnitKind,
    pub script_hash: &'a str,
    pub result_hash: &'a str,
    pub jobs: &'a [u64],
    pub attempts: u32,
    pub observed: Observed,
    pub serial: u64,
}

impl<'a> StateSummary<'a> {
    pub fn of(s: &'a State) -> StateSummary<'a> {
        StateSummary {
            version: s.version,
            stack: &s.stack,
            serial: s.serial,
            created: s.created,
            runtime: &s.runtime,
            units: s
                .units
                .iter()
                .map(|(id, u)| {
                    (
                        id.as_str(),
                        UnitSummary {
                            kind: u.kind,
                            script_hash: &u.script_hash,
                            result_hash: &u.result_hash,
                            jobs: &u.jobs,
                            attempts: u.attempts,
                            observed: u.observed,
                            serial: u.serial,
                        },
                    )
                })
                .collect(),
        }
    }
}
