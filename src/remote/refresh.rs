//! Refresh: one program that reports everything a plan needs, in one round
//! trip whatever the number of jobs: the recorded state, each unit's status
//! file, one `squeue` and at most one `sacct` call; with detail (`status`,
//! `logs`, `--wait`), every unit's chain file, progress and results too.
//!
//! [`read`] collects the replies into a [`Refreshed`]; turning that into one
//! observation per unit is `crate::plan::observe`, which needs no cluster.

use crate::jobid::JobId;
use std::collections::{BTreeMap, BTreeSet};

use crate::cluster::Cluster;
use crate::plan::feasibility::{self, Answer, Shape};
use crate::render::TAG_PREFIX;
use crate::shell::{Code, ShellWord};
use crate::state::State;

use super::encoding::{base64_decode, snippet};
use super::protocol::{self, Reply, Verbatim};
use super::{Program, Replies, layout};
use crate::error::Error;

/// Slurm job states of a job that has not finished yet (it holds or will
/// hold resources): pending, running, or on its way between the two.
pub const UNFINISHED_STATES: &[&str] = &[
    "PENDING",
    "RUNNING",
    "CONFIGURING",
    "COMPLETING",
    "SUSPENDED",
    "REQUEUED",
    "REQUEUE_HOLD",
    "RESIZING",
    "STOPPED",
    "SIGNALING",
    "STAGE_OUT",
];

/// True for a state of [`UNFINISHED_STATES`].
pub fn is_unfinished(state: &str) -> bool {
    UNFINISHED_STATES.contains(&state)
}

/// A job of the stack as Slurm lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub id: JobId,
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
    /// Seconds of run time each unit's chain file records.
    pub elapsed: BTreeMap<String, u64>,
    /// The stack's jobs known to slurmctld (pending, running, recently ended).
    pub jobs: Vec<Job>,
    /// Final states from accounting, by job id (empty without accounting).
    pub accounting: BTreeMap<JobId, String>,
    pub squeue_error: Option<String>,
    pub sacct_available: bool,
    /// With [`refresh_probing`]: `sbatch --test-only`'s answer for each
    /// probed job shape, by its index (see `crate::remote::probe`).
    pub probes: BTreeMap<usize, Answer>,
    /// Why no shape could be probed (no `sbatch`).
    pub probe_unavailable: Option<String>,
    /// With [`refresh_probing`]: the user's association limits and usage
    /// (none without accounting).
    pub limits: Option<crate::cluster::limits::Associations>,
    /// With [`refresh_probing`]: the cluster's `MaxArraySize` (array
    /// indexes stay below it).
    pub max_array_size: Option<u64>,
    /// With [`detail_program`]: each unit's chain file, progress and results.
    pub chains: BTreeMap<String, Vec<String>>,
    pub progress: BTreeMap<String, String>,
    pub results: BTreeSet<String>,
    /// With [`detail_program`]'s results files: each unit's results file (empty: too
    /// large or unreadable).
    pub results_files: BTreeMap<String, String>,
    /// With [`Detail::Samples`]: each unit's per-sample files by file name
    /// (empty: too large or unreadable).
    pub samples_files: BTreeMap<String, BTreeMap<String, String>>,
}

