//! The migration flags, read per request from a flag source, and the rollout rule.
//!
//! Flags (the seeds' names): `ENABLE_DYNAMODB_DUAL_WRITE` (bool, default false),
//! `USE_IMAGE_SERVICE` (bool, default false), `ROLLOUT_PERCENTAGE` (0–100, default 0),
//! `SHADOW_READS` (bool, default false), `IMAGE_SERVICE_TIMEOUT_MS` (1–60000, default 5000);
//! and the circuit breaker's `CIRCUIT_BREAKER_FAILURES` (1–1000, default 5) and
//! `CIRCUIT_BREAKER_COOLDOWN_MS` (100–600000, default 30000).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// One consistent set of flag values.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Flags {
    pub dual_write: bool,
    pub use_image_service: bool,
    pub rollout_percentage: u8,
    pub shadow_reads: bool,
    #[serde(serialize_with = "millis")]
    pub read_timeout: Duration,
    /// Image Service calls failing in a row that open the circuit breaker.
    pub breaker_failures: u32,
    /// How long an open breaker skips the Image Service before one probe.
    #[serde(serialize_with = "millis")]
    pub breaker_cooldown: Duration,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u128(d.as_millis())
}

impl Default for Flags {
    fn default() -> Flags {
        Flags {
            dual_write: false,
            use_image_service: false,
            rollout_percentage: 0,
            shadow_reads: false,
            read_timeout: Duration::from_secs(5),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(30),
        }
    }
}

/// Every flag, by the name the environment and the flags file use.
pub const FLAG_NAMES: [&str; 7] = [
    "ENABLE_DYNAMODB_DUAL_WRITE",
    "USE_IMAGE_SERVICE",
    "ROLLOUT_PERCENTAGE",
    "SHADOW_READS",
    "IMAGE_SERVICE_TIMEOUT_MS",
    "CIRCUIT_BREAKER_FAILURES",
    "CIRCUIT_BREAKER_COOLDOWN_MS",
];

/// [`FlagError::name`] of a flags-file line that is not a known `KEY=value`.
pub const FILE_LINE: &str = "line";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid flag {name}={value:?}: {expected}")]
pub struct FlagError {
    pub name: &'static str,
    pub value: String,
    pub expected: &'static str,
}

fn boolean(name: &'static str, value: &str) -> Result<bool, FlagError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        _ => Err(FlagError {
            name,
            value: value.to_owned(),
            expected: "true or false",
        }),
    }
}

impl Flags {
    /// Flags from a lookup (environment, file): unset means default; anything unparsable
    /// is an error, never a silent default.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Flags, FlagError> {
        let mut flags = Flags::default();
        if let Some(v) = lookup("ENABLE_DYNAMODB_DUAL_WRITE") {
            flags.dual_write = boolean("ENABLE_DYNAMODB_DUAL_WRITE", &v)?;
        }
        if let Some(v) = lookup("USE_IMAGE_SERVICE") {
            flags.use_image_service = boolean("USE_IMAGE_SERVICE", &v)?;
        }
        if let Some(v) = lookup("SHADOW_READS") {
            flags.shadow_reads = boolean("SHADOW_READS", &v)?;
        }
        if let Some(v) = lookup("ROLLOUT_PERCENTAGE") {
            flags.rollout_percentage =
                v.trim()
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= 100)
                    .ok_or(FlagError {
                        name: "ROLLOUT_PERCENTAGE",
                        value: v.clone(),
                        expected: "an integer from 0 to 100",
                    })?;
        }
        if let Some(v) = lookup("IMAGE_SERVICE_TIMEOUT_MS") {
            let ms = v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|ms| (1..=60_000).contains(ms))
                .ok_or(FlagError {
                    name: "IMAGE_SERVICE_TIMEOUT_MS",
                    value: v.clone(),
                    expected: "milliseconds from 1 to 60000",
                })?;
            flags.read_timeout = Duration::from_millis(ms);
        }
        if let Some(v) = lookup("CIRCUIT_BREAKER_FAILURES") {
            flags.breaker_failures = v
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or(FlagError {
                    name: "CIRCUIT_BREAKER_FAILURES",
                    value: v.clone(),
                    expected: "an integer from 1 to 1000",
                })?;
        }
        if let Some(v) = lookup("CIRCUIT_BREAKER_COOLDOWN_MS") {
            let ms = v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|ms| (100..=600_000).contains(ms))
                .ok_or(FlagError {
                    name: "CIRCUIT_BREAKER_COOLDOWN_MS",
                    value: v.clone(),
                    expected: "milliseconds from 100 to 600000",
                })?;
            flags.breaker_cooldown = Duration::from_millis(ms);
        }
        Ok(flags)
    }

    /// Flags from a flags file's text: `KEY=value` lines (`#` comments and blank lines
    /// skipped; the last line for a key wins; a leading UTF-8 byte-order mark is ignored),
    /// validated as `from_lookup` does. Every other line is refused, so a misspelt key or a
    /// stray line can't silently leave a flag at its default mid-migration.
    pub fn from_file_text(text: &str) -> Result<Flags, FlagError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut lines = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(FlagError {
                    name: FILE_LINE,
                    value: line.to_owned(),
                    expected: "KEY=value, a # comment or a blank line",
                });
            };
            let key = key.trim();
            if !FLAG_NAMES.contains(&key) {
                return Err(FlagError {
                    name: FILE_LINE,
                    value: line.to_owned(),
                    expected: "a key among ENABLE_DYNAMODB_DUAL_WRITE, USE_IMAGE_SERVICE, \
                               ROLLOUT_PERCENTAGE, SHADOW_READS, IMAGE_SERVICE_TIMEOUT_MS, \
                               CIRCUIT_BREAKER_FAILURES, CIRCUIT_BREAKER_COOLDOWN_MS",
                });
            }
            lines.push((key, value.trim()));
        }
        Flags::from_lookup(|name| {
            lines
                .iter()
                .rev()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
    }

    /// The circuit breaker's part of the flags.
    pub fn breaker(&self) -> super::breaker::BreakerSettings {
        super::breaker::BreakerSettings {
            failures: self.breaker_failures,
            cooldown: self.breaker_cooldown,
        }
    }

    /// Whether `user_id`'s reads go to the Image Service.
    pub fn reads_from_image_service(&self, user_id: &str) -> bool {
        self.use_image_service && RolloutPolicy::includes(self.rollout_percentage, user_id)
    }
}

