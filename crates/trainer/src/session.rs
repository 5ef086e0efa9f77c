//! Everything one training run holds (data, model, optimizer, run directory, progress, the process group) and the
//! phases the loop in `train.rs` calls: prepare, baselines, one step, what follows a step, finish. Resuming is in
//! `resume.rs`; what data parallelism adds (sharded batches, summed gradients, agreed stops) in `parallel.rs`, and
//! in a data-parallel run only rank 0 writes to the run directory, logs and draws progress.
use crate::checkpoint::{self, RunState};
use crate::config::{ExperimentConfig, ModelSource, OptimizerKind};
use crate::data::{self, Prompt, TrainData};
use crate::eval::{self, EvalOutput, Evaluation};
use crate::guard::{self, LossScaler};
use crate::memory::{self, PlanInput};
use crate::optim::Optimizer;
use crate::parallel::{self, Shard};
use crate::run::{self, RunDir};
use crate::schedule::Schedule;
use crate::selection;
use crate::setting::Setting;
use crate::step::{forward_backward, StepOptions};
use crate::strategy::{self, Built};
use crate::what_trains::WhatTrains;
use crate::{TrainError, TrainOptions};
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;
use tch::{Kind, Tensor};
use weights::DType;

pub struct Session<'a> {
    pub cfg: &'a ExperimentConfig,
    /// This process's rank and, with more than one, the c10d group (every collective is the identity for one).
    pub group: distributed::ProcessGroup,
    pub run: RunDir,
    pub built: Built,
    pub td: TrainData,
    soft: Option<Tensor>,
    pub optimizer: Optimizer,
    schedule: Schedule,
    pub state: RunState,
    pub scaler: LossScaler,
    evaluator: metrics::Evaluator,
    pub plan: memory::Plan,
    pub total_params: i64,
    pub started: Instant,
    pub bar: indicatif::ProgressBar,
    /// Whether this process resumed a checkpoint (the gradient check then runs on its first step).
    pub resumed: bool,
    pub first_loss: Option<f64>,
    pub last_loss: Option<f64>,
    last_val_step: Option<usize>,
    /// The step last checkpointed by this process (a new best and the periodic checkpoint may fall on one step).
    saved_step: std::cell::Cell<Option<usize>>,
    pub baseline_metrics: Option<Vec<(String, f64)>>,
    pub before_metrics: Option<Vec<(String, f64)>>,
}

/// What one optimizer step did.
pub enum StepOutcome {
    Applied,
    /// Not applied: something was not finite (named).
    Skipped {
        what: String,
    },
}

impl<'a> Session<'a> {
    /// Data, model and trainables, optimizer and the memory plan (from the shapes of a real first batch), for this
    /// rank of `group`. The run directory is the resumed one, a new one, or (dry run) a temporary one.
    pub fn prepare(
        cfg: &'a ExperimentConfig,
        opts: &TrainOptions,
        group: distributed::ProcessGroup,
    ) -> Result<Self, TrainError> {
        let started = Instant::now();
        let ds = data::load_dataset(cfg)?;
        let texts = training_texts(&ds, cfg);
        let text_refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let run = open_run(cfg, opts, &ds, &group)?;
        let built = build_model(cfg, opts, &text_refs, &run, &group)?;
        let pre = data::preprocessor(cfg, built.model.config.vision_config.image_size);
        let prompt = Prompt::new(&built.tokenizer, &cfg.data.prefix)?;
        let mut td = TrainData::new(ds, cfg, pre, prompt)?;
        let (plan, total_params) = memory_plan(cfg, &built, &mut td, &group)?;
        if group.is_main() {
            let trainable = memory::trainable_table(&built.trainables, total_params);
            eprintln!("{trainable}\n{}", plan.table());
        }
        let trainables = built.trainables.iter().map(|(n, t)| (n.clone(), t.shallow_clone()));
        let optimizer = Optimizer::new(&cfg.optim, trainables.collect());
        let state = crate::resume::fresh_state(cfg, &built, group.world_size());
        let f16 = built.base_dtype == DType::F16;
        Ok(Session {
            cfg,
            bar: progress_bar(opts.quiet || !group.is_main(), cfg.train.steps),
            group,
            soft: built.soft.as_ref().map(|s| s.vectors.shallow_clone()),
            run,
            td,
            optimizer,
            schedule: Schedule::new(&cfg.optim, cfg.train.steps),
            scaler: LossScaler { enabled: f16, scale: state.loss_scale, good: state.good_steps },
            state,
            evaluator: metrics::Evaluator::new(eval::metrics_options(&cfg.eval)),
            plan,
            total_params,
            started,
            resumed: false,
            first_loss: None,
            last_loss: None,
            last_val_step: None,
            saved_step: Default::default(),
            baseline_metrics: None,
            before_metrics: None,
            built,
        })
    }

