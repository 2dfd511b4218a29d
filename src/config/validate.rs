//! Checks a composed, interpolated config: required values, the JSON Schema
//! (generated from the typed model, checked with the `jsonschema` crate),
//! then what a schema cannot say (task names, paths, node arithmetic,
//! walltimes, env vars). Every problem is reported, each at its own place.

use std::sync::OnceLock;

use jsonschema::error::ValidationErrorKind;
use serde_json::Value as J;

use super::env::{self, EnvModel};
use super::interpolate::Origins;
use super::model::{AutoExportSetting, Config, DeploymentType};
use super::names;
use super::node::{Node, Seg, Value, path_string};
use super::schema::{self, Draft};
use crate::catalog::{self, Resolution, TaskInfo};
use crate::diag::Diagnostic;
use crate::render::sbatch::{FlagName, SbatchValue};

/// A task of the config with its catalog entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedTask {
    /// Position in `evaluation.tasks`.
    pub index: usize,
    pub name: String,
    pub info: TaskInfo,
}

/// The result of a successful check.
#[derive(Debug)]
pub struct Checked {
    pub config: Config,
    pub env: EnvModel,
    pub tasks: Vec<ResolvedTask>,
}

fn root_schema() -> &'static J {
    static S: OnceLock<J> = OnceLock::new();
    S.get_or_init(|| schema::schema(Draft::D2020_12))
}

fn validator() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| {
        // The schema is generated from our own types; failing to compile it
        // is a build defect that the test suite catches.
        jsonschema::draft202012::options()
            .with_pattern_options(jsonschema::PatternOptions::regex())
            .build(root_schema())
            .expect("generated schema compiles")
    })
}

/// Runs every check; returns the typed config when there are no errors.
/// Warnings are appended to `diags` either way.
pub fn check(tree: &Node, origins: &Origins, diags: &mut Vec<Diagnostic>) -> Option<Checked> {
    let before = diags.iter().filter(|d| d.is_error()).count();
    let missing = missing_values(tree, diags);
    let json = tree.to_json();
    schema_errors(tree, &json, &missing, origins, diags);
    let config: Config = match serde_path_to_error::deserialize(&json) {
        Ok(c) => c,
        Err(e) => {
            if diags.iter().filter(|d| d.is_error()).count() == before {
                let path = pointer_to_path(tree, &serde_pointer(e.path()));
                diags.push(Diagnostic::error(tree.value_span_of(&path), e.inner().to_string()));
            }
            return None;
        }
    };
    let tasks = semantic(tree, &config, &missing, diags);
    let env = match env::collect(&config) {
        Ok(m) => Some(m),
        Err(errs) => {
            for (path, msg, at_value) in errs {
                diags.push(error_at(tree, &path, at_value, msg));
            }
            None
        }
    };
    if diags.iter().filter(|d| d.is_error()).count() > before {
        return None;
    }
    Some(Checked { config, env: env?, tasks })
}

/// Reports every `???` left; returns their paths.
fn missing_values(tree: &Node, diags: &mut Vec<Diagnostic>) -> Vec<Vec<Seg>> {
    let mut found = vec![];
    tree.walk(&mut vec![], &mut |path, n| {
        if matches!(n.value, Value::Missing) {
            found.push(path.to_vec());
        }
    });
    for path in &found {
        let p = path_string(path);
        diags.push(
            Diagnostic::error(tree.span_of(path), format!("required value `{p}` is not set (`???`)"))
                .with_note(format!("set it in the config, or pass `-o {p}=VALUE`")),
        );
    }
    found
}

/// Converts a JSON pointer into a tree path (numbers index lists).
fn pointer_to_path(tree: &Node, pointer: &str) -> Vec<Seg> {
    let mut path = vec![];
    let mut cur = Some(tree);
    // An empty segment is the empty key (`{"": x}`), not nothing.
    for raw in pointer.split('/').skip(1) {
        let key = raw.replace("~1", "/").replace("~0", "~");
        let seg = match (cur.map(|n| &n.value), key.parse::<usize>()) {
            (Some(Value::Seq(_)), Ok(i)) => Seg::Index(i),
            _ => Seg::Key(key),
        };
        cur = cur.and_then(|n| n.child(&seg));
        path.push(seg);
    }
    path
}

fn where_(path: &[Seg]) -> String {
    if path.is_empty() { "at the top level".into() } else { format!("in `{}`", path_string(path)) }
}

fn show(v: &J) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 { format!("{}...", s.chars().take(57).collect::<String>()) } else { s }
}

