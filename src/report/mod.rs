//! `evalctl report`: the scores of one or more stacks as one HTML page to
//! read, share or attach to a pull request: a header, a chart of the
//! scores (grouped bars per stack with 95% confidence intervals), the
//! results table (one column group per stack, rows matched by task,
//! metric and score) and the units without scores.
//!
//! Pure: the [`Report`]s come from `ops::results` (one round trip per
//! stack). Every name in them (stacks, units, tasks, metrics, states) is
//! written by whoever wrote the configs and results files, so every text
//! is escaped, and the page is self-contained: inline CSS and SVG, no
//! script, no external resource, and a Content-Security-Policy that would
//! block any that slipped in.

pub mod chart;

use indexmap::IndexMap;

use crate::ops::results::{Report, Row};

/// The most groups (score rows) the chart shows; the table has every row.
pub const MAX_CHART_GROUPS: usize = 40;

/// Text escaped for HTML content and quoted attribute values; control
/// characters (which HTML forbids) become U+FFFD.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' | '\t' => out.push(' '),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// `secs` since the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days to a civil date (Howard Hinnant's algorithm), for days >= 0.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// One line of the table (and group of the chart): a task, metric and
/// score, and each stack's row for it. The n-th row of a stack with the
/// same task, metric and score (two units running one task) matches the
/// n-th of another stack.
struct Line<'a> {
    task: &'a str,
    metric: &'a str,
    score: &'a str,
    nth: usize,
    cells: Vec<Option<&'a Row>>,
}

fn lines(reports: &[Report]) -> Vec<Line<'_>> {
    let mut lines: IndexMap<(&str, &str, &str, usize), Line> = IndexMap::new();
    for (s, report) in reports.iter().enumerate() {
        let mut seen: IndexMap<(&str, &str, &str), usize> = IndexMap::new();
        for row in &report.rows {
            let nth = seen.entry((&row.task, &row.metric, &row.score)).or_default();
            let key = (row.task.as_str(), row.metric.as_str(), row.score.as_str(), *nth);
            *nth += 1;
            let line = lines.entry(key).or_insert_with(|| Line {
                task: &row.task,
                metric: &row.metric,
                score: &row.score,
                nth: key.3,
                cells: vec![None; reports.len()],
            });
            line.cells[s] = Some(row);
        }
    }
    lines.into_values().collect()
}

/// The chart label of a line: the task, and its metric (and score, where
/// it differs) when the task has more than one line.
fn label(line: &Line, lines: &[Line]) -> String {
    let mut label = line.task.to_owned();
    if lines.iter().filter(|l| l.task == line.task).count() > 1 {
        label.push_str(" · ");
        label.push_str(line.metric);
        if line.score != line.metric {
            label.push(' ');
            label.push_str(line.score);
        }
    }
    if line.nth > 0 {
        label.push_str(&format!(" #{}", line.nth + 1));
    }
    label
}

/// A row's 95% confidence interval: recorded, or from its stderr.
fn ci95(row: &Row) -> Option<[f64; 2]> {
    row.ci95.or_else(|| row.stderr.map(|e| [row.value - 1.96 * e, row.value + 1.96 * e]))
}

fn num(v: f64) -> String {
    format!("{v:.4}")
}

