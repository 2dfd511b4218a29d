//! Plan output: text (coloured on a terminal), markdown for pull-request
//! comments, and a versioned JSON document.

use similar::TextDiff;

use super::{Action, Change, Plan};

/// GitHub's limit on a comment's length.
pub const COMMENT_LIMIT: usize = 65_536;

/// Unified diff (context 3) of one unit's scripts.
pub fn unit_diff(c: &Change) -> String {
    let mut out = String::new();
    let names: std::collections::BTreeSet<&String> = c.before.keys().chain(c.after.keys()).collect();
    for name in names {
        let old = c.before.get(name).map(String::as_str).unwrap_or("");
        let new = c.after.get(name).map(String::as_str).unwrap_or("");
        if old == new {
            continue;
        }
        let (a, b) = (format!("a/{}/{name}", c.unit), format!("b/{}/{name}", c.unit));
        let a = if c.before.contains_key(name) { a } else { "/dev/null".into() };
        let b = if c.after.contains_key(name) { b } else { "/dev/null".into() };
        out.push_str(&TextDiff::from_lines(old, new).unified_diff().context_radius(3).header(&a, &b).to_string());
    }
    out
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

/// Human-readable plan; ANSI colours when `color`.
pub fn text(plan: &Plan, color: bool) -> String {
    let paint = |code: &str, s: &str| if color { format!("\x1b[{code}m{s}\x1b[0m") } else { s.to_owned() };
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
        let code = match c.action {
            Action::Create => "32",
            Action::Cancel => "31",
            Action::Replace => "33",
            _ => "36",
        };
        let l = line(c);
        out.push_str(&if c.interrupts_running { paint("1;31", &l) } else { paint(code, &l) });
        out.push('\n');
    }
    for c in &given_up {
        out.push_str(&format!("      {} ({})\n", c.unit, c.reason));
    }
    if !changed.is_empty() {
        out.push('\n');
        for c in &changed {
            for l in unit_diff(c).lines() {
                let code = if l.starts_with("+++") || l.starts_with("---") {
                    "1"
                } else if l.starts_with('+') {
                    "32"
                } else if l.starts_with('-') {
                    "31"
                } else if l.starts_with("@@") {
                    "36"
                } else {
                    ""
                };
                out.push_str(&if code.is_empty() { l.to_owned() } else { paint(code, l) });
                out.push('\n');
            }
        }
        if plan.runtime_changed {
            out.push_str("note: the evalctl job runtime shared by all scripts changed (a different evalctl version)\n");
        }
    }
    out.push('\n');
    out.push_str(&paint("1", &plan.summary_line()));
    out.push('\n');
    out
}

/// Markdown for a pull-request comment: summary and actions outside, diffs
/// inside `<details>` in a `diff` fence, cut to stay under `limit` characters.
pub fn markdown(plan: &Plan, limit: usize) -> String {
    let mut head = format!("### evalctl plan: `{}`\n\n**{}**\n\n", plan.stack, plan.summary_line());
    let changed: Vec<&Change> = plan.changes.iter().filter(|c| c.action != Action::None).collect();
    if !changed.is_empty() {
        head.push_str("| | job | action | why |\n|---|---|---|---|\n");
        for c in &changed {
            let warn = if c.interrupts_running { " ⚠️ cancels running work" } else { "" };
            head.push_str(&format!(
                "| `{}` | `{}` | {} | {}{warn} |\n",
                c.action.symbol(),
                c.unit.replace('|', "\\|"),
                c.action.word(),
                c.reason.replace('|', "\\|")
            ));
        }
        head.push('\n');
    }
    for c in given_up(plan) {
        head.push_str(&format!("- `{}`: {}\n", c.unit.replace('`', "'"), c.reason));
    }
    for n in &plan.notes {
        head.push_str(&format!("> {n}\n"));
    }
    let diff: String = changed.iter().map(|c| unit_diff(c)).collect();
    if diff.is_empty() {
        return head;
    }
    let open = "<details><summary>Script changes</summary>\n\n```diff\n";
    let close = "```\n\n</details>\n";
    let budget = limit.saturating_sub(head.len() + open.len() + close.len() + 200);
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
            diff[..cut].replace("```", "` ` `")
        )
    } else {
        diff.replace("```", "` ` `")
    };
    format!("{head}{open}{body}{close}")
}

/// The versioned JSON document (also what `--out` saves).
pub fn json(plan: &Plan) -> serde_json::Value {
    let mut v = serde_json::to_value(plan).unwrap_or_default();
    v["summary"] = serde_json::to_value(plan.summary()).unwrap_or_default();
    v["summary_line"] = serde_json::json!(plan.summary_line());
    v["has_changes"] = serde_json::json!(plan.has_changes());
    if let Some(changes) = v["changes"].as_array_mut() {
        for (c, plan_c) in changes.iter_mut().zip(&plan.changes) {
            c["diff"] = serde_json::json!(unit_diff(plan_c));
        }
    }
    v
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
            notes: vec![],
        }
    }

    #[test]
    fn units_out_of_attempts_are_named_even_when_nothing_else_changes() {
        let why = "failed 2 times: not retried (max_attempts = 2; use --replace to force)";
        let only = plan(vec![change("mmlu", Action::None, why)]);
        for out in [text(&only, false), markdown(&only, COMMENT_LIMIT)] {
            assert!(out.contains("mmlu") && out.contains(why), "{out}");
        }
        let with_other = plan(vec![change("mmlu", Action::None, why), change("gsm8k", Action::Retry, "failed")]);
        let out = text(&with_other, false);
        let (retry, given_up) = (out.find("gsm8k").unwrap(), out.find(why).unwrap());
        assert!(retry < given_up, "changes first, then units given up: {out}");
        let healthy = plan(vec![change("gsm8k", Action::None, "completed")]);
        assert!(!text(&healthy, false).contains("not retried"));
    }
}
