//! Rendered scripts: golden snapshots for each topology and deployment
//! kind, byte-identical output across runs, shellcheck-clean, and refusal of
//! values a script cannot carry.

use std::path::Path;
use std::process::Command;

use evalctl::config;
use evalctl::diag::Sources;
use evalctl::render::{self, Rendered};

const RUNTIME: &str = include_str!("../src/render/lib.sh");

fn render_file(path: &str, overrides: &[&str]) -> Rendered {
    let sources = Sources::new();
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let text = std::fs::read_to_string(&full).unwrap();
    // A stable name: snapshots must not depend on where the checkout is.
    let loaded = config::load_text(Path::new(path), &text, &overrides, &sources, &|_| None)
        .unwrap_or_else(|f| panic!("{}", evalctl::diag::render_all(&f.diagnostics, &sources)));
    let (graph, _) = evalctl::graph::build(&loaded).unwrap();
    render::render(&loaded, &graph).unwrap_or_else(|d| panic!("{}", evalctl::diag::render_all(&d, &sources)))
}

/// Every job's script (the shared runtime elided) with its secrets templates.
fn snapshot_text(r: &Rendered) -> String {
    let mut out = String::new();
    for j in &r.jobs {
        let deps: Vec<String> = j.deps.iter().map(|(id, d)| format!("{}:{id}", d.slurm())).collect();
        out.push_str(&format!("===== {} ({}/{}) deps=[{}]\n", j.id, j.dir, j.script_name, deps.join(", ")));
        out.push_str(&j.script.text().replace(RUNTIME, "<runtime: src/render/lib.sh>\n"));
        for group in j.secrets.keys() {
            out.push_str(&format!("----- secrets {group}\n{}", j.secrets_template(group)));
        }
    }
    out
}

#[test]
fn snapshots() {
    let cases = [
        ("seed_per_task", "examples/slurm_llama_3_1_8b_instruct.yaml", vec![]),
        ("checkpoint_per_task", "examples/slurm_llama_3_1_8b_instruct_checkpoint.yaml", vec![]),
        (
            "checkpoint_shared",
            "examples/slurm_llama_3_1_8b_instruct_checkpoint.yaml",
            vec!["execution.topology=shared"],
        ),
        ("multinode_instances", "tests/fixtures/launcher_features.yaml", vec![]),
        ("ray_shared", "tests/fixtures/user_groups.yaml", vec![]),
        ("no_deployment", "tests/fixtures/old_dialect.yaml", vec![]),
        ("auxiliary_judge", "tests/fixtures/new_dialect_judge.yaml", vec![]),
        ("launcher_keys", "tests/fixtures/launcher_keys.yaml", vec![]),
    ];
    for (name, path, overrides) in cases {
        let r = render_file(path, &overrides);
        insta::assert_snapshot!(name, snapshot_text(&r));
    }
    insta::assert_snapshot!("runtime", RUNTIME);
}

