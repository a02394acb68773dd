//! ICE recognition libraries behind the seam: `category_id` names a library, `person_id` an
//! entity, each image becomes a sample. The server invents every id, so names are resolved to
//! ids once per run and cached — one once-cell per library name and per entity name, so two
//! workers never create the same library or entity — and always looked for by listing before
//! they are created, so one left behind by a crash is found, not made twice.

mod facts;

pub use facts::*;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use crate::api::{Algorithm, ApiError, Client, Lib, Page};
use crate::caller::{Caller, Halt};
use crate::image::fold_id;
use crate::ledger::{ImageRecord, ObjectKind, TargetName, View};

use super::{Backend, Held, Library, Made, Person, Placed, ServerPerson, TargetKind};

pub struct IceBackend {
    client: Client,
    algorithm: Algorithm,
    /// Every library of the algorithm, listed once per run when first needed.
    libs: OnceCell<Vec<Lib>>,
    cells: Cells<LibSlot>,
    /// Per folded library name, the libraries of that name (the kept one first) and their
    /// entities, read once per run by the closing read's first person (see `places`).
    layouts: Mutex<HashMap<String, Arc<OnceCell<Layout>>>>,
}

/// The libraries of one name, the kept one first, each with its entities.
type Layout = Vec<(String, Vec<crate::api::Entity>)>;

/// Folded name → the one cell that resolves it. A cached `None` is a name that is not there
/// (and was not to be created); a stop or exhausted retries leave the cell empty for the next
/// worker to try.
type Cells<T> = Mutex<HashMap<String, Arc<OnceCell<Option<Arc<T>>>>>>;

struct LibSlot {
    lib_id: String,
    /// Created by this run just now: it has no entities, so there is nothing to list.
    fresh: bool,
    /// Folded entity name → EntityId, listed once per run when first needed.
    listed: OnceCell<HashMap<String, String>>,
    entities: Cells<EntitySlot>,
}

struct EntitySlot {
    entity_id: String,
    fresh: bool,
}

/// Folded entity name → EntityId, for one library.
type EntityNames = HashMap<String, String>;

/// Where a person's samples go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IcePlace {
    pub lib_id: String,
    pub entity_id: String,
    /// Made by this run just now: it holds no samples yet.
    pub fresh: bool,
}

fn cell<T>(cells: &Cells<T>, name: &str) -> Arc<OnceCell<Option<Arc<T>>>> {
    let mut map = cells.lock().unwrap_or_else(|p| p.into_inner());
    map.entry(fold_id(name)).or_default().clone()
}

/// The ids of the items named `name` (equal once folded, as the tool compares names), the one
/// every writer keeps first: the lowest id. Two hosts that each created a library or an entity
/// of one name agree on it without talking, and so does every later run.
fn ranked<'a>(items: impl Iterator<Item = (&'a str, Option<&'a str>)>, name: &str) -> Vec<String> {
    let folded = fold_id(name);
    let mut named: Vec<&str> = items
        .filter(|(_, n)| n.is_some_and(|n| fold_id(n) == folded))
        .map(|(id, _)| id)
        .collect();
    named.sort_unstable();
    named.into_iter().map(str::to_string).collect()
}

/// The id of the item named `name` that every writer keeps ([`ranked`]).
fn pick<'a>(items: impl Iterator<Item = (&'a str, Option<&'a str>)>, name: &str) -> Option<String> {
    ranked(items, name).into_iter().next()
}

impl IceBackend {
    pub fn new(client: Client, algorithm: Algorithm) -> IceBackend {
        IceBackend {
            client,
            algorithm,
            libs: OnceCell::new(),
            cells: Cells::default(),
            layouts: Mutex::default(),
        }
    }

