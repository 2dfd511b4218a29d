//! Runs rendered job scripts with bash against stand-ins for the Slurm
//! commands (`srun`, `sbatch`, `scontrol`, `sacct`) and `curl`, which record
//! what they were called with. This checks what a script *does*: that every
//! user value reaches its command verbatim whatever its bytes, that secrets
//! reach only their own container, and the auto-resume decisions. (The real
//! cluster tests run the same scripts under Slurm.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use evalctl::config::{self, Loaded};
use evalctl::diag::Sources;
use evalctl::render::{self, Rendered, RenderedJob};
use proptest::prelude::*;

const STUBS: &[(&str, &str)] = &[
    (
        "srun",
        r#"#!/bin/bash
# Records argv (NUL-separated) and the variables named by --container-env.
n=$(date +%s%N)-$$
{
  for a in "$@"; do printf '%s\0' "$a"; done
} >"$STUB_DIR/srun.$n.args"
for a in "$@"; do
  case $a in
    --container-env=*)
      IFS=, read -r -a names <<<"${a#--container-env=}"
      for v in "${names[@]}"; do printf '%s=%s\0' "$v" "${!v-<unset>}"; done >"$STUB_DIR/srun.$n.env"
      ;;
  esac
done
last=${!#}
case $last in
  *nemo-evaluator*)
    # The harness's exit code, as the step records it in /results (the
    # artifacts folder), unless the step was killed (a signal) or lost.
    rc=${STUB_HARNESS_RC:-${STUB_CLIENT_RC:-0}}
    [ "$rc" -le 128 ] && [ -z "${STUB_NO_EXIT_RECORD:-}" ] &&
      printf '%s\n' "$rc" >"$EVALCTL_ARTIFACTS/.evalctl-exit-$SLURM_JOB_ID"
    exit "${STUB_CLIENT_RC:-0}" ;;
  *) : >"$STUB_DIR/server-up"; exec sleep 300 ;;
esac
"#,
    ),
    ("sbatch", "#!/bin/bash\nfor a in \"$@\"; do printf '%s\\0' \"$a\"; done >>\"$STUB_DIR/sbatch.args\"\necho 4242\n"),
    (
        "scontrol",
        "#!/bin/bash\n[ \"$1 $2\" = 'show hostnames' ] && { tr ',' '\\n' <<<\"$3\"; exit 0; }\n[ \"$1 $2\" = 'show job' ] && [ -n \"${STUB_JOB_STATE:-}\" ] && { echo \"JobId=$3 JobName=x\"; echo \"   JobState=$STUB_JOB_STATE Reason=None\"; exit 0; }\nexit 1\n",
    ),
    ("sacct", "#!/bin/bash\n[ -n \"${STUB_SACCT:-}\" ] || exit 1\necho \"$STUB_SACCT\"\n"),
    // Healthy once a server step has recorded its call (or after 5 s when
    // none runs), so a loaded machine cannot stop a server before it is seen.
    (
        "curl",
        "#!/bin/bash\nfor _ in $(seq 100); do [ -e \"$STUB_DIR/server-up\" ] && break; sleep 0.05; done\nprintf 200\n",
    ),
    ("getent", "#!/bin/bash\nexit 2\n"),
];

