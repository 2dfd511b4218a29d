//! `compile`: a config file and its overrides → the loaded config and its
//! job graph; [`Stack`] adds the rendered scripts and what every command
//! that works on a stack needs (its cluster, its local state copy).

use std::path::{Path, PathBuf};

use super::Reporter;
use crate::cluster::{self, Cluster, Target};
use crate::config::node::{Seg, Value};
use crate::config::{self, Loaded};
use crate::diag::Diagnostic;
use crate::diag::Sources;
use crate::error::{Error, Result};
use crate::graph::{self, JobGraph};
use crate::render::Rendered;

/// A config compiled as far as its rendered job scripts: it passed every
/// check that needs no cluster.
pub struct Compiled {
    pub loaded: Loaded,
    pub graph: JobGraph,
    pub rendered: Rendered,
}

/// Loads, composes, interpolates and validates a config, builds its job
/// graph and renders every job script. Warnings go to the reporter; errors
/// come back all at once.
///
/// This is the one path every command that reads a config takes
/// (`validate`, `render`, `graph`, `plan`, `diff`, `apply`...), so a config
/// `validate` accepts is one they all accept.
pub fn compile(path: &Path, overrides: &[String], sources: &Sources, reporter: &dyn Reporter) -> Result<Compiled> {
    let loaded = config::load(path, overrides, sources).map_err(|f| f.diagnostics)?;
    reporter.warnings(&loaded.warnings);
    let (graph, warnings) = graph::build(&loaded)?;
    reporter.warnings(&warnings);
    let rendered = crate::render::render(&loaded, &graph)?;
    Ok(Compiled { loaded, graph, rendered })
}

impl Compiled {
    pub fn max_attempts(&self) -> u32 {
        self.loaded.config.execution.max_attempts
    }
}

/// A compiled and rendered config: the input of every command that plans,
/// applies or inspects a stack on its cluster.
pub struct Stack {
    /// The config file (the local state copy lives beside it).
    pub config: PathBuf,
    /// Who manages the stack, as the state records it (see [`ConfigId`]).
    pub id: ConfigId,
    pub loaded: Loaded,
    pub graph: JobGraph,
    pub rendered: Rendered,
    /// The texts the config was read from (for the places of its values).
    pub sources: Sources,
    values: std::sync::OnceLock<std::collections::BTreeMap<String, crate::plan::causes::ConfigValue>>,
}

impl Stack {
    pub fn open(config: &Path, overrides: &[String], sources: &Sources, reporter: &dyn Reporter) -> Result<Stack> {
        let Compiled { loaded, graph, rendered } = compile(config, overrides, sources, reporter)?;
        Ok(Stack {
            config: config.to_owned(),
            id: ConfigId::of(config),
            loaded,
            graph,
            rendered,
            sources: sources.clone(),
            values: Default::default(),
        })
    }

    /// The composed config's values by key, with their places: what apply
    /// records and what a plan compares with the recorded ones (made once).
    pub fn config_values(&self) -> &std::collections::BTreeMap<String, crate::plan::causes::ConfigValue> {
        self.values.get_or_init(|| crate::plan::causes::values(&self.loaded.tree, &self.sources))
    }

    /// Fails when the state says another config manages this stack and
    /// that config still exists: two configs would share one lock, one
    /// state and one set of jobs. A config that was moved or renamed (the
    /// recorded file is gone) takes the stack over.
    pub fn check_owner(&self, state: &crate::state::State) -> Result<()> {
        if state.config.is_empty() || state.config == self.id.name {
            return Ok(());
        }
        let other = self.id.root.join(&state.config);
        let same = |a: &Path, b: &Path| {
            std::fs::canonicalize(a).ok().zip(std::fs::canonicalize(b).ok()).is_some_and(|(a, b)| a == b)
        };
        if !other.is_file() || same(&other, &self.config) {
            return Ok(());
        }
        // At `name:` when the config sets it, else the name comes from the file's.
        let span = self.loaded.config.name.as_ref().map(|_| self.loaded.tree.value_span_of(&[Seg::Key("name".into())]));
        Err(Diagnostic::error(
            span,
            format!(
                "stack `{}` is managed by `{}`; `{}` maps to the same stack name",
                self.loaded.stack, state.config, self.id.name
            ),
        )
        .with_note("two configs would share one lock, one state and the same jobs: give one of them its own `name:`")
        .into())
    }

    /// Where the config's cluster is, with `execution.hostname`/`username`
    /// resolved from the environment now.
    pub fn target(&self, ssh_config: Option<PathBuf>) -> Result<Target> {
        target(&self.loaded, &config::process_env, ssh_config)
    }

    /// Connects to the config's cluster (SSH, or local on the login node).
    pub fn connect(&self, ssh_config: Option<PathBuf>) -> Result<Box<dyn Cluster>> {
        Ok(cluster::connect(&self.target(ssh_config)?)?)
    }

