//! The MLflow side of `evalctl export`, as plain data and pure functions:
//! the `export.mlflow` settings a launcher config carries, the run a task
//! unit should have on the tracking server ([`Desired`]), and what to send
//! given the runs the server already holds ([`decide`]). No I/O here; the
//! requests are sent by [`super::http`].
//!
//! One run per task unit, found again by its tags `evalctl.stack` and
//! `evalctl.unit`, so exporting twice changes nothing. A run belongs to
//! one fingerprint (the unit's result hash: model, image, task,
//! parameters): when the unit's fingerprint changes, the scores come from
//! something else, so a new run is made and the earlier ones are kept as
//! history, tagged `evalctl.current=false`. With the same fingerprint the
//! run is updated in place: only metrics whose value changed are logged
//! again (MLflow keeps every logged value as history), tags are rewritten
//! and the results file is uploaded again only when its hash changed.

use std::collections::BTreeMap;

use serde_json::Value as J;
use sha2::{Digest, Sha256};

use crate::config::model::Open;

/// The longest metric, param or tag key MLflow takes.
pub const MAX_KEY: usize = 250;
/// The longest param value evalctl sends (older servers take 500).
pub const MAX_PARAM_VALUE: usize = 250;
/// The longest tag value evalctl sends (MLflow's limit is 5000 or more).
pub const MAX_TAG_VALUE: usize = 5000;

/// Tags evalctl sets on every run it makes.
pub const TAG_STACK: &str = "evalctl.stack";
pub const TAG_UNIT: &str = "evalctl.unit";
pub const TAG_FINGERPRINT: &str = "evalctl.fingerprint";
pub const TAG_JOBS: &str = "evalctl.jobs";
pub const TAG_STATE: &str = "evalctl.state";
/// `true` on the run that holds the unit's latest scores, `false` on runs
/// of earlier fingerprints.
pub const TAG_CURRENT: &str = "evalctl.current";
/// SHA-256 of the uploaded results file: it is uploaded again only when
/// this changes.
pub const TAG_RESULTS_SHA: &str = "evalctl.results_sha256";
/// The run's name and description, as MLflow's UI reads them.
pub const TAG_RUN_NAME: &str = "mlflow.runName";
pub const TAG_NOTE: &str = "mlflow.note.content";
/// The artifact's name in the run.
pub const ARTIFACT: &str = "results.yml";

/// `export.mlflow`: the launcher's MLflow exporter settings evalctl acts on.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Settings {
    /// `tracking_uri`: the server's URL (or the name of an environment
    /// variable holding it, as with the launcher).
    pub tracking_uri: Option<String>,
    /// `experiment_name`.
    pub experiment_name: Option<String>,
    /// `tags`: extra tags of every run (empty values dropped).
    pub tags: BTreeMap<String, String>,
    /// `description`: the runs' description (`mlflow.note.content`).
    pub description: Option<String>,
    /// `log_metrics`: only metrics whose name contains one of these
    /// (case-insensitive); empty: every metric.
    pub log_metrics: Vec<String>,
    /// `log_artifacts` (default true): upload each unit's `results.yml`.
    pub log_artifacts: bool,
    /// `extra_metadata`: extra params of every run.
    pub extra_metadata: BTreeMap<String, String>,
}

/// A problem with one key of `export.mlflow`: `error` refuses the config,
/// otherwise a warning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    /// The key under `export.mlflow`.
    pub key: String,
    pub error: bool,
    pub message: String,
}

