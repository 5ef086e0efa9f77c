//! Settings that are words in an experiment file or on the command line (`"bf16"`, `"cuda:1"`, `"bicubic"`,
//! `"approx"`) and enums in code: parsed once, when the config loads or the option is read (an unknown word is an
//! error naming its key or option), and written back with the same spelling, so saved configs and their
//! fingerprints read as before.
use crate::device::DeviceSpec;
use metrics::MeteorMode;
use rsicd_data::{Format, Resample};
use weights::DType;

pub trait Setting: Sized + Copy + PartialEq + 'static {
    /// Each value's words, the one written first; a type with a parser of its own overrides the two methods.
    const WORDS: &'static [(&'static str, Self)];

    /// Parses `s`, or says what was expected (command-line options and config loading share it).
    fn parse_setting(s: &str) -> Result<Self, String> {
        let found = Self::WORDS.iter().find(|(w, _)| *w == s).map(|(_, v)| *v);
        let words: Vec<&str> = Self::WORDS.iter().map(|(w, _)| *w).collect();
        found.ok_or_else(|| format!("unknown value `{s}`: expected one of {}", words.join(", ")))
    }

    fn word(&self) -> String {
        Self::WORDS.iter().find(|(_, v)| v == self).map_or_else(String::new, |(w, _)| w.to_string())
    }
}

impl Setting for DType {
    const WORDS: &'static [(&'static str, Self)] =
        &[("f32", DType::F32), ("bf16", DType::Bf16), ("f16", DType::F16)];
    fn parse_setting(s: &str) -> Result<Self, String> {
        DType::parse(s).map_err(|e| e.to_string())
    }
}

impl Setting for Resample {
    const WORDS: &'static [(&'static str, Self)] =
        &[("bicubic", Resample::Bicubic), ("bilinear", Resample::BilinearAntialias)];
}

impl Setting for MeteorMode {
    const WORDS: &'static [(&'static str, Self)] = &[
        ("auto", MeteorMode::Auto),
        ("exact", MeteorMode::Exact),
        ("approx", MeteorMode::Approximate),
        ("skip", MeteorMode::Skip),
    ];
}

impl Setting for Format {
    const WORDS: &'static [(&'static str, Self)] = &[];
    // rsicd-data's own parser and message list its formats, so a new format is not listed here too.
    fn parse_setting(s: &str) -> Result<Self, String> {
        s.parse().map_err(|e: rsicd_data::DataError| e.to_string())
    }
    fn word(&self) -> String {
        self.name().into()
    }
}

impl Setting for DeviceSpec {
    const WORDS: &'static [(&'static str, Self)] = &[];
    fn parse_setting(s: &str) -> Result<Self, String> {
        let cuda = |i: &str| i.parse().ok().map(DeviceSpec::Cuda);
        let spec = match s {
            "cpu" => Some(DeviceSpec::Cpu),
            "cuda" => Some(DeviceSpec::Cuda(0)),
            _ => s.strip_prefix("cuda:").and_then(cuda),
        };
        spec.ok_or_else(|| format!("unknown device `{s}`: expected cpu, cuda or cuda:N"))
    }
    fn word(&self) -> String {
        match self {
            DeviceSpec::Cpu => "cpu".into(),
            DeviceSpec::Cuda(i) => format!("cuda:{i}"),
            DeviceSpec::Unspecified => String::new(),
        }
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
        T::parse_setting(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// The same for an optional field.
pub mod serde_word_opt {
    use super::Setting;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Setting, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        v.map(|v| v.word()).serialize(s)
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
        assert_eq!(Format::parse_setting("coco").unwrap().word(), "coco");
        assert_eq!(DeviceSpec::parse_setting("cuda").unwrap().word(), "cuda:0");
        let e = DeviceSpec::parse_setting("gpu").unwrap_err();
        assert!(e.contains("unknown device `gpu`") && e.contains("cuda:N"), "{e}");
        assert!(MeteorMode::parse_setting("fast").unwrap_err().contains("auto, exact"));
    }
}
