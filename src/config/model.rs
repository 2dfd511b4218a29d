//! The typed config: what a composed, interpolated config file means.
//!
//! These types are the single source of truth for three things: how a config
//! is deserialized, the JSON Schema (`evalctl schema`, doc comments become
//! descriptions editors show on hover) and the config reference. Sections the
//! launcher is strict about deny unknown keys, so typos are caught; sections
//! it passes through to other tools (`nemo_evaluator_config`,
//! `sbatch_extra_flags`, `export`, adapter settings) stay open.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use super::time::{Duration, SLURM_TIME_PATTERN, SlurmTime, TimeError};

/// A free-form mapping passed through to another tool unchanged.
pub type Open = serde_json::Map<String, serde_json::Value>;

/// Schema of `nemo_evaluator_config`: open, except that the sections evalctl
/// fills in (`config`, `target.api_endpoint`) and the ones it reads
/// (`config.params`, `adapter_config`) must be mappings, so a list or a
/// scalar there is an error at its line rather than a run config the harness
/// refuses.
fn harness_settings_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": ["object", "null"],
        "additionalProperties": true,
        "properties": {
            "config": {
                "type": "object",
                "properties": { "params": { "type": "object" } }
            },
            "target": {
                "type": "object",
                "properties": {
                    "api_endpoint": {
                        "type": "object",
                        "properties": { "adapter_config": { "type": "object" } }
                    }
                }
            }
        }
    })
}

/// An evalctl config: one model, how it is served, which benchmarks, which cluster.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Hydra-style defaults list: config groups merged before this file, in
    /// order, e.g. `[{execution: slurm/default}, {deployment: vllm}, _self_]`.
    /// Built-in groups: `execution: slurm/default | local-slurm`, `deployment:
    /// vllm | vllm_ray | sglang | trtllm | nim | generic | none`; a folder named
    /// after the group next to the config adds or overrides options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<Vec<DefaultsEntry>>,
    /// Stack name: the directory under `execution.output_dir` that holds this
    /// config's jobs, state and lock. Defaults to the config file's stem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Environment variables for every container (deployment and evaluation).
    /// Values: `host:VAR` (read where evalctl runs, kept secret), `lit:VALUE`
    /// (a literal), `runtime:VAR` (read on the compute node).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub env_vars: IndexMap<String, EnvValue>,
    /// Where and how the jobs run: the Slurm cluster and its resources.
    pub execution: Execution,
    /// How the model is served for the evaluation (`type: none` evaluates an
    /// existing endpoint given in `target.api_endpoint`).
    #[serde(default)]
    pub deployment: Deployment,
    /// Extra model servers the evaluation uses, e.g. an LLM judge, by name.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub auxiliary_deployments: IndexMap<String, Deployment>,
    /// The endpoint under evaluation; filled in from the deployment when one is deployed.
    #[serde(default)]
    pub target: Target,
    /// The benchmarks to run and their settings.
    pub evaluation: Evaluation,
    /// Result exporter settings by destination, as the launcher's. evalctl
    /// exports to `mlflow` (`evalctl export`, `execution.auto_export`):
    /// `tracking_uri`, `experiment_name` (default: the stack name), `tags`,
    /// `description`, `log_metrics` (parts of metric names to keep),
    /// `log_artifacts` (upload each task's `results.yml`, default true),
    /// `extra_metadata` (params); other keys are warned about or refused at
    /// their line. Other destinations (`wandb`, `gsheets`, `local`) are unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<Open>,
}

/// One entry of the `defaults` list: `_self_`, a group name (inside a group
/// file), or `{group: option}` / `{group/option@package: null}`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum DefaultsEntry {
    /// `_self_`, or an option of the current group inside a group file.
    Name(String),
    /// `group: option`; the key may carry `@package` to merge elsewhere.
    Group(IndexMap<String, Option<String>>),
}

