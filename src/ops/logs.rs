//! `logs`: the batch, server and client logs of a unit's latest job, read
//! from where they were last read (so `--follow` prints only new output).

use std::collections::BTreeMap;

use super::{Stack, status};
use crate::apply::driver;
use crate::cluster::Cluster;
use crate::diag::Diagnostic;
use crate::error::{Error, Result};
use crate::shell;
use crate::shell::{Code, ShellWord};

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
        let dir = ShellWord::new(format!("{}/{unit}/logs", r.stack_dir));
        let mut prog = shell!("cd {} 2>/dev/null || {{ echo 'EVALCTL end'; exit 0; }}\n", dir);
        // Globs: the job id is a number, the rest is evalctl's own text.
        for (pre, post) in [("slurm-", ".out"), ("server-", "-*.log"), ("client-", ".log")] {
            prog.push_str(&shell!(
                "for f in {}{}{}; do [ -f \"$f\" ] || continue; printf 'EVALCTL file %s %s\\n' \"$f\" \"$(wc -c <\"$f\")\"; done\n",
                Code(pre),
                job,
                Code(post)
            ));
        }
        prog.push_str("echo 'EVALCTL end'\n");
        let listing = driver::run_program(cluster, &prog)?;
        let mut fetch = String::new();
        for line in listing.lines().filter_map(|l| l.strip_prefix("EVALCTL file ")) {
            let Some((name, size)) = line.rsplit_once(' ') else { continue };
            let size: u64 = size.trim().parse().unwrap_or(0);
            let from = self.offsets.get(name).copied().unwrap_or(0);
            if size > from {
                let name_w = ShellWord::new(name);
                fetch.push_str(&shell!(
                    "printf '\\n==> %s <==\\n' {}; tail -c +{} {}/{}\n",
                    name_w,
                    from + 1,
                    dir,
                    name_w
                ));
                self.offsets.insert(name.to_owned(), size);
            }
        }
        let mut chunk = LogChunk { text: String::new(), finished: row.is_terminal() };
        if !fetch.is_empty() {
            chunk.text = cluster.run(fetch.as_bytes())?.stdout_text();
        }
        Ok(chunk)
    }
}
