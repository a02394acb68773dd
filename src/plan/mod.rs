//! The plan: manifest rows minus what the ledger already holds, grouped into work per person.
//!
//! Streams the manifest once. Memory grows with persons and with rows still to send, never with
//! rows already done, so an all-done re-run of a million rows stays small.
//!
//! What the manifest no longer holds is planned in [`drops`]: images to settle (their outcome
//! was unknown) and, for `--sync`, images to remove.

mod compact;
pub mod drops;

/// A 128-bit key at 4-byte alignment, for maps with millions of entries.
pub(crate) use compact::Key;
pub mod run;

pub use drops::{DropWork, Dropped, MadeEntity, PersonDrops, SyncScope, Why};

/// Why a sync that planned `removals` makes none, if it must not: more than `max_delete`, or a
/// manifest with invalid rows (a damaged id or URL would make a photo it still means look
/// dropped; like rclone, a sync removes nothing when its source could not be read cleanly).
pub fn sync_refusal(removals: u64, max_delete: u64, invalid: u64) -> Option<String> {
    if removals == 0 {
        return None;
    }
    if invalid > 0 {
        return Some(format!(
            "--sync would remove {removals} images, but the manifest has {invalid} invalid \
             rows: removing none (an invalid row may be a photo still on the roster; fix the \
             rows, `check --sync` lists both)"
        ));
    }
    (removals > max_delete).then(|| {
        format!(
            "--sync would remove {removals} images, more than --max-delete {max_delete}: \
             removing none (`check --sync` lists them; raise --max-delete to allow it)"
        )
    })
}

/// What `--sync` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncSettings {
    pub scope: SyncScope,
    /// Remove nothing when more than this many removals are planned.
    pub max_delete: u64,
}

use std::hash::BuildHasherDefault;

use crate::image::{ImageId, Locator, library_key};
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

/// One image to register, in manifest order within its person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageWork {
    pub line: u64,
    pub image_url: String,
    /// The manifest's `image_key`, when the row has one.
    pub image_key: Option<String>,
    pub key: u128,
    /// Its last record is `pending` or a retryable `failed`: an earlier outcome is unknown.
    pub unsettled: bool,
    /// The SHA-256 of its bytes, when pre-flight read them (recorded with the image).
    pub sha256: Option<String>,
    /// Its last record is `invalid` (pre-flight refused it): refused again, it is a known
    /// rejection, not a new one.
    pub was_invalid: bool,
}

/// Everything to do for one person: images one at a time, in manifest order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersonJob {
    pub category_id: String,
    pub person_id: String,
    pub person_name: Option<String>,
    /// Some image's earlier outcome is unknown: read the person back before sending anything.
    pub needs_lookup: bool,
    /// The ledger does not prove what the server holds for this person (it has no record of
    /// the person): read the server and adopt what is there before sending anything.
    pub reconcile: bool,
    /// Read the person's whole library once (shared with the library's other persons) rather
    /// than the person alone; set by [`Plan::read_libraries_from`].
    pub read_library: bool,
    /// The latest `pending` record of the person's images (Unix seconds; 0: none): the read
    /// that settles them waits until a request sent then can no longer be in flight.
    pub pending_since: u32,
    pub images: Vec<ImageWork>,
    /// Images the manifest no longer names: to settle, and (`--sync`) to remove.
    pub drops: Vec<DropWork>,
    /// Images the ledger records as registered for the person (the 10-image limit's count).
    pub held: u32,
    /// A request for one of the person's images may still land unseen: read the person and
    /// remove late copies.
    pub recheck: Option<Recheck>,
}

/// A person to read again for late copies of its images.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recheck {
    /// (canonical URL, id) of every image the person holds by the ledger: another id under
    /// one of these URLs is a late copy.
    pub keep: Vec<Kept>,
    /// Write `settled` afterwards (the check at the start of a run; the one later in the same
    /// run leaves the person to be checked once more by the next run).
    pub settles: bool,
    /// Images the manifest names that the ledger holds as registered: one whose id has left
    /// the server since (a removal whose outcome was unknown landed late) is sent again.
    pub restore: Vec<ImageWork>,
    /// Read only because a run created images for the person (`converge`), not because a
    /// request may still land.
    pub converge_only: bool,
}

/// An image the ledger holds for a person, as a read again compares it with the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kept {
    /// The canonical URL ([`crate::image::Locator`]).
    pub url: String,
    /// The server's id the ledger records.
    pub id: String,
    /// The URL and `image_key` as recorded: the identity a record of another id keeps.
    pub image_url: String,
    pub image_key: Option<String>,
}

