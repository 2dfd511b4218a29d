//! The report's chart: one group of bars per score row (task × metric ×
//! score), one bar per stack side by side, each with its 95% confidence
//! interval as an error bar; drawn with `plotters`' SVG backend so the
//! page embeds it as inline SVG and needs no image file, script or font.
//!
//! `plotters` is built without its `ttf` feature (no system font
//! libraries): text is laid out by an estimate of its width and written as
//! SVG `<text>` in the browser's sans-serif font. The SVG backend escapes
//! every text and attribute it writes (`<`, `>`, `&`, quotes), so names are
//! handed to it as they are; the report's tests check a hostile name.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Bar colours, one per stack in the order given (cycled past ten): the
/// Tableau 10 palette, distinct for most forms of colour blindness.
pub const PALETTE: [(u8, u8, u8); 10] = [
    (0x4e, 0x79, 0xa7),
    (0xf2, 0x8e, 0x2b),
    (0xe1, 0x57, 0x59),
    (0x76, 0xb7, 0xb2),
    (0x59, 0xa1, 0x4f),
    (0xed, 0xc9, 0x48),
    (0xb0, 0x7a, 0xa1),
    (0xff, 0x9d, 0xa7),
    (0x9c, 0x75, 0x5f),
    (0xba, 0xb0, 0xac),
];

/// The colour of error bars (used for nothing else, so they can be counted).
pub const ERROR_BAR: (u8, u8, u8) = (0x22, 0x22, 0x22);

/// The widest label drawn under a group; longer ones end in `…`.
const MAX_LABEL: usize = 32;
/// The widest stack name in the legend.
const MAX_LEGEND: usize = 40;
/// Font sizes as `plotters` takes them (the SVG gets them divided by 1.24).
const LABEL_FONT: f64 = 16.0;
const LEGEND_FONT: f64 = 18.0;
/// The width of a label's character, about, in pixels.
const CHAR_W: u32 = 7;
/// The width of a group in x coordinates.
const UNIT: i32 = 1000;

/// One bar: a score and its 95% confidence interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bar {
    pub value: f64,
    pub ci95: Option<[f64; 2]>,
}

/// One group of bars: a label and, per stack, its bar (none where the
/// stack has no such score).
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub label: String,
    pub bars: Vec<Option<Bar>>,
}

/// The largest magnitude drawn: a bar or interval end past it (or not a
/// number) is left out, as would be one so far from the others that the
/// others could not be seen. Past it plotters' axis arithmetic is no
/// longer finite.
pub const MAX_ABS: f64 = 1e15;

/// Whether a value can be drawn.
pub fn plottable(v: f64) -> bool {
    v.abs() <= MAX_ABS
}

fn color(stack: usize) -> RGBColor {
    let (r, g, b) = PALETTE[stack % PALETTE.len()];
    RGBColor(r, g, b)
}

/// `s` cut to `max` characters (the last one `…`), control characters
/// replaced.
fn shorten(s: &str, max: usize) -> String {
    let clean: String = s.chars().map(|c| if c.is_control() { '\u{fffd}' } else { c }).collect();
    if clean.chars().count() <= max {
        return clean;
    }
    clean.chars().take(max - 1).chain(['…']).collect()
}