/// Reads `export.mlflow`; every key evalctl does not act on is an issue.
pub fn settings(mlflow: Option<&Open>) -> (Settings, Vec<Issue>) {
    let mut s = Settings { log_artifacts: true, ..Settings::default() };
    let mut issues = vec![];
    let Some(map) = mlflow else { return (s, issues) };
    let mut issue = |key: &str, error: bool, message: String| {
        issues.push(Issue { key: key.to_owned(), error, message: format!("`export.mlflow.{key}`: {message}") })
    };
    for (key, v) in map {
        match key.as_str() {
            "tracking_uri" | "experiment_name" | "description" => match v {
                J::Null => {}
                J::String(t) => {
                    let slot = match key.as_str() {
                        "tracking_uri" => &mut s.tracking_uri,
                        "experiment_name" => &mut s.experiment_name,
                        _ => &mut s.description,
                    };
                    *slot = Some(t.clone()).filter(|t| !t.is_empty());
                }
                _ => issue(key, true, "must be a string".into()),
            },
            "tags" | "extra_metadata" => match v {
                J::Null => {}
                J::Object(m) => {
                    let into = if key == "tags" { &mut s.tags } else { &mut s.extra_metadata };
                    for (k, v) in m {
                        match scalar(v) {
                            Some(t) if !t.is_empty() => {
                                into.insert(k.clone(), t);
                            }
                            Some(_) => {}
                            None => issue(key, true, format!("`{k}` must be a string, number or boolean")),
                        }
                    }
                }
                _ => issue(key, true, "must be a mapping of names to values".into()),
            },
            "log_metrics" => match v {
                J::Null => {}
                J::Array(items) => {
                    for i in items {
                        match i {
                            J::String(t) => s.log_metrics.push(t.to_lowercase()),
                            _ => issue(key, true, "must be a list of strings (parts of metric names)".into()),
                        }
                    }
                }
                _ => issue(key, true, "must be a list of strings (parts of metric names)".into()),
            },
            "log_artifacts" => match v {
                J::Bool(b) => s.log_artifacts = *b,
                J::Null => {}
                _ => issue(key, true, "must be true or false".into()),
            },
            "skip_existing" => issue(
                key,
                false,
                "unused: evalctl never makes a second run of a unit; an unchanged run is left alone and a changed one updated".into(),
            ),
            "run_name" => issue(
                key,
                false,
                "unused: evalctl makes one run per task unit and names it after the unit".into(),
            ),
            // Warnings, not errors: the launcher's own auto-export example
            // sets both, and the scores still go as asked.
            "log_logs" | "copy_logs" if truthy(v) => issue(
                key,
                false,
                "unused: evalctl uploads only each task's `results.yml`, not its logs (they stay on the cluster)".into(),
            ),
            "only_required" if matches!(v, J::Bool(false)) => issue(
                key,
                false,
                "unused: evalctl uploads only each task's `results.yml`, not the whole `artifacts/` folder".into(),
            ),
            "log_logs" | "copy_logs" | "only_required" => {}
            "format" | "output_filename" => issue(
                key,
                false,
                "unused: a setting of the launcher's local exporter, which evalctl's MLflow export does not use".into(),
            ),
            _ => issue(key, false, "not a setting evalctl's MLflow export knows: unused".into()),
        }
    }
    (s, issues)
}

fn scalar(v: &J) -> Option<String> {
    match v {
        J::String(s) => Some(s.clone()),
        J::Number(n) => Some(n.to_string()),
        J::Bool(b) => Some(b.to_string()),
        J::Null => Some(String::new()),
        _ => None,
    }
}

fn truthy(v: &J) -> bool {
    !matches!(v, J::Null | J::Bool(false))
}

/// A metric, param or tag key MLflow accepts: letters, digits and `_ - . /`
/// and space kept, anything else `_`; no empty, `.` or `..` path segment;
/// at most [`MAX_KEY`] characters.
pub fn key(name: &str) -> String {
    let mapped: String = name
        .replace("pass@", "pass_at_")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "_-. /".contains(c) { c } else { '_' })
        .collect();
    let segments: Vec<&str> =
        mapped.split('/').filter(|s| !s.is_empty()).map(|s| if s == "." || s == ".." { "_" } else { s }).collect();
    let mut out = segments.join("/");
    if out.is_empty() {
        out.push('_');
    }
    truncate(&out, MAX_KEY).trim_end_matches('/').to_owned()
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A value on one line, at most `max` bytes.
fn value(s: &str, max: usize) -> String {
    truncate(&s.replace(['\n', '\r'], " "), max).trim().to_owned()
}

/// One score of a unit, as `export` reads it from the results report.
#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    pub task: String,
    pub metric: String,
    pub score: String,
    pub value: f64,
    pub stderr: Option<f64>,
    pub count: Option<u64>,
}

/// A task unit's results, as the run should show them.
#[derive(Clone, Debug, PartialEq)]
pub struct UnitResults {
    pub stack: String,
    pub unit: String,
    pub fingerprint: String,
    pub state: String,
    pub jobs: Vec<crate::jobid::JobId>,
    pub elapsed_s: u64,
    pub gpu_hours: Option<f64>,
    pub scores: Vec<Score>,
    /// The unit's `results.yml`, when it was read.
    pub results_file: Option<String>,
}