impl Kept {
    pub fn of(image_url: &str, image_key: Option<&str>, id: &str) -> Kept {
        Kept {
            url: crate::image::Locator::of(image_url).into_string(),
            id: id.to_string(),
            image_url: image_url.to_string(),
            image_key: image_key.map(str::to_string),
        }
    }
}

impl PersonJob {
    /// The server must be read before this person's images are sent.
    pub fn reads_first(&self) -> bool {
        self.needs_lookup || self.reconcile
    }

    /// Nothing to do for the person but the read owed to what an earlier run created
    /// (`converge`).
    pub fn only_converges(&self) -> bool {
        self.images.is_empty()
            && self.drops.is_empty()
            && !self.needs_lookup
            && self.recheck.as_ref().is_some_and(|r| r.converge_only)
    }

    /// Takes out the reads owed only to what earlier runs created, and the jobs left empty.
    pub fn drop_converge_reads(jobs: &mut Vec<PersonJob>) {
        jobs.retain_mut(|job| {
            if job.only_converges() {
                return false;
            }
            if job.recheck.as_ref().is_some_and(|r| r.converge_only) {
                job.recheck = None;
            }
            true
        });
    }

    /// A job for a person the manifest has no image to send for.
    pub fn without_images(category_id: String, person_id: String) -> PersonJob {
        PersonJob {
            category_id,
            person_id,
            person_name: None,
            needs_lookup: false,
            reconcile: false,
            read_library: false,
            pending_since: 0,
            images: Vec::new(),
            drops: Vec::new(),
            held: 0,
            recheck: None,
        }
    }
}

/// A row that will not be sent, and why; recorded in the ledger and the rejects file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    pub line: u64,
    pub category_id: String,
    pub person_id: String,
    pub image_url: String,
    /// The row's `image_key`, when it has one: with the URL, the image's identity.
    pub image_key: Option<String>,
    pub status: Status,
    pub reason: String,
    /// The ledger already says exactly this, so the record need not be written again.
    pub already_recorded: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Counts {
    pub rows: u64,
    pub persons: u64,
    pub libraries: u64,
    pub invalid: u64,
    pub duplicates: u64,
    pub already_registered: u64,
    pub over_limit: u64,
    pub over_limit_persons: u64,
    /// Failed in an earlier run for a reason retrying will not fix; sent again only with --retry-failed.
    pub previously_failed: u64,
    /// Failed in an earlier run through a link the user signed, and the manifest now has
    /// another link for the image (signed again): sent again without --retry-failed.
    pub relinked: u64,
    /// Of `to_send`, rows an earlier run recorded `invalid` (pre-flight refused the photo, or
    /// the row was invalid before it was edited): read again first, refused again unless fixed.
    pub previously_invalid: u64,
    pub to_send: u64,
    /// Persons whose images must be looked up on the server first (an outcome was unknown).
    pub to_look_up: u64,
    /// Persons the ledger knows nothing of: the server is read for them before sending.
    pub to_reconcile: u64,
}

#[derive(Debug, Default)]
pub struct Plan {
    pub counts: Counts,
    pub jobs: Vec<PersonJob>,
    pub rejected: Vec<Rejected>,
    /// Rows that name an image an earlier row already named: (line, the first row's line).
    pub duplicate_rows: Vec<(u64, u64)>,
    /// The libraries valid rows name, as first written: the only ones a sync removes from.
    pub libraries: Vec<String>,
    /// Images to send, per library of `libraries`.
    pub adds_by_library: Vec<u64>,
    /// `--sync`: every person valid rows name (person keys).
    pub persons_named: std::collections::HashSet<u128>,
    /// Registered images the manifest names of persons a request may still land for (the
    /// ledger's `recheck`), by person key: restored if they have vanished ([`Recheck`]).
    pub restore: Vec<(u128, ImageWork)>,
    /// How the manifest file was read ([`crate::manifest::Reader::describe`]), when a file
    /// was planned: `check` says it without opening the file again.
    pub read_as: Option<String>,
}

