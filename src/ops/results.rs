//! `results`: every score of a stack's tasks, from one round trip (each
//! unit's `results.yml`, chain file and status, and the queue), with what
//! produced it: the unit's state, the job ids of its chain, the run time
//! used, and its result hash as a fingerprint (model, image, task,
//! parameters). A unit without results is listed with why, so a partial
//! stack shows what exists and what is missing.

use crate::jobid::JobId;
use std::collections::BTreeMap;

use serde::Serialize;

use super::Stack;
use crate::cluster::Cluster;
use crate::error::Result;
use crate::plan;
use crate::remote;
use crate::remote::refresh::Detail;
use crate::state::UnitKind;
use crate::table::markdown_text as md;

/// The version of the JSON document (`evalctl results --format json`).
pub const RESULTS_VERSION: u32 = 1;

/// Every score of a stack, and the tasks that have none.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub version: u32,
    pub stack: String,
    pub rows: Vec<Row>,
    pub missing: Vec<Missing>,
}

/// One score of one task unit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    pub unit: String,
    /// `task` or `group` (of the harness's results).
    pub level: &'static str,
    /// The harness's task or group name.
    pub task: String,
    pub metric: String,
    pub score: String,
    pub value: f64,
    pub stderr: Option<f64>,
    /// 95% confidence interval (value ± 1.96 stderr), when there is a stderr.
    pub ci95: Option<[f64; 2]>,
    pub count: Option<u64>,
    pub state: String,
    pub jobs: Vec<JobId>,
    /// Seconds of run time the unit's chain used.
    pub elapsed_s: u64,
    /// GPU-hours the chain held: run time times the GPUs of its job
    /// (none when the job asks for no GPUs or Slurm picks their number).
    pub gpu_hours: Option<f64>,
    /// The result hash of what produced the number, shortened: the one
    /// recorded when the unit was submitted (else the config's).
    pub fingerprint: String,
    /// Whether the config, as it is now, would produce this number: false
    /// when it changed since the unit ran (its result hash differs).
    pub current: bool,
}

/// A task unit without scores, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Missing {
    pub unit: String,
    pub state: String,
    pub why: String,
}

/// Gathers the scores of every task of the stack.
pub fn results(stack: &Stack, cluster: &dyn Cluster, since: u64) -> Result<Report> {
    Ok(gather(stack, cluster, since, Detail::Results)?.report)
}

/// The report and each unit's `results.yml` text (what `export` uploads),
/// from the same round trip.
pub fn results_and_files(
    stack: &Stack,
    cluster: &dyn Cluster,
    since: u64,
) -> Result<(Report, BTreeMap<String, String>)> {
    let g = gather(stack, cluster, since, Detail::Results)?;
    let files = g.units.into_iter().filter_map(|(u, r)| r.results_file.map(|f| (u, f))).collect();
    Ok((g.report, files))
}

/// A stack's scores with what `compare` and `export` need besides them, by
/// task unit.
#[derive(Clone, Debug)]
pub struct Gathered {
    pub report: Report,
    pub units: BTreeMap<String, UnitResults>,
}

/// One task unit's results beyond its scores.
#[derive(Clone, Debug, Default)]
pub struct UnitResults {
    /// What the config says produces the unit's result (its first job's
    /// result identity).
    pub identity: serde_json::Value,
    /// Whether the results on the cluster were produced by that identity.
    pub current: bool,
    /// The `results.yml` text, when it was read.
    pub results_file: Option<String>,
    /// Per-sample files by name (with [`Detail::Samples`]; empty text: too
    /// large or unreadable).
    pub samples: BTreeMap<String, String>,
}

