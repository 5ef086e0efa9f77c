//! A minimal `.npz` reader for big_vision checkpoints: little-endian, C-order float arrays, including the bfloat16
//! arrays numpy stores as raw 2-byte voids (`|V2`, big_vision `utils.recover_dtype`), which tch's `read_npz` rejects.
use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    Bf16,
}

impl Dtype {
    pub fn size(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::Bf16 => 2,
        }
    }

    /// safetensors' dtype name.
    pub fn st_name(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::Bf16 => "BF16",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ArrayInfo {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
}

impl ArrayInfo {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

pub struct Npz {
    path: PathBuf,
    archive: zip::ZipArchive<std::fs::File>,
}

impl Npz {
    pub fn open(path: &Path) -> Result<Self> {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let archive = zip::ZipArchive::new(file).with_context(|| {
            format!("{}: not an .npz (zip) archive, or truncated", path.display())
        })?;
        Ok(Self { path: path.to_path_buf(), archive })
    }

    /// Array names (entry names without `.npy`), in archive order.
    pub fn names(&self) -> Result<Vec<String>> {
        self.archive
            .file_names()
            .map(|n| {
                let n = n.with_context(|| format!("{}: bad entry name", self.path.display()))?;
                Ok(n.strip_suffix(".npy").unwrap_or(&n).to_string())
            })
            .collect()
    }

    /// Reads only the `.npy` header of an array, and checks that the entry holds as many bytes as its shape says.
    pub fn info(&mut self, name: &str) -> Result<ArrayInfo> {
        let path = self.path.display().to_string();
        let mut entry = self.entry(name)?;
        let size = entry.size();
        let (info, header_len) =
            read_header(&mut entry).with_context(|| format!("{path}: array `{name}`"))?;
        let needed = info
            .numel()
            .checked_mul(info.dtype.size())
            .and_then(|n| n.checked_add(header_len))
            .filter(|&n| n as u64 <= size);
        if needed.is_none() {
            bail!(
                "{path}: array `{name}` has shape {:?} ({:?}), more data than its {size}-byte entry holds \
                 (truncated or corrupt archive)",
                info.shape,
                info.dtype
            );
        }
        Ok(info)
    }

    /// Reads an array's header and raw little-endian bytes.
    pub fn read(&mut self, name: &str) -> Result<(ArrayInfo, Vec<u8>)> {
        let info = self.info(name)?;
        let path = self.path.clone();
        let mut entry = self.entry(name)?;
        read_header(&mut entry).with_context(|| format!("{}: array `{name}`", path.display()))?;
        let mut data = vec![0u8; info.numel() * info.dtype.size()];
        entry.read_exact(&mut data).with_context(|| {
            format!(
                "{}: array `{name}` is shorter than its shape {:?} says",
                path.display(),
                info.shape
            )
        })?;
        Ok((info, data))
    }

    fn entry(&mut self, name: &str) -> Result<zip::read::ZipFile<'_, std::fs::File>> {
        let path = self.path.display().to_string();
        self.archive
            .by_name(&format!("{name}.npy"))
            .with_context(|| format!("{path}: no array `{name}`"))
    }
}

/// Parses `\x93NUMPY` + version + header dict (`descr`, `fortran_order`, `shape`); also returns the header's length
/// in bytes (where the data starts).
fn read_header(r: &mut impl Read) -> Result<(ArrayInfo, usize)> {
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)?;
    if &magic[..6] != b"\x93NUMPY" {
        bail!("not a .npy array (bad magic)");
    }
    let (len, start) = if magic[6] == 1 {
        let mut b = [0u8; 2];
        r.read_exact(&mut b)?;
        (u16::from_le_bytes(b) as usize, 10)
    } else {
        let mut b = [0u8; 4];
        r.read_exact(&mut b)?;
        (u32::from_le_bytes(b) as usize, 12)
    };
    if len > 1 << 20 {
        bail!("corrupt .npy header ({len} bytes long)");
    }
    let mut header = vec![0u8; len];
    r.read_exact(&mut header)?;
    let header = String::from_utf8_lossy(&header);
    let field = |key: &str| -> Result<String> {
        let start = header
            .find(&format!("'{key}':"))
            .with_context(|| format!("header has no `{key}`: {header}"))?;
        Ok(header[start + key.len() + 3..].trim_start().to_string())
    };
    let descr = field("descr")?;
    let descr = descr.trim_start_matches('\'').split('\'').next().unwrap_or_default();
    let dtype = match descr {
        "<f4" | "=f4" => Dtype::F32,
        "<f2" | "=f2" => Dtype::F16,
        "|V2" | "<V2" | "V2" => Dtype::Bf16,
        ">f4" | ">f2" => bail!("big-endian arrays are not supported (descr {descr})"),
        other => bail!("unsupported dtype `{other}`: expected float32, float16 or bfloat16 (|V2)"),
    };
    if field("fortran_order")?.starts_with("True") {
        bail!("Fortran-ordered arrays are not supported");
    }
    let shape = field("shape")?;
    let shape = shape.trim_start_matches('(').split(')').next().unwrap_or_default();
    let shape = shape
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().with_context(|| format!("bad shape entry `{s}`")))
        .collect::<Result<Vec<_>>>()?;
    Ok((ArrayInfo { dtype, shape }, start + len))
}

