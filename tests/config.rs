//! The config front end on the project's own fixtures: composition, groups,
//! overrides, interpolation, both env-var dialects, task resolution.

use std::path::Path;

use evalctl::config::env::Source;
use evalctl::config::model::{DeploymentType, SlurmTime, Topology};
use evalctl::config::{self, Loaded};
use evalctl::diag::Sources;

fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |k| vars.iter().find(|(a, _)| a == k).map(|(_, b)| b.clone())
}

fn load(path: &str, overrides: &[&str]) -> Loaded {
    let sources = Sources::new();
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    match config::load_with_env(&full, &overrides, &sources, &env_of(&[])) {
        Ok(l) => l,
        Err(f) => panic!("{}", evalctl::diag::render_all(&f.diagnostics, &sources)),
    }
}

#[test]
fn seed_example_composes_group_defaults() {
    let l = load("examples/slurm_llama_3_1_8b_instruct.yaml", &[]);
    let c = &l.config;
    assert_eq!(c.deployment.kind, DeploymentType::Vllm);
    assert_eq!(c.deployment.image.as_deref(), Some("vllm/vllm-openai:latest"));
    assert_eq!(c.deployment.port, Some(8000));
    assert_eq!(c.deployment.tensor_parallel_size, Some(1), "the file overrides the group's 8");
    assert_eq!(c.execution.gres.as_deref(), Some("gpu:8"));
    assert_eq!(c.execution.walltime, SlurmTime::Text("02:00:00".into()));
    assert_eq!(c.execution.max_walltime, Some(SlurmTime::Text("120:00:00".into())));
    assert_eq!(c.execution.sbatch_extra_flags.get("exclusive"), Some(&serde_json::json!(true)));
    assert!(c.execution.mounts.mount_home);
    assert_eq!(c.execution.deployment.n_tasks, Some(1), "${{execution.num_nodes}} resolved");
    assert_eq!(l.stack, "slurm_llama_3_1_8b_instruct");
    let cmd = c.deployment.command.as_deref().unwrap();
    assert!(cmd.starts_with("vllm serve meta-llama/Llama-3.1-8B-Instruct --host 0.0.0.0 --port 8000"), "{cmd}");
    assert!(cmd.contains("--tensor-parallel-size 1 --pipeline-parallel-size 1 --data-parallel-size 8"), "{cmd}");
    let names: Vec<_> = l.tasks.iter().map(|t| t.info.qualified()).collect();
    assert_eq!(
        names,
        ["lm-evaluation-harness.hellaswag", "lm-evaluation-harness.arc_challenge", "lm-evaluation-harness.winogrande"]
    );
    // HF_TOKEN stays a host secret: never read at validate time.
    assert_eq!(l.env.deployment.len(), 1);
    assert_eq!(l.env.deployment[0].source, Source::Host { var: "HF_TOKEN".into(), default: None });
    assert!(l.env.deployment[0].secret);
    // USER is not needed to validate.
    assert_eq!(c.execution.username.as_deref(), Some("${oc.env:USER}"));
}

#[test]
fn checkpoint_example_uses_checkpoint_in_command() {
    let l = load("examples/slurm_llama_3_1_8b_instruct_checkpoint.yaml", &[]);
    assert!(l.config.deployment.command.as_deref().unwrap().starts_with("vllm serve /checkpoint "));
    assert_eq!(l.config.deployment.checkpoint_path.as_deref(), Some("/shared/models/llama-3.1-8b-instruct"));
}

