//! Apply: make the cluster match a plan, in a constant number of round
//! trips whatever the number of jobs.
//!
//! 1. (with the plan's refresh) take the stack lock: `lock` below;
//! 2. one program that checks it still holds the lock, cancels what the
//!    plan replaces (pending successors first), writes scripts and secrets
//!    files (mode 0600), submits every job *held* in topological order with
//!    real job ids in `--dependency`, releases them all at once, writes the
//!    state atomically and drops the lock.
//!
//! A failure while submitting cancels the jobs this apply submitted (they
//! are held, so none has started); a crash leaves held jobs that the next
//! plan sees as `held` and replaces, or released jobs that it adopts by
//! their ownership tags.

pub mod driver;
pub mod secrets;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::graph::Dep;
use crate::plan::refresh::{base64_encode, short, submit_tag};
use crate::plan::{Action, Observation, Plan, Unit};
use crate::render::shell::quote;
use crate::render::{Rendered, RenderedJob};
use crate::state::{Observed, State, UnitState};

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
}

/// This machine's name.
pub fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "localhost".into())
}

/// Program that takes the lock (breaking `break_id` first if it still holds
/// it), then refreshes. Prints `EVALCTL locked` or `EVALCTL lock-held <b64>`.
pub fn lock_program(stack_dir: &str, lock: &LockInfo, break_id: Option<&str>) -> String {
    let info = base64_encode(serde_json::to_string(lock).unwrap_or_default().as_bytes());
    let mut p = format!("D={}\nL=\"$D/.evalctl/lock\"\nmkdir -p \"$D/.evalctl\"\n", quote(stack_dir));
    if let Some(b) = break_id {
        p.push_str(&format!(
            "if grep -qF {} \"$L\" 2>/dev/null; then rm -f \"$L\"; fi\n",
            quote(&format!("\"id\":\"{b}\""))
        ));
    }
    // The lock file appears whole or not at all: written aside, then hard-linked
    // into place (`ln -T` fails when the name exists, whatever it is).
    p.push_str(&format!(
        "T=\"$L.new.$$\"\nprintf '%s' {info} | base64 -d >\"$T\"\nif ln -T \"$T\" \"$L\" 2>/dev/null; then\n  rm -f \"$T\"\n  echo 'EVALCTL locked'\nelse\n  rm -f \"$T\"\n  printf 'EVALCTL lock-held %s\\n' \"$(base64 -w0 <\"$L\" 2>/dev/null)\"\n  echo 'EVALCTL end'\n  exit 0\nfi\n"
    ));
    p
}

/// Id of a lock whose holder cannot be read (written by something else).
pub const UNKNOWN_HOLDER: &str = "unknown";

/// Program that drops the lock if `id` holds it (`unknown`: a lock whose
/// holder cannot be read).
pub fn unlock_program(stack_dir: &str, id: &str) -> String {
    let unknown = if id == UNKNOWN_HOLDER {
        "elif [ -e \"$L\" ] && ! grep -q '\"id\":' \"$L\" 2>/dev/null; then rm -rf \"$L\"; echo 'EVALCTL unlocked'\n"
    } else {
        ""
    };
    format!(
        "D={}\nL=\"$D/.evalctl/lock\"\nif [ -f \"$L\" ] && grep -qF {} \"$L\" 2>/dev/null; then rm -f \"$L\"; echo 'EVALCTL unlocked'\n{unknown}else echo 'EVALCTL not-held'; fi\necho 'EVALCTL end'\n",
        quote(stack_dir),
        quote(&format!("\"id\":\"{id}\""))
    )
}

