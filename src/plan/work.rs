//! What a plan holds: its counts, the work for each person (its images, its drops, the read
//! owed to it), and the rows it will not send.

use crate::image::{Image, library_key};
use crate::ledger::KeyMap;
use crate::ledger::Status;

/// One image to register, in manifest order within its person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageWork {
    pub line: u64,
    /// Where the image is, and the manifest's `image_key` when the row has one.
    pub image: Image,
    pub key: u128,
    /// Its last record is `pending` or a retryable `failed`: an earlier outcome is unknown.
    pub unsettled: bool,
    /// The SHA-256 of its bytes, when pre-flight read them (recorded with the image).
    pub sha256: Option<String>,
    /// Its last record is `invalid` (pre-flight refused it): refused again, it is not
    /// written again, and a known rejection once a run reported it (`was_reported`).
    pub was_invalid: bool,
    pub was_reported: bool,
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
    /// The image as recorded: the identity a record of another id keeps.
    pub image: Image,
}

impl Kept {
    pub fn of(image: Image, id: &str) -> Kept {
        Kept {
            url: image.locator().into_string(),
            id: id.to_string(),
            image,
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
    /// The row's image: its source, and its `image_key` when it has one.
    pub image: Image,
    pub status: Status,
    pub reason: String,
    /// The ledger already says exactly this, so the record need not be written again.
    pub already_recorded: bool,
    /// And a run that finished has reported it since (see `ImageState::reported`): a known
    /// rejection, not a new one.
    pub reported: bool,
}

/// Why an image the manifest does not name is in the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// Its last record leaves its outcome unknown: read the person, record what is there.
    Settle,
    /// `--sync`: the tool registered it and the manifest no longer names it.
    Dropped,
    /// `--sync-scope library`: on the server, not the tool's, and not in the manifest.
    NotOurs,
    /// `--sync-scope library`: a second server id under the canonical URL of an image the
    /// ledger holds, whose recorded id is still there too (a duplicate copy): removed as a
    /// `copy`, the image's own record untouched.
    Copy,
    /// `--sync-scope library`: the id the ledger records for an image is gone from the server,
    /// which holds the image under another id: that id is the image, recorded (not removed).
    Adopt,
}

impl Why {
    /// The `reason` its `removed` record gives.
    pub fn reason(self) -> &'static str {
        match self {
            Why::Settle => "settled: no longer in the manifest",
            Why::Dropped => "sync: no longer in the manifest",
            Why::NotOurs => {
                "sync: in the library but not in the manifest (not registered by this tool)"
            }
            Why::Copy => "sync: a duplicate copy of an image the ledger holds",
            Why::Adopt => {
                "sync: the recorded id is gone from the server, which holds the image under this one"
            }
        }
    }
}

/// One image the manifest does not name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropWork {
    pub image: Image,
    pub key: u128,
    /// The server's id the ledger (or the server's listing) holds for it.
    pub id: Option<String>,
    pub lib_id: Option<String>,
    pub entity_id: Option<String>,
    /// Its last record (`Registered` for an image only the server knows).
    pub status: Status,
    /// Remove it (a sync); otherwise only settle it.
    pub remove: bool,
    pub why: Why,
}

impl DropWork {
    /// Its outcome is unknown: the person must be read before anything is decided.
    pub fn unsettled(&self) -> bool {
        self.status != Status::Registered
    }
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
    /// Of those, refusals recorded by a run that did not end with a summary of them (killed,
    /// or stopped early): new to the roster owner, so counted as found by this run.
    pub failed_unreported: u64,
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