fn schema_errors(tree: &Node, json: &J, missing: &[Vec<Seg>], origins: &Origins, diags: &mut Vec<Diagnostic>) {
    let mut seen = std::collections::HashSet::new();
    let mut errors = vec![];
    for e in validator().iter_errors(json) {
        expand_optional(e.to_owned(), &mut errors);
    }
    let paths: Vec<Vec<Seg>> = errors.iter().map(|e| pointer_to_path(tree, e.instance_path().as_str())).collect();
    for (err, path) in errors.iter().zip(paths.iter().cloned()) {
        if missing.iter().any(|m| path.starts_with(m)) {
            continue;
        }
        // A value copied by reference from a value that is itself wrong is
        // reported once, at the original.
        if let Some(origin) = origins.get(&path)
            && paths.iter().any(|p| p.starts_with(origin))
        {
            continue;
        }
        let name = path_string(&path);
        let value = err.instance();
        let d = match err.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                for key in unexpected {
                    let mut p = path.clone();
                    p.push(Seg::Key(key.clone()));
                    let known = known_properties(root_schema(), err.schema_path().as_str());
                    let mut d = Diagnostic::error(tree.span_of(&p), format!("unknown key `{key}` {}", where_(&path)));
                    if let Some(best) = closest(key, &known) {
                        d = d.with_note(format!("did you mean `{best}`?"));
                    }
                    if seen.insert(d.headline(&Default::default())) {
                        diags.push(d);
                    }
                }
                continue;
            }
            ValidationErrorKind::Required { property } => {
                let key = property.as_str().unwrap_or_default();
                Diagnostic::error(tree.span_of(&path), format!("missing required key `{key}` {}", where_(&path)))
            }
            ValidationErrorKind::Type { kind } => Diagnostic::error(
                tree.value_span_of(&path),
                format!("`{name}` must be {}, found {}", expected_types(kind), describe(value)),
            ),
            ValidationErrorKind::Enum { options } => {
                let opts: Vec<String> = options
                    .as_array()
                    .map(|a| a.iter().map(|o| o.as_str().map_or(o.to_string(), str::to_owned)).collect())
                    .unwrap_or_default();
                Diagnostic::error(
                    tree.value_span_of(&path),
                    format!("`{name}` must be one of: {}; found {}", opts.join(", "), show(value)),
                )
            }
            ValidationErrorKind::Minimum { limit } => Diagnostic::error(
                tree.value_span_of(&path),
                format!("`{name}` must be at least {limit}, found {}", show(value)),
            ),
            ValidationErrorKind::Maximum { limit } => Diagnostic::error(
                tree.value_span_of(&path),
                format!("`{name}` must be at most {limit}, found {}", show(value)),
            ),
            ValidationErrorKind::AnyOf { .. } | ValidationErrorKind::Pattern { .. } if is_time_field(&path) => {
                let readiness = matches!(path.last(), Some(Seg::Key(k)) if k == "endpoint_readiness_timeout");
                let (what, hint) = if readiness {
                    ("a duration", "seconds, or HH:MM:SS")
                } else {
                    ("a Slurm time", "HH:MM:SS, D-HH:MM:SS, MM:SS or minutes")
                };
                Diagnostic::error(
                    tree.value_span_of(&path),
                    format!("`{name}` is not {what}: {} (use {hint})", show(value)),
                )
            }
            ValidationErrorKind::OneOfNotValid { .. } | ValidationErrorKind::AnyOf { .. }
                if !choices_at(root_schema(), err.schema_path().as_str()).is_empty() =>
            {
                let opts = choices_at(root_schema(), err.schema_path().as_str());
                Diagnostic::error(
                    tree.value_span_of(&path),
                    format!("`{name}` must be one of: {}; found {}", opts.join(", "), show(value)),
                )
            }
            ValidationErrorKind::AnyOf { .. } => {
                Diagnostic::error(tree.value_span_of(&path), format!("`{name}` has an invalid value {}", show(value)))
            }
            _ => Diagnostic::error(tree.value_span_of(&path), format!("`{name}`: {err}")),
        };
        if seen.insert(d.headline(&Default::default())) {
            diags.push(d);
        }
    }
}

/// An optional value's schema is `anyOf [schema, null]`; given a value
/// that is not null, the errors are those of its one fitting branch, each
/// at its own place, not "an invalid value" at the whole value.
fn expand_optional(err: jsonschema::ValidationError<'static>, out: &mut Vec<jsonschema::ValidationError<'static>>) {
    let here = err.instance_path().as_str().to_owned();
    let fits = |branch: &Vec<jsonschema::ValidationError<'static>>| {
        !branch.is_empty()
            && !branch
                .iter()
                .any(|e| matches!(e.kind(), ValidationErrorKind::Type { .. }) && e.instance_path().as_str() == here)
    };
    let one_fits = match err.kind() {
        ValidationErrorKind::AnyOf { context } => context.iter().filter(|b| fits(b)).count() == 1,
        _ => false,
    };
    if !one_fits {
        out.push(err);
        return;
    }
    if let ValidationErrorKind::AnyOf { context } = err.into_parts().kind {
        for branch in context.into_iter().filter(|b| fits(b)) {
            for e in branch {
                expand_optional(e, out);
            }
        }
    }
}

fn is_time_field(path: &[Seg]) -> bool {
    matches!(path.last(), Some(Seg::Key(k)) if k == "walltime" || k == "max_walltime" || k == "endpoint_readiness_timeout")
}

/// "an integer", "a string (or null)", "a number or a string".
fn expected_types(kind: &jsonschema::error::TypeKind) -> String {
    use jsonschema::error::TypeKind;
    let names: Vec<String> = match kind {
        TypeKind::Single(t) => vec![t.to_string()],
        TypeKind::Multiple(ts) => ts.into_iter().map(|t| t.to_string()).collect(),
    };
    let nullable = names.iter().any(|n| n == "null");
    let words: Vec<&str> = names
        .iter()
        .filter(|n| *n != "null")
        .map(|n| match n.as_str() {
            "integer" => "an integer",
            "number" => "a number",
            "string" => "a string",
            "boolean" => "a boolean",
            "array" => "a list",
            "object" => "a mapping",
            _ => "a value",
        })
        .collect();
    match (words.is_empty(), nullable) {
        (true, _) => "null".into(),
        (false, true) => format!("{} (or null)", words.join(" or ")),
        (false, false) => words.join(" or "),
    }
}

fn describe(v: &J) -> String {
    match v {
        J::Null => "null".into(),
        J::Bool(b) => format!("a boolean ({b})"),
        J::Number(n) => format!("a number ({n})"),
        J::String(s) => format!("a string ({})", show(&J::String(s.clone()))),
        J::Array(_) => "a list".into(),
        J::Object(_) => "a mapping".into(),
    }
}

/// The constants of an enum written as `oneOf`/`anyOf` of `const`s (how
/// documented enum variants are generated), at a schema path.
fn choices_at(root: &J, schema_path: &str) -> Vec<String> {
    let Some(list) = schema_at(root, schema_path, 0).and_then(J::as_array) else { return vec![] };
    let consts: Vec<String> = list
        .iter()
        .filter_map(|s| s.get("const").or_else(|| s.get("enum").and_then(|e| e.get(0))))
        .map(|c| c.as_str().map_or(c.to_string(), str::to_owned))
        .collect();
    if consts.len() == list.len() { consts } else { vec![] }
}

