//! The official METEOR 1.5 jar driven over its `-stdio` protocol, exactly as pycocoevalcap's `Meteor`
//! wrapper drives it: one `SCORE ||| ref1 ||| … ||| hyp` line per image (the hypothesis stripped of
//! `|||` and with double spaces collapsed once), each answered by 23 statistics, then one
//! `EVAL ||| stats1 ||| …` line answered by every per-image score and the corpus score.
//!
//! The jar is found at an explicit path, else `$METEOR_JAR`, else inside the `pycocoevalcap` package of
//! the project's Python reference environment (`$PALIGEMMA_CACHE`, `$XDG_CACHE_HOME/paligemma-rs` or
//! `~/.cache/paligemma-rs`, then `torch-2.13.0/venv/lib/python3.*/site-packages/pycocoevalcap/meteor/`).
//! Java is `$JAVA` or `java` on `PATH`.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::error::{MetricsError, Result};

use super::stats::MeteorStats;

/// Where the project's Python reference environment keeps pycocoevalcap.
pub fn reference_venv() -> Option<PathBuf> {
    let cache = if let Some(c) = std::env::var_os("PALIGEMMA_CACHE") {
        PathBuf::from(c)
    } else if let Some(x) = std::env::var_os("XDG_CACHE_HOME") {
        PathBuf::from(x).join("paligemma-rs")
    } else {
        PathBuf::from(std::env::var_os("HOME")?).join(".cache").join("paligemma-rs")
    };
    Some(cache.join("torch-2.13.0").join("venv"))
}

/// `site-packages/pycocoevalcap` inside the reference venv, if installed.
pub fn pycocoevalcap_dir() -> Option<PathBuf> {
    let lib = reference_venv()?.join("lib");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&lib)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("python3"))
        })
        .collect();
    dirs.sort();
    dirs.into_iter().map(|d| d.join("site-packages").join("pycocoevalcap")).find(|p| p.is_dir())
}

/// Finds `meteor-1.5.jar`: `explicit`, then `$METEOR_JAR`, then the reference venv.
pub fn locate_jar(explicit: Option<&Path>) -> Result<PathBuf> {
    let check = |p: PathBuf, source: &str| {
        if p.is_file() {
            Ok(p)
        } else {
            Err(MetricsError::MeteorJarNotFound {
                reason: format!("{source} {} is not a file", p.display()),
            })
        }
    };
    if let Some(p) = explicit {
        return check(p.to_path_buf(), "the given path");
    }
    if let Some(p) = std::env::var_os("METEOR_JAR") {
        return check(PathBuf::from(p), "METEOR_JAR=");
    }
    match pycocoevalcap_dir() {
        Some(dir) => check(dir.join("meteor").join("meteor-1.5.jar"), "the pycocoevalcap jar"),
        None => Err(MetricsError::MeteorJarNotFound {
            reason: format!(
                "METEOR_JAR is not set and pycocoevalcap is not installed in {}",
                reference_venv()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "the reference venv".into())
            ),
        }),
    }
}

/// The Java executable to run: `$JAVA`, else `java`.
pub fn java_command(explicit: Option<&Path>) -> PathBuf {
    explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("JAVA").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("java"))
}

