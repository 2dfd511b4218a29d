//! `compare`: two stacks' scores side by side, the difference of each with
//! its confidence interval and a test of whether it is real.
//!
//! A comparison means something only when the two numbers measure the same
//! thing on two models. So before any number is compared, the two units'
//! result identities (harness image, task, parameters, variables, judge)
//! must agree in everything but the model under test, and each side's
//! results must have been produced by the config as it is now; otherwise
//! the comparison is refused and every difference is named. Rows are
//! matched by unit, task, metric and score. Pure: the ops layer gathers
//! both sides (`ops::results::gather`) and calls [`compare`].

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value as J;

use crate::ops::results::{Gathered, Row};
use crate::stats::{self, Difference};
use crate::table::markdown_text as md;

/// The version of the JSON document (`evalctl compare --format json`).
pub const COMPARE_VERSION: u32 = 1;

/// Identity paths that belong to the model under test: they may differ.
const MODEL_PATHS: &[&str] = &[
    "deployment",
    "server_env",
    "run_config.target.api_endpoint.model_id",
    "run_config.target.api_endpoint.url",
    "run_config.target.api_endpoint.api_key_name",
];

/// One side of a comparison as given.
pub struct Side<'a> {
    /// How the user named it: a config path, or `REF:PATH`.
    pub label: String,
    pub gathered: &'a Gathered,
}

/// Every compared score, and what only one side has.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    pub version: u32,
    pub base: SideInfo,
    pub candidate: SideInfo,
    pub rows: Vec<Compared>,
    /// Scores only the base has.
    pub only_base: Vec<ScoreKey>,
    /// Scores only the candidate has.
    pub only_candidate: Vec<ScoreKey>,
    /// Tasks that have no scores on one side or both.
    pub missing: Vec<String>,
    /// With a gate policy (`--gate`): its verdict and every check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<crate::gate::Verdict>,
}

/// Which score: a unit's task (or group), metric and score.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ScoreKey {
    pub unit: String,
    pub task: String,
    pub metric: String,
    pub score: String,
}

impl std::fmt::Display for ScoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}/{}", self.unit, self.task, self.metric, self.score)
    }
}

/// What a side is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SideInfo {
    pub label: String,
    pub stack: String,
    /// The model under test (the endpoint's model id), when the stack's
    /// tasks name one model.
    pub model: Option<String>,
}

/// One score on both sides.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Compared {
    pub unit: String,
    pub task: String,
    pub metric: String,
    pub score: String,
    pub base: Value,
    pub candidate: Value,
    /// `candidate - base`, its interval and p-value; none when neither
    /// per-sample records nor standard errors exist.
    pub difference: Option<Difference>,
    /// Why the test is weaker than it could be, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One side's score.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Value {
    pub value: f64,
    pub stderr: Option<f64>,
    pub count: Option<u64>,
    pub fingerprint: String,
}

impl Compared {
    pub fn key(&self) -> ScoreKey {
        ScoreKey {
            unit: self.unit.clone(),
            task: self.task.clone(),
            metric: self.metric.clone(),
            score: self.score.clone(),
        }
    }

    /// p < 0.05.
    pub fn significant(&self) -> bool {
        self.difference.as_ref().is_some_and(|d| d.p_value < 0.05)
    }
}

fn row_key(r: &Row) -> ScoreKey {
    ScoreKey { unit: r.unit.clone(), task: r.task.clone(), metric: r.metric.clone(), score: r.score.clone() }
}

