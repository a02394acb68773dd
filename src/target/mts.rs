//! MTS custom faces behind the seam: the library and person are the manifest's own ids (the
//! service makes them with the first face), one `ListCustomPersons` reads a person or a whole
//! library, one face per `RegisterCustomFace`, one per `UnregisterCustomFace` by FaceId.

use crate::api::{ApiError, Client, CustomPersons, RegisterFace};
use crate::caller::{Caller, Halt};
use crate::ledger::{ImageRecord, View};
use crate::manifest::fold_id;

use super::{Held, Library, Person, Placed, ServerPerson, Target, TargetKind};

pub struct MtsTarget {
    client: Client,
}

impl MtsTarget {
    pub fn new(client: Client) -> MtsTarget {
        MtsTarget { client }
    }
}

/// A person's ids, as the manifest (or the server) spells them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MtsPlace {
    pub category_id: String,
    pub person_id: String,
}

/// The faces of one library in a listing, person by person (ids compared case-insensitively).
fn persons_of(listing: CustomPersons, category_id: &str) -> Vec<ServerPerson<MtsPlace>> {
    let folded = fold_id(category_id);
    let mut out = Vec::new();
    for category in listing
        .categories
        .into_iter()
        .filter(|c| fold_id(&c.category_id) == folded)
    {
        for person in category.persons {
            out.push(ServerPerson {
                place: MtsPlace {
                    category_id: category.category_id.clone(),
                    person_id: person.person_id.clone(),
                },
                person_id: person.person_id,
                images: person
                    .faces
                    .into_iter()
                    .map(|f| Held {
                        id: f.face_id,
                        image_url: f.image_url,
                    })
                    .collect(),
            });
        }
    }
    out
}

/// A library the service does not know holds nothing (it may say so instead of listing none).
fn empty_if_unknown(result: Result<CustomPersons, Halt>) -> Result<CustomPersons, Halt> {
    match result {
        Err(Halt::Refused(e)) if crate::caller::is_not_found(&e) => Ok(CustomPersons::default()),
        other => other,
    }
}

impl Target for MtsTarget {
    type Place = MtsPlace;

    const CREATE: &'static str = "RegisterCustomFace";
    const REMOVE: &'static str = "UnregisterCustomFace";
    const NOUN: &'static str = "faces";
    const VERB: &'static str = "unregister";
    const ID: &'static str = "FaceId";

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
                client.list_custom_persons(Some(category), Some(person))
            })
            .await;
        let folded = fold_id(person);
        Ok(persons_of(empty_if_unknown(listing)?, category)
            .into_iter()
            .filter(|p| fold_id(&p.person_id) == folded)
            .flat_map(|p| p.images)
            .collect())
    }

    async fn library(&self, caller: &Caller, name: &str) -> Result<Library<MtsPlace>, Halt> {
        let client = &self.client;
        let listing = caller
            .read("ListCustomPersons", || {
                client.list_custom_persons(Some(name), None)
            })
            .await;
        Ok(Library {
            persons: persons_of(empty_if_unknown(listing)?, name),
        })
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
