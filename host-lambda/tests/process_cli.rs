//! `imgsvc process` end to end: real binary, real files, JSON lines and exit statuses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use imgsvc_testkit::photos::photo_path as corpus;

fn imgsvc(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_imgsvc"))
        .args(args)
        .output()
        .unwrap()
}

fn json_lines(output: &Output) -> Vec<Value> {
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn os(p: &Path) -> &std::ffi::OsStr {
    p.as_os_str()
}

#[test]
fn processes_photos_and_writes_both_outputs() {
    let out = tempfile::tempdir().unwrap();
    let photo = corpus("exif6_lomiri16_Dragonfly.jpg");
    let output = imgsvc(&[
        "process".as_ref(),
        "--out".as_ref(),
        os(out.path()),
        os(&photo),
    ]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 1);
    let line = &lines[0];
    assert_eq!(line["ok"], true);
    assert_eq!(line["input"], photo.to_str().unwrap());
    assert_eq!(line["source"]["format"], "jpeg");
    assert_eq!(line["source"]["orientation"], 6);
    assert_eq!(line["source"]["width"], 4224);
    assert_eq!(line["display"]["width"], 1536);
    assert_eq!(line["display"]["height"], 2048);
    assert_eq!(line["thumbnail"]["width"], 400);
    assert!(line["ms"].as_f64().unwrap() > 0.0);
    let display = std::fs::read(out.path().join("exif6_lomiri16_Dragonfly.webp")).unwrap();
    let thumbnail = std::fs::read(out.path().join("exif6_lomiri16_Dragonfly.thumb.webp")).unwrap();
    assert_eq!(line["display"]["bytes"], display.len());
    assert_eq!(line["thumbnail"]["bytes"], thumbnail.len());
    assert_eq!(&display[8..12], b"WEBP");
    assert_eq!(&thumbnail[8..12], b"WEBP");
}

#[test]
fn a_refused_input_is_reported_and_the_others_still_processed() {
    let out = tempfile::tempdir().unwrap();
    let fake = out.path().join("fake.jpg");
    std::fs::write(&fake, "<html><body>not a photo</body></html>").unwrap();
    let too_big = corpus("mate_Elephants_5640x3172.jpg");
    let good = corpus("skimage_rocket.jpg");
    let missing = out.path().join("missing.png");
    let output = imgsvc(&[
        "process".as_ref(),
        "--out".as_ref(),
        os(out.path()),
        os(&fake),
        os(&too_big),
        os(&good),
        os(&missing),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let lines = json_lines(&output);
    let codes: Vec<_> = lines
        .iter()
        .map(|l| l["error"]["code"].as_str().unwrap_or("ok").to_owned())
        .collect();
    assert_eq!(
        codes,
        ["unsupported_format", "too_large", "ok", "read_failed"]
    );
    assert!(
        lines[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("html")
    );
    assert_eq!(lines[0]["ok"], false);
    assert!(out.path().join("skimage_rocket.webp").exists());
    assert!(!out.path().join("fake.webp").exists());
}

#[test]
fn usage_errors_exit_with_two() {
    assert_eq!(imgsvc(&["process".as_ref()]).status.code(), Some(2));
    assert_eq!(imgsvc(&["no-such-command".as_ref()]).status.code(), Some(2));
}

#[test]
fn two_inputs_with_the_same_stem_do_not_overwrite_each_other() {
    let out = tempfile::tempdir().unwrap();
    let dir_a = out.path().join("a");
    std::fs::create_dir(&dir_a).unwrap();
    let copy = dir_a.join("skimage_rocket.jpg");
    std::fs::copy(corpus("skimage_rocket.jpg"), &copy).unwrap();
    let output = imgsvc(&[
        "process".as_ref(),
        "--out".as_ref(),
        os(&out.path().join("o")),
        os(&corpus("skimage_rocket.jpg")),
        os(&copy),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let lines = json_lines(&output);
    assert_eq!(lines[0]["ok"], true);
    assert_eq!(lines[1]["error"]["code"], "output_collision");
}

#[test]
fn a_non_utf8_file_name_still_gets_its_json_line() {
    use std::os::unix::ffi::OsStrExt;
    let out = tempfile::tempdir().unwrap();
    let name = std::ffi::OsStr::from_bytes(b"caf\xE9.jpg");
    let path = out.path().join(name);
    std::fs::copy(corpus("skimage_rocket.jpg"), &path).unwrap();
    let output = imgsvc(&[
        "process".as_ref(),
        "--out".as_ref(),
        os(out.path()),
        os(&path),
    ]);
    assert_eq!(output.status.code(), Some(0));
    let lines = json_lines(&output);
    assert_eq!(lines[0]["ok"], true);
    assert!(
        lines[0]["input"]
            .as_str()
            .unwrap()
            .ends_with("caf\u{FFFD}.jpg")
    );
}
