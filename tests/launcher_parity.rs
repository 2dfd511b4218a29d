//! evalctl's scripts do what nemo-evaluator-launcher's would, fact by fact,
//! with the launcher itself as the oracle.
//!
//! evalctl accepts the launcher's configs, so for each of them its sbatch
//! scripts must ask Slurm for the same resources, start the same model
//! server command in the same container with the same mounts and variables,
//! and give the harness the same endpoint and task settings as the
//! launcher's Slurm executor would. Reading the launcher's code once is not
//! enough: it changes, so the test runs it.
//!
//! How: the pinned launcher ([`LAUNCHER_VERSION`]) is installed from PyPI
//! into a virtual environment cached under `target/` (once per version; a
//! failed install fails the test: it needs `python3` with `venv` and access
//! to PyPI). Every config of `tests/fixtures/launcher/<version>/` (and a
//! few [`VARIANTS`] with keys no example sets) is rendered by evalctl
//! in-process with its `???` values given as overrides,
//! then one Python process (`tests/launcher_parity/parity.py`) runs the
//! launcher's `run --dry-run` code path for each config (`RunConfig.from_hydra`
//! and `run_eval(cfg, dry_run=True)`, keeping the `run.sub` files it writes)
//! and reduces both tools' scripts to facts: `#SBATCH` options, the server's
//! argv, images, mounts, the names of the variables each container gets,
//! the harness's endpoint and run config. Task `i` of the launcher is
//! compared with evalctl's first link of task `i` (and its auxiliary server
//! jobs).
//!
//! Every difference must match a row of the table "Parity test: allowed
//! differences" in `docs/launcher-compat.md` (fact and examples, with the
//! reason); an unmatched difference fails the test with the example, task,
//! fact and both values, and so does a row that matches nothing any more.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use evalctl::config;
use evalctl::diag::Sources;
use evalctl::graph::NodeKind;
use evalctl::render;
use serde_json::{Value as J, json};

mod pyvenv;
use pyvenv::{root, target_dir};

/// The launcher release the fixtures come from and the test runs.
const LAUNCHER_VERSION: &str = "0.2.6";

/// Reduces both tools' scripts to facts; see its header.
const PARITY_PY: &str = include_str!("launcher_parity/parity.py");

/// Where the allowed differences are listed.
const COMPAT_DOC: &str = "docs/launcher-compat.md";
const TABLE_HEADING: &str = "## Parity test: allowed differences";

/// The Python of the virtual environment with the pinned package.
fn launcher_python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| pyvenv::python("launcher-venv", "nemo-evaluator-launcher", LAUNCHER_VERSION, "launcher parity"))
}