#[test]
fn overrides_set_values_and_tasks_by_name() {
    let l = load(
        "examples/slurm_llama_3_1_8b_instruct.yaml",
        &[
            "execution.walltime=10:00:00",
            "deployment.port=9000",
            "evaluation.tasks.winogrande.nemo_evaluator_config.config.params.limit_samples=10",
            "+execution.qos=high",
        ],
    );
    let c = &l.config;
    assert_eq!(c.execution.walltime.seconds(), Ok(36_000), "unquoted 10:00:00 is ten hours");
    assert_eq!(c.deployment.port, Some(9000));
    assert!(c.deployment.command.as_deref().unwrap().contains("--port 9000"), "overrides apply before interpolation");
    assert_eq!(c.execution.qos.as_deref(), Some("high"));
    let t = &c.evaluation.tasks[2];
    assert_eq!(t.name, "winogrande");
    let limit = &t.nemo_evaluator_config.as_ref().unwrap()["config"]["params"]["limit_samples"];
    assert_eq!(limit, &serde_json::json!(10));
    // Hydra's `++key=value` (add or replace), as the launcher's examples write it.
    let l = load(
        "examples/slurm_llama_3_1_8b_instruct.yaml",
        &["++evaluation.nemo_evaluator_config.config.params.limit_samples=7", "++execution.qos=low"],
    );
    let params = &l.config.evaluation.nemo_evaluator_config.as_ref().unwrap()["config"]["params"];
    assert_eq!(params["limit_samples"], serde_json::json!(7));
    assert_eq!(l.config.execution.qos.as_deref(), Some("low"));
}

#[test]
fn qualified_task_names_work_in_overrides() {
    let l = load(
        "tests/fixtures/new_dialect_judge.yaml",
        &["evaluation.tasks.lm-evaluation-harness.ifeval.pre_cmd=echo hi", "evaluation.tasks.0.post_cmd=echo bye"],
    );
    assert_eq!(l.config.evaluation.tasks[1].pre_cmd.as_deref(), Some("echo hi"));
    assert_eq!(l.config.evaluation.tasks[0].post_cmd.as_deref(), Some("echo bye"));
}

#[test]
fn new_dialect_and_auxiliary_deployment() {
    let l = load("tests/fixtures/new_dialect_judge.yaml", &[]);
    let judge = &l.config.auxiliary_deployments["judge"];
    assert_eq!(judge.kind, DeploymentType::Vllm);
    assert_eq!(judge.port, Some(8001));
    // Relative references in the group resolve inside its own package.
    let cmd = judge.command.as_deref().unwrap();
    assert!(cmd.contains("vllm serve Qwen/Qwen2.5-72B-Instruct") && cmd.contains("--port 8001"), "{cmd}");
    assert!(cmd.contains("--served-model-name judge"), "{cmd}");
    let dep: Vec<_> = l.env.deployment.iter().map(|v| (v.name.as_str(), v.secret)).collect();
    assert_eq!(dep, [("HF_HUB_OFFLINE", false), ("HF_TOKEN", true)]);
    let t0: Vec<_> = l.env.tasks[0].iter().map(|v| (v.name.as_str(), &v.source)).collect();
    assert_eq!(
        t0,
        [
            ("HF_HUB_OFFLINE", &Source::Literal { value: "1".into() }),
            ("JUDGE_KEY", &Source::Host { var: "JUDGE_API_KEY".into(), default: None }),
            ("NODE_SCRATCH", &Source::Runtime { var: "TMPDIR".into() }),
            ("EXTRA", &Source::Literal { value: "yes".into() }),
        ]
    );
    assert_eq!(l.env.auxiliary["judge"].len(), 2);
    assert_eq!(l.config.evaluation.tasks[1].id.as_deref(), Some("ifeval-chat"));
    assert!(!l.config.execution.mounts.mount_home);
}

#[test]
fn old_dialect_maps_to_the_same_model() {
    let l = load("tests/fixtures/old_dialect.yaml", &[]);
    assert_eq!(l.config.deployment.kind, DeploymentType::None);
    assert_eq!(l.config.execution.gres, None, "null omits the group's gres");
    let t0: Vec<_> = l.env.tasks[0].iter().map(|v| (v.name.as_str(), &v.source, v.secret)).collect();
    assert_eq!(
        t0,
        [
            ("API_TOKEN", &Source::Host { var: "API_TOKEN".into(), default: None }, true),
            ("MODE", &Source::Literal { value: "fast".into() }, true),
            ("HF_TOKEN", &Source::Host { var: "HF_TOKEN_FOR_GPQA".into(), default: None }, true),
        ]
    );
    let t1: Vec<_> = l.env.tasks[1].iter().map(|v| v.name.as_str()).collect();
    assert_eq!(t1, ["API_TOKEN", "MODE", "HF_TOKEN"]);
}

