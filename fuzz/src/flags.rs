//! The migration flags: the flags-file parser (`Flags::from_file_text`, what `FileFlags`
//! reads) and `Flags::from_lookup` (the environment), plus the rollout rule.
//!
//! Input: a mode byte; even: the rest is a flags file (any line that is not blank, a comment
//! or a known `KEY=value` must refuse it, naming the line); odd: `name-index value` pairs for a
//! lookup. Asserts: accepted values are in range (rollout 0–100, timeout 1–60000 ms) and are
//! exactly what the documented grammar gives for the value the file/lookup holds (the last
//! line for a key wins; unset keeps the default); a refusal names a flag whose value is
//! invalid by that grammar; the file parser and the lookup agree; accepted flags written
//! back as a file parse to the same flags; the rollout bucket is below 100, 0% includes
//! nobody, 100% everybody, and raising the percentage never drops a user.

use std::collections::HashMap;
use std::time::Duration;

use imgsvc_lambda::migrate::flags::{FILE_LINE, FLAG_NAMES as NAMES, Flags, RolloutPolicy};

use crate::input::Input;

/// What the documented grammar makes of `value` for flag `name`, or `None` if invalid.
#[derive(Debug, PartialEq)]
enum Parsed {
    Bool(bool),
    Number(u64),
}

fn grammar(name: &str, value: &str) -> Option<Parsed> {
    let value = value.trim();
    let number = || {
        // An optional '+' and ASCII digits, as Rust's integer parsing takes them.
        let digits = value.strip_prefix('+').unwrap_or(value);
        (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then(|| {
            let significant = digits.trim_start_matches('0');
            if significant.len() > 6 {
                u64::MAX
            } else {
                significant.parse::<u64>().unwrap_or(0)
            }
        })
    };
    match name {
        "ROLLOUT_PERCENTAGE" => number().filter(|n| *n <= 100).map(Parsed::Number),
        "IMAGE_SERVICE_TIMEOUT_MS" => number()
            .filter(|n| (1..=60_000).contains(n))
            .map(Parsed::Number),
        "CIRCUIT_BREAKER_FAILURES" => number()
            .filter(|n| (1..=1000).contains(n))
            .map(Parsed::Number),
        "CIRCUIT_BREAKER_COOLDOWN_MS" => number()
            .filter(|n| (100..=600_000).contains(n))
            .map(Parsed::Number),
        _ => match value.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Some(Parsed::Bool(true)),
            "false" | "0" | "no" | "off" | "" => Some(Parsed::Bool(false)),
            _ => None,
        },
    }
}

fn value_of(flags: &Flags, name: &str) -> Parsed {
    match name {
        "ENABLE_DYNAMODB_DUAL_WRITE" => Parsed::Bool(flags.dual_write),
        "USE_IMAGE_SERVICE" => Parsed::Bool(flags.use_image_service),
        "SHADOW_READS" => Parsed::Bool(flags.shadow_reads),
        "ROLLOUT_PERCENTAGE" => Parsed::Number(u64::from(flags.rollout_percentage)),
        "CIRCUIT_BREAKER_FAILURES" => Parsed::Number(u64::from(flags.breaker_failures)),
        "CIRCUIT_BREAKER_COOLDOWN_MS" => {
            Parsed::Number(u64::try_from(flags.breaker_cooldown.as_millis()).unwrap_or(u64::MAX))
        }
        _ => Parsed::Number(u64::try_from(flags.read_timeout.as_millis()).unwrap_or(u64::MAX)),
    }
}

/// A flags file's text without its optional leading byte-order mark.
fn without_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// Whether every line is blank, a `#` comment or `KEY=value` with a known KEY.
fn well_formed(text: &str) -> bool {
    without_bom(text).lines().map(str::trim).all(|line| {
        line.is_empty()
            || line.starts_with('#')
            || line
                .split_once('=')
                .is_some_and(|(key, _)| NAMES.contains(&key.trim()))
    })
}

/// The value a flags file gives `name`: the last `name=value` line that is not a comment.
fn file_value(text: &str, name: &str) -> Option<String> {
    let mut found = None;
    for line in without_bom(text).lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        if let Some((key, value)) = line.split_once('=')
            && key.trim() == name
        {
            found = Some(value.trim().to_owned());
        }
    }
    found
}

fn check_against(
    values: &HashMap<&str, String>,
    outcome: &Result<Flags, imgsvc_lambda::migrate::flags::FlagError>,
) {
    match outcome {
        Ok(flags) => {
            assert!(flags.rollout_percentage <= 100, "{flags:?}");
            assert!(
                (Duration::from_millis(1)..=Duration::from_millis(60_000))
                    .contains(&flags.read_timeout),
                "{flags:?}"
            );
            let defaults = Flags::default();
            for name in NAMES {
                let expected = match values.get(name) {
                    Some(value) => {
                        grammar(name, value).unwrap_or_else(|| panic!("accepted {name}={value:?}"))
                    }
                    None => value_of(&defaults, name),
                };
                assert_eq!(value_of(flags, name), expected, "{name} in {values:?}");
            }
            let text: String = NAMES
                .iter()
                .map(|name| match value_of(flags, name) {
                    Parsed::Bool(b) => format!("{name}={b}\n"),
                    Parsed::Number(n) => format!("{name}={n}\n"),
                })
                .collect();
            assert_eq!(Flags::from_file_text(&text).as_ref(), Ok(flags), "{text}");
        }
        Err(error) => {
            assert!(NAMES.contains(&error.name), "{error}");
            let value = values
                .get(error.name)
                .unwrap_or_else(|| panic!("refused unset {}", error.name));
            assert_eq!(grammar(error.name, value), None, "refused {error}");
        }
    }
}

pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.byte();
    let mut values: HashMap<&str, String> = HashMap::new();
    let outcome = if mode.is_multiple_of(2) {
        let Ok(text) = std::str::from_utf8(input.rest()) else {
            return;
        };
        for name in NAMES {
            if let Some(value) = file_value(text, name) {
                values.insert(name, value);
            }
        }
        let outcome = Flags::from_file_text(text);
        if !well_formed(text) {
            // Any line that is not a known KEY=value refuses the whole file, naming it.
            match outcome {
                Err(error) => assert_eq!(error.name, FILE_LINE, "{error}"),
                Ok(flags) => panic!("accepted a file with a line it does not know: {flags:?}"),
            }
            return;
        }
        let via_lookup = Flags::from_lookup(|name| values.get(name).cloned());
        assert_eq!(
            outcome.as_ref().ok(),
            via_lookup.as_ref().ok(),
            "file vs lookup"
        );
        outcome
    } else {
        loop {
            let index = input.byte();
            let value = input.field();
            if index == 0 && value.is_empty() {
                break;
            }
            let name = NAMES[usize::from(index) % NAMES.len()];
            values.insert(name, String::from_utf8_lossy(value).into_owned());
        }
        Flags::from_lookup(|name| values.get(name).cloned())
    };
    check_against(&values, &outcome);

    if let Ok(flags) = &outcome {
        let user = String::from_utf8_lossy(data);
        let bucket = RolloutPolicy::bucket(&user);
        assert!(bucket < 100);
        assert!(!RolloutPolicy::includes(0, &user));
        assert!(RolloutPolicy::includes(100, &user));
        for percentage in 0..=100u8 {
            assert_eq!(
                RolloutPolicy::includes(percentage, &user),
                bucket < percentage
            );
        }
        assert_eq!(
            flags.reads_from_image_service(&user),
            flags.use_image_service && bucket < flags.rollout_percentage
        );
    }
}
