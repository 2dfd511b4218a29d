//! The combined plan of several stacks (`evalctl plan PATH...`): one
//! document for one pull-request comment, however many configs a change
//! touches. A summary table (stack, changes by action, GPU-hours upper
//! bound, errors) leads; each stack's own plan follows in a section of its
//! own, as `plan::output` writes it for one stack.
//!
//! Plain data in, text out: the stacks' plans (or the errors that stopped
//! them) are made elsewhere (`ops::stacks`); this module only lays them out
//! as text, Markdown (bounded to [`COMMENT_LIMIT`]) or a versioned JSON
//! document, and folds their outcomes into one exit status.

use serde::Serialize;

use crate::error::ExitStatus;
use crate::plan::output::{self, PlanDocument};
use crate::plan::{Plan, Summary};
use crate::table::markdown_text;

pub use crate::plan::output::COMMENT_LIMIT;

/// Version of the combined JSON document.
pub const FORMAT_VERSION: u32 = 1;

/// One stack of a combined plan.
#[derive(Clone, Debug)]
pub struct StackPlan {
    /// The stack's name (`name:` or the file's stem).
    pub name: String,
    /// The config file, as it was named or found.
    pub config: String,
    pub outcome: Outcome,
}

/// How planning one stack ended.
#[derive(Clone, Debug)]
pub enum Outcome {
    Planned(Box<Plan>),
    /// Why there is no plan: one line per error (`file:line:col: error: ...`).
    Failed(Vec<String>),
}

impl StackPlan {
    pub fn plan(&self) -> Option<&Plan> {
        match &self.outcome {
            Outcome::Planned(p) => Some(p),
            Outcome::Failed(_) => None,
        }
    }

    pub fn errors(&self) -> &[String] {
        match &self.outcome {
            Outcome::Planned(_) => &[],
            Outcome::Failed(e) => e,
        }
    }
}

/// The counts of every stack together.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Totals {
    pub stacks: usize,
    pub with_changes: usize,
    pub with_errors: usize,
    pub errors: usize,
    /// The planned stacks' counts by action, added up.
    #[serde(flatten)]
    pub changes: Summary,
    /// The sum of the planned stacks' upper bounds; none when one of them
    /// is unbounded.
    pub gpu_hours_max: Option<f64>,
}

/// Adds up the stacks.
pub fn totals(stacks: &[StackPlan]) -> Totals {
    let mut t = Totals { stacks: stacks.len(), gpu_hours_max: Some(0.0), ..Totals::default() };
    for s in stacks {
        match &s.outcome {
            Outcome::Failed(e) => {
                t.with_errors += 1;
                t.errors += e.len().max(1);
            }
            Outcome::Planned(p) => {
                t.with_changes += usize::from(p.has_changes());
                t.changes.add(&p.summary());
                t.gpu_hours_max = t.gpu_hours_max.zip(p.cost.gpu_hours_max).map(|(a, b)| a + b);
            }
        }
    }
    t
}

/// The exit status of a combined plan: any stack with errors → 1; else a
/// stack over `budget` GPU-hours → 7; else, with `detailed`, any change
/// → 2; else 0.
pub fn exit_status(stacks: &[StackPlan], detailed: bool, budget: Option<f64>) -> ExitStatus {
    let plans = || stacks.iter().filter_map(StackPlan::plan);
    if stacks.iter().any(|s| s.plan().is_none()) {
        ExitStatus::Failure
    } else if budget.is_some_and(|b| plans().any(|p| p.cost.over(b))) {
        ExitStatus::OverBudget
    } else if detailed && plans().any(Plan::has_changes) {
        ExitStatus::Changes
    } else {
        ExitStatus::Success
    }
}

/// `2 create, 1 replace` (the actions that occur), or `no changes`.
fn changes_cell(s: &Summary) -> String {
    let parts: Vec<String> =
        s.changing().iter().filter(|(n, _)| *n > 0).map(|(n, a)| format!("{n} {}", a.word())).collect();
    if parts.is_empty() { "no changes".into() } else { parts.join(", ") }
}

/// A GPU-hours upper bound, or `unbounded`.
fn gpu_cell(max: Option<f64>) -> String {
    max.map_or_else(|| "unbounded".into(), |m| format!("{m:.1}"))
}

/// One line over all stacks: `3 stacks: 2 with changes, 1 with errors.`
pub fn headline(t: &Totals) -> String {
    let plural = |n: usize, one: &str, many: &str| if n == 1 { format!("{n} {one}") } else { format!("{n} {many}") };
    let mut parts = vec![format!("{} with changes", t.with_changes)];
    if t.with_errors > 0 {
        parts.push(format!("{} with errors", t.with_errors));
    }
    format!("{}: {}.", plural(t.stacks, "stack", "stacks"), parts.join(", "))
}

