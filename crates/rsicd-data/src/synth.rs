//! Deterministic synthetic aerial scenes with captions that can be learned from the pixels: the demo dataset
//! of the training issue (a small model trained from scratch on CPU must be able to fit it).
//!
//! Eight scene classes (residential, farmland, river, pond, airport, storage tanks, forest, beach) are drawn from
//! a few primitives (textured ground, roads, buildings and tanks with shadows, trees, water bands). Each image
//! gets five captions that state the class, object counts (one to six), colours and a spatial relation, from a
//! vocabulary of about a hundred words. Geometry lives in [0, 1] coordinates, so any image size renders the same
//! scene (the demo uses 32-64 px; 224 px matches PaliGemma). Everything derives from `(seed, index)`: the same
//! seed gives byte-identical files. Output is Karpathy JSON (`dataset_synth.json`) plus `images/*.png`, split
//! 80/10/10 by index.
use std::path::Path;

use image::{Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

use crate::DataError;

pub const CLASSES: [&str; 8] =
    ["residential", "farmland", "river", "pond", "airport", "storage tanks", "forest", "beach"];

const NUMBERS: [&str; 7] = ["zero", "one", "two", "three", "four", "five", "six"];

#[derive(Debug, Clone, Copy)]
struct Named {
    name: &'static str,
    rgb: [u8; 3],
}

const RED: Named = Named { name: "red", rgb: [178, 58, 48] };
const WHITE: Named = Named { name: "white", rgb: [232, 232, 226] };
const GRAY: Named = Named { name: "gray", rgb: [128, 128, 132] };
const BLUE: Named = Named { name: "blue", rgb: [52, 92, 168] };
const GREEN: Named = Named { name: "green", rgb: [70, 140, 60] };
const YELLOW: Named = Named { name: "yellow", rgb: [214, 190, 92] };
const BROWN: Named = Named { name: "brown", rgb: [128, 88, 52] };
const DARK_GREEN: [u8; 3] = [32, 88, 36];
const GRASS: [u8; 3] = [104, 150, 84];
const ROAD: [u8; 3] = [96, 96, 100];
const SAND: [u8; 3] = [222, 204, 150];
const WATER: [u8; 3] = [40, 84, 150];

/// What was drawn, so tests can check captions against pixels.
#[derive(Debug, Clone, Serialize)]
pub struct Scene {
    pub class: &'static str,
    /// Number of countable objects (buildings, fields, trees, planes, tanks); 0 when none.
    pub count: usize,
    pub captions: Vec<String>,
}

/// Rasterizer over normalized coordinates.
struct Canvas {
    img: RgbImage,
    s: f32,
}

impl Canvas {
    fn new(size: u32) -> Self {
        Canvas { img: RgbImage::new(size, size), s: size as f32 }
    }

    fn ground(&mut self, base: [u8; 3], jitter: i32, rng: &mut ChaCha8Rng) {
        for p in self.img.pixels_mut() {
            let j = rng.random_range(-jitter..=jitter);
            p.0 = base.map(|c| (i32::from(c) + j).clamp(0, 255) as u8);
        }
    }

    fn fill(&mut self, inside: impl Fn(f32, f32) -> bool, color: [u8; 3]) {
        let s = self.s;
        for (x, y, p) in self.img.enumerate_pixels_mut() {
            if inside((x as f32 + 0.5) / s, (y as f32 + 0.5) / s) {
                *p = Rgb(color);
            }
        }
    }

    fn rect(&mut self, x0: f32, y0: f32, x1: f32, y1: f32, color: [u8; 3]) {
        self.fill(|x, y| x >= x0 && x < x1 && y >= y0 && y < y1, color);
    }

    fn circle(&mut self, cx: f32, cy: f32, r: f32, color: [u8; 3]) {
        self.fill(|x, y| (x - cx).powi(2) + (y - cy).powi(2) <= r * r, color);
    }

    /// A square object with a shadow to the lower right (sun from the upper left).
    fn building(&mut self, cx: f32, cy: f32, half: f32, color: [u8; 3]) {
        let sh = half * 0.45;
        self.rect(cx - half + sh, cy - half + sh, cx + half + sh, cy + half + sh, [40, 44, 40]);
        self.rect(cx - half, cy - half, cx + half, cy + half, color);
    }

    fn tree(&mut self, cx: f32, cy: f32, r: f32) {
        self.circle(cx + r * 0.4, cy + r * 0.4, r, [30, 50, 30]);
        self.circle(cx, cy, r, DARK_GREEN);
    }
}

fn pick<T: Copy>(rng: &mut ChaCha8Rng, xs: &[T]) -> T {
    xs[rng.random_range(0..xs.len())]
}

/// `n` centres spread evenly along a segment.
fn along(n: usize, from: f32, to: f32) -> Vec<f32> {
    (0..n).map(|k| from + (to - from) * (k as f32 + 0.5) / n as f32).collect()
}

/// Renders scene `index` of the dataset with seed `seed`.
pub fn render(seed: u64, index: usize, size: u32) -> (RgbImage, Scene) {
    let mut rng =
        ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index as u64);
    let class = CLASSES[index % CLASSES.len()];
    let mut c = Canvas::new(size);
    let vertical = rng.random_bool(0.5);
    let orient = if vertical { "vertical" } else { "horizontal" };
    // Which side of a line things are on: left/right of a vertical line, above/below a horizontal one.
    let first_side = rng.random_bool(0.5);
    let side = match (vertical, first_side) {
        (true, true) => "left",
        (true, false) => "right",
        (false, true) => "top",
        (false, false) => "bottom",
    };
    // Places objects on the chosen side of a line at 0.5: `t` runs along the line, the offset is across it.
    let place = |t: f32, off: f32| -> (f32, f32) {
        let across = if first_side { 0.5 - off } else { 0.5 + off };
        if vertical {
            (across, t)
        } else {
            (t, across)
        }
    };
    let (count, captions): (usize, Vec<String>) = match class {
        "residential" => {
            let n = rng.random_range(2..=5);
            let color = pick(&mut rng, &[RED, WHITE, BLUE]);
            c.ground(GRASS, 10, &mut rng);
            let w = 0.10;
            if vertical {
                c.rect(0.5 - w / 2.0, 0.0, 0.5 + w / 2.0, 1.0, ROAD)
            } else {
                c.rect(0.0, 0.5 - w / 2.0, 1.0, 0.5 + w / 2.0, ROAD)
            }
            for t in along(n, 0.05, 0.95) {
                let (x, y) = place(t, 0.22);
                c.building(x, y, 0.065, color.rgb);
            }
            let (num, col) = (NUMBERS[n], color.name);
            (
                n,
                vec![
                    format!("{num} {col} buildings are on the {side} of a {orient} road ."),
                    format!("there are {num} houses with {col} roofs beside the road ."),
                    format!("a residential area with {num} {col} buildings ."),
                    format!("a {orient} road passes by {num} buildings ."),
                    format!("{num} {col} houses stand on the {side} side of a road ."),
                ],
            )
        }
        "farmland" => {
            let k = rng.random_range(2..=4);
            let palette = [GREEN, YELLOW, BROWN];
            let start = rng.random_range(0..3);
            for i in 0..k {
                let col = palette[(start + i) % 3].rgb;
                let (a, b) = (i as f32 / k as f32, (i + 1) as f32 / k as f32);
                if vertical {
                    c.rect(a, 0.0, b, 1.0, col)
                } else {
                    c.rect(0.0, a, 1.0, b, col)
                }
            }
            // Thin furrows so strips read as fields, not flat paint.
            let step = 0.06;
            let mut t = 0.03;
            while t < 1.0 {
                if vertical {
                    c.rect(0.0, t, 1.0, t + 0.008, [60, 60, 40])
                } else {
                    c.rect(t, 0.0, t + 0.008, 1.0, [60, 60, 40])
                }
                t += step;
            }
            let used: Vec<&str> = (0..k.min(3)).map(|i| palette[(start + i) % 3].name).collect();
            let colours = match used.as_slice() {
                [a, b] => format!("{a} and {b}"),
                [a, b, c] => format!("{a} , {b} and {c}"),
                _ => used.join(" "),
            };
            let num = NUMBERS[k];
            (
                k,
                vec![
                    format!("{num} fields are arranged in {orient} strips ."),
                    format!("farmland with {num} {colours} fields ."),
                    format!("the fields are {colours} ."),
                    format!("{num} pieces of farmland lie side by side ."),
                    format!("there are {num} {orient} fields of crops ."),
                ],
            )
        }
        "river" => {
            let n = rng.random_range(2..=5);
            c.ground(GRASS, 10, &mut rng);
            let phase = rng.random_range(0.0..std::f32::consts::TAU);
            let wave = move |t: f32| 0.5 + 0.06 * (t * 6.0 + phase).sin();
            c.fill(
                |x, y| {
                    if vertical {
                        (x - wave(y)).abs() < 0.07
                    } else {
                        (y - wave(x)).abs() < 0.07
                    }
                },
                WATER,
            );
            for t in along(n, 0.05, 0.95) {
                let (x, y) = place(t, 0.3);
                c.tree(x, y, 0.055);
            }
            let num = NUMBERS[n];
            let flow = if vertical { "from top to bottom" } else { "from left to right" };
            (
                n,
                vec![
                    format!("a blue river flows {flow} ."),
                    format!("{num} trees are on the {side} of a river ."),
                    format!("a {orient} river with {num} green trees beside it ."),
                    format!("a river crosses the green land {flow} ."),
                    format!("{num} trees grow on the {side} bank of a {orient} river ."),
                ],
            )
        }
        "pond" => {
            let n = rng.random_range(2..=5);
            c.ground(GRASS, 10, &mut rng);
            let spots = [
                (0.5, 0.5, "center"),
                (0.3, 0.3, "top left"),
                (0.7, 0.3, "top right"),
                (0.3, 0.7, "bottom left"),
                (0.7, 0.7, "bottom right"),
            ];
            let (px, py, where_) = pick(&mut rng, &spots);
            let water = pick(&mut rng, &[BLUE, GREEN]);
            let rgb = if water.name == "green" { [36, 110, 90] } else { WATER };
            c.fill(|x, y| ((x - px) / 0.2).powi(2) + ((y - py) / 0.15).powi(2) <= 1.0, rgb);
            // Trees on a ring around the pond.
            for k in 0..n {
                let a = std::f32::consts::TAU * k as f32 / n as f32 + 0.4;
                let (tx, ty) = (
                    (px + 0.3 * a.cos()).clamp(0.06, 0.94),
                    (py + 0.25 * a.sin()).clamp(0.06, 0.94),
                );
                c.tree(tx, ty, 0.05);
            }
            let (num, col) = (NUMBERS[n], water.name);
            (
                n,
                vec![
                    format!("a {col} pond is in the {where_} of the image ."),
                    format!("{num} trees are around a {col} pond ."),
                    format!("there is a pond in the {where_} surrounded by {num} trees ."),
                    format!("a small {col} pond with {num} trees near it ."),
                    format!("the pond in the {where_} is {col} ."),
                ],
            )
        }
        "airport" => {
            let n = rng.random_range(1..=4);
            c.ground([150, 160, 120], 8, &mut rng);
            let w = 0.14;
            if vertical {
                c.rect(0.5 - w / 2.0, 0.0, 0.5 + w / 2.0, 1.0, ROAD)
            } else {
                c.rect(0.0, 0.5 - w / 2.0, 1.0, 0.5 + w / 2.0, ROAD)
            }
            for t in along(n, 0.05, 0.95) {
                let (x, y) = place(t, 0.25);
                // A plane: fuselage across the runway direction plus wings.
                c.rect(x - 0.015, y - 0.08, x + 0.015, y + 0.08, WHITE.rgb);
                c.rect(x - 0.08, y - 0.015, x + 0.08, y + 0.015, WHITE.rgb);
            }
            let num = NUMBERS[n];
            let planes = if n == 1 { "plane is" } else { "planes are" };
            (
                n,
                vec![
                    format!("{num} white {planes} parked on the {side} of a {orient} runway ."),
                    format!(
                        "an airport with {num} {} and a runway .",
                        if n == 1 { "plane" } else { "planes" }
                    ),
                    format!(
                        "a {orient} gray runway with {num} {} beside it .",
                        if n == 1 { "plane" } else { "planes" }
                    ),
                    format!("{num} {planes} near the runway of an airport ."),
                    format!("the runway is {orient} and the {planes} on its {side} side ."),
                ],
            )
        }
        "storage tanks" => {
            let n = rng.random_range(2..=6);
            let color = pick(&mut rng, &[WHITE, GRAY]);
            c.ground([170, 166, 150], 8, &mut rng);
            for t in along(n, 0.04, 0.96) {
                let (x, y) = if vertical { (0.5, t) } else { (t, 0.5) };
                let r = (0.33 / n as f32).min(0.085);
                c.circle(x + r * 0.35, y + r * 0.35, r, [70, 70, 70]);
                c.circle(x, y, r, color.rgb);
            }
            let (num, col) = (NUMBERS[n], color.name);
            (
                n,
                vec![
                    format!("{num} {col} storage tanks are arranged in a {orient} row ."),
                    format!("there are {num} round {col} tanks in an industrial area ."),
                    format!("{num} storage tanks stand in a line ."),
                    format!("an industrial area with {num} {col} oil tanks ."),
                    format!("a {orient} row of {num} round tanks ."),
                ],
            )
        }
        "forest" => {
            let road = rng.random_bool(0.5);
            c.ground([48, 96, 44], 14, &mut rng);
            let grid = 9;
            for gy in 0..grid {
                for gx in 0..grid {
                    let jx = (rng.random::<f32>() - 0.5) * 0.05;
                    let jy = (rng.random::<f32>() - 0.5) * 0.05;
                    c.tree(
                        (gx as f32 + 0.5) / grid as f32 + jx,
                        (gy as f32 + 0.5) / grid as f32 + jy,
                        0.05,
                    );
                }
            }
            if road {
                let w = 0.06;
                if vertical {
                    c.rect(0.5 - w / 2.0, 0.0, 0.5 + w / 2.0, 1.0, [150, 120, 90])
                } else {
                    c.rect(0.0, 0.5 - w / 2.0, 1.0, 0.5 + w / 2.0, [150, 120, 90])
                }
                (
                    0,
                    vec![
                        format!("a dense forest is crossed by a {orient} road ."),
                        "many green trees form a dense forest .".to_string(),
                        format!("a {orient} road passes through the forest ."),
                        "the forest is dark green and dense .".to_string(),
                        format!("a brown {orient} road divides the green forest ."),
                    ],
                )
            } else {
                (
                    0,
                    vec![
                        "many green trees form a dense forest .".to_string(),
                        "a dense forest without roads .".to_string(),
                        "the forest is dark green and dense .".to_string(),
                        "the whole image is covered by green trees .".to_string(),
                        "lots of trees grow close together in a forest .".to_string(),
                    ],
                )
            }
        }
        _ => {
            // beach: sea on one side of a wavy shoreline, sand on the other
            c.ground(SAND, 10, &mut rng);
            let phase = rng.random_range(0.0..std::f32::consts::TAU);
            let shore = move |t: f32| 0.5 + 0.04 * (t * 9.0 + phase).sin();
            let sea_first = first_side;
            c.fill(
                |x, y| {
                    let (along_, across) = if vertical { (y, x) } else { (x, y) };
                    (across < shore(along_)) == sea_first
                },
                WATER,
            );
            c.fill(
                |x, y| {
                    let (along_, across) = if vertical { (y, x) } else { (x, y) };
                    (across - shore(along_)).abs() < 0.015
                },
                [240, 244, 246],
            );
            let other = match side {
                "left" => "right",
                "right" => "left",
                "top" => "bottom",
                _ => "top",
            };
            (
                0,
                vec![
                    format!("the blue sea is on the {side} of a yellow beach ."),
                    format!("a yellow beach lies on the {other} and the sea on the {side} ."),
                    "white waves reach the sandy beach .".to_string(),
                    format!("a beach with the sea on its {side} side ."),
                    "the sea meets a yellow beach with white waves .".to_string(),
                ],
            )
        }
    };
    (c.img, Scene { class, count, captions })
}

