//! Refresh: one remote program that reports everything a plan needs, in
//! one round trip, whatever the number of jobs: the recorded state, each
//! unit's status file, one `squeue` and at most one `sacct` call.
//!
//! The program prints lines `EVALCTL <kind> <data>`; [`parse`] reads them
//! and [`observe`] turns them into one [`Observation`] per unit.

use std::collections::BTreeMap;

use super::Observation;
use crate::render::TAG_PREFIX;
use crate::render::shell::quote;
use crate::state::{Observed, State};

/// A job of the stack as Slurm lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub id: u64,
    pub state: String,
    pub reason: String,
    pub unit: String,
    pub role: String,
    pub script_hash: Option<String>,
    pub result_hash: Option<String>,
}

/// What the refresh program reported.
#[derive(Clone, Debug, Default)]
pub struct Refreshed {
    pub user: String,
    pub state: Option<State>,
    /// First line of each unit's `status` file.
    pub statuses: BTreeMap<String, String>,
    /// The stack's jobs known to slurmctld (pending, running, recently ended).
    pub jobs: Vec<Job>,
    /// Final states from accounting, by job id (empty without accounting).
    pub accounting: BTreeMap<u64, String>,
    pub squeue_error: Option<String>,
    pub sacct_available: bool,
    /// With [`detail_program`]: each unit's chain file, progress and results.
    pub chains: BTreeMap<String, Vec<String>>,
    pub progress: BTreeMap<String, String>,
    pub results: std::collections::BTreeSet<String>,
}

/// The shell program that gathers the stack's state.
pub fn program(stack_dir: &str, stack: &str, since_epoch: u64) -> String {
    let since = if since_epoch > 0 { format!("\"$(date -d @{since_epoch} +%FT%T)\"") } else { "now-7days".into() };
    format!(
        r#"D={dir}
S={stack}
U=$(id -un)
printf 'EVALCTL user %s\n' "$U"
if [ -f "$D/.evalctl/state.json" ]; then printf 'EVALCTL state %s\n' "$(base64 -w0 <"$D/.evalctl/state.json")"; fi
for f in "$D"/*/status; do
  [ -f "$f" ] || continue
  u=${{f%/status}}
  printf 'EVALCTL status %s %s\n' "${{u##*/}}" "$(head -n 1 "$f")"
done
if out=$(squeue -h -t all -u "$U" -o '%i|%T|%r|%k' 2>&1); then
  printf '%s\n' "$out" | grep -F "{tag}$S/" | sed 's/^/EVALCTL job /'
else
  printf 'EVALCTL squeue-error %s\n' "$(printf '%s' "$out" | head -n 1)"
fi
if out=$(sacct -X -n -P -u "$U" -S {since} -o JobID,JobName,State 2>/dev/null); then
  printf '%s\n' "$out" | grep -F "|$S." | sed 's/^/EVALCTL acct /'
  echo 'EVALCTL sacct ok'
fi
echo 'EVALCTL end'
"#,
        dir = quote(stack_dir),
        stack = quote(stack),
        tag = TAG_PREFIX,
    )
}

