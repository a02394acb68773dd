//! `--sync-scope library`: what the manifest's libraries hold on the server beyond what the
//! ledger and the manifest account for — faces registered by other tools, or by hand — read
//! once per library before anything is sent, and planned for removal like the ledger's own.

use std::collections::{HashMap, HashSet};

use super::{Planned, RunError};
use crate::backend::{Backend, Library};
use crate::caller::{Caller, Halt};
use crate::image::{Image, ImageId, Locator, library_key, person_key};
use crate::ledger::{ImageRecord, Status};
use crate::plan::{DropWork, PersonDrops, Why};

/// What the manifest's libraries hold, read once each before anything is sent.
pub(super) type Libraries<P> = Vec<(String, Library<P>)>;

/// Reads every library of `names`; a library that cannot be read stops the run before
/// anything was changed.
pub(super) async fn read_libraries<T: Backend>(
    target: &T,
    caller: &Caller,
    names: &[String],
) -> Result<Libraries<T::Place>, RunError> {
    let mut listing = Vec::with_capacity(names.len());
    for name in names {
        let library = target
            .library(caller, name)
            .await
            .map_err(|halt| stopped_reading(caller, name, halt))?;
        listing.push((name.clone(), library));
    }
    Ok(listing)
}

/// Why reading library `name` stopped the run, with the exit that reason has: a refused key is
/// exit 3 and a dead endpoint exit 6 here as anywhere else, not a usage error.
fn stopped_reading(caller: &Caller, name: &str, halt: Halt) -> RunError {
    use crate::exit::Exit;
    let stop = caller.stop();
    let (exit, error) = match halt {
        Halt::Fatal => (Exit::ServiceFatal, stop.take_fatal()),
        Halt::Stopped => (stop.exit().unwrap_or(Exit::Interrupted), stop.unreached()),
        Halt::Refused(e) => (Exit::Usage, Some(e)),
        Halt::Exhausted(e) => (Exit::StoppedEarly, Some(e)),
    };
    let why = error
        .as_ref()
        .map_or_else(|| "stopped".to_string(), |e| e.to_string());
    let mut message =
        format!("--sync-scope library: cannot read the library {name}: {why}; nothing was changed");
    if let Some(hint) = error.as_ref().and_then(|e| e.hint()) {
        message.push_str(&format!("\n  what to do: {hint}"));
    }
    RunError::Stopped { exit, message }
}

/// (person key, canonical URL) of every image the listing holds: the planner counts a
/// manifest image already there as the person's before it applies the image limit.
pub(super) fn on_server<P>(listing: &Libraries<P>) -> crate::plan::OnServer {
    let mut held = crate::plan::OnServer::new();
    for (name, library) in listing {
        for person in &library.persons {
            let key = person_key(name, &person.person_id);
            for image in &person.images {
                let url = image.image_url.as_deref().unwrap_or_default();
                held.insert((key, Locator::listed(url).into_string()));
            }
        }
    }
    held
}

/// Adds, to `planned.dropped`, each image of the listing that no ledger record holds and no
/// manifest row (or unsettled record) of its person names; and, for an image whose recorded id
/// has left the server, the id it holds the image by now.
pub(super) fn add_foreign<T: Backend>(
    target: &T,
    planned: &mut Planned,
    listing: Libraries<T::Place>,
) {
    let wanted = still_wanted(planned);
    let mut at: HashMap<u128, usize> = planned
        .dropped
        .persons
        .iter()
        .enumerate()
        .map(|(i, p)| (person_key(&p.category_id, &p.person_id), i))
        .collect();
    for (name, library) in listing {
        for person in library.persons {
            let key = person_key(&name, &person.person_id);
            let urls = wanted.get(&key);
            // The ids a record needs for this place (ICE: LibId and EntityId).
            let mut stamped = ImageRecord::new("", Status::Registered, "", "", "");
            target.stamp(&mut stamped, Some(&person.place));
            let adopted = adopted_ids(&planned.dropped, key, &person.images);
            for held in &person.images {
                if planned.dropped.ledger_ids.contains(&held.id) {
                    continue;
                }
                let url = held.image_url.clone().unwrap_or_default();
                let canonical = Locator::listed(&url).into_string();
                let recorded = planned.dropped.ledger_urls.get(&(key, canonical.clone()));
                let why = match (recorded, adopted.get(&canonical)) {
                    (Some(_), Some(&id)) if id == held.id => Why::Adopt,
                    (Some(_), _) => Why::Copy,
                    (None, _) if urls.is_some_and(|u| u.contains(&canonical)) => continue,
                    (None, _) => Why::NotOurs,
                };
                let index = *at.entry(key).or_insert_with(|| {
                    planned.dropped.persons.push(PersonDrops {
                        category_id: name.clone(),
                        person_id: person.person_id.clone(),
                        ..PersonDrops::default()
                    });
                    planned.dropped.persons.len() - 1
                });
                let (image, key) = match (why, recorded) {
                    // Recorded as the ledger's image, under the id the server holds.
                    (Why::Adopt, Some(r)) => (r.image.clone(), r.key),
                    _ => {
                        let key = ImageId::listed(&url).key(&name, &person.person_id);
                        (Image::at(url), key)
                    }
                };
                planned.dropped.persons[index].drops.push(DropWork {
                    key,
                    image,
                    id: Some(held.id.clone()),
                    lib_id: stamped.lib_id.clone(),
                    entity_id: stamped.entity_id.clone(),
                    status: Status::Registered,
                    remove: why != Why::Adopt,
                    why,
                });
            }
        }
    }
}

