//! The closing read of a run that created anything: a moment after its last request, the
//! persons it created images for are read once more, and what another writer (the same job on
//! another host, with its own ledger) made too converges on the rule every writer applies
//! without talking — the lowest id is kept (of an image's faces or samples; on ICE also of a
//! library's name and of a person's entity in it).

use std::sync::Arc;
use std::time::Duration;

use super::context::{Context, person};
use super::recorder::Event;
use super::removal;
use super::schedule;
use super::worker::{self, Outcomes, create, record, registered_record};
use crate::backend::{Backend, Held};
use crate::caller::Created;
use crate::image::Locator;
use crate::ledger::{self, Record, Status};
use crate::plan::{ImageWork, PersonJob};
use crate::stop::{Stop, StopReason};

/// How long the closing read waits after the run's last request: the same job on another
/// host, a moment behind, has its creates of the same images landed by then.
const CONVERGE_AFTER: Duration = Duration::from_secs(2);

/// [`CONVERGE_AFTER`], or `FACE_ENROLL_CONVERGE_AFTER_MS` (a test switch: a test of two hosts
/// one after the other shortens the pause; nothing depends on its length, since a host whose
/// ids the other removes later adopts the kept ones at its next run).
fn converge_after() -> Duration {
    std::env::var("FACE_ENROLL_CONVERGE_AFTER_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(CONVERGE_AFTER)
}

/// The closing read of the persons this run created images for (see [`converge_person`]),
/// a moment after the run's own last request.
pub(super) async fn converge<T: crate::backend::Backend>(
    context: &Arc<worker::Context<T>>,
    stop: &Arc<Stop>,
    concurrency: usize,
) {
    let made = std::mem::take(&mut *context.made.lock().unwrap_or_else(|p| p.into_inner()));
    if made.is_empty() || stop.is_stopping() {
        return;
    }
    if !stop.sleep(converge_after()).await {
        return;
    }
    // MTS lists a library with two or more such persons once (one answer holds it whole).
    let mut per_library: std::collections::HashMap<String, usize> = Default::default();
    for (job, _, _) in &made {
        *per_library
            .entry(crate::image::fold_id(&job.category_id))
            .or_default() += 1;
    }
    let threshold = context.target.kind().library_read_threshold();
    let mut listed: std::collections::HashSet<String> = Default::default();
    let mut held: std::collections::HashMap<(String, String), Vec<crate::backend::Held>> =
        Default::default();
    let mut jobs = Vec::with_capacity(made.len());
    for (job, place, images) in made {
        let library = crate::image::fold_id(&job.category_id);
        if threshold.is_some_and(|t| per_library[&library] >= t) && !listed.contains(&library) {
            if let Ok(read) = context
                .target
                .library(&context.caller, &job.category_id)
                .await
            {
                for person in read.persons {
                    held.entry((library.clone(), crate::image::fold_id(&person.person_id)))
                        .or_default()
                        .extend(person.images);
                }
            }
            listed.insert(library.clone());
        }
        let person = held.remove(&(library.clone(), crate::image::fold_id(&job.person_id)));
        let person = match listed.contains(&library) {
            true => Some(person.unwrap_or_default()),
            false => None,
        };
        jobs.push((job, place, images, person));
    }
    let every = context.clone();
    schedule::schedule(
        jobs,
        concurrency,
        stop.clone(),
        move |(job, place, images, listed)| {
            let context = every.clone();
            async move { converge_person(&context, job, place, images, listed).await }
        },
        |_| {},
    )
    .await;
    if !stop.is_stopping() {
        delete_emptied_libraries(context).await;
    }
}

/// The libraries this run made that are not the one every writer keeps for their name (ICE:
/// another host made one of the same name, with a lower LibId), once the closing reads have
/// emptied them: deleted (a library that still holds an entity is kept).
async fn delete_emptied_libraries<T: crate::backend::Backend>(context: &Arc<worker::Context<T>>) {
    let libs: Vec<crate::backend::Made> = context
        .objects
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|m| m.object == ledger::ObjectKind::Lib)
        .cloned()
        .collect();
    let mut extras = Vec::new();
    for lib in libs {
        match context.target.kept_lib(&context.caller, &lib.name).await {
            Ok(Some(kept)) if kept != lib.lib_id => extras.push(lib),
            _ => {}
        }
    }
    if extras.is_empty() {
        return;
    }
    match context.target.tidy(&context.caller, &extras).await {
        Ok(tidied) => {
            for made in tidied.deleted {
                let record = made.record(&context.run_id, context.target.kind());
                context
                    .events
                    .send(Event::Record(ledger::Record::Deleted(record)));
            }
        }
        Err(halt) => {
            if let Some(e) = halt.error() {
                crate::say!("face-enroll: cannot delete a library emptied for another's: {e}");
            }
        }
    }
}

