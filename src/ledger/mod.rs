//! The ledger: an append-only JSON Lines file of what happened to every image, its one record
//! type (`record`), its one reader (`read`) and the replay a run plans against.
//!
//! One record per line, self-describing (`v`, `kind`). The last record for an image wins. A torn
//! last line (power loss mid-write) is dropped on replay and cut off before the next append; any
//! other unreadable line stops the command rather than guessing. Every command that appends goes
//! through the one writer, the pipeline's recorder.

pub mod read;
pub mod record;
mod write;

pub use read::{Entry, ImageLine, ReplayView, Scanned, View, scan, scan_from};
pub use record::{
    ImageRecord, ObjectKind, ObjectRecord, Record, RunRecord, SCHEMA_VERSION, Status, TargetName,
    encode, is_safe_id,
};
pub use write::{Appender, Lock, lock_path, remove_if_empty};

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::{Path, PathBuf};

use crate::image::ImageId;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(
        "cannot open the ledger {path}: {source}. Check the path and its permissions, or choose another with --ledger."
    )]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the ledger {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot write the ledger {path}: {source}. Nothing after this point is recorded; free disk space or fix permissions, then run again (it resumes)."
    )]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "ledger {path}, line {line}, column {column}: {problem}. Only the last line may be cut short; a damaged line in the middle needs a person: keep a copy, repair or remove that line, then run again."
    )]
    Corrupt {
        path: PathBuf,
        line: u64,
        column: u64,
        problem: String,
    },
    #[error(
        "ledger {path}, line {line}: written by a newer face-enroll (record version {version}, this build reads up to {SCHEMA_VERSION}). Upgrade face-enroll."
    )]
    TooNew {
        path: PathBuf,
        line: u64,
        version: u32,
    },
    #[error(
        "the ledger {path} was deleted or replaced while this command was writing it; {}. Nothing \
         more is sent. Put the recovered lines back (or keep the new file), then run again.",
        match recovery {
            Ok(file) => format!("everything it held is saved in {}", file.display()),
            Err(e) => format!("saving its content failed too ({e})"),
        }
    )]
    Replaced {
        path: PathBuf,
        recovery: Result<PathBuf, String>,
    },
    #[error(
        "the ledger {path} is not a regular file; give --ledger a file path (a new one is created)"
    )]
    NotAFile { path: PathBuf },
    #[error(
        "the ledger {path} is in use by another face-enroll ({holder}). Wait for it to finish, or stop it; two runs on one ledger would register images twice."
    )]
    Locked { path: PathBuf, holder: String },
}

/// The one exit code of each ledger failure, whichever command met it (README, "Exit codes").
/// No wildcard: a new variant must choose its code here.
impl From<&LedgerError> for crate::exit::Exit {
    fn from(error: &LedgerError) -> crate::exit::Exit {
        use crate::exit::Exit;
        match error {
            LedgerError::Locked { .. } => Exit::Locked,
            // Requests may have been sent: what was recorded is safe, the next run settles.
            LedgerError::Write { .. } | LedgerError::Replaced { .. } => Exit::LedgerFailed,
            // A ledger the user named that cannot be used: nothing was sent because of it.
            LedgerError::Open { .. }
            | LedgerError::Read { .. }
            | LedgerError::Corrupt { .. }
            | LedgerError::TooNew { .. }
            | LedgerError::NotAFile { .. } => Exit::Usage,
        }
    }
}

/// What an image's last record says, kept small (12 bytes; 32 with its key in the replay's
/// map): a million images fit in tens of megabytes. Per-person figures live beside it, in maps
/// that grow with persons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageState {
    pub status: Status,
    /// For `failed`: the failure may go away on its own (attempts ran out), so the next run retries.
    pub retryable: bool,
    /// For `pending`: when it was written (Unix seconds), so the look-up that settles it waits
    /// until a request sent then can no longer be in flight; 0 otherwise.
    pub since: u32,
    /// For `failed`: the fingerprint of the user-signed link that was refused
    /// ([`crate::image::link_fingerprint`]); 0 when there is none.
    pub link: u32,
    /// For a row not registered (`invalid`, `skipped`, `failed` for good): a `run` that
    /// finished (exit 0 or 1, what the roster owner's report follows) came after the record. A
    /// run that was killed, or stopped (exit 5, 6, 3, 8, 130, …), did not report it: the next
    /// one that finishes counts it as new, so exit 1 and the report are not skipped.
    pub reported: bool,
}

