//! Our writer's files read back by our reader: round trips of many scalars, unicode tags and multi-line text;
//! damaged and cut files reported with their byte offsets; TensorBoard's file naming; restarts.
mod common;

use common::{same, Rng, Scratch};
use std::path::Path;
use tensorboard::{
    event_files, read_events, scalars, texts, Data, Error, Event, EventWriter, SessionStatus, What,
    FILE_VERSION,
};

/// Tags mixing ASCII separators, accents, CJK, emoji, combining marks and a zero-width joiner.
const TAG_PIECES: &[&str] = &[
    "train",
    "loss",
    "val/CIDEr",
    "métrique",
    "損失",
    "📉",
    "e\u{301}",
    "a\u{200d}b",
    " ",
    "/",
    "BLEU-4",
    "ß",
];

fn random_tag(rng: &mut Rng) -> String {
    (0..1 + rng.below(4)).map(|_| *rng.pick(TAG_PIECES)).collect()
}

/// Any f32 bit pattern half of the time (NaNs, infinities, subnormals, -0.0 included), ordinary values otherwise.
fn random_value(rng: &mut Rng) -> f32 {
    if rng.below(2) == 0 {
        f32::from_bits(rng.next_u64() as u32)
    } else {
        (rng.below(1 << 20) as f32 - 524_288.0) / 1024.0
    }
}

fn random_text(rng: &mut Rng) -> String {
    let lines: Vec<String> = (0..rng.below(5)).map(|_| random_tag(rng)).collect();
    let mut text = lines.join(if rng.below(2) == 0 { "\n" } else { "\r\n" });
    if rng.below(3) == 0 {
        text.push_str("\n\n| a | b |\n|---|---|\n| **1** | `x` |\n");
    }
    text
}

fn summary_values(event: &Event) -> &[tensorboard::Value] {
    match &event.what {
        What::Summary(values) => values,
        other => panic!("expected a summary, found {other:?}"),
    }
}

#[test]
fn many_scalars_round_trip() {
    let scratch = Scratch::new("many-scalars");
    let mut rng = Rng::new(1);
    let mut writer = EventWriter::create(scratch.path()).unwrap();
    let mut written = Vec::new();
    for i in 0..3000 {
        let step = match rng.below(10) {
            0 => rng.next_u64() as i64, // any int64, negative ones included (ten-byte varints)
            _ => i,
        };
        let (tag, value, wall_time) =
            (random_tag(&mut rng), random_value(&mut rng), 1.6e9 + i as f64 * 0.25);
        writer.add_scalar(&tag, step, value, wall_time).unwrap();
        written.push((tag, step, value, wall_time));
    }
    let events = read_events(writer.path()).unwrap();
    assert_eq!(events.len(), written.len() + 2, "file version + START + one event per scalar");
    for (event, (tag, step, value, wall_time)) in events[2..].iter().zip(&written) {
        assert_eq!((event.step, event.wall_time), (*step, *wall_time));
        let values = summary_values(event);
        assert_eq!(values.len(), 1);
        assert_eq!(&values[0].tag, tag);
        match values[0].data {
            Data::Scalar(x) => {
                assert!(same(x, f64::from(*value)), "{tag}: wrote {value:e}, read {x:e}")
            }
            ref other => panic!("{tag}: {other:?}"),
        }
    }
}

