//! Hydra-style composition: the `defaults:` list merges config groups
//! (built into the binary, or from a folder beside the config) and the file
//! itself (`_self_`) into one tree.
//!
//! Entries: `{group: option}` (package = group), `{group@pkg: option}`,
//! `group/option@pkg` as a plain string, `_self_`, `override group: option`,
//! and, inside a group file, a bare option name of the same group. Without a
//! `defaults` list a config gets `[execution: slurm/default, deployment: none, _self_]`.

use std::path::Path;

use super::files::{self, Confined, Found};
use super::node::{Entry, Node, Value, merge};
use super::yaml;
use crate::diag::{Diagnostic, Sources, Span};

/// Built-in config groups: (path below the group root, text).
const BUILTIN: &[(&str, &str)] = &[
    ("execution/slurm/default", include_str!("groups/execution/slurm/default.yaml")),
    ("execution/local-slurm", include_str!("groups/execution/local-slurm.yaml")),
    ("deployment/vllm", include_str!("groups/deployment/vllm.yaml")),
    ("deployment/vllm_ray", include_str!("groups/deployment/vllm_ray.yaml")),
    ("deployment/sglang", include_str!("groups/deployment/sglang.yaml")),
    ("deployment/trtllm", include_str!("groups/deployment/trtllm.yaml")),
    ("deployment/nim", include_str!("groups/deployment/nim.yaml")),
    ("deployment/generic", include_str!("groups/deployment/generic.yaml")),
    ("deployment/none", include_str!("groups/deployment/none.yaml")),
];

/// Text of a built-in group option, e.g. `deployment/vllm`.
pub fn builtin(path: &str) -> Option<&'static str> {
    BUILTIN.iter().find(|(p, _)| *p == path).map(|(_, t)| *t)
}

/// Names of the built-in options of a group.
pub fn builtin_options(group: &str) -> Vec<String> {
    let prefix = format!("{group}/");
    BUILTIN.iter().filter_map(|(p, _)| p.strip_prefix(&prefix).map(str::to_owned)).collect()
}

const MAX_INCLUDE_DEPTH: usize = 16;

/// Composes a parsed primary config. `dir` is the folder searched for user
/// groups before the built-in ones.
pub fn compose(primary: Node, dir: &Path, sources: &Sources) -> Result<Node, Vec<Diagnostic>> {
    let mut c = Composer { files: Confined::new(dir), sources, errors: vec![], stack: vec![] };
    let root_span = primary.span;
    let mut out = Node::empty_map(root_span);
    c.apply(&mut out, primary, &[], None, true, 0);
    if c.errors.is_empty() { Ok(out) } else { Err(c.errors) }
}

/// One parsed `defaults` entry.
#[derive(Debug)]
enum Item {
    SelfRef,
    /// A config file (group option) to merge at a package.
    Include {
        file: String,
        package: Vec<String>,
        group: Option<String>,
        span: Span,
        is_override: bool,
    },
}

struct Composer<'a> {
    /// The config's folder tree: the only place user groups are read from.
    files: Confined,
    sources: &'a Sources,
    errors: Vec<Diagnostic>,
    stack: Vec<String>,
}

