//! Pacing: a permit before every request (retries and look-ups included), so that no one-second
//! window sees more than the account's budget, slowing down on throttling and recovering gradually.
//!
//! governor does the rate arithmetic (GCRA). Waiters queue on a fair async mutex, so a hundred
//! workers waiting for a permit wake one at a time instead of all at once; at 50/s and more the
//! permits go out in pairs, one timer wake-up for two requests.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::clock;

/// Fraction of the budget actually used: arrival times jitter on the network, and a request
/// that lands a millisecond early in the server's window would be throttled.
const HEADROOM: f64 = 0.995;
/// The bucket's size by budget. A permit released late by a timer tick is lost for good when the
/// bucket is full at that moment (with a burst of one that costs ~10% at 100/s), so the bucket
/// holds one permit more than a release takes. The rate gives the extra permits back: at most
/// (burst − 1) + rate permits fall in any one-second window, and that is kept within the budget.
fn burst_for(qps: u32) -> u32 {
    match qps {
        0..20 => 1,
        20..50 => 2,
        _ => 3,
    }
}
/// Multiplicative slow-down on a throttling answer, and the floor as a fraction of the budget.
const BACKOFF_FACTOR: f64 = 0.7;
const MIN_FRACTION: f64 = 0.1;
/// Recovery: after this long without throttling, step the rate up by `RECOVERY_STEP` of the budget.
const RECOVERY_INTERVAL: Duration = Duration::from_secs(2);
const RECOVERY_STEP: f64 = 0.1;
/// The pause after a throttling answer without a hint.
const DEFAULT_PAUSE: Duration = Duration::from_millis(500);
const MAX_PAUSE: Duration = Duration::from_secs(60);

pub struct Pacer {
    budget: f64,
    burst: NonZeroU32,
    /// Permits taken at once: the burst less the one kept free for a late wake-up.
    release: NonZeroU32,
    /// Built once: creating a clock probes the CPU and calibrates, far too slow per permit.
    clock: DefaultClock,
    gate: tokio::sync::Mutex<()>,
    state: Mutex<State>,
}

struct State {
    rate: f64,
    limiter: Arc<DefaultDirectRateLimiter>,
    paused_until: Option<tokio::time::Instant>,
    calm_since: tokio::time::Instant,
    /// Permits already taken from the limiter by the last release, for the next waiters.
    spare: u32,
}

impl Pacer {
    /// `qps` = 0 means unlimited: `acquire` returns at once.
    pub fn new(qps: u32) -> Pacer {
        let burst = burst_for(qps);
        // At most (burst − 1) + rate permits fall in any one-second window.
        let budget = if qps == 0 {
            0.0
        } else {
            (f64::from(qps) - f64::from(burst - 1)) * HEADROOM
        };
        let release = NonZeroU32::new(burst.saturating_sub(1).max(1)).expect("at least one");
        let burst = NonZeroU32::new(burst).expect("burst is 1 to 3");
        let rate = budget.max(0.5);
        let clock = DefaultClock::default();
        Pacer {
            budget,
            burst,
            release,
            clock: clock.clone(),
            gate: tokio::sync::Mutex::new(()),
            state: Mutex::new(State {
                rate,
                limiter: Arc::new(limiter_for(rate, burst, &clock)),
                paused_until: None,
                calm_since: clock::instant(),
                spare: 0,
            }),
        }
    }

    pub fn unlimited(&self) -> bool {
        self.budget == 0.0
    }

    /// Waits for the permit to start one request.
    pub async fn acquire(&self) {
        if self.unlimited() {
            return;
        }
        let _turn = self.gate.lock().await;
        loop {
            let (limiter, pause) = {
                let mut state = self.lock();
                self.recover(&mut state);
                if state.spare > 0 && state.paused_until.is_none_or(|p| p <= clock::instant()) {
                    state.spare -= 1;
                    return;
                }
                (state.limiter.clone(), state.paused_until)
            };
            match pause {
                Some(until) if until > clock::instant() => {
                    tokio::time::sleep_until(until).await;
                    continue;
                }
                _ => {}
            }
            // Take a whole release at once and hand the rest to the next waiters: one wake-up
            // (and often one answer's wake-up) for two requests. The limit is the limiter's.
            let wait = match limiter.check_n(self.release) {
                Ok(Ok(())) => {
                    self.lock().spare = self.release.get() - 1;
                    return;
                }
                Ok(Err(not_until)) => not_until.wait_time_from(limiter.clock().now()),
                Err(_) => Duration::from_millis(1),
            };
            clock::sleep(wait.max(Duration::from_micros(50))).await;
        }
    }

