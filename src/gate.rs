//! Gates: a go/no-go decision on a comparison, for CI. A policy file says,
//! per group of scores, the least (or most) a candidate may score, how far
//! it may fall behind the base, and whether a fall must be significant to
//! count. The verdict is one of three, each with its own exit code:
//! pass, fail, or inconclusive (the data cannot decide: a rule matches no
//! score, or a fall beyond the allowance is not significant).
//!
//! ```yaml
//! version: 1
//! significance: 0.05            # default alpha of the rules
//! rules:
//!   - task: "gsm8k*"            # globs, `*` by default
//!     metric: exact_match
//!     min: 0.70                 # the candidate's value at least
//!     max_regression: 0.02      # at most this far below the base
//!     require_significance: true
//! ```
//!
//! Parsing keeps every value's place in the file, so a bad policy is an
//! error at its line; evaluation is a pure function of the comparison.

use serde::Serialize;

use crate::compare::{Compared, Comparison, ScoreKey};
use crate::config::node::{Node, Value};
use crate::config::yaml;
use crate::diag::{Diagnostic, Sources, Span};

/// The version of the policy format.
pub const POLICY_VERSION: i64 = 1;

/// A parsed policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub rules: Vec<Rule>,
}

/// One rule: which scores, and what they must satisfy.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// `file:line:col` of the rule, to name it in the verdict.
    pub at: String,
    pub unit: String,
    pub task: String,
    pub metric: String,
    pub score: String,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub max_regression: Option<f64>,
    pub higher_is_better: bool,
    pub require_significance: bool,
    pub significance: f64,
}

const RULE_KEYS: &[&str] = &[
    "unit",
    "task",
    "metric",
    "score",
    "min",
    "max",
    "max_regression",
    "higher_is_better",
    "require_significance",
    "significance",
];

/// Reads a policy; every problem is a diagnostic at its place.
pub fn parse(sources: &Sources, name: &str, text: &str) -> Result<Policy, Vec<Diagnostic>> {
    let id = sources.add(name, text);
    let root = yaml::parse(text, id).map_err(|d| vec![d])?;
    let mut errs = vec![];
    let Some(map) = root.as_map() else {
        return Err(vec![Diagnostic::error(root.span, "a gate policy is a mapping with `version` and `rules`")]);
    };
    for (k, e) in map {
        if !["version", "significance", "rules"].contains(&k.as_str()) {
            errs.push(
                Diagnostic::error(e.key_span, format!("unknown key `{k}` in a gate policy"))
                    .with_note("a policy has `version`, `significance` and `rules`"),
            );
        }
    }
    match map.get("version").map(|e| &e.node) {
        Some(Node { value: Value::Int(POLICY_VERSION), .. }) => {}
        Some(n) => {
            errs.push(Diagnostic::error(n.span, format!("unsupported policy version: expected {POLICY_VERSION}")))
        }
        None => errs.push(Diagnostic::error(root.span, format!("a gate policy needs `version: {POLICY_VERSION}`"))),
    }
    let alpha = match map.get("significance") {
        Some(e) => probability(&e.node, &mut errs).unwrap_or(0.05),
        None => 0.05,
    };
    let mut rules = vec![];
    match map.get("rules").map(|e| &e.node) {
        Some(Node { value: Value::Seq(items), .. }) if !items.is_empty() => {
            for item in items {
                if let Some(r) = rule(sources, item, alpha, &mut errs) {
                    rules.push(r);
                }
            }
        }
        Some(n) => errs.push(Diagnostic::error(n.span, "`rules` must be a non-empty list")),
        None => errs.push(Diagnostic::error(root.span, "a gate policy needs `rules`")),
    }
    if errs.is_empty() { Ok(Policy { rules }) } else { Err(errs) }
}

