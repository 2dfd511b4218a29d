//! `evalctl migrate`: rewrite the older env-var dialect into the newer one,
//! editing the text in place so comments and layout survive.
//!
//! - `execution.env_vars.deployment` entries move to `deployment.env_vars`,
//!   `execution.env_vars.evaluation` entries to `evaluation.env_vars`;
//!   `${oc.env:VAR}` becomes `host:VAR`, a plain value `lit:VALUE`.
//! - Bare names in `evaluation.env_vars` and task `env_vars` (variables read
//!   where evalctl runs) become `host:NAME`.
//!
//! Safety: migrate changes a config or refuses, never damages it.
//! - Constructs a line edit cannot rewrite safely are refused up front,
//!   located at the construct: flow style (`{...}`, `[...]`) where lines are
//!   removed or added, anchors and aliases on or inside what changes, block
//!   scalars (`|`, `>`) and multi-line values that must be rewritten.
//! - The result is parsed again and must hold exactly the data of the
//!   original with the dialect change applied (spans aside); otherwise
//!   migrate refuses and nothing is written.
//! - Line endings (`\n`, `\r\n`, `\r`) are kept; new lines use the file's.
//! - A config already in the newer dialect comes back byte for byte.

use saphyr_parser::{Event, Parser, ScalarStyle};

use super::node::{Entry, Map, Node, Seg, Value, path_string};
use super::yaml;
use crate::diag::{Diagnostic, SourceId, Sources, Span};

/// The rewritten text, and how many values changed.
pub struct Migrated {
    pub text: String,
    pub changes: usize,
    /// Values that became visible `lit:` literals (they were kept out of
    /// scripts before): the user should check none is a secret.
    pub warnings: Vec<Diagnostic>,
}

/// Said by every refusal: nothing was written.
const UNTOUCHED: &str = "the file was left untouched";
const BY_HAND: &str = "rewrite this part in plain block style (one key per line, no anchors or aliases, \
                       single-line values) or in the newer dialect by hand, then run migrate again";
const MOVE_BY_HAND: &str = "move these entries to `deployment.env_vars` or `evaluation.env_vars` by hand \
                            (`host:VAR` for a variable read where evalctl runs, `lit:VALUE` for a value), \
                            then run migrate again";

/// The two `execution.env_vars` groups and the sections they move to.
const GROUPS: [&str; 2] = ["deployment", "evaluation"];

/// A 1-based line or column as a 0-based index.
fn at0(n: u32) -> usize {
    (n as usize).saturating_sub(1)
}

fn key(k: &str) -> Seg {
    Seg::Key(k.to_owned())
}

/// Rewrites `text` (a config file) into the newer dialect, or explains,
/// located, why it cannot do so safely.
pub fn migrate(name: &str, text: &str, sources: &Sources) -> Result<Migrated, Diagnostic> {
    let id = sources.add(name, text);
    let root =
        yaml::parse(text, id).map_err(|e| e.with_note(format!("migrate reads only a valid config; {UNTOUCHED}")))?;
    let plan = Plan::of(&root);
    let lines = Lines::split(text);
    check_constructs(&plan, &scan(text, &lines, id), &root)?;
    if let Some(e) = plan.refused {
        return Err(e);
    }

    let mut ops: Vec<Op> = vec![];
    for (path, new) in &plan.renames {
        let s = root.get(path).map(|n| n.span).unwrap_or_default();
        ops.push(Op::Splice { line: at0(s.line), col: at0(s.col), width: s.width as usize, with: scalar(new) });
    }
    let mut changes = plan.renames.len();
    if let Some(env) = plan.exec_env.as_ref() {
        let first = at0(env.key_span.line);
        let last = block_end(&lines.text, first);
        ops.push(Op::Delete { first, last });
        if plan.exec_emptied {
            // `execution:` would read as null: keep it an empty mapping.
            let exec = &root.as_map().and_then(|m| m.get("execution")).map(|e| e.key_span).unwrap_or_default();
            let line = lines.text.get(at0(exec.line)).map_or("", String::as_str);
            if let Some(col) = colon_after(line, at0(exec.col + exec.width)) {
                ops.push(Op::Splice { line: at0(exec.line), col: col + 1, width: 0, with: " {}".into() });
            }
        }
        let moved: usize = plan.moved.iter().map(|(_, e)| e.len()).sum();
        changes += if moved == 0 { 1 } else { moved };
        for (group, entries) in &plan.moved {
            insert_entries(&mut ops, &lines, &root, group, entries)?;
        }
    }
    if ops.is_empty() {
        return Ok(Migrated { text: text.to_owned(), changes: 0, warnings: plan.warnings });
    }
    let first_edit = plan.first_edit;
    let text_out = lines.apply(ops);
    verify(&text_out, &plan.expected(&root), &root, first_edit, sources, name)?;
    Ok(Migrated { text: text_out, changes, warnings: plan.warnings })
}

