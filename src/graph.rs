//! The job graph: which Slurm jobs a config needs and how they depend on
//! each other, as a petgraph DAG.
//!
//! Node ids are derived from names, never from list positions, so inserting
//! a task does not rename the others: a task's id is its `id:` or its name;
//! a name used by several tasks gives `name.1`, `name.2`, ... in order
//! (a warning recommends explicit ids there). Other nodes: `server` (the
//! shared deployment), `server.<aux>` (auxiliary deployments with
//! `topology: shared`; the others run inside each task's job) and
//! `<job>.resume` (the next link of the auto-resume chain of a task or of a
//! shared deployment). In the `packed` topology the tasks are run by
//! `pack.<first task's id>` jobs, each running `tasks_per_job` consecutive
//! tasks (with its own resume link); the tasks stay the units.
//!
//! Edges point from a job to the jobs that wait for it, so a topological
//! order is a submission order.

use std::collections::{BTreeMap, HashMap};

use petgraph::Direction;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use serde::Serialize;

use crate::config::Loaded;
use crate::config::model::{DeploymentType, Topology};
use crate::config::node::Seg;
use crate::diag::Diagnostic;

/// What a job does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NodeKind {
    /// Serves a model for other jobs: the shared deployment (`aux: None`)
    /// or an auxiliary deployment such as a judge.
    Deployment { aux: Option<String> },
    /// Runs one evaluation task (`task`: index in `evaluation.tasks`).
    EvalTask { task: usize },
    /// Serves the model once and runs several tasks in turn (`tasks`:
    /// their indexes, in order; `units`: their ids).
    Pack { tasks: Vec<usize>, units: Vec<String> },
    /// The next link of the auto-resume chain of a task (`task`: its
    /// index) or of a shared deployment (`task`: none).
    Resume {
        of: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        task: Option<usize>,
    },
}

/// One job of the graph.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JobNode {
    pub id: String,
    #[serde(flatten)]
    pub kind: NodeKind,
}

/// How a job waits for another (Slurm `--dependency` types).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dep {
    /// Start once the other job has started.
    After,
    /// Start once the other job ended successfully.
    AfterOk,
    /// Start once the other job ended unsuccessfully (timeout, preemption, node failure, ...).
    AfterNotOk,
}

impl Dep {
    pub fn slurm(self) -> &'static str {
        match self {
            Dep::After => "after",
            Dep::AfterOk => "afterok",
            Dep::AfterNotOk => "afternotok",
        }
    }
}

/// The DAG of jobs of one config.
#[derive(Debug, Default)]
pub struct JobGraph {
    pub graph: StableDiGraph<JobNode, Dep>,
    index: HashMap<String, NodeIndex>,
    /// Node id of each task, by position in `evaluation.tasks`.
    pub task_ids: Vec<String>,
}

/// Id of the shared deployment node.
pub const SERVER: &str = "server";

/// Id of the pack job whose first task is `first`.
pub fn pack_id(first: &str) -> String {
    format!("pack.{first}")
}

impl JobGraph {
    /// Adds a node; its id must be new.
    pub fn add(&mut self, node: JobNode) -> Result<NodeIndex, String> {
        if self.index.contains_key(&node.id) {
            return Err(format!("two jobs would have the id `{}`", node.id));
        }
        let id = node.id.clone();
        let ix = self.graph.add_node(node);
        self.index.insert(id, ix);
        Ok(ix)
    }

    /// Adds `to` waits for `from`; both must exist.
    pub fn depend(&mut self, from: &str, to: &str, dep: Dep) -> Result<(), String> {
        let (Some(&a), Some(&b)) = (self.index.get(from), self.index.get(to)) else {
            return Err(format!("dependency `{to}` -> `{from}` names a job that does not exist"));
        };
        self.graph.add_edge(a, b, dep);
        Ok(())
    }

    /// The jobs `id` waits for, with how, in a stable order.
    pub fn dependencies(&self, id: &str) -> Vec<(&JobNode, Dep)> {
        let Some(&ix) = self.index.get(id) else { return vec![] };
        let mut deps: Vec<(&JobNode, Dep)> = self
            .graph
            .edges_directed(ix, Direction::Incoming)
            .map(|e| (&self.graph[petgraph::visit::EdgeRef::source(&e)], *e.weight()))
            .collect();
        deps.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        deps
    }

