//! Feasibility: would the scheduler accept the jobs a plan submits?
//!
//! Exists so that a partition, account, time limit or GRES the cluster does
//! not have is an error at the config line that set it, at `plan` time and
//! before `apply` submits anything, instead of a failed `sbatch` halfway
//! through an apply (or a job pending forever). Jobs are grouped by their
//! **shape**, the `#SBATCH` lines the scheduler validates ([`shapes`]); the
//! refresh round trip runs `sbatch --test-only` once per shape
//! (`crate::remote::probe`), and this module reads the answers
//! ([`parse_answer`]), maps a refusal to the config key behind the offending
//! flag ([`config_path`]) and turns it all into plan entries and
//! diagnostics ([`assess`]). Everything here is pure: no cluster needed.
//!
//! The wording matched is Slurm's (checked on 22.05): a refusal is a line
//! `sbatch: error: <why>` (checked by sbatch itself) and/or
//! `allocation failure: <why>` (checked by slurmctld); an acceptance is
//! `sbatch: Job <id> to start at <time> using <n> processors on nodes <n>
//! in partition <p>`. An answer that is neither (a timeout, an unreachable
//! controller, a message not known here) is a note, never an error.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::node::{Node, Seg, Value};
use crate::diag::Diagnostic;
use crate::render::Rendered;

/// Most shapes probed in one refresh; more are noted, not checked.
pub const MAX_SHAPES: usize = 32;

/// `#SBATCH` flags that name, log or chain a job: they do not decide
/// whether the scheduler can run it, so they are not part of a shape.
const NOT_RESOURCES: &[&str] = &[
    "job-name",
    "J",
    "output",
    "o",
    "error",
    "e",
    "input",
    "i",
    "open-mode",
    "no-requeue",
    "requeue",
    "kill-on-invalid-dep",
    "signal",
    "comment",
    "mail-type",
    "mail-user",
    "chdir",
    "D",
    "dependency",
    "d",
    "hold",
    "H",
    "parsable",
    "test-only",
    "wrap",
    "array",
    "a",
];

/// What a job asks the scheduler for: its `#SBATCH` lines that matter to
/// feasibility, as rendered (values in sbatch's written form), in order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Shape {
    lines: Vec<String>,
}

impl Shape {
    /// The shape of a script: its `#SBATCH --flag[=value]` lines up to the
    /// first line that is not a comment (where sbatch stops reading them),
    /// without the flags of [`NOT_RESOURCES`].
    pub fn of_script(script: &str) -> Shape {
        let mut lines = vec![];
        for line in script.lines() {
            if !line.starts_with('#') && !line.trim().is_empty() {
                break;
            }
            let Some(rest) = line.strip_prefix("#SBATCH --") else { continue };
            let flag = rest.split('=').next().unwrap_or_default();
            if !NOT_RESOURCES.contains(&flag) {
                lines.push(line.to_owned());
            }
        }
        Shape { lines }
    }

    /// The script `sbatch --test-only` reads: `#!/bin/sh`, the lines, `true`.
    pub fn probe_script(&self) -> String {
        let mut s = String::from("#!/bin/sh\n");
        for l in &self.lines {
            s.push_str(l);
            s.push('\n');
        }
        s.push_str("true\n");
        s
    }

    /// Flag name and value (unquoted; `None` for a switch), in order.
    pub fn flags(&self) -> Vec<(String, Option<String>)> {
        self.lines
            .iter()
            .filter_map(|l| l.strip_prefix("#SBATCH --"))
            .map(|rest| match rest.split_once('=') {
                Some((f, v)) => (f.to_owned(), Some(unquote(v))),
                None => (rest.to_owned(), None),
            })
            .collect()
    }

    /// The value of a flag (`""` for a switch), when the shape sets it.
    pub fn get(&self, flag: &str) -> Option<String> {
        self.flags().into_iter().find(|(f, _)| f == flag).map(|(_, v)| v.unwrap_or_default())
    }

    /// `--partition=cpu --time=01:00:00 --exclusive`, for messages.
    pub fn describe(&self) -> String {
        let words: Vec<String> = self
            .flags()
            .into_iter()
            .map(|(f, v)| match v {
                Some(v) => format!("--{f}={v}"),
                None => format!("--{f}"),
            })
            .collect();
        if words.is_empty() { "(no resource flags)".into() } else { words.join(" ") }
    }

