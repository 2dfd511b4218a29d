//! Renders one sbatch script per job of the graph.
//!
//! Scripts are byte-identical for the same config: no timestamps, random ids
//! or hash-map order, so a diff between two renders shows only real change.
//! Every user value reaches the shell through [`shell`]'s quoting for the
//! context it lands in. Secret values never appear: a script loads them from
//! a per-group secrets file (`<node dir>/secrets/<group>.env`, mode 0600)
//! that `apply` writes; `render` writes a template with placeholders instead.
//!
//! Remote layout: `<output_dir>/<stack>/<node>/` holds a task's `task.sbatch`
//! and `resume.sbatch` (both links share the directory, so the harness's
//! response cache in `artifacts/` carries over), `secrets/`, `logs/`,
//! `artifacts/`, `status` and `chain`; a deployment job's directory holds
//! `server.sbatch` and the `endpoint` file it publishes.

pub mod shell;
mod spec;

pub use spec::Role;

use indexmap::IndexMap;
use serde_json::{Value as J, json};
use sha2::{Digest, Sha256};

use crate::config::env::{EnvVar, Source};
use crate::config::model::{Config, Deployment, DeploymentType, Topology};
use crate::config::node::Seg;
use crate::config::{Loaded, ResolvedTask};
use crate::diag::Diagnostic;
use crate::graph::{Dep, JobGraph, NodeKind};
use shell::{mount_path, output_pattern, quote, sbatch_value};

/// The shared runtime every script carries.
pub const RUNTIME: &str = include_str!("lib.sh");

/// Start of the ownership tag in a job's comment.
pub const TAG_PREFIX: &str = "evalctl:";

/// The line after which every script carries the runtime.
const RUNTIME_MARK: &str = "\nset -uo pipefail\n\n";

/// Placeholder in a task's run config for the endpoint URL known only when the job runs.
const URL_PLACEHOLDER: &str = "@@EVALCTL_ENDPOINT_URL@@";

/// One rendered job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedJob {
    /// Node id in the graph.
    pub id: String,
    pub kind: NodeKind,
    /// Directory of the job on the cluster.
    pub dir: String,
    /// File name of the script inside `dir`.
    pub script_name: String,
    pub script: String,
    /// Secrets files the job reads, by container group: variable names and
    /// where their values come from (never the values).
    pub secrets: IndexMap<String, Vec<EnvVar>>,
    /// Jobs this one waits for.
    pub deps: Vec<(String, Dep)>,
    /// The unit the job belongs to: its task, or itself for a deployment.
    pub unit: String,
    pub role: Role,
    /// The job's `--comment` (user comment and ownership tag).
    pub comment: String,
    /// Hash of what determines the job's result (model, image, command,
    /// task, parameters, variable names), not how it is scheduled.
    pub result_hash: String,
    /// Hash of the whole script.
    pub script_hash: String,
}

/// Every job of a config, in submission order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub stack: String,
    pub stack_dir: String,
    pub jobs: Vec<RenderedJob>,
    /// Time limit of one link, in seconds (`execution.walltime`).
    pub walltime_s: u64,
}

impl RenderedJob {
    /// The secrets file template for one group: `export NAME=<placeholder>`
    /// lines naming where `apply` will read each value.
    pub fn secrets_template(&self, group: &str) -> String {
        let mut out = format!(
            "# secrets of group `{group}` of job `{}`; `evalctl apply` writes the values (mode 0600)\n",
            self.id
        );
        for v in self.secrets.get(group).into_iter().flatten() {
            out.push_str(&format!("export {}={}\n", v.name, quote(&placeholder(&v.source))));
        }
        out
    }
}

/// The text of a secrets file: one `export NAME='value'` line per variable,
/// each value quoted so the shell reads it back byte for byte. `apply`
/// writes it on the cluster with mode 0600; it never goes anywhere else.
pub fn secrets_file(values: &[(String, String)]) -> String {
    values.iter().map(|(name, value)| format!("export {name}={}\n", quote(value))).collect()
}

/// How a secret's value is shown where it must not be.
pub fn placeholder(s: &Source) -> String {
    match s {
        Source::Host { var, default: None } => format!("<secret from host:{var}>"),
        Source::Host { var, default: Some(_) } => format!("<secret from host:{var}, with default>"),
        Source::Template { .. } => "<secret from ${oc.env:...}>".into(),
        Source::Literal { .. } => "<secret value from the config>".into(),
        Source::Runtime { var } => format!("<runtime:{var}>"),
    }
}

/// Lowercase hex of bytes (digests in hashes, tags and file names).
pub fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

fn runtime_digest_bytes() -> &'static [u8] {
    static RUNTIME_DIGEST: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    RUNTIME_DIGEST.get_or_init(|| Sha256::digest(RUNTIME.as_bytes()).to_vec())
}

/// Digest of the job runtime this evalctl renders into every script.
pub fn runtime_digest() -> String {
    hex(runtime_digest_bytes())
}