    /// Nodes in a deterministic topological order (ties broken by insertion
    /// order); an error names the jobs of a cycle.
    pub fn topo_order(&self) -> Result<Vec<&JobNode>, String> {
        let mut indegree: BTreeMap<NodeIndex, usize> = self
            .graph
            .node_indices()
            .map(|n| (n, self.graph.neighbors_directed(n, Direction::Incoming).count()))
            .collect();
        let mut ready: std::collections::BTreeSet<NodeIndex> =
            indegree.iter().filter(|(_, d)| **d == 0).map(|(n, _)| *n).collect();
        let mut out = Vec::with_capacity(indegree.len());
        while let Some(n) = ready.pop_first() {
            out.push(&self.graph[n]);
            for m in self.graph.neighbors_directed(n, Direction::Outgoing) {
                if let Some(d) = indegree.get_mut(&m) {
                    *d -= 1;
                    if *d == 0 {
                        ready.insert(m);
                    }
                }
            }
            indegree.remove(&n);
        }
        if out.len() < self.graph.node_count() {
            let stuck: Vec<&str> = indegree.keys().map(|n| self.graph[*n].id.as_str()).collect();
            return Err(format!("dependency cycle among jobs: {}", stuck.join(", ")));
        }
        Ok(out)
    }

    /// Graphviz DOT text.
    pub fn to_dot(&self) -> Result<String, String> {
        let mut s = String::from("digraph evalctl {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n");
        for n in self.topo_order()? {
            let shape = match &n.kind {
                NodeKind::Deployment { .. } => "shape=component".to_owned(),
                NodeKind::EvalTask { .. } => "shape=box".to_owned(),
                // A pack names its tasks.
                NodeKind::Pack { units, .. } => {
                    format!("shape=box3d, label={}", dot_id(&format!("{}\n{}", n.id, units.join(", "))))
                }
                NodeKind::Resume { .. } => "shape=box, style=dashed".to_owned(),
            };
            s.push_str(&format!("  {} [{shape}];\n", dot_id(&n.id)));
        }
        for n in self.topo_order()? {
            for (dep, how) in self.dependencies(&n.id) {
                s.push_str(&format!("  {} -> {} [label={}];\n", dot_id(&dep.id), dot_id(&n.id), how.slurm()));
            }
        }
        s.push_str("}\n");
        Ok(s)
    }

    /// A JSON document: nodes in submission order, each with its dependencies.
    pub fn to_json(&self) -> Result<serde_json::Value, String> {
        let nodes: Vec<serde_json::Value> = self
            .topo_order()?
            .into_iter()
            .map(|n| {
                let mut v = serde_json::to_value(n).unwrap_or_default();
                let deps: Vec<serde_json::Value> = self
                    .dependencies(&n.id)
                    .into_iter()
                    .map(|(d, how)| serde_json::json!({"id": d.id, "type": how.slurm()}))
                    .collect();
                v["dependencies"] = serde_json::Value::Array(deps);
                v
            })
            .collect();
        Ok(serde_json::json!({ "version": 1, "nodes": nodes }))
    }
}

fn dot_id(id: &str) -> String {
    serde_json::to_string(id).unwrap_or_default()
}

/// Node id of every task: its `id`, else its name, numbered when repeated.
/// Returns the ids and warnings about order-dependent ids.
pub fn task_ids(loaded: &Loaded) -> (Vec<String>, Vec<Diagnostic>) {
    let tasks = &loaded.config.evaluation.tasks;
    let mut count: HashMap<&str, usize> = HashMap::new();
    for t in tasks.iter().filter(|t| t.id.is_none()) {
        *count.entry(t.name.as_str()).or_default() += 1;
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut warned: Vec<&str> = vec![];
    let mut warnings = vec![];
    let ids = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| match &t.id {
            Some(id) => id.clone(),
            None if count[t.name.as_str()] > 1 => {
                let n = seen.entry(t.name.as_str()).or_default();
                *n += 1;
                if !warned.contains(&t.name.as_str()) {
                    warned.push(t.name.as_str());
                    let path = [
                        Seg::Key("evaluation".into()),
                        Seg::Key("tasks".into()),
                        Seg::Index(i),
                        Seg::Key("name".into()),
                    ];
                    warnings.push(
                        Diagnostic::warning(
                            loaded.tree.value_span_of(&path),
                            format!(
                                "task `{}` appears {} times: its jobs are `{0}.1` ... `{0}.{1}` by position",
                                t.name,
                                count[t.name.as_str()]
                            ),
                        )
                        .with_note("give each an `id:` so inserting or reordering them never renames a job"),
                    );
                }
                format!("{}.{}", t.name, n)
            }
            None => t.name.clone(),
        })
        .collect();
    (ids, warnings)
}

