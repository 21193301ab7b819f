#![no_main]
// One decoder path through the whole pipeline: the check is imgsvc_fuzz::process (replayed
// on stable by fuzz/tests/replay.rs); this target differs by its seeds (fuzz/seeds/jxl/).
libfuzzer_sys::fuzz_target!(|data: &[u8]| imgsvc_fuzz::process::check(data));
