//! The harness's results, as scores: reads the `results.yml` nemo-evaluator
//! writes into a task's output folder and flattens it into one [`Score`]
//! per task (or group) × metric × score.
//!
//! The file's `results` has `tasks` and `groups`, each name mapping to
//! `metrics` → metric name → `scores` → score name → `value` and `stats`
//! (`count`, `mean`, `stderr`, `stddev`, ...); groups nest under `groups`.
//! Everything else in the file (`command`, `config`, `target`, metadata)
//! is not read. Pure: the text comes from the cluster through one round
//! trip (`remote::refresh::detail_program`).

use serde::Serialize;
use serde_json::Value as J;

use crate::config::yaml;
use crate::diag::Sources;

/// One score of one metric of a task or group.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Score {
    /// `task` or `group`.
    pub level: &'static str,
    /// The task's or group's name; a nested group's is `outer/inner`.
    pub name: String,
    pub metric: String,
    pub score: String,
    pub value: f64,
    pub stderr: Option<f64>,
    /// Samples the score was computed from.
    pub count: Option<u64>,
}

/// The scores of a results file, in file order.
pub fn parse(text: &str) -> Result<Vec<Score>, String> {
    let sources = Sources::new();
    let id = sources.add("results.yml", text);
    let node = yaml::parse(text, id).map_err(|d| format!("results.yml is not YAML: {}", d.message))?;
    let doc = node.to_json();
    let results = doc.get("results").ok_or("results.yml has no `results`")?;
    let mut out = vec![];
    if let Some(tasks) = results.get("tasks").and_then(J::as_object) {
        for (name, task) in tasks {
            metrics("task", name, task, &mut out)?;
        }
    }
    if let Some(groups) = results.get("groups").and_then(J::as_object) {
        for (name, group) in groups {
            group_scores(name, group, &mut out)?;
        }
    }
    Ok(out)
}

fn group_scores(name: &str, group: &J, out: &mut Vec<Score>) -> Result<(), String> {
    metrics("group", name, group, out)?;
    if let Some(inner) = group.get("groups").and_then(J::as_object) {
        for (sub, g) in inner {
            group_scores(&format!("{name}/{sub}"), g, out)?;
        }
    }
    Ok(())
}

fn metrics(level: &'static str, name: &str, node: &J, out: &mut Vec<Score>) -> Result<(), String> {
    let Some(metrics) = node.get("metrics").and_then(J::as_object) else { return Ok(()) };
    for (metric, m) in metrics {
        let Some(scores) = m.get("scores").and_then(J::as_object) else { continue };
        for (score, s) in scores {
            let value = s.get("value").and_then(number).ok_or_else(|| {
                format!("{level} `{name}`, metric `{metric}`, score `{score}`: `value` is not a number")
            })?;
            let stats = s.get("stats");
            out.push(Score {
                level,
                name: name.to_owned(),
                metric: metric.clone(),
                score: score.clone(),
                value,
                stderr: stats.and_then(|st| st.get("stderr")).and_then(number),
                count: stats.and_then(|st| st.get("count")).and_then(number).map(|c| c as u64),
            });
        }
    }
    Ok(())
}

/// One per-sample record: the sample's id and its score.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub id: String,
    pub score: f64,
}

/// The records of a per-sample file (JSON Lines): each line an object with
/// an `id` (text or number; with a `sub_query_id`, `id#sub`) and a numeric
/// or boolean `score`. A line without either makes the file unusable for a
/// paired test, and says which line.
pub fn samples(text: &str) -> Result<Vec<Sample>, String> {
    let mut out = vec![];
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = |what: &str| format!("line {}: {what}", i + 1);
        let rec: J = serde_json::from_str(line).map_err(|_| at("not a JSON object"))?;
        let id = match rec.get("id") {
            Some(J::String(s)) => s.clone(),
            Some(J::Number(n)) => n.to_string(),
            _ => return Err(at("no `id`")),
        };
        let id = match rec.get("sub_query_id") {
            Some(J::Number(n)) => format!("{id}#{n}"),
            Some(J::String(s)) => format!("{id}#{s}"),
            _ => id,
        };
        let score = match rec.get("score") {
            Some(J::Bool(b)) => f64::from(u8::from(*b)),
            Some(v) => number(v).ok_or_else(|| at("`score` is not a number"))?,
            None => return Err(at("no `score`")),
        };
        out.push(Sample { id, score });
    }
    Ok(out)
}

/// A number, also one YAML wrote as text.
fn number(v: &J) -> Option<f64> {
    match v {
        J::Number(n) => n.as_f64(),
        J::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As PyYAML's `yaml.dump` writes the harness's results (keys sorted);
    /// `tests/harness_models.rs` checks it against the harness's models.
    const SAMPLE: &str = include_str!("../tests/fixtures/results/results.yml");

    #[test]
    fn every_score_of_tasks_and_nested_groups() {
        let s = parse(SAMPLE).unwrap();
        type Row<'a> = (&'a str, &'a str, &'a str, &'a str, f64, Option<f64>, Option<u64>);
        let rows: Vec<Row> = s
            .iter()
            .map(|x| (x.level, x.name.as_str(), x.metric.as_str(), x.score.as_str(), x.value, x.stderr, x.count))
            .collect();
        assert_eq!(
            rows,
            [
                ("task", "gsm8k", "exact_match", "flexible-extract", 0.75, Some(0.0119), Some(1319)),
                ("task", "gsm8k", "exact_match", "strict-match", 0.7331, Some(0.012), Some(1319)),
                ("group", "mmlu", "acc", "acc", 0.61, Some(0.01), None),
                ("group", "mmlu/stem", "acc", "acc", 0.5, None, Some(50)),
            ]
        );
    }

    #[test]
    fn per_sample_records_by_id() {
        let text = "{\"id\": \"a\", \"score\": 1}\n\n{\"id\": 7, \"sub_query_id\": 2, \"score\": false}\n{\"id\": \"b\", \"score\": 0.25, \"generation\": \"x\"}\n";
        let s: Vec<(String, f64)> = samples(text).unwrap().into_iter().map(|s| (s.id, s.score)).collect();
        assert_eq!(s, [("a".into(), 1.0), ("7#2".into(), 0.0), ("b".into(), 0.25)]);
        assert_eq!(samples("{\"id\": 1}\n").unwrap_err(), "line 1: no `score`");
        assert_eq!(samples("{\"score\": 1}\n").unwrap_err(), "line 1: no `id`");
        assert_eq!(samples("{\"id\": 1, \"score\": 1}\n[").unwrap_err(), "line 2: not a JSON object");
    }

    #[test]
    fn a_file_that_is_not_results_says_so() {
        assert!(parse("a: [").unwrap_err().contains("not YAML"));
        assert!(parse("config: {}\n").unwrap_err().contains("no `results`"));
        let bad = "results:\n  tasks:\n    t:\n      metrics:\n        m:\n          scores:\n            s:\n              value: high\n";
        assert!(parse(bad).unwrap_err().contains("task `t`, metric `m`, score `s`: `value` is not a number"));
        // JSON is YAML: the test cluster's stand-in harness writes it so.
        let json = r#"{"results": {"tasks": {"t": {"metrics": {"m": {"scores": {"s": {"value": 1, "stats": {}}}}}}}}}"#;
        assert_eq!(parse(json).unwrap()[0].value, 1.0);
    }
}