/// Split of scene `index`: 80 % train, 10 % val, 10 % test, interleaved so every class is in every split.
pub fn split_of(index: usize) -> &'static str {
    match index % 10 {
        8 => "val",
        9 => "test",
        _ => "train",
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SynthSummary {
    pub images: usize,
    pub size: u32,
    pub seed: u64,
    pub annotation: std::path::PathBuf,
}

/// Writes `n` scenes to `out/images/synth_NNNNN.png` and `out/dataset_synth.json` (Karpathy format). The JSON
/// is written last, through a temporary file and a rename, so a half-made folder never looks like a dataset.
pub fn generate(out: &Path, n: usize, seed: u64, size: u32) -> Result<SynthSummary, DataError> {
    if size < 16 {
        return Err(DataError::Invalid(format!(
            "synthetic image size {size} is too small (minimum 16)"
        )));
    }
    let images = out.join("images");
    std::fs::create_dir_all(&images).map_err(|e| DataError::io(&images, e))?;
    let scenes: Vec<Scene> = (0..n)
        .into_par_iter()
        .map(|i| {
            let (img, scene) = render(seed, i, size);
            let path = images.join(format!("synth_{i:05}.png"));
            img.save(&path).map_err(|e| DataError::Decode {
                path,
                message: format!("cannot write PNG: {e}"),
            })?;
            Ok(scene)
        })
        .collect::<Result<_, DataError>>()?;
    let mut sentid = 0;
    let entries: Vec<serde_json::Value> = scenes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let sentences: Vec<serde_json::Value> = s
                .captions
                .iter()
                .map(|raw| {
                    sentid += 1;
                    serde_json::json!({
                        "raw": raw,
                        "tokens": raw.split_whitespace().filter(|t| *t != ".").collect::<Vec<_>>(),
                        "imgid": i,
                        "sentid": sentid - 1,
                    })
                })
                .collect();
            serde_json::json!({
                "filename": format!("synth_{i:05}.png"),
                "imgid": i,
                "split": split_of(i),
                "class": s.class,
                "count": s.count,
                "sentences": sentences,
            })
        })
        .collect();
    let doc = serde_json::json!({
        "dataset": "synthetic-aerial",
        "generator": format!("rsicd-data synth (seed {seed}, size {size})"),
        "images": entries,
    });
    let annotation = out.join("dataset_synth.json");
    let tmp = out.join(".dataset_synth.json.tmp");
    let text = serde_json::to_string(&doc).expect("JSON values serialize");
    std::fs::write(&tmp, text).map_err(|e| DataError::io(&tmp, e))?;
    std::fs::rename(&tmp, &annotation).map_err(|e| DataError::io(&annotation, e))?;
    Ok(SynthSummary { images: n, size, seed, annotation })
}
