//! The plan: manifest rows minus what the ledger already holds, grouped into work per person.
//!
//! Streams the manifest once. Memory grows with persons and with rows still to send, never with
//! rows already done, so an all-done re-run of a million rows stays small.
//!
//! What the manifest no longer holds is planned in [`drops`]: images to settle (their outcome
//! was unknown) and, for `--sync`, images to remove.

mod compact;
pub mod drops;
pub mod run;
mod work;

/// A 128-bit key at 4-byte alignment, for maps with millions of entries.
pub(crate) use compact::Key;

pub use drops::{Dropped, MadeEntity, PersonDrops, SyncScope};
pub use work::{Counts, DropWork, ImageWork, Kept, PersonJob, Plan, Recheck, Rejected, Why};

/// Why a sync that planned `removals` makes none, if it must not: more than `max_delete`, or a
/// manifest with invalid rows (a damaged id or URL would make a photo it still means look
/// dropped; like rclone, a sync removes nothing when its source could not be read cleanly).
pub fn sync_refusal(removals: u64, max_delete: u64, invalid: u64) -> Option<(SyncRefusal, String)> {
    if removals == 0 {
        return None;
    }
    if invalid > 0 {
        return Some((
            SyncRefusal::InvalidRows,
            format!(
                "--sync would remove {removals} images, but the manifest has {invalid} invalid \
                 rows: removing none (an invalid row may be a photo still on the roster; fix \
                 the rows, `check --sync` lists both)"
            ),
        ));
    }
    (removals > max_delete).then(|| {
        (
            SyncRefusal::MaxDelete,
            format!(
                "--sync would remove {removals} images, more than --max-delete {max_delete}: \
                 removing none (`check --sync` lists them; raise --max-delete to allow it)"
            ),
        )
    })
}

/// Why a sync made none of its removals (exit 8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncRefusal {
    /// The manifest has invalid rows: one may be a photo still on the roster.
    InvalidRows,
    /// More removals than `--max-delete`.
    MaxDelete,
}

/// What `--sync` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncSettings {
    pub scope: SyncScope,
    /// Remove nothing when more than this many removals are planned.
    pub max_delete: u64,
}

use std::hash::BuildHasherDefault;

use crate::image::{Image, library_key};
use crate::ledger::{KeyHasher, KeyMap, PersonMap, Replay, Status};
use crate::manifest::{Entry, InvalidRow, ManifestError, Row};

/// The service refuses an eleventh face for a person.
pub const MAX_FACES_PER_PERSON: u32 = 10;

/// A target's own check of a valid row: the failing column and why, or `None` when it fits.
pub type RowCheck = fn(&Row) -> Option<(&'static str, String)>;

/// What differs between targets when planning: the per-person image limit and extra row checks.
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    /// Images per person the service accepts; `None` = no limit.
    pub max_images_per_person: Option<u32>,
    /// Rows this check refuses are `invalid`, as if the manifest reader had refused them.
    pub check_row: Option<RowCheck>,
}

impl Rules {
    /// MTS custom faces: at most ten images per person, no extra checks.
    pub const MTS: Rules = Rules {
        max_images_per_person: Some(MAX_FACES_PER_PERSON),
        check_row: None,
    };
}

/// When a run reads the server before sending (`--reconcile`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reconcile {
    /// Whenever the ledger does not prove the state: a person it has no record of.
    #[default]
    Auto,
    /// For every person with something to send.
    Always,
    /// Only after an unknown outcome (a `pending` record).
    Never,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Send rows whose last record is `failed` again.
    pub retry_failed: bool,
    /// Keep the work itself (`run`), or only count it (`check`).
    pub keep_work: bool,
    pub reconcile: Reconcile,
    /// `--sync`: images the manifest no longer names will be removed, so the image limit
    /// counts only those it still names.
    pub sync: bool,
}

