//! Many stacks in one run (`plan PATH...`, `apply PATH...`): which files
//! are configs, which stacks a change since a git revision affects
//! (`--changed-since`), and planning them all with one connection per host
//! and their refreshes in parallel. The combined document is
//! [`crate::stacks`]; this module is the I/O around it.
//!
//! **Which files of a folder are configs**: the `*.yaml` and `*.yml` files
//! directly in it (not in its subfolders, where group files live; not
//! hidden ones) whose top level is a mapping with at least one of
//! `defaults`, `execution`, `deployment`, `evaluation` or `target`
//! ([`is_config`]). Others (gate policies, CI files, notes) are skipped; a
//! file that is not valid YAML is taken as a config, so its error shows. A
//! file named on the command line is always a config.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::plan::{PlanOptions, plan_refreshed, refresh};
use super::{Observe, Reporter, Stack};
use crate::cluster::{Cluster, Target};
use crate::diag::{Diagnostic, Sources};
use crate::error::{Error, Result};
use crate::plan::Planned;
use crate::remote::refresh::Refreshed;
use crate::status::UnitStatus;

/// The top-level keys of which one makes a YAML file in a folder a config.
pub const CONFIG_KEYS: &[&str] = &["defaults", "execution", "deployment", "evaluation", "target"];

/// How many refreshes run at once over one connection: below sshd's
/// default `MaxSessions` (10).
pub const PARALLEL_PER_HOST: usize = 8;

/// Whether a YAML text found in a folder is a config (see the module
/// documentation); text that does not parse counts as one.
pub fn is_config(text: &str) -> bool {
    let sources = Sources::new();
    let id = sources.add("<probe>", text);
    match crate::config::yaml::parse(text, id) {
        Ok(node) => node.as_map().is_some_and(|m| CONFIG_KEYS.iter().any(|k| m.contains_key(*k))),
        Err(_) => true,
    }
}

/// The configs the paths name: a file as it is, a folder's configs (by
/// [`is_config`]) in name order; each file once.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = vec![];
    let mut seen = BTreeSet::new();
    let mut add = |p: PathBuf, out: &mut Vec<PathBuf>| {
        if seen.insert(std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone())) {
            out.push(p);
        }
    };
    for path in paths {
        if !path.is_dir() {
            add(path.clone(), &mut out);
            continue;
        }
        let entries = std::fs::read_dir(path)
            .map_err(|e| Error::msg(format!("cannot read the folder `{}`: {e}", path.display())))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml")) && p.is_file()
            })
            .collect();
        files.sort();
        for f in files {
            let text = crate::config::files::read(&f).unwrap_or_default();
            if is_config(&text) {
                add(f, &mut out);
            }
        }
    }
    Ok(out)
}

/// A config opened for a multi-stack run: its stack (or why it has none),
/// the files it was composed from and the warnings its load gave.
pub struct Opened {
    pub config: PathBuf,
    pub stack: Result<Stack>,
    /// Every file the load read (the config and its user group files),
    /// canonical; built-in groups are not files.
    pub files: Vec<PathBuf>,
    pub warnings: Vec<Diagnostic>,
}

impl Opened {
    /// The stack's name, or the file's stem when it has no stack.
    pub fn name(&self) -> String {
        match &self.stack {
            Ok(s) => s.loaded.stack.clone(),
            Err(_) => crate::config::stack_from_path(&self.config),
        }
    }

    /// Whether a file it was composed from is among `changed` (canonical paths).
    pub fn affected_by(&self, changed: &BTreeSet<PathBuf>) -> bool {
        let own = std::fs::canonicalize(&self.config).unwrap_or_else(|_| self.config.clone());
        changed.contains(&own) || self.files.iter().any(|f| changed.contains(f))
    }
}

/// Collects warnings instead of showing them (shown later for the stacks
/// that are planned).
#[derive(Default)]
struct Collect(std::cell::RefCell<Vec<Diagnostic>>);

