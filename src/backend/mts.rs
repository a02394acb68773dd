//! MTS custom faces behind the seam: the library and person are the manifest's own ids (the
//! service makes them with the first face), one `ListCustomPersons` reads a person or a whole
//! library, one face per `RegisterCustomFace`, one per `UnregisterCustomFace` by FaceId.

use crate::api::{ApiError, Client, PersonRef, PersonsBody, RegisterFace};
use crate::caller::{Caller, Halt};
use crate::image::fold_id;
use crate::ledger::{ImageRecord, View};

use super::{
    Backend, Held, ImageRef, Library, ListingWalk, Person, Placed, ServerPerson, TargetKind,
};

pub struct MtsBackend {
    client: Client,
}

impl MtsBackend {
    pub fn new(client: Client) -> MtsBackend {
        MtsBackend { client }
    }

    /// The one answer that lists the library `name`.
    async fn listed(&self, caller: &Caller, name: &str) -> Result<PersonsBody, Halt> {
        let client = &self.client;
        let listing = caller
            .read("ListCustomPersons", || {
                client.list_custom_persons_body(Some(name), None)
            })
            .await;
        empty_if_unknown(listing)
    }
}

/// A person's ids, as the manifest (or the server) spells them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MtsPlace {
    pub category_id: String,
    pub person_id: String,
}

/// The faces of one library in a listing, person by person (ids compared case-insensitively).
fn persons_of(listing: &PersonsBody, category_id: &str) -> Vec<ServerPerson<MtsPlace>> {
    let mut out = Vec::new();
    walk_library(listing, category_id, |person| {
        out.push(ServerPerson {
            place: MtsPlace {
                category_id: person.category.category_id.clone(),
                person_id: person.person_id.to_string(),
            },
            person_id: person.person_id.to_string(),
            images: person
                .faces
                .iter()
                .map(|f| Held {
                    id: f.face_id.to_string(),
                    image_url: f.image_url.as_deref().map(str::to_string),
                })
                .collect(),
        });
    });
    out
}

/// Every person of the listing in the library `category_id` (a listing may hold others).
pub(super) fn walk_library(
    listing: &PersonsBody,
    category_id: &str,
    mut each: impl FnMut(PersonRef<'_, '_>),
) {
    let folded = fold_id(category_id);
    let ours: Vec<bool> = listing
        .categories()
        .iter()
        .map(|c| fold_id(&c.category_id) == folded)
        .collect();
    listing.walk(|person| {
        if ours.get(person.category_at).copied().unwrap_or(false) {
            each(person);
        }
    });
}

/// A walk of the persons of one library (its folded name) in an answer that may list others,
/// as [`walk_library`] picks them.
struct InLibrary<W> {
    walk: W,
    folded: String,
    /// The last category seen, and whether it is the library's.
    last: Option<(usize, bool)>,
}

impl<W: ListingWalk<MtsPlace>> InLibrary<W> {
    fn person(&mut self, person: PersonRef<'_, '_>) {
        let ours = match self.last {
            Some((at, ours)) if at == person.category_at => ours,
            _ => {
                let ours = fold_id(&person.category.category_id) == self.folded;
                self.last = Some((person.category_at, ours));
                ours
            }
        };
        if !ours {
            return;
        }
        let images: Vec<ImageRef<'_>> = person
            .faces
            .iter()
            .map(|f| ImageRef {
                id: &f.face_id,
                image_url: f.image_url.as_deref(),
            })
            .collect();
        let (category, id) = (&person.category.category_id, &person.person_id);
        self.walk.person(id, &images, &|| place(category, id));
    }
}

/// A library the service does not know holds nothing (it may say so instead of listing none).
fn empty_if_unknown(result: Result<PersonsBody, Halt>) -> Result<PersonsBody, Halt> {
    match result {
        Err(Halt::Refused(e)) if crate::caller::is_not_found(&e) => Ok(PersonsBody::default()),
        other => other,
    }
}

fn place(category_id: &str, person_id: &str) -> MtsPlace {
    MtsPlace {
        category_id: category_id.to_string(),
        person_id: person_id.to_string(),
    }
}

/// What the probe of a run with nothing to send asks for (read only).
const PROBE_LIBRARY: &str = "face-enroll-probe";
const PROBE_PERSON: &str = "probe";

impl Backend for MtsBackend {
    type Place = MtsPlace;

    const CREATE: &'static str = "RegisterCustomFace";
    const REMOVE: &'static str = "UnregisterCustomFace";
    const NOUN: &'static str = "faces";
    const VERB: &'static str = "unregister";
    const ID: &'static str = "FaceId";