struct Sandbox {
    dir: PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = std::env::temp_dir().join(format!(
            "evalctl-run-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::create_dir_all(dir.join("rec")).unwrap();
        for (name, text) in STUBS {
            let p = dir.join("bin").join(name);
            std::fs::write(&p, text).unwrap();
            Command::new("chmod").arg("+x").arg(&p).status().unwrap();
        }
        Sandbox { dir }
    }

    fn out(&self) -> PathBuf {
        self.dir.join("out dir $x")
    }

    /// Runs a job script; returns its exit code and combined output.
    fn run(&self, job: &RenderedJob, env: &[(&str, &str)]) -> (i32, String) {
        std::fs::create_dir_all(&job.dir).unwrap();
        let script = Path::new(&job.dir).join(job.script_name);
        std::fs::write(&script, job.script.text()).unwrap();
        let path = format!("{}:{}", self.dir.join("bin").display(), std::env::var("PATH").unwrap_or_default());
        let mut cmd = Command::new("timeout");
        cmd.arg("60").arg("bash").arg(&script);
        cmd.env("PATH", path)
            .env("STUB_DIR", self.dir.join("rec"))
            .env("SLURM_JOB_ID", "77")
            .env("SLURM_JOB_NODELIST", "node1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        (out.status.code().unwrap_or(-1), text)
    }

    /// Recorded srun calls: (argv, container env), in call order.
    fn sruns(&self) -> Vec<(Vec<String>, BTreeMap<String, String>)> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.join("rec"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("srun.") && n.ends_with(".args"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|n| {
                let args = nul_split(&std::fs::read(self.dir.join("rec").join(n)).unwrap());
                let env_file = self.dir.join("rec").join(n.replace(".args", ".env"));
                let env = std::fs::read(env_file)
                    .map(|b| {
                        nul_split(&b)
                            .into_iter()
                            .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
                            .collect()
                    })
                    .unwrap_or_default();
                (args, env)
            })
            .collect()
    }

    fn sbatch_args(&self) -> Vec<String> {
        std::fs::read(self.dir.join("rec/sbatch.args")).map(|b| nul_split(&b)).unwrap_or_default()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn nul_split(b: &[u8]) -> Vec<String> {
    b.split(|c| *c == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect()
}

fn compile(text: &str, overrides: &[String]) -> (Loaded, Rendered) {
    let sources = Sources::new();
    let loaded = config::load_text(Path::new("run.yaml"), text, overrides, &sources, &|_| None)
        .unwrap_or_else(|f| panic!("{}", evalctl::diag::render_all(&f.diagnostics, &sources)));
    let (graph, _) = evalctl::graph::build(&loaded).unwrap();
    let rendered =
        render::render(&loaded, &graph).unwrap_or_else(|d| panic!("{}", evalctl::diag::render_all(&d, &sources)));
    (loaded, rendered)
}

fn job<'a>(r: &'a Rendered, id: &str) -> &'a RenderedJob {
    r.jobs.iter().find(|j| j.id == id).unwrap_or_else(|| panic!("no job {id}"))
}

fn base_config(out: &Path) -> String {
    format!(
        "defaults: [{{execution: slurm/default}}, {{deployment: vllm}}, _self_]\n\
         execution: {{hostname: localhost, account: research, output_dir: {out:?}, walltime: '00:10:00'}}\n\
         deployment: {{hf_model_handle: org/model, served_model_name: model, tensor_parallel_size: 1, env_vars: {{HF_TOKEN: 'host:HF_TOKEN', SERVER_MODE: 'lit:fast'}}}}\n\
         evaluation:\n  env_vars: {{JUDGE_KEY: 'host:JUDGE_KEY', SCRATCH: 'runtime:TMPDIR'}}\n  tasks:\n    - name: gsm8k\n",
        out = out.display().to_string()
    )
}

/// Writes the secrets files of a job as `apply` does.
fn write_secrets(job: &RenderedJob, values: &[(&str, &str)]) {
    for (group, vars) in &job.secrets {
        let v: Vec<(String, String)> = vars
            .iter()
            .map(|var| {
                let value = values.iter().find(|(k, _)| *k == var.name).map_or("", |(_, v)| *v);
                (var.name.clone(), value.to_owned())
            })
            .collect();
        let dir = Path::new(&job.dir).join("secrets");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{group}.env")), render::secrets_file(&v)).unwrap();
    }
}

#[test]
fn per_task_job_starts_server_then_client_with_separate_environments() {
    let sb = Sandbox::new();
    let (_, r) = compile(&base_config(&sb.out()), &[]);
    let task = job(&r, "gsm8k");
    write_secrets(task, &[("HF_TOKEN", "hf-s3cret 'x' $y"), ("JUDGE_KEY", "judge\nkey")]);
    let (rc, log) = sb.run(task, &[("TMPDIR", "/node/tmp")]);
    assert_eq!(rc, 0, "{log}");
    let calls = sb.sruns();
    assert_eq!(calls.len(), 2, "{calls:?}");
    let (server, server_env) = &calls[0];
    let (client, client_env) = &calls[1];
    assert!(server.contains(&"--container-image=vllm/vllm-openai:latest".to_owned()), "{server:?}");
    assert!(server.last().unwrap().contains("vllm serve org/model"), "{server:?}");
    // Each container sees its own group's variables only.
    assert_eq!(server_env.get("HF_TOKEN").map(String::as_str), Some("hf-s3cret 'x' $y"));
    assert_eq!(server_env.get("SERVER_MODE").map(String::as_str), Some("fast"));
    assert!(!server_env.contains_key("JUDGE_KEY"));
    assert_eq!(client_env.get("JUDGE_KEY").map(String::as_str), Some("judge\nkey"));
    assert_eq!(client_env.get("SCRATCH").map(String::as_str), Some("/node/tmp"));
    assert!(!client_env.contains_key("HF_TOKEN"));
    // The client runs the harness against the server's endpoint on the head node.
    assert!(client.contains(&"--nodelist=node1".to_owned()), "{client:?}");
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(&task.dir).join("artifacts/run_config.yml")).unwrap())
            .unwrap();
    // It shares the server's node: the loopback address (a server listening
    // on 127.0.0.1 only is reached).
    assert_eq!(cfg["target"]["api_endpoint"]["url"], "http://127.0.0.1:8000/v1/completions");
    assert_eq!(cfg["config"]["type"], "gsm8k");
    let status = std::fs::read_to_string(Path::new(&task.dir).join("status")).unwrap();
    assert_eq!(status, "completed 77 \n");
    let chain = std::fs::read_to_string(Path::new(&task.dir).join("chain")).unwrap();
    let events: Vec<&str> = chain.lines().map(|l| l.split(' ').nth(1).unwrap()).collect();
    assert_eq!(events, ["start", "end"]);
    // Secret values never appear in the job's output.
    assert!(!log.contains("s3cret") && !log.contains("judge\nkey"), "{log}");
}

#[test]
fn failing_harness_fails_the_job_and_stops_the_server() {
    let sb = Sandbox::new();
    let (_, r) = compile(&base_config(&sb.out()), &[]);
    let task = job(&r, "gsm8k");
    let (rc, log) = sb.run(task, &[("STUB_CLIENT_RC", "3")]);
    assert_eq!(rc, 3, "{log}");
    let status = std::fs::read_to_string(Path::new(&task.dir).join("status")).unwrap();
    assert_eq!(status, "failed 77 exit 3\n");
}

#[test]
fn a_link_whose_job_is_ending_is_cut_short_whatever_its_exit_code() {
    // (client step's exit code, the harness's recorded one, the job's own
    // state in slurmctld, recorded status, the job's exit code)
    type Case<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a str, i32);
    let cases: [Case; 11] = [
        // Slurm is ending the job (time limit, node failure, preemption):
        // even a client that exits 0 did not finish its work.
        ("0", Some("0"), Some("COMPLETING"), "interrupted 77 COMPLETING exit 0", 0),
        ("0", Some("0"), Some("NODE_FAIL"), "interrupted 77 NODE_FAIL exit 0", 0),
        ("1", Some("1"), Some("TIMEOUT"), "interrupted 77 TIMEOUT exit 1", 1),
        // No answer from Slurm: a client killed by a signal was cut short.
        ("143", None, None, "interrupted 77 no-exit-record exit 143", 143),
        // A step lost with its node can end with srun's exit code 0 while
        // slurmctld still says RUNNING: without the harness's record the
        // work is not done (it was recorded as completed and never resumed).
        ("0", None, Some("RUNNING"), "interrupted 77 no-exit-record exit 0", 75),
        ("0", None, None, "interrupted 77 no-exit-record exit 0", 75),
        // The job still runs: the exit code is the evaluation's own.
        ("137", None, Some("RUNNING"), "failed 77 exit 137", 137),
        ("0", Some("0"), Some("RUNNING"), "completed 77 ", 0),
        ("0", Some("0"), None, "completed 77 ", 0),
        // The harness's record decides, not srun's code (a post_cmd or the
        // step's teardown may fail after the harness succeeded) ...
        ("1", Some("0"), Some("RUNNING"), "completed 77 ", 0),
        // ... and a step that failed before the harness ended (a failing
        // pre_cmd, a container that did not start) fails the link.
        ("5", None, Some("RUNNING"), "failed 77 exit 5", 5),
    ];
    for (client_rc, harness_rc, own, want, job_rc) in cases {
        let sb = Sandbox::new();
        let (_, r) = compile(&base_config(&sb.out()), &[]);
        let task = job(&r, "gsm8k");
        let mut env = vec![("STUB_CLIENT_RC", client_rc)];
        match harness_rc {
            Some(h) => env.push(("STUB_HARNESS_RC", h)),
            None => env.push(("STUB_NO_EXIT_RECORD", "1")),
        }
        if let Some(s) = own {
            env.push(("STUB_JOB_STATE", s));
        }
        let (rc, log) = sb.run(task, &env);
        let case = format!("client {client_rc}, harness {harness_rc:?}, job {own:?}");
        assert_eq!(rc, job_rc, "{case}:\n{log}");
        let status = std::fs::read_to_string(Path::new(&task.dir).join("status")).unwrap();
        assert_eq!(status.trim_end_matches('\n'), want, "{case}:\n{log}");
        let chain = std::fs::read_to_string(Path::new(&task.dir).join("chain")).unwrap();
        assert_eq!(
            chain.contains(" end "),
            !want.starts_with("interrupted"),
            "only a link that ran to its end records one: {chain}"
        );
    }
}

