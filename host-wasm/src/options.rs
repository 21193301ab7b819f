//! `options` from JavaScript: limits that may only tighten `Policy::default()`.

use imgsvc_core::Policy;

/// The option names, as JavaScript spells them, in `Policy` field order.
pub const NAMES: [&str; 5] = [
    "maxInputBytes",
    "maxSide",
    "maxPixels",
    "maxFrames",
    "maxAllocBytes",
];

/// An option that is not a limit, or not a non-negative integer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OptionsError {
    #[error(
        "unknown option {0:?} (known: maxInputBytes, maxSide, maxPixels, maxFrames, maxAllocBytes)"
    )]
    Unknown(String),
    #[error("option {name} must be a non-negative integer, not {value}")]
    NotACount { name: String, value: String },
}

impl OptionsError {
    /// The error code JavaScript sees (the package's own; the core's codes are separate).
    pub fn code(&self) -> &'static str {
        "invalid_options"
    }
}

/// One option as read from JavaScript: a number, or something else (described for errors).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    Other(String),
}

/// `Policy::default()` tightened by the given limits. `undefined` options are left out by
/// the caller; larger-than-default values change nothing (limits never loosen).
pub fn policy_from(options: &[(String, Value)]) -> Result<Policy, OptionsError> {
    let mut requested = Policy::default();
    for (name, value) in options {
        let count = match value {
            Value::Number(n) if n.is_finite() && *n >= 0.0 && n.fract() == 0.0 => *n,
            Value::Number(n) => {
                return Err(OptionsError::NotACount {
                    name: name.clone(),
                    value: n.to_string(),
                });
            }
            Value::Other(description) => {
                return Err(OptionsError::NotACount {
                    name: name.clone(),
                    value: description.clone(),
                });
            }
        };
        // `as` saturates: anything beyond the type's range is beyond the default anyway.
        let (as_u64, as_u32) = (count as u64, count as u32);
        match name.as_str() {
            "maxInputBytes" => requested.max_input_bytes = as_u64,
            "maxSide" => requested.max_side = as_u32,
            "maxPixels" => requested.max_pixels = as_u64,
            "maxFrames" => requested.max_frames = as_u32,
            "maxAllocBytes" => requested.max_alloc_bytes = as_u64,
            other => return Err(OptionsError::Unknown(other.to_owned())),
        }
    }
    Ok(Policy::default().tightened_by(requested))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opt(name: &str, n: f64) -> (String, Value) {
        (name.to_owned(), Value::Number(n))
    }

    #[test]
    fn no_options_is_the_default_policy() {
        assert_eq!(policy_from(&[]), Ok(Policy::default()));
    }

    #[test]
    fn options_tighten() {
        let policy = policy_from(&[opt("maxSide", 1000.0), opt("maxInputBytes", 5.0)]).unwrap();
        assert_eq!(policy.max_side, 1000);
        assert_eq!(policy.max_input_bytes, 5);
        assert_eq!(policy.max_pixels, Policy::DEFAULT_MAX_PIXELS);
    }

    #[test]
    fn options_never_loosen() {
        let names = NAMES.map(|n| opt(n, 1e300));
        assert_eq!(policy_from(&names), Ok(Policy::default()));
        let policy = policy_from(&[opt("maxFrames", f64::from(u32::MAX) + 10.0)]).unwrap();
        assert_eq!(policy.max_frames, Policy::DEFAULT_MAX_FRAMES);
    }

    #[test]
    fn bad_options_are_refused() {
        for bad in [-1.0, 1.5, f64::NAN, f64::INFINITY] {
            let err = policy_from(&[opt("maxSide", bad)]).unwrap_err();
            assert_eq!(err.code(), "invalid_options");
        }
        assert!(matches!(
            policy_from(&[opt("maxWidth", 10.0)]),
            Err(OptionsError::Unknown(_))
        ));
        assert!(matches!(
            policy_from(&[("maxSide".into(), Value::Other("a string".into()))]),
            Err(OptionsError::NotACount { .. })
        ));
    }
}