/// Program that cancels the chains of `units` (pending successors first,
/// then the rest), waits until they are gone, and marks each unit
/// `stopped cancelled` so nothing (a shared server, a plan) waits for it.
pub fn cancel_program(stack_dir: &str, units: &[(&String, &Observation)], lock_id: &str) -> String {
    let mut p = format!(
        "D={}\nif ! grep -qF {} \"$D/.evalctl/lock\" 2>/dev/null; then echo 'EVALCTL lock-lost'; echo 'EVALCTL end'; exit 0; fi\n",
        quote(stack_dir),
        quote(&format!("\"id\":\"{lock_id}\""))
    );
    if units.is_empty() {
        p.push_str("echo 'EVALCTL end'\n");
        return p;
    }
    // live_jobs lists each unit's pending successors first.
    let mut first: Vec<String> = vec![];
    let mut rest: Vec<String> = vec![];
    for (_, o) in units {
        let (succ, others) = o.live_jobs.split_at(o.live_jobs.len().saturating_sub(1));
        first.extend(succ.iter().map(u64::to_string));
        rest.extend(others.iter().map(u64::to_string));
    }
    if !first.is_empty() {
        p.push_str(&format!("scancel {}\n", first.join(" ")));
    }
    if !rest.is_empty() {
        p.push_str(&format!("scancel {}\n", rest.join(" ")));
    }
    let all: Vec<String> = first.iter().chain(&rest).cloned().collect();
    if !all.is_empty() {
        p.push_str(&format!(
            "for _ in $(seq 1 60); do [ -z \"$(squeue -h -j {} 2>/dev/null)\" ] && break; sleep 1; done\n",
            all.join(",")
        ));
    }
    for (u, _) in units {
        p.push_str(&format!(
            "mkdir -p \"$D\"/{u} && printf 'stopped 0 cancelled\\n' >\"$D\"/{u}/status\nprintf '%s stop %s cancelled\\n' 0 \"$(date +%s)\" >>\"$D\"/{u}/chain\nprintf 'EVALCTL cancelled-unit %s\\n' {u}\n",
            u = quote(u)
        ));
    }
    p.push_str("echo 'EVALCTL end'\n");
    p
}

/// Reads `EVALCTL lock-held` from a program's output: the holder, or an
/// `unknown` holder when the lock file cannot be read.
pub fn lock_holder(stdout: &str) -> Option<LockInfo> {
    let line = stdout.lines().find_map(|l| l.strip_prefix("EVALCTL lock-held "))?;
    Some(crate::plan::refresh::base64_decode(line.trim()).and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_else(
        || LockInfo {
            id: UNKNOWN_HOLDER.into(),
            who: "unknown".into(),
            host: "unknown".into(),
            pid: 0,
            when: 0,
            command: "(the lock file cannot be read)".into(),
        },
    ))
}

/// Secrets files of one apply: per job directory and group, `NAME=value` pairs.
pub type SecretValues = BTreeMap<(String, String), Vec<(String, String)>>;

/// What the apply program did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// (unit, role, job id) in submission order.
    pub submitted: Vec<(String, String, u64)>,
    pub cancelled: Vec<u64>,
    pub updated: Vec<String>,
    pub error: Option<String>,
    pub lock_lost: bool,
}

/// Sets shell variable `name` to exactly `content` with builtins only: a
/// quoted here-document read by `read` (its delimiter is derived from the
/// content and checked not to occur in it; base64 otherwise).
fn raw_var(name: &str, content: &str) -> String {
    let digest = sha2::Sha256::digest(content.as_bytes());
    let delim = format!("EVALCTL_{}", crate::render::hex(&digest[..8]));
    let clash = content.lines().any(|l| l == delim);
    if clash || content.contains('\0') {
        return format!("{name}=$({}printf x)\n{name}=${{{name}%x}}\n", heredoc(content.as_bytes()));
    }
    format!("IFS= read -r -d '' {name} <<'{delim}'\n{content}\n{delim}\n{name}=${{{name}%$'\\n'}}\n")
}

/// A script cut around the shared runtime: (before, after).
fn split_runtime(script: &str) -> (&str, Option<&str>) {
    match script.find(crate::render::RUNTIME) {
        Some(i) => (&script[..i], Some(&script[i + crate::render::RUNTIME.len()..])),
        None => (script, None),
    }
}

fn heredoc(data: &[u8]) -> String {
    let b64 = base64_encode(data);
    let mut s = String::with_capacity(b64.len() + b64.len() / 76 + 32);
    s.push_str("base64 -d <<'EVALCTL_B64'\n");
    for chunk in b64.as_bytes().chunks(76) {
        s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        s.push('\n');
    }
    s.push_str("EVALCTL_B64\n");
    s
}