fn rule(sources: &Sources, node: &Node, alpha: f64, errs: &mut Vec<Diagnostic>) -> Option<Rule> {
    let Some(map) = node.as_map() else {
        errs.push(Diagnostic::error(node.span, "a rule is a mapping (`task`, `metric`, `min`, `max_regression`, ...)"));
        return None;
    };
    let before = errs.len();
    for (k, e) in map {
        if !RULE_KEYS.contains(&k.as_str()) {
            let close = RULE_KEYS.iter().find(|c| strsim::jaro_winkler(c, k) > 0.85);
            let mut d = Diagnostic::error(e.key_span, format!("unknown key `{k}` in a gate rule"));
            if let Some(c) = close {
                d = d.with_note(format!("did you mean `{c}`?"));
            }
            errs.push(d);
        }
    }
    let text = |key: &str, errs: &mut Vec<Diagnostic>| match map.get(key).map(|e| &e.node) {
        None => "*".to_owned(),
        Some(Node { value: Value::Str(s), .. }) => s.clone(),
        Some(n) => {
            errs.push(Diagnostic::error(n.span, format!("`{key}` is a name or a glob (`*` matches any text)")));
            "*".to_owned()
        }
    };
    let number = |key: &str, errs: &mut Vec<Diagnostic>| match map.get(key).map(|e| &e.node) {
        None => None,
        Some(n) => match n.value {
            Value::Int(i) => Some(i as f64),
            Value::Float(f) if f.is_finite() => Some(f),
            _ => {
                errs.push(Diagnostic::error(n.span, format!("`{key}` must be a number")));
                None
            }
        },
    };
    let flag = |key: &str, default: bool, errs: &mut Vec<Diagnostic>| match map.get(key).map(|e| &e.node) {
        None => default,
        Some(Node { value: Value::Bool(b), .. }) => *b,
        Some(n) => {
            errs.push(Diagnostic::error(n.span, format!("`{key}` must be true or false")));
            default
        }
    };
    let r = Rule {
        at: sources.location(node.span),
        unit: text("unit", errs),
        task: text("task", errs),
        metric: text("metric", errs),
        score: text("score", errs),
        min: number("min", errs),
        max: number("max", errs),
        max_regression: number("max_regression", errs),
        higher_is_better: flag("higher_is_better", true, errs),
        require_significance: flag("require_significance", false, errs),
        significance: map.get("significance").and_then(|e| probability(&e.node, errs)).unwrap_or(alpha),
    };
    if let Some(m) = r.max_regression.filter(|m| *m < 0.0) {
        errs.push(Diagnostic::error(
            value_span(map, "max_regression"),
            format!("`max_regression` is {m}: it must be 0 or more"),
        ));
    }
    if !["min", "max", "max_regression"].iter().any(|k| map.contains_key(*k)) {
        errs.push(Diagnostic::error(node.span, "this rule checks nothing: give it `min`, `max` or `max_regression`"));
    }
    (errs.len() == before).then_some(r)
}

fn value_span(map: &crate::config::node::Map, key: &str) -> Span {
    map.get(key).map(|e| e.node.span).unwrap_or_default()
}

fn probability(n: &Node, errs: &mut Vec<Diagnostic>) -> Option<f64> {
    let v = match n.value {
        Value::Float(f) => f,
        Value::Int(i) => i as f64,
        _ => f64::NAN,
    };
    if v > 0.0 && v < 1.0 {
        Some(v)
    } else {
        errs.push(Diagnostic::error(n.span, "`significance` must be a number between 0 and 1 (e.g. 0.05)"));
        None
    }
}

/// A glob that matches the whole text; `*` matches any run of characters.
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) || text.len() < first.len() + last.len() {
        return false;
    }
    let mut pos = first.len();
    let end = text.len() - last.len();
    for part in &parts[1..parts.len() - 1] {
        match text[pos..end].find(part) {
            Some(i) => pos += i + part.len(),
            None => return false,
        }
    }
    true
}

impl Rule {
    fn matches(&self, k: &ScoreKey) -> bool {
        glob(&self.unit, &k.unit)
            && glob(&self.task, &k.task)
            && glob(&self.metric, &k.metric)
            && glob(&self.score, &k.score)
    }
}

/// The gate's decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Inconclusive,
    Fail,
}

/// What one rule decided for one score (or for none, when it matched none).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    /// Where the rule is written (`file:line:col`).
    pub rule: String,
    pub score: Option<ScoreKey>,
    pub outcome: Outcome,
    pub reason: String,
}

/// Every check and the verdict: the worst outcome.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    pub outcome: Outcome,
    pub checks: Vec<Check>,
}

