//! `-o key.path=value` overrides, applied after composition and before
//! interpolation, so they win over every file and can fill in `???`.
//!
//! Forms: `a.b=value` (value read as a YAML scalar, list or mapping),
//! `+a.b=value` (same), `~a.b` (delete), and the task-name form
//! `evaluation.tasks.<task name or id>.<key>=value` (a list index works too).

use super::node::{Entry, Node, Seg, Value};
use super::yaml;
use crate::diag::{Diagnostic, Sources, Span};

/// Applies every override in order; collects all errors.
pub fn apply(root: &mut Node, overrides: &[String], sources: &Sources) -> Result<(), Vec<Diagnostic>> {
    let mut errors = vec![];
    for (i, raw) in overrides.iter().enumerate() {
        // Messages quote the override's text: never a variable's value.
        let src = sources.add(format!("<-o #{}>", i + 1), redacted(raw));
        let whole = Span::new(src, 1, 1, raw.chars().count().max(1) as u32);
        if let Err(d) = apply_one(root, raw, src, whole) {
            errors.push(d);
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

/// True when an override may set an environment variable's value (its key
/// or its value mentions `env_vars`): that value is treated as a secret.
pub fn sets_env_value(raw: &str) -> bool {
    let body = raw.trim_start_matches(['+', '~']);
    let (key, value) = body.split_once('=').unwrap_or((body, ""));
    key.split(['.', '[', ']']).any(|s| s == "env_vars") || value.contains("env_vars")
}

/// The override as it may be shown (messages, the lock's command line):
/// the value of one that sets an environment variable masked, its length kept
/// so that columns of messages still point at the right place.
pub fn redacted(raw: &str) -> String {
    match raw.split_once('=') {
        Some((key, value)) if sets_env_value(raw) => format!("{key}={}", "*".repeat(value.chars().count())),
        _ => raw.to_owned(),
    }
}

/// True when an override that sets an environment variable names where its
/// value comes from (`host:VAR`, `runtime:VAR`, `${oc.env:VAR}`) or gives a
/// visible `lit:` value, rather than holding a secret itself.
pub fn holds_no_secret(raw: &str) -> bool {
    let Some((_, value)) = raw.split_once('=') else { return true };
    if !sets_env_value(raw) {
        return true;
    }
    let v = value.trim();
    let name = |n: &str| super::env::is_var_name(n.trim());
    v.strip_prefix("host:").is_some_and(name)
        || v.strip_prefix("runtime:").is_some_and(name)
        || v.starts_with("lit:")
        || v.strip_prefix("${oc.env:").and_then(|r| r.strip_suffix('}')).is_some_and(name)
}

fn apply_one(root: &mut Node, raw: &str, src: crate::diag::SourceId, whole: Span) -> Result<(), Diagnostic> {
    if let Some(key) = raw.strip_prefix('~') {
        let key = key.split_once('=').map_or(key, |(k, _)| k);
        let path = resolve_path(root, key, whole)?;
        let (last, parent) = path.split_last().ok_or_else(|| Diagnostic::error(whole, "empty key"))?;
        let removed = match (root.get_mut(parent).map(|n| &mut n.value), last) {
            (Some(Value::Map(m)), Seg::Key(k)) => m.shift_remove(k).is_some(),
            (Some(Value::Seq(v)), Seg::Index(i)) if *i < v.len() => {
                v.remove(*i);
                true
            }
            _ => false,
        };
        return if removed {
            Ok(())
        } else {
            Err(Diagnostic::error(whole, format!("cannot delete `{key}`: no such key")))
        };
    }
    // `+key` adds, `++key` adds or replaces (Hydra's forms): here both set.
    let body = raw.strip_prefix("++").or_else(|| raw.strip_prefix('+')).unwrap_or(raw);
    let offset = raw.len() - body.len();
    let Some((key, value_text)) = body.split_once('=') else {
        return Err(Diagnostic::error(whole, format!("override `{raw}` is not of the form key.path=value")));
    };
    if key.trim().is_empty() {
        return Err(Diagnostic::error(whole, "override has an empty key"));
    }
    let value_col = (offset + key.chars().count() + 2) as u32;
    let value_span = Span::new(src, 1, value_col, value_text.chars().count().max(1) as u32);
    let key_span = Span::new(src, 1, (offset + 1) as u32, key.chars().count().max(1) as u32);
    let value = parse_value(value_text, value_span);
    let path = resolve_path(root, key, key_span)?;
    set(root, &path, value, key_span)
}

/// Reads an override value: YAML when it parses as YAML, else the raw text.
fn parse_value(text: &str, span: Span) -> Node {
    if text.is_empty() {
        return Node::new(Value::Str(String::new()), span);
    }
    let probe = Sources::new();
    let id = probe.add("", text);
    match yaml::parse(text, id) {
        Ok(n) if !matches!(n.value, Value::Map(ref m) if m.is_empty()) => respan(n, span),
        _ => yaml::plain_scalar(text, span),
    }
}

/// Points every node of an override value at the override text.
fn respan(mut n: Node, span: Span) -> Node {
    n.span = span;
    match &mut n.value {
        Value::Seq(v) => {
            for c in v.iter_mut() {
                *c = respan(std::mem::replace(c, Node::new(Value::Null, span)), span);
            }
        }
        Value::Map(m) => {
            for e in m.values_mut() {
                e.key_span = span;
                e.node = respan(std::mem::replace(&mut e.node, Node::new(Value::Null, span)), span);
            }
        }
        _ => {}
    }
    n
}

/// Turns `a.b.c` into a path, resolving the task-name form under
/// `evaluation.tasks` (task names may contain dots: the longest name or id
/// that matches wins).
fn resolve_path(root: &Node, key: &str, span: Span) -> Result<Vec<Seg>, Diagnostic> {
    const TASKS: &str = "evaluation.tasks.";
    // No config is nested this deep; a longer key is refused before it is walked.
    if key.split(['.', '[']).count() > super::node::MAX_KEY_PATH {
        return Err(Diagnostic::error(span, format!("override key has more than {} parts", super::node::MAX_KEY_PATH)));
    }
    if let Some(rest) = key.strip_prefix(TASKS) {
        let mut path = vec![Seg::Key("evaluation".into()), Seg::Key("tasks".into())];
        let tasks = match root.get(&path).map(|n| &n.value) {
            Some(Value::Seq(v)) => v.as_slice(),
            _ => &[],
        };
        let (head, tail) = rest.split_once('.').unwrap_or((rest, ""));
        if head.chars().all(|c| c.is_ascii_digit()) && !head.is_empty() {
            let index = head.parse().map_err(|_| {
                Diagnostic::error(span, format!("task index {head} is out of range: there are {} tasks", tasks.len()))
            })?;
            path.push(Seg::Index(index));
            path.extend(split(tail));
            return Ok(path);
        }
        let mut best: Option<(usize, usize)> = None;
        for (i, t) in tasks.iter().enumerate() {
            for field in ["id", "name"] {
                let Some(name) = t.get(&[Seg::Key(field.into())]).and_then(Node::as_str) else {
                    continue;
                };
                let fits = rest == name || rest.starts_with(&format!("{name}."));
                if fits && best.is_none_or(|(_, len)| name.len() > len) {
                    best = Some((i, name.len()));
                }
            }
        }
        let Some((index, len)) = best else {
            let names: Vec<String> = tasks
                .iter()
                .filter_map(|t| t.get(&[Seg::Key("name".into())]).and_then(Node::as_str))
                .map(str::to_owned)
                .collect();
            let mut d = Diagnostic::error(span, format!("no task named `{head}` under evaluation.tasks"));
            if !names.is_empty() {
                d = d.with_note(format!("tasks: {}", names.join(", ")));
            }
            return Err(d);
        };
        path.push(Seg::Index(index));
        path.extend(split(rest[len..].trim_start_matches('.')));
        return Ok(path);
    }
    Ok(split(key))
}

fn split(key: &str) -> Vec<Seg> {
    if key.is_empty() { vec![] } else { super::node::parse_dotted(key) }
}

/// Sets `path` to `value`, creating mappings on the way.
fn set(root: &mut Node, path: &[Seg], value: Node, span: Span) -> Result<(), Diagnostic> {
    let mut cur = root;
    for (i, seg) in path.iter().enumerate() {
        let last = i + 1 == path.len();
        if matches!(cur.value, Value::Null | Value::Missing) && matches!(seg, Seg::Key(_)) {
            cur.value = Value::Map(Default::default());
        }
        let kind = cur.kind();
        cur = match (&mut cur.value, seg) {
            (Value::Map(m), Seg::Key(k)) => {
                let e =
                    m.entry(k.clone()).or_insert_with(|| Entry { key_span: span, node: Node::new(Value::Null, span) });
                if last {
                    e.key_span = span;
                }
                &mut e.node
            }
            (Value::Seq(v), Seg::Index(ix)) => {
                let len = v.len();
                v.get_mut(*ix).ok_or_else(|| {
                    Diagnostic::error(span, format!("index {ix} is out of range: the list has {len} items"))
                })?
            }
            (_, seg) => {
                return Err(Diagnostic::error(
                    span,
                    format!("cannot set `{}`: `{seg}` is below {}", super::node::path_string(path), kind),
                ));
            }
        };
    }
    *cur = value;
    Ok(())
}
