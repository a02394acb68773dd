//! `run --preflight`: before anything is sent, the images the plan would send are read and
//! checked ([`crate::preflight`]); each one the service would refuse leaves the plan as an
//! `invalid` row with the reason (checked again by the next run: the photo may have been
//! fixed), and a second row with the same bytes for the same person is sent once, like a
//! duplicate row. Images whose earlier outcome is unknown are not screened: they may already be
//! on the server, and are read back as usual.

use std::collections::HashMap;

use crate::api::Client;
use crate::image::library_key;
use crate::ledger::Status;
use crate::plan::{Plan, Rejected};
use crate::preflight::{Checked, Remembered, Report, Settings, sweep};

/// The reason an image pre-flight refused is recorded with (`image_url: …`, the column it is
/// about, as the manifest's own refusals are grouped).
pub(crate) fn reason(checked: &Checked) -> String {
    format!("{REASON_PREFIX}{}", checked.reason())
}

/// How every reason pre-flight gives a row starts.
pub(crate) const REASON_PREFIX: &str = "image_url: pre-flight: ";

/// An `oss://` object (a local photo is one by now): pre-flight reads it by default.
fn is_private(image_url: &str) -> bool {
    image_url
        .get(..6)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("oss://"))
}

/// Whether pre-flight reads `image`: not one whose earlier outcome is unknown (it may be on
/// the server already); with `--preflight` every other one, else `oss://` objects and images
/// whose bytes the manifest names (`image_sha256`: only a read can hold them to it).
fn screened(image: &crate::plan::ImageWork, settings: &Settings) -> bool {
    !image.unsettled
        && (settings.every_image
            || is_private(&image.image.source)
            || crate::manifest::declared_sha256(image.image.key.as_deref()).is_some())
}

/// Whether the plan has an image pre-flight reads (else the ledger is not read for it).
pub(crate) fn has_work(plan: &Plan, settings: &Settings) -> bool {
    plan.jobs
        .iter()
        .any(|job| job.images.iter().any(|image| screened(image, settings)))
}

/// What pre-flight made of a run's plan: the refusals by kind and the figures for the
/// summary, and the verdicts to journal.
#[derive(Default)]
pub(crate) struct Screened {
    pub refused: crate::report::Groups,
    pub figures: Option<crate::report::Preflight>,
    pub verdicts: Vec<(String, crate::preflight::Prior)>,
}

/// Pre-flight's step of a run, when it has anything to read: the ledger's hashes and verdicts,
/// the sweep (a photo the run uploads is read from its file: its object may not be there
/// yet), its report printed unless `-q`, the plan rid of what it refused. An error stops the
/// run before anything is written: OSS refused the credentials, or nothing answered.
pub(crate) async fn run_step(
    config: &super::RunConfig,
    reader: &Client,
    plan: &mut Plan,
) -> Result<Screened, super::RunError> {
    let Some(settings) = config.preflight.as_ref().filter(|s| has_work(plan, s)) else {
        return Ok(Screened::default());
    };
    let started = crate::clock::instant();
    let ledger = config.ledger.clone();
    let recorded = tokio::task::spawn_blocking(move || crate::preflight::recorded(&ledger))
        .await
        .map_err(super::join_err)??;
    let files: HashMap<&str, &std::path::Path> = config
        .uploads
        .iter()
        .flat_map(|prepared| &prepared.queue)
        .map(|pending| (pending.address.as_str(), pending.path()))
        .collect();
    let mut report = screen(reader, plan, &recorded, settings, &files).await;
    if let Some(halt) = report.halt.take() {
        return Err(super::RunError::Stopped {
            exit: halt.exit,
            message: halt.message,
        });
    }
    if report.checked > 0 && !config.quiet {
        crate::say::text(&report.render());
    }
    Ok(Screened {
        figures: Some(crate::report::Preflight {
            checked: report.checked,
            unchanged: report.unchanged,
            refused: report.refused,
            warned: report.warned,
            bytes_read: report.bytes_read,
            seconds: started.elapsed().as_secs_f64(),
        }),
        verdicts: std::mem::take(&mut report.fresh),
        refused: report.refused_by_kind,
    })
}

/// Sweeps the plan's new images and applies the report to the plan. `recorded`: the ledger's
/// registered images' hashes.
/// `files`: the objects the run uploads, by address, with the local file each one will be.
pub(crate) async fn screen(
    client: &Client,
    plan: &mut Plan,
    recorded: &Remembered,
    settings: &Settings,
    files: &HashMap<&str, &std::path::Path>,
) -> Report {
    let items: Vec<sweep::Item<'_>> = plan
        .jobs
        .iter()
        .flat_map(|job| {
            job.images
                .iter()
                .filter(|image| screened(image, settings))
                .map(move |image| sweep::Item {
                    line: image.line,
                    category_id: &job.category_id,
                    person_id: &job.person_id,
                    image_url: &image.image.source,
                    file: files.get(image.image.source.as_str()).copied(),
                    expected_sha256: crate::manifest::declared_sha256(image.image.key.as_deref()),
                })
        })
        .collect();
    let report = sweep::sweep(client, &items, recorded, settings).await;
    apply(plan, &report);
    report
}

