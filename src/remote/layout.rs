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
//!       progress.json  results.json
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
//! **Ownership tag** (the job's `--comment`): `evalctl:<stack>/<unit>/<role>`
//! as rendered, to which apply adds `@<script hash>:<result hash>`, each
//! shortened to 16 hex digits ([`submit_tag`]).
//!
//! The job runtime (src/render/lib.sh) writes status and chain lines; the
//! remote programs read them and `cancel` writes its own.

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

/// Marks the unit in directory `"$D"/<unit>` stopped by `cancel`.
pub fn mark_cancelled(unit: &ShellWord) -> Snippet {
    snippet!(
        "mkdir -p \"$D\"/{} && printf 'stopped 0 cancelled\\n' >\"$D\"/{}/status\nprintf '%s stop %s cancelled\\n' 0 \"$(date +%s)\" >>\"$D\"/{}/chain\n",
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
pub fn log_patterns(job: u64) -> Snippet {
    snippet!("slurm-{}.out server-{}-*.log client-{}.log", job, job, job)
}

/// The tag apply gives a job: hashes shortened to 16 hex digits.
pub fn submit_tag(comment: &str, script_hash: &str, result_hash: &str) -> String {
    format!("{comment}@{}:{}", short(script_hash), short(result_hash))
}

/// The first 16 hex digits of a hash (what job tags carry).
pub fn short(hash: &str) -> &str {
    &hash[..hash.len().min(16)]
}

/// What an ownership tag says: (unit, role, script and result hashes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tag {
    pub stack: String,
    pub unit: String,
    pub role: String,
    pub script_hash: Option<String>,
    pub result_hash: Option<String>,
}

/// Reads the ownership tag of a job's comment. The tag is always the
/// comment's last word (evalctl appends it after the user's comment, which
/// cannot hold a newline), so an `evalctl:` word a user wrote earlier in a
/// comment is never taken for one. Every part must be well formed: a role
/// evalctl renders, hashes of 16 hex digits.
pub fn parse_tag(comment: &str) -> Option<Tag> {
    let tag = comment.split_whitespace().last()?.strip_prefix(TAG_PREFIX)?;
    let (path, hashes) = match tag.split_once('@') {
        Some((p, h)) => (p, Some(h)),
        None => (tag, None),
    };
    let mut parts = path.split('/');
    let (stack, unit, role) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || stack.is_empty() || unit.is_empty() {
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
    Some(Tag { stack: stack.to_owned(), unit: unit.to_owned(), role: role.to_owned(), script_hash, result_hash })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip() {
        let t = submit_tag("evalctl:st/a/first", "0123456789abcdef0123", "fedcba9876543210ffff");
        assert_eq!(t, "evalctl:st/a/first@0123456789abcdef:fedcba9876543210");
        let tag = parse_tag(&format!("note {t}")).unwrap();
        assert_eq!((tag.stack.as_str(), tag.unit.as_str(), tag.role.as_str()), ("st", "a", "first"));
        assert_eq!(tag.script_hash.as_deref(), Some("0123456789abcdef"));
        assert_eq!(parse_tag("evalctl:st/a/resume").unwrap().result_hash, None);
        assert_eq!(parse_tag("no tag"), None);
        // Only the last word is a tag, and only a well-formed one.
        assert_eq!(parse_tag(&format!("{t} user words")), None, "a tag followed by words is a user's text");
        for bad in [
            "evalctl:st/a/first/x",
            "evalctl:st/a/boss",
            "evalctl:st//first",
            "evalctl:st/a/first@zz:yy",
            "evalctl:st/a/first@0123456789abcdef",
        ] {
            assert_eq!(parse_tag(bad), None, "{bad}");
        }
    }
}
