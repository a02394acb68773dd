//! The seam between the engine and the two services a manifest can go to — MTS custom faces
//! and ICE recognition libraries. Everything that differs between them lives behind it:
//! planning rules, default budget, default ledger and regions ([`TargetKind`]); and, per run,
//! resolving a person's place, listing what the server holds, creating one image, removing one,
//! and stamping an image's ledger record ([`Backend`]). The worker, verify and rollback are
//! written once, generic over it.

pub mod ice;
pub mod mts;

use std::future::Future;
use std::path::{Path, PathBuf};

pub use ice::IceBackend;
pub use mts::MtsBackend;

use crate::api::{Algorithm, ApiError};
use crate::caller::{Caller, Halt};
use crate::exit::UsageError;
pub use crate::ledger::is_safe_id;
use crate::ledger::{ImageRecord, ObjectKind, View};
use crate::plan;

/// The one place a [`TargetKind`] becomes a backend: `dispatch!(kind, make => body)` evaluates
/// `body` with `make(client)` building the kind's backend (MTS, or ICE of its algorithm). The
/// body is written once and compiled per backend; `make` may be called after connecting.
macro_rules! dispatch {
    ($kind:expr, $make:ident => $body:expr) => {
        match $kind {
            $crate::backend::TargetKind::Mts => {
                let $make = $crate::backend::MtsBackend::new;
                $body
            }
            $crate::backend::TargetKind::Ice(algorithm) => {
                let $make = move |client| $crate::backend::IceBackend::new(client, algorithm);
                $body
            }
        }
    };
}
pub(crate) use dispatch;

/// Removes the image `id` at `place`, once, by the server's id: an id that could widen the
/// removal ([`is_safe_id`]) is refused before anything is sent, and after an unknown outcome
/// or a refusal the server is read to decide whether it is gone. The one removal run, sync,
/// late copies, `verify --prune-duplicates` and rollback use.
pub async fn remove_by_id<B: Backend>(
    backend: &B,
    caller: &Caller,
    place: &B::Place,
    id: &str,
) -> Result<crate::caller::Removal, Halt> {
    if !is_safe_id(id) {
        return Err(Halt::Refused(ApiError::with_class(
            crate::api::ErrorClass::RowRejected,
            None,
            "UnsafeId",
            format!(
                "{id:?} is not an id that can be sent in a removal (empty, a list or a wildcard)"
            ),
        )));
    }
    caller
        .remove_once(
            B::REMOVE,
            || backend.remove(place, id),
            || async {
                let held = backend.held(caller, place).await?;
                Ok(held.iter().any(|h| h.id == id))
            },
        )
        .await
}

/// One person as the manifest names it.
#[derive(Clone, Copy, Debug)]
pub struct Person<'a> {
    pub category_id: &'a str,
    pub person_id: &'a str,
    pub person_name: Option<&'a str>,
}

/// One image the server holds for a person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    /// The server's id: FaceId (MTS) or SampleId (ICE).
    pub id: String,
    pub image_url: Option<String>,
}

/// A library or entity a run made (ICE), to be recorded as `created`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Made {
    pub object: ObjectKind,
    pub name: String,
    pub lib_id: String,
    pub entity_id: Option<String>,
    /// Found by a look-up after a create whose answer was lost.
    pub recovered: bool,
}

impl Made {
    /// The ledger line that says so: `created` by a run, or `deleted` by a rollback.
    pub fn record(self, run: &str, kind: TargetKind) -> crate::ledger::ObjectRecord {
        crate::ledger::ObjectRecord {
            ts: crate::clock::now_rfc3339(),
            run: run.to_string(),
            target: kind.ledger_name(),
            algorithm: kind.algorithm().map(|a| a.to_string()).unwrap_or_default(),
            object: self.object,
            name: self.name,
            lib_id: self.lib_id,
            entity_id: self.entity_id,
            recovered: self.recovered.then_some(true),
        }
    }
}

/// What a rollback's tidying did: objects deleted (entities before their library), and the ids
/// of objects kept because something else is still in them.
#[derive(Clone, Debug, Default)]
pub struct Tidied {
    pub deleted: Vec<Made>,
    pub kept: Vec<String>,
}

