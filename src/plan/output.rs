//! Plan output: text (styled when asked, for a terminal), markdown for pull-request
//! comments, and a versioned JSON document.

use std::io::{self, Write};
use std::ops::ControlFlow;

use serde::{Deserialize, Serialize};

pub use super::hunks::{DiffGroup, Grouping, UNIT_PLACEHOLDER};
use super::hunks::{some, write_grouped};
use super::{Action, Change, Plan, Summary};
use crate::table::markdown_text as md_text;

/// GitHub's limit on a comment's length.
pub const COMMENT_LIMIT: usize = 65_536;

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
    let pack = c.pack.as_deref().map(|p| format!(" in {p}")).unwrap_or_default();
    format!("  {:>3} {}{pack} ({}: {}){loud}", c.action.symbol(), c.unit, c.action.word(), c.reason)
}

/// How the plan's jobs are submitted and throttled, when it says:
/// `At most 4 task chains run at once (max_concurrent).`, or with job
/// arrays `First links go in job arrays (one sbatch per shared header), at
/// most 4 running in each (max_concurrent).`
fn submission_line(plan: &Plan) -> Option<String> {
    match (plan.job_arrays, plan.max_concurrent) {
        (false, None) => None,
        (false, Some(m)) => Some(format!("At most {m} task chains run at once (max_concurrent).")),
        (true, None) => Some("First links go in job arrays (one sbatch per shared header).".into()),
        (true, Some(m)) => Some(format!(
            "First links go in job arrays (one sbatch per shared header), at most {m} running in each (max_concurrent)."
        )),
    }
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
    let mut out = vec![];
    write_text(plan, color, &mut out).expect("writing to memory cannot fail");
    String::from_utf8(out).expect("the plan is text")
}