/// The locators each person (by key) still has a use for: rows to send, images to settle.
fn still_wanted(planned: &Planned) -> HashMap<u128, HashSet<String>> {
    let mut wanted: HashMap<u128, HashSet<String>> = HashMap::new();
    for job in &planned.plan.jobs {
        let urls = wanted
            .entry(person_key(&job.category_id, &job.person_id))
            .or_default();
        urls.extend(job.images.iter().map(|i| i.image.locator().into_string()));
    }
    for person in &planned.dropped.persons {
        let urls = wanted
            .entry(person_key(&person.category_id, &person.person_id))
            .or_default();
        urls.extend(person.drops.iter().map(|d| d.image.locator().into_string()));
    }
    wanted
}

/// For each image of the person (`key`) whose recorded id is gone from what the server holds
/// (`held`): the id it holds the image by now, the lowest other id under its locator (a rule
/// any run agrees on); the others are its copies. Keyed by locator.
fn adopted_ids<'h>(
    dropped: &crate::plan::Dropped,
    key: u128,
    held: &'h [crate::backend::Held],
) -> HashMap<String, &'h str> {
    let present: HashSet<&str> = held.iter().map(|h| h.id.as_str()).collect();
    let mut adopted: HashMap<String, &str> = HashMap::new();
    for image in held {
        if dropped.ledger_ids.contains(&image.id) {
            continue;
        }
        let url = Locator::listed(image.image_url.as_deref().unwrap_or_default());
        if let Some(recorded) = dropped.ledger_urls.get(&(key, url.to_string()))
            && !present.contains(recorded.id.as_str())
        {
            let lowest = adopted.entry(url.into_string()).or_insert(&image.id);
            if image.id.as_str() < *lowest {
                *lowest = &image.id;
            }
        }
    }
    adopted
}

/// The ICE entities the tool created for persons the manifest no longer names, in libraries
/// it names: a sync deletes each once it holds nothing (never a library) — also one a sync
/// interrupted earlier emptied.
pub(super) fn emptied_entities(
    plan: &crate::plan::Plan,
    dropped: &crate::plan::Dropped,
) -> Vec<crate::backend::Made> {
    let libraries: HashSet<u128> = plan.libraries.iter().map(|l| library_key(l)).collect();
    dropped
        .made_entities
        .iter()
        .filter(|m| {
            m.library.as_deref().is_some_and(|library| {
                libraries.contains(&library_key(library))
                    && !plan.persons_named.contains(&person_key(library, &m.name))
            })
        })
        .map(|m| crate::backend::Made {
            object: crate::ledger::ObjectKind::Entity,
            name: m.name.clone(),
            lib_id: m.lib_id.clone(),
            entity_id: Some(m.entity_id.clone()),
            recovered: false,
        })
        .collect()
}

/// Deletes the entities of `emptied` that hold nothing now, each recorded `deleted`.
pub(super) async fn delete_emptied<T: Backend>(
    context: &super::worker::Context<T>,
    emptied: &[crate::backend::Made],
) {
    match context.target.tidy(&context.caller, emptied).await {
        Ok(tidied) => {
            for made in tidied.deleted {
                let record = made.record(&context.run_id, context.target.kind());
                context.events.send(super::Event::Noted(
                    crate::ledger::Record::Deleted(record),
                    super::recorder::Note::EntityDeleted,
                ));
            }
        }
        Err(halt) => {
            if let Some(e) = halt.error() {
                crate::say!("face-enroll: --sync: cannot delete an emptied entity: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Held;
    use crate::plan::Dropped;
    use crate::plan::drops::Recorded;

    fn held(id: &str, url: &str) -> Held {
        Held {
            id: id.into(),
            image_url: Some(url.into()),
        }
    }

    #[test]
    fn an_image_whose_recorded_id_is_gone_is_adopted_under_the_lowest_id_it_is_held_by() {
        let person = person_key("lib", "alice");
        let mut dropped = Dropped::default();
        for (url, id) in [("https://h/a.jpg", "f1"), ("https://h/b.jpg", "f2")] {
            let image = Image::at(url);
            let recorded = Recorded {
                id: id.into(),
                key: image.key_in("lib", "alice"),
                image,
            };
            dropped.ledger_ids.insert(id.into());
            dropped
                .ledger_urls
                .insert((person, Locator::of(url).into_string()), recorded);
        }
        // a.jpg's f1 is gone, held now by f7 and f5; b.jpg's f2 is still there (f9 a copy).
        let listed = [
            held("f7", "https://h/a.jpg"),
            held("f5", "https://H/a.jpg"),
            held("f2", "https://h/b.jpg"),
            held("f9", "https://h/b.jpg"),
            held("f8", "https://h/c.jpg"),
        ];
        let adopted = adopted_ids(&dropped, person, &listed);
        assert_eq!(adopted.len(), 1, "{adopted:?}");
        assert_eq!(adopted.get("https://h/a.jpg"), Some(&"f5"));
        // Another person's listing adopts nothing of alice's.
        assert!(adopted_ids(&dropped, person_key("lib", "bob"), &listed).is_empty());
    }
}
