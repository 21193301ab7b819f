#![no_main]
// The check lives in imgsvc_fuzz::patch (replayed on stable by fuzz/tests/replay.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| imgsvc_fuzz::patch::check(data));
