//! A [`JobSpec`] spelled as a bash script. Every decision was made by
//! `lower`; this module only writes text, and writes values only through
//! `shell!` (shell words, checked names, integers, or typed fragments below),
//! so no value can reach a script unquoted.

use std::fmt;

use serde_json::Value as J;

use super::RUNTIME_ELIDED;
use super::run_config::url_placeholder;
use super::sbatch::SbatchHeader;
use super::spec::{
    AuxEndpoint, AuxPlacement, ClientSpec, Container, Endpoint, EnvGroup, EvalSpec, JobSpec, PackSpec, PublicValue,
    Role, ServerSpec, Work,
};
use crate::config::urls::UrlPath;
use crate::shell::{Code, CommentText, Shell, ShellWord, Word, Words};
use crate::{shell, shell_push};

/// The line after which every script carries the runtime.
pub const RUNTIME_MARK: &str = "\nset -uo pipefail\n\n";

/// Everything before the job's work: header, runtime, the job's variables,
/// its groups' variable functions and, for a task link, its chain step.
/// Both links of a task differ only here. Written as the script's elided
/// text (the header up to [`RUNTIME_MARK`], [`RUNTIME_ELIDED`], what follows
/// the runtime), in one buffer, with where [`RUNTIME_ELIDED`] starts.
pub fn head(job: &JobSpec) -> (String, usize) {
    let mut s = header(job);
    s.push_str(RUNTIME_MARK);
    let at = s.len();
    s.push_str(RUNTIME_ELIDED);
    preamble(job, &mut s);
    for g in &job.env {
        public_env_fn(g, &mut s);
    }
    match job.role {
        Role::First => s.push_str(
            "\n# ---- auto-resume chain ----\nevalctl_chain start first\nevalctl_status running\nevalctl_array_element_next\n",
        ),
        Role::Resume => s.push_str(
            "\n# ---- auto-resume chain ----\nevalctl_resume_gate || exit 0\nevalctl_chain start resume\nevalctl_status running\nevalctl_submit_next\n",
        ),
        Role::Server => s.push_str("\n# ---- auto-resume chain ----\nevalctl_chain start server\nevalctl_status running\n"),
    }
    (s, at)
}

/// The job's work: serving a model, or one evaluation.
pub fn work(work: &Work) -> String {
    match work {
        Work::Serve { server, tasks } => serve(server, tasks),
        Work::Evaluate(eval) => evaluate(eval),
        Work::Pack(pack) => pack_work(pack),
    }
}

/// `#!`, the job's description and its `#SBATCH` lines.
fn header(job: &JobSpec) -> String {
    let (r, b) = (&job.resources, &job.sbatch);
    // Functions of the shared runtime a given job does not call are expected.
    // The job's own text is about 2 KB: one allocation for all of it.
    let mut s = String::with_capacity(2048);
    shell_push!(
        s,
        "#!/bin/bash\n# shellcheck disable=SC2317\n# evalctl job `{}` of stack `{}`: rendered by evalctl, submitted by `evalctl apply`.\n",
        CommentText(&job.id),
        CommentText(&job.context.stack)
    );
    let mut h = SbatchHeader::after(s);
    h.push("job-name", &b.job_name)
        .push_some("account", b.account.as_ref())
        .push_some("partition", b.partition.as_ref())
        .push_some("qos", b.qos.as_ref())
        .push("time", &r.walltime)
        .push("nodes", r.nodes)
        .push("ntasks-per-node", r.ntasks_per_node)
        .push_some("gres", r.gres.as_ref())
        .push_some("gpus-per-node", r.gpus_per_node);
    for (flag, value) in &b.extra {
        match value {
            Some(v) => h.push(flag.clone(), v),
            None => h.switch(flag.clone()),
        };
    }
    h.push("output", &b.output).switch("open-mode=append").switch("no-requeue");
    if b.kill_on_invalid_dep {
        h.switch("kill-on-invalid-dep=yes");
    }
    h.push("signal", super::sbatch::SbatchValue::new(&format!("B:USR1@{}", b.signal_lead)).unwrap_or_default());
    h.finish()
}

