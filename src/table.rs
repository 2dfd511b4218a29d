//! Plain-text tables for people (`tasks`, `status`): columns padded to
//! their widest cell in characters, two spaces apart, no trailing blanks;
//! and [`markdown_text`], the one way text enters a Markdown table or list.

/// Text for a Markdown table cell or list item (PR comments): no HTML (`&`,
/// `<`, `>` as entities), `|` escaped, no line break.
pub fn markdown_text(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('|', "\\|").replace(['\n', '\r'], " ")
}

pub fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut width = header.map(|h| h.chars().count());
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; N]| {
        let l: Vec<String> = cells.iter().zip(width).map(|(c, w)| format!("{c:w$}")).collect();
        out.push_str(l.join("  ").trim_end());
        out.push('\n');
    };
    line(header);
    for r in rows {
        line(std::array::from_fn(|i| r[i].as_str()));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_align_by_characters() {
        let t = super::table(["A", "B"], &[["é".into(), "x".into()], ["long".into(), String::new()]]);
        assert_eq!(t, "A     B\né     x\nlong\n");
    }
}
