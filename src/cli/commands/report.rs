//! `report`: gathers the results of one or more stacks (each over its own
//! connection, as `results` does) and writes them as one HTML page.

use std::path::{Path, PathBuf};

use super::super::args::{ClusterArgs, OverrideArgs};
use super::super::printer::Printer;
use crate::error::{Error, ExitStatus, Result};
use crate::ops::{self, Stack};

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// The configs whose stacks to report, side by side.
    #[arg(value_name = "CONFIG", default_value = "evalctl.yaml")]
    pub configs: Vec<PathBuf>,
    #[command(flatten)]
    pub o: OverrideArgs,
    /// The HTML file to write (`-`: stdout).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

pub fn report(a: &ReportArgs, p: &Printer) -> Result<ExitStatus> {
    let generated_at = generated_at(std::env::var("SOURCE_DATE_EPOCH").ok().as_deref())?;
    // Every config is checked before the first connection.
    let stacks: Vec<Stack> =
        a.configs.iter().map(|c| Stack::open(c, &a.o.overrides, &p.sources, p)).collect::<Result<_>>()?;
    let mut reports = vec![];
    for stack in &stacks {
        let cluster = p.connect(stack, &a.cluster)?;
        reports.push(ops::results::results(stack, cluster.as_ref(), stack.since())?);
    }
    let page = crate::report::html(&reports, Some(generated_at));
    if a.out == Path::new("-") {
        p.out(&page)?;
        return Ok(ExitStatus::Success);
    }
    write(&a.out, &page).map_err(|e| Error::msg(format!("cannot write `{}`: {e}", a.out.display())))?;
    if !p.quiet {
        let scores: usize = reports.iter().map(|r| r.rows.len()).sum();
        p.err(&format!("Wrote {} ({scores} score(s)).\n", a.out.display()));
    }
    Ok(ExitStatus::Success)
}

/// When the page was generated: `SOURCE_DATE_EPOCH` (reproducible builds'
/// convention, for pages that must not change between runs) or now.
fn generated_at(source_date_epoch: Option<&str>) -> Result<u64> {
    match source_date_epoch {
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| Error::msg(format!("SOURCE_DATE_EPOCH must be a number of seconds since 1970, not {v:?}"))),
        None => Ok(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())),
    }
}

/// Writes the page through a temporary file in the same folder renamed
/// over `path`, so a reader never sees half a page.
fn write(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.evalctl-report.{}", std::process::id()));
    std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path)).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn source_date_epoch_fixes_the_time_and_a_bad_one_is_an_error() {
        assert_eq!(super::generated_at(Some("1700000000")).unwrap(), 1_700_000_000);
        let e = super::generated_at(Some("yesterday")).unwrap_err();
        assert!(e.to_string().contains("SOURCE_DATE_EPOCH must be a number"), "{e}");
        assert!(super::generated_at(None).unwrap() > 1_700_000_000);
    }
}
