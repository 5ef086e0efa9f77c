//! How freshly built parameters are initialised.
//!
//! Models are always built first and loaded second (tch variables need a shape and a dtype up front). Building
//! for a load should not spend seconds drawing 3B random numbers that are overwritten anyway, hence `Empty`;
//! training from scratch uses HF's `_init_weights` scheme: normal(0, initializer_range) for matrices and
//! embeddings, zero biases, LayerNorm scale 1, Gemma RMSNorm weight 0 (the norm multiplies by `1 + w`).
use tch::nn::Init;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParamInit {
    /// Zeros everywhere, to be filled by a checkpoint.
    Empty,
    /// HF-style random initialisation with this standard deviation (transformers uses 0.02).
    Normal { std: f64 },
}

impl ParamInit {
    /// Weight matrices and embedding tables.
    pub fn matrix(self) -> Init {
        match self {
            Self::Empty => Init::Const(0.0),
            Self::Normal { std } => Init::Randn { mean: 0.0, stdev: std },
        }
    }

    /// Biases and Gemma RMSNorm weights (`1 + w` convention).
    pub fn zeros(self) -> Init {
        Init::Const(0.0)
    }

    /// LayerNorm scales.
    pub fn ones(self) -> Init {
        match self {
            Self::Empty => Init::Const(0.0),
            Self::Normal { .. } => Init::Const(1.0),
        }
    }
}
