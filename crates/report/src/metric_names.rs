//! Caption-metric names as pycocoevalcap (and the metrics crate) spell them, in the order papers print them.

/// The usual column order; names not listed here follow in first-seen order.
const CANONICAL: &[&str] = &[
    "Bleu_1",
    "Bleu_2",
    "Bleu_3",
    "Bleu_4",
    "METEOR",
    "METEOR (approx)",
    "ROUGE_L",
    "CIDEr",
    "CIDEr (external df)",
    "SPICE",
];

/// Deduplicates `names` and orders them canonically.
pub fn ordered<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut seen: Vec<&str> = Vec::new();
    for n in names {
        if !seen.contains(&n) {
            seen.push(n);
        }
    }
    let rank = |n: &str| CANONICAL.iter().position(|c| *c == n).unwrap_or(CANONICAL.len());
    // A stable sort keeps unknown names in first-seen order after the known ones.
    seen.sort_by_key(|n| rank(n));
    seen.into_iter().map(str::to_string).collect()
}

/// Finds `wanted` among `available`: exactly, else ignoring case, `_`, `-` and spaces ("cider", "bleu-4").
pub fn resolve<'a>(wanted: &str, available: &'a [String]) -> Option<&'a str> {
    if let Some(n) = available.iter().find(|n| *n == wanted) {
        return Some(n);
    }
    let fold =
        |s: &str| s.chars().filter(|c| c.is_alphanumeric()).collect::<String>().to_lowercase();
    let w = fold(wanted);
    available.iter().find(|n| fold(n) == w).map(String::as_str)
}

/// A file-name-safe form: "METEOR (approx)" → "meteor-approx".
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        out.push_str("metric");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_order_then_first_seen() {
        let got =
            ordered(["zeta", "CIDEr", "Bleu_4", "alpha", "Bleu_1", "CIDEr", "METEOR (approx)"]);
        assert_eq!(got, ["Bleu_1", "Bleu_4", "METEOR (approx)", "CIDEr", "zeta", "alpha"]);
    }

    #[test]
    fn resolve_is_forgiving_but_exact_first() {
        let avail: Vec<String> = ["Bleu_4", "CIDEr", "ROUGE_L"].map(String::from).to_vec();
        assert_eq!(resolve("CIDEr", &avail), Some("CIDEr"));
        assert_eq!(resolve("cider", &avail), Some("CIDEr"));
        assert_eq!(resolve("bleu-4", &avail), Some("Bleu_4"));
        assert_eq!(resolve("SPICE", &avail), None);
    }

    #[test]
    fn slugs() {
        assert_eq!(slug("METEOR (approx)"), "meteor-approx");
        assert_eq!(slug("Bleu_4"), "bleu-4");
        assert_eq!(slug("((("), "metric");
    }
}