impl ImageState {
    /// A row not registered that no later run has stopped trying on its own: invalid, over
    /// the image limit, or refused for good.
    pub fn is_rejection(&self) -> bool {
        matches!(self.status, Status::Invalid | Status::Skipped)
            || (self.status == Status::Failed && !self.retryable)
    }

    /// The last record does not say what the server holds: a request (a create, or a removal)
    /// may have been applied without its answer being recorded.
    pub fn is_unsettled(&self) -> bool {
        matches!(self.status, Status::Pending | Status::Removing)
            || (self.status == Status::Failed && self.retryable)
    }
}

/// The hash keys are already xxh3 hashes: hashing them again would only cost time.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut buf = [0u8; 8];
            buf[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(buf);
        }
    }
    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

pub type KeyMap<V> = HashMap<u128, V, BuildHasherDefault<KeyHasher>>;
/// Person counts, keyed by the low 64 bits of a person key.
pub type PersonMap<V> = HashMap<u64, V, BuildHasherDefault<KeyHasher>>;

/// One image of the replay: its state, and (for the planner) the manifest line that named it
/// first in this run, 0 when none yet — kept here so an all-done re-run needs no second map.
#[derive(Debug)]
pub struct Slot {
    pub state: ImageState,
    seen: std::cell::Cell<u32>,
}

/// `Slot::seen` of an image only an invalid row named.
const NAMED_ONLY: u32 = u32::MAX;

/// Persons, by the low 64 bits of their key.
pub type PersonSet = std::collections::HashSet<u64, BuildHasherDefault<KeyHasher>>;

/// How recently an unfinished run must have written the ledger for a new run to assume it
/// was still sending (it may send for a while without writing: look-ups, retries, a batch of
/// pending images). Long enough for any restart loop; a run killed longer ago costs nothing.
pub const LATELY: time::Duration = time::Duration::minutes(10);
/// How recently a ledger written by a run that ended must have been written for a new run to
/// wait for that run's last second of requests.
pub const JUST_NOW: time::Duration = time::Duration::seconds(2);

/// The rule of [`Replay::may_have_sent_lately`] for a command that reads the ledger its own
/// way: `unfinished`, the last run has a start and no end; `written`, the ledger holds lines.
pub fn may_have_sent_lately(
    unfinished: bool,
    written: bool,
    modified: Option<std::time::SystemTime>,
) -> bool {
    let Some(modified) = modified else {
        return false;
    };
    let age = crate::clock::now_utc() - time::OffsetDateTime::from(modified);
    (unfinished && age < LATELY) || (written && age < JUST_NOW)
}

/// The ledger replayed: the last state of every image, and the last run's bookends.
#[derive(Default)]
pub struct Replay {
    pub images: KeyMap<Slot>,
    /// Every person the ledger has a record of.
    persons: PersonSet,
    /// Per person, the images whose last record is `registered` (kept as records are applied,
    /// so the image map needs no person field).
    registered: PersonMap<u32>,
    pub lines: u64,
    /// Bytes at the end that form no complete line (a torn write); cut off before appending.
    pub torn_tail: u64,
    pub last_run_start: Option<RunRecord>,
    pub last_run_end: Option<RunRecord>,
    /// Persons a request may still land for unseen (a `recheck` record not yet followed by a
    /// `settled` one): read again at the start of the next run.
    pub recheck: PersonMap<()>,
    /// Persons with an image created by a run (`converge`) not yet followed by a `settled`
    /// record: read again once, at the start of a run, for another writer's copies.
    pub converge: PersonMap<()>,
    /// Images recorded under an `image_key` of their own, by the key their URL alone would
    /// give: (their key, that `image_key`). Only manifests with the column fill it.
    aliases: KeyMap<(u128, Box<str>)>,
    /// Rows not registered recorded since the last run that reported (see
    /// [`ImageState::reported`]); marked reported by the next such run's end.
    unreported: Vec<u128>,
}

