//! `cargo xtask download-model <repo_id> [--revision REV] [--out DIR] [--overwrite]`: a hub model into the
//! Hugging Face cache through the `hub` crate (docs/hub.md), reusing what Python or an earlier run already
//! downloaded and resuming what was cut short (Ctrl-C included). Prints the snapshot folder, which can be given
//! wherever a model directory is.
//!
//! `--out DIR` also puts the files into DIR: the large ones (the weights) hard-linked to the cache's blobs when DIR
//! is on the same filesystem, so several GB are not stored twice; the rest copied, so editing a config in DIR never
//! changes the cache. A non-empty DIR is refused unless `--overwrite` (checked before anything is downloaded), and
//! even then only the snapshot's files are replaced there, each written under a temporary name and renamed.
//!
//! The export (`--out`) is `hub::export`, shared with `cargo xtask download` of hub datasets.
use crate::launcher::Interrupted;
use anyhow::Result;
use std::path::PathBuf;

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
        hub::check_out(out, args.overwrite)?;
    }
    interrupt::install("keeping what was received for a resume, stopping after this chunk");
    let mut opts = hub::Options::from_env();
    opts.should_stop = Some(|| interrupt::requested().is_some());
    let repo = hub::Repo::model(&args.repo_id);
    let snapshot =
        hub::download(&repo, &args.revision, &hub::default_model_files, &opts).map_err(stopped)?;
    println!("{}", snapshot.display());
    if let Some(out) = &args.out {
        let files = hub::snapshot_files(&snapshot)?;
        let (linked, copied) = hub::export(&snapshot, &files, out, hub::LINK_FROM_BYTES)?;
        println!("{}: {linked} file(s) hard-linked to the cache, {copied} copied", out.display());
    }
    Ok(0)
}

/// A download stopped by a signal exits with 128 + its number, as every xtask command does, whatever the error
/// the signal ended it with (`Interrupted`, or another when it came during a request or a retry's wait).
fn stopped(e: hub::HubError) -> anyhow::Error {
    match interrupt::requested() {
        Some(sig) => anyhow::Error::new(Interrupted(sig)).context(e.to_string()),
        None => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The export itself is tested in the hub crate (`hub::export`); here, that a non-empty --out is refused
    /// before anything is asked of the hub.
    #[test]
    fn a_non_empty_out_is_refused_before_any_download() {
        let out = std::env::temp_dir().join(format!("xtask-download-model-{}", std::process::id()));
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("config.json"), "{}").unwrap();
        let args = Args {
            repo_id: "google/pg-nowhere".into(),
            revision: "main".into(),
            out: Some(out.clone()),
            overwrite: false,
        };
        let result = run(&args);
        std::fs::remove_dir_all(&out).unwrap();
        let refused = format!("{:#}", result.unwrap_err());
        assert!(
            refused.contains("not empty (config.json)") && refused.contains("--overwrite"),
            "{refused}"
        );
    }
}