fn resume_case(sacct: Option<&str>, status: Option<&str>, chain: &str) -> (i32, String, Sandbox, RenderedJob) {
    resume_case_in(base_config, sacct, status, chain)
}

/// [`resume_case`] with the config `config` makes for the sandbox's output folder.
fn resume_case_in(
    config: impl Fn(&Path) -> String,
    sacct: Option<&str>,
    status: Option<&str>,
    chain: &str,
) -> (i32, String, Sandbox, RenderedJob) {
    let sb = Sandbox::new();
    let (_, r) = compile(&config(&sb.out()), &["execution.max_resume_links=3".into()]);
    let resume = job(&r, "gsm8k.resume").clone();
    std::fs::create_dir_all(&resume.dir).unwrap();
    if let Some(s) = status {
        std::fs::write(Path::new(&resume.dir).join("status"), s).unwrap();
    }
    // Job 76 queued this link (77): the gate finds its predecessor there.
    std::fs::write(Path::new(&resume.dir).join("chain"), format!("{chain}76 submit 101 77\n")).unwrap();
    let mut env = vec![];
    if let Some(s) = sacct {
        env.push(("STUB_SACCT", s));
    }
    let (rc, log) = sb.run(&resume, &env);
    (rc, log, sb, resume)
}

#[test]
fn resume_link_continues_after_timeout_and_queues_the_next() {
    let (rc, log, sb, resume) = resume_case(Some("TIMEOUT"), None, "76 start 100 first\n");
    assert_eq!(rc, 0, "{log}");
    assert!(log.contains("job 76 ended TIMEOUT: resuming (link 2"), "{log}");
    let args = sb.sbatch_args();
    assert_eq!(
        args,
        [
            "--parsable",
            "--job-name=evalctl:run/gsm8k/resume",
            "--dependency=afternotok:77",
            "--kill-on-invalid-dep=yes",
            &format!("{}/resume.sbatch", resume.dir),
        ],
        "the link's ownership tag as its name; no comment configured, none given"
    );
    assert_eq!(sb.sruns().len(), 2, "the work ran");
    let chain = std::fs::read_to_string(Path::new(&resume.dir).join("chain")).unwrap();
    assert!(chain.contains("77 submit ") && chain.contains(" 4242"), "{chain}");
}

