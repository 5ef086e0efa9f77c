//! A small table model rendered three ways: aligned plain text (terminal), Markdown (compare.md) and HTML.

use crate::html::escape;

/// A table of preformatted cells. Numeric columns are right-aligned.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// Per column: right-align (numbers).
    pub numeric: Vec<bool>,
}

impl Table {
    fn right(&self, col: usize) -> bool {
        self.numeric.get(col).copied().unwrap_or(false)
    }

    fn widths(&self) -> Vec<usize> {
        let mut w: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if i >= w.len() {
                    w.push(0);
                }
                w[i] = w[i].max(cell.chars().count());
            }
        }
        w
    }

    /// Columns padded with spaces, two spaces apart, a rule under the header.
    pub fn to_text(&self) -> String {
        let widths = self.widths();
        let line = |cells: &[String]| -> String {
            let mut out = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = cells.get(i).map(String::as_str).unwrap_or("");
                let pad = " ".repeat(width - cell.chars().count());
                if i > 0 {
                    out.push_str("  ");
                }
                if self.right(i) {
                    out.push_str(&pad);
                    out.push_str(cell);
                } else {
                    out.push_str(cell);
                    out.push_str(&pad);
                }
            }
            out.trim_end().to_string()
        };
        let mut out = line(&self.header);
        out.push('\n');
        let total = widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1);
        out.push_str(&"-".repeat(total));
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row));
            out.push('\n');
        }
        out
    }

    /// A GitHub-flavoured Markdown table (`|` in cells escaped).
    pub fn to_markdown(&self) -> String {
        let cell = |s: &str| s.replace('|', "\\|");
        let mut out = String::from("|");
        for h in &self.header {
            out.push_str(&format!(" {} |", cell(h)));
        }
        out.push_str("\n|");
        for i in 0..self.header.len() {
            out.push_str(if self.right(i) { "---:|" } else { "---|" });
        }
        out.push('\n');
        for row in &self.rows {
            out.push('|');
            for i in 0..self.header.len() {
                out.push_str(&format!(" {} |", cell(row.get(i).map(String::as_str).unwrap_or(""))));
            }
            out.push('\n');
        }
        out
    }

    /// An HTML `<table>` with every cell escaped; numeric columns carry `class="num"`.
    pub fn to_html(&self, class: &str) -> String {
        let mut out = format!("<table class=\"{}\">\n<thead><tr>", escape(class));
        for (i, h) in self.header.iter().enumerate() {
            out.push_str(&format!("<th{}>{}</th>", self.align(i), escape(h)));
        }
        out.push_str("</tr></thead>\n<tbody>\n");
        for row in &self.rows {
            out.push_str("<tr>");
            for (i, c) in row.iter().enumerate() {
                out.push_str(&format!("<td{}>{}</td>", self.align(i), escape(c)));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody>\n</table>\n");
        out
    }

    fn align(&self, col: usize) -> &'static str {
        if self.right(col) {
            " class=\"num\""
        } else {
            ""
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        Table {
            header: vec!["run".into(), "CIDEr".into()],
            rows: vec![
                vec!["a|b".into(), "5.00".into()],
                vec!["long name".into(), "123.40".into()],
            ],
            numeric: vec![false, true],
        }
    }

    #[test]
    fn text_is_aligned() {
        assert_eq!(
            sample().to_text(),
            "run         CIDEr\n-----------------\na|b          5.00\nlong name  123.40\n"
        );
    }

    #[test]
    fn markdown_escapes_pipes() {
        assert_eq!(
            sample().to_markdown(),
            "| run | CIDEr |\n|---|---:|\n| a\\|b | 5.00 |\n| long name | 123.40 |\n"
        );
    }

    #[test]
    fn html_escapes() {
        let mut t = sample();
        t.rows[0][0] = "<b>&".into();
        let html = t.to_html("metrics");
        assert!(html.contains("<td>&lt;b&gt;&amp;</td>"), "{html}");
        assert!(html.contains("<td class=\"num\">123.40</td>"), "{html}");
    }
}