#[test]
fn migrate_keeps_the_meaning_of_old_configs() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/old_dialect.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let sources = Sources::new();
    let m = config::migrate::migrate("old_dialect.yaml", &text, &sources).unwrap();
    assert!(!m.text.contains("  env_vars:\n    deployment:"), "{}", m.text);
    assert!(m.text.contains("HF_TOKEN: host:HF_TOKEN_FOR_GPQA"), "{}", m.text);
    let old = load("tests/fixtures/old_dialect.yaml", &[]);
    let new = config::load_text(&path, &m.text, &[], &sources, &env_of(&[]))
        .unwrap_or_else(|f| panic!("{}\n{}", m.text, evalctl::diag::render_all(&f.diagnostics, &sources)));
    let view = |l: &Loaded| -> Vec<Vec<(String, Source)>> {
        l.env.tasks.iter().map(|vs| vs.iter().map(|v| (v.name.clone(), v.source.clone())).collect()).collect()
    };
    let mut old_view = view(&old);
    let mut new_view = view(&new);
    for v in old_view.iter_mut().chain(new_view.iter_mut()) {
        v.sort_by(|a, b| a.0.cmp(&b.0));
    }
    assert_eq!(old_view, new_view);
    assert_eq!(old.config.deployment.kind, new.config.deployment.kind);
    // Migrating twice changes nothing more.
    let again = config::migrate::migrate("x.yaml", &m.text, &sources).unwrap();
    assert_eq!(again.text, m.text);
    assert_eq!(again.changes, 0);
}

/// `migrate` on a text: the new text, or the refusal's headline.
fn migrate(text: &str) -> Result<String, String> {
    let sources = Sources::new();
    config::migrate::migrate("m.yaml", text, &sources).map(|m| m.text).map_err(|d| d.headline(&sources))
}

fn refused(text: &str, at: &str, what: &str) {
    let e = migrate(text).expect_err("refused");
    assert!(e.starts_with(&format!("m.yaml:{at}: error: cannot migrate safely: {what}")), "{e}");
    assert!(e.ends_with("the file was left untouched"), "{e}");
}

#[test]
fn migrate_refuses_flow_style_where_lines_change() {
    // The section whose lines go, and the section that receives them.
    refused(
        "execution: {env_vars: {deployment: {TOKEN: '${oc.env:TOKEN}'}}, account: x}\ndeployment:\n  type: vllm\n",
        "1:12",
        "flow style (`{...}` or `[...]`) where `execution.env_vars` must change",
    );
    refused(
        "execution:\n  env_vars:\n    deployment:\n      A: b\ndeployment: {type: vllm}\n",
        "5:13",
        "flow style (`{...}` or `[...]`) where `deployment` must change",
    );
    refused(
        "execution:\n  env_vars:\n    deployment:\n      A: b\ndeployment:\n  env_vars: {B: c}\n",
        "6:13",
        "flow style (`{...}` or `[...]`) where `deployment.env_vars` must change",
    );
    // As written in the issue (unquoted): an error, never a damaged file.
    let e = migrate("execution: {env_vars: {deployment: {TOKEN: ${oc.env:TOKEN}}}, account: x}\n").unwrap_err();
    assert!(e.starts_with("m.yaml:1:"), "{e}");
    // A value rewritten in its place may sit in flow style; so may what is removed.
    assert_eq!(
        migrate("evaluation:\n  tasks: [{name: a, env_vars: {HF: HF_TOKEN, X: '${oc.env:X}'}}]\n").unwrap(),
        "evaluation:\n  tasks: [{name: a, env_vars: {HF: host:HF_TOKEN, X: host:X}}]\n"
    );
    assert_eq!(
        migrate(
            "execution:\n  account: a\n  env_vars: {deployment: {A: b}, evaluation: {}}\ndeployment:\n  type: vllm\n"
        )
        .unwrap(),
        "execution:\n  account: a\ndeployment:\n  type: vllm\n  env_vars:\n    A: lit:b\n"
    );
    assert_eq!(
        migrate("execution:\n  env_vars:\n    deployment:\n      A: b\ndeployment:\n  type: vllm\n  env_vars: {}  # none yet\n")
            .unwrap(),
        "execution: {}\ndeployment:\n  type: vllm\n  env_vars:  # none yet\n    A: lit:b\n"
    );
}

