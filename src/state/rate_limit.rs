//! How many requests a client address may make to the routes anyone may
//! call without a token: a [`RateLimit`] per route family, keyed by the
//! client's address. The HTTP side (429, `Retry-After`) is
//! `api::rate_limit`; this part holds no axum, as it is part of the state
//! every handler shares.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::GuardSettings;

/// Every this many checks, addresses whose budget is full again are
/// forgotten, so the map holds only recent clients (it cannot grow without
/// bound under a spray of addresses for longer than this many requests).
const FORGET_EVERY_CHECKS: u64 = 1_024;

/// One route family's limit: `per_minute` sustained, `burst` at once, per
/// client address.
pub struct RateLimit {
    /// The metric label: `login`, `verify`.
    name: &'static str,
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    checks: AtomicU64,
}

impl RateLimit {
    pub fn per_minute(name: &'static str, per_minute: u32, burst: u32) -> RateLimit {
        // The settings are validated to be ≥ 1; 1 is the floor regardless.
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        RateLimit {
            name,
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst)),
            checks: AtomicU64::new(0),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Takes one request from `client`'s budget, or says how long until
    /// one is available again (counting it as refused).
    pub fn check(&self, client: IpAddr) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % FORGET_EVERY_CHECKS
            == FORGET_EVERY_CHECKS - 1
        {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter.check_key(&client).map_err(|not_until| {
            crate::telemetry::metrics::rate_limited(self.name);
            not_until.wait_time_from(DefaultClock::default().now())
        })
    }
}

/// The limits of this process, one per route family.
pub struct RateLimits {
    pub login: std::sync::Arc<RateLimit>,
    pub verify: std::sync::Arc<RateLimit>,
}

impl RateLimits {
    pub fn new(settings: &GuardSettings) -> RateLimits {
        RateLimits {
            login: std::sync::Arc::new(RateLimit::per_minute(
                "login",
                settings.login_rate_per_minute,
                settings.login_rate_burst,
            )),
            verify: std::sync::Arc::new(RateLimit::per_minute(
                "verify",
                settings.verify_rate_per_minute,
                settings.verify_rate_burst,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_burst_then_waits_while_others_are_unaffected() {
        let limit = RateLimit::per_minute("test", 6, 2);
        let one = IpAddr::from([192, 0, 2, 1]);
        let two = IpAddr::from([192, 0, 2, 2]);
        assert!(limit.check(one).is_ok());
        assert!(limit.check(one).is_ok());
        let wait = limit.check(one).unwrap_err();
        // 6 a minute: the next one in about 10 s.
        assert!(
            wait > Duration::from_secs(8) && wait <= Duration::from_secs(10),
            "{wait:?}"
        );
        assert!(limit.check(two).is_ok());
    }

    #[test]
    fn clients_whose_budget_is_full_again_are_forgotten() {
        // 1,000 a second: a spent budget of one is full again within 1 ms.
        let limit = RateLimit::per_minute("test", 60_000, 1);
        for n in 0..FORGET_EVERY_CHECKS - 1 {
            limit.check(IpAddr::from((n as u32).to_be_bytes())).unwrap();
        }
        assert_eq!(limit.limiter.len() as u64, FORGET_EVERY_CHECKS - 1);
        std::thread::sleep(Duration::from_millis(5));
        // This check sweeps first: only its own client is left.
        limit.check(IpAddr::from([198, 51, 100, 1])).unwrap();
        assert_eq!(limit.limiter.len(), 1);
    }
}
