//! The retry policy as a pure function: given how an attempt failed (its error class), stop the
//! command, refuse the call, give up, or wait and try again. Every caller asks `Policy::judge`;
//! nothing else turns an error class into a retry decision.
//!
//! Capped exponential backoff with full jitter; a server's retry-after hint wins, clamped.

use std::time::Duration;

use crate::api::ErrorClass;

/// What a failed attempt means for the call, decided once for every caller.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Verdict {
    /// Wait `after`, then try again. `unknown`: the attempt may have been applied, so a call that
    /// is not idempotent looks before it is sent again. `throttled`: the service said "too fast".
    Retry {
        after: Duration,
        throttled: bool,
        unknown: bool,
    },
    /// The service refused this call for a reason retrying cannot fix (a bad row).
    Refused,
    /// The whole command must stop: credentials, signature, permission, clock.
    Fatal,
    /// Attempts ran out.
    Exhausted,
}

/// What the pipeline learnt from a failed attempt, reduced to what retrying cares about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Nothing was applied, or the outcome is unknown (the caller looks it up first): try again.
    Retryable,
    /// The service said we are too fast: try again after slowing down.
    Throttled,
    /// Retrying cannot help (bad row, bad credentials).
    Final,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decision {
    GiveUp,
    RetryAfter(Duration),
}

#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Attempts in all, the first one included.
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
    /// The smallest wait after a throttling answer that carried no hint.
    pub throttle_floor: Duration,
    /// The largest server hint honoured; a larger one is clamped to this.
    pub max_hint: Duration,
}

impl Policy {
    pub fn new(max_attempts: u32) -> Policy {
        Policy {
            max_attempts,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(20),
            throttle_floor: Duration::from_millis(250),
            max_hint: Duration::from_secs(60),
        }
    }

    /// Judges a failed attempt of class `class`, the `attempts`-th so far (≥ 1), with the
    /// server's `hint` and a `jitter` fraction in `[0, 1)`.
    pub fn judge(
        &self,
        class: ErrorClass,
        attempts: u32,
        hint: Option<Duration>,
        jitter: f64,
    ) -> Verdict {
        let failure = match class {
            ErrorClass::RunFatal => return Verdict::Fatal,
            ErrorClass::RowRejected => return Verdict::Refused,
            ErrorClass::Throttled => Failure::Throttled,
            ErrorClass::OutcomeUnknown | ErrorClass::Transient => Failure::Retryable,
        };
        match self.decide(failure, attempts, hint, jitter) {
            Decision::GiveUp => Verdict::Exhausted,
            Decision::RetryAfter(after) => Verdict::Retry {
                after,
                throttled: failure == Failure::Throttled,
                unknown: class == ErrorClass::OutcomeUnknown,
            },
        }
    }

    /// `attempts` is how many attempts were made so far (≥ 1); `jitter` is a fraction in `[0, 1)`.
    pub fn decide(
        &self,
        failure: Failure,
        attempts: u32,
        hint: Option<Duration>,
        jitter: f64,
    ) -> Decision {
        if failure == Failure::Final || attempts >= self.max_attempts {
            return Decision::GiveUp;
        }
        if let Some(hint) = hint {
            return Decision::RetryAfter(hint.min(self.max_hint));
        }
        let ceiling = self.ceiling(attempts);
        let jittered = ceiling.mul_f64(jitter.clamp(0.0, 1.0));
        match failure {
            Failure::Throttled => Decision::RetryAfter(jittered.max(self.throttle_floor)),
            _ => Decision::RetryAfter(jittered),
        }
    }

    /// The backoff ceiling after `attempts` attempts: base·2^(attempts−1), capped.
    fn ceiling(&self, attempts: u32) -> Duration {
        let exponent = attempts.saturating_sub(1).min(20);
        self.base.saturating_mul(1u32 << exponent).min(self.cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::new(8)
    }

    #[test]
    fn final_failures_are_never_retried() {
        assert_eq!(
            policy().decide(Failure::Final, 1, None, 0.5),
            Decision::GiveUp
        );
    }

    #[test]
    fn gives_up_once_the_attempt_budget_is_spent() {
        assert_eq!(
            policy().decide(Failure::Retryable, 8, None, 0.5),
            Decision::GiveUp
        );
        assert!(matches!(
            policy().decide(Failure::Retryable, 7, None, 0.5),
            Decision::RetryAfter(_)
        ));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_full_jitter() {
        let p = policy();
        let wait = |n| match p.decide(Failure::Retryable, n, None, 0.999_999) {
            Decision::RetryAfter(d) => d,
            Decision::GiveUp => panic!("gave up"),
        };
        assert!(wait(1) <= Duration::from_millis(100) && wait(1) > Duration::from_millis(99));
        assert!(wait(2) > Duration::from_millis(199) && wait(2) <= Duration::from_millis(200));
        assert!(wait(3) > Duration::from_millis(399));
        let big = Policy::new(100);
        match big.decide(Failure::Retryable, 60, None, 0.999_999) {
            Decision::RetryAfter(d) => assert!(d <= Duration::from_secs(20)),
            Decision::GiveUp => panic!("gave up"),
        }
    }

    #[test]
    fn zero_jitter_means_an_immediate_retry_for_transient_failures() {
        assert_eq!(
            policy().decide(Failure::Retryable, 3, None, 0.0),
            Decision::RetryAfter(Duration::ZERO)
        );
    }

    #[test]
    fn a_throttling_answer_waits_at_least_the_floor() {
        assert_eq!(
            policy().decide(Failure::Throttled, 1, None, 0.0),
            Decision::RetryAfter(Duration::from_millis(250))
        );
    }

    #[test]
    fn the_servers_retry_after_hint_wins_and_is_clamped() {
        let hint = Some(Duration::from_millis(1500));
        assert_eq!(
            policy().decide(Failure::Throttled, 1, hint, 0.9),
            Decision::RetryAfter(Duration::from_millis(1500))
        );
        let huge = Some(Duration::from_secs(3600));
        assert_eq!(
            policy().decide(Failure::Throttled, 1, huge, 0.9),
            Decision::RetryAfter(Duration::from_secs(60))
        );
    }

    #[test]
    fn a_run_fatal_answer_stops_the_command_at_the_first_attempt() {
        assert_eq!(
            policy().judge(ErrorClass::RunFatal, 1, None, 0.5),
            Verdict::Fatal
        );
    }

    #[test]
    fn a_refused_row_is_not_retried() {
        assert_eq!(
            policy().judge(ErrorClass::RowRejected, 1, None, 0.5),
            Verdict::Refused
        );
    }

    #[test]
    fn an_unknown_outcome_is_retried_and_marked_for_a_look_up_first() {
        assert!(matches!(
            policy().judge(ErrorClass::OutcomeUnknown, 1, None, 0.5),
            Verdict::Retry {
                unknown: true,
                throttled: false,
                ..
            }
        ));
        assert!(matches!(
            policy().judge(ErrorClass::Transient, 1, None, 0.5),
            Verdict::Retry { unknown: false, .. }
        ));
    }

    #[test]
    fn throttling_is_retried_after_the_hint_and_says_so() {
        assert_eq!(
            policy().judge(
                ErrorClass::Throttled,
                1,
                Some(Duration::from_millis(700)),
                0.1
            ),
            Verdict::Retry {
                after: Duration::from_millis(700),
                throttled: true,
                unknown: false
            }
        );
    }

    #[test]
    fn retries_end_in_exhaustion_once_the_attempts_are_spent() {
        assert_eq!(
            policy().judge(ErrorClass::Transient, 8, None, 0.5),
            Verdict::Exhausted
        );
    }
}