/// Where a person's images go, and what had to be made for it.
pub struct Placed<P> {
    pub place: P,
    pub made: Vec<Made>,
}

/// Every place the server holds under one person's names, read now: the one every writer
/// keeps, and the others (ICE: a library or entity of the same name made twice, by two hosts
/// running one job).
pub struct Places<P> {
    /// The kept place and what it holds; `None`: the person has no place under its names.
    pub kept: Option<(P, Vec<Held>)>,
    pub others: Vec<(P, Vec<Held>)>,
    /// What had to be made for the kept place (ICE: the entity, in the kept library).
    pub made: Vec<Made>,
}

/// One person of a library as the server holds it.
#[derive(Clone, Debug)]
pub struct ServerPerson<P> {
    pub person_id: String,
    pub place: P,
    pub images: Vec<Held>,
}

/// Everything the server holds in one library (all libraries of that name, for ICE).
#[derive(Clone, Debug)]
pub struct Library<P> {
    pub persons: Vec<ServerPerson<P>>,
}

impl<P> Default for Library<P> {
    fn default() -> Self {
        Library {
            persons: Vec::new(),
        }
    }
}

/// One image of a listed person, borrowed from the listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageRef<'a> {
    pub id: &'a str,
    pub image_url: Option<&'a str>,
}