impl Composer<'_> {
    /// Merges `file` (already parsed) and its defaults into `out` at `package`.
    /// `group` is the group the file belongs to (None for the primary config).
    fn apply(
        &mut self,
        out: &mut Node,
        mut file: Node,
        package: &[String],
        group: Option<&str>,
        primary: bool,
        depth: usize,
    ) {
        let defaults = match file.as_map_mut().and_then(|m| m.shift_remove("defaults")) {
            Some(e) => Some(e),
            None if primary => None,
            None => Some(Entry { key_span: file.span, node: Node::new(Value::Seq(vec![]), file.span) }),
        };
        let items = match defaults {
            Some(entry) => self.parse_list(&entry, group, package, primary),
            None => implicit_defaults(file.span),
        };
        let mut items = items;
        if !items.iter().any(|i| matches!(i, Item::SelfRef)) {
            items.push(Item::SelfRef);
        }
        // `override group: option` replaces the earlier entry of that group.
        let mut resolved: Vec<Item> = Vec::new();
        for item in items {
            if let Item::Include { group: Some(g), is_override: true, .. } = &item
                && let Some(pos) =
                    resolved.iter().position(|i| matches!(i, Item::Include { group: Some(h), .. } if h == g))
            {
                resolved[pos] = item;
                continue;
            }
            resolved.push(item);
        }
        let mut file = Some(file);
        for item in resolved {
            match item {
                Item::SelfRef => {
                    if let Some(f) = file.take() {
                        merge_at(out, package, f);
                    }
                }
                Item::Include { file: path, package: pkg, group, span, .. } => {
                    if pkg.len() > super::node::MAX_KEY_PATH {
                        let msg = format!("package of `{path}` has more than {} parts", super::node::MAX_KEY_PATH);
                        self.errors.push(Diagnostic::error(span, msg));
                        continue;
                    }
                    if depth >= MAX_INCLUDE_DEPTH || self.stack.contains(&path) {
                        let chain = [self.stack.clone(), vec![path.clone()]].concat().join(" -> ");
                        self.errors.push(Diagnostic::error(span, format!("defaults include themselves: {chain}")));
                        continue;
                    }
                    let Some(node) = self.load(&path, group.as_deref(), span) else {
                        continue;
                    };
                    self.stack.push(path.clone());
                    self.apply(out, node, &pkg, group.as_deref(), false, depth + 1);
                    self.stack.pop();
                }
            }
        }
    }

    fn parse_list(&mut self, entry: &Entry, group: Option<&str>, package: &[String], primary: bool) -> Vec<Item> {
        let Value::Seq(list) = &entry.node.value else {
            self.errors.push(Diagnostic::error(
                entry.node.span,
                format!("`defaults` must be a list, found {}", entry.node.kind()),
            ));
            return vec![];
        };
        let mut items = vec![];
        for el in list {
            match &el.value {
                Value::Str(s) if s == "_self_" => items.push(Item::SelfRef),
                Value::Str(s) => {
                    let (path, pkg) = match s.split_once('@') {
                        Some((p, k)) => (p.to_owned(), Some(split_pkg(k))),
                        None => (s.clone(), None),
                    };
                    let (file, default_pkg, g) = match group {
                        // Inside a group file: an option of the same group.
                        Some(g) if !primary => (format!("{g}/{path}"), package.to_vec(), Some(g.to_owned())),
                        _ => match path.rsplit_once('/') {
                            Some((g, _)) => (path.clone(), split_pkg(&g.replace('/', ".")), Some(g.to_owned())),
                            None => (path.clone(), vec![], None),
                        },
                    };
                    items.push(Item::Include {
                        file,
                        package: pkg.unwrap_or(default_pkg),
                        group: g,
                        span: el.span,
                        is_override: false,
                    });
                }
                Value::Map(m) if m.len() == 1 => {
                    let Some((key, e)) = m.iter().next() else {
                        continue;
                    };
                    let (is_override, key) = match key.strip_prefix("override ") {
                        Some(k) => (true, k.trim()),
                        None => (false, key.as_str()),
                    };
                    let (g, pkg) = match key.split_once('@') {
                        Some((g, k)) => (g, Some(split_pkg(k))),
                        None => (key, None),
                    };
                    match &e.node.value {
                        Value::Null => {}
                        Value::Str(option) => items.push(Item::Include {
                            file: format!("{g}/{option}"),
                            package: pkg.unwrap_or_else(|| split_pkg(&g.replace('/', "."))),
                            group: Some(g.to_owned()),
                            span: e.node.span,
                            is_override,
                        }),
                        _ => self.errors.push(Diagnostic::error(
                            e.node.span,
                            format!("option of group `{g}` must be a name, found {}", e.node.kind()),
                        )),
                    }
                }
                _ => self.errors.push(Diagnostic::error(
                    el.span,
                    "a defaults entry is `_self_`, `group: option` or `group/option@package`",
                )),
            }
        }
        items
    }

    /// Loads `path` (`group/option`) from the user folder, else the built-ins.
    fn load(&mut self, path: &str, group: Option<&str>, span: Span) -> Option<Node> {
        let found = match self.files.resolve(path, ".yaml") {
            Ok(f) => f,
            Err(why) => {
                self.errors.push(Diagnostic::error(span, why));
                return None;
            }
        };
        let (name, text) = if let Found::File(user) = found {
            match files::read(&user) {
                Ok(t) => (user.display().to_string(), t),
                Err(why) => {
                    self.errors.push(Diagnostic::error(span, format!("cannot read {}: {why}", user.display())));
                    return None;
                }
            }
        } else if let Some(t) = builtin(path) {
            (format!("<builtin>/{path}.yaml"), t.to_owned())
        } else {
            let (group, option) = match group.and_then(|g| path.strip_prefix(&format!("{g}/")).map(|o| (g, o))) {
                Some(go) => go,
                None => path.rsplit_once('/').unwrap_or(("", path)),
            };
            let mut choices = builtin_options(group);
            if !group.is_empty() {
                choices.extend(self.files.options(group));
            }
            choices.sort();
            choices.dedup();
            let msg = if group.is_empty() {
                format!("config `{path}` not found (looked for {})", self.files.path(path, ".yaml").display())
            } else {
                format!("unknown option `{option}` for config group `{group}`")
            };
            let mut d = Diagnostic::error(span, msg);
            if !choices.is_empty() {
                d = d.with_note(format!("available: {}", choices.join(", ")));
            }
            self.errors.push(d);
            return None;
        };
        let id = self.sources.add(name, text.clone());
        match yaml::parse(&text, id) {
            Ok(n) if n.as_map().is_some() => Some(n),
            Ok(n) => {
                self.errors.push(Diagnostic::error(n.span, "a config group file must be a mapping"));
                None
            }
            Err(e) => {
                self.errors.push(e);
                None
            }
        }
    }
}

fn split_pkg(p: &str) -> Vec<String> {
    if p.is_empty() || p == "_global_" { vec![] } else { p.split('.').map(str::to_owned).collect() }
}

fn implicit_defaults(span: Span) -> Vec<Item> {
    let inc = |g: &str, o: &str| Item::Include {
        file: format!("{g}/{o}"),
        package: vec![g.to_owned()],
        group: Some(g.to_owned()),
        span,
        is_override: false,
    };
    vec![inc("execution", "slurm/default"), inc("deployment", "none"), Item::SelfRef]
}

/// Merges `node` into `out` below `package` (creating mappings on the way).
fn merge_at(out: &mut Node, package: &[String], node: Node) {
    let mut cur = out;
    for key in package {
        if cur.as_map().is_none() {
            *cur = Node::empty_map(node.span);
        }
        let Some(map) = cur.as_map_mut() else { return };
        let entry =
            map.entry(key.clone()).or_insert_with(|| Entry { key_span: node.span, node: Node::empty_map(node.span) });
        cur = &mut entry.node;
    }
    merge(cur, node);
}
