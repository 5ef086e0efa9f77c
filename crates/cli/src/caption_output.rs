//! `caption --output FILE`: captions written to a file, in the format its extension names, so that a long run
//! keeps what it finished and a later `--resume` captions only the rest.
//!
//! Formats (by extension, any case):
//! * `.jsonl` (or `.ndjson`): one object per line, `{"image", "caption", "token_ids"}` (as `--json` prints);
//! * `.csv`: a header `image,caption`, then one row per image; fields holding a comma, a quote or a line break are
//!   quoted, quotes doubled (RFC 4180);
//! * `.json`: COCO results, `[{"image_id": <file name>, "caption": …}]`, what `score --predictions` and
//!   pycocoevalcap read. Images are named by file name alone, so two images with the same file name are refused.
//!
//! One code path for the three, a journal:
//! 1. Every finished batch is appended to `<FILE>.partial.jsonl` (JSON lines, whatever the format) and flushed,
//!    so a crash, SIGKILL or second signal loses at most the batch in flight; a line torn by a kill is dropped.
//! 2. At the end, and when a signal stops the run at a batch boundary, the whole result (what `FILE` held when
//!    resuming, the journal, this run's captions) is rendered in `FILE`'s format to a temporary file in the same
//!    directory, fsynced and renamed over `FILE`, then the journal is removed. `FILE` is therefore always a whole
//!    file in its format: the previous version or the new one, never half of one.
//!
//! An existing `FILE` (or a journal left by a killed run) is never replaced unless `--overwrite` is given;
//! `--resume` reads both instead and skips every image they already hold (matched by path, by file name for COCO
//! results), keeping those captions as they are.
use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use std::collections::HashSet;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Csv,
    Coco,
}

impl Format {
    pub fn of(path: &Path) -> Result<Format> {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        Ok(match ext.as_str() {
            "jsonl" | "ndjson" => Format::Jsonl,
            "csv" => Format::Csv,
            "json" => Format::Coco,
            _ => bail!(
                "--output {}: expected a file name ending in .jsonl (JSON lines), .csv or .json (COCO results)",
                path.display()
            ),
        })
    }

    /// What identifies an image in this format: its path (`./` ignored), or its file name for COCO results.
    pub fn key(self, image: &str) -> String {
        let path = Path::new(image);
        match self {
            Format::Coco => file_name(image),
            Format::Jsonl | Format::Csv => path
                .components()
                .filter(|c| *c != Component::CurDir)
                .collect::<PathBuf>()
                .to_string_lossy()
                .into_owned(),
        }
    }

    fn render(self, records: &[Record]) -> String {
        let mut out = String::new();
        match self {
            Format::Jsonl => {
                for r in records {
                    out.push_str(&r.json_line());
                    out.push('\n');
                }
            }
            Format::Csv => {
                out.push_str("image,caption\n");
                for r in records {
                    out.push_str(&format!("{},{}\n", csv_field(&r.image), csv_field(&r.caption)));
                }
            }
            Format::Coco => {
                let rows: Vec<String> = records
                    .iter()
                    .map(|r| {
                        format!(
                            "  {{\"image_id\": {}, \"caption\": {}}}",
                            json_string(&file_name(&r.image)),
                            json_string(&r.caption)
                        )
                    })
                    .collect();
                if rows.is_empty() {
                    out.push_str("[]\n");
                } else {
                    out.push_str(&format!("[\n{}\n]\n", rows.join(",\n")));
                }
            }
        }
        out
    }

