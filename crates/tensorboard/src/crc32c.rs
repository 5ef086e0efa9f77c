//! CRC32C (Castagnoli), as TFRecord framing uses it, and TensorFlow's "masked" form.
//!
//! Table-driven, one byte at a time: event files are small (kilobytes to a few megabytes per run), so a faster
//! slicing or SSE4.2 version would not be noticed, and this one has no dependencies.

/// The Castagnoli polynomial 0x1EDC6F41, bit-reversed (CRC32C processes bits least significant first).
const POLY: u32 = 0x82F6_3B78;

/// `TABLE[b]` is the CRC of the single byte `b`, built at compile time.
const TABLE: [u32; 256] = make_table();

const fn make_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ POLY } else { crc >> 1 };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

/// CRC32C of `data` (initial value and final XOR all ones, as in iSCSI / RFC 3720).
pub fn crc32c(data: &[u8]) -> u32 {
    let crc = data
        .iter()
        .fold(!0u32, |crc, &b| TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8));
    !crc
}

/// TensorFlow's masked CRC32C: rotate right by 15 and add a constant. TFRecord stores this form because a CRC of
/// data that itself contains CRCs is weak (tensorflow/tsl/lib/hash/crc32c.h, `Mask`).
pub fn masked_crc32c(data: &[u8]) -> u32 {
    crc32c(data).rotate_right(15).wrapping_add(0xa282_ead8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        // The standard check value of CRC-32C, and RFC 3720 appendix B.4's all-zeros / all-ones / ascending vectors.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62A8_AB43);
        let ascending: Vec<u8> = (0..32).collect();
        assert_eq!(crc32c(&ascending), 0x46DD_794E);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    #[allow(clippy::manual_rotate)] // spelled out on purpose: this checks `rotate_right` against the Python form
    fn mask_is_tensorflows() {
        // ((crc >> 15) | (crc << 17)) + 0xa282ead8, written out as tensorboard's record_writer computes it.
        let crc = crc32c(b"123456789");
        let expected = ((crc >> 15) | (crc << 17)).wrapping_add(0xa282_ead8);
        assert_eq!(masked_crc32c(b"123456789"), expected);
    }
}
