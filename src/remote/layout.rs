//! Where evalctl keeps things on the cluster, and the formats of the files
//! that jobs and programs share there.
//!
//! ```text
//! <output_dir>/<stack>/                 the stack directory ("$D" in programs)
//!   .evalctl/state.json                 recorded state (crate::state), written atomically by apply
//!   .evalctl/lock                       the stack lock: LockInfo as JSON, created by hard link
//!   <unit>/                             one directory per unit (a task's chain, a deployment)
//!     <script>.sbatch                   the job scripts apply wrote
//!     status                            one line, see below
//!     chain                             one line per event, see below
//!     chain.<serial>                    the chain of an earlier apply
//!     endpoint                          a deployment's address while it serves
//!     logs/slurm-<job>.out              Slurm's output of a job
//!     logs/server-<job>-*.log           model server logs
//!     logs/client-<job>.log             harness log
//!     artifacts/                        results (artifacts.<serial>: those of an earlier run)
//!       progress.json  results.yml      the harness's progress and results
//!     secrets/<group>.env               mode 0600, `export NAME='value'` lines
//! ```
//!
//! **Status line** (`<unit>/status`, replaced atomically by the job
//! runtime): `<state> <job id> [detail]`, state one of `running`,
//! `completed`, `failed`, `interrupted`, `stopped`. `cancel` writes
//! `stopped 0 cancelled`.
//!
//! **Chain line** (`<unit>/chain`, appended): `<job id> <event> <epoch>
//! [detail]`, event one of `start`, `end`, `submit`, `stop`. A line
//! `<job id> submit <epoch> <next job id>` names a link's successor; apply
//! writes `<job id> submit <epoch> apply` for each job it submits. `cancel`
//! writes `0 stop <epoch> cancelled`.
//!
//! **Job name and ownership tag.** evalctl keeps its ownership of a job in
//! the job's name (the user's `execution.sbatch_comment` is the job's
//! `--comment`, verbatim, and evalctl never reads it):
//!
//! ```text
//! [<subproject>.]evalctl:<stack>/<unit>/<role>[@<script hash>:<result hash>]
//! ```
//!
//! `evalctl:<stack>/<unit>/<role>` is the **tag** as rendered (the
//! `#SBATCH --job-name` line, and the name a job runtime gives the resume
//! links it queues); apply submits with `--job-name` the tag plus
//! `@<script hash>:<result hash>`, each hash shortened to 16 hex digits
//! ([`submit_name`]). `<subproject>.` (`execution.subproject`) comes first,
//! so that accounting lists a launcher user's label where the launcher puts
//! it. Stack, unit and subproject follow the name grammar
//! (`crate::config::names`: letters, digits, `.`, `_`, `-`), which has no
//! `:`, `/` or `@`, so the name splits one way only: the subproject ends
//! before the one `evalctl:`, the path has three parts, the hashes follow
//! the one `@`. [`parse_name`] accepts a name only when every part is well
//! formed. Slurm's accounting keeps 255 characters of a name
//! ([`MAX_JOB_NAME`]): a config whose longest name would be cut is refused
//! when it is loaded.
//!
//! The job runtime (src/render/lib.sh) writes status and chain lines; the
//! remote programs read them and `cancel` writes its own.

use crate::jobid::JobId;
use crate::render::{Role, TAG_PREFIX};
use crate::shell::{Code, ShellWord};

use super::encoding::{Snippet, snippet};

/// The stack's lock file, relative to the stack directory.
pub const LOCK: &str = ".evalctl/lock";
/// The stack's state file, relative to the stack directory.
pub const STATE: &str = ".evalctl/state.json";

/// Sets `D` (the stack directory) and `L` (its lock file).
pub fn stack_vars(stack_dir: &str) -> Snippet {
    snippet!("D={}\nL=\"$D/.evalctl/lock\"\n", ShellWord::from(stack_dir))
}

/// The state file, as a shell word (after [`stack_vars`]).
pub const STATE_PATH: Code = Code("\"$D/.evalctl/state.json\"");