/// Compares `candidate` with `base`. Refused, with every reason, when a
/// unit both have was produced by an older config on either side or
/// differs in more than the model.
pub fn compare(base: &Side, candidate: &Side) -> Result<Comparison, Vec<String>> {
    let (b, c) = (base.gathered, candidate.gathered);
    let mut refusals = vec![];
    for (unit, bu) in &b.units {
        let Some(cu) = c.units.get(unit) else { continue };
        let scored = |g: &Gathered| g.report.rows.iter().any(|r| &r.unit == unit);
        if !scored(b) || !scored(c) {
            continue;
        }
        for (side, u) in [(base, bu), (candidate, cu)] {
            if !u.current {
                refusals.push(format!(
                    "`{unit}`: the results of {} were produced by another version of its config (its result hash differs); apply it first, or compare the config that produced them",
                    side.label
                ));
            }
        }
        for d in identity_differences(&bu.identity, &cu.identity) {
            refusals.push(format!("`{unit}`: differs in more than the model: {d}"));
        }
    }
    if !refusals.is_empty() {
        return Err(refusals);
    }
    let cand_rows: BTreeMap<_, &Row> = c.report.rows.iter().map(|r| (row_key(r), r)).collect();
    let base_keys: std::collections::BTreeSet<_> = b.report.rows.iter().map(row_key).collect();
    let mut rows = vec![];
    let mut only_base = vec![];
    for br in &b.report.rows {
        let Some(cr) = cand_rows.get(&row_key(br)) else {
            only_base.push(row_key(br));
            continue;
        };
        let (difference, note) = difference(br, cr, b, c);
        rows.push(Compared {
            unit: br.unit.clone(),
            task: br.task.clone(),
            metric: br.metric.clone(),
            score: br.score.clone(),
            base: value(br),
            candidate: value(cr),
            difference,
            note,
        });
    }
    let only_candidate = c.report.rows.iter().map(row_key).filter(|k| !base_keys.contains(k)).collect();
    let mut missing: Vec<String> = b
        .report
        .missing
        .iter()
        .map(|m| format!("{} in {}: {}", m.unit, base.label, m.why))
        .chain(c.report.missing.iter().map(|m| format!("{} in {}: {}", m.unit, candidate.label, m.why)))
        .collect();
    missing.sort();
    Ok(Comparison {
        version: COMPARE_VERSION,
        base: info(base),
        candidate: info(candidate),
        rows,
        only_base,
        only_candidate,
        missing,
        gate: None,
    })
}

fn info(side: &Side) -> SideInfo {
    let mut models: Vec<&str> = side
        .gathered
        .units
        .values()
        .filter_map(|u| u.identity.pointer("/run_config/target/api_endpoint/model_id").and_then(J::as_str))
        .collect();
    models.sort_unstable();
    models.dedup();
    SideInfo {
        label: side.label.clone(),
        stack: side.gathered.report.stack.clone(),
        model: (models.len() == 1).then(|| models[0].to_owned()),
    }
}

fn value(r: &Row) -> Value {
    Value { value: r.value, stderr: r.stderr, count: r.count, fingerprint: r.fingerprint.clone() }
}

/// The paired test when both sides have per-sample records that are this
/// score's; else the unpaired one from standard errors; else none.
fn difference(b: &Row, c: &Row, bg: &Gathered, cg: &Gathered) -> (Option<Difference>, Option<String>) {
    let unpaired = || (b.stderr.zip(c.stderr)).map(|(bs, cs)| stats::unpaired(b.value, bs, c.value, cs));
    let (bs, cs) = match (samples_of(b, bg), samples_of(c, cg)) {
        (Ok(bs), Ok(cs)) => (bs, cs),
        (Err(why), _) | (_, Err(why)) => {
            let d = unpaired();
            let note = if d.is_some() { format!("{why}: unpaired test") } else { format!("{why}; no stderr: no test") };
            return (d, Some(note));
        }
    };
    let by_id: BTreeMap<&str, f64> = cs.iter().map(|s| (s.id.as_str(), s.score)).collect();
    let pairs: Vec<(f64, f64)> = bs.iter().filter_map(|s| by_id.get(s.id.as_str()).map(|c| (s.score, *c))).collect();
    let note = (pairs.len() < bs.len().max(cs.len()))
        .then(|| format!("paired on the {} of {}/{} samples both sides have", pairs.len(), bs.len(), cs.len()));
    match stats::paired(&pairs) {
        Some(d) => (Some(d), note),
        None => (unpaired(), Some("no sample in common: unpaired test".into())),
    }
}