/// Cluster, account, resources and run-time policy.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Execution {
    /// Executor type; only `slurm` exists.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<ExecutionType>,
    /// Slurm login node to reach over SSH. `localhost` or unset: run Slurm
    /// commands directly, without SSH. Hosts from `~/.ssh/config` work.
    #[serde(default)]
    pub hostname: Option<String>,
    /// SSH user name; defaults to `${oc.env:USER}`, resolved only when connecting.
    #[serde(default)]
    pub username: Option<String>,
    /// Slurm account charged for the jobs (`--account`).
    #[serde(default)]
    pub account: Option<String>,
    /// Absolute path on the cluster's shared file system, visible from the
    /// login node and every compute node; jobs, logs and results go below it.
    pub output_dir: String,
    /// Slurm partition (`--partition`). Default: `batch`.
    #[serde(default)]
    pub partition: Option<String>,
    /// Quality of service (`--qos`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos: Option<String>,
    /// Nodes per job (`--nodes`); split evenly between `num_instances`. Default: 1.
    #[serde(default = "one")]
    #[schemars(range(min = 1))]
    pub num_nodes: u32,
    /// Independent model server instances per job (load-balanced). Default: 1.
    #[serde(default = "one")]
    #[schemars(range(min = 1))]
    pub num_instances: u32,
    /// Tasks per node (`--ntasks-per-node`). Default: 1.
    #[serde(default = "one")]
    #[schemars(range(min = 1))]
    pub ntasks_per_node: u32,
    /// Generic resources (`--gres`), e.g. `gpu:8`; null omits the flag. Default: `gpu:8`.
    #[serde(default)]
    pub gres: Option<String>,
    /// GPUs per node (`--gpus-per-node`); null omits the flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub gpus_per_node: Option<u32>,
    /// Time limit of one job (`--time`): `MM`, `MM:SS`, `HH:MM:SS`, `D-HH`,
    /// `D-HH:MM` or `D-HH:MM:SS`. Unquoted `10:00:00` means ten hours. Default: `01:00:00`.
    #[serde(default = "default_walltime")]
    pub walltime: SlurmTime,
    /// Total run time allowed across all auto-resume links of a task; null
    /// means unlimited. Default: `120:00:00`.
    #[serde(default)]
    pub max_walltime: Option<SlurmTime>,
    /// How long to wait for the model server to become healthy; null: the
    /// job's walltime. Seconds, or a Slurm time string.
    #[serde(default)]
    pub endpoint_readiness_timeout: Option<Duration>,
    /// Label of the jobs: when set, every job's name starts with it,
    /// `<subproject>.evalctl:<stack>/<unit>/<role>@<hashes>` (the launcher
    /// puts it in its job names too). Letters, digits, `.`, `_` and `-`,
    /// starting with a letter or digit; every job name must fit the 255
    /// characters Slurm's accounting keeps. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subproject: Option<String>,
    /// Every job's `--comment`, verbatim (e.g. the JSON of a site's idle-GPU
    /// reaper): any text but control characters, at most 1024 bytes. Given
    /// on sbatch's command line; evalctl keeps its ownership tag in the job
    /// name. Default: none (no `--comment`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sbatch_comment: Option<String>,
    /// Extra `#SBATCH` flags: `{flag: value}`; `true` writes a bare flag,
    /// `false` or null omits it. Default: `{exclusive: true}`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub sbatch_extra_flags: IndexMap<String, serde_json::Value>,
    /// Slurm settings of the deployment step.
    #[serde(default)]
    pub deployment: ExecutionDeployment,
    /// Bind mounts into the containers, `{host_path: container_path}`.
    #[serde(default)]
    pub mounts: Mounts,
    /// Older launcher dialect: environment of the deployment and evaluation
    /// containers, `{NAME: value}`. Values are treated as secrets. Prefer the
    /// top-level, `deployment.env_vars` and `evaluation.env_vars` forms
    /// (`evalctl migrate` rewrites them).
    #[serde(default)]
    pub env_vars: ExecutionEnvVars,
    /// Export each task's results when it completes: `[mlflow]` or
    /// `{destinations: [mlflow]}` (settings in `export.mlflow`). evalctl
    /// exports from the machine it runs on, not in a cluster job:
    /// `apply --wait` exports each task as it completes; without `--wait`,
    /// `evalctl export CONFIG` does. Other destinations are refused; the
    /// launcher's export-job settings (`export_image`, ...) are unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_export: Option<AutoExportSetting>,
    /// Partition of the launcher's export jobs. evalctl exports from the
    /// machine it runs on, so it runs no export jobs: accepted and unused
    /// (a warning says so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_partition: Option<String>,
    /// Give the evaluation (harness) container the job's GPUs, for benchmarks
    /// that compile or run CUDA code: `true` sets `NVIDIA_VISIBLE_DEVICES=all`
    /// in it, a string (`"0"`, `"0,1"`, `all`) sets that value. In the
    /// `shared` topology the task jobs then ask for GPUs too. Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation_gpu_visible: Option<GpuVisible>,
    /// Load balancer in front of several instances (`num_instances` > 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<Proxy>,
    /// `per_task`: every evaluation job starts its own model server (the
    /// launcher's behaviour). `shared`: one deployment job serves every task,
    /// loading the model once. `packed`: each job starts the model server
    /// once and runs `tasks_per_job` tasks one after another (fewer jobs and
    /// model loads; each task keeps its own status and results). Default:
    /// `per_task`.
    #[serde(default)]
    pub topology: Topology,
    /// Most of the stack's task jobs (or pack jobs) running at once: each
    /// waits for the chain of the one `max_concurrent` places before it to
    /// end (Slurm dependencies, kept across resume links), so a stack can
    /// be polite on a shared partition. Default: none (no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_concurrent: Option<u32>,
    /// Submit the first links of the task (or pack) jobs as Slurm job
    /// arrays: one `sbatch` per group of jobs that share their `#SBATCH`
    /// settings and dependencies, instead of one per job. Each element
    /// queues its own resume link as it starts, so a task holds one queued
    /// job instead of two. With `max_concurrent`, that is each array's
    /// throttle (`--array=...%M`), which counts first links only. Default:
    /// false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub job_arrays: bool,
    /// Tasks one job runs in the `packed` topology, in config order.
    /// Default: 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub tasks_per_job: Option<u32>,
    /// How many times `apply` submits a task that failed or was cancelled
    /// before it stops retrying. Default: 3.
    #[serde(default = "default_attempts")]
    #[schemars(range(min = 1))]
    pub max_attempts: u32,
    /// Most auto-resume links (jobs) one attempt may use. Default: derived
    /// from `max_walltime`: the links it takes at full `walltime`, plus 20
    /// for links cut short (preemption, node failure); with `max_walltime:
    /// null`, unlimited (the launcher has no link limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_resume_links: Option<u32>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionType {
    /// Run on a Slurm cluster.
    #[default]
    Slurm,
}

