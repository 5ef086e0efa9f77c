//! What the figures were measured on: CPU, cores, memory, GPU, build profile, commit, load while measuring.
use std::path::Path;
use std::process::Command;

fn first_line_with(path: &str, prefix: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()?.lines().find_map(|l| {
        l.starts_with(prefix).then(|| l.split(':').nth(1).unwrap_or("").trim().to_string())
    })
}

pub fn cpu() -> String {
    let model =
        first_line_with("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = first_line_with("/proc/meminfo", "MemTotal")
        .and_then(|v| v.trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(String::new(), |kib| format!(", {:.0} GiB RAM", kib / (1u64 << 20) as f64));
    format!("{model}, {cpus} logical CPUs{mem}")
}

pub fn gpu() -> Option<String> {
    let out = Command::new("nvidia-smi")
        .args(["--query-gpu=name,memory.total", "--format=csv,noheader"])
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().replace('\n', "; "))
}

pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The commit the build came from, "+ changes" when the sources differ from it (so a record never names a commit
/// for code it did not run; docs/ may differ, as `bench` appends to docs/benchmarks.md between its runs).
pub fn commit() -> String {
    commit_in(Path::new("."))
}

/// [`commit`] of the git work tree at `dir`; "unknown" outside one.
fn commit_in(dir: &Path) -> String {
    let git = |args: &[&str]| Command::new("git").current_dir(dir).args(args).output().ok();
    let head = git(&["rev-parse", "--short", "HEAD"])
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let Some(head) = head else { return "unknown".into() };
    let sources = ["crates", "xtask", "scripts", "Cargo.toml", "Cargo.lock"];
    // Sources absent from the tree are no change; `--quiet` exits 1 on a difference.
    let diff: Vec<&str> = ["diff", "--quiet", "HEAD", "--"].into_iter().chain(sources).collect();
    let changed = git(&diff).is_some_and(|o| o.status.code() == Some(1));
    if changed {
        format!("{head} + changes")
    } else {
        head
    }
}

pub fn profile() -> &'static str {
    if cfg!(debug_assertions) {
        "dev"
    } else {
        "release"
    }
}

/// One line for the record: machine, build and the reference's versions.
pub fn describe(device: &str, versions: &serde_json::Value) -> String {
    let v = |k: &str| versions.get(k).and_then(|x| x.as_str()).unwrap_or("?").to_string();
    let dev = if device.starts_with("cuda") {
        format!("GPU: {}; host: {}", gpu().unwrap_or_else(|| "unknown".into()), cpu())
    } else {
        format!("CPU only: {}", cpu())
    };
    format!(
        "{dev}. Rust: `pgrs` {} build at {}, libtorch {} (the reference venv's). Reference: Python {}, torch {}, \
         transformers {}, peft {}. Load average at the end: {}.",
        profile(),
        commit(),
        v("torch"),
        v("python"),
        v("torch"),
        v("transformers"),
        v("peft"),
        load_average()
    )
}

#[cfg(test)]
mod tests {
    use super::commit_in;
    use std::process::Command;

    /// A record names the commit, adds "+ changes" for changed sources only, and says "unknown" outside a repository.
    #[test]
    fn the_commit_says_when_the_sources_changed() {
        let dir = std::env::temp_dir().join(format!("pgrs-bench-commit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("crates")).unwrap();
        std::fs::create_dir_all(dir.join("docs")).unwrap();
        assert_eq!(commit_in(&dir), "unknown");
        let git = |args: &[&str]| {
            let ok = Command::new("git")
                .current_dir(&dir)
                .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"])
                .args(args)
                .output()
                .expect("git runs")
                .status
                .success();
            assert!(ok, "git {args:?}");
        };
        std::fs::write(dir.join("crates/a.rs"), "1").unwrap();
        std::fs::write(dir.join("docs/b.md"), "1").unwrap();
        git(&["init", "-q"]);
        git(&["add", "."]);
        git(&["commit", "-q", "-m", "x"]);
        let head = commit_in(&dir);
        assert!(head.len() >= 7 && head.chars().all(|c| c.is_ascii_hexdigit()), "{head}");
        std::fs::write(dir.join("docs/b.md"), "2").unwrap();
        assert_eq!(commit_in(&dir), head, "docs are not sources");
        std::fs::write(dir.join("crates/a.rs"), "2").unwrap();
        assert_eq!(commit_in(&dir), format!("{head} + changes"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