/// Deterministic per-user rollout: a user is in when `bucket(userId) < percentage`, where
/// `bucket` is the 64-bit FNV-1a hash of the user id's UTF-8 bytes, modulo 100. The same
/// user always gets the same answer, and raising the percentage never moves an included
/// user out. Other services reproduce it with any FNV-1a-64 implementation (offset basis
/// 0xcbf29ce484222325, prime 0x100000001b3).
pub struct RolloutPolicy;

impl RolloutPolicy {
    pub fn bucket(user_id: &str) -> u8 {
        use std::hash::Hasher;
        let mut hasher = fnv::FnvHasher::default();
        hasher.write(user_id.as_bytes());
        // The remainder is below 100, so it fits.
        u8::try_from(hasher.finish() % 100).unwrap_or(0)
    }

    pub fn includes(percentage: u8, user_id: &str) -> bool {
        Self::bucket(user_id) < percentage
    }
}

/// Where flags come from, read on every request.
pub trait FlagSource: Send + Sync + 'static {
    fn current(&self) -> Flags;
}

/// Fixed flags (the settings' flag values, validated once at start).
pub struct StaticFlags(pub Flags);

impl FlagSource for StaticFlags {
    fn current(&self) -> Flags {
        self.0.clone()
    }
}

/// A `KEY=value` file, re-read when it changes, so flags flip without a restart. A file
/// that does not parse is rejected (logged) and the last good flags stay in force.
pub struct FileFlags {
    path: PathBuf,
    state: Mutex<(Option<SystemTime>, Flags)>,
}

impl FileFlags {
    /// Load `path`; an invalid file refuses to start.
    pub fn open(path: PathBuf) -> Result<FileFlags, String> {
        let (modified, flags) = Self::read(&path)?;
        Ok(FileFlags {
            path,
            state: Mutex::new((modified, flags)),
        })
    }

