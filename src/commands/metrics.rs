//! The cron kit's metrics: a Prometheus text-format file for node_exporter's textfile collector,
//! written atomically (a temporary file beside it, then a rename) so a scrape never sees half.
//!
//! Every figure describes the latest `run` or `verify`, so every metric is a gauge: a new run
//! starting again from zero is not a counter reset.

use std::fmt::Write as _;
use std::path::Path;

use crate::report::Summary;

/// One sample: a metric, its labels (most have none) and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    pub name: &'static str,
    pub help: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

const fn gauge(name: &'static str, help: &'static str, value: f64) -> Metric {
    Metric {
        name,
        help,
        labels: Vec::new(),
        value,
    }
}

/// The text exposition format: `# HELP` and `# TYPE … gauge` once per metric name (the samples
/// of one name are next to each other), then each sample with its labels.
pub fn render(metrics: &[Metric]) -> String {
    let mut out = String::new();
    let mut last = "";
    for m in metrics {
        if m.name != last {
            let _ = writeln!(out, "# HELP {} {}", m.name, escape_help(m.help));
            let _ = writeln!(out, "# TYPE {} gauge", m.name);
            last = m.name;
        }
        let labels: Vec<String> = m
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
            .collect();
        let labels = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", labels.join(","))
        };
        let _ = writeln!(out, "{}{labels} {}", m.name, format_value(m.value));
    }
    out
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `face_enroll_last_run_refused{by, reason}`: what was refused in the last run, by the service
/// (by its `Code`: a small set, unlike its messages) or by pre-flight (by kind), so an alert
/// can tell "no face" from "not reachable" without parsing logs.
fn refused(summary: &Summary) -> Vec<Metric> {
    let by = |who: &'static str, groups: &crate::report::Groups| {
        groups
            .iter()
            .map(|(reason, count)| Metric {
                name: "face_enroll_last_run_refused",
                help: "Images refused in the last run, by who refused them (service, or preflight before sending) and why (the service's Code, or pre-flight's kind).",
                labels: vec![("by", who.to_string()), ("reason", reason.clone())],
                value: *count as f64,
            })
            .collect::<Vec<_>>()
    };
    let mut metrics = by("service", &summary.refused_by_code);
    metrics.extend(by("preflight", &summary.preflight_refused));
    metrics
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

/// Writes the metrics to `path` atomically.
pub fn write(path: &Path, metrics: &[Metric]) -> std::io::Result<()> {
    // Not personal data, and node_exporter may run as another user: readable by all.
    crate::report::write_output(path, render(metrics).as_bytes(), 0o644)
}

/// Writes, and says on stderr (without failing the command) when it cannot.
pub fn write_or_warn(path: &Path, metrics: &[Metric]) {
    if let Err(e) = write(path, metrics) {
        crate::say!(
            "face-enroll: cannot write the metrics file {}: {e}",
            path.display()
        );
    }
}

fn now_seconds() -> f64 {
    crate::clock::now_utc().unix_timestamp() as f64
}

/// The figures of a finished `run`.
pub fn for_run(summary: &Summary) -> Vec<Metric> {
    let mut metrics = run_ending(summary.exit_code);
    metrics.extend(row_gauges(summary));
    metrics.extend(removal_gauges(summary));
    metrics.extend(request_gauges(summary));
    metrics.extend(refused(summary));
    metrics
}

