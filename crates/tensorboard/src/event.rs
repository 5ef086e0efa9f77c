//! The `Event` message and the parts of it TensorBoard's scalar and text dashboards read, as plain Rust values,
//! with their protobuf encoding and decoding.
//!
//! Field numbers are those of TensorBoard's copies of TensorFlow's protos:
//! - <https://github.com/tensorflow/tensorboard/blob/master/tensorboard/compat/proto/event.proto>
//!   (`Event`: wall_time 1, step 2, file_version 3, summary 5, session_log 7; `SessionLog`: status 1)
//! - <https://github.com/tensorflow/tensorboard/blob/master/tensorboard/compat/proto/summary.proto>
//!   (`Summary`: value 1; `Summary.Value`: tag 1, simple_value 2, tensor 8, metadata 9; `SummaryMetadata`:
//!   plugin_data 1; `SummaryMetadata.PluginData`: plugin_name 1, content 2)
//! - <https://github.com/tensorflow/tensorboard/blob/master/tensorboard/compat/proto/tensor.proto>
//!   (`TensorProto`: dtype 1, tensor_shape 2, tensor_content 4, float_val 5, double_val 6, string_val 8)
//! - <https://github.com/tensorflow/tensorboard/blob/master/tensorboard/compat/proto/tensor_shape.proto>
//!   (`TensorShapeProto`: dim 2; `Dim`: size 1)
//! - <https://github.com/tensorflow/tensorboard/blob/master/tensorboard/compat/proto/types.proto>
//!   (`DataType`: DT_FLOAT 1, DT_DOUBLE 2, DT_STRING 7)
//!
//! Anything else (graphs, histograms, images, audio, run metadata) is skipped when reading and never written.
use crate::proto::{fields, repeated_fixed, Encoder};

/// The first event of every file says which format follows; "brain.Event:2" is what TensorFlow, TensorBoard's own
/// writer and torch's `SummaryWriter` write, and it makes TensorBoard honour `SessionLog.START` (see `writer.rs`).
pub const FILE_VERSION: &str = "brain.Event:2";

/// The plugin name TensorBoard's text dashboard looks for.
pub const TEXT_PLUGIN: &str = "text";

/// The plugin name of scalars written as tensors (torch's `add_scalar(new_style=True)`, TF2 `tf.summary.scalar`).
pub const SCALARS_PLUGIN: &str = "scalars";

const DT_FLOAT: i64 = 1;
const DT_DOUBLE: i64 = 2;
const DT_STRING: i64 = 7;

/// One record of an event file.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Seconds since the Unix epoch.
    pub wall_time: f64,
    /// The training step; 0 when the event has none (proto3 cannot tell the two apart).
    pub step: i64,
    pub what: What,
}

/// The `what` oneof of `Event`.
#[derive(Debug, Clone, PartialEq)]
pub enum What {
    /// No `what` field.
    Nothing,
    /// The format marker of the first event, e.g. [`FILE_VERSION`].
    FileVersion(String),
    Summary(Vec<Value>),
    SessionLog(SessionStatus),
    /// A field this crate does not decode (4 graph_def, 6 log_message, 8 tagged_run_metadata, 9 meta_graph_def).
    Other(u32),
}

/// `SessionLog.SessionStatus`. A `Start` at step `s` tells TensorBoard that a job restarted: it drops what it read
/// before at steps `s` and later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    Unspecified,
    Start,
    Stop,
    Checkpoint,
    Unknown(i64),
}

impl SessionStatus {
    fn code(self) -> i64 {
        match self {
            SessionStatus::Unspecified => 0,
            SessionStatus::Start => 1,
            SessionStatus::Stop => 2,
            SessionStatus::Checkpoint => 3,
            SessionStatus::Unknown(c) => c,
        }
    }

    fn from_code(code: i64) -> Self {
        match code {
            0 => SessionStatus::Unspecified,
            1 => SessionStatus::Start,
            2 => SessionStatus::Stop,
            3 => SessionStatus::Checkpoint,
            c => SessionStatus::Unknown(c),
        }
    }
}

/// One `Summary.Value`: a tagged datum.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub tag: String,
    /// `metadata.plugin_data.plugin_name`; empty when the value has no metadata (a `simple_value`).
    pub plugin_name: String,
    pub data: Data,
}

/// What a [`Value`] holds, as far as this crate understands it.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// A `simple_value` (an f32, widened exactly), or a one-element float/double tensor of the scalars plugin.
    Scalar(f64),
    /// The single string of a text-plugin tensor (shape `[]` as TensorBoard writes it, or `[1]` as torch does).
    Text(String),
    /// Anything else: histograms, images, audio, other plugins' tensors, multi-element text tensors.
    Other,
}

// ---- encoding -------------------------------------------------------------------------------------------------

