//! `${...}` interpolation (the OmegaConf subset launcher configs use).
//!
//! - `${a.b.c}` (absolute), `${.sibling}` / `${..uncle}` (relative);
//!   a value that is a single interpolation keeps the referenced type.
//! - `${oc.env:VAR}`, `${oc.env:VAR,default}`.
//! - `${select_not_null:a.b,fallback}`, `${oc.select:a.b,default}`.
//! - `\${` is a literal `${`; a lone `$VAR` is left for the shell.
//!
//! Values under any `env_vars` key and `execution.{username,hostname}` are
//! *deferred*: their `${oc.env:...}` parts are kept as text and read only
//! when the value is used (apply), so a plan never needs a secret.

use std::collections::HashMap;

use super::node::{Entry, Node, Seg, Value, path_string};
use crate::diag::{Diagnostic, Span};

/// Looks up an environment variable.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// For values that are a single reference (`n_tasks: ${execution.num_nodes}`),
/// the path they were copied from: a problem with such a value is reported
/// once, at its origin.
pub type Origins = HashMap<Vec<Seg>, Vec<Seg>>;

/// Resolves every interpolation in the tree; collects all errors.
pub fn resolve(root: &Node, env: EnvLookup<'_>) -> Result<(Node, Origins), Vec<Diagnostic>> {
    let mut r = Resolver {
        root,
        env,
        memo: HashMap::new(),
        active: vec![],
        resolving: std::collections::HashSet::new(),
        errors: vec![],
        origins: HashMap::new(),
        last_target: None,
        expanded: 0,
        copied: 0,
    };
    let out = r.deep(root, &mut vec![]);
    if r.errors.is_empty() { Ok((out, r.origins)) } else { Err(r.errors) }
}

/// True when a string has something to interpolate or unescape.
pub fn has_interpolation(s: &str) -> bool {
    s.contains("${")
}

/// True for paths whose `${oc.env:...}` parts are read only at apply time.
pub fn is_deferred_path(path: &[Seg]) -> bool {
    let key = |i: usize| match path.get(i) {
        Some(Seg::Key(k)) => k.as_str(),
        _ => "",
    };
    path.iter().any(|s| matches!(s, Seg::Key(k) if k == "env_vars"))
        || (path.len() == 2 && key(0) == "execution" && (key(1) == "username" || key(1) == "hostname"))
}

/// How deep `${...}` may nest inside one value.
const MAX_NESTING: usize = 32;
/// How long a chain of references may be (`a: ${b}`, `b: ${c}`, ...).
const MAX_CHAIN: usize = 256;
/// The most text interpolation may produce for one value, and in all.
const MAX_VALUE_BYTES: usize = 1 << 20;
const MAX_TOTAL_BYTES: usize = 64 << 20;
/// The most mapping and list nodes references may copy in all (a mapping
/// referenced ten times per level grows tenfold per level).
const MAX_COPIED_NODES: usize = 200_000;

/// Keys whose values are shell text run by `bash -c`: the only fields a
/// config may use to run commands.
const SHELL_KEYS: &[&str] = &["command", "base_command", "pre_cmd", "post_cmd"];
/// Keys whose values are extra command-line arguments, as shell words.
const ARGS_KEYS: &[&str] = &["extra_args"];

fn last_key(path: &[Seg]) -> Option<&str> {
    match path.last() {
        Some(Seg::Key(k)) => Some(k.as_str()),
        _ => None,
    }
}

/// True for a shell field (see [`SHELL_KEYS`]).
pub fn is_shell_path(path: &[Seg]) -> bool {
    last_key(path).is_some_and(|k| SHELL_KEYS.contains(&k))
}

/// How a value interpolated into a shell field is written: shell text
/// from another shell field as it is; arguments (`extra_args`) split into
/// shell words, each quoted (an error points at the inserted value, `span`);
/// anything else (a model name, a path, a port)
/// as one quoted word. So `served_model_name: "m; touch /tmp/x #"` reaches
/// the server as one argument, never as a command.
fn splice(e: &Expr, value: &str, path: &[Seg], span: Span) -> Result<String, Fail> {
    let key = match e {
        Expr::Ref(r) => r.rsplit('.').next().unwrap_or(r),
        Expr::Call { .. } => "",
    };
    if SHELL_KEYS.contains(&key) {
        return Ok(value.to_owned());
    }
    if ARGS_KEYS.contains(&key) {
        let words = shlex::split(value).ok_or_else(|| {
            Diagnostic::error(
                span,
                format!(
                    "`{key}` inserted into `{}` is not a list of shell words (unbalanced quotes?)",
                    path_string(path)
                ),
            )
        })?;
        return Ok(words.iter().map(|w| crate::shell::quote(w)).collect::<Vec<_>>().join(" "));
    }
    Ok(crate::shell::quote(value))
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Lit(String),
    Interp(Expr),
}