    /// The weights of the final evaluation and the saved adapter: the best validation's (rank 0 loads
    /// `checkpoints/best/` and broadcasts them) unless `train.final_weights = "last"` or no selection was asked.
    fn final_weights(&mut self) -> Result<Option<selection::Best>, TrainError> {
        let best = self.state.best.clone().filter(|_| self.cfg.train.final_uses_best());
        if best.as_ref().is_some_and(|b| b.step != self.state.step) {
            if self.run.is_writer() {
                let dir = self.run.checkpoints().join("best");
                checkpoint::verify(&dir)?;
                checkpoint::load(&dir, &self.built.trainables)?;
            }
            parallel::broadcast_trainables(&self.group, &self.built.trainables)?;
        }
        Ok(best)
    }

    /// A dry run ends after the trainable table and the memory plan; its temporary run directory goes.
    pub fn dry_run_summary(self) -> crate::TrainSummary {
        if self.run.is_writer() {
            let _ = std::fs::remove_dir_all(&self.run.path);
        }
        let (run_dir, rank) = (self.run.path.clone(), self.group.rank());
        crate::TrainSummary { run_dir, rank, ..Default::default() }
    }

    /// Records the run in `run.json` (what trains, on what, the plan) and writes its resolved config.
    pub fn record_start(&mut self) -> Result<(), TrainError> {
        let cfg = self.cfg;
        self.run.write_text("config.toml", &cfg.to_toml())?;
        if cfg.log.tensorboard {
            self.run.start_tensorboard(self.state.step)?;
        }
        if self.state.step == 0 {
            self.run.update_run(&[("started", json!(run::now().1))])?;
        }
        let ds = &self.td.ds;
        let image_root =
            ds.image_dir.as_ref().map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()));
        let trainable: usize = self.built.trainables.iter().map(|(_, t)| t.numel()).sum();
        self.run.update_run(&[
            ("name", json!(cfg.name)),
            ("strategy", json!(cfg.strategy.name())),
            ("strategy_label", json!(WhatTrains::of(cfg).describe(cfg.strategy))),
            ("model", json!(model_label(cfg))),
            ("dataset", json!(cfg.data.path)),
            ("image_root", json!(image_root)),
            ("finished", serde_json::Value::Null),
            ("status", json!("running")),
            ("device", json!(cfg.model.device.word())),
            ("dtype", json!(self.built.base_dtype.name())),
            ("trainable_params", json!(trainable)),
            ("total_params", json!(self.total_params)),
            ("steps", json!(cfg.train.steps)),
            ("world_size", json!(self.group.world_size())),
            (
                "global_batch",
                json!(cfg.train.batch_size * self.group.world_size() * cfg.train.grad_accum),
            ),
            ("memory_plan", self.plan.to_json()),
        ])
    }

    fn evaluation(&self) -> Evaluation<'_> {
        Evaluation {
            model: &self.built.model,
            tokenizer: &self.built.tokenizer,
            layout: &self.built.layout,
            prompt: &self.td.prompt,
            soft: self.soft.as_ref(),
            pre: &self.td.pre,
            device: self.built.device,
            cfg: &self.cfg.eval,
            evaluator: &self.evaluator,
            group: Some(&self.group),
        }
    }

    /// Evaluates `split` (`limit`: an evenly spaced subset) and logs predictions and metrics at `step`.
    pub fn evaluate(
        &mut self,
        step: usize,
        split: &str,
        limit: Option<usize>,
    ) -> Result<EvalOutput, TrainError> {
        let out = self.bar.suspend(|| self.evaluation().run(&self.td.ds, split, limit))?;
        log_eval(&mut self.run, step, split, &out)?;
        Ok(out)
    }

    fn has_split(&self, split: &str) -> bool {
        self.td.ds.split(&rsicd_data::Split::parse(split)).any(|i| !i.captions.is_empty())
    }

    /// The split the final metrics come from: test, or validation when there is no test split.
    pub fn final_split(&self) -> Option<&str> {
        let d = &self.cfg.data;
        [&d.test_split, &d.val_split].into_iter().find(|s| self.has_split(s)).map(String::as_str)
    }

    /// Before training: the blind baseline (the most frequent training caption for every image) and, when asked,
    /// the untrained model. Only for a run that starts at step 0.
    pub fn baselines(&mut self) -> Result<(), TrainError> {
        let Some(split) = self.final_split().map(str::to_string) else { return Ok(()) };
        if self.state.step != 0 {
            return Ok(());
        }
        let (ds, cfg) = (&self.td.ds, self.cfg);
        let blind =
            self.group.is_main().then(|| eval::most_frequent_caption(ds, &cfg.data.train_split));
        if let Some(caption) = blind.flatten() {
            let set = rsicd_data::EvalSet::new(
                ds,
                &rsicd_data::Split::parse(&split),
                cfg.eval.test_subset,
            );
            let n = set.items.len();
            let out = eval::score(ds, &set, vec![caption.clone(); n], &self.evaluator)?;
            let name = format!("most frequent training caption: \"{caption}\"");
            self.run.update_run(&[(
                "baseline",
                json!({"name": name, "metrics": metric_json(&out.metrics)}),
            )])?;
            self.baseline_metrics = Some(out.metrics);
        }
        if cfg.eval.before {
            self.before_metrics = Some(self.evaluate(0, &split, cfg.eval.test_subset)?.metrics);
        }
        Ok(())
    }

    /// One optimizer step over `grad_accum` micro-batches: forward and backward, then the guards, then the update.
    /// Randomness (LoRA dropout) derives from (seed, step, rank), so a resumed run draws exactly what a straight run
    /// draws. With several ranks each trains on its slice of every global micro-batch, its loss weighted by its
    /// share, and the gradients are summed before anything looks at them (`parallel.rs`).
    pub fn step(&mut self) -> Result<StepOutcome, TrainError> {
        let (cfg, step, t0) = (self.cfg, self.state.step, Instant::now());
        let seed = parallel::step_seed(cfg.seed, step, self.group.rank());
        tch::manual_seed(seed);
        let (mut loss, mut tokens, mut valid_tokens, mut failed) = (0.0, 0i64, 0i64, None);
        for micro in 0..cfg.train.grad_accum {
            let b = match self.next_batch() {
                Ok(b) => b,
                Err(e) => {
                    failed = Some(e);
                    break; // the other ranks still meet this step's collectives, and learn of it there
                }
            };
            valid_tokens += i64::try_from(b.batch.segments.ne(0).sum(Kind::Int64)).unwrap_or(0);
            let share = b.counts.share_of(b.global, cfg.train.loss);
            let opts = StepOptions {
                checkpointing: cfg.model.gradient_checkpointing,
                vision_trainable: self.built.vision_trainable,
                reduction: cfg.train.loss,
                loss_scale: self.scaler.scale * share / cfg.train.grad_accum as f64,
                seed: seed.wrapping_mul(31).wrapping_add(micro as i64),
            };
            let pass =
                forward_backward(&self.built.model, &b.batch, &b.pixels, self.soft.as_ref(), &opts);
            let (l, _) = match pass {
                Ok(done) => done,
                // The other ranks wait in this step's collectives: they learn of it there instead of timing out.
                Err(e) if self.group.world_size() > 1 => {
                    failed = Some(e);
                    break;
                }
                Err(e) => return Err(e),
            };
            loss += l * share;
            tokens += b.global.tokens;
        }
        let local = [loss, valid_tokens as f64, f64::from(u8::from(failed.is_some()))];
        let [loss, valid_tokens, failures] = parallel::sum_values(&self.group, local)?;
        if failures > 0.0 {
            return Err(self.data_error(failed)?);
        }
        let trainables = &self.built.trainables;
        parallel::sum_gradients(&self.group, trainables)?;
        let loss = loss / cfg.train.grad_accum as f64;
        self.scaler.unscale(trainables);
        if let Some(what) = guard::non_finite(loss, trainables) {
            self.scaler.update(false);
            return Ok(StepOutcome::Skipped { what });
        }
        if step == 0 || (self.resumed && self.first_loss.is_none()) {
            guard::check_gradients(trainables)?;
        }
        let grad_norm = guard::clip(trainables, cfg.train.max_grad_norm);
        let lr = self.schedule.lr(step);
        self.optimizer.step(lr);
        self.scaler.update(true);
        let tokens_per_s = valid_tokens / t0.elapsed().as_secs_f64().max(1e-9);
        self.first_loss.get_or_insert(loss);
        self.last_loss = Some(loss);
        self.log_step(loss, lr, grad_norm, tokens, tokens_per_s)?;
        Ok(StepOutcome::Applied)
    }

    /// This rank's part of the next global micro-batch.
    fn next_batch(&mut self) -> Result<data::TrainBatch, TrainError> {
        let (n, b, shard) = (self.cfg.train.batch_size, &self.built, Shard::of(&self.group));
        self.td.next_batch(n, shard, &b.tokenizer, &b.layout, b.device)
    }

    /// An unreadable image after training started (on this rank: `mine`, or on another): nothing of this step was
    /// applied, so the completed steps are checkpointed, the run is marked failed, and the error names the file.
    fn data_error(&mut self, mine: Option<TrainError>) -> Result<TrainError, TrainError> {
        self.optimizer.zero_grad();
        self.bar.abandon();
        let error = mine.unwrap_or_else(|| {
            TrainError::Stopped(
                "another rank failed this step (its own error says why, and names the file if one was unreadable)"
                    .into(),
            )
        });
        self.stop_on_data_error(error)
    }

    fn log_step(
        &mut self,
        loss: f64,
        lr: f64,
        grad_norm: f64,
        tokens: i64,
        per_s: f64,
    ) -> Result<(), TrainError> {
        let (step, total) = (self.state.step, self.cfg.train.steps);
        if (step + 1) % self.cfg.train.log_every.max(1) == 0 || step + 1 == total || step == 0 {
            let c = self.td.sampler.cursor();
            let epoch = c.epoch as f64 + c.position as f64 / self.td.sampler.len().max(1) as f64;
            self.run.log(&json!({
                "kind": "train", "step": step + 1, "epoch": epoch, "loss": loss, "lr": lr, "grad_norm": grad_norm,
                "tokens": tokens, "tokens_per_s": per_s, "time_s": self.started.elapsed().as_secs_f64(),
                "loss_scale": self.scaler.scale,
            }))?;
        }
        self.bar.set_message(format!("loss {loss:.4} | lr {lr:.2e} | {per_s:.0} tok/s"));
        Ok(())
    }

    /// A skipped step is logged; too many in a row stop the run with advice.
    pub fn skipped(&mut self, what: &str) -> Result<(), TrainError> {
        let (step, patience) = (self.state.step, self.cfg.train.nan_patience);
        self.state.nan_hits += 1;
        tracing::warn!(
            step,
            "non-finite values in {what}: step skipped ({}/{patience})",
            self.state.nan_hits
        );
        self.run.log(
            &json!({"kind": "skip", "step": step + 1, "reason": format!("non-finite {what}")}),
        )?;
        if self.state.nan_hits < patience {
            return Ok(());
        }
        self.run.update_run(&[("status", json!("failed"))])?;
        Err(TrainError::NonFinite(format!(
            "stopping after {} steps with non-finite values (last: {what}); lower optim.lr, use model.dtype = \"f32\" \
             or \"bf16\", or check the data",
            self.state.nan_hits
        )))
    }

    /// The step is over (applied or skipped): gradients cleared, the counters and data cursor advance.
    pub fn advance(&mut self) {
        self.optimizer.zero_grad();
        self.state.step += 1;
        let cursor = self.td.sampler.cursor();
        self.state.cursor_epoch = cursor.epoch;
        self.state.cursor_position = cursor.position;
        self.state.loss_scale = self.scaler.scale;
        self.state.good_steps = self.scaler.good;
        self.bar.set_position(self.state.step as u64);
    }

    /// After a step: the periodic validation, the checkpoint when due (or when a signal asks to stop), the stop.
    pub fn after_step(&mut self) -> Result<(), TrainError> {
        let (cfg, step) = (self.cfg, self.state.step);
        let val = cfg.data.val_split.as_str();
        let due =
            cfg.train.eval_every > 0 && step % cfg.train.eval_every == 0 && step < cfg.train.steps;
        if due && self.has_split(val) {
            let out = self.evaluate(step, val, cfg.eval.val_subset)?;
            self.last_val_step = Some(step);
            self.select(step, &out)?;
        }
        let stop = parallel::agreed_signal(&self.group)?;
        let due = cfg.train.checkpoint_every > 0 && step % cfg.train.checkpoint_every == 0;
        if due || stop.is_some() || step == cfg.train.steps || self.state.stopped_early {
            self.save_checkpoint()?;
        }
        // The signal read above, not a fresh read: one arriving after the checkpoint decision waits a step.
        stop.map_or(Ok(()), |signal| Err(self.interrupted(signal)?))
    }

    /// A signal asked to stop (any rank's): `run.json` says so, and the error carries the exit code (128 + signal).
    pub fn stop_if_signalled(&self) -> Result<(), TrainError> {
        match parallel::agreed_signal(&self.group)? {
            Some(signal) => Err(self.interrupted(signal)?),
            None => Ok(()),
        }
    }

    /// Best-checkpoint selection and early stopping after a validation at `step` (`selection.rs`). Rank 0 judges
    /// (it alone scores) and every rank follows its verdict; a new best is checkpointed and kept as `best/`.
    fn select(&mut self, step: usize, out: &EvalOutput) -> Result<(), TrainError> {
        let Some(metric) = self.cfg.train.select_best.clone() else { return Ok(()) };
        let value = selection::value_of(&metric, &out.metrics).filter(|_| self.group.is_main());
        let (best, since, early) =
            (self.state.best.as_ref(), self.state.evals_since_best, self.cfg.train.early_stopping);
        let verdict =
            value.map(|v| selection::judge(best, since, &metric, v, step, early.as_ref()));
        let said = serde_json::to_vec(&verdict).expect("json");
        let heard = parallel::from_rank0(&self.group, &said)?;
        let verdict: Option<selection::Verdict> = serde_json::from_slice(&heard)
            .map_err(|e| TrainError::Stopped(format!("rank 0's verdict unreadable: {e}")))?;
        let Some(v) = verdict else { return Ok(()) };
        (self.state.evals_since_best, self.state.stopped_early) = (v.evals_since_best, v.stop);
        if let Some(best) = v.best {
            self.state.best = Some(best.clone());
            let dir = self.save_checkpoint()?;
            if self.run.is_writer() {
                checkpoint::save_best(&self.run.checkpoints(), &dir)?;
            }
            self.run.update_run(&[("best_checkpoint", json!(best))])?;
        }
        if v.stop {
            let patience = early.map_or(0, |e| e.patience);
            self.run.update_run(&[(
                "early_stopping",
                json!({"stopped_at": step, "patience": patience, "metric": metric}),
            )])?;
            if self.group.is_main() {
                self.bar.suspend(|| {
                    eprintln!("early stopping at step {step}: no {metric} improvement in {patience} validations")
                });
            }
        }
        Ok(())
    }

    /// Rank 0 writes the checkpoint (every rank holds the same trainables and optimizer state), once per step.
    pub fn save_checkpoint(&self) -> Result<PathBuf, TrainError> {
        let step = self.state.step;
        if !self.run.is_writer() || self.saved_step.get() == Some(step) {
            return Ok(checkpoint::dir_for(&self.run.checkpoints(), step));
        }
        self.saved_step.set(Some(step));
        let opt_state = self.optimizer.state();
        let keep = self.cfg.train.keep_checkpoints;
        checkpoint::save(
            &self.run.checkpoints(),
            &self.state,
            &self.built.trainables,
            &opt_state,
            keep,
        )
    }

    fn interrupted(&self, signal: interrupt::Signal) -> Result<TrainError, TrainError> {
        self.bar.abandon();
        let step = self.state.step;
        let checkpoint = self.run.checkpoints().join(format!("step-{step:06}"));
        // Rank 0 writes it, maybe still: the other ranks know it is there once a step was done.
        let saved = checkpoint.exists() || (!self.run.is_writer() && step > 0);
        let checkpoint = saved.then_some(checkpoint);
        self.run.update_run(&[
            ("status", json!("interrupted")),
            ("interrupted", json!({"signal": signal.name(), "step": step, "at": run::now().1})),
        ])?;
        Ok(TrainError::Interrupted { signal, run: self.run.path.clone(), checkpoint })
    }

    fn stop_on_data_error(&self, error: TrainError) -> Result<TrainError, TrainError> {
        let saved = if self.state.step > 0 { Some(self.save_checkpoint()?) } else { None };
        self.run.update_run(&[("status", json!("failed")), ("error", json!(error.to_string()))])?;
        Ok(TrainError::Stopped(match saved {
            Some(dir) => format!(
                "{error}\n  training stopped; the {} completed steps are saved in {}: fix the data, then continue \
                 with --resume {}",
                self.state.step,
                dir.display(),
                self.run.path.display()
            ),
            None => format!("{error}\n  training stopped before its first step"),
        }))
    }

    /// After the last step: validation at the last step (if not just done), the final split with every metric,
    /// `run.json`, the PEFT adapter and the report.
    pub fn finish(mut self) -> Result<crate::TrainSummary, TrainError> {
        self.bar.finish_and_clear();
        // The last step: `train.steps`, or where early stopping ended training.
        let (cfg, last) = (self.cfg, self.state.step);
        let final_split = self.final_split().map(str::to_string);
        let val = cfg.data.val_split.as_str();
        if self.has_split(val)
            && self.last_val_step != Some(last)
            && final_split.as_deref() != Some(val)
        {
            let out = self.evaluate(last, val, cfg.eval.val_subset)?;
            self.select(last, &out)?;
        }
        let weights = self.final_weights()?;
        let final_metrics = match &final_split {
            Some(split) => self.evaluate(last, split, cfg.eval.test_subset)?.metrics,
            None => vec![],
        };
        let (weights_step, selected_by) = match &weights {
            Some(b) => (b.step, json!({"metric": b.metric, "value": b.value})),
            None => (last, serde_json::Value::Null),
        };
        self.run.update_run(&[
            ("final_checkpoint", json!({"step": weights_step, "selected_by": selected_by})),
            ("status", json!("finished")),
            ("finished", json!(run::now().1)),
            ("final_metrics", metric_json(&final_metrics)),
            ("wall_time_s", json!(self.started.elapsed().as_secs_f64())),
        ])?;
        let main = self.run.is_writer();
        if let Some(lc) = self.built.lora.as_ref().filter(|_| main) {
            crate::peft::save_adapter(&self.run.path.join("adapter"), &self.built, lc, cfg)?;
        }
        Ok(crate::TrainSummary {
            rank: self.group.rank(),
            report: main.then(|| crate::report_hook(&self.run.path)).flatten(),
            run_dir: self.run.path.clone(),
            steps: self.state.step,
            first_loss: self.first_loss,
            last_loss: self.last_loss,
            final_metrics,
            before_metrics: self.before_metrics,
            baseline_metrics: self.baseline_metrics,
        })
    }
}