/// Hash of a script. The shared runtime, the same in every script, is
/// hashed once and counted by its digest, so hashing stays cheap for
/// thousands of jobs while any change of the script changes the hash.
fn script_hash(script: &str) -> String {
    let digest = runtime_digest_bytes();
    let mut h = Sha256::new();
    // The runtime follows the header's `set` line (see `preamble`).
    let start = script.find(RUNTIME_MARK).map(|i| i + RUNTIME_MARK.len());
    match start.filter(|&i| script[i..].starts_with(RUNTIME)) {
        Some(i) => {
            h.update(&script.as_bytes()[..i]);
            h.update(digest);
            h.update(&script.as_bytes()[i + RUNTIME.len()..]);
        }
        None => h.update(script.as_bytes()),
    }
    hex(&h.finalize())
}

/// Renders every job of the graph.
pub fn render(loaded: &Loaded, graph: &JobGraph) -> Result<Rendered, Vec<Diagnostic>> {
    let cfg = &loaded.config;
    let stack_dir = format!("{}/{}", cfg.execution.output_dir.trim_end_matches('/'), loaded.stack);
    let r = Renderer { loaded, cfg, graph, stack_dir: stack_dir.clone(), errors: vec![] };
    r.run()
}

struct Renderer<'a> {
    loaded: &'a Loaded,
    cfg: &'a Config,
    graph: &'a JobGraph,
    stack_dir: String,
    errors: Vec<Diagnostic>,
}

/// A container group of a job: its name (secrets file) and variables.
struct Group<'v> {
    name: String,
    vars: &'v [EnvVar],
}

impl<'a> Renderer<'a> {
    fn run(mut self) -> Result<Rendered, Vec<Diagnostic>> {
        let order = match self.graph.topo_order() {
            Ok(o) => o,
            Err(e) => return Err(vec![Diagnostic::error(None, e)]),
        };
        let mut jobs = vec![];
        let mut resume_links: std::collections::HashMap<String, RenderedJob> = std::collections::HashMap::new();
        for node in order {
            let job = match &node.kind {
                NodeKind::Deployment { aux } => self.deployment_job(&node.id, aux.as_deref()),
                NodeKind::EvalTask { task } => self.task_jobs(&node.id, *task).map(|(first, resume)| {
                    resume_links.insert(resume.id.clone(), resume);
                    first
                }),
                NodeKind::Resume { .. } => resume_links.remove(&node.id),
            };
            if let Some(mut job) = job {
                job.deps = self.graph.dependencies(&node.id).into_iter().map(|(n, d)| (n.id.clone(), d)).collect();
                jobs.push(job);
            }
        }
        if !self.errors.is_empty() {
            return Err(self.errors);
        }
        let walltime_s = self.walltime_s();
        Ok(Rendered { stack: self.loaded.stack.clone(), stack_dir: self.stack_dir, jobs, walltime_s })
    }

    fn err(&mut self, path: &[Seg], msg: String) {
        self.errors.push(Diagnostic::error(self.loaded.tree.value_span_of(path), msg));
    }

    /// An `#SBATCH` value, or an error at `path`.
    fn sb(&mut self, value: &str, path: &[Seg]) -> String {
        match sbatch_value(value) {
            Ok(v) => v,
            Err(e) => {
                self.err(path, format!("`{}`: {e}", crate::config::node::path_string(path)));
                String::new()
            }
        }
    }

    fn node_dir(&self, id: &str) -> String {
        format!("{}/{}", self.stack_dir, id)
    }

