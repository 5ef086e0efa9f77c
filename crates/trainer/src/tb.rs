//! TensorBoard's view of a run (`runs/<run>/tb/`, `log.tensorboard`): every `metrics.jsonl` line mirrored as
//! scalars (`train/loss`, `train/lr`, `train/grad_norm`, `train/tokens_per_s`, `train/loss_scale`;
//! `<split>/<metric>` and `<split>/diversity` for each evaluation) and a few sample captions per evaluation as text,
//! through `crates/tensorboard`'s event writer. A resumed run starts a new event file from its first new step, so
//! TensorBoard shows the steps it repeats once.
use crate::TrainError;
use serde_json::Value;
use std::path::Path;
use tensorboard::EventWriter;

/// Captions shown per evaluation.
const SAMPLES: usize = 4;

pub struct Tensorboard {
    writer: EventWriter,
}

fn io(e: tensorboard::Error) -> TrainError {
    TrainError::Io(format!("TensorBoard log: {e}"))
}

impl Tensorboard {
    /// A new event file in `dir`; `first_step` > 0 for a run resumed after that many steps.
    pub fn open(dir: &Path, first_step: usize) -> Result<Self, TrainError> {
        let writer = match first_step {
            0 => EventWriter::create(dir),
            s => EventWriter::resume(dir, s as i64 + 1),
        };
        Ok(Self { writer: writer.map_err(io)? })
    }

    /// The scalars of one `metrics.jsonl` line (other kinds of line have none).
    pub fn mirror(&mut self, line: &Value) -> Result<(), TrainError> {
        let Some(step) = line["step"].as_i64() else { return Ok(()) };
        let scalars: Vec<(String, f64)> = match line["kind"].as_str() {
            Some("train") => ["loss", "lr", "grad_norm", "tokens_per_s", "loss_scale"]
                .iter()
                .filter_map(|k| Some((format!("train/{k}"), line[*k].as_f64()?)))
                .collect(),
            Some("eval") => {
                let split = line["split"].as_str().unwrap_or("eval");
                let metrics = line["metrics"].as_object().into_iter().flatten();
                let values =
                    metrics.filter_map(|(k, v)| Some((format!("{split}/{k}"), v.as_f64()?)));
                let diversity =
                    line["diversity"].as_f64().map(|d| (format!("{split}/diversity"), d));
                values.chain(diversity).collect()
            }
            _ => return Ok(()),
        };
        let tagged: Vec<(&str, f64)> = scalars.iter().map(|(t, v)| (t.as_str(), *v)).collect();
        self.writer.add_scalars(step, &tagged, tensorboard::now()).map_err(io)
    }

    /// The first few `(image, caption)` predictions of an evaluation, as a Markdown table.
    pub fn captions(
        &mut self,
        split: &str,
        step: usize,
        predictions: &[(String, String)],
    ) -> Result<(), TrainError> {
        let mut md = String::from("| image | caption |\n|---|---|\n");
        for (image, caption) in predictions.iter().take(SAMPLES) {
            md.push_str(&format!("| {} | {} |\n", cell(image), cell(caption)));
        }
        let tag = format!("{split}/captions");
        self.writer.add_text(&tag, step as i64, &md, tensorboard::now()).map_err(io)
    }
}

/// A Markdown table cell: pipes escaped, one line.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}