/// Applies every rule to every score it matches.
pub fn evaluate(policy: &Policy, cmp: &Comparison) -> Verdict {
    let mut checks = vec![];
    for rule in &policy.rules {
        let mut matched = false;
        for row in cmp.rows.iter().filter(|r| rule.matches(&r.key())) {
            matched = true;
            let (outcome, reason) = check(rule, row);
            checks.push(Check { rule: rule.at.clone(), score: Some(row.key()), outcome, reason });
        }
        for k in cmp.only_base.iter().filter(|k| rule.matches(k)) {
            matched = true;
            checks.push(Check {
                rule: rule.at.clone(),
                score: Some(k.clone()),
                outcome: Outcome::Fail,
                reason: "the candidate has no such score".into(),
            });
        }
        if !matched {
            checks.push(Check {
                rule: rule.at.clone(),
                score: None,
                outcome: Outcome::Inconclusive,
                reason: "the rule matches no score both sides have".into(),
            });
        }
    }
    let outcome = checks.iter().map(|c| c.outcome).max().unwrap_or(Outcome::Inconclusive);
    Verdict { outcome, checks }
}

fn check(rule: &Rule, row: &Compared) -> (Outcome, String) {
    let v = row.candidate.value;
    if let Some(min) = rule.min.filter(|m| v < *m) {
        return (Outcome::Fail, format!("{v:.4} is below the minimum {min}"));
    }
    if let Some(max) = rule.max.filter(|m| v > *m) {
        return (Outcome::Fail, format!("{v:.4} is above the maximum {max}"));
    }
    let Some(allowed) = rule.max_regression else {
        return (Outcome::Pass, format!("{v:.4} is within its bounds"));
    };
    let delta = v - row.base.value;
    let regression = if rule.higher_is_better { -delta } else { delta };
    if regression <= allowed {
        return (Outcome::Pass, format!("change {delta:+.4} is within the allowed regression {allowed}"));
    }
    let beyond = format!("regression {regression:.4} exceeds the allowed {allowed}");
    if !rule.require_significance {
        return (Outcome::Fail, beyond);
    }
    match &row.difference {
        None => (Outcome::Inconclusive, format!("{beyond}, and no test can say whether it is real")),
        Some(d) if d.p_value < rule.significance => {
            (Outcome::Fail, format!("{beyond}, significant (p = {:.4} < {})", d.p_value, rule.significance))
        }
        Some(d) => {
            (Outcome::Inconclusive, format!("{beyond}, not significant (p = {:.4} ≥ {})", d.p_value, rule.significance))
        }
    }
}

/// The verdict as text lines.
pub fn text(v: &Verdict) -> String {
    let mut out = format!("gate: {}\n", name(v.outcome));
    for c in &v.checks {
        let what = c.score.as_ref().map_or_else(|| "-".to_owned(), ToString::to_string);
        out.push_str(&format!("  {:<12} {what}: {} (rule at {})\n", name(c.outcome), c.reason, c.rule));
    }
    out
}

/// The verdict as a Markdown section.
pub fn markdown(v: &Verdict) -> String {
    let mut out =
        format!("\n#### Gate: **{}**\n\n| outcome | score | why | rule |\n|---|---|---|---|\n", name(v.outcome));
    let md = crate::table::markdown_text;
    for c in &v.checks {
        let what = c.score.as_ref().map_or_else(|| "-".to_owned(), ToString::to_string);
        out.push_str(&format!("| {} | {} | {} | {} |\n", name(c.outcome), md(&what), md(&c.reason), md(&c.rule)));
    }
    out
}