impl Replay {
    /// Whether the person is to be read again at the start of a run: a request may still
    /// land for it (`recheck`), or another writer may still change what a run created for it
    /// (`converge`).
    pub fn reads_again(&self, person: u64) -> bool {
        self.recheck.contains_key(&person) || self.converge.contains_key(&person)
    }

    /// Whether no person is to be read again.
    pub fn reads_none_again(&self) -> bool {
        self.recheck.is_empty() && self.converge.is_empty()
    }

    pub fn state(&self, key: u128) -> Option<ImageState> {
        self.images.get(&key).map(|slot| slot.state)
    }

    /// Notes that manifest line `line` names the image `key`: the image's state, and the
    /// earlier line that already named it, if any. `None` when the ledger does not know the
    /// image (the caller keeps track). One look-up of the map, for a manifest of millions.
    pub fn seen_at(&self, key: u128, line: u64) -> Option<(ImageState, Option<u64>)> {
        let slot = self.images.get(&key)?;
        let first = slot.seen.get();
        if first == 0 || first == NAMED_ONLY {
            slot.seen.set(u32::try_from(line).unwrap_or(NAMED_ONLY - 1));
            Some((slot.state, None))
        } else {
            Some((slot.state, Some(u64::from(first))))
        }
    }

    /// Notes that an invalid manifest row names the image `key`: a sync never removes it, and
    /// a valid row naming it later is not its duplicate.
    pub fn named(&self, key: u128) {
        if let Some(slot) = self.images.get(&key)
            && slot.seen.get() == 0
        {
            slot.seen.set(NAMED_ONLY);
        }
    }

    /// Another process may have sent requests on this ledger's budgets in the last second: the
    /// last run has no closing record (killed) and the ledger was written within [`LATELY`], or
    /// the ledger was written within [`JUST_NOW`] whatever the last run's ending (a run that
    /// ended a moment ago sent its last requests just before).
    pub fn may_have_sent_lately(&self, modified: Option<std::time::SystemTime>) -> bool {
        let unfinished = self.last_run_start.is_some() && self.last_run_end.is_none();
        may_have_sent_lately(unfinished, self.lines > 0, modified)
    }

    /// Forgets what a previous plan saw (a replay planned twice).
    pub fn reset_seen(&self) {
        for slot in self.images.values() {
            slot.seen.set(0);
        }
    }

    /// How many images each person has registered, by person key (low 64 bits).
    pub fn registered_per_person(&self) -> PersonMap<u32> {
        self.registered.clone()
    }

    /// Whether a plan saw the image `key` named by a manifest row (valid or not).
    pub fn was_seen(&self, key: u128) -> bool {
        self.images
            .get(&key)
            .is_some_and(|slot| slot.seen.get() != 0)
    }

    /// Images no manifest row named in the last plan, whose state `wanted` accepts.
    pub fn unseen<'r>(
        &'r self,
        wanted: impl Fn(&ImageState) -> bool + 'r,
    ) -> impl Iterator<Item = u128> + 'r {
        self.images
            .iter()
            .filter(move |(_, slot)| slot.seen.get() == 0 && wanted(&slot.state))
            .map(|(key, _)| *key)
    }

    /// Every person the ledger has a record of (low 64 bits of the key).
    pub fn persons(&self) -> PersonSet {
        self.persons.clone()
    }

    /// The image the ledger records under another identity for the same person and URL — an
    /// `image_key` column added, dropped or changed — when `key` is not known and no manifest
    /// row named that image yet: its key and the `image_key` it is recorded under (`None`:
    /// its URL). `keyed`: the row has an `image_key` of its own (else `key` is its URL's key,
    /// and is not hashed again).
    pub fn alias(
        &self,
        key: u128,
        keyed: bool,
        category_id: &str,
        person_id: &str,
        image_url: &str,
    ) -> Option<(u128, Option<&str>)> {
        if self.images.contains_key(&key) {
            return None;
        }
        let by_url = match keyed {
            true => ImageId::new(image_url, None).key(category_id, person_id),
            false => key,
        };
        let found = if by_url != key && self.images.contains_key(&by_url) {
            (by_url, None)
        } else {
            let (aliased, identity) = self.aliases.get(&by_url)?;
            (*aliased, Some(&**identity))
        };
        (found.0 != key && !self.was_seen(found.0)).then_some(found)
    }
}

