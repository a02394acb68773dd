//! What the operator sees: a progress bar on a terminal, a log line every 10 s under cron, and
//! the closing summary (stderr, and JSON with `--summary`).

mod output;

pub use output::{
    refuse_clobbering, write_atomically, write_output, write_output_with, write_private_with,
};

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
    /// `removed` records written (rollback, repair, sync).
    pub removed_now: u64,
    /// Late copies of images removed (the same image under a second id).
    pub copies_removed: u64,
    /// Removals refused as not found that a read confirmed: gone before this run.
    pub already_gone: u64,
    /// ICE entities a sync emptied and deleted.
    pub entities_deleted: u64,
    /// Removals the service refused while the image stayed.
    pub removal_failed: u64,
    /// Unsettled images no longer in the manifest, settled by a read.
    pub settled: u64,
    pub left: u64,
    /// Removals not finished in this run (left for the next).
    pub removals_left: u64,
    pub retries: u64,
    pub throttled: u64,
    pub lookups: u64,
    /// Rows the service refused for good in this run, for the rejects file.
    #[serde(skip)]
    pub failed_rows: Vec<crate::plan::Rejected>,
    /// The service's `Code` of every image it refused for good in this run.
    pub refused_codes: Groups,
    /// Of those, images the service could not download through a link the user signed (it
    /// may have expired before the request was sent).
    pub signed_links_refused: u64,
    /// The last `Code` of every image whose retries ran out (sent again by the next run).
    pub exhausted_codes: Groups,
}

/// Counts by cause (a service `Code`, a column), in name order so two runs print alike.
pub type Groups = std::collections::BTreeMap<String, u64>;

