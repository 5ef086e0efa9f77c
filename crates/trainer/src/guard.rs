//! What keeps an update honest: f16 loss scaling, non-finite detection, the first-step gradient check and global
//! gradient-norm clipping. Nothing here changes a parameter; the loop decides from what these report.
use crate::TrainError;
use tch::{Kind, Tensor};

/// f16 training: the loss is scaled so small gradients survive f16, unscaled before the update; the scale halves
/// on overflow and doubles after 2000 clean steps (the defaults of PyTorch's `torch.amp.GradScaler`).
pub struct LossScaler {
    pub enabled: bool,
    pub scale: f64,
    pub good: usize,
}

impl LossScaler {
    pub fn update(&mut self, finite: bool) {
        if self.enabled {
            (self.scale, self.good) = match (finite, self.good + 1 >= 2000) {
                (false, _) => ((self.scale / 2.0).max(1.0), 0),
                (true, true) => (self.scale * 2.0, 0),
                (true, false) => (self.scale, self.good + 1),
            };
        }
    }

    /// Divides the accumulated gradients by the scale (before they are checked and applied).
    pub fn unscale(&self, trainables: &[(String, Tensor)]) {
        if !self.enabled {
            return;
        }
        tch::no_grad(|| {
            for (_, t) in trainables {
                let mut g = t.grad();
                if g.defined() {
                    let _ = g.g_mul_scalar_(1.0 / self.scale);
                }
            }
        });
    }
}

/// What is not finite: the loss, or the first trainable tensor whose gradient has a NaN or Inf.
pub fn non_finite(loss: f64, trainables: &[(String, Tensor)]) -> Option<String> {
    if !loss.is_finite() {
        return Some("the loss".into());
    }
    trainables.iter().find_map(|(name, t)| {
        let g = t.grad();
        (g.defined() && !bool::try_from(g.isfinite().all()).unwrap_or(false))
            .then(|| format!("the gradient of `{name}`"))
    })
}

/// After the first step every trainable tensor must have received a finite, non-zero gradient; otherwise
/// something is disconnected (a soft prompt never injected, an adapter outside the graph).
pub fn check_gradients(trainables: &[(String, Tensor)]) -> Result<(), TrainError> {
    let dead: Vec<&str> = trainables
        .iter()
        .filter(|(_, t)| {
            let g = t.grad();
            !g.defined() || f64::try_from(g.abs().sum(Kind::Float)).unwrap_or(0.0) == 0.0
        })
        .map(|(n, _)| n.as_str())
        // LoRA A gets no gradient while B is still zero (by construction at step 0); only B must move first.
        .filter(|n| !n.contains("lora_A"))
        .collect();
    if dead.is_empty() {
        return Ok(());
    }
    Err(TrainError::Gradient(format!(
        "{} trainable tensor(s) got no gradient in the first step, e.g. `{}`: they are not connected to the loss",
        dead.len(),
        dead[0]
    )))
}

/// Clips the global gradient norm to `max_norm`; returns the norm before clipping.
pub fn clip(trainables: &[(String, Tensor)], max_norm: Option<f64>) -> f64 {
    let grads: Vec<Tensor> =
        trainables.iter().map(|(_, t)| t.grad()).filter(Tensor::defined).collect();
    if grads.is_empty() {
        return 0.0;
    }
    let norm = tch::no_grad(|| {
        let sq: Vec<Tensor> =
            grads.iter().map(|g| g.to_kind(Kind::Float).square().sum(Kind::Float)).collect();
        Tensor::stack(&sq, 0).sum(Kind::Float).sqrt()
    });
    let norm = f64::try_from(&norm).unwrap_or(f64::NAN);
    if let Some(max) = max_norm.filter(|&m| norm > m) {
        let scale = max / (norm + 1e-6);
        tch::no_grad(|| {
            for g in &grads {
                let _ = g.shallow_clone().g_mul_scalar_(scale);
            }
        });
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn guards_name_the_tensor() {
        let a = Tensor::ones([2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let b = Tensor::ones([2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let c = Tensor::ones([2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        (&a * 2.0 + &b * f64::NAN).sum(Kind::Float).backward();
        let named = vec![("a".to_string(), a), ("b".to_string(), b), ("c".to_string(), c)];
        assert_eq!(non_finite(1.0, &named).as_deref(), Some("the gradient of `b`"));
        assert_eq!(non_finite(f64::NAN, &named).as_deref(), Some("the loss"));
        let e = check_gradients(&named).unwrap_err().to_string();
        assert!(e.contains("`c`") && e.contains("not connected to the loss"), "{e}");
        let norm = clip(&named[..1], Some(1.0));
        assert!((norm - 8f64.sqrt()).abs() < 1e-6);
        let g = named[0].1.grad();
        assert!(
            (f64::try_from(g.square().sum(Kind::Float)).unwrap().sqrt() - 1.0).abs() < 1e-5,
            "clipped to norm 1"
        );
    }
}
