//! What the manifest no longer names, read from the ledger after the plan: images whose
//! outcome was never settled (a `pending`, `removing` or retryable `failed` record — settled
//! whatever the manifest now holds), persons a late request may still land for (`recheck`),
//! and, for `--sync`, the registered images to remove.
//!
//! One more pass through the one ledger reader, keeping only those images: nothing is read
//! when there is nothing of the kind, so an all-done re-run pays nothing for it.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::work::{DropWork, ImageWork, Kept, PersonJob, Plan, Recheck, Why};
use crate::image::{Image, library_key, person_key};
use crate::ledger::{self, Entry, KeyMap, LedgerError, Replay, Status};

/// Which images a sync removes (`--sync-scope`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncScope {
    /// Only images the ledger records as registered (or adopted) by this tool.
    #[default]
    Ledger,
    /// Everything in the manifest's libraries the manifest does not hold, whoever put it there.
    Library,
}

/// A person's images the manifest does not name, and whether it must be read for late copies.
#[derive(Debug, Default)]
pub struct PersonDrops {
    pub category_id: String,
    pub person_id: String,
    pub drops: Vec<DropWork>,
    /// A `recheck` person: the ids the ledger holds for its images, by canonical URL.
    pub recheck: Option<Vec<Kept>>,
    /// Read again only because a run created images for the person (`converge`): a read a
    /// run with nothing else to send and `--no-probe` leaves for a later run.
    pub converge_only: bool,
    /// The latest unsettled record's time (Unix seconds), for the settling wait.
    pub since: u32,
}

/// What [`collect`] found.
#[derive(Debug, Default)]
pub struct Dropped {
    pub persons: Vec<PersonDrops>,
    /// `--sync-scope library`: every id the ledger records as registered in the manifest's
    /// libraries (what the server holds beyond these, and beyond the manifest, is not ours).
    pub ledger_ids: HashSet<String>,
    /// `--sync-scope library`: every image the ledger holds as registered there, by (person
    /// key, canonical URL): another server id under one of these is a duplicate copy while
    /// the recorded id is still on the server, and the image itself once it is not.
    pub ledger_urls: HashMap<(u128, String), Recorded>,
    /// Registered images a sync would remove whose id may not be sent (empty, padded, `ALL`).
    pub unsafe_ids: Vec<String>,
    /// `--sync`: ICE entities a run created and nothing deleted since. A sync deletes one of a
    /// person the manifest no longer names, in a library it names, once it holds nothing.
    pub made_entities: Vec<MadeEntity>,
}

impl Dropped {
    /// Images planned for removal.
    pub fn removals(&self) -> usize {
        self.persons
            .iter()
            .flat_map(|p| &p.drops)
            .filter(|d| d.remove)
            .count()
    }
}

/// An image as the ledger records it (registered), for `--sync-scope library`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub id: String,
    pub image: Image,
    pub key: u128,
}

/// An ICE entity a run created (its `created` record), with its library's name when the
/// ledger also recorded creating the library.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MadeEntity {
    pub lib_id: String,
    pub entity_id: String,
    /// The entity's name: the manifest's person_id.
    pub name: String,
    /// The library's name: the manifest's category_id.
    pub library: Option<String>,
}

/// The last record of one image of interest.
#[derive(Default)]
struct Last {
    category_id: String,
    person_id: String,
    image: Image,
    id: Option<String>,
    lib_id: Option<String>,
    entity_id: Option<String>,
}

/// What one pass over the ledger gathers for [`build`].
#[derive(Default)]
pub(crate) struct Scanned {
    /// The last record of each image of interest (unsettled, a sync's, a person to read again).
    last: KeyMap<Last>,
    /// `--sync-scope library`: every image in the named libraries with its recorded id, its
    /// person and its locator.
    ids: KeyMap<(Recorded, u128, String)>,
    /// ICE entities runs created, in ledger order.
    made: Vec<MadeEntity>,
}

/// Reads, after `replay` was planned against the manifest, the images it did not name that
/// need work: unsettled ones always; with `sync`, registered ones in `libraries`.
pub fn collect(
    path: &Path,
    replay: &Replay,
    scope: Option<SyncScope>,
    libraries: &[String],
) -> Result<Dropped, LedgerError> {
    let sync = scope.is_some();
    let wanted = wanted(replay, sync);
    if wanted.is_empty() && replay.reads_none_again() && !sync {
        return Ok(Dropped::default());
    }
    let named: HashSet<u128> = libraries.iter().map(|l| library_key(l)).collect();
    let scanned = scan(path, replay, scope, &named, &wanted)?;
    Ok(build(replay, sync, &named, &wanted, scanned))
}