/// The last run's time, and what became of its rows and how it got there.
fn row_gauges(summary: &Summary) -> [Metric; 15] {
    let n = |v: u64| v as f64;
    [
        gauge(
            "face_enroll_last_run_duration_seconds",
            "Wall-clock duration of the last run.",
            summary.elapsed_s,
        ),
        gauge(
            "face_enroll_last_run_rows",
            "Rows in the manifest of the last run.",
            n(summary.rows),
        ),
        gauge(
            "face_enroll_last_run_registered",
            "Images registered by the last run.",
            n(summary.registered_now),
        ),
        gauge(
            "face_enroll_last_run_recovered",
            "Images found already on the server after an unknown outcome and recorded, in the last run.",
            n(summary.recovered),
        ),
        gauge(
            "face_enroll_last_run_already_registered",
            "Manifest images the ledger already recorded as registered when the last run started.",
            n(summary.already_done),
        ),
        gauge(
            "face_enroll_last_run_failed",
            "Images whose last record is failed after the last run.",
            n(summary.failed),
        ),
        gauge(
            "face_enroll_last_run_invalid",
            "Invalid manifest rows in the last run.",
            n(summary.invalid),
        ),
        gauge(
            "face_enroll_last_run_preflight_refused",
            "Images --preflight kept back in the last run because the service would refuse them (among the invalid rows).",
            n(summary.preflight_refused.values().sum()),
        ),
        gauge(
            "face_enroll_last_run_skipped",
            "Images skipped in the last run because their person is over the 10-face limit.",
            n(summary.skipped),
        ),
        gauge(
            "face_enroll_last_run_left",
            "Images left for the next run (deadline, interruption).",
            n(summary.left),
        ),
        gauge(
            "face_enroll_last_run_retries",
            "Retried requests in the last run.",
            n(summary.retries),
        ),
        gauge(
            "face_enroll_last_run_throttled",
            "Throttling answers received in the last run.",
            n(summary.throttled),
        ),
        gauge(
            "face_enroll_last_run_lookups",
            "Look-ups made in the last run to settle unknown outcomes.",
            n(summary.lookups),
        ),
        gauge(
            "face_enroll_last_run_links_renewed",
            "Creates sent once more with an image link signed anew after a refused download.",
            n(summary.links_renewed),
        ),
        gauge(
            "face_enroll_last_run_adopted",
            "Images found on the server and adopted instead of being sent (reconciliation).",
            n(summary.adopted),
        ),
    ]
}

/// What the last run removed, or could not.
fn removal_gauges(summary: &Summary) -> [Metric; 8] {
    let n = |v: u64| v as f64;
    [
        gauge(
            "face_enroll_last_run_removed",
            "Images removed in the last run (a sync's removals, removals settled by a read).",
            n(summary.removed),
        ),
        gauge(
            "face_enroll_last_run_removals_left",
            "Removals (a sync's, unsettled images') left for the next run; _left counts rows only.",
            n(summary.removals_left),
        ),
        gauge(
            "face_enroll_last_run_entities_deleted",
            "ICE: entities a sync emptied and deleted in the last run.",
            n(summary.entities_deleted),
        ),
        gauge(
            "face_enroll_last_run_already_gone",
            "Images a sync was to remove that were gone already (not counted as removed).",
            n(summary.already_gone),
        ),
        gauge(
            "face_enroll_last_run_copies_removed",
            "Late copies removed in the last run (a request that landed after its look-up).",
            n(summary.copies_removed),
        ),
        gauge(
            "face_enroll_last_run_removals_failed",
            "Removals the service refused in the last run (the image stayed).",
            n(summary.removal_failed),
        ),
        gauge(
            "face_enroll_last_run_removals_refused_by_max_delete",
            "1 when the last run's sync planned more removals than --max-delete and made none.",
            n(u64::from(
                summary.removals_refused_because == Some(crate::plan::SyncRefusal::MaxDelete),
            )),
        ),
        gauge(
            "face_enroll_last_run_removals_refused_for_invalid_rows",
            "1 when the last run's sync made none of its removals because the manifest has invalid rows.",
            n(u64::from(
                summary.removals_refused_because == Some(crate::plan::SyncRefusal::InvalidRows),
            )),
        ),
    ]
}

