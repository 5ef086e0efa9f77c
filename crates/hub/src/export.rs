//! A snapshot's files into a plain directory (`--out` of `cargo xtask download-model` and `cargo xtask download`),
//! one implementation for models and datasets.
//!
//! Large files (weights, parquet shards) are hard-linked to the cache's blobs when the directory is on the same
//! filesystem, so several GB are not stored twice; the rest is copied, so editing a config in the directory never
//! changes the cache. A non-empty directory is refused unless the caller was told to overwrite ([`check_out`],
//! meant to run before anything is downloaded), and even then only the snapshot's files are replaced there, each
//! written under a temporary name and renamed: a reader never sees half a file, and other files are left alone.
use std::path::Path;

use crate::HubError;

/// Files from this size on are hard-linked rather than copied (configs and tokenizers are smaller, weight shards
/// larger).
pub const LINK_FROM_BYTES: u64 = 64 << 20;

/// `out` may be written: absent, an empty directory, or any directory when `overwrite`.
pub fn check_out(out: &Path, overwrite: bool) -> Result<(), HubError> {
    let refuse = |why: String| HubError::Out { out: out.to_path_buf(), why };
    let meta = match std::fs::metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        other => other.map_err(|e| HubError::io(out, e))?,
    };
    if !meta.is_dir() {
        return Err(refuse("exists and is not a directory".into()));
    }
    let mut present: Vec<String> = std::fs::read_dir(out)
        .map_err(|e| HubError::io(out, e))?
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
        return Err(refuse(format!(
            "is not empty ({listed}{more}); pass --overwrite to replace the downloaded files there (other files \
             are left as they are), or choose an empty or new directory"
        )));
    }
    Ok(())
}

/// Puts `files` (paths relative to `snapshot`, `/`-separated, as [`snapshot_files`] lists them) into `out` under
/// the same relative paths: a hard link from `link_from` bytes on where possible, else a copy. Returns (linked,
/// copied).
pub fn export(
    snapshot: &Path,
    files: &[String],
    out: &Path,
    link_from: u64,
) -> Result<(usize, usize), HubError> {
    let (mut linked, mut copied) = (0, 0);
    for rel in files {
        if !crate::is_safe_file_name(rel) {
            let why = format!("{rel:?} would be written outside it; refused");
            return Err(HubError::Out { out: out.to_path_buf(), why });
        }
        // The snapshot's entries are symlinks into blobs/: link or copy the blob itself.
        let entry = snapshot.join(rel);
        let blob = std::fs::canonicalize(&entry).map_err(|e| HubError::io(&entry, e))?;
        let dest = out.join(rel);
        if place(&blob, &dest, link_from).map_err(|e| HubError::io(&dest, e))? {
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

#[cfg(unix)]
fn is_same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// Without inode numbers every file is written again (a copy or a new link: the same bytes either way).
#[cfg(not(unix))]
fn is_same_file(_a: &Path, _b: &Path) -> bool {
    false
}

/// Every file under `snapshot` (symlinks followed), as sorted `/`-separated paths relative to it.
pub fn snapshot_files(snapshot: &Path) -> Result<Vec<String>, HubError> {
    let mut files = Vec::new();
    files_under(snapshot, "", &mut files)?;
    files.sort();
    Ok(files)
}

fn files_under(dir: &Path, rel: &str, files: &mut Vec<String>) -> Result<(), HubError> {
    let here = dir.join(rel);
    for entry in std::fs::read_dir(&here).map_err(|e| HubError::io(&here, e))? {
        let name = entry.map_err(|e| HubError::io(&here, e))?.file_name();
        let name = name.to_string_lossy();
        let rel = if rel.is_empty() { name.into_owned() } else { format!("{rel}/{name}") };
        if dir.join(&rel).is_dir() {
            files_under(dir, &rel, files)?;
        } else {
            files.push(rel);
        }
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn out_gets_weights_linked_and_configs_copied_and_is_never_overwritten_unasked() {
        /// Removes the test's folder however the test ends.
        struct Cleanup(std::path::PathBuf);
        impl Drop for Cleanup {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let tmp = std::env::temp_dir().join(format!("hub-export-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let _cleanup = Cleanup(tmp.clone());
        let (blobs, snapshot, out) =
            (tmp.join("blobs"), tmp.join("snapshots/abc"), tmp.join("out"));
        std::fs::create_dir_all(&blobs).unwrap();
        std::fs::create_dir_all(snapshot.join("data")).unwrap();
        std::fs::write(blobs.join("w"), vec![7u8; 4096]).unwrap();
        std::fs::write(blobs.join("c"), b"{}").unwrap();
        std::fs::write(blobs.join("p"), b"PAR1").unwrap();
        std::os::unix::fs::symlink("../../blobs/w", snapshot.join("model.safetensors")).unwrap();
        std::os::unix::fs::symlink("../../blobs/c", snapshot.join("config.json")).unwrap();
        std::os::unix::fs::symlink("../../../blobs/p", snapshot.join("data/train.parquet"))
            .unwrap();

        let files = snapshot_files(&snapshot).unwrap();
        assert_eq!(files, ["config.json", "data/train.parquet", "model.safetensors"]);
        check_out(&out, false).unwrap();
        assert_eq!(export(&snapshot, &files, &out, 1024).unwrap(), (1, 2));
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        assert_eq!(ino(&out.join("model.safetensors")), ino(&blobs.join("w")));
        assert_ne!(ino(&out.join("config.json")), ino(&blobs.join("c")));
        assert_eq!(std::fs::read(out.join("config.json")).unwrap(), b"{}");
        assert_eq!(std::fs::read(out.join("data/train.parquet")).unwrap(), b"PAR1");

        let refused = check_out(&out, false).unwrap_err().to_string();
        assert!(
            refused.contains("not empty (config.json, data, model.safetensors)")
                && refused.contains("--overwrite"),
            "{refused}"
        );
        check_out(&out, true).unwrap();
        std::fs::write(out.join("notes.txt"), "mine").unwrap();
        // Only the files asked for: a subset leaves the rest as it is.
        let some = vec!["config.json".to_string(), "model.safetensors".to_string()];
        assert_eq!(export(&snapshot, &some, &out, 1024).unwrap(), (1, 1));
        assert_eq!(std::fs::read_to_string(out.join("notes.txt")).unwrap(), "mine");
        assert!(check_out(&out.join("notes.txt"), true).is_err());
        assert!(export(&snapshot, &["../escape".to_string()], &out, 1024).is_err());
        let leftovers = std::fs::read_dir(&out).unwrap().filter(|e| {
            e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".download-tmp")
        });
        assert_eq!(leftovers.count(), 0);
    }
}
