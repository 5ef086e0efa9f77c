//! Vision -> language projectors.
//!
//! - `Linear`: PaliGemma's `multi_modal_projector.linear` (`Linear(vision_hidden -> text_hidden, bias)`), no
//!   activation: the `projector_hidden_act` the HF converter writes into the vision config is read by no code
//!   (transformers 5.23 `PaliGemmaMultiModalProjector`, big_vision `img/head`).
//! - `Mlp`: `fc2(act(fc1(x)))`, the LLaVA-1.5-style two-layer projector for composing a standalone SigLIP with a
//!   standalone Gemma, where a single linear map trained from scratch is often too weak.
use layers::{Activation, Linear};
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};
use weights::ParamInit;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProjectorConfig {
    Linear { in_dim: i64, out_dim: i64 },
    Mlp { in_dim: i64, hidden_dim: i64, out_dim: i64, act: Activation },
}

impl ProjectorConfig {
    pub fn out_dim(&self) -> i64 {
        match self {
            Self::Linear { out_dim, .. } | Self::Mlp { out_dim, .. } => *out_dim,
        }
    }

    pub fn in_dim(&self) -> i64 {
        match self {
            Self::Linear { in_dim, .. } | Self::Mlp { in_dim, .. } => *in_dim,
        }
    }
}

#[derive(Debug)]
pub enum Projector {
    /// Variables `linear.{weight,bias}`.
    Linear { linear: Linear },
    /// Variables `fc1.{weight,bias}`, `fc2.{weight,bias}`.
    Mlp { fc1: Linear, fc2: Linear, act: Activation },
}

impl Projector {
    /// The names of its linear modules (`linear`, or `fc1` and `fc2` for the MLP), for adapters and planners.
    pub const LINEAR_MODULES: [&'static str; 3] = ["linear", "fc1", "fc2"];

    pub fn new(path: nn::Path, cfg: &ProjectorConfig, init: ParamInit) -> Self {
        match *cfg {
            ProjectorConfig::Linear { in_dim, out_dim } => Self::Linear {
                linear: Linear::new(path.sub("linear"), in_dim, out_dim, true, init),
            },
            ProjectorConfig::Mlp { in_dim, hidden_dim, out_dim, act } => Self::Mlp {
                fc1: Linear::new(path.sub("fc1"), in_dim, hidden_dim, true, init),
                fc2: Linear::new(path.sub("fc2"), hidden_dim, out_dim, true, init),
                act,
            },
        }
    }

    /// `[B, N, in_dim]` -> `[B, N, out_dim]`.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        match self {
            Self::Linear { linear } => linear.forward_t(xs, train),
            Self::Mlp { fc1, fc2, act } => {
                fc2.forward_t(&act.forward(&fc1.forward_t(xs, train)), train)
            }
        }
    }

    pub fn forward(&self, xs: &Tensor) -> Tensor {
        self.forward_t(xs, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn mlp_is_fc2_act_fc1_by_hand() {
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = ProjectorConfig::Mlp {
            in_dim: 4,
            hidden_dim: 6,
            out_dim: 3,
            act: Activation::GeluTanh,
        };
        let p = Projector::new(vs.root(), &cfg, ParamInit::Normal { std: 0.5 });
        let xs = Tensor::randn([2, 5, 4], (Kind::Float, Device::Cpu));
        let vars = vs.variables();
        let h = xs.matmul(&vars["fc1.weight"].tr()) + &vars["fc1.bias"];
        let expected = h.gelu("tanh").matmul(&vars["fc2.weight"].tr()) + &vars["fc2.bias"];
        let got = p.forward(&xs);
        assert_eq!(got.size(), [2, 5, 3]);
        assert!(f64::try_from((got - expected).abs().max()).unwrap() < 1e-6);
    }

    #[test]
    fn linear_names_match_hf() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _ = Projector::new(
            vs.root(),
            &ProjectorConfig::Linear { in_dim: 4, out_dim: 8 },
            ParamInit::Empty,
        );
        let mut names: Vec<_> = vs.variables().into_keys().collect();
        names.sort();
        assert_eq!(names, ["linear.bias", "linear.weight"]);
    }
}