/// The variables and traps every script sets after the runtime, before its body.
fn preamble(job: &JobSpec, s: &mut String) {
    let c = &job.context;
    let dir = Word(&job.dir);
    shell_push!(
        s,
        "\n# ---- this job ----\nexport EVALCTL_STACK={}\nexport EVALCTL_NODE={}\nexport EVALCTL_ROLE={}\nexport EVALCTL_STACK_DIR={}\nexport EVALCTL_DIR={}\nexport EVALCTL_ARTIFACTS={}/artifacts\nexport EVALCTL_LOGS={}/logs\n",
        Word(&c.stack),
        Word(&c.node),
        Word(job.role.as_str()),
        Word(&c.stack_dir),
        dir,
        dir,
        dir
    );
    // The name and comment the resume links this job queues are given
    // (evalctl_submit_next): on sbatch's command line, which carries any value.
    shell_push!(
        s,
        "EVALCTL_JOB_NAME={}\nEVALCTL_COMMENT={}\n",
        Word(&job.next_name),
        Word(job.comment.as_deref().unwrap_or_default())
    );
    shell_push!(
        s,
        "export EVALCTL_WALLTIME_S={}\nexport EVALCTL_MAX_WALLTIME_S={}\nexport EVALCTL_MAX_LINKS={}\n",
        c.walltime_s,
        c.max_walltime_s,
        c.max_links
    );
    s.push_str("mkdir -p \"$EVALCTL_ARTIFACTS\" \"$EVALCTL_LOGS\"\n");
    s.push_str("mapfile -t EVALCTL_NODES < <(scontrol show hostnames \"${SLURM_JOB_NODELIST:-$(hostname)}\")\n");
    s.push_str("trap 'evalctl_on_signal USR1' USR1\n");
    s.push_str("trap 'evalctl_on_signal TERM; evalctl_stop \"${EVALCTL_SERVER_PIDS[@]}\" ${EVALCTL_CLIENT_PID:-}; exit 143' TERM\n");
    s.push_str("EVALCTL_SERVER_PIDS=()\n");
}

/// A shell function exporting a group's visible variables (literals and
/// compute-node variables); `evalctl_env` calls it after the secrets file.
fn public_env_fn(group: &EnvGroup, s: &mut String) {
    shell_push!(s, "evalctl_public_env_{}() {{\n", group.name);
    for (name, value) in &group.public {
        match value {
            PublicValue::Literal(v) => shell_push!(s, "  export {}={}\n", name, Word(v)),
            PublicValue::Runtime(var) => shell_push!(s, "  export {}=\"${{{}-}}\"\n", name, var),
        }
    }
    if group.public.is_empty() {
        s.push_str("  :\n");
    }
    s.push_str("}\n");
}

/// The container options of an `srun` step.
struct ContainerArgs<'a>(&'a Container);

impl Shell for ContainerArgs<'_> {
    fn write_shell(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        f.write_str("--container-image=")?;
        crate::shell::write_quoted(f, &c.image)?;
        if !c.mounts.is_empty() {
            let items: Vec<String> = c
                .mounts
                .iter()
                .map(|m| match &m.flags {
                    Some(fl) => format!("{}:{}:{fl}", m.source, m.target),
                    None => format!("{}:{}", m.source, m.target),
                })
                .collect();
            write!(f, " {}", ShellWord::new(format!("--container-mounts={}", items.join(","))))?;
        }
        f.write_str(if c.mount_home { " --container-mount-home" } else { " --no-container-mount-home" })?;
        if !c.env.is_empty() {
            write!(f, " {}", ShellWord::new(format!("--container-env={}", c.env.join(","))))?;
        }
        Ok(())
    }
}

