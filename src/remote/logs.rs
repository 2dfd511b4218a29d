//! `logs`: list a job's log files with their sizes (one round trip), then
//! fetch what was added since the last look (one more, only when a file
//! grew). The files are in `<stack>/<unit>/logs/` ([`super::layout`]).

use crate::cluster::Cluster;
use crate::jobid::JobId;
use crate::shell::{Code, ShellWord};

use super::encoding::snippet;
use super::{Program, Reply, layout, protocol};
use crate::error::Error;

/// The program that lists the logs of job `job` of `unit`: `file` replies.
pub fn list_program(stack_dir: &str, unit: &str, job: JobId) -> Program {
    let dir = ShellWord::from(layout::logs_dir(stack_dir, unit));
    let mut p = Program::new();
    p.push(snippet!("cd {} 2>/dev/null || {{ ", dir));
    p.push(protocol::end());
    p.code(Code("exit 0; }\n"));
    p.push(snippet!("for f in {}; do\n  [ -f \"$f\" ] || continue\n  ", layout::log_patterns(job)));
    p.push(protocol::file(&Code("\"$f\""), &Code("\"$(wc -c <\"$f\")\"")));
    p.code(Code("done\n"));
    p.push(protocol::end());
    p
}

/// The logs of job `job` of `unit`: (file name, size in bytes).
pub fn list(cluster: &dyn Cluster, stack_dir: &str, unit: &str, job: JobId) -> Result<Vec<(String, u64)>, Error> {
    let replies = super::run(cluster, &list_program(stack_dir, unit, job))?;
    Ok(replies
        .iter()
        .filter_map(|r| match r {
            Reply::File { name, size } => Some((name.clone(), *size)),
            _ => None,
        })
        .collect())
}

/// The program that prints each file from a byte offset, after a header
/// line `==> name <==`.
pub fn fetch_program(stack_dir: &str, unit: &str, from: &[(String, u64)]) -> Program {
    let dir = ShellWord::from(layout::logs_dir(stack_dir, unit));
    let mut p = Program::new();
    for (name, offset) in from {
        let name = ShellWord::from(name);
        p.push(snippet!("printf '\\n==> %s <==\\n' {}; tail -c +{} {}/{}\n", name, offset + 1, dir, name));
    }
    p
}

/// The text of each file from its offset (0: from the start), with
/// headers; output as it is, not replies.
pub fn fetch(cluster: &dyn Cluster, stack_dir: &str, unit: &str, from: &[(String, u64)]) -> Result<String, Error> {
    if from.is_empty() {
        return Ok(String::new());
    }
    let out = cluster.run(fetch_program(stack_dir, unit, from).text().as_bytes())?;
    Ok(out.stdout_text())
}