/// The per-sample records of a row's task, when they are that score's
/// (their mean is the score's value); else why not.
fn samples_of(r: &Row, g: &Gathered) -> Result<Vec<crate::results::Sample>, String> {
    if r.level != "task" {
        return Err("a group's score has no per-sample records".into());
    }
    let files = g.units.get(&r.unit).map(|u| &u.samples);
    let Some(text) = files.and_then(|f| f.get(&format!("{}.jsonl", r.task))) else {
        return Err(format!("no per-sample records of `{}` in {}", r.task, g.report.stack));
    };
    if text.is_empty() {
        return Err(format!("the per-sample records of `{}` are too large to fetch", r.task));
    }
    let samples = crate::results::samples(text).map_err(|e| format!("per-sample records of `{}`: {e}", r.task))?;
    if samples.is_empty() {
        return Err(format!("the per-sample records of `{}` are empty", r.task));
    }
    let mean = samples.iter().map(|s| s.score).sum::<f64>() / samples.len() as f64;
    if (mean - r.value).abs() > 1e-6 * r.value.abs().max(1.0) {
        return Err(format!("the per-sample records of `{}` are not this score's (mean {mean:.4})", r.task));
    }
    Ok(samples)
}

/// Where two result identities differ outside the model under test:
/// `path: base → candidate`, values shortened.
pub fn identity_differences(base: &J, cand: &J) -> Vec<String> {
    let (mut b, mut c) = (BTreeMap::new(), BTreeMap::new());
    flatten("", base, &mut b);
    flatten("", cand, &mut c);
    let allowed = |path: &str| {
        MODEL_PATHS.iter().any(|m| path == *m || path.strip_prefix(m).is_some_and(|rest| rest.starts_with(['.', '['])))
    };
    let keys: std::collections::BTreeSet<&String> = b.keys().chain(c.keys()).collect();
    keys.into_iter()
        .filter(|k| !allowed(k) && b.get(*k) != c.get(*k))
        .map(|k| format!("`{k}`: {} → {}", shown(b.get(k)), shown(c.get(k))))
        .collect()
}

fn shown(v: Option<&String>) -> String {
    match v {
        None => "(unset)".into(),
        Some(s) if s.chars().count() > 80 => format!("{}…", s.chars().take(80).collect::<String>()),
        Some(s) => s.clone(),
    }
}

/// Leaves of a JSON value by path (`a.b[0].c`).
fn flatten(path: &str, v: &J, out: &mut BTreeMap<String, String>) {
    match v {
        J::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                flatten(&p, x, out);
            }
        }
        J::Array(a) if !a.is_empty() => {
            for (i, x) in a.iter().enumerate() {
                flatten(&format!("{path}[{i}]"), x, out);
            }
        }
        J::Null => {}
        leaf => {
            out.insert(path.to_owned(), leaf.to_string());
        }
    }
}

/// Output formats of `compare`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Markdown,
}

/// The comparison in a format.
pub fn render(c: &Comparison, format: Format) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(c).expect("plain data serializes") + "\n",
        Format::Table => table(c),
        Format::Markdown => markdown(c),
    }
}

fn num(v: f64) -> String {
    format!("{v:.4}")
}

fn signed(v: f64) -> String {
    format!("{v:+.4}")
}

fn ci(d: &Difference) -> String {
    format!("[{}, {}]", signed(d.ci95[0]), signed(d.ci95[1]))
}

fn p(d: &Difference) -> String {
    if d.p_value < 1e-4 { "<0.0001".into() } else { format!("{:.4}", d.p_value) }
}