/// Sets `evalctl_now` (epoch seconds), which [`mark_cancelled`] records.
pub const CANCEL_TIME: Code = Code("evalctl_now=${EPOCHSECONDS:-$(date +%s)}\n");

/// Marks the unit in directory `"$D"/<unit>` stopped by `cancel` at
/// `$evalctl_now` ([`CANCEL_TIME`]). Builtins only where the folder exists
/// (as it does for every unit apply submitted): a process per unit costs
/// seconds for a thousand units.
pub fn mark_cancelled(unit: &ShellWord) -> Snippet {
    snippet!(
        "{{ [ -d \"$D\"/{} ] || mkdir -p \"$D\"/{}; }} && printf 'stopped 0 cancelled\\n' >\"$D\"/{}/status\nprintf '%s stop %s cancelled\\n' 0 \"$evalctl_now\" >>\"$D\"/{}/chain\n",
        unit,
        unit,
        unit,
        unit
    )
}

/// A unit's log directory.
pub fn logs_dir(stack_dir: &str, unit: &str) -> String {
    format!("{stack_dir}/{unit}/logs")
}

/// Glob patterns (in the log directory) of the logs of one job.
pub fn log_patterns(job: JobId) -> Snippet {
    snippet!("slurm-{}.out server-{}-*.log client-{}.log", job, job, job)
}

/// The longest job name Slurm's accounting keeps whole (`sacct` cuts
/// longer ones; slurmctld refuses names over 1024 bytes).
pub const MAX_JOB_NAME: usize = 255;

/// What [`submit_name`] adds to a rendered name: `@`, 16 hex digits, `:`,
/// 16 hex digits.
pub const HASHES_LEN: usize = 34;

/// The name of a job as rendered: `[<subproject>.]evalctl:<stack>/<unit>/<role>`.
pub fn job_name(subproject: Option<&str>, stack: &str, unit: &str, role: Role) -> String {
    let sub = subproject.map(|s| format!("{s}.")).unwrap_or_default();
    format!("{sub}{TAG_PREFIX}{stack}/{unit}/{role}")
}

/// The name apply gives a job: the rendered name and both hashes, shortened
/// to 16 hex digits.
pub fn submit_name(name: &str, script_hash: &str, result_hash: &str) -> String {
    format!("{name}@{}:{}", short(script_hash), short(result_hash))
}

/// The first 16 hex digits of a hash (what job names carry).
pub fn short(hash: &str) -> &str {
    &hash[..hash.len().min(16)]
}

/// What a job name says: (stack, unit, role, script and result hashes, subproject).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tag {
    pub stack: String,
    pub unit: String,
    pub role: String,
    pub script_hash: Option<String>,
    pub result_hash: Option<String>,
    pub subproject: Option<String>,
}