fn fixtures() -> Vec<PathBuf> {
    let dir = root().join("tests/fixtures/launcher").join(format!("v{LAUNCHER_VERSION}"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

/// The example's name in reports and in the table: its file name without `.yaml`.
fn example_name(path: &Path) -> String {
    path.file_stem().unwrap().to_string_lossy().into_owned()
}

/// Variants of an example with keys no example sets, given to both tools:
/// `(name, example, overrides)`.
const VARIANTS: &[(&str, &str, &[&str])] = &[
    (
        "slurm_vllm_basic+pre_cmd",
        "slurm_vllm_basic",
        &[
            "+deployment.pre_cmd=pip install --no-deps example-package",
            "+evaluation.pre_cmd=echo before",
            "+evaluation.post_cmd=echo after",
        ],
    ),
    (
        "slurm_vllm_basic+extras",
        "slurm_vllm_basic",
        &[
            "+execution.evaluation_gpu_visible=true",
            "+deployment.env_vars.VLLM_LOGGING_LEVEL=lit:DEBUG",
            "+evaluation.env_vars.EVAL_FLAG=lit:1",
            "+execution.mounts.evaluation={/shared/data: /data}",
            "+execution.mounts.deployment={/shared/cache: /cache2}",
            "+execution.sbatch_extra_flags.qos=high",
            // evalctl's server steps use the launcher's MPI plugin when asked to.
            "+execution.deployment.mpi=pmix",
        ],
    ),
];

/// What the test compares: every fixture as it is, then the variants:
/// `(name, config file, overrides for both tools)`.
fn cases() -> Vec<(String, PathBuf, Vec<String>)> {
    let files = fixtures();
    let mut cases: Vec<(String, PathBuf, Vec<String>)> =
        files.iter().map(|p| (example_name(p), p.clone(), vec![])).collect();
    for (name, example, overrides) in VARIANTS {
        let path = files.iter().find(|p| example_name(p) == *example).expect("the variant's example");
        cases.push((name.to_string(), path.clone(), overrides.iter().map(|o| o.to_string()).collect()));
    }
    cases
}

/// `-o` values that give an example its `???`, for both tools (as
/// `.ci/launcher-examples.sh`), and those for evalctl only.
fn overrides(example: &str) -> (Vec<String>, Vec<String>) {
    let mut both: Vec<String> =
        ["execution.hostname=login.example.com", "execution.account=acct", "execution.output_dir=/shared/evalctl"]
            .map(String::from)
            .to_vec();
    let mut evalctl_only = vec![];
    match example {
        "slurm_vllm_checkpoint_path" => {
            both.push("deployment.checkpoint_path=/shared/models/llama-3.1-8b-instruct".into())
        }
        "slurm_nvidia_nemotron_3_nano_30b_a3b_nvfp4" => both.push(
            "evaluation.tasks.ns_hle.nemo_evaluator_config.config.params.extra.judge.url=https://judge.example.com/v1"
                .into(),
        ),
        "slurm_sglang_auto_export" => {
            both.push("export.mlflow.tracking_uri=http://mlflow.example.com:5000".into());
            // evalctl exports from where it runs, not in a job; the
            // launcher's export step runs after the evaluation and changes
            // none of the facts compared.
            evalctl_only.push("~execution.auto_export".into());
        }
        _ => {}
    }
    (both, evalctl_only)
}

fn job_json(job: &render::RenderedJob) -> J {
    let secrets: BTreeMap<&str, Vec<&str>> =
        job.secrets.iter().map(|(g, vars)| (g.as_str(), vars.iter().map(|v| v.name.as_str()).collect())).collect();
    json!({"script": job.script.text(), "secrets": secrets})
}

/// evalctl's jobs for a config: the first link of each task, in task order,
/// and the auxiliary servers by name.
fn evalctl_jobs(path: &Path, overrides: &[String]) -> J {
    let sources = Sources::new();
    let text = std::fs::read_to_string(path).unwrap();
    let loaded = config::load_text(path, &text, overrides, &sources, &|name| Some(format!("value-of-{name}")))
        .unwrap_or_else(|f| panic!("{}", evalctl::diag::render_all(&f.diagnostics, &sources)));
    let (graph, _) =
        evalctl::graph::build(&loaded).unwrap_or_else(|d| panic!("{}", evalctl::diag::render_all(&d, &sources)));
    let rendered =
        render::render(&loaded, &graph).unwrap_or_else(|d| panic!("{}", evalctl::diag::render_all(&d, &sources)));
    let mut tasks: Vec<(usize, J)> = vec![];
    let mut aux = serde_json::Map::new();
    for job in &rendered.jobs {
        match &job.kind {
            NodeKind::EvalTask { task } => tasks.push((*task, job_json(job))),
            NodeKind::Deployment { aux: Some(name) } => {
                aux.insert(name.clone(), job_json(job));
            }
            _ => {}
        }
    }
    tasks.sort_by_key(|(i, _)| *i);
    json!({"tasks": tasks.into_iter().map(|(_, j)| j).collect::<Vec<_>>(), "aux": aux})
}

/// One difference between the tools' facts for a task.
#[derive(Clone, Debug)]
struct Difference {
    example: String,
    task: String,
    fact: String,
    launcher: Option<String>,
    evalctl: Option<String>,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(absent)".into());
        write!(
            f,
            "{} / {}: {}\n    launcher: {}\n    evalctl:  {}",
            self.example,
            self.task,
            self.fact,
            show(&self.launcher),
            show(&self.evalctl)
        )
    }
}

/// A row of the allowed-differences table.
#[derive(Debug)]
struct Allowed {
    id: String,
    /// Fact names; `*` matches any run of characters.
    facts: Vec<String>,
    /// Example names, or empty for all.
    examples: Vec<String>,
}

impl Allowed {
    fn matches(&self, d: &Difference) -> bool {
        self.facts.iter().any(|f| glob(f, &d.fact)) && (self.examples.is_empty() || self.examples.contains(&d.example))
    }
}

fn glob(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((head, rest)) => {
            s.starts_with(head) && (head.len()..=s.len()).any(|i| s.is_char_boundary(i) && glob(rest, &s[i..]))
        }
    }
}

/// The rows of the table under [`TABLE_HEADING`]: `| id | fact | examples | reason |`,
/// where `fact` holds fact names (comma-separated, `*` for any run of
/// characters) and `examples` fixture names (comma-separated) or `all`.
fn allowed_rows(doc: &str) -> Vec<Allowed> {
    let start = doc.find(TABLE_HEADING).unwrap_or_else(|| panic!("{COMPAT_DOC}: no `{TABLE_HEADING}` section"));
    let section = &doc[start + TABLE_HEADING.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut rows = vec![];
    for line in section.lines().filter(|l| l.starts_with('|')).skip(2) {
        let cells: Vec<String> = line.trim().trim_matches('|').split('|').map(|c| c.trim().replace('`', "")).collect();
        assert!(
            cells.len() >= 4 && !cells[3].is_empty(),
            "{COMPAT_DOC}: a row needs id, fact, examples, reason: {line}"
        );
        let examples = if cells[2] == "all" {
            vec![]
        } else {
            cells[2].split(',').map(|e| e.trim().trim_end_matches(".yaml").to_owned()).collect()
        };
        let facts = cells[1].split(',').map(|f| f.trim().to_owned()).collect();
        rows.push(Allowed { id: cells[0].clone(), facts, examples });
    }
    assert!(!rows.is_empty(), "{COMPAT_DOC}: the allowed-differences table has no rows");
    let ids: BTreeSet<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), rows.len(), "{COMPAT_DOC}: duplicate row ids");
    rows
}