#[derive(Clone, Debug, PartialEq)]
enum Expr {
    Ref(String),
    Call { name: String, args: Vec<Vec<Part>> },
}

/// Parses a template string into literal and interpolation parts.
fn parse(s: &str) -> Result<Vec<Part>, String> {
    // The parser recurses once per `${`: bound the nesting before parsing.
    let mut depth = 0usize;
    let bytes = s.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b'{' if i > 0 && bytes[i - 1] == b'$' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(format!("interpolations nested more than {MAX_NESTING} deep"));
                }
            }
            b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let parts = parse_parts(&chars, &mut i, false)?;
    if i != chars.len() {
        return Err("unexpected `}`".into());
    }
    Ok(parts)
}

fn push_lit(parts: &mut Vec<Part>, c: &str) {
    if let Some(Part::Lit(s)) = parts.last_mut() {
        s.push_str(c);
    } else {
        parts.push(Part::Lit(c.to_owned()));
    }
}

/// Parses until the end, or (inside an argument) an unnested `,` or `}`.
fn parse_parts(c: &[char], i: &mut usize, in_arg: bool) -> Result<Vec<Part>, String> {
    let mut parts = vec![];
    while *i < c.len() {
        match c[*i] {
            '\\' if c.get(*i + 1) == Some(&'$') && c.get(*i + 2) == Some(&'{') => {
                push_lit(&mut parts, "${");
                *i += 3;
            }
            '$' if c.get(*i + 1) == Some(&'{') => {
                *i += 2;
                parts.push(Part::Interp(parse_interp(c, i)?));
            }
            ',' | '}' if in_arg => break,
            q @ ('\'' | '"') if in_arg => {
                *i += 1;
                let start = *i;
                while *i < c.len() && c[*i] != q {
                    *i += 1;
                }
                if *i >= c.len() {
                    return Err("unterminated quote in interpolation argument".into());
                }
                push_lit(&mut parts, &c[start..*i].iter().collect::<String>());
                *i += 1;
            }
            ch => {
                push_lit(&mut parts, &ch.to_string());
                *i += 1;
            }
        }
    }
    Ok(parts)
}

/// Parses after `${` up to and including the matching `}`.
fn parse_interp(c: &[char], i: &mut usize) -> Result<Expr, String> {
    let start = *i;
    while *i < c.len() && c[*i] != '}' && c[*i] != ':' && !(c[*i] == '$' && c.get(*i + 1) == Some(&'{')) {
        *i += 1;
    }
    let head: String = c[start..(*i).min(c.len())].iter().collect::<String>().trim().to_owned();
    match c.get(*i) {
        None => Err(format!("unterminated interpolation `${{{head}`")),
        Some('}') => {
            *i += 1;
            if head.is_empty() {
                return Err("empty interpolation `${}`".into());
            }
            Ok(Expr::Ref(head))
        }
        Some(':') => {
            *i += 1;
            let mut args = vec![];
            loop {
                while c.get(*i) == Some(&' ') {
                    *i += 1;
                }
                let mut arg = parse_parts(c, i, true)?;
                if let Some(Part::Lit(s)) = arg.last_mut() {
                    let t = s.trim_end().to_owned();
                    *s = t;
                }
                args.push(arg);
                match c.get(*i) {
                    Some(',') => *i += 1,
                    Some('}') => {
                        *i += 1;
                        break;
                    }
                    _ => return Err(format!("unterminated interpolation `${{{head}:...`")),
                }
            }
            Ok(Expr::Call { name: head, args })
        }
        Some(_) => Err(format!("interpolation key `{head}` cannot contain `${{`")),
    }
}