/// What changes, worked out on the parsed tree.
struct Plan {
    /// Values rewritten in place: path and new text.
    renames: Vec<(Vec<Seg>, String)>,
    /// The `execution.env_vars` entry, removed with its whole block.
    exec_env: Option<Entry>,
    /// `execution` holds nothing else.
    exec_emptied: bool,
    /// Entries moved to `<group>.env_vars` (those the group does not set already).
    moved: Moved,
    /// Why the entries cannot move, reported once the constructs around
    /// them are checked.
    refused: Option<Diagnostic>,
    warnings: Vec<Diagnostic>,
    /// Where a failed check is reported when nothing more precise is known.
    first_edit: Span,
}

impl Plan {
    fn of(root: &Node) -> Plan {
        let mut renames = vec![];
        let mut sections: Vec<Vec<Seg>> = vec![vec![key("evaluation"), key("env_vars")]];
        if let Some(Value::Seq(tasks)) = root.get(&[key("evaluation"), key("tasks")]).map(|n| &n.value) {
            for i in 0..tasks.len() {
                sections.push(vec![key("evaluation"), key("tasks"), Seg::Index(i), key("env_vars")]);
            }
        }
        for sec in &sections {
            let Some(map) = root.get(sec).and_then(Node::as_map) else {
                continue;
            };
            for (k, e) in map {
                if let Some(new) = name_value(&e.node) {
                    let mut path = sec.clone();
                    path.push(key(k));
                    renames.push((path, new));
                }
            }
        }

        let exec = root.as_map().and_then(|m| m.get("execution"));
        let exec_env = exec.and_then(|e| e.node.as_map()).and_then(|m| m.get("env_vars")).cloned();
        let exec_emptied = exec.and_then(|e| e.node.as_map()).is_some_and(|m| m.len() == 1) && exec_env.is_some();
        let mut warnings = vec![];
        let (moved, refused) = match moves(root, exec_env.as_ref(), &mut warnings) {
            Ok(m) => (m, None),
            Err(e) => (vec![], Some(e.with_note(MOVE_BY_HAND))),
        };
        let first_edit = exec_env
            .as_ref()
            .map(|e| e.key_span)
            .or_else(|| renames.first().map(|(p, _)| root.span_of(p)))
            .unwrap_or(root.span);
        Plan { renames, exec_env, exec_emptied, moved, refused, warnings, first_edit }
    }

    /// The paths the rewrite touches, and whether what lies below them
    /// changes too.
    fn edited(&self, root: &Node) -> Vec<(Vec<Seg>, Region)> {
        let mut out: Vec<(Vec<Seg>, Region)> = vec![];
        for (p, _) in &self.renames {
            out.push((p.clone(), Region::Value));
        }
        if self.exec_env.is_some() {
            out.push((vec![key("execution"), key("env_vars")], Region::Removed));
        }
        for (group, _) in &self.moved {
            let env = [key(group), key("env_vars")];
            match root.get(&env) {
                Some(n) if n.as_map().is_some_and(|m| m.is_empty()) => {
                    out.push((env.to_vec(), Region::EmptyTarget));
                }
                Some(_) => out.push((env.to_vec(), Region::Target)),
                None => out.push((vec![key(group)], Region::Section)),
            }
        }
        out
    }

