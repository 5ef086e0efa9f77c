//! Errors of writing and reading event files; each names the file, and reading errors the byte offset.
use std::ops::Range;
use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },

    /// A stored CRC does not match the bytes it covers: one of `checked` (or the CRC itself) is damaged.
    #[error(
        "{}: {part} CRC mismatch in the record at byte {record_offset}: bytes {}..{} (or their CRC) are corrupt \
         (stored {stored:#010x}, computed {computed:#010x})",
        path.display(), checked.start, checked.end
    )]
    Crc {
        path: PathBuf,
        /// "length" (the 8-byte length header) or "data" (the serialized Event).
        part: &'static str,
        record_offset: u64,
        /// The file's byte range the CRC covers.
        checked: Range<u64>,
        stored: u32,
        computed: u32,
    },

    /// The file ends inside a record: a writer was killed mid-write, or the file was cut.
    #[error("{}: truncated record at byte {record_offset}: {needed} bytes needed, {available} left", path.display())]
    Truncated { path: PathBuf, record_offset: u64, needed: u64, available: u64 },

    /// The CRCs match but the record is not a valid Event protobuf.
    #[error("{}: the record at byte {record_offset} is not a valid Event: {reason}", path.display())]
    Decode { path: PathBuf, record_offset: u64, reason: String },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}