impl Plan {
    /// Marks the jobs of every library with at least `threshold` persons to read, so the
    /// worker reads such a library once instead of person by person. For MTS one
    /// `ListCustomPersons` with only `CategoryId` answers for the whole library, so two persons
    /// to read already make one library read cheaper than two person reads; ICE pages through
    /// a library's every sample, so it reads person by person (`threshold` = `None`).
    pub fn read_libraries_from(&mut self, threshold: Option<usize>) {
        let Some(threshold) = threshold else {
            return;
        };
        let mut per_library: KeyMap<usize> = KeyMap::default();
        let reads = |j: &PersonJob| j.reads_first() || j.recheck.is_some();
        for job in self.jobs.iter().filter(|j| reads(j)) {
            *per_library
                .entry(library_key(&job.category_id))
                .or_insert(0) += 1;
        }
        for job in self.jobs.iter_mut().filter(|j| reads(j)) {
            job.read_library = per_library[&library_key(&job.category_id)] >= threshold;
        }
    }
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
        for slot in batch.iter_mut() {
            let entry = std::mem::replace(slot, Ok(Entry::Invalid(InvalidRow::default())));
            if let Some(row) = planner.take(entry)? {
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
        self.plan.counts.rows += 1;
        match entry? {
            Entry::Valid(row) => match self.rules.check_row.and_then(|check| check(&row)) {
                Some((column, reason)) => self.invalid(refused(row, column, reason)),
                None => return Ok(self.add(row)),
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
        image_url: row.image_url,
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
                let already = self
                    .replay
                    .state(image.key)
                    .is_some_and(|s| s.status == Status::Skipped);
                self.plan.counts.over_limit += 1;
                self.plan.counts.to_send -= 1;
                self.plan.adds_by_library[library] -= 1;
                self.skipped_persons.push((self.plan.rejected.len(), index));
                self.plan.rejected.push(Rejected {
                    line: image.line,
                    category_id: job.category_id.clone(),
                    person_id: job.person_id.clone(),
                    image_url: image.image_url,
                    image_key: image.image_key,
                    status: Status::Skipped,
                    reason: String::new(),
                    already_recorded: already,
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
                image_url: bad.image_url.clone(),
                image_key: None,
            };
            if let Some((refused, reason)) = check(&row)
                && refused == column
            {
                bad.reason = reason;
            }
        }
        let key = ImageId::new(&bad.image_url, None).key(&bad.category_id, &bad.person_id);
        self.replay.named(key);
        let already = self
            .replay
            .state(key)
            .is_some_and(|s| s.status == Status::Invalid);
        let reason = match bad.column {
            Some(column) => format!("{column}: {}", bad.reason),
            None => bad.reason,
        };
        self.plan.rejected.push(Rejected {
            line: bad.line,
            category_id: bad.category_id,
            person_id: bad.person_id,
            image_url: bad.image_url,
            image_key: None,
            status: Status::Invalid,
            reason,
            already_recorded: already,
        });
    }

    /// The person's and the image's keys of a row. When the ledger holds this person's image
    /// at this URL under another identity (an `image_key` column added, dropped or changed),
    /// the row is that image, kept under the identity it was recorded by.
    fn identify(&self, row: &mut Row) -> (u128, u128) {
        let (person, key) = row
            .image_id()
            .person_and_key(&row.category_id, &row.person_id);
        let keyed = row.image_key.is_some();
        match (self.replay).alias(key, keyed, &row.category_id, &row.person_id, &row.image_url) {
            Some((recorded, identity)) => {
                row.image_key = identity.map(str::to_string);
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
    fn add(&mut self, mut row: Row) -> Option<Row> {
        let (person, key) = self.identify(&mut row);
        // A duplicate row's person is always known: the row that named the image first made it.
        let index = self.person_of(person, &row.category_id);
        let (state, first) = self.first_sight(index, key, row.line);
        if let Some(first) = first {
            self.plan.counts.duplicates += 1;
            self.plan.duplicate_rows.push((row.line, first));
            return Some(row);
        }
        let sync = self.options.sync;
        let slot = &mut self.persons.slots[index as usize];
        let (library, registered) = (slot.library as usize, slot.registered);
        let mut needs_lookup = false;
        let there = !self.on_server.is_empty()
            && self
                .on_server
                .contains(&(person, Locator::of(&row.image_url).into_string()));
        let reconcile = there
            || match self.options.reconcile {
                Reconcile::Always => true,
                Reconcile::Auto => !self.known_persons.contains(&(person as u64)),
                Reconcile::Never => false,
            };
        match state.map(|s| (s.status, s.retryable)) {
            Some((Status::Registered, _)) => {
                self.plan.counts.already_registered += 1;
                slot.kept += 1;
                if self.options.keep_work && self.replay.reads_again(person as u64) {
                    let image = ImageWork {
                        line: row.line,
                        image_url: row.image_url,
                        image_key: row.image_key,
                        key,
                        unsettled: false,
                        sha256: None,
                        was_invalid: false,
                    };
                    self.plan.restore.push((person, image));
                    return None;
                }
                return Some(row);
            }
            Some((Status::Pending | Status::Removing, _)) | Some((Status::Failed, true)) => {
                needs_lookup = true
            }
            // Refused through a link the user signed, and the manifest's link changed since:
            // the refusal may have been the old link's (expired), so the image goes again.
            Some((Status::Failed, false))
                if state.is_some_and(|s| s.link != 0)
                    && crate::image::link_fingerprint(&row.image_url)
                        .is_some_and(|now| Some(now) != state.map(|s| s.link)) =>
            {
                self.plan.counts.relinked += 1;
                needs_lookup = true;
            }
            Some((Status::Failed, false)) if !self.options.retry_failed => {
                self.plan.counts.previously_failed += 1;
                return Some(row);
            }
            // Sent again on request: an earlier attempt may have been applied before the
            // refusal (or the look-up that was refused), so read the person first.
            Some((Status::Failed, false)) => needs_lookup = true,
            _ => {}
        }
        if let Some(limit) = self.rules.max_images_per_person
            && slot.used >= limit
            && !sync
            && !there
        {
            slot.over_limit = true;
            self.plan.counts.over_limit += 1;
            let already = state.is_some_and(|s| s.status == Status::Skipped);
            self.skipped_persons.push((self.plan.rejected.len(), index));
            self.plan.rejected.push(Rejected {
                line: row.line,
                reason: String::new(),
                category_id: row.category_id,
                person_id: row.person_id,
                image_url: row.image_url,
                image_key: row.image_key,
                status: Status::Skipped,
                already_recorded: already,
            });
            return None;
        }
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
        self.plan.adds_by_library[library] += 1;
        if !self.options.keep_work {
            if slot.job == compact::NO_JOB {
                slot.job = compact::COUNTED;
                self.plan.counts.to_reconcile += u64::from(reconcile);
            }
            if needs_lookup && !slot.looked_up {
                slot.looked_up = true;
                self.plan.counts.to_look_up += 1;
            }
            return Some(row);
        }
        let work = ImageWork {
            line: row.line,
            image_url: row.image_url,
            image_key: row.image_key,
            key,
            unsettled: needs_lookup,
            sha256: None,
            was_invalid: state.is_some_and(|s| s.status == Status::Invalid),
        };
        let at = match slot.job_index() {
            Some(at) => at,
            None => {
                self.plan.counts.to_reconcile += u64::from(reconcile);
                self.plan.jobs.push(PersonJob {
                    category_id: row.category_id,
                    person_id: row.person_id,
                    person_name: row.person_name,
                    needs_lookup: false,
                    reconcile,
                    read_library: false,
                    pending_since: 0,
                    images: Vec::new(),
                    drops: Vec::new(),
                    held: registered,
                    recheck: None,
                });
                let at = self.plan.jobs.len() - 1;
                slot.job = u32::try_from(at).expect("fewer than 4 billion persons");
                at
            }
        };
        let job = &mut self.plan.jobs[at];
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::person_key;
    use crate::ledger::{ImageRecord, encode, replay_from};
    use std::path::Path;

    fn row(line: u64, cat: &str, person: &str, url: &str) -> Result<Entry, ManifestError> {
        Ok(Entry::Valid(Row {
            line,
            category_id: cat.into(),
            person_id: person.into(),
            person_name: None,
            image_url: url.into(),
            image_key: None,
        }))
    }

    fn ledger(records: &[(Status, &str, &str, &str, bool)]) -> Replay {
        let mut bytes = Vec::new();
        for (status, cat, person, url, retryable) in records {
            let mut r = ImageRecord::new("r", *status, cat, person, url);
            r.retryable = retryable.then_some(true);
            encode(&crate::ledger::Record::Image(r), &mut bytes);
        }
        replay_from(Path::new("l"), &bytes[..]).unwrap()
    }

    fn run_options() -> Options {
        Options {
            retry_failed: false,
            keep_work: true,
            reconcile: Default::default(),
            sync: false,
        }
    }

    #[test]
    fn rows_group_by_person_case_insensitively_in_manifest_order() {
        let rows = vec![
            row(2, "Lib", "Alice", "http://x/1"),
            row(3, "lib", "Bob", "http://x/2"),
            row(4, "LIB", "alice", "http://x/3"),
        ];
        let plan = plan(rows.into_iter(), &Replay::default(), run_options()).unwrap();
        assert_eq!(plan.jobs.len(), 2);
        let lines: Vec<u64> = plan.jobs[0].images.iter().map(|i| i.line).collect();
        assert_eq!(lines, vec![2, 4]);
        assert_eq!(plan.counts.persons, 2);
        assert_eq!(plan.counts.libraries, 1);
        assert_eq!(plan.counts.to_send, 3);
    }

    #[test]
    fn the_same_image_twice_for_one_person_is_planned_once() {
        let rows = vec![
            row(2, "l", "a", "http://x/1"),
            row(3, "L", "A", "http://x/1"),
        ];
        let plan = plan(rows.into_iter(), &Replay::default(), run_options()).unwrap();
        assert_eq!(plan.counts.to_send, 1);
        assert_eq!(plan.counts.duplicates, 1);
    }

    #[test]
    fn the_eleventh_image_is_skipped_and_registered_ones_count_toward_the_limit() {
        let done = ledger(&[
            (Status::Registered, "l", "a", "http://x/old1", false),
            (Status::Registered, "l", "a", "http://x/old2", false),
        ]);
        let rows = (0..10).map(|i| row(i + 2, "l", "a", &format!("http://x/new{i}")));
        let plan = plan(rows, &done, run_options()).unwrap();
        assert_eq!(plan.counts.to_send, 8);
        assert_eq!(plan.counts.over_limit, 2);
        assert_eq!(plan.counts.over_limit_persons, 1);
        let skipped: Vec<u64> = plan.rejected.iter().map(|r| r.line).collect();
        assert_eq!(
            skipped,
            vec![10, 11],
            "the first rows in manifest order win"
        );
        assert!(plan.rejected.iter().all(|r| r.status == Status::Skipped));
    }

    #[test]
    fn registered_images_are_not_sent_again_and_pending_ones_need_a_lookup() {
        let done = ledger(&[
            (Status::Registered, "l", "a", "http://x/1", false),
            (Status::Pending, "l", "b", "http://x/2", false),
            (Status::Failed, "l", "c", "http://x/3", true),
        ]);
        let rows = vec![
            row(2, "l", "a", "http://x/1"),
            row(3, "l", "b", "http://x/2"),
            row(4, "l", "c", "http://x/3"),
        ];
        let plan = plan(rows.into_iter(), &done, run_options()).unwrap();
        assert_eq!(plan.counts.already_registered, 1);
        assert_eq!(plan.counts.to_send, 2);
        assert_eq!(plan.counts.to_look_up, 2);
        assert!(plan.jobs.iter().all(|j| j.needs_lookup));
    }

    #[test]
    fn rows_that_failed_for_good_wait_for_retry_failed() {
        let done = ledger(&[(Status::Failed, "l", "a", "http://x/1", false)]);
        let rows = || vec![row(2, "l", "a", "http://x/1")].into_iter();
        let plain = plan(rows(), &done, run_options()).unwrap();
        assert_eq!(
            (plain.counts.to_send, plain.counts.previously_failed),
            (0, 1)
        );
        let again = plan(
            rows(),
            &done,
            Options {
                retry_failed: true,
                keep_work: true,
                reconcile: Default::default(),
                sync: false,
            },
        )
        .unwrap();
        assert_eq!(
            (again.counts.to_send, again.counts.previously_failed),
            (1, 0)
        );
        assert!(
            again.jobs[0].needs_lookup,
            "an earlier attempt may have landed before the refusal: read the person first"
        );
    }

    #[test]
    fn invalid_rows_are_rejected_and_not_rewritten_when_the_ledger_has_them() {
        let bad = InvalidRow {
            line: 7,
            column: Some("image_url"),
            reason: "not an http(s) URL".into(),
            category_id: "l".into(),
            person_id: "a".into(),
            image_url: "ftp://x".into(),
        };
        let fresh = plan(
            vec![Ok(Entry::Invalid(bad.clone()))].into_iter(),
            &Replay::default(),
            run_options(),
        )
        .unwrap();
        assert_eq!(fresh.counts.invalid, 1);
        assert!(!fresh.rejected[0].already_recorded);
        assert!(fresh.rejected[0].reason.starts_with("image_url: "));
        let known = ledger(&[(Status::Invalid, "l", "a", "ftp://x", false)]);
        let again = plan(
            vec![Ok(Entry::Invalid(bad))].into_iter(),
            &known,
            run_options(),
        )
        .unwrap();
        assert!(again.rejected[0].already_recorded);
    }

    #[test]
    fn counting_only_keeps_no_work_but_counts_the_same() {
        let rows =
            || (0..30).map(|i| row(i + 2, "l", &format!("p{}", i % 3), &format!("http://x/{i}")));
        let kept = plan(rows(), &Replay::default(), run_options()).unwrap();
        let counted = plan(rows(), &Replay::default(), Options::default()).unwrap();
        assert!(counted.jobs.is_empty());
        assert_eq!(kept.counts.to_send, counted.counts.to_send);
        assert_eq!(kept.counts.over_limit, counted.counts.over_limit);
        assert_eq!(kept.counts.persons, 3);
        assert_eq!(counted.counts.persons, 3);
    }

    #[test]
    fn images_the_server_holds_count_against_a_sync_s_limit_before_new_rows_do() {
        let url = |name: &str| format!("http://x/{name}.jpg");
        let mut rows = vec![
            row(2, "l", "a", &url("new-a")),
            row(3, "l", "a", &url("new-b")),
        ];
        rows.extend((0..10).map(|i| row(i + 4, "l", "a", &url(&i.to_string()))));
        let on_server: OnServer = (0..10)
            .map(|i| (person_key("l", "a"), url(&i.to_string())))
            .collect();
        let options = Options {
            sync: true,
            ..run_options()
        };
        let plan = plan_knowing(
            rows.into_iter(),
            &Replay::default(),
            options,
            Rules::MTS,
            &on_server,
        )
        .unwrap();
        let skipped: Vec<u64> = plan.rejected.iter().map(|r| r.line).collect();
        assert_eq!(
            skipped,
            vec![2, 3],
            "the ten on the server are the person's"
        );
        assert_eq!(plan.jobs[0].images.len(), 10);
        assert!(plan.jobs[0].reconcile, "read first, to adopt them");
    }

    #[test]
    fn a_row_given_an_image_key_is_the_image_its_url_was_recorded_as() {
        let done = ledger(&[(Status::Registered, "l", "a", "http://x/1", false)]);
        let keyed = Row {
            image_key: Some("photo-1".into()),
            ..match row(2, "l", "a", "http://x/1").unwrap() {
                Entry::Valid(row) => row,
                Entry::Invalid(_) => unreachable!(),
            }
        };
        let options = Options {
            sync: true,
            ..run_options()
        };
        let plan = plan(vec![Ok(Entry::Valid(keyed))].into_iter(), &done, options).unwrap();
        assert_eq!(
            (plan.counts.already_registered, plan.counts.to_send),
            (1, 0)
        );
        assert_eq!(done.unseen(|_| true).count(), 0, "a sync would remove it");
    }

    fn short_names(row: &Row) -> Option<(&'static str, String)> {
        (row.person_id.len() > 3).then(|| ("person_id", "longer than 3 bytes".to_string()))
    }

    #[test]
    fn a_target_without_a_limit_plans_every_image_of_a_person() {
        let rules = Rules {
            max_images_per_person: None,
            check_row: None,
        };
        let rows = (0..15).map(|i| row(i + 2, "l", "a", &format!("http://x/{i}")));
        let plan = plan_with(rows, &Replay::default(), run_options(), rules).unwrap();
        assert_eq!((plan.counts.to_send, plan.counts.over_limit), (15, 0));
        assert_eq!(plan.jobs[0].images.len(), 15);
    }

    #[test]
    fn rows_a_target_check_refuses_are_invalid_with_the_column_named() {
        let rules = Rules {
            max_images_per_person: None,
            check_row: Some(short_names),
        };
        let rows = vec![
            row(2, "l", "abcd", "http://x/1"),
            row(3, "l", "ab", "http://x/2"),
        ];
        let plan = plan_with(rows.into_iter(), &Replay::default(), run_options(), rules).unwrap();
        assert_eq!((plan.counts.invalid, plan.counts.to_send), (1, 1));
        assert_eq!(plan.rejected[0].status, Status::Invalid);
        assert_eq!(plan.rejected[0].reason, "person_id: longer than 3 bytes");
    }
}
