//! `export --to mlflow` against a real MLflow tracking server: `mlflow`
//! from PyPI in a cached venv under `target/`, a server on a free port
//! with a SQLite store and proxied artifacts in a temp dir. What the
//! server holds afterwards is read back by MLflow's own Python client (the
//! peer as oracle, independent of evalctl's client): every score is a
//! metric of its unit's run with the right tags, the results file is an
//! artifact, a second export changes nothing (same runs, one point of
//! metric history each), a changed value updates the run in place and a
//! changed fingerprint makes a new run and retires the old one.

mod mlflow;
#[path = "pyvenv/mod.rs"]
mod pyvenv;
use mlflow::{MlflowServer, TempDir, free_port, oracle};

use std::collections::{BTreeMap, BTreeSet};

use evalctl::export::mlflow::Settings;
use evalctl::ops::export::{Exported, MlflowTarget, UnitOutcome, to_mlflow};
use evalctl::ops::results::{Missing, Report, Row};
use serde_json::Value as J;

fn of_unit<'a>(runs: &'a [J], unit: &str) -> Vec<&'a J> {
    runs.iter().filter(|r| r["tags"]["evalctl.unit"] == unit).collect()
}

/// One report row; the only place that spells out `Row`'s fields.
fn row(unit: &str, fingerprint: &str, s: evalctl::results::Score) -> Row {
    Row {
        unit: unit.into(),
        level: s.level,
        task: s.name,
        metric: s.metric,
        score: s.score,
        value: s.value,
        ci95: s.stderr.map(|e| [s.value - 1.96 * e, s.value + 1.96 * e]),
        stderr: s.stderr,
        count: s.count,
        state: "completed".into(),
        jobs: evalctl::jobid::jobs([101, 102]),
        elapsed_s: 3600,
        gpu_hours: Some(8.0),
        fingerprint: fingerprint.into(),
        current: true,
    }
}

const GSM8K: &str = r#"results:
  tasks:
    gsm8k:
      metrics:
        exact_match:
          scores:
            flexible-extract: {value: 0.75, stats: {count: 1319, stderr: 0.0119}}
            strict-match: {value: 0.7331, stats: {count: 1319, stderr: 0.012}}
"#;
const MMLU: &str = r#"results:
  groups:
    mmlu:
      metrics:
        acc: {scores: {acc: {value: 0.61, stats: {stderr: 0.01}}}}
      groups:
        stem:
          metrics:
            acc: {scores: {acc: {value: 0.5, stats: {count: 50}}}}
"#;

/// A report of units `(unit, fingerprint, results.yml)`, plus a unit
/// without scores, and the results files.
fn report(units: &[(&str, &str, &str)]) -> (Report, BTreeMap<String, String>) {
    let mut rows = vec![];
    let mut files = BTreeMap::new();
    for (unit, fp, text) in units {
        rows.extend(evalctl::results::parse(text).unwrap().into_iter().map(|s| row(unit, fp, s)));
        files.insert(unit.to_string(), text.to_string());
    }
    let missing = vec![Missing { unit: "hellaswag".into(), state: "running".into(), why: "no results.yml yet".into() }];
    (Report { version: 1, stack: "nightly".into(), rows, missing }, files)
}

fn target(uri: &str, experiment: &str) -> MlflowTarget {
    let settings = Settings {
        log_artifacts: true,
        tags: BTreeMap::from([("team".to_owned(), "eval".to_owned())]),
        description: Some("nightly evals".into()),
        ..Settings::default()
    };
    MlflowTarget { tracking_uri: uri.into(), experiment: experiment.into(), settings }
}

fn outcomes(e: &Exported) -> BTreeMap<String, UnitOutcome> {
    e.units.iter().map(|u| (u.unit.clone(), u.outcome)).collect()
}

fn expect(pairs: &[(&str, UnitOutcome)]) -> BTreeMap<String, UnitOutcome> {
    pairs.iter().map(|(u, o)| (u.to_string(), *o)).collect()
}