/// Builds the apply program and the state it records (job ids filled in
/// remotely).
pub struct ApplyProgram {
    pub text: String,
    /// Units whose jobs are submitted, in order (index = placeholder number).
    pub submitting: Vec<String>,
}

/// Everything apply needs besides the cluster.
pub struct Inputs<'a> {
    pub plan: &'a Plan,
    pub rendered: &'a Rendered,
    pub units: &'a [Unit<'a>],
    pub observations: &'a BTreeMap<String, Observation>,
    pub state: &'a State,
    pub secrets: &'a SecretValues,
    pub lock_id: &'a str,
    pub now: u64,
}

/// The new state, with `@@J<n>@@` where unit n's job ids go.
pub fn next_state(inp: &Inputs<'_>, submitting: &[String]) -> String {
    let mut state = inp.state.clone();
    state.stack = inp.plan.stack.clone();
    state.serial = inp.plan.serial + 1;
    if state.created == 0 {
        state.created = inp.now;
    }
    state.runtime = crate::render::runtime_digest();
    for c in &inp.plan.changes {
        match c.action {
            Action::Cancel => {
                state.units.remove(&c.unit);
            }
            _ => {
                let Some(u) = inp.units.iter().find(|u| u.id == c.unit) else { continue };
                let prev = state.units.get(&c.unit).cloned().unwrap_or_default();
                let submits = c.action.submits();
                let keep_old =
                    c.action == Action::None && prev.script_hash.is_empty() && c.observed != Observed::Absent;
                let entry = UnitState {
                    kind: u.kind,
                    // An adopted unit (state lost) keeps what its tags said.
                    script_hash: if keep_old { prev.script_hash.clone() } else { u.script_hash.clone() },
                    result_hash: if keep_old { prev.result_hash.clone() } else { u.result_hash.clone() },
                    scripts: u.scripts(),
                    jobs: if submits { vec![] } else { prev.jobs.clone() },
                    attempts: c.attempts.max(if submits { 1 } else { 0 }),
                    observed: if submits { Observed::Pending } else { c.observed },
                    serial: if submits { state.serial } else { prev.serial },
                };
                state.units.insert(c.unit.clone(), entry);
            }
        }
    }
    let mut text = state.to_text();
    for (n, unit) in submitting.iter().enumerate() {
        // `"jobs": []` of this unit becomes a placeholder the program fills.
        let key = format!("\"{}\": {{", unit.replace('\\', "\\\\").replace('"', "\\\""));
        if let Some(start) = text.find(&key)
            && let Some(rel) = text[start..].find("\"jobs\": []")
        {
            let at = start + rel;
            text.replace_range(at..at + "\"jobs\": []".len(), &format!("\"jobs\": [@@J{n}@@]"));
        }
    }
    text
}