/// The images the manifest did not name that may need work: unsettled ones, and with a sync
/// the registered ones.
fn wanted(replay: &Replay, sync: bool) -> HashSet<u128> {
    replay
        .unseen(|s| s.is_unsettled() || (sync && s.status == Status::Registered))
        .collect()
}

/// One pass over the ledger: the last record of each wanted image (and of each person to read
/// again), a library sync's recorded ids, and the ICE entities runs created.
fn scan(
    path: &Path,
    replay: &Replay,
    scope: Option<SyncScope>,
    named: &HashSet<u128>,
    wanted: &HashSet<u128>,
) -> Result<Scanned, LedgerError> {
    let sync = scope.is_some();
    let every_id = scope == Some(SyncScope::Library);
    let mut out = Scanned::default();
    let mut lib_names: HashMap<String, String> = HashMap::new();
    ledger::scan(path, true, |entry| {
        let image = match entry {
            Entry::Image(image) => image,
            Entry::Object(view) if sync => {
                made_object(view, &mut out.made, &mut lib_names);
                return;
            }
            _ => return,
        };
        let key = image.key();
        if every_id
            && let Some(id) = image.server_id()
            && named.contains(&library_key(image.category_id))
        {
            let person = person_key(image.category_id, image.person_id);
            let recorded = Recorded {
                id: id.to_string(),
                image: image.image(),
                key,
            };
            let url = recorded.image.locator().into_string();
            out.ids.insert(key, (recorded, person, url));
        }
        let person = person_key(image.category_id, image.person_id) as u64;
        if !wanted.contains(&key) && !replay.reads_again(person) {
            return;
        }
        let view = image.view;
        let entry = out.last.entry(key).or_insert_with(Last::default);
        entry.category_id = image.category_id.to_string();
        entry.person_id = image.person_id.to_string();
        entry.image = image.image();
        // A later record without an id (a `failed` one) does not make the id unknown.
        entry.id = image.server_id().map(str::to_string).or(entry.id.take());
        entry.lib_id = view
            .lib_id
            .as_deref()
            .map(str::to_string)
            .or(entry.lib_id.take());
        entry.entity_id = view
            .entity_id
            .as_deref()
            .map(str::to_string)
            .or(entry.entity_id.take());
    })?;
    for entity in &mut out.made {
        entity.library = lib_names.get(&entity.lib_id).cloned();
    }
    Ok(out)
}

/// An ICE library or entity record: libraries' names, and the entities created and not since
/// deleted.
fn made_object(
    view: &ledger::View<'_>,
    made: &mut Vec<MadeEntity>,
    lib_names: &mut HashMap<String, String>,
) {
    let Some(lib) = view.lib_id.as_deref() else {
        return;
    };
    let created = view.kind == Some(ledger::read::LineKind::Created);
    let name = view.name.as_deref().unwrap_or_default().to_string();
    match (view.object, view.entity_id.as_deref()) {
        (Some(ledger::ObjectKind::Lib), _) if created => {
            lib_names.insert(lib.to_string(), name);
        }
        (Some(ledger::ObjectKind::Entity), Some(entity)) => {
            made.retain(|m| (m.lib_id.as_str(), m.entity_id.as_str()) != (lib, entity));
            if created {
                made.push(MadeEntity {
                    lib_id: lib.to_string(),
                    entity_id: entity.to_string(),
                    name,
                    library: None,
                });
            }
        }
        _ => {}
    }
}

