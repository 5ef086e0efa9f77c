//! Markdown output: tables, and appending a dated section to `docs/benchmarks.md` (written to a temporary file and
//! renamed, so an interrupted run never leaves the record half-written; sections from other benchmarks are kept).
use anyhow::{Context, Result};
use std::path::Path;

pub fn table(header: &[&str], align_right: &[bool], rows: &[Vec<String>]) -> String {
    let mut s = format!("| {} |\n|", header.join(" | "));
    for (i, _) in header.iter().enumerate() {
        s += if align_right.get(i).copied().unwrap_or(false) { "---:|" } else { "---|" };
    }
    s.push('\n');
    for r in rows {
        s += &format!("| {} |\n", r.join(" | "));
    }
    s
}

pub fn today() -> String {
    trainer::run::now().1[..10].to_string()
}

pub fn append(record: &Path, section: &str) -> Result<()> {
    let old = std::fs::read_to_string(record).unwrap_or_else(|_| {
        "# Benchmarks\n\nSections are appended by `cargo xtask bench <name>`.\n".to_string()
    });
    let mut text = old.trim_end().to_string();
    text += "\n\n";
    text += section.trim_end();
    text.push('\n');
    if let Some(dir) = record.parent() {
        std::fs::create_dir_all(dir)?;
    }
    trainer::run::write_atomic(record, text.as_bytes())
        .with_context(|| format!("appending to {}", record.display()))?;
    eprintln!("appended to {}", record.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn markdown_table() {
        let t = super::table(&["a", "b"], &[false, true], &[vec!["x".into(), "1".into()]]);
        assert_eq!(t, "| a | b |\n|---|---:|\n| x | 1 |\n");
    }
}
