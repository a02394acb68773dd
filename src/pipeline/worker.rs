//! The one worker: one person's images, one at a time, each created exactly once, for either
//! target. Before an image goes out its `pending` record is on disk (one durable batch per
//! person). Whenever an attempt's outcome is unknown, or a `pending` record was left by a
//! crash, the person is read back before anything is sent again: an image already there is
//! recorded with the server's id, not sent twice.
//!
//! The same worker settles and removes what the manifest no longer names (`removal`), after
//! the person's additions (or one removal before an addition when the person is full), and
//! removes late copies of the person's images when a request may have landed unseen.

use std::collections::HashMap;

pub(crate) use super::context::{Context, Known, known, person};
use super::removal::{self, Reads};
use crate::backend::{Backend, Held};
use crate::caller::{Created, Halt};
use crate::image::fold_id;
use crate::ledger::{ImageRecord, Record, Status};
use crate::pipeline::recorder::Event;
use crate::plan::{ImageWork, Kept, PersonJob};
use crate::stop::StopReason;

fn kept(image: &ImageWork, id: &str) -> Kept {
    Kept::of(image.image.clone(), id)
}

fn find<'k>(known: &'k Known, image: &ImageWork) -> Option<&'k String> {
    known.get(image.image.locator().as_str())
}

/// What the server holds for the person: from its library read once (shared with the
/// library's other persons), or read for the person alone.
async fn read_person<T: Backend>(
    ctx: &Context<T>,
    job: &PersonJob,
    place: &T::Place,
) -> Result<Vec<Held>, Halt> {
    if !job.read_library {
        return ctx.target.held(&ctx.caller, place).await;
    }
    let cell = {
        let mut libraries = ctx.libraries.lock().unwrap_or_else(|p| p.into_inner());
        libraries
            .entry(fold_id(&job.category_id))
            .or_default()
            .clone()
    };
    let persons = cell
        .get_or_try_init(|| async {
            let library = ctx.target.library(&ctx.caller, &job.category_id).await?;
            let mut persons: HashMap<String, Vec<Held>> = HashMap::new();
            for person in library.persons {
                persons
                    .entry(fold_id(&person.person_id))
                    .or_default()
                    .extend(person.images);
            }
            Ok::<_, Halt>(persons)
        })
        .await?;
    Ok(persons
        .get(&fold_id(&job.person_id))
        .cloned()
        .unwrap_or_default())
}

/// What a person's images came to in this run, for the late-copy check.
#[derive(Default)]
pub(super) struct Outcomes {
    /// Every image registered or found in this run, with its id.
    ids: Vec<Kept>,
    /// A request may still land unseen (sent again after a look-up found nothing).
    owed: bool,
    /// Images the service refused because the person was full.
    refused_full: Vec<ImageWork>,
    /// Images found on the server after an unknown outcome: a removal of one may still land,
    /// so the later read sends it again if it has vanished by then.
    found: Vec<ImageWork>,
    /// Images created by this run, with their ids.
    pub made: Vec<(ImageWork, String)>,
}

/// Waits for the person's local photos from `from` on to be uploaded (`--upload-to`). One whose
/// upload failed is not sent: it is recorded failed and the next run tries it again; when OSS
/// refused the run's credentials the run stops, as for any run-fatal answer. `false`: the run
/// is stopping.
async fn wait_for_uploads<T: Backend>(
    ctx: &Context<T>,
    job: &mut PersonJob,
    from: usize,
    place: Option<&T::Place>,
) -> bool {
    let Some(gate) = ctx.uploads.clone() else {
        return true;
    };
    let mut failed = Vec::new();
    let mut i = from;
    let mut stopping = false;
    while i < job.images.len() {
        match ctx
            .caller
            .stop()
            .until(gate.wait(&job.images[i].image.source))
            .await
        {
            Some(Ok(())) => i += 1,
            Some(Err(error)) => failed.push((job.images.remove(i), error)),
            None => {
                stopping = true;
                break;
            }
        }
    }
    for (image, error) in failed {
        let halt = match &*error {
            crate::upload::UploadError::Stopped { .. } => Halt::Stopped,
            error => {
                let error = error.api_error();
                if error.class() == crate::api::ErrorClass::RunFatal {
                    ctx.caller.stop().fatal(error);
                    Halt::Fatal
                } else {
                    Halt::Exhausted(error)
                }
            }
        };
        leave(ctx, job, std::slice::from_ref(&image), halt, place);
    }
    !stopping && !ctx.caller.stop().is_stopping()
}

