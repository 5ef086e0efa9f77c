//! TFRecord framing, the container of event files: each record is
//!
//! ```text
//! u64 length (little-endian) | u32 masked_crc32c(length bytes) | data[length] | u32 masked_crc32c(data)
//! ```
//!
//! (<https://github.com/tensorflow/tensorboard/blob/master/tensorboard/summary/writer/record_writer.py>, and
//! TensorFlow's `io::RecordWriter`.) The two CRCs let a reader
//! tell a damaged length from a damaged payload.
use crate::crc32c::masked_crc32c;
use crate::error::{Error, Result};
use std::path::Path;

const HEADER: usize = 12;
const FOOTER: usize = 4;

/// Appends the framed record of `data` to `out`.
pub(crate) fn frame(data: &[u8], out: &mut Vec<u8>) {
    let length = (data.len() as u64).to_le_bytes();
    out.extend_from_slice(&length);
    out.extend_from_slice(&masked_crc32c(&length).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
}

/// One record's payload and the file offset where the record starts.
pub(crate) struct Record<'a> {
    pub offset: u64,
    pub data: &'a [u8],
}

/// Splits a whole file's bytes into records, checking both CRCs of each.
pub(crate) fn records<'a>(path: &Path, bytes: &'a [u8]) -> Result<Vec<Record<'a>>> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let (record, next) = record_at(path, bytes, pos)?;
        out.push(record);
        pos = next;
    }
    Ok(out)
}

/// The record starting at `pos` and the offset after it.
fn record_at<'a>(path: &Path, bytes: &'a [u8], pos: usize) -> Result<(Record<'a>, usize)> {
    let offset = pos as u64;
    let truncated = |needed: usize| Error::Truncated {
        path: path.to_owned(),
        record_offset: offset,
        needed: needed as u64,
        available: (bytes.len() - pos) as u64,
    };
    let header = bytes.get(pos..pos + HEADER).ok_or_else(|| truncated(HEADER))?;
    check(path, "length", offset, pos, &header[..8], &header[8..])?;
    let length = u64::from_le_bytes(header[..8].try_into().unwrap());
    let total = usize::try_from(length)
        .ok()
        .and_then(|n| n.checked_add(HEADER + FOOTER))
        .filter(|&t| t <= bytes.len() - pos)
        .ok_or_else(|| {
            truncated(usize::try_from(length).unwrap_or(usize::MAX).saturating_add(HEADER + FOOTER))
        })?;
    let data_start = pos + HEADER;
    let data = &bytes[data_start..pos + total - FOOTER];
    check(path, "data", offset, data_start, data, &bytes[pos + total - FOOTER..pos + total])?;
    Ok((Record { offset, data }, pos + total))
}

/// Compares the stored masked CRC of `covered` (which starts at file offset `start`) with a fresh one.
fn check(
    path: &Path,
    part: &'static str,
    record_offset: u64,
    start: usize,
    covered: &[u8],
    crc: &[u8],
) -> Result<()> {
    let stored = u32::from_le_bytes(crc.try_into().unwrap());
    let computed = masked_crc32c(covered);
    if stored == computed {
        return Ok(());
    }
    Err(Error::Crc {
        path: path.to_owned(),
        part,
        record_offset,
        checked: start as u64..(start + covered.len()) as u64,
        stored,
        computed,
    })
}
