//! SGD (with optional momentum) and AdamW over named f32 tensors, with their whole state exposed as named tensors so
//! a checkpoint can save and restore it exactly (tch's `nn::Optimizer` keeps its state inside libtorch, out of
//! reach). The update rules are PyTorch's `torch.optim.SGD` / `torch.optim.AdamW` (decoupled weight decay, bias
//! correction), computed in f32 under `no_grad`.
use crate::config::{OptimConfig, OptimizerKind};
use tch::Tensor;

pub struct Optimizer {
    kind: OptimizerKind,
    params: Vec<(String, Tensor)>,
    /// AdamW: first and second moments; SGD: momentum buffer in `exp_avg`.
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
    /// Optimizer steps taken (AdamW bias correction; SGD momentum initialisation).
    pub step: i64,
    cfg: OptimConfig,
}

impl Optimizer {
    pub fn new(cfg: &OptimConfig, params: Vec<(String, Tensor)>) -> Self {
        let zeros = |n: bool| -> Vec<Tensor> {
            if n {
                params.iter().map(|(_, p)| p.zeros_like()).collect()
            } else {
                vec![]
            }
        };
        let exp_avg = zeros(cfg.name == OptimizerKind::Adamw || cfg.momentum != 0.0);
        let exp_avg_sq = zeros(cfg.name == OptimizerKind::Adamw);
        Self { kind: cfg.name, params, exp_avg, exp_avg_sq, step: 0, cfg: cfg.clone() }
    }

    pub fn params(&self) -> &[(String, Tensor)] {
        &self.params
    }

    /// One update with learning rate `lr` from the gradients accumulated in `.grad()`; parameters without a
    /// gradient are left alone.
    pub fn step(&mut self, lr: f64) {
        self.step += 1;
        let c = &self.cfg;
        tch::no_grad(|| {
            for (i, (_, p)) in self.params.iter().enumerate() {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let mut p = p.shallow_clone();
                match self.kind {
                    OptimizerKind::Adamw => {
                        if c.weight_decay != 0.0 {
                            let _ = p.g_mul_scalar_(1.0 - lr * c.weight_decay);
                        }
                        let m = &mut self.exp_avg[i];
                        let v = &mut self.exp_avg_sq[i];
                        let _ = m.g_mul_scalar_(c.beta1);
                        let _ = m.g_add_(&(&g * (1.0 - c.beta1)));
                        let _ = v.g_mul_scalar_(c.beta2);
                        let _ = v.g_add_(&(&g * &g * (1.0 - c.beta2)));
                        let bc1 = 1.0 - c.beta1.powi(self.step as i32);
                        let bc2 = 1.0 - c.beta2.powi(self.step as i32);
                        let denom = (v.sqrt() / bc2.sqrt()) + c.eps;
                        let _ = p.g_sub_(&(m.shallow_clone() / denom * (lr / bc1)));
                    }
                    OptimizerKind::Sgd => {
                        let mut d = if c.weight_decay != 0.0 {
                            &g + &p * c.weight_decay
                        } else {
                            g.shallow_clone()
                        };
                        if c.momentum != 0.0 {
                            let buf = &mut self.exp_avg[i];
                            if self.step == 1 {
                                buf.copy_(&d);
                            } else {
                                let _ = buf.g_mul_scalar_(c.momentum);
                                let _ = buf.g_add_(&d);
                            }
                            d = buf.shallow_clone();
                        }
                        let _ = p.g_sub_(&(d * lr));
                    }
                }
            }
        });
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in &self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }

    /// The optimizer state as named tensors (`exp_avg.<param>`, `exp_avg_sq.<param>`), for checkpoints.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (i, (name, _)) in self.params.iter().enumerate() {
            if let Some(t) = self.exp_avg.get(i) {
                out.push((format!("exp_avg.{name}"), t.shallow_clone()));
            }
            if let Some(t) = self.exp_avg_sq.get(i) {
                out.push((format!("exp_avg_sq.{name}"), t.shallow_clone()));
            }
        }
        out
    }

    /// Restores `state()` output; every expected tensor must be present with the right shape.
    pub fn load_state(
        &mut self,
        state: &std::collections::HashMap<String, Tensor>,
        step: i64,
    ) -> Result<(), String> {
        tch::no_grad(|| {
            for (i, (name, _)) in self.params.iter().enumerate() {
                for (prefix, slot) in
                    [("exp_avg", &mut self.exp_avg), ("exp_avg_sq", &mut self.exp_avg_sq)]
                {
                    if let Some(dst) = slot.get_mut(i) {
                        let key = format!("{prefix}.{name}");
                        let src = state
                            .get(&key)
                            .ok_or_else(|| format!("optimizer state lacks `{key}`"))?;
                        if src.size() != dst.size() {
                            return Err(format!(
                                "optimizer state `{key}` has shape {:?}, expected {:?}",
                                src.size(),
                                dst.size()
                            ));
                        }
                        dst.copy_(src);
                    }
                }
            }
            Ok(())
        })?;
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// Two AdamW steps by hand on a scalar, against the formula (PyTorch's AdamW).
    #[test]
    fn adamw_matches_the_formula() {
        let p = Tensor::from_slice(&[1.0f32]).set_requires_grad(true);
        let cfg = OptimConfig { lr: 0.1, weight_decay: 0.01, ..Default::default() };
        let mut opt = Optimizer::new(&cfg, vec![("p".into(), p.shallow_clone())]);
        let (mut m, mut v, mut x) = (0.0f64, 0.0f64, 1.0f64);
        for t in 1..=2 {
            opt.zero_grad();
            (&p * &p).sum(Kind::Float).backward(); // g = 2x
            let g = 2.0 * x;
            opt.step(0.1);
            x *= 1.0 - 0.1 * 0.01;
            m = 0.9 * m + 0.1 * g;
            v = 0.999 * v + 0.001 * g * g;
            let (mh, vh) = (m / (1.0 - 0.9f64.powi(t)), v / (1.0 - 0.999f64.powi(t)));
            x -= 0.1 * mh / (vh.sqrt() + 1e-8);
            let got = f64::try_from(&p).unwrap();
            assert!((got - x).abs() < 1e-6, "step {t}: {got} vs {x}");
        }
    }

    #[test]
    fn sgd_momentum_and_state_round_trip() {
        let p = Tensor::ones([3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let cfg = OptimConfig { name: OptimizerKind::Sgd, momentum: 0.9, ..Default::default() };
        let mut opt = Optimizer::new(&cfg, vec![("w".into(), p.shallow_clone())]);
        for _ in 0..2 {
            opt.zero_grad();
            (&p * 3.0).sum(Kind::Float).backward(); // g = 3
            opt.step(0.1);
        }
        // buf: 3, then 0.9*3+3 = 5.7; p = 1 - 0.3 - 0.57
        assert!((f64::try_from(p.get(0)).unwrap() - 0.13).abs() < 1e-6);
        let state: std::collections::HashMap<_, _> = opt.state().into_iter().collect();
        let q = Tensor::ones([3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let mut other = Optimizer::new(&cfg, vec![("w".into(), q)]);
        other.load_state(&state, opt.step).unwrap();
        assert_eq!(f64::try_from(other.state()[0].1.get(0)).unwrap(), 5.7f32 as f64);
        assert!(other
            .load_state(&std::collections::HashMap::new(), 1)
            .unwrap_err()
            .contains("exp_avg.w"));
    }
}
