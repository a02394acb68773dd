//! The worker's removals for one person: settling images the manifest no longer names whose
//! outcome was unknown, removing what a sync drops, and removing late copies (the same image
//! under a second id, left by a request that landed after the look-up that found nothing).
//!
//! Every removal is journaled `removing` (durably) before it is sent and `removed` after, by
//! the server's id, one per call, never a wildcard; a crash in between is settled by a read.

use std::collections::VecDeque;

use super::context::{Context, Known, known, person};
use super::recorder::{Event, Note};
use crate::api::ApiError;
use crate::backend::{Backend, Held, is_safe_id};
use crate::caller::{Halt, Removal};
use crate::image::Locator;
use crate::ledger::{ImageRecord, Record, Status, record::PersonRecord};
use crate::plan::{DropWork, ImageWork, PersonJob, Why};
use crate::stop::StopReason;

/// The service refused an image because the person already holds as many as it allows.
pub(crate) fn is_full(error: &ApiError) -> bool {
    error.code().contains("LimitExceeded")
}

/// What the server was read to hold, per place, kept current as images are removed.
pub(crate) struct Reads<P> {
    places: Vec<(P, Vec<Held>)>,
    pub copies_removed: u64,
}

impl<P> Default for Reads<P> {
    fn default() -> Self {
        Reads {
            places: Vec::new(),
            copies_removed: 0,
        }
    }
}

impl<P: Clone> Reads<P> {
    pub fn put<T: Backend<Place = P>>(&mut self, place: &P, held: Vec<Held>) {
        match self
            .places
            .iter_mut()
            .find(|(p, _)| T::same_place(p, place))
        {
            Some((_, h)) => *h = held,
            None => self.places.push((place.clone(), held)),
        }
    }

    fn get<T: Backend<Place = P>>(&self, place: &P) -> Option<&Vec<Held>> {
        self.places
            .iter()
            .find(|(p, _)| T::same_place(p, place))
            .map(|(_, h)| h)
    }

    /// Canonical URL → id of what the place holds; empty when it was not read.
    pub fn known<T: Backend<Place = P>>(&self, place: &P) -> Known {
        self.get::<T>(place).map(|h| known(h)).unwrap_or_default()
    }

    /// How many images the place holds, when it was read.
    pub fn count<T: Backend<Place = P>>(&self, place: &P) -> Option<usize> {
        self.get::<T>(place).map(Vec::len)
    }

    fn forget<T: Backend<Place = P>>(&mut self, place: &P, id: &str) {
        if let Some((_, held)) = self
            .places
            .iter_mut()
            .find(|(p, _)| T::same_place(p, place))
        {
            held.retain(|h| h.id != id);
        }
    }

    /// What the place holds: read once, then kept current.
    async fn held<T: Backend<Place = P>>(
        &mut self,
        ctx: &Context<T>,
        place: &P,
    ) -> Result<Vec<Held>, Halt> {
        if let Some(held) = self.get::<T>(place) {
            return Ok(held.clone());
        }
        let held = ctx.target.held(&ctx.caller, place).await?;
        self.put::<T>(place, held.clone());
        Ok(held)
    }
}

/// The images of `recheck.restore` whose recorded ids `place` no longer holds (it was read):
/// a removal whose outcome was unknown landed after the read that found them there.
pub(crate) fn vanished<T: Backend>(
    recheck: &crate::plan::Recheck,
    reads: &Reads<T::Place>,
    place: &T::Place,
) -> Vec<ImageWork> {
    let Some(held) = reads.get::<T>(place) else {
        return Vec::new();
    };
    // Matched by identity, not by URL: an image with an `image_key` (or `image_sha256`) whose
    // address changed is still the image its recorded id stands for.
    recheck
        .restore
        .iter()
        .filter(|image| {
            let identity = image.image.id();
            !recheck
                .keep
                .iter()
                .any(|k| k.image.id() == identity && held.iter().any(|h| h.id == k.id))
        })
        .cloned()
        .collect()
}

/// The place the first of the person's drops records (ICE: its LibId and EntityId).
pub(crate) fn first_drop_place<T: Backend>(job: &PersonJob) -> Option<T::Place> {
    job.drops
        .iter()
        .find_map(|d| T::place_at(person(job), d.lib_id.as_deref(), d.entity_id.as_deref()))
}

/// Nothing of the person exists on the server under its name and its records name no place:
/// unsettled images are settled as not there; nothing else can be done.
pub(crate) fn nothing_there<T: Backend>(ctx: &Context<T>, job: &PersonJob) {
    for drop in &job.drops {
        if drop.unsettled() {
            let mut record = drop_record(ctx, job, drop, Status::Removed, None);
            record.reason = Some(format!("{}; not on the server", drop.why.reason()));
            ctx.events
                .send(Event::Noted(Record::Image(record), Note::Settled));
        } else {
            ctx.events.send(Event::RemovalsLeft(1));
        }
    }
}

