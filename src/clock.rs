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

/// Parses `90s`, `50m`, `2h`, `1h30m` or plain seconds into a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => {
                return Err(format!(
                    "'{text}': unknown unit '{c}' (use s, m, h or d, e.g. 50m)"
                ));
            }
        };
        let n: u64 = number
            .parse()
            .map_err(|_| format!("'{text}': a number must come before '{c}' (e.g. 50m)"))?;
        total = total.saturating_add(n.saturating_mul(unit));
        number.clear();
    }
    if !number.is_empty() {
        return Err(format!("'{text}': the last number has no unit (e.g. 50m)"));
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_units_and_combinations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("50m").unwrap(), Duration::from_secs(3000));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("1h30").is_err());
    }

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
