//! `imgsvc_core::probe`: headers only.
//!
//! Asserts: `Ok` only for a supported format that `sniff` names too, with non-zero sides,
//! an orientation in 1–8 and at least one frame; otherwise a typed refusal (never our own
//! `internal`/`encode_failed`). Run with `-malloc_limit_mb=64`: probing allocates no pixel
//! buffer, so any single allocation above that is a failure too.

use imgsvc_core::ProcessError;

pub fn check(data: &[u8]) {
    match imgsvc_core::probe(data) {
        Ok(probe) => {
            assert!(probe.format.is_supported(), "probe accepted {probe:?}");
            assert_eq!(imgsvc_core::sniff(data), probe.format, "sniff disagrees");
            assert!(probe.width > 0 && probe.height > 0, "empty image {probe:?}");
            assert!(
                (1..=8).contains(&probe.orientation),
                "orientation {probe:?}"
            );
            assert!(probe.frames >= 1, "no frames {probe:?}");
        }
        Err(error) => assert_refusal(data, &error),
    }
}

/// A refusal of the input: one of the input error codes, consistent with the input.
pub(crate) fn assert_refusal(data: &[u8], error: &ProcessError) {
    assert!(
        error.is_input_error(),
        "not an input error: {} ({error})",
        error.code()
    );
    assert!(!error.to_string().is_empty());
    assert_eq!(
        matches!(error, ProcessError::EmptyInput),
        data.is_empty(),
        "empty_input iff empty: {error}"
    );
    if let ProcessError::UnsupportedFormat { detected } = error {
        assert!(!detected.is_supported(), "refused a supported format");
        assert_eq!(imgsvc_core::sniff(data), *detected);
    }
}
