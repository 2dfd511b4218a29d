//! Script diffs grouped across units, with bounded memory.
//!
//! A hunk that is the same in many scripts (up to the unit's name and line
//! numbers) is shown once, with the scripts that share it. Grouping takes
//! two passes over the changes so that a plan of thousands of scripts never
//! holds all its hunks at once: [`Grouping::new`] keeps a digest per
//! distinct hunk and who shares it; [`Grouping::each`] computes each
//! script's diff again and hands over each group where it first appears,
//! to be written out (or cut short) at once.

use std::collections::HashMap;
use std::ops::ControlFlow;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use similar::TextDiff;

use super::Change;
use crate::render::Elided;

/// One hunk of the scripts' diffs and every script it appears in: a change
/// made across many units is shown once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffGroup {
    /// `unit/script` of every script with this hunk, in plan order.
    pub scripts: Vec<String>,
    /// The distinct units among them.
    pub units: Vec<String>,
    /// The hunk with its `---`/`+++` and `@@` lines (those of its first
    /// script). Shared by several units, each unit's own name is written
    /// `{unit}`.
    pub hunk: String,
}

/// A group as [`Grouping::each`] hands it over: who shares the hunk, and
/// its text.
#[derive(Clone, Copy, Debug)]
pub struct Group<'g> {
    pub scripts: &'g [String],
    pub units: &'g [String],
    pub hunk: &'g str,
}

impl Group<'_> {
    pub fn to_owned(self) -> DiffGroup {
        DiffGroup { scripts: self.scripts.to_vec(), units: self.units.to_vec(), hunk: self.hunk.to_owned() }
    }
}

/// Placeholder of the unit's name in a hunk shared by several units.
pub const UNIT_PLACEHOLDER: &str = "{unit}";

/// Fewer changes than this are digested on one thread.
const CHANGES_PER_THREAD: usize = 512;

/// A hunk's unit, its `unit/script` and the digest of its text up to the
/// unit's name.
type HunkDigest<'c> = (&'c String, String, [u8; 32]);

/// The digest of every hunk of `changes`, in order.
fn digests<'c>(changes: &[&'c Change]) -> Vec<HunkDigest<'c>> {
    let mut out = vec![];
    each_hunk(changes, |c, name, _, hunk| {
        let mut h = Sha256::new();
        generic_parts(name, &c.unit, |p| h.update(p.as_bytes()));
        h.update(b"\n");
        hunk.digest_into(&c.unit, &mut h);
        out.push((&c.unit, format!("{}/{name}", c.unit), h.finalize().into()));
        ControlFlow::Continue(())
    });
    out
}

/// Who shares one distinct hunk.
#[derive(Default)]
struct Members {
    scripts: Vec<String>,
    units: Vec<String>,
}

/// The hunks of the changed units' scripts, grouped (see the module).
pub struct Grouping<'c> {
    changes: Vec<&'c Change>,
    groups: Vec<Members>,
    /// The group of each hunk, in the order [`each_hunk`] visits them.
    sequence: Vec<u32>,
}

