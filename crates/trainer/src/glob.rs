//! Glob patterns over dotted parameter names (big_vision's trainable masks are the same idea with regexes):
//! `*` matches within one name component, `**` across components, `?` one character, `{a,b}` alternatives.
//! `language_model.model.layers.*.self_attn.{q,k,v,o}_proj` names the Gemma attention projections of every layer.

/// Whether `name` matches `pattern` (whole name).
pub fn matches(pattern: &str, name: &str) -> bool {
    expand(pattern).iter().any(|p| match_from(p.as_bytes(), name.as_bytes()))
}

/// `{a,b}` alternatives expanded into plain patterns (nesting is not supported; not needed for parameter names).
fn expand(pattern: &str) -> Vec<String> {
    match (pattern.find('{'), pattern.find('}')) {
        (Some(open), Some(close)) if close > open => {
            let (head, tail) = (&pattern[..open], &pattern[close + 1..]);
            pattern[open + 1..close]
                .split(',')
                .flat_map(|alt| expand(&format!("{head}{alt}{tail}")))
                .collect()
        }
        _ => vec![pattern.to_string()],
    }
}

fn match_from(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') if p.get(1) == Some(&b'*') => {
            let rest = &p[2..];
            (0..=s.len()).any(|i| match_from(rest, &s[i..]))
        }
        Some(b'*') => {
            let rest = &p[1..];
            let limit = s.iter().position(|&c| c == b'.').unwrap_or(s.len());
            (0..=limit).any(|i| match_from(rest, &s[i..]))
        }
        Some(b'?') => !s.is_empty() && s[0] != b'.' && match_from(&p[1..], &s[1..]),
        Some(&c) => s.first() == Some(&c) && match_from(&p[1..], &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn components_and_alternatives() {
        let q = "language_model.model.layers.3.self_attn.q_proj.weight";
        assert!(matches(
            "language_model.model.layers.*.self_attn.*",
            "language_model.model.layers.3.self_attn.q_proj"
        ));
        assert!(
            !matches("language_model.model.layers.*.self_attn.*", q),
            "* stays within a component"
        );
        assert!(matches("language_model.model.layers.*.self_attn.**", q));
        assert!(matches("language_model.**", q));
        assert!(matches("**", q));
        assert!(matches(
            "language_model.model.layers.*.self_attn.{q,k,v,o}_proj",
            "language_model.model.layers.0.self_attn.o_proj"
        ));
        assert!(!matches(
            "language_model.model.layers.*.self_attn.{q,k,v,o}_proj",
            "language_model.model.layers.0.mlp.up_proj"
        ));
        assert!(!matches("vision_tower.**", q));
        assert!(matches(
            "language_model.model.layers.1?.**",
            "language_model.model.layers.17.mlp.up_proj.weight"
        ));
        assert!(!matches(
            "language_model.model.layers.1?.**",
            "language_model.model.layers.1.mlp.up_proj.weight"
        ));
    }
}
