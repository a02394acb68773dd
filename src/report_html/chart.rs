//! A run's registrations per second as a small inline SVG bar chart: drawn from the ledger's
//! timestamps (one-second resolution), seconds in which a registration needed retries marked.

use std::fmt::Write as _;

/// Bars drawn at most: a longer run is drawn in buckets of several seconds.
const BARS: usize = 240;
const WIDTH: u32 = 480;
const HEIGHT: u32 = 60;

/// Registrations of one run over time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rate {
    /// Seconds per bar.
    pub bucket: u32,
    /// Registrations per bar, from the run's start.
    pub counts: Vec<u32>,
    /// Registrations that needed more than one attempt, per bar.
    pub retried: Vec<u32>,
    /// From the first second to the last registration.
    pub seconds: u32,
}

impl Rate {
    /// The rate of a run that started at Unix second `start` (else at its first registration)
    /// and registered at the seconds `at`, `retried` of them after retries. `None` without any.
    pub fn of(start: Option<u32>, at: &[u32], retried: &[u32]) -> Option<Rate> {
        let first = *at.iter().min()?;
        let start = start.filter(|&s| s > 0 && s <= first).unwrap_or(first);
        let last = *at.iter().max()?;
        let seconds = last - start + 1;
        let bucket = seconds.div_ceil(BARS as u32).max(1);
        let bars = seconds.div_ceil(bucket) as usize;
        let count = |times: &[u32]| {
            let mut bars = vec![0u32; bars];
            for &t in times.iter().filter(|&&t| t >= start && t <= last) {
                bars[((t - start) / bucket) as usize] += 1;
            }
            bars
        };
        Some(Rate {
            bucket,
            counts: count(at),
            retried: count(retried),
            seconds,
        })
    }

    /// The highest rate of a bar, per second.
    pub fn peak(&self) -> f64 {
        let max = self.counts.iter().copied().max().unwrap_or(0);
        f64::from(max) / f64::from(self.bucket)
    }

    pub fn mean(&self) -> f64 {
        let total: u64 = self.counts.iter().map(|&c| u64::from(c)).sum();
        total as f64 / f64::from(self.seconds.max(1))
    }
}

/// The chart, with its figures in words beside it (and as its accessible name).
pub fn svg(rate: &Rate) -> String {
    let max = rate.counts.iter().copied().max().unwrap_or(0).max(1);
    let bar = f64::from(WIDTH) / rate.counts.len() as f64;
    let summary = format!(
        "peak {:.1}/s, mean {:.1}/s over {} s{}",
        rate.peak(),
        rate.mean(),
        rate.seconds,
        if rate.bucket > 1 {
            format!(" (bars of {} s)", rate.bucket)
        } else {
            String::new()
        }
    );
    let mut out = format!(
        "<svg class=\"rate\" viewBox=\"0 0 {WIDTH} {}\" width=\"{WIDTH}\" height=\"{}\" \
         preserveAspectRatio=\"none\" role=\"img\" aria-label=\"registrations per second: {summary}\">",
        HEIGHT + 6,
        HEIGHT + 6
    );
    for (i, (&n, &retried)) in rate.counts.iter().zip(&rate.retried).enumerate() {
        let x = i as f64 * bar;
        if n > 0 {
            let h = f64::from(n) / f64::from(max) * f64::from(HEIGHT);
            let _ = write!(
                out,
                "<rect class=\"bar\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\"/>",
                f64::from(HEIGHT) + 6.0 - h,
                (bar - 0.3).max(0.5)
            );
        }
        if retried > 0 {
            let _ = write!(
                out,
                "<rect class=\"retry\" x=\"{x:.1}\" y=\"0\" width=\"{:.1}\" height=\"4\"><title>{retried} after retries</title></rect>",
                bar.max(1.0)
            );
        }
    }
    let _ = write!(out, "</svg><br><small>{summary}</small>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_are_counted_per_second_from_the_runs_start() {
        let rate = Rate::of(Some(100), &[101, 101, 103, 103, 103], &[103]).unwrap();
        assert_eq!(rate.counts, [0, 2, 0, 3]);
        assert_eq!(rate.retried, [0, 0, 0, 1]);
        assert_eq!((rate.bucket, rate.seconds), (1, 4));
        assert_eq!(rate.peak(), 3.0);
        let svg = svg(&rate);
        assert_eq!(svg.matches("class=\"bar\"").count(), 2);
        assert_eq!(svg.matches("class=\"retry\"").count(), 1);
    }

    #[test]
    fn a_long_run_is_drawn_in_buckets_and_no_run_without_registrations_is_drawn() {
        let at: Vec<u32> = (0..3600).map(|s| 1_000 + s).collect();
        let rate = Rate::of(Some(1_000), &at, &[]).unwrap();
        assert_eq!(rate.bucket, 15);
        assert_eq!(rate.counts.len(), 240);
        assert_eq!(rate.peak(), 1.0);
        assert_eq!(Rate::of(Some(5), &[], &[]), None);
    }
}