impl<'c> Grouping<'c> {
    /// First pass: which hunks are the same.
    pub fn new(changes: &[&'c Change]) -> Grouping<'c> {
        // The digests are independent: taken on several threads for many
        // changes, then grouped in order.
        let threads = crate::parallel::threads_for(changes.len(), CHANGES_PER_THREAD);
        let digests = crate::parallel::map_slices(changes, threads, digests);
        let mut groups: Vec<Members> = vec![];
        let mut index: HashMap<[u8; 32], u32> = HashMap::new();
        let mut sequence = vec![];
        for (unit, script, digest) in digests.into_iter().flatten() {
            let id = *index.entry(digest).or_insert_with(|| {
                groups.push(Members::default());
                (groups.len() - 1) as u32
            });
            let g = &mut groups[id as usize];
            g.scripts.push(script);
            if !g.units.contains(unit) {
                g.units.push(unit.clone());
            }
            sequence.push(id);
        }
        Grouping { changes: changes.to_vec(), groups, sequence }
    }

    /// Number of distinct hunks.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Second pass: each group once, in order of first appearance, until
    /// `f` breaks.
    pub fn each(&self, mut f: impl FnMut(Group<'_>) -> ControlFlow<()>) {
        let mut shown = vec![false; self.groups.len()];
        let mut at = 0;
        each_hunk(&self.changes, |c, _, (a, b), hunk| {
            let id = self.sequence[at] as usize;
            at += 1;
            if std::mem::replace(&mut shown[id], true) {
                return ControlFlow::Continue(());
            }
            let g = &self.groups[id];
            let mut full = String::with_capacity(a.len() + b.len() + 9 + hunk.len());
            full.push_str("--- ");
            full.push_str(a);
            full.push_str("\n+++ ");
            full.push_str(b);
            full.push('\n');
            hunk.write_into(&mut full);
            if g.units.len() > 1 {
                full = generic(&full, &c.unit);
            }
            f(Group { scripts: &g.scripts, units: &g.units, hunk: &full })
        });
    }

    /// Every group, owned (for documents read back, and tests).
    pub fn collect(&self) -> Vec<DiffGroup> {
        let mut out = vec![];
        self.each(|g| {
            out.push(g.to_owned());
            ControlFlow::Continue(())
        });
        out
    }
}

/// A hunk as [`each_hunk`] finds it: a whole script added (`+`) or
/// removed (`-`), kept as the script (in the pieces it is held in, each but
/// the last ending a line) until it is written (a large plan is mostly new
/// scripts: they are grouped without being diffed or written), or one hunk
/// of a diff, from its `@@` line.
enum Hunk<'t> {
    Whole { sign: char, text: [&'t str; 2] },
    Diffed(String),
}

impl Hunk<'_> {
    /// Length of the hunk's text, about (to size a buffer).
    fn len(&self) -> usize {
        match self {
            Hunk::Whole { text, .. } => text[0].len() + text[1].len() + text[0].len() / 16 + 32,
            Hunk::Diffed(text) => text.len(),
        }
    }

    /// Appends the hunk's text, from its `@@` line, to `out`.
    fn write_into(&self, out: &mut String) {
        match self {
            Hunk::Whole { sign, text } => whole_hunk_into(text, *sign, out),
            Hunk::Diffed(text) => out.push_str(text),
        }
    }

    /// Feeds what makes the hunk the same as another, up to the name
    /// `unit` (its lines, not where they are), to `h`.
    fn digest_into(&self, unit: &str, h: &mut Sha256) {
        match self {
            Hunk::Whole { sign, text } => {
                h.update([b'w', *sign as u8]);
                // Pieces split after a newline, which no unit name holds
                // (see `each_hunk`): the same parts as the text joined.
                for piece in text {
                    generic_parts(piece, unit, |p| h.update(p.as_bytes()));
                }
            }
            Hunk::Diffed(text) => {
                h.update(b"d");
                let body = text.split_once('\n').map_or("", |(_, b)| b);
                generic_parts(body, unit, |p| h.update(p.as_bytes()));
            }
        }
    }
}

/// Calls `f` with every hunk (context 3) of every changed script of
/// `changes`, in plan order: the change, the script's name, its diff's
/// `---`/`+++` paths (`/dev/null` for a script added or removed) and the
/// hunk.
fn each_hunk<'c>(
    changes: &[&'c Change],
    mut f: impl FnMut(&'c Change, &str, (&str, &str), Hunk<'_>) -> ControlFlow<()>,
) {
    for c in changes {
        let names: std::collections::BTreeSet<&String> = c.before.keys().chain(c.after.keys()).collect();
        for name in names {
            let (old, new) = (c.before.get(name), c.after.get(name));
            let folder = c.pack.as_deref().unwrap_or(&c.unit);
            let a = if old.is_some() { format!("a/{folder}/{name}") } else { "/dev/null".into() };
            let b = if new.is_some() { format!("b/{folder}/{name}") } else { "/dev/null".into() };
            let empty = |t: Option<&Elided>| t.is_none_or(Elided::is_empty);
            // A script added or removed, kept in its pieces when they split
            // after a newline and the unit's name holds none (so that
            // `generic_parts` finds the same names piece by piece).
            let whole = match (empty(old), empty(new)) {
                (true, false) => new.map(|t| ('+', t)),
                (false, true) => old.map(|t| ('-', t)),
                _ => None,
            };
            if let Some((sign, text)) = whole {
                let pieces = text.pieces();
                let split_well = pieces[1].is_empty() || (pieces[0].ends_with('\n') && !c.unit.contains('\n'));
                if split_well
                    && pieces.iter().all(|p| !p.contains('\r'))
                    && pieces.iter().rev().find(|p| !p.is_empty()).is_some_and(|p| p.ends_with('\n'))
                {
                    if f(c, name, (&a, &b), Hunk::Whole { sign, text: pieces }).is_break() {
                        return;
                    }
                    continue;
                }
            }
            let (old, new) = (old.map(Elided::text), new.map(Elided::text));
            let (old, new) = (old.as_deref().unwrap_or_default(), new.as_deref().unwrap_or_default());
            if old == new {
                continue;
            }
            let diff = TextDiff::from_lines(old, new);
            for hunk in diff.unified_diff().context_radius(3).iter_hunks() {
                if f(c, name, (&a, &b), Hunk::Diffed(hunk.to_string())).is_break() {
                    return;
                }
            }
        }
    }
}

/// Whether a script added or removed may be written as one hunk without
/// diffing ([`whole_hunk_into`]): not text the diff might spell differently
/// (no final newline, carriage returns).
#[cfg(test)]
fn wholly(text: &str) -> bool {
    text.ends_with('\n') && !text.contains('\r')
}

/// Appends the one hunk of a script added (`+`) or removed (`-`), written
/// as the diff would write it (for text `wholly` accepts, in pieces each
/// but the last ending a line), to `out`.
fn whole_hunk_into(text: &[&str; 2], sign: char, out: &mut String) {
    let n: usize = text.iter().map(|t| t.bytes().filter(|b| *b == b'\n').count()).sum();
    let range = if n == 1 { "1".to_owned() } else { format!("1,{n}") };
    if sign == '+' {
        out.push_str("@@ -0,0 +");
        out.push_str(&range);
        out.push_str(" @@\n");
    } else {
        out.push_str("@@ -");
        out.push_str(&range);
        out.push_str(" +0,0 @@\n");
    }
    out.reserve(text[0].len() + text[1].len() + n);
    for line in text.iter().flat_map(|t| t.split_inclusive('\n')) {
        out.push(sign);
        out.push_str(line);
    }
}

/// `text` with `unit` replaced by [`UNIT_PLACEHOLDER`] where it stands as a
/// name of its own (not inside a longer name: `t1` in `/t1/`, not in `t10`).
fn generic(text: &str, unit: &str) -> String {
    let mut out = String::with_capacity(text.len());
    generic_parts(text, unit, |p| out.push_str(p));
    out
}

/// [`generic`] as the pieces it is made of, each handed to `f` (to hash
/// it without building it).
fn generic_parts<'t>(text: &'t str, unit: &str, mut f: impl FnMut(&'t str)) {
    if unit.is_empty() {
        return f(text);
    }
    let word = |c: char| c.is_alphanumeric() || "_-.".contains(c);
    let mut rest = text;
    while let Some(i) = rest.find(unit) {
        let before = rest[..i].chars().next_back();
        let after = rest[i + unit.len()..].chars().next();
        let (b_ok, a_ok) = (before.is_none_or(|c| !word(c)), after.is_none_or(|c| !word(c)));
        // A name that ends in `.` or `-` (`t1.sbatch`) still counts as the unit's own.
        let a_ok = a_ok || (after == Some('.') && rest[i + unit.len() + 1..].starts_with(|c: char| c.is_alphabetic()));
        f(&rest[..i]);
        f(if b_ok && a_ok { UNIT_PLACEHOLDER } else { &rest[i..i + unit.len()] });
        rest = &rest[i + unit.len()..];
    }
    f(rest);
}

/// A list of names, the first `max` of them and how many more.
pub fn some(names: &[String], max: usize) -> String {
    let shown: Vec<&str> = names.iter().take(max).map(String::as_str).collect();
    let more = names.len().saturating_sub(max);
    if more > 0 { format!("{}, … ({more} more)", shown.join(", ")) } else { shown.join(", ") }
}

/// Writes the grouped diff as text: each group's hunk once, a comment line
/// above the ones shared by several scripts; the next hunk of the same
/// scripts continues under the same header. Stops when `out` breaks.
pub fn write_grouped(grouping: &Grouping<'_>, mut out: impl FnMut(&str) -> ControlFlow<()>) {
    let mut previous: Option<Vec<String>> = None;
    grouping.each(|g| {
        if previous.as_deref() == Some(g.scripts) {
            return out(g.hunk.splitn(3, '\n').nth(2).unwrap_or_default());
        }
        if g.scripts.len() > 1 {
            let line = format!(
                "# the same change in {} scripts of {} units: {}\n",
                g.scripts.len(),
                g.units.len(),
                some(g.units, 10)
            );
            out(&line)?;
        }
        previous = Some(g.scripts.to_vec());
        out(g.hunk)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hunks of one script, as the diff writes them.
    fn diffed(old: &str, new: &str) -> Vec<String> {
        TextDiff::from_lines(old, new).unified_diff().context_radius(3).iter_hunks().map(|h| h.to_string()).collect()
    }

    #[test]
    fn whole_hunks_are_what_the_diff_writes() {
        for text in ["a\n", "a\nb\n", "#!/bin/bash\n\nset -u\n\n\necho x\n", "\n", "\n\n"] {
            assert!(wholly(text), "{text:?}");
            let whole = |sign| {
                let mut out = String::new();
                whole_hunk_into(&[text, ""], sign, &mut out);
                out
            };
            assert_eq!(vec![whole('+')], diffed("", text), "{text:?} added");
            assert_eq!(vec![whole('-')], diffed(text, ""), "{text:?} removed");
            // In two pieces, split after a newline: the same hunk.
            if let Some(i) = text[..text.len() - 1].find('\n') {
                let mut out = String::new();
                whole_hunk_into(&[&text[..=i], &text[i + 1..]], '+', &mut out);
                assert_eq!(out, whole('+'), "{text:?} in pieces");
            }
        }
        for text in ["no newline", "a\r\nb\r\n", "a\nb"] {
            assert!(!wholly(text), "{text:?}");
        }
    }
}
