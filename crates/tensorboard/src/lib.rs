//! TensorBoard event files: the run's scalars (losses, learning rate, metrics…) and text (sample captions), in the
//! format TensorBoard, TensorFlow and torch's `SummaryWriter` read and write, with no protobuf or TensorFlow
//! dependency.
//!
//! - [`EventWriter`] writes one `events.out.tfevents.*` file: a file-version event, then one event per
//!   `add_scalar` / `add_scalars` / `add_text`, each reaching the OS at once. A resumed run starts a new file with
//!   [`EventWriter::resume`] (see `writer.rs` for how TensorBoard then shows repeated steps).
//! - [`read_events`] reads a file back, checking both CRC32Cs of every TFRecord record; [`scalars`] and [`texts`]
//!   give a run directory's series as TensorBoard shows them.
//!
//! The format: TFRecord framing (`record.rs`, CRC32C in `crc32c.rs`) around `Event` protobufs (`event.rs`, field
//! numbers from tensorboard's `compat/proto`, encoded by the minimal `proto.rs`). The committed fixtures under
//! `data/fixtures/tensorboard/` cross-check both directions against TensorBoard's own reader and torch's writer
//! (`scripts/fixtures/gen_tensorboard_fixture.py`).
mod crc32c;
mod error;
mod event;
mod proto;
mod reader;
mod record;
mod writer;

pub use crc32c::{crc32c, masked_crc32c};
pub use error::{Error, Result};
pub use event::{
    Data, Event, SessionStatus, Value, What, FILE_VERSION, SCALARS_PLUGIN, TEXT_PLUGIN,
};
pub use reader::{event_files, read_events, scalars, texts, Series};
pub use writer::{event_file_name, now, EventWriter};