/// The `settled` record: the person was read again and its late copies removed.
pub(crate) fn settled<T: Backend>(ctx: &Context<T>, job: &PersonJob, copies: u64) {
    let record = PersonRecord {
        ts: crate::clock::now_rfc3339(),
        run: ctx.run_id.clone(),
        category_id: job.category_id.clone(),
        person_id: job.person_id.clone(),
        copies_removed: (copies > 0).then_some(copies),
        target: match ctx.target.kind() {
            crate::backend::TargetKind::Mts => None,
            kind => Some(kind.ledger_name()),
        },
    };
    ctx.events.send(Event::Record(Record::Settled(record)));
}

/// Removes second ids of the person's images at `place`: of the ids the server holds under
/// an image `keep` names, the **lowest** is kept, the rule every writer agrees on — this
/// ledger's late copies, and another host's run of the same job with its own ledger, which
/// keeps the lowest too (see `worker::converge`); so two writers never each remove the id the
/// other keeps. When the kept id is not the one the ledger records, the ledger records it
/// first (`adopted`), then the others are removed. Nothing else is touched. Returns the
/// canonical URLs recorded anew, and how many images were held more than once.
pub(crate) async fn remove_copies<T: Backend>(
    ctx: &Context<T>,
    job: &PersonJob,
    place: &T::Place,
    recheck: &crate::plan::Recheck,
    reads: &mut Reads<T::Place>,
) -> Result<(Vec<String>, u64), Halt> {
    let held = reads.held(ctx, place).await?;
    let mut doubled = 0;
    let mut seen: std::collections::HashSet<&str> = Default::default();
    let mut adopted = Vec::new();
    for kept in recheck.keep.iter().filter(|k| seen.insert(k.url.as_str())) {
        let mut ids: Vec<&Held> = held
            .iter()
            .filter(|h| {
                h.image_url
                    .as_deref()
                    .is_some_and(|u| Locator::listed(u).as_str() == kept.url)
            })
            .collect();
        if ids.len() < 2 {
            // None: vanished (the worker sends it again if the roster wants it); one: the
            // image, adopted by the worker when it is not the recorded id.
            continue;
        }
        ids.sort_by(|a, b| a.id.cmp(&b.id));
        doubled += 1;
        let lowest = ids[0].id.clone();
        let ours = recheck
            .keep
            .iter()
            .any(|k| k.url == kept.url && k.id == lowest);
        if !ours {
            // Recorded before the ledger's own id is removed: it never points at a removed id.
            let line = recheck
                .restore
                .iter()
                .find(|i| i.image.locator().as_str() == kept.url)
                .map(|i| i.line);
            let record = kept_record(ctx, job, place, kept, &lowest, line);
            ctx.events.send(Event::Outcome(record));
            adopted.push(kept.url.clone());
        }
        for copy in ids[1..].iter().map(|h| (*h).clone()) {
            let reason = format!("a copy of {} {lowest}: the lowest id is kept", T::ID);
            if remove_copy(ctx, job, place, &copy, reason).await? {
                reads.forget::<T>(place, &copy.id);
                reads.copies_removed += 1;
            }
        }
    }
    Ok((adopted, doubled))
}

/// A removal's record as its line: a duplicate copy's is a `copy` line (the image's own
/// record stays as it is), any other the image's.
fn line(copy: bool, record: ImageRecord) -> Record {
    if copy {
        Record::Copy(record)
    } else {
        Record::Image(record)
    }
}

/// The `removing` record made `removed`, as the event that counts it: a copy's removal, one
/// gone before this run (counted apart from removals made), or a removal made.
fn removed(mut record: ImageRecord, why: Why, copy: bool, removal: Removal) -> Event {
    record.status = Status::Removed;
    record.ts = crate::clock::now_rfc3339();
    record.reason = Some(format!("{}: {}", why.reason(), removal.reason()));
    match (copy, removal) {
        (true, _) => Event::Noted(Record::Copy(record), Note::CopyRemoved),
        (false, Removal::AlreadyGone) => Event::Noted(Record::Image(record), Note::AlreadyGone),
        (false, _) => Event::Outcome(record),
    }
}

/// The `removing` record made `registered` again when the service refused the removal, with
/// its words.
fn refused(mut record: ImageRecord, why: Why, error: &ApiError) -> ImageRecord {
    record.status = Status::Registered;
    record.ts = crate::clock::now_rfc3339();
    record.error_code = Some(error.code().to_string());
    record.message = Some(error.message().to_string());
    record.reason = Some(format!("{}: the removal was refused", why.reason()));
    record
}