/// The link a resume link queues gets the user's comment verbatim (one
/// argument) and the ownership tag with the subproject as its name.
#[test]
fn the_next_link_gets_the_comment_verbatim_and_the_tag_as_its_name() {
    let json = r#"{"OccupiedIdleGPUsJobReaper":{"exemptIdleTimeMins":"600","reason":"data loading"}} it's $(touch x) `y` \ #z"#;
    let config = |out: &Path| {
        base_config(out).replacen(
            "walltime: '00:10:00'}",
            &format!("walltime: '00:10:00', subproject: nightly, sbatch_comment: {}}}", yaml_str(json)),
            1,
        )
    };
    let (rc, log, sb, resume) = resume_case_in(config, Some("TIMEOUT"), None, "76 start 100 first\n");
    assert_eq!(rc, 0, "{log}");
    assert_eq!(
        sb.sbatch_args(),
        [
            "--parsable",
            "--job-name=nightly.evalctl:run/gsm8k/resume",
            &format!("--comment={json}"),
            "--dependency=afternotok:77",
            "--kill-on-invalid-dep=yes",
            &format!("{}/resume.sbatch", resume.dir),
        ]
    );
}

#[test]
fn resume_link_stops_after_success_failure_or_cancel() {
    for state in ["COMPLETED", "FAILED", "CANCELLED by 1001", "OUT_OF_MEMORY"] {
        let (rc, log, sb, resume) = resume_case(Some(state), None, "76 start 100 first\n");
        assert_eq!(rc, 0, "{log}");
        assert!(log.contains("not resuming"), "{state}: {log}");
        assert!(sb.sruns().is_empty() && sb.sbatch_args().is_empty(), "{state}: nothing runs, nothing is queued");
        let chain = std::fs::read_to_string(Path::new(&resume.dir).join("chain")).unwrap();
        assert!(chain.lines().last().unwrap().contains(" stop "), "{chain}");
    }
}

