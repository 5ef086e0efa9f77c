//! `caption --image` values → the image files to caption.
//!
//! Each value is, in this order:
//! * an existing file: captioned as given, whatever its extension (an unreadable one is reported when it is read);
//! * an existing directory: walked recursively for files with an image extension ([`IMAGE_EXTENSIONS`], any case),
//!   in sorted order; hidden entries (names starting with `.`) are skipped and symlinked directories are not
//!   followed (no cycles), symlinked files are;
//! * a glob pattern (it holds `*` or `?`): `*` matches any run of characters within one path component, `?` one
//!   character, `**` (a whole component) any number of directories, the current one included. Matched files must
//!   have an image extension, matched directories are walked as above; `*` and `?` do not match a leading `.`
//!   (as in a shell). Quote patterns so that the shell does not expand them first.
//!
//! A path that does not exist, a directory without images and a pattern that matches none are errors naming the
//! value. Paths keep the form they were given in (`data/scenes` yields `data/scenes/a/1.png`), which is how the
//! output names them. The same path given twice (or found twice; `./` ignored) is captioned once, at its first
//! place; other spellings of one file (`../x/a.png`, a symlink) are not resolved.
use anyhow::{bail, Result};
use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

/// The extensions a directory walk or a glob pattern picks up (compared case-insensitively): what this build
/// decodes (JPEG, PNG, TIFF, WebP). A BMP given by name is still attempted and reported as unsupported.
pub const IMAGE_EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "png", "tif", "tiff", "webp"];

/// The expanded `--image` values.
pub struct Inputs {
    /// Files to caption, each once, in the order the values gave them.
    pub images: Vec<PathBuf>,
    /// How many repeated paths were dropped.
    pub duplicates: usize,
}

pub fn expand(values: &[PathBuf]) -> Result<Inputs> {
    let mut images = Vec::new();
    for value in values {
        let before = images.len();
        match std::fs::metadata(value) {
            Ok(m) if m.is_dir() => {
                walk(value, &mut images)?;
                if images.len() == before {
                    bail!(
                        "--image {}: the directory holds no images (expected files ending in {}, searched \
                         recursively)",
                        value.display(),
                        extension_list()
                    );
                }
            }
            // a file (or a device, a pipe…): taken as given; reading it says what is wrong with it
            Ok(_) => images.push(value.clone()),
            Err(_) if is_pattern(value) => {
                glob(value, &mut images)?;
                if images.len() == before {
                    bail!(
                        "--image {}: the pattern matches no images (expected files ending in {})",
                        value.display(),
                        extension_list()
                    );
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "--image {}: no such file or directory (expected an image file, a directory of images or a \
                 glob pattern)",
                value.display()
            ),
            Err(e) => bail!("--image {}: {e}", value.display()),
        }
    }
    let mut seen = HashSet::new();
    let total = images.len();
    // `a.png` and `./a.png` are one path (`PathBuf` equality already ignores `a//b` and inner `./`)
    images.retain(|p| {
        seen.insert(p.components().filter(|c| *c != Component::CurDir).collect::<PathBuf>())
    });
    Ok(Inputs { duplicates: total - images.len(), images })
}

fn extension_list() -> String {
    IMAGE_EXTENSIONS.map(|e| format!(".{e}")).join(", ")
}

pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

fn is_pattern(path: &Path) -> bool {
    path.to_str().is_some_and(|s| s.contains(['*', '?']))
}

/// `dir` for the file system: the empty path (a pattern with no literal directory) is the current directory.
fn on_disk(dir: &Path) -> &Path {
    if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }
}

/// The entries of `dir` that are not hidden (unless `hidden`), sorted by name, with their types.
fn entries(dir: &Path, hidden: bool) -> Result<Vec<(String, PathBuf, std::fs::FileType)>> {
    let read = |e: std::io::Error| anyhow::anyhow!("reading the directory {}: {e}", dir.display());
    let mut out = Vec::new();
    for entry in std::fs::read_dir(on_disk(dir)).map_err(read)? {
        let entry = entry.map_err(read)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && !hidden {
            continue;
        }
        let kind = entry.file_type().map_err(read)?;
        out.push((name, dir.join(entry.file_name()), kind));
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

/// Image files under `dir`, recursively, in sorted order.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for (_, path, kind) in entries(dir, false)? {
        if kind.is_dir() {
            walk(&path, out)?;
        } else if (kind.is_file() || (kind.is_symlink() && path.is_file()))
            && has_image_extension(&path)
        {
            out.push(path);
        }
    }
    Ok(())
}

/// Expands a pattern: its leading components without `*` or `?` name the directory the search starts from.
fn glob(pattern: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut base = PathBuf::new();
    let mut rest: Vec<String> = Vec::new();
    for c in pattern.components() {
        match c {
            Component::Normal(s) if !rest.is_empty() || is_pattern(Path::new(s)) => {
                rest.push(s.to_string_lossy().into_owned())
            }
            Component::ParentDir if !rest.is_empty() => rest.push("..".into()),
            Component::CurDir if !rest.is_empty() => {}
            c => base.push(c),
        }
    }
    let found = out.len();
    search(&base, &rest, out)?;
    out[found..].sort();
    Ok(())
}

fn search(dir: &Path, pattern: &[String], out: &mut Vec<PathBuf>) -> Result<()> {
    let Some((first, rest)) = pattern.split_first() else {
        // the whole pattern matched `dir`: an image file, or a directory to walk
        let disk = on_disk(dir);
        if disk.is_dir() {
            walk(dir, out)?;
        } else if disk.is_file() && has_image_extension(dir) {
            out.push(dir.to_path_buf());
        }
        return Ok(());
    };
    if !on_disk(dir).is_dir() {
        return Ok(());
    }
    if first == "**" {
        if rest.is_empty() {
            return walk(dir, out);
        }
        search(dir, rest, out)?;
        for (_, path, kind) in entries(dir, false)? {
            if kind.is_dir() {
                search(&path, pattern, out)?;
            }
        }
    } else if !is_pattern(Path::new(first)) {
        let next = dir.join(first);
        if std::fs::symlink_metadata(on_disk(&next)).is_ok() {
            search(&next, rest, out)?;
        }
    } else {
        for (name, path, _) in entries(dir, first.starts_with('.'))? {
            if matches(first.as_bytes(), name.as_bytes()) {
                search(&path, rest, out)?;
            }
        }
    }
    Ok(())
}

/// Whether a file name matches one component of a pattern: `*` any run of bytes, `?` one character.
fn matches(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| matches(rest, &s[i..])),
        // one UTF-8 character: its lead byte and its continuation bytes
        Some((b'?', rest)) => match s.split_first() {
            Some((_, tail)) => {
                let skip = tail.iter().take_while(|&&b| b & 0xC0 == 0x80).count();
                matches(rest, &tail[skip..])
            }
            None => false,
        },
        Some((c, rest)) => s.first() == Some(c) && matches(rest, &s[1..]),
    }
}