    /// The libraries named `name` and their entities, read now by the first caller of the run
    /// and shared with the others: a closing read lists them once, not once per person.
    async fn layout(&self, caller: &Caller, name: &str) -> Result<Layout, Halt> {
        let cell = {
            let mut layouts = self.layouts.lock().unwrap_or_else(|p| p.into_inner());
            layouts.entry(fold_id(name)).or_default().clone()
        };
        let layout = cell
            .get_or_try_init(|| async {
                let libs = self.all_libs(caller).await?;
                let libs = ranked(
                    libs.iter()
                        .map(|l| (l.lib_id.as_str(), l.lib_name.as_deref())),
                    name,
                );
                let mut layout = Vec::with_capacity(libs.len());
                for lib_id in libs {
                    match self.entities(caller, &lib_id).await {
                        Ok(entities) => layout.push((lib_id, entities)),
                        // Deleted since it was listed (another host's tidying): nothing there.
                        Err(Halt::Refused(e)) if says_gone(&e) => {}
                        Err(halt) => return Err(halt),
                    }
                }
                Ok::<_, Halt>(layout)
            })
            .await?;
        Ok(layout.clone())
    }

    /// Every item of a listing, each page paced and retried like any call.
    async fn list<T, F, Fut>(
        &self,
        caller: &Caller,
        name: &'static str,
        fetch: F,
    ) -> Result<Vec<T>, Halt>
    where
        F: Fn(u32) -> Fut,
        Fut: Future<Output = Result<Page<T>, ApiError>>,
    {
        let fetch = &fetch;
        all_pages(|page| caller.read(name, move || fetch(page))).await
    }

    /// Every library of the algorithm, listed now.
    pub async fn all_libs(&self, caller: &Caller) -> Result<Vec<Lib>, Halt> {
        let (client, algorithm) = (&self.client, self.algorithm);
        self.list(caller, "ListRecognitionLibs", |page| {
            client.list_recognition_libs(algorithm, None, page, PAGE_SIZE)
        })
        .await
    }

    /// The libraries as listed once per run (a library this run made is added to its cell).
    async fn libs(&self, caller: &Caller) -> Result<&Vec<Lib>, Halt> {
        self.libs.get_or_try_init(|| self.all_libs(caller)).await
    }

    /// Folded entity name → EntityId of every entity in the library (the lowest id of a name wins).
    async fn entity_names(&self, caller: &Caller, lib_id: &str) -> Result<EntityNames, Halt> {
        let (client, algorithm) = (&self.client, self.algorithm);
        let entities = self
            .list(caller, "ListRecognitionEntities", |page| {
                client.list_recognition_entities(algorithm, lib_id, page, PAGE_SIZE)
            })
            .await?;
        let mut names: EntityNames = HashMap::with_capacity(entities.len());
        for entity in entities {
            if let Some(name) = &entity.entity_name {
                // The lowest id of a name wins ([`ranked`]).
                let slot = names
                    .entry(fold_id(name))
                    .or_insert_with(|| entity.entity_id.clone());
                if entity.entity_id < *slot {
                    *slot = entity.entity_id;
                }
            }
        }
        Ok(names)
    }

    /// The library named `name`, found by listing or (with `create`) created, once per run.
    async fn lib(
        &self,
        caller: &Caller,
        name: &str,
        create: bool,
        made: &mut Vec<Made>,
    ) -> Result<Option<Arc<LibSlot>>, Halt> {
        let cell = cell(&self.cells, name);
        let mut made_here = None;
        let slot = cell
            .get_or_try_init(|| async {
                let items = self.libs(caller).await?;
                let found = pick(
                    items
                        .iter()
                        .map(|l| (l.lib_id.as_str(), l.lib_name.as_deref())),
                    name,
                );
                if let Some(lib_id) = found {
                    return Ok(Some(Arc::new(new_lib(lib_id, false))));
                }
                if !create {
                    return Ok(None);
                }
                let (client, algorithm) = (&self.client, self.algorithm);
                let created = caller
                    .create_once(
                        "CreateRecognitionLib",
                        || async move {
                            Ok(client
                                .create_recognition_lib(algorithm, name, None)
                                .await?
                                .lib_id)
                        },
                        || async {
                            let now = self.all_libs(caller).await?;
                            let ids = now
                                .iter()
                                .map(|l| (l.lib_id.as_str(), l.lib_name.as_deref()));
                            Ok(pick(ids, name))
                        },
                    )
                    .await?;
                made_here = Some(Made {
                    object: ObjectKind::Lib,
                    name: name.to_string(),
                    lib_id: created.id.clone(),
                    entity_id: None,
                    recovered: created.recovered,
                });
                Ok::<_, Halt>(Some(Arc::new(new_lib(created.id, !created.recovered))))
            })
            .await?
            .clone();
        made.extend(made_here);
        Ok(slot)
    }