/// The requests the last run sent, and its rows not registered.
fn request_gauges(summary: &Summary) -> [Metric; 6] {
    let n = |v: u64| v as f64;
    [
        gauge(
            "face_enroll_last_run_requests_create",
            "Create requests sent in the last run (RegisterCustomFace / CreateRecognitionSample).",
            n(summary.requests_create),
        ),
        gauge(
            "face_enroll_last_run_requests_read",
            "Listing requests sent in the last run (look-ups and reconciliation).",
            n(summary.requests_read),
        ),
        gauge(
            "face_enroll_last_run_requests_remove",
            "Removal requests sent in the last run.",
            n(summary.requests_remove),
        ),
        gauge(
            "face_enroll_last_run_new_rejections",
            "Rows the last run could not register that no earlier run had recorded (exit 1).",
            n(summary.new_rejections),
        ),
        gauge(
            "face_enroll_last_run_known_rejections",
            "Rows not registered that earlier runs had already recorded (exit 0 unless --strict).",
            n(summary.known_rejections),
        ),
        gauge(
            "face_enroll_last_run_open_rejections",
            "Manifest rows not registered because the service refused them or they are invalid or over the limit, new or recorded by earlier runs: stays until the rows are fixed.",
            n(summary.new_rejections + summary.known_rejections),
        ),
    ]
}

/// A `run` that ended before it could count anything (bad flags, locked ledger, bad manifest).
pub fn for_run_failure(exit_code: i32) -> Vec<Metric> {
    run_ending(exit_code)
}

/// When the last run ended and how: the two metrics every `run` writes.
fn run_ending(exit_code: i32) -> Vec<Metric> {
    vec![
        gauge(
            "face_enroll_last_run_timestamp_seconds",
            "Unix time at which the last run ended.",
            now_seconds(),
        ),
        gauge(
            "face_enroll_last_run_exit_code",
            "Exit code of the last run (0 done, 1 rows not registered, 2 usage, 3 service refused, 4 locked, 5 stopped early, 6 unreachable, 7 ledger failed, 8 sync removed nothing, 130 interrupted).",
            f64::from(exit_code),
        ),
    ]
}

/// What `verify` found, in total over every library it read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct VerifyFigures {
    pub exit_code: i32,
    pub libraries: u64,
    pub libraries_unreadable: u64,
    pub server_faces: u64,
    pub missing: u64,
    pub duplicate_images: u64,
    pub extra_copies: u64,
    pub orphans: u64,
    /// With `--accept-foreign`: other tools' faces in the manifest's libraries, not orphans.
    pub foreign: u64,
    pub vanished: u64,
    pub persons_over_limit: u64,
    /// Manifest images the service refused (ledger `failed`, not retryable): not on the server,
    /// as the ledger says, so not counted as missing.
    pub refused: u64,
    /// Manifest images the ledger records as removed (rolled back, or removed by a repair):
    /// not on the server, as agreed; the next run registers them again.
    pub removed_in_ledger: u64,
}