/// The schema node at a keyword location, following `$ref`s, leaving out
/// the last `drop` segments.
fn schema_at<'a>(root: &'a J, schema_path: &str, drop: usize) -> Option<&'a J> {
    let mut cur = root;
    let segs: Vec<&str> = schema_path.split('/').skip(1).collect();
    for seg in segs.iter().take(segs.len().saturating_sub(drop)) {
        if *seg == "$ref" {
            let r = cur.get("$ref").and_then(J::as_str)?;
            let mut target = root;
            for part in r.trim_start_matches("#/").split('/') {
                target = target.get(part)?;
            }
            cur = target;
            continue;
        }
        cur = match cur {
            J::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => cur.get(*seg)?,
        };
    }
    Some(cur)
}

/// The property names allowed where an `additionalProperties` error arose.
fn known_properties(root: &J, schema_path: &str) -> Vec<String> {
    schema_at(root, schema_path, 1)
        .and_then(|s| s.get("properties"))
        .and_then(J::as_object)
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn closest(key: &str, known: &[String]) -> Option<String> {
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(key, k), k))
        .filter(|(s, _)| *s > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k.clone())
}

fn keys(ks: &[&str]) -> Vec<Seg> {
    ks.iter().map(|k| Seg::Key((*k).to_owned())).collect()
}

/// An error at `path`: its value's span when the value is wrong, else its
/// key's.
fn error_at(tree: &Node, path: &[Seg], at_value: bool, msg: String) -> Diagnostic {
    Diagnostic::error(if at_value { tree.value_span_of(path) } else { tree.span_of(path) }, msg)
}

