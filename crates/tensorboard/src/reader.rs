//! Reading event files back: [`read_events`] for one file (both CRCs of every record checked), and [`scalars`] /
//! [`texts`] for a run directory as TensorBoard shows it.
use crate::event::{decode_event, Data, Event, SessionStatus, What};
use crate::record::records;
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every event of one file, in order. A CRC mismatch, a cut record or an undecodable Event is an error naming the
/// file and the record's byte offset.
pub fn read_events(path: &Path) -> Result<Vec<Event>> {
    let bytes = std::fs::read(path).map_err(Error::io(path))?;
    records(path, &bytes)?
        .into_iter()
        .map(|r| {
            decode_event(r.data).map_err(|reason| Error::Decode {
                path: path.to_owned(),
                record_offset: r.offset,
                reason,
            })
        })
        .collect()
}

/// The event files directly in `dir` (TensorBoard's test: "tfevents" in the name; sub-directories are other
/// runs), in name order, which is the order TensorBoard reads them in.
pub fn event_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(Error::io(dir))? {
        let entry = entry.map_err(Error::io(dir))?;
        let is_file = entry.file_type().map_err(Error::io(entry.path()))?.is_file();
        if is_file && entry.file_name().to_string_lossy().contains("tfevents") {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// Step-ordered points per tag.
pub type Series<T> = BTreeMap<String, Vec<(i64, T)>>;

/// Every scalar of the run in `dir`, per tag, as TensorBoard shows it after restarts: files are read in name order;
/// a point at step `s` replaces the tag's earlier points at `s` and later (the data server's preemption), and a
/// `SessionLog.START` at `s` drops all tags' points at `s` and later (the `EventAccumulator`'s purge).
pub fn scalars(dir: &Path) -> Result<Series<f64>> {
    series(dir, |data| match data {
        Data::Scalar(x) => Some(*x),
        _ => None,
    })
}

/// Every text value (text plugin) of the run in `dir`, per tag, with the same restart rules as [`scalars`].
pub fn texts(dir: &Path) -> Result<Series<String>> {
    series(dir, |data| match data {
        Data::Text(s) => Some(s.clone()),
        _ => None,
    })
}

fn series<T>(dir: &Path, pick: impl Fn(&Data) -> Option<T>) -> Result<Series<T>> {
    let mut out: Series<T> = BTreeMap::new();
    for file in event_files(dir)? {
        for event in read_events(&file)? {
            match &event.what {
                What::SessionLog(SessionStatus::Start) => {
                    out.values_mut().for_each(|points| points.retain(|p| p.0 < event.step));
                }
                What::Summary(values) => {
                    for v in values {
                        if let Some(x) = pick(&v.data) {
                            let points = out.entry(v.tag.clone()).or_default();
                            points.retain(|p| p.0 < event.step);
                            points.push((event.step, x));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    out.retain(|_, points| !points.is_empty());
    Ok(out)
}
