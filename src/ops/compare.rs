//! `compare`: gathers two stacks' results with their per-sample records
//! (one round trip each) and compares them (`crate::compare`); with a gate
//! policy, decides pass, fail or inconclusive (`crate::gate`).
//!
//! A side is a config path, or `REF:PATH`: the config as it is at a git
//! ref, read from a copy of the repository's tree at that ref (so the
//! defaults groups it names are the ref's too).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::Stack;
use crate::cluster::Cluster;
use crate::compare::{self, Comparison, Side};
use crate::diag::Diagnostic;
use crate::error::{Error, Result};
use crate::remote::refresh::Detail;

/// Compares two opened stacks, each on its cluster.
pub fn compare(base: (&str, &Stack, &dyn Cluster), candidate: (&str, &Stack, &dyn Cluster)) -> Result<Comparison> {
    let gather = |(_, stack, cluster): (&str, &Stack, &dyn Cluster)| {
        super::results::gather(stack, cluster, stack.since(), Detail::Samples)
    };
    let (b, c) = (gather(base)?, gather(candidate)?);
    let sides = (Side { label: base.0.to_owned(), gathered: &b }, Side { label: candidate.0.to_owned(), gathered: &c });
    compare::compare(&sides.0, &sides.1).map_err(|reasons| {
        Error::Diagnostics(
            reasons
                .into_iter()
                .map(|r| {
                    Diagnostic::error(None, format!("cannot compare {r}"))
                        .with_note("compare measures the model under test: everything else must be the same")
                })
                .collect(),
        )
    })
}

/// A config named on the command line: a file, or `REF:PATH` at a git ref.
pub enum ConfigSource {
    File(PathBuf),
    /// A config as it is at a git ref: the tree's copy (removed on drop)
    /// and the config inside it.
    AtRef {
        copy: TreeCopy,
        config: PathBuf,
    },
}

impl ConfigSource {
    /// `spec` is a file when one exists by that name; `REF:PATH` otherwise.
    pub fn resolve(spec: &str) -> Result<ConfigSource> {
        if Path::new(spec).exists() {
            return Ok(ConfigSource::File(spec.into()));
        }
        let Some((rev, path)) = spec.split_once(':').filter(|(r, p)| !r.is_empty() && !p.is_empty()) else {
            return Ok(ConfigSource::File(spec.into()));
        };
        let (copy, config) = TreeCopy::at(rev, Path::new(path))?;
        Ok(ConfigSource::AtRef { copy, config })
    }

    pub fn path(&self) -> &Path {
        match self {
            ConfigSource::File(p) => p,
            ConfigSource::AtRef { config, .. } => config,
        }
    }
}

/// A copy of a repository's tree at a ref, in a temporary folder.
pub struct TreeCopy {
    dir: PathBuf,
}

impl Drop for TreeCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .map_err(|e| Error::msg(format!("cannot run git: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(Error::msg(format!("git {}: {}", args.join(" "), err.lines().next().unwrap_or("failed"))));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
}

impl TreeCopy {
    /// The tree of `rev` of the repository that holds `path` (relative to
    /// the working directory), and where `path` is inside the copy.
    fn at(rev: &str, path: &Path) -> Result<(TreeCopy, PathBuf)> {
        if rev.starts_with('-') {
            return Err(Error::msg(format!("`{rev}` is not a git ref")));
        }
        let abs = std::env::current_dir().map_err(|e| Error::msg(e.to_string()))?.join(path);
        let dir = abs.parent().filter(|d| d.is_dir()).unwrap_or(Path::new("."));
        let top = PathBuf::from(git(dir, &["rev-parse", "--show-toplevel"])?);
        let commit = git(&top, &["rev-parse", "--verify", "--quiet", &format!("{rev}^{{commit}}")])
            .map_err(|_| Error::msg(format!("`{rev}` is not a commit of the repository at {}", top.display())))?;
        let canon = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_owned());
        let rel = canon(dir)
            .strip_prefix(canon(&top))
            .map(|d| d.join(abs.file_name().unwrap_or_default()))
            .map_err(|_| Error::msg(format!("{} is outside the repository at {}", path.display(), top.display())))?;
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let copy = TreeCopy {
            dir: std::env::temp_dir().join(format!("evalctl-ref-{}-{n}-{}", std::process::id(), &commit[..12])),
        };
        std::fs::create_dir_all(&copy.dir).map_err(|e| Error::msg(format!("{}: {e}", copy.dir.display())))?;
        let mut archive = Command::new("git")
            .arg("-C")
            .arg(&top)
            .args(["archive", "--format=tar", &commit])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::msg(format!("cannot run git: {e}")))?;
        let tar = Command::new("tar")
            .arg("-x")
            .arg("-C")
            .arg(&copy.dir)
            .stdin(archive.stdout.take().expect("piped"))
            .status()
            .map_err(|e| Error::msg(format!("cannot run tar: {e}")))?;
        let archived = archive.wait().map_err(|e| Error::msg(e.to_string()))?;
        if !tar.success() || !archived.success() {
            return Err(Error::msg(format!("could not copy the tree of `{rev}`")));
        }
        let config = copy.dir.join(&rel);
        if !config.is_file() {
            return Err(Error::msg(format!("{} does not exist at `{rev}`", rel.display())));
        }
        Ok((copy, config))
    }
}