/// Every difference between the launcher's facts and evalctl's, per task.
fn differences(results: &J) -> Vec<Difference> {
    let mut found = vec![];
    for (example, result) in results.as_object().unwrap() {
        for task in result["tasks"].as_array().unwrap() {
            let facts = |tool: &str| -> BTreeMap<String, String> {
                task[tool]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                    .collect()
            };
            let (l, e) = (facts("launcher"), facts("evalctl"));
            let names: BTreeSet<&String> = l.keys().chain(e.keys()).collect();
            for fact in names {
                if l.get(fact) != e.get(fact) {
                    found.push(Difference {
                        example: example.clone(),
                        task: task["dir"].as_str().unwrap().to_owned(),
                        fact: fact.clone(),
                        launcher: l.get(fact).cloned(),
                        evalctl: e.get(fact).cloned(),
                    });
                }
            }
        }
    }
    found
}

/// The differences no row allows, and the ids of rows that allow nothing.
fn unexplained<'a>(diffs: &[Difference], rows: &'a [Allowed]) -> (Vec<Difference>, Vec<&'a str>) {
    let unmatched = diffs.iter().filter(|d| !rows.iter().any(|r| r.matches(d))).cloned().collect();
    let stale = rows.iter().filter(|r| !diffs.iter().any(|d| r.matches(d))).map(|r| r.id.as_str()).collect();
    (unmatched, stale)
}

