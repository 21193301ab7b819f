//! `cfg(extra_codecs)`: where the AVIF, HEIC, JPEG XL and TIFF decoders are built in.
//! Everywhere but `wasm32-unknown-unknown`, the browser package's base module: the browser
//! must not pay for codecs most pages never use (the package loads its codecs module, the
//! `wasm32-wasip1` build, on first use), and rav1d needs `libc` types that target lacks.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(extra_codecs)");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if !(arch == "wasm32" && os == "unknown") {
        println!("cargo::rustc-cfg=extra_codecs");
    }
}