impl<P: Clone> Library<P> {
    /// Every person in the listing's order: its id, its images, and its place (made on demand).
    pub fn walk(&self, mut each: impl FnMut(&str, &[ImageRef<'_>], &dyn Fn() -> P)) {
        let mut images = Vec::new();
        for person in &self.persons {
            images.clear();
            images.extend(person.images.iter().map(|h| ImageRef {
                id: &h.id,
                image_url: h.image_url.as_deref(),
            }));
            each(&person.person_id, &images, &|| person.place.clone());
        }
    }
}

/// What walks a library's listing person by person ([`Backend::walk_listing`]).
pub trait ListingWalk<P>: Send + 'static {
    /// One listed person: its id, its images, and its place (made on demand).
    fn person(&mut self, person_id: &str, images: &[ImageRef<'_>], place: &dyn Fn() -> P);
}

/// What differs between the services, for one run. Every call that may need retrying goes
/// through the `Caller`; `create` and `remove` are single attempts the caller repeats.
pub trait Backend: Send + Sync + 'static {
    type Place: Clone + Send + Sync + 'static;

    fn kind(&self) -> TargetKind;

    /// Where the person's images go. ICE finds the library and entity by name, and with
    /// `create` makes what is missing, each at most once per run; `Ok(None)`: not there.
    fn place(
        &self,
        caller: &Caller,
        person: Person<'_>,
        create: bool,
    ) -> impl Future<Output = Result<Option<Placed<Self::Place>>, Halt>> + Send;

    /// True when the place was made by this run just now: it holds nothing to look up.
    fn is_fresh(place: &Self::Place) -> bool;

    /// The place a ledger record names (MTS: its ids; ICE: its LibId and EntityId).
    fn place_of(view: &View<'_>) -> Option<Self::Place>;

    /// The place of `person` that the recorded ids name (MTS needs none; ICE both).
    fn place_at(
        person: Person<'_>,
        lib_id: Option<&str>,
        entity_id: Option<&str>,
    ) -> Option<Self::Place>;

    /// Whether two places hold the same images.
    fn same_place(a: &Self::Place, b: &Self::Place) -> bool;

    /// What the server holds for the person at `place`.
    fn held(
        &self,
        caller: &Caller,
        place: &Self::Place,
    ) -> impl Future<Output = Result<Vec<Held>, Halt>> + Send;

    /// Every place the server holds under the person's names, the kept one first (MTS: the one
    /// place), for a closing read: what each holds is read now (ICE reads the libraries of the
    /// name and their entities once per run, for every person). With `make`, a kept library
    /// without an entity for the person gets one (where the images of its others go).
    fn places(
        &self,
        caller: &Caller,
        person: Person<'_>,
        _make: bool,
    ) -> impl Future<Output = Result<Places<Self::Place>, Halt>> + Send {
        async move {
            let mut places = Places {
                kept: None,
                others: Vec::new(),
                made: Vec::new(),
            };
            if let Some(placed) = self.place(caller, person, false).await? {
                let held = self.held(caller, &placed.place).await?;
                places.kept = Some((placed.place, held));
            }
            Ok(places)
        }
    }

    /// The id of the library named `name` that every writer keeps, read now (ICE; MTS names
    /// its libraries itself: `None`).
    fn kept_lib(
        &self,
        _caller: &Caller,
        _name: &str,
    ) -> impl Future<Output = Result<Option<String>, Halt>> + Send {
        async { Ok(None) }
    }

    /// Everything the server holds in the library named `name`.
    fn library(
        &self,
        caller: &Caller,
        name: &str,
    ) -> impl Future<Output = Result<Library<Self::Place>, Halt>> + Send;

    /// Every person the server holds in the library `name`, handed to a walk as the listing is
    /// read: a fresh `start()` for each attempt, and the walk of the attempt that read it all.
    /// MTS reads its one answer as it arrives and never holds it whole.
    fn walk_listing<W: ListingWalk<Self::Place>>(
        &self,
        caller: &Caller,
        name: &str,
        start: impl Fn() -> W + Send + Sync,
    ) -> impl Future<Output = Result<W, Halt>> + Send {
        async move {
            let library = self.library(caller, name).await?;
            let mut walk = start();
            library.walk(|person_id, images, place| walk.person(person_id, images, place));
            Ok(walk)
        }
    }

    /// One attempt at creating an image; the server's new id.
    fn create(
        &self,
        place: &Self::Place,
        person: Person<'_>,
        image_url: &str,
    ) -> impl Future<Output = Result<String, ApiError>> + Send;

    /// One attempt at removing an image by the server's id (never a wildcard).
    fn remove(
        &self,
        place: &Self::Place,
        id: &str,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;

    /// Finding a person's place may create something on the server (ICE: a library, an
    /// entity): the person's `pending` records go to disk before, so a run that is killed
    /// meanwhile leaves a record, and the next run waits the create out before it looks.
    const MAKES_PLACES: bool = false;

    /// The action names of a create and a removal (logs).
    const CREATE: &'static str;
    const REMOVE: &'static str;
    /// How the operator reads about it: `faces` / `samples`, `unregister` / `delete`, `FaceId`
    /// / `SampleId`.
    const NOUN: &'static str;
    const VERB: &'static str;
    const ID: &'static str;

    /// One cheap authenticated read that changes nothing, for a run with nothing to send: it
    /// proves the endpoint answers and the credentials are accepted (a rotated key, a dead
    /// endpoint, a revoked permission fail the night they happen). A refusal of the read's
    /// parameters is an answer too, so it passes.
    fn probe(&self, caller: &Caller) -> impl Future<Output = Result<(), Halt>> + Send;

    /// After a rollback removed images: deletes the libraries and entities that `made` names
    /// (created by the tool, per the ledger) once they are empty; MTS has none.
    fn tidy(
        &self,
        caller: &Caller,
        made: &[Made],
    ) -> impl Future<Output = Result<Tidied, Halt>> + Send;

    /// Marks an image record as this target's (ICE: target, algorithm, LibId, EntityId).
    fn stamp(&self, record: &mut ImageRecord, place: Option<&Self::Place>);

    /// Records the server's id of an image (FaceId or SampleId).
    fn set_id(record: &mut ImageRecord, id: String);
}

/// The regions that offer MTS custom faces (smart tagging).
pub const MTS_REGIONS: [&str; 3] = ["cn-beijing", "cn-shanghai", "cn-hangzhou"];
/// The regions that offer ICE recognition libraries.
pub const ICE_REGIONS: [&str; 4] = ["cn-beijing", "cn-shanghai", "cn-hangzhou", "cn-shenzhen"];

/// Where the images go: MTS custom faces, or ICE recognition libraries of one algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetKind {
    Mts,
    Ice(Algorithm),
}

impl TargetKind {
    /// `mts` or `ice`, as the ledger records it.
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Mts => "mts",
            TargetKind::Ice(_) => "ice",
        }
    }

    /// The target as the ledger records it.
    pub fn ledger_name(self) -> crate::ledger::TargetName {
        match self {
            TargetKind::Mts => crate::ledger::TargetName::Mts,
            TargetKind::Ice(_) => crate::ledger::TargetName::Ice,
        }
    }

    pub fn algorithm(self) -> Option<Algorithm> {
        match self {
            TargetKind::Mts => None,
            TargetKind::Ice(algorithm) => Some(algorithm),
        }
    }

    /// The planning rules (the 10-image limit is MTS's; ICE counts names in bytes).
    pub fn rules(self) -> plan::Rules {
        match self {
            TargetKind::Mts => plan::Rules::MTS,
            TargetKind::Ice(_) => crate::backend::ice::plan_rules(),
        }
    }

    /// From how many persons to read in one library the run reads the whole library at once
    /// (see `plan::Plan::read_libraries_from`); `None`: always person by person.
    pub fn library_read_threshold(self) -> Option<usize> {
        match self {
            TargetKind::Mts => Some(2),
            TargetKind::Ice(_) => None,
        }
    }

    /// The account's budget per operation: 100/s for MTS, 50/s for ICE.
    pub fn default_qps(self) -> u32 {
        match self {
            TargetKind::Mts => 100,
            TargetKind::Ice(_) => crate::backend::ice::DEFAULT_QPS,
        }
    }

    /// The ledger beside the manifest: `.ledger.jsonl`, `.ice.ledger.jsonl`, with `.sandbox`
    /// before `ledger` for the built-in sandbox, so no two kinds of import ever share one.
    pub fn default_ledger(self, manifest: &Path, sandbox: bool) -> PathBuf {
        let suffix = match (self, sandbox) {
            (TargetKind::Mts, false) => "ledger.jsonl",
            (TargetKind::Mts, true) => "sandbox.ledger.jsonl",
            (TargetKind::Ice(_), false) => "ice.ledger.jsonl",
            (TargetKind::Ice(_), true) => "ice.sandbox.ledger.jsonl",
        };
        manifest.with_extension(suffix)
    }

    /// Refuses a region that does not offer the target's operations (only when no
    /// `--endpoint` names the service directly).
    pub fn check_region(self, region: &str) -> Result<(), UsageError> {
        let (regions, what) = match self {
            TargetKind::Mts => (&MTS_REGIONS[..], "MTS custom faces"),
            TargetKind::Ice(_) => (&ICE_REGIONS[..], "ICE recognition libraries"),
        };
        if regions.contains(&region) {
            return Ok(());
        }
        Err(UsageError::new(format!(
            "region {region} has no {what}; use one of {} (--region), or --endpoint for a sandbox",
            regions.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_import_has_its_own_default_ledger() {
        let m = Path::new("data/faces.csv");
        let ice = TargetKind::Ice(Algorithm::Face);
        assert_eq!(
            TargetKind::Mts.default_ledger(m, false),
            PathBuf::from("data/faces.ledger.jsonl")
        );
        assert_eq!(
            TargetKind::Mts.default_ledger(Path::new("faces.csv"), true),
            PathBuf::from("faces.sandbox.ledger.jsonl")
        );
        assert_eq!(
            ice.default_ledger(m, false),
            PathBuf::from("data/faces.ice.ledger.jsonl")
        );
        assert_eq!(
            ice.default_ledger(m, true),
            PathBuf::from("data/faces.ice.sandbox.ledger.jsonl")
        );
    }

    #[test]
    fn regions_are_checked_per_target() {
        let ice = TargetKind::Ice(Algorithm::Face);
        assert!(ice.check_region("cn-shenzhen").is_ok());
        assert!(TargetKind::Mts.check_region("cn-shenzhen").is_err());
        assert!(
            ice.check_region("us-west-1")
                .unwrap_err()
                .0
                .contains("cn-beijing")
        );
    }
}
