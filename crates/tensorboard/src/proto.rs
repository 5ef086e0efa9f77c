//! The little of the protobuf wire format that event files need: an encoder for the fields our writer emits and a
//! field iterator for the reader (<https://protobuf.dev/programming-guides/encoding/>).
//!
//! Written by hand instead of generated with prost: six small messages do not justify protoc in the build, and the
//! reader must skip whatever it does not know anyway (graphs, histograms, images), which a field iterator does.

/// Wire types used by the messages in `event.rs`.
pub(crate) const VARINT: u8 = 0;
pub(crate) const FIXED64: u8 = 1;
pub(crate) const LEN: u8 = 2;
pub(crate) const FIXED32: u8 = 5;

/// Appends protobuf fields to a byte buffer. proto3 leaves default values out; callers decide what to omit.
#[derive(Default)]
pub(crate) struct Encoder {
    pub buf: Vec<u8>,
}

impl Encoder {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u8) {
        self.varint((u64::from(field) << 3) | u64::from(wire));
    }

    /// An `int64`/`int32`/enum field: negative values take ten bytes (two's complement, not zigzag).
    pub fn int(&mut self, field: u32, v: i64) {
        self.key(field, VARINT);
        self.varint(v as u64);
    }

    pub fn double(&mut self, field: u32, v: f64) {
        self.key(field, FIXED64);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn float(&mut self, field: u32, v: f32) {
        self.key(field, FIXED32);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// A `string` or `bytes` field.
    pub fn bytes(&mut self, field: u32, data: &[u8]) {
        self.key(field, LEN);
        self.varint(data.len() as u64);
        self.buf.extend_from_slice(data);
    }

    /// An embedded message, encoded by `body` (its length must be known before its bytes, hence the temporary).
    pub fn message(&mut self, field: u32, body: impl FnOnce(&mut Encoder)) {
        let mut inner = Encoder::default();
        body(&mut inner);
        self.bytes(field, &inner.buf);
    }
}

/// One decoded field value, by wire type.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Field<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    Fixed32(u32),
}

impl<'a> Field<'a> {
    pub fn as_i64(self) -> Result<i64, String> {
        match self {
            Field::Varint(v) => Ok(v as i64),
            other => Err(format!("expected a varint, found {other:?}")),
        }
    }

    pub fn as_f64(self) -> Result<f64, String> {
        match self {
            Field::Fixed64(v) => Ok(f64::from_bits(v)),
            other => Err(format!("expected a double, found {other:?}")),
        }
    }

    pub fn as_f32(self) -> Result<f32, String> {
        match self {
            Field::Fixed32(v) => Ok(f32::from_bits(v)),
            other => Err(format!("expected a float, found {other:?}")),
        }
    }

    pub fn as_bytes(self) -> Result<&'a [u8], String> {
        match self {
            Field::Len(b) => Ok(b),
            other => Err(format!("expected a length-delimited field, found {other:?}")),
        }
    }

    pub fn as_str(self) -> Result<&'a str, String> {
        std::str::from_utf8(self.as_bytes()?).map_err(|e| format!("string field is not UTF-8: {e}"))
    }
}

/// Iterates over the `(field number, value)` pairs of one message; errors carry the byte offset in the message.
pub(crate) struct Fields<'a> {
    data: &'a [u8],
    pos: usize,
}

pub(crate) fn fields(data: &[u8]) -> Fields<'_> {
    Fields { data, pos: 0 }
}

impl<'a> Fields<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.data.get(self.pos).ok_or("message ends inside a varint")?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or("field runs past the message end")?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn field(&mut self) -> Result<(u32, Field<'a>), String> {
        let key = self.varint()?;
        let number = u32::try_from(key >> 3)
            .map_err(|_| format!("field number {} out of range", key >> 3))?;
        let value = match (key & 7) as u8 {
            VARINT => Field::Varint(self.varint()?),
            FIXED64 => Field::Fixed64(u64::from_le_bytes(self.take(8)?.try_into().unwrap())),
            LEN => {
                let n = usize::try_from(self.varint()?).map_err(|_| "length out of range")?;
                Field::Len(self.take(n)?)
            }
            FIXED32 => Field::Fixed32(u32::from_le_bytes(self.take(4)?.try_into().unwrap())),
            wire => return Err(format!("unsupported wire type {wire} (field {number})")),
        };
        Ok((number, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Field<'a>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.data.len() {
            return None;
        }
        let start = self.pos;
        let item = self.field().map_err(|e| format!("{e} (at byte {start} of the message)"));
        if item.is_err() {
            self.pos = self.data.len(); // one error ends the iteration
        }
        Some(item)
    }
}

/// The elements of a repeated fixed-width numeric field, packed (proto3's default) or not.
pub(crate) fn repeated_fixed<const N: usize>(
    field: Field<'_>,
    out: &mut Vec<[u8; N]>,
) -> Result<(), String> {
    match field {
        Field::Len(b) if b.len() % N == 0 => {
            out.extend(b.chunks_exact(N).map(|c| <[u8; N]>::try_from(c).unwrap()))
        }
        Field::Len(b) => {
            return Err(format!("packed field of {} bytes is not a multiple of {N}", b.len()))
        }
        Field::Fixed32(v) if N == 4 => out.push(v.to_le_bytes()[..].try_into().unwrap()),
        Field::Fixed64(v) if N == 8 => out.push(v.to_le_bytes()[..].try_into().unwrap()),
        other => return Err(format!("expected a {N}-byte number, found {other:?}")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for v in [0i64, 1, 127, 128, 300, i64::from(u32::MAX), i64::MAX, -1, i64::MIN] {
            let mut e = Encoder::default();
            e.int(2, v);
            let got: Vec<_> = fields(&e.buf).collect::<Result<_, _>>().unwrap();
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].0, 2);
            assert_eq!(got[0].1.as_i64().unwrap(), v);
        }
    }

    #[test]
    fn known_encoding() {
        // The protobuf guide's example: field 1 = 150 is 08 96 01; field 2 = "testing" is 12 07 74 65 73 74 69 6e 67.
        let mut e = Encoder::default();
        e.int(1, 150);
        e.bytes(2, b"testing");
        assert_eq!(e.buf, [0x08, 0x96, 0x01, 0x12, 0x07, b't', b'e', b's', b't', b'i', b'n', b'g']);
    }

    #[test]
    fn truncated_message_is_an_error() {
        let mut e = Encoder::default();
        e.bytes(1, b"abcdef");
        let cut = &e.buf[..e.buf.len() - 1];
        let err = fields(cut).collect::<Result<Vec<_>, _>>().unwrap_err();
        assert!(err.contains("past the message end"), "{err}");
    }
}