/// What a unit's run should hold.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub unit: String,
    pub fingerprint: String,
    pub tags: BTreeMap<String, String>,
    pub params: BTreeMap<String, String>,
    pub metrics: BTreeMap<String, f64>,
    /// The results file to upload, when artifacts are logged.
    pub artifact: Option<String>,
    /// What was left out, for the report (a filtered or non-finite score).
    pub notes: Vec<String>,
}

/// The run a unit should have: metrics `<task>.<metric>.<score>` (and
/// `..._stderr`), params `task`, `count` and `extra_metadata`, evalctl's
/// tags and the configured ones. Fails when two scores would share a
/// metric name with different values.
pub fn desired(u: &UnitResults, s: &Settings) -> Result<Desired, String> {
    let mut metrics: BTreeMap<String, f64> = BTreeMap::new();
    let mut from: BTreeMap<String, String> = BTreeMap::new();
    let mut notes = vec![];
    let mut filtered = 0;
    for sc in &u.scores {
        let name = key(&format!("{}.{}.{}", sc.task, sc.metric, sc.score));
        if !s.log_metrics.is_empty() && !s.log_metrics.iter().any(|f| name.to_lowercase().contains(f.as_str())) {
            filtered += 1;
            continue;
        }
        let shown = format!("{}/{}/{}", sc.task, sc.metric, sc.score);
        let mut put = |k: String, v: f64| -> Result<(), String> {
            if !v.is_finite() {
                notes.push(format!("`{shown}` is {v}: not logged"));
                return Ok(());
            }
            match metrics.get(&k) {
                Some(old) if *old != v => Err(format!(
                    "scores `{}` and `{shown}` would both be the MLflow metric `{k}` with different values",
                    from[&k]
                )),
                _ => {
                    metrics.insert(k.clone(), v);
                    from.entry(k).or_insert_with(|| shown.clone());
                    Ok(())
                }
            }
        };
        put(name.clone(), sc.value)?;
        if let Some(e) = sc.stderr {
            put(key(&format!("{name}_stderr")), e)?;
        }
    }
    if filtered > 0 {
        notes.push(format!("{filtered} score(s) left out by `log_metrics`"));
    }
    metrics.insert("evalctl.elapsed_s".into(), u.elapsed_s as f64);
    if let Some(h) = u.gpu_hours {
        metrics.insert("evalctl.gpu_hours".into(), h);
    }

    let mut tasks: Vec<&str> = u.scores.iter().map(|s| s.task.as_str()).collect();
    tasks.dedup();
    let mut params = BTreeMap::from([("task".to_owned(), value(&tasks.join(","), MAX_PARAM_VALUE))]);
    if let Some(c) = u.scores.iter().filter_map(|s| s.count).max() {
        params.insert("count".into(), c.to_string());
    }
    for (k, v) in &s.extra_metadata {
        params.insert(key(k), value(v, MAX_PARAM_VALUE));
    }

    let mut tags: BTreeMap<String, String> = s.tags.iter().map(|(k, v)| (key(k), value(v, MAX_TAG_VALUE))).collect();
    if let Some(d) = &s.description {
        tags.insert(TAG_NOTE.into(), value(d, MAX_TAG_VALUE));
    }
    let jobs = u.jobs.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    for (k, v) in [
        (TAG_STACK, u.stack.as_str()),
        (TAG_UNIT, u.unit.as_str()),
        (TAG_FINGERPRINT, u.fingerprint.as_str()),
        (TAG_JOBS, jobs.as_str()),
        (TAG_STATE, u.state.as_str()),
        (TAG_CURRENT, "true"),
        (TAG_RUN_NAME, u.unit.as_str()),
    ] {
        tags.insert(k.into(), v.into());
    }
    let artifact = u.results_file.clone().filter(|_| s.log_artifacts);
    if let Some(text) = &artifact {
        tags.insert(TAG_RESULTS_SHA.into(), sha256(text));
    }
    Ok(Desired { unit: u.unit.clone(), fingerprint: u.fingerprint.clone(), tags, params, metrics, artifact, notes })
}

/// Hex SHA-256 of a text.
pub fn sha256(text: &str) -> String {
    crate::render::hex(&Sha256::digest(text.as_bytes()))
}