    /// When the stack was first applied, from the local state copy (0 when
    /// unknown): bounds the accounting query of a refresh.
    pub fn since(&self) -> u64 {
        crate::state::read_local(&self.config, &self.loaded.stack).ok().flatten().map_or(0, |s| s.created)
    }

    pub fn max_attempts(&self) -> u32 {
        self.loaded.config.execution.max_attempts
    }
}

/// A config as the state of its stack records it: the path from the root
/// of the repository holding it (the nearest folder up with `.git`), so
/// that a checkout in CI and one on a laptop agree; the absolute path
/// outside a repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigId {
    /// The repository's root (or `/`).
    pub root: PathBuf,
    /// The config's path from `root`.
    pub name: String,
}

impl ConfigId {
    pub fn of(config: &Path) -> ConfigId {
        let path = std::fs::canonicalize(config).unwrap_or_else(|_| config.to_owned());
        let root = path.ancestors().skip(1).find(|d| d.join(".git").exists()).map(Path::to_path_buf);
        match root.and_then(|r| Some((path.strip_prefix(&r).ok()?.to_string_lossy().into_owned(), r))) {
            Some((name, root)) => ConfigId { root, name },
            None => ConfigId { root: PathBuf::from("/"), name: path.to_string_lossy().into_owned() },
        }
    }
}

/// The file in a `render --out` folder that lists what the last render
/// wrote there, one name a line.
pub const MANIFEST: &str = ".evalctl-render";

/// Writes every job script (`<job>.sbatch`) and secrets template
/// (`<job>.<group>.secrets.env`) to `dir`, then removes the files an
/// earlier render wrote there (its manifest says which) that this one no
/// longer writes, so two renders of one config leave the same folder.
/// Files evalctl did not write are never touched. Returns the number of
/// scripts.
pub fn write_scripts(rendered: &Rendered, dir: &Path) -> Result<usize> {
    let io = |e: std::io::Error, what: &Path| Error::msg(format!("cannot write `{}`: {e}", what.display()));
    std::fs::create_dir_all(dir).map_err(|e| io(e, dir))?;
    let mut written = std::collections::BTreeSet::new();
    for job in &rendered.jobs {
        let name = format!("{}.sbatch", job.id);
        std::fs::write(dir.join(&name), job.script.text()).map_err(|e| io(e, &dir.join(&name)))?;
        written.insert(name);
        for group in job.secrets.keys() {
            let name = format!("{}.{group}.secrets.env", job.id);
            std::fs::write(dir.join(&name), job.secrets_template(group)).map_err(|e| io(e, &dir.join(&name)))?;
            written.insert(name);
        }
    }
    let manifest = dir.join(MANIFEST);
    let before = crate::config::files::read_regular(&manifest, 1 << 26).unwrap_or_default();
    for name in before.lines() {
        // Only plain file names this function writes: a manifest edited to
        // name `../x` or another folder's file is ignored.
        let ours = (name.ends_with(".sbatch") || name.ends_with(".secrets.env"))
            && !name.contains('/')
            && !name.starts_with('.');
        if ours && !written.contains(name) {
            let p = dir.join(name);
            if let Err(e) = std::fs::remove_file(&p)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(io(e, &p));
            }
        }
    }
    let list: String = written.iter().map(|n| format!("{n}\n")).collect();
    std::fs::write(&manifest, list).map_err(|e| io(e, &manifest))?;
    Ok(rendered.jobs.len())
}

/// Where a config's cluster is: `execution.hostname` and `username`, whose
/// `${oc.env:...}` parts are resolved now from `env`.
pub fn target(
    loaded: &Loaded,
    env: &dyn Fn(&str) -> Option<String>,
    ssh_config: Option<std::path::PathBuf>,
) -> Result<Target> {
    let field = |key: &str| -> Result<Option<String>> {
        let path = [Seg::Key("execution".into()), Seg::Key(key.into())];
        let Some(node) = loaded.tree.get(&path) else { return Ok(None) };
        match &node.value {
            Value::Null => Ok(None),
            Value::Str(s) => Ok(Some(s.clone())),
            Value::Deferred(text) => match super::secrets::resolve_text(text, env) {
                Ok(v) => Ok(Some(v)),
                Err(var) => Err(Error::Diagnostics(vec![
                    Diagnostic::error(
                        loaded.tree.value_span_of(&path),
                        format!("`execution.{key}` needs the environment variable `{var}`, which is not set"),
                    )
                    .with_note(format!("export {var}=..., or set execution.{key} in the config or with -o")),
                ])),
            },
            _ => Ok(None),
        }
    };
    let hostname = field("hostname")?;
    let mut t = Target { hostname, username: None, ssh_config };
    if !t.is_local() {
        // Unset (e.g. `${oc.env:USER}` without USER): ssh picks the user,
        // from ~/.ssh/config or the local login, as it does on its own.
        t.username = field("username").unwrap_or(None);
    }
    Ok(t)
}