struct Planner<'a> {
    replay: &'a Replay,
    on_server: &'a OnServer,
    /// Images planned that the server already holds (never held back by the limit).
    held_there: KeyMap<()>,
    options: Options,
    rules: Rules,
    plan: Plan,
    /// Image → the line that first named it, for images the ledger does not know (those it
    /// knows are tracked in the replay itself).
    seen_images: compact::SeenLines,
    /// Library key → its index in `plan.libraries`.
    seen_libraries: KeyMap<usize>,
    /// Persons the ledger has any record of (low 64 bits of the key).
    known_persons: std::collections::HashSet<u64, BuildHasherDefault<KeyHasher>>,
    /// Per person: images counted against the limit, and the job index once there is work.
    persons: compact::Persons,
    registered: PersonMap<u32>,
    /// Rows skipped by the image limit: (index in `plan.rejected`, person index); their reason
    /// is written once the manifest has been read whole.
    skipped_persons: Vec<(usize, u32)>,
}

/// Plans `entries` (the manifest, in order) against the ledger's replay, for MTS.
pub fn plan(
    entries: impl Iterator<Item = Result<Entry, ManifestError>>,
    replay: &Replay,
    options: Options,
) -> Result<Plan, ManifestError> {
    plan_with(entries, replay, options, Rules::MTS)
}

/// Plans `entries` against the ledger's replay under one target's `rules`.
pub fn plan_with(
    entries: impl Iterator<Item = Result<Entry, ManifestError>>,
    replay: &Replay,
    options: Options,
    rules: Rules,
) -> Result<Plan, ManifestError> {
    plan_knowing(entries, replay, options, rules, &OnServer::new())
}

/// Images the server was read to hold, as (person key, canonical URL).
pub type OnServer = std::collections::HashSet<(u128, String)>;

/// [`plan_with`], knowing what the server holds (a sync's library read): a manifest image
/// already there is the person's, as if the ledger recorded it, before the image limit is
/// applied — so a lost ledger keeps the same photos as a whole one — and its person is read
/// before anything is sent (to adopt it).
pub fn plan_knowing(
    entries: impl Iterator<Item = Result<Entry, ManifestError>>,
    replay: &Replay,
    options: Options,
    rules: Rules,
    on_server: &OnServer,
) -> Result<Plan, ManifestError> {
    let mut planner = Planner::new(replay, options, rules, on_server);
    for entry in entries {
        planner.take(entry)?;
    }
    Ok(planner.finish())
}

/// [`plan_knowing`] of a manifest read ahead on its own thread, handing each batch back with
/// the rows it did not keep, to be freed by the thread that made them
/// ([`crate::manifest::ReadAhead::give_back`]).
pub fn plan_read_ahead(
    mut entries: crate::manifest::ReadAhead,
    replay: &Replay,
    options: Options,
    rules: Rules,
    on_server: &OnServer,
) -> Result<Plan, ManifestError> {
    let mut planner = Planner::new(replay, options, rules, on_server);
    while let Some(mut batch) = entries.next_batch() {
        for (slot, &keys) in batch.entries.iter_mut().zip(&batch.keys) {
            let entry = std::mem::replace(slot, Ok(Entry::Invalid(InvalidRow::default())));
            if let Some(row) = planner.take_keyed(entry, Some(keys))? {
                *slot = Ok(Entry::Valid(row));
            }
        }
        entries.give_back(batch);
    }
    Ok(planner.finish())
}

