//! How data travels inside the programs evalctl sends to a login node.
//!
//! Three carriers, each safe for any bytes:
//! - [`Snippet`]: shell text made only by the `shell!` macro (through
//!   [`snippet!`](crate::remote::encoding::snippet)), so every value in it is
//!   a quoted word; snippets nest into larger snippets and programs;
//! - [`raw_var`]: sets a shell variable to exact text with one quoted word
//!   (file contents: scripts, secrets, the state);
//! - base64 ([`base64_encode`], [`base64_decode`]): small payloads sent in a
//!   word (the lock file) and binary replies (the state file, the lock holder).

use crate::jobid::JobId;
use std::fmt;

use crate::shell::{Code, Shell};

/// Shell text built by `shell!` from evalctl's own code and quoted values.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Snippet(String);

impl Snippet {
    /// Wraps the output of `shell!`. Only [`snippet!`] calls this.
    #[doc(hidden)]
    pub fn from_shell(text: String) -> Snippet {
        Snippet(text)
    }

    /// Appends another snippet.
    pub fn push(&mut self, s: Snippet) {
        self.0.push_str(&s.0);
    }

    /// Appends a piece of evalctl's own shell text.
    pub fn code(&mut self, c: Code) {
        self.0.push_str(c.0);
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Shell for Snippet {
    fn write_shell(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `shell!` whose result can be spliced again: a [`Snippet`].
macro_rules! snippet {
    ($($t:tt)*) => {
        $crate::remote::encoding::Snippet::from_shell($crate::shell!($($t)*))
    };
}
pub(crate) use snippet;

/// Job ids separated by `sep` (`12 13`, `12,13`).
pub fn ids(list: &[JobId], sep: Code) -> Snippet {
    let mut s = Snippet::default();
    for (i, id) in list.iter().enumerate() {
        if i > 0 {
            s.code(sep);
        }
        s.push(snippet!("{}", id));
    }
    s
}

/// Lists of more job ids than this are cancelled by several `scancel` at
/// once ([`scancel`]).
pub const SCANCEL_BATCH: usize = 64;

/// `scancel` of `list` (`quiet`: its errors to `/dev/null`): one
/// call for a short list; for a longer one, four calls at once, each over
/// a quarter of the list in its order, waited for. slurmctld answers one
/// cancellation at a time per call (~3 ms each), so 2,000 jobs take seconds
/// on one call.
pub fn scancel(list: &[JobId], quiet: bool) -> Snippet {
    let redirect = Code(if quiet { " 2>/dev/null" } else { "" });
    if list.len() <= SCANCEL_BATCH {
        return snippet!("scancel {}{}\n", ids(list, Code(" ")), redirect);
    }
    let mut s = Snippet::default();
    let chunks: Vec<&[JobId]> = list.chunks(list.len().div_ceil(4)).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        s.push(snippet!("scancel {}{} &\nevalctl_sc{}=$!\n", ids(chunk, Code(" ")), redirect, i));
    }
    s.code(Code("wait"));
    for i in 0..chunks.len() {
        s.push(snippet!(" \"$evalctl_sc{}\"", i));
    }
    s.code(Code("\n"));
    s
}

/// Sets shell variable `name` to exactly `content`: a single-quoted word
/// (each `'` spelled `'\\''`), which bash takes from the program text in
/// memory. A here-document would be read back by `read` one byte per
/// system call, which costs seconds for the megabytes of scripts and state
/// an apply of a few hundred jobs carries. Text with a NUL, which no shell
/// variable can hold, goes as base64.
pub fn raw_var(name: Code, content: &str) -> Snippet {
    if content.contains('\0') {
        return snippet!("{}=$({}printf x)\n{}=${{{}%x}}\n", name, heredoc(content.as_bytes()), name, name);
    }
    let quotes = content.bytes().filter(|&b| b == b'\'').count();
    let mut s = String::with_capacity(name.0.len() + content.len() + 3 * quotes + 32);
    // The word is data: `$` and backquotes in it are meant literally.
    s.push_str("# shellcheck disable=SC2016,SC1003\n");
    s.push_str(name.0);
    s.push_str("='");
    for (i, piece) in content.split('\'').enumerate() {
        if i > 0 {
            s.push_str("'\\''");
        }
        s.push_str(piece);
    }
    s.push_str("'\n");
    Snippet(s)
}

/// A command that prints `data`: `base64 -d` of a here-document.
pub fn heredoc(data: &[u8]) -> Snippet {
    let b64 = base64_encode(data);
    let mut s = String::with_capacity(b64.len() + b64.len() / 76 + 32);
    s.push_str("base64 -d <<'EVALCTL_B64'\n");
    for chunk in b64.as_bytes().chunks(76) {
        s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        s.push('\n');
    }
    s.push_str("EVALCTL_B64\n");
    Snippet(s)
}

/// Standard alphabet; decoding takes input with or without padding.
const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// Decodes standard base64 (padding optional, whitespace ignored).
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let compact: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    BASE64.decode(compact).ok()
}

/// Base64 (standard alphabet, padded) for payloads sent to the cluster.
pub fn base64_encode(data: &[u8]) -> String {
    use base64::Engine as _;
    BASE64.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip() {
        for s in ["", "a", "ab", "abc", "abcd", "hello, world\n\0\u{1F4A5}"] {
            assert_eq!(base64_decode(&base64_encode(s.as_bytes())).unwrap(), s.as_bytes());
        }
        assert_eq!(base64_encode(b"abcd"), "YWJjZA==");
        // As `base64` prints it on the cluster: wrapped lines; or unpadded.
        assert_eq!(base64_decode("YWJj\nZA==\n").unwrap(), b"abcd");
        assert_eq!(base64_decode("YWJjZA").unwrap(), b"abcd");
        assert_eq!(base64_decode("not base64!"), None);
    }

    #[test]
    fn raw_var_reads_back_exactly() {
        for content in ["", "a b\n", "it's \"$(x)\"\n\n", "EVALCTL_B64\n", "tail\\", "''", "'\n'", "ünï\tcode !$`"] {
            let mut prog = raw_var(Code("V"), content);
            prog.code(Code("printf '%s' \"$V\"\n"));
            let out = std::process::Command::new("bash").arg("-c").arg(prog.as_str()).output().unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), content);
        }
    }
}