#[test]
fn migrate_refuses_anchors_and_aliases_in_what_changes() {
    refused(
        "x: &tok HF_TOKEN\nevaluation:\n  env_vars:\n    HF: *tok\n",
        "4:9",
        "an alias (`*`) where `evaluation.env_vars.HF`",
    );
    refused(
        "evaluation:\n  tasks:\n    - &t\n      name: a\n      env_vars: {HF: HF_TOKEN}\n    - *t\n",
        "3:7",
        "an anchor (`&`) where `evaluation.tasks.0.env_vars.HF`",
    );
    refused(
        "execution:\n  env_vars: &e\n    deployment:\n      A: b\nother: *e\n",
        "2:13",
        "an anchor (`&`) where `execution.env_vars`",
    );
    refused(
        "d: &d {C: c}\nexecution:\n  env_vars:\n    deployment:\n      <<: *d\n      A: b\n",
        "5:11",
        "an alias (`*`) where `execution.env_vars`",
    );
    refused(
        "base: &b\n  type: vllm\ndeployment: *b\nexecution:\n  env_vars:\n    deployment:\n      A: b\n",
        "3:13",
        "an alias (`*`) where `deployment` must change",
    );
    // Elsewhere they stay: a merge key (an ordinary key to the loader) in a
    // section that only receives a new block.
    let src = "base: &b\n  type: vllm\ndeployment:\n  <<: *b\nexecution:\n  account: a\n  env_vars:\n    deployment:\n      A: b\n";
    assert_eq!(
        migrate(src).unwrap(),
        "base: &b\n  type: vllm\ndeployment:\n  <<: *b\n  env_vars:\n    A: lit:b\nexecution:\n  account: a\n"
    );
}

#[test]
fn migrate_keeps_block_scalars_whole() {
    // A value to rewrite written as a block scalar: refused at its key.
    refused("evaluation:\n  env_vars:\n    HF: >-\n      HF_TOKEN\n", "3:5", "a block scalar (`|` or `>`)");
    refused(
        "execution:\n  env_vars:\n    deployment:\n      A: |\n        two\n        lines\n",
        "4:7",
        "a block scalar (`|` or `>`)",
    );
    refused("evaluation:\n  env_vars:\n    HF: \"HF_\\\n      TOKEN\"\n", "3:9", "a value written over several lines");
    // Whatever slips past those checks is caught by parsing the result
    // again: here a kept (`|+`) trailing blank line would be cut off.
    refused(
        "execution:\n  account: a\n  env_vars:\n    deployment:\n      A: b\ndeployment:\n  command: |+\n    x\n\n",
        "7:3",
        "the rewritten text would change the data at `deployment.command`",
    );
    // A block scalar beside the change keeps every line, `#` lines too.
    let src = "execution:\n  account: a\n  env_vars:\n    deployment:\n      A: b\ndeployment:\n  command: |\n    vllm serve\n    # tuned\n\n  # trailing comment\nevaluation: {}\n";
    assert_eq!(
        migrate(src).unwrap(),
        "execution:\n  account: a\ndeployment:\n  command: |\n    vllm serve\n    # tuned\n\n  # trailing comment\n  env_vars:\n    A: lit:b\nevaluation: {}\n"
    );
}

#[test]
fn migrate_keeps_line_endings() {
    let old = "execution:\n  account: x\n  env_vars:\n    deployment:\n      A: b\n    evaluation:\n      C: d\ndeployment:\n  type: vllm\nevaluation:\n  env_vars:\n    HF: HF_TOKEN\n  tasks:\n    - name: t\n";
    let new = "execution:\n  account: x\ndeployment:\n  type: vllm\n  env_vars:\n    A: lit:b\nevaluation:\n  env_vars:\n    HF: host:HF_TOKEN\n    C: lit:d\n  tasks:\n    - name: t\n";
    assert_eq!(migrate(old).unwrap(), new);
    for nl in ["\r\n", "\r"] {
        let got = migrate(&old.replace('\n', nl)).unwrap();
        assert_eq!(got, new.replace('\n', nl), "{nl:?}");
        // Without a final line break, none is added.
        let got = migrate(old.replace('\n', nl).trim_end()).unwrap();
        assert_eq!(got, new.replace('\n', nl).trim_end(), "{nl:?}");
    }
    // `execution` holding only `env_vars` stays a mapping.
    assert_eq!(
        migrate("execution:\r  env_vars:\r    deployment:\r      A: b\r").unwrap(),
        "execution: {}\rdeployment:\r  env_vars:\r    A: lit:b\r"
    );
}