impl<'a> Planner<'a> {
    fn new(
        replay: &'a Replay,
        options: Options,
        rules: Rules,
        on_server: &'a OnServer,
    ) -> Planner<'a> {
        replay.reset_seen();
        Planner {
            replay,
            on_server,
            held_there: KeyMap::default(),
            options,
            rules,
            plan: Plan::default(),
            seen_images: Default::default(),
            seen_libraries: KeyMap::default(),
            known_persons: match options.reconcile {
                Reconcile::Auto => replay.persons(),
                _ => Default::default(),
            },
            persons: Default::default(),
            skipped_persons: Vec::new(),
            // Only a limit needs the count of what each person already has.
            registered: match rules.max_images_per_person {
                Some(_) => replay.registered_per_person(),
                None => PersonMap::default(),
            },
        }
    }

    /// Plans one manifest entry; the row back when nothing of it was kept.
    fn take(&mut self, entry: Result<Entry, ManifestError>) -> Result<Option<Row>, ManifestError> {
        self.take_keyed(entry, None)
    }

    /// [`Planner::take`] with the row's keys when the reading thread hashed them already.
    fn take_keyed(
        &mut self,
        entry: Result<Entry, ManifestError>,
        keys: Option<(u128, u128)>,
    ) -> Result<Option<Row>, ManifestError> {
        self.plan.counts.rows += 1;
        match entry? {
            Entry::Valid(row) => match self.rules.check_row.and_then(|check| check(&row)) {
                Some((column, reason)) => self.invalid(refused(row, column, reason)),
                None => return Ok(self.add(row, keys)),
            },
            Entry::Invalid(bad) => self.invalid(bad),
        }
        Ok(None)
    }

    /// The plan, once every entry is in.
    fn finish(mut self) -> Plan {
        let counts = &mut self.plan.counts;
        counts.persons = self.persons.len() as u64;
        counts.libraries = self.seen_libraries.len() as u64;
        if self.options.sync {
            self.limit_after_removals();
        }
        self.explain_skips();
        if self.options.sync {
            self.plan.persons_named = self.persons.keys().map(|(key, _)| key).collect();
        }
        let counts = &mut self.plan.counts;
        counts.over_limit_persons =
            (self.persons.slots.iter()).filter(|p| p.over_limit).count() as u64;
        self.plan
    }
}

/// A valid row that the target's own rules refuse.
fn refused(row: Row, column: &'static str, reason: String) -> InvalidRow {
    InvalidRow {
        line: row.line,
        column: Some(column),
        reason,
        category_id: row.category_id,
        person_id: row.person_id,
        image_url: row.image.source,
    }
}