struct Resolver<'a> {
    root: &'a Node,
    env: EnvLookup<'a>,
    /// Resolved strings by path; `None` when resolving failed (reported once).
    memo: HashMap<Vec<Seg>, Option<Node>>,
    active: Vec<Vec<Seg>>,
    /// The paths of `active`, for a cycle check in constant time.
    resolving: std::collections::HashSet<Vec<Seg>>,
    errors: Vec<Diagnostic>,
    origins: Origins,
    /// Absolute path of the last reference looked up.
    last_target: Option<Vec<Seg>>,
    /// Bytes of text interpolation has produced so far (bounded).
    expanded: usize,
    /// Nodes copied by references to mappings and lists so far (bounded).
    copied: usize,
}

/// Why resolving failed: a new problem, or one already reported (a
/// reference to a broken or required value), which must not cascade.
enum Fail {
    New(Diagnostic),
    Reported,
}

impl From<Diagnostic> for Fail {
    fn from(d: Diagnostic) -> Fail {
        Fail::New(d)
    }
}

/// A resolved piece of a template.
enum Piece {
    Node(Node),
    /// An `${oc.env:...}` kept as text for apply time.
    Deferred(String),
}

impl<'a> Resolver<'a> {
    /// Resolves a subtree (at `path` in the original tree).
    fn deep(&mut self, node: &Node, path: &mut Vec<Seg>) -> Node {
        match &node.value {
            Value::Str(s) if has_interpolation(s) => {
                self.string_at(path, node).unwrap_or_else(|| Node::new(Value::Null, node.span))
            }
            Value::Map(m) => {
                let mut out = super::node::Map::with_capacity(m.len());
                for (k, e) in m {
                    path.push(Seg::Key(k.clone()));
                    let n = self.deep(&e.node, path);
                    path.pop();
                    out.insert(k.clone(), Entry { key_span: e.key_span, node: n });
                }
                Node::new(Value::Map(out), node.span)
            }
            Value::Seq(v) => {
                let mut out = Vec::with_capacity(v.len());
                for (i, n) in v.iter().enumerate() {
                    path.push(Seg::Index(i));
                    out.push(self.deep(n, path));
                    path.pop();
                }
                Node::new(Value::Seq(out), node.span)
            }
            _ => node.clone(),
        }
    }

    /// Resolves the interpolated string `node` found at `path`.
    fn string_at(&mut self, path: &[Seg], node: &Node) -> Option<Node> {
        if let Some(done) = self.memo.get(path) {
            return done.clone();
        }
        let cycle_at = if self.resolving.contains(path) { self.active.iter().position(|p| p == path) } else { None };
        if let Some(pos) = cycle_at {
            let mut chain: Vec<String> = self.active[pos..].iter().map(|p| path_string(p)).collect();
            chain.push(path_string(path));
            self.errors.push(Diagnostic::error(node.span, format!("interpolation cycle: {}", chain.join(" -> "))));
            let cycle: Vec<Vec<Seg>> = self.active.drain(pos..).collect();
            for p in cycle.iter().cloned() {
                self.memo.insert(p, None);
            }
            self.active.extend(cycle);
            return None;
        }
        let Value::Str(text) = &node.value else {
            return Some(node.clone());
        };
        if self.active.len() >= MAX_CHAIN {
            self.errors.push(Diagnostic::error(
                node.span,
                format!("references chained more than {MAX_CHAIN} deep (at `{}`)", path_string(path)),
            ));
            self.memo.insert(path.to_vec(), None);
            return None;
        }
        self.active.push(path.to_vec());
        self.resolving.insert(path.to_vec());
        let result = self.template(text, path, node.span, is_deferred_path(path));
        self.active.pop();
        self.resolving.remove(path);
        let result = match result {
            Ok(n) => Some(n),
            Err(Fail::New(d)) => {
                // A cycle already reported for this path is not repeated.
                if self.memo.get(path).is_none_or(|m| m.is_some()) {
                    self.errors.push(d);
                }
                None
            }
            Err(Fail::Reported) => None,
        };
        self.memo.insert(path.to_vec(), result.clone());
        result
    }

    fn template(&mut self, text: &str, path: &[Seg], span: Span, deferred: bool) -> Result<Node, Fail> {
        let parts = parse(text)
            .map_err(|e| Diagnostic::error(span, format!("bad interpolation in `{}`: {e}", path_string(path))))?;
        self.eval_parts(&parts, path, span, deferred)
    }