/// Permutes the axes of a C-order array of `elem`-byte elements: output axis `k` is input axis `perm[k]`.
pub fn permute(data: &[u8], elem: usize, shape: &[usize], perm: &[usize]) -> Vec<u8> {
    let n = shape.len();
    let mut in_strides = vec![1usize; n];
    for k in (0..n.saturating_sub(1)).rev() {
        in_strides[k] = in_strides[k + 1] * shape[k + 1];
    }
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let strides: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    let total: usize = shape.iter().product();
    let mut out = Vec::with_capacity(total * elem);
    let mut idx = vec![0usize; n];
    for _ in 0..total {
        let off: usize = idx.iter().zip(&strides).map(|(i, s)| i * s).sum();
        out.extend_from_slice(&data[off * elem..(off + 1) * elem]);
        for k in (0..n).rev() {
            idx[k] += 1;
            if idx[k] < out_shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permute_is_a_transpose() {
        // [[0,1,2],[3,4,5]] as u8 -> [[0,3],[1,4],[2,5]]
        let data: Vec<u8> = (0..6).collect();
        assert_eq!(permute(&data, 1, &[2, 3], &[1, 0]), vec![0, 3, 1, 4, 2, 5]);
        // 3-d (0,2,1): shape [2,2,3] -> [2,3,2]
        let data: Vec<u8> = (0..12).collect();
        assert_eq!(
            permute(&data, 1, &[2, 2, 3], &[0, 2, 1]),
            vec![0, 3, 1, 4, 2, 5, 6, 9, 7, 10, 8, 11]
        );
        // two-byte elements keep their bytes together
        assert_eq!(permute(&[1, 2, 3, 4], 2, &[1, 2], &[1, 0]), vec![1, 2, 3, 4]);
    }

    #[test]
    fn header_parsing() {
        let mut h = b"\x93NUMPY\x01\x00".to_vec();
        let dict = "{'descr': '|V2', 'fortran_order': False, 'shape': (18, 2, 3), }";
        h.extend((dict.len() as u16).to_le_bytes());
        h.extend(dict.as_bytes());
        let (info, len) = read_header(&mut h.as_slice()).unwrap();
        assert_eq!(len, h.len());
        assert_eq!(info.dtype, Dtype::Bf16);
        assert_eq!(info.shape, vec![18, 2, 3]);
        let dict = "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }";
        let mut h = b"\x93NUMPY\x01\x00".to_vec();
        h.extend((dict.len() as u16).to_le_bytes());
        h.extend(dict.as_bytes());
        let err = read_header(&mut h.as_slice()).unwrap_err().to_string();
        assert!(err.contains("unsupported dtype `<i8`"), "{err}");
    }
}
