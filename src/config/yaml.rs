//! YAML text → [`Node`] tree, keeping a span for every key and value.
//!
//! Built on `saphyr-parser` (a maintained YAML 1.2 parser that reports a
//! span for every event). Scalars are typed here with the YAML 1.2 core
//! schema, so `walltime: 10:00:00` stays the string the user meant (YAML 1.1
//! loaders read it as the base-60 integer 36000) and `on`/`yes` stay strings.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span as YSpan};

use super::node::{Entry, Map, Node, Value};
use crate::diag::{Diagnostic, SourceId, Span};

/// Nesting deeper than this is refused instead of risking the stack.
const MAX_DEPTH: usize = 256;
/// Alias expansion beyond this many nodes is refused (billion laughs).
const MAX_NODES: usize = 1_000_000;

/// Parses one YAML document. An empty document is an empty mapping.
pub fn parse(text: &str, src: SourceId) -> Result<Node, Diagnostic> {
    let mut b = Builder { parser: Parser::new_from_str(text), text, src, anchors: HashMap::new(), nodes: 0 };
    b.document()
}

/// Parses a single scalar the way it would be read as a plain YAML value
/// (used for `-o key=value`).
pub fn plain_scalar(text: &str, span: Span) -> Node {
    Node::new(type_plain(text), span)
}

struct Builder<'a> {
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    text: &'a str,
    src: SourceId,
    anchors: HashMap<usize, Node>,
    nodes: usize,
}

fn span_of(src: SourceId, s: &YSpan) -> Span {
    let width = if s.end.line() == s.start.line() { s.end.col().saturating_sub(s.start.col()) } else { 1 };
    Span::new(src, s.start.line() as u32, s.start.col() as u32 + 1, width.max(1) as u32)
}

impl<'a> Builder<'a> {
    fn next(&mut self) -> Result<(Event<'a>, YSpan), Diagnostic> {
        match self.parser.next_event() {
            Some(Ok(ev)) => Ok(ev),
            Some(Err(e)) => {
                let m = e.marker();
                let (line, col, msg) = refine(self.text, m.line(), m.col() + 1, e.info());
                Err(Diagnostic::error(Span::new(self.src, line as u32, col as u32, 1), msg))
            }
            None => Err(Diagnostic::error(Span::new(self.src, 1, 1, 1), "invalid YAML: unexpected end of input")),
        }
    }

    fn document(&mut self) -> Result<Node, Diagnostic> {
        let root_span = Span::new(self.src, 1, 1, 1);
        loop {
            let (ev, sp) = self.next()?;
            match ev {
                Event::StreamStart => continue,
                Event::StreamEnd => return Ok(Node::empty_map(root_span)),
                Event::DocumentStart(_) => break,
                _ => {
                    return Err(Diagnostic::error(span_of(self.src, &sp), "invalid YAML: expected a document"));
                }
            }
        }
        let (ev, sp) = self.next()?;
        let root = match ev {
            Event::DocumentEnd => Node::empty_map(root_span),
            ev => {
                let n = self.node(ev, sp, 0)?;
                let (end, _) = self.next()?;
                if !matches!(end, Event::DocumentEnd) {
                    return Err(Diagnostic::error(
                        span_of(self.src, &sp),
                        "invalid YAML: expected the end of the document",
                    ));
                }
                n
            }
        };
        let (ev, sp) = self.next()?;
        if let Event::DocumentStart(_) = ev {
            return Err(Diagnostic::error(
                span_of(self.src, &sp),
                "a config file holds one YAML document; found a second one (`---`)",
            ));
        }
        Ok(match root.value {
            Value::Null => Node::empty_map(root.span),
            _ => root,
        })
    }

    fn count(&mut self, span: Span, n: usize) -> Result<(), Diagnostic> {
        self.nodes += n;
        if self.nodes > MAX_NODES {
            return Err(Diagnostic::error(
                span,
                "document too large: more than 1,000,000 values after expanding aliases",
            ));
        }
        Ok(())
    }