    fn eval_parts(&mut self, parts: &[Part], path: &[Seg], span: Span, deferred: bool) -> Result<Node, Fail> {
        if let [Part::Interp(e)] = parts {
            let piece = self.eval(e, path, span, deferred)?;
            if let (Expr::Ref(_), Some(target)) = (e, self.last_target.take()) {
                self.origins.insert(path.to_vec(), target);
            }
            return match piece {
                Piece::Node(n) => Ok(Node::new(n.value, span)),
                Piece::Deferred(t) => Ok(Node::new(Value::Deferred(t), span)),
            };
        }
        let mut out = String::new();
        let mut any_deferred = false;
        // Text spliced into a shell field is quoted by what it is (see `splice`).
        let shell = is_shell_path(path);
        for p in parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Interp(_) if out.len() > MAX_VALUE_BYTES => break,
                Part::Interp(e) => match self.eval(e, path, span, deferred)? {
                    Piece::Deferred(t) => {
                        any_deferred = true;
                        out.push_str(&t);
                    }
                    Piece::Node(n) => match &n.value {
                        Value::Str(s) if shell => out.push_str(&splice(e, s, path, n.span)?),
                        Value::Str(s) => out.push_str(s),
                        Value::Deferred(s) => {
                            any_deferred = true;
                            out.push_str(s);
                        }
                        Value::Int(i) => out.push_str(&i.to_string()),
                        Value::Float(f) => out.push_str(&f.to_string()),
                        Value::Bool(b) => out.push_str(&b.to_string()),
                        Value::Null => {}
                        Value::Missing | Value::Seq(_) | Value::Map(_) => {
                            return Err(Diagnostic::error(
                                span,
                                format!("cannot insert {} into the string `{}`", n.kind(), path_string(path)),
                            )
                            .into());
                        }
                    },
                },
            }
        }
        if out.len() > MAX_VALUE_BYTES {
            return Err(Diagnostic::error(
                span,
                format!("`{}` expands to more than {} KiB", path_string(path), MAX_VALUE_BYTES >> 10),
            )
            .into());
        }
        let reported = self.expanded > MAX_TOTAL_BYTES;
        self.expanded += out.len();
        if reported {
            return Err(Fail::Reported);
        }
        if self.expanded > MAX_TOTAL_BYTES {
            return Err(Diagnostic::error(
                span,
                format!("interpolation expands to more than {} MiB in all", MAX_TOTAL_BYTES >> 20),
            )
            .into());
        }
        Ok(Node::new(if any_deferred { Value::Deferred(out) } else { Value::Str(out) }, span))
    }

    fn eval(&mut self, e: &Expr, path: &[Seg], span: Span, deferred: bool) -> Result<Piece, Fail> {
        match e {
            Expr::Ref(r) => {
                if self.copied > MAX_COPIED_NODES {
                    return Err(Fail::Reported);
                }
                let target = self.lookup(r, path, span)?;
                if matches!(target.value, Value::Map(_) | Value::Seq(_)) {
                    self.copied += count_nodes(&target, MAX_COPIED_NODES + 1);
                    if self.copied > MAX_COPIED_NODES {
                        return Err(Diagnostic::error(
                            span,
                            format!("references copy more than {MAX_COPIED_NODES} values in all (at `${{{r}}}`)"),
                        )
                        .into());
                    }
                }
                match target.value {
                    // The `???` itself is reported as a required value.
                    Value::Missing => Err(Fail::Reported),
                    Value::Deferred(ref t) if !deferred => {
                        let t = t.clone();
                        Ok(Piece::Node(self.template(&t, path, span, false)?))
                    }
                    _ => Ok(Piece::Node(target)),
                }
            }
            Expr::Call { name, args } => match name.as_str() {
                "oc.env" => {
                    let var = self.literal_arg(args, 0, path, span, deferred)?;
                    if var.is_empty() {
                        return Err(Diagnostic::error(span, "`${oc.env:...}` needs a variable name").into());
                    }
                    if args.len() > 2 {
                        return Err(
                            Diagnostic::error(span, "`${oc.env:VAR,default}` takes at most two arguments").into()
                        );
                    }
                    if deferred {
                        let text = match args.get(1) {
                            Some(d) => format!("${{oc.env:{var},{}}}", self.literal_parts(d, path, span, true)?),
                            None => format!("${{oc.env:{var}}}"),
                        };
                        return Ok(Piece::Deferred(text));
                    }
                    match (self.env)(&var) {
                        Some(v) => Ok(Piece::Node(Node::new(Value::Str(v), span))),
                        None => match args.get(1) {
                            Some(d) => {
                                let d = self.eval_parts(d, path, span, false)?;
                                Ok(Piece::Node(match d.value {
                                    Value::Str(ref s) if s == "null" => Node::new(Value::Null, span),
                                    _ => d,
                                }))
                            }
                            None => Err(Diagnostic::error(
                                span,
                                format!("environment variable `{var}` is not set (needed by `{}`)", path_string(path)),
                            )
                            .with_note(format!("set it, or give a default: ${{oc.env:{var},default}}"))
                            .into()),
                        },
                    }
                }
                "select_not_null" | "oc.select" => {
                    if args.len() != 2 {
                        return Err(
                            Diagnostic::error(span, format!("`${{{name}:key,fallback}}` takes two arguments")).into()
                        );
                    }
                    let key = self.literal_arg(args, 0, path, span, deferred)?;
                    let found = match self.lookup(&key, path, span) {
                        Ok(n) => Some(n),
                        Err(_) if name == "oc.select" => None,
                        Err(d) => return Err(d),
                    };
                    match found {
                        Some(n) if !matches!(n.value, Value::Null | Value::Missing) => Ok(Piece::Node(n)),
                        _ => Ok(Piece::Node(self.eval_parts(&args[1], path, span, deferred)?)),
                    }
                }
                other => Err(Diagnostic::error(
                    span,
                    format!("unknown resolver `{other}` (known: oc.env, oc.select, select_not_null)"),
                )
                .into()),
            },
        }
    }

    fn literal_arg(
        &mut self,
        args: &[Vec<Part>],
        i: usize,
        path: &[Seg],
        span: Span,
        deferred: bool,
    ) -> Result<String, Fail> {
        match args.get(i) {
            Some(a) => self.literal_parts(a, path, span, deferred),
            None => Ok(String::new()),
        }
    }

    fn literal_parts(&mut self, parts: &[Part], path: &[Seg], span: Span, deferred: bool) -> Result<String, Fail> {
        let n = self.eval_parts(parts, path, span, deferred)?;
        Ok(match n.value {
            Value::Str(s) | Value::Deferred(s) => s,
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => String::new(),
        })
    }

    /// Finds and resolves the value a reference points to.
    fn lookup(&mut self, r: &str, from: &[Seg], span: Span) -> Result<Node, Fail> {
        let dots = r.chars().take_while(|c| *c == '.').count();
        let rest = &r[dots..];
        let mut target: Vec<Seg> = if dots == 0 { vec![] } else { from[..from.len().saturating_sub(dots)].to_vec() };
        if !rest.is_empty() {
            target.extend(super::node::parse_dotted(&rest.replace('[', ".").replace(']', "")));
        }
        self.last_target = Some(target.clone());
        let not_found = |at: &[Seg]| {
            let mut d = Diagnostic::error(span, format!("`${{{r}}}`: no key `{}` in the config", path_string(at)));
            if dots > 0 && from.len() > dots {
                d = d.with_note(format!("relative to `{}`", path_string(&from[..from.len().saturating_sub(dots)])));
            }
            d
        };
        if !is_deferred_path(from) && target.iter().any(|s| matches!(s, Seg::Key(k) if k == "env_vars")) {
            return Err(Diagnostic::error(
                span,
                format!(
                    "`${{{r}}}` in `{}` refers to an environment variable, whose value may be a secret",
                    path_string(from)
                ),
            )
            .with_note(
                "environment variables reach jobs only as variables, never as text of other fields; \
                 a shell field (command, pre_cmd, post_cmd) can use `$NAME`",
            )
            .into());
        }
        // Walk the original tree by reference (no copies on the way),
        // resolving an interpolated string where the walk meets one.
        let root: &'a Node = self.root;
        let mut original: Option<&'a Node> = Some(root);
        let mut resolved: Option<Node> = None;
        let mut walked: Vec<Seg> = vec![];
        for seg in &target {
            walked.push(seg.clone());
            if let Some(node) = original {
                let Some(next) = node.child(seg) else {
                    return Err(not_found(&walked).into());
                };
                match &next.value {
                    Value::Str(s) if has_interpolation(s) => {
                        original = None;
                        resolved = Some(self.string_at(&walked, next).ok_or(Fail::Reported)?);
                    }
                    _ => original = Some(next),
                }
            } else {
                let next = resolved.as_ref().and_then(|n| child_lenient(n, seg)).cloned();
                resolved = Some(next.ok_or_else(|| not_found(&walked))?);
            }
        }
        match (original, resolved) {
            (Some(node), _) => {
                let mut p = target;
                Ok(self.deep(node, &mut p))
            }
            (None, Some(node)) => Ok(node),
            (None, None) => Err(not_found(&walked).into()),
        }
    }
}