impl Reporter for Collect {
    fn warnings(&self, diags: &[Diagnostic]) {
        self.0.borrow_mut().extend_from_slice(diags);
    }
    fn info(&self, _: &str) {}
    fn plan(&self, _: &crate::plan::Plan) {}
    fn confirm(&self, _: &crate::plan::Plan) -> bool {
        false
    }
    fn waiting(&self, _: &[UnitStatus]) {}
}

/// Opens every config, recording which files each read (the sources its
/// load registered).
pub fn open_all(configs: &[PathBuf], overrides: &[String], sources: &Sources) -> Vec<Opened> {
    configs
        .iter()
        .map(|config| {
            let mark = sources.len();
            let collect = Collect::default();
            let stack = Stack::open(config, overrides, sources, &collect);
            let files = sources
                .names_from(mark)
                .into_iter()
                .filter(|n| !n.starts_with('<'))
                .filter_map(|n| std::fs::canonicalize(n).ok())
                .collect();
            Opened { config: config.clone(), stack, files, warnings: collect.0.into_inner() }
        })
        .collect()
}

/// The files changed between `git_ref` and the working tree (`git diff
/// --name-only REF` and the untracked files) in the repositories holding
/// `paths`, as canonical paths (deleted files as they were).
pub fn changed_files(paths: &[PathBuf], git_ref: &str) -> Result<BTreeSet<PathBuf>> {
    if git_ref.starts_with('-') {
        return Err(Error::msg(format!("--changed-since `{git_ref}` is not a git revision")));
    }
    let mut tops = BTreeSet::new();
    for p in paths {
        let dir = if p.is_dir() { p.clone() } else { p.parent().map(Path::to_path_buf).unwrap_or_default() };
        let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
        let top = git(&dir, &["rev-parse", "--show-toplevel"])?;
        tops.insert(PathBuf::from(top.trim_end_matches(['\n', '\r'])));
    }
    let mut changed = BTreeSet::new();
    for top in tops {
        let diff = git(&top, &["diff", "--name-only", "--no-renames", "-z", git_ref, "--"])?;
        let untracked = git(&top, &["ls-files", "--others", "--exclude-standard", "-z"])?;
        for name in diff.split('\0').chain(untracked.split('\0')).filter(|n| !n.is_empty()) {
            let p = top.join(name);
            changed.insert(std::fs::canonicalize(&p).unwrap_or(p));
        }
    }
    Ok(changed)
}

fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| Error::msg(format!("--changed-since needs git: cannot run it: {e}")))?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        return Err(Error::msg(format!(
            "--changed-since: `git {}` in {} failed: {why}",
            args.join(" "),
            dir.display()
        )));
    }
    String::from_utf8(out.stdout).map_err(|_| Error::msg("--changed-since: git printed a file name that is not UTF-8"))
}

/// Connections for several stacks: one per distinct target (host, user,
/// ssh config), shared by the stacks that name it.
pub struct Hosts<'c> {
    clusters: Vec<Box<dyn Cluster + 'c>>,
    /// Per stack: the index of its cluster, or why it has none.
    of: Vec<std::result::Result<usize, Vec<Diagnostic>>>,
}

impl<'c> Hosts<'c> {
    /// Connects once per distinct target of `stacks`, with `connect` (given
    /// the first stack of each target).
    pub fn connect(
        stacks: &[&Stack],
        ssh_config: Option<PathBuf>,
        connect: &dyn Fn(&Stack) -> Result<Box<dyn Cluster + 'c>>,
    ) -> Hosts<'c> {
        let mut targets: Vec<(Target, std::result::Result<usize, Vec<Diagnostic>>)> = vec![];
        let mut clusters = vec![];
        let mut of = vec![];
        for stack in stacks {
            let target = match stack.target(ssh_config.clone()) {
                Ok(t) => t,
                Err(e) => {
                    of.push(Err(e.diagnostics()));
                    continue;
                }
            };
            if let Some((_, r)) = targets.iter().find(|(t, _)| *t == target) {
                of.push(r.clone());
                continue;
            }
            let r = match connect(stack) {
                Ok(c) => {
                    clusters.push(c);
                    Ok(clusters.len() - 1)
                }
                Err(e) => Err(e.diagnostics()),
            };
            targets.push((target, r.clone()));
            of.push(r);
        }
        Hosts { clusters, of }
    }

    /// The cluster of the `i`-th stack.
    pub fn get(&self, i: usize) -> Result<&dyn Cluster> {
        match self.of.get(i) {
            Some(Ok(c)) => Ok(self.clusters[*c].as_ref()),
            Some(Err(d)) => Err(Error::Diagnostics(d.clone())),
            None => Err(Error::msg("no connection for this stack")),
        }
    }

    /// How many connections were opened.
    pub fn connections(&self) -> usize {
        self.clusters.len()
    }
}