    fn node(&mut self, ev: Event<'a>, ysp: YSpan, depth: usize) -> Result<Node, Diagnostic> {
        let span = span_of(self.src, &ysp);
        if depth > MAX_DEPTH {
            return Err(Diagnostic::error(span, "nesting too deep (more than 256 levels)"));
        }
        self.count(span, 1)?;
        let (anchor, node) = match ev {
            Event::Alias(id) => {
                let n = self
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| Diagnostic::error(span, "invalid YAML: alias to an unknown anchor"))?;
                let (size, height) = measure(&n);
                self.count(span, size)?;
                if depth + height - 1 > MAX_DEPTH {
                    return Err(Diagnostic::error(
                        span,
                        format!("nesting too deep through this alias (more than {MAX_DEPTH} levels)"),
                    ));
                }
                return Ok(n);
            }
            Event::Scalar(text, style, anchor, tag) => {
                let value = match tag {
                    Some(tag) if tag.is_yaml_core_schema() => typed_scalar(&text, &tag.suffix, span)?,
                    Some(tag) => {
                        return Err(Diagnostic::error(
                            span,
                            format!("unsupported YAML tag `{}{}`", tag.handle, tag.suffix),
                        ));
                    }
                    None if style == ScalarStyle::Plain => type_plain(&text),
                    None if &*text == "???" => Value::Missing,
                    None => Value::Str(text.into_owned()),
                };
                (anchor, Node::new(value, span))
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (ev, sp) = self.next()?;
                    if let Event::SequenceEnd = ev {
                        break;
                    }
                    items.push(self.node(ev, sp, depth + 1)?);
                }
                (anchor, Node::new(Value::Seq(items), span))
            }
            Event::MappingStart(anchor, _) => {
                let mut map = Map::new();
                loop {
                    let (kev, ksp) = self.next()?;
                    if let Event::MappingEnd = kev {
                        break;
                    }
                    let key_span = span_of(self.src, &ksp);
                    let key_node = self.node(kev, ksp, depth + 1)?;
                    let key = match key_node.value {
                        Value::Str(s) => s,
                        Value::Int(i) => i.to_string(),
                        Value::Bool(b) => b.to_string(),
                        Value::Float(f) => f.to_string(),
                        Value::Null => "null".to_owned(),
                        Value::Missing => "???".to_owned(),
                        _ => {
                            return Err(Diagnostic::error(key_span, "mapping keys must be plain strings"));
                        }
                    };
                    let (vev, vsp) = self.next()?;
                    let value = self.node(vev, vsp, depth + 1)?;
                    if let Some(first) = map.get(&key) {
                        return Err(Diagnostic::error(key_span, format!("duplicate key `{key}`")).with_note(format!(
                            "first defined at line {}, column {}",
                            first.key_span.line, first.key_span.col
                        )));
                    }
                    map.insert(key, Entry { key_span, node: value });
                }
                (anchor, Node::new(Value::Map(map), span))
            }
            _ => return Err(Diagnostic::error(span, "invalid YAML: unexpected event")),
        };
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }
}

/// Points a parser error at its likely cause: the tab used for indentation,
/// or the bracket that is never closed (the parser notices both later).
fn refine(text: &str, line: usize, col: usize, info: &str) -> (usize, usize, String) {
    let lines: Vec<&str> = text.lines().collect();
    if info.contains("tab") {
        for l in line..=line + 1 {
            if let Some(t) = lines.get(l.wrapping_sub(1))
                && let Some(pos) = t.find('\t')
                && t[..pos].trim().is_empty()
            {
                return (
                    l,
                    pos + 1,
                    "invalid YAML: tab used for indentation (YAML indentation must use spaces)".into(),
                );
            }
        }
    }
    if info.contains("flow") {
        // The last bracket opened before the error and never closed.
        let mut open: Vec<(usize, usize, char)> = vec![];
        let mut quote: Option<char> = None;
        'lines: for (i, t) in lines.iter().enumerate().take(line) {
            for (j, c) in t.chars().enumerate() {
                if i + 1 == line && j + 1 >= col {
                    break 'lines;
                }
                match (quote, c) {
                    (Some(q), c) if c == q => quote = None,
                    (Some(_), _) => {}
                    (None, '\'' | '"') => quote = Some(c),
                    (None, '#') => continue 'lines,
                    (None, '[' | '{') => open.push((i + 1, j + 1, c)),
                    (None, ']' | '}') => {
                        open.pop();
                    }
                    _ => {}
                }
            }
        }
        if let Some((l, c, ch)) = open.last() {
            return (*l, *c, format!("invalid YAML: this `{ch}` is never closed ({info})"));
        }
    }
    (line, col, format!("invalid YAML: {info}"))
}

/// The values of a tree (keys included) and its height, without
/// recursion: a tree built from aliases can be deeper than the stack allows.
fn measure(n: &Node) -> (usize, usize) {
    let (mut count, mut height) = (0, 0);
    let mut todo = vec![(n, 1usize)];
    while let Some((n, level)) = todo.pop() {
        count += 1;
        height = height.max(level);
        match &n.value {
            Value::Seq(v) => todo.extend(v.iter().map(|c| (c, level + 1))),
            Value::Map(m) => {
                count += m.len();
                todo.extend(m.values().map(|e| (&e.node, level + 1)));
            }
            _ => {}
        }
    }
    (count, height)
}