/// The drops, from what the scan gathered and the replay's states: pure, so its rules are
/// tested without a file.
pub(crate) fn build(
    replay: &Replay,
    sync: bool,
    named: &HashSet<u128>,
    wanted: &HashSet<u128>,
    scanned: Scanned,
) -> Dropped {
    let mut dropped = Dropped {
        made_entities: scanned.made,
        ..Dropped::default()
    };
    for (key, (recorded, person, url)) in scanned.ids {
        let Some(state) = replay.state(key) else {
            continue;
        };
        if state.status == Status::Removed {
            continue;
        }
        dropped.ledger_ids.insert(recorded.id.clone());
        if state.status == Status::Registered && replay.was_seen(key) {
            dropped.ledger_urls.insert((person, url), recorded);
        }
    }
    let last = scanned.last;
    let mut at: HashMap<u128, usize> = HashMap::new();
    let mut keys: Vec<u128> = last.keys().copied().collect();
    keys.sort_unstable();
    for key in keys {
        let Some(state) = replay.state(key) else {
            continue;
        };
        let record = &last[&key];
        let person = person_key(&record.category_id, &record.person_id);
        let index = *at.entry(person).or_insert_with(|| {
            dropped.persons.push(PersonDrops {
                category_id: record.category_id.clone(),
                person_id: record.person_id.clone(),
                ..PersonDrops::default()
            });
            dropped.persons.len() - 1
        });
        let slot = &mut dropped.persons[index];
        slot.converge_only = !replay.recheck.contains_key(&(person as u64));
        if replay.reads_again(person as u64)
            && state.status == Status::Registered
            && let Some(id) = &record.id
        {
            let kept = Kept::of(record.image.clone(), id);
            slot.recheck.get_or_insert_with(Vec::new).push(kept);
        }
        if !wanted.contains(&key) {
            continue;
        }
        let remove = sync && named.contains(&library_key(&record.category_id));
        if state.status == Status::Registered && !remove {
            continue;
        }
        if remove
            && let Some(id) = &record.id
            && !crate::ledger::is_safe_id(id)
        {
            dropped.unsafe_ids.push(format!(
                "{} / {} {}: {id:?}",
                record.category_id, record.person_id, record.image.source
            ));
            continue;
        }
        slot.since = slot.since.max(state.since);
        slot.drops.push(drop_work(key, record, &state, remove));
    }
    dropped
        .persons
        .retain(|p| !p.drops.is_empty() || p.recheck.is_some());
    dropped
}

/// What to do with one image the manifest no longer names: settle it (its outcome was
/// unknown), or remove it (a sync in its library).
fn drop_work(key: u128, record: &Last, state: &ledger::ImageState, remove: bool) -> DropWork {
    let unsettled = state.is_unsettled();
    DropWork {
        image: record.image.clone(),
        key,
        id: record.id.clone(),
        lib_id: record.lib_id.clone(),
        entity_id: record.entity_id.clone(),
        status: if unsettled {
            state.status
        } else {
            Status::Registered
        },
        remove,
        why: if unsettled { Why::Settle } else { Why::Dropped },
    }
}

impl Plan {
    /// Adds each person's drops and late-copy check (with the images it may restore) to its
    /// job, or a job of its own.
    pub fn attach(&mut self, dropped: Vec<PersonDrops>) {
        let mut restore: HashMap<u128, Vec<ImageWork>> = HashMap::new();
        for (person, image) in std::mem::take(&mut self.restore) {
            restore.entry(person).or_default().push(image);
        }
        let mut index: HashMap<u128, usize> = self
            .jobs
            .iter()
            .enumerate()
            .map(|(i, j)| (person_key(&j.category_id, &j.person_id), i))
            .collect();
        for person in dropped {
            let key = person_key(&person.category_id, &person.person_id);
            let at = *index.entry(key).or_insert_with(|| {
                self.jobs.push(PersonJob::without_images(
                    person.category_id.clone(),
                    person.person_id.clone(),
                ));
                self.jobs.len() - 1
            });
            let job = &mut self.jobs[at];
            job.pending_since = job.pending_since.max(person.since);
            job.drops.extend(person.drops);
            if let Some(keep) = person.recheck {
                job.recheck = Some(Recheck {
                    keep,
                    settles: true,
                    converge_only: person.converge_only,
                    restore: restore.remove(&key).unwrap_or_default(),
                });
            }
        }
    }
}