fn run_ids(runs: &[J]) -> BTreeSet<String> {
    runs.iter().map(|r| r["run_id"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn export_to_a_real_mlflow_server_is_idempotent_updates_in_place_and_never_duplicates() {
    use UnitOutcome::*;
    let server = MlflowServer::start("mlflow-export", true);
    // Credentials in the URI: sent as a header (this server ignores it),
    // never shown.
    let uri = server.url.replace("http://", "http://alice:s3cret@");
    let t = target(&uri, "evalctl-test");

    // 1. First export: a run per unit with scores; the other is skipped.
    let (r, files) = report(&[("gsm8k", "fp-gsm8k-1", GSM8K), ("mmlu", "fp-mmlu-1", MMLU)]);
    let done = to_mlflow(&r, &files, &t, None, 1_000).unwrap();
    assert_eq!(outcomes(&done), expect(&[("gsm8k", Created), ("mmlu", Created), ("hellaswag", Skipped)]));
    assert!(!serde_json::to_string(&done).unwrap().contains("s3cret"));
    assert!(done.tracking_uri.contains("***@127.0.0.1"), "{}", done.tracking_uri);

    let runs = oracle(&server, "evalctl-test");
    assert_eq!(runs.len(), 2, "{runs:#?}");
    let g = of_unit(&runs, "gsm8k")[0];
    assert_eq!(g["name"], "gsm8k");
    assert_eq!(g["status"], "FINISHED");
    for (k, v) in [
        ("evalctl.stack", "nightly"),
        ("evalctl.unit", "gsm8k"),
        ("evalctl.fingerprint", "fp-gsm8k-1"),
        ("evalctl.jobs", "101,102"),
        ("evalctl.state", "completed"),
        ("evalctl.current", "true"),
        ("team", "eval"),
        ("mlflow.note.content", "nightly evals"),
    ] {
        assert_eq!(g["tags"][k], v, "tag {k}: {:#?}", g["tags"]);
    }
    let metrics: BTreeMap<String, f64> = serde_json::from_value(g["metrics"].clone()).unwrap();
    assert_eq!(
        metrics,
        BTreeMap::from([
            ("evalctl.elapsed_s".to_owned(), 3600.0),
            ("evalctl.gpu_hours".to_owned(), 8.0),
            ("gsm8k.exact_match.flexible-extract".to_owned(), 0.75),
            ("gsm8k.exact_match.flexible-extract_stderr".to_owned(), 0.0119),
            ("gsm8k.exact_match.strict-match".to_owned(), 0.7331),
            ("gsm8k.exact_match.strict-match_stderr".to_owned(), 0.012),
        ])
    );
    assert_eq!(g["params"]["task"], "gsm8k");
    assert_eq!(g["params"]["count"], "1319");
    assert_eq!(g["results"], GSM8K, "the results file is the run's artifact");
    let m = of_unit(&runs, "mmlu")[0];
    assert_eq!(m["metrics"]["mmlu/stem.acc.acc"], 0.5);
    assert_eq!(m["metrics"]["mmlu.acc.acc_stderr"], 0.01);
    assert_eq!(m["results"], MMLU);
    let first = run_ids(&runs);

    // 2. Again: nothing changes, no metric gets a second point.
    let again = to_mlflow(&r, &files, &t, None, 2_000).unwrap();
    assert_eq!(outcomes(&again), expect(&[("gsm8k", Unchanged), ("mmlu", Unchanged), ("hellaswag", Skipped)]));
    assert!(again.units.iter().all(|u| u.metrics_logged == 0));
    let runs = oracle(&server, "evalctl-test");
    assert_eq!(run_ids(&runs), first);
    for r in &runs {
        assert!(r["history"].as_object().unwrap().values().all(|n| n == 1), "{:#?}", r["history"]);
    }

    // 3. A value changed with the same fingerprint (the task resumed or
    //    was replaced): the same run, only that metric logged again.
    let changed = GSM8K.replace("value: 0.7331", "value: 0.74");
    let (r, files) = report(&[("gsm8k", "fp-gsm8k-1", &changed), ("mmlu", "fp-mmlu-1", MMLU)]);
    let upd = to_mlflow(&r, &files, &t, None, 3_000).unwrap();
    assert_eq!(outcomes(&upd), expect(&[("gsm8k", Updated), ("mmlu", Unchanged), ("hellaswag", Skipped)]));
    let runs = oracle(&server, "evalctl-test");
    assert_eq!(run_ids(&runs), first);
    let g = of_unit(&runs, "gsm8k")[0];
    assert_eq!(g["metrics"]["gsm8k.exact_match.strict-match"], 0.74);
    assert_eq!(g["history"]["gsm8k.exact_match.strict-match"], 2);
    assert_eq!(g["history"]["gsm8k.exact_match.flexible-extract"], 1);
    assert_eq!(g["results"], changed.as_str(), "the changed file is uploaded again");

    // 4. A new fingerprint (another model or parameters): a new run, the
    //    old one kept and no longer current.
    let (r, files) = report(&[("gsm8k", "fp-gsm8k-1", &changed), ("mmlu", "fp-mmlu-2", MMLU)]);
    let new = to_mlflow(&r, &files, &t, None, 4_000).unwrap();
    assert_eq!(outcomes(&new), expect(&[("gsm8k", Unchanged), ("mmlu", Created), ("hellaswag", Skipped)]));
    let runs = oracle(&server, "evalctl-test");
    assert_eq!(runs.len(), 3);
    let mmlu = of_unit(&runs, "mmlu");
    let current: Vec<&&J> = mmlu.iter().filter(|r| r["tags"]["evalctl.current"] == "true").collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["tags"]["evalctl.fingerprint"], "fp-mmlu-2");
    assert!(mmlu.iter().any(|r| r["tags"]["evalctl.current"] == "false"));

    // 5. And again: unchanged everywhere.
    let last = to_mlflow(&r, &files, &t, None, 5_000).unwrap();
    assert_eq!(outcomes(&last), expect(&[("gsm8k", Unchanged), ("mmlu", Unchanged), ("hellaswag", Skipped)]));
    assert_eq!(oracle(&server, "evalctl-test").len(), 3);
}

#[test]
fn a_server_that_does_not_serve_artifacts_is_named_and_the_scores_still_go_without_them() {
    let server = MlflowServer::start("mlflow-noart", false);
    let (r, files) = report(&[("gsm8k", "fp-1", GSM8K)]);
    let t = target(&server.url, "no-artifacts");
    let done = to_mlflow(&r, &files, &t, None, 1_000).unwrap();
    let g = &done.units[0];
    assert_eq!(g.outcome, UnitOutcome::Failed);
    let why = g.notes.join("; ");
    assert!(why.contains("does not serve artifacts") && why.contains("--serve-artifacts"), "{why}");

    // The scores went; without artifacts the next export finds the run
    // complete: nothing to do, no second run.
    let mut t = t;
    t.settings.log_artifacts = false;
    let done = to_mlflow(&r, &files, &t, None, 2_000).unwrap();
    assert_eq!(done.units[0].outcome, UnitOutcome::Unchanged, "{:?}", done.units[0]);
    let runs = oracle(&server, "no-artifacts");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["metrics"]["gsm8k.exact_match.strict-match"], 0.7331);
    assert_eq!(runs[0]["artifacts"], serde_json::json!([]));
}

#[test]
fn an_unreachable_server_is_a_clear_error() {
    let (r, files) = report(&[("gsm8k", "fp-1", GSM8K)]);
    let port = free_port();
    let t = target(&format!("http://bob:hunter2@127.0.0.1:{port}"), "x");
    let e = to_mlflow(&r, &files, &t, None, 1).unwrap_err().to_string();
    assert!(e.contains(&format!("http://***@127.0.0.1:{port}")) && !e.contains("hunter2"), "{e}");
}

// ------------------------------------------------- a stack, end to end

/// The stand-ins for Slurm's commands `tests/ops.rs` uses.
const STUBS: &[(&str, &str)] = &[
    ("sbatch", include_str!("stub_slurm/sbatch")),
    ("scontrol", include_str!("stub_slurm/scontrol")),
    ("squeue", include_str!("stub_slurm/squeue")),
    ("sacct", include_str!("stub_slurm/sacct")),
    ("scancel", include_str!("stub_slurm/scancel")),
];

/// The local backend (bash on this machine) with the stub Slurm first in
/// `PATH`, as in `tests/ops.rs`.
struct StubCluster {
    inner: evalctl::cluster::local::Local,
    prelude: String,
}

impl evalctl::cluster::Cluster for StubCluster {
    fn run(&self, program: &[u8]) -> Result<evalctl::cluster::Output, evalctl::cluster::ClusterError> {
        let mut full = self.prelude.clone().into_bytes();
        full.extend_from_slice(program);
        self.inner.run(&full)
    }
    fn round_trips(&self) -> usize {
        self.inner.round_trips()
    }
    fn target(&self) -> &evalctl::cluster::Target {
        self.inner.target()
    }
}

fn sq(p: &std::path::Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// A stack of `tasks` applied to the stub cluster under `dir`; returns
/// the stack, the cluster and each unit's (first, resume) job ids.
fn applied_stack(
    dir: &std::path::Path,
    tasks: &[&str],
) -> (evalctl::ops::Stack, StubCluster, BTreeMap<String, (u64, u64)>) {
    use std::os::unix::fs::PermissionsExt;
    let (cfg, out, slurm, bin) = (dir.join("config"), dir.join("cluster"), dir.join("slurm"), dir.join("bin"));
    for d in [&cfg, &out, &slurm.join("jobs"), &bin] {
        std::fs::create_dir_all(d).unwrap();
    }
    for (name, text) in STUBS {
        std::fs::write(bin.join(name), text).unwrap();
        std::fs::set_permissions(bin.join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::write(slurm.join("calls.log"), "").unwrap();
    let mut yaml = format!(
        "defaults: [{{execution: slurm/default}}, {{deployment: none}}, _self_]\nname: nightly\n\
         execution:\n  hostname: localhost\n  account: research\n  partition: cpu\n  output_dir: {}\n  \
         walltime: \"01:00:00\"\n  auto_export: [mlflow]\n\
         target: {{api_endpoint: {{url: \"http://127.0.0.1:9/v1/chat/completions\", model_id: m}}}}\n\
         evaluation:\n  tasks:\n",
        out.display()
    );
    for t in tasks {
        yaml.push_str(&format!("    - {{name: {t}, container: \"evaluator:latest\"}}\n"));
    }
    let config = cfg.join("evals.yaml");
    std::fs::write(&config, yaml).unwrap();
    let stack = evalctl::ops::Stack::open(&config, &[], &evalctl::diag::Sources::new(), &evalctl::ops::Silent)
        .unwrap_or_else(|e| panic!("{:?}", e.diagnostics()));
    let prelude = format!("export PATH={}:\"$PATH\"\nexport STUB_STATE={}\n", sq(&bin), sq(&slurm));
    let cluster =
        StubCluster { inner: evalctl::cluster::local::Local::new(evalctl::cluster::Target::local()), prelude };
    let opts =
        evalctl::ops::ApplyOptions { command: "evalctl apply (tests/export_mlflow.rs)".into(), ..Default::default() };
    let report = match evalctl::ops::apply(&stack, &cluster, None, &opts, &evalctl::ops::Silent) {
        Ok(evalctl::ops::Applied::Done(r)) => r,
        _ => panic!("the apply was not done"),
    };
    let mut ids: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (unit, role, id) in &report.submitted {
        let e = ids.entry(unit.clone()).or_default();
        if role == "first" { e.0 = id.id } else { e.1 = id.id }
    }
    (stack, cluster, ids)
}

/// What the job runtime leaves when a unit completed with `results`.
fn complete(dir: &std::path::Path, unit: &str, (f, r): (u64, u64), results: &str) {
    let set = |id: u64, state: &str, reason: &str| {
        let d = dir.join("slurm/jobs").join(id.to_string());
        std::fs::write(d.join("state"), format!("{state}\n")).unwrap();
        std::fs::write(d.join("reason"), format!("{reason}\n")).unwrap();
    };
    set(f, "COMPLETED", "None");
    set(r, "CANCELLED", "DependencyNeverSatisfied");
    let u = dir.join("cluster/nightly").join(unit);
    std::fs::create_dir_all(u.join("artifacts")).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    std::fs::write(u.join("chain"), format!("{f} start {} first\n{f} end {now} completed\n", now - 60)).unwrap();
    std::fs::write(u.join("status"), format!("completed {f} \n")).unwrap();
    std::fs::write(u.join("artifacts/results.yml"), results).unwrap();
}

/// The path `apply --wait` takes with `auto_export: [mlflow]`: each
/// polling round exports the tasks that completed since the last, with
/// their `results.yml` read from the cluster's disk; `evalctl export`
/// afterwards finds nothing to change.
#[test]
fn auto_export_of_a_stack_exports_each_task_as_it_completes() {
    let server = MlflowServer::start("mlflow-stack", true);
    let dir = TempDir::new("export-stack");
    let (stack, cluster, ids) = applied_stack(&dir.0, &["gsm8k", "hellaswag"]);
    assert_eq!(evalctl::ops::export::auto_destinations(&stack), ["mlflow"]);
    let uri = server.url.clone();
    let env = move |k: &str| (k == "MLFLOW_TRACKING_URI").then(|| uri.clone());
    let target = MlflowTarget::of(&stack, None, None, &env).unwrap();
    assert_eq!(target.experiment, "nightly", "the stack name by default");
    let mut auto = evalctl::ops::export::AutoExport::new(target.clone());

    complete(&dir.0, "gsm8k", ids["gsm8k"], GSM8K);
    let rows = evalctl::ops::status(&stack, &cluster, 0).unwrap();
    let lines = auto.round(&stack, &cluster, 0, &rows);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("gsm8k: created run "), "{lines:?}");
    assert!(auto.round(&stack, &cluster, 0, &rows).is_empty(), "a unit is exported once per wait");

    complete(&dir.0, "hellaswag", ids["hellaswag"], MMLU);
    let rows = evalctl::ops::status(&stack, &cluster, 0).unwrap();
    let lines = auto.round(&stack, &cluster, 0, &rows);
    assert!(lines.len() == 1 && lines[0].starts_with("hellaswag: created run "), "{lines:?}");
    assert!(auto.ok());

    let runs = oracle(&server, "nightly");
    assert_eq!(runs.len(), 2);
    for (unit, text) in [("gsm8k", GSM8K), ("hellaswag", MMLU)] {
        let r = of_unit(&runs, unit)[0];
        let u = evalctl::plan::units(&stack.rendered).into_iter().find(|u| u.id == unit).unwrap();
        assert_eq!(r["tags"]["evalctl.fingerprint"], u.result_hash[..16]);
        let status = rows.iter().find(|s| s.unit == unit).unwrap();
        assert_eq!(status.jobs.first(), Some(&evalctl::jobid::JobId::job(ids[unit].0)));
        let jobs: Vec<String> = status.jobs.iter().map(ToString::to_string).collect();
        assert_eq!(r["tags"]["evalctl.jobs"], jobs.join(","), "the chain's jobs as status has them");
        assert_eq!(r["tags"]["evalctl.state"], "completed");
        assert_eq!(r["results"], text, "{unit}'s results.yml from the cluster's disk");
    }
    let again = evalctl::ops::export::export_mlflow(&stack, &cluster, 0, &target, None).unwrap();
    assert_eq!(outcomes(&again), expect(&[("gsm8k", UnitOutcome::Unchanged), ("hellaswag", UnitOutcome::Unchanged)]));
}
