//! Plan output: text (styled when asked, for a terminal), markdown for pull-request
//! comments, and a versioned JSON document.

use similar::TextDiff;

use serde::{Deserialize, Serialize};

use super::{Action, Change, Plan, Summary};
use crate::table::markdown_text as md_text;

/// GitHub's limit on a comment's length.
pub const COMMENT_LIMIT: usize = 65_536;

/// The scripts of a change whose text differs: name, old text, new text,
/// and the diff's `---`/`+++` paths (`/dev/null` for a script added or removed).
fn changed_scripts(c: &Change) -> impl Iterator<Item = (&String, &str, &str, String, String)> {
    let names: std::collections::BTreeSet<&String> = c.before.keys().chain(c.after.keys()).collect();
    names.into_iter().filter_map(move |name| {
        let old = c.before.get(name).map(|s| &**s).unwrap_or("");
        let new = c.after.get(name).map(|s| &**s).unwrap_or("");
        if old == new {
            return None;
        }
        let a = if c.before.contains_key(name) { format!("a/{}/{name}", c.unit) } else { "/dev/null".into() };
        let b = if c.after.contains_key(name) { format!("b/{}/{name}", c.unit) } else { "/dev/null".into() };
        Some((name, old, new, a, b))
    })
}

/// Unified diff (context 3) of one unit's scripts.
pub fn unit_diff(c: &Change) -> String {
    let mut out = String::new();
    for (_, old, new, a, b) in changed_scripts(c) {
        out.push_str(&TextDiff::from_lines(old, new).unified_diff().context_radius(3).header(&a, &b).to_string());
    }
    out
}

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

/// Placeholder of the unit's name in a hunk shared by several units.
pub const UNIT_PLACEHOLDER: &str = "{unit}";

/// `text` with `unit` replaced by [`UNIT_PLACEHOLDER`] where it stands as a
/// name of its own (not inside a longer name: `t1` in `/t1/`, not in `t10`).
fn generic(text: &str, unit: &str) -> String {
    if unit.is_empty() {
        return text.to_owned();
    }
    let word = |c: char| c.is_alphanumeric() || "_-.".contains(c);
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(unit) {
        let before = rest[..i].chars().next_back();
        let after = rest[i + unit.len()..].chars().next();
        let (b_ok, a_ok) = (before.is_none_or(|c| !word(c)), after.is_none_or(|c| !word(c)));
        // A name that ends in `.` or `-` (`t1.sbatch`) still counts as the unit's own.
        let a_ok = a_ok || (after == Some('.') && rest[i + unit.len() + 1..].starts_with(|c: char| c.is_alphabetic()));
        out.push_str(&rest[..i]);
        out.push_str(if b_ok && a_ok { UNIT_PLACEHOLDER } else { unit });
        rest = &rest[i + unit.len()..];
    }
    out.push_str(rest);
    out
}

/// The hunks of every changed unit's scripts, identical ones (up to the
/// unit's name and line numbers) grouped, in order of first appearance.
pub fn diff_groups(changes: &[&Change]) -> Vec<DiffGroup> {
    let mut groups: Vec<DiffGroup> = vec![];
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for c in changes {
        for (name, old, new, a, b) in changed_scripts(c) {
            let diff = TextDiff::from_lines(old, new);
            let script = format!("{}/{name}", c.unit);
            for hunk in diff.unified_diff().context_radius(3).iter_hunks() {
                let text = hunk.to_string();
                let body = text.split_once('\n').map_or("", |(_, b)| b);
                let key = format!("{}\n{}", generic(name, &c.unit), generic(body, &c.unit));
                let full = format!("--- {a}\n+++ {b}\n{text}");
                match index.get(&key) {
                    Some(&g) => {
                        let g = &mut groups[g];
                        if g.units.last() != Some(&c.unit) && !g.units.contains(&c.unit) {
                            if g.units.len() == 1 {
                                g.hunk = generic(&g.hunk, &g.units[0]);
                            }
                            g.units.push(c.unit.clone());
                        }
                        g.scripts.push(script.clone());
                    }
                    None => {
                        index.insert(key, groups.len());
                        groups.push(DiffGroup {
                            scripts: vec![script.clone()],
                            units: vec![c.unit.clone()],
                            hunk: full,
                        });
                    }
                }
            }
        }
    }
    groups
}

/// A list of names, the first `max` of them and how many more.
fn some(names: &[String], max: usize) -> String {
    let shown: Vec<&str> = names.iter().take(max).map(String::as_str).collect();
    let more = names.len().saturating_sub(max);
    if more > 0 { format!("{}, … ({more} more)", shown.join(", ")) } else { shown.join(", ") }
}

