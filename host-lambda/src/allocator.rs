//! The C allocator, set up for image work: one malloc arena (glibc only).
//!
//! glibc's malloc gives threads arenas of their own (up to eight per core) and keeps what an
//! arena frees for that arena's later allocations. An upload's buffers are tens of MiB and
//! are made on whichever thread runs it (tokio's blocking pool, the parallel encode's second
//! thread), so with glibc's defaults every arena ends up holding freed images of its own.
//! One upload at a time over the photo corpus, `budget` peaked at 434–462 MiB with the
//! defaults and at 179–180 MiB with one arena (docs/measurements/2026-12-04-malloc-arenas.md). The
//! pipeline makes few, large allocations, so sharing one arena costs no measurable time.
//!
//! An operator's own `MALLOC_ARENA_MAX` (or `glibc.malloc.arena_max` in `GLIBC_TUNABLES`)
//! wins: then glibc reads it and nothing is changed here (docs/configuration.md).

use std::ffi::OsStr;

/// The arena count the service uses when the environment names none.
pub const MALLOC_ARENAS: i32 = 1;

/// The arena count to set, given the environment's `MALLOC_ARENA_MAX` and `GLIBC_TUNABLES`:
/// none when either already tells glibc how many.
pub fn arenas_to_set(
    malloc_arena_max: Option<&OsStr>,
    glibc_tunables: Option<&OsStr>,
) -> Option<i32> {
    let tunables_name_it = glibc_tunables.is_some_and(|tunables| {
        tunables
            .to_string_lossy()
            .contains("glibc.malloc.arena_max")
    });
    if malloc_arena_max.is_some() || tunables_name_it {
        None
    } else {
        Some(MALLOC_ARENAS)
    }
}

/// Limit malloc to [`MALLOC_ARENAS`] unless the environment says otherwise. Call first thing
/// in `main`, before any thread exists (arenas made before stay). Returns the count set, if
/// one was.
pub fn limit_malloc_arenas() -> Option<i32> {
    let arenas = arenas_to_set(
        std::env::var_os("MALLOC_ARENA_MAX").as_deref(),
        std::env::var_os("GLIBC_TUNABLES").as_deref(),
    )?;
    set_arena_max(arenas).then_some(arenas)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // one libc call that sets a malloc parameter; nothing is passed by pointer.
fn set_arena_max(arenas: i32) -> bool {
    // SAFETY: mallopt takes two integers and only changes malloc's settings; M_ARENA_MAX
    // accepts any positive count. It returns 1 on success.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_arena_max(_arenas: i32) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_arena_unless_the_environment_names_a_count() {
        assert_eq!(arenas_to_set(None, None), Some(1));
        assert_eq!(
            arenas_to_set(None, Some(OsStr::new("glibc.malloc.tcache_count=0"))),
            Some(1)
        );
        assert_eq!(arenas_to_set(Some(OsStr::new("4")), None), None);
        assert_eq!(
            arenas_to_set(
                None,
                Some(OsStr::new("glibc.malloc.check=0:glibc.malloc.arena_max=8"))
            ),
            None
        );
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_takes_the_setting() {
        assert!(set_arena_max(MALLOC_ARENAS));
    }
}