fn progress_bar(quiet: bool, total: usize) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let style = indicatif::ProgressStyle::with_template(
        "{bar:30} {pos}/{len} steps | {msg} | {elapsed} < {eta}",
    );
    indicatif::ProgressBar::new(total as u64).with_style(style.expect("template"))
}

/// Training captions (and the prompt) for a tokenizer built from scratch.
fn training_texts(ds: &rsicd_data::Dataset, cfg: &ExperimentConfig) -> Vec<String> {
    ds.split(&rsicd_data::Split::parse(&cfg.data.train_split))
        .flat_map(|i| i.captions.iter())
        .map(|c| if cfg.data.lowercase { c.to_lowercase() } else { c.clone() })
        .chain(std::iter::once(cfg.data.prefix.clone()))
        .collect()
}

/// The memory plan from the shapes of a real first batch (the data cursor is left where it was), and the total
/// parameter count.
fn memory_plan(
    cfg: &ExperimentConfig,
    built: &Built,
    td: &mut TrainData,
    group: &distributed::ProcessGroup,
) -> Result<(memory::Plan, i64), TrainError> {
    let base: Vec<(String, Tensor)> = built.base_vs.variables().into_iter().collect();
    let adapters: i64 = built.adapter_vs.variables().values().map(|t| t.numel() as i64).sum();
    let total_params = base.iter().map(|(_, t)| t.numel() as i64).sum::<i64>() + adapters;
    let saved = td.sampler.cursor();
    let (n, shard) = (cfg.train.batch_size, Shard::of(group));
    let probe = td.next_batch(n, shard, &built.tokenizer, &built.layout, built.device)?;
    td.sampler.resume(saved);
    let (base_params, base_bytes, trainable_params, extra_params) =
        memory::sizes_from_tensors(&base, &built.trainables);
    let plan = memory::plan(&PlanInput {
        config: &built.model.config,
        act_bytes: memory::kind_bytes(built.model.kind()),
        base_params,
        base_bytes,
        trainable_params,
        extra_params,
        batch: cfg.train.batch_size,
        seq_len: probe.batch.ids.size()[1] as usize,
        supervised_tokens: probe.batch.supervised_tokens() as usize,
        checkpointing: cfg.model.gradient_checkpointing,
        vision_trainable: built.vision_trainable,
        optimizer_slots: optimizer_slots(cfg),
        ranks: group.world_size(),
    });
    Ok((plan, total_params))
}