/// The grouped diff as text: each group's hunk once, a comment line above
/// the ones shared by several scripts.
pub fn grouped_diff(groups: &[DiffGroup]) -> String {
    let mut out = String::new();
    let mut previous: Option<&Vec<String>> = None;
    for g in groups {
        // The next hunk of the same scripts continues under the same header.
        if previous == Some(&g.scripts) {
            let hunk = g.hunk.splitn(3, '\n').nth(2).unwrap_or_default();
            out.push_str(hunk);
            continue;
        }
        if g.scripts.len() > 1 {
            out.push_str(&format!(
                "# the same change in {} scripts of {} units: {}\n",
                g.scripts.len(),
                g.units.len(),
                some(&g.units, 10)
            ));
        }
        out.push_str(&g.hunk);
        previous = Some(&g.scripts);
    }
    out
}

/// One line per changed config key.
fn cause_lines(plan: &Plan) -> Vec<String> {
    plan.causes
        .iter()
        .map(|c| {
            let at = c.at.as_deref().map(|a| format!(" ({a})")).unwrap_or_default();
            let units = match c.units.len() {
                0 => "no unit".to_owned(),
                1 => format!("unit {}", c.units[0]),
                n => format!("{n} units: {}", some(&c.units, 8)),
            };
            format!(
                "{}: {} → {}{at}; {units}",
                c.key,
                c.old.as_deref().unwrap_or("(unset)"),
                c.new.as_deref().unwrap_or("(removed)")
            )
        })
        .collect()
}

fn line(c: &Change) -> String {
    let loud = if c.interrupts_running { "  !! cancels running work" } else { "" };
    format!("  {:>3} {} ({}: {}){loud}", c.action.symbol(), c.unit, c.action.word(), c.reason)
}

/// Units left failed because they used up their attempts: said in every
/// plan, with or without other changes.
fn given_up(plan: &Plan) -> Vec<&Change> {
    plan.changes.iter().filter(|c| c.action == Action::None && c.reason.starts_with("failed")).collect()
}

/// Styles of the text plan. Written through `anstream`, which drops them
/// where the stream is not a terminal or colour is turned off.
mod style {
    use anstyle::{AnsiColor, Style};
    pub const CREATE: Style = AnsiColor::Green.on_default();
    pub const CANCEL: Style = AnsiColor::Red.on_default();
    pub const REPLACE: Style = AnsiColor::Yellow.on_default();
    pub const CHANGE: Style = AnsiColor::Cyan.on_default();
    pub const LOUD: Style = AnsiColor::Red.on_default().bold();
    pub const BOLD: Style = Style::new().bold();
}

fn paint(style: anstyle::Style, s: &str, color: bool) -> String {
    if color { format!("{style}{s}{style:#}") } else { s.to_owned() }
}

/// Human-readable plan, with ANSI styles (see [`style`]) when `color`.
pub fn text(plan: &Plan, color: bool) -> String {
    let mut out = format!("Stack `{}` ({}, {})\n", plan.stack, plan.target, plan.stack_dir);
    for n in &plan.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    let changed: Vec<&Change> = plan.changes.iter().filter(|c| c.action != Action::None).collect();
    let given_up = given_up(plan);
    if !changed.is_empty() || !given_up.is_empty() {
        out.push('\n');
    }
    for c in &changed {
        let s = match c.action {
            _ if c.interrupts_running => style::LOUD,
            Action::Create => style::CREATE,
            Action::Cancel => style::CANCEL,
            Action::Replace => style::REPLACE,
            _ => style::CHANGE,
        };
        out.push_str(&paint(s, &line(c), color));
        out.push('\n');
    }
    for c in &given_up {
        out.push_str(&format!("      {} ({})\n", c.unit, c.reason));
    }
    if !plan.causes.is_empty() {
        out.push_str("\nConfig changes:\n");
        for l in cause_lines(plan) {
            out.push_str(&format!("  {l}\n"));
        }
    }
    if !plan.feasibility.is_empty() {
        out.push_str("\nFeasibility (sbatch --test-only, per job shape):\n");
        for l in super::feasibility::lines(&plan.feasibility) {
            out.push_str(&format!("  {l}\n"));
        }
    }
    if !changed.is_empty() {
        out.push('\n');
        {
            for l in grouped_diff(&diff_groups(&changed)).lines() {
                let s = if l.starts_with("+++") || l.starts_with("---") {
                    Some(style::BOLD)
                } else if l.starts_with('+') {
                    Some(style::CREATE)
                } else if l.starts_with('-') {
                    Some(style::CANCEL)
                } else if l.starts_with("@@") || l.starts_with("# the same change") {
                    Some(style::CHANGE)
                } else {
                    None
                };
                out.push_str(&s.map_or_else(|| l.to_owned(), |s| paint(s, l, color)));
                out.push('\n');
            }
        }
        if plan.runtime_changed {
            out.push_str("note: the evalctl job runtime shared by all scripts changed (a different evalctl version)\n");
        }
    }
    out.push('\n');
    out.push_str(&paint(style::BOLD, &plan.summary_line(), color));
    out.push('\n');
    if plan.has_changes() {
        out.push_str(&plan.cost.line());
        out.push('\n');
    }
    out
}

