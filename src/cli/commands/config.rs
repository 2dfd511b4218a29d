//! Commands that need no cluster: validate, render, graph, tasks, migrate.

use std::path::Path;

use super::super::args::ConfigArgs;
use super::super::printer::Printer;
use crate::catalog;
use crate::config;
use crate::error::{Error, ExitStatus, Result};
use crate::ops;

/// Output formats of `graph`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    /// Graphviz DOT.
    Dot,
    /// A versioned JSON document.
    Json,
}

fn compile(a: &ConfigArgs, p: &Printer) -> Result<ops::Compiled> {
    ops::compile(&a.config, &a.o.overrides, &p.sources, p)
}

pub fn validate(a: &ConfigArgs, p: &Printer) -> Result<ExitStatus> {
    let c = compile(a, p)?;
    let names: Vec<&str> = c.loaded.tasks.iter().map(|t| t.name.as_str()).collect();
    if !p.quiet {
        p.out(&format!(
            "{}: valid (stack `{}`, {} task{}: {}; deployment: {}; topology: {})\n",
            a.config.display(),
            c.loaded.stack,
            names.len(),
            if names.len() == 1 { "" } else { "s" },
            names.join(", "),
            c.loaded.config.deployment.kind.as_str(),
            c.loaded.config.execution.topology.as_str(),
        ))?;
    }
    super::super::leak(c);
    Ok(ExitStatus::Success)
}

pub fn render(a: &ConfigArgs, out: &Path, p: &Printer) -> Result<ExitStatus> {
    let rendered = compile(a, p)?.rendered;
    let n = ops::compile::write_scripts(&rendered, out)?;
    p.note(&format!("{}: {n} job script(s) written to {}", a.config.display(), out.display()));
    Ok(ExitStatus::Success)
}

pub fn graph(a: &ConfigArgs, format: GraphFormat, p: &Printer) -> Result<ExitStatus> {
    let g = compile(a, p)?.graph;
    let text = match format {
        GraphFormat::Dot => g.to_dot(),
        GraphFormat::Json => {
            g.to_json().map(|v| serde_json::to_string_pretty(&v).expect("plain data serializes") + "\n")
        }
    }
    .map_err(Error::msg)?;
    p.out(&text)?;
    Ok(ExitStatus::Success)
}

pub fn tasks(pattern: Option<&str>, json: bool, p: &Printer) -> Result<ExitStatus> {
    let found = catalog::catalog().search(pattern);
    if json {
        p.out(&(serde_json::to_string_pretty(&found).expect("plain data serializes") + "\n"))?;
        return Ok(ExitStatus::Success);
    }
    if found.is_empty() {
        return Err(Error::msg(format!("no task matches `{}`", pattern.unwrap_or_default())));
    }
    let rows: Vec<[String; 4]> = found
        .iter()
        .map(|t| [t.name.clone(), t.harness.clone(), t.endpoint_types.join(","), t.container.clone()])
        .collect();
    p.out(&crate::table::table(["TASK", "HARNESS", "ENDPOINTS", "CONTAINER"], &rows))?;
    Ok(ExitStatus::Success)
}

pub fn migrate(file: &Path, in_place: bool, p: &Printer) -> Result<ExitStatus> {
    let text =
        config::files::read(file).map_err(|why| Error::msg(format!("cannot read `{}`: {why}", file.display())))?;
    // Checked before anything is written: the result parses to the
    // original's data with the dialect change applied, or this refuses.
    let m = config::migrate::migrate(&file.display().to_string(), &text, &p.sources)?;
    ops::Reporter::warnings(p, &m.warnings);
    if in_place {
        if m.text != text {
            replace_file(file, &m.text).map_err(|e| {
                Error::msg(format!("cannot write `{}`: {e}; the file was left untouched", file.display()))
            })?;
        }
        p.err(&format!("{}: {} value(s) rewritten\n", file.display(), m.changes));
    } else {
        p.out(&m.text)?;
    }
    Ok(ExitStatus::Success)
}

/// Replaces a file's content atomically: a temporary file in the same
/// folder, given the file's permissions, renamed over it. A symlink is
/// followed, so the file it points to is replaced and the link stays.
fn replace_file(file: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let real = std::fs::canonicalize(file)?;
    let perms = std::fs::metadata(&real)?.permissions();
    let dir = real.parent().unwrap_or(Path::new("."));
    let name = real.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.evalctl-migrate.{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        // Readable by the owner only until it has the file's permissions.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::set_permissions(&tmp, perms)?;
        std::fs::rename(&tmp, &real)
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