    /// `{flag: value}`, a switch `true` (for the plan document).
    pub fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
        self.flags()
            .into_iter()
            .map(|(f, v)| (f, v.map_or(serde_json::Value::Bool(true), serde_json::Value::String)))
            .collect()
    }
}

/// An `#SBATCH` value as sbatch reads it: the double quotes evalctl adds
/// around values with spaces or `#` removed.
fn unquote(v: &str) -> String {
    v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v).to_owned()
}

/// A shape and the units whose jobs have it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShapeUse {
    pub shape: Shape,
    /// Units in the order their first job of this shape is submitted.
    pub units: Vec<String>,
}

/// Every distinct shape of the rendered jobs, in the order a job of it is
/// first submitted, each with its units.
pub fn shapes(rendered: &Rendered) -> Vec<ShapeUse> {
    let mut out: Vec<ShapeUse> = vec![];
    let mut index: BTreeMap<Shape, usize> = BTreeMap::new();
    for job in &rendered.jobs {
        let shape = Shape::of_script(job.script.before());
        let i = *index.entry(shape.clone()).or_insert_with(|| {
            out.push(ShapeUse { shape, units: vec![] });
            out.len() - 1
        });
        for unit in job.units() {
            if !out[i].units.iter().any(|u| u == unit) {
                out[i].units.push(unit.to_owned());
            }
        }
    }
    out
}

/// The shapes a refresh probes: at most [`MAX_SHAPES`].
pub fn probed(uses: &[ShapeUse]) -> Vec<Shape> {
    uses.iter().take(MAX_SHAPES).map(|u| u.shape.clone()).collect()
}

/// What `sbatch --test-only` answered for one shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The scheduler would run it; when it expects to start it.
    Feasible { expected_start: Option<String>, detail: String },
    /// The scheduler refuses it: which flag (when the message says), and
    /// the message.
    Refused { problem: Problem, message: String },
    /// Not known: a timeout, a failure that is not a refusal, or output
    /// not understood.
    Unknown(String),
}

/// What a refusal is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    Partition,
    Account,
    Time,
    Gres,
    Qos,
    /// No node has what is asked for (GPUs, memory, features...).
    NodeConfig,
    /// More CPUs than the partition's nodes have (nodes, tasks per node).
    Processors,
    Feature,
    NodeCount,
    /// A limit of the account's or QOS's.
    Policy,
}

/// Messages of Slurm's refusals (lowercase substrings) and what each is about.
const REFUSALS: &[(&str, Problem)] = &[
    ("invalid partition", Problem::Partition),
    ("invalid account", Problem::Account),
    ("requested time limit is invalid", Problem::Time),
    ("invalid --time specification", Problem::Time),
    ("time limit exceeds", Problem::Time),
    ("invalid generic resource", Problem::Gres),
    ("invalid gres", Problem::Gres),
    ("invalid qos", Problem::Qos),
    ("requested node configuration is not available", Problem::NodeConfig),
    ("more processors requested than permitted", Problem::Processors),
    ("invalid feature specification", Problem::Feature),
    ("node count specification invalid", Problem::NodeCount),
    ("job violates accounting/qos policy", Problem::Policy),
];

/// Reads `sbatch --test-only`'s exit code and output (stdout and stderr
/// together). Never fails: what is not understood is [`Answer::Unknown`].
pub fn parse_answer(code: i32, output: &str) -> Answer {
    let lines: Vec<&str> = output.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if code == 124 {
        return Answer::Unknown("sbatch --test-only timed out".into());
    }
    if code == 0 {
        for l in &lines {
            if let Some(rest) = l.strip_prefix("sbatch: Job ")
                && let Some((_, after)) = rest.split_once(" to start at ")
            {
                let start = after.split_whitespace().next().map(str::to_owned);
                let detail = after.split_once(' ').map_or("", |(_, d)| d).to_owned();
                return Answer::Feasible { expected_start: start, detail };
            }
        }
        return Answer::Feasible { expected_start: None, detail: String::new() };
    }
    let message = refusal_text(&lines);
    let lower = output.to_lowercase();
    match REFUSALS.iter().find(|(m, _)| lower.contains(m)) {
        Some(&(_, problem)) => Answer::Refused { problem, message },
        None if message.is_empty() => Answer::Unknown(format!("sbatch --test-only exited {code} without a message")),
        None => Answer::Unknown(format!("sbatch --test-only exited {code}: {message}")),
    }
}