/// Extra lines for `status`: every unit's chain file, the harness's
/// progress, and whether results exist. Runs before [`program`].
pub fn detail_program(stack_dir: &str) -> String {
    format!(
        r#"for d in {dir}/*/; do
  u=${{d%/}}; u=${{u##*/}}
  if [ -f "$d/chain" ]; then while IFS= read -r l; do printf 'EVALCTL chain %s %s\n' "$u" "$l"; done <"$d/chain"; fi
  if [ -f "$d/artifacts/progress.json" ]; then printf 'EVALCTL progress %s %s\n' "$u" "$(head -c 4096 "$d/artifacts/progress.json" | tr -d '\n')"; fi
  if [ -f "$d/artifacts/results.json" ]; then printf 'EVALCTL results %s\n' "$u"; fi
done
"#,
        dir = quote(stack_dir)
    )
}

/// Reads the program's output.
pub fn parse(stdout: &str) -> Result<Refreshed, String> {
    let mut r = Refreshed::default();
    let mut ended = false;
    for line in stdout.lines() {
        let Some(rest) = line.strip_prefix("EVALCTL ") else { continue };
        let (kind, data) = rest.split_once(' ').unwrap_or((rest, ""));
        match kind {
            "user" => r.user = data.to_owned(),
            "state" => {
                let bytes = base64_decode(data).ok_or("the state file could not be transferred")?;
                let text = String::from_utf8(bytes).map_err(|_| "the state file is not UTF-8")?;
                r.state = Some(State::parse(&text)?);
            }
            "status" => {
                if let Some((unit, st)) = data.split_once(' ') {
                    r.statuses.insert(unit.to_owned(), st.trim().to_owned());
                }
            }
            "job" => {
                if let Some(j) = parse_job(data) {
                    r.jobs.push(j);
                }
            }
            "acct" => {
                let f: Vec<&str> = data.split('|').collect();
                if let (Some(id), Some(state)) = (f.first().and_then(|i| i.parse().ok()), f.get(2)) {
                    r.accounting.insert(id, state.split(' ').next().unwrap_or_default().to_owned());
                }
            }
            "sacct" => r.sacct_available = true,
            "chain" => {
                if let Some((unit, l)) = data.split_once(' ') {
                    r.chains.entry(unit.to_owned()).or_default().push(l.to_owned());
                }
            }
            "progress" => {
                if let Some((unit, p)) = data.split_once(' ') {
                    r.progress.insert(unit.to_owned(), p.to_owned());
                }
            }
            "results" => {
                r.results.insert(data.trim().to_owned());
            }
            "squeue-error" => r.squeue_error = Some(data.to_owned()),
            "end" => ended = true,
            _ => {}
        }
    }
    if !ended {
        return Err("the refresh program stopped before its end".into());
    }
    Ok(r)
}

/// `ID|STATE|REASON|COMMENT` with the ownership tag in the comment.
fn parse_job(data: &str) -> Option<Job> {
    let mut f = data.splitn(4, '|');
    let id = f.next()?.trim().parse().ok()?;
    let state = f.next()?.to_owned();
    let reason = f.next()?.to_owned();
    let comment = f.next()?;
    let tag = comment.split_whitespace().rev().find_map(|t| t.strip_prefix(TAG_PREFIX))?;
    let (path, hashes) = match tag.split_once('@') {
        Some((p, h)) => (p, Some(h)),
        None => (tag, None),
    };
    let mut parts = path.splitn(3, '/');
    let (_stack, unit, role) = (parts.next()?, parts.next()?, parts.next()?);
    let (script_hash, result_hash) = match hashes.and_then(|h| h.split_once(':')) {
        Some((s, r)) => (Some(s.to_owned()), Some(r.to_owned())),
        None => (None, None),
    };
    Some(Job { id, state, reason, unit: unit.to_owned(), role: role.to_owned(), script_hash, result_hash })
}

/// The tag apply gives a job: hashes shortened to 16 hex digits.
pub fn submit_tag(comment: &str, script_hash: &str, result_hash: &str) -> String {
    format!("{comment}@{}:{}", short(script_hash), short(result_hash))
}

/// The first 16 hex digits of a hash (what job tags carry).
pub fn short(hash: &str) -> &str {
    &hash[..hash.len().min(16)]
}

fn is_live(state: &str) -> bool {
    matches!(
        state,
        "PENDING"
            | "RUNNING"
            | "CONFIGURING"
            | "COMPLETING"
            | "SUSPENDED"
            | "REQUEUED"
            | "REQUEUE_HOLD"
            | "RESIZING"
            | "STOPPED"
            | "SIGNALING"
            | "STAGE_OUT"
    )
}

/// One observation per unit seen anywhere: jobs, status files, state.
pub fn observe(r: &Refreshed) -> BTreeMap<String, Observation> {
    let mut units: BTreeMap<String, Observation> = BTreeMap::new();
    let recorded: Vec<&String> = r.state.iter().flat_map(|s| s.units.keys()).collect();
    for u in recorded.iter().copied().chain(r.statuses.keys()).chain(r.jobs.iter().map(|j| &j.unit)) {
        units.entry(u.clone()).or_default();
    }
    for (unit, o) in units.iter_mut() {
        let mut live: Vec<&Job> = r.jobs.iter().filter(|j| &j.unit == unit && is_live(&j.state)).collect();
        // Pending successors first, so cancelling never wakes one up.
        live.sort_by_key(|j| (j.role != crate::render::Role::Resume.as_str(), std::cmp::Reverse(j.id)));
        o.live_jobs = live.iter().map(|j| j.id).collect();
        if let Some(j) = live
            .iter()
            .chain(r.jobs.iter().filter(|j| &j.unit == unit).collect::<Vec<_>>().iter())
            .find(|j| j.script_hash.is_some())
        {
            o.tag_script_hash = j.script_hash.clone();
            o.tag_result_hash = j.result_hash.clone();
        }
        o.status = r.statuses.get(unit).cloned();
        let status_word = o.status.as_deref().and_then(|s| s.split(' ').next()).unwrap_or("");
        let held = !live.is_empty()
            && live.iter().all(|j| j.reason.contains("JobHeldUser") || j.reason.contains("JobHeldAdmin"));
        let running = live.iter().any(|j| j.state != "PENDING");
        let recorded_here = r.state.as_ref().is_some_and(|s| s.units.contains_key(unit));
        o.observed = if held {
            Observed::Held
        } else if running {
            Observed::Running
        } else if !live.is_empty() && !matches!(status_word, "completed" | "failed" | "stopped") {
            Observed::Pending
        } else {
            match status_word {
                "completed" => Observed::Completed,
                "failed" | "stopped" | "interrupted" | "running" => Observed::Failed,
                // Submitted once, never started, nothing live: cancelled or refused at launch.
                _ if recorded_here || r.jobs.iter().any(|j| &j.unit == unit) => Observed::Failed,
                _ => Observed::Absent,
            }
        };
    }
    units
}

/// Standard alphabet; decoding takes input with or without padding.
const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// Decodes standard base64 (padding optional, whitespace ignored).
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let compact: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    BASE64.decode(compact).ok()
}

/// Base64 (standard alphabet, padded) for payloads sent to the cluster.
pub fn base64_encode(data: &[u8]) -> String {
    use base64::Engine as _;
    BASE64.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip() {
        for s in ["", "a", "ab", "abc", "abcd", "hello, world\n\0\u{1F4A5}"] {
            assert_eq!(base64_decode(&base64_encode(s.as_bytes())).unwrap(), s.as_bytes());
        }
        assert_eq!(base64_encode(b"abcd"), "YWJjZA==");
        // As `base64` prints it on the cluster: wrapped lines; or unpadded.
        assert_eq!(base64_decode("YWJj\nZA==\n").unwrap(), b"abcd");
        assert_eq!(base64_decode("YWJjZA").unwrap(), b"abcd");
        assert_eq!(base64_decode("not base64!"), None);
    }

    #[test]
    fn parses_jobs_and_observes_units() {
        let out = "EVALCTL user u\n\
            EVALCTL status a completed 11 \n\
            EVALCTL status b interrupted 20 USR1\n\
            EVALCTL job 12|PENDING|Dependency|note evalctl:st/a/resume\n\
            EVALCTL job 21|RUNNING|None|evalctl:st/b/resume@0123456789abcdef:fedcba9876543210\n\
            EVALCTL job 22|PENDING|Dependency|evalctl:st/b/resume\n\
            EVALCTL job 30|PENDING|JobHeldUser|evalctl:st/c/first@1:2\n\
            EVALCTL job 31|PENDING|JobHeldUser|evalctl:st/c/resume@1:2\n\
            EVALCTL job 40|PENDING|Priority|evalctl:st/d/first\n\
            EVALCTL job 9|COMPLETED|None|evalctl:st/e/first\n\
            EVALCTL acct 9|st.e|COMPLETED\n\
            EVALCTL sacct ok\nEVALCTL end\n";
        let r = parse(out).unwrap();
        assert!(r.sacct_available);
        let o = observe(&r);
        assert_eq!(o["a"].observed, Observed::Completed, "a pending successor of a completed link is not live work");
        assert_eq!(o["b"].observed, Observed::Running);
        assert_eq!(o["b"].live_jobs, vec![22, 21], "pending successor first");
        assert_eq!(o["b"].tag_script_hash.as_deref(), Some("0123456789abcdef"));
        assert_eq!(o["c"].observed, Observed::Held);
        assert_eq!(o["d"].observed, Observed::Pending);
        assert_eq!(o["e"].observed, Observed::Failed, "ended without a status: never ran");
        assert!(parse("EVALCTL user u\n").is_err(), "a cut-off refresh is an error");
    }
}