#[test]
fn resume_without_accounting_reads_the_status_file() {
    // No sacct, no scontrol record: the last status decides.
    let (rc, log, sb, _) = resume_case(None, Some("interrupted 76 USR1\n"), "76 start 100 first\n");
    assert_eq!(rc, 0, "{log}");
    assert!(log.contains("taking it as INTERRUPTED"), "{log}");
    assert_eq!(sb.sruns().len(), 2);
    // A link that recorded its end is final, whatever Slurm says of its job
    // (it completed just as its time limit came).
    for sacct in [None, Some("TIMEOUT")] {
        let (_, log, sb, resume) =
            resume_case(sacct, Some("completed 76 \n"), "76 start 100 first\n76 end 200 completed\n");
        assert!(log.contains("the chain already ended: 'completed 76 ': not resuming"), "{log}");
        assert!(sb.sruns().is_empty() && sb.sbatch_args().is_empty());
        let status = std::fs::read_to_string(Path::new(&resume.dir).join("status")).unwrap();
        assert_eq!(status, "completed 76 \n", "the completed record stays");
    }
}

#[test]
fn resume_stops_at_the_link_and_walltime_limits() {
    let chain = "70 start 100 first\n71 start 800 resume\n72 start 1500 resume\n";
    let (rc, log, sb, resume) = resume_case(Some("TIMEOUT"), None, chain);
    assert_eq!(rc, 0);
    assert!(log.contains("resume limit reached: 3 links"), "{log}");
    assert!(sb.sruns().is_empty());
    assert_eq!(
        std::fs::read_to_string(Path::new(&resume.dir).join("status")).unwrap(),
        "stopped 77 max_resume_links\n"
    );

    let sb = Sandbox::new();
    let (_, r) = compile(&base_config(&sb.out()), &["execution.max_walltime=00:15:00".into()]);
    let resume = job(&r, "gsm8k.resume");
    std::fs::create_dir_all(&resume.dir).unwrap();
    // Two earlier links of 10 minutes each: 1200 s used of 900 s allowed.
    std::fs::write(
        Path::new(&resume.dir).join("chain"),
        "70 start 0 first\n70 end 600 x\n71 start 700 resume\n71 submit 701 77\n",
    )
    .unwrap();
    let (_, log) = sb.run(resume, &[("STUB_SACCT", "TIMEOUT")]);
    assert!(log.contains("max_walltime reached: 1200 s used of 900 s"), "{log}");
    assert!(sb.sruns().is_empty());
}

#[test]
fn shared_topology_tasks_use_the_published_endpoint() {
    let sb = Sandbox::new();
    let text = base_config(&sb.out()).replace("walltime: '00:10:00'", "walltime: '00:10:00', topology: shared");
    let (_, r) = compile(&text, &[]);
    let server = job(&r, "server");
    let task = job(&r, "gsm8k");
    std::fs::create_dir_all(&server.dir).unwrap();
    std::fs::write(Path::new(&server.dir).join("endpoint"), "http://node7:8000\n").unwrap();
    let (rc, log) = sb.run(task, &[]);
    assert_eq!(rc, 0, "{log}");
    let calls = sb.sruns();
    assert_eq!(calls.len(), 1, "no server of its own: {calls:?}");
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(&task.dir).join("artifacts/run_config.yml")).unwrap())
            .unwrap();
    assert_eq!(cfg["target"]["api_endpoint"]["url"], "http://node7:8000/v1/completions");
    // The server job publishes its endpoint and ends once every task's chain has ended.
    let (rc, log) = sb.run(server, &[]);
    assert_eq!(rc, 0, "{log}");
    assert!(log.contains("endpoint published: http://node1:8000"), "{log}");
    assert!(!Path::new(&server.dir).join("endpoint").exists(), "endpoint withdrawn when done");
}