/// Checks a schema cannot express. Returns the resolved tasks.
fn semantic(tree: &Node, cfg: &Config, missing: &[Vec<Seg>], diags: &mut Vec<Diagnostic>) -> Vec<ResolvedTask> {
    let err = |diags: &mut Vec<Diagnostic>, path: Vec<Seg>, value: bool, msg: String| {
        diags.push(error_at(tree, &path, value, msg));
    };
    let exec = &cfg.execution;

    // Stack name: a directory name and part of job names.
    if let Some(name) = &cfg.name
        && let Err(why) = names::check("stack name", name)
    {
        err(diags, keys(&["name"]), true, why);
    }
    for name in cfg.auxiliary_deployments.keys() {
        if let Err(why) = names::check("auxiliary deployment name", name) {
            err(diags, keys(&["auxiliary_deployments", name]), false, why);
        }
    }

    // Paths.
    endpoint_and_mount_grammar(tree, cfg, diags);
    if !exec.output_dir.starts_with('/') {
        err(
            diags,
            keys(&["execution", "output_dir"]),
            true,
            format!("`execution.output_dir` must be an absolute path, found `{}`", exec.output_dir),
        );
    }
    let mut deployments: Vec<(Vec<Seg>, &super::model::Deployment)> = vec![(keys(&["deployment"]), &cfg.deployment)];
    for (name, d) in &cfg.auxiliary_deployments {
        deployments.push((keys(&["auxiliary_deployments", name]), d));
    }
    for (base, d) in &deployments {
        let at = |k: &str| [base.clone(), keys(&[k])].concat();
        for (k, v) in [("checkpoint_path", &d.checkpoint_path), ("cache_path", &d.cache_path)] {
            if let Some(p) = v
                && !p.starts_with('/')
            {
                err(diags, at(k), true, format!("`{}` must be an absolute path, found `{p}`", path_string(&at(k))));
            }
        }
        let needs_model = matches!(d.kind, DeploymentType::Vllm | DeploymentType::Sglang | DeploymentType::Trtllm);
        match (&d.checkpoint_path, &d.hf_model_handle) {
            (Some(_), Some(_)) => err(
                diags,
                at("hf_model_handle"),
                false,
                format!("set only one of `{0}.checkpoint_path` and `{0}.hf_model_handle`", path_string(base)),
            ),
            (None, None)
                if needs_model
                    && !missing.contains(&at("checkpoint_path"))
                    && !missing.contains(&at("hf_model_handle")) =>
            {
                err(
                    diags,
                    base.clone(),
                    false,
                    format!(
                        "a {} deployment needs `{1}.checkpoint_path` (a path on the cluster) or `{1}.hf_model_handle` (a Hugging Face model id)",
                        kind_name(d.kind),
                        path_string(base)
                    ),
                )
            }
            _ => {}
        }
    }
    let mounts = [("deployment", &exec.mounts.deployment), ("evaluation", &exec.mounts.evaluation)];
    let aux_mounts = exec.mounts.auxiliary.iter().map(|(n, m)| (n.as_str(), m));
    for (group, map) in mounts.into_iter().chain(aux_mounts) {
        let base = if exec.mounts.auxiliary.contains_key(group) && group != "deployment" && group != "evaluation" {
            keys(&["execution", "mounts", "auxiliary", group])
        } else {
            keys(&["execution", "mounts", group])
        };
        for (src, dst) in map {
            let p = [base.clone(), vec![Seg::Key(src.clone())]].concat();
            if !(src.starts_with('/') || src.starts_with("./") || src.starts_with("../")) {
                err(
                    diags,
                    p.clone(),
                    false,
                    format!("mount source `{src}` must be an absolute path (or start with ./ or ../)"),
                );
            }
            let target = dst.split(':').next().unwrap_or_default();
            if !target.starts_with('/') {
                err(diags, p, true, format!("mount target `{dst}` must be an absolute path in the container"));
            }
        }
    }

    // Node arithmetic.
    if exec.num_instances > 0 && !exec.num_nodes.is_multiple_of(exec.num_instances) {
        err(
            diags,
            keys(&["execution", "num_instances"]),
            true,
            format!(
                "`execution.num_nodes` ({}) must be a multiple of `execution.num_instances` ({})",
                exec.num_nodes, exec.num_instances
            ),
        );
    }
    aux_prefixes(tree, cfg, diags);
    for (name, d) in &cfg.auxiliary_deployments {
        let (nodes, instances) = (d.num_nodes.unwrap_or(1), d.num_instances.unwrap_or(1));
        if instances > 0 && !nodes.is_multiple_of(instances) {
            let base = keys(&["auxiliary_deployments", name]);
            // At `num_instances` when it is written, else at `num_nodes`.
            let at = if d.num_instances.is_some() { "num_instances" } else { "num_nodes" };
            err(
                diags,
                [base, keys(&[at])].concat(),
                true,
                format!(
                    "`auxiliary_deployments.{name}.num_nodes` ({nodes}) must be a multiple of its `num_instances` ({instances})"
                ),
            );
        }
    }

    sbatch_values(tree, exec, diags);
    launcher_keys(tree, cfg, diags);

    // Time limits.
    let wall = check_time(tree, diags, exec.walltime.seconds(), &["execution", "walltime"]);
    if let Some(t) = &exec.endpoint_readiness_timeout {
        check_time(tree, diags, t.seconds(), &["execution", "endpoint_readiness_timeout"]);
    }
    if let Some(max) = &exec.max_walltime {
        let max_s = check_time(tree, diags, max.seconds(), &["execution", "max_walltime"]);
        if let (Some(w), Some(m)) = (wall, max_s)
            && w > m
        {
            err(
                diags,
                keys(&["execution", "walltime"]),
                true,
                "`execution.walltime` is longer than `execution.max_walltime`".into(),
            );
        }
    }

    // Endpoint when nothing is deployed; topology.
    if cfg.deployment.kind == DeploymentType::None {
        if cfg.target.api_endpoint.url.is_none() {
            err(
                diags,
                keys(&["deployment", "type"]),
                true,
                "nothing is deployed (`deployment.type: none`): set `target.api_endpoint.url`".into(),
            );
        }
        if exec.topology == super::model::Topology::Shared {
            err(diags, keys(&["execution", "topology"]), true, "`shared` topology needs a deployment to share".into());
        }
    }
    // Packing: how many tasks a job runs, and only the model's topology packs.
    if exec.tasks_per_job.is_some() && exec.topology != super::model::Topology::Packed {
        err(
            diags,
            keys(&["execution", "tasks_per_job"]),
            false,
            format!(
                "`execution.tasks_per_job` is for the `packed` topology (this config's is `{}`)",
                exec.topology.as_str()
            ),
        );
    }
    if exec.max_concurrent == Some(0) {
        err(
            diags,
            keys(&["execution", "max_concurrent"]),
            true,
            "`execution.max_concurrent` must be at least 1".into(),
        );
    }
    if exec.tasks_per_job == Some(0) {
        err(diags, keys(&["execution", "tasks_per_job"]), true, "`execution.tasks_per_job` must be at least 1".into());
    }
    for (name, d) in &cfg.auxiliary_deployments {
        if d.topology == Some(super::model::Topology::Packed) {
            err(
                diags,
                keys(&["auxiliary_deployments", name, "topology"]),
                true,
                format!(
                    "`auxiliary_deployments.{name}.topology` is `per_task` or `shared`: only the model's packs tasks"
                ),
            );
        }
    }

    // The endpoint's API key: a variable every task's job exports.
    if let Some(key) = &cfg.target.api_endpoint.api_key_name
        && !env::is_var_name(key)
    {
        let path = keys(&["target", "api_endpoint", "api_key_name"]);
        err(diags, path, true, format!("`{}` is not a valid environment variable name", key.escape_debug()));
    }
    // Other keys under `target.api_endpoint`: the harness's endpoint model
    // refuses fields it lacks (failing every task at start), so they are
    // not written to the run config; the launcher accepts and ignores them.
    for key in cfg.target.api_endpoint.extra.keys() {
        let span = tree.span_of(&keys(&["target", "api_endpoint", key]));
        let note = match key.as_str() {
            "api_key" => "name the variable holding the key with `api_key_name`",
            _ => "request settings go under `evaluation.nemo_evaluator_config.config.params`",
        };
        diags.push(
            Diagnostic::warning(
                span,
                format!(
                    "`target.api_endpoint.{}` is not an endpoint setting of the harness (nemo-evaluator {}): \
                     it is not passed to it",
                    key.escape_debug(),
                    crate::render::run_config::HARNESS_VERSION,
                ),
            )
            .with_note(format!(
                "the harness's endpoint settings are `url`, `model_id`, `type`, `api_key_name`, `stream` and \
                 `adapter_config`; {note}"
            )),
        );
    }

    // Endpoint types: the harness refuses others at start.
    let types = crate::render::run_config::HARNESS_ENDPOINT_TYPES;
    let mut typed = vec![(keys(&["target", "api_endpoint", "type"]), &cfg.target.api_endpoint.kind)];
    for (i, t) in cfg.evaluation.tasks.iter().enumerate() {
        let path = vec![
            Seg::Key("evaluation".into()),
            Seg::Key("tasks".into()),
            Seg::Index(i),
            Seg::Key("endpoint_type".into()),
        ];
        typed.push((path, &t.endpoint_type));
    }
    for (path, kind) in typed {
        if let Some(kind) = kind
            && !types.contains(&kind.as_str())
        {
            let why = format!(
                "`{}` is not an endpoint type of the harness (nemo-evaluator {}): one of {}",
                kind.escape_debug(),
                crate::render::run_config::HARNESS_VERSION,
                types.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
            );
            err(diags, path, true, why);
        }
    }

    // Tasks.
    if cfg.evaluation.tasks.is_empty() {
        err(diags, keys(&["evaluation", "tasks"]), false, "`evaluation.tasks` is empty: nothing to evaluate".into());
    }
    let mut resolved = vec![];
    let mut ids: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let cat = catalog::catalog();
    for (i, t) in cfg.evaluation.tasks.iter().enumerate() {
        let base = vec![Seg::Key("evaluation".into()), Seg::Key("tasks".into()), Seg::Index(i)];
        let name_path = [base.clone(), keys(&["name"])].concat();
        let span = tree.value_span_of(&name_path);
        if t.id.is_none()
            && let Err(why) = names::check("task name (used as its id; or set `id:`)", &t.name)
        {
            err(diags, name_path.clone(), true, why);
            continue;
        }
        if let Some(id) = &t.id {
            let id_path = [base.clone(), keys(&["id"])].concat();
            if let Err(why) = names::check("task id", id) {
                err(diags, id_path.clone(), true, why);
            }
            if let Some(first) = ids.get(id.as_str()) {
                err(diags, id_path, true, format!("task id `{id}` is already used by evaluation.tasks.{first}"));
            } else {
                ids.insert(id, i);
            }
        }
        let info = match cat.resolve(&t.name) {
            Resolution::Found(info) => Some(info.clone()),
            Resolution::Legacy { task, choices } => {
                let mut d = Diagnostic::warning(
                    span,
                    format!(
                        "task `{}` resolved to `{}`, its meaning in launcher 0.1.x configs",
                        t.name,
                        task.qualified()
                    ),
                );
                if choices.len() > 1 {
                    let q: Vec<String> = choices.iter().map(|c| c.qualified()).collect();
                    d = d.with_note(format!(
                        "the current catalog has several: {}; write the qualified name to choose",
                        q.join(", ")
                    ));
                } else {
                    d = d.with_note(
                        "the current catalog has no task of this name; write the qualified name to silence this",
                    );
                }
                diags.push(d);
                Some(task.clone())
            }
            Resolution::Ambiguous(choices) => {
                let q: Vec<String> = choices.iter().map(|c| c.qualified()).collect();
                diags.push(
                    Diagnostic::error(span, format!("task name `{}` is ambiguous", t.name))
                        .with_note(format!("qualify it with its harness: {}", q.join(", "))),
                );
                None
            }
            Resolution::Unknown(suggestions) => match &t.container {
                Some(image) => Some(TaskInfo {
                    harness: t.name.split_once('.').map_or("custom", |(h, _)| h).to_owned(),
                    name: t.name.split_once('.').map_or(t.name.as_str(), |(_, n)| n).to_owned(),
                    task_type: t.name.clone(),
                    endpoint_types: t.endpoint_type.iter().cloned().collect(),
                    container: image.clone(),
                }),
                None => {
                    let mut d = Diagnostic::error(span, format!("unknown task `{}`", t.name));
                    d = match suggestions.as_slice() {
                        [] => d.with_note("`evalctl tasks` lists the catalog; a task outside it needs `container:`"),
                        s => d.with_note(format!(
                            "did you mean {}?",
                            s.iter().map(|x| format!("`{x}`")).collect::<Vec<_>>().join(" or ")
                        )),
                    };
                    diags.push(d);
                    None
                }
            },
        };
        if let Some(mut info) = info {
            if let Some(image) = &t.container {
                info.container = image.clone();
            }
            resolved.push(ResolvedTask { index: i, name: t.name.clone(), info });
        }
    }
    resolved
}