    /// The original data with the dialect change applied: what the
    /// rewritten text must parse to.
    fn expected(&self, root: &Node) -> Node {
        let mut out = root.clone();
        for (path, new) in &self.renames {
            if let Some(n) = out.get_mut(path) {
                n.value = Value::Str(new.clone());
            }
        }
        if self.exec_env.is_some()
            && let Some(exec) = out.get_mut(&[key("execution")]).and_then(Node::as_map_mut)
        {
            exec.shift_remove("env_vars");
        }
        for (group, entries) in &self.moved {
            let Some(top) = out.as_map_mut() else {
                continue;
            };
            let sec = top
                .entry(group.to_string())
                .or_insert_with(|| Entry { key_span: Span::default(), node: Node::empty_map(Span::default()) });
            let Some(sec) = sec.node.as_map_mut() else {
                continue;
            };
            let env = sec
                .entry("env_vars".into())
                .or_insert_with(|| Entry { key_span: Span::default(), node: Node::empty_map(Span::default()) });
            if matches!(env.node.value, Value::Null) {
                env.node.value = Value::Map(Map::new());
            }
            let Some(env) = env.node.as_map_mut() else {
                continue;
            };
            for (k, v) in entries {
                if !env.contains_key(k) {
                    env.insert(
                        k.clone(),
                        Entry { key_span: Span::default(), node: Node::new(Value::Str(v.clone()), Span::default()) },
                    );
                }
            }
        }
        out
    }
}

/// The `execution.env_vars` entries to move, per group, in the newer
/// dialect (those the group does not set already).
type Moved = Vec<(&'static str, Vec<(String, String)>)>;

fn moves(root: &Node, exec_env: Option<&Entry>, warnings: &mut Vec<Diagnostic>) -> Result<Moved, Diagnostic> {
    let mut moved = vec![];
    if let Some(env) = exec_env
        && let Some(groups) = env.node.as_map()
    {
        for (g, e) in groups {
            if !GROUPS.contains(&g.as_str()) {
                return Err(refusal(
                    e.key_span,
                    &format!(
                        "`execution.env_vars.{g}` is neither `deployment` nor `evaluation`, so it has no new place"
                    ),
                ));
            }
        }
        for group in GROUPS {
            let Some(ge) = groups.get(group) else {
                continue;
            };
            let m = match &ge.node.value {
                Value::Map(m) => m,
                Value::Null => continue,
                _ => {
                    return Err(refusal(
                        ge.node.span,
                        &format!("`execution.env_vars.{group}` is {}, not a mapping", ge.node.kind()),
                    ));
                }
            };
            let mut entries = vec![];
            for (k, e) in m {
                if !matches!(
                    e.node.value,
                    Value::Str(_) | Value::Deferred(_) | Value::Int(_) | Value::Float(_) | Value::Bool(_)
                ) {
                    return Err(refusal(
                        e.node.span,
                        &format!("`execution.env_vars.{group}.{k}` is {}, not a single value", e.node.kind()),
                    ));
                }
                let v = value_value(&e.node);
                if v.starts_with("lit:") && !e.node.as_str().is_some_and(|s| s.starts_with("lit:")) {
                    warnings.push(
                        Diagnostic::warning(
                            e.node.span,
                            format!("`{k}` becomes the literal `lit:` value, visible in scripts and plans"),
                        )
                        .with_note("if it is a secret, export it where evalctl runs and write `host:VARIABLE` instead"),
                    );
                }
                entries.push((k.clone(), v));
            }
            // An entry the group already sets was overridden by it: drop it.
            let target = root.as_map().and_then(|m| m.get(group));
            if let Some(t) = target {
                match &t.node.value {
                    Value::Map(tm) => {
                        if let Some(te) = tm.get("env_vars") {
                            match &te.node.value {
                                Value::Map(existing) => entries.retain(|(k, _)| !existing.contains_key(k)),
                                Value::Null => {}
                                _ if entries.is_empty() => {}
                                _ => {
                                    return Err(refusal(
                                        te.node.span,
                                        &format!(
                                            "`{group}.env_vars` is {}, not a mapping to move entries into",
                                            te.node.kind()
                                        ),
                                    ));
                                }
                            }
                        }
                    }
                    _ if entries.is_empty() => {}
                    _ => {
                        return Err(refusal(
                            t.key_span,
                            &format!("`{group}` is {}, not a mapping to move entries into", t.node.kind()),
                        ));
                    }
                }
            }
            if !entries.is_empty() {
                moved.push((group, entries));
            }
        }
    } else if let Some(env) = exec_env
        && !matches!(env.node.value, Value::Null)
    {
        return Err(refusal(env.node.span, &format!("`execution.env_vars` is {}, not a mapping", env.node.kind())));
    }
    Ok(moved)
}

/// How an edited path changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Region {
    /// A single value rewritten in its place.
    Value,
    /// A block removed, everything below it re-written elsewhere.
    Removed,
    /// A mapping that receives new entries.
    Target,
    /// An empty `{}` mapping that receives new entries.
    EmptyTarget,
    /// A section that receives a new `env_vars` block.
    Section,
}

