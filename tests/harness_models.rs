//! Every run config evalctl writes is one the harness accepts, checked by
//! the harness's own models: its field names and shapes are the harness's
//! to change (0.2.5 renamed `api_key` to `api_key_name` and forbade unknown
//! fields, failing every task at start), so reading its code once is not
//! enough.
//!
//! The test installs the pinned `nemo-evaluator`
//! ([`HARNESS_VERSION`]) from PyPI into a virtual environment cached under
//! `target/` (once per version), renders every example and fixture config
//! (and the launcher's examples when `../shared/reference` is beside the
//! checkout) with variants in-process, takes each job's run config from its
//! script as the job writes it (URLs substituted as `lib.sh` does), and
//! validates all of them in one Python process with the harness's
//! `EvaluationConfig`, `EvaluationTarget` and `AdapterConfig`, reading the
//! text with `yaml.safe_load` as the harness does. A failed install fails
//! the test: it needs `python3` with `venv` (Debian: `python3-venv`) and
//! network access to PyPI.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use evalctl::config;
use evalctl::diag::Sources;
use evalctl::render::{self, run_config::HARNESS_VERSION};
use serde_json::{Value as J, json};

mod pyvenv;
use pyvenv::root;

/// Checks run configs the way the harness's `validate_configuration` does,
/// up to what needs the harness's framework definitions (the task name).
/// Input: a JSON list of `{"name", "text"}` on stdin. Output: one line
/// `NAME: FIELD.PATH: MESSAGE` per problem; exit status 1 if there is any.
const CHECK: &str = r#"
import copy, json, sys
from importlib.metadata import version

import yaml
from pydantic import ValidationError
from nemo_evaluator.adapters.adapter_config import AdapterConfig
from nemo_evaluator.api.api_dataclasses import EvaluationConfig, EvaluationTarget

want = sys.argv[1]
if version("nemo-evaluator") != want:
    sys.exit(f"nemo-evaluator {version('nemo-evaluator')} is installed, not {want}")

# Top-level keys the harness reads; it ignores others (so would a setting there).
TOP = {"config", "target", "metadata", "global_adapter_config"}
PLACEHOLDERS = ("@@EVALCTL_", "auxiliary_deployments.")

def strings(v, path):
    if isinstance(v, str):
        yield path, v
    elif isinstance(v, dict):
        for k, x in v.items():
            yield from strings(x, f"{path}.{k}" if path else str(k))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from strings(x, f"{path}.{i}")

def problems(text):
    rc = yaml.safe_load(text)  # how the harness reads run_config.yml
    if rc != json.loads(text):
        yield "", "reads differently as YAML than as JSON"
    if not isinstance(rc, dict):
        yield "", "not a mapping"
        return
    for k in rc:
        if k not in TOP:
            yield k, "not read by the harness"
    cfg = rc.get("config") or {}
    for k in ("type", "output_dir"):
        if cfg.get(k) is None:
            yield f"config.{k}", "required"
    try:
        EvaluationConfig.model_validate(cfg)
    except ValidationError as e:
        for err in e.errors():
            yield ".".join(["config", *map(str, err["loc"])]), err["msg"]
    target = copy.deepcopy(rc.get("target") or {})
    endpoint = target.get("api_endpoint")
    if isinstance(endpoint, dict):
        endpoint.pop("adapter_config", None)  # validated below, as the harness does
    try:
        t = EvaluationTarget.model_validate(target)
        ep = t.api_endpoint
        if ep is None or ep.type is None or ep.url is None or ep.model_id is None:
            yield "target.api_endpoint", "type, url and model_id are required to evaluate a model"
    except ValidationError as e:
        for err in e.errors():
            yield ".".join(["target", *map(str, err["loc"])]), err["msg"]
    try:
        AdapterConfig.get_validated_config(copy.deepcopy(rc))
    except ValidationError as e:
        for err in e.errors():
            yield ".".join(["target.api_endpoint.adapter_config", *map(str, err["loc"])]), err["msg"]
    except Exception as e:
        yield "target.api_endpoint.adapter_config", str(e)
    for path, s in strings(rc, ""):
        if any(p in s for p in PLACEHOLDERS):
            yield path, f"placeholder left unsubstituted: {s!r}"