/// Job topology.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Topology {
    /// Each evaluation job starts its own model server.
    #[default]
    PerTask,
    /// One deployment job serves every evaluation job.
    Shared,
    /// Each job serves the model for `tasks_per_job` tasks it runs in turn.
    Packed,
}

/// Tasks a `packed` job runs when `tasks_per_job` is not set.
pub const DEFAULT_TASKS_PER_JOB: u32 = 10;

impl Execution {
    /// Tasks per job: `tasks_per_job` in the `packed` topology (at least
    /// one), one in the others.
    pub fn tasks_per_job(&self) -> usize {
        match self.topology {
            Topology::Packed => self.tasks_per_job.unwrap_or(DEFAULT_TASKS_PER_JOB).max(1) as usize,
            _ => 1,
        }
    }
}

impl Topology {
    /// The config's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Topology::PerTask => "per_task",
            Topology::Shared => "shared",
            Topology::Packed => "packed",
        }
    }
}

/// Slurm settings of the model server step.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecutionDeployment {
    /// `srun` tasks of the server across all instances. Default: `num_nodes`.
    #[serde(default)]
    pub n_tasks: Option<u32>,
    /// MPI plugin of every server step the job starts, the model's and the
    /// auxiliary deployments' (`srun --mpi`: `pmix`, `pmi2`, `none`, ...).
    /// Default: the cluster's (`MpiDefault`). The launcher always uses
    /// `pmix`; set it where a server's ranks find each other through PMIx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mpi: Option<String>,
}

/// Bind mounts, `{host_path: container_path}` (append `:ro` to the container
/// path for read-only). Paths cannot hold `,` or `:` (they separate mounts
/// and their fields); flags after the container path's `:` are one word.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Mounts {
    /// Mounts of the model server container.
    #[serde(default)]
    pub deployment: IndexMap<String, String>,
    /// Mounts of the evaluation (harness) containers.
    #[serde(default)]
    pub evaluation: IndexMap<String, String>,
    /// Mounts of auxiliary servers, by auxiliary deployment name.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub auxiliary: IndexMap<String, IndexMap<String, String>>,
    /// Mount the user's home directory into the containers. Default: true.
    #[serde(default = "yes")]
    pub mount_home: bool,
}