/// Starts a model server's instances in the background.
fn start_server(sv: &ServerSpec) -> String {
    let mut s = String::from("EVALCTL_SRV_ARGS=(");
    if let Some(m) = &sv.mpi {
        shell_push!(s, "{} ", ShellWord::new(format!("--mpi={m}")));
    }
    shell_push!(
        s,
        "{})\nEVALCTL_SRV_CMD={}\nevalctl_start_servers {} {} {} {} {} {}",
        ContainerArgs(&sv.container),
        Word(&sv.cmd),
        Word(&sv.key),
        Word(sv.group.as_str()),
        sv.first_node,
        sv.instances,
        sv.nodes_per_instance,
        sv.tasks_per_instance
    );
    if let Some(p) = &sv.prefix {
        shell_push!(s, " {}", p);
    }
    s.push('\n');
    s
}

/// Waits until a started server is ready; leaves `EVALCTL_BASE_URL` (the
/// endpoint seen from the job's first node: loopback there) and
/// `EVALCTL_PUBLIC_URL` (a node address) set, or ends the job.
fn server_ready(sv: &ServerSpec) -> String {
    let mut s = shell!(
        "if ! evalctl_servers_ready {} {} {} {} {} {}; then\n",
        Word(&sv.key),
        sv.port,
        Word(sv.health.as_ref().map_or("", UrlPath::as_str)),
        sv.wait,
        sv.proxy_port,
        Word(&sv.proxy_image)
    );
    s.push_str("  evalctl_stop \"${EVALCTL_SERVER_PIDS[@]}\"\n  evalctl_status failed server-not-ready\n  evalctl_chain end server-not-ready\n  exit 1\nfi\n");
    s
}

/// A deployment job's work: serve until every task of the stack is done.
fn serve(server: &ServerSpec, tasks: &[String]) -> String {
    let mut s = String::from("\n# ---- serve the model for the stack's tasks ----\n");
    s.push_str("rm -f \"$EVALCTL_DIR/endpoint\"\n");
    s.push_str(&start_server(server));
    s.push_str(&server_ready(server));
    // Other jobs reach the server on its node's address, never the loopback one.
    shell_push!(
        s,
        "if ! evalctl_publish_endpoint {}; then\n  evalctl_stop \"${{EVALCTL_SERVER_PIDS[@]}}\"\n  evalctl_status failed endpoint-unreachable\n  evalctl_chain end endpoint-unreachable\n  exit 1\nfi\n",
        Word(server.health.as_ref().map_or("", UrlPath::as_str))
    );
    shell_push!(s, "evalctl_serve_until_done {}\nrc=$?\n", tasks.iter().collect::<Words>());
    s.push_str("rm -f \"$EVALCTL_DIR/endpoint\"\nevalctl_stop \"${EVALCTL_SERVER_PIDS[@]}\"\n");
    s.push_str("if [ \"$rc\" -eq 0 ]; then evalctl_status completed; evalctl_chain end completed; else evalctl_status failed server-exited; evalctl_chain end server-exited; fi\nexit \"$rc\"\n");
    s
}

/// Waits for another job's published endpoint into `var`, or ends the link.
fn endpoint_of(var: impl Shell, node: &str, health: Option<&UrlPath>, wait: u64) -> String {
    shell!(
        "if ! {}=$(evalctl_endpoint_of {} {} {}); then\n  evalctl_status failed no-endpoint\n  evalctl_chain end no-endpoint\n  exit 1\nfi\n",
        var,
        Word(node),
        Word(health.map_or("", UrlPath::as_str)),
        wait
    )
}

/// The run config, one line of compact JSON, as a quoted here-document's
/// body: compact JSON has no raw newline, so it cannot end the document.
struct JsonLine<'a>(&'a J);

impl Shell for JsonLine<'_> {
    fn write_shell(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&serde_json::to_string(self.0).unwrap_or_default())
    }
}