#[test]
fn migrate_leaves_the_new_dialect_byte_for_byte() {
    for text in [
        "deployment:\r\n  type: vllm\r\n  env_vars: {A: lit:b}\r\nevaluation:\r\n  env_vars:\r\n    HF: host:HF\r\n  x: &a 1\r\n  y: *a",
        "# only comments\r",
        "a: |\n  text\n\n\n",
        "",
    ] {
        let sources = Sources::new();
        let m = config::migrate::migrate("m.yaml", text, &sources).unwrap();
        assert_eq!(m.text, text);
        assert_eq!(m.changes, 0);
    }
    let once = migrate("execution:\r\n  env_vars:\r\n    evaluation:\r\n      A: b\r\nevaluation:\r\n  tasks: []\r\n")
        .unwrap();
    assert_eq!(migrate(&once).unwrap(), once);
}

#[test]
fn user_group_folder_and_shared_topology() {
    let l = load("tests/fixtures/user_groups.yaml", &[]);
    assert_eq!(l.stack, "tiny-stack");
    assert_eq!(l.config.execution.topology, Topology::Shared);
    assert_eq!(l.config.deployment.distributed_executor_backend.as_deref(), Some("ray"));
    assert_eq!(l.config.deployment.tensor_parallel_size, Some(2));
    assert_eq!(l.config.execution.hostname.as_deref(), Some("localhost"));
    let cmd = l.config.deployment.command.as_deref().unwrap();
    assert!(cmd.contains("vllm serve org/tiny-model") && cmd.contains("--distributed-executor-backend ray"), "{cmd}");
    assert_eq!(l.tasks.len(), 2);
}

#[test]
fn env_defaults_and_secret_deferral() {
    let sources = Sources::new();
    let text = "execution: {output_dir: '${oc.env:SCRATCH,/scratch}/evals', account: a, username: '${oc.env:NOBODY}'}\n\
                target: {api_endpoint: {url: 'http://x/v1/chat/completions'}}\n\
                evaluation: {tasks: [{name: gsm8k}], env_vars: {K: '${oc.env:SECRET_K}'}}\n";
    let l = config::load_text(Path::new("inline.yaml"), text, &[], &sources, &env_of(&[("SECRET_K", "s3cr3t")]))
        .unwrap_or_else(|f| panic!("{}", evalctl::diag::render_all(&f.diagnostics, &sources)));
    assert_eq!(l.config.execution.output_dir, "/scratch/evals");
    assert_eq!(l.config.execution.username.as_deref(), Some("${oc.env:NOBODY}"));
    assert_eq!(l.env.tasks[0][0].source, Source::Host { var: "SECRET_K".into(), default: None });
    let dump = format!("{:?}", l.config);
    assert!(!dump.contains("s3cr3t"), "a secret was read at validate time");
}

#[test]
fn launcher_feature_fixture() {
    let l = load("tests/fixtures/launcher_features.yaml", &[]);
    let c = &l.config;
    assert_eq!(c.deployment.kind, DeploymentType::Sglang);
    assert_eq!(c.deployment.image.as_deref(), Some("lmsysorg/sglang:latest"));
    let cmd = c.deployment.command.as_deref().unwrap();
    assert!(
        cmd.contains("--model-path Qwen/Qwen3-4B-Instruct-2507 --port 8000 --dp-size 8 --context-length 32768"),
        "{cmd}"
    );
    assert_eq!(c.execution.num_instances, 2);
    assert_eq!(c.execution.gres.as_deref(), Some("gpu:0"));
    assert_eq!(c.execution.mounts.evaluation.get("./hf_cache").map(String::as_str), Some("/root/.cache/huggingface"));
    assert_eq!(c.export.as_ref().unwrap()["mlflow"]["tags"]["backend"], "sglang");
    assert_eq!(l.tasks[0].info.qualified(), "simple_evals.gpqa_diamond");
}

