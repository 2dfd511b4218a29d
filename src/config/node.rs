//! The config tree: YAML values that remember where they came from.
//!
//! Composition, overrides and interpolation all work on this untyped tree so
//! that every later error (schema, semantic, missing value) can still point at
//! the file, line and column of the key that caused it. Only at the end is the
//! tree turned into JSON for schema validation and typed deserialization.

use indexmap::IndexMap;

use crate::diag::Span;

/// A value with the span of the text it was read from.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// `???`: a value the user must provide.
    Missing,
    /// A string whose `${oc.env:...}` parts are resolved only when the value
    /// is used (secrets, SSH user and host): kept as its source text.
    Deferred(String),
    Seq(Vec<Node>),
    Map(Map),
}

/// One key of a mapping: where the key was written, and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key_span: Span,
    pub node: Node,
}

pub type Map = IndexMap<String, Entry>;

/// One step of a path into the tree.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Seg {
    Key(String),
    Index(usize),
}

impl std::fmt::Display for Seg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Seg::Key(k) => f.write_str(k),
            Seg::Index(i) => write!(f, "{i}"),
        }
    }
}

/// `a.b.0.c` for a path.
pub fn path_string(path: &[Seg]) -> String {
    path.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(".")
}

impl Node {
    pub fn new(value: Value, span: Span) -> Node {
        Node { value, span }
    }

    pub fn empty_map(span: Span) -> Node {
        Node::new(Value::Map(Map::new()), span)
    }

    pub fn as_map(&self) -> Option<&Map> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_map_mut(&mut self) -> Option<&mut Map> {
        match &mut self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) | Value::Deferred(s) => Some(s),
            _ => None,
        }
    }

    /// A short name of the value's type for messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) | Value::Deferred(_) => "a string",
            Value::Missing => "`???`",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// The child at one path step.
    pub fn child(&self, seg: &Seg) -> Option<&Node> {
        match (&self.value, seg) {
            (Value::Map(m), Seg::Key(k)) => m.get(k).map(|e| &e.node),
            (Value::Seq(v), Seg::Index(i)) => v.get(*i),
            _ => None,
        }
    }

    pub fn child_mut(&mut self, seg: &Seg) -> Option<&mut Node> {
        match (&mut self.value, seg) {
            (Value::Map(m), Seg::Key(k)) => m.get_mut(k).map(|e| &mut e.node),
            (Value::Seq(v), Seg::Index(i)) => v.get_mut(*i),
            _ => None,
        }
    }

    /// The node at a path, if every step exists.
    pub fn get(&self, path: &[Seg]) -> Option<&Node> {
        path.iter().try_fold(self, |n, seg| n.child(seg))
    }

    pub fn get_mut(&mut self, path: &[Seg]) -> Option<&mut Node> {
        path.iter().try_fold(self, |n, seg| n.child_mut(seg))
    }

    /// The best span for a path: the key's span for a map entry (that is
    /// where users look), the element's span for a list item, and the
    /// nearest existing ancestor when the path does not exist.
    pub fn span_of(&self, path: &[Seg]) -> Span {
        let mut node = self;
        let mut span = self.span;
        for seg in path {
            match (&node.value, seg) {
                (Value::Map(m), Seg::Key(k)) => match m.get(k) {
                    Some(e) => {
                        span = e.key_span;
                        node = &e.node;
                    }
                    None => return span,
                },
                (Value::Seq(v), Seg::Index(i)) => match v.get(*i) {
                    Some(n) => {
                        span = n.span;
                        node = n;
                    }
                    None => return span,
                },
                _ => return span,
            }
        }
        span
    }

    /// The span of the value at a path (not its key).
    pub fn value_span_of(&self, path: &[Seg]) -> Span {
        self.get(path).map(|n| n.span).unwrap_or_else(|| self.span_of(path))
    }

    /// Visits every node with its path, parents before children.
    pub fn walk<'a>(&'a self, path: &mut Vec<Seg>, f: &mut dyn FnMut(&[Seg], &'a Node)) {
        f(path, self);
        match &self.value {
            Value::Map(m) => {
                for (k, e) in m {
                    path.push(Seg::Key(k.clone()));
                    e.node.walk(path, f);
                    path.pop();
                }
            }
            Value::Seq(v) => {
                for (i, n) in v.iter().enumerate() {
                    path.push(Seg::Index(i));
                    n.walk(path, f);
                    path.pop();
                }
            }
            _ => {}
        }
    }

    /// Converts to JSON for schema validation and typed deserialization.
    /// `???` becomes null (missing values are reported on their own).
    pub fn to_json(&self) -> serde_json::Value {
        self.json(false)
    }

    /// JSON as an editor sees the file: `???` stays the string `"???"`.
    pub fn to_editor_json(&self) -> serde_json::Value {
        self.json(true)
    }

    fn json(&self, keep_missing: bool) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Missing if keep_missing => J::String("???".into()),
            Value::Null | Value::Missing => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map(J::Number).unwrap_or(J::Null),
            Value::Str(s) | Value::Deferred(s) => J::String(s.clone()),
            Value::Seq(v) => J::Array(v.iter().map(|n| n.json(keep_missing)).collect()),
            Value::Map(m) => J::Object(m.iter().map(|(k, e)| (k.clone(), e.node.json(keep_missing))).collect()),
        }
    }
}

/// The most steps in a key path written as text (an `-o` key, a defaults
/// package): a tree stays shallow enough to walk, whatever the input.
pub const MAX_KEY_PATH: usize = 64;

/// Parses `a.b.0.c` into path steps; all-digit steps become list indices.
pub fn parse_dotted(path: &str) -> Vec<Seg> {
    path.split('.')
        .map(|s| match s.parse::<usize>() {
            Ok(i) if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) => Seg::Index(i),
            _ => Seg::Key(s.to_owned()),
        })
        .collect()
}

/// Deep-merges `src` into `dst` with OmegaConf semantics: mappings merge key
/// by key, anything else replaces, and a `???` in `src` never hides a value
/// already present in `dst` (a null is no value: `???` over null stays required).
pub fn merge(dst: &mut Node, src: Node) {
    if matches!(src.value, Value::Missing) && !matches!(dst.value, Value::Missing | Value::Null) {
        return;
    }
    match (&mut dst.value, src.value) {
        (Value::Map(d), Value::Map(s)) => {
            for (k, e) in s {
                match d.get_mut(&k) {
                    Some(existing) => {
                        existing.key_span = e.key_span;
                        merge(&mut existing.node, e.node);
                    }
                    None => {
                        d.insert(k, e);
                    }
                }
            }
        }
        (_, v) => {
            dst.value = v;
            dst.span = src.span;
        }
    }
}
