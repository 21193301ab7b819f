//! The fuzz targets' checks, as plain functions.
//!
//! One module per target, each with `check(data: &[u8])`: it feeds the bytes to the code under
//! test and panics when the outcome breaks an invariant (a panic in the code under test is a
//! failure too). The libFuzzer binaries in `fuzz/libfuzzer` are one-line calls into these;
//! `tests/replay.rs` runs the committed regression inputs and seeds through the very same
//! functions on stable, so every crash found once stays tested.
//!
//! Every target asserts more than "no panic": a typed error with an expected status/code, or
//! an output that satisfies the documented contract (see each module).

pub mod auth;
pub mod cursor;
pub mod flags;
mod input;
pub mod multipart;
pub mod patch;
pub mod probe;
pub mod process;

/// Every target, by the name of its libFuzzer binary and its directory under `regressions/`
/// and `seeds/`. `avif`, `heic`, `jxl` and `tiff` run `process`'s check from their format's
/// seeds (made by `scripts/format-fixtures.py --fuzz-seeds fuzz/seeds`).
pub const TARGETS: &[&str] = &[
    "probe",
    "process",
    "multipart",
    "cursor",
    "auth",
    "patch",
    "flags",
    "avif",
    "heic",
    "jxl",
    "tiff",
];

/// Run `target`'s check on `data`; `false` for an unknown target name.
pub fn check(target: &str, data: &[u8]) -> bool {
    let check: fn(&[u8]) = match target {
        "probe" => probe::check,
        "process" => process::check,
        "multipart" => multipart::check,
        "cursor" => cursor::check,
        "auth" => auth::check,
        "patch" => patch::check,
        "flags" => flags::check,
        // One target per decoder added after the first four formats: the same contract
        // as `process`, fuzzed from that format's seeds.
        "avif" | "heic" | "jxl" | "tiff" => process::check,
        _ => return false,
    };
    check(data);
    true
}

/// Whether `text` is what the record validators accept as a title.
pub(crate) fn valid_title(title: &str) -> bool {
    title == title.trim()
        && !title.is_empty()
        && !title.chars().any(char::is_control)
        && title.chars().count() <= imgsvc_lambda::record::MAX_TITLE_CHARS
}

/// Whether `tags` is what the record validators return: trimmed, non-empty, no control
/// characters, at most 50 characters each, no duplicates, at most 20.
pub(crate) fn valid_tags(tags: &[String]) -> bool {
    use imgsvc_lambda::record::{MAX_TAG_CHARS, MAX_TAGS};
    tags.len() <= MAX_TAGS
        && tags.iter().enumerate().all(|(i, tag)| {
            tag == tag.trim()
                && !tag.is_empty()
                && !tag.chars().any(char::is_control)
                && tag.chars().count() <= MAX_TAG_CHARS
                && !tags[..i].contains(tag)
        })
}

/// Whether `id` can be used in a key prefix: 1–128 of `[A-Za-z0-9._@|:-]`, not `.`/`..`.
pub(crate) fn valid_id(id: &str) -> bool {
    (1..=imgsvc_lambda::record::MAX_ID_CHARS).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._@|:-".contains(c))
        && id != "."
        && id != ".."
}