/// The protobuf bytes of `event`. `Data::Other` values are written with their tag only.
pub(crate) fn encode_event(event: &Event) -> Vec<u8> {
    let mut e = Encoder::default();
    e.double(1, event.wall_time);
    if event.step != 0 {
        e.int(2, event.step);
    }
    match &event.what {
        What::Nothing | What::Other(_) => {}
        What::FileVersion(v) => e.bytes(3, v.as_bytes()),
        What::Summary(values) => {
            e.message(5, |s| values.iter().for_each(|v| s.message(1, |m| encode_value(m, v))))
        }
        What::SessionLog(status) => e.message(7, |s| {
            if status.code() != 0 {
                s.int(1, status.code());
            }
        }),
    }
    e.buf
}

fn encode_value(e: &mut Encoder, value: &Value) {
    e.bytes(1, value.tag.as_bytes());
    match &value.data {
        // simple_value is what the scalar dashboard reads in every TensorBoard version; it is an f32 by definition.
        Data::Scalar(x) => e.float(2, *x as f32),
        Data::Text(text) => encode_text(e, text),
        Data::Other => {}
    }
}

/// A text-plugin value as TensorBoard's own `text_pb` writes it: a rank-0 DT_STRING tensor (rendered as markdown;
/// torch's rank-1 `[1]` shape renders as a one-cell table) and plugin metadata with empty content (the text
/// plugin's `TextPluginData(version=0)` serialises to nothing).
fn encode_text(e: &mut Encoder, text: &str) {
    e.message(8, |t| {
        t.int(1, DT_STRING);
        t.message(2, |_| {}); // an empty TensorShapeProto: a scalar
        t.bytes(8, text.as_bytes());
    });
    e.message(9, |m| m.message(1, |p| p.bytes(1, TEXT_PLUGIN.as_bytes())));
}

// ---- decoding -------------------------------------------------------------------------------------------------

/// Decodes one event; the error says which message and field went wrong.
pub(crate) fn decode_event(data: &[u8]) -> Result<Event, String> {
    let mut event = Event { wall_time: 0.0, step: 0, what: What::Nothing };
    for field in fields(data) {
        let (number, value) = field?;
        match number {
            1 => event.wall_time = value.as_f64()?,
            2 => event.step = value.as_i64()?,
            3 => event.what = What::FileVersion(value.as_str()?.to_owned()),
            5 => {
                event.what = What::Summary(
                    decode_summary(value.as_bytes()?).map_err(|e| format!("Summary: {e}"))?,
                )
            }
            7 => event.what = What::SessionLog(decode_session_log(value.as_bytes()?)?),
            4 | 6 | 8 | 9 => event.what = What::Other(number),
            _ => {} // source_metadata (10) and fields added after this was written
        }
    }
    Ok(event)
}

fn decode_session_log(data: &[u8]) -> Result<SessionStatus, String> {
    let mut status = SessionStatus::Unspecified;
    for field in fields(data) {
        let (number, value) = field.map_err(|e| format!("SessionLog: {e}"))?;
        if number == 1 {
            status = SessionStatus::from_code(value.as_i64()?);
        }
    }
    Ok(status)
}

fn decode_summary(data: &[u8]) -> Result<Vec<Value>, String> {
    let mut values = Vec::new();
    for field in fields(data) {
        let (number, value) = field?;
        if number == 1 {
            values.push(
                decode_value(value.as_bytes()?)
                    .map_err(|e| format!("Value #{}: {e}", values.len()))?,
            );
        }
    }
    Ok(values)
}

fn decode_value(data: &[u8]) -> Result<Value, String> {
    let (mut tag, mut plugin_name) = (String::new(), String::new());
    let (mut simple, mut tensor) = (None, None);
    let mut other = false;
    for field in fields(data) {
        let (number, value) = field?;
        match number {
            1 => tag = value.as_str()?.to_owned(),
            2 => simple = Some(value.as_f32()?),
            8 => {
                tensor = Some(
                    decode_tensor(value.as_bytes()?).map_err(|e| format!("TensorProto: {e}"))?,
                )
            }
            9 => plugin_name = decode_plugin_name(value.as_bytes()?)?,
            3..=6 => other = true, // histograms, images, audio
            _ => {}
        }
    }
    let data = match (simple, tensor) {
        (Some(x), _) if !other => Data::Scalar(f64::from(x)),
        (None, Some(t)) => t.interpret(&plugin_name),
        _ => Data::Other,
    };
    Ok(Value { tag, plugin_name, data })
}

fn decode_plugin_name(metadata: &[u8]) -> Result<String, String> {
    let mut name = String::new();
    for field in fields(metadata) {
        if let (1, plugin_data) = field? {
            for inner in fields(plugin_data.as_bytes()?) {
                if let (1, n) = inner? {
                    name = n.as_str()?.to_owned();
                }
            }
        }
    }
    Ok(name)
}

/// The parts of a `TensorProto` that scalars and text use.
#[derive(Default)]
struct Tensor<'a> {
    dtype: i64,
    elements: Option<u64>,
    content: &'a [u8],
    floats: Vec<[u8; 4]>,
    doubles: Vec<[u8; 8]>,
    strings: Vec<&'a [u8]>,
}