#[test]
fn rendering_is_deterministic() {
    let dir = std::env::temp_dir().join(format!("evalctl-render-{}", std::process::id()));
    let run = |out: &Path| {
        let status = Command::new(env!("CARGO_BIN_EXE_evalctl"))
            .args(["render", "-q", "examples/slurm_llama_3_1_8b_instruct.yaml", "--out"])
            .arg(out)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(status.success());
    };
    let (a, b) = (dir.join("a"), dir.join("b"));
    run(&a);
    run(&b);
    let list = |d: &Path| {
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(d)
            .unwrap()
            .flatten()
            .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
            .collect();
        v.sort();
        v
    };
    let (la, lb) = (list(&a), list(&b));
    assert_eq!(la.len(), 13, "12 files and the manifest");
    assert!(la == lb, "two renders differ");
    // Rendering again removes what an earlier render wrote for a job that
    // is gone, and nothing it did not write.
    std::fs::write(a.join("mine.sbatch"), "x").unwrap();
    let fewer = dir.join("slurm_llama_3_1_8b_instruct.yaml");
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/slurm_llama_3_1_8b_instruct.yaml"))
            .unwrap()
            .replace("    - name: winogrande\n", "");
    std::fs::write(&fewer, text).unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_evalctl"))
        .args(["render", "-q"])
        .arg(&fewer)
        .arg("--out")
        .arg(&a)
        .status()
        .unwrap();
    assert!(status.success());
    let names: Vec<String> = list(&a).into_iter().map(|(n, _)| n).collect();
    assert!(names.iter().all(|n| !n.starts_with("winogrande")), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("hellaswag")), "{names:?}");
    assert!(a.join("mine.sbatch").exists(), "a file evalctl did not write is kept");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rendering_on_several_threads_gives_what_one_gives() {
    let sources = Sources::new();
    let tasks: String = (0..700).map(|i| format!("    - {{name: gsm8k, id: t{i}}}\n")).collect();
    for topology in ["per_task", "shared"] {
        let text = format!(
            "defaults: [{{execution: slurm/default}}, {{deployment: vllm}}, _self_]\n\
             execution: {{hostname: login, account: a, output_dir: /shared/evals, topology: {topology}}}\n\
             deployment: {{hf_model_handle: org/model, served_model_name: model}}\n\
             evaluation:\n  tasks:\n{tasks}"
        );
        let loaded = config::load_text(Path::new("big.yaml"), &text, &[], &sources, &|_| None)
            .unwrap_or_else(|f| panic!("{}", evalctl::diag::render_all(&f.diagnostics, &sources)));
        let (graph, _) = evalctl::graph::build(&loaded).unwrap();
        let one = render::render_on(&loaded, &graph, 1).expect("renders");
        assert!(one.jobs.len() >= 1400, "{topology}: {} jobs", one.jobs.len());
        for threads in [2, 3, 8] {
            let many = render::render_on(&loaded, &graph, threads).expect("renders");
            assert!(one == many, "{topology}: {threads} threads render differently");
        }
    }
}

