//! What a job is, as plain data: the lowering step (`lower`) decides every
//! value here from the config, and the script step (`script`) only spells
//! it as bash. Nothing in this module knows about shell text.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value as J;

use super::sbatch::{FlagName, SbatchValue};
use crate::config::env::EnvVar;
use crate::config::urls::UrlPath;
use crate::graph::NodeKind;
use crate::shell::VarName;

/// The part a job plays in its unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The first link of a task's chain.
    First,
    /// A task's resume link, queued to run if the previous link was cut short.
    Resume,
    /// A deployment job serving a model to the stack's tasks.
    Server,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::First => "first",
            Role::Resume => "resume",
            Role::Server => "server",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One job: how it is scheduled, what its script sets up, and what it runs.
#[derive(Clone, Debug)]
pub struct JobSpec {
    /// Node id in the graph.
    pub id: String,
    pub kind: NodeKind,
    pub role: Role,
    /// The unit the job belongs to: its task, or itself for a deployment.
    pub unit: String,
    /// Directory of the job on the cluster.
    pub dir: String,
    /// File name of the script inside `dir`.
    pub script_name: &'static str,
    /// The job's name as rendered: its ownership tag (`crate::remote::layout`).
    pub job_name: String,
    /// The name of the resume link the job queues: its own for a resume
    /// link, the resume link's for a first link (one submitted as an
    /// element of a job array queues its own).
    pub next_name: String,
    /// The job's `--comment`, verbatim: passed on sbatch's command line
    /// (by apply, and by the runtime for the resume links it queues), never
    /// in an `#SBATCH` line, which could not carry every value.
    pub comment: Option<String>,
    pub resources: Resources,
    pub sbatch: Sbatch,
    pub context: Context,
    /// Container groups, in the order their variable functions are written.
    pub env: Vec<EnvGroup>,
    pub work: Work,
    /// What determines the job's result (hashed into its result hash).
    pub result: super::identity::ResultIdentity,
}

/// What a job asks of the scheduler.
#[derive(Clone, Debug)]
pub struct Resources {
    pub nodes: u32,
    pub walltime: SbatchValue,
    pub ntasks_per_node: u32,
    /// `None` for a job that only runs a client (no GPUs for it).
    pub gres: Option<SbatchValue>,
    pub gpus_per_node: Option<u32>,
}

impl Resources {
    /// GPUs the job holds: nodes times `gpus_per_node`, else times the
    /// count of a `gpu` `gres` (`gpu:8`, `gpu:a100:8`); 0 without either.
    pub fn gpus(&self) -> u32 {
        let per_node = self.gpus_per_node.or_else(|| {
            let gres = self.gres.as_ref()?.to_string();
            let gres = gres.trim_matches('"');
            gres.starts_with("gpu").then(|| gres.rsplit(':').next()?.parse().ok()).flatten()
        });
        per_node.unwrap_or(0).saturating_mul(self.nodes)
    }
}

/// The other `#SBATCH` settings of a job.
#[derive(Clone, Debug)]
pub struct Sbatch {
    pub job_name: SbatchValue,
    pub account: Option<SbatchValue>,
    pub partition: Option<SbatchValue>,
    pub qos: Option<SbatchValue>,
    /// The user's extra flags: a switch (`None`) or a flag with a value.
    pub extra: Vec<(FlagName, Option<SbatchValue>)>,
    pub output: SbatchValue,
    /// A resume link: Slurm removes it when its predecessor succeeded.
    pub kill_on_invalid_dep: bool,
    /// Seconds before the time limit at which the job gets USR1.
    pub signal_lead: u64,
}

/// What every script exports before its body (`EVALCTL_*`).
#[derive(Clone, Debug)]
pub struct Context {
    pub stack: String,
    /// The job's unit node (a resume link names its task).
    pub node: String,
    pub stack_dir: String,
    pub walltime_s: u64,
    /// 0 without a limit.
    pub max_walltime_s: u64,
    pub max_links: u32,
}

/// A container group: the variables one container sees.
#[derive(Clone, Debug)]
pub struct EnvGroup {
    /// Names the secrets file (`secrets/<name>.env`) and the group's function.
    pub name: VarName,
    /// Variables the script sets itself, in order.
    pub public: Vec<(VarName, PublicValue)>,
    /// Variables whose values `apply` writes to the secrets file.
    pub secret: Vec<EnvVar>,
    /// Every variable the container is given (`--container-env`), in order.
    pub names: Vec<String>,
}

/// Where the value of a variable the script sets comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicValue {
    /// Written in the config.
    Literal(String),
    /// A variable of the compute node.
    Runtime(VarName),
}

/// A bind mount into a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub source: String,
    pub target: String,
    /// Mount flags (`ro`, ...).
    pub flags: Option<String>,
}

/// A Pyxis container of a job step.
#[derive(Clone, Debug)]
pub struct Container {
    pub image: String,
    pub mounts: Vec<Mount>,
    pub mount_home: bool,
    /// The variables it is given (`--container-env`).
    pub env: Vec<String>,
}

