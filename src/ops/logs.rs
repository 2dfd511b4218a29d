//! `logs`: the batch, server and client logs of a unit's latest job, read
//! from where they were last read (so `--follow` prints only new output).

use std::collections::BTreeMap;

use super::{Stack, status};
use crate::cluster::Cluster;
use crate::diag::Diagnostic;
use crate::error::{Error, Result};
use crate::remote;

/// Reads a unit's logs in rounds, remembering how far each file was read.
#[derive(Debug, Default)]
pub struct LogFollower {
    offsets: BTreeMap<String, u64>,
}

/// New output of one round.
#[derive(Debug, Default)]
pub struct LogChunk {
    /// Each file's new bytes, under a `==> name <==` header.
    pub text: String,
    /// The unit has ended: no more output will come.
    pub finished: bool,
}

impl LogFollower {
    pub fn new() -> LogFollower {
        LogFollower::default()
    }

    /// One round: the unit's status (one refresh), a listing of its log
    /// files, then what they gained since the last round.
    pub fn poll(&mut self, stack: &Stack, cluster: &dyn Cluster, unit: &str, since: u64) -> Result<LogChunk> {
        let r = &stack.rendered;
        let rows = status(stack, cluster, since)?;
        let Some(row) = rows.iter().find(|row| row.unit == unit) else {
            let known: Vec<&str> = rows.iter().map(|row| row.unit.as_str()).collect();
            return Err(Error::from(
                Diagnostic::error(None, format!("no unit `{unit}` in stack `{}`", r.stack))
                    .with_note(format!("units: {}", known.join(", "))),
            ));
        };
        let Some(job) = row.current_job else {
            return Err(Error::msg(format!("`{unit}` has no job yet")));
        };
        // A task of a pack: the pack's folder has the job's batch and server
        // logs, the task's folder its client log.
        let pack = r.jobs.iter().find(|j| j.members.iter().any(|m| m.id == unit)).map(|j| j.unit.clone());
        let folders: Vec<&str> = pack.iter().map(String::as_str).chain([unit]).collect();
        let mut grown = vec![];
        for (path, size) in remote::logs::list(cluster, &r.stack_dir, &folders, job)? {
            let from = self.offsets.get(&path).copied().unwrap_or(0);
            if size > from {
                self.offsets.insert(path.clone(), size);
                grown.push((path, from));
            }
        }
        let text = remote::logs::fetch(cluster, &r.stack_dir, &grown)?;
        Ok(LogChunk { text, finished: row.is_terminal() })
    }
}