fn decode_tensor(data: &[u8]) -> Result<Tensor<'_>, String> {
    let mut t = Tensor::default();
    for field in fields(data) {
        let (number, value) = field?;
        match number {
            1 => t.dtype = value.as_i64()?,
            2 => t.elements = Some(shape_elements(value.as_bytes()?)?),
            4 => t.content = value.as_bytes()?,
            5 => repeated_fixed(value, &mut t.floats)?,
            6 => repeated_fixed(value, &mut t.doubles)?,
            8 => t.strings.push(value.as_bytes()?),
            _ => {}
        }
    }
    Ok(t)
}

/// The number of elements of a `TensorShapeProto` (1 for a scalar, which has no dims).
fn shape_elements(data: &[u8]) -> Result<u64, String> {
    let mut n = 1u64;
    for field in fields(data) {
        if let (2, dim) = field? {
            for inner in fields(dim.as_bytes()?) {
                if let (1, size) = inner? {
                    n = n.saturating_mul(
                        u64::try_from(size.as_i64()?).map_err(|_| "negative dimension")?,
                    );
                }
            }
        }
    }
    Ok(n)
}

impl Tensor<'_> {
    fn interpret(&self, plugin_name: &str) -> Data {
        if self.elements.unwrap_or(1) != 1 {
            return Data::Other;
        }
        match (plugin_name, self.dtype) {
            (TEXT_PLUGIN, DT_STRING) if self.strings.len() == 1 => {
                match std::str::from_utf8(self.strings[0]) {
                    Ok(s) => Data::Text(s.to_owned()),
                    Err(_) => Data::Other,
                }
            }
            (SCALARS_PLUGIN, DT_FLOAT) => {
                self.float().map_or(Data::Other, |x| Data::Scalar(f64::from(x)))
            }
            (SCALARS_PLUGIN, DT_DOUBLE) => self.double().map_or(Data::Other, Data::Scalar),
            _ => Data::Other,
        }
    }

    /// The one float, from `float_val` or the raw little-endian `tensor_content` (TF2 writes the latter).
    fn float(&self) -> Option<f32> {
        match (self.floats.as_slice(), self.content) {
            ([x], _) => Some(f32::from_le_bytes(*x)),
            ([], c) if c.len() == 4 => Some(f32::from_le_bytes(c.try_into().ok()?)),
            _ => None,
        }
    }

    fn double(&self) -> Option<f64> {
        match (self.doubles.as_slice(), self.content) {
            ([x], _) => Some(f64::from_le_bytes(*x)),
            ([], c) if c.len() == 8 => Some(f64::from_le_bytes(c.try_into().ok()?)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(event: Event) {
        assert_eq!(decode_event(&encode_event(&event)).unwrap(), event);
    }

    #[test]
    fn events_round_trip() {
        round_trip(Event { wall_time: 1.5, step: 0, what: What::FileVersion(FILE_VERSION.into()) });
        round_trip(Event { wall_time: 2.0, step: 7, what: What::SessionLog(SessionStatus::Start) });
        round_trip(Event {
            wall_time: 2.0,
            step: -3,
            what: What::SessionLog(SessionStatus::Unspecified),
        });
        let values = vec![
            Value { tag: "loss".into(), plugin_name: String::new(), data: Data::Scalar(0.25) },
            Value {
                tag: "captions".into(),
                plugin_name: TEXT_PLUGIN.into(),
                data: Data::Text("a\nb".into()),
            },
        ];
        round_trip(Event { wall_time: 3.0, step: i64::MAX, what: What::Summary(values) });
    }

    #[test]
    fn file_version_bytes_match_python_protobuf() {
        // event_pb2.Event(wall_time=1700000000.0, file_version="brain.Event:2").SerializeToString()
        let bytes = encode_event(&Event {
            wall_time: 1_700_000_000.0,
            step: 0,
            what: What::FileVersion(FILE_VERSION.into()),
        });
        let mut expected = vec![0x09];
        expected.extend_from_slice(&1_700_000_000.0f64.to_le_bytes());
        expected.extend_from_slice(b"\x1a\x0dbrain.Event:2");
        assert_eq!(bytes, expected);
    }

    #[test]
    fn text_bytes_match_tensorboards_text_pb() {
        // tensorboard.plugins.text.summary_v2.text_pb("t", "hi").value[0].SerializeToString() (tensorboard 2.21)
        let mut e = Encoder::default();
        encode_value(
            &mut e,
            &Value {
                tag: "t".into(),
                plugin_name: TEXT_PLUGIN.into(),
                data: Data::Text("hi".into()),
            },
        );
        let expected = "0a0174420808071200420268694a080a060a0474657874";
        let hex: String = e.buf.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
    }

    #[test]
    fn scalars_plugin_tensors_are_scalars() {
        let mut e = Encoder::default();
        e.bytes(1, b"x");
        e.message(8, |t| {
            t.int(1, DT_DOUBLE);
            t.bytes(6, &0.1f64.to_le_bytes()); // packed double_val with one element
        });
        e.message(9, |m| m.message(1, |p| p.bytes(1, SCALARS_PLUGIN.as_bytes())));
        assert_eq!(decode_value(&e.buf).unwrap().data, Data::Scalar(0.1));
    }
}