/// A judge in the task's job: on the node after the model's, started with
/// the model, reached by its node's name; the harness is told where.
#[test]
fn a_judge_runs_on_its_own_nodes_inside_the_task_job() {
    let sb = Sandbox::new();
    let text = base_config(&sb.out())
        + "auxiliary_deployments:\n  judge:\n    type: vllm\n    image: vllm/judge:1\n    hf_model_handle: org/judge\n    served_model_name: judge-model\n    port: 8001\n    command: vllm serve org/judge --port 8001\n    endpoints: {chat: /v1/chat/completions, health: /health}\n";
    let (_, r) = compile(&text, &[]);
    assert!(!r.jobs.iter().any(|j| j.id.starts_with("server")), "no judge job of its own");
    let task = job(&r, "gsm8k");
    assert!(task.script.text().contains("#SBATCH --nodes=2\n"), "the model's node and the judge's");
    write_secrets(task, &[]);
    let (rc, log) = sb.run(task, &[("SLURM_JOB_NODELIST", "node1,node2")]);
    assert_eq!(rc, 0, "{log}");
    let calls = sb.sruns();
    assert_eq!(calls.len(), 3, "model, judge, harness: {calls:?}");
    let (model, model_env) = &calls[0];
    let (judge, judge_env) = &calls[1];
    let (client, client_env) = &calls[2];
    assert!(model.contains(&"--nodelist=node1".to_owned()), "{model:?}");
    assert!(judge.contains(&"--nodelist=node2".to_owned()), "{judge:?}");
    assert!(judge.contains(&"--container-image=vllm/judge:1".to_owned()), "{judge:?}");
    // The launcher's server variables (getent finds no address here: names).
    assert_eq!(model_env.get("MASTER_IP").map(String::as_str), Some("node1"));
    assert_eq!(model_env.get("ALL_NODE_IPS").map(String::as_str), Some("node1"));
    assert_eq!(judge_env.get("JUDGE_MASTER_IP").map(String::as_str), Some("node2"));
    assert_eq!(judge_env.get("JUDGE_ALL_NODE_IPS").map(String::as_str), Some("node2"));
    // The model's server sees the task's results at /results; the judge's does not.
    let mounts =
        |argv: &[String]| argv.iter().find(|a| a.starts_with("--container-mounts=")).cloned().unwrap_or_default();
    assert!(mounts(model).contains(&format!("{}/artifacts:/results", task.dir)), "{model:?}");
    assert!(!mounts(judge).contains(":/results"), "{judge:?}");
    assert!(client.contains(&"--nodelist=node1".to_owned()), "{client:?}");
    assert_eq!(client_env.get("JUDGE_CHAT_URL").map(String::as_str), Some("http://node2:8001/v1/chat/completions"));
    assert_eq!(client_env.get("JUDGE_MODEL_ID").map(String::as_str), Some("judge-model"));
    assert!(!client_env.contains_key("JUDGE_HEALTH_URL"), "{client_env:?}");
    // Its log names it.
    assert!(log.contains("aux-judge-server instance 0 starting on node2"), "{log}");
}