/// Gathers the scores of every task of the stack, and as much more of
/// each unit's results as `detail` says: one round trip.
pub fn gather(stack: &Stack, cluster: &dyn Cluster, since: u64, detail: Detail) -> Result<Gathered> {
    let r = &stack.rendered;
    let mut refreshed = remote::refresh::refresh_detail(cluster, &r.stack_dir, &r.stack, since, detail)?;
    let statuses = super::status::statuses(stack, &refreshed);
    let units = plan::units(r);
    let mut report = Report { version: RESULTS_VERSION, stack: r.stack.clone(), rows: vec![], missing: vec![] };
    let mut gathered = BTreeMap::new();
    let status_of: BTreeMap<&str, _> = statuses.iter().map(|s| (s.unit.as_str(), s)).collect();
    for unit in units.iter().filter(|u| u.kind == UnitKind::Task) {
        let Some(status) = status_of.get(unit.id.as_str()).copied() else { continue };
        let recorded = refreshed.state.as_ref().and_then(|st| st.units.get(&unit.id)).map(|u| u.result_hash.as_str());
        let current = recorded == Some(unit.result_hash.as_str());
        let fingerprint = remote::layout::short(recorded.unwrap_or(&unit.result_hash)).to_owned();
        let results_file = refreshed.results_files.remove(&unit.id);
        gathered.insert(
            unit.id.clone(),
            UnitResults {
                identity: unit.jobs.first().map(|j| j.identity.value()).unwrap_or_default(),
                current,
                results_file: results_file.clone(),
                samples: refreshed.samples_files.remove(&unit.id).unwrap_or_default(),
            },
        );
        let missing = |why: String| Missing { unit: unit.id.clone(), state: status.state.clone(), why };
        let scores = match results_file {
            None => {
                report.missing.push(missing("no results.yml yet".into()));
                continue;
            }
            Some(text) if text.is_empty() => {
                let max = remote::refresh::MAX_RESULTS_FILE;
                report.missing.push(missing(format!("results.yml is unreadable or larger than {max} bytes")));
                continue;
            }
            Some(text) => crate::results::parse(&text),
        };
        match scores {
            Err(e) => report.missing.push(missing(e)),
            Ok(scores) if scores.is_empty() => report.missing.push(missing("results.yml holds no score".into())),
            Ok(scores) => report.rows.extend(scores.into_iter().map(|s| Row {
                unit: unit.id.clone(),
                level: s.level,
                task: s.name,
                metric: s.metric,
                score: s.score,
                value: s.value,
                ci95: s.stderr.map(|e| [s.value - 1.96 * e, s.value + 1.96 * e]),
                stderr: s.stderr,
                count: s.count,
                state: status.state.clone(),
                jobs: status.jobs.clone(),
                elapsed_s: status.elapsed,
                gpu_hours: gpu_hours(status.elapsed, unit.jobs.first().map_or(0, |j| j.gpus)),
                fingerprint: fingerprint.clone(),
                current,
            })),
        }
    }
    Ok(Gathered { report, units: gathered })
}

/// GPU-hours of `elapsed_s` seconds on `gpus` GPUs (none without GPUs).
fn gpu_hours(elapsed_s: u64, gpus: u32) -> Option<f64> {
    (gpus > 0).then(|| elapsed_s as f64 * f64::from(gpus) / 3600.0)
}

/// Output formats of `results`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
    Markdown,
}

fn num(v: f64) -> String {
    format!("{v:.4}")
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(String::new, |x| x.to_string())
}

fn jobs(j: &[JobId]) -> String {
    j.iter().map(JobId::to_string).collect::<Vec<_>>().join(",")
}

/// The report in a format.
pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(report).expect("plain data serializes") + "\n",
        Format::Table => table(report),
        Format::Csv => csv(report),
        Format::Markdown => markdown(report),
    }
}

fn table(report: &Report) -> String {
    let header = ["UNIT", "TASK", "METRIC", "SCORE", "VALUE", "STDERR", "N", "STATE", "JOBS", "GPU-H", "FINGERPRINT"];
    let cells: Vec<[String; 11]> = report
        .rows
        .iter()
        .map(|r| {
            [
                r.unit.clone(),
                r.task.clone(),
                r.metric.clone(),
                r.score.clone(),
                num(r.value),
                opt(r.stderr.map(num)),
                opt(r.count),
                r.state.clone(),
                jobs(&r.jobs),
                opt(r.gpu_hours.map(|h| format!("{h:.2}"))),
                if r.current { r.fingerprint.clone() } else { format!("{}*", r.fingerprint) },
            ]
        })
        .collect();
    let mut out = crate::table::table(header, &cells);
    if report.rows.iter().any(|r| !r.current) {
        out.push_str(STALE_NOTE);
    }
    for m in &report.missing {
        out.push_str(&format!("{}: no scores ({}): {}\n", m.unit, m.state, m.why));
    }
    out
}

