//! The one seam for time and randomness: wall-clock stamps, monotonic sleeps and backoff jitter.
//!
//! Everything that waits goes through tokio's timer (so tests may pause it); jitter comes from
//! one source that a seed makes reproducible.

use std::sync::Mutex;
use std::time::Duration;

use rand::{RngExt, SeedableRng, rngs::StdRng};

/// Now, in UTC: the one read of the wall clock (request timestamps, records, metrics).
pub fn now_utc() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// RFC 3339 UTC timestamp with milliseconds, for ledger records and logs.
pub fn now_rfc3339() -> String {
    let now = now_utc();
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&format)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// Sleeps on tokio's clock (which a paused test runtime advances instantly).
pub async fn sleep(duration: Duration) {
    tokio::time::sleep(duration).await;
}

/// Monotonic instant on tokio's clock.
pub fn instant() -> tokio::time::Instant {
    tokio::time::Instant::now()
}

/// A source of jitter fractions in `[0, 1)`; seeded for reproducible runs and tests.
pub struct Jitter {
    rng: Mutex<StdRng>,
    fixed: Option<f64>,
}

impl Jitter {
    pub fn from_seed(seed: Option<u64>) -> Jitter {
        let rng = match seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_rng(&mut rand::rng()),
        };
        Jitter {
            rng: Mutex::new(rng),
            fixed: None,
        }
    }

    /// Always the same fraction: no randomness at all (the deterministic test switch).
    pub fn fixed(fraction: f64) -> Jitter {
        Jitter {
            rng: Mutex::new(StdRng::seed_from_u64(0)),
            fixed: Some(fraction.clamp(0.0, 1.0)),
        }
    }

    pub fn fraction(&self) -> f64 {
        if let Some(f) = self.fixed {
            return f;
        }
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        rng.random::<f64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_jitter_repeats_and_stays_in_range() {
        let a = Jitter::from_seed(Some(7));
        let b = Jitter::from_seed(Some(7));
        for _ in 0..100 {
            let (x, y) = (a.fraction(), b.fraction());
            assert_eq!(x, y);
            assert!((0.0..1.0).contains(&x));
        }
        assert_eq!(Jitter::fixed(0.5).fraction(), 0.5);
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        let ts = now_rfc3339();
        assert_eq!(ts.len(), 24, "{ts}");
        assert!(ts.ends_with('Z'));
        assert_eq!(&ts[10..11], "T");
    }
}