/// The reasons in a refusal's lines, prefixes (`sbatch: error: `,
/// `allocation failure: `) removed, repeated ones once, joined by `; `.
fn refusal_text(lines: &[&str]) -> String {
    let mut out: Vec<String> = vec![];
    for l in lines {
        let l = l.strip_prefix("sbatch: error: ").or_else(|| l.strip_prefix("sbatch: ")).unwrap_or(l);
        let l = l.strip_prefix("allocation failure: ").unwrap_or(l);
        let l: String = l.chars().filter(|c| !c.is_control()).take(300).collect();
        if !out.iter().any(|o| o.eq_ignore_ascii_case(&l)) {
            out.push(l);
        }
        if out.len() >= 4 {
            break;
        }
    }
    out.join("; ")
}

/// The `#SBATCH` flag a refusal is most likely about, given the shape.
pub fn offending_flag(problem: Problem, shape: &Shape) -> Option<&'static str> {
    let has = |f: &str| shape.get(f).is_some();
    let first = |fs: &[&'static str]| fs.iter().copied().find(|f| has(f));
    match problem {
        Problem::Partition => first(&["partition"]),
        Problem::Account => first(&["account", "partition"]),
        Problem::Time => first(&["time"]),
        Problem::Gres | Problem::NodeConfig => {
            first(&["gres", "gpus-per-node", "gpus", "mem", "mem-per-cpu", "mem-per-gpu", "constraint", "nodes"])
        }
        Problem::Qos => first(&["qos"]),
        Problem::Processors => {
            let nodes: u32 = shape.get("nodes").and_then(|n| n.parse().ok()).unwrap_or(1);
            if nodes > 1 { first(&["nodes", "ntasks-per-node"]) } else { first(&["ntasks-per-node", "nodes"]) }
        }
        Problem::Feature => first(&["constraint"]),
        Problem::NodeCount => first(&["nodes"]),
        Problem::Policy => first(&["qos", "account", "time"]),
    }
}

/// The config key that sets an `#SBATCH` flag: evalctl's own flags their
/// `execution` keys, any other a key of `execution.sbatch_extra_flags`
/// (written with `_` or `-`, as found in `tree`).
pub fn config_path(flag: &str, tree: &Node) -> Vec<Seg> {
    let key = |s: &str| vec![Seg::Key("execution".into()), Seg::Key(s.into())];
    match flag {
        "account" => key("account"),
        "partition" => key("partition"),
        "qos" => key("qos"),
        "time" => key("walltime"),
        "nodes" => key("num_nodes"),
        "ntasks-per-node" => key("ntasks_per_node"),
        "gres" => key("gres"),
        "gpus-per-node" => key("gpus_per_node"),
        _ => {
            let mut path = key("sbatch_extra_flags");
            let written = match tree.get(&path).map(|n| &n.value) {
                Some(Value::Map(m)) => m.keys().find(|k| k.replace('_', "-") == flag).cloned(),
                _ => None,
            };
            path.push(Seg::Key(written.unwrap_or_else(|| flag.to_owned())));
            path
        }
    }
}

/// One shape's feasibility, as the plan shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feasibility {
    /// The shape's `#SBATCH` flags: `{flag: value}`, a switch `true`.
    pub shape: serde_json::Map<String, serde_json::Value>,
    /// The units whose jobs have this shape.
    pub units: Vec<String>,
    /// `true`: the scheduler would run it; `false`: it refuses it; null:
    /// not known (not probed, timed out, an answer not understood).
    pub ok: Option<bool>,
    /// When the scheduler expects to start such a job (its local time, as
    /// `sbatch --test-only` prints it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_start: Option<String>,
    /// Why it is refused, or why it is not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What the probes of a refresh gave: entries for the plan, errors (a