/// Takes the refused images out of the plan as `invalid` rows and repeated bytes as duplicate
/// rows; those that pass carry their hash into the ledger. A person left with nothing to do is
/// dropped from the plan.
pub(crate) fn apply(plan: &mut Plan, report: &Report) {
    let by_line: HashMap<u64, &Checked> = report.images.iter().map(|c| (c.line, c)).collect();
    let mut taken_by_library: HashMap<u128, u64> = HashMap::new();
    for job in &mut plan.jobs {
        let mut kept = Vec::with_capacity(job.images.len());
        for mut image in std::mem::take(&mut job.images) {
            let checked = match by_line.get(&image.line) {
                Some(checked) if !image.unsettled => *checked,
                _ => {
                    kept.push(image);
                    continue;
                }
            };
            let refused = checked.refused();
            match checked.same_as {
                _ if refused => {
                    plan.counts.invalid += 1;
                    plan.rejected.push(Rejected {
                        line: image.line,
                        category_id: job.category_id.clone(),
                        person_id: job.person_id.clone(),
                        image: image.image,
                        status: Status::Invalid,
                        reason: reason(checked),
                        already_recorded: image.was_invalid,
                        reported: image.was_reported,
                    });
                }
                Some(first) => {
                    plan.counts.duplicates += 1;
                    plan.duplicate_rows.push((image.line, first));
                }
                None => {
                    image.sha256 = checked.inspection.sha256.clone();
                    kept.push(image);
                    continue;
                }
            }
            plan.counts.to_send -= 1;
            *taken_by_library
                .entry(library_key(&job.category_id))
                .or_default() += 1;
        }
        job.images = kept;
    }
    for (library, adds) in plan.libraries.iter().zip(plan.adds_by_library.iter_mut()) {
        if let Some(taken) = taken_by_library.get(&library_key(library)) {
            *adds = adds.saturating_sub(*taken);
        }
    }
    plan.jobs.retain(|job| {
        let idle = job.images.is_empty()
            && job.drops.is_empty()
            && job.recheck.is_none()
            && !job.needs_lookup;
        if idle && job.reconcile {
            plan.counts.to_reconcile = plan.counts.to_reconcile.saturating_sub(1);
        }
        !idle
    });
    plan.rejected.sort_by_key(|r| r.line);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{ImageWork, PersonJob};
    use crate::preflight::{Finding, Inspection};

    fn image(line: u64, unsettled: bool) -> ImageWork {
        ImageWork {
            line,
            image: crate::image::Image::at(format!("oss://b/{line}.jpg")),
            key: u128::from(line),
            unsettled,
            sha256: None,
            was_invalid: false,
            was_reported: false,
        }
    }

    fn checked(line: u64, findings: Vec<Finding>, same_as: Option<u64>) -> Checked {
        Checked {
            line,
            category_id: "lib".into(),
            person_id: "p".into(),
            image_url: format!("oss://b/{line}.jpg"),
            status: Some(200),
            inspection: Inspection {
                sha256: Some(format!("hash-{line}")),
                findings,
                ..Inspection::default()
            },
            same_as,
        }
    }

    fn plan(images: Vec<ImageWork>) -> Plan {
        let mut job = PersonJob::without_images("lib".into(), "p".into());
        job.reconcile = true;
        let n = images.len() as u64;
        job.images = images;
        let mut plan = Plan {
            jobs: vec![job],
            libraries: vec!["lib".into()],
            adds_by_library: vec![n],
            ..Plan::default()
        };
        plan.counts.to_send = n;
        plan.counts.to_reconcile = 1;
        plan
    }

    #[test]
    fn refused_images_become_invalid_rows_repeats_duplicates_and_the_rest_carry_their_hash() {
        let mut plan = plan(vec![image(2, false), image(3, false), image(4, false)]);
        let report = Report {
            images: vec![
                checked(2, vec![], None),
                checked(
                    3,
                    vec![Finding::error("too small", "too small: 40×40 px")],
                    None,
                ),
                checked(
                    4,
                    vec![Finding::warning("the same photo twice", "…")],
                    Some(2),
                ),
            ],
            ..Report::default()
        };
        apply(&mut plan, &report);
        let job = &plan.jobs[0];
        assert_eq!(job.images.len(), 1);
        assert_eq!(job.images[0].line, 2);
        assert_eq!(job.images[0].sha256.as_deref(), Some("hash-2"));
        assert_eq!(plan.counts.to_send, 1);
        assert_eq!(plan.adds_by_library, vec![1]);
        assert_eq!(plan.counts.invalid, 1);
        assert_eq!(plan.rejected[0].line, 3);
        assert_eq!(plan.rejected[0].status, Status::Invalid);
        assert_eq!(
            plan.rejected[0].reason,
            "image_url: pre-flight: too small: 40×40 px"
        );
        assert_eq!(plan.counts.duplicates, 1);
        assert_eq!(plan.duplicate_rows, vec![(4, 2)]);
    }

    #[test]
    fn an_unsettled_image_is_never_taken_out_and_a_person_with_nothing_left_is_dropped() {
        let mut plan = plan(vec![image(2, true)]);
        let report = Report {
            images: vec![checked(2, vec![Finding::error("not an image", "…")], None)],
            ..Report::default()
        };
        apply(&mut plan, &report);
        assert_eq!(plan.jobs[0].images.len(), 1, "read back, not screened");
        assert_eq!(plan.counts.invalid, 0);

        let mut plan = self::plan(vec![image(5, false)]);
        let report = Report {
            images: vec![checked(5, vec![Finding::error("not an image", "…")], None)],
            ..Report::default()
        };
        apply(&mut plan, &report);
        assert!(plan.jobs.is_empty(), "nothing left to do for the person");
        assert_eq!(plan.counts.to_reconcile, 0);
        assert_eq!(plan.counts.to_send, 0);
    }
}