/// For people: the summary table, then each stack's plan (or errors).
pub fn text(stacks: &[StackPlan], color: bool) -> String {
    let t = totals(stacks);
    let mut out = format!("{}\n\n", headline(&t));
    let rows: Vec<[String; 5]> = stacks
        .iter()
        .map(|s| match s.plan() {
            Some(p) => [
                s.name.clone(),
                s.config.clone(),
                changes_cell(&p.summary()),
                gpu_cell(p.cost.gpu_hours_max),
                String::new(),
            ],
            None => [s.name.clone(), s.config.clone(), String::new(), String::new(), s.errors().len().to_string()],
        })
        .collect();
    out.push_str(&crate::table::table(["STACK", "CONFIG", "CHANGES", "GPU-H MAX", "ERRORS"], &rows));
    for s in stacks {
        out.push_str(&format!("\n=== {} ({}) ===\n", s.name, s.config));
        match &s.outcome {
            Outcome::Planned(p) => out.push_str(&output::text(p, color)),
            Outcome::Failed(errors) => {
                for e in errors {
                    out.push_str(&format!("{e}\n"));
                }
            }
        }
    }
    out
}

/// Markdown for one pull-request comment, at most `limit` bytes (so at
/// most `limit` characters): the summary table, then one folded
/// `<details>` section per stack holding its plan as
/// [`output::markdown`] writes it. The sections share what the table
/// leaves: each stack that fits gets its whole plan, the others equal
/// shares of the rest, within which `output::markdown` groups and cuts
/// first; a section still too long is truncated last, and a note at the end
/// names the stacks shortened.
pub fn markdown(stacks: &[StackPlan], limit: usize) -> String {
    let t = totals(stacks);
    let mut head = format!("## evalctl plan: {} stacks\n\n**{}**\n\n", t.stacks, headline(&t));
    head.push_str("| stack | config | changes | GPU-h ≤ | errors |\n|---|---|---|---|---|\n");
    let code = |s: &str| format!("`{}`", markdown_text(s).replace('`', "'"));
    let rows = stacks.iter().map(|s| match s.plan() {
        Some(p) => format!(
            "| {} | {} | {} | {} | |\n",
            code(&s.name),
            code(&s.config),
            changes_cell(&p.summary()),
            gpu_cell(p.cost.gpu_hours_max)
        ),
        None => {
            let first = s.errors().first().map(|e| markdown_text(&clip(e, 160))).unwrap_or_default();
            format!("| {} | {} | | | ⚠️ {}: {first} |\n", code(&s.name), code(&s.config), s.errors().len())
        }
    });
    // The table takes at most a quarter of the limit; the rest are counted.
    let table_budget = limit / 4;
    let mut shown_rows = 0;
    for row in rows {
        if head.len() + row.len() + 200 > table_budget {
            break;
        }
        head.push_str(&row);
        shown_rows += 1;
    }
    if shown_rows < stacks.len() {
        head.push_str(&format!(
            "| … | | | | {} more stacks: run `evalctl plan` for all |\n",
            stacks.len() - shown_rows
        ));
    }
    let total_errors = if t.errors > 0 { t.errors.to_string() } else { String::new() };
    head.push_str(&format!(
        "| **total** | | {} | {} | {total_errors} |\n\n",
        changes_cell(&t.changes),
        gpu_cell(t.gpu_hours_max)
    ));

    // Sections: a fixed wrapper each, and a body from the shared budget.
    const NOTE_ROOM: usize = 600;
    let wrappers: Vec<(String, &'static str)> = stacks
        .iter()
        .map(|s| {
            let what = match s.plan() {
                Some(p) => markdown_text(&p.summary_line()),
                None => format!("⚠️ {} errors", s.errors().len()),
            };
            (
                format!("<details><summary><code>{}</code>: {what}</summary>\n\n", crate::report::escape(&s.name)),
                "\n</details>\n\n",
            )
        })
        .collect();
    let mut room = limit.saturating_sub(head.len() + NOTE_ROOM);
    let mut omitted = 0;
    let mut sections: Vec<Option<usize>> = vec![]; // the index of each wrapper that fits
    for (i, (open, close)) in wrappers.iter().enumerate() {
        let need = open.len() + close.len() + MIN_BODY;
        if omitted == 0 && need <= room {
            room -= open.len() + close.len();
            sections.push(Some(i));
        } else {
            omitted += 1;
            sections.push(None);
        }
    }
    let bodies: Vec<String> = stacks.iter().map(|s| body(s, room)).collect();
    let shown: Vec<usize> = sections.iter().flatten().copied().collect();
    let budgets = shares(&shown.iter().map(|&i| bodies[i].len()).collect::<Vec<_>>(), room);
    let mut out = head;
    let mut shortened = vec![];
    for (&i, &budget) in shown.iter().zip(&budgets) {
        let full = &bodies[i];
        let text = if full.len() <= budget {
            full.clone()
        } else {
            shortened.push(stacks[i].name.clone());
            let again = body(&stacks[i], budget);
            if again.len() <= budget { again } else { cut(&again, budget) }
        };
        out.push_str(&wrappers[i].0);
        out.push_str(&text);
        out.push_str(wrappers[i].1);
    }
    let mut notes = String::new();
    if !shortened.is_empty() {
        let names: Vec<String> = shortened.iter().map(|n| code(n)).collect();
        notes.push_str(&format!(
            "_Note: shortened to fit the comment limit ({limit} characters): {}. Run `evalctl plan` on them for the full plans._\n",
            clip(&names.join(", "), 300)
        ));
    }
    if omitted > 0 {
        notes.push_str(&format!(
            "_Note: the sections of {omitted} stacks are not shown (comment limit); run `evalctl plan` on them._\n"
        ));
    }
    out.push_str(&notes);
    if out.len() > limit {
        // Only a limit too small for the table itself gets here.
        out = cut(&out, limit);
    }
    out
}

/// The least a section's body is given: below it, the section is left out.
const MIN_BODY: usize = 400;

/// A stack's section body within `limit` bytes: its Markdown plan, or its
/// errors in a fence.
fn body(s: &StackPlan, limit: usize) -> String {
    match &s.outcome {
        Outcome::Planned(p) => output::markdown(p, limit),
        Outcome::Failed(errors) => {
            let lines: String = errors.iter().map(|e| format!("{}\n", e.replace("```", "` ` `"))).collect();
            format!("```text\n{lines}```\n")
        }
    }
}

/// Splits `room` among bodies of the given sizes: the ones smaller than an
/// equal share get their size, the rest split what those leave equally.
pub fn shares(sizes: &[usize], room: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by_key(|&i| sizes[i]);
    let mut out = vec![0; sizes.len()];
    let mut left = room;
    for (k, &i) in order.iter().enumerate() {
        let share = left / (sizes.len() - k);
        out[i] = sizes[i].min(share);
        left -= out[i];
    }
    out
}

/// `text` cut to at most `limit` bytes at a line end, with a closing fence
/// when the cut falls inside one, and a line saying it was cut.
fn cut(text: &str, limit: usize) -> String {
    const TAIL: &str = "\n```\n\n_… truncated (comment limit)._\n";
    let mut at = limit.saturating_sub(TAIL.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let at = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let kept = &text[..at];
    let fences = kept.lines().filter(|l| l.trim_start().starts_with("```")).count();
    if fences % 2 == 1 { format!("{kept}{TAIL}") } else { format!("{kept}{}", &TAIL[5..]) }
}

/// At most `n` characters of `s`, with `…` when cut.
fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_owned() } else { s.chars().take(n).collect::<String>() + "…" }
}