/// Markdown for a pull-request comment: summary and actions outside, diffs
/// inside `<details>` in a `diff` fence, cut to stay under `limit` characters.
pub fn markdown(plan: &Plan, limit: usize) -> String {
    let mut head = format!("### evalctl plan: `{}`\n\n**{}**\n\n", plan.stack, plan.summary_line());
    if plan.has_changes() {
        head.push_str(&format!("{}\n\n", plan.cost.line()));
    }
    // The table, the lists and the diff share the limit: lines are added
    // while they fit in the section's share (the table up to half of it,
    // the units given up to five eighths, notes to three quarters), then one
    // line says how many were left out; the diff gets what remains.
    let share = |eighths: usize| limit / 8 * eighths;
    let changed: Vec<&Change> = plan.changes.iter().filter(|c| c.action != Action::None).collect();
    if !changed.is_empty() {
        head.push_str("| | job | action | why |\n|---|---|---|---|\n");
        // Units with the same action for the same reason share one row.
        type Why<'a> = (Action, &'a str, bool);
        let mut rows_by: Vec<(Why, Vec<String>)> = vec![];
        for c in &changed {
            let k = (c.action, c.reason.as_str(), c.interrupts_running);
            match rows_by.iter_mut().find(|(key, _)| *key == k) {
                Some((_, units)) => units.push(c.unit.clone()),
                None => rows_by.push((k, vec![c.unit.clone()])),
            }
        }
        let rows = rows_by.into_iter().map(|((action, reason, loud), units)| {
            let warn = if loud { " ⚠️ cancels running work" } else { "" };
            let names: Vec<String> =
                units.iter().map(|u| format!("`{}`", u.replace('|', "\\|").replace('`', "'"))).collect();
            let who =
                if names.len() > 1 { format!("{} units: {}", names.len(), some(&names, 10)) } else { names.join("") };
            format!("| `{}` | {who} | {} | {}{warn} |\n", action.symbol(), action.word(), reason.replace('|', "\\|"))
        });
        push_bounded(&mut head, rows, share(4), |n| format!("| | … | | {n} more jobs: run `evalctl plan` for all |\n"));
        head.push('\n');
    }
    let given_up = given_up(plan).into_iter().map(|c| format!("- `{}`: {}\n", c.unit.replace('`', "'"), c.reason));
    push_bounded(&mut head, given_up, share(5), |n| format!("- … {n} more units not retried\n"));
    let notes = plan.notes.iter().map(|n| format!("> {n}\n"));
    push_bounded(&mut head, notes, share(6), |n| format!("> … {n} more notes\n"));
    if !plan.causes.is_empty() {
        head.push_str("\n**Config changes**\n\n");
        let causes = cause_lines(plan).into_iter().map(|l| format!("- {}\n", md_text(&l)));
        push_bounded(&mut head, causes, share(7), |n| format!("- … {n} more keys\n"));
        head.push('\n');
    }
    if !plan.feasibility.is_empty() {
        head.push_str("\n**Feasibility** (`sbatch --test-only`, per job shape)\n\n");
        let lines = super::feasibility::lines(&plan.feasibility).into_iter().map(|l| format!("- {}\n", md_text(&l)));
        push_bounded(&mut head, lines, share(7), |n| format!("- … {n} more shapes\n"));
        head.push('\n');
    }
    // Fences inside scripts are broken up before anything is measured.
    let diff = grouped_diff(&diff_groups(&changed)).replace("```", "` ` `");
    if diff.is_empty() {
        return head;
    }
    let open = "<details><summary>Script changes</summary>\n\n```diff\n";
    let close = "```\n\n</details>\n";
    let budget = limit.saturating_sub(head.len() + open.len() + close.len() + 200);
    if budget < 1_000 {
        return head + "_Script changes not shown (comment limit). Run `evalctl plan` for them._\n";
    }
    let body = if diff.len() > budget {
        let mut cut = budget;
        while !diff.is_char_boundary(cut) {
            cut -= 1;
        }
        let cut = diff[..cut].rfind('\n').map_or(0, |i| i + 1);
        let shown = diff[..cut].lines().count();
        let total = diff.lines().count();
        format!(
            "{}```\n\n_Diff truncated: {shown} of {total} lines shown (comment limit). Run `evalctl plan` for the full diff._\n\n```diff\n",
            &diff[..cut]
        )
    } else {
        diff
    };
    format!("{head}{open}{body}{close}")
}