/// Plans every stack. Offline (`observe` is `None`), one after the other
/// against the recorded states; else the refreshes run in parallel (at
/// most [`PARALLEL_PER_HOST`] at once per connection) over `hosts`, then
/// each plan is made from its refresh. An error in one stack does not stop
/// the others.
pub fn plan_all<'a>(
    stacks: &[&'a Stack],
    hosts: Option<&Hosts<'_>>,
    opts: &PlanOptions,
    reporter: &dyn Reporter,
) -> Vec<Result<Planned<'a>>> {
    let Some(hosts) = hosts else {
        return stacks.iter().map(|s| super::plan(s, Observe::Recorded, opts, reporter)).collect();
    };
    let refreshed = refresh_all(stacks, hosts);
    stacks
        .iter()
        .zip(refreshed)
        .enumerate()
        .map(|(i, (stack, r))| {
            let cluster = hosts.get(i)?;
            plan_refreshed(stack, opts, &r?, cluster, reporter)
        })
        .collect()
}

/// Every stack's refresh: a pool of threads per connection, each taking
/// the next stack of its connection until none is left.
fn refresh_all(stacks: &[&Stack], hosts: &Hosts<'_>) -> Vec<Result<Refreshed>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let mut by_host: Vec<Vec<usize>> = vec![vec![]; hosts.connections()];
    for (i, c) in hosts.of.iter().enumerate() {
        if let Ok(c) = c {
            by_host[*c].push(i);
        }
    }
    let next: Vec<AtomicUsize> = by_host.iter().map(|_| AtomicUsize::new(0)).collect();
    let done: std::sync::Mutex<Vec<Option<Result<Refreshed>>>> =
        std::sync::Mutex::new((0..stacks.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for ((queue, next), cluster) in by_host.iter().zip(&next).zip(&hosts.clusters) {
            let cluster: &dyn Cluster = cluster.as_ref();
            for _ in 0..queue.len().min(PARALLEL_PER_HOST) {
                let done = &done;
                scope.spawn(move || {
                    while let Some(&i) = queue.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let r = refresh(stacks[i], cluster);
                        done.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
                    }
                });
            }
        }
    });
    let done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    done.into_iter()
        .enumerate()
        .map(|(i, r)| match r {
            Some(r) => r,
            // No connection: its error.
            None => Err(hosts.get(i).err().unwrap_or_else(|| Error::msg("the stack was not refreshed"))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::is_config;

    #[test]
    fn configs_are_mappings_with_a_config_key() {
        assert!(is_config("defaults: [_self_]\n"));
        assert!(is_config("evaluation:\n  tasks: []\n"));
        assert!(is_config("name: x\nexecution: {}\n"));
        // A gate policy, a group file, a list, a scalar, an empty file.
        assert!(!is_config("rules:\n  - metric: acc\n"));
        assert!(!is_config("image: vllm:latest\nport: 8000\n"));
        assert!(!is_config("- a\n- b\n"));
        assert!(!is_config("hello\n"));
        assert!(!is_config(""));
        // Not YAML: taken as a config so its error is shown.
        assert!(is_config("execution: [\n"));
    }
}