/// The combined JSON document.
#[derive(Serialize)]
struct Document<'a> {
    format_version: u32,
    kind: &'static str,
    stacks: Vec<StackDocument<'a>>,
    totals: Totals,
}

#[derive(Serialize)]
struct StackDocument<'a> {
    stack: &'a str,
    config: &'a str,
    /// The stack's plan document (`plan --format json` of it alone).
    plan: Option<PlanDocument>,
    errors: &'a [String],
}

/// The versioned JSON document: `stacks`, each with its plan document (as
/// `plan --format json` writes it for the stack alone) or its errors, and
/// the `totals`.
pub fn json(stacks: &[StackPlan]) -> String {
    let doc = Document {
        format_version: FORMAT_VERSION,
        kind: "evalctl-stacks-plan",
        stacks: stacks
            .iter()
            .map(|s| StackDocument {
                stack: &s.name,
                config: &s.config,
                plan: s.plan().map(PlanDocument::of),
                errors: s.errors(),
            })
            .collect(),
        totals: totals(stacks),
    };
    serde_json::to_string_pretty(&doc).expect("plain data serializes") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_give_small_bodies_their_size_and_split_the_rest() {
        assert_eq!(shares(&[100, 5_000, 50_000], 30_000), vec![100, 5_000, 24_900]);
        assert_eq!(shares(&[40_000, 40_000], 30_000), vec![15_000, 15_000]);
        assert_eq!(shares(&[], 10), Vec::<usize>::new());
    }

    #[test]
    fn cuts_close_an_open_fence_and_stay_within_the_limit() {
        let text = format!("head\n```diff\n{}", "+line\n".repeat(1_000));
        let c = cut(&text, 500);
        assert!(c.len() <= 500, "{}", c.len());
        assert!(c.ends_with("_… truncated (comment limit)._\n"));
        assert_eq!(c.lines().filter(|l| l.starts_with("```")).count() % 2, 0);
    }

    #[test]
    fn failed_stacks_fail_the_whole_and_changes_show_with_detailed_exit_codes() {
        let failed =
            StackPlan { name: "b".into(), config: "b.yaml".into(), outcome: Outcome::Failed(vec!["x".into()]) };
        assert_eq!(exit_status(&[failed], true, None), ExitStatus::Failure);
        assert_eq!(exit_status(&[], true, None), ExitStatus::Success);
    }
}