/// Replays the ledger at `path`; a missing file is an empty ledger.
///
/// The scan is spread over threads, for a ledger of millions of lines
/// ([`read::scan_parallel_as`]): workers decode blocks of lines and hash each line's keys into
/// a batch, and this thread applies the batches to the maps in ledger order. Memory stays
/// bounded: a few blocks in flight.
pub fn replay(path: &Path) -> Result<Replay, LedgerError> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let mut replay = Replay::default();
    let scanned = read::scan_parallel_as::<read::Narrow, Batch>(
        path,
        true,
        workers,
        |batch, entry| batch.push(entry),
        |batch| replay.apply(batch),
    )?;
    replay.finish(scanned);
    Ok(replay)
}

/// [`replay`] from any reader, on this thread; `path` names it in messages.
pub fn replay_from(path: &Path, reader: impl std::io::Read) -> Result<Replay, LedgerError> {
    let mut replay = Replay::default();
    let mut batch = Batch::default();
    let scanned = read::scan_from_as::<read::Narrow>(path, reader, |entry| {
        batch.push(entry);
        if batch.lines.len() >= 4096 {
            replay.apply(std::mem::take(&mut batch));
        }
    })?;
    replay.apply(batch);
    replay.finish(scanned);
    Ok(replay)
}

/// What replay keeps of a block of lines, its keys already hashed (on the thread that decoded
/// them, so the maps' thread only applies them).
#[derive(Default)]
struct Batch {
    lines: Vec<Decoded>,
}

/// What replay keeps of one line.
enum Decoded {
    Image {
        person: u64,
        key: u128,
        state: ImageState,
        /// The record says a request for the image may still land (`recheck`).
        recheck: bool,
        /// The record says another writer may still change the image (`converge`).
        converge: bool,
        /// Recorded under an `image_key` of its own: the key its URL alone gives, and that
        /// `image_key`.
        alias: Option<(u128, Box<str>)>,
    },
    /// A person read again after a `recheck` (`settled`).
    Settled {
        person: u64,
    },
    RunStart(Box<RunRecord>),
    RunEnd(Box<RunRecord>),
}