/// The program that gathers the stack's state. `since_epoch` bounds the
/// accounting query (0: the last seven days).
pub fn program(stack_dir: &str, stack: &str, since_epoch: u64) -> Program {
    let mut p = Program::new();
    p.push(snippet!("D={}\nS={}\nU=$(id -un)\n", ShellWord::from(stack_dir), ShellWord::from(stack)));
    p.push(protocol::user(&Code("\"$U\"")));
    p.push(snippet!("if [ -f {} ]; then\n", layout::STATE_PATH));
    p.push(protocol::state_file(&layout::STATE_PATH));
    // The first line of each status file, read by a builtin: no process
    // per unit.
    p.code(Code(
        "fi\nfor f in \"$D\"/*/status; do\n  [ -f \"$f\" ] || continue\n  u=${f%/status}\n  l=\n  IFS= read -r l <\"$f\"\n  ",
    ));
    p.push(protocol::status(&Code("\"${u##*/}\""), &Code("\"$l\"")));
    // Every chain's run time (its links' start to end), in one awk.
    p.code(Code(
        "done\nawk 'FNR==1 && NR>1 {print t, f} FNR==1 {t=0; f=FILENAME; split(\"\", st)} $2==\"start\" {st[$1]=$3} $2==\"end\" && ($1 in st) {t+=$3-st[$1]; delete st[$1]} END {if (NR>0) print t, f}' \"$D\"/*/chain 2>/dev/null | while read -r t f; do\n  u=${f%/chain}\n  ",
    ));
    p.push(protocol::elapsed(&Code("\"${u##*/}\""), &Code("\"$t\"")));
    // Elements of job arrays (`execution.job_arrays`) are named by their
    // array's map (`<array>_<index>|<tag>`): `named FIELD` puts each
    // element's tag in place of the array's name. `-r`: one line per element.
    p.push(snippet!(
        "done\nshopt -s nullglob\nM=({}/*.map)\nshopt -u nullglob\nnamed() {{\n  if [ ${{#M[@]}} -eq 0 ]; then cat; else {{ cat \"${{M[@]}}\"; echo {}; cat; }} | awk -F'|' -v f=\"$1\" 'm == 0 && $0 == \"{}\" {{ m = 1; next }} m == 0 {{ t[$1] = $2; next }} ($1 in t) {{ $f = t[$1]; out = $1; for (i = 2; i <= NF; i++) out = out \"|\" $i; print out; next }} {{ print }}'; fi\n}}\n",
        ShellWord::from(super::submit::arrays_dir(stack_dir)),
        Code(MAPS_END),
        Code(MAPS_END)
    ));
    p.code(Code("if out=$(squeue -h -r -t all -u \"$U\" -o '%i|%T|%r|%j' 2>&1); then\n  "));
    p.push(snippet!(
        "printf '%s\\n' \"$out\" | grep -F {}\"$S/\" | named 4 | {}\n",
        ShellWord::from(TAG_PREFIX),
        protocol::emit_verbatim(Verbatim::Job)
    ));
    p.code(Code("else\n  "));
    p.push(protocol::squeue_error(&Code("\"$(printf '%s' \"$out\" | head -n 1)\"")));
    p.code(Code("fi\n"));
    let since =
        if since_epoch > 0 { snippet!("\"$(date -d @{} +%FT%T)\"", since_epoch) } else { snippet!("now-7days") };
    p.push(snippet!("if out=$(sacct -X -n -P -u \"$U\" -S {} -o JobID,JobName,State 2>/dev/null); then\n  ", since));
    p.push(snippet!(
        "printf '%s\\n' \"$out\" | grep -F {}\"$S/\" | named 2 | {}\n  ",
        ShellWord::from(TAG_PREFIX),
        protocol::emit_verbatim(Verbatim::Acct)
    ));
    p.push(protocol::sacct_ok());
    p.code(Code("fi\n"));
    p.push(protocol::end());
    p
}

/// The line between the array maps and the job lines `named` reads.
const MAPS_END: &str = "EVALCTL-MAPS-END";

/// Largest results file sent back (bytes); a larger one is reported empty.
pub const MAX_RESULTS_FILE: u64 = 1 << 20;

/// Largest per-sample file sent back (bytes before compression); a larger
/// one is reported empty.
pub const MAX_SAMPLES_FILE: u64 = 64 << 20;

/// Where the harness leaves its per-sample records, in a unit's artifacts.
pub const SAMPLES_DIR: &str = "nemo-evaluator-per-sample-outputs";

/// How much a detailed refresh reads of each unit's folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Detail {
    /// Chain file, harness progress, whether results exist (`status`).
    Status,
    /// Also the results file (`results`, `export`).
    Results,
    /// Also the per-sample records, gzip-compressed (`compare`).
    Samples,
}