/// A construct a line edit may damage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Anchor,
    Alias,
    Flow,
    BlockScalar,
    MultiLine,
}

struct Construct {
    path: Vec<Seg>,
    span: Span,
    kind: Kind,
}

fn refusal(span: Span, why: &str) -> Diagnostic {
    Diagnostic::error(span, format!("cannot migrate safely: {why}; {UNTOUCHED}"))
}

/// Refuses when a construct lies where the rewrite would damage it.
fn check_constructs(plan: &Plan, found: &[Construct], root: &Node) -> Result<(), Diagnostic> {
    let edited = plan.edited(root);
    let is_prefix = |a: &[Seg], b: &[Seg]| a.len() <= b.len() && a == &b[..a.len()];
    for c in found {
        for (path, region) in &edited {
            let above = is_prefix(&c.path, path) && c.path.len() < path.len();
            let at = c.path == *path;
            let below = is_prefix(path, &c.path) && !at;
            let hit = match c.kind {
                // An alias copies its anchor's data: changing either side
                // changes the other's meaning.
                Kind::Anchor | Kind::Alias => {
                    above || at || (below && matches!(region, Region::Removed | Region::Target))
                }
                // Lines are removed or added inside the section: it must be
                // in block style, and so must every section around it.
                Kind::Flow => match region {
                    Region::Value => false,
                    Region::Removed => above,
                    Region::Target | Region::Section => above || at,
                    Region::EmptyTarget => above,
                },
                Kind::BlockScalar | Kind::MultiLine => match region {
                    Region::Value => at,
                    Region::Removed => below,
                    _ => false,
                },
            };
            if hit {
                let what = match c.kind {
                    Kind::Anchor => "an anchor (`&`)",
                    Kind::Alias => "an alias (`*`)",
                    Kind::Flow => "flow style (`{...}` or `[...]`)",
                    Kind::BlockScalar => "a block scalar (`|` or `>`)",
                    Kind::MultiLine => "a value written over several lines",
                };
                let span = if c.kind == Kind::BlockScalar { root.span_of(&c.path) } else { c.span };
                return Err(
                    refusal(span, &format!("{what} where `{}` must change", path_string(path))).with_note(BY_HAND)
                );
            }
        }
    }
    Ok(())
}