impl Default for Mounts {
    fn default() -> Mounts {
        Mounts {
            deployment: IndexMap::new(),
            evaluation: IndexMap::new(),
            auxiliary: IndexMap::new(),
            mount_home: true,
        }
    }
}

/// Older dialect environment, per container group.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecutionEnvVars {
    /// `{NAME: value}` for the model server container.
    #[serde(default)]
    pub deployment: IndexMap<String, EnvValue>,
    /// `{NAME: value}` for the evaluation containers.
    #[serde(default)]
    pub evaluation: IndexMap<String, EnvValue>,
}

/// Launcher auto-export: a list of destinations, or its settings.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum AutoExportSetting {
    /// Exporters to run after each task: `[mlflow]`.
    Destinations(Vec<String>),
    /// Settings with `destinations`.
    Settings(AutoExport),
}

impl AutoExportSetting {
    /// The exporters named.
    pub fn destinations(&self) -> &[String] {
        match self {
            AutoExportSetting::Destinations(d) => d,
            AutoExportSetting::Settings(s) => &s.destinations,
        }
    }
}

/// Launcher auto-export settings.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
pub struct AutoExport {
    /// Exporters to run after each task: `mlflow`.
    #[serde(default)]
    pub destinations: Vec<String>,
    /// The launcher's export-job settings (`launcher_install_cmd`,
    /// `export_image`, `export_mounts`, ...): unused, evalctl runs no
    /// export job (a warning says so).
    #[serde(flatten)]
    pub extra: Open,
}

/// `execution.evaluation_gpu_visible`: a switch or a device list.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum GpuVisible {
    /// `true`: every GPU of the node (`NVIDIA_VISIBLE_DEVICES=all`).
    Switch(bool),
    /// The value of `NVIDIA_VISIBLE_DEVICES`, e.g. `"0,1"`; empty: none.
    Devices(String),
}

impl GpuVisible {
    /// The value of `NVIDIA_VISIBLE_DEVICES` in the harness container, if any.
    pub fn devices(&self) -> Option<&str> {
        match self {
            GpuVisible::Switch(true) => Some("all"),
            GpuVisible::Switch(false) => None,
            GpuVisible::Devices(d) if d.is_empty() => None,
            GpuVisible::Devices(d) => Some(d),
        }
    }
}

/// Load balancer settings.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Proxy {
    /// Proxy kind; only `haproxy` exists. Default: `haproxy`.
    #[serde(default, rename = "type")]
    pub kind: Option<ProxyType>,
    /// Container image of the proxy. Default: `haproxy:latest`.
    #[serde(default)]
    pub image: Option<String>,
    /// Proxy settings.
    #[serde(default)]
    pub config: ProxyConfig,
}

/// Load balancer kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProxyType {
    /// HAProxy, in its container.
    #[default]
    Haproxy,
}

/// HAProxy settings.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Port the load balancer listens on. Default: 5009.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub haproxy_port: Option<u32>,
    /// Path at which the load balancer checks each instance. evalctl checks
    /// instances at the deployment's `endpoints.health`, so a different path
    /// is refused. Default: `endpoints.health`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_path: Option<String>,
    /// HTTP status of a healthy instance. Only 200 is accepted (evalctl's
    /// checks take an instance as healthy when it answers 200). Default: 200.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_status: Option<u32>,
}

