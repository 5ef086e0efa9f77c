//! Learning-rate schedules: linear warm-up, then cosine or linear decay to `lr * min_lr_frac`, or constant
//! (nanoGPT's `get_lr`; big_vision's PaliGemma transfers use cosine with a short warm-up).
use crate::config::{OptimConfig, ScheduleKind};

#[derive(Debug, Clone)]
pub struct Schedule {
    base: f64,
    min: f64,
    warmup: usize,
    total: usize,
    kind: ScheduleKind,
}

impl Schedule {
    pub fn new(cfg: &OptimConfig, total_steps: usize) -> Self {
        let warmup =
            cfg.warmup_steps.unwrap_or((cfg.warmup_frac * total_steps as f64).round() as usize);
        Self {
            base: cfg.lr,
            min: cfg.lr * cfg.min_lr_frac,
            warmup: warmup.min(total_steps),
            total: total_steps,
            kind: cfg.schedule,
        }
    }

    /// The learning rate of optimizer step `step` (0-based).
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.base * (step + 1) as f64 / self.warmup as f64;
        }
        let span = (self.total - self.warmup).max(1) as f64;
        let t = ((step - self.warmup) as f64 / span).min(1.0);
        match self.kind {
            ScheduleKind::Constant => self.base,
            ScheduleKind::Linear => self.min + (self.base - self.min) * (1.0 - t),
            ScheduleKind::Cosine => {
                self.min + 0.5 * (self.base - self.min) * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(kind: ScheduleKind) -> OptimConfig {
        OptimConfig {
            lr: 1.0,
            schedule: kind,
            warmup_steps: Some(10),
            min_lr_frac: 0.1,
            ..Default::default()
        }
    }

    #[test]
    fn warmup_then_decay() {
        let s = Schedule::new(&cfg(ScheduleKind::Cosine), 110);
        assert!((s.lr(0) - 0.1).abs() < 1e-12);
        assert!((s.lr(9) - 1.0).abs() < 1e-12);
        assert!((s.lr(10) - 1.0).abs() < 1e-12);
        assert!((s.lr(60) - 0.55).abs() < 1e-12, "halfway down the cosine");
        assert!((s.lr(110) - 0.1).abs() < 1e-12);
        let l = Schedule::new(&cfg(ScheduleKind::Linear), 110);
        assert!((l.lr(60) - 0.55).abs() < 1e-12);
        assert!((l.lr(35) - 0.775).abs() < 1e-12);
        assert_eq!(Schedule::new(&cfg(ScheduleKind::Constant), 110).lr(100), 1.0);
    }
}