    /// The records of a file this command wrote in this format.
    fn parse(self, path: &Path, text: &str) -> Result<Vec<Record>> {
        match self {
            Format::Jsonl => {
                let mut out = Vec::new();
                for (i, line) in text.lines().enumerate() {
                    if !line.trim().is_empty() {
                        out.push(
                            Record::from_json_line(line)
                                .map_err(|e| anyhow!("{}: line {}: {e}", path.display(), i + 1))?,
                        );
                    }
                }
                Ok(out)
            }
            Format::Csv => {
                // RFC 4180 (quoted fields may span lines; a BOM, `\r\n` line ends and blank lines are accepted)
                let rows = rsicd_data::formats::csv::parse(text)
                    .map_err(|(line, e)| anyhow!("{}: line {line}: {e}", path.display()))?;
                let mut rows = rows.into_iter().map(|r| (r.line, r.fields));
                match rows.next() {
                    Some((_, h)) if h == ["image", "caption"] => {}
                    None => return Ok(vec![]),
                    Some((line, h)) => bail!(
                        "{}: line {line}: expected the header `image,caption`, found `{}`",
                        path.display(),
                        h.join(",")
                    ),
                }
                rows.map(|(line, row)| match <[String; 2]>::try_from(row) {
                    Ok([image, caption]) => Ok(Record { image, caption, token_ids: None }),
                    Err(row) => Err(anyhow!(
                        "{}: line {line}: expected 2 fields (image,caption), found {}",
                        path.display(),
                        row.len()
                    )),
                })
                .collect()
            }
            Format::Coco => {
                let bad = |what: String| {
                    anyhow!(
                        "{}: {what}; expected a JSON array of {{\"image_id\", \"caption\"}} objects (COCO results)",
                        path.display()
                    )
                };
                let v: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
                let items = v.as_array().ok_or_else(|| bad("not an array".into()))?;
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        let image = match &item["image_id"] {
                            Value::String(s) => s.clone(),
                            Value::Number(n) if n.is_u64() || n.is_i64() => n.to_string(),
                            _ => return Err(bad(format!("entry {i} has no \"image_id\""))),
                        };
                        let caption = item["caption"]
                            .as_str()
                            .ok_or_else(|| bad(format!("entry {i} has no \"caption\" string")))?;
                        Ok(Record { image, caption: caption.to_string(), token_ids: None })
                    })
                    .collect()
            }
        }
    }
}

/// The last component of a path, as text.
fn file_name(image: &str) -> String {
    Path::new(image)
        .file_name()
        .map_or_else(|| image.to_string(), |n| n.to_string_lossy().into_owned())
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// One captioned image.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The path as given (or found under a directory / by a pattern); a COCO results file holds only file names.
    pub image: String,
    pub caption: String,
    /// The generated ids, where known (not kept by CSV or COCO results).
    pub token_ids: Option<Vec<i64>>,
}

impl Record {
    /// `{"image": …, "caption": …, "token_ids": […]}` on one line.
    pub fn json_line(&self) -> String {
        let mut line = format!(
            "{{\"image\":{},\"caption\":{}",
            json_string(&self.image),
            json_string(&self.caption)
        );
        if let Some(ids) = &self.token_ids {
            line.push_str(&format!(",\"token_ids\":{}", serde_json::to_string(ids).expect("ids")));
        }
        line.push('}');
        line
    }

    fn from_json_line(line: &str) -> Result<Record, String> {
        let expected = "expected a JSON object with \"image\" and \"caption\" strings";
        let v: Value = serde_json::from_str(line).map_err(|e| format!("{expected} ({e})"))?;
        let (Some(image), Some(caption)) = (v["image"].as_str(), v["caption"].as_str()) else {
            return Err(expected.into());
        };
        let token_ids = match &v["token_ids"] {
            Value::Null => None,
            ids => Some(
                ids.as_array()
                    .and_then(|a| a.iter().map(Value::as_i64).collect::<Option<Vec<_>>>())
                    .ok_or("expected \"token_ids\" to be an array of integers")?,
            ),
        };
        Ok(Record { image: image.into(), caption: caption.into(), token_ids })
    }
}

/// A CSV field, quoted when it must be.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Where the captions of a run go until the output file is rendered.
pub fn journal_path(output: &Path) -> PathBuf {
    let name = output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    output.with_file_name(format!("{name}.partial.jsonl"))
}

