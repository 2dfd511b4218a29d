//! Config and resolved tasks to [`JobSpec`]s: every decision about a job
//! (resources, `#SBATCH` settings, container groups, mounts, servers,
//! endpoints, run config, result identity) is made here, and every value a
//! script cannot carry is reported here, at its place in the config. No
//! script text is written here, so the decisions are testable on their own.

use std::sync::Arc;

use serde_json::{Value as J, json};

use super::identity::{ResultIdentity, env_identity, model_identity};
use super::run_config::{endpoint_for, run_config};
use super::sbatch::{FlagName, SbatchValue};
use super::shell::{mount_path, output_pattern};
use super::spec::{
    AuxEndpoint, AuxPlacement, ClientSpec, Container, Context, Endpoint, EnvGroup, EvalSpec, JobSpec, Mount,
    PackMember, PackSpec, PublicValue, Resources, Role, Sbatch, ServerSpec, Work,
};
use crate::config::env::{EnvVar, Source};
use crate::config::model::{Config, Deployment, DeploymentType, Topology};
use crate::config::node::Seg;
use crate::config::urls::UrlPath;
use crate::config::{Loaded, ResolvedTask};
use crate::diag::Diagnostic;
use crate::graph::{JobGraph, NodeKind};
use crate::remote::layout;
use crate::shell::VarName;

/// Lowers the jobs of one config, collecting every problem found.
pub struct Lower<'a> {
    loaded: &'a Loaded,
    cfg: &'a Config,
    graph: &'a JobGraph,
    pub stack_dir: String,
    pub errors: Vec<Diagnostic>,
}

/// Links beyond those `max_walltime` allows at full length (see
/// [`Lower::max_links`]).
pub const SPARE_LINKS: u32 = 20;

fn keys(path: &[&str]) -> Vec<Seg> {
    path.iter().map(|k| Seg::Key((*k).into())).collect()
}

fn key_then(base: &[Seg], k: &str) -> Vec<Seg> {
    let mut p = base.to_vec();
    p.push(Seg::Key(k.into()));
    p
}