    /// The entity named `person.person_id` in `lib`, found by listing or created, once.
    async fn entity(
        &self,
        caller: &Caller,
        lib: &LibSlot,
        person: Person<'_>,
        create: bool,
        made: &mut Vec<Made>,
    ) -> Result<Option<Arc<EntitySlot>>, Halt> {
        let name = person.person_id;
        let cell = cell(&lib.entities, name);
        let mut made_here = None;
        let slot = cell
            .get_or_try_init(|| async {
                if !lib.fresh {
                    let listed = lib
                        .listed
                        .get_or_try_init(|| self.entity_names(caller, &lib.lib_id))
                        .await?;
                    if let Some(entity_id) = listed.get(&fold_id(name)) {
                        return Ok(Some(Arc::new(EntitySlot {
                            entity_id: entity_id.clone(),
                            fresh: false,
                        })));
                    }
                }
                if !create {
                    return Ok(None);
                }
                let created = self.create_entity(caller, &lib.lib_id, person).await?;
                let slot = EntitySlot {
                    fresh: !created.recovered,
                    entity_id: created.entity_id.clone().unwrap_or_default(),
                };
                made_here = Some(created);
                Ok::<_, Halt>(Some(Arc::new(slot)))
            })
            .await?
            .clone();
        made.extend(made_here);
        Ok(slot)
    }

    /// Creates the entity named `person.person_id` in library `lib_id`, exactly once.
    async fn create_entity(
        &self,
        caller: &Caller,
        lib_id: &str,
        person: Person<'_>,
    ) -> Result<Made, Halt> {
        let (client, algorithm, name) = (&self.client, self.algorithm, person.person_id);
        let info = entity_info(person.person_name);
        let info = info.as_deref();
        let created = caller
            .create_once(
                "CreateRecognitionEntity",
                || async move {
                    Ok(client
                        .create_recognition_entity(algorithm, lib_id, name, info)
                        .await?
                        .entity_id)
                },
                || async {
                    Ok(self
                        .entity_names(caller, lib_id)
                        .await?
                        .remove(&fold_id(name)))
                },
            )
            .await?;
        Ok(Made {
            object: ObjectKind::Entity,
            name: name.to_string(),
            lib_id: lib_id.to_string(),
            entity_id: Some(created.id),
            recovered: created.recovered,
        })
    }

    /// Every entity of a library.
    pub async fn entities(
        &self,
        caller: &Caller,
        lib_id: &str,
    ) -> Result<Vec<crate::api::Entity>, Halt> {
        let (client, algorithm) = (&self.client, self.algorithm);
        self.list(caller, "ListRecognitionEntities", |page| {
            client.list_recognition_entities(algorithm, lib_id, page, PAGE_SIZE)
        })
        .await
    }

    /// The EntityIds of a library.
    async fn entity_ids(&self, caller: &Caller, lib_id: &str) -> Result<Vec<String>, Halt> {
        let entities = self.entities(caller, lib_id).await?;
        Ok(entities.into_iter().map(|e| e.entity_id).collect())
    }