/// Lists anchors, aliases, flow collections and multi-line scalars with
/// the tree path they sit at (a key's construct sits at its mapping).
fn scan(text: &str, lines: &Lines, src: SourceId) -> Vec<Construct> {
    enum Slot {
        Seq(usize),
        /// The key read, waiting for its value.
        Map(Option<Seg>),
    }
    struct Frame {
        path: Vec<Seg>,
        slot: Slot,
    }
    fn advance(stack: &mut [Frame]) {
        match stack.last_mut().map(|f| &mut f.slot) {
            Some(Slot::Seq(i)) => *i += 1,
            Some(Slot::Map(k)) => *k = None,
            None => {}
        }
    }
    let mut out = vec![];
    let mut stack: Vec<Frame> = vec![];
    let mut parser = Parser::new_from_str(text);
    while let Some(Ok((ev, sp))) = parser.next_event() {
        let width = if sp.end.line() == sp.start.line() { sp.end.col().saturating_sub(sp.start.col()) } else { 1 };
        let span = Span::new(src, sp.start.line() as u32, sp.start.col() as u32 + 1, width.max(1) as u32);
        let anchor = match &ev {
            Event::Scalar(_, _, a, _) | Event::SequenceStart(a, _) | Event::MappingStart(a, _) => *a,
            Event::Alias(_) => 0,
            Event::SequenceEnd | Event::MappingEnd => {
                stack.pop();
                advance(&mut stack);
                continue;
            }
            _ => continue,
        };
        let (path, as_key) = match stack.last() {
            None => (vec![], false),
            Some(Frame { path, slot: Slot::Map(None) }) => (path.clone(), true),
            Some(Frame { path, slot: Slot::Map(Some(k)) }) => {
                ([path.as_slice(), std::slice::from_ref(k)].concat(), false)
            }
            Some(Frame { path, slot: Slot::Seq(i) }) => ([path.as_slice(), &[Seg::Index(*i)]].concat(), false),
        };
        let mut record = |kind| out.push(Construct { path: path.clone(), span, kind });
        if anchor > 0 {
            record(Kind::Anchor);
        }
        match ev {
            Event::Alias(_) => {
                record(Kind::Alias);
                if as_key {
                    if let Some(Frame { slot: Slot::Map(k), .. }) = stack.last_mut() {
                        *k = Some(key("*"));
                    }
                } else {
                    advance(&mut stack);
                }
            }
            Event::Scalar(value, style, _, _) => {
                if !as_key && matches!(style, ScalarStyle::Literal | ScalarStyle::Folded) {
                    record(Kind::BlockScalar);
                } else if !as_key && sp.end.line() != sp.start.line() {
                    record(Kind::MultiLine);
                }
                if as_key {
                    let k = if style == ScalarStyle::Plain { key_text(&value) } else { value.into_owned() };
                    if let Some(Frame { slot: Slot::Map(slot), .. }) = stack.last_mut() {
                        *slot = Some(Seg::Key(k));
                    }
                } else {
                    advance(&mut stack);
                }
            }
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                if sp.start.index() != sp.end.index() && lines.flow_starts_at(span) {
                    record(Kind::Flow);
                }
                let slot = if matches!(ev, Event::SequenceStart(..)) { Slot::Seq(0) } else { Slot::Map(None) };
                stack.push(Frame { path, slot });
            }
            _ => {}
        }
    }
    out
}

/// The key a plain scalar names, as the loader spells it.
fn key_text(text: &str) -> String {
    match yaml::plain_scalar(text, Span::default()).value {
        Value::Str(s) => s,
        Value::Int(i) => i.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Null => "null".into(),
        Value::Missing => "???".into(),
        _ => text.to_owned(),
    }
}

/// Parses the rewritten text again and compares it with the expected data.
fn verify(
    text: &str,
    expected: &Node,
    root: &Node,
    first_edit: Span,
    sources: &Sources,
    name: &str,
) -> Result<(), Diagnostic> {
    let id = sources.add(format!("{name} (migrated)"), text);
    let got = yaml::parse(text, id).map_err(|e| {
        refusal(first_edit, "the rewritten text would not parse as YAML")
            .with_note(format!("the parser said: {}", e.message))
            .with_note(BY_HAND)
    })?;
    if let Some(path) = first_difference(expected, &got, &mut vec![]) {
        let span = if root.get(&path).is_some() { root.span_of(&path) } else { first_edit };
        return Err(refusal(span, &format!("the rewritten text would change the data at `{}`", path_string(&path)))
            .with_note(BY_HAND));
    }
    Ok(())
}

/// The first path where two trees hold different data (spans and key order
/// aside), if any.
fn first_difference(a: &Node, b: &Node, path: &mut Vec<Seg>) -> Option<Vec<Seg>> {
    match (&a.value, &b.value) {
        (Value::Map(x), Value::Map(y)) => {
            for (k, e) in x {
                path.push(key(k));
                let d = match y.get(k) {
                    Some(f) => first_difference(&e.node, &f.node, path),
                    None => Some(path.clone()),
                };
                path.pop();
                if d.is_some() {
                    return d;
                }
            }
            y.keys().find(|k| !x.contains_key(*k)).map(|k| [path.as_slice(), &[key(k)]].concat())
        }
        (Value::Seq(x), Value::Seq(y)) => {
            for (i, (m, n)) in x.iter().zip(y).enumerate() {
                path.push(Seg::Index(i));
                let d = first_difference(m, n, path);
                path.pop();
                if d.is_some() {
                    return d;
                }
            }
            (x.len() != y.len()).then(|| path.clone())
        }
        (Value::Float(x), Value::Float(y)) if x.is_nan() && y.is_nan() => None,
        (x, y) => (x != y).then(|| path.clone()),
    }
}

