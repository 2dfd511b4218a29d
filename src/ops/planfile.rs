//! Saved plans (`plan --out FILE`, `apply FILE`): the plan document plus
//! how to rebuild it, typed and versioned.
//!
//! A saved plan is applied only if the same config, compiled now, renders
//! the same scripts (`render_hash`) and the cluster, refreshed now, gives
//! the same decisions (`fingerprint`); otherwise apply stops with
//! [`Error::Stale`] and submits nothing.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::diag::Diagnostic;
use crate::error::{Error, Result};
use crate::plan::output::PlanDocument;
use crate::plan::{PLAN_VERSION, Plan};
use crate::render::Rendered;

/// What the `kind` field of every saved plan says.
pub const KIND: &str = "evalctl-plan";

/// A plan saved for a later apply.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlanFile {
    /// Always [`KIND`]: tells a saved plan from a config.
    pub kind: String,
    /// The config file, as an absolute path.
    pub config: PathBuf,
    pub overrides: Vec<String>,
    pub replace: Vec<String>,
    /// `--only`/`--exclude` of the plan.
    #[serde(default)]
    pub targets: crate::plan::Targets,
    /// The plan document (`plan --format json`); its `format_version`
    /// versions the file.
    pub plan: PlanDocument,
}

impl PlanFile {
    /// Refuses overrides that hold a variable's value: a saved plan keeps
    /// where values come from, never the values.
    pub fn new(config: &Path, overrides: &[String], opts: &super::PlanOptions, plan: &Plan) -> Result<PlanFile> {
        PlanFile::check_overrides(overrides)?;
        Ok(PlanFile {
            kind: KIND.into(),
            config: std::fs::canonicalize(config).unwrap_or_else(|_| config.to_owned()),
            overrides: overrides.to_vec(),
            replace: opts.replace.clone(),
            targets: opts.targets.clone(),
            plan: PlanDocument::of(plan),
        })
    }

    /// Fails when an override gives an environment variable a value (see
    /// [`crate::config::overrides::holds_no_secret`]): such a plan cannot be saved.
    pub fn check_overrides(overrides: &[String]) -> Result<()> {
        let Some((i, raw)) = overrides.iter().enumerate().find(|(_, o)| !crate::config::overrides::holds_no_secret(o))
        else {
            return Ok(());
        };
        let key = raw.split_once('=').map_or(raw.as_str(), |(k, _)| k);
        Err(Diagnostic::error(
            None,
            format!(
                "-o #{}: `{key}` is given a value on the command line; a saved plan keeps no variable values",
                i + 1
            ),
        )
        .with_note(format!("name its source instead, e.g. `-o {key}=host:VAR` with VAR exported where apply runs"))
        .into())
    }

    /// Writes the file readable by its owner only (mode 0600): a plan shows
    /// every script, and a reviewer's copy is not everyone's.
    pub fn write(&self, path: &Path) -> Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let text = serde_json::to_string_pretty(self).expect("plain data serializes") + "\n";
        let fail = |e: std::io::Error| Error::msg(format!("cannot write {}: {e}", path.display()));
        let mut f =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path).map_err(fail)?;
        // An existing file keeps its mode on open: set it.
        f.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
        f.write_all(text.as_bytes()).map_err(fail)
    }

    /// Reads `path` if it is a saved plan; `None` when it is something else
    /// (a config). A file that says it is a saved plan but cannot be read as
    /// one (another version, damaged) is an error, never a config.
    pub fn read(path: &Path) -> Result<Option<PlanFile>> {
        // A saved plan is a regular file evalctl wrote; anything else is read as a config.
        let Ok(text) = crate::config::files::read_regular(path, 1 << 30) else { return Ok(None) };
        if !text.trim_start().starts_with('{') {
            return Ok(None);
        }
        let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else { return Ok(None) };
        if value.get("kind").and_then(|k| k.as_str()) != Some(KIND) {
            return Ok(None);
        }
        let bad = |why: String| Error::from(Diagnostic::error(None, format!("{}: {why}", path.display())));
        let version = value.pointer("/plan/format_version").and_then(|v| v.as_u64());
        if version != Some(u64::from(PLAN_VERSION)) {
            return Err(bad(match version {
                Some(v) => format!("saved plan format version {v}; this evalctl reads version {PLAN_VERSION}"),
                None => "saved plan has no format version".into(),
            }));
        }
        serde_json::from_value(value).map(Some).map_err(|e| bad(format!("saved plan is damaged: {e}")))
    }

    /// Stale when the config, compiled now, renders differently.
    pub fn check_config(&self, rendered: &Rendered) -> Result<()> {
        if self.plan.plan.render_hash != crate::plan::render_hash(rendered) {
            return Err(Error::Stale("the config changed since the plan was made".into()));
        }
        Ok(())
    }

    /// Stale when the cluster, refreshed now, leads to other decisions.
    pub fn check_cluster(&self, now: &Plan) -> Result<()> {
        if self.plan.plan.fingerprint != now.fingerprint {
            return Err(Error::Stale("the cluster changed since the plan was made".into()));
        }
        Ok(())
    }
}