/// What a job runs.
#[derive(Clone, Debug)]
pub enum Work {
    /// A deployment job: serves a model until the stack's tasks are done.
    Serve { server: Box<ServerSpec>, tasks: Vec<String> },
    /// A task link: one evaluation against an endpoint.
    Evaluate(Arc<EvalSpec>),
    /// A pack link: serve the model once, run the pack's tasks in turn.
    Pack(Arc<PackSpec>),
}

/// A pack job's work (the `packed` topology): the servers it starts once,
/// and its tasks, each evaluated in its own folder.
#[derive(Clone, Debug)]
pub struct PackSpec {
    /// The model's server (`None` when nothing is deployed).
    pub model: Option<Box<ServerSpec>>,
    pub members: Vec<PackMember>,
}

/// A task of a pack.
#[derive(Clone, Debug)]
pub struct PackMember {
    /// The task's node id: its unit and folder name.
    pub id: String,
    /// The task's folder (status, chain, artifacts, logs).
    pub dir: String,
    /// Its evaluation; the auxiliary deployments are the same for every
    /// task, and the model's server is the pack's.
    pub eval: Arc<EvalSpec>,
    /// What determines the task's result.
    pub result: super::identity::ResultIdentity,
}

/// A model server: instances started together, behind a proxy when several.
#[derive(Clone, Debug)]
pub struct ServerSpec {
    /// Names the server in its job: `model`, or `aux-<name>`.
    pub key: String,
    /// Index of its first node in the job's allocation.
    pub first_node: u32,
    /// An auxiliary deployment's variable prefix (`<PREFIX>_MASTER_IP`, ...).
    pub prefix: Option<VarName>,
    /// The container group its variables come from.
    pub group: VarName,
    /// `srun --mpi` of its steps; `None`: the cluster's default.
    pub mpi: Option<String>,
    pub container: Container,
    pub cmd: String,
    pub instances: u32,
    pub nodes_per_instance: u32,
    pub tasks_per_instance: u32,
    pub port: u32,
    pub health: Option<UrlPath>,
    /// Seconds to wait for health (or, without a health path, to wait blindly).
    pub wait: u64,
    pub proxy_port: u64,
    pub proxy_image: String,
}

/// A task's evaluation: the same in both links of its chain.
#[derive(Clone, Debug)]
pub struct EvalSpec {
    pub endpoint: Endpoint,
    /// Auxiliary deployments whose endpoints the run config refers to.
    pub auxiliary: Vec<AuxEndpoint>,
    pub client: ClientSpec,
}

/// The endpoint a task evaluates.
#[derive(Clone, Debug)]
pub enum Endpoint {
    /// A server the job starts itself; `path` is appended to its URL.
    Own { server: Box<ServerSpec>, path: UrlPath },
    /// The stack's shared deployment job, found by its node id.
    Shared { node: String, health: Option<UrlPath>, wait: u64, path: UrlPath },
    /// An endpoint outside the stack.
    External { url: String },
}

/// An auxiliary deployment (a judge) as a task uses it.
#[derive(Clone, Debug)]
pub struct AuxEndpoint {
    pub name: String,
    pub placement: AuxPlacement,
    pub chat: UrlPath,
    pub completions: UrlPath,
    /// The harness's `<PREFIX>_<ENDPOINT>_URL` variables: name and path
    /// (every endpoint of the deployment but `health`).
    pub url_vars: Vec<(VarName, UrlPath)>,
    /// `<PREFIX>_MODEL_ID` and the served model name.
    pub model_id: Option<(VarName, String)>,
}

/// Where an auxiliary deployment runs.
#[derive(Clone, Debug)]
pub enum AuxPlacement {
    /// Inside the task's job, on nodes of its own.
    Own(Box<ServerSpec>),
    /// A deployment job of the stack, found by its node id.
    Shared { node: String, health: Option<UrlPath>, wait: u64 },
}

/// The evaluation harness's step.
#[derive(Clone, Debug)]
pub struct ClientSpec {
    pub container: Container,
    /// The container group whose variables it is given.
    pub group: VarName,
    /// Commands run before and after the harness, in order.
    pub pre: Vec<String>,
    pub post: Vec<String>,
    pub run_config: J,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpus_a_job_holds() {
        let r = |nodes, gres: Option<&str>, per_node| Resources {
            nodes,
            walltime: SbatchValue::from(60u32),
            ntasks_per_node: 1,
            gres: gres.map(|g| SbatchValue::new(g).unwrap()),
            gpus_per_node: per_node,
        };
        assert_eq!(r(2, Some("gpu:8"), None).gpus(), 16);
        assert_eq!(r(1, Some("gpu:a100:4"), None).gpus(), 4);
        assert_eq!(r(3, Some("gpu:8"), Some(2)).gpus(), 6, "gpus_per_node first");
        assert_eq!(r(1, Some("shard:2"), None).gpus(), 0);
        assert_eq!(r(1, Some("gpu"), None).gpus(), 0, "a count Slurm defaults is not guessed");
        assert_eq!(r(4, None, None).gpus(), 0);
    }
}