/// Builds the graph of a validated config.
pub fn build(loaded: &Loaded) -> Result<(JobGraph, Vec<Diagnostic>), Vec<Diagnostic>> {
    let (ids, warnings) = task_ids(loaded);
    let cfg = &loaded.config;
    let mut g = JobGraph::default();
    let mut errors = vec![];
    let mut add = |g: &mut JobGraph, node: JobNode, path: &[Seg]| {
        if let Err(e) = g.add(node) {
            errors.push(Diagnostic::error(loaded.tree.span_of(path), e));
        }
    };
    let shared = cfg.execution.topology == Topology::Shared && cfg.deployment.kind != DeploymentType::None;
    // Shared deployments, each with its resume link: the model's, and the
    // auxiliary deployments that are shared (the others run inside each
    // task's job).
    let mut shared_deployments: Vec<(String, Option<String>, Vec<Seg>)> = vec![];
    if shared {
        shared_deployments.push((SERVER.into(), None, vec![Seg::Key("deployment".into())]));
    }
    for (name, _) in cfg.auxiliary_deployments.iter().filter(|(_, d)| d.shared_aux()) {
        let path = vec![Seg::Key("auxiliary_deployments".into()), Seg::Key(name.clone())];
        shared_deployments.push((format!("{SERVER}.{name}"), Some(name.clone()), path));
    }
    for (id, aux, path) in &shared_deployments {
        add(&mut g, JobNode { id: id.clone(), kind: NodeKind::Deployment { aux: aux.clone() } }, path);
    }
    for (id, _, path) in &shared_deployments {
        let resume = JobNode { id: format!("{id}.resume"), kind: NodeKind::Resume { of: id.clone(), task: None } };
        add(&mut g, resume, path);
    }
    let servers: Vec<String> = shared_deployments.into_iter().map(|(id, _, _)| id).collect();
    // The jobs that run tasks: one per task, or one per pack of tasks.
    let packed = cfg.execution.topology == Topology::Packed;
    let per_job = cfg.execution.tasks_per_job();
    let runners: Vec<String> = if packed {
        let mut runners = vec![];
        for (k, chunk) in ids.chunks(per_job).enumerate() {
            let first = k * per_job;
            let id = pack_id(&chunk[0]);
            let tasks: Vec<usize> = (first..first + chunk.len()).collect();
            let path = vec![Seg::Key("execution".into()), Seg::Key("tasks_per_job".into())];
            let kind = NodeKind::Pack { tasks, units: chunk.to_vec() };
            add(&mut g, JobNode { id: id.clone(), kind }, &path);
            let resume = JobNode { id: format!("{id}.resume"), kind: NodeKind::Resume { of: id.clone(), task: None } };
            add(&mut g, resume, &path);
            runners.push(id);
        }
        runners
    } else {
        ids.clone()
    };
    if !packed {
        for (i, id) in ids.iter().enumerate() {
            let mut path = vec![Seg::Key("evaluation".into()), Seg::Key("tasks".into()), Seg::Index(i)];
            if cfg.evaluation.tasks[i].id.is_some() {
                path.push(Seg::Key("id".into()));
            }
            add(&mut g, JobNode { id: id.clone(), kind: NodeKind::EvalTask { task: i } }, &path);
            add(
                &mut g,
                JobNode { id: format!("{id}.resume"), kind: NodeKind::Resume { of: id.clone(), task: Some(i) } },
                &path,
            );
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut edges: Vec<(String, String, Dep)> = vec![];
    for id in &servers {
        edges.push((id.clone(), format!("{id}.resume"), Dep::AfterNotOk));
    }
    for id in &runners {
        for waits_for in [id.clone(), format!("{id}.resume")] {
            // Every link waits until the shared deployments have started.
            for server in &servers {
                edges.push((server.clone(), waits_for.clone(), Dep::After));
            }
        }
        edges.push((id.clone(), format!("{id}.resume"), Dep::AfterNotOk));
    }
    for (from, to, dep) in edges {
        g.depend(&from, &to, dep).map_err(|e| vec![Diagnostic::error(None, e)])?;
    }
    g.topo_order().map_err(|e| vec![Diagnostic::error(None, e)])?;
    g.task_ids = ids;
    Ok((g, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_and_dangling_references_are_reported() {
        let mut g = JobGraph::default();
        for id in ["a", "b", "c"] {
            g.add(JobNode { id: id.into(), kind: NodeKind::EvalTask { task: 0 } }).unwrap();
        }
        assert_eq!(
            g.add(JobNode { id: "a".into(), kind: NodeKind::EvalTask { task: 1 } }).unwrap_err(),
            "two jobs would have the id `a`"
        );
        assert!(g.depend("a", "zz", Dep::After).unwrap_err().contains("does not exist"));
        g.depend("a", "b", Dep::After).unwrap();
        g.depend("b", "c", Dep::AfterOk).unwrap();
        assert_eq!(g.topo_order().unwrap().iter().map(|n| n.id.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
        g.depend("c", "a", Dep::AfterNotOk).unwrap();
        assert_eq!(g.topo_order().unwrap_err(), "dependency cycle among jobs: a, b, c");
    }
}
