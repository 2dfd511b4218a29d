//! Both launcher env-var dialects resolved into one model: for every
//! container, which variables it gets and where each value comes from.
//!
//! Older dialect: `execution.env_vars.{deployment,evaluation}` hold values
//! (often `${oc.env:TOKEN}`); `evaluation.env_vars` and task `env_vars` hold
//! the *names* of variables read where evalctl runs. Newer dialect: top-level
//! `env_vars`, `deployment.env_vars`, `evaluation.env_vars`, task `env_vars`
//! with `host:VAR`, `lit:VALUE`, `runtime:VAR` values.
//!
//! Precedence, later wins: top-level, `execution.env_vars.<group>`,
//! `deployment.env_vars` / `evaluation.env_vars`, task `env_vars`.

use indexmap::IndexMap;

use super::model::{Config, EnvValue};
use super::node::Seg;

/// Where a variable's value comes from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// A value written in the config.
    Literal { value: String },
    /// A variable of the machine running evalctl, read at apply time.
    Host { var: String, default: Option<String> },
    /// A variable of the compute node, read when the job runs.
    Runtime { var: String },
    /// Text mixing literals and `${oc.env:...}`, resolved at apply time.
    Template { text: String },
}

/// One variable of one container.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct EnvVar {
    pub name: String,
    pub source: Source,
    /// Secret values never reach scripts, plans, state or logs.
    pub secret: bool,
    /// Where it was defined (for messages).
    #[serde(skip)]
    pub path: Vec<Seg>,
}

/// The environment of every container of a config.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct EnvModel {
    pub deployment: Vec<EnvVar>,
    pub auxiliary: IndexMap<String, Vec<EnvVar>>,
    /// One list per `evaluation.tasks` entry, in order.
    pub tasks: Vec<Vec<EnvVar>>,
}

/// An env var problem: where, what, and whether it is about the value
/// (else the name).
pub type EnvError = (Vec<Seg>, String, bool);

/// How bare (unprefixed) string values of a section are read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Bare {
    /// The value itself, treated as a secret.
    SecretValue,
    /// The name of a variable where evalctl runs.
    HostName,
}

/// Builds the model; reports invalid names and values.
pub fn collect(cfg: &Config) -> Result<EnvModel, Vec<EnvError>> {
    let mut errors = vec![];
    let mut sec = |map: &IndexMap<String, EnvValue>, path: &[&str], bare: Bare| -> Vec<EnvVar> {
        let base: Vec<Seg> = path.iter().map(|k| Seg::Key((*k).to_owned())).collect();
        read_section(map, &base, bare, &mut errors)
    };
    let top = sec(&cfg.env_vars, &["env_vars"], Bare::SecretValue);
    let exec_dep = sec(&cfg.execution.env_vars.deployment, &["execution", "env_vars", "deployment"], Bare::SecretValue);
    let exec_eval =
        sec(&cfg.execution.env_vars.evaluation, &["execution", "env_vars", "evaluation"], Bare::SecretValue);
    let dep = sec(&cfg.deployment.env_vars, &["deployment", "env_vars"], Bare::SecretValue);
    let eval = sec(&cfg.evaluation.env_vars, &["evaluation", "env_vars"], Bare::HostName);
    let mut auxiliary = IndexMap::new();
    for (name, aux) in &cfg.auxiliary_deployments {
        let own = sec(&aux.env_vars, &["auxiliary_deployments", name, "env_vars"], Bare::SecretValue);
        auxiliary.insert(name.clone(), layer(&[&top, &own]));
    }
    let mut tasks = vec![];
    for (i, t) in cfg.evaluation.tasks.iter().enumerate() {
        let base =
            vec![Seg::Key("evaluation".into()), Seg::Key("tasks".into()), Seg::Index(i), Seg::Key("env_vars".into())];
        let own = read_section(&t.env_vars, &base, Bare::HostName, &mut errors);
        tasks.push(layer(&[&top, &exec_eval, &eval, &own]));
    }
    let model = EnvModel { deployment: layer(&[&top, &exec_dep, &dep]), auxiliary, tasks };
    if errors.is_empty() { Ok(model) } else { Err(errors) }
}

/// Later layers override earlier ones by name; order of first appearance kept.
fn layer(layers: &[&Vec<EnvVar>]) -> Vec<EnvVar> {
    let mut out: IndexMap<String, EnvVar> = IndexMap::new();
    for l in layers {
        for v in l.iter() {
            out.insert(v.name.clone(), v.clone());
        }
    }
    out.into_values().collect()
}

fn read_section(map: &IndexMap<String, EnvValue>, base: &[Seg], bare: Bare, errors: &mut Vec<EnvError>) -> Vec<EnvVar> {
    let mut out = vec![];
    for (name, value) in map {
        let mut path = base.to_vec();
        path.push(Seg::Key(name.clone()));
        if !is_var_name(name) {
            errors.push((path, format!("`{name}` is not a valid environment variable name"), false));
            continue;
        }
        match read_value(value, bare) {
            Ok((source, secret)) => out.push(EnvVar { name: name.clone(), source, secret, path }),
            Err(msg) => errors.push((path, msg, true)),
        }
    }
    out
}

fn read_value(value: &EnvValue, bare: Bare) -> Result<(Source, bool), String> {
    let text = match value {
        EnvValue::Str(s) => s.as_str(),
        // A number or a boolean is a value like any other: as secret as a
        // string would be in the same place (`lit:` makes one visible).
        other => {
            return Ok((Source::Literal { value: other.to_string() }, true));
        }
    };
    let var = |v: &str| -> Result<String, String> {
        match (is_var_name(v), v == text) {
            (true, _) => Ok(v.to_owned()),
            (false, true) => Err(format!("`{v}` is not a valid environment variable name")),
            (false, false) => Err(format!("`{text}`: `{v}` is not a valid environment variable name")),
        }
    };
    if let Some(v) = text.strip_prefix("host:") {
        return Ok((Source::Host { var: var(v)?, default: None }, true));
    }
    if let Some(v) = text.strip_prefix("runtime:") {
        return Ok((Source::Runtime { var: var(v)? }, false));
    }
    if let Some(v) = text.strip_prefix("lit:") {
        return Ok((Source::Literal { value: v.to_owned() }, false));
    }
    if text.contains("${oc.env:") {
        if let Some(inner) = text.strip_prefix("${oc.env:").and_then(|r| r.strip_suffix('}'))
            && !inner.contains(['$', '{', '}'])
        {
            let (v, default) = match inner.split_once(',') {
                Some((v, d)) => (v.trim(), Some(d.trim().to_owned())),
                None => (inner.trim(), None),
            };
            return Ok((Source::Host { var: var(v)?, default }, true));
        }
        return Ok((Source::Template { text: text.to_owned() }, true));
    }
    match bare {
        Bare::SecretValue => Ok((Source::Literal { value: text.to_owned() }, true)),
        Bare::HostName => Ok((Source::Host { var: var(text)?, default: None }, true)),
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`
pub fn is_var_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}
