//! The one source of "now" and of sleeps.
//!
//! Two kinds of time are read in this service:
//! - **Elapsed time** (deadlines, waits, breaker periods, latencies) is
//!   always tokio's: [`tokio::time::Instant`] and [`tokio::time::sleep`].
//!   On a runtime whose clock is paused (`start_paused`, the simulation),
//!   they run on virtual time, and so do the timeouts inside the HTTP and
//!   Redis clients, which use tokio's timers too.
//! - **Wall time** (status timestamps, the limiter's client clock, `Retry-After`
//!   dates, token expiry) comes from a [`Clock`]: the system's in production,
//!   or one derived from tokio's instant on virtual time.
//!
//! Why not a `Clock` trait with a fake to advance by hand (governor's way):
//! sleeps would then need a second, hand-made scheduler, and every client
//! timeout inside reqwest and redis-rs would still run on tokio's real timers.
//! tokio's paused clock already is that scheduler; the one thing it cannot
//! virtualise is `SystemTime`, so wall time alone goes through this value.

use std::time::{Duration, SystemTime};
use time::OffsetDateTime;
use tokio::time::Instant;

/// Where wall time comes from. Cheap to copy; built once at cold start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clock {
    kind: Kind,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Kind {
    /// The system clock.
    #[default]
    System,
    /// `wall` at `start`, advancing with tokio's (possibly paused) instant.
    Virtual {
        wall: OffsetDateTime,
        start: Instant,
    },
}

impl Clock {
    /// The system clock (production).
    pub fn system() -> Self {
        Self { kind: Kind::System }
    }

    /// A clock that reads `wall` now and then advances with tokio's instant:
    /// on a paused runtime, wall time moves only as virtual time does.
    pub fn starting_at(wall: OffsetDateTime) -> Self {
        Self {
            kind: Kind::Virtual {
                wall,
                start: Instant::now(),
            },
        }
    }

    /// Wall time now.
    pub fn now_utc(&self) -> OffsetDateTime {
        match self.kind {
            Kind::System => OffsetDateTime::now_utc(),
            Kind::Virtual { wall, start } => wall + Instant::now().saturating_duration_since(start),
        }
    }

    /// Wall time now as a `SystemTime` (for APIs that take one).
    pub fn now_system(&self) -> SystemTime {
        match self.kind {
            Kind::System => SystemTime::now(),
            Kind::Virtual { .. } => SystemTime::from(self.now_utc()),
        }
    }

    /// Milliseconds since the Unix epoch (0 before it).
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
    }

    /// Microseconds since the Unix epoch (0 before it).
    pub fn now_us(&self) -> u64 {
        unix_us(self.now_utc()).unwrap_or(0)
    }

    /// Tokio's instant now (virtual on a paused runtime).
    pub fn instant(&self) -> Instant {
        Instant::now()
    }

    /// Sleeps on tokio's timer (virtual on a paused runtime).
    pub async fn sleep(&self, wait: Duration) {
        tokio::time::sleep(wait).await;
    }

    /// The instant at which a wall-clock deadline (ms since the epoch, as the
    /// Lambda runtime gives it) falls; a deadline already past is now.
    pub fn instant_at_epoch_ms(&self, epoch_ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(epoch_ms.saturating_sub(self.now_ms()))
    }
}

/// Microseconds since the Unix epoch of `t` (`None` before it).
pub fn unix_us(t: OffsetDateTime) -> Option<u64> {
    u64::try_from(t.unix_timestamp_nanos() / 1_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_virtual_clock_moves_only_with_virtual_time() {
        let start = time::macros::datetime!(2026-12-01 00:00 UTC);
        let clock = Clock::starting_at(start);
        assert_eq!(clock.now_utc(), start);
        clock.sleep(Duration::from_secs(3600)).await;
        assert_eq!(clock.now_utc(), start + Duration::from_secs(3600));
        assert_eq!(
            clock.now_ms(),
            (start.unix_timestamp() as u64 + 3600) * 1000
        );
        assert_eq!(clock.now_us(), clock.now_ms() * 1000);
        assert_eq!(
            SystemTime::from(clock.now_utc()),
            clock.now_system(),
            "one wall time whatever the form"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_epoch_deadline_becomes_an_instant() {
        let start = time::macros::datetime!(2026-12-01 00:00 UTC);
        let clock = Clock::starting_at(start);
        let in_30s = clock.now_ms() + 30_000;
        let at = clock.instant_at_epoch_ms(in_30s);
        assert_eq!(at - clock.instant(), Duration::from_secs(30));
        assert_eq!(clock.instant_at_epoch_ms(0), clock.instant(), "past is now");
    }

    #[test]
    fn the_system_clock_is_the_systems() {
        let clock = Clock::system();
        let before = SystemTime::now();
        let now = clock.now_system();
        assert!(now >= before);
        assert!(clock.now_ms() > 1_600_000_000_000);
    }
}