impl Planner<'_> {
    /// A sync's image limit, once the manifest has been read whole: the registered images it
    /// still names stay, the newest new rows beyond the limit wait (earlier rows win). An image
    /// whose earlier outcome is unknown is never held back: it may be on the server already.
    fn limit_after_removals(&mut self) {
        let Some(limit) = self.rules.max_images_per_person else {
            return;
        };
        for &index in self.persons.index.values() {
            let slot = &mut self.persons.slots[index as usize];
            let allowed = limit.saturating_sub(slot.kept);
            if slot.new <= allowed {
                continue;
            }
            let mut excess = slot.new - allowed;
            slot.over_limit = true;
            let library = slot.library as usize;
            let Some(job) = slot.job_index() else {
                self.plan.counts.over_limit += u64::from(excess);
                self.plan.counts.to_send -= u64::from(excess);
                self.plan.adds_by_library[library] -= u64::from(excess);
                continue;
            };
            let job = &mut self.plan.jobs[job];
            let mut at = job.images.len();
            let mut held_back = Vec::new();
            while excess > 0 && at > 0 {
                at -= 1;
                if job.images[at].unsettled || self.held_there.contains_key(&job.images[at].key) {
                    continue;
                }
                held_back.push(job.images.remove(at));
                excess -= 1;
            }
            for image in held_back.into_iter().rev() {
                let state = self.replay.state(image.key);
                let already = state.is_some_and(|s| s.status == Status::Skipped);
                self.plan.counts.over_limit += 1;
                self.plan.counts.to_send -= 1;
                self.plan.adds_by_library[library] -= 1;
                self.skipped_persons.push((self.plan.rejected.len(), index));
                self.plan.rejected.push(Rejected {
                    line: image.line,
                    category_id: job.category_id.clone(),
                    person_id: job.person_id.clone(),
                    image: image.image,
                    status: Status::Skipped,
                    reason: String::new(),
                    already_recorded: already,
                    reported: already && state.is_some_and(|s| s.reported),
                });
            }
        }
    }

    /// Says why each row the image limit held back was: the count it met, and how much of it
    /// is held by images whose rows left the manifest.
    fn explain_skips(&mut self) {
        let Some(limit) = self.rules.max_images_per_person else {
            return;
        };
        for &(at, person) in &self.skipped_persons {
            let slot = self.persons.slots[person as usize];
            let stale = slot.registered.saturating_sub(slot.kept);
            self.plan.rejected[at].reason = if self.options.sync {
                format!(
                    "the person would hold more than {limit} images (the service's limit) even \
                     after this sync's removals: {} registered images stay; earlier rows in the \
                     manifest win",
                    slot.kept
                )
            } else if stale > 0 {
                format!(
                    "the person already has {limit} images planned or registered (the service's \
                     limit), {stale} of them registered for rows no longer in the manifest: \
                     `run --sync` removes those; earlier rows in the manifest win"
                )
            } else {
                format!(
                    "the person already has {limit} images planned or registered (the service's \
                     limit); earlier rows in the manifest win"
                )
            };
        }
    }

    fn invalid(&mut self, mut bad: InvalidRow) {
        self.plan.counts.invalid += 1;
        // The manifest reader knows only MTS's limits; a target with its own (ICE's 64-byte
        // names) says why in its own terms when it refuses the same column too.
        if let (Some(check), Some(column @ ("category_id" | "person_id"))) =
            (self.rules.check_row, bad.column)
        {
            let row = Row {
                line: bad.line,
                category_id: bad.category_id.clone(),
                person_id: bad.person_id.clone(),
                person_name: None,
                image: Image::at(bad.image_url.clone()),
            };
            if let Some((refused, reason)) = check(&row)
                && refused == column
            {
                bad.reason = reason;
            }
        }
        let image = Image::at(bad.image_url);
        let key = image.key_in(&bad.category_id, &bad.person_id);
        self.replay.named(key);
        let state = self.replay.state(key);
        let already = state.is_some_and(|s| s.status == Status::Invalid);
        let reason = match bad.column {
            Some(column) => format!("{column}: {}", bad.reason),
            None => bad.reason,
        };
        self.plan.rejected.push(Rejected {
            line: bad.line,
            category_id: bad.category_id,
            person_id: bad.person_id,
            image,
            status: Status::Invalid,
            reason,
            already_recorded: already,
            reported: already && state.is_some_and(|s| s.reported),
        });
    }

    /// The person's and the image's keys of a row. When the ledger holds this person's image
    /// at this URL under another identity (an `image_key` column added, dropped or changed),
    /// the row is that image, kept under the identity it was recorded by. `keys`: the row's
    /// keys when the reading thread hashed them already.
    fn identify(&self, row: &mut Row, keys: Option<(u128, u128)>) -> (u128, u128) {
        let (person, key) = keys.unwrap_or_else(|| {
            row.image_id()
                .person_and_key(&row.category_id, &row.person_id)
        });
        let keyed = row.image.key.is_some();
        match (self.replay).alias(
            key,
            keyed,
            &row.category_id,
            &row.person_id,
            &row.image.source,
        ) {
            Some((recorded, identity)) => {
                row.image.key = identity.map(str::to_string);
                (person, recorded)
            }
            None => (person, key),
        }
    }

    /// The image's ledger state, and the line of an earlier row of the same image (this row
    /// is then a duplicate). `person` is the index of the image's person.
    fn first_sight(
        &mut self,
        person: u32,
        key: u128,
        line: u64,
    ) -> (Option<crate::ledger::ImageState>, Option<u64>) {
        match self.replay.seen_at(key, line) {
            Some((state, first)) => (Some(state), first),
            None => match self.seen_images.entry(compact::Seen::of(person, key)) {
                std::collections::hash_map::Entry::Occupied(e) => (None, Some(u64::from(*e.get()))),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(compact::line32(line));
                    (None, None)
                }
            },
        }
    }

    /// The index of the row's library in the plan, added on first sight.
    fn library_of(&mut self, category_id: &str) -> usize {
        let next = self.plan.libraries.len();
        let library = *self
            .seen_libraries
            .entry(library_key(category_id))
            .or_insert(next);
        if library == next {
            self.plan.libraries.push(category_id.trim().to_string());
            self.plan.adds_by_library.push(0);
        }
        library
    }

    /// The index of the row's person, interned on its first row (its library with it: every
    /// row of a person names the same library, so the library is looked up once per person).
    fn person_of(&mut self, person: u128, category_id: &str) -> u32 {
        if let Some(index) = self.persons.get(person) {
            return index;
        }
        let library = self.library_of(category_id) as u32;
        let registered = self.registered.get(&(person as u64)).copied().unwrap_or(0);
        // A sync removes the registered images the manifest no longer names: only those it
        // names count, once it has been read whole.
        let used = if self.options.sync { 0 } else { registered };
        self.persons
            .add(person, compact::PersonSlot::new(used, registered, library))
    }

    /// Plans a valid row; the row back when nothing of it was kept.
    fn add(&mut self, mut row: Row, keys: Option<(u128, u128)>) -> Option<Row> {
        let (person, key) = self.identify(&mut row, keys);
        // A duplicate row's person is always known: the row that named the image first made it.
        let index = self.person_of(person, &row.category_id);
        let (state, first) = self.first_sight(index, key, row.line);
        if let Some(first) = first {
            self.plan.counts.duplicates += 1;
            self.plan.duplicate_rows.push((row.line, first));
            return Some(row);
        }
        let needs_lookup = match self.after_earlier(&row, index, state) {
            Earlier::Registered => return self.keep_registered(row, person, key),
            Earlier::Refused => return Some(row),
            Earlier::Send { needs_lookup } => needs_lookup,
        };
        let there = !self.on_server.is_empty()
            && self
                .on_server
                .contains(&(person, row.image.locator().into_string()));
        if self.over_limit(index, there) {
            self.hold_back(row, index, state);
            return None;
        }
        let reconcile = there
            || match self.options.reconcile {
                Reconcile::Always => true,
                Reconcile::Auto => !self.known_persons.contains(&(person as u64)),
                Reconcile::Never => false,
            };
        self.count_to_send(index, key, there, state);
        if !self.options.keep_work {
            self.count_person(index, reconcile, needs_lookup);
            return Some(row);
        }
        let work = ImageWork {
            line: row.line,
            image: row.image,
            key,
            unsettled: needs_lookup,
            sha256: None,
            was_invalid: state.is_some_and(|s| s.status == Status::Invalid),
            was_reported: state.is_some_and(|s| s.status == Status::Invalid && s.reported),
        };
        let job = self.job_of(index, row.category_id, row.person_id, row.person_name);
        let job = &mut self.plan.jobs[job];
        if reconcile && !job.reconcile {
            job.reconcile = true;
            self.plan.counts.to_reconcile += 1;
        }
        if let Some(state) = state {
            job.pending_since = job.pending_since.max(state.since);
        }
        if needs_lookup && !job.needs_lookup {
            job.needs_lookup = true;
            self.plan.counts.to_look_up += 1;
        }
        job.images.push(work);
        None
    }

    /// What the image's last record makes of the row: registered already, refused for good
    /// (sent again only with `--retry-failed`), or to send, read back first when an earlier
    /// outcome is unknown or a refusal may not be the last word.
    #[inline]
    fn after_earlier(
        &mut self,
        row: &Row,
        index: u32,
        state: Option<crate::ledger::ImageState>,
    ) -> Earlier {
        match state.map(|s| (s.status, s.retryable)) {
            Some((Status::Registered, _)) => {
                self.plan.counts.already_registered += 1;
                self.persons.slots[index as usize].kept += 1;
                Earlier::Registered
            }
            Some((Status::Pending | Status::Removing, _)) | Some((Status::Failed, true)) => {
                Earlier::Send { needs_lookup: true }
            }
            // Refused through a link the user signed, and the manifest's link changed since:
            // the refusal may have been the old link's (expired), so the image goes again.
            Some((Status::Failed, false))
                if state.is_some_and(|s| s.link != 0)
                    && crate::image::link_fingerprint(&row.image.source)
                        .is_some_and(|now| Some(now) != state.map(|s| s.link)) =>
            {
                self.plan.counts.relinked += 1;
                Earlier::Send { needs_lookup: true }
            }
            Some((Status::Failed, false)) if !self.options.retry_failed => {
                self.plan.counts.previously_failed += 1;
                if state.is_some_and(|s| !s.reported) {
                    self.plan.counts.failed_unreported += 1;
                }
                Earlier::Refused
            }
            // Sent again on request: an earlier attempt may have been applied before the
            // refusal (or the look-up that was refused), so read the person first.
            Some((Status::Failed, false)) => Earlier::Send { needs_lookup: true },
            _ => Earlier::Send {
                needs_lookup: false,
            },
        }
    }

    /// A registered image the manifest still names: kept for the run's read of its person
    /// (an image whose id has left the server is sent again), else nothing to do.
    fn keep_registered(&mut self, row: Row, person: u128, key: u128) -> Option<Row> {
        if !(self.options.keep_work && self.replay.reads_again(person as u64)) {
            return Some(row);
        }
        let image = ImageWork {
            line: row.line,
            image: row.image,
            key,
            unsettled: false,
            sha256: None,
            was_invalid: false,
            was_reported: false,
        };
        self.plan.restore.push((person, image));
        None
    }

    /// The person holds as many images as the service accepts; a sync decides only once the
    /// manifest has been read whole, and an image the server holds already takes no new slot.
    #[inline]
    fn over_limit(&self, index: u32, there: bool) -> bool {
        let used = self.persons.slots[index as usize].used;
        self.rules
            .max_images_per_person
            .is_some_and(|limit| used >= limit)
            && !self.options.sync
            && !there
    }

    /// A row held back by the image limit: `skipped`, and said why once the manifest is read.
    fn hold_back(&mut self, row: Row, index: u32, state: Option<crate::ledger::ImageState>) {
        self.persons.slots[index as usize].over_limit = true;
        self.plan.counts.over_limit += 1;
        let already = state.is_some_and(|s| s.status == Status::Skipped);
        self.skipped_persons.push((self.plan.rejected.len(), index));
        self.plan.rejected.push(Rejected {
            line: row.line,
            reason: String::new(),
            category_id: row.category_id,
            person_id: row.person_id,
            image: row.image,
            status: Status::Skipped,
            already_recorded: already,
            reported: already && state.is_some_and(|s| s.reported),
        });
    }

    /// Counts a row to send against its person (a slot under the limit), its library and the
    /// plan.
    #[inline]
    fn count_to_send(
        &mut self,
        index: u32,
        key: u128,
        there: bool,
        state: Option<crate::ledger::ImageState>,
    ) {
        let slot = &mut self.persons.slots[index as usize];
        slot.used += 1;
        if there {
            slot.kept += 1;
            self.held_there.insert(key, ());
        } else {
            slot.new += 1;
        }
        self.plan.counts.to_send += 1;
        self.plan.counts.previously_invalid +=
            u64::from(state.is_some_and(|s| s.status == Status::Invalid));
        self.plan.adds_by_library[slot.library as usize] += 1;
    }

    /// Without the work kept (`check`): the person's reads counted once.
    #[inline]
    fn count_person(&mut self, index: u32, reconcile: bool, needs_lookup: bool) {
        let slot = &mut self.persons.slots[index as usize];
        if slot.job == compact::NO_JOB {
            slot.job = compact::COUNTED;
            self.plan.counts.to_reconcile += u64::from(reconcile);
        }
        if needs_lookup && !slot.looked_up {
            slot.looked_up = true;
            self.plan.counts.to_look_up += 1;
        }
    }

    /// The index of the person's job in the plan, made on its first row to send.
    fn job_of(
        &mut self,
        index: u32,
        category_id: String,
        person_id: String,
        person_name: Option<String>,
    ) -> usize {
        let slot = &mut self.persons.slots[index as usize];
        if let Some(at) = slot.job_index() {
            return at;
        }
        self.plan.jobs.push(PersonJob {
            category_id,
            person_id,
            person_name,
            needs_lookup: false,
            reconcile: false,
            read_library: false,
            pending_since: 0,
            images: Vec::new(),
            drops: Vec::new(),
            held: slot.registered,
            recheck: None,
        });
        let at = self.plan.jobs.len() - 1;
        slot.job = u32::try_from(at).expect("fewer than 4 billion persons");
        at
    }
}

/// What an image's last record makes of a row (see `Planner::after_earlier`).
enum Earlier {
    Registered,
    Refused,
    Send { needs_lookup: bool },
}

#[cfg(test)]
mod tests;
