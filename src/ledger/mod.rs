//! The ledger: an append-only JSON Lines file of what happened to every image, its one record
//! type (`record`), its one reader (`read`) and the replay a run plans against.
//!
//! One record per line, self-describing (`v`, `kind`). The last record for an image wins. A torn
//! last line (power loss mid-write) is dropped on replay and cut off before the next append; any
//! other unreadable line stops the command rather than guessing. Every command that appends goes
//! through the one writer, the pipeline's recorder.

pub mod read;
pub mod record;

pub use read::{Entry, ImageLine, ReplayView, Scanned, View, scan, scan_from};
pub use record::{
    ImageRecord, ObjectKind, ObjectRecord, Record, RunRecord, SCHEMA_VERSION, Status, TargetName,
    encode, is_safe_id,
};

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
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
}

impl ImageState {
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
                Decoded::RunEnd(record) => self.last_run_end = Some(*record),
            }
        }
    }
}

impl Replay {
    fn record_image(&mut self, key: u128, person: u64, state: ImageState) {
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

/// The ledger's lock: an exclusive lock on the ledger file itself (so every path to it — a
/// symlink, a hard link, a deleted `.lock` file — shares one lock), released by the kernel when
/// the process ends however it ends, so a kill -9 never leaves a stale lock behind. Who holds it
/// is written to `<ledger>.lock`, for the message a second run prints.
pub struct Lock {
    file: File,
    /// This lock created the (empty) ledger: there was none.
    created: bool,
}

impl Lock {
    /// Locks the ledger, creating it (empty) when there is none: a run starts one.
    pub fn acquire(ledger: &Path) -> Result<Lock, LedgerError> {
        Lock::acquire_with(ledger, true)
    }

    /// Locks a ledger that must exist already (a rollback of what it records): a missing one
    /// is an `Open` error, and nothing is created.
    pub fn acquire_existing(ledger: &Path) -> Result<Lock, LedgerError> {
        Lock::acquire_with(ledger, false)
    }

    fn acquire_with(ledger: &Path, create: bool) -> Result<Lock, LedgerError> {
        let path = lock_path(ledger);
        // The file locked must still be the one the path names: another run may have removed
        // (an empty ledger it had created, see `remove_if_empty`) or replaced it between our
        // open and our lock, and a lock on a file no path names excludes nobody.
        let mut attempts = 0;
        let (file, created) = loop {
            attempts += 1;
            let (file, created) = Lock::open_to_lock(ledger, create)?;
            Lock::lock_or_name_holder(&file, ledger, &path)?;
            if still_names(ledger, &file) {
                break (file, created);
            }
            if attempts == 5 {
                return Err(LedgerError::Open {
                    path: ledger.into(),
                    source: std::io::Error::other(
                        "the ledger file kept being removed or replaced while it was being locked",
                    ),
                });
            }
        };
        Lock::write_holder(&path)?;
        Ok(Lock { file, created })
    }

    /// Opens the ledger to lock, creating it when `create` and there is none, and says whether
    /// it was created here; anything but a regular file is refused.
    fn open_to_lock(ledger: &Path, create: bool) -> Result<(File, bool), LedgerError> {
        let open_err = |source| LedgerError::Open {
            path: ledger.into(),
            source,
        };
        // Created here (`create_new`), or there already (through a symlink, maybe to a
        // file still to be made: not ours to remove later).
        let open = |new: bool| {
            OpenOptions::new()
                .read(true)
                .append(true)
                .create(create)
                .create_new(new)
                .mode(0o600)
                .open(ledger)
        };
        let (file, created) = match open(create) {
            Ok(file) => (file, create),
            Err(e) if create && e.kind() == std::io::ErrorKind::AlreadyExists => {
                (open(false).map_err(open_err)?, false)
            }
            Err(e) => return Err(open_err(e)),
        };
        if !file.metadata().map_err(open_err)?.is_file() {
            return Err(LedgerError::NotAFile {
                path: ledger.into(),
            });
        }
        Ok((file, created))
    }

    /// Takes the lock without waiting; when another process holds it, the error says who, as
    /// the lock's `note` file tells.
    fn lock_or_name_holder(file: &File, ledger: &Path, note: &Path) -> Result<(), LedgerError> {
        match file.try_lock() {
            Ok(()) => Ok(()),
            Err(std::fs::TryLockError::WouldBlock) => Err(LedgerError::Locked {
                path: ledger.into(),
                holder: Lock::holder_named(&std::fs::read_to_string(note).unwrap_or_default()),
            }),
            Err(std::fs::TryLockError::Error(source)) => Err(LedgerError::Open {
                path: ledger.into(),
                source,
            }),
        }
    }

    /// The holder a lock's note names, or words for one that has not said who it is.
    fn holder_named(note: &str) -> String {
        match note.trim() {
            "" => "a process that has not said who it is".to_string(),
            who => who.to_string(),
        }
    }

    /// Writes who now holds the lock (pid, host, since when) to its `note` file, for the
    /// message a second run prints.
    fn write_holder(note: &Path) -> Result<(), LedgerError> {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let who = format!(
            "pid {} on {} since {}\n",
            std::process::id(),
            host.trim(),
            crate::clock::now_rfc3339()
        );
        let write = || -> std::io::Result<()> {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(note)?;
            file.write_all(who.as_bytes())
        };
        write().map_err(|source| LedgerError::Write {
            path: note.into(),
            source,
        })
    }

    /// Whether this lock created the ledger (empty): there was none.
    pub fn created(&self) -> bool {
        self.created
    }

    /// When the ledger was last written, read from the locked file (not through its path).
    pub fn modified(&self) -> Option<std::time::SystemTime> {
        self.file.metadata().and_then(|m| m.modified()).ok()
    }

    /// The appender on the very file locked, after cutting off a torn tail found by replay: no
    /// second open by path, so the lines go to the file this lock excludes others from.
    pub fn appender(&self, path: &Path, torn_tail: u64) -> Result<Appender, LedgerError> {
        let file = self.file.try_clone().map_err(|source| LedgerError::Open {
            path: path.into(),
            source,
        })?;
        Appender::on(path, file, torn_tail, self.created)
    }
}

/// Removes a ledger that holds nothing, and its lock note: what a run that created it and
/// then refused its manifest leaves. Call it while holding the [`Lock`]; a ledger with any byte
/// in it is never touched.
pub fn remove_if_empty(ledger: &Path) {
    if std::fs::symlink_metadata(ledger).is_ok_and(|m| m.is_file() && m.len() == 0) {
        let _ = std::fs::remove_file(ledger);
        let _ = std::fs::remove_file(lock_path(ledger));
    }
}

/// Whether `path` (through any symlink) names the file `file` has open.
fn still_names(path: &Path, file: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(path), file.metadata()) {
        (Ok(named), Ok(open)) => (named.dev(), named.ino()) == (open.dev(), open.ino()),
        _ => false,
    }
}

pub fn lock_path(ledger: &Path) -> PathBuf {
    let mut name = ledger.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// The one open handle that appends to the ledger (opened append-only). Lines are written
/// whole, then synced; at every sync it checks that the path still names the file it has open,
/// so a ledger deleted or replaced during a run is noticed, not silently written into the void.
pub struct Appender {
    path: PathBuf,
    file: File,
    /// (device, inode) of the file opened.
    identity: (u64, u64),
}

impl Appender {
    /// Opens (creating, mode 0600) for appending, after cutting off a torn tail found by replay.
    pub fn open(path: &Path, torn_tail: u64) -> Result<Appender, LedgerError> {
        let open_err = |source| LedgerError::Open {
            path: path.into(),
            source,
        };
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(open_err)?;
        Appender::on(path, file, torn_tail, !existed)
    }

    /// [`Appender::open`] on a file already open for appending; `created`: the file is new,
    /// so its directory entry is synced too.
    fn on(path: &Path, file: File, torn_tail: u64, created: bool) -> Result<Appender, LedgerError> {
        use std::os::unix::fs::MetadataExt;
        let open_err = |source| LedgerError::Open {
            path: path.into(),
            source,
        };
        let write_err = |source| LedgerError::Write {
            path: path.into(),
            source,
        };
        let metadata = file.metadata().map_err(open_err)?;
        if !metadata.is_file() {
            return Err(LedgerError::NotAFile { path: path.into() });
        }
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(write_err)?;
        if torn_tail > 0 {
            file.set_len(metadata.len().saturating_sub(torn_tail))
                .map_err(write_err)?;
            file.sync_data().map_err(write_err)?;
        }
        if created {
            sync_parent_dir(path);
        }
        Ok(Appender {
            path: path.into(),
            file,
            identity: (metadata.dev(), metadata.ino()),
        })
    }

    /// Appends complete lines (each ending in `\n`) in one write.
    pub fn append(&mut self, lines: &[u8]) -> Result<(), LedgerError> {
        debug_assert!(lines.is_empty() || lines.ends_with(b"\n"));
        self.file
            .write_all(lines)
            .map_err(|source| LedgerError::Write {
                path: self.path.clone(),
                source,
            })
    }

    /// Makes everything appended so far durable; refuses when the path no longer names the
    /// file being written (deleted or replaced), after saving that file's whole content to a
    /// recovery file beside it.
    pub fn sync(&mut self) -> Result<(), LedgerError> {
        use std::os::unix::fs::MetadataExt;
        self.file.sync_data().map_err(|source| LedgerError::Write {
            path: self.path.clone(),
            source,
        })?;
        let same = std::fs::metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.identity);
        if same {
            return Ok(());
        }
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".recovered-{}", std::process::id()));
        let recovery = PathBuf::from(name);
        let saved = (|| -> std::io::Result<()> {
            let mut content = Vec::new();
            self.file.seek(SeekFrom::Start(0))?;
            self.file.read_to_end(&mut content)?;
            let mut out = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&recovery)?;
            out.write_all(&content)?;
            out.sync_all()
        })();
        Err(LedgerError::Replaced {
            path: self.path.clone(),
            recovery: saved.map(|()| recovery).map_err(|e| e.to_string()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn sync_parent_dir(path: &Path) {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(dir) = File::open(parent) {
        let _ = dir.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{ImageId, person_key};

    #[test]
    fn a_ledger_failure_maps_to_locked_ledger_failed_or_usage_by_what_went_wrong() {
        use crate::exit::Exit;
        let path = PathBuf::from("l.jsonl");
        let io = || std::io::Error::other("x");
        let exits: Vec<i32> = [
            LedgerError::Locked {
                path: path.clone(),
                holder: "pid 1".into(),
            },
            LedgerError::Write {
                path: path.clone(),
                source: io(),
            },
            LedgerError::Replaced {
                path: path.clone(),
                recovery: Err("x".into()),
            },
            LedgerError::Open {
                path: path.clone(),
                source: io(),
            },
            LedgerError::Read {
                path: path.clone(),
                source: io(),
            },
            LedgerError::Corrupt {
                path: path.clone(),
                line: 2,
                column: 1,
                problem: "x".into(),
            },
            LedgerError::TooNew {
                path: path.clone(),
                line: 1,
                version: 9,
            },
            LedgerError::NotAFile { path },
        ]
        .iter()
        .map(|e| Exit::from(e).code())
        .collect();
        assert_eq!(exits, [4, 7, 7, 2, 2, 2, 2, 2]);
    }

    fn record(status: Status, url: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut r = ImageRecord::new("run-1", status, "Lib", "Alice", url);
        if status == Status::Registered {
            r.face_id = Some("face-1".into());
        }
        encode(&Record::Image(r), &mut out);
        out
    }

    fn replay_bytes(bytes: &[u8]) -> Result<Replay, LedgerError> {
        replay_from(Path::new("test.ledger.jsonl"), bytes)
    }

    #[test]
    fn a_ledger_of_many_blocks_replays_over_threads_as_on_one() {
        // Some 8 MiB: several blocks for each decoding thread, records of every state, a
        // `recheck` settled later and one not, run records, and a torn tail.
        let mut bytes = Vec::new();
        let statuses = [
            Status::Pending,
            Status::Registered,
            Status::Failed,
            Status::Removed,
        ];
        for i in 0..48_000u32 {
            // 6,000 images of 600 persons, eight records each, ending in every state.
            let url = format!("http://x/{}.jpg", i % 6_000);
            let status = statuses[((i / 6_000 + i) % 4) as usize];
            let person = format!("p{}", i % 600);
            let mut r = ImageRecord::new("run-1", status, "Lib", &person, &url);
            r.recheck = (i % 1_001 == 0 || i == 601).then_some(true);
            encode(&Record::Image(r), &mut bytes);
            if i % 5_000 == 0 {
                let run = RunRecord {
                    run: format!("run-{i}"),
                    ..RunRecord::default()
                };
                encode(&Record::RunStart(run), &mut bytes);
            }
        }
        let settled = record::PersonRecord {
            ts: "2026-12-01T00:00:00Z".into(),
            run: "run-2".into(),
            category_id: "Lib".into(),
            person_id: "p1".into(),
            copies_removed: None,
            target: None,
        };
        encode(&Record::Settled(settled), &mut bytes);
        bytes.extend_from_slice(b"{\"v\":1,\"ki");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.ledger.jsonl");
        std::fs::write(&path, &bytes).unwrap();
        assert!(bytes.len() > 6 * read::tests_block_bytes());
        let threads = replay(&path).unwrap();
        let one = replay_bytes(&bytes).unwrap();
        assert_eq!(
            (threads.lines, threads.torn_tail),
            (one.lines, one.torn_tail)
        );
        assert_eq!((one.lines, one.torn_tail), (48_011, 10));
        assert_eq!(threads.images.len(), 6_000);
        for (key, slot) in &one.images {
            assert_eq!(threads.state(*key), Some(slot.state));
        }
        assert_eq!(threads.registered, one.registered);
        assert_eq!(threads.persons, one.persons);
        let mut a: Vec<_> = threads.recheck.keys().collect();
        let mut b: Vec<_> = one.recheck.keys().collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
        assert!(!b.is_empty());
        assert!(
            !b.contains(&&(person_key("lib", "p1") as u64)),
            "p1 was settled"
        );
        assert_eq!(
            threads.last_run_start.map(|r| r.run),
            Some("run-45000".to_string())
        );
    }

    #[test]
    fn the_last_record_for_an_image_wins() {
        let mut bytes = record(Status::Pending, "http://x/a.jpg");
        bytes.extend(record(Status::Registered, "http://x/a.jpg"));
        bytes.extend(record(Status::Pending, "http://x/b.jpg"));
        let replay = replay_bytes(&bytes).unwrap();
        let a = replay
            .state(ImageId::new("http://x/a.jpg", None).key("lib", "alice"))
            .unwrap();
        assert_eq!(a.status, Status::Registered);
        let b = replay
            .state(ImageId::new("http://x/b.jpg", None).key("LIB", "ALICE"))
            .unwrap();
        assert_eq!(b.status, Status::Pending);
        assert_eq!(
            replay.registered_per_person()[&(person_key("lib", "alice") as u64)],
            1
        );
        assert_eq!(replay.lines, 3);
    }

    #[test]
    fn per_person_counts_follow_each_image_s_last_record() {
        let mut bytes = record(Status::Registered, "http://x/a.jpg");
        bytes.extend(record(Status::Registered, "http://x/b.jpg"));
        bytes.extend(record(Status::Removed, "http://x/a.jpg"));
        bytes.extend(record(Status::Registered, "http://x/b.jpg"));
        let alice = person_key("lib", "alice") as u64;
        let replay = replay_bytes(&bytes).unwrap();
        assert_eq!(replay.registered_per_person()[&alice], 1);
        bytes.extend(record(Status::Failed, "http://x/b.jpg"));
        let replay = replay_bytes(&bytes).unwrap();
        assert!(!replay.registered_per_person().contains_key(&alice));
        assert!(replay.persons().contains(&alice));
        assert_eq!(replay.persons().len(), 1);
    }

    #[test]
    fn a_torn_last_line_is_tolerated_at_every_cut_and_no_complete_line_is_lost() {
        let mut bytes = record(Status::Pending, "http://x/a.jpg");
        bytes.extend(record(Status::Registered, "http://x/a.jpg"));
        let first_len = record(Status::Pending, "http://x/a.jpg").len();
        for cut in 0..bytes.len() {
            let replay = replay_bytes(&bytes[..cut]).unwrap();
            let complete = if cut >= first_len { 1 } else { 0 };
            assert_eq!(replay.lines, complete, "cut at {cut}");
            let expect_torn = (cut - if complete == 1 { first_len } else { 0 }) as u64;
            assert_eq!(replay.torn_tail, expect_torn, "cut at {cut}");
        }
        assert_eq!(replay_bytes(&bytes).unwrap().torn_tail, 0);
    }

    #[test]
    fn a_damaged_line_in_the_middle_names_file_line_and_column() {
        let mut bytes = record(Status::Pending, "http://x/a.jpg");
        bytes.extend(b"{\"v\":1,\"kind\":\"image\",oops}\n");
        bytes.extend(record(Status::Registered, "http://x/a.jpg"));
        match replay_bytes(&bytes) {
            Err(LedgerError::Corrupt { line, column, .. }) => {
                assert_eq!(line, 2);
                assert!(column > 1);
            }
            other => panic!("expected Corrupt, got {:?}", other.err()),
        }
    }

    #[test]
    fn records_from_a_newer_schema_are_refused_with_advice() {
        let bytes = b"{\"v\":99,\"kind\":\"image\"}\n";
        let err = replay_bytes(bytes).err().unwrap();
        assert!(matches!(err, LedgerError::TooNew { version: 99, .. }));
        assert!(err.to_string().contains("Upgrade"));
    }

    #[test]
    fn run_records_carry_no_image_and_are_remembered() {
        let mut bytes = Vec::new();
        let start = RunRecord {
            ts: "t".into(),
            run: "r1".into(),
            ..RunRecord::default()
        };
        encode(&Record::RunStart(start.clone()), &mut bytes);
        let end = RunRecord {
            exit_code: Some(0),
            ..start.clone()
        };
        encode(&Record::RunEnd(end), &mut bytes);
        let replay = replay_bytes(&bytes).unwrap();
        assert_eq!(replay.last_run_start.unwrap().run, "r1");
        assert_eq!(replay.last_run_end.unwrap().exit_code, Some(0));
        assert!(replay.images.is_empty());
        assert!(!String::from_utf8(bytes).unwrap().contains("image_url"));
    }

    #[test]
    fn appending_after_a_torn_tail_cuts_it_off_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        let mut bytes = record(Status::Pending, "http://x/a.jpg");
        bytes.extend(b"{\"v\":1,\"kind\":\"ima");
        std::fs::write(&path, &bytes).unwrap();
        let replay = replay(&path).unwrap();
        assert!(replay.torn_tail > 0);
        let mut appender = Appender::open(&path, replay.torn_tail).unwrap();
        appender
            .append(&record(Status::Registered, "http://x/a.jpg"))
            .unwrap();
        appender.sync().unwrap();
        let again = super::replay(&path).unwrap();
        assert_eq!(again.lines, 2);
        assert_eq!(again.torn_tail, 0);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_lock_counts_only_while_the_path_names_the_locked_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        let link = dir.path().join("link.jsonl");
        let file = File::create(&path).unwrap();
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(still_names(&path, &file));
        assert!(still_names(&link, &file));
        std::fs::remove_file(&path).unwrap();
        assert!(!still_names(&path, &file), "removed");
        std::fs::write(&path, b"").unwrap();
        assert!(!still_names(&path, &file), "replaced by another file");
        // A run that removed its empty ledger and released it: the next lock is on the new file.
        let lock = Lock::acquire(&path).unwrap();
        assert!(still_names(&path, &lock.file));
    }

    #[test]
    fn a_lock_knows_whether_it_created_the_ledger_and_appends_to_the_file_it_locked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        let lock = Lock::acquire(&path).unwrap();
        assert!(lock.created());
        let mut appender = lock.appender(&path, 0).unwrap();
        appender.append(b"{}\n").unwrap();
        appender.sync().unwrap();
        drop((appender, lock));
        assert_eq!(std::fs::read(&path).unwrap(), b"{}\n");
        let lock = Lock::acquire(&path).unwrap();
        assert!(!lock.created());
        assert!(lock.modified().is_some());
        drop(lock);
        // A symlink to a file still to be made: the file is made, but it is not this lock's.
        let target = dir.path().join("t.jsonl");
        let link = dir.path().join("link.jsonl");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let lock = Lock::acquire(&link).unwrap();
        assert!(!lock.created() && target.exists());
        drop(lock);
        let missing = dir.path().join("m.jsonl");
        assert!(Lock::acquire_existing(&missing).is_err());
        assert!(!missing.exists());
    }

    #[test]
    fn a_second_lock_on_the_same_ledger_is_refused_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        let _first = Lock::acquire(&path).unwrap();
        match Lock::acquire(&path) {
            Err(LedgerError::Locked { holder, .. }) => {
                assert!(
                    holder.contains(&format!("pid {}", std::process::id())),
                    "{holder}"
                )
            }
            other => panic!("expected Locked, got {:?}", other.err()),
        }
    }

    #[test]
    fn the_holder_is_the_notes_line_or_words_for_one_that_did_not_say() {
        assert_eq!(
            Lock::holder_named("  pid 7 on box since 2026-01-01T00:00:00Z\n"),
            "pid 7 on box since 2026-01-01T00:00:00Z"
        );
        assert_eq!(
            Lock::holder_named(" \n"),
            "a process that has not said who it is"
        );
        let dir = tempfile::tempdir().unwrap();
        let note = dir.path().join("l.jsonl.lock");
        std::fs::write(&note, "an older, longer note that must not survive\n").unwrap();
        Lock::write_holder(&note).unwrap();
        let written = std::fs::read_to_string(&note).unwrap();
        assert!(
            written.starts_with(&format!("pid {} on ", std::process::id())),
            "{written}"
        );
        assert!(!written.contains("older"), "{written}");
        assert_eq!(written.lines().count(), 1);
    }

    #[test]
    fn ledgers_written_by_release_0_1_0_replay_and_every_line_reads_and_writes_back_unchanged() {
        for (name, text) in [
            (
                "mts",
                include_str!("../../tests/data/ledger-0.1.0-mts.jsonl"),
            ),
            (
                "ice",
                include_str!("../../tests/data/ledger-0.1.0-ice.jsonl"),
            ),
        ] {
            let replay = replay_bytes(text.as_bytes()).unwrap();
            assert_eq!(replay.lines as usize, text.lines().count(), "{name}");
            assert_eq!(replay.torn_tail, 0);
            for line in text.lines() {
                let record: Record = serde_json::from_str(line).unwrap();
                let mut out = Vec::new();
                encode(&record, &mut out);
                let again: serde_json::Value = serde_json::from_slice(&out).unwrap();
                let original: serde_json::Value = serde_json::from_str(line).unwrap();
                assert_eq!(again, original, "{name}: {line}");
            }
        }
        let mts = replay_bytes(include_bytes!("../../tests/data/ledger-0.1.0-mts.jsonl")).unwrap();
        let count = |status| {
            mts.images
                .values()
                .filter(|s| s.state.status == status)
                .count()
        };
        assert_eq!(count(Status::Registered), 37);
        assert_eq!(count(Status::Invalid), 1);
        assert_eq!(count(Status::Skipped), 2);
    }

    #[test]
    fn the_lock_belongs_to_the_ledger_file_whatever_the_path_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        let _first = Lock::acquire(&path).unwrap();
        let link = dir.path().join("link.jsonl");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(matches!(
            Lock::acquire(&link),
            Err(LedgerError::Locked { .. })
        ));
        std::fs::remove_file(lock_path(&path)).unwrap();
        assert!(
            matches!(Lock::acquire(&path), Err(LedgerError::Locked { .. })),
            "deleting the .lock file must not split the ledger"
        );
        assert!(matches!(
            Lock::acquire(Path::new("/dev/null")),
            Err(LedgerError::NotAFile { .. })
        ));
    }

    #[test]
    fn a_ledger_replaced_during_a_run_is_noticed_at_the_next_sync_and_its_lines_saved() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        let mut appender = Appender::open(&path, 0).unwrap();
        let line = record(Status::Pending, "http://x/a.jpg");
        appender.append(&line).unwrap();
        appender.sync().unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"").unwrap();
        appender.append(&line).unwrap();
        match appender.sync() {
            Err(LedgerError::Replaced {
                recovery: Ok(saved),
                ..
            }) => {
                let mut both = line.clone();
                both.extend(&line);
                assert_eq!(std::fs::read(saved).unwrap(), both);
            }
            other => panic!("expected Replaced, got {other:?}"),
        }
    }
}
