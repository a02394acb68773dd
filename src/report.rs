//! What the operator sees: a progress bar on a terminal, a log line every 10 s under cron, and
//! the closing summary (stderr, and JSON with `--summary`).

use std::io::IsTerminal;
use std::time::Duration;

use tokio::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal, log lines otherwise.
    Auto,
    Bar,
    Log,
    Off,
}

impl ProgressMode {
    fn resolve(self) -> ProgressMode {
        match self {
            ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Bar,
            ProgressMode::Auto => ProgressMode::Log,
            other => other,
        }
    }
}

pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// The interval between progress log lines: `LOG_EVERY`, or `FACE_ENROLL_PROGRESS_EVERY_MS`
/// (a test switch, so a test need not wait ten seconds to see one).
fn log_every() -> Duration {
    std::env::var("FACE_ENROLL_PROGRESS_EVERY_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(LOG_EVERY)
}

/// The running figures, owned by the recorder.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Figures {
    pub total: u64,
    pub registered_now: u64,
    pub recovered: u64,
    /// Found on the server before anything was sent (reconciliation).
    pub adopted: u64,
    pub failed_now: u64,
    /// `removed` records written (rollback, repair).
    pub removed_now: u64,
    pub left: u64,
    pub retries: u64,
    pub throttled: u64,
    pub lookups: u64,
    /// Rows the service refused for good in this run, for the rejects file.
    #[serde(skip)]
    pub failed_rows: Vec<crate::plan::Rejected>,
}

impl Figures {
    pub fn done(&self) -> u64 {
        self.registered_now + self.recovered + self.adopted + self.failed_now
    }
}

pub struct Progress {
    mode: ProgressMode,
    every: Duration,
    bar: Option<ProgressBar>,
    started: Instant,
    last_log: Instant,
}

impl Progress {
    pub fn new(mode: ProgressMode, total: u64) -> Progress {
        let mode = mode.resolve();
        let bar = (mode == ProgressMode::Bar && total > 0).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar
        });
        let now = crate::clock::instant();
        Progress {
            mode,
            every: log_every(),
            bar,
            started: now,
            last_log: now,
        }
    }

    /// Called by the recorder after every batch and on every tick.
    pub fn update(&mut self, figures: &Figures) {
        if let Some(bar) = &self.bar {
            let (rate, eta) = self.rate_and_eta(figures);
            bar.set_position(figures.done());
            bar.set_message(format!(
                "{rate:.1}/s eta {eta}s · failed {} · throttled {} · retries {}",
                figures.failed_now, figures.throttled, figures.retries
            ));
        }
        if self.mode == ProgressMode::Log && self.last_log.elapsed() >= self.every {
            self.last_log = crate::clock::instant();
            let (rate, eta) = self.rate_and_eta(figures);
            tracing::info!(
                done = figures.done(),
                total = figures.total,
                rate_per_s = format!("{rate:.1}"),
                eta_s = eta,
                failed = figures.failed_now,
                throttled = figures.throttled,
                retries = figures.retries,
                "progress"
            );
        }
    }

    /// Images finished per second so far, and the seconds left at that pace.
    fn rate_and_eta(&self, figures: &Figures) -> (f64, u64) {
        let elapsed = self.started.elapsed().as_secs_f64();
        let done = figures.done();
        let rate = if elapsed > 0.0 {
            done as f64 / elapsed
        } else {
            0.0
        };
        let left = figures.total.saturating_sub(done);
        let eta = if rate > 0.0 {
            (left as f64 / rate).ceil() as u64
        } else {
            0
        };
        (rate, eta)
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The closing summary; also the `--summary` JSON document.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub run_id: String,
    pub outcome: String,
    pub exit_code: i32,
    pub rows: u64,
    pub already_done: u64,
    pub registered_now: u64,
    pub recovered: u64,
    pub adopted: u64,
    pub failed: u64,
    pub invalid: u64,
    pub skipped: u64,
    pub duplicates: u64,
    pub left: u64,
    pub retries: u64,
    pub throttled: u64,
    pub lookups: u64,
    /// Requests sent, in all and per operation (each has its own budget).
    pub requests: u64,
    pub requests_create: u64,
    pub requests_read: u64,
    pub requests_remove: u64,
    pub elapsed_s: f64,
    pub rate_per_s: f64,
    pub ledger: String,
}

impl Summary {
    pub fn render(&self) -> String {
        format!(
            "summary: {outcome} (exit {code})\n  rows {rows}, already done {done}, registered now {now}, \
             recovered {rec}, adopted {adopted}\n  failed {failed}, invalid {invalid}, skipped {skipped}, duplicate rows {dups}, \
             left for the next run {left}\n  retries {retries}, throttled answers {thr}, look-ups {look}\n  \
             requests {req} (creates {creates}, reads {reads}, removals {removes})\n  \
             elapsed {elapsed:.1}s, {rate:.1} registrations/s\n  ledger {ledger}",
            outcome = self.outcome,
            code = self.exit_code,
            rows = self.rows,
            done = self.already_done,
            now = self.registered_now,
            rec = self.recovered,
            adopted = self.adopted,
            failed = self.failed,
            invalid = self.invalid,
            skipped = self.skipped,
            dups = self.duplicates,
            left = self.left,
            retries = self.retries,
            thr = self.throttled,
            look = self.lookups,
            req = self.requests,
            creates = self.requests_create,
            reads = self.requests_read,
            removes = self.requests_remove,
            elapsed = self.elapsed_s,
            rate = self.rate_per_s,
            ledger = self.ledger,
        )
    }
}

/// Writes `contents` to `path` atomically: a temporary file beside it, synced, then renamed.
pub fn write_atomically(path: &std::path::Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_every_figure_the_operator_needs() {
        let s = Summary {
            rows: 40,
            registered_now: 30,
            exit_code: 1,
            ..Summary::default()
        };
        let text = s.render();
        for word in [
            "rows 40",
            "registered now 30",
            "recovered",
            "failed",
            "invalid",
            "skipped",
            "retries",
            "throttled",
            "elapsed",
            "registrations/s",
            "exit 1",
        ] {
            assert!(text.contains(word), "missing {word}: {text}");
        }
    }

    #[test]
    fn atomic_writes_leave_no_temporary_file_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        write_atomically(&path, b"{}").unwrap();
        write_atomically(&path, b"{\"a\":1}").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"a\":1}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
