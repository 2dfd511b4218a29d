//! The config front end, one stage per module, data flowing one way:
//!
//! `yaml` (text → spanned tree) → `compose` (defaults list, config groups)
//! → `overrides` (`-o`) → `interpolate` (`${...}`) → `validate` (required
//! values, JSON Schema from `model`, semantic checks, `env` dialects).
//!
//! Every stage reports all of its errors with source locations; a later
//! stage runs only when the earlier ones succeeded.

pub mod compose;
pub mod env;
pub mod files;
pub mod interpolate;
pub mod migrate;
pub mod model;
pub mod mounts;
pub mod names;
pub mod node;
pub mod overrides;
pub mod reference;
pub mod schema;
pub mod time;
pub mod urls;
pub mod validate;
pub mod yaml;

use std::path::{Path, PathBuf};

pub use env::EnvModel;
pub use model::Config;
pub use node::Node;
pub use validate::ResolvedTask;

use crate::diag::{Diagnostic, Sources};

/// A config that passed every check.
#[derive(Debug)]
pub struct Loaded {
    pub path: PathBuf,
    /// Stack name: `name:` or the file stem.
    pub stack: String,
    pub config: Config,
    /// The composed, interpolated tree (for locations in later stages).
    pub tree: Node,
    pub env: EnvModel,
    pub tasks: Vec<ResolvedTask>,
    pub warnings: Vec<Diagnostic>,
}

/// Why a config could not be loaded: errors and warnings, in order.
#[derive(Debug)]
pub struct Failed {
    pub diagnostics: Vec<Diagnostic>,
}

/// Reads the environment of this process.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Loads, composes, overrides, interpolates and validates a config file.
pub fn load(path: &Path, overrides: &[String], sources: &Sources) -> Result<Loaded, Failed> {
    load_with_env(path, overrides, sources, &process_env)
}

/// [`load`] with an explicit environment (tests, apply-time resolution).
pub fn load_with_env(
    path: &Path,
    overrides: &[String],
    sources: &Sources,
    env: interpolate::EnvLookup<'_>,
) -> Result<Loaded, Failed> {
    let text = files::read(path).map_err(|why| Failed {
        diagnostics: vec![Diagnostic::error(None, format!("cannot read config `{}`: {why}", path.display()))],
    })?;
    load_text(path, &text, overrides, sources, env)
}

/// [`load`] from text already read (`path` names it and locates user groups).
pub fn load_text(
    path: &Path,
    text: &str,
    overrides: &[String],
    sources: &Sources,
    env: interpolate::EnvLookup<'_>,
) -> Result<Loaded, Failed> {
    let fail = |diagnostics: Vec<Diagnostic>| Failed { diagnostics };
    let id = sources.add(path.display().to_string(), text);
    let raw = yaml::parse(text, id).map_err(|d| fail(vec![d]))?;
    if raw.as_map().is_none() {
        return Err(fail(vec![Diagnostic::error(
            raw.span,
            format!("a config must be a mapping, found {}", raw.kind()),
        )]));
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tree = compose::compose(raw, dir, sources).map_err(fail)?;
    overrides::apply(&mut tree, overrides, sources).map_err(fail)?;
    let (tree, origins) = interpolate::resolve(&tree, env).map_err(fail)?;
    let mut diags = vec![];
    match validate::check(&tree, &origins, &mut diags) {
        Some(c) => {
            let loaded = Loaded {
                path: path.to_path_buf(),
                stack: c.config.name.clone().unwrap_or_else(|| stack_from_path(path)),
                config: c.config,
                tree,
                env: c.env,
                tasks: c.tasks,
                warnings: diags,
            };
            // The stack name is known only now (it may come from the file name).
            let errors = validate::job_names(&loaded);
            if errors.is_empty() {
                return Ok(loaded);
            }
            let mut diags = loaded.warnings;
            diags.extend(errors);
            Err(fail(diags))
        }
        None => Err(fail(diags)),
    }
}

/// A stack name from a config file name: its stem, with characters outside
/// `[A-Za-z0-9._-]` replaced by `-`.
pub fn stack_from_path(path: &Path) -> String {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let clean: String =
        stem.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '-' }).collect();
    let clean = clean.trim_start_matches(['.', '-', '_']);
    // Cut to the name grammar's length (on a character boundary: all ASCII).
    let clean = &clean[..clean.len().min(names::MAX_NAME)];
    if clean.is_empty() { "evalctl".into() } else { clean.to_owned() }
}