/// Values that become `#SBATCH` lines, checked with the types the job
/// script is written with, so a value `render` would refuse is refused here,
/// at its line.
fn sbatch_values(tree: &Node, exec: &super::model::Execution, diags: &mut Vec<Diagnostic>) {
    let mut err = |path: Vec<Seg>, value: bool, msg: String| diags.push(error_at(tree, &path, value, msg));
    let fields = [("account", &exec.account), ("partition", &exec.partition), ("qos", &exec.qos), ("gres", &exec.gres)];
    for (key, value) in fields {
        if let Some(v) = value
            && let Err(why) = SbatchValue::new(v)
        {
            err(keys(&["execution", key]), true, format!("`execution.{key}`: {why}"));
        }
    }
    // The comment goes verbatim on sbatch's command line (a shell word
    // carries anything): only what Slurm would refuse or garble is refused.
    if let Some(c) = &exec.sbatch_comment
        && let Err(why) = comment(c)
    {
        err(keys(&["execution", "sbatch_comment"]), true, format!("`execution.sbatch_comment`: {why}"));
    }
    // Part of every job name, before the ownership tag.
    if let Some(sub) = &exec.subproject
        && let Err(why) = names::check_part("subproject", sub)
    {
        err(keys(&["execution", "subproject"]), true, format!("`execution.subproject`: {why}"));
    }
    // Part of every job's `--output` pattern.
    if let Err(why) = SbatchValue::new(&exec.output_dir) {
        err(keys(&["execution", "output_dir"]), true, format!("`execution.output_dir`: {why}"));
    }
    for (flag, value) in &exec.sbatch_extra_flags {
        let path = keys(&["execution", "sbatch_extra_flags", flag]);
        if let Err(why) = FlagName::user(flag) {
            err(path, false, why);
            continue;
        }
        // evalctl passes both on sbatch's command line, which wins over a header line.
        let owned = match flag.replace('_', "-").as_str() {
            "job-name" => Some("the job name carries evalctl's ownership tag; `execution.subproject` labels it"),
            "comment" => Some("set the comment with `execution.sbatch_comment`"),
            _ => None,
        };
        if let Some(why) = owned {
            err(path, false, format!("sbatch flag `{flag}` is evalctl's: {why}"));
            continue;
        }
        let text = match value {
            J::String(s) => s.clone(),
            J::Number(n) => n.to_string(),
            J::Bool(_) | J::Null => continue,
            _ => {
                err(path, true, format!("sbatch flag `{flag}` needs a string, number or boolean"));
                continue;
            }
        };
        if let Err(why) = SbatchValue::new(&text) {
            err(path, true, format!("`execution.sbatch_extra_flags.{flag}`: {why}"));
        }
    }
}

/// Slurm's longest comment (slurmctld refuses a longer one at submission).
pub const MAX_COMMENT: usize = 1024;

