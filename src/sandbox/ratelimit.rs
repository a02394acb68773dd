//! Per access key and per action flow control: a sliding window counting the requests
//! accepted in the last second.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Accepted-request times per key and action; each list holds at most `limit` entries.
pub(crate) struct RateLimiter {
    window: Duration,
    accepted: HashMap<String, HashMap<&'static str, VecDeque<Instant>>>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::new(Duration::from_secs(1))
    }
}

impl RateLimiter {
    pub fn new(window: Duration) -> Self {
        RateLimiter {
            window,
            accepted: HashMap::new(),
        }
    }

    /// `Ok` when one more request fits under `limit` (0 = unlimited); otherwise how long until
    /// the oldest accepted one leaves the window. Records nothing: see [`RateLimiter::record`].
    pub fn check(
        &mut self,
        key: &str,
        action: &'static str,
        limit: u32,
        now: Instant,
    ) -> Result<(), Duration> {
        if limit == 0 {
            return Ok(());
        }
        let Some(times) = self.accepted.get_mut(key).and_then(|m| m.get_mut(action)) else {
            return Ok(());
        };
        while times
            .front()
            .is_some_and(|&at| now.saturating_duration_since(at) >= self.window)
        {
            times.pop_front();
        }
        // A lowered limit can leave more entries than it allows; forget the oldest surplus.
        while times.len() > limit as usize {
            times.pop_front();
        }
        match times.front() {
            Some(&oldest) if times.len() >= limit as usize => Err((oldest + self.window)
                .saturating_duration_since(now)
                .max(Duration::from_millis(1))),
            _ => Ok(()),
        }
    }

    /// Counts an accepted request (after [`RateLimiter::check`] said it fits).
    pub fn record(&mut self, key: &str, action: &'static str, limit: u32, now: Instant) {
        if limit == 0 {
            return;
        }
        let by_action = match self.accepted.get_mut(key) {
            Some(by_action) => by_action,
            None => self.accepted.entry(key.to_string()).or_default(),
        };
        by_action.entry(action).or_default().push_back(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admit(
        limiter: &mut RateLimiter,
        action: &'static str,
        limit: u32,
        now: Instant,
    ) -> Result<(), Duration> {
        limiter.check("k", action, limit, now)?;
        limiter.record("k", action, limit, now);
        Ok(())
    }

    #[test]
    fn the_request_over_the_limit_within_one_second_is_refused() {
        let mut limiter = RateLimiter::default();
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(admit(&mut limiter, "A", 3, t0 + Duration::from_millis(i * 100)).is_ok());
        }
        let wait = admit(&mut limiter, "A", 3, t0 + Duration::from_millis(500)).unwrap_err();
        assert_eq!(
            wait,
            Duration::from_millis(500),
            "until the first leaves the window"
        );
    }

    #[test]
    fn the_window_slides_instead_of_resetting_on_second_boundaries() {
        let mut limiter = RateLimiter::default();
        let t0 = Instant::now();
        assert!(admit(&mut limiter, "A", 2, t0).is_ok());
        assert!(admit(&mut limiter, "A", 2, t0 + Duration::from_millis(900)).is_ok());
        assert!(admit(&mut limiter, "A", 2, t0 + Duration::from_millis(999)).is_err());
        assert!(admit(&mut limiter, "A", 2, t0 + Duration::from_millis(1000)).is_ok());
        assert!(admit(&mut limiter, "A", 2, t0 + Duration::from_millis(1500)).is_err());
        assert!(admit(&mut limiter, "A", 2, t0 + Duration::from_millis(1900)).is_ok());
    }

    #[test]
    fn refused_requests_do_not_count_as_accepted() {
        let mut limiter = RateLimiter::default();
        let t0 = Instant::now();
        assert!(admit(&mut limiter, "A", 1, t0).is_ok());
        for ms in [100, 200, 300] {
            assert!(admit(&mut limiter, "A", 1, t0 + Duration::from_millis(ms)).is_err());
        }
        assert!(admit(&mut limiter, "A", 1, t0 + Duration::from_millis(1000)).is_ok());
    }

    #[test]
    fn actions_have_separate_budgets_and_zero_means_unlimited() {
        let mut limiter = RateLimiter::default();
        let t0 = Instant::now();
        assert!(admit(&mut limiter, "A", 1, t0).is_ok());
        assert!(admit(&mut limiter, "B", 1, t0).is_ok());
        assert!(admit(&mut limiter, "A", 1, t0).is_err());
        for _ in 0..1000 {
            assert!(admit(&mut limiter, "C", 0, t0).is_ok());
        }
    }
}
