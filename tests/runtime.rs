//! The job runtime (`src/render/lib.sh`) on its own: each function is run
//! in bash, with the runtime sourced and stand-ins for the Slurm commands
//! (`sacct`, `scontrol`, `sbatch`), `curl` and `sleep` on PATH, against
//! fixture files; and the runtime alone passes shellcheck.

use std::path::PathBuf;
use std::process::Command;

const RUNTIME: &str = include_str!("../src/render/lib.sh");
const CHAIN_TIME: &str = include_str!("fixtures/chain_time.tsv");

const STUBS: &[(&str, &str)] = &[
    ("sacct", "#!/bin/bash\n[ -n \"${STUB_SACCT+x}\" ] || exit 1\nprintf '%b' \"$STUB_SACCT\"\n"),
    (
        "scontrol",
        "#!/bin/bash\n[ \"$1\" = update ] && { printf '%s\\n' \"$*\" >>\"$EVALCTL_DIR/scontrol.args\"; exit 0; }\n[ \"$1 $2\" = 'show job' ] && [ -n \"${STUB_JOB_STATE:-}\" ] && { echo \"JobId=$3 JobName=x\"; echo \"   JobState=$STUB_JOB_STATE Reason=None\"; exit 0; }\nexit 1\n",
    ),
    (
        "sbatch",
        "#!/bin/bash\nprintf '%s\\n' \"$*\" >>\"$EVALCTL_DIR/sbatch.args\"\n[ -n \"${STUB_SBATCH_FAILS:-}\" ] && exit 1\necho '4242;cluster'\n",
    ),
    // Records the URL asked for; with STUB_LISTEN (words `host:port`), only
    // those answer (200), as a server bound to those addresses would.
    (
        "curl",
        "#!/bin/bash\nurl=${!#}\nprintf '%s\\n' \"$url\" >>\"$EVALCTL_DIR/curl.urls\"\nif [ -n \"${STUB_LISTEN:-}\" ]; then\n  hp=${url#http://}; hp=${hp%%/*}\n  case \" $STUB_LISTEN \" in *\" $hp \"*) printf 200 ;; *) printf 000 ;; esac\n  exit 0\nfi\nprintf '%s' \"${STUB_HTTP:-200}\"\n",
    ),
    // The load balancer's step: records its arguments.
    ("srun", "#!/bin/bash\nprintf '%s\\n' \"$*\" >>\"$EVALCTL_DIR/srun.args\"\n"),
    // Retries and polls wait for nothing.
    ("sleep", "#!/bin/bash\nexit 0\n"),
];

/// A job directory with the stand-ins, removed when dropped.
struct Job {
    root: PathBuf,
}

/// What a snippet did: exit code, output, and the status and chain files.
#[derive(Debug)]
struct Ran {
    rc: i32,
    out: String,
    status: String,
    chain: String,
}