bad = 0
for item in json.load(sys.stdin):
    for path, msg in problems(item["text"]):
        bad += 1
        print(f"{item['name']}: {path or '<run config>'}: {msg}")
sys.exit(1 if bad else 0)
"#;

/// The Python of the virtual environment with the pinned package.
fn harness_python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| pyvenv::python("harness-venv", "nemo-evaluator", HARNESS_VERSION, "harness-model"))
}

/// Validates named run-config texts; the problems found, one per line.
fn check(configs: &[(String, String)]) -> Vec<String> {
    let input: Vec<J> = configs.iter().map(|(name, text)| json!({"name": name, "text": text})).collect();
    let mut child = Command::new(harness_python())
        .args(["-c", CHECK, HARNESS_VERSION])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the harness venv's python");
    let stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || serde_json::to_writer(stdin, &input));
    let out = child.wait_with_output().unwrap();
    let wrote = writer.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<String> = stdout.lines().map(str::to_owned).collect();
    // Exit 1 with problem lines is a verdict; anything else broke the check.
    assert!(
        out.status.success() || (out.status.code() == Some(1) && !lines.is_empty()),
        "the check itself failed ({}):\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    wrote.expect("the run configs written to the check");
    lines
}

/// The run config a job's script writes: the JSON of its here-document
/// with each `evalctl_subst` / `evalctl_subst_url` line after it applied
/// as `lib.sh` applies it (the whole JSON string `"NAME"` replaced by the
/// JSON string of the URL). None for a job that runs no harness.
fn written_run_config(script: &str) -> Option<String> {
    const START: &str = "<<'EVALCTL_RUN_CONFIG_END'\n";
    let start = script.find(START)? + START.len();
    let end = start + script[start..].find("\nEVALCTL_RUN_CONFIG_END\n")?;
    let mut text = script[start..end].to_owned();
    let rest = &script[end..];
    let rest = &rest[..rest.find("\"$EVALCTL_RUN_CONFIG\"").expect("the run config is written")];
    let mut aux = 0;
    for line in rest.lines() {
        let words = shlex::split(line).unwrap_or_default();
        let url = match words.first().map(String::as_str) {
            Some("evalctl_subst") => "http://10.0.0.1:8000/v1/chat/completions".to_owned(),
            Some("evalctl_subst_url") if words.len() == 4 => {
                aux += 1;
                format!("http://10.0.1.{aux}:8001{}", words[3])
            }
            _ => continue,
        };
        // A name the run config does not hold (an unused auxiliary URL) is no change.
        text = text.replace(&format!("\"{}\"", words[1]), &serde_json::to_string(&url).unwrap());
    }
    Some(text)
}