pub(crate) async fn process<T: Backend>(ctx: &Context<T>, mut job: PersonJob) {
    if !wait_for_uploads(ctx, &mut job, 0, None).await {
        return leave(ctx, &job, &job.images, Halt::Stopped, None);
    }
    let total = job.images.len() as u64;
    // A request a killed run left in flight (a `pending` record's time) can no longer land
    // unseen after this wait: before the person's place is looked for (ICE may create it) and
    // before the person is read.
    if let Err(halt) = ctx.caller.settle_since(job.pending_since).await {
        return leave(ctx, &job, &job.images, halt, None);
    }
    let early = T::MAKES_PLACES && !job.images.is_empty();
    if early {
        let pending = job
            .images
            .iter()
            .map(|image| record(ctx, &job, image, Status::Pending, None))
            .collect();
        if !ctx.events.pending(pending).await {
            ctx.caller.stop().stop(StopReason::LedgerFailed);
            ctx.events.send(Event::Left(total));
            return;
        }
    }
    // Only a person with images to add gets a library or entity made for it.
    let place = match ctx
        .target
        .place(&ctx.caller, person(&job), !job.images.is_empty())
        .await
    {
        Ok(placed) => placed.map(|placed| {
            for made in placed.made {
                ctx.objects
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(made.clone());
                let record = made.record(&ctx.run_id, ctx.target.kind());
                ctx.events.send(Event::Record(Record::Created(record)));
            }
            placed.place
        }),
        Err(halt) => return leave(ctx, &job, &job.images, halt, None),
    };
    let Some(place) = place.or_else(|| removal::first_drop_place::<T>(&job)) else {
        // Nothing of the person exists on the server under its name (ICE): nothing to remove
        // there, and nothing to add (adding would have made it).
        return removal::nothing_there(ctx, &job);
    };
    let must_read =
        job.reads_first() || job.recheck.is_some() || job.drops.iter().any(|d| d.unsettled());
    let mut reads = Reads::default();
    if must_read && !T::is_fresh(&place) {
        match read_person(ctx, &job, &place).await {
            Ok(held) => reads.put::<T>(&place, held),
            Err(halt) => return leave(ctx, &job, &job.images, halt, Some(&place)),
        }
    }
    let mut adopted = Vec::new();
    let mut doubled = 0;
    if let Some(keep) = &job.recheck {
        match removal::remove_copies(ctx, &job, &place, keep, &mut reads).await {
            Ok((urls, images)) => (adopted, doubled) = (urls, images),
            Err(halt) => return leave(ctx, &job, &job.images, halt, Some(&place)),
        }
    }
    // Read only for another writer's copies: what it finds doubled, or held under another id
    // only, is another writer's doing (for the summary's warning).
    let converge_only = job.recheck.as_ref().is_some_and(|r| r.converge_only);
    let mut other_writer = if converge_only { doubled } else { 0 };
    let known = reads.known::<T>(&place);
    // A photo the roster wants whose recorded id has left the server since the last read (a
    // removal whose outcome was unknown landed late) is the person's to send again.
    let planned = job.images.len();
    if let Some(recheck) = &job.recheck {
        let vanished = removal::vanished::<T>(recheck, &reads, &place);
        // One recorded under the lowest id just now is not sent, nor recorded again.
        job.images.extend(
            vanished
                .into_iter()
                .filter(|i| !adopted.contains(&i.image.locator().into_string())),
        );
        if !wait_for_uploads(ctx, &mut job, planned, Some(&place)).await {
            // Nothing of the person was sent yet: all of it is left for the next run.
            return leave(ctx, &job, &job.images, Halt::Stopped, Some(&place));
        }
    }
    let total = job.images.len() as u64;
    // One durable batch of `pending` lines for the person's images still to send, before the
    // first is sent: one sync per person, not per image. After a crash the person is read back
    // once, which settles every one of them.
    let to_send: Vec<ImageRecord> = job
        .images
        .iter()
        .enumerate()
        .filter(|&(i, image)| (!early || i >= planned) && find(&known, image).is_none())
        .map(|(_, image)| record(ctx, &job, image, Status::Pending, Some(&place)))
        .collect();
    if !to_send.is_empty() && !ctx.events.pending(to_send).await {
        // The ledger cannot be written: nothing may be sent without a durable `pending` first.
        ctx.caller.stop().stop(StopReason::LedgerFailed);
        ctx.events.send(Event::Left(total));
        return;
    }
    let limit = ctx.target.kind().rules().max_images_per_person;
    let mut count = reads.count::<T>(&place).unwrap_or(job.held as usize);
    let mut drops = removal::Queue::new(&job);
    let mut outcomes = Outcomes::default();
    for (done, image) in job.images.iter().enumerate() {
        if let Some(id) = find(&known, image) {
            other_writer += u64::from(converge_only && done >= planned);
            let created = Created {
                id: id.clone(),
                recovered: true,
                attempts: 0,
                resent: false,
            };
            outcomes.ids.push(kept(image, id));
            // After an unknown outcome it is recovered; otherwise it was there before: adopted.
            let mut record = registered_record(ctx, &job, image, &place, created, !image.unsettled);
            if image.unsettled {
                // The run that left the `pending` may have sent it more than once (a resend
                // after its own look-up is not journaled): read the person again for a copy.
                record.recheck = Some(true);
                outcomes.owed = true;
                outcomes.found.push(image.clone());
            }
            ctx.events.send(Event::Outcome(record));
            continue;
        }
        if ctx.caller.stop().is_stopping() {
            ctx.events.send(Event::Left(total - done as u64));
            return drops.leave(ctx);
        }
        // A full person makes room first: one removal the sync plans, then the addition.
        while limit.is_some_and(|l| count >= l as usize) && drops.has_removal() {
            match drops.remove_one(ctx, &job, &place, &mut reads).await {
                Ok(true) => count = count.saturating_sub(1),
                Ok(false) => {}
                Err(_) => {
                    ctx.events.send(Event::Left(total - done as u64));
                    return drops.leave(ctx);
                }
            }
        }
        // An image whose earlier attempt may still land is read back later (a late copy).
        let earlier_unknown = image.unsettled;
        match create(ctx, &job, image, &place, earlier_unknown, &mut outcomes).await {
            Some(true) => count += 1,
            Some(false) => {}
            None => {
                ctx.events.send(Event::Left(total - done as u64 - 1));
                return drops.leave(ctx);
            }
        }
    }
    if other_writer > 0 {
        ctx.other_writer
            .fetch_add(other_writer, std::sync::atomic::Ordering::Relaxed);
    }
    if drops.finish(ctx, &job, &place, &mut reads).await.is_err() {
        return;
    }
    // Settled only when nothing sent now may land late in its turn (that one's `recheck`
    // record must not be answered by this `settled`).
    if job.recheck.as_ref().is_some_and(|r| r.settles) && !outcomes.owed {
        removal::settled(ctx, &job, reads.copies_removed);
    }
    if !outcomes.made.is_empty() {
        let mut made = PersonJob::without_images(job.category_id.clone(), job.person_id.clone());
        made.person_name = job.person_name.clone();
        let images = std::mem::take(&mut outcomes.made);
        ctx.made
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((made, place.clone(), images));
    }
    if outcomes.owed {
        owe(ctx, &job, outcomes);
    }
}