/// A run the server holds (from `runs/search`): its latest metric values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Run {
    pub run_id: String,
    pub artifact_uri: String,
    pub tags: BTreeMap<String, String>,
    pub params: BTreeMap<String, String>,
    pub metrics: BTreeMap<String, f64>,
}

/// What happened to a unit's run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Created,
    Updated,
    Unchanged,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Updated => "updated",
            Outcome::Unchanged => "unchanged",
        }
    }
}

/// What to send for one unit.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    /// The run to write to; none: create one (with `tags`).
    pub run_id: Option<String>,
    pub metrics: BTreeMap<String, f64>,
    pub params: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    /// Upload the results file (before the tags: its hash tag records it).
    pub upload: bool,
    /// Runs of earlier fingerprints still marked current: tag them
    /// `evalctl.current=false`.
    pub retire: Vec<String>,
}

impl Decision {
    pub fn outcome(&self) -> Outcome {
        if self.run_id.is_none() {
            Outcome::Created
        } else if self.metrics.is_empty()
            && self.params.is_empty()
            && self.tags.is_empty()
            && !self.upload
            && self.retire.is_empty()
        {
            Outcome::Unchanged
        } else {
            Outcome::Updated
        }
    }
}

/// What to send given the unit's runs on the server (those tagged with
/// its stack and unit). The run of the same fingerprint whose params agree
/// (MLflow never changes a logged param) is reused, sent only what
/// differs; without one a run is created. Other runs still marked current
/// are retired.
pub fn decide(d: &Desired, runs: &[Run]) -> Decision {
    let reusable = |r: &&Run| {
        r.tags.get(TAG_FINGERPRINT) == Some(&d.fingerprint)
            && d.params.iter().all(|(k, v)| r.params.get(k).is_none_or(|have| have == v))
    };
    let reuse = runs.iter().find(reusable);
    let retire = runs
        .iter()
        .filter(|r| Some(&r.run_id) != reuse.map(|u| &u.run_id))
        .filter(|r| r.tags.get(TAG_CURRENT).is_none_or(|c| c != "false"))
        .map(|r| r.run_id.clone())
        .collect();
    let Some(run) = reuse else {
        return Decision {
            run_id: None,
            metrics: d.metrics.clone(),
            params: d.params.clone(),
            tags: d.tags.clone(),
            upload: d.artifact.is_some(),
            retire,
        };
    };
    let differs = |have: Option<&String>, want: &String| have != Some(want);
    let tags: BTreeMap<String, String> =
        d.tags.iter().filter(|(k, v)| differs(run.tags.get(*k), v)).map(|(k, v)| (k.clone(), v.clone())).collect();
    Decision {
        run_id: Some(run.run_id.clone()),
        metrics: d
            .metrics
            .iter()
            .filter(|(k, v)| run.metrics.get(*k) != Some(v))
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        params: d
            .params
            .iter()
            .filter(|(k, _)| !run.params.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        upload: d.artifact.is_some() && tags.contains_key(TAG_RESULTS_SHA),
        tags,
        retire,
    }
}

/// The filter of `runs/search` for every run of a stack. Stack names are
/// letters, digits, `.`, `_` and `-` (`config::names`), never a quote.
pub fn stack_filter(stack: &str) -> String {
    format!("tags.\"{TAG_STACK}\" = '{stack}'")
}

/// The path under the artifact proxy (`/api/2.0/mlflow-artifacts/artifacts/`)
/// of a run's artifact, from the run's artifact URI; none when the server
/// does not proxy artifacts (the URI is a store the client would write to
/// itself: `s3://`, `file://`, a path).
pub fn proxied_path(artifact_uri: &str, name: &str) -> Option<String> {
    let rest = artifact_uri.strip_prefix("mlflow-artifacts:")?;
    // `mlflow-artifacts://host:port/path` or `mlflow-artifacts:/path`.
    let path = match rest.strip_prefix("//") {
        Some(after) => &after[after.find('/')?..],
        None => rest,
    };
    let path = path.trim_matches('/');
    Some(if path.is_empty() { name.to_owned() } else { format!("{path}/{name}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit() -> UnitResults {
        let score = |metric: &str, score: &str, value: f64, stderr: Option<f64>| Score {
            task: "gsm8k".into(),
            metric: metric.into(),
            score: score.into(),
            value,
            stderr,
            count: Some(1319),
        };
        UnitResults {
            stack: "s".into(),
            unit: "gsm8k".into(),
            fingerprint: "0123456789abcdef".into(),
            state: "completed".into(),
            jobs: crate::jobid::jobs([12, 13]),
            elapsed_s: 61,
            gpu_hours: Some(0.5),
            scores: vec![
                score("exact_match", "strict-match", 0.75, Some(0.01)),
                score("pass@1", "flexible,extract", 0.5, None),
            ],
            results_file: Some("results: {}\n".into()),
        }
    }

    fn open(yaml_json: J) -> Open {
        yaml_json.as_object().unwrap().clone()
    }

    #[test]
    fn keys_are_what_mlflow_accepts() {
        assert_eq!(key("gsm8k.exact_match.strict-match"), "gsm8k.exact_match.strict-match");
        assert_eq!(key("mmlu/stem.acc,none"), "mmlu/stem.acc_none");
        assert_eq!(key("humaneval.pass@1.x"), "humaneval.pass_at_1.x");
        assert_eq!(key("/a//../b/./c/"), "a/_/b/_/c");
        assert_eq!(key("ü:é"), "___");
        assert_eq!(key(""), "_");
        assert_eq!(key(&"x".repeat(300)).len(), MAX_KEY);
    }

    #[test]
    fn a_unit_becomes_metrics_params_and_tags() {
        let s = Settings {
            log_artifacts: true,
            tags: BTreeMap::from([("team".into(), "eval".into())]),
            description: Some("nightly\nrun".into()),
            ..Settings::default()
        };
        let d = desired(&unit(), &s).unwrap();
        let names: Vec<&str> = d.metrics.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "evalctl.elapsed_s",
                "evalctl.gpu_hours",
                "gsm8k.exact_match.strict-match",
                "gsm8k.exact_match.strict-match_stderr",
                "gsm8k.pass_at_1.flexible_extract"
            ]
        );
        assert_eq!(d.metrics["gsm8k.exact_match.strict-match_stderr"], 0.01);
        assert_eq!(d.params["task"], "gsm8k");
        assert_eq!(d.params["count"], "1319");
        assert_eq!(d.tags[TAG_JOBS], "12,13");
        assert_eq!(d.tags["team"], "eval");
        assert_eq!(d.tags[TAG_NOTE], "nightly run");
        assert_eq!(d.tags[TAG_RESULTS_SHA], sha256("results: {}\n"));
        assert_eq!(d.artifact.as_deref(), Some("results: {}\n"));

        let only = Settings { log_metrics: vec!["strict".into()], log_artifacts: false, ..Settings::default() };
        let d = desired(&unit(), &only).unwrap();
        assert!(d.metrics.contains_key("gsm8k.exact_match.strict-match"));
        assert!(!d.metrics.contains_key("gsm8k.pass_at_1.flexible_extract"));
        assert_eq!(d.notes, ["1 score(s) left out by `log_metrics`"]);
        assert_eq!(d.artifact, None);
        assert!(!d.tags.contains_key(TAG_RESULTS_SHA));
    }

    #[test]
    fn scores_that_collide_after_sanitizing_are_an_error_and_nan_is_left_out() {
        let mut u = unit();
        u.scores[1].metric = "exact_match".into();
        u.scores[1].score = "strict:match".into();
        u.scores[1].value = 0.1;
        u.scores[0].score = "strict_match".into();
        let e = desired(&u, &Settings::default()).unwrap_err();
        assert!(e.contains("would both be the MLflow metric `gsm8k.exact_match.strict_match`"), "{e}");
        let mut u = unit();
        u.scores[1].value = f64::NAN;
        let d = desired(&u, &Settings::default()).unwrap();
        assert_eq!(d.notes, ["`gsm8k/pass@1/flexible,extract` is NaN: not logged"]);
    }

    fn run_of(d: &Desired, id: &str) -> Run {
        Run {
            run_id: id.into(),
            artifact_uri: String::new(),
            tags: d.tags.clone(),
            params: d.params.clone(),
            metrics: d.metrics.clone(),
        }
    }

    #[test]
    fn the_same_run_is_unchanged_a_changed_value_updated_a_new_fingerprint_a_new_run() {
        let s = Settings { log_artifacts: true, ..Settings::default() };
        let d = desired(&unit(), &s).unwrap();
        assert_eq!(decide(&d, &[]).outcome(), Outcome::Created);
        assert!(decide(&d, &[]).upload);

        let same = run_of(&d, "r1");
        let dec = decide(&d, std::slice::from_ref(&same));
        assert_eq!(dec.outcome(), Outcome::Unchanged, "{dec:?}");

        let mut u = unit();
        u.scores[0].value = 0.8;
        u.jobs = crate::jobid::jobs([14]);
        let d2 = desired(&u, &s).unwrap();
        let dec = decide(&d2, std::slice::from_ref(&same));
        assert_eq!(dec.outcome(), Outcome::Updated);
        assert_eq!(dec.run_id.as_deref(), Some("r1"));
        assert_eq!(dec.metrics, BTreeMap::from([("gsm8k.exact_match.strict-match".to_owned(), 0.8)]));
        assert_eq!(dec.tags, BTreeMap::from([(TAG_JOBS.to_owned(), "14".to_owned())]));
        assert!(!dec.upload);

        let mut u = unit();
        u.fingerprint = "fedcba9876543210".into();
        let d3 = desired(&u, &s).unwrap();
        let dec = decide(&d3, std::slice::from_ref(&same));
        assert_eq!(dec.outcome(), Outcome::Created);
        assert_eq!(dec.retire, ["r1"]);
        // Back to the first fingerprint: its run again, the other retired.
        let mut newer = run_of(&d3, "r2");
        newer.tags.insert(TAG_CURRENT.into(), "true".into());
        let mut older = same.clone();
        older.tags.insert(TAG_CURRENT.into(), "false".into());
        let dec = decide(&d, &[newer, older]);
        assert_eq!(dec.run_id.as_deref(), Some("r1"));
        assert_eq!(dec.retire, ["r2"]);
        assert_eq!(dec.tags, BTreeMap::from([(TAG_CURRENT.to_owned(), "true".to_owned())]));

        // A param MLflow would refuse to change: a new run.
        let mut odd = same.clone();
        odd.params.insert("count".into(), "7".into());
        assert_eq!(decide(&d, &[odd]).outcome(), Outcome::Created);
    }

    #[test]
    fn settings_act_on_the_launcher_keys_and_name_the_others() {
        let (s, issues) = settings(Some(&open(serde_json::json!({
            "tracking_uri": "http://m:5000",
            "experiment_name": "e",
            "tags": {"team": "eval", "empty": null, "n": 3},
            "description": "d",
            "log_metrics": ["Acc"],
            "log_artifacts": false,
            "extra_metadata": {"owner": "me"},
            "skip_existing": true,
            "log_logs": true,
            "only_required": true,
            "mystery": 1,
        }))));
        assert_eq!(s.tracking_uri.as_deref(), Some("http://m:5000"));
        assert_eq!(s.tags, BTreeMap::from([("team".into(), "eval".into()), ("n".into(), "3".into())]));
        assert_eq!(s.log_metrics, ["acc"]);
        assert!(!s.log_artifacts);
        let shown: Vec<(&str, bool)> = issues.iter().map(|i| (i.key.as_str(), i.error)).collect();
        assert_eq!(shown, [("skip_existing", false), ("log_logs", false), ("mystery", false)]);
        let (_, issues) = settings(Some(&open(serde_json::json!({"tags": ["a"], "log_artifacts": "yes"}))));
        assert!(issues.iter().all(|i| i.error) && issues.len() == 2, "{issues:?}");
        assert!(issues[0].message.starts_with("`export.mlflow.tags`: must be a mapping"));
    }

    #[test]
    fn artifact_paths_under_the_proxy() {
        assert_eq!(
            proxied_path("mlflow-artifacts:/1/abc/artifacts", ARTIFACT).as_deref(),
            Some("1/abc/artifacts/results.yml")
        );
        assert_eq!(
            proxied_path("mlflow-artifacts://h:5000/1/abc/artifacts", ARTIFACT).as_deref(),
            Some("1/abc/artifacts/results.yml")
        );
        assert_eq!(proxied_path("s3://bucket/1/abc/artifacts", ARTIFACT), None);
        assert_eq!(proxied_path("/srv/mlruns/1/abc/artifacts", ARTIFACT), None);
        assert_eq!(stack_filter("s-1"), "tags.\"evalctl.stack\" = 's-1'");
    }
}