/// The auxiliary deployments that run inside a task's job, with their servers.
fn own_aux(eval: &EvalSpec) -> impl Iterator<Item = (&str, &ServerSpec)> {
    eval.auxiliary.iter().filter_map(|a| match &a.placement {
        AuxPlacement::Own(sv) => Some((a.name.as_str(), sv.as_ref())),
        AuxPlacement::Shared { .. } => None,
    })
}

/// Starts the auxiliary deployments that run inside the job.
fn start_own_aux(eval: &EvalSpec, s: &mut String) {
    for (name, sv) in own_aux(eval) {
        shell_push!(s, "\n# ---- auxiliary deployment `{}` ----\n", CommentText(name));
        s.push_str(&start_server(sv));
    }
}

/// A task link's work: start its servers (the model's and the auxiliary
/// deployments' that run in the job, all at once), reach the endpoints,
/// write the run config, run the harness and record how it ended.
fn evaluate(eval: &EvalSpec) -> String {
    let mut s = String::new();
    if let Endpoint::Own { server, .. } = &eval.endpoint {
        s.push_str("\n# ---- model server ----\n");
        s.push_str(&start_server(server));
    }
    start_own_aux(eval, &mut s);
    match &eval.endpoint {
        Endpoint::Own { server, path } => {
            s.push_str("\n# ---- the model server is ready ----\n");
            s.push_str(&server_ready(server));
            shell_push!(s, "EVALCTL_URL=\"$EVALCTL_BASE_URL\"{}\n", Word(path.as_str()));
        }
        Endpoint::Shared { node, health, wait, path } => {
            s.push_str("\n# ---- the stack's shared model server ----\n");
            s.push_str(&endpoint_of(Code("EVALCTL_BASE_URL"), node, health.as_ref(), *wait));
            shell_push!(s, "EVALCTL_URL=\"$EVALCTL_BASE_URL\"{}\n", Word(path.as_str()));
        }
        Endpoint::External { url } => {
            shell_push!(s, "\n# ---- endpoint under evaluation ----\nEVALCTL_URL={}\n", Word(url));
        }
    }
    for (i, aux) in eval.auxiliary.iter().enumerate() {
        s.push_str(&aux_ready(i, aux));
    }
    run_harness(eval, &mut s);
    if matches!(eval.endpoint, Endpoint::Own { .. }) || own_aux(eval).next().is_some() {
        s.push_str("evalctl_stop \"${EVALCTL_SERVER_PIDS[@]}\"\n");
    }
    s.push_str("evalctl_finish \"$rc\"\nexit \"$EVALCTL_RC\"\n");
    s
}

/// Writes the run config (the endpoints filled in), runs the harness and
/// waits for it (watching the shared deployments it uses), leaving its
/// exit code in `rc`.
fn run_harness(eval: &EvalSpec, s: &mut String) {
    let client = &eval.client;
    shell_push!(
        s,
        "\n# ---- evaluation ----\nEVALCTL_RUN_CONFIG=$(cat <<'EVALCTL_RUN_CONFIG_END'\n{}\nEVALCTL_RUN_CONFIG_END\n)\nevalctl_subst {} \"$EVALCTL_URL\"\n",
        JsonLine(&client.run_config),
        Word(url_placeholder(&client.run_config))
    );
    for (i, aux) in eval.auxiliary.iter().enumerate() {
        s.push_str(&aux_subst(i, aux));
    }
    s.push_str("printf '%s\\n' \"$EVALCTL_RUN_CONFIG\" >\"$EVALCTL_ARTIFACTS/run_config.yml\"\n");
    s.push_str(&client_step(client, &eval.auxiliary));
    s.push_str(
        "EVALCTL_CLIENT_PID=$!\nevalctl_log \"evaluation running (log: $EVALCTL_LOGS/client-$EVALCTL_JOB.log)\"\n",
    );
    // Shared deployments it uses are watched: when one is gone, so is the task.
    let mut watched: Vec<&str> = vec![];
    if let Endpoint::Shared { node, .. } = &eval.endpoint {
        watched.push(node);
    }
    for aux in &eval.auxiliary {
        if let AuxPlacement::Shared { node, .. } = &aux.placement {
            watched.push(node);
        }
    }
    if watched.is_empty() {
        s.push_str("evalctl_wait \"$EVALCTL_CLIENT_PID\"\nrc=$?\nEVALCTL_CLIENT_PID=\n");
    } else {
        shell_push!(
            s,
            "evalctl_wait_watching \"$EVALCTL_CLIENT_PID\" {}\nrc=$?\nEVALCTL_CLIENT_PID=\n",
            watched.iter().copied().collect::<Words>()
        );
    }
}