    /// The service said "too fast": slow down, and pause everyone for the hint (or a moment).
    pub fn throttled(&self, retry_after: Option<Duration>) {
        if self.unlimited() {
            return;
        }
        let mut state = self.lock();
        state.spare = 0;
        let now = clock::instant();
        let pause = retry_after.unwrap_or(DEFAULT_PAUSE).min(MAX_PAUSE);
        let until = now + pause;
        if state.paused_until.is_none_or(|p| p < until) {
            state.paused_until = Some(until);
        }
        // One slow-down per burst of throttling answers, not one per answer.
        if now.duration_since(state.calm_since) > Duration::from_millis(200)
            || state.rate >= self.budget
        {
            state.rate = (state.rate * BACKOFF_FACTOR)
                .max(self.budget * MIN_FRACTION)
                .max(0.5);
            state.limiter = Arc::new(limiter_for(state.rate, self.burst, &self.clock));
        }
        state.calm_since = now;
    }

    /// The current rate in requests per second (for the progress display).
    pub fn current_rate(&self) -> f64 {
        if self.unlimited() {
            0.0
        } else {
            self.lock().rate
        }
    }

    fn recover(&self, state: &mut State) {
        if state.rate >= self.budget {
            return;
        }
        let now = clock::instant();
        if now.duration_since(state.calm_since) >= RECOVERY_INTERVAL {
            state.rate = (state.rate + self.budget * RECOVERY_STEP).min(self.budget);
            state.limiter = Arc::new(limiter_for(state.rate, self.burst, &self.clock));
            state.calm_since = now;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn limiter_for(rate: f64, burst: NonZeroU32, clock: &DefaultClock) -> DefaultDirectRateLimiter {
    let period = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let quota = Quota::with_period(period)
        .expect("a positive period")
        .allow_burst(burst);
    RateLimiter::direct_with_clock(quota, clock.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unlimited_pacer_never_waits_or_slows() {
        let pacer = Pacer::new(0);
        for _ in 0..1000 {
            pacer.acquire().await;
        }
        pacer.throttled(None);
        assert_eq!(pacer.current_rate(), 0.0);
    }

    #[test]
    fn throttling_slows_down_to_a_floor_and_not_below() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let pacer = Pacer::new(100);
            assert!((pacer.current_rate() - 97.51).abs() < 1e-9);
            pacer.throttled(Some(Duration::from_millis(1)));
            assert!((pacer.current_rate() - 68.257).abs() < 1e-9);
            for _ in 0..50 {
                let mut state = pacer.lock();
                state.calm_since -= Duration::from_millis(300);
                drop(state);
                pacer.throttled(Some(Duration::from_millis(1)));
            }
            assert!((pacer.current_rate() - 9.751).abs() < 1e-9);
        });
    }

    #[test]
    fn a_burst_of_throttling_answers_slows_down_once() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let pacer = Pacer::new(100);
            for _ in 0..10 {
                pacer.throttled(None);
            }
            assert!((pacer.current_rate() - 68.257).abs() < 1e-9);
        });
    }

    #[test]
    fn the_rate_recovers_step_by_step_after_calm() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let pacer = Pacer::new(100);
            pacer.throttled(None);
            let mut state = pacer.lock();
            state.calm_since -= RECOVERY_INTERVAL;
            pacer.recover(&mut state);
            assert!((state.rate - 78.008).abs() < 1e-9, "{}", state.rate);
            for _ in 0..10 {
                state.calm_since -= RECOVERY_INTERVAL;
                pacer.recover(&mut state);
            }
            assert!((state.rate - 97.51).abs() < 1e-9);
        });
    }

    #[test]
    fn no_one_second_window_can_hold_more_permits_than_the_budget() {
        for qps in [1, 2, 5, 19, 20, 21, 50, 100, 1000, 10_000] {
            let pacer = Pacer::new(qps);
            let worst = f64::from(pacer.burst.get() - 1) + pacer.budget.ceil();
            assert!(
                worst <= f64::from(qps),
                "qps {qps}: up to {worst} in a window"
            );
            assert!(
                pacer.budget >= f64::from(qps) * 0.49,
                "qps {qps}: pace {} is too slow",
                pacer.budget
            );
        }
    }
}