fn name(o: Outcome) -> &'static str {
    match o {
        Outcome::Pass => "pass",
        Outcome::Fail => "FAIL",
        Outcome::Inconclusive => "inconclusive",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::Value as V;
    use crate::stats::{Difference, Method};

    fn policy(text: &str) -> Result<Policy, Vec<String>> {
        let sources = Sources::new();
        parse(&sources, "gate.yaml", text).map_err(|ds| {
            ds.iter()
                .map(|d| format!("{}: {}", d.span.map(|s| sources.location(s)).unwrap_or_default(), d.message))
                .collect()
        })
    }

    fn row(task: &str, base: f64, cand: f64, p: Option<f64>) -> Compared {
        let v = |value| V { value, stderr: None, count: Some(100), fingerprint: "f".into() };
        Compared {
            unit: task.into(),
            task: task.into(),
            metric: "acc".into(),
            score: "acc".into(),
            base: v(base),
            candidate: v(cand),
            difference: p.map(|p_value| Difference {
                method: Method::Mcnemar,
                delta: cand - base,
                ci95: [0.0, 0.0],
                p_value,
                pairs: Some(100),
                base_only: Some(0),
                candidate_only: Some(0),
            }),
            note: None,
        }
    }

    fn cmp(rows: Vec<Compared>) -> Comparison {
        let side = crate::compare::SideInfo { label: "x".into(), stack: "x".into(), model: None };
        Comparison {
            version: 1,
            base: side.clone(),
            candidate: side,
            rows,
            only_base: vec![],
            only_candidate: vec![],
            missing: vec![],
            gate: None,
        }
    }

    #[test]
    fn bad_policies_are_errors_at_their_line() {
        let errs =
            policy("version: 2\nrules:\n  - task: gsm8k\n    max_regresion: 0.1\n  - metric: [a]\n    min: high\n")
                .unwrap_err();
        assert_eq!(
            errs,
            [
                "gate.yaml:1:10: unsupported policy version: expected 1",
                "gate.yaml:4:5: unknown key `max_regresion` in a gate rule",
                "gate.yaml:3:5: this rule checks nothing: give it `min`, `max` or `max_regression`",
                "gate.yaml:5:13: `metric` is a name or a glob (`*` matches any text)",
                "gate.yaml:6:10: `min` must be a number",
            ]
        );
        assert!(policy("version: 1\nrules: []\n").unwrap_err()[0].contains("`rules` must be a non-empty list"));
        assert!(
            policy("version: 1\nsignificance: 2\nrules: [{min: 0}]\n").unwrap_err()[0]
                .starts_with("gate.yaml:2:15: `significance`")
        );
        assert!(policy("[").is_err());
    }

    #[test]
    fn each_outcome_and_the_worst_wins() {
        let p = policy(
            "version: 1\nrules:\n  - task: gsm*\n    min: 0.5\n    max_regression: 0.02\n    require_significance: true\n  - task: none\n    min: 0\n",
        )
        .unwrap();
        assert_eq!((p.rules[0].at.as_str(), p.rules[0].significance), ("gate.yaml:3:5", 0.05));
        let verdict = |rows| evaluate(&p, &cmp(rows));
        // Within the allowance: pass; but the second rule matches nothing.
        let v = verdict(vec![row("gsm8k", 0.70, 0.69, Some(0.5))]);
        assert_eq!(v.checks[0].outcome, Outcome::Pass);
        assert_eq!(v.checks[1].outcome, Outcome::Inconclusive);
        assert_eq!(v.checks[1].score, None);
        assert_eq!(v.outcome, Outcome::Inconclusive);
        let p1 = Policy { rules: vec![p.rules[0].clone()] };
        let one = |r| evaluate(&p1, &cmp(vec![r]));
        assert_eq!(one(row("gsm8k", 0.70, 0.69, Some(0.5))).outcome, Outcome::Pass);
        // Beyond it and significant: fail; not significant: inconclusive; no test: inconclusive.
        let v = one(row("gsm8k", 0.70, 0.60, Some(0.001)));
        assert_eq!(v.outcome, Outcome::Fail);
        assert!(v.checks[0].reason.contains("significant (p = 0.0010 < 0.05)"), "{v:?}");
        assert_eq!(one(row("gsm8k", 0.70, 0.60, Some(0.3))).outcome, Outcome::Inconclusive);
        assert_eq!(one(row("gsm8k", 0.70, 0.60, None)).outcome, Outcome::Inconclusive);
        // Below the minimum: fail whatever the base.
        assert_eq!(one(row("gsm8k", 0.40, 0.45, None)).outcome, Outcome::Fail);
        // A score the candidate lost fails a rule that covers it.
        let mut c = cmp(vec![]);
        c.only_base.push(ScoreKey {
            unit: "gsm8k".into(),
            task: "gsm8k".into(),
            metric: "acc".into(),
            score: "acc".into(),
        });
        assert_eq!(evaluate(&p1, &c).outcome, Outcome::Fail);
        assert!(text(&evaluate(&p1, &c)).contains("FAIL"));
        // Lower is better: a rise is the regression.
        let mut lower = p1.clone();
        lower.rules[0].higher_is_better = false;
        lower.rules[0].require_significance = false;
        lower.rules[0].min = None;
        assert_eq!(evaluate(&lower, &cmp(vec![row("gsm8k", 0.10, 0.20, None)])).outcome, Outcome::Fail);
        assert_eq!(evaluate(&lower, &cmp(vec![row("gsm8k", 0.20, 0.10, None)])).outcome, Outcome::Pass);
    }

    #[test]
    fn globs_match_whole_names() {
        assert!(glob("*", "") && glob("gsm*", "gsm8k") && glob("*8k", "gsm8k") && glob("g*8*k", "gsm8k"));
        assert!(!glob("gsm", "gsm8k") && !glob("*8", "gsm8k") && !glob("ab*ba", "aba"));
    }
}
