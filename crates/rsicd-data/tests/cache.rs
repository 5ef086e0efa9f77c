//! The pixel cache returns what direct preprocessing returns, persists across opens, keys on file content and
//! settings, and survives a crash mid-append.
mod common;

use std::io::Write;

use rsicd_data::cache::PixelCache;
use rsicd_data::{Dataset, ImagePreprocessor, Item, Resample};

fn dataset(dir: &std::path::Path) -> Dataset {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("images")).unwrap();
    let names = ["rgba_80x60.png", "gray_90x64.png", "small_32x24.jpg", "rgb16_48x40.tif"];
    let mut entries = vec![];
    for n in names {
        std::fs::copy(common::fixtures().join("images").join(n), dir.join("images").join(n))
            .unwrap();
        entries
            .push(format!(r#"{{"filename":"{n}","split":"train","sentences":[{{"raw":"x"}}]}}"#));
    }
    // The same bytes under another name share a record.
    std::fs::copy(common::fixtures().join("images/gray_90x64.png"), dir.join("images/copy.png"))
        .unwrap();
    entries.push(r#"{"filename":"copy.png","split":"train","sentences":[{"raw":"x"}]}"#.into());
    std::fs::write(dir.join("d.json"), format!(r#"{{"images":[{}]}}"#, entries.join(","))).unwrap();
    Dataset::load(&dir.join("d.json"), None).unwrap()
}

#[test]
fn cached_pixels_equal_direct_preprocessing() {
    let dir = std::env::temp_dir().join(format!("rsicd-cache-{}", std::process::id()));
    let _cleanup = common::RemoveOnDrop(dir.clone());
    let ds = dataset(&dir);
    let items: Vec<&Item> = ds.items.iter().collect();
    for (resample, tol) in [(Resample::Bicubic, 0.0), (Resample::BilinearAntialias, 1e-3)] {
        let pre = ImagePreprocessor::new(48, resample);
        let direct: Vec<f32> =
            items.iter().flat_map(|i| pre.load(i.image_path.as_ref().unwrap()).unwrap()).collect();
        let mut cache = PixelCache::open(&dir.join("cache"), pre).unwrap();
        let first = cache.load_batch(&items).unwrap();
        assert_eq!(
            (cache.misses, cache.hits, cache.len()),
            (4, 1, 4),
            "duplicate content is stored once"
        );
        let second = cache.load_batch(&items).unwrap();
        assert_eq!((cache.misses, cache.hits), (4, 6));
        drop(cache);
        let mut reopened = PixelCache::open(&dir.join("cache"), pre).unwrap();
        let third = reopened.load_batch(&items).unwrap();
        assert_eq!((reopened.misses, reopened.len()), (0, 4));
        for got in [&first, &second, &third] {
            let worst = got.iter().zip(&direct).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst <= tol, "{resample:?}: cached differs from direct by {worst}");
        }
    }
}

#[test]
fn changed_content_misses_and_torn_append_is_ignored() {
    let dir = std::env::temp_dir().join(format!("rsicd-cache2-{}", std::process::id()));
    let _cleanup = common::RemoveOnDrop(dir.clone());
    let ds = dataset(&dir);
    let pre = ImagePreprocessor::new(16, Resample::Bicubic);
    let items: Vec<&Item> = ds.items.iter().take(2).collect();
    let mut cache = PixelCache::open(&dir.join("cache"), pre).unwrap();
    cache.load_batch(&items).unwrap();
    drop(cache);
    // A crash after writing an index entry whose record never made it: the entry must be ignored.
    let idx = dir.join("cache/pixels-16-bicubic-v1.idx");
    let mut f = std::fs::OpenOptions::new().append(true).open(&idx).unwrap();
    f.write_all(&[7u8; 32]).unwrap();
    f.write_all(&99u64.to_le_bytes()).unwrap();
    f.write_all(&[1, 2, 3]).unwrap(); // and a torn half entry
    drop(f);
    let mut cache = PixelCache::open(&dir.join("cache"), pre).unwrap();
    assert_eq!(cache.len(), 2);
    // Edit an image: same path, new content, so a miss.
    std::fs::copy(
        common::fixtures().join("images/la_50x50.png"),
        items[0].image_path.as_ref().unwrap(),
    )
    .unwrap();
    let got = cache.load_batch(&items[..1]).unwrap();
    assert_eq!(cache.misses, 1);
    assert_eq!(got, pre.load(items[0].image_path.as_ref().unwrap()).unwrap());
    drop(cache);
    // The torn fragment was dropped on open, so the entry appended since is read back intact.
    let mut cache = PixelCache::open(&dir.join("cache"), pre).unwrap();
    assert_eq!(cache.len(), 3);
    assert_eq!(cache.load_batch(&items[..1]).unwrap(), got);
    assert_eq!(cache.misses, 0);
}