/// A model server.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    /// Serving framework. `none`: nothing is deployed.
    #[serde(default, rename = "type")]
    pub kind: DeploymentType,
    /// Container image of the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Absolute path of the model on the cluster, mounted read-only at `/checkpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_path: Option<String>,
    /// Hugging Face model id the server downloads (instead of `checkpoint_path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hf_model_handle: Option<String>,
    /// Absolute path of a cache folder on the cluster, mounted read-write at
    /// `/cache` in the server container (e.g. for downloaded weights or
    /// compiled engines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_path: Option<String>,
    /// Model name the server exposes and the evaluation requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_model_name: Option<String>,
    /// Port the server listens on. Default: 8000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u32>,
    /// Tensor parallelism (GPUs per model replica). This and the other
    /// server settings below (parallelism, memory, `extra_args`,
    /// `distributed_executor_backend`) are inputs to `command`: they take
    /// effect where the command refers to them, as the built-in groups' do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub tensor_parallel_size: Option<u32>,
    /// Pipeline parallelism.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub pipeline_parallel_size: Option<u32>,
    /// Data parallelism (model replicas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub data_parallel_size: Option<u32>,
    /// Data-parallel replicas per node (multi-node data parallelism).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub data_parallel_size_local: Option<u32>,
    /// Fraction of GPU memory the server may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub gpu_memory_utilization: Option<f64>,
    /// Extra command-line arguments appended to the server command, as shell
    /// words (quotes group words); each word reaches the server as one
    /// argument, never as shell syntax.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_args: Option<String>,
    /// Environment of the server container (values: `host:`, `lit:`, `runtime:`).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub env_vars: IndexMap<String, EnvValue>,
    /// Paths of the server's HTTP endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Endpoints>,
    /// The command that starts the server inside its container: shell text,
    /// run with `bash -c`. Values interpolated into it (`${...}`) are inserted
    /// as quoted words, except other shell fields and `extra_args`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The plain server command, without multi-node wrapping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_command: Option<String>,
    /// vLLM distributed executor backend (`ray`, `mp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distributed_executor_backend: Option<String>,
    /// Seconds to wait for the server when it has no health endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_timeout: Option<u64>,
    /// Nodes of an auxiliary deployment (the main deployment's are
    /// `execution.num_nodes`; setting this there is refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub num_nodes: Option<u32>,
    /// Instances of an auxiliary deployment (the main deployment's are
    /// `execution.num_instances`; setting this there is refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub num_instances: Option<u32>,
    /// `srun` tasks of an auxiliary deployment's server across its instances.
    /// Default: its `num_nodes` (the model's is `execution.deployment.n_tasks`;
    /// setting this there is refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub n_tasks: Option<u32>,
    /// Commands run in the server container before the server starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_cmd: Option<String>,
    /// Prefix of the variables that describe an auxiliary deployment to the
    /// harness (`<PREFIX>_CHAT_URL`, `<PREFIX>_MODEL_ID`, ...) and to its own
    /// server (`<PREFIX>_MASTER_IP`, `<PREFIX>_ALL_NODE_IPS`). Default: the
    /// deployment's name in capitals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_prefix: Option<String>,
    /// Where an auxiliary deployment runs. `per_task` (default, as in the
    /// launcher): inside every task's job, on nodes of its own added to the
    /// job's allocation. `shared`: one job of its own serves every task of
    /// the stack; tasks wait for it up to `endpoint_readiness_timeout`, it
    /// resumes like a task when cut short, and a task fails at once (without
    /// resuming) when it is gone. The model's is `execution.topology`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<Topology>,
}

impl Deployment {
    /// Whether an auxiliary deployment runs as one job shared by the tasks.
    pub fn shared_aux(&self) -> bool {
        self.topology == Some(Topology::Shared)
    }

    /// The variable prefix of an auxiliary deployment named `name`.
    pub fn env_prefix_of(&self, name: &str) -> String {
        self.env_prefix.clone().unwrap_or_else(|| name.to_ascii_uppercase())
    }
}

/// Serving framework of a deployment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentType {
    /// vLLM OpenAI-compatible server.
    Vllm,
    /// SGLang server.
    Sglang,
    /// TensorRT-LLM `trtllm-serve`.
    Trtllm,
    /// NVIDIA NIM container (configured by environment).
    Nim,
    /// Any OpenAI-compatible server started by `command`.
    Generic,
    /// Nothing deployed: evaluate `target.api_endpoint`.
    #[default]
    None,
}

impl DeploymentType {
    /// The config's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentType::Vllm => "vllm",
            DeploymentType::Sglang => "sglang",
            DeploymentType::Trtllm => "trtllm",
            DeploymentType::Nim => "nim",
            DeploymentType::Generic => "generic",
            DeploymentType::None => "none",
        }
    }
}