impl<'a> Lower<'a> {
    pub fn new(loaded: &'a Loaded, graph: &'a JobGraph) -> Lower<'a> {
        let cfg = &loaded.config;
        let stack_dir = format!("{}/{}", cfg.execution.output_dir.trim_end_matches('/'), loaded.stack);
        Lower { loaded, cfg, graph, stack_dir, errors: vec![] }
    }

    fn err(&mut self, path: &[Seg], msg: String) {
        self.errors.push(Diagnostic::error(self.loaded.tree.value_span_of(path), msg));
    }

    /// An `#SBATCH` value, or an error at `path`.
    fn sb(&mut self, value: &str, path: &[Seg]) -> SbatchValue {
        SbatchValue::new(value).unwrap_or_else(|e| {
            self.err(path, format!("`{}`: {e}", crate::config::node::path_string(path)));
            SbatchValue::default()
        })
    }

    /// A URL path, or an error at `path` (validation already refused what
    /// the grammar does not allow; this is where the type is made).
    fn url_path(&mut self, value: &str, path: &[Seg]) -> UrlPath {
        UrlPath::new(value).unwrap_or_else(|e| {
            self.err(path, e);
            UrlPath::default()
        })
    }

    fn node_dir(&self, id: &str) -> String {
        format!("{}/{}", self.stack_dir, id)
    }

    /// Time limit of one link, in seconds.
    pub fn walltime_s(&self) -> u64 {
        self.cfg.execution.walltime.seconds().unwrap_or(3600)
    }

    /// Seconds before the time limit at which the job is warned: a tenth of
    /// the walltime, between 60 s and 300 s, and never before half of it (a
    /// short link is not warned as it starts).
    fn signal_lead(&self) -> u64 {
        (self.walltime_s() / 10).clamp(60, 300).min(self.walltime_s() / 2).max(1)
    }

    /// How long a job waits for an endpoint to become healthy.
    fn readiness_s(&self) -> u64 {
        match &self.cfg.execution.endpoint_readiness_timeout {
            Some(d) => d.seconds().unwrap_or_else(|_| self.walltime_s()),
            None => self.walltime_s(),
        }
    }

    /// What the job asks of the scheduler. `client_only`: a job that only
    /// runs the harness against a server of another job (shared topology)
    /// asks for no GPUs.
    fn resources(&mut self, nodes: u32, client_only: bool) -> Resources {
        let e = &self.cfg.execution;
        let walltime = match &e.walltime {
            crate::config::model::SlurmTime::Text(t) => t.trim().to_owned(),
            crate::config::model::SlurmTime::Minutes(m) => m.to_string(),
        };
        let gres = e.gres.clone().filter(|_| !client_only);
        let gpus_per_node = e.gpus_per_node.filter(|_| !client_only);
        let ntasks_per_node = e.ntasks_per_node;
        Resources {
            nodes,
            walltime: self.sb(&walltime, &keys(&["execution", "walltime"])),
            ntasks_per_node,
            gres: gres.map(|g| self.sb(&g, &keys(&["execution", "gres"]))),
            gpus_per_node,
        }
    }

    /// The job's name: the ownership tag by which refresh finds the job
    /// again, `[<subproject>.]evalctl:<stack>/<unit>/<role>` (apply appends
    /// the unit's hashes when it submits; see `crate::remote::layout`).
    fn job_name(&self, unit: &str, role: Role) -> String {
        layout::job_name(self.cfg.execution.subproject.as_deref(), &self.loaded.stack, unit, role)
    }

    /// The job's other `#SBATCH` settings. A client-only job (see
    /// [`Self::resources`]) does not ask for an exclusive node.
    fn sbatch(&mut self, dir: &str, role: Role, job_name: &str, client_only: bool) -> Sbatch {
        let e = &self.cfg.execution;
        let k = |s: &str| keys(&["execution", s]);
        let job_name = self.sb(job_name, &k("subproject"));
        let (account, partition, qos) = (e.account.clone(), e.partition.clone(), e.qos.clone());
        let account = account.map(|v| self.sb(&v, &k("account")));
        let partition = partition.map(|v| self.sb(&v, &k("partition")));
        let qos = qos.map(|v| self.sb(&v, &k("qos")));
        let mut extra = vec![];
        for (flag, value) in &self.cfg.execution.sbatch_extra_flags {
            if client_only && flag == "exclusive" {
                continue;
            }
            let path = keys(&["execution", "sbatch_extra_flags", flag]);
            let name = match FlagName::user(flag) {
                Ok(n) => n,
                Err(e) => {
                    self.err(&path, e);
                    continue;
                }
            };
            match value {
                J::Bool(true) => extra.push((name, None)),
                J::Bool(false) | J::Null => {}
                J::String(s) => extra.push((name, Some(self.sb(s, &path)))),
                J::Number(n) => extra.push((name, Some(self.sb(&n.to_string(), &path)))),
                _ => self.err(&path, format!("sbatch flag `{name}` needs a string, number or boolean")),
            }
        }
        let output = self.sb(&format!("{}/logs/slurm-%j.out", output_pattern(dir)), &k("output_dir"));
        Sbatch {
            job_name,
            account,
            partition,
            qos,
            extra,
            output,
            // A successor whose predecessor succeeded can never start: Slurm removes it.
            kill_on_invalid_dep: role == Role::Resume,
            signal_lead: self.signal_lead(),
        }
    }

    fn context(&self, node: &str) -> Context {
        let e = &self.cfg.execution;
        Context {
            stack: self.loaded.stack.clone(),
            node: node.to_owned(),
            stack_dir: self.stack_dir.clone(),
            walltime_s: self.walltime_s(),
            max_walltime_s: e.max_walltime.as_ref().and_then(|m| m.seconds().ok()).unwrap_or(0),
            max_links: self.max_links(),
        }
    }

    /// Most links of one attempt; 0: unlimited. `max_resume_links` when
    /// set; else the links `max_walltime` allows at full `walltime` plus
    /// [`SPARE_LINKS`] cut short (preempted, failed node), so the time limit
    /// stops the chain first; with no `max_walltime`, unlimited, as in the
    /// launcher.
    pub fn max_links(&self) -> u32 {
        let e = &self.cfg.execution;
        if let Some(n) = e.max_resume_links {
            return n;
        }
        match e.max_walltime.as_ref().and_then(|m| m.seconds().ok()) {
            Some(max) if max > 0 => {
                let full = max.div_ceil(self.walltime_s().max(1));
                u32::try_from(full).unwrap_or(u32::MAX).saturating_add(SPARE_LINKS)
            }
            _ => 0,
        }
    }

    /// A job of `unit` in `dir`, before its work and result are known.
    #[allow(clippy::too_many_arguments)]
    fn job(
        &mut self,
        id: &str,
        unit: &str,
        kind: NodeKind,
        role: Role,
        dir: &str,
        nodes: u32,
        client_only: bool,
        env: Vec<EnvGroup>,
        work: Work,
    ) -> JobSpec {
        let job_name = self.job_name(unit, role);
        JobSpec {
            id: id.to_owned(),
            kind,
            role,
            unit: unit.to_owned(),
            dir: dir.to_owned(),
            script_name: match role {
                Role::First => "task.sbatch",
                Role::Resume => "resume.sbatch",
                Role::Server => "server.sbatch",
            },
            resources: self.resources(nodes, client_only),
            sbatch: self.sbatch(dir, role, &job_name, client_only),
            next_name: if role == Role::First { self.job_name(unit, Role::Resume) } else { job_name.clone() },
            job_name,
            comment: self.cfg.execution.sbatch_comment.clone(),
            context: self.context(unit),
            env,
            work,
            result: Default::default(),
        }
    }

    /// A container group from its variables.
    fn env_group(&mut self, name: &str, vars: &[EnvVar]) -> EnvGroup {
        let mut group = EnvGroup {
            name: VarName::new(name).expect("group names are identifiers"),
            public: vec![],
            secret: vars.iter().filter(|v| v.secret).cloned().collect(),
            names: vars.iter().map(|v| v.name.clone()).collect(),
        };
        for v in vars.iter().filter(|v| !v.secret) {
            let value = match &v.source {
                Source::Literal { value } => PublicValue::Literal(value.clone()),
                Source::Runtime { var } => match VarName::new(var) {
                    Some(n) => PublicValue::Runtime(n),
                    None => {
                        self.err(&v.path, format!("`{var}` is not a valid environment variable name"));
                        continue;
                    }
                },
                _ => continue,
            };
            match VarName::new(&v.name) {
                Some(n) => group.public.push((n, value)),
                None => self.err(&v.path, format!("`{}` is not a valid environment variable name", v.name)),
            }
        }
        group
    }

    /// Mounts from `(source, target[:flags], where)` triples; paths
    /// `--container-mounts` cannot express are reported.
    fn mounts(&mut self, pairs: Vec<(String, String, Vec<Seg>)>) -> Vec<Mount> {
        let mut out = vec![];
        for (source, dst, path) in pairs {
            let (target, flags) = crate::config::mounts::split_target(&dst);
            for p in [source.as_str(), target] {
                if let Err(e) = mount_path(p) {
                    self.err(&path, e);
                }
            }
            if let Some(Err(e)) = flags.map(crate::config::mounts::check_flags) {
                self.err(&path, e);
            }
            let (target, flags) = (target.to_owned(), flags.map(str::to_owned));
            out.push(Mount { source, target, flags });
        }
        out
    }

    /// A deployment's server: `aux` names an auxiliary deployment (its own
    /// node and instance counts, mounts and variable prefix), `None` the
    /// main one. It runs on the job's nodes from `first_node` on; `results`:
    /// the folder mounted at `/results` (the model's, as in the launcher).
    fn server(
        &mut self,
        d: &Deployment,
        base: &[Seg],
        group: &EnvGroup,
        aux: Option<&str>,
        first_node: u32,
        results: Option<&str>,
    ) -> ServerSpec {
        let e = &self.cfg.execution;
        let (nodes, instances) = match aux {
            Some(_) => (d.num_nodes.unwrap_or(1), d.num_instances.unwrap_or(1)),
            None => (e.num_nodes, e.num_instances),
        };
        let instances = instances.max(1);
        let n_tasks = if aux.is_some() { d.n_tasks.unwrap_or(nodes) } else { e.deployment.n_tasks.unwrap_or(nodes) };
        let mut pairs = vec![];
        if let Some(dir) = results {
            pairs.push((format!("{dir}/artifacts"), "/results".to_owned(), keys(&["execution", "output_dir"])));
        }
        if let Some(cp) = &d.checkpoint_path {
            pairs.push((cp.clone(), "/checkpoint:ro".to_owned(), key_then(base, "checkpoint_path")));
        }
        if let Some(cache) = &d.cache_path {
            pairs.push((cache.clone(), "/cache".to_owned(), key_then(base, "cache_path")));
        }
        let (user_mounts, mbase) = match aux {
            Some(a) => {
                (e.mounts.auxiliary.get(a).cloned().unwrap_or_default(), keys(&["execution", "mounts", "auxiliary", a]))
            }
            None => (e.mounts.deployment.clone(), keys(&["execution", "mounts", "deployment"])),
        };
        for (s, t) in user_mounts {
            let path = key_then(&mbase, &s);
            pairs.push((s, t, path));
        }
        let mut cmd = d.command.as_deref().unwrap_or_default().trim_end().to_owned();
        if let Some(pre) = &d.pre_cmd {
            cmd = format!("{pre}\n{cmd}");
        }
        let health = d.endpoints.as_ref().and_then(|x| x.health.clone());
        let health = health.map(|h| self.url_path(&h, &[base.to_vec(), keys(&["endpoints", "health"])].concat()));
        let wait = match &health {
            Some(_) => self.readiness_s(),
            None => d.server_timeout.unwrap_or(60),
        };
        let proxy = e.proxy.clone().unwrap_or_default();
        let mount_home = e.mounts.mount_home;
        // The launcher's server variables, always given to the container.
        let prefix = aux.and_then(|a| VarName::new(&d.env_prefix_of(a)));
        let mut env = group.names.clone();
        let launcher_vars = match &prefix {
            Some(p) => vec![format!("{}_MASTER_IP", p.as_str()), format!("{}_ALL_NODE_IPS", p.as_str())],
            None => vec!["MASTER_IP".to_owned(), "ALL_NODE_IPS".to_owned()],
        };
        for v in launcher_vars {
            if !env.contains(&v) {
                env.push(v);
            }
        }
        // Auxiliary deployments take their proxy ports from 5010 on, in
        // order, as in the launcher.
        let proxy_port = match aux {
            Some(a) => {
                let multi = self.cfg.auxiliary_deployments.iter().filter(|(_, x)| x.num_instances.unwrap_or(1) > 1);
                5010 + multi.take_while(|(n, _)| n.as_str() != a).count() as u64
            }
            None => proxy.config.haproxy_port.map_or(5009, u64::from),
        };
        let mpi = e.deployment.mpi.clone();
        if let Some(m) = &mpi
            && (m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        {
            self.err(
                &keys(&["execution", "deployment", "mpi"]),
                format!("`{m}` is not an MPI plugin name (letters, digits, `_`)"),
            );
        }
        ServerSpec {
            key: aux.map_or_else(|| "model".to_owned(), |a| format!("aux-{a}")),
            mpi,
            first_node,
            prefix,
            group: group.name.clone(),
            container: Container {
                image: d.image.clone().unwrap_or_default(),
                mounts: self.mounts(pairs),
                mount_home,
                env,
            },
            cmd,
            instances,
            nodes_per_instance: (nodes / instances).max(1),
            tasks_per_instance: (n_tasks / instances).max(1),
            port: d.port.unwrap_or(8000),
            health,
            wait,
            proxy_port,
            proxy_image: proxy.image.clone().unwrap_or_else(|| "haproxy:latest".into()),
        }
    }

    /// A shared deployment job (the model's, or an auxiliary deployment's)
    /// and its resume link.
    pub fn deployment(&mut self, id: &str, aux: Option<&str>) -> (JobSpec, JobSpec) {
        let cfg = self.cfg;
        let (d, base, vars): (&Deployment, Vec<Seg>, &[EnvVar]) = match aux {
            Some(a) => (
                &cfg.auxiliary_deployments[a],
                keys(&["auxiliary_deployments", a]),
                self.loaded.env.auxiliary.get(a).map(Vec::as_slice).unwrap_or(&[]),
            ),
            None => (&cfg.deployment, keys(&["deployment"]), &self.loaded.env.deployment),
        };
        let group = self.env_group(&aux.map_or_else(|| "deployment".to_owned(), aux_group_name), vars);
        let dir = self.node_dir(id);
        let nodes = match aux {
            Some(_) => d.num_nodes.unwrap_or(1),
            None => cfg.execution.num_nodes,
        };
        let results = if aux.is_none() { Some(dir.as_str()) } else { None };
        let server = self.server(d, &base, &group, aux, 0, results);
        let work = Work::Serve { server: Box::new(server), tasks: self.graph.task_ids.clone() };
        let result = ResultIdentity::new(
            &json!({ "kind": "deployment", "deployment": model_identity(d), "env": env_identity(vars) }),
        );
        let links = [
            (id.to_owned(), NodeKind::Deployment { aux: aux.map(str::to_owned) }, Role::Server),
            (format!("{id}.resume"), NodeKind::Resume { of: id.to_owned(), task: None }, Role::Resume),
        ];
        let [first, resume] = links.map(|(job_id, kind, role)| {
            let mut job = self.job(&job_id, id, kind, role, &dir, nodes, false, vec![group.clone()], work.clone());
            job.result = result.clone();
            job
        });
        (first, resume)
    }

    /// The evaluation variables of a task: its own, plus the endpoint's API
    /// key, the dataset folder and the visible GPUs (these two replace a
    /// variable of the same name, as in the launcher).
    fn eval_vars(&mut self, index: usize) -> Vec<EnvVar> {
        let mut vars: Vec<EnvVar> = self.loaded.env.tasks.get(index).cloned().unwrap_or_default();
        let task = &self.cfg.evaluation.tasks[index];
        let task_key = |k: &str| {
            vec![Seg::Key("evaluation".into()), Seg::Key("tasks".into()), Seg::Index(index), Seg::Key(k.into())]
        };
        let mut set = |name: &str, value: &str, path: Vec<Seg>| {
            vars.retain(|v| v.name != name);
            let source = Source::Literal { value: value.to_owned() };
            vars.push(EnvVar { name: name.to_owned(), source, secret: false, path });
        };
        if task.dataset_dir.is_some() {
            set(
                "NEMO_EVALUATOR_DATASET_DIR",
                dataset_target(task.dataset_mount_path.as_deref()),
                task_key("dataset_dir"),
            );
        }
        if let Some(devices) = self.cfg.execution.evaluation_gpu_visible.as_ref().and_then(|g| g.devices()) {
            set("NVIDIA_VISIBLE_DEVICES", devices, keys(&["execution", "evaluation_gpu_visible"]));
        }
        if let Some(key) = &self.cfg.target.api_endpoint.api_key_name
            && !vars.iter().any(|v| &v.name == key)
        {
            let path = keys(&["target", "api_endpoint", "api_key_name"]);
            if crate::config::env::is_var_name(key) {
                vars.push(EnvVar {
                    name: key.clone(),
                    source: Source::Host { var: key.clone(), default: None },
                    secret: true,
                    path,
                });
            } else {
                self.err(&path, format!("`{key}` is not a valid environment variable name"));
            }
        }
        vars
    }

    /// The first link of a task and its resume link.
    pub fn task(&mut self, id: &str, index: usize) -> Option<(JobSpec, JobSpec)> {
        let cfg = self.cfg;
        // Validation resolved every task, in order.
        let Some(rt) = self.loaded.tasks.get(index).filter(|t| t.index == index).cloned() else {
            self.errors.push(Diagnostic::error(None, format!("task {index} was not resolved")));
            return None;
        };
        let task_id = self.graph.task_ids.get(index).cloned().unwrap_or_else(|| id.to_owned());
        let dir = self.node_dir(&task_id);
        let deployed = cfg.deployment.kind != DeploymentType::None;
        let shared = deployed && cfg.execution.topology == Topology::Shared;
        let own_server = deployed && !shared;
        let eval_vars = self.eval_vars(index);
        let eval_group = self.env_group("evaluation", &eval_vars);
        let (mut env, aux_nodes) = self.server_groups(own_server);
        env.push(eval_group);
        // A harness that sees GPUs needs them allocated, and so does a judge.
        let gpus = cfg.execution.evaluation_gpu_visible.as_ref().and_then(|g| g.devices()).is_some();
        let client_only = shared && !gpus && aux_nodes == 0;
        let nodes = if own_server { cfg.execution.num_nodes } else { 1 } + aux_nodes;
        let resume_id = format!("{task_id}.resume");

        let eval = self.evaluation(&rt, index, &dir, &env, &eval_vars);
        let result = ResultIdentity::new(&self.task_identity(&rt, &eval.client, &eval_vars, index));
        let eval = Arc::new(eval);
        let links = [
            (task_id.clone(), NodeKind::EvalTask { task: index }, Role::First),
            (resume_id, NodeKind::Resume { of: task_id.clone(), task: Some(index) }, Role::Resume),
        ];
        let [first, resume] = links.map(|(id, kind, role)| {
            let work = Work::Evaluate(eval.clone());
            let mut job = self.job(&id, &task_id, kind, role, &dir, nodes, client_only, env.clone(), work);
            job.result = result.clone();
            job
        });
        Some((first, resume))
    }

    /// The container groups of the servers a task's (or pack's) job starts
    /// itself: the model's (`own_server`) and the auxiliary deployments
    /// that run in the job, on nodes added after the model's (as in the
    /// launcher); with the number of those added nodes.
    fn server_groups(&mut self, own_server: bool) -> (Vec<EnvGroup>, u32) {
        let cfg = self.cfg;
        let mut env = vec![];
        if own_server {
            env.push(self.env_group("deployment", &self.loaded.env.deployment));
        }
        let mut aux_nodes = 0;
        for (name, d) in cfg.auxiliary_deployments.iter().filter(|(_, d)| !d.shared_aux()) {
            let vars = self.loaded.env.auxiliary.get(name.as_str()).map(Vec::as_slice).unwrap_or(&[]);
            env.push(self.env_group(&aux_group_name(name), vars));
            aux_nodes += d.num_nodes.unwrap_or(1);
        }
        (env, aux_nodes)
    }

    /// A pack job running the tasks `tasks` (indexes, in order) and its
    /// resume link: the model's server and the auxiliary deployments that
    /// run in the job start once; each task is evaluated in its own folder,
    /// with its own container group (tasks whose variables are the same
    /// share one).
    pub fn pack(&mut self, id: &str, tasks: &[usize]) -> Option<(JobSpec, JobSpec)> {
        let cfg = self.cfg;
        let dir = self.node_dir(id);
        let deployed = cfg.deployment.kind != DeploymentType::None;
        let (mut env, aux_nodes) = self.server_groups(deployed);
        let mut eval_groups: Vec<(Vec<EnvVar>, EnvGroup)> = vec![];
        let mut members = vec![];
        for &index in tasks {
            let Some(rt) = self.loaded.tasks.get(index).filter(|t| t.index == index).cloned() else {
                self.errors.push(Diagnostic::error(None, format!("task {index} was not resolved")));
                return None;
            };
            let task_id = self.graph.task_ids.get(index).cloned().unwrap_or_else(|| format!("{id}.{index}"));
            let task_dir = self.node_dir(&task_id);
            let vars = self.eval_vars(index);
            let group = match eval_groups.iter().find(|(v, _)| *v == vars) {
                Some((_, g)) => g.clone(),
                None => {
                    let name = match eval_groups.len() {
                        0 => "evaluation".to_owned(),
                        n => format!("evaluation_{}", n + 1),
                    };
                    let g = self.env_group(&name, &vars);
                    eval_groups.push((vars.clone(), g.clone()));
                    g
                }
            };
            let mut task_env = env.clone();
            task_env.push(group);
            let eval = self.evaluation(&rt, index, &task_dir, &task_env, &vars);
            let result = ResultIdentity::new(&self.task_identity(&rt, &eval.client, &vars, index));
            members.push(PackMember { id: task_id, dir: task_dir, eval: Arc::new(eval), result });
        }
        let model = match deployed {
            true => Some(Box::new(self.server(&cfg.deployment, &keys(&["deployment"]), &env[0], None, 0, Some(&dir)))),
            false => None,
        };
        env.extend(eval_groups.into_iter().map(|(_, g)| g));
        let nodes = if deployed { cfg.execution.num_nodes } else { 1 } + aux_nodes;
        let result = ResultIdentity::new(&json!({
            "kind": "pack",
            "tasks": members.iter().map(|m| json!([m.id, m.result.hash()])).collect::<Vec<_>>(),
        }));
        let units: Vec<String> = members.iter().map(|m| m.id.clone()).collect();
        let work = Work::Pack(Arc::new(PackSpec { model, members }));
        let links = [
            (id.to_owned(), NodeKind::Pack { tasks: tasks.to_vec(), units: units.clone() }, Role::First),
            (format!("{id}.resume"), NodeKind::Resume { of: id.to_owned(), task: None }, Role::Resume),
        ];
        let [first, resume] = links.map(|(job_id, kind, role)| {
            let mut job = self.job(&job_id, id, kind, role, &dir, nodes, false, env.clone(), work.clone());
            job.result = result.clone();
            job
        });
        Some((first, resume))
    }

    /// What a task link runs: endpoint, auxiliary endpoints and harness step.
    fn evaluation(
        &mut self,
        rt: &ResolvedTask,
        index: usize,
        dir: &str,
        env: &[EnvGroup],
        eval_vars: &[EnvVar],
    ) -> EvalSpec {
        let cfg = self.cfg;
        let task = &cfg.evaluation.tasks[index];
        let deployed = cfg.deployment.kind != DeploymentType::None;
        let shared = deployed && cfg.execution.topology == Topology::Shared;
        let (endpoint_type, path) = endpoint_for(cfg, rt, task);
        let endpoint = if !deployed {
            Endpoint::External { url: path }
        } else {
            let path = self.url_path(&path, &keys(&["deployment", "endpoints", &endpoint_type]));
            if shared {
                let health = cfg.deployment.endpoints.as_ref().and_then(|x| x.health.clone());
                let health = health.map(|h| self.url_path(&h, &keys(&["deployment", "endpoints", "health"])));
                Endpoint::Shared { node: crate::graph::SERVER.to_owned(), health, wait: self.readiness_s(), path }
            } else {
                let server = self.server(&cfg.deployment, &keys(&["deployment"]), &env[0], None, 0, Some(dir));
                Endpoint::Own { server: Box::new(server), path }
            }
        };
        let mut next_node = if deployed && !shared { cfg.execution.num_nodes } else { 1 };
        let mut auxiliary = vec![];
        for (name, d) in &cfg.auxiliary_deployments {
            let eps = d.endpoints.clone().unwrap_or_default();
            let base = keys(&["auxiliary_deployments", name]);
            let at = |k: &str| [base.clone(), keys(&["endpoints", k])].concat();
            let placement = if d.shared_aux() {
                AuxPlacement::Shared {
                    node: format!("{}.{name}", crate::graph::SERVER),
                    health: eps.health.as_ref().map(|h| self.url_path(h, &at("health"))),
                    wait: self.readiness_s(),
                }
            } else {
                let group_name = aux_group_name(name);
                let Some(group) = env.iter().find(|g| g.name.as_str() == group_name) else { continue };
                let server = self.server(d, &base, group, Some(name), next_node, None);
                next_node += d.num_nodes.unwrap_or(1);
                AuxPlacement::Own(Box::new(server))
            };
            // Validation checked the prefix; without one there are no variables.
            let prefix = VarName::new(&d.env_prefix_of(name));
            let mut url_vars = vec![];
            let endpoints = [
                ("CHAT", &eps.chat),
                ("COMPLETIONS", &eps.completions),
                ("EMBEDDING", &eps.embedding),
                ("RANKING", &eps.ranking),
            ];
            for (ep, path) in endpoints {
                let (Some(p), Some(path)) = (&prefix, path) else { continue };
                // A variable name, a `_` and capitals: a variable name.
                let Some(var) = VarName::new(&format!("{}_{ep}_URL", p.as_str())) else { continue };
                url_vars.push((var, self.url_path(path, &at(&ep.to_ascii_lowercase()))));
            }
            let model_id = match (&prefix, &d.served_model_name) {
                (Some(p), Some(m)) => VarName::new(&format!("{}_MODEL_ID", p.as_str())).map(|v| (v, m.clone())),
                _ => None,
            };
            auxiliary.push(AuxEndpoint {
                name: name.clone(),
                placement,
                chat: self.url_path(eps.chat.as_deref().unwrap_or("/v1/chat/completions"), &at("chat")),
                completions: self.url_path(eps.completions.as_deref().unwrap_or("/v1/completions"), &at("completions")),
                url_vars,
                model_id,
            });
        }

        let mut pairs = vec![(format!("{dir}/artifacts"), "/results".to_owned(), keys(&["execution", "output_dir"]))];
        for (src, dst) in &cfg.execution.mounts.evaluation {
            pairs.push((src.clone(), dst.clone(), keys(&["execution", "mounts", "evaluation", src])));
        }
        if let Some(data) = &task.dataset_dir {
            let at = vec![Seg::Key("evaluation".into()), Seg::Key("tasks".into()), Seg::Index(index)];
            let target = task.dataset_mount_path.clone().unwrap_or_else(|| DATASET_TARGET.to_owned());
            pairs.push((data.clone(), target, key_then(&at, "dataset_dir")));
        }
        let eval_group = env.last().expect("the evaluation group");
        // The harness also sees where each auxiliary deployment is.
        let mut names = eval_group.names.clone();
        for aux in &auxiliary {
            let vars = aux.url_vars.iter().map(|(v, _)| v).chain(aux.model_id.as_ref().map(|(v, _)| v));
            for v in vars {
                if !names.iter().any(|n| n == v.as_str()) {
                    names.push(v.as_str().to_owned());
                }
            }
        }
        let container = Container {
            image: rt.info.container.clone(),
            mounts: self.mounts(pairs),
            mount_home: cfg.execution.mounts.mount_home,
            env: names,
        };
        let [pre, post] = pre_post(cfg, index);
        let client = ClientSpec {
            container,
            group: eval_group.name.clone(),
            pre: pre.map(str::to_owned).into_iter().collect(),
            post: post.map(str::to_owned).into_iter().collect(),
            run_config: run_config(cfg, rt, task, &endpoint_type, eval_vars),
        };
        EvalSpec { endpoint, auxiliary, client }
    }

    /// What determines a task's result.
    fn task_identity(&self, rt: &ResolvedTask, client: &ClientSpec, eval_vars: &[EnvVar], index: usize) -> J {
        let cfg = self.cfg;
        let deployed = cfg.deployment.kind != DeploymentType::None;
        let own_server = deployed && cfg.execution.topology != Topology::Shared;
        let [pre, post] = pre_post(cfg, index);
        let mut identity = json!({
            "kind": "task",
            "task": rt.info.qualified(),
            "container": rt.info.container,
            "run_config": client.run_config,
            "deployment": if deployed { model_identity(&cfg.deployment) } else { json!({"url": cfg.target.api_endpoint.url}) },
            "env": env_identity(eval_vars),
            "server_env": if own_server { env_identity(&self.loaded.env.deployment) } else { J::Null },
            // As one-element lists: the identity of every existing result stays the same.
            "pre": [pre], "post": [post],
        });
        // Only when set, so that the identity of every other task stays the same.
        if let Some(data) = &cfg.evaluation.tasks[index].dataset_dir {
            identity["dataset_dir"] = json!(data);
        }
        // A judge's model decides scores: another judge reruns the task.
        if !cfg.auxiliary_deployments.is_empty() {
            let aux: serde_json::Map<String, J> =
                cfg.auxiliary_deployments.iter().map(|(n, d)| (n.clone(), model_identity(d))).collect();
            identity["auxiliary"] = J::Object(aux);
        }
        identity
    }
}