    /// Every sample of one entity, of every entity (`ANY`), or of entities named `name`.
    pub async fn samples_named(
        &self,
        caller: &Caller,
        lib_id: &str,
        entity_id: &str,
        name: Option<&str>,
    ) -> Result<Vec<crate::api::Sample>, Halt> {
        let (client, algorithm) = (&self.client, self.algorithm);
        self.list(caller, "ListRecognitionSamples", |page| {
            client.list_recognition_samples(algorithm, lib_id, entity_id, name, page, PAGE_SIZE)
        })
        .await
    }

    /// Deletes a library (with its entities and samples) exactly once.
    pub async fn delete_lib(
        &self,
        caller: &Caller,
        lib_id: &str,
    ) -> Result<crate::caller::Removal, Halt> {
        let (client, algorithm) = (&self.client, self.algorithm);
        caller
            .remove_once(
                "DeleteRecognitionLib",
                || async move {
                    client
                        .delete_recognition_lib(algorithm, lib_id)
                        .await
                        .map(|_| ())
                },
                || async move {
                    let libs = self.all_libs(caller).await?;
                    Ok(libs.iter().any(|l| l.lib_id == lib_id))
                },
            )
            .await
    }

    async fn samples(
        &self,
        caller: &Caller,
        lib_id: &str,
        entity_id: &str,
    ) -> Result<Vec<crate::api::Sample>, Halt> {
        match self.samples_named(caller, lib_id, entity_id, None).await {
            // A library or entity that is gone holds nothing; any other refusal is not proof
            // of absence (a look-up must never conclude "not there" from it).
            Err(Halt::Refused(e)) if says_gone(&e) => Ok(Vec::new()),
            other => other,
        }
    }
}

/// Whether a refusal says the library, entity or sample does not exist. ICE documents only
/// `InvalidParameter` for it, so the message decides; a refusal that does not say so is kept
/// as a refusal.
fn says_gone(error: &ApiError) -> bool {
    let message = error.message().to_ascii_lowercase();
    crate::caller::is_not_found(error)
        || message.contains("does not exist")
        || message.contains("not exist")
        || message.contains("not found")
}

fn new_lib(lib_id: String, fresh: bool) -> LibSlot {
    LibSlot {
        lib_id,
        fresh,
        listed: OnceCell::new(),
        entities: Cells::default(),
    }
}

impl Backend for IceBackend {
    type Place = IcePlace;

    const MAKES_PLACES: bool = true;
    const CREATE: &'static str = "CreateRecognitionSample";
    const REMOVE: &'static str = "DeleteRecognitionSample";
    const NOUN: &'static str = "samples";
    const VERB: &'static str = "delete";
    const ID: &'static str = "SampleId";

    async fn probe(&self, caller: &Caller) -> Result<(), Halt> {
        // The first page of one library: a short answer however many there are.
        let (client, algorithm) = (&self.client, self.algorithm);
        let read = caller
            .read("ListRecognitionLibs", || {
                client.list_recognition_libs(algorithm, None, 1, 1)
            })
            .await;
        match read {
            Ok(_) | Err(Halt::Refused(_)) => Ok(()),
            Err(halt) => Err(halt),
        }
    }

    async fn tidy(&self, caller: &Caller, made: &[Made]) -> Result<super::Tidied, Halt> {
        let (client, algorithm) = (&self.client, self.algorithm);
        let mut tidied = super::Tidied::default();
        let mut deleted_entities: Vec<&str> = Vec::new();
        for m in made.iter().filter(|m| m.object == ObjectKind::Entity) {
            let (lib_id, Some(entity_id)) = (m.lib_id.as_str(), m.entity_id.as_deref()) else {
                continue;
            };
            if !self.samples(caller, lib_id, entity_id).await?.is_empty() {
                tidied.kept.push(entity_id.to_string());
                continue;
            }
            let gone = caller
                .remove_once(
                    "DeleteRecognitionEntity",
                    || async move {
                        client
                            .delete_recognition_entity(algorithm, lib_id, entity_id)
                            .await
                            .map(|_| ())
                    },
                    || async move {
                        let names = self.entity_ids(caller, lib_id).await?;
                        Ok(names.iter().any(|id| id == entity_id))
                    },
                )
                .await;
            match gone {
                Ok(_) => {
                    deleted_entities.push(entity_id);
                    tidied.deleted.push(m.clone());
                }
                // A library that is gone took its entities with it.
                Err(Halt::Refused(_)) => {}
                Err(halt) => return Err(halt),
            }
        }
        for m in made.iter().filter(|m| m.object == ObjectKind::Lib) {
            let lib_id = m.lib_id.as_str();
            let left = match self.entity_ids(caller, lib_id).await {
                Ok(ids) => ids,
                Err(Halt::Refused(_)) => continue,
                Err(halt) => return Err(halt),
            };
            if !left.is_empty() {
                tidied.kept.push(lib_id.to_string());
                continue;
            }
            match self.delete_lib(caller, lib_id).await {
                Ok(_) => tidied.deleted.push(m.clone()),
                Err(Halt::Refused(_)) => {}
                Err(halt) => return Err(halt),
            }
        }
        Ok(tidied)
    }