/// Notes the person for the run's late-copy pass: the ids it holds now, and the images the
/// service refused because copies may have taken their slots.
fn owe<T: Backend>(ctx: &Context<T>, job: &PersonJob, outcomes: Outcomes) {
    let mut later = PersonJob::without_images(job.category_id.clone(), job.person_id.clone());
    later.person_name = job.person_name.clone();
    later.read_library = false;
    later.recheck = Some(crate::plan::Recheck {
        keep: outcomes.ids,
        settles: false,
        restore: outcomes.found,
        converge_only: false,
    });
    later.images = outcomes.refused_full;
    ctx.owed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((crate::clock::instant(), later));
}

/// Creates one image, whose `pending` line is already durable, exactly once. `Some(true)`:
/// created; `Some(false)`: not created, go on; `None`: the run is stopping, end the person.
pub(super) async fn create<T: Backend>(
    ctx: &Context<T>,
    job: &PersonJob,
    image: &ImageWork,
    place: &T::Place,
    earlier_unknown: bool,
    outcomes: &mut Outcomes,
) -> Option<bool> {
    let url = image.image.source.as_str();
    let result = ctx
        .caller
        .create_once(
            T::CREATE,
            || ctx.target.create(place, person(job), url),
            || async {
                let held = ctx.target.held(&ctx.caller, place).await?;
                Ok(find(&known(&held), image).cloned())
            },
        )
        .await;
    match result {
        Ok(created) => {
            outcomes.made.push((image.clone(), created.id.clone()));
            let owed = created.resent || (earlier_unknown && !created.recovered);
            outcomes.owed |= owed;
            outcomes.ids.push(kept(image, &created.id));
            let mut record = registered_record(ctx, job, image, place, created, false);
            record.recheck = owed.then_some(true);
            // Another writer may make it too and keep its own, lower, id after this run ends:
            // a later run reads the person once more (its `settled` record ends that).
            record.converge = Some(true);
            ctx.events.send(Event::Outcome(record));
            Some(true)
        }
        Err(Halt::Stopped | Halt::Fatal) => {
            // The pending record stays: the next run reads the person back before sending.
            ctx.events.send(Event::Left(1));
            None
        }
        // A late copy of an earlier image may hold the slot: decided by the run's second read
        // of the person, which removes the copy and sends this one again.
        Err(Halt::Refused(error)) if removal::is_full(&error) && outcomes.owed => {
            outcomes.refused_full.push(image.clone());
            Some(false)
        }
        Err(halt) => {
            leave(ctx, job, std::slice::from_ref(image), halt, Some(place));
            Some(false)
        }
    }
}