/// A running `meteor-1.5.jar -stdio` process.
pub struct MeteorJar {
    jar: PathBuf,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl MeteorJar {
    /// Starts the jar (`java -jar -Xmx2G meteor-1.5.jar - - -stdio -l en -norm`, in the jar's directory so
    /// that it finds `data/paraphrase-en.gz`). Loading the paraphrase table takes a few seconds.
    pub fn start(java: &Path, jar: &Path) -> Result<Self> {
        let dir = jar.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let mut child = Command::new(java)
            .arg("-jar")
            .arg("-Xmx2G")
            .arg(jar)
            .args(["-", "-", "-stdio", "-l", "en", "-norm"])
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| MetricsError::JavaNotStarted { java: java.to_path_buf(), error })?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        if let Some(mut err) = child.stderr.take() {
            let sink = Arc::clone(&stderr);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut s = sink.lock().unwrap();
                    // Keep the tail only: Java stack traces are long.
                    s.extend_from_slice(&buf[..n]);
                    if s.len() > 16_384 {
                        let cut = s.len() - 16_384;
                        s.drain(..cut);
                    }
                }
            });
        }
        Ok(MeteorJar { jar: jar.to_path_buf(), child, stdin, stdout, stderr })
    }

    /// The jar this process runs.
    pub fn jar(&self) -> &Path {
        &self.jar
    }

    fn fail(&mut self, what: &str) -> MetricsError {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let stderr = String::from_utf8_lossy(&self.stderr.lock().unwrap()).trim().to_string();
        let lines: Vec<&str> = stderr.lines().collect();
        let tail = lines[lines.len().saturating_sub(6)..].join(" | ");
        MetricsError::MeteorJar {
            jar: self.jar.clone(),
            message: if tail.is_empty() {
                what.to_string()
            } else {
                format!("{what}; its stderr ends with: {tail}")
            },
        }
    }

    fn read_line(&mut self, what: &str) -> Result<String> {
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(0) => Err(self.fail(&format!("the process ended while {what}"))),
            Ok(_) => Ok(line.trim().to_string()),
            Err(e) => Err(self.fail(&format!("reading its output while {what}: {e}"))),
        }
    }

    /// pycocoevalcap's `Meteor.compute_score`: per-image scores and the corpus score, plus the statistics.
    pub fn score_corpus(
        &mut self,
        refs: &[Vec<String>],
        hyps: &[String],
    ) -> Result<(Vec<f64>, f64, Vec<MeteorStats>)> {
        assert_eq!(refs.len(), hyps.len());
        let lines: Vec<String> = refs.iter().zip(hyps).map(|(r, h)| score_line(r, h)).collect();
        // Write on a separate thread while reading here, so neither pipe can fill up and deadlock.
        let mut stdin = self.stdin.take().expect("stdin is returned after every call");
        let writer = std::thread::spawn(move || -> std::io::Result<ChildStdin> {
            let mut w = std::io::BufWriter::new(&mut stdin);
            for l in &lines {
                w.write_all(l.as_bytes())?;
                w.write_all(b"\n")?;
            }
            w.flush()?;
            drop(w);
            Ok(stdin)
        });
        let mut stat_lines = Vec::with_capacity(hyps.len());
        let mut stats = Vec::with_capacity(hyps.len());
        for i in 0..hyps.len() {
            let line = self.read_line("scoring")?;
            let parsed = MeteorStats::parse(&line).ok_or_else(|| {
                self.fail(&format!("expected 23 statistics for image #{i}, got {line:?}"))
            })?;
            stats.push(parsed);
            stat_lines.push(line);
        }
        let mut stdin = match writer.join() {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(self.fail(&format!("writing to it failed: {e}"))),
            Err(_) => return Err(self.fail("the writer thread panicked")),
        };
        let eval = format!("EVAL ||| {}\n", stat_lines.join(" ||| "));
        if let Err(e) = stdin.write_all(eval.as_bytes()).and_then(|_| stdin.flush()) {
            return Err(self.fail(&format!("writing the EVAL line failed: {e}")));
        }
        self.stdin = Some(stdin);
        let mut per_image = Vec::with_capacity(hyps.len());
        for i in 0..=hyps.len() {
            let line = self.read_line("evaluating")?;
            let v: f64 = line.parse().map_err(|_| {
                self.fail(&format!("expected a score for EVAL item #{i}, got {line:?}"))
            })?;
            per_image.push(v);
        }
        let corpus = per_image.pop().expect("n + 1 values read");
        Ok((per_image, corpus, stats))
    }
}

impl Drop for MeteorJar {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `SCORE` line pycocoevalcap's `_stat` writes.
pub fn score_line(refs: &[String], hyp: &str) -> String {
    let hyp = hyp.replace("|||", "").replace("  ", " ");
    // A line break would end the protocol line early (pycocoevalcap never sends one: PTB output is one line).
    let clean = |s: &str| s.replace(['\n', '\r'], " ");
    let refs: Vec<String> = refs.iter().map(|r| clean(r)).collect();
    format!("SCORE ||| {} ||| {}", refs.join(" ||| "), clean(&hyp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_line_matches_the_wrapper() {
        let refs = vec!["a b".to_string(), "c".to_string()];
        assert_eq!(score_line(&refs, "x ||| y"), "SCORE ||| a b ||| c ||| x y");
        assert_eq!(score_line(&refs, ""), "SCORE ||| a b ||| c ||| ");
        assert_eq!(score_line(&refs, "a    b"), "SCORE ||| a b ||| c ||| a  b");
    }
}
