//! Cross-checks against TensorBoard itself, through the committed fixtures of
//! `scripts/fixtures/gen_tensorboard_fixture.py` (no Python here):
//! - `ours/`: files our writer wrote (by the ignored test `write_ours_fixture`), and
//!   `ours.read-by-tensorboard.json`: what TensorBoard read from them. The writer must still write exactly those
//!   bytes, TensorBoard's reading must be the inputs below, and our reader must read what TensorBoard read.
//! - `torch/`: a file torch's `SummaryWriter` wrote, and `torch.json`: its inputs and TensorBoard's reading of it,
//!   which our reader must reproduce.
mod common;

use common::{fixtures, same, Scratch};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::Path;
use tensorboard::{
    event_files, read_events, scalars, texts, Data, Event, EventWriter, SessionStatus, What,
};

// ---- the inputs of the `ours` fixture ---------------------------------------------------------------------------

/// One call on the writer.
enum Log {
    Scalars(i64, Vec<(&'static str, f64)>),
    Text(i64, &'static str, &'static str),
}

/// One event file: a run, or its resumption.
struct Run {
    file: &'static str,
    wall_time: f64,
    start_step: i64,
    logs: Vec<Log>,
}

/// A training step's scalars; `resumed` changes them a little, as a resumed run's recomputation may.
fn train(step: i64, resumed: bool) -> Log {
    let s = step as f64;
    let loss = 3.0 / (1.0 + 0.37 * s) + if resumed { 0.01 } else { 0.0 };
    let grad_norm = match step {
        2 => f64::INFINITY, // an f16 overflow: the loss scale halves
        3 => f64::NAN,
        _ => 1.0 / s,
    };
    let loss_scale = if step < 2 { 65536.0 } else { 32768.0 };
    Log::Scalars(
        step,
        vec![
            ("train/loss", loss),
            ("train/lr", 2e-4 * s.min(4.0) / 4.0),
            ("train/grad_norm", grad_norm),
            ("train/tokens_per_s", 1234.5 + s),
            ("train/loss_scale", loss_scale),
        ],
    )
}

fn evaluation(step: i64, split: &'static str, cider: f64) -> Log {
    let tags: [&'static str; 3] = match split {
        "val" => ["val/CIDEr", "val/BLEU-4", "val/métrique ✓"],
        _ => ["test/CIDEr", "test/BLEU-4", "test/métrique ✓"],
    };
    Log::Scalars(step, vec![(tags[0], cider), (tags[1], cider / 4.0), (tags[2], -0.0)])
}

const CAPTIONS_3: &str =
    "**step 3**\n\n1. many planes are parked ✈ near the terminal\n2. a river | a bridge";
const CAPTIONS_6: &str = "**step 6**\n\n1. 飛行場 — some *buildings*\n2. `green` fields\r\n";
const CAPTIONS_6_RESUMED: &str = "**step 6 (resumed)**\n\n1. a bridge crosses the river";
const TEST_CAPTIONS: &str =
    "**test, step 8**\n\n| image | caption |\n|---|---|\n| 1 | a storage tank |";

/// A run killed after step 6 and resumed from its step-4 checkpoint: the second file starts at step 5.
fn runs() -> Vec<Run> {
    let mut first: Vec<Log> = Vec::new();
    for step in 1..=6 {
        first.push(train(step, false));
        if step % 3 == 0 {
            first.push(evaluation(step, "val", 0.125 * step as f64));
            first.push(Log::Text(
                step,
                "val/captions",
                if step == 3 { CAPTIONS_3 } else { CAPTIONS_6 },
            ));
        }
    }
    let mut second: Vec<Log> = (5..=8).map(|step| train(step, true)).collect();
    second.insert(2, evaluation(6, "val", 0.8));
    second.insert(3, Log::Text(6, "val/captions", CAPTIONS_6_RESUMED));
    second.push(evaluation(8, "test", 0.9));
    second.push(Log::Text(8, "test/captions", TEST_CAPTIONS));
    vec![
        Run {
            file: "events.out.tfevents.1700000000.fixture.1000.0",
            wall_time: 1.7e9,
            start_step: 0,
            logs: first,
        },
        Run {
            file: "events.out.tfevents.1700000600.fixture.2000.0",
            wall_time: 1.7e9 + 600.0,
            start_step: 5,
            logs: second,
        },
    ]
}

/// The wall time of a run's `i`-th call: a second apart, in quarter seconds to exercise the fraction.
fn wall_time(run: &Run, i: usize) -> f64 {
    run.wall_time + 1.25 * (i + 1) as f64
}

fn write_runs(dir: &Path) {
    for run in runs() {
        let mut w =
            EventWriter::create_file(&dir.join(run.file), run.wall_time, run.start_step).unwrap();
        for (i, log) in run.logs.iter().enumerate() {
            match log {
                Log::Scalars(step, values) => {
                    w.add_scalars(*step, values, wall_time(&run, i)).unwrap()
                }
                Log::Text(step, tag, text) => {
                    w.add_text(tag, *step, text, wall_time(&run, i)).unwrap()
                }
            }
        }
    }
}

/// What TensorBoard should show: each file's points before the next file's start step. Values are f32
/// (`simple_value`). Per tag: (step, wall_time, value or text).
fn visible() -> (Series<f64>, Series<String>) {
    let runs = runs();
    let (mut scalars, mut texts) = (Series::new(), Series::new());
    for (r, run) in runs.iter().enumerate() {
        let until = runs.get(r + 1).map_or(i64::MAX, |next| next.start_step);
        for (i, log) in run.logs.iter().enumerate() {
            match log {
                Log::Scalars(step, values) if *step < until => {
                    for (tag, x) in values {
                        let point = (*step, wall_time(run, i), f64::from(*x as f32));
                        scalars.entry(tag.to_string()).or_insert_with(Vec::new).push(point);
                    }
                }
                Log::Text(step, tag, text) if *step < until => {
                    texts.entry(tag.to_string()).or_insert_with(Vec::new).push((
                        *step,
                        wall_time(run, i),
                        text.to_string(),
                    ));
                }
                _ => {}
            }
        }
    }
    (scalars, texts)
}

type Series<T> = BTreeMap<String, Vec<(i64, f64, T)>>;

// ---- reading the generator's JSON -------------------------------------------------------------------------------

fn load_json(name: &str) -> Json {
    let path = fixtures().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The generator writes floats as Python repr strings ("0.1", "nan", "inf"), which Rust parses exactly.
fn float(v: &Json) -> f64 {
    v.as_str().unwrap_or_else(|| panic!("float string expected, found {v}")).parse().unwrap()
}

/// TensorBoard's scalar series (`"scalars"` of the JSON).
fn json_scalars(json: &Json) -> Series<f64> {
    series(json, "scalars", |p| float(&p["value"]))
}

fn json_texts(json: &Json) -> Series<String> {
    series(json, "texts", |p| p["text"].as_str().unwrap().to_owned())
}

fn series<T>(json: &Json, key: &str, value: impl Fn(&Json) -> T) -> Series<T> {
    json[key]
        .as_object()
        .unwrap()
        .iter()
        .map(|(tag, points)| {
            let points = points.as_array().unwrap();
            (
                tag.clone(),
                points
                    .iter()
                    .map(|p| (p["step"].as_i64().unwrap(), float(&p["wall_time"]), value(p)))
                    .collect(),
            )
        })
        .collect()
}

/// Our reading of one event against TensorBoard's raw reading (`LegacyEventFileLoader`) of the same record.
fn assert_same_event(ours: &Event, tb: &Json, context: &str) {
    assert!(same(ours.wall_time, float(&tb["wall_time"])), "{context}: wall_time");
    assert_eq!(ours.step, tb["step"].as_i64().unwrap(), "{context}: step");
    match &ours.what {
        What::FileVersion(v) => assert_eq!(tb["file_version"], **v, "{context}"),
        What::SessionLog(SessionStatus::Start) => {
            assert_eq!(tb["session_log"], "START", "{context}")
        }
        What::Summary(values) => {
            let tb_values = tb["summary"].as_array().unwrap_or_else(|| panic!("{context}: {tb}"));
            assert_eq!(values.len(), tb_values.len(), "{context}");
            for (v, t) in values.iter().zip(tb_values) {
                assert_eq!(t["tag"], *v.tag, "{context}");
                assert_eq!(t["plugin_name"], *v.plugin_name, "{context}");
                assert_same_data(&v.data, t, &format!("{context}, {}", v.tag));
            }
        }
        other => panic!("{context}: unexpected {other:?}"),
    }
}

fn assert_same_data(ours: &Data, tb: &Json, context: &str) {
    let tensor = &tb["tensor"];
    match ours {
        Data::Scalar(x) => {
            let theirs = if tb["simple_value"].is_string() {
                float(&tb["simple_value"])
            } else if tensor["dtype"] == "DT_DOUBLE" {
                float(&tensor["double_val"][0])
            } else {
                float(&tensor["float_val"][0])
            };
            assert!(same(*x, theirs), "{context}: ours {x:e}, TensorBoard {theirs:e}");
        }
        Data::Text(text) => {
            assert_eq!(tensor["dtype"], "DT_STRING", "{context}");
            assert_eq!(tensor["string_val"], serde_json::json!([text]), "{context}");
        }
        Data::Other => panic!("{context}: we could not read {tb}"),
    }
}

fn assert_series_eq<T: PartialEq + std::fmt::Debug>(
    ours: &Series<T>,
    expected: &Series<T>,
    eq: impl Fn(&T, &T) -> bool,
) {
    assert_eq!(ours.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
    for (tag, points) in ours {
        let other = &expected[tag];
        let ok = points.len() == other.len()
            && points
                .iter()
                .zip(other)
                .all(|(a, b)| a.0 == b.0 && same(a.1, b.1) && eq(&a.2, &b.2));
        assert!(ok, "{tag}:\n  got      {points:?}\n  expected {other:?}");
    }
}

/// Drops wall times, for comparing with [`tensorboard::scalars`] and [`tensorboard::texts`].
fn steps_values<T: Clone>(series: &Series<T>) -> BTreeMap<String, Vec<(i64, T)>> {
    series
        .iter()
        .map(|(tag, ps)| (tag.clone(), ps.iter().map(|p| (p.0, p.2.clone())).collect()))
        .collect()
}

fn same_f64_series(
    a: &BTreeMap<String, Vec<(i64, f64)>>,
    b: &BTreeMap<String, Vec<(i64, f64)>>,
) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|((ta, pa), (tb, pb))| {
            ta == tb
                && pa.len() == pb.len()
                && pa.iter().zip(pb).all(|(x, y)| x.0 == y.0 && same(x.1, y.1))
        })
}

// ---- the tests --------------------------------------------------------------------------------------------------

#[test]
#[ignore = "writes data/fixtures/tensorboard/ours/; run by scripts/fixtures/gen_tensorboard_fixture.py"]
fn write_ours_fixture() {
    let dir = fixtures().join("ours");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    write_runs(&dir);
}

#[test]
fn writer_still_writes_the_committed_bytes() {
    let scratch = Scratch::new("ours-now");
    write_runs(scratch.path());
    let committed = event_files(&fixtures().join("ours")).unwrap();
    let now = event_files(scratch.path()).unwrap();
    let names = |files: &[std::path::PathBuf]| {
        files.iter().map(|f| f.file_name().unwrap().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(names(&committed), names(&now));
    for (c, n) in committed.iter().zip(&now) {
        assert!(
            std::fs::read(c).unwrap() == std::fs::read(n).unwrap(),
            "{} changed; if on purpose, rerun the generator",
            c.display()
        );
    }
}

#[test]
fn tensorboard_read_our_files_as_written() {
    let json = load_json("ours.read-by-tensorboard.json");
    let (scalars, texts) = visible();
    assert_series_eq(&json_scalars(&json), &scalars, |a, b| same(*a, *b));
    assert_series_eq(&json_texts(&json), &texts, |a, b| a == b);
    // The restart hid the first run's steps 5 and 6; the cross-check would be blind without these.
    assert_eq!(
        scalars["train/loss"].iter().map(|p| p.0).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6, 7, 8]
    );
    assert_eq!(
        texts["val/captions"].iter().map(|p| p.2.as_str()).collect::<Vec<_>>(),
        [CAPTIONS_3, CAPTIONS_6_RESUMED]
    );
    assert!(
        scalars["train/grad_norm"][1].2.is_infinite() && scalars["train/grad_norm"][2].2.is_nan()
    );
}

#[test]
fn we_read_our_files_as_tensorboard_did() {
    let json = load_json("ours.read-by-tensorboard.json");
    let dir = fixtures().join("ours");
    for file in event_files(&dir).unwrap() {
        let name = file.file_name().unwrap().to_str().unwrap();
        let tb = json["events"][name]
            .as_array()
            .unwrap_or_else(|| panic!("{name} missing from the JSON"));
        let ours = read_events(&file).unwrap();
        assert_eq!(ours.len(), tb.len(), "{name}");
        for (i, (o, t)) in ours.iter().zip(tb).enumerate() {
            assert_same_event(o, t, &format!("{name} event {i}"));
        }
    }
    assert!(same_f64_series(&scalars(&dir).unwrap(), &steps_values(&json_scalars(&json))));
    assert_eq!(texts(&dir).unwrap(), steps_values(&json_texts(&json)));
}

#[test]
fn we_read_torchs_files_as_tensorboard_did() {
    let json = load_json("torch.json");
    let dir = fixtures().join("torch");
    let files = event_files(&dir).unwrap();
    assert_eq!(files.len(), 1);
    let name = files[0].file_name().unwrap().to_str().unwrap();
    let tb = json["events"][name].as_array().unwrap();
    let ours = read_events(&files[0]).unwrap();
    assert_eq!(ours.len(), tb.len());
    for (i, (o, t)) in ours.iter().zip(tb).enumerate() {
        assert_same_event(o, t, &format!("torch event {i}"));
    }
    assert!(same_f64_series(&scalars(&dir).unwrap(), &steps_values(&json_scalars(&json))));
    assert_eq!(texts(&dir).unwrap(), steps_values(&json_texts(&json)));
}

#[test]
fn we_read_torchs_inputs() {
    let json = load_json("torch.json");
    let dir = fixtures().join("torch");
    let (s, t) = (scalars(&dir).unwrap(), texts(&dir).unwrap());
    for input in json["inputs"]["scalars"].as_array().unwrap() {
        let (tag, step, value) = (
            input["tag"].as_str().unwrap(),
            input["step"].as_i64().unwrap(),
            float(&input["value"]),
        );
        // simple_value and new-style float tensors hold f32s; double_precision keeps the f64.
        let stored = if input["style"] == "double" { value } else { f64::from(value as f32) };
        let read =
            s[tag].iter().find(|p| p.0 == step).unwrap_or_else(|| panic!("{tag} at {step}")).1;
        assert!(same(read, stored), "{tag} at {step}: wrote {value:e}, read {read:e}");
    }
    for input in json["inputs"]["texts"].as_array().unwrap() {
        // torch appends "/text_summary" to add_text's tag.
        let tag = format!("{}/text_summary", input["tag"].as_str().unwrap());
        let point = (input["step"].as_i64().unwrap(), input["text"].as_str().unwrap().to_owned());
        assert!(t[&tag].contains(&point), "{tag}: {point:?}");
    }
    assert_eq!(s["val/BLEU-4"], [(5, 0.1 + 0.2)], "a double-precision tensor scalar");
    assert!(same(s["métrique/Größe ✓"][0].1, -0.0));
}