    /// The `#SBATCH` header shared by every job.
    /// `client_only`: a job that only runs the harness against a server of
    /// another job (shared topology) asks for no GPUs and no exclusive node.
    fn header(
        &mut self,
        id: &str,
        dir: &str,
        nodes: u32,
        walltime_text: &str,
        role: &str,
        client_only: bool,
    ) -> String {
        let resume = role == "resume";
        let e = &self.cfg.execution;
        let k = |s: &str| -> Vec<Seg> { vec![Seg::Key("execution".into()), Seg::Key(s.into())] };
        // Functions of the shared runtime a given job does not call are expected.
        let mut h = vec!["#!/bin/bash".to_owned(), "# shellcheck disable=SC2317".to_owned()];
        h.push(format!(
            "# evalctl job `{id}` of stack `{}`: rendered by evalctl, submitted by `evalctl apply`.",
            self.loaded.stack
        ));
        let name = format!("{}.{}", self.loaded.stack, id);
        h.push(format!("#SBATCH --job-name={}", self.sb(&name, &[Seg::Key("name".into())])));
        if let Some(a) = &e.account {
            h.push(format!("#SBATCH --account={}", self.sb(a, &k("account"))));
        }
        if let Some(p) = &e.partition {
            h.push(format!("#SBATCH --partition={}", self.sb(p, &k("partition"))));
        }
        if let Some(q) = &e.qos {
            h.push(format!("#SBATCH --qos={}", self.sb(q, &k("qos"))));
        }
        h.push(format!("#SBATCH --time={walltime_text}"));
        h.push(format!("#SBATCH --nodes={nodes}"));
        h.push(format!("#SBATCH --ntasks-per-node={}", e.ntasks_per_node));
        if let Some(g) = e.gres.as_ref().filter(|_| !client_only) {
            h.push(format!("#SBATCH --gres={}", self.sb(g, &k("gres"))));
        }
        if let Some(g) = e.gpus_per_node.filter(|_| !client_only) {
            h.push(format!("#SBATCH --gpus-per-node={g}"));
        }
        for (flag, value) in &e.sbatch_extra_flags {
            if client_only && flag == "exclusive" {
                continue;
            }
            let path =
                vec![Seg::Key("execution".into()), Seg::Key("sbatch_extra_flags".into()), Seg::Key(flag.clone())];
            if !flag.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') || flag.is_empty() {
                self.err(&path, format!("`{flag}` is not an sbatch flag name"));
                continue;
            }
            let flag = flag.replace('_', "-");
            match value {
                J::Bool(true) => h.push(format!("#SBATCH --{flag}")),
                J::Bool(false) | J::Null => {}
                J::String(s) => {
                    let v = self.sb(s, &path);
                    h.push(format!("#SBATCH --{flag}={v}"));
                }
                J::Number(n) => h.push(format!("#SBATCH --{flag}={n}")),
                _ => self.err(&path, format!("sbatch flag `{flag}` needs a string, number or boolean")),
            }
        }
        let comment = self.comment_for(id, role);
        h.push(format!("#SBATCH --comment={}", self.sb(&comment, &k("sbatch_comment"))));
        let out = format!("{}/logs/slurm-%j.out", output_pattern(dir));
        h.push(format!("#SBATCH --output={}", self.sb(&out, &k("output_dir"))));
        h.push("#SBATCH --open-mode=append".into());
        h.push("#SBATCH --no-requeue".into());
        if resume {
            // A successor whose predecessor succeeded can never start: Slurm removes it.
            h.push("#SBATCH --kill-on-invalid-dep=yes".into());
        }
        h.push(format!("#SBATCH --signal=B:USR1@{}", self.signal_lead()));
        h.join("\n") + "\n"
    }

    /// The job's `--comment`: the user's comment and the ownership tag
    /// `evalctl:<stack>/<unit>/<role>` by which refresh finds the job again
    /// (apply appends the unit's hashes when it submits).
    fn comment_for(&self, id: &str, role: &str) -> String {
        let unit = if role == "resume" { id.strip_suffix(".resume").unwrap_or(id) } else { id };
        let tag = format!("{TAG_PREFIX}{}/{unit}/{role}", self.loaded.stack);
        match &self.cfg.execution.sbatch_comment {
            Some(c) => format!("{c} {tag}"),
            None => tag,
        }
    }

    /// Seconds before the time limit at which the job is warned: a tenth of
    /// the walltime, between 60 s and 300 s, and never before half of it (a
    /// short link is not warned as it starts).
    fn signal_lead(&self) -> u64 {
        (self.walltime_s() / 10).clamp(60, 300).min(self.walltime_s() / 2).max(1)
    }

    fn walltime_s(&self) -> u64 {
        self.cfg.execution.walltime.seconds().unwrap_or(3600)
    }

    fn walltime_text(&self) -> String {
        match &self.cfg.execution.walltime {
            crate::config::model::SlurmTime::Text(t) => t.trim().to_owned(),
            crate::config::model::SlurmTime::Minutes(m) => m.to_string(),
        }
    }

    fn readiness_s(&self) -> u64 {
        match &self.cfg.execution.endpoint_readiness_timeout {
            Some(d) => d.seconds().unwrap_or_else(|_| self.walltime_s()),
            None => self.walltime_s(),
        }
    }

    /// Variables and constants every script sets before its body.
    fn preamble(&self, id: &str, dir: &str, role: &str) -> String {
        let e = &self.cfg.execution;
        let max_wall = e.max_walltime.as_ref().and_then(|m| m.seconds().ok()).unwrap_or(0);
        let mut s = String::from(RUNTIME_MARK);
        s.push_str(RUNTIME);
        s.push_str("\n# ---- this job ----\n");
        let vars = [
            ("EVALCTL_STACK", quote(&self.loaded.stack)),
            ("EVALCTL_NODE", quote(id)),
            ("EVALCTL_ROLE", quote(role)),
            ("EVALCTL_STACK_DIR", quote(&self.stack_dir)),
            ("EVALCTL_DIR", quote(dir)),
            ("EVALCTL_ARTIFACTS", format!("{}/artifacts", quote(dir))),
            ("EVALCTL_LOGS", format!("{}/logs", quote(dir))),
            ("EVALCTL_WALLTIME_S", self.walltime_s().to_string()),
            ("EVALCTL_MAX_WALLTIME_S", max_wall.to_string()),
            ("EVALCTL_MAX_LINKS", e.max_resume_links.to_string()),
        ];
        for (k, v) in vars {
            s.push_str(&format!("export {k}={v}\n"));
        }
        s.push_str("mkdir -p \"$EVALCTL_ARTIFACTS\" \"$EVALCTL_LOGS\"\n");
        s.push_str("mapfile -t EVALCTL_NODES < <(scontrol show hostnames \"${SLURM_JOB_NODELIST:-$(hostname)}\")\n");
        s.push_str("trap 'evalctl_on_signal USR1' USR1\n");
        s.push_str("trap 'evalctl_on_signal TERM; evalctl_stop \"${EVALCTL_SERVER_PIDS[@]}\" ${EVALCTL_CLIENT_PID:-}; exit 143' TERM\n");
        s.push_str("EVALCTL_SERVER_PIDS=()\n");
        s
    }

    /// A shell function exporting a group's visible variables (literals and
    /// compute-node variables); `evalctl_env` calls it after the secrets file.
    fn public_env_fn(&self, group: &Group) -> String {
        let mut s = format!("evalctl_public_env_{}() {{\n", group.name);
        let mut any = false;
        for v in group.vars.iter().filter(|v| !v.secret) {
            match &v.source {
                Source::Literal { value } => s.push_str(&format!("  export {}={}\n", v.name, quote(value))),
                Source::Runtime { var } => s.push_str(&format!("  export {}=\"${{{var}-}}\"\n", v.name)),
                _ => continue,
            }
            any = true;
        }
        if !any {
            s.push_str("  :\n");
        }
        s.push_str("}\n");
        s
    }

    /// `--container-env=A,B` for a group (every variable it sets).
    fn container_env(group: &Group) -> Option<String> {
        if group.vars.is_empty() {
            return None;
        }
        let names: Vec<&str> = group.vars.iter().map(|v| v.name.as_str()).collect();
        Some(quote(&format!("--container-env={}", names.join(","))))
    }

    /// `--container-mounts=...` from `(source, target[:flags])` pairs.
    fn mounts(&mut self, pairs: &[(String, String, Vec<Seg>)]) -> Option<String> {
        let mut items = vec![];
        for (src, dst, path) in pairs {
            let (target, flags) = match dst.split_once(':') {
                Some((t, f)) => (t, Some(f)),
                None => (dst.as_str(), None),
            };
            for p in [src.as_str(), target] {
                if let Err(e) = mount_path(p) {
                    self.err(path, e);
                }
            }
            items.push(match flags {
                Some(f) => format!("{src}:{target}:{f}"),
                None => format!("{src}:{target}"),
            });
        }
        if items.is_empty() { None } else { Some(quote(&format!("--container-mounts={}", items.join(",")))) }
    }

    fn home_flag(&self) -> &'static str {
        if self.cfg.execution.mounts.mount_home { "--container-mount-home" } else { "--no-container-mount-home" }
    }

    /// Server start and readiness for one deployment; leaves EVALCTL_BASE_URL set.
    fn server_block(&mut self, d: &Deployment, base: &[Seg], group: &Group, mounts_key: Option<&str>) -> String {
        let e = &self.cfg.execution;
        let (nodes, instances) = match mounts_key {
            Some(_) => (d.num_nodes.unwrap_or(1), d.num_instances.unwrap_or(1)),
            None => (e.num_nodes, e.num_instances),
        };
        let instances = instances.max(1);
        let npi = (nodes / instances).max(1);
        let n_tasks = if mounts_key.is_some() { nodes } else { e.deployment.n_tasks.unwrap_or(nodes) };
        let tpi = (n_tasks / instances).max(1);
        let image = d.image.clone().unwrap_or_default();
        let mut pairs: Vec<(String, String, Vec<Seg>)> = vec![];
        if let Some(cp) = &d.checkpoint_path {
            pairs.push((
                cp.clone(),
                "/checkpoint:ro".into(),
                [base.to_vec(), vec![Seg::Key("checkpoint_path".into())]].concat(),
            ));
        }
        let user_mounts = match mounts_key {
            Some(aux) => e.mounts.auxiliary.get(aux).cloned().unwrap_or_default(),
            None => e.mounts.deployment.clone(),
        };
        let mbase: Vec<Seg> = match mounts_key {
            Some(aux) => ["execution", "mounts", "auxiliary", aux].iter().map(|k| Seg::Key((*k).into())).collect(),
            None => ["execution", "mounts", "deployment"].iter().map(|k| Seg::Key((*k).into())).collect(),
        };
        for (s, t) in &user_mounts {
            pairs.push((s.clone(), t.clone(), [mbase.clone(), vec![Seg::Key(s.clone())]].concat()));
        }
        let mut args = vec![format!("--container-image={}", quote(&image))];
        if let Some(m) = self.mounts(&pairs) {
            args.push(m);
        }
        args.push(self.home_flag().into());
        if let Some(env) = Self::container_env(group) {
            args.push(env);
        }
        let mut command = d.command.as_deref().unwrap_or_default().trim_end().to_owned();
        if let Some(pre) = &d.pre_cmd {
            command = format!("{pre}\n{command}");
        }
        let port = d.port.unwrap_or(8000);
        let health = d.endpoints.as_ref().and_then(|x| x.health.clone());
        let wait = match &health {
            Some(_) => self.readiness_s(),
            None => d.server_timeout.unwrap_or(60),
        };
        let proxy = e.proxy.clone().unwrap_or_default();
        let proxy_port = proxy.config.get("haproxy_port").and_then(J::as_u64).unwrap_or(5009);
        let proxy_image = proxy.image.clone().unwrap_or_else(|| "haproxy:latest".into());
        let mut s = format!("EVALCTL_SRV_ARGS=({})\n", args.join(" "));
        s.push_str(&format!("EVALCTL_SRV_CMD={}\n", quote(&command)));
        s.push_str(&format!("evalctl_start_servers {} {instances} {npi} {tpi}\n", quote(&group.name)));
        s.push_str(&format!(
            "if ! evalctl_servers_ready {port} {} {wait} {proxy_port} {}; then\n",
            quote(health.as_deref().unwrap_or("")),
            quote(&proxy_image)
        ));
        s.push_str("  evalctl_stop \"${EVALCTL_SERVER_PIDS[@]}\"\n  evalctl_status failed server-not-ready\n  evalctl_chain end server-not-ready\n  exit 1\nfi\n");
        s
    }

    fn secrets_map(groups: &[&Group]) -> IndexMap<String, Vec<EnvVar>> {
        groups
            .iter()
            .map(|g| (g.name.clone(), g.vars.iter().filter(|v| v.secret).cloned().collect::<Vec<_>>()))
            .filter(|(_, v)| !v.is_empty())
            .collect()
    }

    fn aux_group_name(name: &str) -> String {
        let clean: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        format!("aux_{clean}")
    }

    /// A shared or auxiliary deployment job.
    fn deployment_job(&mut self, id: &str, aux: Option<&str>) -> Option<RenderedJob> {
        let cfg = self.cfg;
        let (d, base, vars): (&Deployment, Vec<Seg>, &[EnvVar]) = match aux {
            Some(a) => (
                &cfg.auxiliary_deployments[a],
                vec![Seg::Key("auxiliary_deployments".into()), Seg::Key(a.into())],
                self.loaded.env.auxiliary.get(a).map(Vec::as_slice).unwrap_or(&[]),
            ),
            None => (&cfg.deployment, vec![Seg::Key("deployment".into())], &self.loaded.env.deployment),
        };
        let group = Group { name: aux.map_or_else(|| "deployment".to_owned(), Self::aux_group_name), vars };
        let dir = self.node_dir(id);
        let nodes = match aux {
            Some(_) => d.num_nodes.unwrap_or(1),
            None => cfg.execution.num_nodes,
        };
        let walltime = self.walltime_text();
        let mut s = self.header(id, &dir, nodes, &walltime, "server", false);
        s.push_str(&self.preamble(id, &dir, "server"));
        s.push_str(&self.public_env_fn(&group));
        s.push_str("\n# ---- serve the model for the stack's tasks ----\n");
        s.push_str("rm -f \"$EVALCTL_DIR/endpoint\"\nevalctl_chain start server\nevalctl_status running\n");
        s.push_str(&self.server_block(d, &base, &group, aux));
        s.push_str("printf '%s\\n' \"$EVALCTL_BASE_URL\" >\"$EVALCTL_DIR/endpoint.tmp\" && mv -f \"$EVALCTL_DIR/endpoint.tmp\" \"$EVALCTL_DIR/endpoint\"\n");
        s.push_str("evalctl_log \"endpoint published: $EVALCTL_BASE_URL\"\n");
        let tasks: Vec<String> = self.graph.task_ids.iter().map(|t| quote(t)).collect();
        s.push_str(&format!("evalctl_serve_until_done {}\nrc=$?\n", tasks.join(" ")));
        s.push_str("rm -f \"$EVALCTL_DIR/endpoint\"\nevalctl_stop \"${EVALCTL_SERVER_PIDS[@]}\"\n");
        s.push_str("if [ \"$rc\" -eq 0 ]; then evalctl_status completed; evalctl_chain end completed; else evalctl_status failed server-exited; evalctl_chain end server-exited; fi\nexit \"$rc\"\n");
        let result = json!({ "kind": "deployment", "deployment": model_identity(d), "env": env_identity(vars) });
        let secrets = Self::secrets_map(&[&group]);
        let mut job =
            finish(id, NodeKind::Deployment { aux: aux.map(str::to_owned) }, dir, "server.sbatch", s, secrets, &result);
        self.identify(&mut job, "server");
        Some(job)
    }

    /// Sets the unit, role and comment of a rendered job.
    fn identify(&self, job: &mut RenderedJob, role: &str) {
        job.comment = self.comment_for(&job.id, role);
        job.unit = if role == "resume" {
            job.id.strip_suffix(".resume").unwrap_or(&job.id).to_owned()
        } else {
            job.id.clone()
        };
        job.role = match role {
            "resume" => Role::Resume,
            "server" => Role::Server,
            _ => Role::First,
        };
    }

    /// The first link of a task and its resume link, rendered together.
    fn task_jobs(&mut self, id: &str, index: usize) -> Option<(RenderedJob, RenderedJob)> {
        let cfg = self.cfg;
        // Validation resolved every task, in order.
        let Some(rt) = self.loaded.tasks.get(index).filter(|t| t.index == index).cloned() else {
            self.errors.push(Diagnostic::error(None, format!("task {index} was not resolved")));
            return None;
        };
        let task_id = self.graph.task_ids.get(index).cloned().unwrap_or_else(|| id.to_owned());
        let task = &cfg.evaluation.tasks[index];
        let dir = self.node_dir(&task_id);
        let deployed = cfg.deployment.kind != DeploymentType::None;
        let shared = deployed && cfg.execution.topology == Topology::Shared;
        let per_task_server = deployed && !shared;

        // Evaluation environment: the task's variables, plus the endpoint's API key.
        let mut eval_vars: Vec<EnvVar> = self.loaded.env.tasks.get(index).cloned().unwrap_or_default();
        if let Some(key) = &cfg.target.api_endpoint.api_key_name
            && !eval_vars.iter().any(|v| &v.name == key)
        {
            if crate::config::env::is_var_name(key) {
                eval_vars.push(EnvVar {
                    name: key.clone(),
                    source: Source::Host { var: key.clone(), default: None },
                    secret: true,
                    path: vec![
                        Seg::Key("target".into()),
                        Seg::Key("api_endpoint".into()),
                        Seg::Key("api_key_name".into()),
                    ],
                });
            } else {
                let path =
                    [Seg::Key("target".into()), Seg::Key("api_endpoint".into()), Seg::Key("api_key_name".into())];
                self.err(&path, format!("`{key}` is not a valid environment variable name"));
            }
        }
        let eval_group = Group { name: "evaluation".into(), vars: &eval_vars };
        let dep_group = Group { name: "deployment".into(), vars: &self.loaded.env.deployment };

        let nodes = if per_task_server { cfg.execution.num_nodes } else { 1 };
        let walltime = self.walltime_text();
        // Both links of the chain share everything after their first lines.
        let resume_id = format!("{task_id}.resume");
        let mut env_fns = String::new();
        if per_task_server {
            env_fns.push_str(&self.public_env_fn(&dep_group));
        }
        env_fns.push_str(&self.public_env_fn(&eval_group));
        let mut heads = vec![];
        for (job_id, role) in [(task_id.as_str(), "first"), (resume_id.as_str(), "resume")] {
            let mut h = self.header(job_id, &dir, nodes, &walltime, role, shared);
            h.push_str(&self.preamble(&task_id, &dir, role));
            h.push_str(&env_fns);
            h.push_str("\n# ---- auto-resume chain ----\n");
            h.push_str(match role {
                "first" => "evalctl_chain start first\nevalctl_status running\n",
                _ => "evalctl_resume_gate || exit 0\nevalctl_chain start resume\nevalctl_status running\nevalctl_submit_next\n",
            });
            heads.push(h);
        }
        let mut s = String::new();

        // Endpoint.
        let (endpoint_type, url_expr) = self.endpoint_for(&rt, task);
        if per_task_server {
            s.push_str("\n# ---- model server ----\n");
            s.push_str(&self.server_block(&cfg.deployment, &[Seg::Key("deployment".into())], &dep_group, None));
            s.push_str(&format!("EVALCTL_URL=\"$EVALCTL_BASE_URL\"{}\n", quote(&url_expr)));
        } else if shared {
            s.push_str("\n# ---- the stack's shared model server ----\n");
            let health = cfg.deployment.endpoints.as_ref().and_then(|x| x.health.clone()).unwrap_or_default();
            s.push_str(&format!(
                "if ! EVALCTL_BASE_URL=$(evalctl_endpoint_of {} {} {}); then\n  evalctl_status failed no-endpoint\n  evalctl_chain end no-endpoint\n  exit 1\nfi\n",
                crate::graph::SERVER,
                quote(&health),
                self.readiness_s()
            ));
            s.push_str(&format!("EVALCTL_URL=\"$EVALCTL_BASE_URL\"{}\n", quote(&url_expr)));
        } else {
            s.push_str(&format!("\n# ---- endpoint under evaluation ----\nEVALCTL_URL={}\n", quote(&url_expr)));
        }

        // Run config, with endpoints of auxiliary deployments filled in when the job runs.
        let run_config = self.run_config(&rt, task, &endpoint_type, &eval_vars);
        let run_config_text = serde_json::to_string(&run_config).unwrap_or_default();
        s.push_str("\n# ---- evaluation ----\n");
        s.push_str("EVALCTL_RUN_CONFIG=$(cat <<'EVALCTL_RUN_CONFIG_END'\n");
        s.push_str(&run_config_text);
        s.push_str("\nEVALCTL_RUN_CONFIG_END\n)\n");
        s.push_str(&format!("evalctl_subst {} \"$EVALCTL_URL\"\n", quote(URL_PLACEHOLDER)));
        for (name, aux) in &cfg.auxiliary_deployments {
            let health = aux.endpoints.as_ref().and_then(|x| x.health.clone()).unwrap_or_default();
            let chat =
                aux.endpoints.as_ref().and_then(|x| x.chat.clone()).unwrap_or_else(|| "/v1/chat/completions".into());
            let completions =
                aux.endpoints.as_ref().and_then(|x| x.completions.clone()).unwrap_or_else(|| "/v1/completions".into());
            s.push_str(&format!(
                "if ! EVALCTL_AUX_URL=$(evalctl_endpoint_of {} {} {}); then\n  evalctl_status failed no-endpoint\n  evalctl_chain end no-endpoint\n  exit 1\nfi\n",
                quote(&format!("{}.{name}", crate::graph::SERVER)),
                quote(&health),
                self.readiness_s()
            ));
            for (suffix, path) in [("chat_url", chat), ("completions_url", completions), ("url", String::new())] {
                s.push_str(&format!(
                    "evalctl_subst_url {} \"$EVALCTL_AUX_URL\" {}\n",
                    quote(&format!("auxiliary_deployments.{name}.{suffix}")),
                    quote(&path)
                ));
            }
        }
        s.push_str("printf '%s\\n' \"$EVALCTL_RUN_CONFIG\" >\"$EVALCTL_ARTIFACTS/run_config.yml\"\n");

        let mut pairs = vec![(
            format!("{dir}/artifacts"),
            "/results".to_owned(),
            vec![Seg::Key("execution".into()), Seg::Key("output_dir".into())],
        )];
        for (src, dst) in &cfg.execution.mounts.evaluation {
            pairs.push((
                src.clone(),
                dst.clone(),
                vec![
                    Seg::Key("execution".into()),
                    Seg::Key("mounts".into()),
                    Seg::Key("evaluation".into()),
                    Seg::Key(src.clone()),
                ],
            ));
        }
        let mut args = vec![format!("--container-image={}", quote(&rt.info.container))];
        if let Some(m) = self.mounts(&pairs) {
            args.push(m);
        }
        args.push(self.home_flag().into());
        if let Some(env) = Self::container_env(&eval_group) {
            args.push(env);
        }
        let pre = [cfg.evaluation.pre_cmd.as_deref(), task.pre_cmd.as_deref()];
        let post = [task.post_cmd.as_deref(), cfg.evaluation.post_cmd.as_deref()];
        let mut client = String::new();
        for p in pre.into_iter().flatten() {
            client.push_str(p);
            client.push('\n');
        }
        client.push_str("nemo-evaluator run_eval --run_config /results/run_config.yml\nrc=$?\n");
        for p in post.into_iter().flatten() {
            client.push_str(p);
            client.push('\n');
        }
        client.push_str("exit $rc");
        let head = if deployed && !shared { " --nodelist=\"${EVALCTL_HEADS[0]}\"" } else { "" };
        s.push_str(&format!(
            "(\n  evalctl_env evaluation\n  exec srun --overlap --nodes=1 --ntasks=1{head} {} bash -c {}\n) >\"$EVALCTL_LOGS/client-${{SLURM_JOB_ID:-0}}.log\" 2>&1 &\n",
            args.join(" "),
            quote(&client)
        ));
        s.push_str("EVALCTL_CLIENT_PID=$!\nevalctl_log \"evaluation running (log: $EVALCTL_LOGS/client-${SLURM_JOB_ID:-0}.log)\"\n");
        s.push_str("evalctl_wait \"$EVALCTL_CLIENT_PID\"\nrc=$?\nEVALCTL_CLIENT_PID=\n");
        if per_task_server {
            s.push_str("evalctl_stop \"${EVALCTL_SERVER_PIDS[@]}\"\n");
        }
        s.push_str("evalctl_finish \"$rc\"\nexit \"$rc\"\n");

        let result = json!({
            "kind": "task",
            "task": rt.info.qualified(),
            "container": rt.info.container,
            "run_config": run_config,
            "deployment": if deployed { model_identity(&cfg.deployment) } else { json!({"url": cfg.target.api_endpoint.url}) },
            "env": env_identity(&eval_vars),
            "server_env": if per_task_server { env_identity(&self.loaded.env.deployment) } else { J::Null },
            "pre": pre, "post": post,
        });
        let secrets = if per_task_server {
            Self::secrets_map(&[&dep_group, &eval_group])
        } else {
            Self::secrets_map(&[&eval_group])
        };
        let [first_head, resume_head]: [String; 2] = heads.try_into().ok()?;
        let first = finish(
            &task_id,
            NodeKind::EvalTask { task: index },
            dir.clone(),
            "task.sbatch",
            first_head + &s,
            secrets.clone(),
            &result,
        );
        let mut resume = finish(
            &resume_id,
            NodeKind::Resume { of: task_id.clone(), task: index },
            dir,
            "resume.sbatch",
            resume_head + &s,
            secrets,
            &result,
        );
        let mut first = first;
        self.identify(&mut first, "first");
        self.identify(&mut resume, "resume");
        Some((first, resume))
    }

    /// The endpoint type of a task and the URL path (or full URL) it calls.
    fn endpoint_for(&self, rt: &ResolvedTask, task: &crate::config::model::Task) -> (String, String) {
        let cfg = self.cfg;
        let deployed = cfg.deployment.kind != DeploymentType::None;
        let url = cfg.target.api_endpoint.url.clone().unwrap_or_default();
        let from_url = if url.ends_with("/chat/completions") {
            Some("chat")
        } else if url.ends_with("/completions") {
            Some("completions")
        } else {
            None
        };
        let types = &rt.info.endpoint_types;
        let kind = task
            .endpoint_type
            .clone()
            .or_else(|| cfg.target.api_endpoint.kind.clone())
            .or_else(|| if deployed { None } else { from_url.map(str::to_owned) })
            .unwrap_or_else(|| {
                if types.iter().any(|t| t == "chat") {
                    "chat".into()
                } else {
                    types.first().cloned().unwrap_or_else(|| "chat".into())
                }
            });
        if !deployed {
            return (kind, url);
        }
        let eps = cfg.deployment.endpoints.clone().unwrap_or_default();
        let path = match kind.as_str() {
            "chat" | "vlm" => eps.chat,
            "completions" => eps.completions,
            "embedding" => eps.embedding,
            "ranking" => eps.ranking,
            _ => None,
        }
        .unwrap_or_else(|| "/v1/chat/completions".into());
        (kind, path)
    }

    /// The harness run config of a task: evaluation-wide settings merged
    /// under the task's, plus the task and the endpoint.
    fn run_config(
        &self,
        rt: &ResolvedTask,
        task: &crate::config::model::Task,
        endpoint_type: &str,
        vars: &[EnvVar],
    ) -> J {
        let cfg = self.cfg;
        let mut merged = J::Object(cfg.evaluation.nemo_evaluator_config.clone().unwrap_or_default());
        deep_merge(&mut merged, J::Object(task.nemo_evaluator_config.clone().unwrap_or_default()));
        let model_id = cfg
            .target
            .api_endpoint
            .model_id
            .clone()
            .or_else(|| cfg.deployment.served_model_name.clone())
            .unwrap_or_default();
        let mut endpoint = json!({ "url": URL_PLACEHOLDER, "model_id": model_id, "type": endpoint_type });
        if let Some(key) = &cfg.target.api_endpoint.api_key_name
            && vars.iter().any(|v| &v.name == key)
        {
            endpoint["api_key"] = json!(key);
        }
        if let Some(ac) = &cfg.target.api_endpoint.adapter_config {
            endpoint["adapter_config"] = J::Object(ac.clone());
        }
        let mut base = json!({
            "config": { "type": rt.info.name, "output_dir": "/results" },
            "target": { "api_endpoint": endpoint },
        });
        // The user's settings win over the defaults above, except where the
        // run must point: the task, the output directory and the endpoint URL.
        deep_merge(&mut base, merged);
        base["config"]["type"] = json!(rt.info.name);
        base["config"]["output_dir"] = json!("/results");
        base["target"]["api_endpoint"]["url"] = json!(URL_PLACEHOLDER);
        for (name, aux) in &cfg.auxiliary_deployments {
            replace_strings(
                &mut base,
                &format!("auxiliary_deployments.{name}.model_id"),
                aux.served_model_name.as_deref().unwrap_or(""),
            );
        }
        base
    }
}