/// Why a `--comment` value cannot be given to Slurm as it is, if it cannot.
fn comment(c: &str) -> Result<(), String> {
    if let Some(ch) = c.chars().find(|c| c.is_control()) {
        return Err(match ch {
            '\n' => "a newline cannot appear in a job comment".to_owned(),
            ch => format!("control character U+{:04X} cannot appear in a job comment", ch as u32),
        });
    }
    if c.len() > MAX_COMMENT {
        return Err(format!("{} bytes long; Slurm takes at most {MAX_COMMENT}", c.len()));
    }
    Ok(())
}

/// Job names Slurm's accounting would cut (it keeps
/// [`MAX_JOB_NAME`](crate::remote::layout::MAX_JOB_NAME) characters): the
/// longest name of the stack's jobs, with the hashes apply adds, must fit,
/// or refresh could not find the job in accounting. Reported at
/// `execution.subproject` when it is set (the part a user chooses freely),
/// else at the longest unit's place.
pub fn job_names(loaded: &super::Loaded) -> Vec<Diagnostic> {
    use crate::remote::layout::{self, HASHES_LEN, MAX_JOB_NAME};
    use crate::render::Role;
    let cfg = &loaded.config;
    let sub = cfg.execution.subproject.as_deref();
    let (ids, _) = crate::graph::task_ids(loaded);
    let tasks = ids.iter().enumerate().map(|(i, id)| {
        let mut path = keys(&["evaluation", "tasks"]);
        path.push(Seg::Index(i));
        path.push(Seg::Key(if cfg.evaluation.tasks[i].id.is_some() { "id" } else { "name" }.into()));
        (layout::job_name(sub, &loaded.stack, id, Role::Resume), path, true)
    });
    let servers = cfg.auxiliary_deployments.keys().map(|a| {
        let unit = format!("{}.{a}", crate::graph::SERVER);
        (layout::job_name(sub, &loaded.stack, &unit, Role::Server), keys(&["auxiliary_deployments", a]), false)
    });
    let Some((longest, path, at_value)) = tasks.chain(servers).max_by_key(|(n, _, _)| n.len()) else {
        return vec![];
    };
    let len = longest.len() + HASHES_LEN;
    if len <= MAX_JOB_NAME {
        return vec![];
    }
    let (path, at_value, what) = match sub {
        Some(s) => (keys(&["execution", "subproject"]), true, format!("`execution.subproject` (`{s}`) makes")),
        None => (path, at_value, "this name makes".to_owned()),
    };
    let over = len - MAX_JOB_NAME;
    vec![
        error_at(
            &loaded.tree,
            &path,
            at_value,
            format!(
                "{what} job names of {len} characters (`{longest}@<hashes>`), {over} more than the {MAX_JOB_NAME} Slurm's accounting keeps: refresh could not find the jobs"
            ),
        )
        .with_note("job names are `[<subproject>.]evalctl:<stack>/<unit>/<role>@<16 hex>:<16 hex>`; shorten the subproject, the stack name or the task id"),
    ]
}

