//! `cargo xtask`: the project's front door.
//!
//! xtask links no libtorch, because it is what installs libtorch (`setup`), and it builds in seconds on a fresh
//! machine. Commands that need libtorch are forwarded to the project's own CLI binary (`pgrs`, crate
//! `paligemma-cli`), which xtask builds and runs after making sure libtorch is present. Commands that need no
//! libtorch (datasets, scoring, reports) are forwarded to `pgtools` (crate `paligemma-tools`) and never wait for
//! it; weight conversion runs right here.
mod bench_launch;
mod convert;
mod download_model;
#[path = "../gloo_include.rs"]
mod gloo_include;
mod launcher;
mod npz;
mod ranks;
mod setup;

use clap::{Arg, ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

/// The binary a forwarded command runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// `pgrs` (crates/cli): needs libtorch, which is set up first.
    Cli,
    /// `pgtools` (crates/tools): no libtorch, never waits for it.
    Tool,
}

/// Commands passed through as they are: `cargo xtask <name> <args…>` builds and runs `<binary> <name> <args…>`, with
/// `--help` among the arguments, so `cargo xtask <name> --help` shows the child's own help. The third column is the
/// line `cargo xtask --help` shows. A new pgrs/pgtools subcommand needs only its row here (the tests check that
/// every row is a subcommand of its binary and that every subcommand of the two binaries is reachable).
#[rustfmt::skip]
const FORWARDED: &[(&str, Target, &str)] = &[
    ("caption", Target::Cli, "Caption images with an HF-format PaliGemma directory (config.json, safetensors, tokenizer.json)"),
    ("demo", Target::Cli, "The main job: generate the synthetic sample, train a small PaliGemma from scratch, evaluate before and after"),
    ("train", Target::Cli, "Fine-tune from an experiment file (`--config experiments/….toml [--set key=value] [--dry-run] [--resume run]`); `--nproc N|gpu`: N local ranks, as torchrun starts them"),
    ("eval", Target::Cli, "Evaluate a run (`--run dir`) or an HF model (`--model dir [--adapter dir]`) on a dataset split"),
    ("export", Target::Cli, "Merge a run's adapters into its base model and write an HF-format directory"),
    ("plan", Target::Cli, "Memory plan of an experiment from configs alone (`--config f.toml --architecture pt-224`)"),
    ("sweep", Target::Cli, "Train a grid of experiment variants and rank them (`--grid \"optim.lr=1e-4,3e-5\"`)"),
    ("score", Target::Tool, "Score captions with the COCO metrics (pycocoevalcap-equal): Bleu_1-4, METEOR, ROUGE_L, CIDEr"),
    ("validate", Target::Tool, "Check a dataset: missing/unreadable images, duplicates, empty captions, special tokens, splits, sizes"),
    ("eda", Target::Tool, "Exploratory data analysis: stats.json, plots (PNG and SVG) and report.html in --out"),
    ("synth", Target::Tool, "Render a deterministic synthetic aerial dataset (Karpathy JSON + PNGs), the demo's data"),
    ("download", Target::Tool, "Download a known dataset (see --list; rsicd from its hub dataset repo, pinnable with --revision), or any file with --url and --sha256; resumable, verified"),
    ("report", Target::Tool, "Rebuild a run's plots and self-contained report.html (or every run in a folder)"),
    ("compare", Target::Tool, "Compare runs side by side: ranked table (compare.md), compare.html, overlaid curves"),
];

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "PaliGemma fine-tuning for remote-sensing captions",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// xtask's own commands; [`cli`] adds the [`FORWARDED`] ones after them.
#[derive(Subcommand)]
enum Command {
    /// Install libtorch (torch==2.13.0 from PyPI) into the per-user cache and point the workspace at it.
    Setup(setup::Args),
    /// Report libtorch, CUDA, GPUs, bf16 support and threads; every problem comes with its fix.
    Doctor,
    /// Run the whole test suite (sets libtorch up first). Extra arguments go to `cargo test`.
    Test {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Convert a big_vision PaliGemma checkpoint (.npz) to HF-layout safetensors + config.json.
    Convert(convert::Args),
    /// Download a hub model (`google/paligemma-3b-pt-224`) into the Hugging Face cache, reusing what is there, and
    /// print its folder; `--out DIR` also puts the files there. Gated models need HF_TOKEN (docs/hub.md).
    DownloadModel(download_model::Args),
    /// Benchmarks against the reference implementation measured in the same run: `metrics`, `data`, `train`,
    /// `generate`, `fullsize`, `attention`, `ddp` (`all`: all but fullsize, attention and ddp).
    /// Results are printed and appended to docs/benchmarks.md.
    Bench {
        /// Which benchmark: metrics | data | train | generate | fullsize | attention | ddp | all.
        name: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// The whole command line: xtask's own commands, then one pass-through subcommand per [`FORWARDED`] row (no `--help`
/// of its own: everything after the name, `--help` included, goes to the child).
fn cli() -> clap::Command {
    FORWARDED.iter().fold(Cli::command(), |cmd, &(name, _, about)| {
        cmd.subcommand(
            clap::Command::new(name).about(about).disable_help_flag(true).arg(
                Arg::new("args")
                    .value_name("ARGS")
                    .num_args(0..)
                    .trailing_var_arg(true)
                    .allow_hyphen_values(true),
            ),
        )
    })
}

/// The [`FORWARDED`] command `matches` selected and its arguments; `None` for xtask's own commands.
fn forwarded(matches: &ArgMatches) -> Option<(&'static str, Target, Vec<String>)> {
    let (name, sub) = matches.subcommand()?;
    let &(name, target, _) = FORWARDED.iter().find(|f| f.0 == name)?;
    let args = sub.get_many::<String>("args").map_or_else(Vec::new, |a| a.cloned().collect());
    Some((name, target, args))
}

fn with(name: &str, args: &[String]) -> Vec<String> {
    std::iter::once(name.to_string()).chain(args.iter().cloned()).collect()
}

fn bench(name: &str, args: &[String]) -> anyhow::Result<i32> {
    match name {
        "metrics" | "data" => launcher::run_tool("bench", &with(name, args)),
        "train" | "generate" | "fullsize" | "attention" | "ddp" => bench_launch::run(name, args),
        // everything but `fullsize` (minutes, ~12 GB of generated weights)
        "all" => Ok(launcher::run_tool("bench", &with("metrics", args))?
            .max(launcher::run_tool("bench", &with("data", args))?)
            .max(bench_launch::run("train", args)?)
            .max(bench_launch::run("generate", args)?)),
        other => anyhow::bail!(
            "unknown benchmark `{other}`: expected metrics, data, train, generate, fullsize, attention, ddp or all"
        ),
    }
}

fn main() {
    let matches = cli().get_matches();
    let result = match forwarded(&matches) {
        Some(("train", _, args)) => ranks::train(&args),
        Some((name, Target::Cli, args)) => launcher::run_cli(name, &args),
        Some((name, Target::Tool, args)) => launcher::run_tool(name, &args),
        None => match Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit()).command {
            Command::Setup(args) => setup::run(&args),
            Command::Doctor => launcher::doctor(),
            Command::Test { args } => launcher::cargo_test(&args),
            Command::Convert(args) => convert::run(&args),
            Command::DownloadModel(args) => download_model::run(&args),
            Command::Bench { name, args } => bench(&name, &args),
        },
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            // Stopped by a signal: 128 + its number, as a shell reports it (130 for Ctrl-C, 143 for SIGTERM).
            let code = err
                .chain()
                .find_map(|e| e.downcast_ref::<launcher::Interrupted>())
                .map_or(1, |i| i.0.exit_code());
            std::process::exit(code);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    /// Subcommands of pgrs/pgtools that xtask runs through its own commands instead of a [`FORWARDED`] row.
    const HANDLED_HERE: &[(&str, Target, &str)] = &[
        (
            "doctor",
            Target::Cli,
            "`cargo xtask doctor` checks what it can itself, then runs `pgrs doctor`",
        ),
        (
            "bench",
            Target::Cli,
            "`cargo xtask bench train|generate|fullsize|attention|ddp` (bench_launch)",
        ),
        ("bench", Target::Tool, "`cargo xtask bench metrics|data`"),
    ];

    fn binary(target: Target) -> (&'static str, PathBuf) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        match target {
            Target::Cli => ("pgrs", root.join("crates/cli/src/main.rs")),
            Target::Tool => ("pgtools", root.join("crates/tools/src/main.rs")),
        }
    }

    /// The names clap gives the variants of `enum Command` in `file` (kebab-case, or `name = "…"`), read from the
    /// source; `#[command(flatten)]` variants are followed into `<module>.rs` beside it, hidden ones left out.
    fn subcommands(file: &Path) -> Vec<String> {
        let text =
            std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .map(|l| format!("{l}\n"))
            .collect();
        let start = code
            .find("enum Command {")
            .unwrap_or_else(|| panic!("{}: no `enum Command`", file.display()))
            + "enum Command {".len();
        let mut names = Vec::new();
        for item in top_level_items(&code[start..]) {
            let mut rest = item.trim();
            let mut attrs = String::new();
            while rest.starts_with("#[") {
                let end = matching_close(rest, 0) + 1;
                attrs += &rest[..end];
                rest = rest[end..].trim_start();
            }
            let variant: String =
                rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if variant.is_empty() || attrs.contains("hide = true") {
                continue;
            }
            if attrs.contains("flatten") {
                // `Score(score::Command)`: the module's file is next to this one.
                let inner = rest[variant.len()..].trim_matches(|c: char| "() ".contains(c));
                let module = inner.split("::").next().unwrap();
                names.extend(subcommands(&file.with_file_name(format!("{module}.rs"))));
            } else if let Some(i) = attrs.find("name = \"") {
                let n = &attrs[i + "name = \"".len()..];
                names.push(n[..n.find('"').unwrap()].to_string());
            } else {
                names.push(kebab(&variant));
            }
        }
        names
    }

    /// Walks `s` outside string literals with the bracket depth after each character (from `depth`), up to the
    /// first index where `stop(index, char, depth)` holds.
    fn walk(
        s: &str,
        mut depth: i32,
        mut stop: impl FnMut(usize, char, i32) -> bool,
    ) -> Option<usize> {
        let (mut in_str, mut escaped) = (false, false);
        for (i, c) in s.char_indices() {
            if in_str {
                (in_str, escaped) = (escaped || c != '"', !escaped && c == '\\');
                continue;
            }
            match c {
                '"' => in_str = true,
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => depth -= 1,
                _ => {}
            }
            if stop(i, c, depth) {
                return Some(i);
            }
        }
        None
    }

    /// The comma-separated items of a `{ … }` body up to its closing brace (nesting and strings skipped).
    fn top_level_items(body: &str) -> Vec<&str> {
        let end = matching_close(body, 1);
        let (mut items, mut from) = (vec![], 0);
        walk(&body[..end], 0, |i, c, depth| {
            if c == ',' && depth == 0 {
                items.push(&body[from..i]);
                from = i + 1;
            }
            false
        });
        items.push(&body[from..end]);
        items
    }

    /// Index in `s` of the bracket that brings the nesting from `depth` (1: `s` starts inside a bracket; 0: `s`
    /// starts with the opening one) back to 0; strings are skipped.
    fn matching_close(s: &str, depth: i32) -> usize {
        let closes = |c: char, d: i32| d == 0 && matches!(c, ')' | ']' | '}');
        walk(s, depth, |_, c, d| closes(c, d))
            .unwrap_or_else(|| panic!("unbalanced brackets in {s:.80}"))
    }

    fn kebab(variant: &str) -> String {
        let mut out = String::new();
        for (i, c) in variant.chars().enumerate() {
            if c.is_uppercase() && i > 0 {
                out.push('-');
            }
            out.extend(c.to_lowercase());
        }
        out
    }

    #[test]
    fn the_source_reader_sees_flattened_renamed_and_hidden_variants() {
        let dir = std::env::temp_dir().join(format!("xtask-subcommands-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("main.rs"),
            "#[derive(Subcommand)]\nenum Command {\n    /// Doc with (parens, commas) and { braces.\n    \
             Caption(caption::Args),\n    #[command(flatten)]\n    Data(data::Command),\n    \
             #[command(hide = true)]\n    Worker {\n        #[arg(long, default_value = \"a,b}\")]\n        \
             spec: String,\n    },\n    #[command(name = \"eda\")]\n    Explore { x: u8 },\n    SweepGrid,\n}\n\
             fn main() {}\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("data.rs"),
            "pub enum Command {\n    Validate { a: Vec<u8> },\n    Synth,\n}\n",
        )
        .unwrap();
        let names = subcommands(&dir.join("main.rs"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(names, ["caption", "validate", "synth", "eda", "sweep-grid"]);
    }

    /// Forgetting a row, or keeping one for a command that is gone or renamed, fails here.
    #[test]
    fn forwarded_commands_and_the_binaries_subcommands_match() {
        for target in [Target::Cli, Target::Tool] {
            let (bin, file) = binary(target);
            let theirs = subcommands(&file);
            assert!(!theirs.is_empty(), "read no subcommand from {}", file.display());
            for &(name, _, _) in FORWARDED.iter().filter(|f| f.1 == target) {
                assert!(
                    theirs.iter().any(|n| n == name),
                    "FORWARDED sends `{name}` to {bin}, which has no such subcommand ({}: {theirs:?})",
                    file.display()
                );
            }
            for name in &theirs {
                let forwarded = FORWARDED.iter().any(|f| f.0 == name && f.1 == target);
                let here = HANDLED_HERE.iter().any(|h| h.0 == name && h.1 == target);
                assert!(
                    forwarded || here,
                    "{bin} has `{name}` ({}) but `cargo xtask {name}` does not reach it: add a row to FORWARDED \
                     in xtask/src/main.rs",
                    file.display()
                );
            }
        }
        for &(name, _, why) in HANDLED_HERE {
            assert!(
                Cli::command().find_subcommand(name).is_some(),
                "no xtask command `{name}` ({why})"
            );
        }
    }

    #[test]
    fn every_command_is_listed_with_its_description_once() {
        cli().debug_assert(); // also: no name twice
        let help = cli().render_help().to_string();
        for &(name, _, about) in FORWARDED {
            assert!(
                help.contains(&format!("  {name} ")) && help.contains(about),
                "{name} missing:\n{help}"
            );
        }
        for native in ["setup", "doctor", "test", "convert", "download-model", "bench"] {
            assert!(help.contains(&format!("  {native} ")), "{native} missing:\n{help}");
        }
    }

    #[test]
    fn forwarded_commands_pass_every_argument_help_included() {
        let parse = |args: &[&str]| {
            let m = cli()
                .try_get_matches_from(std::iter::once("cargo xtask").chain(args.iter().copied()))
                .unwrap();
            forwarded(&m)
        };
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parse(&["train", "--help", "--set", "a=1", "-x"]),
            Some(("train", Target::Cli, args(&["--help", "--set", "a=1", "-x"])))
        );
        assert_eq!(parse(&["eda", "-h"]), Some(("eda", Target::Tool, args(&["-h"]))));
        assert_eq!(parse(&["score"]), Some(("score", Target::Tool, vec![])));
        assert_eq!(parse(&["bench", "train", "--quick"]), None);
        let m = cli().try_get_matches_from(["cargo xtask", "bench", "train", "--quick"]).unwrap();
        let Command::Bench { name, args: rest } = Cli::from_arg_matches(&m).unwrap().command else {
            panic!("not bench")
        };
        assert_eq!((name.as_str(), rest), ("train", args(&["--quick"])));
    }
}