pub fn optimizer_slots(cfg: &ExperimentConfig) -> usize {
    match cfg.optim.name {
        OptimizerKind::Adamw => 2,
        OptimizerKind::Sgd if cfg.optim.momentum != 0.0 => 1,
        OptimizerKind::Sgd => 0,
    }
}

fn model_label(cfg: &ExperimentConfig) -> String {
    match cfg.model.source {
        ModelSource::Hf => {
            cfg.model.path.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
        }
        ModelSource::Scratch => "PaliGemma architecture from scratch".into(),
        ModelSource::Custom => {
            let c = cfg.model.custom.as_ref().expect("validated");
            format!("{} + projector + {}", c.siglip.display(), c.gemma.display())
        }
    }
}

fn metric_json(m: &[(String, f64)]) -> serde_json::Value {
    serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
}

fn log_eval(
    run: &mut RunDir,
    step: usize,
    split: &str,
    out: &EvalOutput,
) -> Result<(), TrainError> {
    let rel = format!("predictions/step-{step:06}-{split}.json");
    let preds: Vec<serde_json::Value> =
        out.predictions.iter().map(|(id, c)| json!({"image_id": id, "caption": c})).collect();
    if !run.is_writer() {
        return Ok(());
    }
    std::fs::create_dir_all(run.path.join("predictions"))
        .map_err(|e| TrainError::Io(e.to_string()))?;
    run.write_json(&rel, &json!(preds))?;
    run.write_json(&format!("predictions/references-{split}.json"), &json!(out.references))?;
    run.log(&json!({
        "kind": "eval", "step": step, "split": split, "metrics": metric_json(&out.metrics),
        "diversity": out.diversity, "n_images": out.predictions.len(), "predictions": rel,
    }))?;
    run.tb_captions(split, step, &out.predictions)
}

