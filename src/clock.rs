//! The one seam for time and randomness: wall-clock stamps, monotonic sleeps and backoff jitter.
//!
//! Everything that waits goes through tokio's timer (so tests may pause it); jitter comes from
//! one source that a seed makes reproducible. Time as text is written and parsed here too.
//! `clippy.toml` keeps the system clock's `now` in this file (the sandbox and tests aside).

use std::sync::Mutex;
use std::time::Duration;

use rand::{RngExt, SeedableRng, rngs::StdRng};

/// Now, in UTC: the one read of the wall clock (request timestamps, records, metrics).
#[allow(clippy::disallowed_methods)]
pub fn now_utc() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// The real monotonic clock, for timing work off tokio's clock (the recorder's sync batching,
/// on its own thread): the one read of `std::time::Instant::now`.
#[allow(clippy::disallowed_methods)]
pub fn monotonic() -> std::time::Instant {
    std::time::Instant::now()
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

/// `YYYY-MM-DDThh:mm:ssZ` in UTC, the services' form of every `Timestamp` and `Expiration`
/// (no fractions: the services refuse them).
pub fn seconds_text(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Parses an RFC 3339 time such as `2026-12-01T10:00:00Z` (any offset, any fraction).
pub fn parse(text: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
}

/// The Unix second of a record's RFC 3339 time; 0 when it does not parse.
pub fn unix_seconds(ts: &str) -> u32 {
    if let Some(seconds) = unix_seconds_utc(ts) {
        return seconds;
    }
    parse(ts).map_or(0, |t| u32::try_from(t.unix_timestamp()).unwrap_or(0))
}

/// The writer's own form, `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, read without the general parser
/// (replay reads one per `pending` line); `None` for anything else, which the parser takes.
fn unix_seconds_utc(ts: &str) -> Option<u32> {
    let b = ts.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        b.get(range)?.iter().try_fold(0i64, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    };
    let shape = b.len() >= 20
        && [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')]
            .iter()
            .all(|&(at, c)| b[at] == c)
        && b[b.len() - 1] == b'Z';
    if !shape {
        return None;
    }
    let fraction = &b[19..b.len() - 1];
    if !(fraction.is_empty()
        || fraction.len() > 1
            && fraction[0] == b'.'
            && fraction[1..].iter().all(u8::is_ascii_digit))
    {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    let days_in_month = [
        31,
        28 + i64::from(year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)),
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month[month as usize - 1]
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    // Days from the civil date (H. Hinnant's algorithm), for the proleptic Gregorian calendar.
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u32::try_from(days * 86_400 + hour * 3600 + minute * 60 + second).ok()
}

/// Sleeps on tokio's clock (which a paused test runtime advances instantly).
pub async fn sleep(duration: Duration) {
    tokio::time::sleep(duration).await;
}

/// Monotonic instant on tokio's clock.
#[allow(clippy::disallowed_methods)]
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
    fn record_times_in_the_writer_s_form_read_as_the_general_parser_reads_them() {
        for ts in [
            "2026-11-22T00:00:00.000Z",
            "1970-01-01T00:00:00Z",
            "2000-02-29T23:59:59.999999Z",
            "2026-12-31T12:34:56.7Z",
            "2106-02-07T06:28:15Z",
        ] {
            let parsed =
                time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
                    .unwrap()
                    .unix_timestamp();
            assert_eq!(unix_seconds_utc(ts).map(i64::from), Some(parsed), "{ts}");
        }
        for other in ["2026-11-22T08:00:00+08:00", "2026-02-30T00:00:00Z", "x", ""] {
            assert_eq!(unix_seconds_utc(other), None, "{other}");
        }
        assert_eq!(unix_seconds("2026-11-22T08:00:00+08:00"), 1_795_305_600);
        assert_eq!(unix_seconds("2026-11-22T00:00:00.000Z"), 1_795_305_600);
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        let ts = now_rfc3339();
        assert_eq!(ts.len(), 24, "{ts}");
        assert!(ts.ends_with('Z'));
        assert_eq!(&ts[10..11], "T");
    }

    #[test]
    fn every_stamp_this_tool_writes_parses_back_to_its_second() {
        let now = now_utc();
        let second = now.unix_timestamp();
        assert_eq!(i64::from(unix_seconds(&now_rfc3339())) / 10, second / 10);
        let text = seconds_text(now);
        assert_eq!(parse(&text).map(|t| t.unix_timestamp()), Some(second));
        assert_eq!(i64::from(unix_seconds(&text)), second);
        assert_eq!(
            parse("2026-12-01T18:00:00+08:00").map(|t| t.unix_timestamp()),
            parse("2026-12-01T10:00:00Z").map(|t| t.unix_timestamp())
        );
        assert_eq!(parse("yesterday"), None);
        assert_eq!(unix_seconds("yesterday"), 0);
    }
}