impl Dropped {
    /// Removals planned, per library as first written: (library, images).
    pub fn removals_by_library(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = Vec::new();
        for person in &self.persons {
            let n = person.drops.iter().filter(|d| d.remove).count() as u64;
            if n == 0 {
                continue;
            }
            let folded = crate::image::fold_id(&person.category_id);
            match out
                .iter_mut()
                .find(|(l, _)| crate::image::fold_id(l) == folded)
            {
                Some((_, total)) => *total += n,
                None => out.push((person.category_id.trim().to_string(), n)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::ImageId;
    use crate::ledger::{ImageRecord, Record, encode, replay_from};

    /// One image's record: `id` for a registered one.
    fn line(status: Status, library: &str, person: &str, url: &str, id: Option<&str>) -> Vec<u8> {
        let mut r = ImageRecord::new("run-1", status, library, person, url);
        r.face_id = id.map(str::to_string);
        let mut out = Vec::new();
        encode(&Record::Image(r), &mut out);
        out
    }

    fn key(library: &str, person: &str, url: &str) -> u128 {
        ImageId::new(url, None).key(library, person)
    }

    fn last(library: &str, person: &str, url: &str, id: Option<&str>) -> Last {
        Last {
            category_id: library.into(),
            person_id: person.into(),
            image: Image::at(url),
            id: id.map(str::to_string),
            ..Last::default()
        }
    }

    /// A ledger of five images, of which the manifest still names alice's a.jpg only; and
    /// what a scan of it gathers.
    fn fixture() -> (Replay, Scanned) {
        let images = [
            (
                Status::Registered,
                "lib",
                "alice",
                "http://x/a.jpg",
                Some("f1"),
            ),
            (
                Status::Registered,
                "lib",
                "alice",
                "http://x/b.jpg",
                Some("f2"),
            ),
            (Status::Pending, "lib", "bob", "http://x/c.jpg", None),
            (
                Status::Registered,
                "lib",
                "dave",
                "http://x/e.jpg",
                Some("ALL"),
            ),
            (
                Status::Registered,
                "other",
                "carol",
                "http://x/d.jpg",
                Some("f4"),
            ),
        ];
        let mut bytes = Vec::new();
        let mut scanned = Scanned::default();
        for (status, library, person, url, id) in images {
            bytes.extend(line(status, library, person, url, id));
            scanned
                .last
                .insert(key(library, person, url), last(library, person, url, id));
        }
        let replay = replay_from(Path::new("t.jsonl"), &bytes[..]).unwrap();
        replay.named(key("lib", "alice", "http://x/a.jpg"));
        (replay, scanned)
    }

    fn drops_of(dropped: &Dropped) -> Vec<(String, String, bool, Why)> {
        dropped
            .persons
            .iter()
            .flat_map(|p| {
                p.drops
                    .iter()
                    .map(|d| (p.person_id.clone(), d.image.source.clone(), d.remove, d.why))
            })
            .collect()
    }

    #[test]
    fn without_a_sync_only_an_unsettled_image_the_manifest_dropped_is_settled() {
        let (replay, scanned) = fixture();
        let wanted = wanted(&replay, false);
        let dropped = build(&replay, false, &HashSet::new(), &wanted, scanned);
        assert_eq!(
            drops_of(&dropped),
            [("bob".into(), "http://x/c.jpg".into(), false, Why::Settle)]
        );
        assert!(dropped.unsafe_ids.is_empty());
    }

    #[test]
    fn a_sync_removes_what_the_manifest_dropped_in_its_libraries_only_and_never_a_wildcard_id() {
        let (replay, scanned) = fixture();
        let wanted = wanted(&replay, true);
        let named = HashSet::from([library_key("LIB")]);
        let dropped = build(&replay, true, &named, &wanted, scanned);
        assert_eq!(
            drops_of(&dropped),
            [
                ("alice".into(), "http://x/b.jpg".into(), true, Why::Dropped),
                ("bob".into(), "http://x/c.jpg".into(), true, Why::Settle),
            ]
        );
        let alice = &dropped.persons[0];
        assert_eq!(alice.drops[0].id.as_deref(), Some("f2"));
        assert_eq!(dropped.removals(), 2);
        // dave's record holds the service's wildcard: reported, never sent.
        assert_eq!(dropped.unsafe_ids.len(), 1);
        assert!(
            dropped.unsafe_ids[0].contains("dave"),
            "{:?}",
            dropped.unsafe_ids
        );
    }

    #[test]
    fn a_library_sync_knows_the_recorded_ids_and_the_named_images_by_locator() {
        let (replay, mut scanned) = fixture();
        for (library, person, url, id) in [
            ("lib", "alice", "http://x/a.jpg?Signature=s", "f1"),
            ("lib", "alice", "http://x/b.jpg", "f2"),
        ] {
            let k = key(library, person, url);
            let recorded = Recorded {
                id: id.into(),
                image: Image::at(url),
                key: k,
            };
            let at = crate::image::Locator::of(url).into_string();
            scanned
                .ids
                .insert(k, (recorded, person_key(library, person), at));
        }
        let wanted = wanted(&replay, true);
        let named = HashSet::from([library_key("lib")]);
        let dropped = build(&replay, true, &named, &wanted, scanned);
        assert!(dropped.ledger_ids.contains("f1") && dropped.ledger_ids.contains("f2"));
        // Only the image the manifest still names is kept by locator (its signature dropped).
        let kept: Vec<&String> = dropped.ledger_urls.keys().map(|(_, url)| url).collect();
        assert_eq!(kept, ["http://x/a.jpg"]);
    }
}
