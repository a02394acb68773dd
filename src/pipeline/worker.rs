//! One person's images, one at a time, each registered exactly once.
//!
//! `RegisterCustomFace` is not idempotent. Before an image goes out, its `pending` record is on
//! disk. Whenever an attempt's outcome is unknown (a 5xx, a timeout, a reset, a malformed answer,
//! or a `pending` record left by a crash), the person is read back with `ListCustomPersons` before
//! anything is sent again; an image already there is recorded with its FaceId, not sent twice.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use crate::api::RegisterFace;
use crate::api::{ApiError, Client, ErrorClass};
use crate::ledger::{ImageRecord, Status};
use crate::manifest::fold_id;
use crate::pipeline::recorder::{Event, Events};
use crate::pipeline::stop::{Stop, StopReason};
use crate::plan::{ImageWork, PersonJob};
use crate::retry::{Decision, Failure, Policy};
use crate::{clock, pacer::Pacer};

pub(crate) struct Context {
    pub client: Client,
    pub pacer: Pacer,
    pub policy: Policy,
    pub jitter: clock::Jitter,
    pub events: Events,
    pub stop: Arc<Stop>,
    pub run_id: String,
}

/// Why a person's remaining images were not finished in this run.
enum Abandon {
    /// Stopping (signal, deadline, fatal error): leave the rest for the next run.
    Stopped,
    /// Retries ran out on a look-up: the person's images stay for the next run.
    Exhausted(ApiError),
}

/// Image URL → FaceId, as the server holds them for one person.
type Known = HashMap<String, String>;

/// A target's way of registering one person's images; the scheduler runs any of them.
pub(crate) trait Process: Send + Sync + 'static {
    fn context(&self) -> &Context;
    fn process(&self, job: PersonJob) -> impl Future<Output = ()> + Send;
}

/// MTS custom faces.
impl Process for Context {
    fn context(&self) -> &Context {
        self
    }

    fn process(&self, job: PersonJob) -> impl Future<Output = ()> + Send {
        process(self, job)
    }
}

