//! The guest module for tests and benchmarks: one way to get the `.wasm` that
//! [`crate::Sandbox::new`] takes, instead of every harness running cargo its own way. The
//! service itself never builds anything: it is given a module (`IMGSVC_SANDBOX_MODULE`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Why there is no guest module.
#[derive(Debug, thiserror::Error)]
pub enum GuestBuildError {
    #[error("running cargo to build the wasip1 guest: {0}")]
    Spawn(#[source] std::io::Error),
    #[error(
        "building the wasip1 guest failed (is the target installed? \
         `rustup target add wasm32-wasip1`)"
    )]
    Failed,
}

/// The guest module's path: `IMGSVC_SANDBOX_GUEST` when set (a prebuilt `.wasm`), else the
/// debug build of `imgsvc-sandbox-guest` for `wasm32-wasip1`, which this makes with cargo in
/// `target_dir` — the caller's own target dir, so the guest's dependencies are built once
/// there and shared with any other wasip1 build.
pub fn guest_module_path(target_dir: &Path) -> Result<PathBuf, GuestBuildError> {
    if let Some(path) = std::env::var_os("IMGSVC_SANDBOX_GUEST") {
        return Ok(PathBuf::from(path));
    }
    let workspace = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace)
        .args(["build", "--locked", "-p", "imgsvc-sandbox-guest"])
        .args(["--target", "wasm32-wasip1", "--target-dir"])
        .arg(target_dir)
        // A caller's flags for its own target (e.g. a test's) must not reach the guest's.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .map_err(GuestBuildError::Spawn)?;
    if !status.success() {
        return Err(GuestBuildError::Failed);
    }
    Ok(target_dir.join("wasm32-wasip1/debug/imgsvc-sandbox-guest.wasm"))
}