#[test]
fn grouped_scalars_and_texts_round_trip() {
    let scratch = Scratch::new("grouped");
    let mut rng = Rng::new(2);
    let mut writer = EventWriter::create(scratch.path()).unwrap();
    let mut expected_texts = Vec::new();
    for step in 1..=200 {
        let group: Vec<(String, f64)> = (0..1 + rng.below(6))
            .map(|k| (format!("{}#{k}", random_tag(&mut rng)), f64::from(step as f32) / 8.0))
            .collect();
        let refs: Vec<(&str, f64)> = group.iter().map(|(t, x)| (t.as_str(), *x)).collect();
        writer.add_scalars(step, &refs, 1.7e9).unwrap();
        let (tag, text) = (random_tag(&mut rng), random_text(&mut rng));
        writer.add_text(&tag, step, &text, 1.7e9).unwrap();
        expected_texts.push((step, tag, text));
        let events = read_events(writer.path()).unwrap();
        let n = events.len();
        let read: Vec<(String, f64)> = summary_values(&events[n - 2])
            .iter()
            .map(|v| match v.data {
                Data::Scalar(x) => (v.tag.clone(), x),
                ref other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(read, group, "one event holds the whole group");
        let text_value = &summary_values(&events[n - 1])[0];
        assert_eq!(text_value.plugin_name, "text");
        assert_eq!(text_value.data, Data::Text(expected_texts.last().unwrap().2.clone()));
    }
    // texts() per tag, in step order; steps only grow here, so nothing is replaced.
    let by_tag = texts(scratch.path()).unwrap();
    let total: usize = by_tag.values().map(Vec::len).sum();
    assert_eq!(total, expected_texts.len());
    for (step, tag, text) in &expected_texts {
        assert!(by_tag[tag].contains(&(*step, text.clone())), "{tag} at {step}");
    }
}

#[test]
fn first_events_are_file_version_and_start() {
    let scratch = Scratch::new("header");
    let writer = EventWriter::create_file(&scratch.path().join("x.tfevents"), 12.5, 0).unwrap();
    let events = read_events(writer.path()).unwrap();
    assert_eq!(
        events,
        [
            Event { wall_time: 12.5, step: 0, what: What::FileVersion(FILE_VERSION.into()) },
            Event { wall_time: 12.5, step: 0, what: What::SessionLog(SessionStatus::Start) },
        ]
    );
}

#[test]
fn file_names_follow_tensorboard() {
    let scratch = Scratch::new("names");
    let before = tensorboard::now() as u64;
    let a = EventWriter::create(&scratch.path().join("tb")).unwrap();
    let b = EventWriter::create(&scratch.path().join("tb")).unwrap();
    for (writer, other) in [(&a, &b), (&b, &a)] {
        let name = writer.path().file_name().unwrap().to_str().unwrap();
        let parts: Vec<&str> = name.split('.').collect();
        assert_eq!(&parts[..3], ["events", "out", "tfevents"], "{name}");
        assert_eq!(parts[3].len(), 10, "ten-digit Unix seconds: {name}");
        assert!(parts[3].parse::<u64>().unwrap() >= before);
        assert_eq!(parts[parts.len() - 2], std::process::id().to_string(), "{name}");
        assert_ne!(writer.path(), other.path(), "two writers in one second get different files");
    }
    assert_eq!(event_files(&scratch.path().join("tb")).unwrap().len(), 2);
    // Never overwrites: create_file on an existing path fails.
    assert!(matches!(EventWriter::create_file(a.path(), 0.0, 0), Err(Error::Io { .. })));
}

/// Writes a small file and returns its bytes.
fn small_file(dir: &Path) -> (std::path::PathBuf, Vec<u8>) {
    let path = dir.join("events.out.tfevents.small");
    let mut w = EventWriter::create_file(&path, 1.0, 0).unwrap();
    w.add_scalar("loss", 1, 0.5f32, 2.0).unwrap();
    w.add_text("captions", 1, "a plane\nat the airport", 3.0).unwrap();
    w.flush().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    (path, bytes)
}

#[test]
fn every_corrupt_byte_is_reported_with_its_offset() {
    let scratch = Scratch::new("corrupt");
    let (path, bytes) = small_file(scratch.path());
    assert!(read_events(&path).is_ok());
    for at in 0..bytes.len() {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x10;
        std::fs::write(&path, &damaged).unwrap();
        match read_events(&path) {
            // The byte is in the covered range, or is one of the 4 CRC bytes right after it.
            Err(Error::Crc { path: p, record_offset, checked, .. }) => {
                assert_eq!(p, path);
                let at = at as u64;
                assert!(
                    checked.contains(&at) || (checked.end..checked.end + 4).contains(&at),
                    "{at}: {checked:?}"
                );
                assert!(record_offset <= at);
            }
            // A damaged length can claim more bytes than the file has; its CRC is checked first, so this cannot be.
            other => panic!("byte {at}: expected a CRC error, got {other:?}"),
        }
    }
}

#[test]
fn crc_error_message_names_file_and_offsets() {
    let scratch = Scratch::new("message");
    let (path, mut bytes) = small_file(scratch.path());
    let last = bytes.len() - 6; // inside the last record's data
    bytes[last] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let message = read_events(&path).unwrap_err().to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("data CRC mismatch"), "{message}");
    assert!(message.contains(&format!("..{}", bytes.len() - 4)), "{message}");
}

#[test]
fn cut_file_is_truncated_error() {
    let scratch = Scratch::new("cut");
    let (path, bytes) = small_file(scratch.path());
    let records = read_events(&path).unwrap().len();
    for cut in 1..bytes.len() {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        match read_events(&path) {
            Err(Error::Truncated { record_offset, available, .. }) => {
                assert_eq!(record_offset + available, cut as u64);
            }
            Ok(events) => assert!(events.len() < records, "cut at {cut} between records"),
            Err(other) => panic!("cut at {cut}: {other}"),
        }
    }
    std::fs::write(&path, b"").unwrap();
    assert_eq!(read_events(&path).unwrap(), []);
}

#[test]
fn resumed_run_replaces_later_steps() {
    let scratch = Scratch::new("resume");
    let dir = scratch.path();
    let mut first =
        EventWriter::create_file(&dir.join("events.out.tfevents.0000000001.h.1.0"), 1.0, 0)
            .unwrap();
    for step in 1..=6 {
        first.add_scalars(step, &[("loss", step as f64), ("lr", 0.5)], 1.0).unwrap();
    }
    first.add_scalar("val/CIDEr", 6, 0.25, 1.0).unwrap();
    first.add_text("captions", 3, "three", 1.0).unwrap();
    first.add_text("captions", 6, "six", 1.0).unwrap();
    // Killed after step 6, resumed from the step-4 checkpoint: the new file sorts after the old one.
    let mut second =
        EventWriter::create_file(&dir.join("events.out.tfevents.0000000002.h.1.0"), 2.0, 5)
            .unwrap();
    for step in 5..=7 {
        second.add_scalar("loss", step, 10.0 * step as f64, 2.0).unwrap();
    }
    let s = scalars(dir).unwrap();
    assert_eq!(
        s["loss"],
        [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (5, 50.0), (6, 60.0), (7, 70.0)]
    );
    assert_eq!(
        s["lr"],
        [(1, 0.5), (2, 0.5), (3, 0.5), (4, 0.5)],
        "START hides every tag's later points"
    );
    assert!(!s.contains_key("val/CIDEr"), "a tag with only hidden points disappears");
    assert_eq!(texts(dir).unwrap()["captions"], [(3, "three".to_owned())]);
}

#[test]
fn repeated_step_in_one_file_keeps_the_last() {
    let scratch = Scratch::new("repeat");
    let mut w = EventWriter::create(scratch.path()).unwrap();
    for (step, x) in [(1, 1.0), (2, 2.0), (3, 3.0), (2, 20.0)] {
        w.add_scalar("x", step, x, 0.0).unwrap();
    }
    assert_eq!(
        scalars(scratch.path()).unwrap()["x"],
        [(1, 1.0), (2, 20.0)],
        "the data server's preemption"
    );
}

#[test]
fn unicode_tags_survive_in_scalars() {
    let scratch = Scratch::new("unicode");
    let mut w = EventWriter::create(scratch.path()).unwrap();
    let tags = ["métriques/Größe", "損失/訓練", "📉 loss", "e\u{301}", ""];
    for (i, tag) in tags.iter().enumerate() {
        w.add_scalar(tag, i as i64, i as f32, 0.0).unwrap();
    }
    let s = scalars(scratch.path()).unwrap();
    for (i, tag) in tags.iter().enumerate() {
        assert_eq!(s[*tag], [(i as i64, i as f64)], "{tag:?}");
    }
}