/// The remote program of one apply.
pub fn program(inp: &Inputs<'_>) -> ApplyProgram {
    let plan = inp.plan;
    let mut p = String::new();
    p.push_str(&format!(
        "D={}\nL=\"$D/.evalctl/lock\"\nSERIAL={}\nSUBMITTED=()\n",
        quote(&plan.stack_dir),
        plan.serial + 1
    ));
    p.push_str(&format!(
        "if ! grep -qF {} \"$L\" 2>/dev/null; then echo 'EVALCTL lock-lost'; echo 'EVALCTL end'; exit 0; fi\n",
        quote(&format!("\"id\":\"{}\"", inp.lock_id))
    ));
    p.push_str(
        r#"evalctl_abort() {
  printf 'EVALCTL error %s\n' "$1"
  if [ ${#SUBMITTED[@]} -gt 0 ]; then scancel "${SUBMITTED[@]}" 2>/dev/null; printf 'EVALCTL cancelled-own %s\n' "${SUBMITTED[*]}"; fi
  rm -f "$L"
  echo 'EVALCTL end'
  exit 0
}
evalctl_write() { printf '%s' "$2" >"$1" || evalctl_abort "cannot write $1"; }
evalctl_write_atomic() { printf '%s' "$2" >"$1.tmp.$$" && mv -f "$1.tmp.$$" "$1" || evalctl_abort "cannot write $1"; }
"#,
    );

    // 1. Cancel what is replaced or removed: pending successors come first in each list.
    let mut cancel: Vec<u64> = vec![];
    for c in &plan.changes {
        if matches!(c.action, Action::Cancel | Action::Replace | Action::Rerun | Action::Retry) {
            cancel.extend(&c.cancel_jobs);
        }
    }
    if !cancel.is_empty() {
        let ids: Vec<String> = cancel.iter().map(u64::to_string).collect();
        p.push_str(&format!(
            "scancel {} 2>/dev/null\nprintf 'EVALCTL cancelled %s\\n' {}\n",
            ids.join(" "),
            quote(&ids.join(" "))
        ));
        // Cancelled work may still be writing; wait (bounded) until it is gone.
        p.push_str(&format!(
            "for _ in $(seq 1 60); do [ -z \"$(squeue -h -j {} -t running,completing,configuring 2>/dev/null)\" ] && break; sleep 1; done\n",
            ids.join(",")
        ));
    }

    // 2. Files: scripts of every unit that submits or updates, secrets of submitting ones.
    // Written with shell builtins from here-documents (no process per file);
    // the runtime every script carries is sent once.
    let submitting: Vec<String> = plan.changes.iter().filter(|c| c.action.submits()).map(|c| c.unit.clone()).collect();
    let updating: Vec<String> =
        plan.changes.iter().filter(|c| c.action == Action::Update).map(|c| c.unit.clone()).collect();
    let writing: Vec<&crate::plan::Change> =
        plan.changes.iter().filter(|c| c.action.submits() || c.action == Action::Update).collect();
    if !writing.is_empty() {
        p.push_str(&raw_var("EVALCTL_RUNTIME", crate::render::RUNTIME));
        p.push_str(
            "umask 022
",
        );
        let dirs: Vec<String> = writing
            .iter()
            .filter_map(|c| inp.units.iter().find(|u| u.id == c.unit))
            .filter_map(|u| u.jobs.first().map(|j| quote(&j.dir)))
            .flat_map(|d| [format!("{d}/logs"), format!("{d}/artifacts")])
            .collect();
        for chunk in dirs.chunks(256) {
            p.push_str(&format!("mkdir -p {} || evalctl_abort 'cannot create the job directories'\n", chunk.join(" ")));
        }
    }
    for c in writing {
        let Some(u) = inp.units.iter().find(|u| u.id == c.unit) else { continue };
        let Some(dir) = u.jobs.first().map(|j| j.dir.clone()) else { continue };
        p.push_str(&format!("U={}\n", quote(&dir)));
        if c.action.submits() {
            if c.action == Action::Rerun {
                // Old results are kept beside the new ones.
                p.push_str("if [ -n \"$(ls -A \"$U/artifacts\" 2>/dev/null)\" ]; then mv \"$U/artifacts\" \"$U/artifacts.$SERIAL\" && mkdir -p \"$U/artifacts\"; fi\n");
            }
            p.push_str("if [ -f \"$U/chain\" ]; then mv -f \"$U/chain\" \"$U/chain.$SERIAL\"; fi\nif [ -e \"$U/status\" ] || [ -e \"$U/endpoint\" ]; then rm -f \"$U/status\" \"$U/endpoint\"; fi\n");
        }
        // A running job may read these (update): replace them atomically.
        let write = if c.action == Action::Update { "evalctl_write_atomic" } else { "evalctl_write" };
        for j in &u.jobs {
            let (head, tail) = split_runtime(&j.script);
            p.push_str(&raw_var("H", head));
            match tail {
                Some(t) => {
                    p.push_str(&raw_var("T", t));
                    p.push_str(&format!("{write} \"$U\"/{} \"$H$EVALCTL_RUNTIME$T\"\n", quote(&j.script_name)));
                }
                None => p.push_str(&format!("{write} \"$U\"/{} \"$H\"\n", quote(&j.script_name))),
            }
        }
        if c.action.submits() {
            let groups: Vec<(&String, &Vec<(String, String)>)> =
                inp.secrets.iter().filter(|((d, _), _)| *d == dir).map(|((_, g), v)| (g, v)).collect();
            for (group, values) in groups {
                p.push_str(&raw_var("S", &crate::render::secrets_file(values)));
                p.push_str(&format!(
                    "( umask 077 && mkdir -p \"$U/secrets\" && chmod 0700 \"$U/secrets\" && printf '%s' \"$S\" >\"$U/secrets/\"{} && chmod 0600 \"$U/secrets/\"{} ) || evalctl_abort 'cannot write a secrets file'\nS=\n",
                    quote(&format!("{group}.env")),
                    quote(&format!("{group}.env"))
                ));
            }
        }
    }
    for u in &updating {
        p.push_str(&format!("printf 'EVALCTL updated %s\\n' {}\n", quote(u)));
    }

    // 3. Submit held, in topological order, with real ids in --dependency.
    let submit_set: std::collections::BTreeSet<&str> = submitting.iter().map(String::as_str).collect();
    let mut var_of: BTreeMap<String, String> = BTreeMap::new();
    for (n, job) in inp.rendered.jobs.iter().enumerate() {
        if !submit_set.contains(job.unit.as_str()) {
            continue;
        }
        let Some(unit) = inp.units.iter().find(|u| u.id == job.unit) else { continue };
        let var = format!("J{n}");
        let mut deps: Vec<String> = vec![];
        // A resume link finds the job it resumes in the chain file (never in
        // its environment: `--export` on the command line would override the
        // user's `sbatch_extra_flags.export`).
        let mut predecessor = None;
        for (dep_id, how) in &job.deps {
            let id_expr = match var_of.get(dep_id) {
                Some(v) => format!("${v}"),
                None => match live_job_of(inp, dep_id) {
                    Some(id) => id.to_string(),
                    // A dependency that neither runs nor is submitted now: no wait.
                    None => continue,
                },
            };
            deps.push(format!("{}:{id_expr}", how.slurm()));
            if *how == Dep::AfterNotOk {
                predecessor = Some(id_expr.clone());
            }
        }
        let dep = if deps.is_empty() { String::new() } else { format!(" --dependency={}", deps.join(",")) };
        let tag = submit_tag(&job.comment, &unit.script_hash, &unit.result_hash);
        let kill = if predecessor.is_some() { " --kill-on-invalid-dep=yes" } else { "" };
        let successor = match &predecessor {
            Some(prev) => format!(
                "printf '%s submit %s %s\\n' \"{prev}\" \"${{EPOCHSECONDS:-$(date +%s)}}\" \"${var}\" >>{}/chain\n",
                quote(&job.dir)
            ),
            None => String::new(),
        };
        p.push_str(&format!(
            "{var}=$(cd {dir} && sbatch --parsable --hold --comment={tag}{dep}{kill} {script} 2>&1) && {var}=${{{var}%%;*}} && [[ ${var} =~ ^[0-9]+$ ]] || evalctl_abort \"sbatch of {id} failed: ${var}\"\nSUBMITTED+=(\"${var}\")\nprintf '%s submit %s apply\\n' \"${var}\" \"${{EPOCHSECONDS:-$(date +%s)}}\" >>{dir}/chain\n{successor}printf 'EVALCTL submitted %s %s %s\\n' {unit} {role} \"${var}\"\n",
            dir = quote(&job.dir),
            tag = quote(&tag),
            script = quote(&job.script_name),
            id = job.id,
            unit = quote(&job.unit),
            role = job.role.as_str(),
        ));
        var_of.insert(job.id.clone(), var);
    }

    // 4. Release them together.
    if !var_of.is_empty() {
        p.push_str("if ! out=$(scontrol release \"$(IFS=,; echo \"${SUBMITTED[*]}\")\" 2>&1); then evalctl_abort \"release failed: $out\"; fi\necho 'EVALCTL released'\n");
    }

    // 5. State, with this apply's job ids, written atomically; then unlock.
    let state_text = next_state(inp, &submitting);
    p.push_str(&raw_var("STATE", &state_text));
    for (n, unit) in submitting.iter().enumerate() {
        let vars: Vec<String> = inp
            .rendered
            .jobs
            .iter()
            .filter(|j| &j.unit == unit)
            .filter_map(|j| var_of.get(&j.id))
            .map(|v| format!("${v}"))
            .collect();
        p.push_str(&format!("STATE=${{STATE//@@J{n}@@/{}}}\n", vars.join(",")));
    }
    p.push_str("evalctl_write_atomic \"$D/.evalctl/state.json\" \"$STATE\"\n");
    p.push_str("echo 'EVALCTL state-written'\nrm -f \"$L\"\necho 'EVALCTL end'\n");
    ApplyProgram { text: p, submitting }
}

/// The first live job of a unit (a deployment other jobs wait for).
fn live_job_of(inp: &Inputs<'_>, job_id: &str) -> Option<u64> {
    let unit = inp.rendered.jobs.iter().find(|j| j.id == job_id).map(|j| j.unit.as_str())?;
    let obs = inp.observations.get(unit)?;
    if !obs.observed.is_live() {
        return None;
    }
    obs.live_jobs.iter().copied().min()
}

/// Reads what the apply program printed.
pub fn parse_outcome(stdout: &str) -> Outcome {
    let mut o = Outcome::default();
    for line in stdout.lines() {
        let Some(rest) = line.strip_prefix("EVALCTL ") else { continue };
        let (kind, data) = rest.split_once(' ').unwrap_or((rest, ""));
        match kind {
            "submitted" => {
                let f: Vec<&str> = data.split(' ').collect();
                if let [unit, role, id] = f.as_slice()
                    && let Ok(id) = id.parse()
                {
                    o.submitted.push(((*unit).to_owned(), (*role).to_owned(), id));
                }
            }
            "cancelled" => o.cancelled.extend(data.split(' ').filter_map(|x| x.parse::<u64>().ok())),
            "updated" => o.updated.push(data.to_owned()),
            "error" => o.error = Some(data.to_owned()),
            "lock-lost" => o.lock_lost = true,
            _ => {}
        }
    }
    o
}

/// The state as the program wrote it: `next_state` with the submitted ids.
pub fn recorded_state(inp: &Inputs<'_>, submitting: &[String], outcome: &Outcome) -> Result<State, String> {
    let mut text = next_state(inp, submitting);
    for (n, unit) in submitting.iter().enumerate() {
        let ids: Vec<String> =
            outcome.submitted.iter().filter(|(u, _, _)| u == unit).map(|(_, _, id)| id.to_string()).collect();
        text = text.replace(&format!("@@J{n}@@"), &ids.join(","));
    }
    State::parse(&text)
}

/// Short form of a hash for messages.
pub fn short_hash(h: &str) -> &str {
    short(h)
}

/// Jobs of a rendered unit, for messages.
pub fn jobs_of<'a>(rendered: &'a Rendered, unit: &str) -> Vec<&'a RenderedJob> {
    rendered.jobs.iter().filter(|j| j.unit == unit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_kills_pending_successors_before_running_links() {
        let (a, b, c) = ("gsm8k".to_owned(), "mmlu".to_owned(), "done".to_owned());
        let running = Observation { live_jobs: vec![12, 11], ..Default::default() };
        let pending_only = Observation { live_jobs: vec![21], ..Default::default() };
        let ended = Observation::default();
        let p = cancel_program("/s", &[(&a, &running), (&b, &pending_only), (&c, &ended)], "L");
        let lines: Vec<&str> = p.lines().filter(|l| l.starts_with("scancel")).collect();
        assert_eq!(lines, ["scancel 12", "scancel 11 21"], "{p}");
        assert!(p.contains("squeue -h -j 12,11,21"), "{p}");
        for u in ["gsm8k", "mmlu", "done"] {
            assert!(p.contains(&format!("cancelled-unit %s\\n' {u}")), "{u} is marked: {p}");
        }
        // Nothing live: no bare `scancel`, no wait.
        let p = cancel_program("/s", &[(&c, &ended)], "L");
        assert!(!p.contains("scancel") && !p.contains("squeue"), "{p}");
    }
}