#[test]
fn nim_fixture() {
    let l = load("tests/fixtures/nim.yaml", &[]);
    assert_eq!(l.config.deployment.kind, DeploymentType::Nim);
    assert_eq!(l.config.deployment.endpoints.as_ref().unwrap().health.as_deref(), Some("/v1/health/ready"));
    assert_eq!(l.env.deployment[0].source, Source::Host { var: "NGC_API_KEY".into(), default: None });
    assert_eq!(l.config.execution.mounts.deployment["/lustre/nim/cache"], "/opt/nim/.cache");
}

#[test]
fn launcher_keys_without_an_effect_are_accepted_with_a_warning() {
    let sources = Sources::new();
    let text = "execution: {output_dir: /x, account: a, cpu_partition: cpu, auto_export: {destinations: []}}\n\
                target: {api_endpoint: {url: 'http://x/v1/chat/completions'}}\n\
                evaluation: {tasks: [{name: gsm8k, dataset_mount_path: /data}]}\n\
                export: {mlflow: {tracking_uri: 'http://m:5000'}}\n";
    let l = config::load_text(Path::new("inline.yaml"), text, &[], &sources, &|_| None)
        .unwrap_or_else(|f| panic!("{}", evalctl::diag::render_all(&f.diagnostics, &sources)));
    let heads: Vec<String> = l.warnings.iter().map(|d| d.headline(&sources)).collect();
    assert_eq!(
        heads,
        [
            "inline.yaml:1:56: warning: `execution.cpu_partition` (cpu) is the partition of the launcher's export jobs; evalctl exports from the machine it runs on: unused",
            "inline.yaml:3:36: warning: `dataset_mount_path` without `dataset_dir`: nothing is mounted there",
        ]
    );
    // Nothing deployed: the server's settings are unused.
    let o = vec!["deployment.image=vllm/vllm-openai:latest".to_owned(), "deployment.served_model_name=m".to_owned()];
    let l = config::load_text(Path::new("inline.yaml"), text, &o, &sources, &|_| None).unwrap();
    let heads: Vec<String> = l.warnings.iter().map(|d| d.headline(&sources)).collect();
    assert!(
        heads.contains(
            &"<-o #1>:1:1: warning: `deployment.image` is unused: nothing is deployed (`deployment.type: none`)"
                .to_owned()
        ),
        "{heads:#?}"
    );
    assert!(!heads.iter().any(|h| h.contains("served_model_name")), "the model name names the model in requests");
    // Nothing to export: a list or a mapping without destinations, or null.
    for v in ["[]", "null", "{destinations: []}"] {
        let o = format!("execution.auto_export={v}");
        let l = config::load_text(Path::new("inline.yaml"), text, &[o], &sources, &|_| None);
        assert!(l.is_ok(), "auto_export: {v}");
    }
}