/// refusal touching a unit the plan changes, at the key that set the
/// offending value) and notes. `answers[i]` is the answer for `uses[i]`
/// (missing: not probed); `unavailable`: why nothing could be probed;
/// `changing`: units the plan changes.
pub fn assess(
    uses: &[ShapeUse],
    answers: &BTreeMap<usize, Answer>,
    unavailable: Option<&str>,
    changing: &[String],
    tree: &Node,
) -> (Vec<Feasibility>, Vec<Diagnostic>, Vec<String>) {
    let (mut entries, mut errors, mut notes) = (vec![], vec![], vec![]);
    if let Some(why) = unavailable {
        notes.push(format!("feasibility not checked: {why}"));
    }
    for (i, u) in uses.iter().enumerate() {
        let mut entry = Feasibility {
            shape: u.shape.to_json(),
            units: u.units.clone(),
            ok: None,
            expected_start: None,
            error: None,
        };
        match answers.get(&i) {
            None if i >= MAX_SHAPES => entry.error = Some(format!("not checked (more than {MAX_SHAPES} shapes)")),
            None => entry.error = unavailable.map(str::to_owned),
            Some(Answer::Feasible { expected_start, .. }) => {
                entry.ok = Some(true);
                entry.expected_start = expected_start.clone();
            }
            Some(Answer::Unknown(why)) => {
                notes.push(format!("feasibility of {} not known: {why}", u.shape.describe()));
                entry.error = Some(why.clone());
            }
            Some(Answer::Refused { problem, message }) => {
                entry.ok = Some(false);
                entry.error = Some(message.clone());
                let touched: Vec<&String> = u.units.iter().filter(|x| changing.contains(x)).collect();
                if touched.is_empty() {
                    notes.push(format!(
                        "Slurm would refuse {} ({message}), but no unit of that shape is submitted",
                        u.shape.describe()
                    ));
                } else {
                    errors.push(refusal(*problem, message, &u.shape, &u.units, tree));
                }
            }
        }
        entries.push(entry);
    }
    if uses.len() > MAX_SHAPES {
        notes.push(format!(
            "feasibility checked for the first {MAX_SHAPES} of {} job shapes only; the others are submitted unchecked",
            uses.len()
        ));
    }
    (entries, errors, notes)
}

/// The error for a refused shape: at the key that set the offending flag
/// (the config's file and line, a defaults group or an `-o` override).
fn refusal(problem: Problem, message: &str, shape: &Shape, units: &[String], tree: &Node) -> Diagnostic {
    let flag = offending_flag(problem, shape);
    let (span, what) = match flag {
        Some(f) => {
            let path = config_path(f, tree);
            let value = shape.get(f).unwrap_or_default();
            let shown = if value.is_empty() { format!("--{f}") } else { format!("--{f}={value}") };
            (Some(tree.value_span_of(&path)), format!("`{}` ({shown}): ", crate::config::node::path_string(&path)))
        }
        None => (None, String::new()),
    };
    Diagnostic::error(span, format!("{what}Slurm would refuse these jobs: {message}"))
        .with_note(format!("`sbatch --test-only {}` was refused; units: {}", shape.describe(), some(units, 8)))
        .with_note("nothing was submitted")
}