/// The records of a journal, and the length of its whole lines (a last line without its `\n` was torn by a kill
/// and is dropped).
fn read_journal(path: &Path) -> Result<(Vec<Record>, u64, bool)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    // A line cut short by a kill has no newline yet: only whole lines count.
    let whole = text.rfind('\n').map_or(0, |i| i + 1);
    let out = Format::Jsonl.parse(path, &text[..whole])?;
    Ok((out, whole as u64, whole < text.len()))
}

/// An output file being produced: what it will hold, and the journal this run appends to.
pub struct Output {
    pub path: PathBuf,
    pub journal: PathBuf,
    pub format: Format,
    /// Everything the file will hold, in order: carried over (resume), then this run's.
    records: Vec<Record>,
    keys: HashSet<String>,
    /// Records taken from the journal of an earlier run (not in the output file yet).
    from_journal: usize,
    /// Records appended by this run.
    added: usize,
    /// Where to cut the journal before appending (resume: its whole lines), or `None` to start it afresh.
    journal_keep: Option<u64>,
    file: Option<std::fs::File>,
}

impl Output {
    /// Checks `path` (format, not a directory, not an existing file unless `overwrite` or `resume`) and, with
    /// `resume`, reads what it and its journal hold. Nothing is written yet.
    pub fn open(path: &Path, overwrite: bool, resume: bool) -> Result<Output> {
        let format = Format::of(path)?;
        if path.is_dir() {
            bail!(
                "--output {} is a directory; expected a file name ending in .jsonl, .csv or .json",
                path.display()
            );
        }
        let journal = journal_path(path);
        let (exists, journaled) = (path.exists(), journal.exists());
        if !overwrite && !resume {
            if exists {
                bail!(
                    "--output {} already exists; add --resume to caption only the images not in it yet, or \
                     --overwrite to replace it",
                    path.display()
                );
            }
            if journaled {
                bail!(
                    "--output {}: {} holds the captions of an interrupted run; add --resume to continue it, or \
                     --overwrite to start over",
                    path.display(),
                    journal.display()
                );
            }
        }
        let mut out = Output {
            path: path.to_path_buf(),
            journal,
            format,
            records: Vec::new(),
            keys: HashSet::new(),
            from_journal: 0,
            added: 0,
            journal_keep: None,
            file: None,
        };
        if resume {
            if exists {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("--resume: reading {}", path.display()))?;
                for r in format.parse(path, &text).context("--resume")? {
                    out.keep(r);
                }
            }
            if journaled {
                let (records, whole, torn) = read_journal(&out.journal).context("--resume")?;
                if torn {
                    eprintln!(
                        "warning: {}: dropping its last line, cut short when the run was killed",
                        out.journal.display()
                    );
                }
                for r in records {
                    out.from_journal += usize::from(out.keep(r));
                }
                out.journal_keep = Some(whole);
            }
        }
        Ok(out)
    }

    fn keep(&mut self, r: Record) -> bool {
        let new = self.keys.insert(self.format.key(&r.image));
        if new {
            self.records.push(r);
        }
        new
    }

    /// COCO results name images by file name alone: two images sharing one would be one result.
    pub fn check_names(&self, images: &[PathBuf]) -> Result<()> {
        if self.format != Format::Coco {
            return Ok(());
        }
        let mut seen = std::collections::HashMap::new();
        for image in images {
            let name = file_name(&image.to_string_lossy());
            if let Some(first) = seen.insert(name.clone(), image) {
                bail!(
                    "--output {}: COCO results name each image by its file name, and {} and {} are both `{name}`; \
                     write .jsonl or .csv to keep whole paths",
                    self.path.display(),
                    first.display(),
                    image.display()
                );
            }
        }
        Ok(())
    }

    /// Whether `image` has a caption already (resume).
    pub fn has(&self, image: &Path) -> bool {
        self.keys.contains(&self.format.key(&image.to_string_lossy()))
    }

    /// Appends one batch to the journal and flushes it.
    pub fn append(&mut self, batch: Vec<Record>) -> Result<()> {
        let journal = self.journal.clone();
        let err = |e: std::io::Error| anyhow!("writing {}: {e}", journal.display());
        if self.file.is_none() {
            if let Some(dir) = journal.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| anyhow!("creating {}: {e}", dir.display()))?;
            }
            let file = match self.journal_keep {
                Some(len) => {
                    let f = std::fs::OpenOptions::new().append(true).open(&journal).map_err(err)?;
                    f.set_len(len).map_err(err)?;
                    f
                }
                None => std::fs::File::create(&journal).map_err(err)?,
            };
            self.file = Some(file);
        }
        let mut text = String::new();
        for r in &batch {
            text.push_str(&r.json_line());
            text.push('\n');
        }
        let file = self.file.as_mut().expect("opened above");
        file.write_all(text.as_bytes()).and_then(|()| file.flush()).map_err(err)?;
        for r in batch {
            self.added += usize::from(self.keep(r));
        }
        Ok(())
    }

    /// Renders everything into the output file (temporary file, fsync, rename) and removes the journal; returns
    /// how many captions the file holds. Leaves the files as they are when this run added nothing to them.
    pub fn finish(mut self) -> Result<usize> {
        self.file = None;
        if self.added == 0 && self.from_journal == 0 {
            if self.journal_keep.is_some() {
                // resumed from a journal whose captions the output held already (or none at all)
                remove(&self.journal)?;
            }
            return Ok(self.records.len());
        }
        report::write_atomic(&self.path, self.format.render(&self.records).as_bytes())
            .map_err(|e| anyhow!("writing --output {e}"))?;
        remove(&self.journal)?;
        Ok(self.records.len())
    }
}

fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(anyhow!("removing {}: {e}", path.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(image: &str, caption: &str) -> Record {
        Record { image: image.into(), caption: caption.into(), token_ids: None }
    }

    /// Rendered and parsed back, every format keeps what it holds (COCO: the file name), quotes, commas and line
    /// breaks included; a BOM and CRLF line ends are read.
    #[test]
    fn formats_round_trip() {
        let records = vec![rec("a/x.png", "two, \"quoted\"\nlines"), rec("b/y.jpg", "plain")];
        let p = Path::new("out");
        for f in [Format::Jsonl, Format::Csv] {
            let back = f.parse(p, &f.render(&records)).unwrap();
            let pairs: Vec<_> = back.iter().map(|r| (r.image.clone(), r.caption.clone())).collect();
            assert_eq!(
                pairs,
                [
                    ("a/x.png".into(), records[0].caption.clone()),
                    ("b/y.jpg".into(), "plain".into())
                ]
            );
        }
        let coco = Format::Coco.parse(p, &Format::Coco.render(&records)).unwrap();
        assert_eq!((coco[0].image.as_str(), coco[1].caption.as_str()), ("x.png", "plain"));
        let crlf = Format::Csv.parse(p, "\u{feff}image,caption\r\nq.png,\"a\r\nb\"\r\n").unwrap();
        assert_eq!((crlf[0].image.as_str(), crlf[0].caption.as_str()), ("q.png", "a\r\nb"));
    }

    /// A file that is not what this command writes is named with the line and what was expected.
    #[test]
    fn malformed_files_are_named_with_the_line() {
        let p = Path::new("out.csv");
        let err = |f: Format, text: &str| f.parse(p, text).unwrap_err().to_string();
        assert!(err(Format::Csv, "image,caption\nx.png,\"open").contains("never closed"));
        assert!(err(Format::Csv, "image,caption\nx.png,\"a\"b").contains("after a closing quote"));
        assert!(err(Format::Csv, "image,caption\nx.png,a\"b").contains("quote inside"));
        assert!(err(Format::Csv, "file,text\n").contains("line 1: expected the header"));
        assert!(
            err(Format::Csv, "image,caption\nx.png,a,b\n").contains("line 2: expected 2 fields")
        );
        assert!(err(Format::Coco, "{}").contains("not an array"));
        assert!(err(Format::Coco, "[{\"caption\": \"c\"}]").contains("entry 0 has no \"image_id\""));
        assert!(err(Format::Jsonl, "{\"image\": 1}\n").contains("line 1"));
    }
}