/// A pack link's work: start the servers once, then run each task that has
/// not ended yet in its own folder (`evalctl_pack_task`); a task cut short
/// ends the link, so the resume link continues with it (from the harness's
/// cache in its artifacts); a task that failed does not stop the others.
fn pack_work(pack: &PackSpec) -> String {
    let mut s = String::from(
        "\n# ---- the pack's tasks run in turn, each in its own folder ----\nEVALCTL_PACK_DIR=$EVALCTL_DIR\nEVALCTL_PACK_FAILED=0\n",
    );
    let Some(first) = pack.members.first() else {
        s.push_str("evalctl_pack_end\nexit \"$EVALCTL_RC\"\n");
        return s;
    };
    if let Some(server) = &pack.model {
        s.push_str("\n# ---- model server, started once for every task of the pack ----\n");
        s.push_str(&start_server(server));
    }
    start_own_aux(&first.eval, &mut s);
    if let Some(server) = &pack.model {
        s.push_str("\n# ---- the model server is ready ----\n");
        s.push_str(&server_ready(server));
        s.push_str("EVALCTL_MODEL_URL=$EVALCTL_BASE_URL\n");
    }
    for (i, aux) in first.eval.auxiliary.iter().enumerate() {
        s.push_str(&aux_ready(i, aux));
    }
    let servers = pack.model.is_some() || own_aux(&first.eval).next().is_some();
    let stop = if servers { "evalctl_stop \"${EVALCTL_SERVER_PIDS[@]}\"; " } else { "" };
    for m in &pack.members {
        shell_push!(
            s,
            "\n# ==== task `{}` ====\nif evalctl_pack_task {} {}; then\n",
            CommentText(&m.id),
            Word(&m.id),
            Word(&m.dir)
        );
        match &m.eval.endpoint {
            Endpoint::Own { path, .. } => shell_push!(s, "EVALCTL_URL=\"$EVALCTL_MODEL_URL\"{}\n", Word(path.as_str())),
            Endpoint::External { url } => shell_push!(s, "EVALCTL_URL={}\n", Word(url)),
            Endpoint::Shared { node, health, wait, path } => {
                s.push_str(&endpoint_of(Code("EVALCTL_BASE_URL"), node, health.as_ref(), *wait));
                shell_push!(s, "EVALCTL_URL=\"$EVALCTL_BASE_URL\"{}\n", Word(path.as_str()));
            }
        }
        run_harness(&m.eval, &mut s);
        shell_push!(
            s,
            "evalctl_finish \"$rc\"\nevalctl_pack_task_end || {{ {}exit \"$EVALCTL_RC\"; }}\nfi\n",
            Code(stop)
        );
    }
    s.push_str("\n# ==== every task ran ====\n");
    if servers {
        s.push_str("evalctl_stop \"${EVALCTL_SERVER_PIDS[@]}\"\n");
    }
    s.push_str("evalctl_pack_end\nexit \"$EVALCTL_RC\"\n");
    s
}

/// The variable holding the base URL of a task's `i`th auxiliary deployment.
struct AuxVar(usize);

impl Shell for AuxVar {
    fn write_shell(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EVALCTL_AUX_URL_{}", self.0)
    }
}

