//! Shell text that cannot be spelled wrong: the one way evalctl splices a
//! value into bash, whether a job script or a program for the login node.
//!
//! A value reaches shell text only through the [`shell!`] macro, and the
//! macro accepts only what implements [`Shell`]:
//! - [`ShellWord`]: any text, written as a single-quoted word that bash reads
//!   back verbatim whatever the bytes (quotes, `$`, backticks, newlines);
//!   [`Word`] is the same for borrowed text (no copy is made to quote it);
//! - [`Words`]: a list of such words separated by spaces;
//! - [`VarName`]: an identifier, checked when it is made;
//! - [`CommentText`]: text for a `#` comment, which cannot end the comment;
//! - integers, which cannot carry shell syntax;
//! - [`Code`]: a `&'static str`, i.e. shell text written in evalctl's own
//!   source, never user data.
//!
//! A `String` or `&str` does not implement [`Shell`], so forgetting to quote
//! a value is a compile error, not a code-execution bug. The macro's format
//! string allows only `{}` placeholders (checked at compile time): an inline
//! `{name}` capture would bypass the check and is refused. [`shell_push!`]
//! is the same, appending to a `String` instead of making one.

use std::fmt;

/// A bash word that reads back as exactly `s`: plain when every character is
/// safe unquoted, single-quoted otherwise.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    let _ = write_quoted(&mut out, s);
    out
}

/// Whether `s` is written as it is: not empty, and every byte safe unquoted.
fn plain(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"@%+=:./_-".contains(&b))
}

/// Writes `s` as [`quote`] spells it, without building it first.
pub fn write_quoted(w: &mut impl fmt::Write, s: &str) -> fmt::Result {
    if plain(s) {
        return w.write_str(s);
    }
    w.write_char('\'')?;
    let mut pieces = s.split('\'');
    if let Some(first) = pieces.next() {
        w.write_str(first)?;
    }
    for piece in pieces {
        w.write_str(r"'\''")?;
        w.write_str(piece)?;
    }
    w.write_char('\'')
}

/// Text that becomes one shell word when spliced: its `Display` quotes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShellWord(String);

impl ShellWord {
    pub fn new(text: impl Into<String>) -> ShellWord {
        ShellWord(text.into())
    }

    /// The text itself, unquoted.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ShellWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_quoted(f, &self.0)
    }
}

/// A borrowed [`ShellWord`]: any text, written quoted the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Word<'a>(pub &'a str);

impl Shell for Word<'_> {
    fn write_shell(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_quoted(f, self.0)
    }
}

impl From<&str> for ShellWord {
    fn from(s: &str) -> ShellWord {
        ShellWord(s.to_owned())
    }
}

impl From<String> for ShellWord {
    fn from(s: String) -> ShellWord {
        ShellWord(s)
    }
}

impl From<&String> for ShellWord {
    fn from(s: &String) -> ShellWord {
        ShellWord(s.clone())
    }
}

/// A shell variable (or function-name) identifier, `[A-Za-z_][A-Za-z0-9_]*`,
/// spliced as it is: the check at construction is what makes that safe.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VarName(String);

