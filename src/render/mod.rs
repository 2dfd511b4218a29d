//! Renders one sbatch script per job of the graph.
//!
//! Scripts are byte-identical for the same config: no timestamps, random ids
//! or hash-map order, so a diff between two renders shows only real change.
//! Every user value reaches the shell through the quoting for the context it
//! lands in: `crate::shell` for bash words, [`sbatch`] for `#SBATCH` lines,
//! [`shell`] for mount paths and output patterns. Secret values never appear: a script loads them from
//! a per-group secrets file (`<node dir>/secrets/<group>.env`, mode 0600)
//! that `apply` writes; `render` writes a template with placeholders instead.
//!
//! Remote layout: `<output_dir>/<stack>/<node>/` holds a task's `task.sbatch`
//! and `resume.sbatch` (both links share the directory, so the harness's
//! response cache in `artifacts/` carries over), `secrets/`, `logs/`,
//! `artifacts/`, `status` and `chain`; a shared deployment's directory holds
//! `server.sbatch`, its `resume.sbatch` and the `endpoint` file it publishes.
//!
//! Rendering is two steps: [`lower`] decides what each job is (a
//! [`spec::JobSpec`]: resources, container groups, servers, endpoints, run
//! config, result identity) and reports values a script cannot carry;
//! [`script`] spells a spec as bash. [`identity`] hashes the result; the
//! runtime the scripts share is `lib.sh`.

pub mod identity;
mod lower;
pub mod run_config;
pub mod sbatch;
mod script;
pub mod shell;
pub mod spec;

use std::sync::Arc;

use indexmap::IndexMap;

use crate::config::Loaded;
use crate::config::env::{EnvVar, Source};
use crate::diag::Diagnostic;
use crate::graph::{Dep, JobGraph, NodeKind};
use crate::shell::{CommentText, ShellWord, VarName};
pub use identity::{ResultIdentity, hex, runtime_digest};
use spec::JobSpec;
pub use spec::Role;

/// The shared runtime every script carries.
pub const RUNTIME: &str = include_str!("lib.sh");

/// Start of the ownership tag in a job's comment.
pub const TAG_PREFIX: &str = "evalctl:";

/// What stands for the shared runtime in the scripts a plan shows and a
/// state records.
pub const RUNTIME_ELIDED: &str = "# <evalctl runtime>\n";

/// A script's text with the shared runtime elided (what diffs show and
/// states record), as shared pieces: a rendered script is its own lines
/// and then the work, which both links of a task share; a script read back
/// from a state is one text. Equal when the texts are.
#[derive(Clone, Debug)]
pub struct Elided {
    own: Arc<str>,
    shared: Option<Arc<str>>,
}

impl Elided {
    /// The text's pieces, in order (the second may be empty).
    pub fn pieces(&self) -> [&str; 2] {
        [&self.own, self.shared.as_deref().unwrap_or_default()]
    }

