//! The circuit breaker in front of the Image Service for the gallery's dual-write and
//! routed reads: after `failures` calls in a row fail, calls are skipped at once for
//! `cooldown` (the mirror is left to the outbox, the read goes to PostgreSQL); then one
//! probe is let through, and its outcome closes the breaker or opens it again. An outage
//! then costs a request microseconds instead of the Image Service timeout.
//!
//! The decisions are pure (`now` is passed in); `CircuitBreaker` only holds the state.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When to open and for how long (the flags `CIRCUIT_BREAKER_FAILURES` and
/// `CIRCUIT_BREAKER_COOLDOWN_MS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    pub failures: u32,
    pub cooldown: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Calls go through; `failures` in a row so far.
    Closed { failures: u32 },
    /// Calls are skipped for a cool-down from `since`. The cool-down is read when asked,
    /// so an operator who shortens it (the flag) shortens an open breaker's too.
    Open { since: Instant },
    /// One probe (sent at `since`) is in flight; other calls are skipped until it ends, or
    /// for a cool-down (a probe whose request was dropped never reports, and must not keep
    /// the breaker shut).
    HalfOpen { since: Instant },
}

/// What a caller should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Call the Image Service, then report the outcome.
    Call,
    /// Call it as the one probe of a half-open breaker, then report the outcome.
    Probe,
    /// Don't call it.
    Skip,
}

#[derive(Debug)]
struct State {
    phase: Phase,
    opened: u64,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    state: Mutex<State>,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        CircuitBreaker {
            state: Mutex::new(State {
                phase: Phase::Closed { failures: 0 },
                opened: 0,
            }),
        }
    }
}

impl CircuitBreaker {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        // A poisoned lock still holds a consistent phase: every update is one assignment.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut state)
    }

    /// May a call go to the Image Service now?
    pub fn permit(&self, now: Instant, settings: BreakerSettings) -> Permit {
        self.with(|state| match state.phase {
            Phase::Closed { .. } => Permit::Call,
            Phase::Open { since } | Phase::HalfOpen { since }
                if now >= since + settings.cooldown =>
            {
                state.phase = Phase::HalfOpen { since: now };
                Permit::Probe
            }
            Phase::Open { .. } | Phase::HalfOpen { .. } => Permit::Skip,
        })
    }

    /// Whether calls are being skipped now (without taking the probe): for the background
    /// drain, which tries only when the Image Service may be back.
    pub fn is_open(&self, now: Instant, settings: BreakerSettings) -> bool {
        self.with(|state| match state.phase {
            Phase::Closed { .. } => false,
            Phase::Open { since } | Phase::HalfOpen { since } => now < since + settings.cooldown,
        })
    }

    /// A permitted call succeeded: closed again, the count of failures reset.
    pub fn succeeded(&self) {
        self.with(|state| state.phase = Phase::Closed { failures: 0 });
    }

    /// A permitted call failed: count it, and open when the count reaches the setting (a
    /// failed probe opens again at once). True when this failure opened it.
    pub fn failed(&self, now: Instant, settings: BreakerSettings) -> bool {
        self.with(|state| {
            let failures = match state.phase {
                Phase::Closed { failures } => failures.saturating_add(1),
                Phase::HalfOpen { .. } | Phase::Open { .. } => settings.failures,
            };
            if failures >= settings.failures.max(1) {
                let was_open = !matches!(state.phase, Phase::Closed { .. });
                state.phase = Phase::Open { since: now };
                state.opened += 1;
                !was_open
            } else {
                state.phase = Phase::Closed { failures };
                false
            }
        })
    }

    /// `{"state": "closed"|"open"|"half_open", "consecutiveFailures": n, "opened": n}` for
    /// `/dual-write/status`.
    pub fn status(&self) -> serde_json::Value {
        self.with(|state| {
            let (name, failures) = match state.phase {
                Phase::Closed { failures } => ("closed", failures),
                Phase::Open { .. } => ("open", 0),
                Phase::HalfOpen { .. } => ("half_open", 0),
            };
            serde_json::json!({
                "state": name,
                "consecutiveFailures": failures,
                "opened": state.opened,
            })
        })
    }

    /// 0 closed, 1 open, 2 half-open (the metrics gauge).
    pub fn state_code(&self) -> i64 {
        self.with(|state| match state.phase {
            Phase::Closed { .. } => 0,
            Phase::Open { .. } => 1,
            Phase::HalfOpen { .. } => 2,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: BreakerSettings = BreakerSettings {
        failures: 3,
        cooldown: Duration::from_secs(30),
    };

    #[test]
    fn opens_after_the_failures_in_a_row_and_probes_after_the_cooldown() {
        let breaker = CircuitBreaker::default();
        let t0 = Instant::now();
        for _ in 0..2 {
            assert_eq!(breaker.permit(t0, SETTINGS), Permit::Call);
            assert!(!breaker.failed(t0, SETTINGS));
        }
        // A success in between starts the count again.
        breaker.succeeded();
        for opens in [false, false, true] {
            assert_eq!(breaker.permit(t0, SETTINGS), Permit::Call);
            assert_eq!(breaker.failed(t0, SETTINGS), opens);
        }
        assert!(breaker.is_open(t0, SETTINGS));
        assert_eq!(breaker.permit(t0, SETTINGS), Permit::Skip);
        assert_eq!(
            breaker.permit(t0 + Duration::from_secs(29), SETTINGS),
            Permit::Skip
        );
        let later = t0 + Duration::from_secs(30);
        assert_eq!(breaker.permit(later, SETTINGS), Permit::Probe);
        // Only one probe at a time, unless it never reported within a cool-down.
        assert_eq!(breaker.permit(later, SETTINGS), Permit::Skip);
        assert_eq!(
            breaker.permit(later + Duration::from_secs(30), SETTINGS),
            Permit::Probe
        );
        // A failed probe opens it for another cool-down…
        assert!(
            !breaker.failed(later, SETTINGS),
            "already open, not newly opened"
        );
        assert_eq!(
            breaker.permit(later + Duration::from_secs(1), SETTINGS),
            Permit::Skip
        );
        let again = later + Duration::from_secs(30);
        assert_eq!(breaker.permit(again, SETTINGS), Permit::Probe);
        // …a successful one closes it.
        breaker.succeeded();
        assert_eq!(breaker.permit(again, SETTINGS), Permit::Call);
        assert_eq!(breaker.status()["opened"], 2);
    }

    #[test]
    fn a_shorter_cooldown_applies_to_a_breaker_already_open() {
        let breaker = CircuitBreaker::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            breaker.failed(t0, SETTINGS);
        }
        let shorter = BreakerSettings {
            cooldown: Duration::from_secs(1),
            ..SETTINGS
        };
        let soon = t0 + Duration::from_secs(2);
        assert!(breaker.is_open(soon, SETTINGS));
        assert!(!breaker.is_open(soon, shorter));
        assert_eq!(breaker.permit(soon, shorter), Permit::Probe);
    }
}