/// The record of an image under `id`, the lowest of the ids the server holds for it, when
/// the ledger recorded another.
fn kept_record<T: Backend>(
    ctx: &Context<T>,
    job: &PersonJob,
    place: &T::Place,
    kept: &crate::plan::Kept,
    id: &str,
    line: Option<u64>,
) -> ImageRecord {
    let mut record = ImageRecord::of(
        &ctx.run_id,
        Status::Registered,
        &job.category_id,
        &job.person_id,
        &kept.image,
    );
    record.line = line;
    record.person_name = job.person_name.clone();
    record.adopted = Some(true);
    record.reason = Some("held under more than one id: the lowest id is kept".into());
    ctx.target.stamp(&mut record, Some(place));
    T::set_id(&mut record, id.to_string());
    record
}

/// Removes `copy`, a second id of an image, journaled as a `copy` (`removing` before,
/// `removed` after) with `reason`: the image's own record stays. True when removed.
pub(crate) async fn remove_copy<T: Backend>(
    ctx: &Context<T>,
    job: &PersonJob,
    place: &T::Place,
    copy: &Held,
    reason: String,
) -> Result<bool, Halt> {
    if !is_safe_id(&copy.id) {
        return Ok(false);
    }
    let url = copy.image_url.clone().unwrap_or_default();
    let mut record = ImageRecord::new(
        &ctx.run_id,
        Status::Removing,
        &job.category_id,
        &job.person_id,
        &url,
    );
    ctx.target.stamp(&mut record, Some(place));
    T::set_id(&mut record, copy.id.clone());
    record.reason = Some(reason);
    if !ctx.events.durable(vec![Record::Copy(record.clone())]).await {
        ctx.caller.stop().stop(StopReason::LedgerFailed);
        return Err(Halt::Stopped);
    }
    match send_removal(ctx, place, &copy.id).await {
        Ok(_) => {
            record.status = Status::Removed;
            record.ts = crate::clock::now_rfc3339();
            ctx.events
                .send(Event::Noted(Record::Copy(record), Note::CopyRemoved));
            Ok(true)
        }
        Err(Halt::Refused(e) | Halt::Exhausted(e)) => {
            crate::say!(
                "face-enroll: cannot remove a copy {} / {} {} {}: {e}",
                job.category_id,
                job.person_id,
                T::ID,
                copy.id
            );
            Ok(false)
        }
        Err(halt) => Err(halt),
    }
}

async fn send_removal<T: Backend>(
    ctx: &Context<T>,
    place: &T::Place,
    id: &str,
) -> Result<Removal, Halt> {
    crate::backend::remove_by_id(&ctx.target, &ctx.caller, place, id).await
}

/// The person's drops still to handle, in order.
pub(crate) struct Queue {
    drops: VecDeque<DropWork>,
}

impl Queue {
    pub fn new(job: &PersonJob) -> Queue {
        Queue {
            drops: job.drops.iter().cloned().collect(),
        }
    }

    pub fn has_removal(&self) -> bool {
        self.drops.iter().any(|d| d.remove)
    }

    /// Handles the next drop to remove (and the settle-only ones before it); true when an
    /// image left the server.
    pub async fn remove_one<T: Backend>(
        &mut self,
        ctx: &Context<T>,
        job: &PersonJob,
        place: &T::Place,
        reads: &mut Reads<T::Place>,
    ) -> Result<bool, Halt> {
        while let Some(drop) = self.drops.pop_front() {
            let removal = drop.remove;
            let gone = handle(ctx, job, place, &drop, reads).await;
            if gone.is_err() {
                self.drops.push_front(drop);
            }
            if removal || gone.is_err() {
                return gone;
            }
        }
        Ok(false)
    }

    /// Handles every drop left; an error ends the person (counted as left).
    pub async fn finish<T: Backend>(
        &mut self,
        ctx: &Context<T>,
        job: &PersonJob,
        place: &T::Place,
        reads: &mut Reads<T::Place>,
    ) -> Result<(), Halt> {
        while !self.drops.is_empty() {
            if ctx.caller.stop().is_stopping() {
                self.leave(ctx);
                return Err(Halt::Stopped);
            }
            if let Err(halt) = self.remove_one(ctx, job, place, reads).await {
                self.leave(ctx);
                return Err(halt);
            }
        }
        Ok(())
    }

    /// Counts what is left as left for the next run.
    pub fn leave<T: Backend>(&mut self, ctx: &Context<T>) {
        if !self.drops.is_empty() {
            ctx.events
                .send(Event::RemovalsLeft(self.drops.len() as u64));
            self.drops.clear();
        }
    }
}