/// Renders `path` with `overrides`: each job's written run config, named.
fn run_configs(label: &str, path: &Path, overrides: &[String]) -> Result<Vec<(String, String)>, String> {
    let sources = Sources::new();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let loaded = config::load_text(path, &text, overrides, &sources, &|name| Some(format!("value-of-{name}")))
        .map_err(|f| evalctl::diag::render_all(&f.diagnostics, &sources))?;
    let (graph, _) = evalctl::graph::build(&loaded).map_err(|d| evalctl::diag::render_all(&d, &sources))?;
    let rendered = render::render(&loaded, &graph).map_err(|d| evalctl::diag::render_all(&d, &sources))?;
    Ok(rendered
        .jobs
        .iter()
        .filter_map(|j| written_run_config(&j.script.text()).map(|rc| (format!("{label} [{}]", j.id), rc)))
        .collect())
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "yaml")).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// `-o` values that give a launcher example its `???` (as `.ci/launcher-examples.sh`).
fn launcher_overrides(file: &Path) -> Vec<String> {
    let mut o: Vec<String> =
        ["execution.hostname=login.example.com", "execution.account=acct", "execution.output_dir=/shared/evalctl"]
            .map(String::from)
            .to_vec();
    match file.file_name().and_then(|n| n.to_str()).unwrap_or_default() {
        "slurm_llama_3_1_8b_instruct.yaml" | "slurm_vllm_checkpoint_path.yaml" => {
            o.push("deployment.checkpoint_path=/shared/models/llama-3.1-8b-instruct".into())
        }
        "slurm_nvidia_nemotron_3_nano_30b_a3b_nvfp4.yaml" => o.push(
            "evaluation.tasks.ns_hle.nemo_evaluator_config.config.params.extra.judge.url=https://judge.example.com/v1"
                .into(),
        ),
        "slurm_sglang_auto_export.yaml" => o.push("export.mlflow.tracking_uri=http://mlflow.example.com:5000".into()),
        _ => {}
    }
    o
}

#[test]
fn every_run_config_evalctl_writes_is_valid_for_the_harness() {
    let own: Vec<PathBuf> = [yaml_files(&root().join("examples")), yaml_files(&root().join("tests/fixtures"))].concat();
    assert!(own.len() >= 5, "the example and fixture configs: {own:?}");
    // Each config as it is, then with what changes the endpoint settings.
    let variants: [(&str, &[&str]); 3] = [
        ("", &[]),
        (
            "with an API key",
            &["target.api_endpoint.api_key_name=EVALCTL_TEST_API_KEY", "target.api_endpoint.stream=false"],
        ),
        (
            "with an adapter",
            &[
                "target.api_endpoint.adapter_config.use_request_logging=true",
                "target.api_endpoint.adapter_config.params_to_add={seed: 1}",
            ],
        ),
    ];
    let mut configs = vec![];
    for path in &own {
        let rel = path.strip_prefix(root()).unwrap();
        for (variant, overrides) in variants {
            let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
            let label = format!("{}{}{variant}", rel.display(), if variant.is_empty() { "" } else { " " });
            let found = run_configs(&label, rel, &overrides).unwrap_or_else(|e| panic!("{label}:\n{e}"));
            configs.extend(found);
        }
    }
    // Every endpoint type evalctl accepts, deployed and not.
    for kind in render::run_config::HARNESS_ENDPOINT_TYPES {
        for path in ["examples/slurm_llama_3_1_8b_instruct.yaml", "tests/fixtures/old_dialect.yaml"] {
            let label = format!("{path} of type {kind}");
            let overrides = [format!("target.api_endpoint.type={kind}")];
            configs
                .extend(run_configs(&label, Path::new(path), &overrides).unwrap_or_else(|e| panic!("{label}:\n{e}")));
        }
    }
    // An auxiliary judge the task's settings refer to.
    let judge = [
        "evaluation.nemo_evaluator_config.config.params.extra.judge.url=auxiliary_deployments.judge.chat_url",
        "evaluation.nemo_evaluator_config.config.params.extra.judge.model_id=auxiliary_deployments.judge.model_id",
        "evaluation.nemo_evaluator_config.config.params.extra.judge.api_key=JUDGE_KEY",
    ]
    .map(String::from);
    let label = "tests/fixtures/new_dialect_judge.yaml referring to its judge";
    configs.extend(
        run_configs(label, Path::new("tests/fixtures/new_dialect_judge.yaml"), &judge)
            .unwrap_or_else(|e| panic!("{label}:\n{e}")),
    );
    // The launcher's own examples, where the checkout has them beside it
    // (CI does); one evalctl cannot compile is `.ci/launcher-examples.sh`'s
    // failure to report, not this test's.
    let shared = root().join("../shared/reference/launcher-examples");
    let mut launcher = 0;
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(&shared).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    dirs.sort();
    for dir in dirs {
        for file in yaml_files(&dir) {
            let label = format!("launcher {}", file.strip_prefix(&shared).unwrap().display());
            match run_configs(&label, &file, &launcher_overrides(&file)) {
                Ok(found) => {
                    launcher += 1;
                    configs.extend(found)
                }
                Err(e) => eprintln!("{label}: not compiled, not checked:\n{e}"),
            }
        }
    }
    eprintln!(
        "{} run configs ({launcher} launcher examples) checked with nemo-evaluator {HARNESS_VERSION}",
        configs.len()
    );
    assert!(configs.len() > 20, "too few run configs found: {}", configs.len());
    let mut problems = check(&configs);
    // Mistakes of the launcher's examples themselves, in settings evalctl
    // (like the launcher) passes to the harness as written.
    for (file, field) in UPSTREAM_MISTAKES {
        let theirs = |p: &String| p.starts_with(&format!("launcher {file} ")) && p.contains(&format!("]: {field}: "));
        assert!(
            launcher == 0 || problems.iter().any(theirs),
            "{file}: {field} is fixed upstream: drop it from the list"
        );
        problems.retain(|p| !theirs(p));
    }
    assert!(problems.is_empty(), "run configs the harness refuses:\n{}", problems.join("\n"));
    // The variants reached the run configs.
    assert!(configs.iter().any(|(_, t)| t.contains("\"api_key_name\":\"EVALCTL_TEST_API_KEY\"")));
    assert!(configs.iter().any(|(_, t)| t.contains("\"model_id\":\"judge\"")));
}