impl VarName {
    /// The name, or `None` when it is not an identifier.
    pub fn new(name: &str) -> Option<VarName> {
        let mut c = name.chars();
        let ok = matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
            && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
        ok.then(|| VarName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Shell for VarName {
    fn write_shell(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Text inside a `#` comment: written as it is, except that a control
/// character (a newline would end the comment) is shown as `?`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommentText<'a>(pub &'a str);

impl Shell for CommentText<'_> {
    fn write_shell(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            fmt::Write::write_char(f, if c.is_control() { '?' } else { c })?;
        }
        Ok(())
    }
}

/// Several shell words, written separated by single spaces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Words(pub Vec<ShellWord>);

impl<T: Into<ShellWord>> FromIterator<T> for Words {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Words {
        Words(iter.into_iter().map(Into::into).collect())
    }
}

/// Shell text written in evalctl's own source (a string literal), spliced
/// as it is. Never built from user data: only `&'static str` converts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Code(pub &'static str);

/// What [`shell!`] may splice into shell text.
pub trait Shell {
    fn write_shell(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
}

impl Shell for ShellWord {
    fn write_shell(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Shell for Words {
    fn write_shell(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, w) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            fmt::Display::fmt(w, f)?;
        }
        Ok(())
    }
}

impl Shell for Code {
    fn write_shell(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

macro_rules! shell_int {
    ($($t:ty),*) => {$(
        impl Shell for $t {
            fn write_shell(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }
    )*};
}
shell_int!(u8, u16, u32, u64, usize, i32, i64);

impl<T: Shell + ?Sized> Shell for &T {
    fn write_shell(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).write_shell(f)
    }
}

/// Adapter the macro wraps every argument in: `Display` through [`Shell`].
#[doc(hidden)]
pub struct Spliced<'a, T: Shell + ?Sized>(pub &'a T);

impl<T: Shell + ?Sized> fmt::Display for Spliced<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.write_shell(f)
    }
}

/// True when every `{` of a format string is `{{` or `{}` (no inline
/// captures, no named or formatted placeholders).
#[doc(hidden)]
pub const fn only_positional(fmt: &str) -> bool {
    let b = fmt.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'{' {
            if i + 1 < b.len() && (b[i + 1] == b'{' || b[i + 1] == b'}') {
                i += 2;
                continue;
            }
            return false;
        }
        i += 1;
    }
    true
}

/// `format!` for shell text: every argument must implement [`Shell`], and
/// the format string may use only `{}` placeholders.
#[macro_export]
macro_rules! shell {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {{
        const _: () = assert!($crate::shell::only_positional($fmt), "shell!: only positional placeholders are allowed");
        format!($fmt $(, $crate::shell::Spliced(&$arg))*)
    }};
}

/// [`shell!`] appending to the `String` `$buf` instead of making one.
#[macro_export]
macro_rules! shell_push {
    ($buf:expr, $fmt:literal $(, $arg:expr)* $(,)?) => {{
        const _: () = assert!($crate::shell::only_positional($fmt), "shell_push!: only positional placeholders are allowed");
        use ::std::fmt::Write as _;
        let _ = $buf.write_fmt(format_args!($fmt $(, $crate::shell::Spliced(&$arg))*));
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_quote_themselves() {
        assert_eq!(quote("abc"), "abc");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("it's $(x)"), r"'it'\''s $(x)'");
        let w = ShellWord::from("a b");
        let n = 7u64;
        assert_eq!(shell!("cd {} && echo {} {}", w, n, Code("\"$X\"")), "cd 'a b' && echo 7 \"$X\"");
        let ws: Words = ["x", "y z"].into_iter().collect();
        assert_eq!(shell!("scancel {}", ws), "scancel x 'y z'");
        assert_eq!(shell!("{{ a; }} {}", w), "{ a; } 'a b'");
        assert_eq!(shell!("{} {} {}", Word("x"), Word("'"), Word("a'b'")), r"x ''\''' 'a'\''b'\'''");
        let mut buf = String::from("echo");
        shell_push!(buf, " {} {}", Word("a b"), 3u32);
        assert_eq!(buf, "echo 'a b' 3");
    }

    #[test]
    fn variable_names_are_checked_once() {
        assert_eq!(VarName::new("HF_TOKEN").map(|n| shell!("export {}=1", n)), Some("export HF_TOKEN=1".into()));
        for bad in ["", "1X", "A-B", "A B", "A$(x)", "A\nB"] {
            assert_eq!(VarName::new(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn comments_stay_comments() {
        assert_eq!(shell!("# job `{}`\n", CommentText("a\nrm -rf /")), "# job `a?rm -rf /`\n");
    }

    #[test]
    fn placeholders_are_positional_only() {
        assert!(only_positional("a {} {{b}} {}"));
        assert!(!only_positional("a {name}"));
        assert!(!only_positional("a {:?}"));
        assert!(!only_positional("a {0}"));
    }
}
