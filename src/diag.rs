//! Diagnostics: every user-facing error or warning carries the place in a
//! source (a config file, a built-in group, a `-o` override) it is about.
//!
//! Sources are registered in a [`Sources`] table so that spans stay small
//! (`Copy`) and rendering can show a caret snippet under the offending text.
//! The first line of every rendered diagnostic is `FILE:LINE:COL: level: msg`,
//! the format editors and CI log parsers understand.

use std::fmt::Write as _;
use std::sync::{Arc, RwLock};

/// Identifies one registered source text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SourceId(pub u32);

/// A place in a source: 1-based line and column (in characters), plus the
/// width of the highlighted text on that line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub src: SourceId,
    pub line: u32,
    pub col: u32,
    pub width: u32,
}

impl Span {
    pub fn new(src: SourceId, line: u32, col: u32, width: u32) -> Span {
        Span { src, line, col, width }
    }
}

#[derive(Debug)]
struct Source {
    name: String,
    text: String,
    /// Byte ranges of the lines, computed the first time a message quotes
    /// one (a file with many errors is scanned once, not once per error).
    lines: std::sync::OnceLock<Vec<(usize, usize)>>,
}

impl Source {
    /// Lines as YAML counts them: `\r\n`, `\r` and `\n` each end one.
    fn lines(&self) -> &[(usize, usize)] {
        self.lines.get_or_init(|| {
            let b = self.text.as_bytes();
            let (mut out, mut start, mut i) = (vec![], 0, 0);
            while i < b.len() {
                match b[i] {
                    b'\n' => {
                        out.push((start, i));
                        i += 1;
                        start = i;
                    }
                    b'\r' => {
                        out.push((start, i));
                        i += if b.get(i + 1) == Some(&b'\n') { 2 } else { 1 };
                        start = i;
                    }
                    _ => i += 1,
                }
            }
            out.push((start, b.len()));
            out
        })
    }
}

/// The table of every text a diagnostic may point into.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    inner: Arc<RwLock<Vec<Arc<Source>>>>,
}

impl Sources {
    pub fn new() -> Sources {
        Sources::default()
    }

    /// Registers a source and returns its id. `name` is what diagnostics
    /// print before `:LINE:COL`.
    pub fn add(&self, name: impl Into<String>, text: impl Into<String>) -> SourceId {
        let mut v = self.inner.write().unwrap_or_else(|e| e.into_inner());
        v.push(Arc::new(Source { name: name.into(), text: text.into(), lines: Default::default() }));
        SourceId((v.len() - 1) as u32)
    }

    /// How many sources are registered: a mark for [`Sources::names_from`].
    pub fn len(&self) -> usize {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no source is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The names of the sources registered since `mark` (a [`Sources::len`]):
    /// what one config's load read (the file, its group files).
    pub fn names_from(&self, mark: usize) -> Vec<String> {
        let v = self.inner.read().unwrap_or_else(|e| e.into_inner());
        v.iter().skip(mark).map(|s| s.name.clone()).collect()
    }

    fn get(&self, id: SourceId) -> Option<Arc<Source>> {
        let v = self.inner.read().unwrap_or_else(|e| e.into_inner());
        v.get(id.0 as usize).cloned()
    }

    /// Display name of a source.
    pub fn name(&self, id: SourceId) -> String {
        self.get(id).map(|s| s.name.clone()).unwrap_or_else(|| "<unknown>".into())
    }

    /// `NAME:LINE:COL` for a span.
    pub fn location(&self, span: Span) -> String {
        format!("{}:{}:{}", self.name(span.src), span.line, span.col)
    }

    fn line_text(&self, span: Span) -> Option<String> {
        let src = self.get(span.src)?;
        let &(start, end) = src.lines().get(span.line.checked_sub(1)? as usize)?;
        Some(src.text[start..end].to_owned())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warning,
}

/// One message about one place, with optional notes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub level: Level,
    pub span: Option<Span>,
    pub message: String,
    pub notes: Vec<String>,
}

impl Diagnostic {
    pub fn error(span: impl Into<Option<Span>>, message: impl Into<String>) -> Diagnostic {
        Diagnostic { level: Level::Error, span: span.into(), message: message.into(), notes: vec![] }
    }

    pub fn warning(span: impl Into<Option<Span>>, message: impl Into<String>) -> Diagnostic {
        Diagnostic { level: Level::Warning, span: span.into(), message: message.into(), notes: vec![] }
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.level == Level::Error
    }

    /// First line only: `FILE:LINE:COL: error: message`.
    pub fn headline(&self, sources: &Sources) -> String {
        let level = match self.level {
            Level::Error => "error",
            Level::Warning => "warning",
        };
        match self.span {
            Some(span) => format!("{}: {level}: {}", sources.location(span), self.message),
            None => format!("evalctl: {level}: {}", self.message),
        }
    }

    /// Headline, caret snippet and notes.
    pub fn render(&self, sources: &Sources) -> String {
        let mut out = self.headline(sources);
        out.push('\n');
        if let Some(span) = self.span
            && let Some(line) = sources.line_text(span)
        {
            let gutter = span.line.to_string();
            let pad = " ".repeat(gutter.len());
            let _ = writeln!(out, "{pad} |");
            let _ = writeln!(out, "{gutter} | {}", line.replace('\t', " "));
            let lead = " ".repeat(span.col.saturating_sub(1) as usize);
            let width = span.width.max(1) as usize;
            let _ = writeln!(out, "{pad} | {lead}{}", "^".repeat(width));
        }
        for note in &self.notes {
            let _ = writeln!(out, "  = note: {note}");
        }
        out
    }
}

/// Renders all diagnostics, errors and warnings in the order given.
pub fn render_all(diags: &[Diagnostic], sources: &Sources) -> String {
    diags.iter().map(|d| d.render(sources)).collect::<Vec<_>>().join("\n")
}