/// The nodes of a tree, counting no further than `limit`.
fn count_nodes(n: &Node, limit: usize) -> usize {
    let mut count = 0;
    let mut stack = vec![n];
    while let Some(n) = stack.pop() {
        count += 1;
        if count >= limit {
            break;
        }
        match &n.value {
            Value::Map(m) => stack.extend(m.values().map(|e| &e.node)),
            Value::Seq(v) => stack.extend(v.iter()),
            _ => {}
        }
    }
    count
}

fn child_lenient<'n>(n: &'n Node, seg: &Seg) -> Option<&'n Node> {
    n.child(seg).or_else(|| match (seg, &n.value) {
        (Seg::Index(i), Value::Map(m)) => m.get(&i.to_string()).map(|e| &e.node),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml;
    use crate::diag::SourceId;

    fn run(src: &str, env: &[(&str, &str)]) -> Result<Node, Vec<Diagnostic>> {
        let tree = yaml::parse(src, SourceId(0)).unwrap();
        let env: Vec<(String, String)> = env.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        let lookup = move |k: &str| env.iter().find(|(a, _)| a == k).map(|(_, b)| b.clone());
        resolve(&tree, &lookup).map(|(n, _)| n)
    }

    fn at(n: &Node, p: &str) -> Value {
        n.get(&super::super::node::parse_dotted(p)).unwrap().value.clone()
    }

    #[test]
    fn references_keep_types_and_concatenate() {
        let n = run("a: {port: 8000, cmd: 'serve --port ${.port}'}\nb: ${a.port}\nc: x${a.port}y\n", &[]).unwrap();
        assert_eq!(at(&n, "a.cmd"), Value::Str("serve --port 8000".into()));
        assert_eq!(at(&n, "b"), Value::Int(8000));
        assert_eq!(at(&n, "c"), Value::Str("x8000y".into()));
    }

    #[test]
    fn env_eager_and_deferred() {
        let n = run("d: ${oc.env:HOME_X,/tmp}\ne: ${oc.env:SET}\nenv_vars: {T: '${oc.env:TOKEN}'}\n", &[("SET", "v")])
            .unwrap();
        assert_eq!(at(&n, "d"), Value::Str("/tmp".into()));
        assert_eq!(at(&n, "e"), Value::Str("v".into()));
        assert_eq!(at(&n, "env_vars.T"), Value::Deferred("${oc.env:TOKEN}".into()));
        let e = run("x: ${oc.env:NOPE}\n", &[]).unwrap_err();
        assert_eq!(e[0].message, "environment variable `NOPE` is not set (needed by `x`)");
    }

    #[test]
    fn select_not_null_and_escapes() {
        let n = run(
            "h: null\nm: ${select_not_null:h,/checkpoint}\nk: hf\nn: ${select_not_null:k,/c}\ns: '\\${literal}'\n",
            &[],
        )
        .unwrap();
        assert_eq!(at(&n, "m"), Value::Str("/checkpoint".into()));
        assert_eq!(at(&n, "n"), Value::Str("hf".into()));
        assert_eq!(at(&n, "s"), Value::Str("${literal}".into()));
    }

    #[test]
    fn cycles_and_missing_are_errors() {
        let e = run("a: ${b}\nb: ${a}\n", &[]).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].message.starts_with("interpolation cycle: a -> b -> a"), "{}", e[0].message);
        let e = run("a: ${nope.x}\n", &[]).unwrap_err();
        assert_eq!(e[0].message, "`${nope.x}`: no key `nope` in the config");
        // A reference to `???` is left to the required-value check (one error, not two).
        let n = run("a: ???\nb: ${a}\n", &[]).unwrap();
        assert_eq!(at(&n, "b"), Value::Null);
    }

    #[test]
    fn chained_references_through_interpolated_nodes() {
        let n = run("a: ${b}\nb: {x: '${c}'}\nc: 3\nd: ${a.x}\n", &[]).unwrap();
        assert_eq!(at(&n, "d"), Value::Int(3));
    }
}