/// A task waiting for a shared server whose chain has ended fails at once,
/// without a resume; one that is only between links is waited for.
#[test]
fn a_task_fails_at_once_when_its_shared_server_has_ended() {
    let sb = Sandbox::new();
    let text = base_config(&sb.out()).replace("walltime: '00:10:00'", "walltime: '00:10:00', topology: shared");
    let (_, r) = compile(&text, &[]);
    assert!(
        r.jobs
            .iter()
            .any(|j| j.id == "server.resume" && j.deps == [("server".to_owned(), evalctl::graph::Dep::AfterNotOk)])
    );
    let server = job(&r, "server");
    let task = job(&r, "gsm8k");
    std::fs::create_dir_all(&server.dir).unwrap();
    std::fs::write(Path::new(&server.dir).join("status"), "failed 12 server-not-ready\n").unwrap();
    let started = std::time::Instant::now();
    let (rc, log) = sb.run(task, &[]);
    assert_eq!(rc, 1, "{log}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "no waiting: {log}");
    assert!(log.contains("deployment server has ended (failed 12 server-not-ready)"), "{log}");
    let status = std::fs::read_to_string(Path::new(&task.dir).join("status")).unwrap();
    assert_eq!(status, "failed 77 no-endpoint\n");
    assert!(sb.sruns().is_empty(), "the harness never ran");
}

/// Strings that break naive quoting.
fn nasty() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("'".to_owned()),
        Just("\"".to_owned()),
        Just("$".to_owned()),
        Just("$(touch /tmp/evalctl-pwned)".to_owned()),
        Just("`id`".to_owned()),
        Just("\\".to_owned()),
        Just("\n".to_owned()),
        Just("#".to_owned()),
        Just(" ".to_owned()),
        Just(";".to_owned()),
        Just("&&".to_owned()),
        Just("*".to_owned()),
        Just("%".to_owned()),
        Just("${X}".to_owned()),
        Just("é💥".to_owned()),
        Just("EVALCTL_RUN_CONFIG_END".to_owned()),
        "[a-z]{1,5}",
    ];
    prop::collection::vec(piece, 1..8)
        .prop_map(|v| v.concat())
        .prop_filter("`\\${` is the config's escape", |s| !s.contains("\\${"))
}

/// A YAML string whose config value is `s`: `${` is escaped so the config
/// does not read it as an interpolation.
fn yaml_str(s: &str) -> String {
    serde_json::to_string(&s.replace("${", "\\${")).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Adversarial strings in every field that reaches the shell arrive
    /// verbatim, and `bash -n` accepts every script.
    #[test]
    fn adversarial_values_arrive_verbatim(
        command in nasty(), image in nasty(), container in nasty(), pre in nasty(),
        lit in nasty(), param in nasty(), secret in nasty(), model in nasty(), mount in nasty(),
    ) {
        // Mount paths cannot hold ',' ':' or newlines (refused with an error, tested elsewhere).
        let mount = mount.replace([',', ':', '\n'], "_");
        let sb = Sandbox::new();
        let text = format!(
            "defaults: [{{execution: slurm/default}}, {{deployment: generic}}, _self_]\n\
             execution: {{hostname: localhost, account: research, output_dir: {out}, walltime: '00:10:00', mounts: {{evaluation: {{{mount_src}: /data}}}}}}\n\
             deployment: {{image: {image}, command: {command}, served_model_name: {model}, env_vars: {{TOKEN: 'host:TOKEN'}}}}\n\
             evaluation:\n  env_vars: {{LITERAL: {lit}}}\n  tasks:\n    - name: gsm8k\n      container: {container}\n      pre_cmd: {pre}\n      nemo_evaluator_config: {{config: {{params: {{extra: {{prompt: {param}}}}}}}}}\n",
            out = yaml_str(&sb.out().display().to_string()),
            // Keys are not interpolated: no escaping.
            mount_src = serde_json::to_string(&format!("/mnt/{mount}")).unwrap(),
            image = yaml_str(&image),
            command = yaml_str(&command),
            model = yaml_str(&model),
            lit = yaml_str(&format!("lit:{lit}")),
            container = yaml_str(&container),
            pre = yaml_str(&format!("true {}", render::shell::quote(&pre))),
            param = yaml_str(&param),
        );
        let (_, r) = compile(&text, &[]);
        for j in &r.jobs {
            let check = Command::new("bash").arg("-n").arg("-c").arg(j.script.text()).output().unwrap();
            prop_assert!(check.status.success(), "{}: {}", j.id, String::from_utf8_lossy(&check.stderr));
        }
        let task = job(&r, "gsm8k");
        write_secrets(task, &[("TOKEN", &secret)]);
        let (rc, log) = sb.run(task, &[]);
        prop_assert_eq!(rc, 0, "{}", log);
        let calls = sb.sruns();
        prop_assert_eq!(calls.len(), 2);
        let (server, server_env) = &calls[0];
        let (client, client_env) = &calls[1];
        let want_image = format!("--container-image={image}");
        prop_assert!(server.contains(&want_image));
        prop_assert_eq!(server.last().unwrap(), &format!("export PROC_ID=$SLURM_PROCID; {}", command.trim_end()));
        prop_assert_eq!(server_env.get("TOKEN"), Some(&secret));
        let want_container = format!("--container-image={container}");
        prop_assert!(client.contains(&want_container));
        let mounts = format!("--container-mounts={}/run/gsm8k/artifacts:/results,/mnt/{mount}:/data", sb.out().display());
        prop_assert!(client.contains(&mounts), "{:?}", client);
        let want_pre = format!("{{\ntrue {}\n}} || exit $?\n", render::shell::quote(&pre));
        prop_assert!(client.last().unwrap().starts_with(&want_pre));
        prop_assert_eq!(client_env.get("LITERAL"), Some(&lit));
        let cfg: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(Path::new(&task.dir).join("artifacts/run_config.yml")).unwrap()
        ).unwrap();
        prop_assert_eq!(&cfg["config"]["params"]["extra"]["prompt"], &serde_json::json!(param));
        prop_assert_eq!(&cfg["target"]["api_endpoint"]["model_id"], &serde_json::json!(model));
        prop_assert!(!Path::new("/tmp/evalctl-pwned").exists());
    }
}