/// Settles one drop by what the server holds (when its outcome is unknown), then removes it
/// when the sync says so. True when an image left the server.
async fn handle<T: Backend>(
    ctx: &Context<T>,
    job: &PersonJob,
    job_place: &T::Place,
    drop: &DropWork,
    reads: &mut Reads<T::Place>,
) -> Result<bool, Halt> {
    let place = T::place_at(
        person(job),
        drop.lib_id.as_deref(),
        drop.entity_id.as_deref(),
    )
    .unwrap_or_else(|| job_place.clone());
    let id = match drop.status {
        Status::Registered => drop.id.clone(),
        Status::Removing => {
            let held = reads.held(ctx, &place).await?;
            drop.id
                .clone()
                .filter(|id| held.iter().any(|h| &h.id == id))
        }
        _ => {
            let held = reads.held(ctx, &place).await?;
            known(&held).get(drop.image.locator().as_str()).cloned()
        }
    };
    let Some(id) = id else {
        // Not on the server: a removal that landed, or a create that never did.
        let mut record = drop_record(ctx, job, drop, Status::Removed, Some(&place));
        if let Some(id) = &drop.id {
            T::set_id(&mut record, id.clone());
        }
        let (reason, note) = match drop.status {
            Status::Removing => ("the removal had landed (read back)", None),
            _ => ("not on the server (read back)", Some(Note::Settled)),
        };
        record.reason = Some(format!("{}: {reason}", drop.why.reason()));
        ctx.events.send(match note {
            Some(note) => Event::Noted(Record::Image(record), note),
            None => Event::Outcome(record),
        });
        return Ok(false);
    };
    if !drop.remove {
        // On the server and staying: the ledger says so again, with the id.
        let mut record = drop_record(ctx, job, drop, Status::Registered, Some(&place));
        T::set_id(&mut record, id);
        if drop.why == crate::plan::Why::Adopt {
            record.adopted = Some(true);
            record.reason = Some(drop.why.reason().to_string());
        } else {
            record.recovered = Some(true);
            record.reason = Some(format!("{}: on the server (read back)", drop.why.reason()));
        }
        ctx.events.send(Event::Outcome(record));
        return Ok(false);
    }
    remove(ctx, job, &place, drop, id, reads).await
}

/// Removes one image by id, journaled before and after.
async fn remove<T: Backend>(
    ctx: &Context<T>,
    job: &PersonJob,
    place: &T::Place,
    drop: &DropWork,
    id: String,
    reads: &mut Reads<T::Place>,
) -> Result<bool, Halt> {
    if !is_safe_id(&id) {
        crate::say!(
            "face-enroll: not removing {} / {} {}: {} {id:?} is not an id that can be sent",
            job.category_id,
            job.person_id,
            drop.image.source,
            T::ID
        );
        return Ok(false);
    }
    let mut record = drop_record(ctx, job, drop, Status::Removing, Some(place));
    T::set_id(&mut record, id.clone());
    record.reason = Some(drop.why.reason().to_string());
    // A duplicate copy is journaled as a `copy`: the image's own record stays as it is.
    let copy = drop.why == crate::plan::Why::Copy;
    if !ctx.events.durable(vec![line(copy, record.clone())]).await {
        ctx.caller.stop().stop(StopReason::LedgerFailed);
        return Err(Halt::Stopped);
    }
    match send_removal(ctx, place, &id).await {
        Ok(removal) => {
            ctx.events.send(removed(record, drop.why, copy, removal));
            reads.forget::<T>(place, &id);
            Ok(true)
        }
        Err(Halt::Refused(error)) => {
            // Still there (a read said so): the ledger keeps it registered, with why.
            crate::say!(
                "face-enroll: cannot {} {} / {} {} {id}: {error}",
                T::VERB,
                job.category_id,
                job.person_id,
                T::ID
            );
            let record = refused(record, drop.why, &error);
            ctx.events
                .send(Event::Noted(line(copy, record), Note::RemovalFailed));
            Ok(false)
        }
        // Unknown: the `removing` record stays, and the next run settles it by a read.
        Err(Halt::Exhausted(error)) => {
            crate::say!(
                "face-enroll: {} {} / {} {} {id} left for the next run: {error}",
                T::VERB,
                job.category_id,
                job.person_id,
                T::ID
            );
            ctx.events.send(Event::RemovalsLeft(1));
            Ok(false)
        }
        Err(halt) => Err(halt),
    }
}

fn drop_record<T: Backend>(
    ctx: &Context<T>,
    job: &PersonJob,
    drop: &DropWork,
    status: Status,
    place: Option<&T::Place>,
) -> ImageRecord {
    let mut record = ImageRecord::new(
        &ctx.run_id,
        status,
        &job.category_id,
        &job.person_id,
        &drop.image.source,
    );
    // As recorded: the drop's image comes from the ledger (or the listing) as written there.
    record.image_key = drop.image.key.clone();
    ctx.target.stamp(&mut record, place);
    record
}
