//! `cargo xtask download-model <repo_id> [--revision REV] [--out DIR] [--overwrite]`: a hub model into the
//! Hugging Face cache through the `hub` crate (docs/hub.md), reusing what Python or an earlier run already
//! downloaded and resuming what was cut short (Ctrl-C included). Prints the snapshot folder, which can be given
//! wherever a model directory is.
//!
//! `--out DIR` also puts the files into DIR: the large ones (the weights) hard-linked to the cache's blobs when DIR
//! is on the same filesystem, so several GB are not stored twice; the rest copied, so editing a config in DIR never
//! changes the cache. A non-empty DIR is refused unless `--overwrite` (checked before anything is downloaded), and
//! even then only the snapshot's files are replaced there, each written under a temporary name and renamed.
use crate::launcher::Interrupted;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// Files from this size on are hard-linked rather than copied (configs and tokenizers are smaller, shards larger).
const LINK_FROM_BYTES: u64 = 64 << 20;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Hub id, e.g. google/paligemma-3b-pt-224 (gated: accept the licence on its page and set HF_TOKEN).
    pub repo_id: String,
    /// Branch, tag or commit.
    #[arg(long, default_value = hub::DEFAULT_REVISION)]
    pub revision: String,
    /// Also put the model's files into this directory (weights hard-linked to the cache where possible).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write into a non-empty --out, replacing the model's files there; other files are left alone.
    #[arg(long)]
    pub overwrite: bool,
}

pub fn run(args: &Args) -> Result<i32> {
    if let Some(out) = &args.out {
        check_out(out, args.overwrite)?;
    }
    interrupt::install("keeping what was received for a resume, stopping after this chunk");
    let mut opts = hub::Options::from_env();
    opts.should_stop = Some(|| interrupt::requested().is_some());
    let repo = hub::Repo::model(&args.repo_id);
    let snapshot =
        hub::download(&repo, &args.revision, &hub::default_model_files, &opts).map_err(stopped)?;
    println!("{}", snapshot.display());
    if let Some(out) = &args.out {
        let (linked, copied) = export(&snapshot, out, LINK_FROM_BYTES)?;
        println!("{}: {linked} file(s) hard-linked to the cache, {copied} copied", out.display());
    }
    Ok(0)
}

/// A download stopped by a signal exits with 128 + its number, as every xtask command does.
fn stopped(e: hub::HubError) -> anyhow::Error {
    match (&e, interrupt::requested()) {
        (hub::HubError::Interrupted { .. }, Some(sig)) => {
            anyhow::Error::new(Interrupted(sig)).context(e.to_string())
        }
        _ => e.into(),
    }
}

/// `out` may be written: absent, an empty directory, or any directory with `--overwrite`.
fn check_out(out: &Path, overwrite: bool) -> Result<()> {
    let meta = match std::fs::metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        other => other.with_context(|| format!("--out {}", out.display()))?,
    };
    if !meta.is_dir() {
        bail!("--out {} exists and is not a directory", out.display());
    }
    let mut present: Vec<String> = std::fs::read_dir(out)
        .with_context(|| format!("listing --out {}", out.display()))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    present.sort();
    if !present.is_empty() && !overwrite {
        let listed = present.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
        let more = if present.len() > 5 {
            format!(" and {} more", present.len() - 5)
        } else {
            String::new()
        };
        bail!(
            "--out {} is not empty ({listed}{more}); pass --overwrite to replace the model's files there (other \
             files are left as they are), or choose an empty or new directory",
            out.display()
        );
    }
    Ok(())
}

/// Puts every file of `snapshot` into `out` (hard link from `link_from` bytes on where possible, else a copy);
/// returns (linked, copied).
fn export(snapshot: &Path, out: &Path, link_from: u64) -> Result<(usize, usize)> {
    let (mut linked, mut copied) = (0, 0);
    for rel in files_under(snapshot, Path::new(""))? {
        // The snapshot's entries are symlinks into blobs/: link or copy the blob itself.
        let blob = std::fs::canonicalize(snapshot.join(&rel))
            .with_context(|| format!("{} in the cache", snapshot.join(&rel).display()))?;
        let dest = out.join(&rel);
        if place(&blob, &dest, link_from).with_context(|| format!("writing {}", dest.display()))? {
            linked += 1;
        } else {
            copied += 1;
        }
    }
    Ok((linked, copied))
}

/// Writes `dest` as a hard link to (or a copy of) `blob` under a temporary name, then renames it into place;
/// true when linked.
fn place(blob: &Path, dest: &Path, link_from: u64) -> std::io::Result<bool> {
    if is_same_file(blob, dest) {
        // Linked by an earlier run; renaming a link onto another link to the same file would do nothing at all.
        return Ok(true);
    }
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let name = dest.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dest.with_file_name(format!(".{name}.download-tmp"));
    let _ = std::fs::remove_file(&tmp);
    let big = std::fs::metadata(blob)?.len() >= link_from;
    let linked = big && std::fs::hard_link(blob, &tmp).is_ok();
    let result = if linked { Ok(0) } else { std::fs::copy(blob, &tmp) }
        .and_then(|_| std::fs::rename(&tmp, dest));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| linked)
}

fn is_same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// Paths of the files under `dir/rel`, relative to `dir`, symlinks followed.
fn files_under(dir: &Path, rel: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let here = dir.join(rel);
    for entry in std::fs::read_dir(&here).with_context(|| format!("listing {}", here.display()))? {
        let rel =
            rel.join(entry.with_context(|| format!("listing {}", here.display()))?.file_name());
        if dir.join(&rel).is_dir() {
            files.extend(files_under(dir, &rel)?);
        } else {
            files.push(rel);
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn out_gets_weights_linked_and_configs_copied_and_is_never_overwritten_unasked() {
        let tmp = std::env::temp_dir().join(format!("xtask-download-model-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let (blobs, snapshot, out) =
            (tmp.join("blobs"), tmp.join("snapshots/abc"), tmp.join("out"));
        std::fs::create_dir_all(&blobs).unwrap();
        std::fs::create_dir_all(&snapshot).unwrap();
        std::fs::write(blobs.join("w"), vec![7u8; 4096]).unwrap();
        std::fs::write(blobs.join("c"), b"{}").unwrap();
        std::os::unix::fs::symlink("../../blobs/w", snapshot.join("model.safetensors")).unwrap();
        std::os::unix::fs::symlink("../../blobs/c", snapshot.join("config.json")).unwrap();

        check_out(&out, false).unwrap();
        assert_eq!(export(&snapshot, &out, 1024).unwrap(), (1, 1));
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        assert_eq!(ino(&out.join("model.safetensors")), ino(&blobs.join("w")));
        assert_ne!(ino(&out.join("config.json")), ino(&blobs.join("c")));
        assert_eq!(std::fs::read(out.join("config.json")).unwrap(), b"{}");

        let refused = check_out(&out, false).unwrap_err().to_string();
        assert!(
            refused.contains("not empty (config.json, model.safetensors)")
                && refused.contains("--overwrite")
        );
        check_out(&out, true).unwrap();
        std::fs::write(out.join("notes.txt"), "mine").unwrap();
        assert_eq!(export(&snapshot, &out, 1024).unwrap(), (1, 1));
        assert_eq!(std::fs::read_to_string(out.join("notes.txt")).unwrap(), "mine");
        assert!(check_out(&out.join("notes.txt"), true).is_err());
        let leftovers = std::fs::read_dir(&out).unwrap().filter(|e| {
            e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".download-tmp")
        });
        assert_eq!(leftovers.count(), 0);
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