pub(super) fn registered_record<T: Backend>(
    ctx: &Context<T>,
    job: &PersonJob,
    image: &ImageWork,
    place: &T::Place,
    created: Created,
    adopted: bool,
) -> ImageRecord {
    let mut record = record(ctx, job, image, Status::Registered, Some(place));
    T::set_id(&mut record, created.id);
    if adopted {
        record.adopted = Some(true);
    } else {
        record.recovered = created.recovered.then_some(true);
    }
    record.attempts = (created.attempts > 0).then_some(created.attempts);
    record
}

/// Records what became of `images` when their person could not go on: left for the next run
/// (stopped), failed for good (refused), or failed and retried next run (attempts ran out).
pub(crate) fn leave<T: Backend>(
    ctx: &Context<T>,
    job: &PersonJob,
    images: &[ImageWork],
    halt: Halt,
    place: Option<&T::Place>,
) {
    let events = &ctx.events;
    let (error, retryable) = match halt {
        Halt::Stopped | Halt::Fatal => return events.send(Event::Left(images.len() as u64)),
        Halt::Exhausted(error) => (error, true),
        Halt::Refused(error) => (error, false),
    };
    for image in images {
        let mut record = record(ctx, job, image, Status::Failed, place);
        record.error_code = Some(error.code().to_string());
        record.message = Some(error.message().to_string());
        record.link_fingerprint = crate::image::link_fingerprint_text(&image.image.source);
        if retryable {
            record.retryable = Some(true);
            events.send(Event::Left(1));
        }
        events.send(Event::Outcome(record));
    }
}

pub(super) fn record<T: Backend>(
    ctx: &Context<T>,
    job: &PersonJob,
    image: &ImageWork,
    status: Status,
    place: Option<&T::Place>,
) -> ImageRecord {
    let mut record = ImageRecord::of(
        &ctx.run_id,
        status,
        &job.category_id,
        &job.person_id,
        &image.image,
    );
    record.line = Some(image.line);
    record.sha256 = image.sha256.clone();
    if status == Status::Registered {
        record.person_name = job.person_name.clone();
    }
    ctx.target.stamp(&mut record, place);
    record
}