#[test]
fn shellcheck_finds_nothing_above_info() {
    let dir = std::env::temp_dir().join(format!("evalctl-shellcheck-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = vec![];
    for (path, overrides) in [
        ("examples/slurm_llama_3_1_8b_instruct.yaml", vec![]),
        ("examples/slurm_llama_3_1_8b_instruct_checkpoint.yaml", vec!["execution.topology=shared"]),
        ("tests/fixtures/launcher_features.yaml", vec![]),
        ("tests/fixtures/user_groups.yaml", vec![]),
        ("tests/fixtures/old_dialect.yaml", vec![]),
        ("tests/fixtures/new_dialect_judge.yaml", vec![]),
        ("tests/fixtures/nim.yaml", vec![]),
    ] {
        let r = render_file(path, &overrides);
        for j in &r.jobs {
            let f = dir.join(format!("{}-{}.sbatch", files.len(), j.id));
            std::fs::write(&f, j.script.text()).unwrap();
            files.push(f);
        }
    }
    let out = Command::new("shellcheck").arg("--severity=warning").args(&files).output().unwrap_or_else(|e| {
        panic!("shellcheck is needed to run this test ({e}); scripts/test.sh installs it (apt-get install shellcheck)")
    });
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(files.len() > 20);
}

#[test]
fn values_a_script_cannot_carry_are_refused_with_their_location() {
    // `#SBATCH` values are refused when the config loads, at their line.
    let sources = Sources::new();
    let text = "execution: {output_dir: /x, account: 'acct\"x', partition: \"a\\nb\"}\n\
                target: {api_endpoint: {url: 'http://x/v1/chat/completions'}}\nevaluation: {tasks: [{name: gsm8k}]}\n";
    let failed = config::load_text(Path::new("bad.yaml"), text, &[], &sources, &|_| None).unwrap_err();
    let heads: Vec<String> = failed.diagnostics.iter().map(|d| d.headline(&sources)).collect();
    assert_eq!(
        heads,
        [
            "bad.yaml:1:38: error: `execution.account`: `\"` cannot appear in an #SBATCH value",
            "bad.yaml:1:59: error: `execution.partition`: a newline cannot appear in an #SBATCH value",
        ]
    );
    // Mount paths are refused when the config is checked, once each, at their line.
    let sources = Sources::new();
    let text = "execution: {output_dir: /x, account: a, mounts: {evaluation: {'/a,b': '/data:ro,/etc:/etc'}}}\n\
                target: {api_endpoint: {url: 'http://x/v1/chat/completions'}}\n\
                evaluation: {tasks: [{name: gsm8k}, {name: gsm8k, id: again}]}\n";
    let failed = config::load_text(Path::new("bad.yaml"), text, &[], &sources, &|_| None).unwrap_err();
    let heads: Vec<String> = failed.diagnostics.iter().map(|d| d.headline(&sources)).collect();
    assert_eq!(heads.len(), 2, "{heads:#?}");
    assert!(
        heads.iter().any(|h| h.starts_with("bad.yaml:1:") && h.contains("mount path `/a,b` contains ','")),
        "{heads:#?}"
    );
    assert!(
        heads.iter().any(|h| h.starts_with("bad.yaml:1:") && h.contains("mount flags `ro,/etc:/etc`")),
        "{heads:#?}"
    );
}

#[test]
fn the_time_limit_warning_comes_late_enough_for_short_links() {
    for (walltime, lead) in [("00:01:00", 30), ("00:10:00", 60), ("01:00:00", 300), ("10:00:00", 300)] {
        let r = render_file("examples/slurm_llama_3_1_8b_instruct.yaml", &[&format!("execution.walltime={walltime}")]);
        let want = format!("#SBATCH --signal=B:USR1@{lead}\n");
        assert!(r.jobs.iter().all(|j| j.script.text().contains(&want)), "walltime {walltime}: every job has {want}");
    }
}

#[test]
fn stream_reaches_the_run_config() {
    let r = render_file("tests/fixtures/old_dialect.yaml", &["target.api_endpoint.stream=true"]);
    let clients: Vec<_> = r.jobs.iter().filter(|j| j.script.text().contains("run_config.yml")).collect();
    assert!(!clients.is_empty());
    for j in clients {
        let script = j.script.text();
        let start = script.find("<<'EVALCTL_RUN_CONFIG_END'\n").expect("the run config") + 27;
        let end = start + script[start..].find("\nEVALCTL_RUN_CONFIG_END").expect("its end");
        let doc: serde_json::Value = serde_json::from_str(&script[start..end]).expect("JSON");
        let endpoint = &doc["target"]["api_endpoint"];
        assert_eq!(endpoint["stream"], true, "{doc}");
    }
}

#[test]
fn endpoint_settings_the_harness_lacks_are_warned_about_and_not_passed() {
    let path = "tests/fixtures/old_dialect.yaml";
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap();
    let overrides = vec!["target.api_endpoint.request_timeout=600".to_owned()];
    let sources = Sources::new();
    let loaded = config::load_text(Path::new(path), &text, &overrides, &sources, &|_| None)
        .unwrap_or_else(|f| panic!("{}", evalctl::diag::render_all(&f.diagnostics, &sources)));
    let warned = evalctl::diag::render_all(&loaded.warnings, &sources);
    assert!(warned.contains("`target.api_endpoint.request_timeout` is not an endpoint setting"), "{warned}");
    let (graph, _) = evalctl::graph::build(&loaded).unwrap();
    let r = render::render(&loaded, &graph).unwrap();
    assert!(r.jobs.iter().all(|j| !j.script.text().contains("request_timeout")));
}

#[test]
fn endpoint_types_the_harness_lacks_are_refused_at_their_line() {
    let text = "defaults:\n  - execution: slurm/default\n  - deployment: none\n  - _self_\n\
                execution: {account: a, output_dir: /r}\n\
                target:\n  api_endpoint:\n    type: ranking\n    url: http://h:8000/v1/chat/completions\n    model_id: m\n\
                evaluation:\n  tasks:\n    - name: gsm8k\n      endpoint_type: chat_completions\n";
    let sources = Sources::new();
    let failed = config::load_text(Path::new("types.yaml"), text, &[], &sources, &|_| None).expect_err("refused");
    let shown = evalctl::diag::render_all(&failed.diagnostics, &sources);
    for (at, kind) in [("types.yaml:8:11", "ranking"), ("types.yaml:14:22", "chat_completions")] {
        let want = format!("`{kind}` is not an endpoint type of the harness");
        assert!(shown.contains(&want) && shown.contains(at), "{at} {want}:\n{shown}");
    }
}

/// The multi-node Ray group run under bash with stand-ins for `ray` and
/// `vllm` (and the real `python3`): the head and a worker start Ray on the
/// fixed ports, and each exports its own `VLLM_HOST_IP`.
#[test]
fn the_ray_group_fixes_ports_and_host_addresses() {
    let r = render_file("tests/fixtures/user_groups.yaml", &[]);
    let script = r.jobs.iter().map(|j| j.script.text()).find(|s| s.contains("EVALCTL_SRV_CMD=")).expect("a server job");
    let line = script.lines().find(|l| l.starts_with("EVALCTL_SRV_CMD=")).unwrap();
    let dir = std::env::temp_dir().join(format!("evalctl-ray-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    let stub = |name: &str, body: &str| {
        let p = dir.join("bin").join(name);
        std::fs::write(&p, format!("#!/bin/bash\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    };
    stub(
        "ray",
        "echo \"ray $* host=${VLLM_HOST_IP:-}\" >>\"$LOG\"\n[ \"$1\" = status ] && printf 'node_1\\nnode_2\\n'\nexit 0",
    );
    stub("vllm", "echo \"vllm host=$VLLM_HOST_IP\" >>\"$LOG\"");
    for (rank, want_host) in [("0", "10.1.2.3"), ("1", "127.0.0.1")] {
        let log = dir.join(format!("log{rank}"));
        let master = if rank == "0" { "10.1.2.3" } else { "127.0.0.1" };
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!("{line}\nbash -c \"$EVALCTL_SRV_CMD\""))
            .env("PATH", format!("{}:{}", dir.join("bin").display(), std::env::var("PATH").unwrap()))
            .env("LOG", &log)
            .env("PROC_ID", rank)
            .env("MASTER_IP", master)
            .env("NODES_PER_INSTANCE", "2")
            .output()
            .unwrap();
        assert!(out.status.success(), "rank {rank}: {}", String::from_utf8_lossy(&out.stderr));
        let log = std::fs::read_to_string(&log).unwrap();
        let start = log.lines().find(|l| l.starts_with("ray start")).expect("ray start");
        for port in ["--node-manager-port=8266", "--object-manager-port=8267", "--runtime-env-agent-port=8272"] {
            assert!(start.contains(port), "rank {rank}: {start}");
        }
        if rank == "0" {
            assert!(start.contains("--head --port=6379"), "{start}");
            assert!(log.contains(&format!("vllm host={want_host}")), "{log}");
        } else {
            assert!(
                start.contains("--address=127.0.0.1:6379") && start.ends_with(&format!("host={want_host}")),
                "{log}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn job(r: &Rendered, id: &str) -> String {
    r.jobs.iter().find(|j| j.id == id).unwrap_or_else(|| panic!("no job {id}")).script.text()
}

#[test]
fn launcher_keys_reach_the_jobs() {
    let r = render_file("tests/fixtures/launcher_keys.yaml", &[]);
    let gsm8k = job(&r, "gsm8k");
    // The built-in TensorRT-LLM group's parallelism is the launcher's.
    assert!(gsm8k.contains("--tp_size 8 "), "{gsm8k}");
    // deployment.cache_path: read-write at /cache in the server container.
    assert!(
        gsm8k.contains(
            "/artifacts:/results,/lustre/models/llama-3.1-8b-instruct:/checkpoint:ro,/lustre/cache/trtllm:/cache'"
        ),
        "{gsm8k}"
    );
    // dataset_dir: at /datasets (or dataset_mount_path) in the harness
    // container, which is told where by NEMO_EVALUATOR_DATASET_DIR.
    assert!(gsm8k.contains("/artifacts:/results,/lustre/datasets/gsm8k:/datasets'"), "{gsm8k}");
    assert!(gsm8k.contains("export NEMO_EVALUATOR_DATASET_DIR=/datasets\n"), "{gsm8k}");
    let hellaswag = job(&r, "hellaswag");
    assert!(hellaswag.contains("/artifacts:/results,/lustre/datasets/hellaswag:/data:ro'"), "{hellaswag}");
    assert!(hellaswag.contains("export NEMO_EVALUATOR_DATASET_DIR=/data\n"), "{hellaswag}");
    // evaluation_gpu_visible: true gives the harness every GPU.
    for j in [&gsm8k, &hellaswag] {
        assert!(j.contains("export NVIDIA_VISIBLE_DEVICES=all\n"), "{j}");
    }
    // subproject labels the jobs before the ownership tag refresh finds them by.
    assert!(gsm8k.contains("#SBATCH --job-name=nightly.evalctl:launcher_keys/gsm8k/first\n"), "{gsm8k}");
    let resume = job(&r, "gsm8k.resume");
    assert!(resume.contains("#SBATCH --job-name=nightly.evalctl:launcher_keys/gsm8k/resume\n"), "{resume}");
    // The resume links a link queues get the same name (evalctl_submit_next).
    assert!(resume.contains("\nEVALCTL_JOB_NAME=nightly.evalctl:launcher_keys/gsm8k/resume\n"), "{resume}");
    // A device list is passed verbatim; false exports nothing.
    let r = render_file("tests/fixtures/launcher_keys.yaml", &["execution.evaluation_gpu_visible=0,1"]);
    assert!(job(&r, "gsm8k").contains("export NVIDIA_VISIBLE_DEVICES='0,1'\n"));
    let r = render_file("tests/fixtures/launcher_keys.yaml", &["execution.evaluation_gpu_visible=false"]);
    assert!(!job(&r, "gsm8k").contains("NVIDIA_VISIBLE_DEVICES"));
}

#[test]
fn a_shared_topology_task_that_sees_gpus_asks_for_them() {
    let shared = ["execution.topology=shared"];
    let r = render_file("tests/fixtures/launcher_keys.yaml", &shared);
    let task = job(&r, "gsm8k");
    assert!(task.contains("#SBATCH --gres=gpu:8\n") && task.contains("#SBATCH --exclusive\n"), "{task}");
    let r = render_file("tests/fixtures/launcher_keys.yaml", &[shared[0], "execution.evaluation_gpu_visible=false"]);
    let task = job(&r, "gsm8k");
    assert!(!task.contains("--gres") && !task.contains("--exclusive"), "{task}");
}

#[test]
fn the_resume_link_limit_follows_max_walltime() {
    let links = |overrides: &[&str]| {
        let r = render_file("examples/slurm_llama_3_1_8b_instruct.yaml", overrides);
        let text = r.jobs[0].script.text();
        let line = text.lines().find_map(|l| l.strip_prefix("export EVALCTL_MAX_LINKS=")).expect("the limit");
        line.parse::<u32>().unwrap()
    };
    // Default max_walltime 120 h: the links it takes at full walltime, plus 20.
    assert_eq!(links(&[]), 60 + 20, "walltime 2 h");
    assert_eq!(links(&["execution.walltime=00:30:00"]), 240 + 20);
    assert_eq!(links(&["execution.walltime=07:00:00"]), 18 + 20, "a partial last link counts");
    // No max_walltime: unlimited, as in the launcher (0 in the script).
    assert_eq!(links(&["execution.max_walltime=null"]), 0);
    // An explicit limit wins.
    assert_eq!(links(&["execution.max_resume_links=5"]), 5);
    assert_eq!(links(&["execution.max_walltime=null", "execution.max_resume_links=50"]), 50);
}

#[test]
fn an_auxiliary_deployment_has_its_own_task_count() {
    let start = |overrides: &[&str]| {
        let r = render_file("tests/fixtures/new_dialect_judge.yaml", overrides);
        let task = &r.jobs.iter().find(|j| j.role == render::Role::First).expect("a task").script.text();
        task.lines().find(|l| l.starts_with("evalctl_start_servers aux-judge ")).expect("the judge").to_owned()
    };
    // Key, group, first node (after the model's), instances, nodes and
    // tasks per instance, variable prefix.
    assert_eq!(
        start(&["auxiliary_deployments.judge.num_nodes=2"]),
        "evalctl_start_servers aux-judge aux_judge 1 1 2 2 JUDGE"
    );
    assert_eq!(
        start(&["auxiliary_deployments.judge.num_nodes=2", "auxiliary_deployments.judge.n_tasks=16"]),
        "evalctl_start_servers aux-judge aux_judge 1 1 2 16 JUDGE"
    );
}

#[test]
fn a_judge_runs_in_the_task_job_unless_it_is_shared() {
    // In the task's job (the launcher's layout): nodes summed, no judge job.
    let r = render_file("tests/fixtures/new_dialect_judge.yaml", &["auxiliary_deployments.judge.num_nodes=2"]);
    assert!(
        !r.jobs.iter().any(|j| j.id.starts_with("server")),
        "{:?}",
        r.jobs.iter().map(|j| &j.id).collect::<Vec<_>>()
    );
    let task = job(&r, "ifeval-chat");
    assert!(task.contains("#SBATCH --nodes=3\n"), "the model's node and the judge's two");
    // Several judge instances: their balancer takes the launcher's port 5010.
    let r = render_file(
        "tests/fixtures/new_dialect_judge.yaml",
        &["auxiliary_deployments.judge.num_nodes=2", "auxiliary_deployments.judge.num_instances=2"],
    );
    let task = job(&r, "ifeval-chat");
    assert!(task.contains("evalctl_servers_ready aux-judge 8001 /health 14400 5010 haproxy:latest"), "{task}");
    // Shared: one judge job with a resume link, which the tasks wait for.
    let r = render_file("tests/fixtures/new_dialect_judge.yaml", &["auxiliary_deployments.judge.topology=shared"]);
    let ids: Vec<&str> = r.jobs.iter().map(|j| j.id.as_str()).collect();
    assert!(ids.contains(&"server.judge") && ids.contains(&"server.judge.resume"), "{ids:?}");
    let t = r.jobs.iter().find(|j| j.id == "ifeval-chat").unwrap();
    assert!(t.deps.iter().any(|(d, how)| d == "server.judge" && how.slurm() == "after"), "{:?}", t.deps);
    let task = job(&r, "ifeval-chat");
    assert!(
        task.contains("#SBATCH --nodes=1\n") && task.contains("EVALCTL_AUX_URL_0=$(evalctl_endpoint_of server.judge "),
        "{task}"
    );
}

/// The user's comment reaches Slurm verbatim: never in an `#SBATCH` line
/// (sbatch's own quoting rules could not carry it), as one shell word the
/// runtime gives the resume links it queues; apply gives it to the jobs it
/// submits (tests/remote.rs).
#[test]
fn the_comment_is_carried_verbatim_as_a_shell_word() {
    let json =
        r#"{"OccupiedIdleGPUsJobReaper":{"exemptIdleTimeMins":"600","reason":"data loading"}} it's $HOME `x` \ #"#;
    let path = "tests/fixtures/launcher_keys.yaml";
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap();
    // A YAML double-quoted string is a JSON string.
    let line = format!("  subproject: nightly\n  sbatch_comment: {}\n", serde_json::to_string(json).unwrap());
    let text = text.replacen("  subproject: nightly\n", &line, 1);
    let sources = Sources::new();
    let loaded = config::load_text(Path::new(path), &text, &[], &sources, &|_| None)
        .unwrap_or_else(|f| panic!("{}", evalctl::diag::render_all(&f.diagnostics, &sources)));
    let (graph, _) = evalctl::graph::build(&loaded).unwrap();
    let r = render::render(&loaded, &graph).unwrap();
    for j in &r.jobs {
        assert_eq!(j.comment.as_deref(), Some(json), "{}", j.id);
        let text = j.script.text();
        assert!(!text.contains("#SBATCH --comment"), "{text}");
        let line = text.lines().find(|l| l.starts_with("EVALCTL_COMMENT=")).expect("the comment's variable");
        let out = std::process::Command::new("bash")
            .args(["-c", &format!("{line}\nprintf '%s' \"$EVALCTL_COMMENT\"")])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), json, "{line}");
    }
    // No comment: none is given (an empty variable, and no `--comment`).
    let r = render_file("tests/fixtures/launcher_keys.yaml", &[]);
    assert!(r.jobs.iter().all(|j| j.comment.is_none() && j.script.text().contains("\nEVALCTL_COMMENT=''\n")));
}