/// The figures of a finished `verify`.
pub fn for_verify(f: &VerifyFigures) -> Vec<Metric> {
    let n = |v: u64| v as f64;
    vec![
        gauge(
            "face_enroll_verify_timestamp_seconds",
            "Unix time at which the last verify ended.",
            now_seconds(),
        ),
        gauge(
            "face_enroll_verify_exit_code",
            "Exit code of the last verify (0 agree, 1 disagree, 2 usage, 3 service refused, 4 locked).",
            f64::from(f.exit_code),
        ),
        gauge(
            "face_enroll_verify_libraries",
            "Libraries read from the server by the last verify.",
            n(f.libraries),
        ),
        gauge(
            "face_enroll_verify_libraries_unreadable",
            "Libraries the last verify could not read (retries ran out).",
            n(f.libraries_unreadable),
        ),
        gauge(
            "face_enroll_verify_server_faces",
            "Faces on the server in the libraries read.",
            n(f.server_faces),
        ),
        gauge(
            "face_enroll_verify_missing",
            "Manifest images missing on the server.",
            n(f.missing),
        ),
        gauge(
            "face_enroll_verify_duplicate_images",
            "Images registered more than once (same person, same URL).",
            n(f.duplicate_images),
        ),
        gauge(
            "face_enroll_verify_extra_copies",
            "Extra copies of duplicated images (what --prune-duplicates would remove).",
            n(f.extra_copies),
        ),
        gauge(
            "face_enroll_verify_orphans",
            "Faces on the server the ledger does not know.",
            n(f.orphans),
        ),
        gauge(
            "face_enroll_verify_foreign",
            "With --accept-foreign: faces other tools put in the manifest's libraries (not counted as orphans).",
            n(f.foreign),
        ),
        gauge(
            "face_enroll_verify_vanished",
            "FaceIds the ledger records as registered that the server no longer has.",
            n(f.vanished),
        ),
        gauge(
            "face_enroll_verify_persons_over_limit",
            "Persons on the server with more than 10 faces.",
            n(f.persons_over_limit),
        ),
        gauge(
            "face_enroll_verify_refused",
            "Manifest images the service refused (failed, not retryable); not counted as missing.",
            n(f.refused),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_has_help_type_and_one_sample_line() {
        let text = render(&for_run(&Summary {
            registered_now: 37,
            exit_code: 1,
            elapsed_s: 2.5,
            ..Summary::default()
        }));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len() % 3, 0);
        for chunk in lines.chunks(3) {
            let name = chunk[2].split(' ').next().unwrap();
            assert_eq!(chunk[0].split(' ').nth(2), Some(name));
            assert_eq!(chunk[1], format!("# TYPE {name} gauge"));
        }
        assert!(text.contains("\nface_enroll_last_run_registered 37\n"));
        assert!(text.contains("\nface_enroll_last_run_duration_seconds 2.5\n"));
        assert!(text.contains("\nface_enroll_last_run_exit_code 1\n"));
    }

    #[test]
    fn refusals_are_one_labelled_metric_by_who_refused_and_why() {
        let mut summary = Summary::default();
        summary
            .refused_by_code
            .insert("InvalidParameter.ImageUrl".into(), 2);
        summary.preflight_refused.insert("too small".into(), 1);
        summary.preflight_refused.insert("odd \"kind\"".into(), 1);
        let text = render(&for_run(&summary));
        assert_eq!(
            text.matches("# TYPE face_enroll_last_run_refused gauge")
                .count(),
            1
        );
        assert!(text.contains(
            "\nface_enroll_last_run_refused{by=\"service\",reason=\"InvalidParameter.ImageUrl\"} 2\n"
        ));
        assert!(
            text.contains(
                "\nface_enroll_last_run_refused{by=\"preflight\",reason=\"too small\"} 1\n"
            )
        );
        assert!(text.contains(
            "\nface_enroll_last_run_refused{by=\"preflight\",reason=\"odd \\\"kind\\\"\"} 1\n"
        ));
        // Nothing refused: no sample of it.
        assert!(!render(&for_run(&Summary::default())).contains("last_run_refused{"));
    }

    #[test]
    fn every_metric_is_named_in_the_formats_document() {
        let formats = include_str!("../../doc/FORMATS.md");
        let mut summary = Summary::default();
        summary.refused_by_code.insert("X".into(), 1);
        summary.preflight_refused.insert("too small".into(), 1);
        let all = for_run(&summary)
            .into_iter()
            .chain(for_verify(&VerifyFigures::default()))
            .chain(for_run_failure(1));
        for metric in all {
            assert!(
                formats.contains(&format!("`{}`", metric.name))
                    || formats.contains(&format!("`{}`,", metric.name)),
                "{} is not in doc/FORMATS.md",
                metric.name
            );
        }
    }

    #[test]
    fn special_values_use_the_exposition_spelling() {
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(-3.0), "-3");
        assert_eq!(format_value(0.25), "0.25");
    }
}
