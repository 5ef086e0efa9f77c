//! The synthetic demo dataset: deterministic, loadable, small vocabulary, and captions that the pixels support
//! (object counts are visible as separate blobs; the class is recoverable by a trivial classifier).
mod common;

use std::collections::{BTreeSet, HashMap};

use rsicd_data::eda::words;
use rsicd_data::synth::{generate, render, CLASSES};
use rsicd_data::{Dataset, Split};

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("rsicd-synth-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = walk(dir)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p.strip_prefix(dir).unwrap().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    v.sort();
    v
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p))
        } else {
            out.push(p)
        }
    }
    out
}

#[test]
fn same_seed_same_bytes_and_loads_as_karpathy() {
    let (a, b, c) = (tmp("a"), tmp("b"), tmp("c"));
    let _cleanup = [&a, &b, &c].map(|d| common::RemoveOnDrop(d.to_path_buf()));
    generate(&a, 40, 7, 32).unwrap();
    generate(&b, 40, 7, 32).unwrap();
    generate(&c, 40, 8, 32).unwrap();
    let (fa, fb, fc) = (files(&a), files(&b), files(&c));
    assert_eq!(fa.len(), 41);
    assert!(fa == fb, "same seed must give byte-identical output");
    assert!(fa != fc, "another seed must give another dataset");

    let ds = Dataset::load(&a, None).unwrap();
    assert_eq!(ds.items.len(), 40);
    assert_eq!(ds.images_available(), 40);
    let by = ds.counts_by_split();
    assert_eq!((by["train"].images, by["val"].images, by["test"].images), (32, 4, 4));
    assert!(ds.items.iter().all(|i| i.captions.len() == 5 && i.class.is_some()));
    let img = ds.items[3].decode_image().unwrap();
    assert_eq!((img.width(), img.height()), (32, 32));
}

#[test]
fn vocabulary_is_modest_and_captions_state_the_count() {
    let mut vocab = BTreeSet::new();
    for i in 0..400 {
        let (_, scene) = render(11, i, 32);
        for cap in &scene.captions {
            vocab.extend(words(cap));
        }
        if scene.count > 0 {
            let n = ["zero", "one", "two", "three", "four", "five", "six"][scene.count];
            let stating =
                scene.captions.iter().filter(|c| words(c).contains(&n.to_string())).count();
            assert!(stating >= 3, "scene {i} ({}) count {n} in {:?}", scene.class, scene.captions);
        }
    }
    assert!((60..=140).contains(&vocab.len()), "vocabulary of {} words: {vocab:?}", vocab.len());
}

/// 4-connected blobs of exactly `color`.
fn blobs(img: &image::RgbImage, color: [u8; 3]) -> usize {
    let (w, h) = img.dimensions();
    let mut seen = vec![false; (w * h) as usize];
    let mut n = 0;
    for start in 0..w * h {
        if seen[start as usize] || img.get_pixel(start % w, start / w).0 != color {
            continue;
        }
        n += 1;
        let mut stack = vec![start];
        seen[start as usize] = true;
        while let Some(p) = stack.pop() {
            let (x, y) = (p % w, p / w);
            let nb = [(x.wrapping_sub(1), y), (x + 1, y), (x, y.wrapping_sub(1)), (x, y + 1)];
            for (nx, ny) in nb {
                if nx < w && ny < h {
                    let q = ny * w + nx;
                    if !seen[q as usize] && img.get_pixel(nx, ny).0 == color {
                        seen[q as usize] = true;
                        stack.push(q);
                    }
                }
            }
        }
    }
    n
}

#[test]
fn counted_objects_are_separate_blobs_in_the_pixels() {
    let colors: HashMap<&str, Vec<[u8; 3]>> = HashMap::from([
        ("residential", vec![[178, 58, 48], [232, 232, 226], [52, 92, 168]]),
        ("storage tanks", vec![[232, 232, 226], [128, 128, 132]]),
        ("airport", vec![[232, 232, 226]]),
    ]);
    let mut checked = 0;
    for i in 0..240 {
        let (img, scene) = render(3, i, 64);
        let Some(cands) = colors.get(scene.class) else { continue };
        let found: usize = cands.iter().map(|&c| blobs(&img, c)).sum();
        assert_eq!(found, scene.count, "scene {i} ({}): {:?}", scene.class, scene.captions[0]);
        checked += 1;
    }
    assert!(checked >= 80);
}

#[test]
fn class_is_recoverable_from_pixels_by_nearest_centroid() {
    // 4x4 mean-pooled RGB of 32 px images; centroids from train, accuracy on val + test.
    let feat = |img: &image::RgbImage| -> Vec<f32> {
        let mut f = vec![0f32; 4 * 4 * 3];
        for (x, y, p) in img.enumerate_pixels() {
            let cell = ((y / 8) * 4 + x / 8) as usize;
            for c in 0..3 {
                f[cell * 3 + c] += f32::from(p.0[c]) / 64.0;
            }
        }
        f
    };
    let mut sums: HashMap<&str, (Vec<f32>, f32)> = HashMap::new();
    let mut held_out = vec![];
    for i in 0..800 {
        let (img, scene) = render(5, i, 32);
        let f = feat(&img);
        if rsicd_data::synth::split_of(i) == "train" {
            let e = sums.entry(scene.class).or_insert((vec![0.0; f.len()], 0.0));
            e.0.iter_mut().zip(&f).for_each(|(a, b)| *a += b);
            e.1 += 1.0;
        } else {
            held_out.push((scene.class, f));
        }
    }
    let centroids: Vec<(&str, Vec<f32>)> =
        sums.into_iter().map(|(k, (s, n))| (k, s.into_iter().map(|v| v / n).collect())).collect();
    let correct = held_out
        .iter()
        .filter(|(class, f)| {
            let best = centroids
                .iter()
                .min_by(|a, b| {
                    let d = |c: &Vec<f32>| {
                        c.iter().zip(f.iter()).map(|(x, y)| (x - y).powi(2)).sum::<f32>()
                    };
                    d(&a.1).total_cmp(&d(&b.1))
                })
                .unwrap();
            best.0 == *class
        })
        .count();
    let acc = correct as f64 / held_out.len() as f64;
    assert!(
        acc > 0.6,
        "nearest-centroid accuracy {acc:.2} (chance {:.2})",
        1.0 / CLASSES.len() as f64
    );
    let _ = Split::Train;
}