    async fn probe(&self, caller: &Caller) -> Result<(), Halt> {
        // One person of one library, most likely neither there: a short answer either way.
        let client = &self.client;
        let read = caller
            .read("ListCustomPersons", || {
                client.list_custom_persons_body(Some(PROBE_LIBRARY), Some(PROBE_PERSON))
            })
            .await;
        match read {
            Ok(_) | Err(Halt::Refused(_)) => Ok(()),
            Err(halt) => Err(halt),
        }
    }

    async fn tidy(&self, _caller: &Caller, _made: &[super::Made]) -> Result<super::Tidied, Halt> {
        // The service removes a person and a library with their last face.
        Ok(super::Tidied::default())
    }

    fn kind(&self) -> TargetKind {
        TargetKind::Mts
    }

    async fn place(
        &self,
        _caller: &Caller,
        person: Person<'_>,
        _create: bool,
    ) -> Result<Option<Placed<MtsPlace>>, Halt> {
        Ok(Some(Placed {
            place: MtsPlace {
                category_id: person.category_id.to_string(),
                person_id: person.person_id.to_string(),
            },
            made: Vec::new(),
        }))
    }

    fn is_fresh(_place: &MtsPlace) -> bool {
        false
    }

    fn place_at(person: Person<'_>, _lib: Option<&str>, _entity: Option<&str>) -> Option<MtsPlace> {
        Some(MtsPlace {
            category_id: person.category_id.to_string(),
            person_id: person.person_id.to_string(),
        })
    }

    fn same_place(a: &MtsPlace, b: &MtsPlace) -> bool {
        fold_id(&a.category_id) == fold_id(&b.category_id)
            && fold_id(&a.person_id) == fold_id(&b.person_id)
    }

    fn place_of(view: &View<'_>) -> Option<MtsPlace> {
        Some(MtsPlace {
            category_id: view.category_id.as_deref()?.to_string(),
            person_id: view.person_id.as_deref()?.to_string(),
        })
    }

    async fn held(&self, caller: &Caller, place: &MtsPlace) -> Result<Vec<Held>, Halt> {
        let client = &self.client;
        let (category, person) = (place.category_id.as_str(), place.person_id.as_str());
        let listing = caller
            .read("ListCustomPersons", || {
                client.list_custom_persons_body(Some(category), Some(person))
            })
            .await;
        let folded = fold_id(person);
        Ok(persons_of(&empty_if_unknown(listing)?, category)
            .into_iter()
            .filter(|p| fold_id(&p.person_id) == folded)
            .flat_map(|p| p.images)
            .collect())
    }

    async fn library(&self, caller: &Caller, name: &str) -> Result<Library<MtsPlace>, Halt> {
        let listing = self.listed(caller, name).await?;
        Ok(Library {
            persons: persons_of(&listing, name),
        })
    }

    async fn walk_listing<W: ListingWalk<MtsPlace>>(
        &self,
        caller: &Caller,
        name: &str,
        start: impl Fn() -> W + Send + Sync,
    ) -> Result<W, Halt> {
        let client = &self.client;
        let folded = fold_id(name);
        let read = caller
            .read("ListCustomPersons", || {
                let ours = InLibrary {
                    walk: start(),
                    folded: folded.clone(),
                    last: None,
                };
                client.list_custom_persons_walk(Some(name), None, ours, InLibrary::person)
            })
            .await;
        // A library the service does not know holds nothing.
        match read {
            Ok(ours) => Ok(ours.walk),
            Err(Halt::Refused(e)) if crate::caller::is_not_found(&e) => Ok(start()),
            Err(halt) => Err(halt),
        }
    }

    async fn create(
        &self,
        place: &MtsPlace,
        person: Person<'_>,
        image_url: &str,
    ) -> Result<String, ApiError> {
        let face = RegisterFace {
            category_id: &place.category_id,
            person_id: &place.person_id,
            image_url,
            person_name: person.person_name,
        };
        Ok(self.client.register_custom_face(&face).await?.face_id)
    }

    async fn remove(&self, place: &MtsPlace, id: &str) -> Result<(), ApiError> {
        self.client
            .unregister_face(&place.category_id, &place.person_id, id)
            .await
            .map(|_| ())
    }

    fn stamp(&self, _record: &mut ImageRecord, _place: Option<&MtsPlace>) {}

    fn set_id(record: &mut ImageRecord, id: String) {
        record.face_id = Some(id);
    }
}
