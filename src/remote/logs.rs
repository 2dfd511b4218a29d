//! `logs`: list a job's log files with their sizes (one round trip), then
//! fetch what was added since the last look (one more, only when a file
//! grew). The files are in `<stack>/<unit>/logs/` ([`super::layout`]).

use crate::cluster::Cluster;
use crate::jobid::JobId;
use crate::shell::{Code, ShellWord};

use super::encoding::snippet;
use super::{Program, Reply, layout, protocol};
use crate::error::Error;

/// The program that lists the logs of job `job` in the log folders of
/// `units` (a pack's and its task's): `file` replies named
/// `<unit>/<file>`.
pub fn list_program(stack_dir: &str, units: &[&str], job: JobId) -> Program {
    let mut p = Program::new();
    for unit in units {
        let dir = ShellWord::from(layout::logs_dir(stack_dir, unit));
        p.push(snippet!(
            "if cd {} 2>/dev/null; then\n  for f in {}; do\n    [ -f \"$f\" ] || continue\n    ",
            dir,
            layout::log_patterns(job)
        ));
        p.push(protocol::file(&snippet!("{}/\"$f\"", ShellWord::from(*unit)), &Code("\"$(wc -c <\"$f\")\"")));
        p.code(Code("  done\nfi\n"));
    }
    p.push(protocol::end());
    p
}

/// The logs of job `job` in the folders of `units`: (`<unit>/<file>`, size
/// in bytes).
pub fn list(cluster: &dyn Cluster, stack_dir: &str, units: &[&str], job: JobId) -> Result<Vec<(String, u64)>, Error> {
    let replies = super::run(cluster, &list_program(stack_dir, units, job))?;
    Ok(replies
        .iter()
        .filter_map(|r| match r {
            Reply::File { name, size } => Some((name.clone(), *size)),
            _ => None,
        })
        .collect())
}

/// The program that prints each file (`<unit>/<file>`) from a byte offset,
/// after a header line `==> file <==`.
pub fn fetch_program(stack_dir: &str, from: &[(String, u64)]) -> Program {
    let mut p = Program::new();
    for (path, offset) in from {
        let (unit, name) = path.split_once('/').unwrap_or(("", path));
        let file = ShellWord::from(format!("{}/{name}", layout::logs_dir(stack_dir, unit)));
        p.push(snippet!("printf '\\n==> %s <==\\n' {}; tail -c +{} {}\n", ShellWord::from(name), offset + 1, file));
    }
    p
}

/// The text of each file from its offset (0: from the start), with
/// headers; output as it is, not replies.
pub fn fetch(cluster: &dyn Cluster, stack_dir: &str, from: &[(String, u64)]) -> Result<String, Error> {
    if from.is_empty() {
        return Ok(String::new());
    }
    let out = cluster.run(fetch_program(stack_dir, from).text().as_bytes())?;
    Ok(out.stdout_text())
}