/// The closing read of a person this run created images for: an image the server holds under
/// more than one id (another writer — the same job on another host — made it too) keeps the
/// lowest id, a rule every run agrees on; the others are removed as copies, and the ledger
/// records the kept id when it is not this run's. On ICE the image is kept in the place every
/// writer keeps (the lowest LibId of the library's name, the lowest EntityId of the person's
/// name in it): one this run put elsewhere is recorded there (made again there when it is not
/// there yet), then removed where it was; the entity this run made elsewhere is deleted once
/// empty, its library after every person (see [`converge`]).
pub(crate) async fn converge_person<T: Backend>(
    ctx: &Context<T>,
    job: PersonJob,
    ours: T::Place,
    made: Vec<(ImageWork, String)>,
    listed: Option<Vec<Held>>,
) {
    let Some(places) = read_places(ctx, &job, &ours, listed).await else {
        return;
    };
    let Some((kept_place, kept_held)) = &places.kept else {
        return;
    };
    let moved = !T::same_place(kept_place, &ours);
    let mut outcomes = Outcomes::default();
    for (image, our_id) in made {
        let url = image.image.locator();
        let here = held_under(&kept_held[..], &url);
        let elsewhere: Vec<(&T::Place, Held)> = (places.others.iter())
            .flat_map(|(place, held)| held_under(held, &url).into_iter().map(move |h| (place, h)))
            .collect();
        // Nothing (not this read's to decide), or only ours where every writer keeps it.
        // Another writer's alone: ours was removed by that writer's closing read, which kept
        // its own (the lower) id.
        let only_ours = !moved && here.len() == 1 && here[0].id == our_id;
        if (here.is_empty() && elsewhere.is_empty()) || (only_ours && elsewhere.is_empty()) {
            continue;
        }
        ctx.other_writer
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let kept = match here.first() {
            Some(kept) => {
                if kept.id != our_id || moved {
                    record_kept(ctx, &job, &image, kept_place, &kept.id);
                }
                kept.id.clone()
            }
            // Only in a place not kept: made again where every writer keeps it.
            None => match make_again(ctx, &job, &image, kept_place, &mut outcomes).await {
                Ok(Some(id)) => id,
                // Refused there: ours stays where it is, recorded as it was.
                Ok(None) => continue,
                Err(()) => return,
            },
        };
        let reason = format!("another writer's copy: {} {kept} is kept", T::ID);
        let copies = (here.iter().skip(1).map(|h| (kept_place, h)))
            .chain(elsewhere.iter().map(|(p, h)| (*p, h)));
        for (place, copy) in copies {
            if (removal::remove_copy(ctx, &job, place, copy, reason.clone()).await).is_err() {
                return;
            }
        }
    }
    if moved {
        delete_entity_made_elsewhere(ctx, &job, &ours).await;
    }
}

/// Every place the server holds under the person's names: what the library's read listed for
/// ours, else read now (what had to be made for the kept place is recorded `created`).
/// `None`: the read failed (the run is stopping).
async fn read_places<T: Backend>(
    ctx: &Context<T>,
    job: &PersonJob,
    ours: &T::Place,
    listed: Option<Vec<Held>>,
) -> Option<crate::backend::Places<T::Place>> {
    let places = match listed {
        Some(held) => crate::backend::Places {
            kept: Some((ours.clone(), held)),
            others: Vec::new(),
            made: Vec::new(),
        },
        None => ctx
            .target
            .places(&ctx.caller, person(job), true)
            .await
            .ok()?,
    };
    for made in &places.made {
        let record = made.clone().record(&ctx.run_id, ctx.target.kind());
        ctx.events.send(Event::Record(Record::Created(record)));
    }
    Some(places)
}