/// Letters, digits, `.`, `_`, `-`, starting with a letter or digit: the
/// characters of the name grammar (lengths are bounded by the whole name).
fn name_part(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// Reads a job name: `Some` only when the whole name is one evalctl gives
/// (see the module documentation), every part well formed: name-grammar
/// subproject, stack and unit, a role evalctl renders, hashes of 16 hex
/// digits. Anything else (a user's job, a name cut by accounting, a
/// look-alike) is nobody's.
pub fn parse_name(name: &str) -> Option<Tag> {
    let at = name.find(TAG_PREFIX)?;
    let subproject = match at {
        0 => None,
        _ => {
            let sub = name[..at].strip_suffix('.')?;
            if !name_part(sub) {
                return None;
            }
            Some(sub.to_owned())
        }
    };
    let tag = &name[at + TAG_PREFIX.len()..];
    let (path, hashes) = match tag.split_once('@') {
        Some((p, h)) => (p, Some(h)),
        None => (tag, None),
    };
    let mut parts = path.split('/');
    let (stack, unit, role) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !name_part(stack) || !name_part(unit) {
        return None;
    }
    if ![Role::First, Role::Resume, Role::Server].iter().any(|r| r.as_str() == role) {
        return None;
    }
    let hex16 = |h: &str| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit());
    let (script_hash, result_hash) = match hashes {
        None => (None, None),
        Some(h) => match h.split_once(':') {
            Some((s, r)) if hex16(s) && hex16(r) => (Some(s.to_owned()), Some(r.to_owned())),
            _ => return None,
        },
    };
    Some(Tag {
        stack: stack.to_owned(),
        unit: unit.to_owned(),
        role: role.to_owned(),
        script_hash,
        result_hash,
        subproject,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let name = job_name(None, "st", "a", Role::First);
        assert_eq!(name, "evalctl:st/a/first");
        let t = submit_name(&name, "0123456789abcdef0123", "fedcba9876543210ffff");
        assert_eq!(t, "evalctl:st/a/first@0123456789abcdef:fedcba9876543210");
        let tag = parse_name(&t).unwrap();
        assert_eq!((tag.stack.as_str(), tag.unit.as_str(), tag.role.as_str()), ("st", "a", "first"));
        assert_eq!(tag.script_hash.as_deref(), Some("0123456789abcdef"));
        assert_eq!(tag.result_hash.as_deref(), Some("fedcba9876543210"));
        assert_eq!(tag.subproject, None);
        assert_eq!(parse_name("evalctl:st/a/resume").unwrap().result_hash, None);

        // A subproject comes first; one that looks like the prefix too.
        for sub in ["nemo-evaluator-launcher", "evalctl", "a.b_c-1", "evalctl.evalctl"] {
            for role in [Role::First, Role::Resume, Role::Server] {
                let name = job_name(Some(sub), "my.stack-1", "server.judge", role);
                let full = submit_name(&name, "00000000000000aa", "00000000000000bb");
                for n in [&name, &full] {
                    let tag = parse_name(n).unwrap_or_else(|| panic!("{n}"));
                    assert_eq!(tag.subproject.as_deref(), Some(sub), "{n}");
                    assert_eq!((tag.stack.as_str(), tag.unit.as_str()), ("my.stack-1", "server.judge"), "{n}");
                    assert_eq!(tag.role, role.as_str(), "{n}");
                }
            }
        }
        assert_eq!(
            job_name(Some("proj"), "st", "gsm8k", Role::Resume),
            "proj.evalctl:st/gsm8k/resume",
            "the launcher's label first"
        );
    }

    #[test]
    fn malformed_names_are_nobodys() {
        let long = format!("evalctl:st/a/first@0123456789abcdef:{}", "f".repeat(15));
        for bad in [
            "",
            "st.gsm8k",
            "st.gsm8k.resume",
            "no tag",
            "evalctl:st/a/first/x",
            "evalctl:st/a/boss",
            "evalctl:st//first",
            "evalctl:/a/first",
            "evalctl:st/a/first@zz:yy",
            "evalctl:st/a/first@0123456789abcdef",
            "evalctl:st/a/first@0123456789abcdef:0123456789abcdef:00",
            "evalctl:st/a/first@0123456789abcdef:0123456789abcdef@0123456789abcdef:0123456789abcdef",
            long.as_str(),
            // The subproject ends with `.`, is one name, and nothing else precedes the tag.
            "sub evalctl:st/a/first",
            "subevalctl:st/a/first",
            ".evalctl:st/a/first",
            "a b.evalctl:st/a/first",
            "x/y.evalctl:st/a/first",
            "evalctl:x/y/first.evalctl:st/a/first",
            "evalctl:st/a/first evalctl:st/a/first",
            "evalctl:st/a b/first",
            "evalctl:st/a/first ",
            " evalctl:st/a/first",
            "evalctl:st/a|b/first",
            "evalctl:st/../first",
            "evalctl:st/.hidden/first",
            "EVALCTL:st/a/first",
            "evalctl:st/a/First",
            "evalctl:st/é/first",
        ] {
            assert_eq!(parse_name(bad), None, "{bad:?}");
        }
    }
}