/// Launcher keys evalctl accepts but does not act on the way the launcher
/// does: each is refused at its line with the reason, or, when ignoring it
/// changes nothing the launcher would do by default, a warning says so.
fn launcher_keys(tree: &Node, cfg: &Config, diags: &mut Vec<Diagnostic>) {
    let exec = &cfg.execution;
    let at_key = |path: &[Seg]| tree.span_of(path);
    let at_value = |path: &[Seg]| tree.value_span_of(path);

    // Export runs where evalctl runs (`evalctl export`, `apply --wait`),
    // not in cluster jobs: to MLflow only.
    let mut auto = vec![];
    if let Some(ae) = &exec.auto_export {
        let list: Vec<Seg> = match ae {
            AutoExportSetting::Destinations(_) => keys(&["execution", "auto_export"]),
            AutoExportSetting::Settings(_) => keys(&["execution", "auto_export", "destinations"]),
        };
        for (i, d) in ae.destinations().iter().enumerate() {
            auto.push(d.as_str());
            if !crate::export::AUTO_DESTINATIONS.contains(&d.as_str()) {
                let path: Vec<Seg> = list.iter().cloned().chain([Seg::Index(i)]).collect();
                diags.push(
                    Diagnostic::error(
                        at_value(&path),
                        format!("`execution.auto_export` destination `{d}`: {}", crate::export::unsupported(d)),
                    )
                    .with_note("results stay in each task's `artifacts/` folder under `execution.output_dir`"),
                );
            }
        }
        if let AutoExportSetting::Settings(s) = ae
            && !s.destinations.is_empty()
        {
            for k in s.extra.keys() {
                diags.push(Diagnostic::warning(
                    at_key(&keys(&["execution", "auto_export", k])),
                    format!("`execution.auto_export.{k}`: evalctl exports from the machine it runs on, not in a cluster job: unused"),
                ));
            }
        }
    }
    if let Some(p) = &exec.cpu_partition {
        let path = keys(&["execution", "cpu_partition"]);
        diags.push(Diagnostic::warning(
            at_value(&path),
            format!("`execution.cpu_partition` ({p}) is the partition of the launcher's export jobs; evalctl exports from the machine it runs on: unused"),
        ));
    }
    for (dest, v) in cfg.export.iter().flatten() {
        let path = keys(&["export", dest]);
        match (dest.as_str(), v) {
            ("mlflow", J::Null) => {}
            ("mlflow", J::Object(m)) => {
                for issue in crate::export::mlflow::settings(Some(m)).1 {
                    let at = at_key(&keys(&["export", "mlflow", &issue.key]));
                    diags.push(if issue.error {
                        Diagnostic::error(at, issue.message)
                    } else {
                        Diagnostic::warning(at, issue.message)
                    });
                }
            }
            ("mlflow", _) => {
                diags.push(Diagnostic::error(at_value(&path), "`export.mlflow` must be a mapping of settings"))
            }
            // Named in `auto_export`: refused there.
            (d, _) if auto.contains(&d) => {}
            (d, _) => diags.push(Diagnostic::warning(
                at_key(&path),
                format!("`export.{d}`: unused: {}", crate::export::unsupported(d)),
            )),
        }
    }

    // The load balancer checks instances at the deployment's health path.
    if let Some(proxy) = &exec.proxy {
        let health = cfg.deployment.endpoints.as_ref().and_then(|e| e.health.as_deref());
        if let Some(p) = &proxy.config.health_check_path
            && Some(p.as_str()) != health
        {
            let path = keys(&["execution", "proxy", "config", "health_check_path"]);
            let why = match health {
                Some(h) => format!("evalctl's load balancer checks each instance at `deployment.endpoints.health` (`{h}`)"),
                None => "the deployment has no health endpoint (`deployment.endpoints.health` is null), so evalctl's load balancer does not check instances".into(),
            };
            diags.push(
                Diagnostic::error(
                    at_value(&path),
                    format!("`execution.proxy.config.health_check_path` (`{p}`): {why}"),
                )
                .with_note("remove it, or set `deployment.endpoints.health` to the path"),
            );
        }
        if let Some(status) = proxy.config.health_check_status
            && status != 200
        {
            let path = keys(&["execution", "proxy", "config", "health_check_status"]);
            diags.push(Diagnostic::error(
                at_value(&path),
                format!("`execution.proxy.config.health_check_status`: evalctl's load balancer takes an instance as healthy when it answers 200; {status} cannot be chosen (remove it, or write 200)"),
            ));
        }
    }

    // Nothing deployed: the server's settings have no server (the model name
    // still names the model in requests).
    if cfg.deployment.kind == DeploymentType::None
        && let Ok(J::Object(set)) = serde_json::to_value(&cfg.deployment)
    {
        for k in set.keys().filter(|k| !matches!(k.as_str(), "type" | "served_model_name")) {
            diags.push(Diagnostic::warning(
                at_key(&keys(&["deployment", k])),
                format!("`deployment.{k}` is unused: nothing is deployed (`deployment.type: none`)"),
            ));
        }
    }

    // The main deployment's nodes and instances are execution's.
    let d = &cfg.deployment;
    for (k, set, theirs) in [
        ("num_nodes", d.num_nodes.is_some(), "the model's is `execution.num_nodes`"),
        ("num_instances", d.num_instances.is_some(), "the model's is `execution.num_instances`"),
        ("n_tasks", d.n_tasks.is_some(), "the model's is `execution.deployment.n_tasks`"),
        ("topology", d.topology.is_some(), "the model's is `execution.topology`"),
        ("env_prefix", d.env_prefix.is_some(), "the model's server variables have no prefix"),
    ] {
        if set {
            diags.push(Diagnostic::error(
                at_key(&keys(&["deployment", k])),
                format!("`deployment.{k}` is for auxiliary deployments: {theirs}"),
            ));
        }
    }
    for name in exec.mounts.auxiliary.keys() {
        if !cfg.auxiliary_deployments.contains_key(name) {
            diags.push(Diagnostic::error(
                at_key(&keys(&["execution", "mounts", "auxiliary", name])),
                format!("`execution.mounts.auxiliary.{name}`: there is no auxiliary deployment `{name}` to mount into"),
            ));
        }
    }

    // A task's dataset and the harness container's GPUs.
    for (i, t) in cfg.evaluation.tasks.iter().enumerate() {
        if t.dataset_mount_path.is_some() && t.dataset_dir.is_none() {
            let path = vec![
                Seg::Key("evaluation".into()),
                Seg::Key("tasks".into()),
                Seg::Index(i),
                Seg::Key("dataset_mount_path".into()),
            ];
            diags.push(Diagnostic::warning(
                at_key(&path),
                "`dataset_mount_path` without `dataset_dir`: nothing is mounted there",
            ));
        }
    }
    if let Some(super::model::GpuVisible::Devices(d)) = &exec.evaluation_gpu_visible
        && !d.chars().all(|c| c.is_ascii_alphanumeric() || ",-_:/".contains(c))
    {
        let path = keys(&["execution", "evaluation_gpu_visible"]);
        diags.push(Diagnostic::error(
            at_value(&path),
            format!(
                "`execution.evaluation_gpu_visible`: `{}` is not a device list (`all`, GPU indexes or UUIDs separated by `,`)",
                d.escape_debug()
            ),
        ));
    }
}

/// Validates a time field's ranges; returns its length in seconds.
fn check_time(
    tree: &Node,
    diags: &mut Vec<Diagnostic>,
    seconds: Result<u64, super::model::TimeError>,
    path: &[&str],
) -> Option<u64> {
    match seconds {
        Ok(s) => Some(s),
        // The schema's pattern already reported a malformed time.
        Err(super::model::TimeError::Format(_)) => None,
        Err(super::model::TimeError::Range(msg)) => {
            let p = keys(path);
            diags.push(Diagnostic::error(tree.value_span_of(&p), format!("`{}`: {msg}", path_string(&p))));
            None
        }
    }
}

fn kind_name(k: DeploymentType) -> &'static str {
    match k {
        DeploymentType::Vllm => "vLLM",
        DeploymentType::Sglang => "SGLang",
        DeploymentType::Trtllm => "TensorRT-LLM",
        DeploymentType::Nim => "NIM",
        DeploymentType::Generic => "generic",
        DeploymentType::None => "none",
    }
}

/// A JSON pointer to where deserialization failed.
fn serde_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        out.push('/');
        match seg {
            Segment::Seq { index } => out.push_str(&index.to_string()),
            Segment::Map { key } => out.push_str(&key.replace('~', "~0").replace('/', "~1")),
            Segment::Enum { variant } => out.push_str(&variant.replace('~', "~0").replace('/', "~1")),
            Segment::Unknown => break,
        }
    }
    out
}

