//! The C allocator, set up for image work (glibc only): one malloc arena, and image-sized
//! buffers kept in it.
//!
//! glibc's malloc gives threads arenas of their own (up to eight per core) and keeps what an
//! arena frees for that arena's later allocations. An upload's buffers are tens of MiB and
//! are made on whichever thread runs it (tokio's blocking pool, the parallel encode's second
//! thread), so with glibc's defaults every arena ends up holding freed images of its own.
//! One upload at a time over the photo corpus, `budget` peaked at 434–462 MiB with the
//! defaults and at 181–183 MiB with these settings
//! (docs/measurements/2026-12-04-malloc-arenas.md).
//!
//! - [`MALLOC_ARENAS`]: one arena. The pipeline makes few, large allocations, so threads
//!   sharing it do not wait on each other measurably.
//! - [`MMAP_THRESHOLD_BYTES`]: buffers under 32 MiB (glibc's own ceiling for this
//!   threshold) come from the arena from the first upload on, not from fresh mappings the
//!   kernel must zero page by page on every upload.
//! - [`TRIM_THRESHOLD_BYTES`]: up to 256 MiB of freed arena is kept for the next upload
//!   rather than handed back and faulted in again.
//!
//! With one arena alone, `compare` (uploads on its main thread) read 204 MiB; with all three,
//! 163–170 MiB, at the same or better times.
//!
//! An operator's own setting for any of the three wins, in glibc's environment variables
//! (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`) or in
//! `GLIBC_TUNABLES` (`glibc.malloc.arena_max`, `…mmap_threshold`, `…trim_threshold`): then
//! glibc reads it and that one is left alone here (docs/configuration.md).

use std::ffi::{OsStr, OsString};

/// Malloc arenas for the whole process.
pub const MALLOC_ARENAS: i32 = 1;
/// Allocations at or above this size get a mapping of their own (glibc: `M_MMAP_THRESHOLD`).
pub const MMAP_THRESHOLD_BYTES: i32 = 32 << 20;
/// Free memory at the top of the arena beyond this is returned (glibc: `M_TRIM_THRESHOLD`).
pub const TRIM_THRESHOLD_BYTES: i32 = 256 << 20;

/// One malloc parameter this module sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MallocSetting {
    ArenaMax,
    MmapThreshold,
    TrimThreshold,
}

impl MallocSetting {
    const ALL: [MallocSetting; 3] = [
        MallocSetting::ArenaMax,
        MallocSetting::MmapThreshold,
        MallocSetting::TrimThreshold,
    ];

    /// The value the service uses.
    fn value(self) -> i32 {
        match self {
            MallocSetting::ArenaMax => MALLOC_ARENAS,
            MallocSetting::MmapThreshold => MMAP_THRESHOLD_BYTES,
            MallocSetting::TrimThreshold => TRIM_THRESHOLD_BYTES,
        }
    }

    /// glibc's environment variable for it.
    fn variable(self) -> &'static str {
        match self {
            MallocSetting::ArenaMax => "MALLOC_ARENA_MAX",
            MallocSetting::MmapThreshold => "MALLOC_MMAP_THRESHOLD_",
            MallocSetting::TrimThreshold => "MALLOC_TRIM_THRESHOLD_",
        }
    }

    /// Its name in `GLIBC_TUNABLES`.
    fn tunable(self) -> &'static str {
        match self {
            MallocSetting::ArenaMax => "glibc.malloc.arena_max",
            MallocSetting::MmapThreshold => "glibc.malloc.mmap_threshold",
            MallocSetting::TrimThreshold => "glibc.malloc.trim_threshold",
        }
    }
}

/// The settings to apply, given the environment (`lookup` reads one variable): each one whose
/// glibc variable or tunable the environment does not already set.
fn settings_to_apply(lookup: impl Fn(&str) -> Option<OsString>) -> Vec<MallocSetting> {
    let tunables = lookup("GLIBC_TUNABLES");
    let tunables = tunables.as_deref().map(OsStr::to_string_lossy);
    MallocSetting::ALL
        .into_iter()
        .filter(|setting| lookup(setting.variable()).is_none())
        .filter(|setting| {
            !tunables
                .as_deref()
                .is_some_and(|tunables| tunables.contains(setting.tunable()))
        })
        .collect()
}

/// Apply the settings the environment leaves to us. Call first thing in `main`, before any
/// thread exists (arenas made before stay). Elsewhere than glibc this does nothing.
pub fn configure_malloc() {
    for setting in settings_to_apply(|name| std::env::var_os(name)) {
        set(setting);
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // one libc call that sets a malloc parameter; nothing is passed by pointer.
fn set(setting: MallocSetting) -> bool {
    let parameter = match setting {
        MallocSetting::ArenaMax => libc::M_ARENA_MAX,
        MallocSetting::MmapThreshold => libc::M_MMAP_THRESHOLD,
        MallocSetting::TrimThreshold => libc::M_TRIM_THRESHOLD,
    };
    // SAFETY: mallopt takes two integers and only changes malloc's settings; every value
    // here is within what glibc accepts for its parameter. It returns 1 on success.
    unsafe { libc::mallopt(parameter, setting.value()) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set(_setting: MallocSetting) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn environment(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| OsString::from(value))
        }
    }

    #[test]
    fn every_setting_unless_the_environment_names_it() {
        assert_eq!(
            settings_to_apply(environment(&[])),
            MallocSetting::ALL.to_vec()
        );
        assert_eq!(
            settings_to_apply(environment(&[(
                "GLIBC_TUNABLES",
                "glibc.malloc.tcache_count=0"
            )])),
            MallocSetting::ALL.to_vec()
        );
        assert_eq!(
            settings_to_apply(environment(&[("MALLOC_ARENA_MAX", "4")])),
            vec![MallocSetting::MmapThreshold, MallocSetting::TrimThreshold]
        );
        assert_eq!(
            settings_to_apply(environment(&[
                ("MALLOC_TRIM_THRESHOLD_", "0"),
                (
                    "GLIBC_TUNABLES",
                    "glibc.malloc.check=0:glibc.malloc.mmap_threshold=65536"
                ),
            ])),
            vec![MallocSetting::ArenaMax]
        );
    }

    #[test]
    fn values_are_within_glibcs_bounds() {
        assert_eq!(MallocSetting::ArenaMax.value(), 1);
        // glibc refuses an mmap threshold above HEAP_MAX_SIZE / 2 (32 MiB on 64-bit).
        assert_eq!(MallocSetting::MmapThreshold.value(), 32 * 1024 * 1024);
        assert!(MallocSetting::TrimThreshold.value() > MallocSetting::MmapThreshold.value());
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_takes_every_setting() {
        for setting in MallocSetting::ALL {
            assert!(set(setting), "{setting:?}");
        }
    }
}
