//! The wasip1 guest of the wasmtime sandbox and its wire format.
//!
//! The guest binary (`src/main.rs`, built for `wasm32-wasip1`) reads one [`wire::Request`]
//! from stdin, runs [`imgsvc_core::process`] and writes one response to stdout. The host
//! side (`imgsvc-sandbox`) uses [`wire::Request::encode`] and [`wire::decode_response`]; the
//! format is private to the pair, versioned by its magic, and never stored.

pub mod wire;