/// Endpoint paths and URLs (`config::urls`) and mount paths
/// (`config::mounts`), each checked at its own line: values that would
/// change the HAProxy configuration, the run config or the container
/// mounts they are written into are refused here, not encoded later.
fn endpoint_and_mount_grammar(tree: &Node, cfg: &Config, diags: &mut Vec<Diagnostic>) {
    use super::{mounts, urls};
    let mut at = |path: Vec<Seg>, value: bool, msg: String| diags.push(error_at(tree, &path, value, msg));
    let named = |path: &[Seg], why: String| format!("`{}`: {why}", path_string(path));
    let mut deployments = vec![(keys(&["deployment"]), &cfg.deployment)];
    deployments.extend(cfg.auxiliary_deployments.iter().map(|(n, d)| (keys(&["auxiliary_deployments", n]), d)));
    for (base, d) in &deployments {
        if let Some(eps) = &d.endpoints {
            let fields = [
                ("chat", &eps.chat),
                ("completions", &eps.completions),
                ("health", &eps.health),
                ("embedding", &eps.embedding),
                ("ranking", &eps.ranking),
            ];
            for (k, v) in fields {
                if let Some(p) = v
                    && let Err(why) = urls::check_path(p)
                {
                    let path = [base.clone(), keys(&["endpoints", k])].concat();
                    at(path.clone(), true, named(&path, why));
                }
            }
        }
        for (k, v) in [("checkpoint_path", &d.checkpoint_path), ("cache_path", &d.cache_path)] {
            if let Some(p) = v
                && let Err(why) = mounts::check_path(p)
            {
                let path = [base.clone(), keys(&[k])].concat();
                at(path.clone(), true, named(&path, why));
            }
        }
    }
    for (i, t) in cfg.evaluation.tasks.iter().enumerate() {
        let at_task =
            |k: &str| vec![Seg::Key("evaluation".into()), Seg::Key("tasks".into()), Seg::Index(i), Seg::Key(k.into())];
        if let Some(dir) = &t.dataset_dir {
            let path = at_task("dataset_dir");
            if !dir.starts_with('/') {
                at(path.clone(), true, named(&path, format!("must be an absolute path, found `{dir}`")));
            } else if let Err(why) = mounts::check_path(dir) {
                at(path.clone(), true, named(&path, why));
            }
        }
        if let Some(target) = &t.dataset_mount_path {
            let path = at_task("dataset_mount_path");
            if !target.starts_with('/') {
                let why = format!("must be an absolute path in the container, found `{target}`");
                at(path.clone(), true, named(&path, why));
            } else if let Err(why) = mounts::check_target(target) {
                at(path.clone(), true, named(&path, why));
            }
        }
    }
    if let Some(proxy) = &cfg.execution.proxy
        && let Some(p) = &proxy.config.health_check_path
        && let Err(why) = urls::check_path(p)
    {
        let path = keys(&["execution", "proxy", "config", "health_check_path"]);
        at(path.clone(), true, named(&path, why));
    }
    if let Some(url) = &cfg.target.api_endpoint.url
        && let Err(why) = urls::check_url(url)
    {
        let path = keys(&["target", "api_endpoint", "url"]);
        at(path.clone(), true, named(&path, why));
    }
    let exec = &cfg.execution;
    // A value that cannot be an #SBATCH value is reported as such, once.
    if SbatchValue::new(&exec.output_dir).is_ok()
        && let Err(why) = mounts::check_path(&exec.output_dir)
    {
        let path = keys(&["execution", "output_dir"]);
        at(path.clone(), true, named(&path, format!("{why} (job folders below it are mounted)")));
    }
    let mut maps = vec![(keys(&["execution", "mounts", "deployment"]), &exec.mounts.deployment)];
    maps.push((keys(&["execution", "mounts", "evaluation"]), &exec.mounts.evaluation));
    maps.extend(exec.mounts.auxiliary.iter().map(|(n, m)| (keys(&["execution", "mounts", "auxiliary", n]), m)));
    for (base, map) in maps {
        for (src, dst) in map {
            let p = [base.clone(), vec![Seg::Key(src.clone())]].concat();
            if let Err(why) = mounts::check_path(src) {
                at(p.clone(), false, why);
            }
            if let Err(why) = mounts::check_target(dst) {
                at(p, true, why);
            }
        }
    }
}

/// Prefixes the launcher reserves for its own variables.
const RESERVED_PREFIXES: [&str; 4] = ["SLURM", "PRIMARY", "MODEL", "SERVER"];

/// Each auxiliary deployment's variable prefix (its `env_prefix`, else its
/// name in capitals) is a variable name, not reserved, and its own.
fn aux_prefixes(tree: &Node, cfg: &Config, diags: &mut Vec<Diagnostic>) {
    let mut seen: std::collections::HashMap<String, &str> = std::collections::HashMap::new();
    for (name, d) in &cfg.auxiliary_deployments {
        // A name outside the grammar is reported once, as a name.
        if d.env_prefix.is_none() && !names::is_valid(name) {
            continue;
        }
        let prefix = d.env_prefix_of(name);
        let at = if d.env_prefix.is_some() {
            keys(&["auxiliary_deployments", name, "env_prefix"])
        } else {
            keys(&["auxiliary_deployments", name])
        };
        let problem = if !crate::config::env::is_var_name(&prefix) {
            Some(match d.env_prefix {
                Some(_) => format!("`env_prefix` `{prefix}` is not a variable name (letters, digits, `_`)"),
                None => format!(
                    "auxiliary deployment `{name}` needs an `env_prefix`: its name in capitals (`{prefix}`) is not a variable name"
                ),
            })
        } else if RESERVED_PREFIXES.contains(&prefix.as_str()) {
            Some(format!(
                "variable prefix `{prefix}` of auxiliary deployment `{name}` is reserved; set another `env_prefix`"
            ))
        } else {
            seen.insert(prefix.clone(), name).map(|other| {
                format!(
                    "auxiliary deployments `{other}` and `{name}` have the same variable prefix `{prefix}`; set an `env_prefix`"
                )
            })
        };
        if let Some(p) = problem {
            diags.push(error_at(tree, &at, d.env_prefix.is_some(), p));
        }
    }
}