    /// The text, joined only when it is in two pieces.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match &self.shared {
            Some(shared) if !shared.is_empty() => [&*self.own, shared].concat().into(),
            _ => (*self.own).into(),
        }
    }

    /// The text as one shared allocation (shared as it is when it is one piece).
    pub fn to_arc(&self) -> Arc<str> {
        match &self.shared {
            Some(shared) if !shared.is_empty() => [&*self.own, shared].concat().into(),
            _ => self.own.clone(),
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.own.len() + self.shared.as_ref().map_or(0, |s| s.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl PartialEq for Elided {
    fn eq(&self, other: &Elided) -> bool {
        let (a, b) = (self.pieces(), other.pieces());
        self.len() == other.len() && a.iter().flat_map(|p| p.bytes()).eq(b.iter().flat_map(|p| p.bytes()))
    }
}

impl Eq for Elided {}

impl From<Arc<str>> for Elided {
    fn from(text: Arc<str>) -> Elided {
        Elided { own: text, shared: None }
    }
}

impl From<String> for Elided {
    fn from(text: String) -> Elided {
        Elided { own: text.into(), shared: None }
    }
}

impl From<&str> for Elided {
    fn from(text: &str) -> Elided {
        Elided { own: text.into(), shared: None }
    }
}

/// A job's script, kept with the shared runtime elided: the full text is
/// the part before [`RUNTIME_ELIDED`], then [`RUNTIME`], then the part after.
/// The runtime (~20 KB, the same in every script) is not copied into each
/// job, and the elided text is shared allocations that plans hold without
/// copying: the job's own lines (header, variables, chain step), and its
/// work, which the two links of a task share. So thousands of jobs cost
/// what their own lines cost; the runtime is joined in where a script is
/// written.
#[derive(Clone, Debug)]
pub struct Script {
    /// The job's own lines: before, [`RUNTIME_ELIDED`], what follows the
    /// runtime up to the work; then the work.
    elided: Elided,
    /// Where [`RUNTIME_ELIDED`] starts.
    at: usize,
    /// The text after the runtime in one piece, joined when first asked
    /// for ([`Self::parts`]).
    after: std::sync::OnceLock<Box<str>>,
}

impl PartialEq for Script {
    fn eq(&self, other: &Script) -> bool {
        self.at == other.at && self.elided == other.elided
    }
}

impl Eq for Script {}

impl Script {
    /// A script from its own lines (`own`, [`RUNTIME_ELIDED`] at `at`: see
    /// [`script::head`]) and its work.
    fn new(own: String, at: usize, work: Arc<str>) -> Script {
        debug_assert_eq!(&own[at..at + RUNTIME_ELIDED.len()], RUNTIME_ELIDED);
        Script { elided: Elided { own: own.into(), shared: Some(work) }, at, after: Default::default() }
    }

    /// The text before the runtime (the header, up to [`script::RUNTIME_MARK`]).
    pub fn before(&self) -> &str {
        &self.elided.own[..self.at]
    }

    /// The text after the runtime, in pieces.
    pub fn after_pieces(&self) -> [&str; 2] {
        let [own, shared] = self.elided.pieces();
        [&own[self.at + RUNTIME_ELIDED.len()..], shared]
    }

    /// The text around the runtime: (before, after). The part after is
    /// joined into one piece the first time it is asked for.
    pub fn parts(&self) -> (&str, &str) {
        let after = self.after.get_or_init(|| self.after_pieces().concat().into());
        (self.before(), after)
    }

    /// The whole script, as it is written to the cluster.
    pub fn text(&self) -> String {
        let [own, work] = self.after_pieces();
        [self.before(), RUNTIME, own, work].concat()
    }

    /// The script with the runtime replaced by [`RUNTIME_ELIDED`], in its
    /// shared pieces (what plans hold).
    pub fn shared(&self) -> Elided {
        self.elided.clone()
    }

    /// The script with the runtime replaced by [`RUNTIME_ELIDED`] (what
    /// states record), as one text.
    pub fn elided(&self) -> Arc<str> {
        self.elided.to_arc()
    }

    /// Length of the whole script, in bytes.
    pub fn len(&self) -> usize {
        self.elided.len() - RUNTIME_ELIDED.len() + RUNTIME.len()
    }

    /// Never: every script has at least its header.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// One rendered job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedJob {
    /// Node id in the graph.
    pub id: String,
    pub kind: NodeKind,
    /// Directory of the job on the cluster.
    pub dir: String,
    /// File name of the script inside `dir`.
    pub script_name: &'static str,
    pub script: Script,
    /// Secrets files the job reads, by container group: variable names and
    /// where their values come from (never the values).
    pub secrets: IndexMap<String, Vec<EnvVar>>,
    /// Jobs this one waits for.
    pub deps: Vec<(String, Dep)>,
    /// The unit the job belongs to: its task, or itself for a deployment
    /// or a pack (whose tasks are [`Self::members`]).
    pub unit: String,
    /// The tasks a pack job runs, in order (empty for other jobs): each is
    /// a unit of its own, whose jobs are the pack's.
    pub members: Vec<Member>,
    pub role: Role,
    /// The job's name as rendered, its ownership tag
    /// (`[<subproject>.]evalctl:<stack>/<unit>/<role>`; apply adds the hashes).
    pub job_name: String,
    /// GPUs the job holds: its nodes times the GPUs it asks for per node
    /// (`gpus_per_node`, else the count of a `gpu` `gres`); 0 when it asks
    /// for none.
    pub gpus: u32,
    /// The job's `--comment`: the user's `execution.sbatch_comment`, verbatim.
    pub comment: Option<String>,
    /// What [`Self::result_hash`] hashes: the result identity (secret
    /// values never in it), for naming what differs between two results
    /// (`compare`).
    pub identity: ResultIdentity,
    /// Hash of the whole script.
    pub script_hash: String,
}

/// A task that a pack job runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The task's unit (its node id).
    pub id: String,
    /// The task's folder.
    pub dir: String,
    /// What determines the task's result.
    pub identity: ResultIdentity,
}

impl Member {
    /// The task's result hash.
    pub fn result_hash(&self) -> &str {
        self.identity.hash()
    }
}

impl RenderedJob {
    /// Hash of what determines the job's result (model, image, command,
    /// task, parameters, variable names), not how it is scheduled: its
    /// [`Self::identity`]'s.
    pub fn result_hash(&self) -> &str {
        self.identity.hash()
    }

    /// Whether the job runs (part of) `unit`: its own unit, or a task of its pack.
    pub fn serves(&self, unit: &str) -> bool {
        self.unit == unit || self.members.iter().any(|m| m.id == unit)
    }

    /// Whether the job is a link of a task's (or pack's) chain, not of a
    /// deployment's.
    pub fn runs_tasks(&self) -> bool {
        !self.members.is_empty()
            || matches!(self.kind, NodeKind::EvalTask { .. } | NodeKind::Resume { task: Some(_), .. })
    }

    /// The units the job runs: the tasks of a pack, else its own unit.
    pub fn units(&self) -> Vec<&str> {
        match self.members.is_empty() {
            true => vec![self.unit.as_str()],
            false => self.members.iter().map(|m| m.id.as_str()).collect(),
        }
    }
}

/// Every job of a config, in submission order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub stack: String,
    pub stack_dir: String,
    pub jobs: Vec<RenderedJob>,
    /// Time limit of one link, in seconds (`execution.walltime`).
    pub walltime_s: u64,
    /// Most links of a chain (0: unlimited), as the scripts carry it.
    pub max_links: u32,
    /// Run time after which a chain starts no further link (0: none).
    pub max_walltime_s: u64,
    /// Tasks per job (1 unless the topology is `packed`).
    pub tasks_per_job: usize,
    /// Most task (or pack) jobs running at once (`execution.max_concurrent`).
    pub max_concurrent: Option<usize>,
    /// Whether apply submits first links as job arrays (`execution.job_arrays`).
    pub job_arrays: bool,
    /// Whether the jobs that run tasks start the model's server (a
    /// deployment of type other than `none`, not shared).
    pub own_model: bool,
}

impl Rendered {
    /// Whether apply submits the job itself. With job arrays, the resume
    /// link of a task (or pack) is queued by its first link as it starts.
    pub fn apply_submits(&self, job: &RenderedJob) -> bool {
        !(self.job_arrays && job.role == Role::Resume && job.runs_tasks())
    }
}

impl RenderedJob {
    /// The secrets file template for one group: `export NAME=<placeholder>`
    /// lines naming where `apply` will read each value.
    pub fn secrets_template(&self, group: &str) -> String {
        let mut out = crate::shell!(
            "# secrets of group `{}` of job `{}`; `evalctl apply` writes the values (mode 0600)\n",
            CommentText(group),
            CommentText(&self.id)
        );
        for v in self.secrets.get(group).into_iter().flatten() {
            out.push_str(&export_line(&v.name, &placeholder(&v.source)));
        }
        out
    }
}

/// The text of a secrets file: one `export NAME='value'` line per variable,
/// each value quoted so the shell reads it back byte for byte. `apply`
/// writes it on the cluster with mode 0600; it never goes anywhere else.
pub fn secrets_file(values: &[(String, String)]) -> String {
    values.iter().map(|(name, value)| export_line(name, value)).collect()
}

/// `export NAME=VALUE`, the value quoted. Names are checked when the config
/// loads; one that is not an identifier is written quoted, which bash
/// refuses rather than runs.
fn export_line(name: &str, value: &str) -> String {
    match VarName::new(name) {
        Some(n) => crate::shell!("export {}={}\n", n, ShellWord::from(value)),
        None => crate::shell!("export {}={}\n", ShellWord::from(name), ShellWord::from(value)),
    }
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

/// Renders every job of the graph. Jobs are independent of each other
/// until their dependencies are filled in, so large graphs are lowered and
/// spelled on several threads, each over its own slice of the order; the
/// result is the same as on one (jobs, errors and their order).
pub fn render(loaded: &Loaded, graph: &JobGraph) -> Result<Rendered, Vec<Diagnostic>> {
    render_on(loaded, graph, crate::parallel::threads_for(graph.graph.node_count(), JOBS_PER_THREAD))
}

/// [`render`] on `threads` threads (at least one).
pub fn render_on(loaded: &Loaded, graph: &JobGraph, threads: usize) -> Result<Rendered, Vec<Diagnostic>> {
    let order = match graph.topo_order() {
        Ok(o) => o,
        Err(e) => return Err(vec![Diagnostic::error(None, e)]),
    };
    let lowered = crate::parallel::map_slices(&order, threads, |slice| render_slice(loaded, graph, slice));
    // Each job goes to its node's place in the order.
    let place: std::collections::HashMap<&str, usize> =
        order.iter().enumerate().map(|(i, node)| (node.id.as_str(), i)).collect();
    let mut slots: Vec<Option<RenderedJob>> = Vec::with_capacity(order.len());
    slots.resize_with(order.len(), || None);
    let mut errors = vec![];
    for (jobs, errs) in lowered {
        for job in jobs {
            if let Some(&i) = place.get(job.id.as_str()) {
                slots[i] = Some(job);
            }
        }
        errors.extend(errs);
    }
    if !errors.is_empty() {
        // A value every job carries is reported once, not once per job.
        let mut seen = std::collections::HashSet::new();
        errors.retain(|d| seen.insert((d.span, d.message.clone())));
        return Err(errors);
    }
    // (In place: an empty slot costs no more than a job.)
    let mut jobs: Vec<RenderedJob> = slots.into_iter().flatten().collect();
    for job in &mut jobs {
        job.deps = graph.dependencies(&job.id).into_iter().map(|(n, d)| (n.id.clone(), d)).collect();
    }
    let lower = lower::Lower::new(loaded, graph);
    let (walltime_s, max_links) = (lower.walltime_s(), lower.max_links());
    let max_walltime_s = loaded.config.execution.max_walltime.as_ref().and_then(|m| m.seconds().ok()).unwrap_or(0);
    Ok(Rendered {
        stack: loaded.stack.clone(),
        stack_dir: lower.stack_dir,
        jobs,
        walltime_s,
        max_links,
        max_walltime_s,
        tasks_per_job: loaded.config.execution.tasks_per_job(),
        max_concurrent: loaded.config.execution.max_concurrent.map(|m| m.max(1) as usize),
        job_arrays: loaded.config.execution.job_arrays,
        own_model: loaded.config.deployment.kind != crate::config::model::DeploymentType::None
            && loaded.config.execution.topology != crate::config::model::Topology::Shared,
    })
}

/// Fewer jobs than this render on one thread (a thread costs more than it saves).
const JOBS_PER_THREAD: usize = 512;

/// The jobs of a slice of the order (a task's or deployment's resume link
/// with its first link, whichever slice its node is in) and the problems
/// found, in order.
fn render_slice(
    loaded: &Loaded,
    graph: &JobGraph,
    slice: &[&crate::graph::JobNode],
) -> (Vec<RenderedJob>, Vec<Diagnostic>) {
    let mut lower = lower::Lower::new(loaded, graph);
    let mut jobs = Vec::with_capacity(slice.len());
    for node in slice {
        let links = match &node.kind {
            NodeKind::Deployment { aux } => Some(lower.deployment(&node.id, aux.as_deref())),
            NodeKind::EvalTask { task } => lower.task(&node.id, *task),
            NodeKind::Pack { tasks, .. } => lower.pack(&node.id, tasks),
            NodeKind::Resume { .. } => None,
        };
        if let Some((first, resume)) = links {
            // Both links run the same work: spell it once, keep it once.
            let work: Arc<str> = script::work(&first.work).into();
            jobs.push(finish(resume, work.clone()));
            jobs.push(finish(first, work));
        }
    }
    (jobs, lower.errors)
}

/// A job's script and hashes from its spec (`work`: its work, spelled).
fn finish(spec: JobSpec, work: Arc<str>) -> RenderedJob {
    let members = match &spec.work {
        spec::Work::Pack(pack) => pack
            .members
            .iter()
            .map(|m| Member { id: m.id.clone(), dir: m.dir.clone(), identity: m.result.clone() })
            .collect(),
        _ => vec![],
    };
    let (own, at) = script::head(&spec);
    let script = Script::new(own, at, work);
    let secrets = spec
        .env
        .iter()
        .filter(|g| !g.secret.is_empty())
        .map(|g| (g.name.as_str().to_owned(), g.secret.clone()))
        .collect();
    RenderedJob {
        id: spec.id,
        kind: spec.kind,
        dir: spec.dir,
        script_name: spec.script_name,
        script_hash: identity::script_hash(&script),
        identity: spec.result,
        script,
        secrets,
        deps: vec![],
        unit: spec.unit,
        members,
        role: spec.role,
        gpus: spec.resources.gpus(),
        job_name: spec.job_name,
        comment: spec.comment,
    }
}