/// Waits until an auxiliary deployment is ready and keeps its base URL.
fn aux_ready(i: usize, aux: &AuxEndpoint) -> String {
    let var = AuxVar(i);
    match &aux.placement {
        AuxPlacement::Own(sv) => {
            let mut s = shell!("\n# ---- auxiliary deployment `{}` is ready ----\n", CommentText(&aux.name));
            s.push_str(&server_ready(sv));
            shell_push!(s, "{}=$EVALCTL_BASE_URL\n", var);
            s
        }
        AuxPlacement::Shared { node, health, wait } => {
            let mut s = shell!("\n# ---- the stack's auxiliary deployment `{}` ----\n", CommentText(&aux.name));
            s.push_str(&endpoint_of(var, node, health.as_ref(), *wait));
            s
        }
    }
}

/// Fills an auxiliary deployment's URLs into the run config.
fn aux_subst(i: usize, aux: &AuxEndpoint) -> String {
    let mut s = String::new();
    for (suffix, path) in [("chat_url", aux.chat.as_str()), ("completions_url", aux.completions.as_str()), ("url", "")]
    {
        shell_push!(
            s,
            "evalctl_subst_url {} \"${}\" {}\n",
            ShellWord::new(format!("auxiliary_deployments.{}.{suffix}", aux.name)),
            AuxVar(i),
            Word(path)
        );
    }
    s
}

/// The harness step, in the background with its own log. It records the
/// harness's exit code in `/results/.evalctl-exit-<job>` (`interrupted`
/// when the harness stopped on SIGTERM: it then exits 0 and leaves its
/// `.nemo_evaluator_interrupted` marker), which decides how the link ended.
/// As in the launcher: a failing `pre_cmd` stops the task before the harness runs,
/// `post_cmd` runs whatever the harness's outcome and the step exits with
/// the harness's status, and images without `nemo-evaluator` get
/// `eval-factory`.
fn client_step(client: &ClientSpec, auxiliary: &[AuxEndpoint]) -> String {
    let mut cmd = String::new();
    for p in &client.pre {
        cmd.push_str(&format!("{{\n{p}\n}} || exit $?\n"));
    }
    cmd.push_str(
        "if command -v nemo-evaluator >/dev/null 2>&1; then harness=nemo-evaluator; else harness=eval-factory; fi\n\
         \"$harness\" run_eval --run_config /results/run_config.yml\nrc=$?\n\
         if [ \"$rc\" -eq 0 ] && [ -e /results/.nemo_evaluator_interrupted ]; then echo interrupted; else echo \"$rc\"; fi >\"/results/.evalctl-exit-${SLURM_JOB_ID:-0}\"\n",
    );
    for p in &client.post {
        cmd.push_str(&format!("{{\n{p}\n}}\n"));
    }
    cmd.push_str("exit $rc");
    // Where the auxiliary deployments are, as the launcher tells the
    // harness (after the group's variables: these win).
    let mut aux_env = String::new();
    for (i, aux) in auxiliary.iter().enumerate() {
        for (var, path) in &aux.url_vars {
            shell_push!(aux_env, "  export {}=\"${}\"{}\n", var, AuxVar(i), Word(path.as_str()));
        }
        if let Some((var, model)) = &aux.model_id {
            shell_push!(aux_env, "  export {}={}\n", var, Word(model));
        }
    }
    // The harness runs on the job's first node, as the batch shell does
    // (loopback reaches a server there).
    let mut s = shell!("(\n  evalctl_env {}\n", client.group);
    s.push_str(&aux_env);
    shell_push!(
        s,
        "  exec srun --overlap --nodes=1 --ntasks=1 --nodelist=\"${{EVALCTL_NODES[0]}}\" {} bash -c {}\n) >\"$EVALCTL_LOGS/client-$EVALCTL_JOB.log\" 2>&1 &\n",
        ContainerArgs(&client.container),
        ShellWord::new(cmd)
    );
    s
}