/// Every train, validation and test image exists and its header decodes, before any compute is spent; all
/// problems are listed at once (`--skip-image-check` skips this for huge sets).
fn check_images(ds: &rsicd_data::Dataset, cfg: &ExperimentConfig) -> Result<(), TrainError> {
    let d = &cfg.data;
    let splits: Vec<rsicd_data::Split> = [&d.train_split, &d.val_split, &d.test_split]
        .iter()
        .map(|s| rsicd_data::Split::parse(s))
        .collect();
    let problems = rsicd_data::probe_split_images(ds, &splits);
    if problems.is_empty() {
        return Ok(());
    }
    const SHOWN: usize = 10;
    let mut msg = format!("{} image(s) of the dataset cannot be read:", problems.len());
    for p in problems.iter().take(SHOWN) {
        msg.push_str(&format!("\n  {p}"));
    }
    if problems.len() > SHOWN {
        let more = problems.len() - SHOWN;
        msg.push_str(&format!("\n  … and {more} more (`cargo xtask validate` lists them all)"));
    }
    msg.push_str("\n  fix or remove them, or pass --skip-image-check to train anyway");
    Err(TrainError::Stopped(msg))
}

/// The run directory: rank 0 checks the images and opens it (resumed, new, or temporary for a dry run); the other
/// ranks learn its path, or rank 0's error, from rank 0, and only read there.
fn open_run(
    cfg: &ExperimentConfig,
    opts: &TrainOptions,
    ds: &rsicd_data::Dataset,
    group: &distributed::ProcessGroup,
) -> Result<RunDir, TrainError> {
    use std::os::unix::ffi::OsStrExt;
    let opened = group.is_main().then(|| {
        if !opts.skip_image_check && !opts.dry_run {
            check_images(ds, cfg)?;
        }
        match (&opts.resume, opts.dry_run) {
            (Some(dir), _) => RunDir::open(dir),
            (None, true) => RunDir::open_temporary("pg-dry-run"),
            (None, false) => RunDir::create(&opts.runs_dir, &cfg.name),
        }
    });
    let said = match &opened {
        Some(Ok(run)) => [b"+", run.path.as_os_str().as_bytes()].concat(),
        Some(Err(e)) => format!("-{e}").into_bytes(),
        None => vec![],
    };
    let heard = parallel::from_rank0(group, &said)?;
    match (opened, heard.split_first()) {
        (Some(run), _) => run,
        (None, Some((b'+', path))) => {
            Ok(RunDir::reader(std::ffi::OsStr::from_bytes(path).as_ref()))
        }
        (None, _) => Err(TrainError::Stopped(format!(
            "rank 0 stopped before training: {}",
            String::from_utf8_lossy(heard.get(1..).unwrap_or_default())
        ))),
    }
}

/// The model. Files the build writes for the run (a scratch tokenizer) go to the run directory from rank 0; the
/// other ranks of a new run build theirs (the same, from the same captions) in a private directory that goes after.
fn build_model(
    cfg: &ExperimentConfig,
    opts: &TrainOptions,
    texts: &[&str],
    run: &RunDir,
    group: &distributed::ProcessGroup,
) -> Result<Built, TrainError> {
    if run.is_writer() || opts.resume.is_some() {
        return strategy::build(cfg, texts, &run.path);
    }
    let private =
        std::env::temp_dir().join(format!("pg-rank{}-{}", group.rank(), std::process::id()));
    std::fs::create_dir_all(&private)
        .map_err(|e| TrainError::Io(format!("{}: {e}", private.display())))?;
    let built = strategy::build(cfg, texts, &private);
    let _ = std::fs::remove_dir_all(&private);
    built
}