/// Runs the launcher for every fixture and extracts both tools' facts.
fn facts_of_all_fixtures() -> J {
    let mut input = vec![];
    for (name, path, extra) in cases() {
        let (both, evalctl_only) = overrides(&example_name(&path));
        let both = [both, extra].concat();
        let evalctl = evalctl_jobs(&path, &[both.clone(), evalctl_only].concat());
        input.push(json!({"name": name, "config": path, "overrides": both, "evalctl": evalctl}));
    }
    let mut child = Command::new(launcher_python())
        .args(["-c", PARITY_PY, LAUNCHER_VERSION])
        // The examples read `${oc.env:USER}`; the launcher's own state
        // (its execution database) goes to a scratch HOME.
        .env("USER", "evaluser")
        .env("HOME", target_dir().join("launcher-venv/home"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the launcher venv's python");
    let stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || serde_json::to_writer(stdin, &input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().expect("the configs written to the launcher");
    assert!(
        out.status.success(),
        "the launcher's dry run failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the facts, as JSON")
}

#[test]
fn evalctl_scripts_match_the_launchers_dry_run() {
    let results = facts_of_all_fixtures();
    let errors: Vec<String> = results
        .as_object()
        .unwrap()
        .iter()
        .filter_map(|(name, r)| r.get("error").map(|e| format!("{name}: {}", e.as_str().unwrap_or_default())))
        .collect();
    assert!(errors.is_empty(), "examples not compared:\n{}", errors.join("\n"));
    let tasks: usize = results.as_object().unwrap().values().map(|r| r["tasks"].as_array().unwrap().len()).sum();
    assert!(results.as_object().unwrap().len() >= 16 && tasks >= 30, "too few examples or tasks: {tasks}");
    // The variants reached both tools' scripts.
    let reached = [
        ("slurm_vllm_basic+pre_cmd", &["server.setup", "harness.pre_cmd", "harness.post_cmd"][..]),
        (
            "slurm_vllm_basic+extras",
            &[
                "sbatch.qos",
                "server.env VLLM_LOGGING_LEVEL",
                "server.mount /cache2",
                "harness.env EVAL_FLAG",
                "harness.env NVIDIA_VISIBLE_DEVICES",
                "harness.mount /data",
            ],
        ),
    ];
    for (variant, facts) in reached {
        for tool in ["launcher", "evalctl"] {
            for fact in facts {
                let task = &results[variant]["tasks"][0];
                assert!(task[tool].get(*fact).is_some(), "{variant}: {tool} has no `{fact}`");
            }
        }
    }

    // Facts every task has, from both extractors: a fact both miss would
    // compare equal unseen.
    for (name, r) in results.as_object().unwrap() {
        for task in r["tasks"].as_array().unwrap() {
            for tool in ["launcher", "evalctl"] {
                for fact in ["sbatch.nodes", "sbatch.time", "harness.image", "harness.endpoint.url", "harness.params"] {
                    assert!(task[tool].get(fact).is_some(), "{name} / {}: {tool} has no `{fact}`", task["dir"]);
                }
            }
        }
    }
    let deployed = results.as_object().unwrap().values().flat_map(|r| r["tasks"].as_array().unwrap());
    assert!(deployed.filter(|t| t["launcher"].get("server.argv").is_some()).count() >= 30, "server facts missing");

    let doc = std::fs::read_to_string(root().join(COMPAT_DOC)).unwrap();
    let rows = allowed_rows(&doc);
    let diffs = differences(&results);
    let (unmatched, stale) = unexplained(&diffs, &rows);
    let mut report = String::new();
    if !unmatched.is_empty() {
        report += &format!(
            "{} difference(s) from the launcher {LAUNCHER_VERSION} that no row of `{TABLE_HEADING}` \
             in {COMPAT_DOC} allows:\n\n",
            unmatched.len()
        );
        for d in &unmatched {
            report += &format!("{d}\n");
        }
    }
    if !stale.is_empty() {
        report += &format!("\nrows of {COMPAT_DOC} that match no difference any more (delete them): {stale:?}\n");
    }
    assert!(report.is_empty(), "{report}");

    // The comparison can fail: a value planted in evalctl's facts of one
    // task is reported, with both values.
    let mut planted = results.clone();
    let (example, first) = planted.as_object_mut().unwrap().iter_mut().next().unwrap();
    let example = example.clone();
    let facts = &mut first["tasks"][0]["evalctl"];
    facts["harness.params"] = json!("{\"planted\":1}");
    let (unmatched, _) = unexplained(&differences(&planted), &rows);
    assert!(
        unmatched.iter().any(|d| d.example == example
            && d.fact == "harness.params"
            && d.evalctl.as_deref() == Some("{\"planted\":1}")),
        "a planted difference went unreported: {unmatched:#?}"
    );
    eprintln!(
        "{} examples, {tasks} tasks compared with launcher {LAUNCHER_VERSION}: {} differences, all allowed by {} rows",
        results.as_object().unwrap().len(),
        diffs.len(),
        rows.len()
    );
}

#[test]
fn the_allowed_table_matches_facts_and_examples() {
    let rows = [
        Allowed { id: "a".into(), facts: vec!["sbatch.*".into()], examples: vec![] },
        Allowed { id: "b".into(), facts: vec!["x".into(), "aux.*.argv".into()], examples: vec!["x".into()] },
        Allowed { id: "c".into(), facts: vec!["server.env".into()], examples: vec![] },
    ];
    let diff = |example: &str, fact: &str| Difference {
        example: example.into(),
        task: "t.0".into(),
        fact: fact.into(),
        launcher: Some("1".into()),
        evalctl: None,
    };
    let diffs = [diff("x", "sbatch.comment"), diff("x", "aux.judge.argv"), diff("y", "aux.judge.argv")];
    let (unmatched, stale) = unexplained(&diffs, &rows);
    assert_eq!(unmatched.len(), 1);
    assert_eq!(unmatched[0].example, "y");
    assert_eq!(stale, ["c"]);
    assert!(unmatched[0].to_string().contains("launcher: 1\n    evalctl:  (absent)"));
    // The real table parses and every example it names exists.
    let doc = std::fs::read_to_string(root().join(COMPAT_DOC)).unwrap();
    let names: BTreeSet<String> = cases().into_iter().map(|(name, _, _)| name).collect();
    for row in allowed_rows(&doc) {
        for e in &row.examples {
            assert!(names.contains(e), "{COMPAT_DOC}: row {} names no fixture `{e}`", row.id);
        }
    }
}