/// `InternalError ×12, HTTP 502 ×2`: the largest group first, then by name.
pub fn render_groups(groups: &Groups) -> String {
    let mut sorted: Vec<(&String, &u64)> = groups.iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    sorted
        .iter()
        .map(|(code, n)| format!("{} ×{n}", display_code(code)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A code as an operator reads it: `HTTP502` is `HTTP 502`.
fn display_code(code: &str) -> String {
    match code.strip_prefix("HTTP") {
        Some(status) if !status.is_empty() && status.bytes().all(|b| b.is_ascii_digit()) => {
            format!("HTTP {status}")
        }
        _ => code.to_string(),
    }
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
        let bar = (mode == ProgressMode::Bar && total > 0)
            .then(|| new_bar(total, ProgressDrawTarget::stderr()));
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
            show(bar, figures, rate, eta);
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

/// The bar on `target`, drawn to fit the terminal's width whatever it is: the bar and the
/// counts on one line (the bar takes what the counts leave), the figures on a second line cut
/// at the edge. A fixed-width bar with the figures beside it wrapped on a 60-column terminal
/// and left a trail of half-drawn lines.
fn new_bar(total: u64, target: ProgressDrawTarget) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), target);
    let style = ProgressStyle::with_template("{wide_bar:.cyan/blue} {pos}/{len}\n{wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// The bar's position and figures, the most urgent first (the line is cut at the edge).
fn show(bar: &ProgressBar, figures: &Figures, rate: f64, eta: u64) {
    bar.set_position(figures.done());
    bar.set_message(format!(
        "failed {} · {rate:.1}/s · eta {eta}s · throttled {} · retries {}",
        figures.failed_now, figures.throttled, figures.retries
    ));
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
    /// Creates sent once more with an image link signed anew, after the service could not
    /// download the image through the link signed for the first attempt.
    pub links_renewed: u64,
    /// Images an earlier run recorded refused through a link the user signed, sent again
    /// because the manifest now has a new link for them.
    pub relinked: u64,
    /// Requests sent, in all and per operation (each has its own budget).
    pub requests: u64,
    pub requests_create: u64,
    pub requests_read: u64,
    pub requests_remove: u64,
    pub elapsed_s: f64,
    pub rate_per_s: f64,
    pub ledger: String,
    /// Rows not registered that this run found: refused by the service now, or invalid / over
    /// the limit with no earlier record saying so. Any of them makes the exit 1.
    pub new_rejections: u64,
    /// Rows not registered that earlier runs already recorded (the same refusal again).
    pub known_rejections: u64,
    /// Images the service refused in this run, by its `Code`.
    pub refused_by_code: Groups,
    /// The same, by `Code: Message`: one code covers refusals as different as "no face", "link
    /// expired" and "too large", which only the message tells apart.
    pub refused_by_reason: Groups,
    /// Invalid rows, by the column to blame (`row` when none is).
    pub invalid_by_column: Groups,
    /// `--preflight`: images not sent because pre-flight found the service would refuse them,
    /// by what is wrong (`not an image`, `too small`, …); they are among the invalid rows.
    pub preflight_refused: Groups,
    /// Images whose retries ran out in this run, by the last `Code` (exit 5).
    pub retries_ran_out: Groups,
    /// Why an exit-5 run stopped: `deadline` (--max-duration) or `retries ran out`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_because: Option<String>,
    /// What the operator can do about what happened (e.g. throttling: lower --qps).
    pub hints: Vec<String>,
    /// `--strict`: any row not registered makes the exit 1, known or not.
    #[serde(skip)]
    pub strict: bool,
    /// `--sync` was asked for.
    pub sync: bool,
    /// Images removed: dropped from the manifest by a sync, or settled as removed.
    pub removed: u64,
    /// Images a sync was to remove that were gone already (the service said not found, and a
    /// read agreed): not counted in `removed`.
    pub already_gone: u64,
    /// ICE: entities a sync emptied, then deleted.
    pub entities_deleted: u64,
    /// Removals (a sync's, unsettled images') left for the next run; `left` counts rows only.
    pub removals_left: u64,
    /// Removals a sync planned (before `--max-delete` was applied).
    pub removals_planned: u64,
    /// A sync made none of its removals (exit 8): more were planned than `--max-delete`
    /// allows, or the manifest has invalid rows.
    pub removals_refused: bool,
    /// Why, when it did not: `max_delete` or `invalid_rows`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removals_refused_because: Option<crate::plan::SyncRefusal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_delete: Option<u64>,
    /// Removals the service refused while the image stayed on the server.
    pub removal_failed: u64,
    /// Late copies removed: the same image under a second id, left by a request that landed
    /// after the look-up that found nothing.
    pub copies_removed: u64,
    /// Images whose outcome was unknown and that the manifest no longer names, read back and
    /// found not on the server.
    pub settled: u64,
    /// `--upload-to`: what became of the manifest's local photos.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uploads: Option<Uploads>,
    /// What pre-flight read before anything was sent, when it read anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preflight: Option<Preflight>,
}

/// Pre-flight's figures: images read and judged before the run sent anything.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Preflight {
    pub checked: u64,
    /// Of those, unchanged since an earlier run read them (a HEAD, or a key that names its
    /// content): that run's verdict stands and nothing was read.
    pub unchanged: u64,
    /// Kept back: the service would refuse them (`preflight_refused` says why).
    pub refused: u64,
    /// Sent, with a warning.
    pub warned: u64,
    pub bytes_read: u64,
    /// From the first read to the last verdict, before the first create.
    pub seconds: f64,
}

/// The upload stage's figures (`run --upload-to`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Uploads {
    /// Local files the manifest names.
    pub files: u64,
    /// Files unchanged since an earlier run uploaded them: neither read nor uploaded again.
    pub unchanged: u64,
    /// Files whose content this run stored in OSS (two files of the same bytes: one object,
    /// both counted). Every figure here counts files: `files` is `unchanged + uploaded +
    /// already_there + refused + stopped`.
    pub uploaded: u64,
    /// Files whose content OSS already held (409: the same bytes under the same key).
    pub already_there: u64,
    /// Files not uploaded: not a photo (their rows are invalid), or the upload failed (their
    /// rows are failed and go again with the next run).
    pub refused: u64,
    /// Files not uploaded because the run stopped first (Ctrl-C, `--max-duration`, an
    /// outage): their rows go again with the next run.
    pub stopped: u64,
    /// Seconds spent naming the files by their content, before the run planned.
    pub naming_s: f64,
    /// Seconds from the stage's start to its last upload, alongside registration.
    pub uploading_s: f64,
}

/// Invalid rows by the column their reason names (`category_id: …`), else `row`.
pub fn invalid_by_column(rejected: &[crate::plan::Rejected]) -> Groups {
    let mut groups = Groups::new();
    let invalid = rejected
        .iter()
        .filter(|r| r.status == crate::ledger::Status::Invalid);
    for r in invalid {
        let column = r
            .reason
            .split_once(':')
            .map(|(c, _)| c.trim())
            .filter(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
            .unwrap_or("row");
        *groups.entry(column.to_string()).or_insert(0) += 1;
    }
    groups
}

impl Summary {
    /// The closing summary as text: rows, removals, causes, links, traffic, hints.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut out = self.render_rows();
        self.render_removals(&mut out);
        for line in self.causes() {
            let _ = write!(out, "\n  {line}");
        }
        self.render_links(&mut out);
        self.render_traffic(&mut out);
        for hint in &self.hints {
            let _ = write!(out, "\n  {hint}");
        }
        out
    }

    /// The outcome and what became of the rows.
    fn render_rows(&self) -> String {
        format!(
            "summary: {outcome} (exit {code})\n  rows {rows}, already done {done}, registered now {now}, \
             recovered {rec}, adopted {adopted}\n  failed {failed}, invalid {invalid}, skipped {skipped}, duplicate rows {dups}, \
             left for the next run {left}",
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
        )
    }

    /// What was removed, when a sync ran or anything was removed or settled.
    fn render_removals(&self, out: &mut String) {
        use std::fmt::Write as _;
        if self.sync
            || self.removed
                + self.copies_removed
                + self.settled
                + self.already_gone
                + self.removals_left
                > 0
        {
            let _ = write!(
                out,
                "\n  removed {removed}{planned}, already gone {gone}, removals refused by the \
                 service {failed}, late copies removed {copies}, unknown outcomes settled {settled}",
                removed = self.removed,
                gone = self.already_gone,
                planned = match (self.sync, self.removals_refused_because) {
                    (true, Some(crate::plan::SyncRefusal::MaxDelete)) => format!(
                        " (a sync planned {} removals, more than --max-delete {}: none made)",
                        self.removals_planned,
                        self.max_delete.unwrap_or(0)
                    ),
                    (true, Some(crate::plan::SyncRefusal::InvalidRows)) => format!(
                        " (a sync planned {} removals: none made, the manifest has invalid rows)",
                        self.removals_planned
                    ),
                    (true, None) => format!(" of {} planned by the sync", self.removals_planned),
                    _ => String::new(),
                },
                failed = self.removal_failed,
                copies = self.copies_removed,
                settled = self.settled,
            );
            if self.removals_left > 0 {
                let _ = write!(
                    out,
                    ", removals left for the next run {}",
                    self.removals_left
                );
            }
            if self.entities_deleted > 0 {
                let _ = write!(out, ", emptied entities deleted {}", self.entities_deleted);
            }
        }
    }

    /// Images sent again through links signed anew.
    fn render_links(&self, out: &mut String) {
        use std::fmt::Write as _;
        if self.relinked > 0 {
            let _ = write!(
                out,
                "\n  sent again: refused earlier through a link that has since been signed anew {}",
                self.relinked
            );
        }
        if self.links_renewed > 0 {
            let _ = write!(
                out,
                "\n  links signed anew after a refused download {}",
                self.links_renewed
            );
        }
    }

    /// Retries, requests, time and rate, and the ledger.
    fn render_traffic(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = write!(
            out,
            "\n  retries {retries}, throttled answers {thr}, look-ups {look}\n  \
             requests {req} (creates {creates}, reads {reads}, removals {removes})\n  \
             elapsed {elapsed:.1}s, {rate:.1} registrations/s\n  ledger {ledger}",
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
        );
    }

    /// The lines that say why rows were not registered, one per cause.
    pub fn causes(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let refused = if self.refused_by_reason.is_empty() {
            &self.refused_by_code
        } else {
            &self.refused_by_reason
        };
        if !refused.is_empty() {
            lines.push(format!(
                "refused by the service: {}",
                render_groups(refused)
            ));
        }
        if let Some(u) = &self.uploads {
            lines.push(format!(
                "local photos: {} files, {} uploaded, {} already in OSS, {} unchanged, {} not \
                 uploaded{} (named in {:.1} s, uploaded in {:.1} s)",
                u.files,
                u.uploaded,
                u.already_there,
                u.unchanged,
                u.refused,
                if u.stopped > 0 {
                    format!(", {} left when the run stopped", u.stopped)
                } else {
                    String::new()
                },
                u.naming_s,
                u.uploading_s
            ));
        }
        if !self.preflight_refused.is_empty() {
            lines.push(format!(
                "refused by pre-flight, not sent: {}",
                render_groups(&self.preflight_refused)
            ));
        }
        if !self.invalid_by_column.is_empty() {
            let by: Vec<String> = self
                .invalid_by_column
                .iter()
                .map(|(column, n)| format!("{column} ×{n}"))
                .collect();
            lines.push(format!("invalid rows by column: {}", by.join(", ")));
        }
        if self.skipped > 0 {
            lines.push(format!(
                "over the {}-image limit: {}",
                crate::plan::MAX_FACES_PER_PERSON,
                self.skipped
            ));
        }
        if !self.retries_ran_out.is_empty() {
            lines.push(format!(
                "retries ran out on: {} (sent again by the next run)",
                render_groups(&self.retries_ran_out)
            ));
        }
        if self.known_rejections > 0 {
            lines.push(format!(
                "known rejections {} (recorded by earlier runs; `status --failed` lists them)",
                self.known_rejections
            ));
        }
        lines
    }

    /// One line for `-q` on a non-zero ending: the outcome and its main cause.
    pub fn one_line(&self) -> String {
        let mut line = format!("face-enroll: {} (exit {})", self.outcome, self.exit_code);
        let causes = self.causes();
        if !causes.is_empty() {
            line.push_str(": ");
            line.push_str(&causes.join("; "));
        }
        let _ = std::fmt::Write::write_fmt(
            &mut line,
            format_args!("; left for the next run {}", self.left),
        );
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A terminal `width` columns wide that keeps every line drawn on it.
    #[derive(Debug, Clone)]
    struct Screen {
        width: u16,
        drawn: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    }

    impl Screen {
        fn keep(&self, s: &str) -> std::io::Result<()> {
            self.drawn.lock().unwrap().push(s.to_string());
            Ok(())
        }
    }

    impl indicatif::TermLike for Screen {
        fn width(&self) -> u16 {
            self.width
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.keep(s)
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            self.keep(s)
        }
        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Columns a drawn line takes: characters outside escape sequences.
    fn columns(line: &str) -> usize {
        let mut width = 0;
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                // CSI: ESC [ parameters, ended by a letter.
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else if c != '\r' {
                width += 1;
            }
        }
        width
    }

    #[test]
    fn the_bar_fits_a_60_column_terminal_and_a_wide_one_with_large_figures() {
        for width in [60u16, 40, 200] {
            let screen = Screen {
                width,
                drawn: Default::default(),
            };
            let bar = new_bar(
                1_000_000,
                ProgressDrawTarget::term_like(Box::new(screen.clone())),
            );
            let figures = Figures {
                total: 1_000_000,
                registered_now: 987_655,
                failed_now: 12_345,
                throttled: 67_890,
                retries: 123_456,
                ..Figures::default()
            };
            show(&bar, &figures, 1234.5, 86_400);
            bar.tick();
            let drawn = screen.drawn.lock().unwrap().clone();
            let lines: Vec<&str> = drawn.iter().flat_map(|d| d.split('\n')).collect();
            assert!(
                lines.iter().any(|l| l.contains("1000000/1000000")),
                "{width}: {drawn:?}"
            );
            assert!(
                lines.iter().any(|l| l.contains("failed 12345")),
                "{width}: {drawn:?}"
            );
            for line in lines {
                assert!(
                    columns(line) <= usize::from(width),
                    "{width} columns, {} drawn: {line:?}",
                    columns(line)
                );
            }
        }
    }

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
    fn refusals_are_grouped_by_code_and_message_so_one_code_with_two_causes_reads_as_two() {
        let mut s = Summary::default();
        s.refused_by_code
            .insert("InvalidParameter.ImageUrl".into(), 3);
        let causes = s.causes();
        assert_eq!(
            causes[0],
            "refused by the service: InvalidParameter.ImageUrl ×3"
        );
        for (reason, n) in [
            (
                "InvalidParameter.ImageUrl: ImageUrl: exactly one frontal face required.",
                2,
            ),
            ("InvalidParameter.ImageUrl: the link has expired", 1),
        ] {
            s.refused_by_reason.insert(reason.into(), n);
        }
        assert_eq!(
            s.causes()[0],
            "refused by the service: InvalidParameter.ImageUrl: ImageUrl: exactly one frontal \
             face required. ×2, InvalidParameter.ImageUrl: the link has expired ×1"
        );
    }

    #[test]
    fn causes_group_codes_largest_first_and_spell_http_statuses() {
        let mut codes = Groups::new();
        codes.insert("HTTP502".into(), 2);
        codes.insert("InternalError".into(), 12);
        codes.insert("Timeout".into(), 1);
        assert_eq!(
            render_groups(&codes),
            "InternalError ×12, HTTP 502 ×2, Timeout ×1"
        );
    }
}
