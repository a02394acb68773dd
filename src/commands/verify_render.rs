//! `verify`'s report as text: per library, then in total, then the repair plan if one was asked
//! for. Long lists show their first entries; `--json` has them all.

use std::fmt::Write as _;

use crate::commands::drift::Drift;
use serde::Serialize;

use crate::commands::metrics::VerifyFigures;
use crate::commands::verify_repair::RepairPlan;

/// The whole report, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub manifest: String,
    pub ledger: String,
    pub endpoint: String,
    /// `mts` or `ice`.
    pub target: &'static str,
    /// Image records of the ledger looked at (last record per image) and how many of its
    /// registered images the server holds with the recorded id.
    pub checked: u64,
    pub agree: u64,
    pub libraries: Vec<Drift>,
    pub totals: VerifyFigures,
    pub invalid_rows: u64,
    pub other_target_records_not_verified: u64,
    pub repair: Option<RepairPlan>,
}

/// Entries shown per list.
const SHOWN: usize = 20;

pub fn render(r: &VerifyReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "verify {} against {} (ledger {}, target {})",
        r.manifest, r.endpoint, r.ledger, r.target
    );
    let _ = writeln!(
        out,
        "{} images checked, {} agree with the server",
        r.checked, r.agree
    );
    for d in &r.libraries {
        library(&mut out, d);
    }
    let t = &r.totals;
    let _ = writeln!(
        out,
        "total: {} ({} unreadable), {} on the server",
        crate::say::count(t.libraries, "library", "libraries"),
        t.libraries_unreadable,
        crate::say::count(t.server_faces, "face", "faces")
    );
    let _ = writeln!(
        out,
        "  missing {}, registered more than once {} ({} extra copies), orphans {}, vanished {}, persons over 10 faces {}",
        t.missing, t.duplicate_images, t.extra_copies, t.orphans, t.vanished, t.persons_over_limit
    );
    if t.foreign > 0 {
        let _ = writeln!(
            out,
            "  foreign {} (other tools' faces in these libraries, accepted)",
            t.foreign
        );
    }
    if t.refused > 0 {
        let _ = writeln!(
            out,
            "  refused by the service {} (not missing: the ledger records the refusal; \
             `status --failed` lists them)",
            t.refused
        );
    }
    if t.removed_in_ledger > 0 {
        let _ = writeln!(
            out,
            "  removed in the ledger {} (not missing: rolled back or removed; the next run \
             registers them again)",
            t.removed_in_ledger
        );
    }
    if r.other_target_records_not_verified > 0 {
        let _ = writeln!(
            out,
            "  {} ledger records of the other target not verified (pass --target to check them)",
            r.other_target_records_not_verified
        );
    }
    let verdict = if t.exit_code == 0 {
        "the server, the manifest and the ledger agree"
    } else {
        "they disagree"
    };
    let _ = writeln!(out, "result: {verdict} (exit {})", t.exit_code);
    if let Some(plan) = &r.repair {
        repair(&mut out, plan);
    }
    out
}

fn library(out: &mut String, d: &Drift) {
    if let Some(error) = &d.error {
        let _ = writeln!(out, "library {}: could not be read: {error}", d.library);
        return;
    }
    let _ = writeln!(
        out,
        "library {}: {} faces on the server, {} manifest images expected{}",
        d.library,
        d.server_faces,
        d.expected,
        if d.over_limit_in_manifest > 0 {
            format!(
                " ({} more over the 10-face limit, never sent)",
                d.over_limit_in_manifest
            )
        } else {
            String::new()
        }
    );
    if d.agrees() {
        let _ = writeln!(out, "  agrees");
        foreign(out, d);
        return;
    }
    list(out, "missing on the server", &d.missing, |m| {
        let status = m.ledger_status.unwrap_or("not in the ledger");
        format!(
            "line {}: {} {} (ledger: {status})",
            m.line, m.person_id, m.image_url
        )
    });
    list(out, "registered more than once", &d.duplicates, |x| {
        format!(
            "{} {}: keep {}, extra {}",
            x.person_id,
            x.image_url,
            x.keep,
            x.extra.join(" ")
        )
    });
    list(
        out,
        "orphans (on the server, unknown to the ledger)",
        &d.orphans,
        |o| {
            let matched = match o.line {
                Some(line) => format!("matches manifest line {line}"),
                None => "not in the manifest".into(),
            };
            let url = o.image_url.as_deref().unwrap_or("(no URL)");
            format!("{} {url} id {} ({matched})", o.person_id, o.id.as_str())
        },
    );
    foreign(out, d);
    list(
        out,
        "vanished (in the ledger, gone from the server)",
        &d.vanished,
        |v| format!("{} {} id {}", v.person_id, v.image_url, v.id.as_str()),
    );
    list(out, "persons over 10 faces", &d.persons_over_limit, |p| {
        format!("{}: {} faces", p.person_id, p.faces)
    });
}

/// Other tools' faces, accepted with `--accept-foreign`: listed, but not disagreement.
fn foreign(out: &mut String, d: &Drift) {
    list(
        out,
        "foreign (other tools' faces, accepted with --accept-foreign)",
        &d.foreign,
        |o| {
            let url = o.image_url.as_deref().unwrap_or("(no URL)");
            format!("{} {url} id {}", o.person_id, o.id.as_str())
        },
    );
}

fn list<T>(out: &mut String, title: &str, items: &[T], line: impl Fn(&T) -> String) {
    if items.is_empty() {
        return;
    }
    let _ = writeln!(out, "  {title}: {}", items.len());
    for item in items.iter().take(SHOWN) {
        let _ = writeln!(out, "    {}", line(item));
    }
    if items.len() > SHOWN {
        let _ = writeln!(
            out,
            "    … and {} more (--json lists them all)",
            items.len() - SHOWN
        );
    }
}

fn repair(out: &mut String, plan: &RepairPlan) {
    let _ = writeln!(out, "repair:");
    let _ = writeln!(
        out,
        "  adopt {} orphan(s) matching manifest rows: record them as registered (recovered)",
        plan.adopt.len()
    );
    let _ = writeln!(
        out,
        "  mark {} vanished id(s) removed, so the next run registers those images again",
        plan.mark_removed.len()
    );
    if !plan.prune.is_empty() {
        let _ = writeln!(
            out,
            "  remove {} extra copy(ies) by id (the copy the ledger knows, else the first, stays):",
            plan.prune.len()
        );
        for p in plan.prune.iter().take(SHOWN) {
            let _ = writeln!(
                out,
                "    {} / {} {} id {}",
                p.category_id, p.person_id, p.image_url, p.face_id
            );
        }
    }
    let _ = writeln!(
        out,
        "  orphans that match no manifest row are left alone (another tool may own them)"
    );
}
