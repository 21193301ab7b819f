//! `cfg(avif)`: where the AV1 decoder (rav1d) builds. It needs `libc` types that
//! `wasm32-unknown-unknown` lacks, so the browser build decodes no AVIF.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(avif)");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if !(arch == "wasm32" && os == "unknown") {
        println!("cargo::rustc-cfg=avif");
    }
}