/// HTTP paths of a model server: each `/` followed by letters, digits,
/// `-._~!$&()*+,;=:@/` and `%XX` escapes (percent-encode anything else).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Endpoints {
    /// Chat completions path.
    #[serde(default)]
    pub chat: Option<String>,
    /// Text completions path.
    #[serde(default)]
    pub completions: Option<String>,
    /// Health check path (HTTP 200 when ready); null: wait `server_timeout`.
    #[serde(default)]
    pub health: Option<String>,
    /// Embeddings path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<String>,
    /// Ranking path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranking: Option<String>,
}

/// The endpoint under evaluation.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Endpoint settings.
    #[serde(default)]
    pub api_endpoint: ApiEndpoint,
}

/// An OpenAI-compatible endpoint.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[schemars(extend("x-other-keys" = "Other keys are not endpoint settings of the harness: they are left out of its run config, with a warning."))]
pub struct ApiEndpoint {
    /// Full `http://` or `https://` URL, e.g. `https://host/v1/chat/completions`,
    /// of RFC 3986 characters only (percent-encode spaces, quotes and the
    /// like). Set automatically when a model is deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Model name sent in requests. Default: the deployment's `served_model_name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    /// Name of the environment variable holding the API key (read where evalctl runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_name: Option<String>,
    /// Endpoint type: `chat`, `completions`, `completions_logprob`, `embedding`
    /// or `vlm` (which the harness reads as `chat`). Default: from the task.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Whether the harness streams responses. Default: the harness's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Adapter (interceptor) settings; passed to the harness unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter_config: Option<Open>,
    /// Any other key (accepted for configs the launcher accepts, which
    /// ignores them too): not written to the run config; `validate` warns.
    #[serde(flatten)]
    pub extra: Open,
}

/// The benchmarks.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Evaluation {
    /// Settings for every task, merged under each task's own
    /// `nemo_evaluator_config` (`config.params`, `target.api_endpoint.adapter_config`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "harness_settings_schema")]
    pub nemo_evaluator_config: Option<Open>,
    /// Environment of every evaluation container. Values: `host:VAR`,
    /// `lit:VALUE`, `runtime:VAR`; a bare value is the name of a variable
    /// read where evalctl runs (older dialect).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub env_vars: IndexMap<String, EnvValue>,
    /// Shell commands run in every evaluation container before the harness.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_cmd: Option<String>,
    /// Shell commands run in every evaluation container after the harness.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_cmd: Option<String>,
    /// The benchmarks, one job (or resume chain) each.
    pub tasks: Vec<Task>,
}

/// One benchmark run.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Task {
    /// Task name from `evalctl tasks`: bare (`gsm8k`) or qualified by harness
    /// (`lm-evaluation-harness.ifeval`) when several harnesses have it.
    pub name: String,
    /// Node id of the task (the job's directory and identity). Default: the
    /// name; repeated names get `.1`, `.2`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Harness container image, overriding the catalog's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Endpoint type to evaluate (as `target.api_endpoint.type`). Default: the catalog's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_type: Option<String>,
    /// Environment of this task's container (values as in `evaluation.env_vars`).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub env_vars: IndexMap<String, EnvValue>,
    /// Task settings merged over `evaluation.nemo_evaluator_config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "harness_settings_schema")]
    pub nemo_evaluator_config: Option<Open>,
    /// Absolute path of a dataset folder on the cluster, mounted in the
    /// harness container at `dataset_mount_path`; `NEMO_EVALUATOR_DATASET_DIR`
    /// is set to that path there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_dir: Option<String>,
    /// Where `dataset_dir` is mounted in the harness container (append `:ro`
    /// for read-only). Default: `/datasets`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_mount_path: Option<String>,
    /// Shell commands run in the container before the harness.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_cmd: Option<String>,
    /// Shell commands run in the container after the harness.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_cmd: Option<String>,
}

/// An environment variable value: a string (optionally prefixed `host:`,
/// `lit:` or `runtime:`), a number or a boolean.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum EnvValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl std::fmt::Display for EnvValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnvValue::Str(s) => f.write_str(s),
            EnvValue::Int(i) => write!(f, "{i}"),
            EnvValue::Float(x) => write!(f, "{x}"),
            EnvValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}
fn default_attempts() -> u32 {
    3
}
pub(super) fn default_walltime() -> SlurmTime {
    SlurmTime::Text("01:00:00".into())
}