    fn read(path: &std::path::Path) -> Result<(Option<SystemTime>, Flags), String> {
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        let flags = Flags::from_file_text(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok((modified, flags))
    }
}

impl FlagSource for FileFlags {
    fn current(&self) -> Flags {
        let Ok(mut state) = self.state.lock() else {
            return Flags::default();
        };
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if modified != state.0 {
            match Self::read(&self.path) {
                Ok(fresh) => {
                    tracing::info!(flags = ?fresh.1, "migration flags reloaded");
                    *state = fresh;
                }
                Err(error) => {
                    tracing::error!(%error, "migration flags file rejected; keeping the last good flags");
                    state.0 = modified;
                }
            }
        }
        state.1.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_strictly() {
        let flags = Flags::from_lookup(|name| match name {
            "ENABLE_DYNAMODB_DUAL_WRITE" => Some("true".into()),
            "ROLLOUT_PERCENTAGE" => Some("50".into()),
            _ => None,
        })
        .unwrap();
        assert!(flags.dual_write);
        assert_eq!(flags.rollout_percentage, 50);
        assert_eq!(flags.read_timeout, Duration::from_secs(5));
        for (name, value) in [
            ("ROLLOUT_PERCENTAGE", "101"),
            ("ROLLOUT_PERCENTAGE", "-1"),
            ("ROLLOUT_PERCENTAGE", "ten"),
            ("USE_IMAGE_SERVICE", "maybe"),
            ("IMAGE_SERVICE_TIMEOUT_MS", "0"),
        ] {
            let error = Flags::from_lookup(|n| (n == name).then(|| value.to_owned())).unwrap_err();
            assert_eq!(error.name, name);
        }
    }

    #[test]
    fn every_flag_name_is_read_and_listed_in_the_file_error() {
        // The names live in three places (FLAG_NAMES, from_lookup, the unknown-key message);
        // a flag added to one and not the others fails here.
        let unknown = Flags::from_file_text("NOT_A_FLAG=1\n").unwrap_err();
        for name in FLAG_NAMES {
            let error = Flags::from_lookup(|n| (n == name).then(|| "x".to_owned())).unwrap_err();
            assert_eq!(error.name, name, "from_lookup does not read {name}");
            assert!(
                unknown.expected.contains(name),
                "{name} missing from {unknown}"
            );
        }
        assert_eq!(
            unknown.expected.matches(", ").count() + 1,
            FLAG_NAMES.len(),
            "the message lists a name FLAG_NAMES lacks: {unknown}"
        );
    }

    #[test]
    fn rollout_shares_are_within_three_points_and_monotone() {
        let users: Vec<String> = (0..10_000).map(|i| format!("user-{i}")).collect();
        for percentage in [0u8, 10, 50, 100] {
            let routed = users
                .iter()
                .filter(|u| RolloutPolicy::includes(percentage, u))
                .count();
            let share = routed as f64 / 100.0;
            assert!(
                (share - f64::from(percentage)).abs() <= 3.0,
                "{percentage}% routed {share}%"
            );
        }
        for user in &users {
            let first = (0..=100).position(|p| RolloutPolicy::includes(p, user));
            if let Some(first) = first {
                assert!((first..=100).all(|p| RolloutPolicy::includes(p as u8, user)));
            }
        }
        // The documented hash: FNV-1a 64 of "alice" is 0x508b2abb65a03907, bucket = hash % 100.
        assert_eq!(
            RolloutPolicy::bucket("alice"),
            (0x508b2abb65a03907_u64 % 100) as u8
        );
    }

    #[test]
    fn a_flags_file_is_reread_when_it_changes_and_bad_edits_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flags.env");
        std::fs::write(&path, "ENABLE_DYNAMODB_DUAL_WRITE=true\n").unwrap();
        let source = FileFlags::open(path.clone()).unwrap();
        assert!(source.current().dual_write);
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(
            &path,
            "# cut over\nUSE_IMAGE_SERVICE=true\nROLLOUT_PERCENTAGE=10\n",
        )
        .unwrap();
        let flags = source.current();
        assert!(!flags.dual_write && flags.use_image_service);
        assert_eq!(flags.rollout_percentage, 10);
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&path, "ROLLOUT_PERCENTAGE=1000\n").unwrap();
        assert_eq!(source.current().rollout_percentage, 10);
        std::fs::write(&path, "ROLLOUT_PERCENTAGE=oops\n").unwrap();
        assert!(FileFlags::open(path).is_err());
    }

    #[test]
    fn a_flags_file_refuses_lines_it_does_not_understand() {
        // A byte-order mark (Windows editors), CRLF, comments, blank lines and spaces: fine.
        let flags = Flags::from_file_text(
            "\u{feff}USE_IMAGE_SERVICE=true\r\n\r\n  # half\r\n ROLLOUT_PERCENTAGE = 50 \r\n",
        )
        .unwrap();
        assert!(flags.use_image_service);
        assert_eq!(flags.rollout_percentage, 50);
        // A misspelt key, an unknown one, a line without `=`: refused, naming the line.
        for text in [
            "USE_IMAGE_SERVICES=true\n",
            "ROLLOUT_PERCENTAGE=10\nDEBUG=1\n",
            "USE_IMAGE_SERVICE=true\nROLLOUT_PERCENTAGE 10\n",
            "=true\n",
        ] {
            let error = Flags::from_file_text(text).unwrap_err();
            assert_eq!(error.name, FILE_LINE, "{text:?}");
            assert!(text.contains(error.value.as_str()), "{error}");
        }
        // Without its mark, a key after a BOM would not be recognised: it is refused too.
        let error = Flags::from_file_text("\u{feff}\u{feff}SHADOW_READS=true\n").unwrap_err();
        assert_eq!(error.name, FILE_LINE);
    }
}