impl Job {
    fn new() -> Job {
        let root = std::env::temp_dir().join(format!(
            "evalctl-runtime-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::create_dir_all(root.join("job")).unwrap();
        for (name, text) in STUBS {
            let p = root.join("bin").join(name);
            std::fs::write(&p, text).unwrap();
            Command::new("chmod").arg("+x").arg(&p).status().unwrap();
        }
        std::fs::write(root.join("lib.sh"), RUNTIME).unwrap();
        Job { root }
    }

    fn dir(&self) -> PathBuf {
        self.root.join("job")
    }

    fn write(&self, name: &str, text: &str) -> &Job {
        std::fs::write(self.dir().join(name), text).unwrap();
        self
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir().join(name)).unwrap_or_default()
    }

    /// Runs `code` after sourcing the runtime, as job 77. `now` fixes the
    /// clock the runtime reads (`EPOCHSECONDS`).
    fn run(&self, code: &str, env: &[(&str, &str)], now: Option<u64>) -> Ran {
        let clock = now.map_or(String::new(), |n| format!("unset EPOCHSECONDS; EPOCHSECONDS={n}\n"));
        let text = format!("set -uo pipefail\n. {:?}\n{clock}{code}\n", self.root.join("lib.sh"));
        let path = format!("{}:{}", self.root.join("bin").display(), std::env::var("PATH").unwrap_or_default());
        let mut cmd = Command::new("timeout");
        cmd.arg("30").arg("bash").arg("-c").arg(text);
        cmd.env("PATH", path)
            .env("EVALCTL_DIR", self.dir())
            .env("EVALCTL_STACK_DIR", &self.root)
            .env("EVALCTL_LOGS", self.root.join("logs"))
            .env("EVALCTL_ARTIFACTS", self.dir())
            .env("SLURM_JOB_ID", "77")
            .env("EVALCTL_WALLTIME_S", "3600")
            .env("EVALCTL_MAX_WALLTIME_S", "0")
            .env("EVALCTL_MAX_LINKS", "20");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let o = cmd.output().unwrap();
        Ran {
            rc: o.status.code().unwrap_or(-1),
            out: String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
            status: self.read("status"),
            chain: self.read("chain"),
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[test]
fn status_and_chain_records() {
    let j = Job::new();
    let r = j.run("evalctl_status running; evalctl_chain start first", &[], Some(1000));
    assert_eq!(r.rc, 0, "{}", r.out);
    assert_eq!(r.status, "running 77 \n");
    assert_eq!(r.chain, "77 start 1000 first\n");
    // The status file is replaced (atomically); the chain file grows.
    let r = j.run("evalctl_status failed 'exit 3'; evalctl_chain end 'failed 3'", &[], Some(1010));
    assert_eq!(r.status, "failed 77 exit 3\n");
    assert_eq!(r.chain, "77 start 1000 first\n77 end 1010 failed 3\n");
    assert!(std::fs::read_dir(j.dir()).unwrap().flatten().all(|e| !e.file_name().to_string_lossy().contains(".tmp")));
    let r = j.run("evalctl_log hello world", &[], None);
    assert!(r.out.starts_with("[evalctl ") && r.out.ends_with("Z] hello world\n"), "{}", r.out);
}

#[test]
fn used_seconds_and_links_follow_the_shared_table() {
    let mut cases = 0;
    for row in CHAIN_TIME.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let f: Vec<&str> = row.split('\t').collect();
        let [name, wall, now, want_used, want_links, _jobs, check, chain] = f[..] else {
            panic!("malformed row: {row:?}");
        };
        if check != "both" {
            continue;
        }
        let j = Job::new();
        if !chain.is_empty() {
            let text: String = chain.split(" | ").map(|l| format!("{l}\n")).collect();
            j.write("chain", &text);
        }
        let r = j.run(
            "echo \"$(evalctl_used_seconds) $(evalctl_links)\"",
            &[("EVALCTL_WALLTIME_S", wall)],
            Some(now.parse().unwrap()),
        );
        assert_eq!(r.rc, 0, "{name}: {}", r.out);
        assert_eq!(r.out.trim(), format!("{want_used} {want_links}"), "{name}: used seconds and links");
        cases += 1;
    }
    assert!(cases >= 10, "{cases} cases");
}

#[test]
fn the_previous_job_is_the_one_that_queued_this_link() {
    let j = Job::new();
    j.write("chain", "70 submit 0 apply\n70 start 10 first\n70 submit 11 77\n77 submit 12 78\n");
    assert_eq!(j.run("evalctl_prev_job", &[], None).out, "70\n");
    assert_eq!(j.run("evalctl_prev_job", &[("SLURM_JOB_ID", "99")], None).out, "\n");
}

#[test]
fn job_state_from_accounting_then_the_controller() {
    let j = Job::new();
    let state = |env: &[(&str, &str)]| j.run("evalctl_job_state 70", env, None).out;
    assert_eq!(state(&[("STUB_SACCT", "TIMEOUT\n")]), "TIMEOUT");
    assert_eq!(state(&[("STUB_SACCT", "CANCELLED by 0\n")]), "CANCELLED");
    // Accounting lags (still RUNNING, or nothing yet): the controller knows.
    assert_eq!(state(&[("STUB_SACCT", "RUNNING\n"), ("STUB_JOB_STATE", "PREEMPTED")]), "PREEMPTED");
    assert_eq!(state(&[("STUB_SACCT", ""), ("STUB_JOB_STATE", "NODE_FAIL")]), "NODE_FAIL");
    // A job the controller still runs has no final state.
    assert_eq!(state(&[("STUB_SACCT", "RUNNING\n"), ("STUB_JOB_STATE", "RUNNING")]), "");
    assert_eq!(state(&[]), "");
}

#[test]
fn the_resume_gate_decides_from_status_state_and_limits() {
    let chain = "70 submit 0 apply\n70 start 100 first\n70 submit 101 77\n";
    // (status file, env, resumes, last chain line, status afterwards)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], bool, &'a str, &'a str);
    let cases: &[Case] = &[
        ("interrupted 70 USR1\n", &[("STUB_SACCT", "TIMEOUT\n")], true, "70 submit 101 77", "interrupted 70 USR1\n"),
        ("running 70 \n", &[("STUB_SACCT", "PREEMPTED\n")], true, "70 submit 101 77", "running 70 \n"),
        ("running 70 \n", &[("STUB_JOB_STATE", "NODE_FAIL")], true, "70 submit 101 77", "running 70 \n"),
        // No record anywhere: taken as interrupted.
        ("running 70 \n", &[], true, "70 submit 101 77", "running 70 \n"),
        // The previous link recorded its own end: over, whatever Slurm says.
        ("completed 70 \n", &[("STUB_SACCT", "TIMEOUT\n")], false, "77 stop 5000 completed", "completed 70 \n"),
        ("failed 70 exit 1\n", &[], false, "77 stop 5000 failed", "failed 70 exit 1\n"),
        ("stopped 70 cancelled\n", &[], false, "77 stop 5000 stopped", "stopped 70 cancelled\n"),
        // Ended otherwise: not resumed.
        ("running 70 \n", &[("STUB_SACCT", "FAILED\n")], false, "77 stop 5000 FAILED", "running 70 \n"),
        ("running 70 \n", &[("STUB_SACCT", "CANCELLED by 1\n")], false, "77 stop 5000 CANCELLED", "running 70 \n"),
        // Limits.
        (
            "interrupted 70 USR1\n",
            &[("STUB_SACCT", "TIMEOUT\n"), ("EVALCTL_MAX_LINKS", "1")],
            false,
            "77 stop 5000 max_resume_links",
            "stopped 77 max_resume_links\n",
        ),
        (
            "interrupted 70 USR1\n",
            &[("STUB_SACCT", "TIMEOUT\n"), ("EVALCTL_WALLTIME_S", "600"), ("EVALCTL_MAX_WALLTIME_S", "600")],
            false,
            "77 stop 5000 max_walltime",
            "stopped 77 max_walltime\n",
        ),
        (
            "interrupted 70 USR1\n",
            &[("STUB_SACCT", "TIMEOUT\n"), ("EVALCTL_MAX_WALLTIME_S", "7200")],
            true,
            "70 submit 101 77",
            "interrupted 70 USR1\n",
        ),
        // A limit of 0 links: unlimited (no max_walltime, no max_resume_links).
        (
            "interrupted 70 USR1\n",
            &[("STUB_SACCT", "TIMEOUT\n"), ("EVALCTL_MAX_LINKS", "0")],
            true,
            "70 submit 101 77",
            "interrupted 70 USR1\n",
        ),
    ];
    for (status, env, resumes, last, status_after) in cases {
        let j = Job::new();
        j.write("chain", chain).write("status", status);
        let r = j.run("evalctl_resume_gate", env, Some(5000));
        assert_eq!(r.rc == 0, *resumes, "{status:?} {env:?}: {}", r.out);
        assert_eq!(r.chain.lines().last(), Some(*last), "{status:?} {env:?}");
        assert_eq!(&r.status, status_after, "{status:?} {env:?}");
    }
}

#[test]
fn finish_records_how_the_link_ended() {
    // (step's rc, the harness's recorded exit code, own job state, status,
    // last chain line, the code the job exits with)
    let cases = [
        ("0", Some("0"), "RUNNING", "completed 77 \n", Some("77 end 900 completed"), "0"),
        ("2", Some("2"), "RUNNING", "failed 77 exit 2\n", Some("77 end 900 failed 2"), "2"),
        ("0", Some("0"), "", "completed 77 \n", Some("77 end 900 completed"), "0"),
        ("1", Some("1"), "", "failed 77 exit 1\n", Some("77 end 900 failed 1"), "1"),
        // The harness's record wins over the step's code.
        ("1", Some("0"), "RUNNING", "completed 77 \n", Some("77 end 900 completed"), "0"),
        ("0", Some("3"), "RUNNING", "failed 77 exit 3\n", Some("77 end 900 failed 3"), "3"),
        // The step failed before the harness ended (pre_cmd, container).
        ("4", None, "RUNNING", "failed 77 exit 4\n", Some("77 end 900 failed 4"), "4"),
        // The harness stopped on SIGTERM (it exits 0 then): cut short.
        ("0", Some("interrupted"), "RUNNING", "interrupted 77 harness-interrupted exit 0\n", None, "75"),
        // A record that is not a number is no record.
        ("0", Some("x1"), "RUNNING", "interrupted 77 no-exit-record exit 0\n", None, "75"),
        // Slurm is ending the job, or the step ended without the harness's
        // record (lost with its node: srun may say 0), or a signal killed
        // the client when Slurm cannot tell: cut short, no end record (the
        // next link resumes).
        ("0", Some("0"), "TIMEOUT", "interrupted 77 TIMEOUT exit 0\n", None, "0"),
        ("1", None, "COMPLETING", "interrupted 77 COMPLETING exit 1\n", None, "1"),
        ("0", None, "RUNNING", "interrupted 77 no-exit-record exit 0\n", None, "75"),
        ("143", None, "", "interrupted 77 no-exit-record exit 143\n", None, "143"),
        ("143", None, "RUNNING", "failed 77 exit 143\n", Some("77 end 900 failed 143"), "143"),
    ];
    for (rc, record, own, status, last, exit) in cases {
        let j = Job::new();
        if let Some(code) = record {
            j.write(".evalctl-exit-77", &format!("{code}\n"));
        }
        let r =
            j.run(&format!("evalctl_finish {rc}; echo \"exit=$EVALCTL_RC\""), &[("STUB_JOB_STATE", own)], Some(900));
        let case = format!("rc {rc}, record {record:?}, state {own:?}");
        assert_eq!(r.rc, 0, "{}", r.out);
        assert_eq!(r.status, status, "{case}");
        assert_eq!(r.chain.lines().last(), last, "{case}");
        assert!(r.out.contains(&format!("exit={exit}\n")), "{case}: {}", r.out);
    }
}

#[test]
fn the_next_link_is_queued_after_this_one_fails() {
    let j = Job::new();
    let name = [("EVALCTL_JOB_NAME", "evalctl:st/t/resume"), ("EVALCTL_COMMENT", "")];
    let r = j.run("evalctl_submit_next", &name, Some(42));
    assert_eq!(r.chain, "77 submit 42 4242\n");
    let args = j.read("sbatch.args");
    assert_eq!(
        args,
        format!(
            "--parsable --job-name=evalctl:st/t/resume --dependency=afternotok:77 --kill-on-invalid-dep=yes {}/resume.sbatch\n",
            j.dir().display()
        ),
        "no comment: no --comment"
    );
    let j = Job::new();
    let r = j.run("evalctl_submit_next", &[name[0], ("EVALCTL_COMMENT", "{\"a\": \"b c\"} $x")], Some(42));
    assert_eq!(r.rc, 0, "{}", r.out);
    assert!(
        j.read("sbatch.args")
            .starts_with("--parsable --job-name=evalctl:st/t/resume --comment={\"a\": \"b c\"} $x --dep")
    );
    let j = Job::new();
    let r = j.run("evalctl_submit_next", &[name[0], name[1], ("STUB_SBATCH_FAILS", "1")], Some(42));
    assert_eq!((r.rc, r.chain.as_str()), (0, ""));
    assert!(r.out.contains("could not queue the next link"), "{}", r.out);
}

#[test]
fn a_signal_marks_a_running_link_interrupted_once() {
    for (before, after) in [
        ("running 77 \n", "interrupted 77 USR1\n"),
        ("interrupted 77 USR1\n", "interrupted 77 USR1\n"),
        ("completed 77 \n", "completed 77 \n"),
        ("failed 77 exit 1\n", "failed 77 exit 1\n"),
        ("stopped 77 x\n", "stopped 77 x\n"),
    ] {
        let j = Job::new();
        j.write("status", before);
        let r = j.run("evalctl_on_signal USR1", &[], None);
        assert_eq!(r.status, after, "{before:?}");
        assert!(r.out.contains("received SIGUSR1"), "{}", r.out);
    }
}

#[test]
fn run_config_substitution_is_literal() {
    let j = Job::new();
    let code = r#"EVALCTL_RUN_CONFIG='{"url":"@@U@@","judge":"aux.j.url","x":"$&*\\"}'
evalctl_subst '@@U@@' 'http://h:1/v1/chat/completions'
evalctl_subst_url aux.j.url 'http://j:2' '/v1/x&y'
printf '%s' "$EVALCTL_RUN_CONFIG""#;
    let r = j.run(code, &[], None);
    assert_eq!(r.out, r#"{"url":"http://h:1/v1/chat/completions","judge":"http://j:2/v1/x&y","x":"$&*\\"}"#);
}

#[test]
fn run_config_substitution_writes_json_strings() {
    // Only the whole JSON string is replaced, and the value is encoded:
    // quotes, backslashes and control characters cannot end the string.
    let j = Job::new();
    let code = r#"EVALCTL_RUN_CONFIG='{"url":"@@U@@","keep":"x@@U@@","judge":"aux.j.url"}'
evalctl_subst '@@U@@' $'http://h/"},"x":{"y":"\\\n\t\x01'
evalctl_subst_url aux.j.url 'http://j:2' '/v1/"'
printf '%s' "$EVALCTL_RUN_CONFIG""#;
    let r = j.run(code, &[], None);
    let v: serde_json::Value = serde_json::from_str(&r.out).unwrap_or_else(|e| panic!("{e}: {}", r.out));
    assert_eq!(v["url"], "http://h/\"},\"x\":{\"y\":\"\\\n\t\u{1}");
    assert_eq!(v["keep"], "x@@U@@");
    assert_eq!(v["judge"], "http://j:2/v1/\"");
}

#[test]
fn endpoints_and_serving() {
    let j = Job::new();
    std::fs::create_dir_all(j.root.join("server")).unwrap();
    std::fs::write(j.root.join("server/endpoint"), "http://n1:8000\n").unwrap();
    let r = j.run("evalctl_http_ok http://x/health && evalctl_endpoint_of server /health 10", &[], None);
    assert_eq!((r.rc, r.out.as_str()), (0, "http://n1:8000"));
    let r = j.run("evalctl_endpoint_of server /health 0", &[("STUB_HTTP", "503")], None);
    assert_eq!(r.rc, 1, "{}", r.out);
    assert!(r.out.contains("no healthy endpoint from server after 0 s"), "{}", r.out);
    // A deployment serves until every listed task's chain has ended.
    for (t, status) in [("a", "completed 1 \n"), ("b", "stopped 2 max_walltime\n")] {
        std::fs::create_dir_all(j.root.join(t)).unwrap();
        std::fs::write(j.root.join(t).join("status"), status).unwrap();
    }
    let r = j.run("EVALCTL_SERVER_PIDS=(); evalctl_serve_until_done a b", &[], None);
    assert_eq!(r.rc, 0, "{}", r.out);
    // ...or until its server exits.
    std::fs::write(j.root.join("b/status"), "running 2 \n").unwrap();
    let r = j.run("sh -c 'exit 0' & EVALCTL_SERVER_PIDS=($!); wait; evalctl_serve_until_done a b", &[], None);
    assert_eq!(r.rc, 1, "{}", r.out);
    assert!(r.out.contains("a model server exited"), "{}", r.out);
}

/// Runs `evalctl_servers_ready` for instances whose heads are `heads` (the
/// job's first node is `node1`, where the batch shell runs) against servers
/// answering at `listen` (`host:port` words); its output, the URLs
/// `evalctl_servers_ready` set, the load balancer's configuration and
/// `srun` arguments, and the URLs the health checks asked for.
fn servers_ready(heads: &[&str], listen: &str, args: &str) -> (Ran, String, Vec<String>) {
    let j = Job::new();
    let heads = heads.join(" ");
    let code = format!(
        "mkdir -p \"$EVALCTL_LOGS\"\nEVALCTL_NODES=(node1 node2 node3 node4)\nheads=({heads})\nEVALCTL_SERVER_PIDS=()\n\
         EVALCTL_SRV_COUNT[model]=${{#heads[@]}}\n\
         for i in \"${{!heads[@]}}\"; do EVALCTL_SRV_HEAD[model.$i]=${{heads[$i]}}; EVALCTL_SRV_PROC[model.$i]=$$; done\n\
         evalctl_servers_ready model {args} || exit 1\nwait\necho \"base=$EVALCTL_BASE_URL public=$EVALCTL_PUBLIC_URL\""
    );
    let r = j.run(&code, &[("STUB_LISTEN", listen)], None);
    let urls = j.read("curl.urls").lines().map(str::to_owned).collect();
    let cfg = j.read("haproxy-77.cfg") + &j.read("srun.args");
    (r, cfg, urls)
}

#[test]
fn a_server_on_this_node_is_reached_on_the_loopback_address() {
    // A server listening on 127.0.0.1 only (SGLang's default) is healthy at
    // once, and the client on this node uses the loopback address; other
    // jobs would use the node's.
    let (r, _, urls) = servers_ready(&["node1"], "127.0.0.1:8000", "8000 /health 30");
    assert_eq!(r.rc, 0, "{}", r.out);
    assert!(r.out.contains("base=http://127.0.0.1:8000 public=http://node1:8000"), "{}", r.out);
    assert_eq!(urls, ["http://127.0.0.1:8000/health"]);
    // One listening on all interfaces: the same.
    let (r, _, _) = servers_ready(&["node1"], "127.0.0.1:8000 node1:8000", "8000 /health 30");
    assert!(r.out.contains("base=http://127.0.0.1:8000 public=http://node1:8000"), "{}", r.out);
    // One listening on its node's address only is still reached there.
    let (r, _, urls) = servers_ready(&["node1"], "node1:8000", "8000 /health 30");
    assert_eq!(r.rc, 0, "{}", r.out);
    assert!(r.out.contains("base=http://node1:8000 public=http://node1:8000"), "{}", r.out);
    assert_eq!(urls, ["http://127.0.0.1:8000/health", "http://node1:8000/health"]);
    // Nothing answers: the wait ends at the timeout.
    let (r, _, _) = servers_ready(&["node1"], "elsewhere:1", "8000 /health 0");
    assert_eq!(r.rc, 1, "{}", r.out);
    assert!(r.out.contains("not healthy after 0 s"), "{}", r.out);
    // No health endpoint: after the wait, the loopback address unless only
    // the node's accepts connections.
    let (r, _, urls) = servers_ready(&["node1"], "", "8000 '' 1");
    assert_eq!(r.rc, 0, "{}", r.out);
    assert!(r.out.contains("base=http://127.0.0.1:8000 public=http://node1:8000"), "{}", r.out);
    assert!(urls.is_empty(), "{urls:?}");
}

#[test]
fn instances_on_other_nodes_are_reached_on_their_node_addresses() {
    // Three instances, the first on this node: its health check and its
    // load-balancer backend use the loopback address, the others their
    // nodes' names; the client reaches the balancer on the loopback address,
    // other jobs on this node's name.
    let listen = "127.0.0.1:8000 node3:8000 node4:8000 127.0.0.1:5009";
    let (r, cfg, urls) = servers_ready(&["node1", "node3", "node4"], listen, "8000 /health 30 5009 haproxy:lts");
    assert_eq!(r.rc, 0, "{}", r.out);
    assert_eq!(
        urls,
        [
            "http://127.0.0.1:8000/health",
            "http://node3:8000/health",
            "http://node4:8000/health",
            "http://127.0.0.1:5009/health"
        ]
    );
    assert!(r.out.contains("base=http://127.0.0.1:5009 public=http://node1:5009"), "{}", r.out);
    let servers: Vec<&str> = cfg.lines().filter(|l| l.trim_start().starts_with("server ")).map(str::trim).collect();
    assert_eq!(
        servers,
        [
            "server instance0 127.0.0.1:8000 check",
            "server instance1 node3:8000 check",
            "server instance2 node4:8000 check"
        ]
    );
    assert!(cfg.contains("bind *:5009"), "{cfg}");
    // As the launcher's: long requests are not cut, health means status 200.
    for line in ["timeout client 100000s", "timeout server 100000s", "option http-server-close"] {
        assert!(cfg.contains(line), "{line}: {cfg}");
    }
    assert!(cfg.contains("option httpchk GET /health\n  http-check expect status 200\n"), "{cfg}");
    assert!(cfg.contains("--nodelist=node1 --container-image=haproxy:lts"), "{cfg}");
    // An instance on another node listening on 127.0.0.1 only is never
    // reached there (node3's loopback is not this node's), and the log says why.
    let (r, _, urls) = servers_ready(&["node1", "node3"], "127.0.0.1:8000", "8000 /health 0 5009 haproxy:lts");
    assert_eq!(r.rc, 1, "{}", r.out);
    assert_eq!(urls, ["http://127.0.0.1:8000/health", "http://node3:8000/health"]);
    assert!(r.out.contains("instance 1 runs on another node (node3)"), "{}", r.out);
}

#[test]
fn a_shared_server_publishes_its_node_address_only_when_it_answers_there() {
    let publish = "EVALCTL_BASE_URL=http://127.0.0.1:8000 EVALCTL_PUBLIC_URL=http://node1:8000 \
                   evalctl_publish_endpoint /health";
    let j = Job::new();
    let r = j.run(publish, &[("STUB_LISTEN", "127.0.0.1:8000 node1:8000")], None);
    assert_eq!(r.rc, 0, "{}", r.out);
    assert_eq!(j.read("endpoint"), "http://node1:8000\n");
    assert!(r.out.contains("endpoint published: http://node1:8000"), "{}", r.out);
    // Listening on 127.0.0.1 only: other jobs could not reach it.
    let j = Job::new();
    let r = j.run(publish, &[("STUB_LISTEN", "127.0.0.1:8000")], None);
    assert_eq!(r.rc, 1, "{}", r.out);
    assert_eq!(j.read("endpoint"), "");
    assert!(r.out.contains("must listen on all interfaces"), "{}", r.out);
}

/// The runtime alone is shellcheck-clean down to style findings. It has no
/// shebang (scripts carry it after their own), hence `--shell=bash`; SC2016
/// is the server step's `$SLURM_PROCID`, single-quoted on purpose so it
/// expands in the step. (A directive inside lib.sh would change the bytes
/// of every rendered script.)
#[test]
fn shellcheck_finds_nothing_in_the_runtime() {
    let j = Job::new();
    let out = Command::new("shellcheck")
        .args(["--shell=bash", "--severity=style", "--exclude=SC2016"])
        .arg(j.root.join("lib.sh"))
        .output()
        .unwrap_or_else(|e| panic!("shellcheck is needed to run this test ({e})"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn a_shared_server_that_ends_stops_the_evaluation_and_fails_the_link() {
    // Running: the evaluation runs to its end.
    let j = Job::new();
    std::fs::create_dir_all(j.root.join("server")).unwrap();
    std::fs::write(j.root.join("server/status"), "running 12 \n").unwrap();
    let r = j.run("sleep 1 & evalctl_wait_watching $! server; echo \"rc=$?\"", &[], None);
    assert!(r.out.contains("rc=0"), "{}", r.out);
    assert!(!j.dir().join("server-gone.77").exists());
    // Its chain ended: the evaluation is stopped at once, the link fails
    // (no resume), naming the deployment.
    std::fs::write(j.root.join("server/status"), "failed 12 server-exited\n").unwrap();
    let started = std::time::Instant::now();
    let r = j.run(
        // The real sleep: the stand-in on PATH returns at once, and an
        // evaluation that has already ended is not watched.
        "/bin/sleep 60 & evalctl_wait_watching $! server; evalctl_finish $?; echo \"exit=$EVALCTL_RC\"",
        &[("STUB_JOB_STATE", "RUNNING")],
        Some(900),
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "stopped at once: {}", r.out);
    assert!(
        r.out.contains("deployment server has ended (failed 12 server-exited): stopping the evaluation"),
        "{}",
        r.out
    );
    assert_eq!(r.status, "failed 77 server-gone server\n");
    assert_eq!(r.chain.lines().last(), Some("77 end 900 server-gone"));
    assert!(!r.out.contains("exit=0"), "the job fails: {}", r.out);
}

/// `max_concurrent`: a link that queues the next one moves its lane
/// successor's wait to it, keeping the successor's own dependencies.
#[test]
fn the_lane_successor_waits_for_the_next_link() {
    let name = [("EVALCTL_JOB_NAME", "evalctl:st/t/resume"), ("EVALCTL_COMMENT", "")];
    let j = Job::new();
    j.write("lane-next", "555 after:9\n");
    let r = j.run("evalctl_submit_next", &name, Some(42));
    assert_eq!(r.rc, 0, "{}", r.out);
    assert_eq!(j.read("scontrol.args"), "update JobId=555 Dependency=after:9,afterany:4242\n");
    assert!(r.out.contains("lane: job 555 now waits for job 4242"), "{}", r.out);
    let j = Job::new();
    j.write("lane-next", "555 \n");
    j.run("evalctl_submit_next", &name, Some(42));
    assert_eq!(j.read("scontrol.args"), "update JobId=555 Dependency=afterany:4242\n");
    let j = Job::new();
    j.run("evalctl_submit_next", &name, Some(42));
    assert_eq!(j.read("scontrol.args"), "", "no lane: no update");
}

/// A pack's tasks: each runs in its own folder unless it already ended;
/// a task cut short ends the link; the pack's status says how it ended.
#[test]
fn a_pack_runs_its_unfinished_tasks_in_their_folders() {
    let j = Job::new();
    let task = |t: &str| j.root.join(t);
    for (t, status) in [("t0", Some("completed 5")), ("t1", None), ("t2", Some("interrupted 5 TIMEOUT"))] {
        std::fs::create_dir_all(task(t)).unwrap();
        if let Some(s) = status {
            std::fs::write(task(t).join("status"), format!("{s}\n")).unwrap();
        }
    }
    let pack = |outcome: &str| {
        format!(
            "EVALCTL_PACK_DIR=$EVALCTL_DIR\nEVALCTL_PACK_FAILED=0\n\
             for t in t0 t1 t2; do\n  if evalctl_pack_task $t \"$EVALCTL_STACK_DIR/$t\"; then\n    \
             echo \"ran $t in $EVALCTL_DIR, artifacts $EVALCTL_ARTIFACTS\"\n    evalctl_status {outcome}\n    \
             evalctl_pack_task_end || {{ echo \"cut in $EVALCTL_DIR\"; exit 9; }}\n  fi\ndone\n\
             evalctl_pack_end\necho \"rc=$EVALCTL_RC\"\n"
        )
    };
    let r = j.run(&pack("completed"), &[], Some(50));
    assert_eq!(r.rc, 0, "{}", r.out);
    assert!(r.out.contains("task t0 already ended (completed): skipped"), "{}", r.out);
    assert!(!r.out.contains("ran t0"), "{}", r.out);
    for t in ["t1", "t2"] {
        let dir = task(t).display().to_string();
        assert!(r.out.contains(&format!("ran {t} in {dir}, artifacts {dir}/artifacts")), "{}", r.out);
        assert_eq!(std::fs::read_to_string(task(t).join("status")).unwrap(), "completed 77 \n");
        assert_eq!(std::fs::read_to_string(task(t).join("chain")).unwrap(), "77 start 50 task\n");
        assert!(task(t).join("logs").is_dir() && task(t).join("artifacts").is_dir());
    }
    assert!(r.out.contains("rc=0"), "{}", r.out);
    assert_eq!(r.status, "completed 77 \n", "the pack's own status");
    assert_eq!(r.chain, "77 end 50 completed\n");

    // A failed task: the others still run, the pack ends failed.
    std::fs::remove_file(task("t1").join("status")).unwrap();
    std::fs::remove_file(task("t2").join("status")).unwrap();
    let r = j.run(&pack("failed 'exit 1'"), &[], Some(60));
    assert!(r.out.contains("ran t1") && r.out.contains("ran t2") && r.out.contains("rc=1"), "{}", r.out);
    assert_eq!(r.status, "failed 77 tasks-failed\n");

    // A task cut short ends the link in the pack's folder, marked interrupted.
    std::fs::remove_file(task("t1").join("status")).unwrap();
    let r = j.run(&pack("interrupted TIMEOUT"), &[], Some(70));
    assert_eq!(r.rc, 9, "{}", r.out);
    assert!(r.out.contains(&format!("cut in {}", j.dir().display())), "{}", r.out);
    assert!(r.out.contains("task t2 already ended (failed): skipped") || !r.out.contains("ran t2"), "{}", r.out);
    assert_eq!(r.status, "interrupted 77 task-cut-short\n");
}