    fn kind(&self) -> TargetKind {
        TargetKind::Ice(self.algorithm)
    }

    async fn place(
        &self,
        caller: &Caller,
        person: Person<'_>,
        create: bool,
    ) -> Result<Option<Placed<IcePlace>>, Halt> {
        let mut made = Vec::new();
        let Some(lib) = self
            .lib(caller, person.category_id, create, &mut made)
            .await?
        else {
            return Ok(None);
        };
        let Some(entity) = self.entity(caller, &lib, person, create, &mut made).await? else {
            return Ok(None);
        };
        Ok(Some(Placed {
            place: IcePlace {
                lib_id: lib.lib_id.clone(),
                entity_id: entity.entity_id.clone(),
                fresh: entity.fresh,
            },
            made,
        }))
    }

    fn is_fresh(place: &IcePlace) -> bool {
        place.fresh
    }

    fn place_at(_person: Person<'_>, lib: Option<&str>, entity: Option<&str>) -> Option<IcePlace> {
        Some(IcePlace {
            lib_id: lib?.to_string(),
            entity_id: entity?.to_string(),
            fresh: false,
        })
    }

    fn same_place(a: &IcePlace, b: &IcePlace) -> bool {
        a.lib_id == b.lib_id && a.entity_id == b.entity_id
    }

    fn place_of(view: &View<'_>) -> Option<IcePlace> {
        Some(IcePlace {
            lib_id: view.lib_id.as_deref()?.to_string(),
            entity_id: view.entity_id.as_deref()?.to_string(),
            fresh: false,
        })
    }

    async fn held(&self, caller: &Caller, place: &IcePlace) -> Result<Vec<Held>, Halt> {
        let samples = self
            .samples(caller, &place.lib_id, &place.entity_id)
            .await?;
        Ok(samples
            .into_iter()
            .map(|s| Held {
                id: s.sample_id,
                image_url: s.image_url,
            })
            .collect())
    }

    async fn kept_lib(&self, caller: &Caller, name: &str) -> Result<Option<String>, Halt> {
        let libs = self.all_libs(caller).await?;
        Ok(pick(
            libs.iter()
                .map(|l| (l.lib_id.as_str(), l.lib_name.as_deref())),
            name,
        ))
    }