/// Appends `lines` to `out` while `out` stays within `budget` bytes (with
/// room for the closing line), then `more(left out)`.
fn push_bounded(out: &mut String, lines: impl Iterator<Item = String>, budget: usize, more: impl Fn(usize) -> String) {
    let mut left_out = 0;
    for line in lines {
        if left_out > 0 || out.len() + line.len() + 100 > budget {
            left_out += 1;
        } else {
            out.push_str(&line);
        }
    }
    if left_out > 0 {
        out.push_str(&more(left_out));
    }
}

/// The versioned plan document: `plan --format json`, and the plan inside
/// a saved plan file. The plan's own fields, each change with its diff,
/// then the summary.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlanDocument {
    #[serde(flatten)]
    pub plan: Plan,
    /// The scripts' hunks, identical ones across units grouped.
    #[serde(default)]
    pub diff_groups: Vec<DiffGroup>,
    pub summary: Summary,
    pub summary_line: String,
    pub has_changes: bool,
}

impl PlanDocument {
    pub fn of(plan: &Plan) -> PlanDocument {
        let mut plan = plan.clone();
        for c in &mut plan.changes {
            c.diff = Some(unit_diff(c));
        }
        let changed: Vec<&Change> = plan.changes.iter().filter(|c| c.action != Action::None).collect();
        let diff_groups = diff_groups(&changed);
        PlanDocument {
            diff_groups,
            summary: plan.summary(),
            summary_line: plan.summary_line(),
            has_changes: plan.has_changes(),
            plan,
        }
    }
}

/// The plan document as JSON text.
pub fn json(plan: &Plan) -> String {
    serde_json::to_string_pretty(&PlanDocument::of(plan)).expect("plain data serializes") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Observed, UnitKind};

    fn change(unit: &str, action: Action, reason: &str) -> Change {
        Change {
            unit: unit.into(),
            kind: UnitKind::Task,
            action,
            reason: reason.into(),
            observed: Observed::Failed,
            interrupts_running: false,
            cancel_jobs: vec![],
            before: Default::default(),
            after: Default::default(),
            script_hash: String::new(),
            result_hash: String::new(),
            attempts: 2,
            diff: None,
            untargeted: false,
        }
    }

    fn plan(changes: Vec<Change>) -> Plan {
        Plan {
            format_version: 1,
            stack: "s".into(),
            stack_dir: "/d/s".into(),
            target: "local".into(),
            offline: false,
            serial: 3,
            render_hash: String::new(),
            fingerprint: String::new(),
            runtime_changed: false,
            changes,
            causes: vec![],
            cost: Default::default(),
            feasibility: vec![],
            notes: vec![],
        }
    }

    fn plain(p: &Plan) -> String {
        text(p, false)
    }

    #[test]
    fn units_out_of_attempts_are_named_even_when_nothing_else_changes() {
        let why = "failed 2 times: not retried (max_attempts = 2; use --replace to force)";
        let only = plan(vec![change("mmlu", Action::None, why)]);
        for out in [plain(&only), markdown(&only, COMMENT_LIMIT)] {
            assert!(out.contains("mmlu") && out.contains(why), "{out}");
        }
        let with_other = plan(vec![change("mmlu", Action::None, why), change("gsm8k", Action::Retry, "failed")]);
        let out = plain(&with_other);
        let (retry, given_up) = (out.find("gsm8k").unwrap(), out.find(why).unwrap());
        assert!(retry < given_up, "changes first, then units given up: {out}");
        let healthy = plan(vec![change("gsm8k", Action::None, "completed")]);
        assert!(!plain(&healthy).contains("not retried"));
    }

    #[test]
    fn markdown_stays_within_the_comment_limit_at_any_number_of_units() {
        for n in [10, 1_500, 10_000] {
            let mut changes: Vec<Change> = (0..n)
                .map(|i| {
                    let mut c = change(&format!("task-{i}"), Action::Create, "not on the cluster");
                    c.after.insert("job.sbatch".into(), format!("#!/bin/bash\n```\necho {i}\n").repeat(20).into());
                    c
                })
                .collect();
            changes.extend((0..n).map(|i| change(&format!("old-{i}"), Action::None, "failed 3 times: not retried")));
            let mut p = plan(changes);
            p.notes = (0..n).map(|i| format!("note {i}")).collect();
            let out = markdown(&p, COMMENT_LIMIT);
            assert!(out.len() <= COMMENT_LIMIT, "{n} units: {} bytes", out.len());
            assert!(out.contains("`task-0`") && out.contains("- `old-0`") && out.contains("> note 0"), "{n}");
            assert_eq!(out.matches("```").count() % 2, 0, "fences balanced");
            // One row for every unit created for the same reason.
            let row = format!("| `+` | {n} units: `task-0`, `task-1`, ");
            assert!(out.contains(&row), "{n}: {}", &out[..2000.min(out.len())]);
            if n == 10 {
                assert!(out.contains("</details>"), "{out}");
            }
        }
    }
}