fn typed_scalar(text: &str, suffix: &str, span: Span) -> Result<Value, Diagnostic> {
    let bad = || Diagnostic::error(span, format!("`{text}` is not a valid !!{suffix}"));
    Ok(match suffix {
        "str" => Value::Str(text.to_owned()),
        "null" => Value::Null,
        "bool" => match type_plain(text) {
            Value::Bool(b) => Value::Bool(b),
            _ => return Err(bad()),
        },
        "int" => match type_plain(text) {
            Value::Int(i) => Value::Int(i),
            _ => return Err(bad()),
        },
        "float" => match type_plain(text) {
            Value::Int(i) => Value::Float(i as f64),
            Value::Float(f) => Value::Float(f),
            _ => return Err(bad()),
        },
        _ => {
            return Err(Diagnostic::error(span, format!("unsupported YAML tag `!!{suffix}`")));
        }
    })
}

/// YAML 1.2 core schema typing of a plain scalar, plus OmegaConf's `???`.
fn type_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        "???" => return Value::Missing,
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    if let Some(v) = parse_int(text) {
        return v;
    }
    if is_core_float(text)
        && let Ok(f) = text.parse::<f64>()
    {
        return Value::Float(f);
    }
    Value::Str(text.to_owned())
}

fn parse_int(text: &str) -> Option<Value> {
    let radix = |digits: &str, r: u32| i64::from_str_radix(digits, r).ok().map(Value::Int);
    if let Some(h) = text.strip_prefix("0x") {
        return if !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()) { radix(h, 16) } else { None };
    }
    if let Some(o) = text.strip_prefix("0o") {
        return if !o.is_empty() && o.chars().all(|c| c.is_digit(8)) { radix(o, 8) } else { None };
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
        return text.parse::<i64>().ok().map(Value::Int);
    }
    None
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`
fn is_core_float(text: &str) -> bool {
    let s = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((a, b)) => {
            a.chars().all(|c| c.is_ascii_digit())
                && b.chars().all(|c| c.is_ascii_digit())
                && (!a.is_empty() || !b.is_empty())
        }
        None => !mantissa.is_empty() && mantissa.chars().all(|c| c.is_ascii_digit()),
    };
    let exp_ok = match exp {
        None => true,
        Some(e) => {
            let d = e.strip_prefix(['-', '+']).unwrap_or(e);
            !d.is_empty() && d.chars().all(|c| c.is_ascii_digit())
        }
    };
    mantissa_ok && exp_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Value {
        type_plain(text)
    }

    #[test]
    fn core_schema_typing() {
        assert_eq!(v("10:00:00"), Value::Str("10:00:00".into()));
        assert_eq!(v("on"), Value::Str("on".into()));
        assert_eq!(v("1e-5"), Value::Float(1e-5));
        assert_eq!(v("0.6"), Value::Float(0.6));
        assert_eq!(v("8"), Value::Int(8));
        assert_eq!(v("-3"), Value::Int(-3));
        assert_eq!(v("0x1F"), Value::Int(31));
        assert_eq!(v("???"), Value::Missing);
        assert_eq!(v("~"), Value::Null);
        assert_eq!(v("gpu:8"), Value::Str("gpu:8".into()));
        // Beyond i64: read as the float the core schema also allows.
        assert_eq!(v("99999999999999999999"), Value::Float(1e20));
        assert_eq!(v("."), Value::Str(".".into()));
    }

    #[test]
    fn spans_point_at_keys_and_values() {
        let n = parse("a:\n  bb: 12\n  c: [x, 'y']\n", SourceId(0)).unwrap();
        let a = &n.as_map().unwrap()["a"];
        assert_eq!((a.key_span.line, a.key_span.col), (1, 1));
        let bb = &a.node.as_map().unwrap()["bb"];
        assert_eq!((bb.key_span.line, bb.key_span.col, bb.key_span.width), (2, 3, 2));
        assert_eq!((bb.node.span.line, bb.node.span.col), (2, 7));
        assert_eq!(bb.node.value, Value::Int(12));
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let e = parse("a: 1\nb: 2\na: 3\n", SourceId(0)).unwrap_err();
        assert_eq!(e.message, "duplicate key `a`");
        assert_eq!(e.span.map(|s| (s.line, s.col)), Some((3, 1)));
    }

    #[test]
    fn aliases_expand() {
        let n = parse("a: &x {k: 1}\nb: *x\n", SourceId(0)).unwrap();
        assert_eq!(n.as_map().unwrap()["b"].node.as_map().unwrap()["k"].node.value, Value::Int(1));
    }
}
