//! The report as a browser shows it: pages written by `report::html` are
//! opened in headless Chromium (the Debian package `chromium`, which
//! `scripts/test.sh` installs); the screenshot must show each stack's bars
//! in its colour (and a page without scores none of them), and the DOM the
//! browser parsed must hold the chart, the table rows, and a hostile task
//! name as text. Without Chromium the tests fail: they never skip.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use evalctl::ops::results::{Missing, Report, Row};
use evalctl::report::{self, chart::PALETTE};

mod browser;
use browser::chromium;

/// A row of a score (every other field fixed): new fields of `Row` are
/// added here only.
fn row(unit: &str, task: &str, value: f64, stderr: Option<f64>) -> Row {
    Row {
        unit: unit.into(),
        level: "task",
        task: task.into(),
        metric: "acc".into(),
        score: "acc".into(),
        value,
        stderr,
        ci95: stderr.map(|e| [value - 1.96 * e, value + 1.96 * e]),
        count: Some(500),
        state: "completed".into(),
        jobs: evalctl::jobid::jobs([7, 8]),
        elapsed_s: 1800,
        gpu_hours: Some(4.0),
        fingerprint: "fedcba9876543210".into(),
        current: true,
    }
}

const HOSTILE: &str = "<script>alert(1)</script><img src=x onerror=alert(2)>";

fn two_stacks() -> Vec<Report> {
    let tasks = ["gsm8k", "mmlu", "arc_challenge", HOSTILE];
    let a = Report {
        version: 1,
        stack: "llama-8b".into(),
        rows: tasks.iter().zip([0.73, 0.66, 0.52, 0.81]).map(|(t, v)| row(t, t, v, Some(0.015))).collect(),
        missing: vec![Missing { unit: "humaneval".into(), state: "running".into(), why: "no results.yml yet".into() }],
    };
    let b = Report {
        version: 1,
        stack: "mistral-7b".into(),
        rows: tasks.iter().zip([0.55, 0.60, 0.47, 0.69]).map(|(t, v)| row(t, t, v, None)).collect(),
        missing: vec![],
    };
    vec![a, b]
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A fresh folder for one test's files.
fn scratch(name: &str) -> PathBuf {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("evalctl-report-browser-{}-{n}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// The page's screenshot at 1200×1600, decoded: its pixels as RGB.
fn screenshot(dir: &Path, page: &Path) -> Vec<[u8; 3]> {
    let png = dir.join(format!("{}.png", page.file_stem().unwrap().to_string_lossy()));
    chromium(dir, page, &[format!("--screenshot={}", png.display()), "--window-size=1200,1600".into()]);
    let file = std::fs::File::open(&png).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", png.display()));
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("a size")];
    let info = reader.next_frame(&mut buf).expect("the PNG's pixels");
    assert_eq!((info.width, info.height), (1200, 1600), "the window's size");
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    buf[..info.buffer_size()].chunks_exact(channels).map(|p| [p[0], p[1], p[2]]).collect()
}

/// How many pixels are exactly a stack's colour.
fn pixels_of(pixels: &[[u8; 3]], stack: usize) -> usize {
    let (r, g, b) = PALETTE[stack];
    pixels.iter().filter(|p| **p == [r, g, b]).count()
}

fn write_page(dir: &Path, name: &str, html: &str) -> PathBuf {
    let page = dir.join(format!("{name}.html"));
    std::fs::write(&page, html).expect("write the page");
    page
}

#[test]
fn the_screenshot_shows_each_stacks_bars_and_a_page_without_scores_none() {
    let dir = scratch("screenshot");
    let chart = write_page(&dir, "chart", &report::html(&two_stacks(), Some(1_700_000_000)));
    let pixels = screenshot(&dir, &chart);
    let (a, b) = (pixels_of(&pixels, 0), pixels_of(&pixels, 1));
    assert!(a > 500 && b > 500, "bars of both stacks on screen: {a} and {b} pixels of their colours");

    let empty = Report { version: 1, stack: "llama-8b".into(), rows: vec![], missing: vec![] };
    let none = write_page(&dir, "none", &report::html(&[empty], Some(1_700_000_000)));
    let pixels = screenshot(&dir, &none);
    let (a, b) = (pixels_of(&pixels, 0), pixels_of(&pixels, 1));
    assert!(a < 50 && b < 50, "no chart, no bar colours: {a} and {b} pixels");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_browser_parses_the_chart_the_table_and_a_hostile_name_as_text() {
    let dir = scratch("dom");
    let page = write_page(&dir, "report", &report::html(&two_stacks(), Some(1_700_000_000)));
    let dom = chromium(&dir, &page, &["--dump-dom".into()]);
    assert_eq!(dom.matches("<svg").count(), 1, "{dom}");
    // The bars, as rects of each stack's colour (plus its legend swatch).
    for (stack, bars) in [(0, 4), (1, 4)] {
        let (r, g, b) = PALETTE[stack];
        let fill = format!("fill=\"#{r:02X}{g:02X}{b:02X}\"");
        let rects = dom.split("<rect").skip(1).filter(|r| r.split('>').next().unwrap().contains(&fill)).count();
        assert_eq!(rects, bars + 1, "stack {stack}: {dom}");
    }
    // The results table: a row per task, and the units without scores.
    let results = &dom[dom.find("<table class=\"results\">").expect("the results table")..];
    let body = &results[results.find("<tbody>").unwrap()..results.find("</tbody>").unwrap()];
    assert_eq!(body.matches("<tr>").count(), 4, "{body}");
    assert!(dom.contains("<td>humaneval</td><td>running</td>"), "{dom}");
    // The hostile task name is text (table and chart), never an element.
    assert!(!dom.contains("<script") && !dom.contains("<img"), "{dom}");
    assert!(dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;"), "{dom}");
    let _ = std::fs::remove_dir_all(&dir);
}
