//! `run --preflight`: before anything is sent, the images the plan would send are read and
//! checked ([`crate::preflight`]); each one the service would refuse leaves the plan as an
//! `invalid` row with the reason (checked again by the next run: the photo may have been
//! fixed), and a second row with the same bytes for the same person is sent once, like a
//! duplicate row. Images whose earlier outcome is unknown are not screened: they may already be
//! on the server, and are read back as usual.

use crate::api::Client;
use crate::image::library_key;
use crate::ledger::Status;
use crate::plan::{Plan, Rejected};
use crate::preflight::{Report, Settings, sweep};

/// The reason an image pre-flight refused is recorded with (`image_url: …`, the column it is
/// about, as the manifest's own refusals are grouped).
pub(crate) fn reason(checked: &crate::preflight::Checked) -> String {
    format!("image_url: pre-flight: {}", checked.reason())
}

/// Sweeps the plan's new images and takes out the refused ones and repeated bytes; those that
/// pass carry their hash into the ledger. `recorded`: the ledger's registered images' hashes.
pub(crate) async fn screen(
    client: &Client,
    plan: &mut Plan,
    recorded: &[crate::preflight::Recorded],
    settings: &Settings,
) -> Report {
    let items: Vec<sweep::Item<'_>> = plan
        .jobs
        .iter()
        .flat_map(|job| {
            job.images
                .iter()
                .filter(|image| !image.unsettled)
                .map(move |image| sweep::Item {
                    line: image.line,
                    category_id: &job.category_id,
                    person_id: &job.person_id,
                    image_url: &image.image_url,
                })
        })
        .collect();
    let report = sweep::sweep(client, &items, recorded, settings).await;
    for checked in &report.images {
        let refused = checked.refused();
        let Some((job_at, image_at)) = plan.jobs.iter().enumerate().find_map(|(j, job)| {
            job.images
                .iter()
                .position(|i| i.line == checked.line && !i.unsettled)
                .map(|i| (j, i))
        }) else {
            continue;
        };
        let job = &mut plan.jobs[job_at];
        if !refused && checked.same_as.is_none() {
            job.images[image_at].sha256 = checked.inspection.sha256.clone();
            continue;
        }
        let image = job.images.remove(image_at);
        plan.counts.to_send -= 1;
        let library = library_key(&job.category_id);
        if let Some(at) = plan
            .libraries
            .iter()
            .position(|l| library_key(l) == library)
        {
            plan.adds_by_library[at] = plan.adds_by_library[at].saturating_sub(1);
        }
        match checked.same_as {
            Some(first) if !refused => {
                plan.counts.duplicates += 1;
                plan.duplicate_rows.push((image.line, first));
            }
            _ => {
                plan.counts.invalid += 1;
                plan.rejected.push(Rejected {
                    line: image.line,
                    category_id: job.category_id.clone(),
                    person_id: job.person_id.clone(),
                    image_url: image.image_url,
                    image_key: image.image_key,
                    status: Status::Invalid,
                    reason: reason(checked),
                    already_recorded: false,
                });
            }
        }
    }
    // A person left with nothing to send, settle or read again needs no work at all.
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
    report
}