    async fn places(
        &self,
        caller: &Caller,
        person: Person<'_>,
        make: bool,
    ) -> Result<super::Places<IcePlace>, Halt> {
        let layout = self.layout(caller, person.category_id).await?;
        let mut places = super::Places {
            kept: None,
            others: Vec::new(),
            made: Vec::new(),
        };
        for (rank, (lib_id, entities)) in layout.iter().enumerate() {
            let named = ranked(
                entities
                    .iter()
                    .map(|e| (e.entity_id.as_str(), e.entity_name.as_deref())),
                person.person_id,
            );
            if rank == 0 && named.is_empty() && make {
                let made = self.create_entity(caller, lib_id, person).await?;
                let place = IcePlace {
                    lib_id: lib_id.clone(),
                    entity_id: made.entity_id.clone().unwrap_or_default(),
                    fresh: !made.recovered,
                };
                let held = match made.recovered {
                    true => self.held(caller, &place).await?,
                    false => Vec::new(),
                };
                places.made.push(made);
                places.kept = Some((place, held));
                continue;
            }
            for (i, entity_id) in named.into_iter().enumerate() {
                let place = IcePlace {
                    lib_id: lib_id.clone(),
                    entity_id,
                    fresh: false,
                };
                let held = self.held(caller, &place).await?;
                if rank == 0 && i == 0 {
                    places.kept = Some((place, held));
                } else {
                    places.others.push((place, held));
                }
            }
        }
        Ok(places)
    }

    async fn library(&self, caller: &Caller, name: &str) -> Result<Library<IcePlace>, Halt> {
        let folded = fold_id(name);
        let libs = self.all_libs(caller).await?;
        let mut library = Library::default();
        for lib in libs
            .iter()
            .filter(|l| l.lib_name.as_deref().is_some_and(|n| fold_id(n) == folded))
        {
            let names = {
                let (client, algorithm) = (&self.client, self.algorithm);
                self.list(caller, "ListRecognitionEntities", |page| {
                    client.list_recognition_entities(algorithm, &lib.lib_id, page, PAGE_SIZE)
                })
                .await?
            };
            let mut at: HashMap<String, usize> = HashMap::new();
            for entity in names {
                at.insert(entity.entity_id.clone(), library.persons.len());
                library.persons.push(ServerPerson {
                    person_id: entity.entity_name.unwrap_or_default(),
                    place: IcePlace {
                        lib_id: lib.lib_id.clone(),
                        entity_id: entity.entity_id,
                        fresh: false,
                    },
                    images: Vec::new(),
                });
            }
            for sample in self.samples(caller, &lib.lib_id, "ANY").await? {
                let Some(&i) = sample.entity_id.as_ref().and_then(|e| at.get(e)) else {
                    continue;
                };
                library.persons[i].images.push(Held {
                    id: sample.sample_id,
                    image_url: sample.image_url,
                });
            }
        }
        Ok(library)
    }

    async fn create(
        &self,
        place: &IcePlace,
        _person: Person<'_>,
        image_url: &str,
    ) -> Result<String, ApiError> {
        Ok(self
            .client
            .create_recognition_sample(
                self.algorithm,
                &place.lib_id,
                &place.entity_id,
                image_url,
                None,
            )
            .await?
            .sample_id)
    }

    async fn remove(&self, place: &IcePlace, id: &str) -> Result<(), ApiError> {
        self.client
            .delete_recognition_sample(self.algorithm, &place.lib_id, &place.entity_id, id)
            .await
            .map(|_| ())
    }

    fn stamp(&self, record: &mut ImageRecord, place: Option<&IcePlace>) {
        record.target = Some(TargetName::Ice);
        record.algorithm = Some(self.algorithm.to_string());
        if let Some(place) = place {
            record.lib_id = Some(place.lib_id.clone());
            record.entity_id = Some(place.entity_id.clone());
        }
    }

    fn set_id(record: &mut ImageRecord, id: String) {
        record.sample_id = Some(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn of_two_libraries_or_entities_of_one_name_every_writer_keeps_the_lowest_id() {
        let items = [
            ("9f", Some("Lib")),
            ("1a", Some("other")),
            ("3c", Some("lib")),
            ("05", None),
        ];
        let items = || items.iter().map(|(id, n)| (*id, *n));
        // Equal once folded, whichever spelling made them: the lowest id first.
        assert_eq!(ranked(items(), "lib"), ["3c", "9f"]);
        assert_eq!(ranked(items(), "LIB"), ["3c", "9f"]);
        assert_eq!(pick(items(), "Lib").as_deref(), Some("3c"));
        assert_eq!(pick(items(), "missing"), None);
    }
}
