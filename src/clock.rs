//! Time, injected: the application asks a [`Clock`] and never the OS directly,
//! so tests and the demo can fast-forward through T+3 holds.

use std::fmt;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock standing still until told to move (`serve --simulated-clock`).
#[derive(Debug)]
pub struct SimulatedClock {
    now: Mutex<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    #[error("a simulated clock only moves forward")]
    Backwards,
    #[error("the clock would move past the year 9999")]
    OutOfRange,
}

impl SimulatedClock {
    pub fn starting_at(start: DateTime<Utc>) -> SimulatedClock {
        SimulatedClock {
            now: Mutex::new(start),
        }
    }

    /// Moves the clock forward and returns the new time.
    pub fn advance(&self, by: Duration) -> Result<DateTime<Utc>, ClockError> {
        if by < Duration::zero() {
            return Err(ClockError::Backwards);
        }
        let mut now = self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *now = now.checked_add_signed(by).ok_or(ClockError::OutOfRange)?;
        Ok(*now)
    }
}

impl Clock for SimulatedClock {
    fn now(&self) -> DateTime<Utc> {
        *self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simulated_clock_stands_still_until_advanced() {
        let start = DateTime::parse_from_rfc3339("2026-02-12T10:00:00+08:00")
            .unwrap()
            .to_utc();
        let clock = SimulatedClock::starting_at(start);
        assert_eq!(clock.now(), start);
        assert_eq!(
            clock.advance(Duration::days(3)).unwrap(),
            start + Duration::days(3)
        );
        assert_eq!(clock.now(), start + Duration::days(3));
        assert_eq!(
            clock.advance(Duration::seconds(-1)),
            Err(ClockError::Backwards)
        );
    }
}