/// Where a task's `dataset_dir` is mounted by default.
const DATASET_TARGET: &str = "/datasets";

/// The container path of a task's dataset (`dataset_mount_path` without its flags).
fn dataset_target(mount_path: Option<&str>) -> &str {
    crate::config::mounts::split_target(mount_path.unwrap_or(DATASET_TARGET)).0
}

/// A task's commands before and after the harness: the task's own, else
/// the evaluation's (as in the launcher, a task's replaces the evaluation's;
/// an empty one counts as unset).
fn pre_post(cfg: &Config, index: usize) -> [Option<&str>; 2] {
    let task = &cfg.evaluation.tasks[index];
    [
        pick(task.pre_cmd.as_deref(), cfg.evaluation.pre_cmd.as_deref()),
        pick(task.post_cmd.as_deref(), cfg.evaluation.post_cmd.as_deref()),
    ]
}

/// `own` unless it is unset or empty, else `all` (likewise).
fn pick<'a>(own: Option<&'a str>, all: Option<&'a str>) -> Option<&'a str> {
    own.filter(|c| !c.is_empty()).or(all.filter(|c| !c.is_empty()))
}

/// The container group of an auxiliary deployment.
fn aux_group_name(name: &str) -> String {
    let clean: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    format!("aux_{clean}")
}