/// Extra replies for `status`: every unit's chain file, the harness's
/// progress, and whether results exist; from [`Detail::Results`] on, also
/// each unit's `results.yml`, base64, when it is at most
/// [`MAX_RESULTS_FILE`] bytes (else empty); with [`Detail::Samples`], each
/// `*.jsonl` of the unit's [`SAMPLES_DIR`], gzip then base64, when it is at
/// most [`MAX_SAMPLES_FILE`] bytes (else empty). Runs before [`program`].
pub fn detail_program(stack_dir: &str, detail: Detail) -> Program {
    let mut p = Program::new();
    p.push(snippet!("for d in {}/*/; do\n  u=${{d%/}}; u=${{u##*/}}\n", ShellWord::from(stack_dir)));
    p.code(Code("  if [ -f \"$d/chain\" ]; then while IFS= read -r l; do "));
    p.push(protocol::chain(&Code("\"$u\""), &Code("\"$l\"")));
    p.code(Code("  done <\"$d/chain\"; fi\n  if [ -f \"$d/artifacts/progress.json\" ]; then "));
    p.push(protocol::progress(
        &Code("\"$u\""),
        &Code("\"$(head -c 4096 \"$d/artifacts/progress.json\" | tr -d '\\n')\""),
    ));
    p.code(Code("  fi\n  if [ -f \"$d/artifacts/results.yml\" ]; then "));
    p.push(protocol::results(&Code("\"$u\"")));
    if detail >= Detail::Results {
        p.push(snippet!(
            "    f=\"$d/artifacts/results.yml\"\n    if [ \"$(stat -c %s \"$f\")\" -le {} ]; then ",
            MAX_RESULTS_FILE
        ));
        p.push(protocol::results_file(&Code("\"$u\""), &Code("\"$(base64 -w0 <\"$f\")\"")));
        p.code(Code("    else "));
        p.push(protocol::results_file(&Code("\"$u\""), &Code("''")));
        p.code(Code("    fi\n"));
    }
    if detail >= Detail::Samples {
        p.push(snippet!(
            "    for f in \"$d\"/artifacts/{}/*.jsonl; do\n      [ -f \"$f\" ] || continue\n      if [ \"$(stat -c %s \"$f\")\" -le {} ]; then ",
            ShellWord::from(SAMPLES_DIR),
            MAX_SAMPLES_FILE
        ));
        p.push(protocol::samples_file(
            &Code("\"$u\""),
            &Code("\"${f##*/}\""),
            &Code("\"$(gzip -c <\"$f\" | base64 -w0)\""),
        ));
        p.code(Code("      else "));
        p.push(protocol::samples_file(&Code("\"$u\""), &Code("\"${f##*/}\""), &Code("''")));
        p.code(Code("      fi\n    done\n"));
    }
    p.code(Code("  fi\ndone\n"));
    p
}

/// Refreshes: one round trip.
pub fn refresh(cluster: &dyn Cluster, stack_dir: &str, stack: &str, since: u64) -> Result<Refreshed, Error> {
    refresh_probing(cluster, stack_dir, stack, since, &[])
}

/// Refreshes and asks the scheduler whether each of `shapes` could run
/// (plan): one round trip.
pub fn refresh_probing(
    cluster: &dyn Cluster,
    stack_dir: &str,
    stack: &str,
    since: u64,
    shapes: &[Shape],
) -> Result<Refreshed, Error> {
    let replies = super::run(cluster, &super::probe::program(shapes).then(program(stack_dir, stack, since)))?;
    Ok(read(&replies, stack)?)
}

/// Refreshes with every unit's chain, progress and results (`status`),
/// and as much of each unit's results as `detail` says: one round trip.
pub fn refresh_detail(
    cluster: &dyn Cluster,
    stack_dir: &str,
    stack: &str,
    since: u64,
    detail: Detail,
) -> Result<Refreshed, Error> {
    let replies = super::run(cluster, &detail_program(stack_dir, detail).then(program(stack_dir, stack, since)))?;
    Ok(read(&replies, stack)?)
}