/// Writes the human-readable plan to `out` as it goes: a plan of thousands
/// of scripts is never held whole.
pub fn write_text(plan: &Plan, color: bool, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "Stack `{}` ({}, {})", plan.stack, plan.target, plan.stack_dir)?;
    for n in &plan.notes {
        writeln!(out, "note: {n}")?;
    }
    let changed: Vec<&Change> = plan.changes.iter().filter(|c| c.action != Action::None).collect();
    let given_up = given_up(plan);
    if !changed.is_empty() || !given_up.is_empty() {
        writeln!(out)?;
    }
    for c in &changed {
        let s = match c.action {
            _ if c.interrupts_running => style::LOUD,
            Action::Create => style::CREATE,
            Action::Cancel => style::CANCEL,
            Action::Replace => style::REPLACE,
            _ => style::CHANGE,
        };
        writeln!(out, "{}", paint(s, &line(c), color))?;
    }
    for c in &given_up {
        writeln!(out, "      {} ({})", c.unit, c.reason)?;
    }
    if !plan.causes.is_empty() {
        writeln!(out, "\nConfig changes:")?;
        for l in cause_lines(plan) {
            writeln!(out, "  {l}")?;
        }
    }
    if !plan.feasibility.is_empty() {
        writeln!(out, "\nFeasibility (sbatch --test-only, per job shape):")?;
        for l in super::feasibility::lines(&plan.feasibility) {
            writeln!(out, "  {l}")?;
        }
    }
    if !plan.limits.is_empty() {
        writeln!(out, "\nScheduler limits (jobs queued at once):")?;
        for l in super::limits::lines(&plan.limits) {
            writeln!(out, "  {l}")?;
        }
    }
    if !changed.is_empty() {
        writeln!(out)?;
        let mut result = Ok(());
        write_grouped(&Grouping::new(&changed), |chunk| {
            if !color {
                result = out.write_all(chunk.as_bytes());
                return if result.is_err() { ControlFlow::Break(()) } else { ControlFlow::Continue(()) };
            }
            for l in chunk.lines() {
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
                result = match s {
                    Some(s) => writeln!(out, "{s}{l}{s:#}"),
                    None => writeln!(out, "{l}"),
                };
                if result.is_err() {
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        });
        result?;
        if plan.runtime_changed {
            writeln!(out, "note: the evalctl job runtime shared by all scripts changed (a different evalctl version)")?;
        }
    }
    writeln!(out)?;
    writeln!(out, "{}", paint(style::BOLD, &plan.summary_line(), color))?;
    if plan.has_changes() {
        writeln!(out, "{}", plan.cost.line())?;
    }
    if let Some(p) = &plan.packing {
        writeln!(out, "{}", p.line())?;
    }
    if let Some(line) = submission_line(plan) {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// Markdown for a pull-request comment: summary and actions outside, diffs
/// inside `<details>` in a `diff` fence, cut to stay under `limit` characters.
pub fn markdown(plan: &Plan, limit: usize) -> String {
    let mut head = format!("### evalctl plan: `{}`\n\n**{}**\n\n", plan.stack, plan.summary_line());
    if plan.has_changes() {
        head.push_str(&format!("{}\n\n", plan.cost.line()));
    }
    if let Some(p) = &plan.packing {
        head.push_str(&format!("{}\n\n", md_text(&p.line())));
    }
    if let Some(line) = submission_line(plan) {
        head.push_str(&format!("{}\n\n", md_text(&line)));
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
    if !plan.limits.is_empty() {
        head.push_str("\n**Scheduler limits** (jobs queued at once)\n\n");
        let lines = super::limits::lines(&plan.limits).into_iter().map(|l| format!("- {}\n", md_text(&l)));
        push_bounded(&mut head, lines, share(7), |n| format!("- … {n} more limits\n"));
        head.push('\n');
    }
    let grouping = Grouping::new(&changed);
    if grouping.is_empty() {
        return head;
    }
    let open = "<details><summary>Script changes</summary>\n\n```diff\n";
    let close = "```\n\n</details>\n";
    let budget = limit.saturating_sub(head.len() + open.len() + close.len() + 200);
    if budget < 1_000 {
        return head + "_Script changes not shown (comment limit). Run `evalctl plan` for them._\n";
    }
    // Hunks are added while they fit; the first that does not is cut at a
    // line, and the rest are counted, not rendered. Fences inside scripts
    // are broken up before anything is measured.
    let mut body = String::new();
    let (mut shown, mut cut) = (0, false);
    write_grouped(&grouping, |chunk| {
        let chunk = chunk.replace("```", "` ` `");
        if body.len() + chunk.len() <= budget {
            body.push_str(&chunk);
            // A line naming the scripts that share the next hunk is no hunk.
            shown += usize::from(!chunk.starts_with("# the same change"));
            return ControlFlow::Continue(());
        }
        let mut end = budget - body.len();
        while !chunk.is_char_boundary(end) {
            end -= 1;
        }
        body.push_str(&chunk[..chunk[..end].rfind('\n').map_or(0, |i| i + 1)]);
        cut = true;
        ControlFlow::Break(())
    });
    if cut {
        body.push_str(&format!(
            "```\n\n_Diff truncated: {shown} of {} distinct hunks shown whole (comment limit). Run `evalctl plan` for the full diff._\n\n```diff\n",
            grouping.len()
        ));
    }
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
/// a saved plan file. The plan's own fields (each change without its
/// scripts: the hunks say what changes), the scripts' hunks grouped, then
/// the summary. `G` is how the groups are held: a list when the document
/// is read back, computed as they are written when it is written out.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlanDocument<P = Plan, G = Vec<DiffGroup>> {
    #[serde(flatten)]
    pub plan: P,
    /// The scripts' hunks, identical ones across units grouped.
    #[serde(default)]
    pub diff_groups: G,
    pub summary: Summary,
    pub summary_line: String,
    pub has_changes: bool,
}

impl PlanDocument {
    pub fn of(plan: &Plan) -> PlanDocument {
        let changed: Vec<&Change> = plan.changes.iter().filter(|c| c.action != Action::None).collect();
        PlanDocument {
            diff_groups: Grouping::new(&changed).collect(),
            summary: plan.summary(),
            summary_line: plan.summary_line(),
            has_changes: plan.has_changes(),
            plan: plan.clone(),
        }
    }
}

/// The groups of a document being written, computed as they are written.
struct Streamed<'g, 'c>(&'g Grouping<'c>);

impl Serialize for Streamed<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        let mut result = Ok(());
        self.0.each(|g| {
            result = seq.serialize_element(&g.to_owned());
            if result.is_err() { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
        });
        result?;
        seq.end()
    }
}

/// The plan document as JSON text.
pub fn json(plan: &Plan) -> String {
    let mut out = vec![];
    write_json(plan, &mut out).expect("writing to memory cannot fail");
    String::from_utf8(out).expect("JSON is text")
}

/// Writes the plan document to `out` as it goes (see [`write_text`]).
pub fn write_json(plan: &Plan, out: &mut dyn Write) -> io::Result<()> {
    let changed: Vec<&Change> = plan.changes.iter().filter(|c| c.action != Action::None).collect();
    let grouping = Grouping::new(&changed);
    let doc = PlanDocument {
        plan,
        diff_groups: Streamed(&grouping),
        summary: plan.summary(),
        summary_line: plan.summary_line(),
        has_changes: plan.has_changes(),
    };
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
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
            pack: None,
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
            limits: vec![],
            packing: None,
            max_concurrent: None,
            job_arrays: false,
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
            } else {
                // The note counts the hunks shown whole (one may be cut).
                let note = out.split("_Diff truncated: ").nth(1).expect("a note");
                let (shown, rest) = note.split_once(" of ").expect("N of M");
                let shown: usize = shown.parse().expect("a count");
                assert!(rest.starts_with(&format!("{n} distinct hunks shown whole")), "{rest}");
                let hunks = out.matches("\n@@ ").count();
                assert!(shown > 0 && (shown..=shown + 1).contains(&hunks), "{shown} vs {hunks}");
            }
        }
    }
}