fn finish(
    id: &str,
    kind: NodeKind,
    dir: String,
    name: &str,
    script: String,
    secrets: IndexMap<String, Vec<EnvVar>>,
    result: &J,
) -> RenderedJob {
    RenderedJob {
        id: id.to_owned(),
        kind,
        dir,
        script_name: name.to_owned(),
        script_hash: script_hash(&script),
        result_hash: sha(&serde_json::to_string(result).unwrap_or_default()),
        script,
        secrets,
        deps: vec![],
        unit: String::new(),
        role: Role::First,
        comment: String::new(),
    }
}

/// What identifies a served model (for result hashes).
fn model_identity(d: &Deployment) -> J {
    json!({
        "type": d.kind, "image": d.image, "checkpoint_path": d.checkpoint_path, "hf_model_handle": d.hf_model_handle,
        "served_model_name": d.served_model_name, "command": d.command, "pre_cmd": d.pre_cmd,
    })
}

/// Variable names and non-secret sources (for result hashes): secret values never.
fn env_identity(vars: &[EnvVar]) -> J {
    J::Array(
        vars.iter()
            .map(|v| match (&v.source, v.secret) {
                (_, true) => json!([v.name, "secret"]),
                (Source::Literal { value }, false) => json!([v.name, "lit", value]),
                (Source::Runtime { var }, false) => json!([v.name, "runtime", var]),
                (s, false) => json!([v.name, placeholder(s)]),
            })
            .collect(),
    )
}

/// Deep-merges JSON objects; other values replace.
pub fn deep_merge(dst: &mut J, src: J) {
    match (dst, src) {
        (J::Object(d), J::Object(s)) => {
            for (k, v) in s {
                match d.get_mut(&k) {
                    Some(existing) => deep_merge(existing, v),
                    None => {
                        d.insert(k, v);
                    }
                }
            }
        }
        (d, s) => *d = s,
    }
}

fn replace_strings(v: &mut J, from: &str, to: &str) {
    match v {
        J::String(s) if s == from => *s = to.to_owned(),
        J::Array(a) => a.iter_mut().for_each(|x| replace_strings(x, from, to)),
        J::Object(o) => o.values_mut().for_each(|x| replace_strings(x, from, to)),
        _ => {}
    }
}
