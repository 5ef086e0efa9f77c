//! [`EventWriter`]: one event file, written as TensorBoard's own writer does
//! (<https://github.com/tensorflow/tensorboard/blob/master/tensorboard/summary/writer/event_file_writer.py>).
//!
//! Every `add_*` call frames its event and hands the whole record to the OS in one `write`, so a run that is killed
//! keeps everything it logged before (only a power loss can cut the last record: TensorBoard skips a cut tail,
//! [`crate::read_events`] reports it as [`crate::Error::Truncated`]). [`EventWriter::flush`] additionally asks the
//! OS to put the file on disk, for checkpoints.
//!
//! Every file starts with the file version and `SessionLog.START` at the first step its run logs (0 for a new
//! run), as TensorFlow's `Supervisor` wrote at each session start. A resumed run does not reopen the old file: it
//! starts a new one in the same directory ([`EventWriter::resume`]), as torch's `SummaryWriter(purge_step=…)` does.
//! TensorBoard reads a directory's files in name order (the Unix time in the name keeps it chronological), and
//! the new file's START makes both of its loaders hide what the interrupted run logged at the resumed run's first
//! step and later (the resumed run recomputes those steps from its checkpoint, maybe differently):
//! - the Python loader (`--load_fast=false`, `plugin_event_accumulator.py`) purges every tag's points at and after
//!   a START's step, except at the first START of a run, which it takes for the session's beginning; hence the
//!   START in the first file too, without which a resume would purge nothing;
//! - the Rust data server (the default; `data/server/reservoir.rs`) ignores STARTs but drops, per tag, earlier
//!   points at or after any step it sees again, which gives the same picture once the resumed run has logged the
//!   tag again. (A tag the resumed run never logs again keeps its stale points there; the Python loader and
//!   [`crate::scalars`] hide them.)
use crate::event::{
    encode_event, Data, Event, SessionStatus, Value, What, FILE_VERSION, TEXT_PLUGIN,
};
use crate::record::frame;
use crate::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Distinguishes files one process creates within the same second, like tensorboard's `_global_uid`.
static FILE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes one TensorBoard event file.
#[derive(Debug)]
pub struct EventWriter {
    file: File,
    path: PathBuf,
}

/// Seconds since the Unix epoch, as event wall times are.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// TensorBoard's file name, `events.out.tfevents.<unix secs, 10 digits>.<hostname>.<pid>.<n>`
/// (tensorboard/summary/writer/event_file_writer.py). TensorBoard only requires "tfevents" in the name; the rest
/// keeps names unique and sorted by time.
pub fn event_file_name(wall_time: f64) -> String {
    let n = FILE_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "events.out.tfevents.{:010}.{}.{}.{n}",
        wall_time as u64,
        hostname(),
        std::process::id()
    )
}

/// The host name without a dependency: Linux's proc file, then the shell's variable, then a placeholder (the name
/// only has to be unique together with the time, pid and counter).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().replace(['/', '\\'], "_"))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

impl EventWriter {
    /// Creates `dir` if needed and a new event file in it for a new run, stamped now.
    pub fn create(dir: &Path) -> Result<Self> {
        Self::create_in(dir, now(), 0)
    }

    /// A new event file in `dir` for a run resumed from a checkpoint, whose first logged step will be
    /// `first_step`: TensorBoard hides what earlier files of `dir` hold at `first_step` and later (module docs).
    pub fn resume(dir: &Path, first_step: i64) -> Result<Self> {
        Self::create_in(dir, now(), first_step)
    }

    fn create_in(dir: &Path, wall_time: f64, start_step: i64) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
        Self::create_file(&dir.join(event_file_name(wall_time)), wall_time, start_step)
    }

    /// A new event file at exactly `path` (never overwriting one) whose first events carry `wall_time`: the file
    /// version, then `SessionLog.START` at `start_step` (0 for a new run, the first step to log for a resumed one).
    /// For reproducible files (fixtures, tests); [`EventWriter::create`] and [`EventWriter::resume`] pick
    /// TensorBoard's name and the current time.
    pub fn create_file(path: &Path, wall_time: f64, start_step: i64) -> Result<Self> {
        let file =
            OpenOptions::new().write(true).create_new(true).open(path).map_err(Error::io(path))?;
        let mut writer = EventWriter { file, path: path.to_owned() };
        writer.write(&[
            Event { wall_time, step: 0, what: What::FileVersion(FILE_VERSION.to_owned()) },
            Event { wall_time, step: start_step, what: What::SessionLog(SessionStatus::Start) },
        ])?;
        Ok(writer)
    }

    /// The event file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One scalar (stored as an f32 `simple_value`, which every TensorBoard version plots).
    pub fn add_scalar(
        &mut self,
        tag: &str,
        step: i64,
        value: impl Into<f64>,
        wall_time: f64,
    ) -> Result<()> {
        self.add_scalars(step, &[(tag, value.into())], wall_time)
    }

    /// Several scalars of one step in one event (one record, one write): a training step's loss, learning rate,
    /// gradient norm… or an evaluation's metrics.
    pub fn add_scalars(
        &mut self,
        step: i64,
        scalars: &[(&str, f64)],
        wall_time: f64,
    ) -> Result<()> {
        let values = scalars.iter().map(|&(tag, x)| value(tag, "", Data::Scalar(x))).collect();
        self.write(&[Event { wall_time, step, what: What::Summary(values) }])
    }

    /// Markdown text for TensorBoard's text dashboard (e.g. sample captions of an evaluation). Unlike torch's
    /// `add_text`, the tag is kept as given (torch appends "/text_summary").
    pub fn add_text(&mut self, tag: &str, step: i64, markdown: &str, wall_time: f64) -> Result<()> {
        let values = vec![value(tag, TEXT_PLUGIN, Data::Text(markdown.to_owned()))];
        self.write(&[Event { wall_time, step, what: What::Summary(values) }])
    }

    /// Asks the OS to put what was written on disk (`fsync`). Not needed for TensorBoard to see the events (every
    /// `add_*` already reached the OS), only for them to survive a power loss.
    pub fn flush(&mut self) -> Result<()> {
        self.file.sync_data().map_err(Error::io(&self.path))
    }

    /// Frames `events` into one buffer and writes it with a single call.
    fn write(&mut self, events: &[Event]) -> Result<()> {
        let mut buf = Vec::new();
        for event in events {
            frame(&encode_event(event), &mut buf);
        }
        self.file.write_all(&buf).map_err(Error::io(&self.path))
    }
}

fn value(tag: &str, plugin_name: &str, data: Data) -> Value {
    Value { tag: tag.to_owned(), plugin_name: plugin_name.to_owned(), data }
}
