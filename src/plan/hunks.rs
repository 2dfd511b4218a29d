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
        let mut groups: Vec<Members> = vec![];
        let mut index: HashMap<[u8; 32], u32> = HashMap::new();
        let mut sequence = vec![];
        each_hunk(changes, |c, name, _, hunk| {
            let mut h = Sha256::new();
            generic_parts(name, &c.unit, |p| h.update(p.as_bytes()));
            h.update(b"\n");
            hunk.digest_into(&c.unit, &mut h);
            let id = *index.entry(h.finalize().into()).or_insert_with(|| {
                groups.push(Members::default());
                (groups.len() - 1) as u32
            });
            let g = &mut groups[id as usize];
            g.scripts.push(format!("{}/{name}", c.unit));
            if !g.units.contains(&c.unit) {
                g.units.push(c.unit.clone());
            }
            sequence.push(id);
            ControlFlow::Continue(())
        });
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
            let mut full = format!("--- {a}\n+++ {b}\n{}", hunk.text());
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
/// removed (`-`), kept as the script until it is written (a large plan is
/// mostly new scripts: they are grouped without being diffed or written),
/// or one hunk of a diff, from its `@@` line.
enum Hunk<'t> {
    Whole { sign: char, text: &'t str },
    Diffed(String),
}

impl Hunk<'_> {
    /// The hunk's text, from its `@@` line.
    fn text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Hunk::Whole { sign, text } => whole_hunk(text, *sign).into(),
            Hunk::Diffed(text) => text.as_str().into(),
        }
    }

    /// Feeds what makes the hunk the same as another, up to the name
    /// `unit` (its lines, not where they are), to `h`.
    fn digest_into(&self, unit: &str, h: &mut Sha256) {
        match self {
            Hunk::Whole { sign, text } => {
                h.update([b'w', *sign as u8]);
                generic_parts(text, unit, |p| h.update(p.as_bytes()));
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
            let (old, new) = (c.before.get(name).map(|s| s.text()), c.after.get(name).map(|s| s.text()));
            let (old, new) = (old.as_deref().unwrap_or_default(), new.as_deref().unwrap_or_default());
            if old == new {
                continue;
            }
            let a = if c.before.contains_key(name) { format!("a/{}/{name}", c.unit) } else { "/dev/null".into() };
            let b = if c.after.contains_key(name) { format!("b/{}/{name}", c.unit) } else { "/dev/null".into() };
            let whole = match (old.is_empty(), new.is_empty()) {
                (true, _) if wholly(new) => Some(Hunk::Whole { sign: '+', text: new }),
                (_, true) if wholly(old) => Some(Hunk::Whole { sign: '-', text: old }),
                _ => None,
            };
            if let Some(hunk) = whole {
                if f(c, name, (&a, &b), hunk).is_break() {
                    return;
                }
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
/// diffing ([`whole_hunk`]): not text the diff might spell differently (no
/// final newline, carriage returns).
fn wholly(text: &str) -> bool {
    text.ends_with('\n') && !text.contains('\r')
}

/// The one hunk of a script added (`+`) or removed (`-`), written as the
/// diff would write it (for text [`wholly`] accepts).
fn whole_hunk(text: &str, sign: char) -> String {
    let n = text.bytes().filter(|b| *b == b'\n').count();
    let range = if n == 1 { "1".to_owned() } else { format!("1,{n}") };
    let header = if sign == '+' { format!("@@ -0,0 +{range} @@\n") } else { format!("@@ -{range} +0,0 @@\n") };
    let mut out = String::with_capacity(header.len() + text.len() + n);
    out.push_str(&header);
    for line in text.split_inclusive('\n') {
        out.push(sign);
        out.push_str(line);
    }
    out
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
            assert_eq!(vec![whole_hunk(text, '+')], diffed("", text), "{text:?} added");
            assert_eq!(vec![whole_hunk(text, '-')], diffed(text, ""), "{text:?} removed");
        }
        for text in ["no newline", "a\r\nb\r\n", "a\nb"] {
            assert!(!wholly(text), "{text:?}");
        }
    }
}