/// Launcher examples whose own `nemo_evaluator_config` the harness refuses,
/// and where: the v0.1.20 examples indent `target:` under `config:`.
const UPSTREAM_MISTAKES: &[(&str, &str)] = &[
    ("v0.1.20/slurm_llama_3_1_8b_instruct.yaml", "config.target"),
    ("v0.1.20/slurm_llama_3_1_8b_instruct_hf.yaml", "config.target"),
    ("v0.1.20/slurm_no_deployment_llama_3_1_8b_instruct.yaml", "config.target"),
    ("v0.1.20/slurm_no_deployment_llama_nemotron_super_v1_nemotron_benchmarks.yaml", "config.target"),
];

/// The check refuses what the harness refuses, each at its field: the run
/// config evalctl wrote before `api_key_name`, and other mistakes.
#[test]
fn the_check_finds_what_the_harness_refuses() {
    let ok = json!({
        "config": {"type": "gsm8k", "output_dir": "/results", "params": {"parallelism": 4}},
        "target": {"api_endpoint": {"url": "http://h:8000/v1/chat/completions", "model_id": "m", "type": "chat"}},
    });
    let with = |pointer: &str, value: J| {
        let mut v = ok.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        v.pointer_mut(parent).unwrap()[key] = value;
        v.to_string()
    };
    let cases = [
        ("ok", ok.to_string(), ""),
        ("old api_key", with("/target/api_endpoint/api_key", json!("K")), "old api_key: target.api_endpoint.api_key: "),
        (
            "unknown param",
            with("/config/params/temp", json!(1)),
            "unknown param: config.params: Value error, Invalid parameter 'temp'",
        ),
        (
            "ranking type",
            with("/target/api_endpoint/type", json!("ranking")),
            "ranking type: target.api_endpoint.type: ",
        ),
        (
            "adapter typo",
            with("/target/api_endpoint/adapter_config", json!({"use_cachng": true})),
            "adapter typo: target.api_endpoint.adapter_config.use_cachng: ",
        ),
        ("no url", with("/target/api_endpoint/url", J::Null), "no url: target.api_endpoint: "),
        ("stray key", with("/params", json!({})), "stray key: params: not read by the harness"),
        (
            "placeholder",
            with("/target/api_endpoint/url", json!("@@EVALCTL_ENDPOINT_URL@@")),
            "placeholder: target.api_endpoint.url: placeholder left",
        ),
    ];
    let input: Vec<(String, String)> = cases.iter().map(|(n, t, _)| (n.to_string(), t.clone())).collect();
    let problems = check(&input);
    for (name, _, want) in &cases {
        let found: Vec<&String> = problems.iter().filter(|p| p.starts_with(&format!("{name}: "))).collect();
        if want.is_empty() {
            assert!(found.is_empty(), "{name}: {found:?}");
        } else {
            assert!(found.iter().any(|p| p.starts_with(want)), "{name}: want `{want}...`, found {problems:#?}");
        }
    }
}