const STYLE: &str = "
body { font-family: system-ui, sans-serif; margin: 2em; color: #1b1b1b; }
h1 { margin-bottom: 0.2em; }
.meta { color: #555; margin-top: 0; }
.chart { overflow-x: auto; border: 1px solid #ddd; padding: 0.5em; margin: 1em 0; }
.note { color: #555; font-style: italic; }
table { border-collapse: collapse; font-size: 0.9em; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
th.stack { text-align: center; border-top-width: 4px; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.scroll { overflow-x: auto; }
td.none { color: #999; }
code { font-size: 0.95em; }
.level { color: #666; font-size: 0.85em; }
";

const STACK_COLUMNS: [&str; 9] = ["unit", "value", "± stderr", "95% CI", "n", "state", "jobs", "GPU-h", "fingerprint"];

/// The report as a self-contained HTML page. `generated_at` (seconds since
/// the Unix epoch) is shown in the header when given.
pub fn html(reports: &[Report], generated_at: Option<u64>) -> String {
    let stacks: Vec<String> = reports.iter().map(|r| r.stack.clone()).collect();
    let lines = lines(reports);
    let mut out = String::from("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\n",
    );
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let names = stacks.iter().map(|s| escape(s)).collect::<Vec<_>>().join(", ");
    out.push_str(&format!("<title>Evaluation report: {names}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"));
    out.push_str("<h1>Evaluation report</h1>\n<p class=\"meta\">");
    let label = if stacks.len() == 1 { "Stack" } else { "Stacks" };
    let list = stacks.iter().map(|s| format!("<strong>{}</strong>", escape(s))).collect::<Vec<_>>().join(", ");
    out.push_str(&format!("{label}: {list}. "));
    let rows: usize = reports.iter().map(|r| r.rows.len()).sum();
    out.push_str(&format!(
        "{rows} score(s), {} unit(s) without scores.",
        reports.iter().map(|r| r.missing.len()).sum::<usize>()
    ));
    if let Some(t) = generated_at {
        out.push_str(&format!(" Generated {} by evalctl {}.", utc(t), env!("CARGO_PKG_VERSION")));
    }
    out.push_str("</p>\n");

    out.push_str("<h2>Scores</h2>\n");
    if lines.is_empty() {
        out.push_str("<p class=\"empty\">No scores yet: no unit of ");
        out.push_str(if stacks.len() == 1 { "the stack" } else { "these stacks" });
        out.push_str(" has written results.</p>\n");
    } else {
        chart_section(&mut out, &stacks, &lines);
        table(&mut out, &stacks, &lines);
    }
    missing(&mut out, reports);
    out.push_str("</body>\n</html>\n");
    out
}

fn chart_section(out: &mut String, stacks: &[String], lines: &[Line]) {
    let shown = &lines[..lines.len().min(MAX_CHART_GROUPS)];
    let groups: Vec<chart::Group> = shown
        .iter()
        .map(|l| chart::Group {
            label: label(l, lines),
            bars: l.cells.iter().map(|c| c.map(|r| chart::Bar { value: r.value, ci95: ci95(r) })).collect(),
        })
        .collect();
    out.push_str("<figure class=\"chart\">\n");
    match chart::svg(stacks, &groups) {
        // Inline in HTML the SVG needs no namespace (and the page then
        // names no URL at all).
        Ok(svg) => out.push_str(&svg.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1)),
        Err(e) => out.push_str(&format!("<p class=\"note\">{}</p>", escape(&e))),
    }
    out.push_str("</figure>\n");
    let odd = shown.iter().flat_map(|l| l.cells.iter().flatten()).filter(|r| !chart::plottable(r.value)).count();
    if odd > 0 {
        out.push_str(&format!(
            "<p class=\"note\">{odd} score(s) are not numbers or lie beyond ±{:e} and have no bar; the table has them.</p>\n",
            chart::MAX_ABS
        ));
    }
    if lines.len() > shown.len() {
        out.push_str(&format!(
            "<p class=\"note\">The chart shows the first {} of {} score rows; the table below has them all.</p>\n",
            shown.len(),
            lines.len()
        ));
    }
}

fn table(out: &mut String, stacks: &[String], lines: &[Line]) {
    out.push_str("<div class=\"scroll\">\n<table class=\"results\">\n<thead>\n<tr><th rowspan=\"2\">task</th><th rowspan=\"2\">metric</th><th rowspan=\"2\">score</th>");
    for (i, s) in stacks.iter().enumerate() {
        let (r, g, b) = chart::PALETTE[i % chart::PALETTE.len()];
        out.push_str(&format!(
            "<th class=\"stack\" colspan=\"{}\" style=\"border-top-color: #{r:02x}{g:02x}{b:02x}\">{}</th>",
            STACK_COLUMNS.len(),
            escape(s)
        ));
    }
    out.push_str("</tr>\n<tr>");
    for _ in stacks {
        for c in STACK_COLUMNS {
            out.push_str(&format!("<th>{c}</th>"));
        }
    }
    out.push_str("</tr>\n</thead>\n<tbody>\n");
    for line in lines {
        let level = line.cells.iter().flatten().next().map_or("task", |r| r.level);
        out.push_str(&format!("<tr><td>{}", escape(line.task)));
        if level != "task" {
            out.push_str(&format!(" <span class=\"level\">({})</span>", escape(level)));
        }
        out.push_str(&format!("</td><td>{}</td><td>{}</td>", escape(line.metric), escape(line.score)));
        for cell in &line.cells {
            match cell {
                None => {
                    out.push_str(&format!("<td class=\"none\" colspan=\"{}\">no such score</td>", STACK_COLUMNS.len()))
                }
                Some(r) => out.push_str(&cells(r)),
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n</div>\n");
}

/// A stack's cells of one row.
fn cells(r: &Row) -> String {
    let opt = |v: Option<String>| v.unwrap_or_default();
    let jobs = r.jobs.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    [
        format!("<td>{}</td>", escape(&r.unit)),
        format!("<td class=\"num\">{}</td>", num(r.value)),
        format!("<td class=\"num\">{}</td>", opt(r.stderr.map(num))),
        format!("<td class=\"num\">{}</td>", opt(ci95(r).map(|[l, h]| format!("[{}, {}]", num(l), num(h))))),
        format!("<td class=\"num\">{}</td>", opt(r.count.map(|n| n.to_string()))),
        format!("<td>{}</td>", escape(&r.state)),
        format!("<td>{}</td>", escape(&jobs)),
        format!("<td class=\"num\">{}</td>", opt(r.gpu_hours.map(|h| format!("{h:.2}")))),
        format!("<td><code>{}</code></td>", escape(&r.fingerprint)),
    ]
    .concat()
}

fn missing(out: &mut String, reports: &[Report]) {
    out.push_str("<h2>Units without scores</h2>\n");
    if reports.iter().all(|r| r.missing.is_empty()) {
        out.push_str("<p>None: every task unit has scores.</p>\n");
        return;
    }
    out.push_str("<table class=\"missing\">\n<thead><tr><th>stack</th><th>unit</th><th>state</th><th>why</th></tr></thead>\n<tbody>\n");
    for r in reports {
        for m in &r.missing {
            out.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                escape(&r.stack),
                escape(&m.unit),
                escape(&m.state),
                escape(&m.why)
            ));
        }
    }
    out.push_str("</tbody>\n</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::results::Missing;

    /// A row of a score (every other field fixed): new fields of `Row` are
    /// added here only.
    fn row(unit: &str, task: &str, metric: &str, value: f64, stderr: Option<f64>) -> Row {
        Row {
            unit: unit.into(),
            level: "task",
            task: task.into(),
            metric: metric.into(),
            score: metric.into(),
            value,
            stderr,
            ci95: stderr.map(|e| [value - 1.96 * e, value + 1.96 * e]),
            count: Some(250),
            state: "completed".into(),
            jobs: crate::jobid::jobs([41, 42]),
            elapsed_s: 3600,
            gpu_hours: Some(8.0),
            fingerprint: "0123456789abcdef".into(),
            current: true,
        }
    }

    fn report(stack: &str, rows: Vec<Row>, missing: Vec<Missing>) -> Report {
        Report { version: 1, stack: stack.into(), rows, missing }
    }

    fn count(haystack: &str, needle: &str) -> usize {
        haystack.matches(needle).count()
    }

    /// The chart's SVG in a page.
    fn svg(page: &str) -> &str {
        let start = page.find("<svg").expect("a chart");
        &page[start..start + page[start..].find("</svg>").expect("the chart ends")]
    }

    fn fill(stack: usize) -> String {
        let (r, g, b) = chart::PALETTE[stack];
        format!("fill=\"#{r:02X}{g:02X}{b:02X}\"")
    }

    fn two_stacks() -> Vec<Report> {
        let a = report(
            "llama-8b",
            vec![
                row("gsm8k", "gsm8k", "exact_match", 0.7331, Some(0.012)),
                row("mmlu", "mmlu", "acc", 0.6612, None),
                row("ifeval", "ifeval", "prompt_strict", 0.5123, Some(0.02)),
            ],
            vec![Missing { unit: "humaneval".into(), state: "running".into(), why: "no results.yml yet".into() }],
        );
        let b = report(
            "mistral-7b",
            vec![
                row("gsm8k", "gsm8k", "exact_match", 0.5524, Some(0.014)),
                row("mmlu", "mmlu", "acc", 0.6011, Some(0.004)),
            ],
            vec![],
        );
        vec![a, b]
    }

    #[test]
    fn every_score_and_stack_is_in_the_table_with_rows_matched_by_task() {
        let page = html(&two_stacks(), Some(1_700_000_000));
        for text in ["llama-8b", "mistral-7b", "0.7331", "0.5524", "0.6612", "0.6011", "0.5123", "[0.7096, 0.7566]"] {
            assert!(page.contains(text), "{text} missing:\n{page}");
        }
        assert!(page.contains("Generated 2023-11-14 22:13:20 UTC"), "{page}");
        // Three lines (gsm8k, mmlu, ifeval), each with both stacks' cells.
        let body = &page[page.find("<tbody>").unwrap()..page.find("</tbody>").unwrap()];
        assert_eq!(count(body, "<tr>"), 3, "{body}");
        let gsm8k = body.lines().find(|l| l.contains(">gsm8k<")).unwrap();
        assert!(gsm8k.contains("0.7331") && gsm8k.contains("0.5524"), "{gsm8k}");
        let ifeval = body.lines().find(|l| l.contains(">ifeval<")).unwrap();
        assert!(ifeval.contains("0.5123") && ifeval.contains("no such score"), "{ifeval}");
        // The unit without scores, with its stack, state and reason.
        assert!(
            page.contains("<tr><td>llama-8b</td><td>humaneval</td><td>running</td><td>no results.yml yet</td></tr>"),
            "{page}"
        );
        // Self-contained: the policy, and no address to load anything from.
        assert!(page.contains("content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\""));
        assert!(!page.contains("http://") && !page.contains("https://") && !page.contains("<script"), "{page}");
    }

    #[test]
    fn the_chart_has_one_bar_per_task_and_stack_and_error_bars_where_there_is_a_stderr() {
        let page = html(&two_stacks(), None);
        let svg = svg(&page);
        // Bars plus one legend swatch per stack.
        assert_eq!(count(svg, &fill(0)), 3 + 1, "{svg}");
        assert_eq!(count(svg, &fill(1)), 2 + 1, "{svg}");
        // Error bars: gsm8k and ifeval of the first stack, both of the second.
        let (r, g, b) = chart::ERROR_BAR;
        assert_eq!(count(svg, &format!("stroke=\"#{r:02X}{g:02X}{b:02X}\"")), 4, "{svg}");
        // Legend and axis labels.
        for text in ["llama-8b", "mistral-7b", "gsm8k", "ifeval", "score (error bars: 95% CI)"] {
            assert!(svg.contains(&format!(">\n{text}\n<")), "{text} missing:\n{svg}");
        }
        assert!(!page.contains("Generated"), "no time without one");
    }

    #[test]
    fn a_hostile_name_is_text_everywhere() {
        let evil = "<script>alert(1)</script>\"'&";
        let mut r = report(evil, vec![row(evil, evil, evil, 0.5, Some(0.1))], vec![]);
        r.rows[0].state = evil.into();
        r.rows[0].fingerprint = evil.into();
        r.missing.push(Missing { unit: evil.into(), state: evil.into(), why: evil.into() });
        let page = html(&[r], Some(0));
        assert!(!page.to_lowercase().contains("<script"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;"), "{page}");
        // In the chart too (the legend and the axis label), escaped by plotters.
        let svg = svg(&page);
        assert!(svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&apos;&amp;"), "{svg}");
        assert_eq!(count(svg, &fill(0)), 2, "{svg}");
        // Control characters are not passed on.
        let r = report("a\u{0}b\u{1b}[31m", vec![row("u", "t\u{7}", "m", 0.5, None)], vec![]);
        let page = html(&[r], None);
        assert!(!page.contains(['\u{0}', '\u{1b}', '\u{7}']), "{page:?}");
    }

    #[test]
    fn no_scores_is_a_page_that_says_so_without_a_chart() {
        let missing = Missing { unit: "gsm8k".into(), state: "pending".into(), why: "no results.yml yet".into() };
        let page = html(&[report("llama", vec![], vec![missing])], None);
        assert!(page.contains("No scores yet"), "{page}");
        assert!(!page.contains("<svg") && !page.contains("<table class=\"results\""), "{page}");
        assert!(page.contains("<td>gsm8k</td><td>pending</td>"), "{page}");
        let page = html(&[], None);
        assert!(page.contains("No scores yet") && page.contains("None: every task unit has scores."), "{page}");
    }

    #[test]
    fn many_rows_keep_the_chart_readable() {
        let rows: Vec<Row> = (0..MAX_CHART_GROUPS + 5)
            .map(|i| row(&format!("t{i}"), &format!("task-{i}-with-a-rather-long-name-that-goes-on"), "acc", 0.5, None))
            .collect();
        let page = html(&[report("s", rows, vec![])], None);
        assert_eq!(count(svg(&page), &fill(0)), MAX_CHART_GROUPS + 1);
        assert!(page.contains(&format!("the first {MAX_CHART_GROUPS} of {} score rows", MAX_CHART_GROUPS + 5)));
        assert_eq!(count(&page, "<tr><td>task-"), MAX_CHART_GROUPS + 5, "the table has every row");
        // Long labels are cut and turned.
        assert!(svg(&page).contains("rotate(90"), "{page}");
        assert!(svg(&page).contains("task-0-with-a-rather-long-name-…"), "{page}");
    }

    #[test]
    fn several_metrics_of_a_task_and_odd_values_get_their_own_labels() {
        let mut rows = vec![
            row("gsm8k", "gsm8k", "exact_match", 0.7, Some(0.01)),
            row("gsm8k", "gsm8k", "flexible", 0.8, None),
            row("gsm8k-cot", "gsm8k", "exact_match", -0.5, Some(f64::NAN)),
            row("ppl", "ppl", "perplexity", f64::INFINITY, None),
        ];
        rows[1].score = "strict".into();
        let page = html(&[report("s", rows, vec![])], None);
        let svg_of = svg;
        let svg = svg(&page);
        for label in ["gsm8k · exact_match", "gsm8k · flexible strict", "gsm8k · exact_match #2", "ppl"] {
            assert!(svg.contains(&format!(">\n{label}\n<")), "{label} missing:\n{svg}");
        }
        // The infinite score has no bar; the NaN interval no error bar.
        assert_eq!(count(svg, &fill(0)), 3 + 1, "{svg}");
        assert!(page.contains(">inf<") && page.contains("-0.5000"), "{page}");
        // Extreme values: a chart all the same, no panic.
        let rows = vec![
            row("a", "a", "m", f64::MAX, Some(f64::MAX)),
            row("b", "b", "m", -f64::MAX, Some(1e300)),
            row("c", "c", "m", 0.0, None),
            row("d", "d", "m", 1e15, Some(1e14)),
            row("e", "e", "m", -1e15, None),
            row("f", "f", "m", 1e-300, Some(1e-300)),
        ];
        let page = html(&[report("s", rows, vec![])], None);
        assert_eq!(count(svg_of(&page), &fill(0)), 4 + 1, "{page}");
        assert!(page.contains("2 score(s) are not numbers or lie beyond ±1e15 and have no bar"), "{page}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, failure_persistence: None, ..Default::default() })]
        /// Any names and numbers: a whole page, no markup from the input.
        #[test]
        fn any_input_renders_a_page_without_markup_from_it(
            names in proptest::collection::vec("\\PC{0,12}|<script>|<!--|]]>|\"'&", 3),
            values in proptest::collection::vec((proptest::num::f64::ANY, proptest::option::of(proptest::num::f64::ANY)), 0..6),
        ) {
            let rows = values.iter().enumerate().map(|(i, &(v, e))| row(&names[i % 3], &names[(i + 1) % 3], &names[2], v, e)).collect();
            let page = html(&[report(&names[0], rows, vec![]), report(&names[1], vec![], vec![])], Some(0));
            proptest::prop_assert!(page.ends_with("</html>\n"));
            let lower = page.to_lowercase();
            proptest::prop_assert!(!lower.contains("<script") && !lower.contains("<!--") && !lower.contains("]]>"));
            proptest::prop_assert!(page.matches("<svg").count() <= 1);
        }
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(4_102_444_799), "2099-12-31 23:59:59 UTC");
        assert!(utc(u64::MAX).ends_with(" UTC"));
    }
}