/// The y range: zero and every finite value and interval end, with room
/// above the highest.
fn y_range(groups: &[Group]) -> (f64, f64) {
    let ends = groups.iter().flat_map(|g| g.bars.iter().flatten()).flat_map(|b| {
        let [lo, hi] = b.ci95.unwrap_or([b.value, b.value]);
        [b.value, lo, hi]
    });
    let (lo, hi) = ends.filter(|v| plottable(*v)).fold((0f64, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let span = if hi - lo > 1e-12 { hi - lo } else { 1.0 };
    (if lo < 0.0 { lo - span * 0.05 } else { lo }, hi + span * 0.08)
}

/// The chart as an SVG document: `stacks` name the legend's entries (and
/// the bars' order in each group).
pub fn svg(stacks: &[String], groups: &[Group]) -> Result<String, String> {
    let n = groups.len().max(1);
    let per_group = 18 * stacks.len().max(1) as u32 + 22;
    let width = (110 + per_group * n as u32).clamp(960, 6000);
    // The room a group has once the chart is at least 960 wide.
    let room = (width - 110) / n as u32;
    let labels: Vec<String> = groups.iter().map(|g| shorten(&g.label, MAX_LABEL)).collect();
    let widest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(1) as u32;
    // Labels wider than their group are turned to read downwards.
    let rotate = widest * CHAR_W > room;
    let label_area = if rotate { widest * CHAR_W + 10 } else { 28 };
    let legend_names: Vec<String> = stacks.iter().map(|s| shorten(s, MAX_LEGEND)).collect();
    // The legend, above the chart, wraps into rows of entries.
    let mut rows = vec![vec![]];
    let mut x = 0;
    for (i, name) in legend_names.iter().enumerate() {
        let w = 34 + 9 * name.chars().count() as u32;
        if x + w > width - 40 && x > 0 {
            rows.push(vec![]);
            x = 0;
        }
        rows.last_mut().expect("one row at least").push((i, 20 + x as i32));
        x += w;
    }
    let legend_h = 12 + 22 * rows.len() as u32;
    let height = legend_h + 360 + label_area + 40;

    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (width, height)).into_drawing_area();
        let e = |e: DrawingAreaErrorKind<_>| format!("cannot draw the chart: {e}");
        root.fill(&WHITE).map_err(e)?;
        let (legend, plot) = root.split_vertically(legend_h);
        let font = ("sans-serif", LEGEND_FONT).into_font();
        for (r, entries) in rows.iter().enumerate() {
            let y = 10 + 22 * r as i32;
            for &(i, x) in entries {
                legend.draw(&Rectangle::new([(x, y + 2), (x + 18, y + 16)], color(i).filled())).map_err(e)?;
                let style = font.color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center));
                legend.draw(&Text::new(legend_names[i].clone(), (x + 24, y + 9), style)).map_err(e)?;
            }
        }

        let (lo, hi) = y_range(groups);
        // x: group i spans [i * UNIT, (i + 1) * UNIT), labelled at its centre.
        let centres: Vec<i32> = (0..groups.len() as i32).map(|i| i * UNIT + UNIT / 2).collect();
        let mut chart = ChartBuilder::on(&plot)
            .margin_left(10)
            .margin_right(20)
            .margin_top(10)
            .x_label_area_size(label_area + 30)
            .y_label_area_size(70)
            .build_cartesian_2d((0..n as i32 * UNIT).with_key_points(centres), lo..hi)
            .map_err(|e| format!("cannot draw the chart: {e}"))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(TRANSPARENT)
            // Ticks at the groups' centres; their labels are drawn below.
            .x_labels(groups.len())
            .x_label_formatter(&|_| String::new())
            .y_label_style(("sans-serif", LABEL_FONT))
            .y_desc("score (error bars: 95% CI)")
            .x_desc("task · metric")
            .axis_desc_style(("sans-serif", LABEL_FONT))
            .draw()
            .map_err(|e| format!("cannot draw the chart: {e}"))?;

        let bar_w = UNIT * 8 / 10 / stacks.len().max(1) as i32;
        for (s, _) in stacks.iter().enumerate() {
            let bars = groups.iter().enumerate().filter_map(|(g, group)| {
                let bar = group.bars.get(s).copied().flatten().filter(|b| plottable(b.value))?;
                let x0 = g as i32 * UNIT + UNIT / 10 + bar_w * s as i32;
                Some((x0, bar))
            });
            let shapes: Vec<_> = bars.clone().map(|(x0, b)| (x0, b, color(s))).collect();
            chart
                .draw_series(shapes.iter().map(|&(x0, b, c)| {
                    Rectangle::new([(x0 + bar_w / 16, 0.0), (x0 + bar_w * 15 / 16, b.value)], c.filled())
                }))
                .map_err(|e| format!("cannot draw the chart: {e}"))?;
            let (er, eg, eb) = ERROR_BAR;
            let whiskers = bars.filter_map(|(x0, b)| {
                let [l, h] = b.ci95.filter(|[l, h]| plottable(*l) && plottable(*h))?;
                let (c, half) = (x0 + bar_w / 2, bar_w / 5);
                let points = vec![(c - half, l), (c + half, l), (c, l), (c, h), (c - half, h), (c + half, h)];
                Some(PathElement::new(points, RGBColor(er, eg, eb).stroke_width(2)))
            });
            chart.draw_series(whiskers).map_err(|e| format!("cannot draw the chart: {e}"))?;
        }
        // The groups' labels, under their ticks: across, or turned to read
        // downwards from the tick.
        let (lo, _) = y_range(groups);
        for (i, label) in labels.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(i as i32 * UNIT + UNIT / 2, lo));
            let font = ("sans-serif", LABEL_FONT).into_font().color(&BLACK);
            let (font, pos) = if rotate {
                (font.transform(FontTransform::Rotate90), Pos::new(HPos::Left, VPos::Center))
            } else {
                (font, Pos::new(HPos::Center, VPos::Top))
            };
            root.draw(&Text::new(label.clone(), (x, y + 10), font.pos(pos))).map_err(e)?;
        }
        root.present().map_err(e)?;
    }
    Ok(out)
}