pub(crate) async fn process(ctx: &Context, job: PersonJob) {
    let total = job.images.len() as u64;
    let known = if job.needs_lookup {
        match lookup(ctx, &job).await {
            Ok(found) => found,
            Err(abandon) => return leave(ctx, &job, &job.images, abandon),
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
        .filter(|image| !known.contains_key(&image.image_url))
        .map(|image| record(ctx, &job, image, Status::Pending))
        .collect();
    if !to_send.is_empty() && !ctx.events.pending(to_send).await {
        // The ledger cannot be written: nothing may be sent without a durable `pending` first.
        ctx.stop.stop(StopReason::LedgerFailed);
        ctx.events.send(Event::Left(total));
        return;
    }
    for (done, image) in job.images.iter().enumerate() {
        if let Some(face_id) = known.get(&image.image_url) {
            let mut record = record(ctx, &job, image, Status::Registered);
            record.face_id = Some(face_id.clone());
            record.recovered = Some(true);
            ctx.events.send(Event::Outcome(record));
            continue;
        }
        if ctx.stop.is_stopping() {
            ctx.events.send(Event::Left(total - done as u64));
            return;
        }
        if !register(ctx, &job, image).await {
            ctx.events.send(Event::Left(total - done as u64 - 1));
            return;
        }
    }
}

/// Registers one image, whose `pending` line is already durable, exactly once. False when the
/// run is stopping and the person should end.
async fn register(ctx: &Context, job: &PersonJob, image: &ImageWork) -> bool {
    let request = RegisterFace {
        category_id: &job.category_id,
        person_id: &job.person_id,
        image_url: &image.image_url,
        person_name: job.person_name.as_deref(),
    };
    let mut attempts = 0u32;
    let mut unknown = false;
    loop {
        if unknown {
            match lookup(ctx, job).await {
                Ok(found) => {
                    if let Some(face_id) = found.get(&image.image_url) {
                        let mut record = record(ctx, job, image, Status::Registered);
                        record.face_id = Some(face_id.clone());
                        record.recovered = Some(true);
                        record.attempts = Some(attempts);
                        ctx.events.send(Event::Outcome(record));
                        return true;
                    }
                    unknown = false;
                }
                Err(Abandon::Stopped) => {
                    ctx.events.send(Event::Left(1));
                    return false;
                }
                Err(Abandon::Exhausted(error)) => {
                    exhausted(ctx, job, image, attempts, &error);
                    return true;
                }
            }
        }
        ctx.pacer.acquire().await;
        attempts += 1;
        let error = match ctx.client.register_custom_face(&request).await {
            Ok(answer) => {
                let mut record = record(ctx, job, image, Status::Registered);
                record.face_id = Some(answer.face_id);
                record.attempts = Some(attempts);
                ctx.events.send(Event::Outcome(record));
                return true;
            }
            Err(error) => error,
        };
        let failure = match error.class() {
            ErrorClass::RowRejected => {
                let mut record = failed(ctx, job, image, &error);
                record.attempts = Some(attempts);
                ctx.events.send(Event::Outcome(record));
                return true;
            }
            ErrorClass::RunFatal => {
                // The pending record stays: the next run reads the person back before sending.
                ctx.stop.fatal(error);
                ctx.events.send(Event::Left(1));
                return false;
            }
            ErrorClass::Throttled => {
                ctx.events.send(Event::Throttled);
                ctx.pacer.throttled(error.retry_after());
                Failure::Throttled
            }
            ErrorClass::OutcomeUnknown => {
                unknown = true;
                Failure::Retryable
            }
            ErrorClass::Transient => Failure::Retryable,
        };
        if !wait_to_retry(ctx, failure, attempts, &error).await {
            if ctx.stop.is_stopping() {
                ctx.events.send(Event::Left(1));
                return false;
            }
            exhausted(ctx, job, image, attempts, &error);
            return true;
        }
    }
}

/// Reads the person back; retried like any call. Returns URL → FaceId of what the server holds.
async fn lookup(ctx: &Context, job: &PersonJob) -> Result<Known, Abandon> {
    let mut attempts = 0u32;
    loop {
        if ctx.stop.is_stopping() {
            return Err(Abandon::Stopped);
        }
        ctx.pacer.acquire().await;
        attempts += 1;
        ctx.events.send(Event::Lookup);
        let result = ctx
            .client
            .list_custom_persons(Some(&job.category_id), Some(&job.person_id))
            .await;
        let error = match result {
            Ok(listing) => return Ok(faces_of(job, listing)),
            Err(error) => error,
        };
        let failure = match error.class() {
            ErrorClass::RunFatal => {
                ctx.stop.fatal(error);
                return Err(Abandon::Stopped);
            }
            ErrorClass::RowRejected => return Err(Abandon::Exhausted(error)),
            ErrorClass::Throttled => {
                ctx.events.send(Event::Throttled);
                ctx.pacer.throttled(error.retry_after());
                Failure::Throttled
            }
            ErrorClass::OutcomeUnknown | ErrorClass::Transient => Failure::Retryable,
        };
        if !wait_to_retry(ctx, failure, attempts, &error).await {
            return Err(if ctx.stop.is_stopping() {
                Abandon::Stopped
            } else {
                Abandon::Exhausted(error)
            });
        }
    }
}

fn faces_of(job: &PersonJob, listing: crate::api::CustomPersons) -> Known {
    let (category, person) = (fold_id(&job.category_id), fold_id(&job.person_id));
    let mut known = Known::new();
    for c in listing
        .categories
        .into_iter()
        .filter(|c| fold_id(&c.category_id) == category)
    {
        for p in c
            .persons
            .into_iter()
            .filter(|p| fold_id(&p.person_id) == person)
        {
            for face in p.faces {
                if let Some(url) = face.image_url {
                    known.entry(url).or_insert(face.face_id);
                }
            }
        }
    }
    known
}

/// Sleeps before the next attempt; false when there is to be no next attempt.
pub(super) async fn wait_to_retry(
    ctx: &Context,
    failure: Failure,
    attempts: u32,
    error: &ApiError,
) -> bool {
    let decision = ctx.policy.decide(
        failure,
        attempts,
        error.retry_after(),
        ctx.jitter.fraction(),
    );
    let Decision::RetryAfter(delay) = decision else {
        return false;
    };
    tracing::debug!(
        code = error.code(),
        attempts,
        delay_ms = delay.as_millis() as u64,
        "retrying"
    );
    ctx.events.send(Event::Retry);
    ctx.stop.sleep(delay).await
}

fn leave(ctx: &Context, job: &PersonJob, rest: &[ImageWork], abandon: Abandon) {
    match abandon {
        Abandon::Stopped => ctx.events.send(Event::Left(rest.len() as u64)),
        Abandon::Exhausted(error) => {
            for image in rest {
                exhausted(ctx, job, image, 0, &error);
            }
        }
    }
}

/// Attempts ran out: recorded as a retryable failure, sent again (after a look-up) next run.
fn exhausted(ctx: &Context, job: &PersonJob, image: &ImageWork, attempts: u32, error: &ApiError) {
    let mut record = failed(ctx, job, image, error);
    record.retryable = Some(true);
    record.attempts = (attempts > 0).then_some(attempts);
    ctx.events.send(Event::Outcome(record));
    ctx.events.send(Event::Left(1));
}

pub(super) fn failed(
    ctx: &Context,
    job: &PersonJob,
    image: &ImageWork,
    error: &ApiError,
) -> ImageRecord {
    let mut record = record(ctx, job, image, Status::Failed);
    record.error_code = Some(error.code().to_string());
    record.message = Some(error.message().to_string());
    record
}

pub(super) fn record(
    ctx: &Context,
    job: &PersonJob,
    image: &ImageWork,
    status: Status,
) -> ImageRecord {
    let mut record = ImageRecord::new(
        &ctx.run_id,
        status,
        &job.category_id,
        &job.person_id,
        &image.image_url,
    );
    record.line = Some(image.line);
    if status == Status::Registered {
        record.person_name = job.person_name.clone();
    }
    record
}