/// Checks results files with the harness's own models: `results` as its
/// `EvaluationResult`, and every per-sample record as its `SampleRecord`.
/// Input: JSON `{"name": {"results": TEXT, "samples": [LINE...]}}` on stdin;
/// output: one line `NAME: PROBLEM` per problem.
const CHECK_RESULTS: &str = r#"
import json, sys
import yaml
from pydantic import ValidationError
from nemo_evaluator.api.api_dataclasses import EvaluationResult, SampleRecord

bad = 0
for name, item in json.load(sys.stdin).items():
    try:
        doc = yaml.safe_load(item["results"])
        EvaluationResult.model_validate(doc["results"])
        for line in item["samples"]:
            SampleRecord.model_validate(json.loads(line))
    except (ValidationError, KeyError, TypeError, yaml.YAMLError) as e:
        bad += 1
        print(f"{name}: {e}".replace("\n", " "))
sys.exit(1 if bad else 0)
"#;

/// The results format evalctl reads (its fixture) and the one the test
/// cluster's stand-in harness writes are the harness's own.
#[test]
fn results_files_are_the_harness_format() {
    let fixture = std::fs::read_to_string(root().join("tests/fixtures/results/results.yml")).unwrap();
    // The stand-in, run without an endpoint (no requests), writes its files.
    let dir = std::env::temp_dir().join(format!("evalctl-results-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run_config = json!({
        "config": {"type": "gsm8k", "output_dir": dir, "params": {"extra": {"stub": {"requests": 0}}}},
        "target": {"api_endpoint": {"url": "http://127.0.0.1:9/v1/chat/completions", "model_id": "m", "type": "chat"}},
    });
    std::fs::write(dir.join("run_config.yml"), run_config.to_string()).unwrap();
    let stand_in = root().join("tests/cluster/fixtures/nemo-evaluator");
    let out = Command::new("python3")
        .arg(&stand_in)
        .args(["run_eval", "--run_config"])
        .arg(dir.join("run_config.yml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "the stand-in harness: {}", String::from_utf8_lossy(&out.stderr));
    let written = std::fs::read_to_string(dir.join("results.yml")).unwrap();
    let samples = std::fs::read_to_string(dir.join("nemo-evaluator-per-sample-outputs/gsm8k.jsonl")).unwrap();
    let input = json!({
        "fixture": {"results": fixture, "samples": []},
        "stand-in": {"results": written, "samples": samples.lines().collect::<Vec<_>>()},
        // The check can fail: a value that is not a number.
        "broken": {"results": fixture.replace("value: 0.75", "value: high"), "samples": ["{\"id\": 1}"]},
    });
    let mut child = Command::new(harness_python())
        .arg("-c")
        .arg(CHECK_RESULTS)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let problems = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = problems.lines().collect();
    assert_eq!(lines.len(), 1, "only the broken file is refused: {problems}");
    assert!(lines[0].starts_with("broken: "), "{problems}");
    // And evalctl reads both.
    assert_eq!(evalctl::results::parse(&fixture).unwrap().len(), 4);
    let scores = evalctl::results::parse(&written).unwrap();
    assert_eq!((scores[0].name.as_str(), scores[0].count), ("gsm8k", Some(0)));
    let _ = std::fs::remove_dir_all(&dir);
}
