//! The one worker: one person's images, one at a time, each created exactly once, for either
//! target. Before an image goes out its `pending` record is on disk (one durable batch per
//! person). Whenever an attempt's outcome is unknown, or a `pending` record was left by a
//! crash, the person is read back before anything is sent again: an image already there is
//! recorded with the server's id, not sent twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use crate::caller::{Caller, Created, Halt};
use crate::ledger::{ImageRecord, Record, Status};
use crate::manifest::{canonical_url, fold_id};
use crate::pipeline::recorder::{Event, Events};
use crate::plan::{ImageWork, PersonJob};
use crate::stop::StopReason;
use crate::target::{Held, Person, Target};

pub(crate) struct Context<T: Target> {
    pub target: T,
    pub caller: Caller,
    pub events: Events,
    pub run_id: String,
    /// Libraries read whole, once per run: folded library name → folded person → images.
    pub libraries: Libraries,
}

/// Folded library name → the one cell that reads it.
pub(crate) type Libraries = Mutex<HashMap<String, Arc<OnceCell<HashMap<String, Vec<Held>>>>>>;

/// Canonical image URL → the server's id, as the server holds them for one person.
type Known = HashMap<String, String>;

fn known(held: Vec<Held>) -> Known {
    let mut known = Known::new();
    for image in held {
        if let Some(url) = image.image_url {
            known
                .entry(canonical_url(&url).into_owned())
                .or_insert(image.id);
        }
    }
    known
}

fn find<'k>(known: &'k Known, image: &ImageWork) -> Option<&'k String> {
    known.get(canonical_url(&image.image_url).as_ref())
}

/// What the server holds for the person: from its library read once (shared with the
/// library's other persons), or read for the person alone.
async fn read_person<T: Target>(
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

fn person(job: &PersonJob) -> Person<'_> {
    Person {
        category_id: &job.category_id,
        person_id: &job.person_id,
        person_name: job.person_name.as_deref(),
    }
}

pub(crate) async fn process<T: Target>(ctx: &Context<T>, job: PersonJob) {
    let total = job.images.len() as u64;
    let placed = match ctx.target.place(&ctx.caller, person(&job), true).await {
        Ok(Some(placed)) => placed,
        Ok(None) => return leave(ctx, &job, &job.images, Halt::Stopped, None),
        Err(halt) => return leave(ctx, &job, &job.images, halt, None),
    };
    for made in placed.made {
        let record = made.record(&ctx.run_id, ctx.target.kind());
        ctx.events.send(Event::Record(Record::Created(record)));
    }
    let place = placed.place;
    if let Err(halt) = ctx.caller.settle_since(job.pending_since).await {
        return leave(ctx, &job, &job.images, halt, Some(&place));
    }
    let known = if job.reads_first() && !T::is_fresh(&place) {
        match read_person(ctx, &job, &place).await {
            Ok(held) => known(held),
            Err(halt) => return leave(ctx, &job, &job.images, halt, Some(&place)),
        }
    } else {
        Known::new()
    };
    // One durable batch of `pending` lines for the person's images still to send, before the
    // first is sent: one sync per person, not per image. After a crash the person is read back
    // once, which settles every one of them.
    let to_send: Vec<ImageRecord> = job
        .images
        .iter()
        .filter(|image| find(&known, image).is_none())
        .map(|image| record(ctx, &job, image, Status::Pending, Some(&place)))
        .collect();
    if !to_send.is_empty() && !ctx.events.pending(to_send).await {
        // The ledger cannot be written: nothing may be sent without a durable `pending` first.
        ctx.caller.stop().stop(StopReason::LedgerFailed);
        ctx.events.send(Event::Left(total));
        return;
    }
    for (done, image) in job.images.iter().enumerate() {
        if let Some(id) = find(&known, image) {
            let created = Created {
                id: id.clone(),
                recovered: true,
                attempts: 0,
            };
            // After an unknown outcome it is recovered; otherwise it was there before: adopted.
            registered(ctx, &job, image, &place, created, !image.unsettled);
            continue;
        }
        if ctx.caller.stop().is_stopping() {
            ctx.events.send(Event::Left(total - done as u64));
            return;
        }
        if !create(ctx, &job, image, &place).await {
            ctx.events.send(Event::Left(total - done as u64 - 1));
            return;
        }
    }
}

/// Creates one image, whose `pending` line is already durable, exactly once. False when the
/// run is stopping and the person should end.
async fn create<T: Target>(
    ctx: &Context<T>,
    job: &PersonJob,
    image: &ImageWork,
    place: &T::Place,
) -> bool {
    let url = image.image_url.as_str();
    let result = ctx
        .caller
        .create_once(
            T::CREATE,
            || ctx.target.create(place, person(job), url),
            || async {
                let held = ctx.target.held(&ctx.caller, place).await?;
                Ok(find(&known(held), image).cloned())
            },
        )
        .await;
    match result {
        Ok(created) => registered(ctx, job, image, place, created, false),
        Err(Halt::Stopped | Halt::Fatal) => {
            // The pending record stays: the next run reads the person back before sending.
            ctx.events.send(Event::Left(1));
            return false;
        }
        Err(halt) => leave(ctx, job, std::slice::from_ref(image), halt, Some(place)),
    }
    true
}

fn registered<T: Target>(
    ctx: &Context<T>,
    job: &PersonJob,
    image: &ImageWork,
    place: &T::Place,
    created: Created,
    adopted: bool,
) {
    let mut record = record(ctx, job, image, Status::Registered, Some(place));
    T::set_id(&mut record, created.id);
    if adopted {
        record.adopted = Some(true);
    } else {
        record.recovered = created.recovered.then_some(true);
    }
    record.attempts = (created.attempts > 0).then_some(created.attempts);
    ctx.events.send(Event::Outcome(record));
}

/// Records what became of `images` when their person could not go on: left for the next run
/// (stopped), failed for good (refused), or failed and retried next run (attempts ran out).
fn leave<T: Target>(
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
        if retryable {
            record.retryable = Some(true);
            events.send(Event::Left(1));
        }
        events.send(Event::Outcome(record));
    }
}

fn record<T: Target>(
    ctx: &Context<T>,
    job: &PersonJob,
    image: &ImageWork,
    status: Status,
    place: Option<&T::Place>,
) -> ImageRecord {
    let identity = image.image_key.as_deref().unwrap_or(&image.image_url);
    let mut record = ImageRecord::new(
        &ctx.run_id,
        status,
        &job.category_id,
        &job.person_id,
        &image.image_url,
    )
    .with_identity(identity);
    record.line = Some(image.line);
    if status == Status::Registered {
        record.person_name = job.person_name.clone();
    }
    ctx.target.stamp(&mut record, place);
    record
}