/// The harness step's own command, run with bash and stand-ins for the
/// harness: as in the launcher, the task's `pre_cmd`/`post_cmd` replace the
/// evaluation's, a failing `pre_cmd` stops the step before the harness,
/// `post_cmd` runs whatever the harness's outcome, the step exits with the
/// harness's status, and an image without `nemo-evaluator` gets
/// `eval-factory`.
#[test]
fn the_harness_step_runs_pre_and_post_commands_like_the_launcher() {
    let sb = Sandbox::new();
    let cfg = base_config(&sb.out()).replace("  tasks:\n    - name: gsm8k\n", "  pre_cmd: echo eval-pre >>\"$LOG\"\n  post_cmd: echo eval-post >>\"$LOG\"\n  tasks:\n    - {name: gsm8k, pre_cmd: \"echo task-pre >>\\\"$LOG\\\"; test -z \\\"$PRE_FAILS\\\"\"}\n");
    let (_, r) = compile(&cfg, &[]);
    let task = job(&r, "gsm8k");
    let (rc, log) = sb.run(task, &[]);
    assert_eq!(rc, 0, "{log}");
    let client = sb.sruns().pop().expect("the client's srun").0;
    let step = client.last().unwrap().clone();
    let bin = sb.dir.join("harness-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let run = |harness: &str, env: &[(&str, &str)]| {
        let _ = std::fs::remove_dir_all(&bin);
        std::fs::create_dir_all(&bin).unwrap();
        let p = bin.join(harness);
        std::fs::write(&p, format!("#!/bin/bash\necho \"{harness} $*\" >>\"$LOG\"\nexit \"${{HARNESS_RC:-0}}\"\n"))
            .unwrap();
        Command::new("chmod").arg("+x").arg(&p).status().unwrap();
        let log = sb.dir.join("step.log");
        let _ = std::fs::remove_file(&log);
        let mut cmd = Command::new("bash");
        cmd.arg("-c").arg(&step).env("PATH", format!("{}:/usr/bin:/bin", bin.display())).env("LOG", &log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let code = cmd.status().unwrap().code();
        (code, std::fs::read_to_string(&log).unwrap_or_default())
    };
    let run_eval = "run_eval --run_config /results/run_config.yml";
    assert_eq!(run("nemo-evaluator", &[]), (Some(0), format!("task-pre\nnemo-evaluator {run_eval}\neval-post\n")));
    assert_eq!(run("eval-factory", &[]), (Some(0), format!("task-pre\neval-factory {run_eval}\neval-post\n")));
    assert_eq!(
        run("nemo-evaluator", &[("HARNESS_RC", "3")]),
        (Some(3), format!("task-pre\nnemo-evaluator {run_eval}\neval-post\n")),
        "post_cmd runs after a failed harness, whose status is the step's"
    );
    assert_eq!(
        run("nemo-evaluator", &[("PRE_FAILS", "1")]),
        (Some(1), "task-pre\n".to_owned()),
        "a failing pre_cmd stops"
    );
}