/// One edit, in the original text's line numbers (0-based).
enum Op {
    /// Replaces `width` characters at `col` of `line`.
    Splice { line: usize, col: usize, width: usize, with: String },
    /// Removes lines `first..=last`.
    Delete { first: usize, last: usize },
    /// Inserts lines before line `at` (`at` may be the line count).
    Insert { at: usize, lines: Vec<String> },
}

/// The text as lines, each with its own line break.
struct Lines<'a> {
    text: Vec<String>,
    breaks: Vec<&'a str>,
    /// The break new lines get: the file's first one.
    nl: &'a str,
}

impl<'a> Lines<'a> {
    /// Splits at `\r\n`, `\r` and `\n`, the breaks YAML knows.
    fn split(text: &'a str) -> Lines<'a> {
        let (mut lines, mut breaks) = (vec![], vec![]);
        let bytes = text.as_bytes();
        let (mut start, mut i) = (0, 0);
        while i < bytes.len() {
            let len = match bytes[i] {
                b'\r' if bytes.get(i + 1) == Some(&b'\n') => 2,
                b'\r' | b'\n' => 1,
                _ => {
                    i += 1;
                    continue;
                }
            };
            lines.push(text[start..i].to_owned());
            breaks.push(&text[i..i + len]);
            i += len;
            start = i;
        }
        if start < text.len() {
            lines.push(text[start..].to_owned());
            breaks.push("");
        }
        let nl = breaks.iter().copied().find(|b| !b.is_empty()).unwrap_or("\n");
        Lines { text: lines, breaks, nl }
    }

    /// Whether a collection starting at `span` is written in flow style
    /// (its text starts with `{` or `[`, after any `&anchor` or `!tag`).
    fn flow_starts_at(&self, span: Span) -> bool {
        let Some(line) = self.text.get(at0(span.line)) else {
            return false;
        };
        let mut rest = line.chars().skip(at0(span.col)).peekable();
        loop {
            match rest.peek() {
                Some('{' | '[') => return true,
                Some('&' | '!') => {
                    while rest.next_if(|c| !c.is_whitespace()).is_some() {}
                    while rest.next_if(|c| c.is_whitespace()).is_some() {}
                }
                _ => return false,
            }
        }
    }

    /// Applies the edits (bottom up, so earlier line numbers stay valid)
    /// and joins the lines again.
    fn apply(self, mut ops: Vec<Op>) -> String {
        let ends_with_break = self.breaks.last().is_some_and(|b| !b.is_empty());
        let nl = self.nl;
        let mut lines: Vec<(String, &str)> = self.text.into_iter().zip(self.breaks).collect();
        // Later positions first; on one line, a splice or a removal before
        // an insertion, and splices right to left.
        let order = |op: &Op| match op {
            Op::Splice { line, col, .. } => (*line, 2, *col),
            Op::Delete { first, .. } => (*first, 1, 0),
            Op::Insert { at, .. } => (*at, 0, 0),
        };
        ops.sort_by_key(|op| std::cmp::Reverse(order(op)));
        for op in ops {
            match op {
                Op::Splice { line, col, width, with } => {
                    if let Some((l, _)) = lines.get_mut(line) {
                        let start = char_to_byte(l, col);
                        let end = char_to_byte(l, col + width).max(start);
                        l.replace_range(start..end, &with);
                    }
                }
                Op::Delete { first, last } => {
                    if first <= last && last < lines.len() {
                        lines.drain(first..=last);
                    }
                }
                Op::Insert { at, lines: new } => {
                    let at = at.min(lines.len());
                    lines.splice(at..at, new.into_iter().map(|l| (l, nl)));
                }
            }
        }
        let mut out = String::new();
        let n = lines.len();
        for (i, (l, b)) in lines.into_iter().enumerate() {
            out.push_str(&l);
            // Every line but the last ends with a break; the last one as before.
            if i + 1 < n || ends_with_break {
                out.push_str(if b.is_empty() { nl } else { b });
            }
        }
        out
    }
}

/// The character column of the `:` that follows a key ending at `col`.
fn colon_after(line: &str, col: usize) -> Option<usize> {
    let rest: Vec<char> = line.chars().skip(col).collect();
    let skip = rest.iter().take_while(|c| **c == ' ').count();
    (rest.get(skip) == Some(&':')).then_some(col + skip)
}

/// Adds `entries` to `<group>.env_vars`, creating what is missing.
fn insert_entries(
    ops: &mut Vec<Op>,
    lines: &Lines,
    root: &Node,
    group: &str,
    entries: &[(String, String)],
) -> Result<(), Diagnostic> {
    let render = |pad: usize| -> Vec<String> {
        entries.iter().map(|(k, v)| format!("{}{}: {}", " ".repeat(pad), scalar(k), scalar(v))).collect()
    };
    let top = root.as_map();
    let top_pad = top.and_then(|m| m.values().next()).map_or(0, |e| at0(e.key_span.col));
    let Some(sec) = top.and_then(|m| m.get(group)) else {
        let mut new = vec![format!("{}{group}:", " ".repeat(top_pad)), format!("{}env_vars:", " ".repeat(top_pad + 2))];
        new.extend(render(top_pad + 4));
        ops.push(Op::Insert { at: lines.text.len(), lines: new });
        return Ok(());
    };
    let Some(m) = sec.node.as_map() else {
        return Err(
            refusal(sec.key_span, &format!("`{group}` is {}, not a mapping", sec.node.kind())).with_note(MOVE_BY_HAND)
        );
    };
    let child_pad = m.values().next().map_or(top_pad + 2, |e| at0(e.key_span.col));
    let Some(env) = m.get("env_vars") else {
        let end = block_end(&lines.text, at0(sec.key_span.line));
        let mut new = vec![format!("{}env_vars:", " ".repeat(child_pad))];
        new.extend(render(child_pad + 2));
        ops.push(Op::Insert { at: end + 1, lines: new });
        return Ok(());
    };
    let env_line = at0(env.key_span.line);
    let pad = env
        .node
        .as_map()
        .and_then(|m| m.values().next())
        .map_or(env.key_span.col as usize + 1, |e| at0(e.key_span.col));
    if env.node.as_map().is_some_and(Map::is_empty) {
        // `env_vars: {}`: the braces go, the entries follow below.
        let s = env.node.span;
        let line = lines.text.get(at0(s.line)).map_or("", String::as_str);
        let rest: Vec<char> = line.chars().skip(at0(s.col)).collect();
        let inner = rest.iter().skip(1).take_while(|c| **c == ' ').count();
        if at0(s.line) != env_line || rest.first() != Some(&'{') || rest.get(1 + inner) != Some(&'}') {
            return Err(
                refusal(s, &format!("flow style (`{{...}}`) where `{group}.env_vars` must change")).with_note(BY_HAND)
            );
        }
        // With the blanks before them, and after them when nothing follows.
        let col = at0(s.col);
        let before = line.chars().take(col).collect::<Vec<_>>().iter().rev().take_while(|c| **c == ' ').count();
        let after = rest.iter().skip(inner + 2).collect::<String>();
        let trailing = if after.trim().is_empty() { after.chars().count() } else { 0 };
        ops.push(Op::Splice {
            line: env_line,
            col: col - before,
            width: before + inner + 2 + trailing,
            with: String::new(),
        });
    }
    let end = block_end(&lines.text, env_line);
    ops.push(Op::Insert { at: end + 1, lines: render(pad) });
    Ok(())
}

/// `host:NAME` for a bare variable name (or `${oc.env:NAME}`).
fn name_value(n: &Node) -> Option<String> {
    let s = n.as_str()?;
    if s.starts_with("host:") || s.starts_with("lit:") || s.starts_with("runtime:") {
        return None;
    }
    if let Some(var) = s.strip_prefix("${oc.env:").and_then(|r| r.strip_suffix('}'))
        && super::env::is_var_name(var)
    {
        return Some(format!("host:{var}"));
    }
    super::env::is_var_name(s).then(|| format!("host:{s}"))
}

/// The newer-dialect form of an older `execution.env_vars` value.
fn value_value(n: &Node) -> String {
    let text = match &n.value {
        Value::Str(s) | Value::Deferred(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    };
    if text.starts_with("host:") || text.starts_with("lit:") || text.starts_with("runtime:") {
        return text;
    }
    if let Some(var) = text.strip_prefix("${oc.env:").and_then(|r| r.strip_suffix('}'))
        && super::env::is_var_name(var)
    {
        return format!("host:{var}");
    }
    if text.contains("${") { text } else { format!("lit:{text}") }
}

fn char_to_byte(s: &str, chars: usize) -> usize {
    s.char_indices().nth(chars).map_or(s.len(), |(b, _)| b)
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// Last line of the block that starts with the key on line `start`
/// (comments indented below the key belong to it).
fn block_end(lines: &[String], start: usize) -> usize {
    let Some(first) = lines.get(start) else {
        return start;
    };
    let base = indent(first);
    let mut end = start;
    for (i, l) in lines.iter().enumerate().skip(start + 1) {
        let t = l.trim();
        if t.is_empty() {
            continue;
        }
        if t.starts_with('#') {
            if indent(l) > base {
                end = i;
            }
            continue;
        }
        if indent(l) < base || indent(l) == base && !t.starts_with("- ") && t != "-" {
            break;
        }
        end = i;
    }
    end
}

/// A YAML scalar for `s`: plain when that reads back as the same string.
pub fn scalar(s: &str) -> String {
    let plain_ok = !s.is_empty()
        && !s.starts_with([
            ' ', '-', '?', ':', ',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '\'', '"', '%', '@', '`',
        ])
        && !s.ends_with([' ', ':'])
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.contains(['\n', '\t'])
        && matches!(yaml::plain_scalar(s, Default::default()).value, Value::Str(_));
    if plain_ok { s.to_owned() } else { serde_json::to_string(s).unwrap_or_default() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_execution_env_vars_and_prefixes_names() {
        let src = "\
execution:
  account: a # keep me
  env_vars:
    deployment:
      HF_TOKEN: ${oc.env:HF_TOKEN}
      MODE: fast
    evaluation: {}
deployment:
  type: vllm
evaluation:
  tasks:
    - name: gpqa_diamond
      env_vars:
        HF_TOKEN: HF_TOKEN_FOR_GPQA # comment
";
        let m = migrate("t.yaml", src, &Sources::new()).unwrap();
        assert_eq!(
            m.text,
            "\
execution:
  account: a # keep me
deployment:
  type: vllm
  env_vars:
    HF_TOKEN: host:HF_TOKEN
    MODE: lit:fast
evaluation:
  tasks:
    - name: gpqa_diamond
      env_vars:
        HF_TOKEN: host:HF_TOKEN_FOR_GPQA # comment
"
        );
        assert_eq!(m.changes, 3);
    }

    #[test]
    fn differences_ignore_spans_and_key_order() {
        let a = yaml::parse("a: {x: 1, y: .nan}\nb: [1, 2]\n", SourceId(0)).unwrap();
        let b = yaml::parse("b:\n  - 1\n  - 2\na:\n  y: .NaN\n  x: 1\n", SourceId(1)).unwrap();
        assert_eq!(first_difference(&a, &b, &mut vec![]), None);
        let c = yaml::parse("a: {x: '1', y: .nan}\nb: [1, 2]\n", SourceId(2)).unwrap();
        assert_eq!(first_difference(&a, &c, &mut vec![]), Some(vec![key("a"), key("x")]));
        let d = yaml::parse("a: {x: 1, y: .nan}\nb: [1]\nc: 0\n", SourceId(3)).unwrap();
        assert_eq!(first_difference(&a, &d, &mut vec![]), Some(vec![key("b")]));
    }

    #[test]
    fn lines_keep_every_break() {
        for text in ["", "a", "a\n", "a\r\nb\rc\n\n", "\r\r\n\n", "x\ry"] {
            let l = Lines::split(text);
            assert_eq!(l.apply(vec![]), text);
        }
        let l = Lines::split("a\r\nb");
        assert_eq!(l.nl, "\r\n");
        assert_eq!(l.apply(vec![Op::Insert { at: 2, lines: vec!["c".into()] }]), "a\r\nb\r\nc");
    }

    #[test]
    fn scalars_quote_when_needed() {
        assert_eq!(scalar("host:X"), "host:X");
        assert_eq!(scalar("lit:a b"), "lit:a b");
        assert_eq!(scalar("true"), "\"true\"");
        assert_eq!(scalar("a: b"), "\"a: b\"");
        assert_eq!(scalar(""), "\"\"");
    }
}