fn method(d: &Difference) -> &'static str {
    match d.method {
        stats::Method::Mcnemar => "McNemar",
        stats::Method::PairedBootstrap => "paired bootstrap",
        stats::Method::UnpairedZ => "unpaired z",
    }
}

fn side_line(s: &SideInfo) -> String {
    match &s.model {
        Some(m) => format!("{} (stack {}, model {m})", s.label, s.stack),
        None => format!("{} (stack {})", s.label, s.stack),
    }
}

fn table(c: &Comparison) -> String {
    let mut out = format!("base:      {}\ncandidate: {}\n\n", side_line(&c.base), side_line(&c.candidate));
    let header = ["UNIT", "TASK", "METRIC", "SCORE", "BASE", "CANDIDATE", "DELTA", "95% CI", "P", "TEST"];
    let cells: Vec<[String; 10]> = c
        .rows
        .iter()
        .map(|r| {
            let d = r.difference.as_ref();
            [
                r.unit.clone(),
                r.task.clone(),
                r.metric.clone(),
                r.score.clone(),
                num(r.base.value),
                num(r.candidate.value),
                signed(r.candidate.value - r.base.value),
                d.map(ci).unwrap_or_default(),
                d.map(p).unwrap_or_default(),
                d.map(method).unwrap_or("none").to_owned(),
            ]
        })
        .collect();
    out.push_str(&crate::table::table(header, &cells));
    for r in c.rows.iter().filter(|r| r.note.is_some()) {
        out.push_str(&format!("{}: {}\n", r.key(), r.note.as_deref().unwrap_or_default()));
    }
    for k in &c.only_base {
        out.push_str(&format!("only in the base: {k}\n"));
    }
    for k in &c.only_candidate {
        out.push_str(&format!("only in the candidate: {k}\n"));
    }
    for m in &c.missing {
        out.push_str(&format!("no scores: {m}\n"));
    }
    if let Some(v) = &c.gate {
        out.push_str(&crate::gate::text(v));
    }
    out
}

