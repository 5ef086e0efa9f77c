//! Settings that are words in an experiment file or on the command line (`"bf16"`, `"cuda:1"`, `"bicubic"`,
//! `"approx"`) and enums in code: parsed once, when the config loads or the option is read (an unknown word is an
//! error naming its key or option), and written back with the same spelling, so saved configs and their
//! fingerprints read as before.
use crate::device::DeviceSpec;
use metrics::MeteorMode;
use rsicd_data::{Format, Resample};
use weights::DType;

pub trait Setting: Sized {
    /// What the word may be, for error messages.
    const EXPECTED: &'static str;
    fn from_word(s: &str) -> Option<Self>;
    fn word(&self) -> String;

    /// Parses `s`, or says what was expected (clap value parser and config loading share it).
    fn parse_setting(s: &str) -> Result<Self, String> {
        Self::from_word(s).ok_or_else(|| format!("`{s}`: expected {}", Self::EXPECTED))
    }
}

impl Setting for DType {
    const EXPECTED: &'static str = "f32, bf16 or f16";
    fn from_word(s: &str) -> Option<Self> {
        DType::parse(s).ok()
    }
    fn parse_setting(s: &str) -> Result<Self, String> {
        DType::parse(s).map_err(|e| e.to_string())
    }
    fn word(&self) -> String {
        self.name().into()
    }
}

impl Setting for Resample {
    const EXPECTED: &'static str =
        "bicubic (as the HF processor) or bilinear (antialiased, as big_vision)";
    fn from_word(s: &str) -> Option<Self> {
        s.parse().ok()
    }
    fn word(&self) -> String {
        match self {
            Resample::Bicubic => "bicubic",
            Resample::BilinearAntialias => "bilinear",
        }
        .into()
    }
}

impl Setting for MeteorMode {
    const EXPECTED: &'static str = "auto, exact, approx or skip";
    fn from_word(s: &str) -> Option<Self> {
        Some(match s {
            "auto" => MeteorMode::Auto,
            "exact" => MeteorMode::Exact,
            "approx" => MeteorMode::Approximate,
            "skip" => MeteorMode::Skip,
            _ => return None,
        })
    }
    fn word(&self) -> String {
        match self {
            MeteorMode::Auto => "auto",
            MeteorMode::Exact => "exact",
            MeteorMode::Approximate => "approx",
            MeteorMode::Skip => "skip",
        }
        .into()
    }
}

impl Setting for Format {
    const EXPECTED: &'static str = "a dataset format of docs/data.md";
    fn from_word(s: &str) -> Option<Self> {
        s.parse().ok()
    }
    // rsicd-data's own message lists its formats, so a new format is not listed here too.
    fn parse_setting(s: &str) -> Result<Self, String> {
        s.parse().map_err(|e: rsicd_data::DataError| e.to_string())
    }
    fn word(&self) -> String {
        self.name().into()
    }
}

impl Setting for DeviceSpec {
    const EXPECTED: &'static str = "cpu, cuda or cuda:N";
    fn from_word(s: &str) -> Option<Self> {
        DeviceSpec::from_word(s)
    }
    fn parse_setting(s: &str) -> Result<Self, String> {
        DeviceSpec::from_word(s)
            .ok_or_else(|| format!("unknown device `{s}`: expected {}", Self::EXPECTED))
    }
    fn word(&self) -> String {
        DeviceSpec::word(*self)
    }
}

/// `#[serde(with = "crate::setting::serde_word")]` for a [`Setting`] field.
pub mod serde_word {
    use super::Setting;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<T: Setting, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.word())
    }

    pub fn deserialize<'de, T: Setting, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
        let word = String::deserialize(d)?;
        T::parse_setting(&word).map_err(serde::de::Error::custom)
    }
}

/// The same for an optional field.
pub mod serde_word_opt {
    use super::Setting;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<T: Setting, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_some(&v.word()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, T: Setting, D: Deserializer<'de>>(d: D) -> Result<Option<T>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|w| T::parse_setting(&w).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_with_their_spelling() {
        for w in ["f32", "bf16", "f16"] {
            assert_eq!(DType::parse(w).unwrap().word(), w);
        }
        for w in ["bicubic", "bilinear"] {
            assert_eq!(Resample::parse_setting(w).unwrap().word(), w);
        }
        for w in ["auto", "exact", "approx", "skip"] {
            assert_eq!(MeteorMode::parse_setting(w).unwrap().word(), w);
        }
        for w in ["cpu", "cuda:0", "cuda:3"] {
            assert_eq!(DeviceSpec::parse_setting(w).unwrap().word(), w);
        }
        assert_eq!(DeviceSpec::parse_setting("cuda").unwrap().word(), "cuda:0");
        let e = DeviceSpec::parse_setting("gpu").unwrap_err();
        assert!(e.contains("unknown device `gpu`") && e.contains("cuda:N"), "{e}");
        assert!(MeteorMode::parse_setting("fast").unwrap_err().contains("auto, exact"));
    }
}