/// The copies `held` has of the image at `url` (listed URLs mapped back to what they name),
/// lowest id first.
fn held_under(held: &[Held], url: &Locator<'_>) -> Vec<Held> {
    let mut ids: Vec<Held> = held
        .iter()
        .filter(|h| (h.image_url.as_deref()).is_some_and(|u| Locator::listed(u) == *url))
        .cloned()
        .collect();
    ids.sort_by(|a, b| a.id.cmp(&b.id));
    ids
}

/// Records `image` under `id`, the one every writer keeps, before this run's own id is
/// removed: the ledger never points at a removed id.
fn record_kept<T: Backend>(
    ctx: &Context<T>,
    job: &PersonJob,
    image: &ImageWork,
    place: &T::Place,
    id: &str,
) {
    let created = Created {
        id: id.to_string(),
        recovered: false,
        attempts: 0,
        resent: false,
    };
    let mut record = registered_record(ctx, job, image, place, created, true);
    record.reason = Some("another writer registered it too: the lowest id is kept".into());
    ctx.events.send(Event::Outcome(record));
}

/// Deletes the entity this run made for the person at `ours` when every writer keeps the
/// person elsewhere, once it is empty (ICE).
async fn delete_entity_made_elsewhere<T: Backend>(
    ctx: &Context<T>,
    job: &PersonJob,
    ours: &T::Place,
) {
    let emptied: Vec<crate::backend::Made> = ctx
        .objects
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|m| m.object == crate::ledger::ObjectKind::Entity)
        .filter(|m| {
            T::place_at(person(job), Some(&m.lib_id), m.entity_id.as_deref())
                .is_some_and(|p| T::same_place(&p, ours))
        })
        .cloned()
        .collect();
    if !emptied.is_empty() {
        super::sync::delete_emptied(ctx, &emptied).await;
    }
}

/// Creates `image` at `place`, its `pending` line first: its id; `Ok(None)`: refused, go on;
/// `Err`: the run is stopping or the ledger cannot be written.
async fn make_again<T: Backend>(
    ctx: &Context<T>,
    job: &PersonJob,
    image: &ImageWork,
    place: &T::Place,
    outcomes: &mut Outcomes,
) -> Result<Option<String>, ()> {
    let pending = record(ctx, job, image, Status::Pending, Some(place));
    if !ctx.events.pending(vec![pending]).await {
        ctx.caller.stop().stop(StopReason::LedgerFailed);
        return Err(());
    }
    match create(ctx, job, image, place, false, outcomes).await {
        Some(true) => Ok(outcomes.made.last().map(|(_, id)| id.clone())),
        Some(false) => Ok(None),
        None => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(id: &str, url: Option<&str>) -> Held {
        Held {
            id: id.into(),
            image_url: url.map(str::to_string),
        }
    }

    #[test]
    fn the_copies_of_an_image_are_those_listed_under_what_it_names_lowest_id_first() {
        let listed = [
            held(
                "f9",
                Some(
                    "https://bkt.oss-cn-shanghai.aliyuncs.com/p/1.jpg?x-oss-date=d&x-oss-signature=s",
                ),
            ),
            held("f2", Some("https://h.example/other.jpg")),
            held("f3", Some("oss://bkt/p/1.jpg")),
            held("f1", None),
        ];
        let ours = crate::image::Image::at("oss://bkt/p/1.jpg");
        let ids: Vec<String> = held_under(&listed, &ours.locator())
            .into_iter()
            .map(|h| h.id)
            .collect();
        assert_eq!(ids, ["f3", "f9"]);
        let nobody = crate::image::Image::at("https://h.example/none.jpg");
        assert!(held_under(&listed, &nobody.locator()).is_empty());
    }
}