/// Collects a refresh's replies: the jobs of `stack` only (the program's
/// filter is a cheap pre-selection; ownership is decided here, on the
/// parsed job name, in `squeue`'s list and in accounting alike).
pub fn read(replies: &Replies, stack: &str) -> Result<Refreshed, String> {
    let mut r = Refreshed::default();
    let mut ended = false;
    let mut qos_table = vec![];
    for reply in replies.iter() {
        match reply {
            Reply::User(u) => r.user = u.clone(),
            Reply::State(b64) => {
                let bytes = base64_decode(b64).ok_or("the state file could not be transferred")?;
                let text = String::from_utf8(bytes).map_err(|_| "the state file is not UTF-8")?;
                r.state = Some(State::parse(&text)?);
            }
            Reply::StateGz(b64) => {
                let bytes = base64_decode(b64).ok_or("the state file could not be transferred")?;
                let text = gunzip(&bytes).ok_or("the state file could not be transferred (gzip)")?;
                r.state = Some(State::parse(&text)?);
            }
            Reply::Status { unit, line } => {
                r.statuses.insert(unit.clone(), line.trim().to_owned());
            }
            Reply::Job(data) => {
                r.jobs.extend(parse_job(data).filter(|(tag_stack, _)| tag_stack == stack).map(|(_, j)| j))
            }
            Reply::Acct(data) => {
                if let Some((id, state)) = parse_acct(data, stack) {
                    r.accounting.insert(id, state);
                }
            }
            Reply::SacctOk => r.sacct_available = true,
            Reply::Elapsed { unit, seconds } => {
                r.elapsed.insert(unit.clone(), *seconds);
            }
            Reply::Chain { unit, line } => r.chains.entry(unit.clone()).or_default().push(line.clone()),
            Reply::Progress { unit, json } => {
                r.progress.insert(unit.clone(), json.clone());
            }
            Reply::Results { unit } => {
                r.results.insert(unit.trim().to_owned());
            }
            Reply::ResultsFile { unit, b64 } => {
                // Not UTF-8 or not base64: kept as unreadable (empty).
                let text = base64_decode(b64).and_then(|b| String::from_utf8(b).ok()).unwrap_or_default();
                r.results_files.insert(unit.trim().to_owned(), text);
            }
            Reply::SamplesFile { unit, name, b64 } => {
                // Not base64, not gzip or not UTF-8: kept as unreadable (empty).
                let text = base64_decode(b64).and_then(|b| gunzip(&b)).unwrap_or_default();
                r.samples_files.entry(unit.trim().to_owned()).or_default().insert(name.clone(), text);
            }
            Reply::SqueueError(e) => r.squeue_error = Some(e.clone()),
            Reply::Probe { index, code, output } => {
                r.probes.insert(*index, feasibility::parse_answer(*code, output));
            }
            Reply::ProbeUnavailable(why) => r.probe_unavailable = Some(why.clone()),
            Reply::Limits(text) => r.limits = Some(crate::cluster::limits::parse(text)),
            Reply::QosTable(text) => qos_table = crate::cluster::limits::parse_qos_table(text),
            Reply::MaxArraySize(n) => r.max_array_size = Some(*n),
            Reply::End => ended = true,
            _ => {}
        }
    }
    if !ended {
        return Err("the refresh program stopped before its end".into());
    }
    r.limits = r.limits.take().map(|l| l.with_qos_table(qos_table));
    Ok(r)
}

/// A gzip stream's text; `None` when it is not gzip or not UTF-8.
fn gunzip(bytes: &[u8]) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes).read_to_string(&mut text).ok()?;
    Some(text)
}

/// `ID|STATE|REASON|NAME` with the ownership tag in the job name (see
/// [`layout`]): the job's stack and the job. The name is the last field, so
/// a `|` in a name another job was given only makes that name malformed.
fn parse_job(data: &str) -> Option<(String, Job)> {
    let mut f = data.splitn(4, '|');
    let id = f.next()?.trim().parse().ok()?;
    let state = f.next()?.to_owned();
    let reason = f.next()?.to_owned();
    let tag = layout::parse_name(f.next()?)?;
    let job = Job {
        id,
        state,
        reason,
        unit: tag.unit,
        role: tag.role,
        script_hash: tag.script_hash,
        result_hash: tag.result_hash,
    };
    Some((tag.stack, job))
}

/// `ID|NAME|STATE` from accounting: the job id and its final state (first
/// word), when the name is a well-formed name of `stack`'s.
fn parse_acct(data: &str, stack: &str) -> Option<(JobId, String)> {
    let (id, rest) = data.split_once('|')?;
    let (name, state) = rest.rsplit_once('|')?;
    let id = id.trim().parse().ok()?;
    layout::parse_name(name).filter(|t| t.stack == stack)?;
    Some((id, state.split(' ').next().unwrap_or_default().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state that does not come back whole is an error, never "no state"
    /// (which would make apply submit the recorded jobs again).
    #[test]
    fn a_broken_state_transfer_is_an_error() {
        for broken in ["", "H4sIAAAA", "bm90IGd6aXA=", "not base64!"] {
            let replies = Replies { replies: vec![Reply::StateGz(broken.into()), Reply::End], stdout: String::new() };
            assert!(read(&replies, "s").is_err(), "`{broken}` was read as a state");
        }
        let replies = Replies { replies: vec![Reply::State(String::new()), Reply::End], stdout: String::new() };
        assert!(read(&replies, "s").is_err(), "an empty state was read as a state");
    }
}
