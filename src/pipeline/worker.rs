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

/// One person's turn: wait for its uploads and for what a killed run left in flight, find (or
/// make) its place, read it back when the plan says so, journal `pending` for what is to be
/// sent, send it in manifest order (making room first when the person is full), then finish
/// what the sync and the late-copy pass owe.
pub(crate) async fn process<T: Backend>(ctx: &Context<T>, mut job: PersonJob) {
    if !wait_for_uploads(ctx, &mut job, 0, None).await {
        return leave(ctx, &job, &job.images, Halt::Stopped, None);
    }
    // A request a killed run left in flight (a `pending` record's time) can no longer land
    // unseen after this wait: before the person's place is looked for (ICE may create it) and
    // before the person is read.
    if let Err(halt) = ctx.caller.settle_since(job.pending_since).await {
        return leave(ctx, &job, &job.images, halt, None);
    }
    // Where places are made (ICE), the images are journaled before the place is.
    let early = T::MAKES_PLACES && !job.images.is_empty();
    if early {
        let pending = (job.images.iter())
            .map(|image| record(ctx, &job, image, Status::Pending, None))
            .collect();
        if !journal_pending(ctx, pending, job.images.len() as u64).await {
            return;
        }
    }
    let place = match find_place(ctx, &job).await {
        Ok(place) => place,
        Err(halt) => return leave(ctx, &job, &job.images, halt, None),
    };
    let Some(place) = place.or_else(|| removal::first_drop_place::<T>(&job)) else {
        // Nothing of the person exists on the server under its name (ICE): nothing to remove
        // there, and nothing to add (adding would have made it).
        return removal::nothing_there(ctx, &job);
    };
    let (reads, adopted, doubled) = match read_back(ctx, &job, &place).await {
        Ok(read) => read,
        Err(halt) => return leave(ctx, &job, &job.images, halt, Some(&place)),
    };
    let known = reads.known::<T>(&place);
    let planned = job.images.len();
    if !resend_vanished(ctx, &mut job, &place, &reads, &adopted).await {
        // Nothing of the person was sent yet: all of it is left for the next run.
        return leave(ctx, &job, &job.images, Halt::Stopped, Some(&place));
    }
    // One durable batch of `pending` lines for the person's images still to send, before the
    // first is sent: one sync per person, not per image. After a crash the person is read back
    // once, which settles every one of them.
    let to_send: Vec<ImageRecord> = (job.images.iter().enumerate())
        .filter(|&(i, image)| (!early || i >= planned) && find(&known, image).is_none())
        .map(|(_, image)| record(ctx, &job, image, Status::Pending, Some(&place)))
        .collect();
    if !journal_pending(ctx, to_send, job.images.len() as u64).await {
        return;
    }
    // Read only for another writer's copies: what it finds doubled, or held under another id
    // only, is another writer's doing (for the summary's warning).
    let converge_only = job.recheck.as_ref().is_some_and(|r| r.converge_only);
    let mut turn = Turn {
        drops: removal::Queue::new(&job),
        outcomes: Outcomes::default(),
        other_writer: if converge_only { doubled } else { 0 },
        count: reads.count::<T>(&place).unwrap_or(job.held as usize),
        reads,
    };
    let stopped = send_all(ctx, &job, &place, &known, planned, converge_only, &mut turn).await;
    if !stopped {
        finish(ctx, job, place, turn).await;
    }
}

/// What one person's turn carries from its read to its end.
struct Turn<P> {
    reads: Reads<P>,
    drops: removal::Queue,
    outcomes: Outcomes,
    /// Images found held by another writer (see `converge_only`).
    other_writer: u64,
    /// Images the person holds now, for the service's per-person limit.
    count: usize,
}

/// Journals `records` (`pending`) durably before any of them is sent. When the ledger cannot
/// be written the run stops and the person's `images` are left: nothing may be sent without a
/// durable `pending` first.
async fn journal_pending<T: Backend>(
    ctx: &Context<T>,
    records: Vec<ImageRecord>,
    images: u64,
) -> bool {
    if records.is_empty() || ctx.events.pending(records).await {
        return true;
    }
    ctx.caller.stop().stop(StopReason::LedgerFailed);
    ctx.events.send(Event::Left(images));
    false
}

/// The person's place; only a person with images to add gets a library or entity made for
/// it, and what was made is recorded as `created`.
async fn find_place<T: Backend>(
    ctx: &Context<T>,
    job: &PersonJob,
) -> Result<Option<T::Place>, Halt> {
    let wants_place = !job.images.is_empty();
    let placed = ctx
        .target
        .place(&ctx.caller, person(job), wants_place)
        .await?;
    Ok(placed.map(|placed| {
        for made in placed.made {
            ctx.objects
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(made.clone());
            let record = made.record(&ctx.run_id, ctx.target.kind());
            ctx.events.send(Event::Record(Record::Created(record)));
        }
        placed.place
    }))
}

