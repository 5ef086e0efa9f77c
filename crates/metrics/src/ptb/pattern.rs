//! A tiny regular-expression engine with JFlex's matching semantics, enough to state the PTB lexer's
//! rules the way `PTBLexer.flex` writes them.
//!
//! A pattern reports *every* position where a match starting at a given position can end; the lexer
//! needs all of them to apply trailing context (`r1/r2`) and the longest-match rule exactly as JFlex
//! does. Literals are case-insensitive (the lexer is `%caseless`), character classes are not (JFlex's
//! caseless mode "does not expand inside character classes"), which several rules rely on.

use std::sync::Arc;

/// A character class.
pub type Class = Arc<dyn Fn(char) -> bool + Send + Sync>;

#[derive(Clone)]
pub enum Pattern {
    Class(Class),
    /// A case-insensitive literal (ASCII letters fold; other characters match exactly).
    Lit(Vec<char>),
    Seq(Vec<Pattern>),
    Alt(Vec<Pattern>),
    /// `min..=max` repetitions; `max == u32::MAX` means unbounded.
    Rep(Box<Pattern>, u32, u32),
}

pub fn class(f: impl Fn(char) -> bool + Send + Sync + 'static) -> Pattern {
    Pattern::Class(Arc::new(f))
}

/// A class listing characters and inclusive ranges, e.g. `set("-_", &[('\u{2010}', '\u{2011}')])`.
pub fn set(chars: &'static str, ranges: &'static [(char, char)]) -> Pattern {
    class(move |c| chars.contains(c) || ranges.iter().any(|&(a, b)| (a..=b).contains(&c)))
}

/// The complement of [`set`].
pub fn not_set(chars: &'static str, ranges: &'static [(char, char)]) -> Pattern {
    class(move |c| !(chars.contains(c) || ranges.iter().any(|&(a, b)| (a..=b).contains(&c))))
}

pub fn lit(s: &str) -> Pattern {
    Pattern::Lit(s.chars().collect())
}

pub fn seq(parts: Vec<Pattern>) -> Pattern {
    Pattern::Seq(parts)
}

pub fn alt(parts: Vec<Pattern>) -> Pattern {
    Pattern::Alt(parts)
}

/// Alternation of case-insensitive literals.
pub fn words(list: &[&str]) -> Pattern {
    alt(list.iter().map(|w| lit(w)).collect())
}

pub fn rep(p: Pattern, min: u32, max: u32) -> Pattern {
    Pattern::Rep(Box::new(p), min, max)
}

pub fn star(p: Pattern) -> Pattern {
    rep(p, 0, u32::MAX)
}

pub fn plus(p: Pattern) -> Pattern {
    rep(p, 1, u32::MAX)
}

pub fn opt(p: Pattern) -> Pattern {
    rep(p, 0, 1)
}

fn fold_eq(a: char, b: char) -> bool {
    a == b || (a.is_ascii() && b.is_ascii() && a.eq_ignore_ascii_case(&b))
}

impl Pattern {
    /// Whether the pattern matches the empty string.
    pub fn nullable(&self) -> bool {
        match self {
            Pattern::Class(_) => false,
            Pattern::Lit(l) => l.is_empty(),
            Pattern::Seq(ps) => ps.iter().all(Pattern::nullable),
            Pattern::Alt(ps) => ps.iter().any(Pattern::nullable),
            Pattern::Rep(p, min, _) => *min == 0 || p.nullable(),
        }
    }

    /// Whether some match can begin with `c` (used to skip rules quickly).
    pub fn can_start(&self, c: char) -> bool {
        match self {
            Pattern::Class(f) => f(c),
            Pattern::Lit(l) => l.first().is_some_and(|&x| fold_eq(x, c)),
            Pattern::Seq(ps) => {
                for p in ps {
                    if p.can_start(c) {
                        return true;
                    }
                    if !p.nullable() {
                        return false;
                    }
                }
                false
            }
            Pattern::Alt(ps) => ps.iter().any(|p| p.can_start(c)),
            Pattern::Rep(p, _, max) => *max > 0 && p.can_start(c),
        }
    }

    /// Appends to `out` every end position of a match of `self` starting at `at` (unsorted, may repeat).
    pub fn ends(&self, s: &[char], at: usize, out: &mut Vec<usize>) {
        match self {
            Pattern::Class(f) => {
                if at < s.len() && f(s[at]) {
                    out.push(at + 1);
                }
            }
            Pattern::Lit(l) => {
                if s.len() - at.min(s.len()) >= l.len()
                    && l.iter().zip(&s[at..]).all(|(&x, &c)| fold_eq(x, c))
                {
                    out.push(at + l.len());
                }
            }
            Pattern::Seq(ps) => {
                let mut cur = vec![at];
                for p in ps {
                    let mut next = Vec::new();
                    for &pos in &cur {
                        p.ends(s, pos, &mut next);
                    }
                    next.sort_unstable();
                    next.dedup();
                    if next.is_empty() {
                        return;
                    }
                    cur = next;
                }
                out.extend(cur);
            }
            Pattern::Alt(ps) => {
                for p in ps {
                    p.ends(s, at, out);
                }
            }
            Pattern::Rep(p, min, max) => {
                // Breadth-first over the number of repetitions; positions already reached with at least
                // `min` repetitions need not be expanded again (further repetitions from them add nothing new).
                let mut frontier = vec![at];
                let mut done: Vec<usize> = Vec::new();
                let mut count = 0u32;
                if *min == 0 {
                    out.push(at);
                    done.push(at);
                }
                while count < *max && !frontier.is_empty() {
                    let mut next = Vec::new();
                    for &pos in &frontier {
                        p.ends(s, pos, &mut next);
                    }
                    next.sort_unstable();
                    next.dedup();
                    count += 1;
                    if count >= *min {
                        next.retain(|x| !done.contains(x));
                        out.extend(next.iter().copied());
                        done.extend(next.iter().copied());
                    }
                    frontier = next;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(p: &Pattern, s: &str) -> Vec<usize> {
        let s: Vec<char> = s.chars().collect();
        let mut out = Vec::new();
        p.ends(&s, 0, &mut out);
        out.sort_unstable();
        out.dedup();
        out
    }

    #[test]
    fn literals_fold_case_and_classes_do_not() {
        assert_eq!(all(&lit("etc"), "ETC."), vec![3]);
        let upper = set("ABC", &[]);
        assert_eq!(all(&upper, "a"), Vec::<usize>::new());
    }

    #[test]
    fn repetition_reports_every_end() {
        let p = seq(vec![star(lit("a")), lit("ab")]);
        assert_eq!(all(&p, "aaab"), vec![4]);
        assert_eq!(all(&rep(lit("a"), 2, 3), "aaaa"), vec![2, 3]);
        assert_eq!(all(&opt(lit("x")), "y"), vec![0]);
        // A nullable body inside a star must terminate.
        assert_eq!(all(&star(opt(lit("a"))), "aa"), vec![0, 1, 2]);
    }

    #[test]
    fn can_start_skips_nullable_prefixes() {
        let p = seq(vec![opt(lit("+")), plus(set("0123456789", &[]))]);
        assert!(p.can_start('+') && p.can_start('7') && !p.can_start('a'));
    }
}
