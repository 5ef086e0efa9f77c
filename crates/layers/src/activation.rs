//! Activation functions by their HF `config.json` names.
use serde::Deserialize;
use tch::Tensor;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum Activation {
    /// tanh approximation of GELU. HF's `gelu_pytorch_tanh` and Flax's default `nn.gelu`; `gelu_new` and
    /// `gelu_fast` are the same function written differently.
    #[serde(rename = "gelu_pytorch_tanh", alias = "gelu_new", alias = "gelu_fast")]
    GeluTanh,
    /// Exact (erf) GELU.
    #[serde(rename = "gelu")]
    Gelu,
    #[serde(rename = "quick_gelu")]
    QuickGelu,
    #[serde(rename = "silu", alias = "swish")]
    Silu,
    #[serde(rename = "relu")]
    Relu,
}

impl Activation {
    pub fn forward(self, xs: &Tensor) -> Tensor {
        match self {
            Self::GeluTanh => xs.gelu("tanh"),
            Self::Gelu => xs.gelu("none"),
            Self::QuickGelu => xs * (xs * 1.702).sigmoid(),
            Self::Silu => xs.silu(),
            Self::Relu => xs.relu(),
        }
    }
}