fn markdown(c: &Comparison) -> String {
    let better = c.rows.iter().filter(|r| r.significant() && r.candidate.value > r.base.value).count();
    let worse = c.rows.iter().filter(|r| r.significant() && r.candidate.value < r.base.value).count();
    let mut out = format!(
        "### Compare: {} → {}\n\n{} scores compared: {better} significantly higher, {worse} significantly lower (p < 0.05).\n\n",
        md(&c.base.model.clone().unwrap_or_else(|| c.base.stack.clone())),
        md(&c.candidate.model.clone().unwrap_or_else(|| c.candidate.stack.clone())),
        c.rows.len(),
    );
    out.push_str(
        "| task | metric | score | base | candidate | Δ | 95% CI | p |\n|---|---|---|---:|---:|---:|---|---:|\n",
    );
    for r in &c.rows {
        let d = r.difference.as_ref();
        let delta = signed(r.candidate.value - r.base.value);
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            md(&r.task),
            md(&r.metric),
            md(&r.score),
            num(r.base.value),
            num(r.candidate.value),
            if r.significant() { format!("**{delta}**") } else { delta },
            d.map(ci).unwrap_or_default(),
            d.map(p).unwrap_or_default(),
        ));
    }
    out.push_str("\n<details><summary>Details</summary>\n\n");
    out.push_str(&format!("- base: {}\n- candidate: {}\n", md(&side_line(&c.base)), md(&side_line(&c.candidate))));
    for r in &c.rows {
        let test = match &r.difference {
            Some(d) => {
                let mut t = method(d).to_owned();
                if let Some(n) = d.pairs {
                    t.push_str(&format!(", {n} pairs"));
                }
                if let (Some(b), Some(cc)) = (d.base_only, d.candidate_only) {
                    t.push_str(&format!(", {b} only the base got right, {cc} only the candidate"));
                }
                t
            }
            None => "no test".into(),
        };
        let note = r.note.as_deref().map(|n| format!("; {}", md(n))).unwrap_or_default();
        out.push_str(&format!(
            "- {}: {test}{note}; fingerprints {} → {}\n",
            md(&r.key().to_string()),
            md(&r.base.fingerprint),
            md(&r.candidate.fingerprint)
        ));
    }
    for k in &c.only_base {
        out.push_str(&format!("- only in the base: `{}`\n", md(&k.to_string())));
    }
    for k in &c.only_candidate {
        out.push_str(&format!("- only in the candidate: `{}`\n", md(&k.to_string())));
    }
    for m in &c.missing {
        out.push_str(&format!("- no scores: {}\n", md(m)));
    }
    out.push_str("\n</details>\n");
    if let Some(v) = &c.gate {
        out.push_str(&crate::gate::markdown(v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::results::{Missing, UnitResults};
    use serde_json::json;

    fn identity(model: &str, limit: u32) -> J {
        json!({
            "kind": "task", "task": "h.gsm8k", "container": "img:1",
            "run_config": {"config": {"type": "gsm8k", "params": {"limit_samples": limit}},
                           "target": {"api_endpoint": {"model_id": model, "url": "@@URL@@", "type": "chat"}}},
            "deployment": {"type": "vllm", "hf_model_handle": model},
            "env": [["A", "lit", "1"]], "server_env": [],
        })
    }

    fn row(unit: &str, value: f64, stderr: Option<f64>) -> Row {
        Row {
            unit: unit.into(),
            level: "task",
            task: unit.into(),
            metric: "accuracy".into(),
            score: "accuracy".into(),
            value,
            stderr,
            ci95: None,
            count: Some(10),
            state: "completed".into(),
            jobs: crate::jobid::jobs([1]),
            elapsed_s: 60,
            gpu_hours: None,
            fingerprint: format!("fp-{value}"),
            current: true,
        }
    }

    /// A stack of one task `gsm8k` whose 10 samples are right where `right` says.
    fn side(model: &str, limit: u32, right: &[u8], samples: bool) -> Gathered {
        let value = right.iter().map(|&r| f64::from(r)).sum::<f64>() / right.len() as f64;
        let text: String =
            right.iter().enumerate().map(|(i, r)| format!("{{\"id\": \"{i}\", \"score\": {r}}}\n")).collect();
        let unit = UnitResults {
            identity: identity(model, limit),
            current: true,
            results_file: None,
            samples: if samples { [("gsm8k.jsonl".to_owned(), text)].into() } else { BTreeMap::new() },
        };
        Gathered {
            report: Report {
                version: 1,
                stack: format!("s-{model}"),
                rows: vec![row("gsm8k", value, Some(0.1))],
                missing: vec![Missing {
                    unit: "mmlu".into(),
                    state: "failed".into(),
                    why: "no results.yml yet".into(),
                }],
            },
            units: [("gsm8k".to_owned(), unit)].into(),
        }
    }

    fn sides<'a>(b: &'a Gathered, c: &'a Gathered) -> (Side<'a>, Side<'a>) {
        (Side { label: "base.yaml".into(), gathered: b }, Side { label: "cand.yaml".into(), gathered: c })
    }

    use crate::ops::results::Report;

    #[test]
    fn paired_outcomes_give_mcnemar_and_every_format_shows_it() {
        let b = side("m1", 10, &[1, 1, 1, 1, 1, 1, 1, 1, 0, 0], true);
        let c = side("m2", 10, &[1, 1, 1, 1, 0, 0, 0, 0, 1, 1], true);
        let (bs, cs) = sides(&b, &c);
        let cmp = compare(&bs, &cs).unwrap();
        assert_eq!(cmp.rows.len(), 1);
        let d = cmp.rows[0].difference.as_ref().unwrap();
        assert_eq!((d.method, d.base_only, d.candidate_only), (stats::Method::Mcnemar, Some(4), Some(2)));
        assert_eq!(cmp.base.model.as_deref(), Some("m1"));
        assert_eq!(cmp.missing, ["mmlu in base.yaml: no results.yml yet", "mmlu in cand.yaml: no results.yml yet"]);
        let t = render(&cmp, Format::Table);
        assert!(t.contains("McNemar") && t.contains("-0.2000"), "{t}");
        let m = render(&cmp, Format::Markdown);
        assert!(m.contains("### Compare: m1 → m2") && m.contains("<details>"), "{m}");
        assert!(m.contains("4 only the base got right, 2 only the candidate"), "{m}");
        let j: J = serde_json::from_str(&render(&cmp, Format::Json)).unwrap();
        assert_eq!(j["version"], 1);
        assert_eq!(j["rows"][0]["difference"]["method"], "mcnemar");
    }

    #[test]
    fn without_samples_the_test_is_unpaired_and_says_why() {
        let b = side("m1", 10, &[1, 1, 1, 1, 1, 1, 1, 1, 0, 0], false);
        let c = side("m2", 10, &[1, 1, 1, 1, 0, 0, 0, 0, 1, 1], true);
        let (bs, cs) = sides(&b, &c);
        let cmp = compare(&bs, &cs).unwrap();
        assert_eq!(cmp.rows[0].difference.as_ref().unwrap().method, stats::Method::UnpairedZ);
        assert!(cmp.rows[0].note.as_deref().unwrap().contains("no per-sample records of `gsm8k` in s-m1"));
        // Records whose mean is not the score are another score's.
        let mut c2 = c.clone();
        c2.report.rows[0].value = 0.9;
        let (bs, cs) = sides(&c, &c2);
        let cmp = compare(&bs, &cs).unwrap();
        assert!(cmp.rows[0].note.as_deref().unwrap().contains("are not this score's"), "{:?}", cmp.rows[0]);
    }

    #[test]
    fn units_that_differ_in_more_than_the_model_are_refused_by_name() {
        let b = side("m1", 10, &[1, 0], true);
        let c = side("m2", 20, &[1, 0], true);
        let (bs, cs) = sides(&b, &c);
        let err = compare(&bs, &cs).unwrap_err();
        assert_eq!(err, ["`gsm8k`: differs in more than the model: `run_config.config.params.limit_samples`: 10 → 20"]);
        // Results produced by an older config are refused too.
        let mut stale = side("m2", 10, &[1, 0], true);
        stale.units.get_mut("gsm8k").unwrap().current = false;
        let (bs, cs) = sides(&b, &stale);
        let err = compare(&bs, &cs).unwrap_err();
        assert!(err[0].contains("the results of cand.yaml were produced by another version"), "{err:?}");
    }

    #[test]
    fn identity_differences_ignore_the_model_only() {
        let mut a = identity("m1", 10);
        let b = identity("m2", 10);
        assert!(identity_differences(&a, &b).is_empty());
        a["container"] = json!("img:2");
        a["env"] = json!([["A", "lit", "1"], ["B", "lit", "2"]]);
        a["deployment_x"] = json!(1);
        assert_eq!(
            identity_differences(&a, &b),
            [
                "`container`: \"img:2\" → \"img:1\"",
                "`deployment_x`: 1 → (unset)",
                "`env[1][0]`: \"B\" → (unset)",
                "`env[1][1]`: \"lit\" → (unset)",
                "`env[1][2]`: \"2\" → (unset)"
            ]
        );
    }

    #[test]
    fn hostile_names_stay_inside_their_markdown_cell() {
        let mut b = side("m1", 10, &[1, 0], false);
        b.report.rows[0].task = "<img src=x onerror=alert(1)>|x\n# h".into();
        let c = b.clone();
        let (bs, cs) = sides(&b, &c);
        let m = render(&compare(&bs, &cs).unwrap(), Format::Markdown);
        assert!(!m.contains("<img") && m.contains("&lt;img src=x onerror=alert(1)&gt;\\|x # h"), "{m}");
    }
}
