//! The stack lock: one file (`<stack>/.evalctl/lock`, see [`super::layout`])
//! that apply and cancel hold while they change a stack, so two of them
//! never interleave. Taken in the same round trip as the refresh that
//! precedes a change; dropped by the apply program itself, or by [`release`].

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cluster::Cluster;
use crate::shell::{Code, ShellWord};

use super::encoding::{Snippet, base64_decode, base64_encode, snippet};
use super::refresh::{self, Refreshed};
use super::{Program, Replies, Reply, layout, protocol};
use crate::error::Error;

/// Who holds a stack's lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub id: String,
    pub who: String,
    pub host: String,
    pub pid: u32,
    /// Unix time it was taken.
    pub when: u64,
    pub command: String,
}

impl LockInfo {
    /// A lock for this process.
    pub fn mine(command: &str) -> LockInfo {
        let when = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let pid = std::process::id();
        let host = local_hostname();
        let who = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let id = format!("{:08x}{:08x}", pid, nanos ^ (when as u32));
        LockInfo { id, who, host, pid, when, command: command.to_owned() }
    }

    /// True when the holder is a process of this machine that no longer exists.
    pub fn holder_is_gone(&self) -> bool {
        self.host == local_hostname() && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }

    pub fn describe(&self) -> String {
        format!(
            "lock {} held by {}@{} (pid {}) since {} running `{}`",
            self.id, self.who, self.host, self.pid, self.when, self.command
        )
    }

    /// The holder of a lock file evalctl did not write.
    fn unknown() -> LockInfo {
        LockInfo {
            id: UNKNOWN_HOLDER.into(),
            who: "unknown".into(),
            host: "unknown".into(),
            pid: 0,
            when: 0,
            command: "(the lock file cannot be read)".into(),
        }
    }
}

/// This machine's name.
pub fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "localhost".into())
}

/// Id of a lock whose holder cannot be read (written by something else).
pub const UNKNOWN_HOLDER: &str = "unknown";

/// What the lock file of lock `id` contains (a fixed-string grep pattern).
fn id_pattern(id: &str) -> ShellWord {
    ShellWord::from(format!("\"id\":\"{id}\""))
}

/// Stops the program (`lock-lost`, `end`) unless lock `id` still holds
/// the stack of `"$D"`.
pub fn check_held(id: &str) -> Snippet {
    let mut s = snippet!("if ! grep -qF {} \"$D/.evalctl/lock\" 2>/dev/null; then ", id_pattern(id));
    s.push(protocol::lock_lost());
    s.push(protocol::end());
    s.code(Code("exit 0; fi\n"));
    s
}

/// Takes the lock (breaking `break_id` first if it still holds it). Stops
/// the program with `lock-held` when someone else holds it, goes on after
/// `locked` otherwise.
pub fn lock_program(stack_dir: &str, lock: &LockInfo, break_id: Option<&str>) -> Program {
    let info = ShellWord::from(base64_encode(serde_json::to_string(lock).unwrap_or_default().as_bytes()));
    let mut p = Program::new();
    p.push(layout::stack_vars(stack_dir));
    p.code(Code("mkdir -p \"$D/.evalctl\"\n"));
    if let Some(b) = break_id {
        p.push(snippet!("if grep -qF {} \"$L\" 2>/dev/null; then rm -f \"$L\"; fi\n", id_pattern(b)));
    }
    // The lock file appears whole or not at all: written aside, then hard-linked
    // into place (`ln -T` fails when the name exists, whatever it is).
    p.push(snippet!("T=\"$L.new.$$\"\nprintf '%s' {} | base64 -d >\"$T\"\n", info));
    p.code(Code("if ln -T \"$T\" \"$L\" 2>/dev/null; then\n  rm -f \"$T\"\n  "));
    p.push(protocol::locked());
    p.code(Code("else\n  rm -f \"$T\"\n  "));
    p.push(protocol::lock_held(&Code("\"$(base64 -w0 <\"$L\" 2>/dev/null)\"")));
    p.code(Code("  "));
    p.push(protocol::end());
    p.code(Code("  exit 0\nfi\n"));
    p
}

/// Drops the lock if `id` holds it (`unknown`: a lock whose holder cannot
/// be read): `unlocked`, or `not-held`.
pub fn unlock_program(stack_dir: &str, id: &str) -> Program {
    let mut p = Program::new();
    p.push(layout::stack_vars(stack_dir));
    p.push(snippet!("if [ -f \"$L\" ] && grep -qF {} \"$L\" 2>/dev/null; then rm -f \"$L\"; ", id_pattern(id)));
    p.push(protocol::unlocked());
    if id == UNKNOWN_HOLDER {
        p.code(Code("elif [ -e \"$L\" ] && ! grep -q '\"id\":' \"$L\" 2>/dev/null; then rm -rf \"$L\"; "));
        p.push(protocol::unlocked());
    }
    p.code(Code("else "));
    p.push(protocol::not_held());
    p.code(Code("fi\n"));
    p.push(protocol::end());
    p
}

/// The holder named by a `lock-held` reply, if any (an `unknown` holder
/// when the lock file cannot be read).
pub fn holder(replies: &Replies) -> Option<LockInfo> {
    replies.iter().find_map(|r| match r {
        Reply::LockHeld(b64) => Some(
            base64_decode(b64.trim()).and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_else(LockInfo::unknown),
        ),
        _ => None,
    })
}

/// Takes the stack lock and refreshes, in one round trip per attempt.
/// Waits up to `timeout` for a lock held by a live holder; breaks a lock
/// whose holder is provably gone (a dead process of this machine),
/// telling `on_break` first. `probes`: job shapes to ask `sbatch
/// --test-only` about in the same round trip (`crate::remote::probe`).
// What the one round trip needs, each its own plain value.
#[allow(clippy::too_many_arguments)]
pub fn acquire(
    cluster: &dyn Cluster,
    stack_dir: &str,
    stack: &str,
    since: u64,
    lock: &LockInfo,
    timeout: Option<Duration>,
    on_break: &dyn Fn(&LockInfo),
    probes: &[crate::plan::feasibility::Shape],
) -> Result<Refreshed, Error> {
    let start = Instant::now();
    let mut break_id: Option<String> = None;
    loop {
        let prog = lock_program(stack_dir, lock, break_id.as_deref())
            .then(super::probe::program(probes))
            .then(refresh::program(stack_dir, stack, since));
        let replies = super::run(cluster, &prog)?;
        match holder(&replies) {
            None => return Ok(refresh::read(&replies, stack)?),
            Some(holder) => {
                if holder.holder_is_gone() && break_id.as_deref() != Some(holder.id.as_str()) {
                    on_break(&holder);
                    break_id = Some(holder.id.clone());
                    continue;
                }
                match timeout {
                    Some(t) if start.elapsed() < t => std::thread::sleep(Duration::from_secs(2)),
                    _ => return Err(Error::Locked(holder)),
                }
            }
        }
    }
}

/// Drops the lock if `id` holds it; true when it did. One round trip.
pub fn release(cluster: &dyn Cluster, stack_dir: &str, id: &str) -> Result<bool, Error> {
    let replies = super::run(cluster, &unlock_program(stack_dir, id))?;
    Ok(replies.contains(&Reply::Unlocked))
}