/// Said under a table with rows the config as it is now would not produce.
const STALE_NOTE: &str = "* produced by an earlier version of the config (it changed since): apply to rerun\n";

/// A CSV field: quoted when it holds a separator, a quote or a line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() }
}

fn csv(report: &Report) -> String {
    let mut out = String::from(
        "unit,level,task,metric,score,value,stderr,count,state,jobs,elapsed_s,gpu_hours,fingerprint,current\n",
    );
    for r in &report.rows {
        let fields = [
            r.unit.clone(),
            r.level.to_owned(),
            r.task.clone(),
            r.metric.clone(),
            r.score.clone(),
            r.value.to_string(),
            opt(r.stderr),
            opt(r.count),
            r.state.clone(),
            jobs(&r.jobs),
            r.elapsed_s.to_string(),
            opt(r.gpu_hours),
            r.fingerprint.clone(),
            r.current.to_string(),
        ];
        out.push_str(&fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}

fn markdown(report: &Report) -> String {
    let mut out = format!("### Results of `{}`\n\n", md(&report.stack));
    out.push_str(
        "| unit | task | metric | score | value | ± stderr | n | state |\n|---|---|---|---|---:|---:|---:|---|\n",
    );
    for r in &report.rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            md(&r.unit),
            md(&r.task),
            md(&r.metric),
            md(&r.score),
            num(r.value),
            opt(r.stderr.map(num)),
            opt(r.count),
            md(&r.state)
        ));
    }
    if !report.missing.is_empty() {
        out.push_str("\nNo scores yet:\n\n");
        for m in &report.missing {
            out.push_str(&format!("- `{}` ({}): {}\n", md(&m.unit), md(&m.state), md(&m.why)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let row = Row {
            unit: "gsm8k".into(),
            level: "task",
            task: "gsm8k".into(),
            metric: "exact_match".into(),
            score: "strict,match|x".into(),
            value: 0.75,
            stderr: Some(0.01),
            ci95: Some([0.7304, 0.7696]),
            count: Some(100),
            state: "completed".into(),
            jobs: crate::jobid::jobs([12, 13]),
            elapsed_s: 61,
            gpu_hours: gpu_hours(3600, 16),
            fingerprint: "0123456789abcdef".into(),
            current: true,
        };
        let missing = Missing { unit: "mmlu".into(), state: "running".into(), why: "no results.yml yet".into() };
        let stale = Row { unit: "arc".into(), current: false, ..row.clone() };
        Report { version: 1, stack: "s".into(), rows: vec![row, stale], missing: vec![missing] }
    }

    #[test]
    fn every_format_carries_every_score_and_what_is_missing() {
        let r = report();
        let t = render(&r, Format::Table);
        assert!(t.contains("0.7500") && t.contains("12,13") && t.contains("0123456789abcdef"), "{t}");
        assert!(t.contains("mmlu: no scores (running): no results.yml yet"), "{t}");
        assert!(t.contains(" 0123456789abcdef*\n") && t.contains(STALE_NOTE), "{t}");
        let c = render(&r, Format::Csv);
        assert_eq!(
            c.lines().nth(1),
            Some(
                "gsm8k,task,gsm8k,exact_match,\"strict,match|x\",0.75,0.01,100,completed,\"12,13\",61,16,0123456789abcdef,true"
            )
        );
        assert!(t.contains(" 16.00 "), "{t}");
        assert_eq!(gpu_hours(90, 0), None);
        let m = render(&r, Format::Markdown);
        assert!(
            m.contains("| gsm8k | gsm8k | exact_match | strict,match\\|x | 0.7500 | 0.0100 | 100 | completed |"),
            "{m}"
        );
        assert!(m.contains("- `mmlu` (running): no results.yml yet"), "{m}");
        let j: serde_json::Value = serde_json::from_str(&render(&r, Format::Json)).unwrap();
        assert_eq!(j["version"], 1);
        assert_eq!(j["rows"][0]["ci95"], serde_json::json!([0.7304, 0.7696]));
        assert_eq!(j["missing"][0]["unit"], "mmlu");
    }
}
