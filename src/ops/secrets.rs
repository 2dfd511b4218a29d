//! Secret values, read where evalctl runs, only when applying.
//!
//! A missing variable is an error that names the variable, the job, where
//! the config refers to it and how to provide it, before anything touches
//! the cluster. Values go into the apply program's secrets files and
//! nowhere else.

use crate::config::Loaded;
use crate::config::env::Source;
use crate::diag::Diagnostic;
use crate::render::Rendered;

use crate::remote::submit::SecretValues;

/// Resolves every secret of the jobs of `units` (all units when `None`).
pub fn resolve(
    loaded: &Loaded,
    rendered: &Rendered,
    units: Option<&[String]>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<SecretValues, Vec<Diagnostic>> {
    let mut out = SecretValues::new();
    let mut errors = vec![];
    let mut reported: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for job in &rendered.jobs {
        if units.is_some_and(|u| !job.units().iter().any(|j| u.iter().any(|x| x == j))) {
            continue;
        }
        for (group, vars) in &job.secrets {
            let mut values = vec![];
            for v in vars {
                let value = match &v.source {
                    Source::Literal { value } => Ok(value.clone()),
                    Source::Host { var, default } => env(var).or_else(|| default.clone()).ok_or_else(|| var.clone()),
                    Source::Template { text } => template(text, env),
                    // Read on the compute node; nothing to send.
                    Source::Runtime { .. } => continue,
                };
                match value {
                    Ok(val) => values.push((v.name.clone(), val)),
                    Err(var) => {
                        if reported.insert(format!("{var}\0{}", v.name)) {
                            let span = if v.path.is_empty() { None } else { Some(loaded.tree.value_span_of(&v.path)) };
                            errors.push(
                                Diagnostic::error(
                                    span,
                                    format!("secret `{}` needs the environment variable `{var}`, which is not set", v.name),
                                )
                                .with_note(format!("export {var}=... where evalctl runs (e.g. from your CI secret store), then apply again")),
                            );
                        }
                    }
                }
            }
            out.insert((job.dir.clone(), group.clone()), values);
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

/// Resolves `${oc.env:VAR}` / `${oc.env:VAR,default}` parts of a deferred value.
fn template(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("${oc.env:") {
        out.push_str(&rest[..i]);
        let after = &rest[i + "${oc.env:".len()..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[i..]);
            return Ok(out);
        };
        let inner = &after[..end];
        let (var, default) = match inner.split_once(',') {
            Some((v, d)) => (v.trim(), Some(d.trim())),
            None => (inner.trim(), None),
        };
        match env(var).or_else(|| default.map(str::to_owned)) {
            Some(v) => out.push_str(&v),
            None => return Err(var.to_owned()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Resolves a deferred value (`${oc.env:...}` parts); `Err(VAR)` names a
/// variable that is not set.
pub fn resolve_text(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    template(text, env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        let env = |k: &str| (k == "A").then(|| "1".to_owned());
        assert_eq!(template("x${oc.env:A}y", &env), Ok("x1y".into()));
        assert_eq!(template("${oc.env:B,dflt}", &env), Ok("dflt".into()));
        assert_eq!(template("${oc.env:B}", &env), Err("B".into()));
    }
}