/// The read the plan owes before anything is sent (not of a place made just now), and the
/// late copies it finds removed: the reads, the locators recorded anew under the lowest id,
/// and how many images were held more than once.
async fn read_back<T: Backend>(
    ctx: &Context<T>,
    job: &PersonJob,
    place: &T::Place,
) -> Result<(Reads<T::Place>, Vec<String>, u64), Halt> {
    let must_read =
        job.reads_first() || job.recheck.is_some() || job.drops.iter().any(|d| d.unsettled());
    let mut reads = Reads::default();
    if must_read && !T::is_fresh(place) {
        reads.put::<T>(place, read_person(ctx, job, place).await?);
    }
    let (adopted, doubled) = match &job.recheck {
        Some(keep) => removal::remove_copies(ctx, job, place, keep, &mut reads).await?,
        None => (Vec::new(), 0),
    };
    Ok((reads, adopted, doubled))
}

/// Adds to the person's images each photo the roster wants whose recorded id has left the
/// server since the last read (a removal whose outcome was unknown landed late), unless it was
/// recorded under the lowest id just now; false when the run stops waiting for their uploads.
async fn resend_vanished<T: Backend>(
    ctx: &Context<T>,
    job: &mut PersonJob,
    place: &T::Place,
    reads: &Reads<T::Place>,
    adopted: &[String],
) -> bool {
    let Some(recheck) = &job.recheck else {
        return true;
    };
    let planned = job.images.len();
    let vanished = removal::vanished::<T>(recheck, reads, place);
    job.images.extend(
        vanished
            .into_iter()
            .filter(|i| !adopted.contains(&i.image.locator().into_string())),
    );
    wait_for_uploads(ctx, job, planned, Some(place)).await
}

/// Sends the person's images in manifest order: one the server already holds is recorded
/// (recovered or adopted), a full person makes room first with a removal the sync plans.
/// True when the run stopped midway (what is left is counted, the removals left).
async fn send_all<T: Backend>(
    ctx: &Context<T>,
    job: &PersonJob,
    place: &T::Place,
    known: &Known,
    planned: usize,
    converge_only: bool,
    turn: &mut Turn<T::Place>,
) -> bool {
    let total = job.images.len() as u64;
    let limit = ctx.target.kind().rules().max_images_per_person;
    for (done, image) in job.images.iter().enumerate() {
        if let Some(id) = find(known, image) {
            turn.other_writer += u64::from(converge_only && done >= planned);
            record_held(ctx, job, image, place, id, &mut turn.outcomes);
            continue;
        }
        let left = total - done as u64;
        if ctx.caller.stop().is_stopping() {
            ctx.events.send(Event::Left(left));
            turn.drops.leave(ctx);
            return true;
        }
        // A full person makes room first: one removal the sync plans, then the addition.
        while limit.is_some_and(|l| turn.count >= l as usize) && turn.drops.has_removal() {
            match turn
                .drops
                .remove_one(ctx, job, place, &mut turn.reads)
                .await
            {
                Ok(true) => turn.count = turn.count.saturating_sub(1),
                Ok(false) => {}
                Err(_) => {
                    ctx.events.send(Event::Left(left));
                    turn.drops.leave(ctx);
                    return true;
                }
            }
        }
        // An image whose earlier attempt may still land is read back later (a late copy).
        let earlier_unknown = image.unsettled;
        match create(ctx, job, image, place, earlier_unknown, &mut turn.outcomes).await {
            Some(true) => turn.count += 1,
            Some(false) => {}
            None => {
                ctx.events.send(Event::Left(left - 1));
                turn.drops.leave(ctx);
                return true;
            }
        }
    }
    false
}

/// Records an image the server already holds under `id`: recovered after an unknown outcome
/// (then read again later for a copy the run that left the `pending` may have made), adopted
/// otherwise.
fn record_held<T: Backend>(
    ctx: &Context<T>,
    job: &PersonJob,
    image: &ImageWork,
    place: &T::Place,
    id: &str,
    outcomes: &mut Outcomes,
) {
    let created = Created {
        id: id.to_string(),
        recovered: true,
        attempts: 0,
        resent: false,
    };
    outcomes.ids.push(kept(image, id));
    let mut record = registered_record(ctx, job, image, place, created, !image.unsettled);
    if image.unsettled {
        // The run that left the `pending` may have sent it more than once (a resend after its
        // own look-up is not journaled): read the person again for a copy.
        record.recheck = Some(true);
        outcomes.owed = true;
        outcomes.found.push(image.clone());
    }
    ctx.events.send(Event::Outcome(record));
}

/// The end of a person's turn: the removals the sync still plans, `settled` when nothing sent
/// may land late, what was made kept for the converge pass, and what is owed to the late-copy
/// pass.
async fn finish<T: Backend>(
    ctx: &Context<T>,
    job: PersonJob,
    place: T::Place,
    mut turn: Turn<T::Place>,
) {
    if turn.other_writer > 0 {
        ctx.other_writer
            .fetch_add(turn.other_writer, std::sync::atomic::Ordering::Relaxed);
    }
    if (turn.drops.finish(ctx, &job, &place, &mut turn.reads).await).is_err() {
        return;
    }
    let mut outcomes = turn.outcomes;
    // Settled only when nothing sent now may land late in its turn (that one's `recheck`
    // record must not be answered by this `settled`).
    if job.recheck.as_ref().is_some_and(|r| r.settles) && !outcomes.owed {
        removal::settled(ctx, &job, turn.reads.copies_removed);
    }
    if !outcomes.made.is_empty() {
        let mut made = PersonJob::without_images(job.category_id.clone(), job.person_id.clone());
        made.person_name = job.person_name.clone();
        let images = std::mem::take(&mut outcomes.made);
        ctx.made
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((made, place, images));
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
