//! `cfg(modern_codecs)`: where the AVIF, HEIC and JPEG XL decoders are built in. Everywhere
//! but `wasm32-unknown-unknown`, the browser package's base module: rav1d needs `libc`
//! types that target lacks, and the browser must not pay for codecs most pages never use.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(modern_codecs)");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if !(arch == "wasm32" && os == "unknown") {
        println!("cargo::rustc-cfg=modern_codecs");
    }
}