/// `auto_export` to MLflow is accepted (evalctl exports where it runs);
/// destinations it cannot export to are refused at their line, and
/// `export.mlflow` keys it does not act on are named at theirs.
#[test]
fn auto_export_to_mlflow_is_accepted_and_other_destinations_refused_at_their_line() {
    let sources = Sources::new();
    let base = "execution: {output_dir: /x, account: a}\n\
                target: {api_endpoint: {url: 'http://x/v1/chat/completions'}}\n\
                evaluation: {tasks: [{name: gsm8k}]}\n\
                export:\n  mlflow:\n    tracking_uri: http://m:5000\n    tags: {team: eval}\n    run_name: r\n";
    let load = |o: &[&str]| {
        let o: Vec<String> = o.iter().map(|s| s.to_string()).collect();
        config::load_text(Path::new("inline.yaml"), base, &o, &sources, &|_| None)
    };
    for v in ["[mlflow]", "{destinations: [mlflow]}"] {
        let l = load(&[&format!("execution.auto_export={v}")])
            .unwrap_or_else(|f| panic!("{v}: {}", evalctl::diag::render_all(&f.diagnostics, &sources)));
        let heads: Vec<String> = l.warnings.iter().map(|d| d.headline(&sources)).collect();
        assert_eq!(
            heads,
            [
                "inline.yaml:8:5: warning: `export.mlflow.run_name`: unused: evalctl makes one run per task unit and names it after the unit"
            ],
            "{v}"
        );
    }
    let text = base.replace(
        "execution: {output_dir: /x, account: a}",
        "execution:\n  output_dir: /x\n  account: a\n  auto_export:\n    destinations:\n      - mlflow\n      - wandb\n    export_image: img",
    );
    let f = config::load_text(Path::new("inline.yaml"), &text, &[], &sources, &|_| None).unwrap_err();
    let heads: Vec<String> = f.diagnostics.iter().map(|d| d.headline(&sources)).collect();
    assert!(
        heads.contains(&"inline.yaml:7:9: error: `execution.auto_export` destination `wandb`: evalctl does not export to `wandb` (only `mlflow`): it cannot be tested without that service".to_owned()),
        "{heads:#?}"
    );
    assert!(
        heads.contains(&"inline.yaml:8:5: warning: `execution.auto_export.export_image`: evalctl exports from the machine it runs on, not in a cluster job: unused".to_owned()),
        "{heads:#?}"
    );
    // The launcher's own auto-export example asks for logs: said, not refused.
    let l = load(&["execution.auto_export=[mlflow]", "+export.mlflow.log_logs=true"]).unwrap();
    let heads: Vec<String> = l.warnings.iter().map(|d| d.headline(&sources)).collect();
    assert!(
        heads
            .iter()
            .any(|h| h
                .contains("warning: `export.mlflow.log_logs`: unused: evalctl uploads only each task's `results.yml`")),
        "{heads:#?}"
    );
    // A setting of the wrong type is refused at its line.
    let f = load(&["execution.auto_export=[mlflow]", "export.mlflow.tracking_uri=[a]"]).unwrap_err();
    let heads: Vec<String> = f.diagnostics.iter().filter(|d| d.is_error()).map(|d| d.headline(&sources)).collect();
    assert_eq!(heads.len(), 1, "{heads:#?}");
    assert!(heads[0].contains("`export.mlflow.tracking_uri`: must be a string"), "{heads:#?}");
}

/// `execution.sbatch_comment` takes any text but control characters (a
/// JSON object with quotes, as idle-GPU reapers read it); job names Slurm's
/// accounting would cut are refused at the subproject's line, with the
/// stack name from the file name counted.
#[test]
fn a_json_comment_is_accepted_and_cut_job_names_are_refused() {
    let json = r#"{"OccupiedIdleGPUsJobReaper":{"exemptIdleTimeMins":"600","reason":"data_loading"}} it's $X \ #"#;
    let config = |exec: &str| {
        format!(
            "defaults:\n  - execution: slurm/default\n  - deployment: none\n  - _self_\nexecution:\n  account: a\n  output_dir: /o\n{exec}target:\n  api_endpoint:\n    url: http://h:8000/v1/chat/completions\n    model_id: m\nevaluation:\n  tasks:\n    - name: gsm8k\n"
        )
    };
    let load = |name: &str, text: &str| {
        let sources = Sources::new();
        config::load_text(Path::new(name), text, &[], &sources, &|_| None)
            .map_err(|f| evalctl::diag::render_all(&f.diagnostics, &sources))
    };
    let text = config(&format!("  sbatch_comment: {}\n", serde_json::to_string(json).unwrap()));
    let l = load("c.yaml", &text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(l.config.execution.sbatch_comment.as_deref(), Some(json));

    // The longest name: `<sub>.evalctl:<stack>/gsm8k/resume` and 34 characters of hashes.
    let stack = "s".repeat(64);
    let fixed = ".evalctl:".len() + stack.len() + "/gsm8k/resume".len() + 34;
    let fits = "p".repeat(255 - fixed);
    let file = format!("{stack}.yaml");
    assert!(load(&file, &config(&format!("  subproject: {fits}\n"))).is_ok());
    let err = load(&file, &config(&format!("  subproject: {fits}q\n"))).unwrap_err();
    assert!(
        err.contains(&format!(
            "{file}:8:15: error: `execution.subproject` (`{fits}q`) makes job names of 256 characters"
        )),
        "{err}"
    );
    assert!(err.contains("1 more than the 255 Slurm's accounting keeps"), "{err}");
    // A control character cannot reach Slurm.
    let err = load("c.yaml", &config("  sbatch_comment: \"a\\tb\"\n")).unwrap_err();
    assert!(err.contains("c.yaml:8:19: error: `execution.sbatch_comment`: control character U+0009"), "{err}");
}
