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

/// Two profiles by block side by side: blocks in our order, then any only the reference has, each with its share
/// of its side's total, and a total row. Same-named blocks are summed first (e.g. every decoder layer into one).
pub fn profile_table(ours: &[(String, f64)], theirs: &[(String, f64)], reference: &str) -> String {
    let fold = |v: &[(String, f64)]| -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> = Vec::new();
        for (k, s) in v {
            match out.iter_mut().find(|(n, _)| n == k) {
                Some((_, x)) => *x += s,
                None => out.push((k.clone(), *s)),
            }
        }
        out
    };
    let (r, h) = (fold(ours), fold(theirs));
    let mut names: Vec<&String> = r.iter().map(|(k, _)| k).collect();
    names.extend(h.iter().map(|(k, _)| k).filter(|k| !r.iter().any(|(n, _)| n == *k)));
    let get = |v: &[(String, f64)], k: &str| v.iter().find(|(n, _)| n == k).map(|(_, s)| *s);
    let ms = |x: Option<f64>| x.map_or("-".into(), |s| format!("{:.1} ms", s * 1e3));
    let (rt, ht): (f64, f64) = (r.iter().map(|x| x.1).sum(), h.iter().map(|x| x.1).sum());
    let share = |x: Option<f64>, total: f64| {
        x.filter(|_| total > 0.0).map_or("-".into(), |v| format!("{:.0}%", 100.0 * v / total))
    };
    let mut rows: Vec<Vec<String>> = names
        .iter()
        .map(|k| {
            let (a, b) = (get(&r, k), get(&h, k));
            vec![k.to_string(), ms(a), share(a, rt), ms(b), share(b, ht)]
        })
        .collect();
    rows.push(vec!["**total**".into(), ms(Some(rt)), "100%".into(), ms(Some(ht)), "100%".into()]);
    table(&["block", "ours", "share", reference, "share"], &[false, true, true, true, true], &rows)
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

    #[test]
    fn profile_tables_fold_align_and_total() {
        let ours =
            [("a".to_string(), 0.003), ("layer".to_string(), 0.001), ("layer".to_string(), 0.001)];
        let theirs = [("layer".to_string(), 0.006), ("b".to_string(), 0.002)];
        let t = super::profile_table(&ours, &theirs, "ref");
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "| block | ours | share | ref | share |");
        assert_eq!(lines[2], "| a | 3.0 ms | 60% | - | - |");
        assert_eq!(lines[3], "| layer | 2.0 ms | 40% | 6.0 ms | 75% |");
        assert_eq!(lines[4], "| b | - | - | 2.0 ms | 25% |");
        assert_eq!(lines[5], "| **total** | 5.0 ms | 100% | 8.0 ms | 100% |");
    }
}