impl Batch {
    fn push(&mut self, entry: Entry<'_, '_, ReplayView<'_>>) {
        let decoded = match entry {
            Entry::Image(image) => {
                let since = match image.status {
                    Status::Pending | Status::Removing => image
                        .view
                        .ts
                        .as_deref()
                        .map_or(0, crate::clock::unix_seconds),
                    _ => 0,
                };
                let state = ImageState {
                    status: image.status,
                    retryable: image.view.retryable.unwrap_or(false),
                    since,
                    link: match image.status {
                        Status::Failed => crate::image::parse_link_fingerprint(
                            image.view.link_fingerprint.as_deref(),
                        ),
                        _ => 0,
                    },
                    reported: false,
                };
                let (person, key) = image
                    .image_id()
                    .person_and_key(image.category_id, image.person_id);
                let alias = image.view.image_key.as_deref().and_then(|identity| {
                    let by_url =
                        ImageId::new(image.image_url, None).key(image.category_id, image.person_id);
                    (by_url != key).then(|| (by_url, identity.into()))
                });
                Decoded::Image {
                    person: person as u64,
                    key,
                    state,
                    recheck: image.view.recheck == Some(true),
                    converge: image.view.converge == Some(true),
                    alias,
                }
            }
            Entry::Person(view) if view.kind == Some(read::LineKind::Settled) => {
                let (Some(category_id), Some(person_id)) =
                    (view.category_id.as_deref(), view.person_id.as_deref())
                else {
                    return;
                };
                Decoded::Settled {
                    person: crate::image::person_key(category_id, person_id) as u64,
                }
            }
            Entry::Person(_) => return,
            Entry::Run(view) => {
                let record = Box::new(RunRecord {
                    ts: view.ts.as_deref().unwrap_or_default().into(),
                    run: view.run().into(),
                    command: view.command.as_deref().map(str::to_string),
                    manifest: view.manifest.as_deref().map(str::to_string),
                    endpoint: view.endpoint.as_deref().map(str::to_string),
                    outcome: view.outcome.as_deref().map(str::to_string),
                    exit_code: view.exit_code,
                    target: view.target,
                    algorithm: view.algorithm.as_deref().map(str::to_string),
                    ..RunRecord::default()
                });
                if view.kind == Some(read::LineKind::RunStart) {
                    Decoded::RunStart(record)
                } else {
                    Decoded::RunEnd(record)
                }
            }
            Entry::Object(_) | Entry::Upload(_) | Entry::Checked(_) => return,
        };
        self.lines.push(decoded);
    }
}

impl Replay {
    /// Applies a batch's lines in order.
    fn apply(&mut self, batch: Batch) {
        for decoded in batch.lines {
            match decoded {
                Decoded::Image {
                    person,
                    key,
                    state,
                    recheck,
                    converge,
                    alias,
                } => {
                    if recheck {
                        self.recheck.insert(person, ());
                    }
                    if converge {
                        self.converge.insert(person, ());
                    }
                    if let Some((by_url, identity)) = alias {
                        self.aliases.insert(by_url, (key, identity));
                    }
                    self.record_image(key, person, state);
                }
                Decoded::Settled { person } => {
                    self.recheck.remove(&person);
                    self.converge.remove(&person);
                }
                Decoded::RunStart(record) => {
                    self.last_run_start = Some(*record);
                    self.last_run_end = None;
                }
                Decoded::RunEnd(record) => {
                    // Only a `run` that finished reports rows not registered (exit 1 when any
                    // is new); rollback's and verify's ends, and a sync refused (exit 8, which
                    // wins over 1), do not.
                    let of_a_run = self.last_run_start.as_ref().is_some_and(|start| {
                        start.run == record.run && start.command.as_deref() == Some("run")
                    });
                    if of_a_run && matches!(record.exit_code, Some(0 | 1)) {
                        self.mark_reported();
                    }
                    self.last_run_end = Some(*record);
                }
            }
        }
    }
}

impl Replay {
    /// A run ended with its summary: every row not registered recorded before it was reported.
    fn mark_reported(&mut self) {
        for key in std::mem::take(&mut self.unreported) {
            if let Some(slot) = self.images.get_mut(&key)
                && slot.state.is_rejection()
            {
                slot.state.reported = true;
            }
        }
    }

    fn record_image(&mut self, key: u128, person: u64, state: ImageState) {
        if state.is_rejection() {
            self.unreported.push(key);
        }
        let slot = Slot {
            state,
            seen: Default::default(),
        };
        let before = self.images.insert(key, slot).map(|slot| slot.state.status);
        self.persons.insert(person);
        // An image's key includes its person's, so the image never changes person.
        let registered = |status| status == Status::Registered;
        match (before.is_some_and(registered), registered(state.status)) {
            (false, true) => *self.registered.entry(person).or_insert(0) += 1,
            (true, false) => {
                if let Some(count) = self.registered.get_mut(&person) {
                    *count -= 1;
                    if *count == 0 {
                        self.registered.remove(&person);
                    }
                }
            }
            _ => {}
        }
    }

    fn finish(&mut self, scanned: Scanned) {
        self.lines = scanned.lines;
        self.torn_tail = scanned.torn_tail;
    }
}

#[cfg(test)]
mod tests;