/// `a, b, c and 7 more`.
fn some(items: &[String], n: usize) -> String {
    let shown: Vec<&str> = items.iter().take(n).map(String::as_str).collect();
    match items.len().saturating_sub(n) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

/// Plan text lines: one per shape, `expected start …` or why not.
pub fn lines(entries: &[Feasibility]) -> Vec<String> {
    entries
        .iter()
        .map(|e| {
            let flags: Vec<String> = e
                .shape
                .iter()
                .map(|(f, v)| match v {
                    serde_json::Value::String(s) => format!("{f}={s}"),
                    _ => f.clone(),
                })
                .collect();
            let units = some(&e.units, 5);
            let verdict = match (e.ok, &e.expected_start, &e.error) {
                (Some(true), Some(t), _) => format!("expected start {t}"),
                (Some(true), None, _) => "accepted".to_owned(),
                (Some(false), _, Some(m)) => format!("refused: {m}"),
                (Some(false), _, None) => "refused".to_owned(),
                (None, _, Some(m)) => format!("not checked: {m}"),
                (None, _, None) => "not checked".to_owned(),
            };
            format!("{verdict} ({}): {units}", flags.join(" "))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "#!/bin/bash\n# shellcheck disable=SC2317\n# evalctl job `t` of stack `s`: rendered.\n\
        #SBATCH --job-name=evalctl:s/t/first\n#SBATCH --account=research\n#SBATCH --partition=cpu\n\
        #SBATCH --time=01:00:00\n#SBATCH --nodes=1\n#SBATCH --ntasks-per-node=1\n#SBATCH --gres=\"gpu:16\"\n\
        #SBATCH --exclusive\n#SBATCH --output=/x/logs/slurm-%j.out\n#SBATCH --open-mode=append\n\
        #SBATCH --no-requeue\n#SBATCH --signal=B:USR1@60\n# ---- runtime\nset -eu\n#SBATCH --qos=late\n";

    #[test]
    fn a_shape_is_the_resource_lines_of_the_header() {
        let s = Shape::of_script(HEADER);
        assert_eq!(
            s.describe(),
            "--account=research --partition=cpu --time=01:00:00 --nodes=1 --ntasks-per-node=1 --gres=gpu:16 --exclusive"
        );
        assert_eq!(s.get("gres").as_deref(), Some("gpu:16"));
        assert_eq!(s.get("exclusive").as_deref(), Some(""));
        assert_eq!(s.get("qos"), None, "lines after the first command are not sbatch's");
        assert!(s.probe_script().starts_with("#!/bin/sh\n#SBATCH --account=research\n"));
        assert!(s.probe_script().ends_with("#SBATCH --exclusive\ntrue\n"));
        assert!(!s.probe_script().contains("job-name") && !s.probe_script().contains("output"));
        assert_eq!(s.to_json()["exclusive"], serde_json::Value::Bool(true));
        assert_eq!(s, Shape::of_script(&HEADER.replace("s/t/first", "s/u/resume")), "names do not matter");
    }

    /// The answers of Slurm 22.05.8 on the test cluster, verbatim.
    #[test]
    fn slurms_answers() {
        let ok = parse_answer(
            0,
            "sbatch: Job 4828 to start at 2026-11-30T06:14:03 using 1 processors on nodes n1 in partition cpu\n",
        );
        assert_eq!(
            ok,
            Answer::Feasible {
                expected_start: Some("2026-11-30T06:14:03".into()),
                detail: "using 1 processors on nodes n1 in partition cpu".into()
            }
        );
        let refused = |code, text: &str| match parse_answer(code, text) {
            Answer::Refused { problem, message } => (problem, message),
            other => panic!("{text}: {other:?}"),
        };
        assert_eq!(
            refused(
                1,
                "sbatch: error: invalid partition specified: nope\nallocation failure: Invalid partition name specified\n"
            ),
            (Problem::Partition, "invalid partition specified: nope; Invalid partition name specified".into())
        );
        assert_eq!(
            refused(1, "allocation failure: Invalid account or account/partition combination specified\n").0,
            Problem::Account
        );
        assert_eq!(
            refused(1, "allocation failure: Requested time limit is invalid (missing or exceeds some limit)\n"),
            (Problem::Time, "Requested time limit is invalid (missing or exceeds some limit)".into())
        );
        assert_eq!(refused(255, "sbatch: error: Invalid --time specification\n").0, Problem::Time);
        assert_eq!(
            refused(1, "allocation failure: Requested node configuration is not available\n").0,
            Problem::NodeConfig
        );
        assert_eq!(refused(1, "sbatch: error: Invalid generic resource (gres) specification\n").0, Problem::Gres);
        assert_eq!(refused(1, "sbatch: error: Invalid qos specification\n").0, Problem::Qos);
        assert_eq!(refused(1, "allocation failure: More processors requested than permitted\n").0, Problem::Processors);
        assert_eq!(refused(1, "allocation failure: Invalid feature specification\n").0, Problem::Feature);
    }

    #[test]
    fn odd_answers_are_unknown_never_errors() {
        assert!(matches!(parse_answer(124, ""), Answer::Unknown(_)));
        assert!(matches!(
            parse_answer(1, "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation"),
            Answer::Unknown(_)
        ));
        assert!(matches!(parse_answer(1, ""), Answer::Unknown(_)));
        assert!(matches!(parse_answer(127, "bash: sbatch: command not found"), Answer::Unknown(_)));
        assert_eq!(parse_answer(0, "garbage"), Answer::Feasible { expected_start: None, detail: String::new() });
        assert_eq!(
            parse_answer(0, "sbatch: Job 1 to start at"),
            Answer::Feasible { expected_start: None, detail: String::new() }
        );
        let long = "x".repeat(100_000);
        assert!(matches!(parse_answer(1, &long), Answer::Unknown(m) if m.len() < 400));
    }

    #[test]
    fn each_refusal_points_at_its_flag() {
        let s = Shape::of_script(HEADER);
        assert_eq!(offending_flag(Problem::Partition, &s), Some("partition"));
        assert_eq!(offending_flag(Problem::Account, &s), Some("account"));
        assert_eq!(offending_flag(Problem::Time, &s), Some("time"));
        assert_eq!(offending_flag(Problem::NodeConfig, &s), Some("gres"));
        assert_eq!(offending_flag(Problem::Processors, &s), Some("ntasks-per-node"));
        assert_eq!(offending_flag(Problem::Qos, &s), None, "no qos line in the shape");
        let multi = Shape::of_script("#SBATCH --nodes=5\n#SBATCH --ntasks-per-node=1\n");
        assert_eq!(offending_flag(Problem::Processors, &multi), Some("nodes"));
        let no_account = Shape::of_script("#SBATCH --partition=p\n");
        assert_eq!(offending_flag(Problem::Account, &no_account), Some("partition"));
    }

    #[test]
    fn flags_map_to_config_keys() {
        let tree = Node::empty_map(Default::default());
        let p = |f| crate::config::node::path_string(&config_path(f, &tree));
        assert_eq!(p("time"), "execution.walltime");
        assert_eq!(p("gres"), "execution.gres");
        assert_eq!(p("gpus-per-node"), "execution.gpus_per_node");
        assert_eq!(p("nodes"), "execution.num_nodes");
        assert_eq!(p("constraint"), "execution.sbatch_extra_flags.constraint");
    }

    #[test]
    fn refusals_of_unchanged_units_are_notes() {
        let tree = Node::empty_map(Default::default());
        let uses = vec![
            ShapeUse { shape: Shape::of_script("#SBATCH --partition=nope\n"), units: vec!["a".into()] },
            ShapeUse { shape: Shape::of_script("#SBATCH --partition=cpu\n"), units: vec!["b".into()] },
        ];
        let no = Answer::Refused { problem: Problem::Partition, message: "invalid partition specified: nope".into() };
        let yes = Answer::Feasible { expected_start: Some("2026-01-01T00:00:00".into()), detail: String::new() };
        let answers = BTreeMap::from([(0, no), (1, yes)]);
        let (entries, errors, notes) = assess(&uses, &answers, None, &["b".into()], &tree);
        assert!(errors.is_empty() && notes.len() == 1, "{errors:?} {notes:?}");
        assert_eq!(entries[0].ok, Some(false));
        assert_eq!(entries[1].expected_start.as_deref(), Some("2026-01-01T00:00:00"));
        let (_, errors, _) = assess(&uses, &answers, None, &["a".into()], &tree);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].message.starts_with("`execution.partition` (--partition=nope): Slurm would refuse"));
        assert_eq!(
            lines(&entries),
            [
                "refused: invalid partition specified: nope (partition=nope): a",
                "expected start 2026-01-01T00:00:00 (partition=cpu): b"
            ]
        );
    }

    #[test]
    fn shapes_beyond_the_bound_are_noted() {
        let tree = Node::empty_map(Default::default());
        let uses: Vec<ShapeUse> = (0..40)
            .map(|i| ShapeUse {
                shape: Shape::of_script(&format!("#SBATCH --nodes={i}\n")),
                units: vec![i.to_string()],
            })
            .collect();
        assert_eq!(probed(&uses).len(), MAX_SHAPES);
        let (entries, errors, notes) = assess(&uses, &BTreeMap::new(), None, &[], &tree);
        assert_eq!(entries.len(), 40);
        assert!(errors.is_empty());
        assert!(notes.iter().any(|n| n.contains("first 32 of 40")), "{notes:?}");
    }
}
