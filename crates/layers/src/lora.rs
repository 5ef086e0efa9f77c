//! LoRA, the linear layer's optional adapter, as peft's `tuners/lora/layer.py` (peft 0.21) defines it:
//! `B(A(dropout(x))) * alpha / r` (`alpha / sqrt(r)` with rsLoRA), A Kaiming-uniform (a = sqrt(5)), B zeros, so an
//! adapter at initialisation leaves the layer unchanged. Adapters are f32 whatever the base dtype.
use crate::LoraError;
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

/// LoRA hyper-parameters, with peft's names.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LoraConfig {
    pub r: i64,
    pub lora_alpha: f64,
    #[serde(default)]
    pub lora_dropout: f64,
    #[serde(default)]
    pub use_rslora: bool,
}

impl LoraConfig {
    pub fn scaling(&self) -> f64 {
        if self.use_rslora {
            self.lora_alpha / (self.r as f64).sqrt()
        } else {
            self.lora_alpha / self.r as f64
        }
    }

    pub(crate) fn validate(&self) -> Result<(), LoraError> {
        if self.r <= 0 {
            return Err(LoraError::Config(format!("r must be positive, got {}", self.r)));
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return Err(LoraError::Config(format!(
                "lora_dropout must be in [0, 1), got {}",
                self.lora_dropout
            )));
        }
        Ok(())
    }
}

#[derive(Debug)]
pub(crate) struct Adapter {
    /// `[r, in]`, peft's `lora_A.weight`.
    pub(crate) a: Tensor,
    /// `[out, r]`, peft's `lora_B.weight`.
    pub(crate) b: Tensor,
    scaling: f64,
    dropout: f64,
    pub(crate) merged: bool,
}

impl Adapter {
    /// `lora_A.weight` / `lora_B.weight` under `path` (normally a separate, trainable f32 `VarStore`, so the frozen
    /// base and the adapter are saved and optimised independently).
    pub(crate) fn new(
        path: nn::Path,
        cfg: &LoraConfig,
        in_dim: i64,
        out_dim: i64,
    ) -> Result<Self, LoraError> {
        cfg.validate()?;
        if path.kind() != Kind::Float {
            return Err(LoraError::Config(format!(
                "adapters are trained in f32, but their VarStore is {:?}",
                path.kind()
            )));
        }
        // kaiming_uniform_(a=sqrt(5)) on [r, in]: bound = gain * sqrt(3 / fan_in), gain = sqrt(2 / (1 + 5)).
        let bound = (1.0 / 3.0f64).sqrt() * (3.0 / in_dim as f64).sqrt();
        let a = path.sub("lora_A").var(
            "weight",
            &[cfg.r, in_dim],
            Init::Uniform { lo: -bound, up: bound },
        );
        let b = path.sub("lora_B").var("weight", &[out_dim, cfg.r], Init::Const(0.0));
        Ok(Self { a, b, scaling: cfg.scaling(), dropout: cfg.lora_dropout, merged: false })
    }

    /// The update added to the base output, in the input's dtype (`train` enables dropout).
    pub(crate) fn update(&self, xs: &Tensor, train: bool) -> Tensor {
        let x32 = xs.to_kind(self.a.kind()).dropout(self.dropout, train);
        let update =
            x32.linear::<Tensor>(&self.a, None).linear::<Tensor>(&self.b, None) * self.scaling;
        update.to_kind(xs.kind())
    }

    /// `B A * scaling` in f32, the weight delta a merge adds.
    pub(crate) fn delta(&self) -> Tensor {
        tch::no_grad(|| {
            self.b.to_kind(Kind::Float).matmul(&self.a.to_kind(Kind::Float)) * self.scaling
        })
    }
}
