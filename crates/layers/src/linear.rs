//! `Linear`: `x W^T + b` with an optional LoRA adapter (`crate::lora`) that can be merged into `W` and taken out
//! again.
use crate::lora::{Adapter, LoraConfig};
use crate::LoraError;
use tch::nn;
use tch::{Kind, Tensor};
use weights::ParamInit;

#[derive(Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    adapter: Option<Adapter>,
}

impl Linear {
    /// `weight [out, in]` (+ `bias [out]`) under `path`, as `nn.Linear` names them.
    pub fn new(path: nn::Path, in_dim: i64, out_dim: i64, bias: bool, init: ParamInit) -> Self {
        let weight = path.var("weight", &[out_dim, in_dim], init.matrix());
        let bias = bias.then(|| path.var("bias", &[out_dim], init.zeros()));
        Self { weight, bias, adapter: None }
    }

    pub fn in_dim(&self) -> i64 {
        self.weight.size()[1]
    }

    pub fn out_dim(&self) -> i64 {
        self.weight.size()[0]
    }

    /// Adds a LoRA adapter whose `lora_A.weight` / `lora_B.weight` live under `path` (normally in a separate,
    /// trainable `VarStore`, so the frozen base and the adapter are saved and optimised independently). The adapter
    /// is f32 whatever the base dtype.
    pub fn add_lora(&mut self, path: nn::Path, cfg: &LoraConfig) -> Result<(), LoraError> {
        if self.adapter.is_some() {
            return Err(LoraError::AlreadyAdapted(format!(
                "{:?}",
                path.components().collect::<Vec<_>>()
            )));
        }
        self.adapter = Some(Adapter::new(path, cfg, self.in_dim(), self.out_dim())?);
        Ok(())
    }

    pub fn has_lora(&self) -> bool {
        self.adapter.is_some()
    }

    /// The adapter's `(lora_A, lora_B)` tensors.
    pub fn lora_weights(&self) -> Option<(&Tensor, &Tensor)> {
        self.adapter.as_ref().map(|a| (&a.a, &a.b))
    }

    pub fn is_merged(&self) -> bool {
        self.adapter.as_ref().is_some_and(|a| a.merged)
    }

    pub fn forward(&self, xs: &Tensor) -> Tensor {
        self.forward_t(xs, false)
    }

    /// `train` enables LoRA dropout.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        // A weight made trainable inside a reduced-precision model is kept in f32 (master copy): compute in the
        // weight's dtype and hand the activation dtype back.
        let ys = if xs.kind() == self.weight.kind() {
            // A few rows without autograd (a cached decoding step): crates/smallmm reads the weight at close to the
            // memory bound where its rule (`smallmm::chosen`) says it beats libtorch; `None` leaves it to libtorch.
            let small = smallmm::linear(xs, &self.weight);
            match small {
                Some(y) => match &self.bias {
                    Some(b) => y + b,
                    None => y,
                },
                None => xs.linear(&self.weight, self.bias.as_ref()),
            }
        } else {
            let bias = self.bias.as_ref().map(|b| b.to_kind(self.weight.kind()));
            xs.to_kind(self.weight.kind()).linear(&self.weight, bias.as_ref()).to_kind(xs.kind())
        };
        match &self.adapter {
            Some(ad) if !ad.merged => ys + ad.update(xs, train),
            _ => ys,
        }
    }

    /// Folds the adapter into the base weight (computed in f32, then cast to the base dtype) for export and fast
    /// inference. Forward afterwards uses the base weight only.
    pub fn merge(&mut self) -> Result<(), LoraError> {
        let delta = self.delta("merge")?;
        let ad = self.adapter.as_mut().expect("checked by delta");
        if !ad.merged {
            tch::no_grad(|| {
                let merged = self.weight.to_kind(Kind::Float) + delta;
                self.weight.copy_(&merged);
            });
            ad.merged = true;
        }
        Ok(())
    }

    /// Takes a merged adapter out of the base weight again.
    pub fn unmerge(&mut self) -> Result<(), LoraError> {
        let delta = self.delta("unmerge")?;
        let ad = self.adapter.as_mut().expect("checked by delta");
        if ad.merged {
            tch::no_grad(|| {
                let unmerged = self.weight.to_kind(Kind::Float) - delta;
                self.weight.copy_(&unmerged);
            });
            ad.merged = false;
        }
        Ok(())
    }

    fn delta(&self, what: &'static str) -> Result<Tensor, LoraError> {
        Ok(self.adapter.as_ref().ok_or(LoraError::NoAdapter(what))?.delta())
    }
}
