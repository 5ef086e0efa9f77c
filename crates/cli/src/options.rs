//! Option values shared by the commands: counts that must be at least 1, and setting words (`--dtype bf16`,
//! `--device cuda:1`) parsed by the parser experiment files use (`trainer::setting`).
use anyhow::Result;
use trainer::setting::Setting;

/// A setting word given on the command line (`--device cuda:1`), parsed by the parser the experiment files use.
pub fn setting<T: Setting>(option: &str, word: &str) -> Result<T> {
    T::parse_setting(word).map_err(|e| anyhow::anyhow!("{option}: {e}"))
}

/// A clap value parser for counts: a whole number >= 1 (clap names the option in its error).
pub fn at_least_one(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("expected a whole number >= 1".into()),
    }
}
