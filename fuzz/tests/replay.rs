//! Every committed regression input (`fuzz/regressions/<target>/`) and seed
//! (`fuzz/seeds/<target>/`) through its target's check, on stable: the same functions the
//! libFuzzer binaries call. Plus the corpus's small photos through `probe` and `process`.

use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| {
        p.is_file()
            && !p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
    });
    files.sort();
    files
}

/// Runs `target`'s check on every file of `dir`; the names of those that panicked.
fn replay(target: &str, paths: &[PathBuf]) -> Vec<String> {
    let mut failures = Vec::new();
    for path in paths {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let outcome = std::panic::catch_unwind(|| assert!(imgsvc_fuzz::check(target, &data)));
        if outcome.is_err() {
            failures.push(path.display().to_string());
        }
    }
    failures
}

fn here() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_target_has_seeds_and_a_regressions_directory() {
    for target in imgsvc_fuzz::TARGETS {
        assert!(
            !files(&here().join("seeds").join(target)).is_empty(),
            "{target} has no seeds"
        );
        assert!(here().join("regressions").join(target).is_dir(), "{target}");
    }
    assert!(!imgsvc_fuzz::check("no such target", b""));
}

/// `regressions/known-failures.txt`: `target/file  owner  finding` for crashes in code that
/// this repository's fuzzing work does not fix itself (the core has its own owner).
fn known_failures() -> Vec<PathBuf> {
    let list =
        std::fs::read_to_string(here().join("regressions/known-failures.txt")).unwrap_or_default();
    list.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next())
        .map(|name| here().join("regressions").join(name))
        .collect()
}

#[test]
fn regressions_pass() {
    let known = known_failures();
    let mut failures = Vec::new();
    for target in imgsvc_fuzz::TARGETS {
        let mut inputs = files(&here().join("regressions").join(target));
        inputs.retain(|p| !known.contains(p));
        failures.extend(replay(target, &inputs));
    }
    assert!(
        failures.is_empty(),
        "failing regression inputs: {failures:#?}"
    );
}

/// A known failure that passes was fixed: take it off the list, so it guards the fix.
#[test]
fn known_failures_still_fail() {
    for path in known_failures() {
        assert!(path.is_file(), "{} is listed but missing", path.display());
        let target = path
            .parent()
            .and_then(Path::file_name)
            .map(|t| t.to_string_lossy().into_owned())
            .unwrap_or_default();
        assert_eq!(
            replay(&target, std::slice::from_ref(&path)).len(),
            1,
            "{} passes now: remove it from regressions/known-failures.txt",
            path.display()
        );
    }
}

#[test]
fn seeds_pass() {
    let mut failures = Vec::new();
    for target in imgsvc_fuzz::TARGETS {
        failures.extend(replay(target, &files(&here().join("seeds").join(target))));
    }
    assert!(failures.is_empty(), "failing seeds: {failures:#?}");
}

#[test]
fn small_corpus_photos_pass_probe_and_process() {
    let corpus = here().join("../../shared/corpus");
    let small: Vec<PathBuf> = files(&corpus)
        .into_iter()
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e != "tsv" && e != "md" && e != "txt")
        })
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() <= 256 * 1024))
        .collect();
    assert!(!small.is_empty(), "no small photos in {}", corpus.display());
    let mut failures = replay("probe", &small);
    failures.extend(replay("process", &small));
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn process_is_deterministic_on_the_seeds() {
    let policy = imgsvc_fuzz::process::policy();
    for path in files(&here().join("seeds/process")) {
        let data = std::fs::read(&path).unwrap();
        let first = imgsvc_core::process(&data, &policy);
        assert_eq!(
            first,
            imgsvc_core::process(&data, &policy),
            "{}",
            path.display()
        );
        if let Ok(processed) = &first {
            imgsvc_fuzz::process::check_processed(&data, &policy, processed);
        }
    }
}

/// The checks are not vacuous: an input that breaks a contract makes them panic.
#[test]
fn checks_fail_on_a_broken_contract() {
    // A processed result claiming a display larger than the policy allows.
    let seed = std::fs::read(here().join("seeds/process/gradient.png")).unwrap();
    let policy = imgsvc_fuzz::process::policy();
    let mut processed = imgsvc_core::process(&seed, &policy).unwrap();
    processed.display.width += 1;
    let outcome = std::panic::catch_unwind(|| {
        imgsvc_fuzz::process::check_processed(&seed, &policy, &processed);
    });
    assert!(outcome.is_err(), "an enlarged display passed the check");
}
